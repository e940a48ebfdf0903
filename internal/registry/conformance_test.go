package registry

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// junitReport is the part of the conformance suite's junit.xml we read.
type junitReport struct {
	// The suite's own totals: every check, including those it folds into
	// one testcase entry.
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Disabled int `xml:"disabled,attr"`
	Suites   []struct {
		Cases []struct {
			Name   string `xml:"name,attr"`
			Status string `xml:"status,attr"`
			Out    string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestConformance runs the OCI distribution-spec conformance suite
// (bin/oci-conformance, built by scripts/ensure-conformance.sh) against the
// embedded registry with authentication, every workflow enabled at its
// OCI_VERSION=1.1 defaults. Every failing spec fails the test.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the conformance suite takes a few seconds")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "oci-conformance")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the OCI conformance suite is not built (%v).\nRun `make deps` (scripts/ensure-conformance.sh builds it into bin/oci-conformance).", err)
	}
	users := usersFile(t, "conformance", "conformance-password")
	addr := serveTest(t, Options{Users: users})

	results := filepath.Join(root, "bin", "conformance-results")
	os.RemoveAll(results)
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	cmd := exec.CommandContext(cctx, bin)
	cmd.Dir = t.TempDir() // it would read ./oci-conformance.yaml if there were one
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+addr,
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_USERNAME=conformance",
		"OCI_PASSWORD=conformance-password",
		"OCI_API_PULL=true",
		"OCI_API_PUSH=true",
		"OCI_API_REFERRER=true",
		"OCI_API_MANIFESTS_DELETE=true",
		"OCI_API_TAGS_DELETE=true",
		"OCI_API_BLOBS_DELETE=true",
		"OCI_API_TAGS_LIST=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true", // off by default; gantry supports it
		"OCI_RESULTS_DIR="+results,
		"OCI_LOG=error",
	)
	out, runErr := cmd.CombinedOutput()
	b, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("the conformance suite wrote no junit report (%v); it said (%v):\n%s", err, runErr, out)
	}
	var rep junitReport
	if err := xml.Unmarshal(b, &rep); err != nil {
		t.Fatalf("junit report: %v", err)
	}
	counts := map[string]int{}
	var failed []string
	seen := map[string]bool{}
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			counts[c.Status]++
			if c.Status != "passed" && c.Status != "skipped" && c.Status != "disabled" {
				line := strings.TrimPrefix(c.Name, "OCI Conformance Test/")
				if msg := firstLine(c.Out); msg != "" {
					line += ": " + msg
				}
				if !seen[line] {
					seen[line] = true
					failed = append(failed, line)
				}
			}
		}
	}
	nfail := 0
	for st, n := range counts {
		if st != "passed" && st != "skipped" && st != "disabled" {
			nfail += n
		}
	}
	t.Logf("OCI conformance (OCI_VERSION=1.1): %d tests, %d failed, %d skipped, %d disabled (testcases: %d passed, %d failed, %d skipped); report: %s",
		rep.Tests, rep.Failures+rep.Errors, rep.Skipped, rep.Disabled, counts["passed"], nfail, counts["skipped"], filepath.Join(results, "report.html"))
	if counts["passed"] == 0 {
		t.Fatalf("no conformance spec passed; the suite said (%v):\n%s", runErr, out)
	}
	if nfail == 0 && rep.Failures+rep.Errors > 0 {
		t.Fatalf("the conformance report counts %d failures but lists no failing testcase; see %s", rep.Failures+rep.Errors, filepath.Join(results, "report.html"))
	}
	if nfail > 0 {
		t.Fatalf("%d conformance specs failed:\n  %s", nfail, strings.Join(failed, "\n  "))
	}
	if runErr != nil {
		t.Fatalf("the conformance suite failed though its report lists no failing spec: %v\n%s", runErr, out)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}
