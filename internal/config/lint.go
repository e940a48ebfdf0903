package config

import (
	"fmt"
	"regexp"
)

// Lint severities, from the most to the least severe. They are the levels of
// `gantry lint` findings and of its fail_on threshold.
const (
	LintError   = "error"
	LintWarning = "warning"
	LintInfo    = "info"
)

// LintSeverities lists the severities in the order of their weight.
var LintSeverities = []string{LintError, LintWarning, LintInfo}

// Lint is the lint section of gantry.yaml: which rules of `gantry lint`
// run, at which severity, and from which severity on a finding fails.
//
//	lint:
//	  disable: [GL1012]
//	  severity: { GL2006: warning }
//	  fail_on: warning
type Lint struct {
	// Disable lists rule ids (GL1001) that never report.
	Disable []string `yaml:"disable" json:"disable,omitempty"`
	// Severity re-levels rules: rule id to error, warning or info.
	Severity map[string]string `yaml:"severity" json:"severity,omitempty"`
	// FailOn is the least severity that fails the lint (exit code 1);
	// default error. --fail-on overrides it.
	FailOn string `yaml:"fail_on" json:"fail_on"`

	// lines remembers where each rule id is written, so that the lint
	// package can point at an id it does not know.
	lines map[string]int
}

// Line is the line of gantry.yaml on which a rule id is written in the lint
// section, 0 when it is not written there.
func (l *Lint) Line(id string) int { return l.lines[id] }

var lintRuleRE = regexp.MustCompile(`^GL[0-9]{4}$`)

// lint checks the lint section's shape and fills in its defaults. Whether an
// id names an existing rule is the lint package's to say (it owns the rules);
// here an id only has to look like one. at is where the section is written:
// lint, or gates.lint.
func (v *validator) lint(l *Lint, at ...string) {
	path := func(p ...string) []string { return append(append([]string{}, at...), p...) }
	l.lines = map[string]int{}
	for i, id := range l.Disable {
		at := path("disable", fmt.Sprint(i))
		l.lines[id] = lineOf(v.root, at...)
		if !lintRuleRE.MatchString(id) {
			v.fail(fmt.Sprintf("%q is not a rule id; rule ids look like GL1001 (`gantry lint --rules` lists them)", id), at...)
		}
	}
	for _, id := range sortedKeys(l.Severity) {
		at := path("severity", id)
		l.lines[id] = lineOf(v.root, at...)
		if !lintRuleRE.MatchString(id) {
			v.fail(fmt.Sprintf("%q is not a rule id; rule ids look like GL1001 (`gantry lint --rules` lists them)", id), at...)
		}
		if !contains(LintSeverities, l.Severity[id]) {
			v.fail(fmt.Sprintf("%q is not a severity; use error, warning or info (or list the rule under lint.disable)", l.Severity[id]), at...)
		}
	}
	if l.FailOn == "" {
		l.FailOn = LintError
	}
	if !contains(LintSeverities, l.FailOn) {
		v.fail(fmt.Sprintf("%q is not a severity; use error, warning or info", l.FailOn), path("fail_on")...)
	}
}
