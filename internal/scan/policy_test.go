package scan

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// report builds a Trivy report of one binary with the given vulnerabilities.
func report(vulns ...Vulnerability) *Report {
	return &Report{SchemaVersion: 2, Results: []Result{{Target: "app", Class: "lang-pkgs", Type: "gobinary", Vulnerabilities: vulns}}}
}

func vuln(id, pkg, sev, fixed string) Vulnerability {
	return Vulnerability{VulnerabilityID: id, PkgName: pkg, InstalledVersion: "v0.3.7", FixedVersion: fixed, Severity: sev}
}

func ignore(id, pkg, expires string) Ignore {
	return Ignore{ID: id, Package: pkg, Reason: "not reachable from user input", Expires: expires}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	high := vuln("CVE-2022-32149", "golang.org/x/text", "HIGH", "v0.3.8")
	crit := vuln("CVE-2023-0001", "example.com/lib", "CRITICAL", "v1.2.0")
	medUnfixed := vuln("GANTRY-TEST-0001", "golang.org/x/text", "MEDIUM", "")
	critUnfixed := vuln("CVE-2023-0002", "example.com/lib", "CRITICAL", "")
	low := vuln("GANTRY-TEST-0002", "golang.org/x/text", "LOW", "v0.4.0")
	odd := vuln("CVE-2023-0003", "example.com/lib", "NEGLIGIBLE", "v1.0.1")

	tests := []struct {
		name    string
		vulns   []Vulnerability
		policy  Policy
		passed  bool
		counts  Counts
		outcome map[string]Outcome // by id
		expired int
	}{
		{name: "nothing found", policy: Policy{FailOn: High}, passed: true},
		{name: "HIGH fails at the default", vulns: []Vulnerability{high, low}, policy: Policy{FailOn: High},
			counts: Counts{Fail: 1, Below: 1}, outcome: map[string]Outcome{"CVE-2022-32149": Fail, "GANTRY-TEST-0002": Below}},
		{name: "HIGH passes a CRITICAL threshold", vulns: []Vulnerability{high}, policy: Policy{FailOn: Critical},
			passed: true, counts: Counts{Below: 1}},
		{name: "CRITICAL fails a HIGH threshold", vulns: []Vulnerability{crit}, policy: Policy{FailOn: High}, counts: Counts{Fail: 1}},
		{name: "LOW threshold fails on low", vulns: []Vulnerability{low}, policy: Policy{FailOn: Low}, counts: Counts{Fail: 1}},
		{name: "an unknown severity counts as UNKNOWN", vulns: []Vulnerability{odd}, policy: Policy{FailOn: Unknown},
			counts: Counts{Fail: 1}},
		{name: "unfixed fails without ignore_unfixed", vulns: []Vulnerability{critUnfixed}, policy: Policy{FailOn: High},
			counts: Counts{Fail: 1}},
		{name: "unfixed passes with ignore_unfixed", vulns: []Vulnerability{critUnfixed, medUnfixed}, policy: Policy{FailOn: Medium, IgnoreUnfixed: true},
			passed: true, counts: Counts{Unfixed: 2}},
		{name: "ignore_unfixed does not pass a fixed one", vulns: []Vulnerability{high, medUnfixed}, policy: Policy{FailOn: Medium, IgnoreUnfixed: true},
			counts: Counts{Fail: 1, Unfixed: 1}, outcome: map[string]Outcome{"CVE-2022-32149": Fail, "GANTRY-TEST-0001": Unfixed}},
		{name: "an ignore until a future day passes", vulns: []Vulnerability{high},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("CVE-2022-32149", "", "2026-04-01")}}, passed: true, counts: Counts{Ignored: 1}},
		{name: "an ignore ends with its last day", vulns: []Vulnerability{high},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("CVE-2022-32149", "", "2026-03-15")}}, passed: true, counts: Counts{Ignored: 1}},
		{name: "an expired ignore ignores nothing", vulns: []Vulnerability{high},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("CVE-2022-32149", "", "2026-03-14")}},
			counts: Counts{Fail: 1}, expired: 1},
		{name: "an ignore for another package does not match", vulns: []Vulnerability{high},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("CVE-2022-32149", "example.com/lib", "2027-01-01")}}, counts: Counts{Fail: 1}},
		{name: "an ignore for the package matches", vulns: []Vulnerability{high},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("cve-2022-32149", "golang.org/x/text", "2027-01-01")}}, passed: true, counts: Counts{Ignored: 1}},
		{name: "an ignore of one id leaves the other", vulns: []Vulnerability{high, crit},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("CVE-2022-32149", "", "2027-01-01")}},
			counts: Counts{Fail: 1, Ignored: 1}, outcome: map[string]Outcome{"CVE-2023-0001": Fail, "CVE-2022-32149": Ignored}},
		{name: "expired entries are reported even unmatched", vulns: []Vulnerability{low},
			policy: Policy{FailOn: High, Ignores: []Ignore{ignore("CVE-2020-1", "", "2020-01-01")}}, passed: true, counts: Counts{Below: 1}, expired: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.policy.Now = now
			for i := range tc.policy.Ignores {
				ig, err := ParseIgnores("x.yaml", []byte("vulnerabilities:\n  - {id: "+tc.policy.Ignores[i].ID+", package: '"+tc.policy.Ignores[i].Package+"', reason: r, expires: "+tc.policy.Ignores[i].Expires+"}\n"))
				if err != nil {
					t.Fatal(err)
				}
				tc.policy.Ignores[i] = ig[0]
			}
			v := Decide([]Scanned{{Image: Image{Service: "web", Ref: "r@sha256:1"}, Report: report(tc.vulns...)}}, tc.policy)
			if v.Passed != tc.passed || v.Counts != tc.counts || len(v.ExpiredIgnores) != tc.expired {
				t.Fatalf("passed %v counts %+v expired %d; want %v %+v %d\n%s", v.Passed, v.Counts, len(v.ExpiredIgnores), tc.passed, tc.counts, tc.expired, v.Summary())
			}
			for _, f := range v.Findings {
				if want, ok := tc.outcome[f.ID]; ok && f.Outcome != want {
					t.Errorf("%s: outcome %s, want %s", f.ID, f.Outcome, want)
				}
				if f.Service != "web" || f.Target != "app" {
					t.Errorf("%s: service %q target %q", f.ID, f.Service, f.Target)
				}
			}
			if tc.expired > 0 && !tc.passed && !strings.Contains(v.Summary(), "expired ignore") {
				t.Errorf("summary does not tell of the expired entry: %s", v.Summary())
			}
		})
	}
}

func TestDecideOrderAndExpiredMatch(t *testing.T) {
	now := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	ig, err := ParseIgnores("i.yaml", []byte("vulnerabilities:\n  - id: CVE-2022-32149\n    reason: old\n    expires: 2026-01-31\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := report(vuln("GANTRY-TEST-0002", "golang.org/x/text", "LOW", "v0.4.0"), vuln("CVE-2022-32149", "golang.org/x/text", "HIGH", "v0.3.8"),
		vuln("CVE-2023-0001", "example.com/lib", "CRITICAL", "v1.2.0"))
	v := Decide([]Scanned{{Image: Image{Service: "api"}, Report: r}, {Image: Image{Service: "web"}, Report: r}}, Policy{FailOn: High, Ignores: ig, IgnoreFile: "i.yaml", Now: now})
	var got []string
	for _, f := range v.Findings {
		got = append(got, f.Service+":"+f.ID)
	}
	want := "api:CVE-2023-0001 web:CVE-2023-0001 api:CVE-2022-32149 web:CVE-2022-32149 api:GANTRY-TEST-0002 web:GANTRY-TEST-0002"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	for _, f := range v.Findings {
		if f.ID == "CVE-2022-32149" && (f.Expired == nil || f.Expired.Line != 2) {
			t.Errorf("the failing finding does not name its expired entry: %+v", f)
		}
	}
	if !strings.Contains(v.Summary(), "failed: 4 vulnerabilities at or above HIGH (CRITICAL CVE-2023-0001 in example.com/lib v0.3.7 (api), CRITICAL CVE-2023-0001") ||
		!strings.Contains(v.Summary(), "and 1 more") {
		t.Errorf("summary: %s", v.Summary())
	}
	if err := v.Err("1.4.0"); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "release 1.4.0 failed its scan gate") || !strings.Contains(err.Error(), "i.yaml") {
		t.Errorf("err: %v", err)
	}
}

func TestParseSeverity(t *testing.T) {
	for in, want := range map[string]Severity{"critical": Critical, "HIGH": High, " Medium ": Medium, "low": Low, "unknown": Unknown} {
		if got, err := ParseSeverity(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "severe", "error", "4"} {
		_, err := ParseSeverity(in)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "critical, high, medium, low or unknown") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestParseIgnores(t *testing.T) {
	good := `# what we accept, and until when
vulnerabilities:
  - id: CVE-2022-32149
    package: golang.org/x/text
    reason: the service never parses Accept-Language headers
    expires: 2026-06-30
  - id: GHSA-69ch-w2m2-3vjp
    reason: "the same, by its GitHub id"
    expires: "2026-06-30"
`
	l, err := ParseIgnores(".gantry-ignore.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[0].Package != "golang.org/x/text" || l[0].Line != 3 || l[1].Package != "" || l[1].Expires != "2026-06-30" {
		t.Fatalf("%+v", l)
	}
	for _, empty := range []string{"", "vulnerabilities:\n", "vulnerabilities: []\n", "# nothing\n"} {
		if l, err := ParseIgnores("e.yaml", []byte(empty)); err != nil || len(l) != 0 {
			t.Errorf("%q: %v %v", empty, l, err)
		}
	}

	bad := []struct {
		name, text string
		want       []string
	}{
		{"no reason", "vulnerabilities:\n  - id: CVE-1\n    expires: 2026-01-01\n", []string{"f.yaml:2", "vulnerabilities[0] (CVE-1): reason is missing", "reason:"}},
		{"empty reason", "vulnerabilities:\n  - id: CVE-1\n    reason: ''\n    expires: 2026-01-01\n", []string{"reason is missing"}},
		{"no expiry", "vulnerabilities:\n  - id: CVE-1\n    reason: later\n", []string{"f.yaml:2", "expires is missing", "expires: 2026-06-30"}},
		{"bad date", "vulnerabilities:\n  - id: CVE-1\n    reason: later\n    expires: next year\n", []string{`expires: "next year" is not a date`, "YYYY-MM-DD"}},
		{"a time, not a date", "vulnerabilities:\n  - id: CVE-1\n    reason: later\n    expires: 2026-01-01T00:00:00Z\n", []string{"is not a date"}},
		{"no id", "vulnerabilities:\n  - reason: later\n    expires: 2026-01-01\n", []string{"vulnerabilities[0]: id is missing"}},
		{"second entry", "vulnerabilities:\n  - {id: A, reason: r, expires: 2026-01-01}\n  - {id: B, expires: 2026-01-01}\n", []string{"f.yaml:3", "vulnerabilities[1] (B): reason is missing"}},
		{"unknown field", "vulnerabilities:\n  - id: CVE-1\n    reason: r\n    expires: 2026-01-01\n    until: 2027-01-01\n", []string{"f.yaml:5", `unknown field "until"`}},
		{"unknown top field", "ignores:\n  - id: CVE-1\n", []string{"f.yaml:1", `unknown field "ignores"`, "vulnerabilities:"}},
		{"a list at the top", "- id: CVE-1\n", []string{"want a mapping with a vulnerabilities list"}},
		{"not a list", "vulnerabilities: CVE-1\n", []string{"must be a list"}},
		{"an entry not a mapping", "vulnerabilities:\n  - CVE-1\n", []string{"want an entry with id, reason and expires"}},
		{"not YAML", "vulnerabilities:\n  - id: [CVE-1\n", []string{"f.yaml", "not valid YAML"}},
		{"a list value", "vulnerabilities:\n  - id: [CVE-1, CVE-2]\n    reason: r\n    expires: 2026-01-01\n", []string{"vulnerabilities[0].id: want a single value"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIgnores("f.yaml", []byte(tc.text))
			if !errors.Is(err, ErrInput) {
				t.Fatalf("want ErrInput, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := LoadIgnores("testdata/does-not-exist.yaml"); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseReport(t *testing.T) {
	if _, err := ParseReport([]byte(`{"SchemaVersion": 1}`)); err == nil || !strings.Contains(err.Error(), "schema version 1") {
		t.Errorf("old schema: %v", err)
	}
	if _, err := ParseReport([]byte(`not json`)); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("not json: %v", err)
	}
	r, err := ParseReport([]byte(`{"SchemaVersion": 2, "ArtifactName": "x", "Results": [{"Target": "app", "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "Severity": "HIGH"}]}]}`))
	if err != nil || len(r.Results) != 1 || r.Results[0].Vulnerabilities[0].VulnerabilityID != "CVE-1" {
		t.Errorf("%+v %v", r, err)
	}
}
