package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func create(t *testing.T, s *Store, env, release string) *Deployment {
	t.Helper()
	d := &Deployment{Project: "shop", Env: env, Release: release, Actor: "ci", PID: 42, Plan: json.RawMessage(`{"services":["web"]}`)}
	if err := s.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return d
}

func move(t *testing.T, s *Store, id int64, states ...State) {
	t.Helper()
	for _, to := range states {
		if err := s.Transition(context.Background(), id, to, "to "+string(to)); err != nil {
			t.Fatal(err)
		}
	}
}

func get(t *testing.T, s *Store, id int64) *Deployment {
	t.Helper()
	d, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(ds []*Deployment) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCreate(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := create(t, s, "staging", "v1")
	if d.ID == 0 || d.State != Pending || d.Kind != "deploy" || d.PlanID != d.ID {
		t.Fatalf("created %+v; want an ID, pending, kind deploy, its own plan", d)
	}
	if d.CreatedAt.IsZero() || !d.CreatedAt.Equal(d.UpdatedAt) {
		t.Errorf("CreatedAt %v UpdatedAt %v", d.CreatedAt, d.UpdatedAt)
	}

	got := get(t, s, d.ID)
	if got.Project != "shop" || got.Env != "staging" || got.Release != "v1" || got.State != Pending ||
		got.Actor != "ci" || got.PID != 42 || got.PlanID != d.ID || got.FinishedAt != nil {
		t.Errorf("Get = %+v", got)
	}
	if string(got.Plan) != `{"services":["web"]}` || string(got.Result) != "{}" {
		t.Errorf("Plan %s Result %s", got.Plan, got.Result)
	}
	if !got.CreatedAt.Equal(d.CreatedAt) {
		t.Errorf("CreatedAt round trip: %v != %v", got.CreatedAt, d.CreatedAt)
	}

	// A rollback runs the plan of the deployment it goes back to.
	rb := &Deployment{Project: "shop", Env: "staging", Release: "v1", Kind: "rollback", PlanID: d.ID, PreviousID: d.ID}
	if err := s.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, rb.ID); got.Kind != "rollback" || got.PlanID != d.ID || got.PreviousID != d.ID || string(got.Plan) != "{}" {
		t.Errorf("rollback = %+v", got)
	}

	tr, err := s.Transitions(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 1 || tr[0].From != "" || tr[0].To != Pending || tr[0].Reason != "created" || tr[0].At.IsZero() {
		t.Errorf("Transitions after Create = %+v", tr)
	}

	if _, err := s.Get(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(999) = %v, want ErrNotFound", err)
	}
}

func TestTransition(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := create(t, s, "staging", "v1")

	move(t, s, d.ID, Deploying)
	if got := get(t, s, d.ID); got.State != Deploying || got.Reason != "to deploying" || got.FinishedAt != nil {
		t.Errorf("after deploying: %+v", got)
	}
	// An empty reason keeps the last one.
	if err := s.Transition(ctx, d.ID, Verifying, ""); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, d.ID); got.State != Verifying || got.Reason != "to deploying" {
		t.Errorf("after verifying: state %s reason %q", got.State, got.Reason)
	}
	move(t, s, d.ID, Succeeded)
	done := get(t, s, d.ID)
	if done.State != Succeeded || done.FinishedAt == nil || done.FinishedAt.Before(done.CreatedAt) {
		t.Fatalf("after succeeded: %+v", done)
	}

	tr, err := s.Transitions(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, x := range tr {
		path = append(path, string(x.From)+">"+string(x.To))
	}
	if got := strings.Join(path, " "); got != ">pending pending>deploying deploying>verifying verifying>succeeded" {
		t.Errorf("transitions = %s", got)
	}

	// Rolled back later by the watch: finished_at moves to the rollback.
	move(t, s, d.ID, RolledBack)
	if got := get(t, s, d.ID); got.State != RolledBack || got.FinishedAt.Before(*done.FinishedAt) {
		t.Errorf("after rolled_back: %+v", got)
	}

	if err := s.Transition(ctx, 999, Deploying, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Transition(999) = %v, want ErrNotFound", err)
	}
}

// TestTransitionRejected checks that a move the state machine forbids
// fails and leaves the deployment and its history exactly as they were.
func TestTransitionRejected(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := create(t, s, "staging", "v1")
	move(t, s, d.ID, Deploying)
	before := get(t, s, d.ID)
	trBefore, _ := s.Transitions(ctx, d.ID)

	for _, to := range []State{Succeeded, Pending, Deploying, Cancelled} {
		err := s.Transition(ctx, d.ID, to, "should not happen")
		if err == nil || !strings.Contains(err.Error(), "cannot move from deploying to "+string(to)) {
			t.Errorf("Transition deploying -> %s = %v; want it rejected", to, err)
		}
	}
	after := get(t, s, d.ID)
	if after.State != before.State || after.Reason != before.Reason || !after.UpdatedAt.Equal(before.UpdatedAt) || after.FinishedAt != nil {
		t.Errorf("rejected transitions changed the deployment: %+v -> %+v", before, after)
	}
	trAfter, _ := s.Transitions(ctx, d.ID)
	if len(trAfter) != len(trBefore) {
		t.Errorf("rejected transitions were recorded: %d -> %d", len(trBefore), len(trAfter))
	}
}

func TestQueries(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()

	v1 := create(t, s, "staging", "v1")
	move(t, s, v1.ID, Deploying, Verifying, Succeeded)
	v2 := create(t, s, "staging", "v2")
	move(t, s, v2.ID, Deploying, Failed)
	v3 := create(t, s, "staging", "v3")
	move(t, s, v3.ID, Deploying, Verifying, Succeeded)
	v1again := create(t, s, "staging", "v1")
	move(t, s, v1again.ID, Deploying, Verifying, Succeeded)
	rb := &Deployment{Project: "shop", Env: "staging", Release: "v3", Kind: "rollback", PlanID: v3.ID}
	if err := s.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	move(t, s, rb.ID, Deploying, Verifying, Succeeded)
	pending := create(t, s, "staging", "v4")
	verifying := create(t, s, "staging", "v5")
	move(t, s, verifying.ID, Deploying, Verifying)
	waiting := create(t, s, "staging", "v6")
	move(t, s, waiting.ID, AwaitingApproval)
	prod := create(t, s, "production", "v1")
	move(t, s, prod.ID, Deploying)
	other := &Deployment{Project: "blog", Env: "staging", Release: "v1"}
	if err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	h, err := s.History(ctx, "shop", "staging", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{waiting.ID, verifying.ID, pending.ID, rb.ID, v1again.ID, v3.ID, v2.ID, v1.ID}; !equal(ids(h), want) {
		t.Errorf("History = %v, want %v (newest first, this project and env only)", ids(h), want)
	}
	h, _ = s.History(ctx, "shop", "staging", 2)
	if want := []int64{waiting.ID, verifying.ID}; !equal(ids(h), want) {
		t.Errorf("History limit 2 = %v, want %v", ids(h), want)
	}
	if h, _ := s.History(ctx, "shop", "qa", 0); len(h) != 0 {
		t.Errorf("History of an unknown env = %v", ids(h))
	}

	u, err := s.Unfinished(ctx, "shop", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{pending.ID, verifying.ID}; !equal(ids(u), want) {
		t.Errorf("Unfinished = %v, want %v (oldest first)", ids(u), want)
	}
	if u, _ := s.Unfinished(ctx, "shop", "production"); !equal(ids(u), []int64{prod.ID}) {
		t.Errorf("Unfinished production = %v", ids(u))
	}

	r, err := s.FindRelease(ctx, "shop", "staging", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != v1again.ID {
		t.Errorf("FindRelease v1 = %d, want the newest succeeded deploy %d", r.ID, v1again.ID)
	}
	// v3's newest success is a rollback; FindRelease wants the deploy.
	if r, err := s.FindRelease(ctx, "shop", "staging", "v3"); err != nil || r.ID != v3.ID {
		t.Errorf("FindRelease v3 = %v, %v; want deploy %d", r, err, v3.ID)
	}
	for _, rel := range []string{"v2", "v4", "v9"} {
		if _, err := s.FindRelease(ctx, "shop", "staging", rel); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), rel) {
			t.Errorf("FindRelease %s = %v, want ErrNotFound naming the release", rel, err)
		}
	}

	ok, err := s.Succeeded(ctx, "shop", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{rb.ID, v1again.ID, v3.ID, v1.ID}; !equal(ids(ok), want) {
		t.Errorf("Succeeded = %v, want %v", ids(ok), want)
	}
}

func TestServing(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()

	d, err := s.Serving(ctx, "shop", "staging")
	if d != nil || err != nil {
		t.Fatalf("Serving before any deploy = %v, %v; want nil, nil", d, err)
	}
	since, err := s.ServingSince(ctx, "shop", "staging")
	if !since.IsZero() || err != nil {
		t.Fatalf("ServingSince before any deploy = %v, %v", since, err)
	}

	v1 := create(t, s, "staging", "v1")
	v2 := create(t, s, "staging", "v2")
	if err := s.SetServing(ctx, "shop", "staging", v1.ID); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Serving(ctx, "shop", "staging"); d == nil || d.ID != v1.ID {
		t.Fatalf("Serving = %v, want %d", d, v1.ID)
	}
	first, _ := s.ServingSince(ctx, "shop", "staging")
	if first.IsZero() {
		t.Fatal("ServingSince is zero after SetServing")
	}
	if err := s.SetServing(ctx, "shop", "staging", v2.ID); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Serving(ctx, "shop", "staging"); d == nil || d.ID != v2.ID {
		t.Fatalf("Serving = %v, want %d after the switch", d, v2.ID)
	}
	if since, _ := s.ServingSince(ctx, "shop", "staging"); since.Before(first) {
		t.Errorf("ServingSince went back: %v < %v", since, first)
	}
	if d, _ := s.Serving(ctx, "shop", "production"); d != nil {
		t.Errorf("Serving in another env = %v", d)
	}
	// serving references deployments: foreign keys are on.
	if err := s.SetServing(ctx, "shop", "staging", 999); err == nil {
		t.Error("SetServing to a deployment that does not exist succeeded")
	}
}

func TestStepsAndResult(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	d := create(t, s, "staging", "v1")
	other := create(t, s, "staging", "v2")

	for _, st := range []Step{{Service: "db", Phase: "create"}, {Service: "db", Phase: "healthy", Detail: "healthcheck healthy for 10s"}, {Service: "web", Phase: "switch"}} {
		if err := s.AddStep(ctx, d.ID, st.Service, st.Phase, st.Detail); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddStep(ctx, other.ID, "web", "create", ""); err != nil {
		t.Fatal(err)
	}
	steps, err := s.Steps(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range steps {
		if st.At.IsZero() {
			t.Errorf("step %+v has no time", st)
		}
		got = append(got, st.Service+"/"+st.Phase+"/"+st.Detail)
	}
	if strings.Join(got, " | ") != "db/create/ | db/healthy/healthcheck healthy for 10s | web/switch/" {
		t.Errorf("Steps = %q", got)
	}
	if steps, _ := s.Steps(ctx, 999); len(steps) != 0 {
		t.Errorf("Steps of an unknown deployment = %v", steps)
	}

	if err := s.SetResult(ctx, d.ID, map[string]any{"web": map[string]any{"healthy": true}}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, d.ID); string(got.Result) != `{"web":{"healthy":true}}` {
		t.Errorf("Result = %s", got.Result)
	}
	if err := s.SetResult(ctx, d.ID, func() {}); err == nil {
		t.Error("SetResult of something JSON cannot encode succeeded")
	}
}

// TestReopen checks that what a store records survives a restart of gantry.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := create(t, s, "staging", "v1")
	move(t, s, d.ID, Deploying)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	u, err := s.Unfinished(ctx, "shop", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 1 || u[0].ID != d.ID || u[0].State != Deploying {
		t.Fatalf("Unfinished after reopen = %+v", u)
	}
}

func TestOpenError(t *testing.T) {
	// The database file stands where the state directory should be.
	dir := t.TempDir()
	open(t, dir)
	if _, err := Open(filepath.Join(dir, FileName, "sub")); err == nil || !strings.Contains(err.Error(), "state directory") {
		t.Errorf("Open under a file = %v; want a state directory error", err)
	}
}
