// Package scan is gantry's vulnerability gate. It runs Trivy on each image
// of a release (by digest from the registry, or from gantry's image store
// before a push), reads Trivy's JSON report, and decides whether the release
// passes: a vulnerability at or above a severity fails it (default HIGH),
// unless it has no fix and unfixed ones are ignored, or an entry of the
// ignore file, with its reason and an expiry date, ignores it. An expired
// entry ignores nothing and is reported as expired.
//
// The decision (Decide) is pure: Trivy's reports and a Policy in, a Verdict
// out. Running Trivy is Trivy's job (trivy.go); the verdict is stored with
// the release (Record), and the deploy engine refuses a release whose gate
// failed or never ran where an environment requires gates.
package scan

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrInput marks bad input: an unknown severity, an ignore file that does
// not parse or whose entries lack a reason or an expiry.
var ErrInput = errors.New("invalid input")

// Severity is a vulnerability's severity, in Trivy's scale.
type Severity int

// Severities from the least to the most severe.
const (
	Unknown Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = []string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// DefaultFailOn is the least severity that fails the gate when gantry.yaml
// says nothing: the seed notes' "fail on HIGH or CRITICAL".
const DefaultFailOn = High

func (s Severity) String() string {
	if s < Unknown || s > Critical {
		return "UNKNOWN"
	}
	return severityNames[s]
}

// ParseSeverity reads critical, high, medium, low or unknown, in any case.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Severity(i), nil
		}
	}
	return Unknown, fmt.Errorf("%w: %q is not a severity; use critical, high, medium, low or unknown", ErrInput, s)
}

// trivySeverity reads the severity Trivy reports; anything else is UNKNOWN,
// as Trivy itself treats it.
func trivySeverity(s string) Severity {
	if sev, err := ParseSeverity(s); err == nil {
		return sev
	}
	return Unknown
}

// MarshalText writes the severity as Trivy spells it (HIGH).
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity in any case.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Policy is how the gate decides.
type Policy struct {
	// FailOn is the least severity that fails the gate.
	FailOn Severity
	// IgnoreUnfixed: a vulnerability without a fixed version does not fail
	// the gate (there is nothing to upgrade to yet).
	IgnoreUnfixed bool
	// Ignores are the entries of the ignore file; IgnoreFile names it in
	// messages.
	Ignores    []Ignore
	IgnoreFile string
	// Now decides which ignore entries have expired.
	Now time.Time
}

// Outcome is what the gate made of one finding.
type Outcome string

// Outcomes of a finding.
const (
	// Fail: at or above the threshold, fixed (or unfixed ones count), and
	// not ignored. One such finding fails the gate.
	Fail Outcome = "fail"
	// Ignored by an entry of the ignore file that has not expired.
	Ignored Outcome = "ignored"
	// Unfixed: no fixed version exists and ignore_unfixed is on.
	Unfixed Outcome = "unfixed"
	// Below the threshold.
	Below Outcome = "below"
)

// Finding is one vulnerability of one package in one image, with what the
// gate made of it.
type Finding struct {
	Service  string `json:"service,omitempty"`
	Platform string `json:"platform,omitempty"`
	// Target is where Trivy found the package: a binary's path, an OS.
	Target    string   `json:"target"`
	ID        string   `json:"id"`
	Package   string   `json:"package"`
	Installed string   `json:"installed"`
	Fixed     string   `json:"fixed,omitempty"`
	Severity  Severity `json:"severity"`
	Title     string   `json:"title,omitempty"`
	URL       string   `json:"url,omitempty"`
	Outcome   Outcome  `json:"outcome"`
	// Ignore is the entry that ignores the finding (outcome ignored).
	Ignore *Ignore `json:"ignore,omitempty"`
	// Expired is an entry that would ignore the finding but has expired.
	Expired *Ignore `json:"expired_ignore,omitempty"`
}

// Image is one image the gate looked at.
type Image struct {
	Service  string `json:"service,omitempty"`
	Platform string `json:"platform,omitempty"`
	// Ref is what Trivy scanned: repository@digest in a registry, or the
	// image store's path@digest before a push.
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	// Layout is gantry's image store (an OCI layout) holding the image,
	// when it is scanned before it is pushed.
	Layout string `json:"-"`
	// Source says where Trivy read the image: registry, or image-store
	// (before the push; Ref is then where it is going).
	Source string `json:"source,omitempty"`
}

// Sources of a scanned image.
const (
	SourceRegistry   = "registry"
	SourceImageStore = "image-store"
)

// Scanned is an image with Trivy's report of it.
type Scanned struct {
	Image  Image
	Report *Report
}

// Verdict is the gate's decision over every image of a release.
type Verdict struct {
	Passed        bool     `json:"passed"`
	FailOn        Severity `json:"fail_on"`
	IgnoreUnfixed bool     `json:"ignore_unfixed"`
	IgnoreFile    string   `json:"ignore_file,omitempty"`
	Images        []Image  `json:"images"`
	// Findings are sorted: failing first, then by severity (most severe
	// first), id, package, service and platform.
	Findings []Finding `json:"findings"`
	Counts   Counts    `json:"counts"`
	// ExpiredIgnores are the ignore file's entries past their date: they
	// ignore nothing any more.
	ExpiredIgnores []Ignore `json:"expired_ignores,omitempty"`
	// Trivy is the scanner's version; Server its URL in client/server mode.
	Trivy  string    `json:"trivy,omitempty"`
	Server string    `json:"server,omitempty"`
	At     time.Time `json:"at"`
}

// Counts are the findings by outcome.
type Counts struct {
	Fail    int `json:"fail"`
	Ignored int `json:"ignored"`
	Unfixed int `json:"unfixed"`
	Below   int `json:"below"`
}

// Decide applies the policy to Trivy's reports of a release's images.
func Decide(scans []Scanned, p Policy) *Verdict {
	n := 0
	for _, s := range scans {
		if s.Report != nil {
			for _, r := range s.Report.Results {
				n += len(r.Vulnerabilities)
			}
		}
	}
	v := &Verdict{FailOn: p.FailOn, IgnoreUnfixed: p.IgnoreUnfixed, IgnoreFile: p.IgnoreFile, At: p.Now.UTC(),
		Images: make([]Image, 0, len(scans)), Findings: make([]Finding, 0, n)}
	live, expired := splitIgnores(p.Ignores, p.Now)
	v.ExpiredIgnores = expired
	liveByID, expiredByID := indexIgnores(live), indexIgnores(expired)
	for _, s := range scans {
		v.Images = append(v.Images, s.Image)
		if s.Report == nil {
			continue
		}
		for _, r := range s.Report.Results {
			for _, vuln := range r.Vulnerabilities {
				f := Finding{Service: s.Image.Service, Platform: s.Image.Platform, Target: r.Target,
					ID: vuln.VulnerabilityID, Package: vuln.PkgName, Installed: vuln.InstalledVersion, Fixed: vuln.FixedVersion,
					Severity: trivySeverity(vuln.Severity), Title: vuln.Title, URL: vuln.PrimaryURL}
				decide(&f, p, liveByID, expiredByID)
				v.Findings = append(v.Findings, f)
			}
		}
	}
	for _, f := range v.Findings {
		switch f.Outcome {
		case Fail:
			v.Counts.Fail++
		case Ignored:
			v.Counts.Ignored++
		case Unfixed:
			v.Counts.Unfixed++
		case Below:
			v.Counts.Below++
		}
	}
	// A total order (every field a user sees), so that an unstable sort
	// gives the same order every time.
	slices.SortFunc(v.Findings, func(a, b Finding) int {
		if (a.Outcome == Fail) != (b.Outcome == Fail) {
			if a.Outcome == Fail {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Package, b.Package),
			cmp.Compare(a.Service, b.Service), cmp.Compare(a.Platform, b.Platform), cmp.Compare(a.Target, b.Target),
			cmp.Compare(a.Installed, b.Installed), cmp.Compare(a.Outcome, b.Outcome))
	})
	v.Passed = v.Counts.Fail == 0
	return v
}

// decide sets the outcome of one finding. An explicit ignore entry comes
// before ignore_unfixed, so the finding says who let it pass.
func decide(f *Finding, p Policy, live, expired map[string][]Ignore) {
	if f.Severity < p.FailOn {
		f.Outcome = Below
		return
	}
	if i := matchIgnore(live, f); i != nil {
		f.Outcome, f.Ignore = Ignored, i
		return
	}
	if p.IgnoreUnfixed && f.Fixed == "" {
		f.Outcome = Unfixed
		return
	}
	f.Outcome = Fail
	f.Expired = matchIgnore(expired, f)
}

// indexIgnores groups entries by their id, in upper case: a release's
// findings are many, and an ignore file can be long.
func indexIgnores(l []Ignore) map[string][]Ignore {
	m := make(map[string][]Ignore, len(l))
	for _, i := range l {
		k := strings.ToUpper(i.ID)
		m[k] = append(m[k], i)
	}
	return m
}

func matchIgnore(byID map[string][]Ignore, f *Finding) *Ignore {
	l := byID[strings.ToUpper(f.ID)]
	for i := range l {
		if l[i].Matches(f.ID, f.Package) {
			e := l[i]
			return &e
		}
	}
	return nil
}

// Summary says the verdict in one line, for a release's record and a
// terminal: "failed: 1 vulnerability at or above HIGH (HIGH CVE-2022-32149
// in golang.org/x/text v0.3.7 (web)); 1 ignored". A vulnerability found in
// the image of each platform of a service is counted once.
func (v *Verdict) Summary() string {
	type key struct {
		outcome                     Outcome
		id, pkg, installed, service string
	}
	distinct := map[Outcome][]*Finding{}
	seen := map[key]bool{}
	for i := range v.Findings {
		f := &v.Findings[i]
		k := key{f.Outcome, f.ID, f.Package, f.Installed, f.Service}
		if !seen[k] {
			seen[k] = true
			distinct[f.Outcome] = append(distinct[f.Outcome], f)
		}
	}
	var b strings.Builder
	if v.Passed {
		fmt.Fprintf(&b, "passed: no vulnerability at or above %s", v.FailOn)
	} else {
		failing := distinct[Fail]
		fmt.Fprintf(&b, "failed: %d %s at or above %s (", len(failing), plural(len(failing), "vulnerability", "vulnerabilities"), v.FailOn)
		for i, f := range failing {
			if i == 3 {
				fmt.Fprintf(&b, ", and %d more", len(failing)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %s in %s %s", f.Severity, f.ID, f.Package, f.Installed)
			if f.Service != "" {
				fmt.Fprintf(&b, " (%s)", f.Service)
			}
		}
		b.WriteString(")")
	}
	var notes []string
	if n := len(distinct[Ignored]); n > 0 {
		notes = append(notes, fmt.Sprintf("%d ignored", n))
	}
	if n := len(distinct[Unfixed]); n > 0 {
		notes = append(notes, fmt.Sprintf("%d unfixed", n))
	}
	if n := len(distinct[Below]); n > 0 {
		notes = append(notes, fmt.Sprintf("%d below %s", n, v.FailOn))
	}
	if n := len(v.ExpiredIgnores); n > 0 {
		notes = append(notes, fmt.Sprintf("%d expired ignore %s", n, plural(n, "entry", "entries")))
	}
	if len(notes) > 0 {
		b.WriteString("; " + strings.Join(notes, ", "))
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
