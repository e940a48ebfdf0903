package release

import (
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// testRepo builds real git repositories (go-git PlainInit on disk) with
// commits at fixed times, so that hashes, and so golden files, are stable.
// Commits are written as objects, without a work tree: history is all the
// release package reads.
type testRepo struct {
	tb   testing.TB
	dir  string
	git  *git.Repository
	tree plumbing.Hash
	tick int
}

var epoch = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestRepo(tb testing.TB) *testRepo {
	tb.Helper()
	return newTestRepoIn(tb, tb.TempDir())
}

func newTestRepoIn(tb testing.TB, dir string) *testRepo {
	tb.Helper()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		tb.Fatal(err)
	}
	r := &testRepo{tb: tb, dir: dir, git: g}
	r.must(g.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/main")))
	obj := g.Storer.NewEncodedObject()
	r.must((&object.Tree{}).Encode(obj))
	r.tree, err = g.Storer.SetEncodedObject(obj)
	r.must(err)
	return r
}

func (r *testRepo) must(err error) {
	r.tb.Helper()
	if err != nil {
		r.tb.Fatal(err)
	}
}

// tip is the commit a branch points at; zero when it has none.
func (r *testRepo) tip(branch string) plumbing.Hash {
	ref, err := r.git.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		return plumbing.ZeroHash
	}
	return ref.Hash()
}

// head is the branch HEAD is on ("" when detached).
func (r *testRepo) head() string {
	ref, err := r.git.Storer.Reference(plumbing.HEAD)
	r.must(err)
	if ref.Type() != plumbing.SymbolicReference {
		return ""
	}
	return ref.Target().Short()
}

// commitOn adds a commit to branch, on top of its tip (if any) and the
// merged commits, and moves the branch.
func (r *testRepo) commitOn(branch, msg string, merged ...plumbing.Hash) plumbing.Hash {
	r.tb.Helper()
	var parents []plumbing.Hash
	if t := r.tip(branch); !t.IsZero() {
		parents = append(parents, t)
	}
	h := r.rawCommit(msg, append(parents, merged...)...)
	r.must(r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(branch), h)))
	return h
}

// rawCommit writes a commit object with the next time stamp.
func (r *testRepo) rawCommit(msg string, parents ...plumbing.Hash) plumbing.Hash {
	r.tb.Helper()
	r.tick++
	sig := object.Signature{Name: "Dev", Email: "dev@example.com", When: epoch.Add(time.Duration(r.tick) * time.Minute)}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: r.tree, ParentHashes: parents}
	obj := r.git.Storer.NewEncodedObject()
	r.must(c.Encode(obj))
	h, err := r.git.Storer.SetEncodedObject(obj)
	r.must(err)
	return h
}

// c commits on the branch HEAD is on.
func (r *testRepo) c(msgs ...string) plumbing.Hash {
	r.tb.Helper()
	var h plumbing.Hash
	for _, m := range msgs {
		h = r.commitOn(r.head(), m)
	}
	return h
}

// branch creates a branch at the tip of from and checks it out.
func (r *testRepo) branch(name, from string) {
	r.tb.Helper()
	r.must(r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(name), r.tip(from))))
	r.checkout(name)
}

func (r *testRepo) checkout(branch string) {
	r.tb.Helper()
	r.must(r.git.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName(branch))))
}

func (r *testRepo) detach(h plumbing.Hash) {
	r.tb.Helper()
	r.must(r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, h)))
}

// headHash is the commit HEAD points at.
func (r *testRepo) headHash() plumbing.Hash {
	ref, err := r.git.Head()
	r.must(err)
	return ref.Hash()
}

// tag tags HEAD: annotated, as gantry does, unless the name starts with
// "light:".
func (r *testRepo) tag(name string) {
	r.tb.Helper()
	r.tagAt(name, r.headHash())
}

func (r *testRepo) tagAt(name string, h plumbing.Hash) {
	r.tb.Helper()
	if n, ok := strings.CutPrefix(name, "light:"); ok {
		_, err := r.git.CreateTag(n, h, nil)
		r.must(err)
		return
	}
	sig := &object.Signature{Name: "Rel", Email: "rel@example.com", When: epoch}
	_, err := r.git.CreateTag(name, h, &git.CreateTagOptions{Tagger: sig, Message: "release " + name})
	r.must(err)
}

func (r *testRepo) origin(url string) {
	r.tb.Helper()
	_, err := r.git.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{url}})
	r.must(err)
}

// env is a fixed CI environment for tests: nothing from the machine's.
func env(kv ...string) func(string) string {
	m := map[string]string{"GIT_COMMITTER_NAME": "Gantry Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func (r *testRepo) open(o Options) *Repo {
	r.tb.Helper()
	if o.Getenv == nil {
		o.Getenv = env()
	}
	if o.Now == nil {
		o.Now = func() time.Time { return epoch.Add(24 * time.Hour) }
	}
	repo, err := Open(r.dir, o)
	r.must(err)
	return repo
}
