package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// The gated project: the scan gate with the test Trivy, offline against the
// database the test setup writes; production takes only releases that
// passed it.
const scanGantryYAML = `project: PROJECT
compose: compose.yaml
registry:
  url: REGADDR
  username: ci
  password_env: E2E_REGISTRY_PASSWORD
release:
  platforms: [linux/amd64, linux/arm64]
services:
  web:
    build:
      binaries:
        linux/amd64: bin/app-linux-amd64
        linux/arm64: bin/app-linux-arm64
      path: /app
      user: "65532:65532"
gates:
  scan:
    trivy: TRIVY
    cache_dir: TRIVYCACHE
    offline: true
environments:
  staging:
    env_files: [staging.env]
    health: { window: 1m, min_healthy: 1s }
  production:
    env_files: [production.env]
    require_gates: true
    health: { window: 1m, min_healthy: 1s }
`

// TestScanGate: gantry release scans the built images with real Trivy and
// stops on a known vulnerable module (nothing pushed); an ignore entry with
// a future expiry lets the release through; once the entry has expired,
// gantry scan fails the pushed release; production (require_gates) then
// refuses it through deploy and promote, and takes it only from an admin's
// --override-gate --reason, which the audit log records.
func TestScanGate(t *testing.T) {
	addr := startRegistry(t)
	p := &promoteProject{releaseProject: newReleaseProject(t, addr, ""), prodPort: testenv.FreePort(t)}
	r := strings.NewReplacer("REGADDR", addr, "TRIVYCACHE", testenv.TrivyCache(t), "TRIVY", testenv.Trivy(t))
	p.write("gantry.yaml", r.Replace(scanGantryYAML))
	p.write("compose.yaml", r.Replace(promoteComposeYAML))
	p.write("staging.env", fmt.Sprintf("WEB_REPO=web\nWEB_LISTEN=%d\n", p.port))
	p.write("production.env", fmt.Sprintf("WEB_REPO=web\nWEB_LISTEN=%d\n", p.prodPort))

	// 0.1.0: the example app, which links nothing the database knows.
	p.binaries("0.1.0")
	p.commit("feat: the first feature")
	p.release(0)
	rel := p.releaseJSON("0.1.0")
	if g := rel.Gates[store.GateScan]; g == nil || !g.Passed || !strings.HasPrefix(g.Summary, "passed") {
		t.Fatalf("0.1.0's scan gate: %v", gateSummaries(rel))
	}

	// 0.2.0: a binary linking golang.org/x/text v0.3.7 (CVE-2022-32149).
	for _, arch := range []string{"amd64", "arm64"} {
		b, err := os.ReadFile(testenv.VulnBinary(t, arch))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, "bin", "app-linux-"+arch), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.commit("feat: answer in the visitor's language")
	_, res := p.release(1)
	for _, want := range []string{"release 0.2.0 failed its scan gate", "HIGH CVE-2022-32149 in golang.org/x/text v0.3.7 (web)", "nothing was pushed", "FAIL"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("the failed release does not say %q:\n%s", want, res)
		}
	}
	if rel := p.releaseJSON("0.2.0"); rel.State != store.ReleaseFailed || rel.Gates[store.GateScan] == nil || rel.Gates[store.GateScan].Passed {
		t.Errorf("0.2.0 after its failed gate: %s %v", rel.State, gateSummaries(rel))
	}
	if code, _, _ := p.manifest("0.2.0"); code != 404 {
		t.Errorf("a release that failed its gate was pushed: GET manifest 0.2.0 = %d", code)
	}
	if out := p.run("releases"); !strings.Contains(out.stdout, "failed: scan") {
		t.Errorf("gantry releases does not show the failed gate:\n%s", out)
	}

	// An ignore entry until next month lets it through; the file is part of the commit.
	ignore := func(expires time.Time) string {
		return "vulnerabilities:\n  - id: CVE-2022-32149\n    package: golang.org/x/text\n    reason: the service matches only three languages\n    expires: " +
			expires.UTC().Format(time.DateOnly) + "\n"
	}
	p.write(".gantry-ignore.yaml", ignore(time.Now().AddDate(0, 1, 0)))
	p.commit("fix: accept CVE-2022-32149 for a month")
	p.release(0)
	if g := p.releaseJSON("0.2.0").Gates[store.GateScan]; g == nil || !g.Passed || !strings.Contains(g.Summary, "1 ignored") {
		t.Fatalf("0.2.0 with the ignore entry: %v", gateSummaries(p.releaseJSON("0.2.0")))
	}
	p.deploy(0, "staging", "--release", "0.2.0")

	// The entry ends; scanning the pushed release again fails it.
	p.write(".gantry-ignore.yaml", ignore(time.Now().AddDate(0, 0, -1)))
	out := p.run("scan", "--release", "0.2.0")
	if out.code != 1 || !strings.Contains(out.stdout, "EXPIRED: the ignore of CVE-2022-32149") || !strings.Contains(out.stderr, "release 0.2.0 failed its scan gate") {
		t.Fatalf("gantry scan with an expired ignore: %s", out)
	}
	out = p.run("scan", "--release", "0.2.0", "--json")
	var sj struct {
		Release string        `json:"release"`
		Verdict *scan.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(out.stdout), &sj); err != nil || out.code != 1 {
		t.Fatalf("gantry scan --json: %v\n%s", err, out)
	}
	if v := sj.Verdict; v.Passed || len(v.ExpiredIgnores) != 1 || len(v.Images) != 2 || !strings.HasPrefix(v.Images[0].Ref, addr+"/"+p.name+"/web@sha256:") {
		t.Errorf("the verdict: %+v", v)
	}
	if out := p.run("releases", "0.2.0"); !strings.Contains(out.stdout, "scan:    failed: 1 vulnerability") || !strings.Contains(out.stdout, "CVE-2022-32149 golang.org/x/text v0.3.7 -> v0.3.8") {
		t.Errorf("gantry releases 0.2.0:\n%s", out)
	}

	// Production requires gates: deploy and promote refuse, changing nothing.
	before := p.history("production")
	for _, args := range [][]string{
		{"deploy", "production", "--release", "0.2.0"},
		{"promote", "staging", "production", "--release", "0.2.0"},
		{"deploy", "production", "--release", "0.2.0", "--image", "web=" + addr + "/" + p.name + "/web:0.1.0"},
	} {
		out := p.as("alice", args...)
		if out.code != 2 || !strings.Contains(out.stderr, "production requires releases that passed their gates") || !strings.Contains(out.stderr, "--override-gate") {
			t.Errorf("gantry %v: want exit 2 refused by the gates, got %s", args, out)
		}
	}
	if out := p.run("deploy", "production", "--release", "0.2.0", "--override-gate"); out.code != 2 || !strings.Contains(out.stderr, "--override-gate needs --reason") {
		t.Errorf("an override without a reason: %s", out)
	}
	if after := p.history("production"); len(after) != len(before) {
		t.Errorf("a refused deploy changed production's history: %+v", after)
	}

	// An admin (locally everyone is one) overrides, with a reason.
	const why = "the service matches only three languages; 0.2.1 upgrades x/text"
	e, _ := p.promote("alice", 0, "staging", "production", "--release", "0.2.0", "--override-gate", "--reason", why)
	if e.Env != "production" || e.Release != "0.2.0" || e.State != store.Succeeded {
		t.Errorf("the overridden promotion: %+v", e)
	}
	out = p.run("audit", "--action", "gate.override", "--output", "json")
	var evs []audit.Event
	if err := json.Unmarshal([]byte(out.stdout), &evs); err != nil {
		t.Fatalf("gantry audit: %v\n%s", err, out)
	}
	if len(evs) != 1 || evs[0].Actor != "alice" || evs[0].Role != "admin" || evs[0].Outcome != audit.OK || evs[0].Detail["reason"] != why ||
		evs[0].Detail["release"] != "0.2.0" || !strings.Contains(evs[0].Detail["refused"], "its scan gate failed") {
		t.Errorf("the override in the audit log: %+v", evs)
	}

	// 0.1.0 passed its gate: production takes it as it is.
	p.deploy(0, "production", "--release", "0.1.0")
}

// releaseJSON is gantry releases VERSION --output json.
func (p *releaseProject) releaseJSON(version string) store.Release {
	p.t.Helper()
	out := p.run("releases", version, "--output", "json")
	var r store.Release
	if err := json.Unmarshal([]byte(out.stdout), &r); err != nil || out.code != 0 {
		p.t.Fatalf("gantry releases %s: %v\n%s", version, err, out)
	}
	return r
}

// gateSummaries is each gate's summary, for failure messages.
func gateSummaries(r store.Release) map[string]string {
	m := map[string]string{}
	for k, g := range r.Gates {
		m[k] = g.Summary
	}
	return m
}
