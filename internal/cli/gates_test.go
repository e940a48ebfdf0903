package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestReleaseLintGate: with gates.lint, gantry release lints before it
// builds; an error stops the release with nothing built or recorded, and a
// release that passes carries the lint verdict.
func TestReleaseLintGate(t *testing.T) {
	releaseEnv(t)
	addr := testenv.DistributionRegistry(t)
	r := newGitRepo(t)
	r.write("gantry.yaml", `project: shop
registry: { url: `+addr+` }
services:
  web:
    build: { binaries: { linux/amd64: bin/web }, path: /app, user: "65532" }
gates:
  lint: {}
environments:
  staging:
`)
	compose := `services:
  web:
    image: ` + addr + `/shop/web
    read_only: true
    healthcheck: { test: ["CMD", "/app", "check"] }
`
	r.write("compose.yaml", compose+"    privileged: true\n")
	if err := os.MkdirAll(filepath.Join(r.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(testenv.StaticBinary(t, "amd64", "web"))
	if err != nil {
		t.Fatal(err)
	}
	r.write(filepath.Join("bin", "web"), string(b))
	r.commit("feat: the shop")
	state := filepath.Join(t.TempDir(), "state")

	out, errb, code := run(t, r.dir, "--state-dir", state, "release")
	if code != ExitError || !strings.Contains(errb, "GL2001") || !strings.Contains(errb, "release 0.1.0 stopped by its gate (gates.lint)") ||
		!strings.Contains(errb, "nothing was built or recorded") {
		t.Fatalf("a release with a privileged service: exit %d\nstdout %s\nstderr %s", code, out, errb)
	}
	if out, _, _ := run(t, r.dir, "--state-dir", state, "releases", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("a release stopped by lint was recorded: %s", out)
	}
	if _, err := os.Stat(filepath.Join(state, "images")); err == nil {
		t.Errorf("a release stopped by lint built images")
	}

	r.write("compose.yaml", compose)
	if out, errb, code := run(t, r.dir, "--state-dir", state, "release"); code != 0 {
		t.Fatalf("a release that passes lint: exit %d\n%s\n%s", code, out, errb)
	}
	out, _, _ = run(t, r.dir, "--state-dir", state, "releases", "0.1.0", "-o", "json")
	var rel store.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatal(err)
	}
	if g := rel.Gates[store.GateLint]; g == nil || !g.Passed || rel.Gates[store.GateScan] != nil || rel.State != store.ReleaseReleased {
		t.Errorf("the release's gates: %+v", rel.Gates)
	}
	if out, _, _ := run(t, r.dir, "--state-dir", state, "releases"); !strings.Contains(out, "released  passed") {
		t.Errorf("gantry releases:\n%s", out)
	}
}
