package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

const gatedGantry = `project: PROJECT
compose: compose.yaml
gates:
  scan: {}
environments:
  staging:
    health: { window: 30s, min_healthy: 1s }
  production:
    require_gates: true
    health: { window: 30s, min_healthy: 1s }
`

// TestGateOverrideThroughTheAPI: an environment with require_gates refuses
// a release whose scan failed (409 gate_refused); only an admin overrides,
// with a reason, and both the override and an editor's refused attempt are
// in the audit log.
func TestGateOverrideThroughTheAPI(t *testing.T) {
	f := newFixtureWith(t, gatedGantry, "", nil)
	ctx := context.Background()
	// Release 2.0.0 failed its scan at release time: recorded as failed,
	// never pushed.
	rel := &store.Release{Project: f.project, Version: "2.0.0", Commit: "c0ffee"}
	if err := f.st.BeginRelease(ctx, rel); err != nil {
		t.Fatal(err)
	}
	summary := "failed: 1 vulnerability at or above HIGH (HIGH CVE-2022-32149 in golang.org/x/text v0.3.7 (web))"
	if err := f.st.RecordGate(ctx, rel, &store.GateRun{Gate: store.GateScan, Summary: summary}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.FinishRelease(ctx, rel, store.ReleaseFailed, "scan gate "+summary); err != nil {
		t.Fatal(err)
	}

	var e Error
	r := f.post("admin", "/api/v1/envs/production/deploy", `{"release":"2.0.0"}`)
	r.json(t, &e)
	if r.status != http.StatusConflict || e.Code != CodeGateRefused || e.ExitCode != 2 || !strings.Contains(e.Message, "CVE-2022-32149") {
		t.Errorf("no override: %d %s", r.status, r.body)
	}
	r = f.post("editor", "/api/v1/envs/production/deploy", `{"release":"2.0.0","override_gate":true,"reason":"not reachable"}`)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "only an admin may override") {
		t.Errorf("an editor's override: %d %s", r.status, r.body)
	}
	for _, body := range []string{`{"release":"2.0.0","override_gate":true}`, `{"release":"2.0.0","reason":"why"}`} {
		if r := f.post("admin", "/api/v1/envs/production/deploy", body); r.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
	}
	// The admin's override passes the gate, written down; the release was
	// never pushed, so the deploy itself is then refused.
	r = f.post("admin", "/api/v1/envs/production/deploy", `{"release":"2.0.0","override_gate":true,"reason":"CVE-2022-32149 is not reachable here"}`)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "not released") {
		t.Errorf("an admin's override of a release never pushed: %d %s", r.status, r.body)
	}
	// Staging does not require gates: no override needed, and nothing audited.
	if r := f.post("editor", "/api/v1/envs/staging/deploy", `{"release":"2.0.0"}`); r.status != http.StatusUnprocessableEntity {
		t.Errorf("staging: %d %s", r.status, r.body)
	}

	evs, err := f.srv.audit.List(ctx, audit.Filter{Action: deploy.AuditGateOverride, Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("want the admin's override and the editor's refused one, got %+v", evs)
	}
	ok, denied := evs[0], evs[1]
	if ok.Actor != "admin" || ok.Role != "admin" || ok.Outcome != audit.OK || ok.Detail["reason"] != "CVE-2022-32149 is not reachable here" ||
		ok.Detail["release"] != "2.0.0" || ok.Detail["env"] != "production" || ok.RequestID == "" {
		t.Errorf("the override: %+v", ok)
	}
	if denied.Actor != "editor" || denied.Outcome != audit.Denied {
		t.Errorf("the editor's attempt: %+v", denied)
	}
}
