package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/store"
)

// TestJudgeStep: the rules a canary step is judged by, the passing and
// the failing cases in one table.
func TestJudgeStep(t *testing.T) {
	ab := config.CanaryAbort{MaxErrorRatio: 0.05, MaxP99: config.Duration(800 * time.Millisecond), MinRequests: 20}
	timed := config.CanaryStep{Weight: 10, Pause: config.Duration(time.Minute)}
	manual := config.CanaryStep{Weight: 50}
	stats := func(req, errs int64, p99 time.Duration) proxy.ReleaseStats {
		r := proxy.ReleaseStats{Requests: req, Errors: errs, P99: p99}
		if req > 0 {
			r.ErrorRatio = float64(errs) / float64(req)
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		step    config.CanaryStep
		abort   config.CanaryAbort
		c       proxy.ReleaseStats
		elapsed time.Duration
		verdict string
		pass    bool
	}{
		{"early, good", timed, ab, stats(100, 1, 10*time.Millisecond), 10 * time.Second, "", false},
		{"early, errors over the ratio fail at once", timed, ab, stats(100, 6, 10*time.Millisecond), 10 * time.Second, CanaryErrorRatio, false},
		{"ratio equal to the threshold passes", timed, ab, stats(100, 5, 10*time.Millisecond), time.Minute, "", true},
		{"slow p99 fails", timed, ab, stats(100, 0, time.Second), 10 * time.Second, CanaryLatency, false},
		{"p99 not judged without max_p99", timed, config.CanaryAbort{MaxErrorRatio: 0.05, MinRequests: 20}, stats(100, 0, time.Hour), time.Minute, "", true},
		{"errors under min_requests are no verdict", timed, ab, stats(10, 10, time.Second), 10 * time.Second, "", false},
		{"pause over with enough requests passes", timed, ab, stats(20, 0, 10*time.Millisecond), time.Minute, "", true},
		{"pause over, too few: wait on", timed, ab, stats(19, 0, 10*time.Millisecond), 90 * time.Second, "", false},
		{"twice the pause, too few: inconclusive", timed, ab, stats(19, 0, 10*time.Millisecond), 2 * time.Minute, CanaryInconclusive, false},
		{"min_requests 0 and no requests passes", timed, config.CanaryAbort{MaxErrorRatio: 0.05}, stats(0, 0, 0), time.Minute, "", true},
		{"min_requests 0 still judges errors", timed, config.CanaryAbort{MaxErrorRatio: 0.05}, stats(3, 1, 0), time.Second, CanaryErrorRatio, false},
		{"manual step waits however long", manual, ab, stats(1000, 0, 10*time.Millisecond), time.Hour, "", false},
		{"manual step still fails on errors", manual, ab, stats(1000, 100, 10*time.Millisecond), time.Hour, CanaryErrorRatio, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, pass := judgeStep(tc.step, tc.abort, tc.c, tc.elapsed)
			if v != tc.verdict || pass != tc.pass {
				t.Errorf("judgeStep = %q, pass %t; want %q, pass %t", v, pass, tc.verdict, tc.pass)
			}
		})
	}
}

// FuzzJudgeStep: whatever the figures, a step never both passes and
// fails, a manual step never passes by itself, and a step with enough
// requests under the thresholds never fails.
func FuzzJudgeStep(f *testing.F) {
	f.Add(int64(100), int64(5), int64(10e6), int64(60e9), int64(30e9), 20, false)
	f.Add(int64(0), int64(0), int64(0), int64(1e9), int64(5e9), 0, true)
	f.Fuzz(func(t *testing.T, req, errs, p99, pause, elapsed int64, minReq int, manual bool) {
		if req < 0 || errs < 0 || errs > req || pause <= 0 || elapsed < 0 || minReq < 0 || p99 < 0 {
			return
		}
		st := config.CanaryStep{Weight: 10, Pause: config.Duration(pause)}
		if manual {
			st.Pause = 0
		}
		ab := config.CanaryAbort{MaxErrorRatio: 0.05, MaxP99: config.Duration(800 * time.Millisecond), MinRequests: minReq}
		c := proxy.ReleaseStats{Requests: req, Errors: errs, P99: time.Duration(p99)}
		if req > 0 {
			c.ErrorRatio = float64(errs) / float64(req)
		}
		v, pass := judgeStep(st, ab, c, time.Duration(elapsed))
		if pass && v != "" {
			t.Fatalf("passed and failed (%s)", v)
		}
		if manual && pass {
			t.Fatal("a manual step passed by itself")
		}
		good := c.ErrorRatio <= ab.MaxErrorRatio && c.P99 <= ab.MaxP99.D()
		if good && req >= int64(minReq) && v != "" {
			t.Fatalf("enough good requests failed: %s", v)
		}
	})
}

// TestSignalCanary: gantry promote --step|--abort find the canary running
// in an environment from its deployment's steps: none, a step with a pause
// (--step refused, --abort taken), a canary already past (none again).
func TestSignalCanary(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryStep, "alice", 0); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "no canary is running in staging") {
		t.Fatalf("without a deployment: %v", err)
	}
	d := canaryDeploying(t, st, "10% (step 1/3) to 127.0.0.1:1, pause 2m0s")
	// The deploying gantry holds the environment (this process stands in
	// for it): a signal it has not taken yet is no error.
	lock, err := st.Acquire(ctx, "shop", "staging", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryStep, "alice", 0); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "at 10% (step 1/3), a step with a pause") {
		t.Errorf("--step at a timed step: %v", err)
	}
	sig, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryAbort, "alice", 0)
	if err != nil || sig.Service != "web" || sig.Step != 1 || sig.Steps != 3 || sig.Weight != 10 || sig.Taken || sig.Actor != "alice" {
		t.Fatalf("--abort: %+v, %v", sig, err)
	}
	if got, err := st.TakeCanarySignal(ctx, d.ID, "web", nil); err != nil || got == nil || got.Action != store.CanaryAbort || got.Step != 1 {
		t.Errorf("taken: %+v, %v", got, err)
	}
	if got, _ := st.TakeCanarySignal(ctx, d.ID, "web", nil); got != nil {
		t.Errorf("a signal is taken once: %+v", got)
	}
	// The deploying gantry gone (nobody holds the environment): said so,
	// with what to do.
	lock.Release()
	if _, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryAbort, "alice", 0); !errors.Is(err, ErrCanaryNotTaken) || !strings.Contains(err.Error(), "(pid 7) is gone") || !strings.Contains(err.Error(), "gantry status staging") {
		t.Errorf("with the deploying gantry gone: %v", err)
	}
	st.TakeCanarySignal(ctx, d.ID, "web", nil)
	// The canary ended (its deployment finished) before it took it.
	if lock, err = st.Acquire(ctx, "shop", "staging", "deploy"); err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	st.Transition(ctx, d.ID, store.RolledBack, "a step failed")
	if _, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryAbort, "alice", 0); !errors.Is(err, ErrInput) {
		t.Errorf("after the deployment ended: %v, want no canary running", err)
	}
	st.AddStep(ctx, d.ID, "web", phaseCanaryAbort, "aborted")
	if _, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryAbort, "alice", 0); !errors.Is(err, ErrInput) {
		t.Errorf("after the abort: %v", err)
	}
}

// TestSignalCanaryIgnored: a --step the canary takes but does not act on
// (given at a step it has left) is reported as not taken, with why, never
// as advanced.
func TestSignalCanaryIgnored(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := canaryDeploying(t, st, "50% (step 2/3) to 127.0.0.1:1, manual: gantry promote --step")
	lock, err := st.Acquire(ctx, "shop", "staging", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	// The canary, meanwhile at its step 3 (manual too), takes the signal.
	go func() {
		for range 100 {
			sig, _ := st.TakeCanarySignal(ctx, d.ID, "web", func(sig store.CanarySignal) string {
				return ignoredSignal(sig, config.CanaryStep{Weight: 100}, 3, "100% (step 3/3)")
			})
			if sig != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	sig, err := SignalCanary(ctx, st, "shop", "staging", store.CanaryStep, "alice", 5*time.Second)
	if !errors.Is(err, ErrCanaryNotTaken) || !strings.Contains(err.Error(), "it was given at step 2; the canary has moved on to 100% (step 3/3)") {
		t.Fatalf("a step signal for a step left: %v", err)
	}
	if sig == nil || sig.Taken {
		t.Errorf("the signal should not read as taken: %+v", sig)
	}

	for _, tc := range []struct {
		action string
		step   int
		pause  time.Duration
		want   string
	}{
		{store.CanaryAbort, 1, time.Minute, ""},
		{store.CanaryStep, 2, 0, ""},
		{store.CanaryStep, 1, 0, "it was given at step 1"},
		{store.CanaryStep, 2, time.Minute, "a step with a pause that ends by itself"},
		{"dance", 2, 0, `unknown action "dance"`},
	} {
		got := ignoredSignal(store.CanarySignal{Action: tc.action, Step: tc.step}, config.CanaryStep{Weight: 50, Pause: config.Duration(tc.pause)}, 2, "50% (step 2/3)")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s at step %d (pause %s): %q, want %q", tc.action, tc.step, tc.pause, got, tc.want)
		}
	}
}

// canaryDeploying records a deployment of shop's staging (by pid 7) whose
// web is at the canary step detail says.
func canaryDeploying(t *testing.T, st *store.Store, detail string) *store.Deployment {
	t.Helper()
	ctx := context.Background()
	d := &store.Deployment{Project: "shop", Env: "staging", Release: "2.0.0", Kind: "deploy", PID: 7}
	if err := st.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	st.Transition(ctx, d.ID, store.Deploying, "")
	st.AddStep(ctx, d.ID, "web", phaseCanary, detail)
	return d
}
