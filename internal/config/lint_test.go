package config

import (
	"path/filepath"
	"testing"
)

func TestLintSection(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.lint.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l := f.Lint
	if l.FailOn != LintWarning || len(l.Disable) != 1 || l.Severity["GL2006"] != LintWarning {
		t.Errorf("lint: %+v", l)
	}
	// The lint package points at an id it does not know by this line.
	if l.Line("GL1009") != 5 || l.Line("GL1003") != 6 || l.Line("GL0000") != 0 {
		t.Errorf("lines: GL1009 %d, GL1003 %d", l.Line("GL1009"), l.Line("GL1003"))
	}
	m, err := Load(filepath.Join("testdata", "good.minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Lint.FailOn != LintError {
		t.Errorf("default fail_on %q", m.Lint.FailOn)
	}
}
