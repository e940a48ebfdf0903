package server

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// TestListCacheFollowsTheRecord: history and audit answers are kept
// between requests, and every change to what they list shows in the next
// answer: a new deployment, a transition of an older one, another one
// serving, a new audit event, a cut of the log. Bodies carry their length.
func TestListCacheFollowsTheRecord(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	older := seed(t, f)
	history := func() []deploy.HistoryEntry {
		t.Helper()
		r := f.get("admin", "/api/v1/envs/staging/history")
		if r.status != 200 || r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) {
			t.Fatalf("history: %d, Content-Length %q for %d bytes: %s", r.status, r.header.Get("Content-Length"), len(r.body), r.body)
		}
		var hs []deploy.HistoryEntry
		r.json(t, &hs)
		return hs
	}
	if hs := history(); len(hs) != 1 || hs[0].State != store.Failed {
		t.Fatalf("history: %+v", hs)
	}
	if hs := history(); len(hs) != 1 {
		t.Fatalf("history asked again: %+v", hs)
	}

	d := &store.Deployment{Project: f.project, Env: "staging", Release: "2.0.0", Kind: "deploy"}
	if err := f.st.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	if hs := history(); len(hs) != 2 || hs[0].ID != d.ID || hs[0].State != store.Pending {
		t.Fatalf("after a new deployment: %+v", hs)
	}
	for _, to := range []store.State{store.Deploying, store.Verifying} {
		if err := f.st.Transition(ctx, d.ID, to, ""); err != nil {
			t.Fatal(err)
		}
		if hs := history(); hs[0].State != to {
			t.Fatalf("after the transition to %s: %+v", to, hs[0])
		}
	}
	if err := f.st.Succeed(ctx, d, "all services healthy"); err != nil {
		t.Fatal(err)
	}
	if hs := history(); hs[0].State != store.Succeeded || !hs[0].Serving || hs[1].Serving {
		t.Fatalf("after it succeeded: %+v", hs)
	}
	// An older deployment changes: its row, not the newest, moves.
	if err := f.st.SetResult(ctx, older, &deploy.Result{Deployment: older, Release: "seed"}); err != nil {
		t.Fatal(err)
	}
	if hs := history(); len(hs[1].Result) < 10 {
		t.Fatalf("the older deployment's new result does not show: %+v", hs[1])
	}
	if hs := f.get("admin", "/api/v1/envs/staging/history?limit=1"); hs.status != 200 {
		t.Fatalf("history?limit=1: %d %s", hs.status, hs.body)
	} else {
		var one []deploy.HistoryEntry
		hs.json(t, &one)
		if len(one) != 1 || one[0].ID != d.ID {
			t.Fatalf("history?limit=1: %+v", one)
		}
	}

	events := func(q string) []audit.Record {
		t.Helper()
		r := f.get("admin", "/api/v1/audit"+q)
		if r.status != 200 || r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) {
			t.Fatalf("audit: %d, Content-Length %q for %d bytes: %s", r.status, r.header.Get("Content-Length"), len(r.body), r.body)
		}
		var rs []audit.Record
		r.json(t, &rs)
		return rs
	}
	if _, err := f.srv.audit.Append(ctx, audit.Event{Actor: "alice", Action: "token.create", Object: "token/ci", Outcome: audit.OK}); err != nil {
		t.Fatal(err)
	}
	before := events("")
	if len(before) == 0 || len(events("")) != len(before) {
		t.Fatalf("audit: %d events, then another number", len(before))
	}
	if _, err := f.srv.audit.Append(ctx, audit.Event{Actor: "ci", Action: "deploy", Object: "env/staging", Outcome: audit.OK}); err != nil {
		t.Fatal(err)
	}
	after := events("")
	if len(after) != len(before)+1 || after[0].Actor != "ci" || after[0].ID <= before[0].ID {
		t.Fatalf("the appended event does not show: %d events, newest %+v", len(after), after[0])
	}
	if ci := events("?actor=ci"); len(ci) != 1 {
		t.Fatalf("audit?actor=ci: %+v", ci)
	}
	// A cut at the tail: the oldest events go.
	if _, _, err := f.st.PruneAudit(ctx, after[0].Time.Add(1).UTC().Format("2006-01-02T15:04:05.000000000Z")); err != nil {
		t.Fatal(err)
	}
	if left := events(""); len(left) != 0 {
		b, _ := json.Marshal(left)
		t.Fatalf("after cutting every event, the list shows %s", b)
	}
}
