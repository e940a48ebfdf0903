package lint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDockerfile: whatever the input, lint either reports bad input
// (ErrInput) or findings of known rules at lines of the file; it never
// panics. The seeds are the testdata Dockerfiles.
func FuzzDockerfile(f *testing.F) {
	files, _ := filepath.Glob("testdata/dockerfile/*")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("FROM a\nRUN <<EOF bash\nx\nEOF\n"))
	f.Add([]byte("# escape=`\nFROM a\nRUN a `\n b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := lintDockerfile("Dockerfile", data, false)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("error that is not ErrInput: %v", err)
			}
			return
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, f := range fs {
			if _, ok := rulesByID[f.Rule]; !ok || f.Line < 1 || f.Line > lines {
				t.Fatalf("finding %+v in a file of %d lines", f, lines)
			}
		}
	})
}

// FuzzIgnoreComment: the ignore comment reader never panics, and an ignore
// it accepts names at least one rule.
func FuzzIgnoreComment(f *testing.F) {
	for _, s := range []string{
		`gantry-lint ignore=GL1001 reason="x"`, `gantry-lint ignore=GL1001,GL1002 reason='a b'`,
		`gantry-lint ignore=GL1001 reason="unclosed`, `gantry-lint: ignore=`, `gantry-lint x`, `gantry-linter`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, _, ok, err := parseIgnoreComment(s)
		if ok && err == nil && len(ids) == 0 {
			t.Fatalf("%q: accepted with no rule", s)
		}
	})
}
