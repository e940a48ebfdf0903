package scan

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestWriteTextGolden: the verdict as people read it.
func TestWriteTextGolden(t *testing.T) {
	ig, err := ParseIgnores(".gantry-ignore.yaml", []byte(`vulnerabilities:
  - id: CVE-2023-0001
    package: example.com/lib
    reason: only reachable through the admin API, which is not exposed
    expires: 2026-06-30
  - id: CVE-2022-32149
    reason: the service never parses Accept-Language headers
    expires: 2026-02-28
`))
	if err != nil {
		t.Fatal(err)
	}
	r := report(
		Vulnerability{VulnerabilityID: "CVE-2022-32149", PkgName: "golang.org/x/text", InstalledVersion: "v0.3.7", FixedVersion: "v0.3.8", Severity: "HIGH",
			Title: "golang.org/x/text/language: ParseAcceptLanguage takes a long time to parse complex tags"},
		Vulnerability{VulnerabilityID: "CVE-2023-0001", PkgName: "example.com/lib", InstalledVersion: "v1.1.0", FixedVersion: "v1.2.0", Severity: "CRITICAL"},
		Vulnerability{VulnerabilityID: "GANTRY-TEST-0001", PkgName: "golang.org/x/text", InstalledVersion: "v0.3.7", Severity: "MEDIUM"},
		Vulnerability{VulnerabilityID: "GANTRY-TEST-0002", PkgName: "golang.org/x/text", InstalledVersion: "v0.3.7", FixedVersion: "v0.4.0", Severity: "LOW"},
	)
	scans := []Scanned{
		{Image: Image{Service: "api", Platform: "linux/amd64", Ref: "127.0.0.1:5000/shop/api@sha256:1111111111111111111111111111111111111111111111111111111111111111"}, Report: report()},
		{Image: Image{Service: "web", Platform: "linux/amd64", Ref: "127.0.0.1:5000/shop/web@sha256:2222222222222222222222222222222222222222222222222222222222222222"}, Report: r},
	}
	v := Decide(scans, Policy{FailOn: High, IgnoreUnfixed: true, Ignores: ig, IgnoreFile: ".gantry-ignore.yaml", Now: time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC)})
	v.Trivy = "0.74.0"
	var b bytes.Buffer
	if err := v.WriteText(&b, "1.4.0"); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "verdict.golden")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("text output differs from %s (go test -update rewrites it):\n%s", golden, b.String())
	}
}
