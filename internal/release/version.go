package release

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5/plumbing"
)

// Version is the version of HEAD: the next release, the release HEAD
// already is, or a prerelease on a branch other than the release branch.
type Version struct {
	Version *semver.Version `json:"version"`
	// Tag is the git tag of Version: the prefix and the version.
	Tag string `json:"tag"`
	// Previous is the newest stable version tag reachable from HEAD.
	Previous    *semver.Version `json:"previous,omitempty"`
	PreviousTag string          `json:"previous_tag,omitempty"`
	// Bump is what the commits since Previous did to it.
	Bump Bump `json:"bump"`
	// Branch is the branch being built ("" when gantry cannot tell);
	// ReleaseBranch whether it is release.branch.
	Branch        string `json:"branch"`
	ReleaseBranch bool   `json:"release_branch"`
	Prerelease    bool   `json:"prerelease"`
	// New: Version is a release still to make, the tag `version --tag`
	// creates. False when HEAD already carries Tag (AtTag), and when no
	// commit since Previous bumps anything.
	New   bool `json:"new"`
	AtTag bool `json:"at_tag"`
	// Head is the commit being built, HeadTime its committer time.
	Head     string    `json:"commit"`
	HeadTime time.Time `json:"commit_time"`
	// Commits are the commits since Previous, newest first.
	Commits     []Commit `json:"-"`
	CommitCount int      `json:"commits"`
	// PR is the pull request being built (GITHUB_REF=refs/pull/N/merge).
	PR int `json:"pr,omitempty"`
	// Ignored are tags on the new commits that look like versions but are
	// not (v1.4, 1.4.0 without the prefix): they do not count.
	Ignored []IgnoredTag `json:"ignored_tags,omitempty"`
}

// IgnoredTag is a tag that looks like a version and is not one.
type IgnoredTag struct {
	Name   string `json:"name"`
	Commit string `json:"commit"`
	Why    string `json:"why"`
}

// Next computes the version of HEAD, from one walk of history.
func (r *Repo) Next() (*Version, error) {
	if r.next != nil {
		return r.next, nil
	}
	w, err := r.walk(false)
	if err != nil {
		return nil, err
	}
	ci := readCI(r.opts.Getenv)
	branch := r.currentBranch(ci)
	v := &Version{
		Branch: branch, ReleaseBranch: branch != "" && branch == r.rel.Branch,
		Head: r.headHash.String(), HeadTime: r.headTime,
		Commits: w.commits, CommitCount: len(w.commits), PR: ci.pr,
	}
	base := r.base
	if w.last >= 0 {
		base = r.tags[w.last].version
		v.Previous, v.PreviousTag = base, r.tags[w.last].name
	}
	for _, c := range w.commits {
		v.Bump = max(v.Bump, c.Bump)
	}
	if v.Bump == BumpMajor && base.Major() == 0 && !r.rel.MajorOnZero {
		v.Bump = BumpMinor
	}
	switch {
	case w.last >= 0 && len(w.commits) == 0:
		// HEAD is a release: the same version, on any branch.
		v.Version, v.AtTag = base, true
	case v.ReleaseBranch:
		v.Version, v.New = bump(base, v.Bump), v.Bump != BumpNone
	default:
		// A prerelease sorts before its version: it needs at least a patch
		// bump to come after the last release.
		v.Bump = max(v.Bump, BumpPatch)
		core := bump(base, v.Bump)
		label := PrereleaseLabel(r.rel.Prerelease, branch)
		v.Prerelease = true
		if t := r.prereleaseOn(r.headHash, core, label); t >= 0 {
			v.Version, v.AtTag = r.tags[t].version, true
		} else {
			n := r.lastPrerelease(core, label) + 1
			v.Version = semver.New(core.Major(), core.Minor(), core.Patch(), label+"."+strconv.FormatUint(n, 10), "")
			v.New = true
		}
	}
	v.Tag = r.prefix + v.Version.String()
	if v.AtTag && !v.Prerelease {
		v.Tag = r.tags[w.last].name
	}
	for _, t := range w.ignored {
		v.Ignored = append(v.Ignored, IgnoredTag{Name: r.tags[t].name, Commit: short(r.tags[t].commit), Why: r.tags[t].why})
	}
	r.next = v
	return v, nil
}

func bump(v *semver.Version, b Bump) *semver.Version {
	var n semver.Version
	switch b {
	case BumpMajor:
		n = v.IncMajor()
	case BumpMinor:
		n = v.IncMinor()
	case BumpPatch:
		n = v.IncPatch()
	default:
		return v
	}
	return &n
}

// PrereleaseLabel is the first prerelease identifier for a branch: rc, or
// the branch name made a valid semver identifier (lower case letters,
// digits and -), at most 40 characters.
func PrereleaseLabel(style, branch string) string {
	if style != "branch" {
		return "rc"
	}
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(branch) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
			if b.Len() >= 40 {
				break
			}
			continue
		}
		dash = true
	}
	s := b.String()
	switch {
	case s == "":
		if branch == "" {
			return "detached"
		}
		return "branch"
	case strings.Trim(s, "0123456789") == "":
		// A numeric identifier must not start with 0, and would compare as
		// a number: make it a name.
		return "branch-" + s
	}
	return s
}

// prerelease reads label.N from a version's prerelease; ok false when it is
// not of that form.
func prerelease(v *semver.Version, core *semver.Version, label string) (uint64, bool) {
	if v.Major() != core.Major() || v.Minor() != core.Minor() || v.Patch() != core.Patch() {
		return 0, false
	}
	rest, ok := strings.CutPrefix(v.Prerelease(), label+".")
	if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// lastPrerelease is the highest N of the tags core-label.N in the whole
// repository, on any branch; 0 when there is none.
func (r *Repo) lastPrerelease(core *semver.Version, label string) uint64 {
	var last uint64
	for _, t := range r.tags {
		if t.version == nil {
			continue
		}
		if n, ok := prerelease(t.version, core, label); ok && n > last {
			last = n
		}
	}
	return last
}

// prereleaseOn is the index of the highest core-label.N tag on commit h, or -1.
func (r *Repo) prereleaseOn(h plumbing.Hash, core *semver.Version, label string) int {
	best, bestN := -1, uint64(0)
	for _, t := range r.byCommit[h] {
		v := r.tags[t].version
		if v == nil {
			continue
		}
		if n, ok := prerelease(v, core, label); ok && (best < 0 || n > bestN) {
			best, bestN = int(t), n
		}
	}
	return best
}

// ci is what the CI environment says about the build. Only GitHub
// Actions' variables are read; elsewhere pass --branch and --pr.
type ci struct {
	branch string
	pr     int
}

func readCI(getenv func(string) string) ci {
	ref := getenv("GITHUB_REF")
	var c ci
	switch {
	case strings.HasPrefix(ref, "refs/pull/"):
		n, _, _ := strings.Cut(strings.TrimPrefix(ref, "refs/pull/"), "/")
		c.pr, _ = strconv.Atoi(n)
		c.branch = getenv("GITHUB_HEAD_REF")
	case strings.HasPrefix(ref, "refs/heads/"):
		c.branch = strings.TrimPrefix(ref, "refs/heads/")
	}
	return c
}

// currentBranch is the branch being built: the option, CI, the branch HEAD
// is on, or for a detached HEAD a branch whose tip is HEAD (the release
// branch first, local before origin's). "" when none is.
func (r *Repo) currentBranch(c ci) string {
	switch {
	case r.opts.Branch != "":
		return r.opts.Branch
	case c.branch != "":
		return c.branch
	case r.headRef.Name().IsBranch():
		return r.headRef.Name().Short()
	}
	refs, err := r.git.References()
	if err != nil {
		return ""
	}
	var local, remote []string
	refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference || ref.Hash() != r.headHash {
			return nil
		}
		name := ref.Name().String()
		if b, ok := strings.CutPrefix(name, "refs/heads/"); ok {
			local = append(local, b)
		} else if b, ok := strings.CutPrefix(name, "refs/remotes/origin/"); ok && b != "HEAD" {
			remote = append(remote, b)
		}
		return nil
	})
	sort.Strings(local)
	sort.Strings(remote)
	for _, l := range [][]string{local, remote} {
		for _, b := range l {
			if b == r.rel.Branch {
				return b
			}
		}
	}
	for _, l := range [][]string{local, remote} {
		if len(l) > 0 {
			return l[0]
		}
	}
	return ""
}
