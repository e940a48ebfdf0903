package testenv

import (
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// TrivyVersion is the Trivy the tests run (scripts/ensure-trivy.sh builds it).
const TrivyVersion = "v0.74.0"

// Trivy returns the repository's bin/trivy, built from the Go module proxy
// by scripts/ensure-trivy.sh, failing the test with how to get it when it
// is missing or of another version.
func Trivy(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "trivy")
	bi, err := buildinfo.ReadFile(bin)
	switch {
	case err != nil:
		t.Fatalf("this test needs Trivy %s at %s, and it is not there (%v).\n"+
			"Run `make deps`, or scripts/ensure-trivy.sh, which builds it with: GOEXPERIMENT=jsonv2 go install github.com/aquasecurity/trivy/cmd/trivy@%s",
			TrivyVersion, bin, err, TrivyVersion)
	case bi.Main.Version != TrivyVersion:
		t.Fatalf("%s was built from Trivy %q; the tests need %s. Run scripts/ensure-trivy.sh to replace it", bin, bi.Main.Version, TrivyVersion)
	}
	return bin
}

var trivyFixtures struct {
	sync.Mutex
	dir   string
	cache string
	bins  map[string]string
}

// fixtureDir is a directory for this test process's Trivy fixtures.
func fixtureDir(t testing.TB) string {
	if trivyFixtures.dir == "" {
		d, err := os.MkdirTemp("", "gantry-trivy-")
		if err != nil {
			t.Fatal(err)
		}
		trivyFixtures.dir, trivyFixtures.bins = d, map[string]string{}
	}
	return trivyFixtures.dir
}

// buildFixture builds the main package of a module under
// internal/scan/testdata (its own go.mod, so its dependencies stay out of
// gantry's) for linux/goarch.
func buildFixture(t testing.TB, module, goarch, out string) {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = filepath.Join(root, "internal", "scan", "testdata", module)
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test fixture %s (go build in %s; its modules come from the Go module proxy): %v\n%s", module, cmd.Dir, err, b)
	}
}

// TrivyCache returns a Trivy cache directory whose db/ holds the tests'
// vulnerability database: written once per test process by
// internal/scan/testdata/mkdb with Trivy's own database packages, with
// advisories for golang.org/x/text (CVE-2022-32149 HIGH fixed in v0.3.8,
// GANTRY-TEST-0001 MEDIUM unfixed, GANTRY-TEST-0002 LOW fixed in v0.4.0).
// Trivy runs offline against it: --skip-db-update --offline-scan.
func TrivyCache(t testing.TB) string {
	t.Helper()
	trivyFixtures.Lock()
	defer trivyFixtures.Unlock()
	if trivyFixtures.cache != "" {
		return trivyFixtures.cache
	}
	dir := fixtureDir(t)
	mkdb := filepath.Join(dir, "mkdb")
	buildFixture(t, "mkdb", runtime.GOARCH, mkdb)
	cache := filepath.Join(dir, "cache")
	if b, err := exec.Command(mkdb, "-cache-dir", cache).CombinedOutput(); err != nil {
		t.Fatalf("write the test vulnerability database: %v\n%s", err, b)
	}
	trivyFixtures.cache = cache
	return cache
}

// VulnBinary returns a static linux/goarch binary that links
// golang.org/x/text v0.3.7, which the database of TrivyCache calls
// vulnerable (internal/scan/testdata/vulnapp). Built once per process.
func VulnBinary(t testing.TB, goarch string) string {
	t.Helper()
	trivyFixtures.Lock()
	defer trivyFixtures.Unlock()
	if p, ok := trivyFixtures.bins[goarch]; ok {
		return p
	}
	out := filepath.Join(fixtureDir(t), "vulnapp-"+goarch)
	buildFixture(t, "vulnapp", goarch, out)
	trivyFixtures.bins[goarch] = out
	return out
}

// TrivyAdvisory is the real advisory of the test database the test image's
// binary matches.
const TrivyAdvisory = "CVE-2022-32149"
