package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/analysis"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// gantryWatched routes web through the gantry proxy, with an analysis
// (against a real Prometheus, PROM) whose check always passes: the watch
// window (WATCH) runs to its end unless something cuts it short, and a
// canary (STEPS) when the test asks for one.
const gantryWatched = `
project: PROJECT
compose: compose.yaml
proxy:
  listen: 127.0.0.1:PORT
  drain_timeout: 3s
environments:
  staging:
    health:
      window: 30s
      min_healthy: 1s
    routes:
      web:
        port: 8080
CANARY
    analysis:
      prometheus: PROM
      interval: 500ms
      watch: WATCH
      checks:
        - name: always-fine
          query: 'vector(0)'
          success_if: result < 1
`

// TestRollbackAskedOfARunningDeploy: `gantry rollback` while the deploy of
// 2.0.0 holds the environment through its watch window is not refused as
// busy: that deploy switches back to 1.0.0 when asked, under 100 requests/s
// with no request failed, and 1.0.0's container is the one that ran all
// along (a switch back, not a restart). The rollback exits 0; the deploy
// exits 3, its record saying who asked. A --to other than the release
// before is refused, nothing changed. Then the same in a canary waiting at
// a manual step (the rollback aborts it), in a health gate (it ends at
// once), and through gantry server.
func TestRollbackAskedOfARunningDeploy(t *testing.T) {
	prom := testenv.StartPrometheus(t, "global: { scrape_interval: 1s }\n")
	yaml := func(watch, canary string) string {
		return strings.NewReplacer("PROM", prom.URL, "WATCH", watch, "CANARY", canary).Replace(gantryWatched)
	}
	p := newProject(t, "rbasked", yaml("0s", ""), webRouted)
	p.startProxy()
	if r := p.run("deploy", "staging", "--release", "1.0.0"); r.code != 0 {
		t.Fatalf("deploy 1.0.0: %s", r)
	}
	old := p.containers()
	if len(old) != 1 {
		t.Fatalf("containers after 1.0.0: %v", p.running())
	}
	oldStart := p.startedAt(old[0].ID)

	p.write("gantry.yaml", yaml("2m", ""))
	load := testenv.StartLoad(t, fmt.Sprintf("http://127.0.0.1:%d/version", p.port), "", 100, 30*time.Second, nil)
	cmd, _, errb := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "2.0.0 to serve, its analysis watching", func() bool {
		a := p.status("staging").LastAnalysis
		return a != nil && a.Release == "2.0.0" && a.State == store.Succeeded && a.Analysis.Phase == analysis.Running
	})
	if v := p.version(); v != "2.0.0" {
		t.Fatalf("serving %q in the watch window, want 2.0.0", v)
	}
	if r := p.run("status", "staging"); !strings.Contains(r.stdout, "watch window: its analysis is watching release 2.0.0; gantry rollback staging rolls it back now") {
		t.Errorf("status in the watch window should say what a rollback does: %s", r)
	}

	// Bad input: the watch window's rollback goes to 1.0.0 only.
	if r := p.run("rollback", "staging", "--to", "0.9.0"); r.code != 2 || !strings.Contains(r.stderr, "a rollback now returns to 1.0.0, the release before it") {
		t.Errorf("rollback --to another release in the window: %s", r)
	}
	if a := p.status("staging").LastAnalysis; p.version() != "2.0.0" || a == nil || a.Release != "2.0.0" || a.Analysis.Phase != analysis.Running {
		t.Fatalf("a refused rollback changed something: serving %q, analysis %+v", p.version(), a)
	}

	p.env = []string{"GANTRY_ACTOR=alice"}
	r := p.run("rollback", "staging", "--output", "json")
	p.env = nil
	if r.code != 0 {
		t.Fatalf("rollback in the watch window: %s", r)
	}
	var res deploy.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("rollback --output json: %v\n%s", err, r.stdout)
	}
	if res.Kind != "deploy" || res.Release != "2.0.0" || res.State != store.RolledBack || res.Failure == nil || res.Failure.Check != "rollback" ||
		!strings.Contains(res.Failure.Reason, "alice") || res.Previous != "1.0.0" {
		t.Errorf("the rollback's result: %+v (failure %+v)", res, res.Failure)
	}
	if !strings.Contains(r.stderr, "is in its watch window in staging") {
		t.Errorf("the rollback should say what it asks of whom:\n%s", r.stderr)
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("the deploy asked to roll back: %v, want exit 3\n%s", err, errb)
	}
	if !strings.Contains(errb.String(), "asked for it (gantry rollback) in the watch window") {
		t.Errorf("the deploy should say who asked:\n%s", errb)
	}
	time.Sleep(300 * time.Millisecond)
	load.Stop()
	lr := load.Wait()
	if lr.Failed != 0 {
		t.Errorf("%d of %d requests failed across the switch and the switch back: %v", lr.Failed, lr.Total, lr.Errors)
	}
	if lr.ByKey["2.0.0"] == 0 || lr.ByKey["1.0.0"] == 0 {
		t.Errorf("the load should have seen both releases: %v", lr.ByKey)
	}
	p.onStableOnly("after the rollback", "1.0.0")
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Errorf("running after the rollback: %v, want only web@1.0.0", run)
	}
	if cs := p.containers(); len(cs) == 0 || cs[0].ID != old[0].ID || p.startedAt(cs[0].ID) != oldStart {
		t.Errorf("1.0.0's container was replaced or restarted: a rollback in the window is a switch back")
	}
	if h := p.history("staging"); h[0].Release != "2.0.0" || h[0].State != store.RolledBack {
		t.Errorf("history: %+v", h[0])
	}

	// The same in a canary, the text output.
	p.write("gantry.yaml", yaml("0s", "        canary: { steps: [{ weight: 50 }], abort: { max_error_ratio: 0.1, min_requests: 10, interval: 250ms } }"))
	cmd, _, errb = p.start("deploy", "staging", "--release", "3.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "the canary to wait at its manual step", func() bool {
		return strings.Contains(errb.String(), "waiting for `gantry promote --step staging`")
	})
	r = p.run("rollback", "staging")
	if r.code != 0 || !strings.Contains(r.stdout, "rolled staging back from 3.0.0 to 1.0.0") || !strings.Contains(r.stderr, "is in its canary in staging") {
		t.Errorf("rollback during the canary: %s", r)
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 3 || !strings.Contains(errb.String(), "aborted by") {
		t.Errorf("the deploy whose canary was aborted: %v, want exit 3\n%s", err, errb)
	}
	p.onStableOnly("after the canary's rollback", "1.0.0")
	if cs := p.containers(); len(cs) != 1 || cs[0].ID != old[0].ID || p.startedAt(cs[0].ID) != oldStart {
		t.Errorf("after the canary's rollback: %v, want 1.0.0's first container only, never restarted", p.running())
	}

	// During the health gate of a release slow to become ready: the
	// rollback ends the gate at once, and its new container goes.
	p.write("gantry.yaml", yaml("0s", ""))
	cmd, _, errb = p.start("deploy", "staging", "--release", "5.0.0", "--image", "web=IMG_slow")
	waitFor(t, 60*time.Second, "5.0.0 to wait for its health", func() bool {
		return strings.Contains(errb.String(), "waiting for health")
	})
	r = p.run("rollback", "staging")
	if r.code != 0 || !strings.Contains(r.stdout, "rolled staging back from 5.0.0 to 1.0.0") || !strings.Contains(r.stderr, "is being deployed in staging") {
		t.Errorf("rollback during the health gate: %s", r)
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 3 || !strings.Contains(errb.String(), "asked for it (gantry rollback) during the deploy, before it was committed") {
		t.Errorf("the deploy stopped in its gate: %v, want exit 3, saying who asked\n%s", err, errb)
	}
	p.onStableOnly("after the rollback in the gate", "1.0.0")
	if cs := p.containers(); len(cs) != 1 || cs[0].ID != old[0].ID {
		t.Errorf("after the rollback in the gate: %v, want 1.0.0's first container only", p.running())
	}

	// With no deploy holding the environment, a rollback is the usual one.
	if r := p.run("rollback", "staging"); r.code != 2 || !strings.Contains(r.stderr, "staging has served only release 1.0.0") {
		t.Errorf("rollback with nothing earlier: %s", r)
	}

	// Through gantry server: the server runs the deploy and its watch
	// window, and answers the rollback with that deployment, which the
	// CLI follows to its end.
	editor := makeToken(t, p, "ci", "editor")
	srv := startServer(t, p, "")
	p.write("gantry.yaml", yaml("2m", ""))
	p.env = srv.env(editor)
	cmd, out, errb := p.start("deploy", "staging", "--release", "4.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "4.0.0 to serve, its analysis watching in the server", func() bool {
		a := p.status("staging").LastAnalysis
		return a != nil && a.Release == "4.0.0" && a.State == store.Succeeded && a.Analysis.Phase == analysis.Running
	})
	r = p.run("rollback", "staging")
	if r.code != 0 || !strings.Contains(r.stdout, "rolled staging back from 4.0.0 to 1.0.0") {
		t.Errorf("rollback through the server in the watch window: %s", r)
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 3 || !strings.Contains(out.String(), "FAILED: release 4.0.0 was rolled back on request in staging") ||
		!strings.Contains(errb.String(), "ci (pid") {
		t.Errorf("the deploy through the server: %v, want exit 3, the rollback's asker named\n%s%s", err, out, errb)
	}
	p.env = nil
	p.onStableOnly("after the rollback through the server", "1.0.0")
}

// startedAt is when the container last started, as Docker says.
func (p *project) startedAt(id string) string {
	p.t.Helper()
	info, err := p.c.ContainerInspect(p.t.Context(), id)
	if err != nil {
		p.t.Fatal(err)
	}
	return info.State.StartedAt
}
