package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/release"
)

// releaseFlags are the flags of version, changelog and tags.
type releaseFlags struct {
	repo string
	opts release.Options
}

func (rf *releaseFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&rf.repo, "repo", "", "the git repository to read (default: gantry.yaml's directory, or the current directory without gantry.yaml)")
	cmd.Flags().StringVar(&rf.opts.Branch, "branch", "", "the branch being built, when git cannot tell (detached HEAD in CI); default: $GITHUB_HEAD_REF or $GITHUB_REF, else HEAD's branch")
}

// openRelease opens the repository with gantry.yaml's release section.
// These commands need no gantry.yaml: without one (and without --file or
// $GANTRY_FILE naming one) they read the repository of the current
// directory with the defaults. A gantry.yaml that exists must be valid.
func (g *globals) openRelease(cmd *cobra.Command, rf *releaseFlags) (*release.Repo, *config.File, error) {
	var f *config.File
	explicit := cmd.Flags().Changed("file") || os.Getenv("GANTRY_FILE") != ""
	if _, err := os.Stat(g.file); explicit || !errors.Is(err, fs.ErrNotExist) {
		var err error
		if f, err = g.loadFile(); err != nil {
			return nil, nil, err
		}
	}
	dir, opts := ".", rf.opts
	opts.Release = config.DefaultRelease()
	if f != nil {
		dir, opts.Release = f.Dir, f.Release
	}
	if rf.repo != "" {
		dir = rf.repo
	}
	repo, err := release.Open(dir, opts)
	return repo, f, releaseErr(err)
}

// releaseErr makes the release package's errors, all of them bad input,
// exit with code 2.
func releaseErr(err error) error {
	var re *release.Error
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

func newVersionCmd(g *globals) *cobra.Command {
	var rf releaseFlags
	var tag, majorOnZero bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the next version, from conventional commits since the last version tag",
		Long: `Compute the project's next semantic version from the commits since the
newest version tag reachable from HEAD (git log vX.Y.Z..HEAD):

  feat: ...                          minor
  fix: ...  perf: ...                patch
  feat!: ...  or a footer            major (minor while 0.x, unless
  BREAKING CHANGE: ...               release.major_on_zero or --major-on-zero)
  other types (docs, chore, ...)     nothing, unless release.bump says

On the release branch (release.branch, default main) this is a stable
version; on any other branch a prerelease, 1.4.0-rc.N (N counts the rc tags
of 1.4.0 that exist), or 1.4.0-<branch>.N with release.prerelease: branch.
With no version tag yet, versions start from release.initial_version
(0.0.0). When nothing since the last release bumps the version, that
version is printed and nothing is released.

--tag creates the annotated tag (release.tag_prefix + version, v1.4.0)
with the changelog as its message. It never moves a tag: a tag of that name
on another commit is refused (exit code 2).

Only git is read: no Docker, no gantry.yaml needed (without one, the
repository of the current directory with the defaults), and uncommitted
changes do not matter.`,
		Example: `  gantry version
  gantry version --tag && git push origin "v$(gantry version)"
  gantry version --output json | jq -r .tag
  gantry version --branch "$CI_COMMIT_BRANCH"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("major-on-zero") {
				rf.opts.MajorOnZero = &majorOnZero
			}
			repo, _, err := g.openRelease(cmd, &rf)
			if err != nil {
				return err
			}
			defer repo.Close()
			v, err := repo.Next()
			if err != nil {
				return releaseErr(err)
			}
			tagged := false
			if tag {
				if tagged, err = repo.CreateTag(); err != nil {
					return releaseErr(err)
				}
			}
			if g.output == "json" {
				return g.printJSON(struct {
					*release.Version
					Tagged bool `json:"tagged"`
				}{v, tagged})
			}
			fmt.Fprintln(g.stdout, v.Version)
			printNotes(g, v)
			switch {
			case tagged:
				fmt.Fprintf(g.stderr, "tagged %s at %s; publish it with `git push origin %s`\n", v.Tag, v.Head[:7], v.Tag)
			case tag && v.AtTag:
				fmt.Fprintf(g.stderr, "HEAD is already %s; no tag created\n", v.Tag)
			case tag:
				fmt.Fprintln(g.stderr, "no tag created")
			}
			return nil
		},
	}
	rf.bind(cmd)
	cmd.Flags().BoolVar(&tag, "tag", false, "create the version's annotated git tag on HEAD (never moves an existing tag)")
	cmd.Flags().BoolVar(&majorOnZero, "major-on-zero", false, "a breaking change while 0.x goes to 1.0.0 (overrides release.major_on_zero)")
	return cmd
}

// printNotes says on stderr what a script would want a human to know.
func printNotes(g *globals, v *release.Version) {
	for _, t := range v.Ignored {
		fmt.Fprintf(g.stderr, "note: ignored tag %s on %s: %s\n", t.Name, t.Commit, t.Why)
	}
	if !v.New && !v.AtTag {
		since := "since the start of history"
		if v.PreviousTag != "" {
			since = "since " + v.PreviousTag
		}
		fmt.Fprintf(g.stderr, "note: nothing to release %s: %d commit(s), none a feat, fix, perf or breaking change\n", since, v.CommitCount)
	}
}

func newChangelogCmd(g *globals) *cobra.Command {
	var rf releaseFlags
	cmd := &cobra.Command{
		Use:   "changelog",
		Short: "Print the commits since the last release, grouped by type",
		Long: `Print, as Markdown, the commits since the newest version tag reachable from
HEAD, under the version they make: Breaking changes, Features, Fixes,
Performance, Other. A breaking change is listed under Breaking changes
only, with its BREAKING CHANGE note. Merge commits whose message is not
conventional are left out; the commits they merge are listed.

On a release commit (HEAD carries the version tag), it prints what that
release contains: the release notes of a tag build.`,
		Example: `  gantry changelog
  gantry changelog > notes.md && gh release create "v$(gantry version)" -F notes.md
  gantry changelog --output json | jq '.sections[].title'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, _, err := g.openRelease(cmd, &rf)
			if err != nil {
				return err
			}
			defer repo.Close()
			cl, err := repo.Changelog()
			if err != nil {
				return releaseErr(err)
			}
			if g.output == "json" {
				return g.printJSON(cl)
			}
			_, err = fmt.Fprint(g.stdout, cl.Markdown())
			return err
		},
	}
	rf.bind(cmd)
	return cmd
}

func newTagsCmd(g *globals) *cobra.Command {
	var rf releaseFlags
	var images, labels []string
	var pr int
	var created string
	cmd := &cobra.Command{
		Use:   "tags",
		Short: "Print the image tags and OCI labels of a build of HEAD",
		Long: `Compute the tags and labels to build HEAD's images with, following
docker/metadata-action's conventions:

  1.4.0  1.4  1         the version and, for a stable release, the floating
                        tags (each only when it is the newest of its line;
                        no major tag while 0.x unless release.major_tag_on_zero)
  latest                only the newest stable version, on the release branch
  main, feature-x       the branch (pr-N for a pull request)
  sha-1a2b3c4           the commit, always

A prerelease (a build of another branch) gets its version, branch and sha
tags only. A commit on the release branch with nothing to release gets no
version tags at all: they would overwrite the last release's images.
Invalid characters become -, tags are lower case and 128 characters at
most.

Tags are given for each service image of gantry.yaml (services.NAME.image,
its tag dropped) or for each --image; bare without either. Labels are
org.opencontainers.image.{title,description,url,source,version,created,
revision,licenses}: created is the commit's time so that a rebuild is
reproducible; url and source come from the remote origin.

--output text and json print; github appends tags, labels and version to
$GITHUB_OUTPUT (multi-line values with a delimiter) or prints them when it
is not set; bake prints a docker buildx bake file with a target per image.`,
		Example: `  gantry tags
  gantry tags --image ghcr.io/acme/shop --output json
  gantry tags --output github                # in a GitHub Actions step
  gantry tags --output bake > tags.json && docker buildx bake -f compose.yaml -f tags.json --push`,
		Args: cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// Two more output formats than the other commands know.
			out := g.output
			switch out {
			case "github", "bake":
				g.output = "text"
				defer func() { g.output = out }()
			case "text", "json":
			default:
				return fmt.Errorf("%w: --output %q: use text, json, github or bake", errUsage, out)
			}
			return cmd.Root().PersistentPreRunE(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o := release.TagOptions{PR: pr}
			if created != "" {
				t, err := parseCreated(created)
				if err != nil {
					return err
				}
				o.Created = t
			}
			var err error
			if o.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			repo, f, err := g.openRelease(cmd, &rf)
			if err != nil {
				return err
			}
			defer repo.Close()
			if f != nil {
				o.Title = f.Project
			}
			if o.Images, err = tagImages(images, f); err != nil {
				return err
			}
			s, err := repo.Tags(o)
			if err != nil {
				return releaseErr(err)
			}
			return printTags(g, s)
		},
	}
	rf.bind(cmd)
	cmd.Flags().StringArrayVar(&images, "image", nil, "[SERVICE=]REPOSITORY to tag, repeatable (default: the service images in gantry.yaml)")
	cmd.Flags().IntVar(&pr, "pr", 0, "the pull request being built: tag pr-N (default: from GITHUB_REF=refs/pull/N/merge)")
	cmd.Flags().StringVar(&created, "created", "", "the created label, RFC 3339 or Unix seconds (default: the commit's time)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "KEY=VALUE label to add or override, repeatable")
	return cmd
}

func parseCreated(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("%w: --created %q: write a time like 2024-05-01T12:00:00Z, or Unix seconds", errUsage, s)
}

func parseLabels(l []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range l {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("%w: --label %q: write KEY=VALUE, like org.opencontainers.image.vendor=Acme", errUsage, kv)
		}
		m[k] = v
	}
	return m, nil
}

// tagImages are the --image flags or, without any, gantry.yaml's service
// images in service order.
func tagImages(flags []string, f *config.File) ([]release.Image, error) {
	var images []release.Image
	for _, fl := range flags {
		svc, name, ok := strings.Cut(fl, "=")
		if !ok {
			svc, name = "", fl
		}
		if name == "" || (ok && svc == "") {
			return nil, fmt.Errorf("%w: --image %q: write REPOSITORY or SERVICE=REPOSITORY, like web=ghcr.io/acme/web", errUsage, fl)
		}
		images = append(images, release.Image{Service: svc, Name: name})
	}
	if len(images) > 0 || f == nil {
		return images, nil
	}
	names := make([]string, 0, len(f.Services))
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if im := f.Services[n].Image; im != "" {
			images = append(images, release.Image{Service: n, Name: im})
		}
	}
	return images, nil
}

func printTags(g *globals, s *release.TagSet) error {
	switch g.output {
	case "json":
		return g.printJSON(s)
	case "bake":
		b, err := release.Bake(s)
		if err != nil {
			return releaseErr(err)
		}
		_, err = g.stdout.Write(b)
		return err
	case "github":
		path := os.Getenv("GITHUB_OUTPUT")
		if path == "" {
			return release.WriteGitHubOutput(g.stdout, s)
		}
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open $GITHUB_OUTPUT: %w", err)
		}
		if err := release.WriteGitHubOutput(f, s); err != nil {
			f.Close()
			return fmt.Errorf("write $GITHUB_OUTPUT: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write $GITHUB_OUTPUT: %w", err)
		}
		fmt.Fprintf(g.stderr, "wrote version, tags (%d) and labels (%d) to $GITHUB_OUTPUT\n", len(s.Refs()), len(s.Labels))
		return nil
	}
	w := g.stdout
	kind := "release"
	switch {
	case !s.Release:
		kind = "not a release: no version tags"
	case s.Prerelease:
		kind = "prerelease"
	}
	fmt.Fprintf(w, "version: %s (%s)\ntags:\n", s.Version, kind)
	for _, r := range s.Refs() {
		fmt.Fprintf(w, "  %s\n", r)
	}
	fmt.Fprintln(w, "labels:")
	for _, l := range s.SortedLabels() {
		fmt.Fprintf(w, "  %s\n", l)
	}
	return nil
}
