package config

import (
	"path/filepath"
	"testing"
	"time"
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

func TestGatesSection(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.gates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// gates.lint is the lint section, written under gates.
	if f.Gates.Lint != &f.Lint || f.Lint.FailOn != LintWarning || f.Lint.Line("GL1009") != 8 {
		t.Errorf("gates.lint: %+v (line of GL1009 %d)", f.Lint, f.Lint.Line("GL1009"))
	}
	s := f.Gates.Scan
	if s == nil || s.FailOn != "critical" || !s.IgnoreUnfixed || !s.Offline || s.Timeout.D() != 2*time.Minute ||
		s.Server != "http://127.0.0.1:4954" || f.RelPath(s.CacheDir) != filepath.Join(f.Dir, ".trivy") {
		t.Errorf("gates.scan: %+v", s)
	}
	if !f.Environments["production"].RequireGates || f.Environments["staging"].RequireGates {
		t.Errorf("require_gates: %+v", f.Environments)
	}
	m, err := Load(filepath.Join("testdata", "good.minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Gates.Any() {
		t.Errorf("no gates written, got %+v", m.Gates)
	}
}
