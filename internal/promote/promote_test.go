package promote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// fakeRunner stands in for the deploy engine: it records deployments in
// the real store as the engine would, and counts how often each ran.
type fakeRunner struct {
	st       *store.Store
	deploys  atomic.Int32
	recorded atomic.Int32
	// onRun, when set, is called as an approved deployment starts to run.
	onRun func()
}

func (f *fakeRunner) Plan(_ context.Context, m *config.Model, release string, images map[string]string) (*runtime.Plan, error) {
	p := &runtime.Plan{Project: m.File.Project, Env: m.Env.Name, Release: release, Order: m.Order, Services: map[string]*runtime.Service{}}
	for _, n := range m.Order {
		ref := m.Compose.Services[n].Image
		if r, ok := images[n]; ok {
			ref = r
		}
		p.Services[n] = &runtime.Service{Name: n, ImageRef: ref, ImageID: "sha256:id-of-" + ref}
	}
	return p, nil
}

func (f *fakeRunner) Deploy(ctx context.Context, m *config.Model, release string, images map[string]string) (*deploy.Result, error) {
	f.deploys.Add(1)
	p, _ := f.Plan(ctx, m, release, images)
	raw, _ := json.Marshal(p)
	d := &store.Deployment{Project: m.File.Project, Env: m.Env.Name, Release: release, Plan: raw}
	if err := f.st.Create(ctx, d); err != nil {
		return nil, err
	}
	return f.finish(ctx, d)
}

func (f *fakeRunner) DeployRecorded(ctx context.Context, d *store.Deployment, _ *config.Environment) (*deploy.Result, error) {
	f.recorded.Add(1)
	if f.onRun != nil {
		f.onRun()
	}
	time.Sleep(50 * time.Millisecond) // approvals racing this one arrive while it runs
	if err := f.st.BeginApproved(ctx, d.ID, 0); err != nil {
		return nil, err
	}
	return f.finish(ctx, d)
}

func (f *fakeRunner) finish(ctx context.Context, d *store.Deployment) (*deploy.Result, error) {
	for _, s := range []store.State{store.Deploying, store.Verifying} {
		if err := f.st.Transition(ctx, d.ID, s, ""); err != nil {
			return nil, err
		}
	}
	if err := f.st.Succeed(ctx, d, "all services healthy"); err != nil {
		return nil, err
	}
	res := &deploy.Result{Deployment: d.ID, Env: d.Env, Release: d.Release, State: store.Succeeded}
	return res, f.st.SetResult(ctx, d.ID, res)
}

const testGantryYAML = `project: shop
environments:
  staging: {}
  qa: {}
  production:
    protected: true
    requires: [staging]
    approvals: { required: REQUIRED, from: [role:admin, bob] }
`

type fixture struct {
	p     *Promoter
	st    *store.Store
	run   *fakeRunner
	clock time.Time
	log   *audit.Log
}

// events lists the audit log, oldest first, as "actor action object outcome".
func (fx *fixture) events(t *testing.T) []string {
	t.Helper()
	evs, err := fx.log.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, strings.Join([]string{e.Actor, e.Action, e.Object, string(e.Outcome)}, " "))
	}
	slices.Reverse(out) // oldest first
	return out
}

func newFixture(t *testing.T, required string) *fixture {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"gantry.yaml":  strings.ReplaceAll(testGantryYAML, "REQUIRED", required),
		"compose.yaml": "services:\n  web:\n    image: reg/shop/web:latest\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, ".gantry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fx := &fixture{st: st, run: &fakeRunner{st: st}, clock: time.Now()}
	engines := func(context.Context, string) (Runner, func(), error) { return fx.run, func() {}, nil }
	fx.log = audit.Open(st)
	fx.p = New(f, st, engines, WithClock(func() time.Time { return fx.clock }), WithAudit(fx.log),
		WithCopier(func(context.Context, string, string) error { return errors.New("no copy expected") }))
	return fx
}

// ran records a deployment of release in env that ended in state.
func (fx *fixture) ran(t *testing.T, env, release string, state store.State) *store.Deployment {
	t.Helper()
	ctx := context.Background()
	plan, _ := json.Marshal(runtime.Plan{Order: []string{"web"}, Services: map[string]*runtime.Service{
		"web": {Name: "web", ImageRef: "reg/shop/web@" + dA, ImageID: "sha256:1"}}})
	d := &store.Deployment{Project: "shop", Env: env, Release: release, Plan: plan}
	if err := fx.st.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, s := range []store.State{store.Deploying, store.Verifying} {
		if err := fx.st.Transition(ctx, d.ID, s, ""); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if state == store.Succeeded {
		err = fx.st.Succeed(ctx, d, "")
	} else {
		err = fx.st.Transition(ctx, d.ID, state, "service web failed its health gate")
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	alice = Actor{Name: "alice", Role: auth.Editor}
	bob   = Actor{Name: "bob", Role: auth.Editor}
	carol = Actor{Name: "carol", Role: auth.Admin}
)

func TestRequestAndApprove(t *testing.T) {
	fx := newFixture(t, "2")
	ctx := context.Background()
	fx.ran(t, "staging", "1.0.0", store.Succeeded)

	d, err := fx.p.Request(ctx, alice, "staging", "production", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != store.AwaitingApproval || d.Release != "1.0.0" || d.Actor != "alice" {
		t.Fatalf("requested: %+v", d)
	}
	var plan runtime.Plan
	if err := json.Unmarshal(d.Plan, &plan); err != nil || plan.Services["web"].ImageRef != "reg/shop/web@"+dA {
		t.Fatalf("held plan runs %+v (%v), want staging's digest", plan.Services["web"], err)
	}
	if _, err := fx.p.Approve(ctx, alice, d.ID, ""); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("self-approval: %v", err)
	}
	dec, err := fx.p.Approve(ctx, bob, d.ID, "ok")
	if err != nil || !dec.Recorded || dec.Started || dec.Promotion.Remaining != 1 {
		t.Fatalf("first approval: %+v %v", dec, err)
	}
	pending, err := fx.p.Pending(ctx, "shop")
	if err != nil || len(pending) != 1 || pending[0].Promotion.WaitingFor != "1 more approval from role:admin or bob, not alice (requester), bob" {
		t.Fatalf("pending: %+v %v", pending, err)
	}
	// The approval that starts the deployment is in the audit log before
	// the deployment runs: a crash during its health window loses no
	// record of who approved it.
	var atRun []string
	fx.run.onRun = func() { atRun = fx.events(t) }
	dec, err = fx.p.Approve(ctx, carol, d.ID, "")
	if n := len(atRun); n == 0 || !strings.HasPrefix(atRun[n-1], "carol promotion.approve ") {
		t.Errorf("audit log as the approved deployment starts: %q", atRun)
	}
	if err != nil || !dec.Started || dec.Result.State != store.Succeeded || dec.Deployment.State != store.Succeeded {
		t.Fatalf("second approval: %+v %v", dec, err)
	}
	if n := fx.run.recorded.Load(); n != 1 {
		t.Fatalf("%d runs", n)
	}
	if pending, _ := fx.p.Pending(ctx, "shop"); len(pending) != 0 {
		t.Fatalf("still pending: %+v", pending)
	}
	list, err := fx.p.List(ctx, "shop", "", 0)
	if err != nil || len(list) != 2 || list[0].ID != d.ID || list[0].Promotion == nil || list[1].Promotion != nil {
		t.Fatalf("list: %+v %v", list, err)
	}
	obj := fmt.Sprintf("deployment/%d", d.ID)
	want := []string{
		"alice promotion.request " + obj + " ok",
		"alice promotion.approve " + obj + " denied",
		"bob promotion.approve " + obj + " ok",
		"carol promotion.approve " + obj + " ok",
	}
	if got := fx.events(t); !slices.Equal(got, want) {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestApproveRace: approvers approving at the same moment are all recorded
// and the deployment runs once.
func TestApproveRace(t *testing.T) {
	fx := newFixture(t, "1")
	ctx := context.Background()
	fx.ran(t, "staging", "1.0.0", store.Succeeded)
	d, err := fx.p.Request(ctx, alice, "staging", "production", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var started, decided atomic.Int32
	start := make(chan struct{})
	// The deployment runs until the three other approvals are decided (or
	// 10 s pass): they arrive while it runs, however slow the machine.
	fx.run.onRun = func() {
		for deadline := time.Now().Add(10 * time.Second); decided.Load() < 3 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, a := range []Actor{bob, carol, {Name: "dave", Role: auth.Admin}, {Name: "erin", Role: auth.Admin}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			dec, err := fx.p.Approve(ctx, a, d.ID, "")
			if err != nil || !dec.Started {
				decided.Add(1)
			}
			if err != nil {
				t.Errorf("%s: %v", a, err)
				return
			}
			if dec.Started {
				started.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	e, err := fx.p.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if started.Load() != 1 || fx.run.recorded.Load() != 1 || e.Promotion.Approved != 4 || e.State != store.Succeeded {
		t.Fatalf("%d started, %d runs, %d approvals, state %s; want 1, 1, 4, succeeded", started.Load(), fx.run.recorded.Load(), e.Promotion.Approved, e.State)
	}
}

func TestRequestRefusals(t *testing.T) {
	fx := newFixture(t, "1")
	ctx := context.Background()
	fx.ran(t, "staging", "1.0.0", store.Succeeded)
	fx.ran(t, "staging", "2.0.0", store.RolledBack)
	fx.ran(t, "qa", "3.0.0", store.Succeeded)
	tests := []struct {
		name           string
		actor          Actor
		from, to, rel  string
		sentinel, want string
	}{
		{"failed in staging", alice, "staging", "production", "2.0.0", "not promotable", "did not succeed in staging: deployment 2 is rolled_back"},
		{"never deployed", alice, "staging", "production", "9.9.9", "not promotable", "never deployed to staging"},
		{"required environment skipped", alice, "qa", "production", "3.0.0", "not promotable", "production requires a release to succeed in staging first"},
		{"viewer", Actor{Name: "victor", Role: auth.Viewer}, "staging", "production", "1.0.0", "not allowed", "may not promote"},
		{"same environment", alice, "staging", "staging", "1.0.0", "invalid input", "two different environments"},
		{"nothing serving", alice, "production", "qa", "", "not promotable", "nothing serves in production"},
	}
	for _, tt := range tests {
		_, err := fx.p.Request(ctx, tt.actor, tt.from, tt.to, tt.rel)
		if !errors.Is(err, deploy.ErrInput) || !strings.Contains(err.Error(), tt.sentinel) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	var cfgErr *config.Error
	if _, err := fx.p.Request(ctx, alice, "staging", "prod", ""); !errors.As(err, &cfgErr) {
		t.Errorf("unknown environment: %v", err)
	}
	if es, _ := fx.p.List(ctx, "shop", "production", 0); len(es) != 0 {
		t.Errorf("refusals left deployments in production: %+v", es)
	}
	// A release recorded but not released is refused.
	r := &store.Release{Project: "shop", Version: "1.0.0", Commit: "c0ffee"}
	if err := fx.st.BeginRelease(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.p.Request(ctx, alice, "staging", "production", "1.0.0"); !errors.Is(err, ErrNotPromotable) || !strings.Contains(err.Error(), "pushing, not released") {
		t.Errorf("unreleased: %v", err)
	}
}

// TestUnprotected: a promotion to an unprotected environment deploys at
// once, with the same digests.
func TestUnprotected(t *testing.T) {
	fx := newFixture(t, "1")
	ctx := context.Background()
	fx.ran(t, "staging", "1.0.0", store.Succeeded)
	d, err := fx.p.Request(ctx, alice, "staging", "qa", "")
	if err != nil || d.State != store.Succeeded || d.Env != "qa" || fx.run.deploys.Load() != 1 {
		t.Fatalf("%+v %v", d, err)
	}
	var plan runtime.Plan
	json.Unmarshal(d.Plan, &plan)
	if plan.Services["web"].ImageRef != "reg/shop/web@"+dA {
		t.Fatalf("qa runs %s", plan.Services["web"].ImageRef)
	}
}

func TestExpiryAndReject(t *testing.T) {
	fx := newFixture(t, "1")
	ctx := context.Background()
	fx.ran(t, "staging", "1.0.0", store.Succeeded)
	d, err := fx.p.Request(ctx, alice, "staging", "production", "")
	if err != nil {
		t.Fatal(err)
	}
	fx.clock = fx.clock.Add(config.DefaultApprovalExpiry + time.Second)
	_, err = fx.p.Approve(ctx, bob, d.ID, "")
	if !errors.Is(err, store.ErrExpired) || !errors.Is(err, deploy.ErrInput) || !strings.Contains(err.Error(), "gantry promote staging production --release 1.0.0") {
		t.Fatalf("expired: %v", err)
	}
	if e, _ := fx.p.Get(ctx, d.ID); e.State != store.Cancelled || fx.run.recorded.Load() != 0 {
		t.Fatalf("expired request: %s, %d runs", e.State, fx.run.recorded.Load())
	}
	obj := fmt.Sprintf("deployment/%d", d.ID)
	if got := fx.events(t); !slices.Equal(got[len(got)-2:], []string{"gantry promotion.expire " + obj + " ok", "bob promotion.approve " + obj + " failed"}) {
		t.Errorf("audit log: %q", got)
	}

	d, err = fx.p.Request(ctx, alice, "staging", "production", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.p.Reject(ctx, bob, d.ID, ""); !errors.Is(err, deploy.ErrInput) || !strings.Contains(err.Error(), "--comment") {
		t.Fatalf("reject without comment: %v", err)
	}
	if _, err := fx.p.Reject(ctx, Actor{Name: "mallory", Role: auth.Editor}, d.ID, "no"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("reject by someone the policy does not name: %v", err)
	}
	dec, err := fx.p.Reject(ctx, bob, d.ID, "error rate")
	if err != nil || dec.Deployment.State != store.Cancelled || dec.Deployment.Reason != "rejected by bob: error rate" {
		t.Fatalf("reject: %+v %v", dec, err)
	}
	if _, err := fx.p.Approve(ctx, carol, d.ID, ""); !errors.Is(err, store.ErrNotAwaiting) || !errors.Is(err, deploy.ErrInput) {
		t.Fatalf("approve after reject: %v", err)
	}
	if _, err := fx.p.Approve(ctx, carol, 999, ""); !errors.Is(err, store.ErrNotFound) || !errors.Is(err, deploy.ErrInput) {
		t.Fatalf("unknown id: %v", err)
	}
}
