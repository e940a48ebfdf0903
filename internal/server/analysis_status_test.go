package server

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// TestStatusHasLastAnalysis: the server's status carries the newest
// analysis, as a local gantry status does, so the CLI prints the same
// either way.
func TestStatusHasLastAnalysis(t *testing.T) {
	f := newFixture(t)
	d := f.deploy("staging", `{"release":"1.0.0"}`)
	if d.State != store.Succeeded {
		t.Fatalf("deploy: %s %s", d.State, d.Reason)
	}
	var st deploy.Status
	f.get("viewer", "/api/v1/envs/staging/status").json(t, &st)
	if st.LastAnalysis != nil {
		t.Fatalf("last analysis before any: %+v", st.LastAnalysis)
	}

	// The deployment's result gains an analysis, as the engine records it.
	var result map[string]any
	if err := json.Unmarshal(d.Result, &result); err != nil {
		t.Fatal(err)
	}
	result["analysis"] = map[string]any{"prometheus": "http://127.0.0.1:9090", "phase": "successful",
		"started": "2026-11-29T10:00:00Z", "checks": []any{}}
	if err := f.st.SetResult(context.Background(), d.ID, result); err != nil {
		t.Fatal(err)
	}
	f.get("viewer", "/api/v1/envs/staging/status").json(t, &st)
	if a := st.LastAnalysis; a == nil || a.Deployment != d.ID || a.Release != "1.0.0" || a.Analysis == nil || a.Analysis.Prometheus != "http://127.0.0.1:9090" {
		t.Fatalf("last analysis through the server: %+v", a)
	}
}
