package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestTarContextFollowsDockerignore(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"main.go":           "package main",
		"debug.log":         "x",
		"logs/a.log":        "x",
		"keep.log":          "x",
		"node_modules/x.js": "x",
		"sub/Dockerfile":    "FROM scratch\n",
		".dockerignore":     "*.log\n!keep.log\nnode_modules\nlogs\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := tarContext(&buf, dir, filepath.Join(dir, "sub", "Dockerfile"), ".gantry.Dockerfile"); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeDir {
			names = append(names, h.Name)
		}
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != ".dockerignore .gantry.Dockerfile keep.log main.go sub/Dockerfile" {
		t.Fatalf("context holds %s", got)
	}
}
