package health

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/runtime"
)

func TestClassify(t *testing.T) {
	running := runtime.Container{State: "running"}
	with := func(c runtime.Container, f func(*runtime.Container)) runtime.Container { f(&c); return c }
	for _, c := range []struct {
		name                         string
		c                            runtime.Container
		found, job, probed           bool
		probeErr                     error
		startup, liveness, readiness ProbeState
		detail                       string
	}{
		{"no container", runtime.Container{}, false, false, false, nil, Fail, Fail, Fail, "no container"},
		{"running, no healthcheck, no probe", running, true, false, false, nil, Pass, Pass, Pass, ""},
		{"healthcheck healthy, probe passing", with(running, func(c *runtime.Container) { c.Health = "healthy" }), true, false, true, nil, Pass, Pass, Pass, ""},
		{"healthcheck starting", with(running, func(c *runtime.Container) { c.Health = "starting" }), true, false, true, nil, Pending, Pass, Fail, "healthcheck starting"},
		{"healthcheck unhealthy", with(running, func(c *runtime.Container) { c.Health = "unhealthy" }), true, false, true, nil, Pass, Fail, Fail, "healthcheck unhealthy"},
		{"probe failing", with(running, func(c *runtime.Container) { c.Health = "healthy" }), true, false, true, errors.New("status 500, want 200:\nboom"), Pass, Pass, Fail, "probe failing: status 500, want 200: boom"},
		{"restarted but up", with(running, func(c *runtime.Container) { c.RestartCount = 2 }), true, false, false, nil, Pass, Pass, Pass, "restarted 2 times"},
		{"restarting", with(running, func(c *runtime.Container) { c.Restarting, c.RestartCount = true, 4 }), true, false, false, nil, Fail, Fail, Fail, "restarting (restart count 4)"},
		{"exited", runtime.Container{State: "exited", ExitCode: 3}, true, false, false, nil, Fail, Fail, Fail, "exited with exit code 3"},
		{"oom", runtime.Container{State: "exited", ExitCode: 137, OOMKilled: true}, true, false, false, nil, Fail, Fail, Fail, "out of memory"},
		{"created", runtime.Container{State: "created"}, true, false, false, nil, Pending, Fail, Fail, "created, not started"},
		{"job done", runtime.Container{State: "exited"}, true, true, false, nil, Pass, Pass, Pass, "job completed"},
		{"job failed", runtime.Container{State: "exited", ExitCode: 5}, true, true, false, nil, Fail, Fail, Fail, "job exited with code 5"},
		{"job running", running, true, true, false, nil, Pass, Pass, Fail, "job running"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Classify(c.c, c.found, c.job, c.probed, c.probeErr)
			if s.Startup != c.startup || s.Liveness != c.liveness || s.Readiness != c.readiness || !strings.Contains(s.Detail, c.detail) || (c.detail == "" && s.Detail != "") {
				t.Errorf("got startup %s liveness %s readiness %s detail %q; want %s %s %s %q", s.Startup, s.Liveness, s.Readiness, s.Detail, c.startup, c.liveness, c.readiness, c.detail)
			}
		})
	}
}

func TestViewStatus(t *testing.T) {
	ok := ServiceHealth{Service: "a", Readiness: Pass}
	bad := ServiceHealth{Service: "b", Readiness: Fail, Detail: "healthcheck unhealthy"}
	for _, c := range []struct {
		ss   []ServiceHealth
		want ViewStatus
	}{
		{nil, StatusEmpty},
		{[]ServiceHealth{ok, ok}, StatusHealthy},
		{[]ServiceHealth{ok, bad}, StatusDegraded},
		{[]ServiceHealth{bad}, StatusUnhealthy},
	} {
		if got := sum(c.ss); got != c.want {
			t.Errorf("%v: %s, want %s", c.ss, got, c.want)
		}
	}
	v := &View{Env: "staging", Status: StatusDegraded, Services: []ServiceHealth{ok, bad}}
	if err := v.Problem(); !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "staging is degraded: 1 of 2 services not ready: b (healthcheck unhealthy)") {
		t.Errorf("problem: %v", err)
	}
	if err := (&View{Status: StatusHealthy}).Problem(); err != nil {
		t.Errorf("a healthy view's problem: %v", err)
	}
}

// TestCache: within the TTL one check serves every caller; after it, one
// refresh serves all the callers that came meanwhile; a failed refresh is
// not kept; a caller that gives up does not cancel the refresh.
func TestCache(t *testing.T) {
	var c Cache
	var calls atomic.Int32
	release := make(chan struct{})
	refresh := func(ctx context.Context) (*View, error) {
		calls.Add(1)
		<-release
		return &View{Env: "x", Status: StatusHealthy, CheckedAt: time.Now()}, nil
	}
	var wg sync.WaitGroup
	bodies := make([][]byte, 20)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b, err := c.Get(context.Background(), time.Hour, time.Second, refresh)
			if err != nil {
				t.Error(err)
			}
			bodies[i] = b
		}()
	}
	// A caller that gives up while the refresh runs.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Get(ctx, time.Hour, time.Second, refresh); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled caller: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("20 concurrent callers refreshed %d times, want 1", n)
	}
	for _, b := range bodies {
		if !strings.Contains(string(b), `"cache_seconds":3600`) {
			t.Fatalf("body %s", b)
		}
	}
	if _, _, err := c.Get(context.Background(), time.Hour, time.Second, refresh); err != nil || calls.Load() != 1 {
		t.Fatalf("within the TTL: %v, %d refreshes", err, calls.Load())
	}
	// TTL 0: every call checks again.
	c.Get(context.Background(), 0, time.Second, refresh)
	if calls.Load() != 2 {
		t.Fatalf("TTL 0 did not check again")
	}

	var failing Cache
	boom := errors.New("docker unreachable")
	fails := 0
	bad := func(context.Context) (*View, error) { fails++; return nil, boom }
	for range 2 {
		if _, _, err := failing.Get(context.Background(), time.Hour, time.Second, bad); !errors.Is(err, boom) {
			t.Fatalf("failed refresh: %v", err)
		}
	}
	if fails != 2 {
		t.Fatalf("a failed refresh was kept: %d refreshes for 2 calls", fails)
	}
	// The refresh runs within its timeout, not the caller's deadline.
	var timed Cache
	_, _, err := timed.Get(context.Background(), time.Hour, 20*time.Millisecond, func(ctx context.Context) (*View, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a refresh past its timeout: %v", err)
	}
}
