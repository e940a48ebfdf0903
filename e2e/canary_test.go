package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// gantryCanary routes web through the gantry proxy with a canary block
// whose steps (STEPS) the test fills in: seconds, not minutes.
const gantryCanary = `
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
        canary:
          steps: STEPS
          abort: { max_error_ratio: 0.1, min_requests: 10, interval: 250ms }
`

// webFailing is webRouted whose release answers 500 to every other
// request while its health check stays green.
const webFailing = webRouted + `    environment:
      APP_ERROR_RATE: "0.5"
`

// newCanary is a project with the canary's steps, its proxy running and
// release 1.0.0 (IMG_healthy) deployed: plain blue/green, said so.
func newCanary(t *testing.T, base, steps string) *project {
	t.Helper()
	p := newProject(t, base, strings.Replace(gantryCanary, "STEPS", steps, 1), webRouted)
	p.startProxy()
	r := p.run("deploy", "staging", "--release", "1.0.0")
	if r.code != 0 || !strings.Contains(r.stderr, "no stable release routed yet") {
		t.Fatalf("the first deploy should be blue/green and say so: %s", r)
	}
	return p
}

// onStableOnly fails the test unless the proxy has no canary on its routes
// and 20 requests in a row are answered by want: one request could miss a
// canary left at 50%.
func (p *project) onStableOnly(what, want string) {
	p.t.Helper()
	ps := p.run("proxy", "status", "--output", "json")
	if ps.code != 0 || strings.Contains(ps.stdout, `"canary"`) {
		p.t.Errorf("%s: the proxy still has a canary: %s", what, ps)
	}
	for range 20 {
		if v := p.version(); v != want {
			p.t.Errorf("%s: the proxy sends traffic to %q, want %s only", what, v, want)
			return
		}
	}
}

// releaseOrOwn keys an answer by the release that gave it, the bad
// release's own 500 as "app-500", and fails the proxy's own pages (502,
// 503: what a switch could cause) and anything else.
func releaseOrOwn(resp *http.Response, body []byte) (string, error) {
	if why := resp.Header.Get(proxy.ErrorHeader); why != "" {
		return "", fmt.Errorf("the proxy answered %d itself (%s)", resp.StatusCode, why)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return strings.TrimSpace(string(body)), nil
	case http.StatusInternalServerError:
		return "app-500", nil
	}
	return "", fmt.Errorf("status %d: %.100s", resp.StatusCode, body)
}

// TestCanaryAbortedByErrorRate: a release answering 500 to half its
// requests passes its health gate, takes half the traffic as a canary
// and is aborted by its error ratio under 100 requests/s: every answer
// comes from a release (no connection error, no 502/503 of the proxy),
// the deployment is rolled back with the figures of why, and 1.0.0
// serves alone again. Then a bad canary block is refused, nothing changed.
func TestCanaryAbortedByErrorRate(t *testing.T) {
	p := newCanary(t, "canarybad", "[{ weight: 50, pause: 10s }, { weight: 100, pause: 10s }]")
	p.write("compose.yaml", webFailing)
	load := testenv.StartLoad(t, fmt.Sprintf("http://127.0.0.1:%d/version", p.port), "", 100, 20*time.Second, releaseOrOwn)
	time.Sleep(500 * time.Millisecond) // the stable release under load first
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	time.Sleep(500 * time.Millisecond) // and after the abort
	load.Stop()
	lr := load.Wait()
	if lr.Failed != 0 {
		t.Errorf("%d of %d requests failed by the switch (connection errors or the proxy's own pages): %v", lr.Failed, lr.Total, lr.Errors)
	}
	if lr.ByKey["app-500"] == 0 || lr.ByKey["1.0.0"] == 0 {
		t.Errorf("the load should have seen the canary's own 500s and 1.0.0: %v", lr.ByKey)
	}
	f := res.Failure
	if res.State != store.RolledBack || f == nil || f.Check != "canary" || f.Canary == nil {
		t.Fatalf("want rolled back by the canary: %+v (failure %+v)", res, f)
	}
	c := f.Canary
	if c.Verdict != deploy.CanaryErrorRatio || c.Step != 1 || c.Weight != 50 || c.Canary.Requests < 10 || c.Canary.ErrorRatio <= 0.1 ||
		c.Canary.Release != "2.0.0" || c.Stable.Release != "1.0.0" || c.Stable.Errors != 0 {
		t.Errorf("the record's figures: %+v", c)
	}
	for _, want := range []string{"the canary of web failed: 50% (step 1/2)", "5xx", "over max_error_ratio 10.0%", "stable 1.0.0", "rolled back to 1.0.0"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason %q lacks %q", res.Reason, want)
		}
	}
	if h := p.history("staging"); len(h) < 2 || h[0].State != store.RolledBack || !strings.Contains(h[0].Reason, "max_error_ratio") {
		t.Errorf("history: %+v", h[0])
	}
	p.onStableOnly("after the abort", "1.0.0")
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Errorf("running after the abort: %v, want only web@1.0.0 (the canary's container removed)", run)
	}

	// Bad input: a canary whose weights go down is refused before anything runs.
	before := p.snapshot()
	p.write("gantry.yaml", strings.Replace(gantryCanary, "STEPS", "[{ weight: 50, pause: 1s }, { weight: 10, pause: 1s }]", 1))
	r := p.run("deploy", "staging", "--release", "3.0.0", "--image", "web=IMG_healthy-v2")
	if r.code != 2 || !strings.Contains(r.stderr, "canary.steps.1: weight 10 is less than the step before (50)") {
		t.Errorf("a decreasing canary should be refused with exit 2: %s", r)
	}
	if after := p.snapshot(); after != before {
		t.Errorf("a refused config changed the containers: %s -> %s", before, after)
	}
}

// TestCanaryAbortedByLatency: a release that answers every request 300 ms
// late (its health check stays fast) takes half the traffic as a canary
// and is aborted by its p99 over max_p99, with no request failed.
func TestCanaryAbortedByLatency(t *testing.T) {
	p := newProject(t, "canaryslow", strings.Replace(strings.Replace(gantryCanary, "STEPS", "[{ weight: 50, pause: 10s }]", 1),
		"abort: { max_error_ratio: 0.1, min_requests: 10, interval: 250ms }", "abort: { max_error_ratio: 0.1, max_p99: 150ms, min_requests: 10, interval: 250ms }", 1), webRouted)
	p.startProxy()
	p.deploy(0, "staging", "--release", "1.0.0")
	p.write("compose.yaml", webRouted+"    environment:\n      APP_DELAY: 300ms\n")
	load := testenv.StartLoad(t, fmt.Sprintf("http://127.0.0.1:%d/version", p.port), "", 50, 20*time.Second, releaseOrOwn)
	time.Sleep(300 * time.Millisecond)
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	load.Stop()
	if lr := load.Wait(); lr.Failed != 0 || lr.ByKey["2.0.0"] == 0 {
		t.Errorf("load: %d of %d failed (%v), answered by %v; want none failed and some from the slow canary", lr.Failed, lr.Total, lr.Errors, lr.ByKey)
	}
	f := res.Failure
	if res.State != store.RolledBack || f == nil || f.Canary == nil {
		t.Fatalf("want rolled back by the canary: %+v (failure %+v)", res, f)
	}
	if c := f.Canary; c.Verdict != deploy.CanaryLatency || c.Canary.P99 < 300*time.Millisecond || c.Stable.P99 >= 150*time.Millisecond {
		t.Errorf("the record's figures: verdict %s, canary p99 %s, stable p99 %s; want latency, >= 300ms, < 150ms", c.Verdict, c.Canary.P99, c.Stable.P99)
	}
	if !strings.Contains(res.Reason, "over max_p99 150ms") {
		t.Errorf("reason %q does not name the threshold", res.Reason)
	}
	p.onStableOnly("after the abort", "1.0.0")
}

// TestCanaryPromoted: a healthy release goes through two short steps under
// load and is promoted; the old release is drained, and nothing failed.
func TestCanaryPromoted(t *testing.T) {
	p := newCanary(t, "canarygood", "[{ weight: 30, pause: 2s }, { weight: 60, pause: 2s }]")
	load := testenv.StartLoad(t, fmt.Sprintf("http://127.0.0.1:%d/version", p.port), "", 50, 20*time.Second, releaseOrOwn)
	r := p.run("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2", "--output", "json")
	load.Stop()
	lr := load.Wait()
	if r.code != 0 {
		t.Fatalf("the canary should be promoted: %s", r)
	}
	var res deploy.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Services) != 1 || res.Services[0].Strategy != "canary" {
		t.Errorf("strategy: %+v", res.Services)
	}
	for _, want := range []string{"30% (step 1/2) passed", "60% (step 2/2) passed", "canary promoted", "drained"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, r.stderr)
		}
	}
	if lr.Failed != 0 || lr.ByKey["2.0.0"] == 0 || lr.ByKey["1.0.0"] == 0 {
		t.Errorf("load: %d of %d failed (%v), by release %v", lr.Failed, lr.Total, lr.Errors, lr.ByKey)
	}
	if v := p.version(); v != "2.0.0" {
		t.Errorf("after the promotion: %q", v)
	}
	ps := p.run("proxy", "status", "--output", "json")
	if ps.code != 0 || strings.Contains(ps.stdout, `"canary"`) {
		t.Errorf("the route should have no canary left: %s", ps)
	}
}

// TestCanaryManualStep: a step without pause waits; during it a client
// keeps its release by its cookie across requests, while clients without
// one are spread over both; `gantry promote --step` from another process
// advances it, and the deploy succeeds. Then a step without requests is
// inconclusive.
func TestCanaryManualStep(t *testing.T) {
	p := newCanary(t, "canarymanual", "[{ weight: 50 }]")
	if r := p.run("promote", "--step", "staging"); r.code != 2 || !strings.Contains(r.stderr, "no canary is running in staging") {
		t.Errorf("promote --step without a canary: %s", r)
	}
	cmd, _, errb := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "the canary to wait at its manual step", func() bool {
		return strings.Contains(errb.String(), "waiting for `gantry promote --step staging`")
	})
	if st := p.status("staging"); st.Release != "1.0.0" || st.Canary == nil || !st.Canary.Manual || st.Canary.Release != "2.0.0" || st.Canary.Weight != 50 {
		t.Errorf("status during the canary: %+v (canary %+v)", st, st.Canary)
	}
	if r := p.run("status", "staging"); !strings.Contains(r.stdout, "canary: web release 2.0.0 at 50% (step 1/1), deployment 2; waiting for gantry promote --step staging") {
		t.Errorf("status text during the canary: %s", r)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/version", p.port)
	seen := map[string]int{}
	for i := range 8 {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 2 * time.Second}
		first := ""
		for j := range 10 {
			v := fetch(t, hc, url)
			if j == 0 {
				first = v
				seen[v]++
			} else if v != first {
				t.Fatalf("client %d moved from %s to %s on request %d: the cookie should keep it", i, first, v, j+1)
			}
		}
	}
	if len(seen) != 2 {
		// 8 clients at 50%: all on one side has a chance of 1 in 128.
		t.Logf("new clients all went to one release: %v", seen)
	}
	r := p.run("promote", "--step", "staging", "--output", "json")
	if r.code != 0 {
		t.Fatalf("promote --step: %s", r)
	}
	var sig deploy.CanarySignal
	if err := json.Unmarshal([]byte(r.stdout), &sig); err != nil || !sig.Taken || sig.Service != "web" || sig.Step != 1 {
		t.Errorf("promote --step said %s (%v)", r.stdout, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the deploy failed after the manual step: %v\n%s", err, errb)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the deploy did not end after promote --step:\n%s", errb)
	}
	if !strings.Contains(errb.String(), "advanced by") {
		t.Errorf("progress lacks the advance:\n%s", errb)
	}
	if v := p.version(); v != "2.0.0" {
		t.Errorf("after the promotion: %q", v)
	}

	// A step of 1 s that sees no request at all is inconclusive at 2 s.
	p.write("gantry.yaml", strings.Replace(gantryCanary, "STEPS", "[{ weight: 50, pause: 1s }]", 1))
	res := p.deploy(3, "staging", "--release", "3.0.0", "--image", "web=IMG_healthy")
	if f := res.Failure; f == nil || f.Canary == nil || f.Canary.Verdict != deploy.CanaryInconclusive || !strings.Contains(f.Reason, "fewer than min_requests 10") {
		t.Errorf("want an inconclusive canary: %+v", res.Failure)
	}
	if v := p.version(); v != "2.0.0" {
		t.Errorf("after the inconclusive canary: %q", v)
	}
}

// TestCanaryCrashIsRecovered: gantry killed (SIGKILL) while its canary
// waits at a step; the next command aborts the canary (all traffic to
// 1.0.0), removes its container and records the deployment rolled back.
// A manual abort is recorded as such; Ctrl-C aborts the canary too.
func TestCanaryCrashIsRecovered(t *testing.T) {
	p := newCanary(t, "canarycrash", "[{ weight: 50 }]")
	cmd, _, errb := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "the canary to wait at its manual step", func() bool {
		return strings.Contains(errb.String(), "waiting for `gantry promote --step staging`")
	})
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	if st := p.status("staging"); st.Release != "1.0.0" {
		t.Fatalf("after recovery the record says %q serves", st.Release)
	}
	p.onStableOnly("after recovery", "1.0.0")
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Errorf("running after recovery: %v", run)
	}
	if h := p.history("staging"); h[0].State != store.RolledBack || !strings.Contains(h[0].Reason, "interrupted") {
		t.Errorf("the interrupted canary's record: %+v", h[0])
	}

	// By hand: gantry promote --abort from another process.
	cmd, _, errb = p.start("deploy", "staging", "--release", "3.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "the canary to wait at its manual step", func() bool {
		return strings.Contains(errb.String(), "waiting for `gantry promote --step staging`")
	})
	p.env = []string{"GANTRY_ACTOR=alice"}
	if r := p.run("promote", "--abort", "staging"); r.code != 0 || !strings.Contains(r.stdout, "aborted at 50% (step 1/1)") {
		t.Errorf("promote --abort: %s", r)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(errb.String(), "aborted by alice") {
		t.Errorf("the deploy should fail, aborted by alice: %v\n%s", err, errb)
	}
	p.onStableOnly("after the abort", "1.0.0")

	// Ctrl-C mid-canary: the canary is aborted before gantry exits.
	p.env = nil
	cmd, _, errb = p.start("deploy", "staging", "--release", "4.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "the canary to wait at its manual step", func() bool {
		return strings.Contains(errb.String(), "waiting for `gantry promote --step staging`")
	})
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err == nil || !strings.Contains(errb.String(), "canary aborted") || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("Ctrl-C should abort the canary and fail the deploy: %v\n%s", err, errb)
	}
	p.onStableOnly("after Ctrl-C", "1.0.0")
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Errorf("running after Ctrl-C: %v", run)
	}
}

func fetch(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s (%v)", url, resp.StatusCode, b, err)
	}
	return strings.TrimSpace(string(b))
}

// TestCanaryStepThroughServer: a deploy that gantry server runs waits at a
// manual canary step; `gantry promote --step` with the server's context (an
// editor's token) reaches it through the API, and the deploy succeeds.
func TestCanaryStepThroughServer(t *testing.T) {
	p := newCanary(t, "canarysrv", "[{ weight: 50 }]")
	s := startServer(t, p, "")
	editor := makeToken(t, p, "ed", "editor")
	p.env = s.env(editor)
	cmd, _, errb := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	waitFor(t, 60*time.Second, "the server's canary to wait at its manual step", func() bool {
		return strings.Contains(errb.String(), "manual: waits for gantry promote --step staging")
	})
	r := p.run("promote", "--step", "staging", "--output", "json")
	var sig deploy.CanarySignal
	if err := json.Unmarshal([]byte(r.stdout), &sig); r.code != 0 || err != nil || !sig.Taken || sig.Actor != "ed" {
		t.Fatalf("promote --step through the server: %s (%v)", r, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the deploy through the server failed after the step: %v\n%s", err, errb)
	}
	p.env = nil
	if v := p.version(); v != "2.0.0" {
		t.Errorf("after the promotion: %q", v)
	}
	if r := p.run("promote", "--step", "staging"); r.code != 2 {
		t.Errorf("no canary left: %s", r)
	}
}
