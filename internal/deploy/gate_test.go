package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// TestAdmit: the gate check of deploy and promote, over a real store and
// audit log: which releases an environment with require_gates takes, and
// who may override, with what written down.
func TestAdmit(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := audit.Open(st)

	release := func(version string, gates ...*store.GateRun) {
		r := &store.Release{Project: "shop", Version: version, Commit: "c0ffee"}
		if err := st.BeginRelease(ctx, r); err != nil {
			t.Fatal(err)
		}
		for _, g := range gates {
			if err := st.RecordGate(ctx, r, g); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.FinishRelease(ctx, r, store.ReleaseReleased, ""); err != nil {
			t.Fatal(err)
		}
	}
	passed := &store.GateRun{Gate: store.GateScan, Passed: true, Summary: "passed: no vulnerability at or above HIGH"}
	failed := &store.GateRun{Gate: store.GateScan, Passed: false, Summary: "failed: 1 vulnerability at or above HIGH (HIGH CVE-2022-32149 in golang.org/x/text v0.3.7 (web))"}
	lintOK := &store.GateRun{Gate: store.GateLint, Passed: true, Summary: "passed"}
	release("1.0.0", passed)
	release("1.1.0", failed)
	release("1.2.0")
	release("1.3.0", passed, lintOK)
	// Scanned again with a newer database: the newest verdict counts.
	release("1.4.0", passed, &store.GateRun{Gate: store.GateScan, Passed: false, Summary: "failed: a new advisory"})

	prod := &config.Environment{Name: "production", RequireGates: true}
	staging := &config.Environment{Name: "staging"}
	scanOnly := config.Gates{Scan: &config.Scan{}}
	both := config.Gates{Scan: &config.Scan{}, Lint: &config.Lint{}}
	admin := audit.Event{Actor: "root", Role: "admin", RequestID: "r1", Client: "127.0.0.1:5555"}
	editor := audit.Event{Actor: "ed", Role: "editor"}
	override := &GateOverride{Reason: "CVE-2022-32149 is not reachable; fixed in 1.1.1"}

	tests := []struct {
		name    string
		a       Admission
		want    error    // nil, ErrGateRefused, ErrOverrideForbidden, ErrInput
		msg     []string // in the error
		audited audit.Outcome
	}{
		{name: "no require_gates takes anything", a: Admission{Env: staging, Gates: scanOnly, Release: "1.1.0"}},
		{name: "no require_gates, no release", a: Admission{Env: staging, Gates: scanOnly}},
		{name: "a passed release", a: Admission{Env: prod, Gates: scanOnly, Release: "1.0.0"}},
		{name: "a failed scan", a: Admission{Env: prod, Gates: scanOnly, Release: "1.1.0"}, want: ErrGateRefused,
			msg: []string{"production requires releases that passed their gates", "release 1.1.0: its scan gate failed", "CVE-2022-32149", "--override-gate --reason"}},
		{name: "the newest verdict counts", a: Admission{Env: prod, Gates: scanOnly, Release: "1.4.0"}, want: ErrGateRefused, msg: []string{"a new advisory"}},
		{name: "a scan that never ran", a: Admission{Env: prod, Gates: scanOnly, Release: "1.2.0"}, want: ErrGateRefused,
			msg: []string{"its scan gate never ran", "gantry scan --release 1.2.0"}},
		{name: "lint configured but never ran", a: Admission{Env: prod, Gates: both, Release: "1.0.0"}, want: ErrGateRefused,
			msg: []string{"its lint gate never ran"}},
		{name: "scan and lint passed", a: Admission{Env: prod, Gates: both, Release: "1.3.0"}},
		{name: "a release gantry never made", a: Admission{Env: prod, Gates: scanOnly, Release: "9.9.9"}, want: ErrGateRefused,
			msg: []string{"release 9.9.9 was not made by gantry release"}},
		{name: "no release named", a: Admission{Env: prod, Gates: scanOnly}, want: ErrGateRefused, msg: []string{"--release VERSION"}},
		{name: "an image replaced", a: Admission{Env: prod, Gates: scanOnly, Release: "1.0.0", Images: map[string]string{"web": "x/web:1"}},
			want: ErrGateRefused, msg: []string{"--image replaces the image of web"}},
		{name: "an admin overrides, audited", a: Admission{Env: prod, Gates: scanOnly, Release: "1.1.0", Override: override, Who: admin}, audited: audit.OK},
		{name: "an editor may not override", a: Admission{Env: prod, Gates: scanOnly, Release: "1.1.0", Override: override, Who: editor},
			want: ErrOverrideForbidden, msg: []string{"ed (editor) may not"}, audited: audit.Denied},
		{name: "an override without a reason", a: Admission{Env: prod, Gates: scanOnly, Release: "1.1.0", Override: &GateOverride{Reason: " "}, Who: admin},
			want: ErrInput, msg: []string{"--override-gate needs --reason"}},
		{name: "an override of a passed release writes nothing", a: Admission{Env: prod, Gates: scanOnly, Release: "1.0.0", Override: override, Who: admin}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.Project = "shop"
			before, err := log.List(ctx, audit.Filter{Action: AuditGateOverride, Limit: -1})
			if err != nil {
				t.Fatal(err)
			}
			err = Admit(ctx, st, log, tc.a)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			after, err := log.List(ctx, audit.Filter{Action: AuditGateOverride, Limit: -1})
			if err != nil {
				t.Fatal(err)
			}
			if tc.audited == "" {
				if len(after) != len(before) {
					t.Errorf("audit events written: %+v", after[len(before):])
				}
				return
			}
			if len(after) != len(before)+1 {
				t.Fatalf("want one gate.override event, got %d new", len(after)-len(before))
			}
			ev := after[0] // newest first
			if ev.Outcome != tc.audited || ev.Actor != tc.a.Who.Actor || ev.Role != tc.a.Who.Role || ev.Object != "env/production" ||
				ev.Detail["reason"] != override.Reason || ev.Detail["release"] != "1.1.0" || !strings.Contains(ev.Detail["refused"], "scan gate failed") {
				t.Errorf("audit event: %+v", ev)
			}
			if tc.audited == audit.OK && (ev.RequestID != "r1" || ev.Client != "127.0.0.1:5555") {
				t.Errorf("request id and client: %+v", ev)
			}
		})
	}
	if rep, err := log.Verify(ctx); err != nil || rep.Problem != nil || rep.Events != 2 {
		t.Errorf("the audit chain: %+v %v", rep, err)
	}
}

// TestAdmitRequires: an environment with requires: takes, through gantry
// deploy too, only a release whose newest deployment that ended in each
// required environment succeeded, named, and without --image.
func TestAdmitRequires(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ran := func(env, release string, states ...store.State) {
		t.Helper()
		for _, s := range states {
			d := &store.Deployment{Project: "shop", Env: env, Release: release}
			if err := st.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
			path := map[store.State][]store.State{
				store.Succeeded:  {store.Deploying, store.Verifying, store.Succeeded},
				store.RolledBack: {store.Deploying, store.Verifying, store.RolledBack},
				store.Failed:     {store.Failed},
				store.Cancelled:  {store.Cancelled},
			}[s]
			for _, to := range path {
				if err := st.Transition(ctx, d.ID, to, "test"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	ran("staging", "1.0.0", store.Succeeded)
	ran("staging", "1.1.0", store.RolledBack)
	ran("staging", "1.2.0", store.Failed, store.Succeeded)    // fixed, then succeeded
	ran("staging", "1.3.0", store.Succeeded, store.Failed)    // succeeded, then failed: the newest decides
	ran("staging", "1.4.0", store.Succeeded, store.Cancelled) // a cancelled one never ran
	ran("qa", "1.0.0", store.Succeeded)

	prod := &config.Environment{Name: "production", Requires: []string{"staging"}}
	two := &config.Environment{Name: "production", Requires: []string{"staging", "qa"}}
	protected := &config.Environment{Name: "production", Requires: []string{"staging"}, Protected: true}
	tests := []struct {
		name string
		a    Admission
		want string // "" admitted; else a part of the refusal
	}{
		{"succeeded in staging", Admission{Env: prod, Release: "1.0.0"}, ""},
		{"rolled back in staging", Admission{Env: prod, Release: "1.1.0"}, "production requires a release to succeed in staging first: release 1.1.0 did not succeed in staging: deployment 2 is rolled_back (test); deploy it there first: gantry deploy staging --release 1.1.0"},
		{"failed, then succeeded", Admission{Env: prod, Release: "1.2.0"}, ""},
		{"succeeded, then failed", Admission{Env: prod, Release: "1.3.0"}, "deployment 6 is failed"},
		{"succeeded, then cancelled", Admission{Env: prod, Release: "1.4.0"}, ""},
		{"never in staging", Admission{Env: prod, Release: "2.0.0"}, "release 2.0.0 was never deployed to staging"},
		{"no release named", Admission{Env: prod}, "production requires a release that succeeded in staging first; name it: gantry deploy production --release VERSION"},
		{"--image", Admission{Env: prod, Release: "1.0.0", Images: map[string]string{"web": "127.0.0.1:5000/web:x", "api": "x"}}, "--image replaces api, web"},
		{"both required, in both", Admission{Env: two, Release: "1.0.0"}, ""},
		{"both required, not in qa", Admission{Env: two, Release: "1.2.0"}, "production requires a release to succeed in qa first: release 1.2.0 was never deployed to qa"},
		{"protected: promote checks it", Admission{Env: protected, Release: "2.0.0"}, ""},
		{"no requires", Admission{Env: &config.Environment{Name: "staging"}, Release: "9.9.9"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.a.Project = "shop"
			err := Admit(ctx, st, audit.Open(st), tt.a)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("admitted, want a refusal with %q", tt.want)
			case tt.want != "" && (!errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("refusal %v, want ErrInput with %q", err, tt.want)
			}
		})
	}
}
