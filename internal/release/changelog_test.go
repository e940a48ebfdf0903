package release

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// shopHistory is a release and then one of every kind of commit.
func shopHistory(r *testRepo) {
	r.c("feat: first")
	r.tag("v1.2.3")
	r.c("fix(cart): empty cart crashed the checkout",
		"feat(search): search by brand",
		"perf: cache the price list",
		"docs: how to deploy",
		"refactor(api)!: ids are strings",
		"chore: bump deps\n\nBREAKING CHANGE: needs Go 1.26\nand a new go.sum",
		"Update README",
		"feat: wish list")
	r.branch("feature", "main")
	r.c("fix: merged fix")
	r.checkout("main")
	r.commitOn("main", "Merge pull request #7 from acme/feature", r.tip("feature"))
}

func TestChangelog(t *testing.T) {
	r := newTestRepo(t)
	shopHistory(r)
	cl, err := r.open(Options{}).Changelog()
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	n := 0
	for _, s := range cl.Sections {
		titles = append(titles, s.Title)
		n += len(s.Entries)
	}
	if got := strings.Join(titles, ","); got != "Breaking changes,Features,Fixes,Performance,Other" {
		t.Errorf("sections %s", got)
	}
	// Nine commits; the merge commit is not listed, the merged one is.
	if n != 9 || cl.Version != "2.0.0" || cl.Tag != "v2.0.0" || cl.PreviousTag != "v1.2.3" {
		t.Errorf("changelog %+v with %d entries", cl, n)
	}
	golden(t, "changelog.golden.md", []byte(cl.Markdown()))
}

// TestChangelogOfARelease: on a release commit, the changelog is what that
// release contains, for release notes built from the tag.
func TestChangelogOfARelease(t *testing.T) {
	r := newTestRepo(t)
	r.c("feat: a")
	r.tag("v1.0.0")
	r.c("feat: b", "fix: c")
	r.tag("v1.1.0")
	cl, err := r.open(Options{}).Changelog()
	if err != nil {
		t.Fatal(err)
	}
	if cl.Version != "1.1.0" || cl.PreviousTag != "v1.0.0" || len(cl.Sections) != 2 || cl.Sections[0].Entries[0].Subject != "b" {
		t.Errorf("changelog %+v", cl)
	}

	// Nothing releasable since the release: the other commits are listed.
	r2 := newTestRepo(t)
	r2.c("chore: a")
	r2.tag("v1.0.0")
	r2.c("chore: b")
	cl, err = r2.open(Options{}).Changelog()
	if err != nil {
		t.Fatal(err)
	}
	if md := cl.Markdown(); !strings.Contains(md, "## 1.0.0 (") || !strings.Contains(md, "### Other\n\n- chore: b (") {
		t.Errorf("markdown:\n%s", md)
	}
}

func TestCreateTag(t *testing.T) {
	r := newTestRepo(t)
	shopHistory(r)
	repo := r.open(Options{})
	created, err := repo.CreateTag()
	if err != nil || !created {
		t.Fatalf("CreateTag = %v, %v", created, err)
	}
	ref, err := r.git.Tag("v2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	obj, err := r.git.TagObject(ref.Hash())
	if err != nil {
		t.Fatalf("v2.0.0 is not an annotated tag: %v", err)
	}
	if obj.Target != r.headHash() || obj.Tagger.Name != "Gantry Test" || !obj.Tagger.When.Equal(epoch.Add(24*60*60*1e9)) ||
		!strings.HasPrefix(obj.Message, "Release 2.0.0\n\n## 2.0.0") || !strings.Contains(obj.Message, "### Breaking changes") {
		t.Errorf("tag object %+v", obj)
	}

	// Run again: HEAD is the release, nothing to do.
	again := r.open(Options{})
	v, err := again.Next()
	if err != nil || !v.AtTag || v.New || v.Version.String() != "2.0.0" {
		t.Fatalf("after tagging: %+v %v", v, err)
	}
	if created, err := again.CreateTag(); created || err != nil {
		t.Errorf("second CreateTag = %v, %v; want nothing done", created, err)
	}
}

func TestCreateTagRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(r *testRepo)
		kind  error
		msg   []string
	}{
		{"the tag exists on another branch", func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.branch("other", "main")
			r.c("fix: other")
			r.tag("v1.0.1")
			r.checkout("main")
			r.c("fix: mine")
		}, ErrTagExists, []string{"tag v1.0.1 already exists on commit", "never moves a release tag", "git tag -d v1.0.1"}},
		{"a tag path is in the way", func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			r.c("fix: b")
			r.tag("light:v1.0.1/wip")
		}, ErrInput, []string{"tag v1.0.1/wip is in the way of the new tag v1.0.1", "git tag -d v1.0.1/wip"}},
		{"a tag differing in case is in the way", func(r *testRepo) {
			r.c("feat: a")
			r.tag("v1.0.0")
			h := r.c("fix: b")
			r.tagAt("light:V1.0.1", h)
		}, ErrInput, []string{"tag V1.0.1 is in the way", "only in case"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t)
			tc.build(r)
			before := tagNames(t, r)
			created, err := r.open(Options{}).CreateTag()
			if created || !errors.Is(err, tc.kind) {
				t.Fatalf("CreateTag = %v, %v; want %v", created, err, tc.kind)
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Errorf("error %T, want *release.Error", err)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q; want it to say %q", err, m)
				}
			}
			if after := tagNames(t, r); after != before {
				t.Errorf("tags changed: %s -> %s", before, after)
			}
		})
	}
}

func TestCreateTagNothingToRelease(t *testing.T) {
	r := newTestRepo(t)
	r.c("feat: a")
	r.tag("v1.0.0")
	r.c("docs: b")
	created, err := r.open(Options{}).CreateTag()
	if created || err != nil {
		t.Errorf("CreateTag = %v, %v; want nothing done", created, err)
	}
	if got := tagNames(t, r); got != "v1.0.0" {
		t.Errorf("tags %s", got)
	}
}

func TestCreatePrereleaseTag(t *testing.T) {
	r := newTestRepo(t)
	r.c("feat: a")
	r.tag("v1.0.0")
	r.branch("next", "main")
	r.c("feat: b")
	for i, want := range []string{"v1.1.0-rc.1", "v1.1.0-rc.2"} {
		if i > 0 {
			r.c("fix: c")
		}
		repo := r.open(Options{})
		if created, err := repo.CreateTag(); !created || err != nil {
			t.Fatalf("CreateTag = %v %v", created, err)
		}
		if v, _ := repo.Next(); v.Tag != want {
			t.Errorf("tagged %s, want %s", v.Tag, want)
		}
	}
	if got := tagNames(t, r); got != "v1.0.0,v1.1.0-rc.1,v1.1.0-rc.2" {
		t.Errorf("tags %s", got)
	}
}

func tagNames(t *testing.T, r *testRepo) string {
	t.Helper()
	iter, err := r.git.Tags()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	iter.ForEach(func(ref *plumbing.Reference) error {
		names = append(names, ref.Name().Short())
		return nil
	})
	return strings.Join(names, ",")
}
