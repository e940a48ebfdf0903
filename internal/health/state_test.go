package health

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/runtime"
)

// step is one input to the state: an event, a probe result or a clock tick,
// at an offset from the test's base time.
type step struct {
	at     time.Duration
	ev     runtime.EventKind // event, when set
	code   int               // exit code of a die event
	probe  string            // "ok" or "fail": a probe result
	tick   bool
	expect *want // checked after this step; nil: no verdict yet
}

type want struct {
	ok     bool
	check  Check
	reason string        // substring
	signal time.Duration // offset from base; checked when sigSet
	sigSet bool
	sigAbs time.Time // absolute signal time, checked when set
}

func pass(check Check, reason string) *want { return &want{ok: true, check: check, reason: reason} }
func fail(check Check, reason string) *want { return &want{ok: false, check: check, reason: reason} }
func (w *want) at(d time.Duration) *want    { w.signal, w.sigSet = d, true; return w }
func (w *want) atTime(t time.Time) *want    { w.sigAbs = t; return w }

func ev(at time.Duration, kind runtime.EventKind) step { return step{at: at, ev: kind} }
func probeOK(at time.Duration) step                    { return step{at: at, probe: "ok"} }
func probeFail(at time.Duration) step                  { return step{at: at, probe: "fail"} }
func tick(at time.Duration) step                       { return step{at: at, tick: true} }

// stubProber stands for a configured probe; the state only counts probes.
type stubProber struct{}

func (stubProber) Probe(context.Context, Target) error { return nil }
func (stubProber) Interval() time.Duration             { return time.Second }
func (stubProber) String() string                      { return "http GET :8080/healthz" }

var (
	created       = runtime.Container{State: "created"}
	createdHC     = runtime.Container{State: "created", Healthcheck: true}
	runningHC     = runtime.Container{State: "running", Health: "starting", Healthcheck: true}
	runningBare   = runtime.Container{State: "running"}
	startedAt     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	exitedStarted = func(code int) runtime.Container {
		return runtime.Container{State: "exited", ExitCode: code, StartedAt: startedAt, FinishedAt: startedAt.Add(time.Second)}
	}
)

func TestStateDecisions(t *testing.T) {
	const s = time.Second
	probes := []Prober{stubProber{}}
	tests := []struct {
		name      string
		gate      Gate
		container runtime.Container
		initial   *want // verdict straight from the initial inspect
		steps     []step
	}{
		{
			name: "healthy with min_healthy 0 passes at the event's time",
			gate: Gate{MinHealthy: 0}, container: runningHC,
			steps: []step{
				tick(1 * s),
				{at: 2 * s, ev: runtime.EventHealthy, expect: pass(CheckRunning, "healthcheck healthy for 0s").at(2 * s)},
			},
		},
		{
			name: "min_healthy 3s passes only at healthySince+3s",
			gate: Gate{MinHealthy: 3 * s}, container: runningHC,
			steps: []step{
				ev(1*s, runtime.EventHealthy),
				tick(2 * s),
				tick(3900 * time.Millisecond),
				{at: 4 * s, tick: true, expect: pass(CheckRunning, "healthcheck healthy for 3s").at(4 * s)},
			},
		},
		{
			name: "a late tick passes with the signal at healthySince+min_healthy",
			gate: Gate{MinHealthy: 3 * s}, container: runningHC,
			steps: []step{
				ev(1*s, runtime.EventHealthy),
				{at: 10 * s, tick: true, expect: pass(CheckRunning, "healthy").at(4 * s)},
			},
		},
		{
			name: "a failing probe resets healthySince",
			gate: Gate{MinHealthy: 2 * s, Probes: probes}, container: runningBare,
			steps: []step{
				probeOK(1 * s),
				tick(2 * s),
				probeFail(2500 * time.Millisecond),
				tick(3 * s), // would have passed at 1s+2s without the failure
				tick(4500 * time.Millisecond),
				probeOK(5 * s),
				tick(6900 * time.Millisecond),
				{at: 7 * s, tick: true, expect: pass(CheckRunning, "probes passing for 2s").at(7 * s)},
			},
		},
		{
			name: "healthcheck and probes: healthy from the later of the two",
			gate: Gate{MinHealthy: 1 * s, Probes: probes}, container: runningHC,
			steps: []step{
				ev(1*s, runtime.EventHealthy),
				tick(2 * s), // probes have not passed yet
				probeOK(3 * s),
				tick(3900 * time.Millisecond),
				{at: 4 * s, tick: true, expect: pass(CheckRunning, "healthcheck healthy and probes passing for 1s").at(4 * s)},
			},
		},
		{
			name: "probes passing but healthcheck not healthy yet",
			gate: Gate{MinHealthy: 0, Probes: probes}, container: runningHC,
			steps: []step{
				probeOK(1 * s),
				tick(10 * s),
				{at: 11 * s, ev: runtime.EventHealthy, expect: pass(CheckRunning, "healthcheck healthy and probes passing").at(11 * s)},
			},
		},
		{
			name: "unhealthy fails at once",
			gate: Gate{MinHealthy: 10 * s}, container: runningHC,
			steps: []step{
				{at: 1 * s, ev: runtime.EventUnhealthy, expect: fail(CheckHealthcheck, "healthcheck reports unhealthy").at(1 * s)},
			},
		},
		{
			name: "unhealthy while holding min_healthy fails",
			gate: Gate{MinHealthy: 10 * s}, container: runningHC,
			steps: []step{
				ev(1*s, runtime.EventHealthy),
				tick(5 * s),
				{at: 6 * s, ev: runtime.EventUnhealthy, expect: fail(CheckHealthcheck, "unhealthy").at(6 * s)},
			},
		},
		{
			name: "die fails with the exit code",
			gate: Gate{MinHealthy: 10 * s}, container: created,
			steps: []step{
				ev(1*s, runtime.EventStart),
				{at: 2 * s, ev: runtime.EventDie, code: 137, expect: fail(CheckExit, "exited with code 137").at(2 * s)},
			},
		},
		{
			name: "die with code 0 fails a service",
			gate: Gate{MinHealthy: 10 * s}, container: runningBare,
			steps: []step{
				{at: 2 * s, ev: runtime.EventDie, code: 0, expect: fail(CheckExit, "exited with code 0")},
			},
		},
		{
			name: "oom fails with CheckOOM",
			gate: Gate{MinHealthy: 10 * s}, container: runningHC,
			steps: []step{
				ev(1*s, runtime.EventHealthy),
				{at: 2 * s, ev: runtime.EventOOM, expect: fail(CheckOOM, "out of memory").at(2 * s)},
				// The die that follows keeps the first verdict.
				{at: 3 * s, ev: runtime.EventDie, code: 137, expect: fail(CheckOOM, "out of memory").at(2 * s)},
				{at: 4 * s, tick: true, expect: fail(CheckOOM, "out of memory").at(2 * s)},
			},
		},
		{
			name: "restart event fails a service",
			gate: Gate{MinHealthy: 10 * s}, container: runningBare,
			steps: []step{
				{at: 1 * s, ev: runtime.EventRestart, expect: fail(CheckExit, "restart loop")},
			},
		},
		{
			name: "job passes on exit 0",
			gate: Gate{Job: true, MinHealthy: 10 * s}, container: created,
			steps: []step{
				ev(1*s, runtime.EventStart),
				tick(60 * s), // running is not enough for a job
				{at: 61 * s, ev: runtime.EventDie, code: 0, expect: pass(CheckRunning, "job completed with exit code 0").at(61 * s)},
			},
		},
		{
			name: "job fails on exit 3",
			gate: Gate{Job: true}, container: created,
			steps: []step{
				ev(1*s, runtime.EventStart),
				{at: 2 * s, ev: runtime.EventDie, code: 3, expect: fail(CheckExit, "job exited with code 3").at(2 * s)},
			},
		},
		{
			name: "job is not passed by its healthcheck",
			gate: Gate{Job: true}, container: createdHC,
			steps: []step{
				ev(1*s, runtime.EventStart),
				ev(2*s, runtime.EventHealthy),
				tick(30 * s),
				{at: 31 * s, ev: runtime.EventDie, code: 0, expect: pass(CheckRunning, "job completed")},
			},
		},
		{
			name: "job ignores a restart event and fails on oom",
			gate: Gate{Job: true}, container: created,
			steps: []step{
				ev(1*s, runtime.EventStart),
				ev(2*s, runtime.EventRestart),
				tick(3 * s),
				{at: 4 * s, ev: runtime.EventOOM, expect: fail(CheckOOM, "out of memory")},
			},
		},
		{
			name: "no healthcheck and no probes: passes after running for min_healthy",
			gate: Gate{MinHealthy: 3 * s}, container: created,
			steps: []step{
				tick(1 * s), // not started
				ev(2*s, runtime.EventStart),
				tick(4900 * time.Millisecond),
				{at: 5 * s, tick: true, expect: pass(CheckRunning, "running for 3s (no healthcheck or probe defined)").at(5 * s)},
			},
		},
		{
			name: "no healthcheck and no probes, min_healthy 0: passes at start",
			gate: Gate{}, container: created,
			steps: []step{
				{at: 2 * s, ev: runtime.EventStart, expect: pass(CheckRunning, "running for 0s").at(2 * s)},
			},
		},
		{
			name: "healthy event before start does not count until running",
			gate: Gate{}, container: createdHC,
			steps: []step{
				ev(1*s, runtime.EventHealthy),
				tick(2 * s),
				{at: 3 * s, ev: runtime.EventStart, expect: pass(CheckRunning, "healthcheck healthy")},
			},
		},
		{
			name: "already exited at start fails with its code",
			gate: Gate{}, container: exitedStarted(1),
			initial: fail(CheckExit, "exited with code 1").atTime(startedAt.Add(time.Second)), // FinishedAt
		},
		{
			name: "job already exited 0 at start passes",
			gate: Gate{Job: true}, container: exitedStarted(0),
			initial: pass(CheckRunning, "job completed with exit code 0").atTime(startedAt.Add(time.Second)),
		},
		{
			name: "job already exited 2 at start fails",
			gate: Gate{Job: true}, container: exitedStarted(2),
			initial: fail(CheckExit, "job exited with code 2"),
		},
		{
			name: "already OOM-killed at start",
			gate: Gate{Job: true}, container: runtime.Container{State: "exited", OOMKilled: true, ExitCode: 137, StartedAt: startedAt, FinishedAt: startedAt},
			initial: fail(CheckOOM, "out of memory (OOM), exit code 137").atTime(startedAt),
		},
		{
			name: "dead container at start",
			gate: Gate{}, container: runtime.Container{State: "dead", ExitCode: 255, StartedAt: startedAt, FinishedAt: startedAt},
			initial: fail(CheckExit, "exited with code 255"),
		},
		{
			name: "restarting container at start",
			gate: Gate{}, container: runtime.Container{State: "restarting"},
			initial: fail(CheckExit, "restarting"),
		},
		{
			name: "running container that has restarted",
			gate: Gate{}, container: runtime.Container{State: "running", RestartCount: 2},
			initial: fail(CheckExit, "restart count 2"),
		},
		{
			name: "running container flagged restarting",
			gate: Gate{}, container: runtime.Container{State: "running", Restarting: true},
			initial: fail(CheckExit, "restarting"),
		},
		{
			name: "unhealthy at start",
			gate: Gate{}, container: runtime.Container{State: "running", Health: "unhealthy", Healthcheck: true},
			initial: fail(CheckHealthcheck, "unhealthy"),
		},
		{
			name: "healthy at start with min_healthy 0 passes",
			gate: Gate{}, container: runtime.Container{State: "running", Health: "healthy", Healthcheck: true},
			initial: pass(CheckRunning, "healthcheck healthy"),
		},
		{
			name: "exited but never started (no timestamps) waits",
			gate: Gate{MinHealthy: s}, container: runtime.Container{State: "exited"},
			steps: []step{
				tick(10 * s),
				ev(11*s, runtime.EventStart),
				{at: 12 * s, tick: true, expect: pass(CheckRunning, "running for 1s")},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newState(tc.gate, tc.container)
			// newState reads the wall clock; base is not earlier, so that
			// offsets are after anything it recorded.
			base := time.Now()
			check(t, "initial", st, base, tc.initial)
			for i, sp := range tc.steps {
				at := base.Add(sp.at)
				switch {
				case sp.ev != "":
					st.event(runtime.Event{Kind: sp.ev, Time: at, ExitCode: sp.code})
				case sp.probe != "":
					why := ""
					if sp.probe == "fail" {
						why = "http GET :8080/healthz: status 503, want 200"
					}
					st.probeResult(sp.probe == "ok", why, at)
				case sp.tick:
					st.tick(at)
				}
				check(t, fmt.Sprintf("step %d (+%s)", i, sp.at), st, base, sp.expect)
			}
		})
	}
}

func check(t *testing.T, where string, st *state, base time.Time, w *want) {
	t.Helper()
	got, done := st.verdict(time.Now())
	if w == nil {
		if done {
			t.Fatalf("%s: verdict %+v; want none yet", where, got)
		}
		return
	}
	if !done {
		t.Fatalf("%s: no verdict; want ok=%v %s %q (status %q)", where, w.ok, w.check, w.reason, st.status())
	}
	if got.ok != w.ok || got.check != w.check || !strings.Contains(got.reason, w.reason) {
		t.Fatalf("%s: verdict ok=%v check=%s reason=%q; want ok=%v check=%s reason containing %q",
			where, got.ok, got.check, got.reason, w.ok, w.check, w.reason)
	}
	if !w.sigAbs.IsZero() && !got.signal.Equal(w.sigAbs) {
		t.Fatalf("%s: signal %v; want %v", where, got.signal, w.sigAbs)
	}
	if w.sigSet && !got.signal.Equal(base.Add(w.signal)) {
		t.Fatalf("%s: signal at base+%s; want base+%s", where, got.signal.Sub(base), w.signal)
	}
}

func TestPassAt(t *testing.T) {
	st := newState(Gate{MinHealthy: 3 * time.Second}, runningHC)
	if _, ok := st.passAt(); ok {
		t.Fatal("passAt set before healthy")
	}
	base := time.Now()
	st.event(runtime.Event{Kind: runtime.EventHealthy, Time: base})
	at, ok := st.passAt()
	if !ok || !at.Equal(base.Add(3*time.Second)) {
		t.Fatalf("passAt = %v, %v; want base+3s", at.Sub(base), ok)
	}
	st.tick(at)
	if _, ok := st.passAt(); ok {
		t.Fatal("passAt set after the verdict")
	}
	job := newState(Gate{Job: true}, runningBare)
	if _, ok := job.passAt(); ok {
		t.Fatal("passAt set for a job")
	}
}

func TestStatus(t *testing.T) {
	base := time.Now()
	st := newState(Gate{MinHealthy: 10 * time.Second}, createdHC)
	for _, s := range []struct {
		do   func()
		want string
	}{
		{func() {}, "starting"},
		{func() { st.event(runtime.Event{Kind: runtime.EventStart, Time: base}) }, "waiting for health"},
		{func() { st.event(runtime.Event{Kind: runtime.EventHealthy, Time: base.Add(time.Second)}) }, "healthy, holding 10s"},
		{func() { st.tick(base.Add(11 * time.Second)) }, "healthy"},
	} {
		s.do()
		if got := st.status(); got != s.want {
			t.Fatalf("status = %q, want %q", got, s.want)
		}
	}
	failed := newState(Gate{}, runtime.Container{State: "restarting"})
	if got := failed.status(); got != "failed" {
		t.Errorf("status = %q, want failed", got)
	}
	job := newState(Gate{Job: true}, runningBare)
	if got := job.status(); got != "running job" {
		t.Errorf("status = %q, want running job", got)
	}
}

func TestDeadlineReason(t *testing.T) {
	const window = 5 * time.Minute
	base := time.Now()
	probes := []Prober{stubProber{}}
	for _, tc := range []struct {
		name  string
		state func() *state
		want  []string
	}{
		{"job", func() *state { return newState(Gate{Job: true}, runningBare) },
			[]string{"job did not complete within the health window (5m0s)"}},
		{"not running", func() *state { return newState(Gate{}, createdHC) },
			[]string{"not healthy within the health window (5m0s)", "the container is not running", "raise health.window"}},
		{"healthcheck never healthy", func() *state { return newState(Gate{}, runningHC) },
			[]string{"its healthcheck never reported healthy", "raise health.window"}},
		{"probe failing", func() *state {
			st := newState(Gate{Probes: probes}, runningBare)
			st.probeResult(false, "http GET :8080/healthz: status 503, want 200", base)
			return st
		}, []string{"probe failing: http GET :8080/healthz: status 503, want 200"}},
		{"healthy but not for long enough", func() *state {
			st := newState(Gate{MinHealthy: 10 * time.Second}, runningHC)
			st.event(runtime.Event{Kind: runtime.EventHealthy, Time: base})
			return st
		}, []string{"it did not stay healthy for 10s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.state().deadlineReason(window)
			for _, sub := range tc.want {
				if !strings.Contains(got, sub) {
					t.Errorf("deadlineReason = %q; want it to contain %q", got, sub)
				}
			}
		})
	}
}

// FuzzState feeds random gates, initial containers and input sequences to
// the state and checks its invariants: it never panics, a verdict never
// changes once reached, and nothing passes after a sign of failure.
func FuzzState(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 4, 1})
	f.Add([]byte{1, 3, 1, 5, 0, 0, 1, 5, 10, 7, 0, 100})
	f.Add([]byte{2, 1, 2, 2, 0, 1, 3, 2, 0, 9, 1, 50})
	f.Add([]byte{3, 0, 0, 0, 0, 1, 2, 1, 3, 7, 1, 20, 8, 1, 2, 7, 5, 200})
	f.Add([]byte{0, 0, 0, 6, 5, 1, 4, 1, 0})
	containers := []runtime.Container{
		created, createdHC, runningHC, runningBare,
		{State: "running", Health: "healthy", Healthcheck: true},
		{State: "running", Health: "unhealthy", Healthcheck: true},
		exitedStarted(0), exitedStarted(1),
		{State: "exited", OOMKilled: true, StartedAt: startedAt, FinishedAt: startedAt},
		{State: "restarting"},
		{State: "running", RestartCount: 1},
		{State: "exited"},
	}
	kinds := []runtime.EventKind{runtime.EventStart, runtime.EventDie, runtime.EventOOM,
		runtime.EventHealthy, runtime.EventUnhealthy, runtime.EventRestart, "exec_start", ""}

	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		flags := next()
		g := Gate{Job: flags&1 != 0, MinHealthy: time.Duration(next()%8) * time.Second}
		if flags&2 != 0 {
			g.Probes = []Prober{stubProber{}}
		}
		c := containers[int(next())%len(containers)]
		if flags&4 != 0 {
			c.Healthcheck = !c.Healthcheck
		}

		st := newState(g, c)
		now := time.Now()
		var first *outcome
		// A sign of failure: after it, no verdict may be a pass.
		doomed := false
		switch {
		case c.Health == "unhealthy" && (c.State == "running"),
			c.State == "restarting",
			c.State == "running" && (c.Restarting || c.RestartCount > 0),
			c.OOMKilled,
			!g.Job && (c.State == "exited" || c.State == "dead") && !c.StartedAt.IsZero():
			doomed = true
		}
		// What a pass needs: a service has been running with its
		// healthcheck healthy and its latest probe passing; a job exited 0.
		started := c.State == "running"
		hcHealthy := c.Health == "healthy"
		probeOK := len(g.Probes) == 0
		jobDone := (c.State == "exited" || c.State == "dead") && c.ExitCode == 0 && !c.OOMKilled
		observe := func() {
			v, done := st.verdict(now)
			if first != nil {
				if !done || v != *first {
					t.Fatalf("verdict changed from %+v to %+v (done=%v)", *first, v, done)
				}
				return
			}
			if !done {
				return
			}
			if v.ok && doomed {
				t.Fatalf("passed after a sign of failure: %+v (gate %+v, container %+v)", v, g, c)
			}
			if v.ok && v.check != CheckRunning {
				t.Fatalf("pass with check %s", v.check)
			}
			if v.ok && g.Job && !jobDone {
				t.Fatalf("job passed without exiting 0: %+v", v)
			}
			if v.ok && !g.Job && (!started || (c.Healthcheck && !hcHealthy) || !probeOK) {
				t.Fatalf("passed with started=%v healthcheck=%v/%v probes ok=%v: %+v", started, c.Healthcheck, hcHealthy, probeOK, v)
			}
			first = &v
		}
		observe()
		for len(data) > 0 {
			op := next()
			// Time mostly moves forward; sometimes it steps back, as the
			// daemon's event clock and the local clock may disagree.
			d := time.Duration(int8(next())) * 100 * time.Millisecond
			if d < 0 && op&0x80 == 0 {
				d = -d
			}
			now = now.Add(d)
			switch op % 4 {
			case 0, 1:
				kind := kinds[int(op/4)%len(kinds)]
				code := int(next() % 4)
				st.event(runtime.Event{Kind: kind, Time: now, ExitCode: code})
				switch kind {
				case runtime.EventStart:
					started = true
				case runtime.EventHealthy:
					hcHealthy = true
				case runtime.EventDie:
					jobDone = jobDone || code == 0
				}
				switch {
				case kind == runtime.EventUnhealthy, kind == runtime.EventOOM,
					kind == runtime.EventDie && (!g.Job || code != 0),
					kind == runtime.EventRestart && !g.Job:
					doomed = true
				}
			case 2:
				st.probeResult(op&4 != 0, "probe says no", now)
				if first == nil {
					probeOK = op&4 != 0
				}
			case 3:
				st.tick(now)
			}
			observe()
			_ = st.status()
			_ = st.deadlineReason(time.Minute)
			_, _ = st.passAt()
		}
	})
}
