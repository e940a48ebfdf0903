package store

import (
	"context"
	"encoding/json"
	"testing"
)

func TestGateRuns(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	r := &Release{Project: "shop", Version: "1.0.0", Commit: "c0ffee"}
	if err := s.BeginRelease(ctx, r); err != nil {
		t.Fatal(err)
	}
	runs := []*GateRun{
		{Gate: GateLint, Passed: true, Summary: "passed: 0 findings"},
		{Gate: GateScan, Passed: true, Summary: "passed", Report: json.RawMessage(`{"passed":true}`)},
		// A later scan of the same release, against a newer database, is the verdict.
		{Gate: GateScan, Passed: false, Summary: "failed: 1 vulnerability", Report: json.RawMessage(`{"passed":false}`), Actor: "ci"},
	}
	for _, g := range runs {
		if err := s.RecordGate(ctx, r, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordGate(ctx, r, &GateRun{Gate: "dockle"}); err == nil {
		t.Error("an unknown gate was recorded")
	}
	if err := s.FinishRelease(ctx, r, ReleaseReleased, ""); err != nil {
		t.Fatal(err)
	}

	got, err := s.GetRelease(ctx, "shop", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	scan, lint := got.Gates[GateScan], got.Gates[GateLint]
	if scan == nil || scan.Passed || scan.Actor != "ci" || string(scan.Report) != `{"passed":false}` || scan.Version != "1.0.0" {
		t.Errorf("scan gate: %+v", scan)
	}
	if lint == nil || !lint.Passed || string(lint.Report) != "{}" {
		t.Errorf("lint gate: %+v", lint)
	}
	list, err := s.Releases(ctx, "shop", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Gates[GateScan] == nil || list[0].Gates[GateScan].Passed || list[0].Gates[GateScan].Report != nil {
		t.Errorf("listed gates (newest, without reports): %+v", list[0].Gates)
	}

	// A release made again (after a failed push) starts without verdicts.
	r2 := &Release{Project: "shop", Version: "1.1.0", Commit: "beef"}
	if err := s.BeginRelease(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordGate(ctx, r2, &GateRun{Gate: GateScan, Passed: false}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRelease(ctx, r2, ReleaseFailed, "gate scan failed"); err != nil {
		t.Fatal(err)
	}
	again := &Release{Project: "shop", Version: "1.1.0", Commit: "beef"}
	if err := s.BeginRelease(ctx, again); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Gates(ctx, again.ID); err != nil || len(g) != 0 {
		t.Errorf("gates of the release made again: %v %v", g, err)
	}
	if g, err := s.Gates(ctx, r2.ID); err != nil || len(g) != 0 {
		t.Errorf("gates of the replaced release were kept: %v %v", g, err)
	}
}
