// Package lint checks Dockerfiles and compose models for what the seed notes
// warn about: secrets in ENV or ARG or in a service's environment, images
// that run as root, floating base images and tags, missing health checks,
// build tools and package caches left in images, privileged services, the
// host's network or PID namespace, the Docker socket, ports open on every
// interface.
//
// Dockerfiles are read with BuildKit's own parser (the one `docker build`
// uses), and shell commands in RUN with mvdan.cc/sh, so continuation lines,
// heredocs and parser directives (# syntax=, # escape=) mean what they mean
// to Docker. Compose files are read as the resolved model gantry deploys
// (compose-go through internal/config: interpolation, .env, extends,
// per-environment override files), and findings point back at the line of
// the file that set the value.
//
// Every rule has a stable id (Rules), a severity that gantry.yaml's lint
// section can change or turn off, a page under docs/lint/, and the ids of
// the equivalent hadolint, dockle and Trivy checks. Findings print as text,
// JSON or SARIF 2.1.0 (for GitHub code scanning).
package lint

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/config"
)

// ErrInput marks input gantry lint cannot read: a Dockerfile or compose
// file that does not parse, a path that does not exist. Nothing was linted.
var ErrInput = errors.New("invalid input")

// ErrFindings is returned by Report.Err when findings reach the threshold.
var ErrFindings = errors.New("lint failed")

// Finding is one problem, where it is and how to fix it.
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Hint     string   `json:"hint,omitempty"`
	// File is relative to the directory gantry lint ran in, with forward
	// slashes. Line and Column start at 1; 0 when unknown.
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	// Service and Environment name the compose service and the gantry
	// environments (comma-separated) of a compose finding.
	Service     string `json:"service,omitempty"`
	Environment string `json:"environment,omitempty"`
	// DocURL is the rule's page.
	DocURL string `json:"doc_url"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d:%d %s %s %s", f.File, f.Line, f.Column, f.Rule, f.Severity, f.Message)
}

// Report is the outcome of a lint run.
type Report struct {
	// Files lists every file read, relative like Finding.File.
	Files    []string  `json:"files"`
	Findings []Finding `json:"findings"`
	// FailOn is the least severity that fails the run.
	FailOn Severity `json:"fail_on"`
}

// Count is the number of findings of a severity.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Failing is the number of findings at or above FailOn.
func (r *Report) Failing() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity.AtLeast(r.FailOn) {
			n++
		}
	}
	return n
}

// Err is nil when no finding reaches FailOn, else an ErrFindings that says
// how many do.
func (r *Report) Err() error {
	n := r.Failing()
	if n == 0 {
		return nil
	}
	what := "findings"
	if n == 1 {
		what = "finding"
	}
	return fmt.Errorf("%w: %d %s at or above %s (--fail-on, or lint.fail_on in gantry.yaml)", ErrFindings, n, what, r.FailOn)
}

// settings are the lint section of one gantry.yaml, checked against the
// rules: which rules are off and which are re-levelled.
type settings struct {
	disabled map[string]bool
	severity map[string]Severity
}

// newSettings checks l (from the gantry.yaml at path; nil for none) and
// errors, with the line, on a rule id that does not exist.
func newSettings(l *config.Lint, path string) (*settings, error) {
	s := &settings{disabled: map[string]bool{}, severity: map[string]Severity{}}
	if l == nil {
		return s, nil
	}
	unknown := func(id, field string) error {
		return &config.Error{File: filepath.Base(path), Line: l.Line(id), Field: field,
			Msg: fmt.Sprintf("no rule %s; `gantry lint --rules` lists them", id)}
	}
	for _, id := range l.Disable {
		if _, ok := rulesByID[id]; !ok {
			return nil, unknown(id, "lint.disable")
		}
		s.disabled[id] = true
	}
	for id, sev := range l.Severity {
		if _, ok := rulesByID[id]; !ok {
			return nil, unknown(id, "lint.severity."+id)
		}
		s.severity[id] = Severity(sev)
	}
	return s, nil
}

// apply drops disabled rules' findings and sets the configured severities.
func (s *settings) apply(fs []Finding) []Finding {
	out := fs[:0]
	for _, f := range fs {
		if s.disabled[f.Rule] {
			continue
		}
		if sev, ok := s.severity[f.Rule]; ok {
			f.Severity = sev
		}
		out = append(out, f)
	}
	return out
}

// newFinding fills in a finding's severity, hint and page from its rule.
func newFinding(ruleID, file string, line int, msg string) Finding {
	r, ok := rulesByID[ruleID]
	if !ok {
		panic("lint: no rule " + ruleID)
	}
	if line < 1 {
		line = 1
	}
	return Finding{Rule: r.ID, Severity: r.Severity, Message: msg, Hint: r.Hint,
		File: file, Line: line, Column: 1, DocURL: r.DocURL()}
}

// sortFindings orders findings by file, line, column and rule, and drops
// exact repeats (a compose file shared by two environments says the same
// thing twice).
func sortFindings(fs []Finding) []Finding {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Rule < b.Rule
	})
	seen := map[string]int{}
	out := fs[:0]
	for _, f := range fs {
		k := strings.Join([]string{f.File, fmt.Sprint(f.Line), fmt.Sprint(f.Column), f.Rule, f.Service, f.Message}, "\x00")
		if i, ok := seen[k]; ok {
			// The same finding in another environment: name both.
			if f.Environment != "" && !slices.Contains(strings.Split(out[i].Environment, ","), f.Environment) {
				out[i].Environment += "," + f.Environment
			}
			continue
		}
		seen[k] = len(out)
		out = append(out, f)
	}
	return out
}
