// Package release computes what a build of a git commit is: its semantic
// version from conventional commits and version tags, its changelog, and its
// image tags and OCI labels. It reads the repository with go-git, so it needs
// neither a git binary nor Docker, and it reads only history and refs: the
// state of the work tree does not matter.
package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/gantryhq/gantry/internal/config"
)

// Kinds of Error. Every one of them is bad input: the user can act on it,
// and nothing was changed.
var (
	ErrNotRepository = errors.New("not a git repository")
	ErrNoCommits     = errors.New("no commits")
	ErrShallow       = errors.New("shallow clone")
	ErrTagExists     = errors.New("tag exists")
	ErrInput         = errors.New("bad input")
)

// Error is a problem the user can fix: its message says what and how, Kind
// says which for errors.Is.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Options says how versions are computed. Open fills in the defaults.
type Options struct {
	// Release is gantry.yaml's release section; its zero fields take
	// config.DefaultRelease's values (an empty TagPrefix stays empty when
	// Branch is set, that is when the section came from a loaded file).
	Release config.Release
	// Branch is the branch being built. Empty: GITHUB_HEAD_REF or
	// GITHUB_REF in CI, else the branch HEAD is on, else (detached HEAD) a
	// branch whose tip is HEAD.
	Branch string
	// MajorOnZero, when set, overrides Release.MajorOnZero.
	MajorOnZero *bool
	// Getenv reads the CI environment; nil means os.Getenv.
	Getenv func(string) string
	// Now is the clock for tag times; nil means time.Now.
	Now func() time.Time
}

// Repo is an opened repository with its version tags read.
type Repo struct {
	git     *git.Repository
	storage *filesystem.Storage // closed by Close
	root    string
	opts    Options
	rel     config.Release
	prefix  string
	types   map[string]Bump
	base    *semver.Version // the initial version

	objects  *objects
	headRef  *plumbing.Reference
	headHash plumbing.Hash
	headTime time.Time
	tags     []tagRef
	byCommit map[plumbing.Hash][]int32
	next     *Version
}

// tagRef is a tag that looks like a version, peeled to its commit.
type tagRef struct {
	name    string
	commit  plumbing.Hash
	version *semver.Version // nil: not a version tag under the prefix
	why     string          // why version is nil
}

// Open opens the git repository that holds dir (dir or a parent) and reads
// its tags.
func Open(dir string, opts Options) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	g, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, errorf(ErrNotRepository, "%s is not in a git repository: gantry computes versions from git history; run it inside your project's repository (or `git init` one), or pass --repo", abs)
		}
		return nil, fmt.Errorf("open the git repository of %s: %w", abs, err)
	}
	r := &Repo{git: g, root: abs, opts: opts}
	var wt billy.Filesystem
	if w, err := g.Worktree(); err == nil {
		wt = w.Filesystem
		r.root = wt.Root()
	}
	// Reopen the same directories keeping the pack files open: go-git
	// otherwise opens a pack again for every object it reads from it. The
	// walk reads packed commits itself (objects.go); go-git reads the rest.
	gitDir := ""
	if st, ok := g.Storer.(*filesystem.Storage); ok {
		gitDir = st.Filesystem().Root()
		fast := filesystem.NewStorageWithOptions(st.Filesystem(), cache.NewObjectLRUDefault(), filesystem.Options{KeepDescriptors: true})
		if g2, err := git.Open(fast, wt); err == nil {
			r.git, r.storage = g2, fast
		}
	}
	r.objects = openObjects(gitDir, r.git.Storer)
	if err := r.load(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Repo) load() error {
	if err := r.setDefaults(); err != nil {
		return err
	}
	var err error
	r.headRef, err = r.git.Head()
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return errorf(ErrNoCommits, "the git repository at %s has no commits yet; commit something first", r.root)
		}
		return fmt.Errorf("read HEAD: %w", err)
	}
	r.headHash = r.headRef.Hash()
	t, data, err := r.objects.read(r.headHash)
	if err != nil {
		return fmt.Errorf("read the HEAD commit %s: %w", r.headHash, err)
	}
	if t != plumbing.CommitObject {
		return errorf(ErrInput, "HEAD points at a %s, not a commit", t)
	}
	c, _, err := parseCommit(data, nil)
	if err != nil {
		return fmt.Errorf("read the HEAD commit %s: %w", r.headHash, err)
	}
	r.headTime = time.Unix(c.when, 0).UTC()
	return r.readTags()
}

// setDefaults is the one place where options get their defaults.
func (r *Repo) setDefaults() error {
	def := config.DefaultRelease()
	rel := r.opts.Release
	if rel.Branch == "" {
		rel.Branch = def.Branch
		if rel.TagPrefix == "" {
			rel.TagPrefix = def.TagPrefix
		}
	}
	if rel.InitialVersion == "" {
		rel.InitialVersion = def.InitialVersion
	}
	if rel.Prerelease == "" {
		rel.Prerelease = def.Prerelease
	}
	if r.opts.MajorOnZero != nil {
		rel.MajorOnZero = *r.opts.MajorOnZero
	}
	if r.opts.Getenv == nil {
		r.opts.Getenv = os.Getenv
	}
	if r.opts.Now == nil {
		r.opts.Now = time.Now
	}
	base, err := semver.StrictNewVersion(rel.InitialVersion)
	if err != nil {
		return errorf(ErrInput, "initial version %q is not MAJOR.MINOR.PATCH", rel.InitialVersion)
	}
	r.base = base
	r.types = make(map[string]Bump, len(defaultBumps)+len(rel.Bump))
	for k, v := range defaultBumps {
		r.types[k] = v
	}
	for k, v := range rel.Bump {
		b, ok := ParseBump(v)
		if !ok {
			return errorf(ErrInput, "release.bump.%s: %q is not a bump; use none, patch, minor or major", k, v)
		}
		r.types[k] = b
	}
	r.rel = rel
	r.prefix = rel.TagPrefix
	return nil
}

// Close releases the files the repository keeps open.
func (r *Repo) Close() error {
	var errs []error
	if r.objects != nil {
		errs = append(errs, r.objects.close())
	}
	if r.storage != nil {
		errs = append(errs, r.storage.Close())
	}
	return errors.Join(errs...)
}

// Root is the repository's work tree (or git directory when bare).
func (r *Repo) Root() string { return r.root }

// TagPrefix is the prefix of version tags.
func (r *Repo) TagPrefix() string { return r.prefix }

// looksLikeVersion says whether a tag name is meant as a version: after the
// prefix (when it has it) and an optional v, a digit. Only these tags are
// read; the others (release-notes, deployed-prod) are not gantry's business.
func looksLikeVersion(name, prefix string) bool {
	rest := strings.TrimPrefix(name, prefix)
	if len(rest) > 0 && (rest[0] == 'v' || rest[0] == 'V') {
		rest = rest[1:]
	}
	return len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9'
}

func (r *Repo) readTags() error {
	iter, err := r.git.Tags()
	if err != nil {
		return fmt.Errorf("list tags: %w", err)
	}
	r.byCommit = make(map[plumbing.Hash][]int32)
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		name := ref.Name().Short()
		if !looksLikeVersion(name, r.prefix) {
			return nil
		}
		commit, ok, err := r.peel(ref.Hash())
		if err != nil {
			return fmt.Errorf("read tag %s: %w", name, err)
		}
		if !ok {
			return nil
		}
		t := tagRef{name: name, commit: commit}
		if v, ok := strings.CutPrefix(name, r.prefix); ok {
			t.version, _ = semver.StrictNewVersion(v)
		}
		if t.version == nil {
			t.why = fmt.Sprintf("not a version tag: gantry's version tags are %sMAJOR.MINOR.PATCH (release.tag_prefix %q)", r.prefix, r.prefix)
		}
		r.tags = append(r.tags, t)
		return nil
	})
	if err != nil {
		return err
	}
	// By name, so that what is reported does not depend on how refs are stored.
	sort.Slice(r.tags, func(i, j int) bool { return r.tags[i].name < r.tags[j].name })
	for i, t := range r.tags {
		r.byCommit[t.commit] = append(r.byCommit[t.commit], int32(i))
	}
	return nil
}

// peel follows annotated tags to the commit they name; ok is false when a
// tag names a tree or a blob, or an object this clone does not have.
func (r *Repo) peel(h plumbing.Hash) (plumbing.Hash, bool, error) {
	for range 10 {
		t, data, err := r.objects.read(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return h, false, nil
		}
		if err != nil {
			return h, false, err
		}
		switch t {
		case plumbing.CommitObject:
			return h, true, nil
		case plumbing.TagObject:
			target, ok := parseTagTarget(data)
			if !ok {
				return h, false, fmt.Errorf("malformed tag object %s", h)
			}
			h = target
		default:
			return h, false, nil
		}
	}
	return h, false, nil
}

// originURL is the first URL of the remote origin, or "".
func (r *Repo) originURL() string {
	rem, err := r.git.Remote("origin")
	if err != nil || len(rem.Config().URLs) == 0 {
		return ""
	}
	return rem.Config().URLs[0]
}
