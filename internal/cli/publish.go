package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/release"
	"github.com/gantryhq/gantry/internal/store"
)

// releaseOutput is what gantry release prints with --output json.
type releaseOutput struct {
	Version   string                  `json:"version"`
	GitTag    string                  `json:"git_tag"`
	Commit    string                  `json:"commit"`
	Branch    string                  `json:"branch,omitempty"`
	DryRun    bool                    `json:"dry_run,omitempty"`
	Tags      []string                `json:"tags"`
	Images    map[string]releaseImage `json:"images"`
	TagCreate bool                    `json:"git_tag_created"`
	Release   *store.Release          `json:"release,omitempty"`
}

type releaseImage struct {
	Repository    string   `json:"repository"`
	Refs          []string `json:"refs"`
	Digest        string   `json:"digest,omitempty"`
	Platforms     []string `json:"platforms"`
	Method        string   `json:"method,omitempty"`
	BlobsUploaded int      `json:"blobs_uploaded"`
	BlobsSkipped  int      `json:"blobs_skipped"`
	BlobsMounted  int      `json:"blobs_mounted"`
	BytesUploaded int64    `json:"bytes_uploaded"`
}

type releaseCmdFlags struct {
	rf         releaseFlags
	allowDirty bool
	dryRun     bool
	noGitTag   bool
	platforms  []string
	jobs       int
}

func newReleaseCmd(g *globals) *cobra.Command {
	var fl releaseCmdFlags
	cmd := &cobra.Command{
		Use:   "release [SERVICE...]",
		Short: "Version, tag, build, push and record a release of the project",
		Long: `Make a release in one step:

  1. version  the next version from conventional commits (gantry version)
  2. tags     its tag set: 1.4.0 1.4 1 latest, the branch, sha-<7 hex> (gantry tags)
  3. build    every service's image, for release.platforms (gantry build)
     gates    when gantry.yaml has gates: gantry lint (gates.lint) before the
              build, Trivy on the built images (gates.scan) before the push;
              a failure stops the release (exit code 1), nothing is pushed
  4. push     to registry.url, never moving an immutable tag (gantry push)
  5. record   the release in the store: version, commit, tags and the digest
              of every service's image per platform (gantry releases)
  6. git tag  an annotated tag vX.Y.Z on HEAD (skip with --no-git-tag)

A work tree with uncommitted changes to tracked files is refused (the
release would not be what the commit says) unless --allow-dirty. A commit
with nothing to release (no feat, fix, perf or breaking change since the
last version tag) is refused too. If a push fails, the release is recorded
as failed with the reason, no git tag is made, and running gantry release
again retries it. A version tag that already holds other bytes in the
registry is never moved: gantry stops before any tag moves.

Then gantry deploy ENV --release VERSION deploys exactly these digests.`,
		Example: `  gantry release
  gantry release --dry-run                 # the version, tags and images, nothing built
  gantry release --platform linux/amd64,linux/arm64
  gantry release --output json | jq -r .version`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRelease(cmd, g, &fl, args)
		},
	}
	fl.rf.bind(cmd)
	cmd.Flags().BoolVar(&fl.allowDirty, "allow-dirty", false, "release even with uncommitted changes to tracked files")
	cmd.Flags().BoolVar(&fl.dryRun, "dry-run", false, "print the version, tags and images, build and push nothing")
	cmd.Flags().BoolVar(&fl.noGitTag, "no-git-tag", false, "do not create the annotated git tag vX.Y.Z")
	cmd.Flags().StringSliceVar(&fl.platforms, "platform", nil, "platforms to build (default: release.platforms, else the local engine's)")
	cmd.Flags().IntVar(&fl.jobs, "jobs", 0, "blobs uploaded at once (default: the push default)")
	return cmd
}

func runRelease(cmd *cobra.Command, g *globals, fl *releaseCmdFlags, services []string) error {
	ctx := cmd.Context()
	f, err := g.loadFile()
	if err != nil {
		return err
	}
	repo, _, err := g.openRelease(cmd, &fl.rf)
	if err != nil {
		return err
	}
	defer repo.Close()

	if !fl.allowDirty && !fl.dryRun {
		changed, err := repo.Changed()
		if err != nil {
			return err
		}
		if len(changed) > 0 {
			return fmt.Errorf("%w: the work tree has uncommitted changes to %s; a release must be exactly a commit: commit or stash them, or pass --allow-dirty",
				errUsage, fileList(changed, 5))
		}
	}
	v, err := repo.Next()
	if err != nil {
		return releaseErr(err)
	}
	if !v.New && !v.AtTag {
		since := "since " + v.PreviousTag
		if v.PreviousTag == "" {
			since = "yet"
		}
		return fmt.Errorf("%w: nothing to release: no commit %s is a feat, fix, perf or breaking change (%d commits); see gantry changelog",
			errUsage, since, v.CommitCount)
	}
	version := v.Version.String()

	platforms := fl.platforms
	if len(platforms) == 0 {
		platforms = f.Release.Platforms
	}
	ts, err := repo.Tags(release.TagOptions{Title: f.Project})
	if err != nil {
		return releaseErr(err)
	}
	reqs, err := image.Requests(ctx, f, f.Dir, services, platforms, ts.Labels)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	out := &releaseOutput{Version: version, GitTag: v.Tag, Commit: v.Head, Branch: v.Branch, DryRun: fl.dryRun,
		Tags: ts.Tags, Images: map[string]releaseImage{}}
	repos := map[string]string{}
	for _, r := range reqs {
		name, err := f.Repository(r.Service)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		repos[r.Service] = name
		refs := make([]string, len(ts.Tags))
		for i, t := range ts.Tags {
			refs[i] = name + ":" + t
		}
		out.Images[r.Service] = releaseImage{Repository: name, Refs: refs, Platforms: r.Platforms}
	}
	if fl.dryRun {
		return printReleaseOutput(g, out)
	}

	st, err := store.Open(g.stateDirFor(f))
	if err != nil {
		return err
	}
	defer st.Close()
	if old, err := st.GetRelease(ctx, f.Project, version); err == nil && old.State == store.ReleaseReleased {
		return fmt.Errorf("%w: release %s of %s was made already from commit %.12s on %s; see gantry releases %s, or commit a change to release a new version",
			errUsage, version, f.Project, old.Commit, old.CreatedAt.Local().Format("2006-01-02 15:04"), version)
	}

	gates, err := openGates(ctx, f, version, g.stderr)
	if err != nil {
		return err
	}
	rep := newReporter(g.stderr)
	defer rep.Done()
	rep.Note(fmt.Sprintf("release %s of %s from %.12s, tags %s", version, f.Project, v.Head, strings.Join(ts.Tags, " ")))
	imgs, err := image.Open(image.DefaultDir(g.stateDirFor(f)))
	if err != nil {
		return err
	}
	var dc *client.Client
	for _, r := range reqs {
		if !r.Build.Daemonless() && dc == nil {
			if dc, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err != nil {
				return fmt.Errorf("connect to the local Docker engine to build %s: %w", r.Service, err)
			}
			defer dc.Close()
		}
	}
	rec := &store.Release{Project: f.Project, Version: version, Commit: v.Head, Tags: ts.Tags,
		Images: map[string]store.ReleaseImage{}, Actor: actingAs().Name}
	var targets []image.Target
	for _, r := range reqs {
		svc := r.Service
		b, err := imgs.Build(ctx, dc, r, func(msg string) { rep.Service(svc, "build", strings.TrimPrefix(msg, svc+": ")) })
		if err != nil {
			return imageErr(fmt.Errorf("build %s: %w", svc, err))
		}
		rep.Service(svc, "built", fmt.Sprintf("%s %.19s (%s)", b.Method, b.Digest, strings.Join(b.Platforms, ", ")))
		rec.Images[svc] = store.ReleaseImage{Repository: repos[svc], Digest: b.Digest, Platforms: b.Manifests,
			Size: b.Size, Method: b.Method, BuiltAt: b.Built}
		o := out.Images[svc]
		o.Digest, o.Platforms, o.Method = b.Digest, b.Platforms, b.Method
		out.Images[svc] = o
		targets = append(targets, image.Target{Service: svc, Digest: b.Digest, Repository: repos[svc], Tags: ts.Tags})
	}

	// The record goes in before the first byte goes out: a crash from here
	// on leaves a release that says it was pushing.
	if err := st.BeginRelease(ctx, rec); err != nil {
		if errors.Is(err, store.ErrReleased) {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		return err
	}
	if err := gates.check(ctx, st, rec, imgs.Dir(), rep, g.stderr); err != nil {
		return err
	}
	opts := image.PushOptionsFor(f.Registry)
	opts.Jobs = fl.jobs
	opts.Progress = func(e image.PushEvent) { rep.Service(e.Service, e.Phase, e.Message) }
	results, err := imgs.Push(ctx, targets, opts)
	if err != nil {
		if ferr := st.FinishRelease(context.WithoutCancel(ctx), rec, store.ReleaseFailed, err.Error()); ferr != nil {
			return errors.Join(err, ferr)
		}
		return fmt.Errorf("release %s failed, recorded as failed (gantry releases %s): %w", version, version, err)
	}
	for _, r := range results {
		o := out.Images[r.Service]
		o.BlobsUploaded, o.BlobsSkipped, o.BlobsMounted, o.BytesUploaded = r.BlobsUploaded, r.BlobsSkipped, r.BlobsMounted, r.BytesUploaded
		out.Images[r.Service] = o
	}
	if err := st.FinishRelease(context.WithoutCancel(ctx), rec, store.ReleaseReleased, ""); err != nil {
		return err
	}
	if !fl.noGitTag && v.New {
		created, err := repo.CreateTag()
		if err != nil {
			return fmt.Errorf("release %s is pushed and recorded, but the git tag was not made: %w; make it with gantry version --tag", version, releaseErr(err))
		}
		out.TagCreate = created
	}
	if out.Release, err = st.GetRelease(ctx, f.Project, version); err != nil {
		return err
	}
	rep.Done()
	return printReleaseOutput(g, out)
}

func printReleaseOutput(g *globals, out *releaseOutput) error {
	if g.output == "json" {
		return g.printJSON(out)
	}
	w := g.stdout
	verb := "released"
	if out.DryRun {
		verb = "would release"
	}
	fmt.Fprintf(w, "%s %s (commit %.12s)\n", verb, out.Version, out.Commit)
	fmt.Fprintf(w, "  tags: %s\n", strings.Join(out.Tags, " "))
	svcs := make([]string, 0, len(out.Images))
	for s := range out.Images {
		svcs = append(svcs, s)
	}
	sort.Strings(svcs)
	for _, s := range svcs {
		im := out.Images[s]
		if out.DryRun {
			fmt.Fprintf(w, "  %s: %s (%s)\n", s, im.Repository, strings.Join(im.Platforms, ", "))
			continue
		}
		fmt.Fprintf(w, "  %s: %s@%s (%s; %d blobs uploaded, %d already there, %d mounted, %s sent)\n", s, im.Repository, im.Digest,
			strings.Join(im.Platforms, ", "), im.BlobsUploaded, im.BlobsSkipped, im.BlobsMounted, byteSize(im.BytesUploaded))
	}
	switch {
	case out.TagCreate:
		fmt.Fprintf(w, "  git tag %s created on HEAD; push it with: git push origin %s\n", out.GitTag, out.GitTag)
	case !out.DryRun:
		fmt.Fprintf(w, "  git tag: %s (not created now)\n", out.GitTag)
	}
	if !out.DryRun {
		fmt.Fprintf(w, "deploy it with: gantry deploy ENV --release %s\n", out.Version)
	}
	return nil
}

func fileList(files []string, n int) string {
	if len(files) <= n {
		return strings.Join(files, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(files[:n], ", "), len(files)-n)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
