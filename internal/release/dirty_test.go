package release

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gantryhq/gantry/internal/config"
)

func TestChanged(t *testing.T) {
	dir := t.TempDir()
	g, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := g.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.go", "package main\n")
	write("gantry.yaml", "project: shop\n")
	for _, f := range []string{"main.go", "gantry.yaml"} {
		if _, err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "Dev", Email: "dev@example.com", When: epoch}
	if _, err := w.Commit("feat: first", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatal(err)
	}
	changed := func() []string {
		t.Helper()
		r, err := Open(dir, Options{Release: config.DefaultRelease()})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		c, err := r.Changed()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := changed(); len(c) != 0 {
		t.Fatalf("clean tree: changed %v", c)
	}
	// Untracked files, gantry's state directory among them, do not count.
	write(".gantry/gantry.db", "state")
	write("bin/app", "binary")
	if c := changed(); len(c) != 0 {
		t.Fatalf("untracked files only: changed %v", c)
	}
	write("main.go", "package main // edited\n")
	if c := changed(); !reflect.DeepEqual(c, []string{"main.go"}) {
		t.Fatalf("edited main.go: changed %v", c)
	}
	write("new.go", "package main\n")
	if _, err := w.Add("new.go"); err != nil {
		t.Fatal(err)
	}
	if c := changed(); !reflect.DeepEqual(c, []string{"main.go", "new.go"}) {
		t.Fatalf("edited main.go, staged new.go: changed %v", c)
	}
}
