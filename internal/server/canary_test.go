package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// TestCanarySignalThroughAPI: POST /api/v1/envs/{env}/canary reaches a
// deployment stepping a canary (here recorded as the engine records it,
// its lock held) through the store it polls, audited, and is refused with
// what to do when no canary runs or the action is unknown.
func TestCanarySignalThroughAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct{ body, want string }{
		{`{"action":"step"}`, "no canary is running in staging"},
		{`{"action":"promote"}`, `use step (advance a manual step) or abort`},
	} {
		if r := f.post("editor", "/api/v1/envs/staging/canary", tc.body); r.status != 422 || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s, want 422 saying %q", tc.body, r.status, r.body, tc.want)
		}
	}

	lock, err := f.st.Acquire(ctx, f.project, "staging", "deploy 2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	d := &store.Deployment{Project: f.project, Env: "staging", Release: "2.0.0", Kind: "deploy", PID: 4242}
	if err := f.st.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Transition(ctx, d.ID, store.Deploying, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.st.AddStep(ctx, d.ID, "web", "canary", "50% (step 2/2) to 127.0.0.1:1, manual: waits for gantry promote --step staging"); err != nil {
		t.Fatal(err)
	}
	// The deploying gantry's side: it takes the signal as the engine does.
	taken := make(chan *store.CanarySignal, 1)
	go func() {
		for range 100 {
			if sig, err := f.st.TakeCanarySignal(ctx, d.ID, "web", nil); err == nil && sig != nil {
				taken <- sig
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	r := f.post("editor", "/api/v1/envs/staging/canary", `{"action":"step"}`)
	var sig deploy.CanarySignal
	r.json(t, &sig)
	if r.status != 200 || !sig.Taken || sig.Deployment != d.ID || sig.Service != "web" || sig.Step != 2 || sig.Weight != 50 || sig.Actor != "editor" || sig.PID != 4242 {
		t.Errorf("answer %d %+v", r.status, sig)
	}
	select {
	case s := <-taken:
		if s.Action != store.CanaryStep || s.Step != 2 || s.Actor != "editor" {
			t.Errorf("the deploying side took %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the signal never reached the store")
	}
	if a := f.get("admin", "/api/v1/audit?action=canary.signal"); a.status != 200 || !strings.Contains(string(a.body), `"actor":"editor"`) {
		t.Errorf("the audit log lacks the editor's canary.signal: %d %s", a.status, a.body)
	}
}
