package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// gitRepo is a real repository with a work tree, committed to with go-git
// at fixed times.
type gitRepo struct {
	t    *testing.T
	dir  string
	git  *git.Repository
	tick int
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/main")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{"git@github.com:acme/shop.git"}}); err != nil {
		t.Fatal(err)
	}
	return &gitRepo{t: t, dir: dir, git: g}
}

func (r *gitRepo) write(name, content string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) commit(msgs ...string) {
	r.t.Helper()
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, msg := range msgs {
		r.tick++
		r.write("log.txt", fmt.Sprintf("change %d\n", r.tick))
		if _, err := wt.Add("log.txt"); err != nil {
			r.t.Fatal(err)
		}
		sig := &object.Signature{Name: "Dev", Email: "dev@example.com", When: time.Date(2024, 5, 1, 12, r.tick, 0, 0, time.UTC)}
		if _, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *gitRepo) tag(name string) {
	r.t.Helper()
	head, err := r.git.Head()
	if err != nil {
		r.t.Fatal(err)
	}
	sig := &object.Signature{Name: "Rel", Email: "rel@example.com", When: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := r.git.CreateTag(name, head.Hash(), &git.CreateTagOptions{Tagger: sig, Message: name}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) head() string {
	h, err := r.git.Head()
	if err != nil {
		r.t.Fatal(err)
	}
	return h.Hash().String()
}

// releaseEnv clears what CI would set, so that tests see only their repository.
func releaseEnv(t *testing.T) {
	for _, k := range []string{"GITHUB_REF", "GITHUB_HEAD_REF", "GITHUB_OUTPUT", "GANTRY_FILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("GIT_COMMITTER_NAME", "Gantry CLI Test")
	t.Setenv("GIT_COMMITTER_EMAIL", "cli@example.com")
}

// TestVersionWithoutGantryYAML: the version commands read the repository of
// the current directory when there is no gantry.yaml; Docker is not needed,
// and a dirty work tree does not matter.
func TestVersionWithoutGantryYAML(t *testing.T) {
	releaseEnv(t)
	r := newGitRepo(t)
	r.commit("feat: first")
	r.tag("v1.2.3")
	r.commit("fix(cart): empty cart", "feat: wish list")
	r.write("log.txt", "uncommitted\n")
	r.write("untracked.txt", "new\n")
	t.Chdir(r.dir)

	out, errb, code := run(t, "", "version")
	if code != 0 || out != "1.3.0\n" || errb != "" {
		t.Fatalf("version: exit %d stdout %q stderr %q", code, out, errb)
	}

	out, _, code = run(t, "", "version", "--output", "json")
	var v struct {
		Version, Tag, Previous, Bump, Branch, Commit string
		New, Tagged                                  bool
		Commits                                      int
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 {
		t.Fatalf("json: %v exit %d\n%s", err, code, out)
	}
	if v.Version != "1.3.0" || v.Tag != "v1.3.0" || v.Previous != "1.2.3" || v.Bump != "minor" || v.Branch != "main" ||
		!v.New || v.Tagged || v.Commits != 2 || v.Commit != r.head() {
		t.Errorf("json: %+v", v)
	}

	out, _, code = run(t, "", "changelog")
	if code != 0 || !strings.HasPrefix(out, "## 1.3.0 (2024-05-01)\n\nChanges since v1.2.3.\n") ||
		!strings.Contains(out, "### Features\n\n- wish list (") || !strings.Contains(out, "### Fixes\n\n- **cart:** empty cart (") {
		t.Errorf("changelog: exit %d\n%s", code, out)
	}

	// The work tree is as it was.
	if b, _ := os.ReadFile(filepath.Join(r.dir, "log.txt")); string(b) != "uncommitted\n" {
		t.Errorf("work tree changed: %q", b)
	}
}

func TestVersionTag(t *testing.T) {
	releaseEnv(t)
	r := newGitRepo(t)
	r.commit("feat: first")
	r.tag("v1.2.3")
	r.commit("feat!: new api")

	out, errb, code := run(t, "", "--repo", r.dir, "version", "--tag")
	if code != 0 || out != "2.0.0\n" || !strings.Contains(errb, "tagged v2.0.0 at "+r.head()[:7]) || !strings.Contains(errb, "git push origin v2.0.0") {
		t.Fatalf("version --tag: exit %d stdout %q stderr %q", code, out, errb)
	}
	ref, err := r.git.Tag("v2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	tag, err := r.git.TagObject(ref.Hash())
	if err != nil || tag.Target.String() != r.head() || tag.Tagger.Name != "Gantry CLI Test" || !strings.Contains(tag.Message, "### Breaking changes") {
		t.Fatalf("tag object %+v %v", tag, err)
	}

	// Again on the same commit: nothing to do, exit 0.
	out, errb, code = run(t, "", "--repo", r.dir, "version", "--tag", "--output", "json")
	if code != 0 || !strings.Contains(out, `"at_tag": true`) || !strings.Contains(out, `"tagged": false`) {
		t.Fatalf("second --tag: exit %d %s %s", code, out, errb)
	}

	// Nothing releasable since: no tag, and it says why.
	r.commit("docs: readme")
	out, errb, code = run(t, "", "--repo", r.dir, "version", "--tag")
	if code != 0 || out != "2.0.0\n" || !strings.Contains(errb, "nothing to release since v2.0.0: 1 commit(s)") || !strings.Contains(errb, "no tag created") {
		t.Fatalf("nothing to release: exit %d %q %q", code, out, errb)
	}
}

// TestVersionTagExists: a tag of the version on another commit is never
// moved; the command refuses with exit code 2 and changes nothing.
func TestVersionTagExists(t *testing.T) {
	releaseEnv(t)
	r := newGitRepo(t)
	r.commit("feat: first")
	r.tag("v1.0.0")
	r.commit("fix: on another line")
	r.tag("v1.0.1")
	other := r.head()
	// main goes back to v1.0.0 and gets its own fix: its next version is
	// v1.0.1 too, which exists elsewhere.
	wt, _ := r.git.Worktree()
	ref, _ := r.git.Tag("v1.0.0")
	first, _ := r.git.TagObject(ref.Hash())
	if err := wt.Reset(&git.ResetOptions{Commit: first.Target, Mode: git.HardReset}); err != nil {
		t.Fatal(err)
	}
	r.commit("fix: here")

	out, errb, code := run(t, "", "--repo", r.dir, "version", "--tag")
	if code != ExitUsage || !strings.Contains(errb, "tag v1.0.1 already exists on commit "+other[:7]) || !strings.Contains(errb, "never moves a release tag") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errb)
	}
	ref, _ = r.git.Tag("v1.0.1")
	if peeled, _ := r.git.TagObject(ref.Hash()); peeled.Target.String() != other {
		t.Error("v1.0.1 moved")
	}
}

func TestReleaseBadInput(t *testing.T) {
	releaseEnv(t)
	notRepo := t.TempDir()
	r := newGitRepo(t)
	r.commit("feat: a")
	bad := filepath.Join(t.TempDir(), "gantry.yaml")
	if err := os.WriteFile(bad, []byte("project: shop\nenvironments: {staging: }\nrelease:\n  prerelease: alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--repo", notRepo, "version"}, "is not in a git repository"},
		{[]string{"--repo", notRepo, "tags"}, "is not in a git repository"},
		{[]string{"--repo", notRepo, "changelog", "-o", "json"}, "is not in a git repository"},
		{[]string{"--repo", r.dir, "tags", "--output", "xml"}, `--output "xml": use text, json, github or bake`},
		{[]string{"--repo", r.dir, "version", "--output", "github"}, `--output "github": use text or json`},
		{[]string{"--repo", r.dir, "tags", "--created", "yesterday"}, `--created "yesterday"`},
		{[]string{"--repo", r.dir, "tags", "--label", "novalue"}, `--label "novalue": write KEY=VALUE`},
		{[]string{"--repo", r.dir, "tags", "--image", "=x"}, `--image "=x"`},
		{[]string{"--repo", r.dir, "tags", "--image", "Upper/Case"}, `image "Upper/Case": write a repository in lower case`},
		{[]string{"--repo", r.dir, "tags", "--output", "bake"}, "a bake file needs images"},
		{[]string{"--repo", r.dir, "tags", "--pr", "-3"}, "pull request number -3"},
		{[]string{"--file", bad, "version"}, `gantry.yaml:4: release.prerelease: "alpha" is not a prerelease style`},
		{[]string{"--file", filepath.Join(notRepo, "gantry.yaml"), "version"}, "file not found"},
		{[]string{"--repo", r.dir, "version", "extra"}, "unknown command"},
	} {
		out, errb, code := run(t, "", tc.args...)
		if code != ExitUsage || !strings.HasPrefix(errb, "gantry: ") || !strings.Contains(errb, tc.msg) || strings.Contains(errb, "usage: ") {
			t.Errorf("%v: exit %d stdout %q stderr %q; want exit 2 saying %q", tc.args, code, out, errb, tc.msg)
		}
	}
	// With --output json the error is a JSON document too.
	out, _, _ := run(t, "", "--repo", notRepo, "version", "-o", "json")
	var e struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.ExitCode != 2 || !strings.Contains(e.Error, "git repository") {
		t.Errorf("json error %q", out)
	}
}

// TestTagsFromGantryYAML: the release section and the services' images of
// gantry.yaml, in every output format.
func TestTagsFromGantryYAML(t *testing.T) {
	releaseEnv(t)
	r := newGitRepo(t)
	r.write("gantry.yaml", `project: shop
services:
  web: { image: "127.0.0.1:5000/shop/web:1.0.0" }
  api: { image: 127.0.0.1:5000/shop/api }
  db: {}
environments:
  staging:
release:
  tag_prefix: release/
  licenses: MIT
`)
	r.commit("feat: first")
	r.tag("release/0.4.0")
	r.commit("feat(web): dark mode")
	sha := r.head()[:7]

	out, errb, code := run(t, r.dir, "tags")
	want := "version: 0.5.0 (release)\ntags:\n" +
		"  127.0.0.1:5000/shop/api:0.5.0\n  127.0.0.1:5000/shop/api:0.5\n  127.0.0.1:5000/shop/api:latest\n  127.0.0.1:5000/shop/api:main\n  127.0.0.1:5000/shop/api:sha-" + sha + "\n" +
		"  127.0.0.1:5000/shop/web:0.5.0\n  127.0.0.1:5000/shop/web:0.5\n  127.0.0.1:5000/shop/web:latest\n  127.0.0.1:5000/shop/web:main\n  127.0.0.1:5000/shop/web:sha-" + sha + "\n" +
		"labels:\n  org.opencontainers.image.created=2024-05-01T12:02:00Z\n  org.opencontainers.image.description=\n  org.opencontainers.image.licenses=MIT\n" +
		"  org.opencontainers.image.revision=" + r.head() + "\n  org.opencontainers.image.source=https://github.com/acme/shop\n" +
		"  org.opencontainers.image.title=shop\n  org.opencontainers.image.url=https://github.com/acme/shop\n  org.opencontainers.image.version=0.5.0\n"
	if code != 0 || out != want {
		t.Fatalf("tags: exit %d %s\n got:\n%s\nwant:\n%s", code, errb, out, want)
	}

	out, _, code = run(t, r.dir, "version", "-o", "json")
	if code != 0 || !strings.Contains(out, `"tag": "release/0.5.0"`) {
		t.Errorf("version: %s", out)
	}

	out, _, code = run(t, r.dir, "tags", "--image", "ghcr.io/acme/shop", "--pr", "12", "--label", "com.example.team=web", "--created", "0", "-o", "json")
	var s struct {
		Version string
		Tags    []string
		Images  []struct{ Name string }
		Labels  map[string]string
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || code != 0 {
		t.Fatalf("json: %v exit %d\n%s", err, code, out)
	}
	if s.Version != "0.5.0" || strings.Join(s.Tags, " ") != "0.5.0 0.5 latest pr-12 sha-"+sha || len(s.Images) != 1 ||
		s.Labels["com.example.team"] != "web" || s.Labels["org.opencontainers.image.created"] != "1970-01-01T00:00:00Z" {
		t.Errorf("json: %+v", s)
	}

	out, _, code = run(t, r.dir, "tags", "-o", "bake")
	var bake struct {
		Group  map[string]struct{ Targets []string }
		Target map[string]struct{ Tags []string }
	}
	if err := json.Unmarshal([]byte(out), &bake); err != nil || code != 0 {
		t.Fatalf("bake: %v exit %d\n%s", err, code, out)
	}
	if strings.Join(bake.Group["default"].Targets, ",") != "api,web" || len(bake.Target["web"].Tags) != 5 {
		t.Errorf("bake: %+v", bake)
	}

	// github: printed without $GITHUB_OUTPUT, appended to it with.
	out, _, code = run(t, r.dir, "tags", "-o", "github")
	if code != 0 || !strings.HasPrefix(out, "version=0.5.0\ntags<<gantry_eof\n127.0.0.1:5000/shop/api:0.5.0\n") || !strings.Contains(out, "\nlabels<<gantry_eof\norg.opencontainers.image.created=") {
		t.Errorf("github to stdout:\n%s", out)
	}
	ghOut := filepath.Join(t.TempDir(), "github_output")
	if err := os.WriteFile(ghOut, []byte("earlier=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GITHUB_OUTPUT", ghOut)
	stdout, errb, code := run(t, r.dir, "tags", "-o", "github")
	written, _ := os.ReadFile(ghOut)
	if code != 0 || stdout != "" || !strings.Contains(errb, "wrote version, tags (10) and labels (8) to $GITHUB_OUTPUT") ||
		!strings.HasPrefix(string(written), "earlier=1\nversion=0.5.0\ntags<<gantry_eof\n") || string(written[len("earlier=1\n"):]) != out {
		t.Errorf("github to $GITHUB_OUTPUT: exit %d %q %q\n%s", code, stdout, errb, written)
	}
}

// TestTagsOnABranch: a pull request build in GitHub Actions gets a
// prerelease, its pr-N tag and no floating tags.
func TestTagsOnABranch(t *testing.T) {
	releaseEnv(t)
	r := newGitRepo(t)
	r.commit("feat: first")
	r.tag("v1.4.2")
	r.commit("fix: a bug")
	t.Setenv("GITHUB_REF", "refs/pull/7/merge")
	t.Setenv("GITHUB_HEAD_REF", "Fix/The_Bug")
	out, errb, code := run(t, "", "--repo", r.dir, "tags", "--image", "web=127.0.0.1:5000/shop/web")
	sha := r.head()[:7]
	if code != 0 || !strings.HasPrefix(out, "version: 1.4.3-rc.1 (prerelease)\ntags:\n  127.0.0.1:5000/shop/web:1.4.3-rc.1\n  127.0.0.1:5000/shop/web:pr-7\n  127.0.0.1:5000/shop/web:sha-"+sha+"\nlabels:\n") {
		t.Errorf("exit %d %s\n%s", code, errb, out)
	}
	out, _, _ = run(t, "", "--repo", r.dir, "version", "--branch", "main")
	if out != "1.4.3\n" {
		t.Errorf("--branch main: %q", out)
	}
}
