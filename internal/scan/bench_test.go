package scan

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchSize is the report the benchmarks decide over: a release of 10
// images with 1,000 vulnerabilities each (a large, old base image), and an
// ignore file of 200 entries, half of them expired.
const (
	benchImages  = 10
	benchVulns   = 1000
	benchIgnores = 200
)

var benchNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func benchReport(image int) *Report {
	sevs := []string{"LOW", "MEDIUM", "HIGH", "CRITICAL", "UNKNOWN"}
	var vulns []Vulnerability
	for i := range benchVulns {
		v := Vulnerability{VulnerabilityID: fmt.Sprintf("CVE-2024-%05d", i), PkgName: fmt.Sprintf("pkg%d", i%97),
			InstalledVersion: "1.0." + fmt.Sprint(i%13), Severity: sevs[i%len(sevs)], Title: "a vulnerability in a package of the base image"}
		if i%3 != 0 {
			v.FixedVersion = "1.1.0"
		}
		vulns = append(vulns, v)
	}
	return &Report{SchemaVersion: 2, ArtifactName: fmt.Sprintf("img%d", image),
		Results: []Result{{Target: "debian 12", Class: "os-pkgs", Type: "debian", Vulnerabilities: vulns}}}
}

// benchIgnoreFile is the ignore file in gantry's format, or with trivy in
// Trivy's own (.trivyignore.yaml): the same entries.
func benchIgnoreFile(trivy bool) string {
	reason, expires := "reason", "expires"
	if trivy {
		reason, expires = "statement", "expired_at"
	}
	var b strings.Builder
	b.WriteString("vulnerabilities:\n")
	for i := range benchIgnores {
		day := "2027-01-01"
		if i%2 == 1 {
			day = "2026-01-01"
		}
		fmt.Fprintf(&b, "  - id: CVE-2024-%05d\n    %s: not reachable\n    %s: %s\n", i*5, reason, expires, day)
	}
	return b.String()
}

// BenchmarkDecide is the gate's decision once Trivy's reports are read:
// 10,000 findings against 200 ignore entries.
func BenchmarkDecide(b *testing.B) {
	ig, err := ParseIgnores("bench.yaml", []byte(benchIgnoreFile(false)))
	if err != nil {
		b.Fatal(err)
	}
	var scans []Scanned
	for i := range benchImages {
		scans = append(scans, Scanned{Image: Image{Service: fmt.Sprintf("svc%d", i)}, Report: benchReport(i)})
	}
	p := Policy{FailOn: High, IgnoreUnfixed: true, Ignores: ig, Now: benchNow}
	b.ReportAllocs()
	b.ResetTimer()
	var v *Verdict
	for b.Loop() {
		v = Decide(scans, p)
		_ = v.Summary()
	}
	b.ReportMetric(float64(len(v.Findings)), "findings")
}

// BenchmarkParseAndDecide is what gantry does with a report file Trivy
// wrote: parse it and the ignore file, decide (fail on HIGH, unfixed ones
// count, as trivy convert decides without --ignore-unfixed, which it lacks). With GANTRY_BENCH_SCAN_DIR set, the report
// (one image, 10,000 vulnerabilities) and the same ignores as Trivy's own
// .trivyignore.yaml are written there, for bench/scan.sh to time
// `trivy convert --exit-code 1` on the same input.
func BenchmarkParseAndDecide(b *testing.B) {
	r := benchReport(0)
	for i := 1; i < benchImages; i++ {
		r.Results[0].Vulnerabilities = append(r.Results[0].Vulnerabilities, benchReport(i).Results[0].Vulnerabilities...)
	}
	data, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	ignores := benchIgnoreFile(false)
	if dir := os.Getenv("GANTRY_BENCH_SCAN_DIR"); dir != "" {
		for name, content := range map[string][]byte{"report.json": data, "trivyignore.yaml": []byte(benchIgnoreFile(true)), "gantry-ignore.yaml": []byte(ignores)} {
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := ParseReport(data)
		if err != nil {
			b.Fatal(err)
		}
		ig, err := ParseIgnores("bench.yaml", []byte(ignores))
		if err != nil {
			b.Fatal(err)
		}
		v := Decide([]Scanned{{Report: rep}}, Policy{FailOn: High, Ignores: ig, Now: benchNow})
		if v.Passed {
			b.Fatal("the bench report passed")
		}
	}
}
