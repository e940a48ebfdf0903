package release

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gantryhq/gantry/internal/config"
)

// TestNext is the table of version rules, each on a real repository.
func TestNext(t *testing.T) {
	type want struct {
		version  string
		tag      string // default: "v" + version
		previous string
		bump     string
		new      bool
		atTag    bool
		commits  int
		branch   string
		ignored  []string
		pr       int
	}
	trueV := true
	tests := []struct {
		name  string
		rel   config.Release
		opts  Options
		env   []string
		build func(r *testRepo)
		want  want
	}{
		// No tag yet: start from the initial version.
		{name: "no tag, feat", build: func(r *testRepo) { r.c("chore: init", "feat: login") },
			want: want{version: "0.1.0", bump: "minor", new: true, commits: 2, branch: "main"}},
		{name: "no tag, fix", build: func(r *testRepo) { r.c("fix: typo") },
			want: want{version: "0.0.1", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "no tag, nothing releasable", build: func(r *testRepo) { r.c("initial commit", "chore: ci") },
			want: want{version: "0.0.0", bump: "none", commits: 2, branch: "main"}},
		{name: "no tag, initial version 1.0.0", rel: config.Release{InitialVersion: "1.0.0"}, build: func(r *testRepo) { r.c("feat: x") },
			want: want{version: "1.1.0", bump: "minor", new: true, commits: 1, branch: "main"}},

		// Every commit form.
		{name: "fix", build: released("v1.2.3", "fix: crash on empty cart"),
			want: want{version: "1.2.4", previous: "1.2.3", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "perf", build: released("v1.2.3", "perf: cache prices"),
			want: want{version: "1.2.4", previous: "1.2.3", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "feat", build: released("v1.2.3", "feat: wish list"),
			want: want{version: "1.3.0", previous: "1.2.3", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "feat with scope", build: released("v1.2.3", "feat(cart): wish list"),
			want: want{version: "1.3.0", previous: "1.2.3", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "upper-case type", build: released("v1.2.3", "Feat: wish list"),
			want: want{version: "1.3.0", previous: "1.2.3", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "feat!", build: released("v1.2.3", "feat!: drop v1 routes"),
			want: want{version: "2.0.0", previous: "1.2.3", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "fix(scope)!", build: released("v1.2.3", "fix(api)!: reject bad ids"),
			want: want{version: "2.0.0", previous: "1.2.3", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "BREAKING CHANGE footer", build: released("v1.2.3", "refactor: ids\n\nBody.\n\nBREAKING CHANGE: ids are strings"),
			want: want{version: "2.0.0", previous: "1.2.3", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "BREAKING-CHANGE footer", build: released("v1.2.3", "fix: ids\n\nBREAKING-CHANGE: ids are strings\nRefs: #12"),
			want: want{version: "2.0.0", previous: "1.2.3", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "lower-case breaking change is not a footer", build: released("v1.2.3", "fix: ids\n\nbreaking change: not really"),
			want: want{version: "1.2.4", previous: "1.2.3", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "BREAKING CHANGE inside a line is not a footer", build: released("v1.2.3", "fix: ids\n\nno BREAKING CHANGE: here"),
			want: want{version: "1.2.4", previous: "1.2.3", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "other types bump nothing", build: released("v1.2.3", "docs: readme", "chore: deps", "ci: cache", "test: more", "style: fmt", "refactor: split", "build: go 1.26", "revert: x"),
			want: want{version: "1.2.3", previous: "1.2.3", bump: "none", commits: 8, branch: "main"}},
		{name: "the largest bump wins", build: released("v1.2.3", "fix: a", "feat: b", "fix: c", "docs: d"),
			want: want{version: "1.3.0", previous: "1.2.3", bump: "minor", new: true, commits: 4, branch: "main"}},
		{name: "commits before the tag do not count", build: func(r *testRepo) {
			r.c("feat!: big", "feat: x")
			r.tag("v1.0.0")
			r.c("fix: y")
		}, want: want{version: "1.0.1", previous: "1.0.0", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "the newest tag counts, not an older one", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.c("feat: b")
			r.tag("light:v1.1.0")
			r.c("fix: c")
		}, want: want{version: "1.1.1", previous: "1.1.0", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "HEAD is the release", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.4.0")
		}, want: want{version: "1.4.0", previous: "1.4.0", bump: "none", atTag: true, branch: "main"}},

		// Malformed messages bump nothing.
		{name: "malformed headers", build: released("v1.2.3", "feat:no space", "feat add x", "feat(: x", "feat(): x", ": x", "feat: ", "fix(api x", "(fix): x", "1fix: x", "\n\n"),
			want: want{version: "1.2.3", previous: "1.2.3", bump: "none", commits: 10, branch: "main"}},
		{name: "malformed header with a BREAKING CHANGE footer", build: released("v1.2.3", "Update the API\n\nBREAKING CHANGE: ids are strings"),
			want: want{version: "2.0.0", previous: "1.2.3", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "leading blank lines and CRLF", build: released("v1.2.3", "\r\n\nfeat: windows\r\n"),
			want: want{version: "1.3.0", previous: "1.2.3", bump: "minor", new: true, commits: 1, branch: "main"}},

		// 0.x
		{name: "0.x: breaking bumps minor", build: released("v0.3.1", "feat!: new api"),
			want: want{version: "0.4.0", previous: "0.3.1", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "0.x: breaking footer bumps minor", build: released("v0.3.1", "fix: x\n\nBREAKING CHANGE: y"),
			want: want{version: "0.4.0", previous: "0.3.1", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "0.x: major_on_zero goes to 1.0.0", rel: config.Release{MajorOnZero: true}, build: released("v0.3.1", "feat!: new api"),
			want: want{version: "1.0.0", previous: "0.3.1", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "0.x: --major-on-zero flag", opts: Options{MajorOnZero: &trueV}, build: released("v0.3.1", "feat!: new api"),
			want: want{version: "1.0.0", previous: "0.3.1", bump: "major", new: true, commits: 1, branch: "main"}},
		{name: "0.x: feat", build: released("v0.3.1", "feat: x"),
			want: want{version: "0.4.0", previous: "0.3.1", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "0.x: fix", build: released("v0.3.1", "fix: x"),
			want: want{version: "0.3.2", previous: "0.3.1", bump: "patch", new: true, commits: 1, branch: "main"}},

		// Configured types.
		{name: "configured patch type", rel: config.Release{Bump: map[string]string{"refactor": "patch", "deps": "minor"}}, build: released("v1.2.3", "refactor: split"),
			want: want{version: "1.2.4", previous: "1.2.3", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "configured minor type", rel: config.Release{Bump: map[string]string{"deps": "minor"}}, build: released("v1.2.3", "fix: a", "deps: go-git 5.19"),
			want: want{version: "1.3.0", previous: "1.2.3", bump: "minor", new: true, commits: 2, branch: "main"}},
		{name: "feat configured to none", rel: config.Release{Bump: map[string]string{"feat": "none"}}, build: released("v1.2.3", "feat: a"),
			want: want{version: "1.2.3", previous: "1.2.3", bump: "none", commits: 1, branch: "main"}},

		// Prefixes and tags that are not versions.
		{name: "custom prefix", rel: config.Release{Branch: "main", TagPrefix: "release/"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("release/1.0.0")
			r.c("feat: b")
			r.tag("v9.0.0") // not a version tag under this prefix
			r.c("fix: c")
		}, want: want{version: "1.1.0", tag: "release/1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 2, branch: "main",
			ignored: []string{"v9.0.0"}}},
		{name: "empty prefix", rel: config.Release{Branch: "main", TagPrefix: ""}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("2.0.0")
			r.c("fix: c")
		}, want: want{version: "2.0.1", tag: "2.0.1", previous: "2.0.0", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "non-semver tags are ignored and reported", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.c("feat: b")
			r.tag("v1.1")
			r.c("fix: c")
			r.tag("light:v01.1.1")
			r.tag("1.1.1")
			r.tag("deployed-prod") // not version-like: not reported
		}, want: want{version: "1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 2, branch: "main",
			ignored: []string{"1.1.1", "v01.1.1", "v1.1"}}},
		{name: "a non-semver tag on HEAD is reported", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.c("fix: b")
			r.tag("v1.0.1.1")
		}, want: want{version: "1.0.1", previous: "1.0.0", bump: "patch", new: true, commits: 1, branch: "main", ignored: []string{"v1.0.1.1"}}},
		{name: "prerelease tags are not releases", build: func(r *testRepo) {
			r.c("fix: a")
			r.tag("v1.0.0")
			r.c("feat: b")
			r.tag("v1.1.0-rc.1")
			r.c("fix: c")
		}, want: want{version: "1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 2, branch: "main"}},

		// History shapes.
		{name: "tags on another branch do not count", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.branch("other", "main")
			r.c("feat: b")
			r.tag("v1.1.0")
			r.c("feat!: c")
			r.tag("v2.0.0")
			r.checkout("main")
			r.c("fix: d")
		}, want: want{version: "1.0.1", previous: "1.0.0", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "merge commit brings the branch's commits", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.branch("feature", "main")
			r.c("feat: search")
			r.checkout("main")
			r.c("fix: typo")
			r.commitOn("main", "Merge branch 'feature'", r.tip("feature"))
		}, want: want{version: "1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 3, branch: "main"}},
		{name: "merge of a branch forked before the release", build: func(r *testRepo) {
			r.c("chore: init", "docs: a")
			r.branch("feature", "main")
			r.c("feat: search")
			r.checkout("main")
			r.c("fix: b")
			r.tag("v1.0.0")
			r.c("docs: c")
			r.commitOn("main", "Merge pull request #3 from acme/feature", r.tip("feature"))
		}, // feat: search, docs: c and the merge; not init, a or b.
			want: want{version: "1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 3, branch: "main"}},
		{name: "merged release tag from a maintenance branch", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.branch("release-1.0", "main")
			r.c("fix: hot")
			r.tag("v1.0.1")
			r.checkout("main")
			r.c("feat: b")
			r.tag("v1.1.0")
			r.c("fix: c")
			r.commitOn("main", "Merge branch 'release-1.0'", r.tip("release-1.0"))
		}, want: want{version: "1.1.1", previous: "1.1.0", bump: "patch", new: true, commits: 2, branch: "main"}},

		// Prereleases on other branches.
		{name: "rc on a feature branch", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("feature/login", "main")
			r.c("feat: login")
		}, want: want{version: "1.3.0-rc.1", previous: "1.2.3", bump: "minor", new: true, commits: 1, branch: "feature/login"}},
		{name: "rc counts the existing rc tags of that version", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("feature/login", "main")
			r.c("feat: login")
			r.tag("v1.3.0-rc.1")
			r.c("fix: x")
			r.tag("v1.3.0-rc.3")
			r.tag("light:v1.4.0-rc.7") // another version
			r.c("fix: y")
		}, want: want{version: "1.3.0-rc.4", previous: "1.2.3", bump: "minor", new: true, commits: 3, branch: "feature/login"}},
		{name: "rc already on HEAD", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("next", "main")
			r.c("feat: b")
			r.tag("v1.3.0-rc.1")
			r.c("fix: c")
			r.tag("v1.3.0-rc.2")
		}, want: want{version: "1.3.0-rc.2", previous: "1.2.3", bump: "minor", atTag: true, commits: 2, branch: "next"}},
		{name: "rc with nothing releasable is a patch", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("docs", "main")
			r.c("docs: more")
		}, want: want{version: "1.2.4-rc.1", previous: "1.2.3", bump: "patch", new: true, commits: 1, branch: "docs"}},
		{name: "rc with no tag", build: func(r *testRepo) {
			r.c("chore: init")
			r.branch("dev", "main")
			r.c("feat: a")
		}, want: want{version: "0.1.0-rc.1", bump: "minor", new: true, commits: 2, branch: "dev"}},
		{name: "branch-style prerelease", rel: config.Release{Prerelease: "branch"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("Feature/Login_Page", "main")
			r.c("fix: login")
			r.tag("v1.2.4-feature-login-page.1")
			r.c("fix: again")
		}, want: want{version: "1.2.4-feature-login-page.2", previous: "1.2.3", bump: "patch", new: true, commits: 2, branch: "Feature/Login_Page"}},
		{name: "a stable tag on HEAD of another branch is that release", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.2.3")
			r.branch("feature", "main")
		}, want: want{version: "1.2.3", previous: "1.2.3", bump: "none", atTag: true, branch: "feature"}},
		{name: "custom release branch", rel: config.Release{Branch: "trunk", TagPrefix: "v"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.c("feat: b")
		}, want: want{version: "1.1.0-rc.1", previous: "1.0.0", bump: "minor", new: true, commits: 1, branch: "main"}},

		// Where the branch comes from.
		{name: "--branch overrides HEAD", opts: Options{Branch: "main"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.branch("work", "main")
			r.c("feat: b")
		}, want: want{version: "1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 1, branch: "main"}},
		{name: "detached HEAD at the release branch's tip", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.c("fix: b")
			r.branch("other", "main")
			r.detach(r.tip("main"))
		}, want: want{version: "1.0.1", previous: "1.0.0", bump: "patch", new: true, commits: 1, branch: "main"}},
		{name: "detached HEAD on no branch", build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			h := r.c("fix: b")
			r.c("fix: c")
			r.detach(h)
		}, want: want{version: "1.0.1-rc.1", previous: "1.0.0", bump: "patch", new: true, commits: 1, branch: ""}},
		{name: "GitHub pull request", env: []string{"GITHUB_REF", "refs/pull/42/merge", "GITHUB_HEAD_REF", "feature/x"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			h := r.c("feat: b")
			r.detach(h)
		}, want: want{version: "1.1.0-rc.1", previous: "1.0.0", bump: "minor", new: true, commits: 1, branch: "feature/x", pr: 42}},
		{name: "GitHub push to main", env: []string{"GITHUB_REF", "refs/heads/main"}, build: func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			h := r.c("feat: b")
			r.c("feat: c")
			r.detach(h)
		}, want: want{version: "1.1.0", previous: "1.0.0", bump: "minor", new: true, commits: 1, branch: "main"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, storage := range storages(t) {
				t.Run(storage.name, func(t *testing.T) {
					r := newTestRepo(t)
					tc.build(r)
					storage.pack(t, r)
					o := tc.opts
					o.Release = tc.rel
					o.Getenv = env(tc.env...)
					v, err := r.open(o).Next()
					if err != nil {
						t.Fatal(err)
					}
					w := tc.want
					if w.tag == "" {
						w.tag = "v" + w.version
					}
					prev := ""
					if v.Previous != nil {
						prev = v.Previous.String()
					}
					var ignored []string
					for _, i := range v.Ignored {
						ignored = append(ignored, i.Name)
						if !strings.Contains(i.Why, "not a version tag") || len(i.Commit) != 7 {
							t.Errorf("ignored tag %+v: want a reason and a short commit", i)
						}
					}
					got := want{version: v.Version.String(), tag: v.Tag, previous: prev, bump: v.Bump.String(), new: v.New, atTag: v.AtTag,
						commits: len(v.Commits), branch: v.Branch, ignored: ignored, pr: v.PR}
					if got.version != w.version || got.tag != w.tag || got.previous != w.previous || got.bump != w.bump || got.new != w.new ||
						got.atTag != w.atTag || got.commits != w.commits || got.branch != w.branch || strings.Join(got.ignored, ",") != strings.Join(w.ignored, ",") || got.pr != w.pr {
						t.Errorf("\ngot  %+v\nwant %+v", got, w)
					}
					if v.CommitCount != len(v.Commits) || v.Head != r.headHash().String() || v.Prerelease != (v.Version.Prerelease() != "") {
						t.Errorf("version %+v", v)
					}
				})
			}
		})
	}
}

// storage is a way the same history can be stored: loose objects as
// written, one pack written by go-git, or what git gc makes of it (packed
// refs, deltas, a commit graph) when git is installed.
type storage struct {
	name string
	pack func(t *testing.T, r *testRepo)
}

func storages(t *testing.T) []storage {
	s := []storage{
		{"loose", func(*testing.T, *testRepo) {}},
		{"packed", func(t *testing.T, r *testRepo) { r.must(r.git.RepackObjects(&git.RepackConfig{})) }},
	}
	if _, err := exec.LookPath("git"); err == nil {
		s = append(s, storage{"git-gc", func(t *testing.T, r *testRepo) {
			cmd := exec.Command("git", "-c", "gc.auto=0", "-c", "core.commitGraph=true", "gc", "--aggressive", "--prune=now", "-q")
			cmd.Dir = r.dir
			cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git gc: %v\n%s", err, out)
			}
		}})
	}
	return s
}

// released builds a repository whose HEAD is tagged tag on main, then
// commits msgs on top.
func released(tag string, msgs ...string) func(r *testRepo) {
	return func(r *testRepo) {
		r.c("chore: init")
		r.tag(tag)
		r.c(msgs...)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, Options{Getenv: env()})
	if !errors.Is(err, ErrNotRepository) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "git init") {
		t.Errorf("not a repository: %v", err)
	}

	r := newTestRepo(t)
	_, err = Open(r.dir, Options{Getenv: env()})
	if !errors.Is(err, ErrNoCommits) || !strings.Contains(err.Error(), "no commits yet") {
		t.Errorf("empty repository: %v", err)
	}

	// A subdirectory of the work tree finds the repository.
	r.c("feat: a")
	sub := filepath.Join(r.dir, "services", "web")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	repo, err := Open(sub, Options{Getenv: env()})
	if err != nil {
		t.Fatal(err)
	}
	if repo.Root() != r.dir {
		t.Errorf("Root = %s, want %s", repo.Root(), r.dir)
	}
}

// TestShallowClone: history that stops before any version tag cannot give
// a version; history that reaches one can.
func TestShallowClone(t *testing.T) {
	r := newTestRepo(t)
	r.c("feat: a")
	old := r.c("fix: b")
	r.tag("v1.0.0")
	boundary := r.c("feat: c")
	r.c("fix: d")

	// Cut the history below boundary, as `git clone --depth 2` does.
	r.must(r.git.Storer.SetShallow([]plumbing.Hash{boundary}))
	s := old.String()
	if err := os.Remove(filepath.Join(r.dir, ".git", "objects", s[:2], s[2:])); err != nil {
		t.Fatal(err)
	}
	_, err := r.open(Options{}).Next()
	if !errors.Is(err, ErrShallow) || !strings.Contains(err.Error(), "fetch-depth: 0") {
		t.Errorf("shallow clone without the tag: %v", err)
	}

	// With the tag inside the clone, the missing parents are older than it.
	r2 := newTestRepo(t)
	first := r2.c("feat: a")
	r2.c("fix: b")
	r2.tag("v1.0.0")
	r2.c("feat: c")
	r2.must(r2.git.Storer.SetShallow([]plumbing.Hash{r2.tip("main")}))
	s = first.String()
	if err := os.Remove(filepath.Join(r2.dir, ".git", "objects", s[:2], s[2:])); err != nil {
		t.Fatal(err)
	}
	v, err := r2.open(Options{}).Next()
	if err != nil || v.Version.String() != "1.1.0" {
		t.Errorf("shallow clone with the tag: %v %v", v, err)
	}
}

func TestPrereleaseLabel(t *testing.T) {
	for _, tc := range []struct{ style, branch, want string }{
		{"rc", "feature/x", "rc"},
		{"branch", "feature/x", "feature-x"},
		{"branch", "Feature/Login_Page", "feature-login-page"},
		{"branch", "--weird..name--", "weird-name"},
		{"branch", "1234", "branch-1234"},
		{"branch", "007", "branch-007"},
		{"branch", "???", "branch"},
		{"branch", "", "detached"},
		{"branch", strings.Repeat("abcdefghij", 10), strings.Repeat("abcdefghij", 4)},
		{"branch", "émoji-☃-branch", "moji-branch"},
	} {
		if got := PrereleaseLabel(tc.style, tc.branch); got != tc.want {
			t.Errorf("PrereleaseLabel(%q, %q) = %q, want %q", tc.style, tc.branch, got, tc.want)
		}
	}
}
