package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Gates are what a release must pass: gantry release runs them before it
// pushes, and an environment with require_gates takes only releases that
// passed them (an admin may override, with a reason that is audited).
//
//	gates:
//	  lint: { fail_on: error }            # the lint section's fields; makes lint a release gate
//	  scan: { fail_on: high, ignore_unfixed: true, ignore_file: .gantry-ignore.yaml }
//
// gates.lint takes the place of the top-level lint section (one of the two
// may be written): the settings are the same, and writing them under gates
// also makes gantry release stop on a failing lint.
type Gates struct {
	Lint *Lint `yaml:"lint" json:"lint,omitempty"`
	Scan *Scan `yaml:"scan" json:"scan,omitempty"`
}

// Any reports whether a gate is configured.
func (g Gates) Any() bool { return g.Lint != nil || g.Scan != nil }

// Scan severities, from the most to the least severe, as gantry.yaml writes them.
var ScanSeverities = []string{"critical", "high", "medium", "low", "unknown"}

// Defaults of the scan gate.
const (
	DefaultScanFailOn  = "high"
	DefaultIgnoreFile  = ".gantry-ignore.yaml"
	DefaultScanTimeout = 10 * time.Minute
)

// Scan is the vulnerability gate: Trivy on every image of a release.
type Scan struct {
	// FailOn is the least severity that fails the gate: critical, high
	// (default), medium, low or unknown.
	FailOn string `yaml:"fail_on" json:"fail_on"`
	// IgnoreUnfixed: a vulnerability with no fixed version does not fail.
	IgnoreUnfixed bool `yaml:"ignore_unfixed" json:"ignore_unfixed"`
	// IgnoreFile lists vulnerabilities to ignore, each with a reason and an
	// expiry date; relative to gantry.yaml. Default .gantry-ignore.yaml,
	// read when it exists.
	IgnoreFile string `yaml:"ignore_file" json:"ignore_file,omitempty"`
	// Server is a Trivy server (trivy server) to match against.
	Server string `yaml:"server" json:"server,omitempty"`
	// Trivy is the trivy binary: a path (relative to gantry.yaml when it
	// has a /) or a name on $PATH; default trivy.
	Trivy string `yaml:"trivy" json:"trivy,omitempty"`
	// CacheDir is Trivy's cache directory, its database in CacheDir/db;
	// relative to gantry.yaml. Default: Trivy's own (~/.cache/trivy).
	CacheDir string `yaml:"cache_dir" json:"cache_dir,omitempty"`
	// Offline uses the database in the cache as it is, never downloading.
	Offline bool `yaml:"offline" json:"offline,omitempty"`
	// Timeout bounds the scan of one image (default 10m).
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// RelPath resolves a path of gantry.yaml (ignore_file, cache_dir) against its
// directory.
func (f *File) RelPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.Dir, p)
}

// gates checks the gates section and fills in its defaults.
func (v *validator) gates(f *File) {
	g := &f.Gates
	if g.Lint != nil {
		if lineOf(v.root, "lint") != 0 {
			v.fail("lint settings are written once: under gates.lint (gantry lint, and a release gate) or under lint (gantry lint only); remove one", "gates", "lint")
		}
		f.Lint = *g.Lint
		g.Lint = &f.Lint
	}
	v.lint(&f.Lint, lintAt(g.Lint != nil)...)
	s := g.Scan
	if s == nil {
		return
	}
	at := func(p ...string) []string { return append([]string{"gates", "scan"}, p...) }
	if s.FailOn == "" {
		s.FailOn = DefaultScanFailOn
	}
	s.FailOn = strings.ToLower(strings.TrimSpace(s.FailOn))
	if !contains(ScanSeverities, s.FailOn) {
		v.fail(fmt.Sprintf("%q is not a severity; use critical, high, medium, low or unknown", s.FailOn), at("fail_on")...)
	}
	if s.Server != "" {
		u, err := url.Parse(s.Server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(fmt.Sprintf("%q is not a Trivy server URL; write it like http://127.0.0.1:4954", s.Server), at("server")...)
		}
	}
	if s.Timeout == 0 {
		if lineOf(v.root, at("timeout")...) != 0 {
			v.fail("the scan timeout must be longer than 0; leave it out for the default of 10m", at("timeout")...)
		}
		s.Timeout = Duration(DefaultScanTimeout)
	}
}

// lintAt is where the lint settings are written.
func lintAt(underGates bool) []string {
	if underGates {
		return []string{"gates", "lint"}
	}
	return []string{"lint"}
}

// requireGates checks that an environment requiring gates has one to require.
func (v *validator) requireGates(f *File, e *Environment) {
	if e.RequireGates && !f.Gates.Any() {
		v.fail("require_gates needs a gate to require; add gates.scan (and gates.lint) to gantry.yaml, see docs/scan.md", "environments", e.Name, "require_gates")
	}
}
