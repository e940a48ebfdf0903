package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/runtime"
)

// fakeRuntime answers the calls the gate and its probes make; any other
// Runtime method panics through the nil embedded interface.
type fakeRuntime struct {
	runtime.Runtime
	container  runtime.Container
	inspectErr error
	addr       string // what Address returns, for every port
	addrErr    error
	exitCode   int
	execOut    string
	execErr    error

	mu    sync.Mutex
	ports []int
	execs [][]string
}

func (f *fakeRuntime) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	return f.container, f.inspectErr
}

func (f *fakeRuntime) Address(ctx context.Context, id string, port int) (string, error) {
	f.mu.Lock()
	f.ports = append(f.ports, port)
	f.mu.Unlock()
	return f.addr, f.addrErr
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	f.mu.Lock()
	f.execs = append(f.execs, cmd)
	f.mu.Unlock()
	return f.exitCode, f.execOut, f.execErr
}

func target(rt runtime.Runtime) Target { return Target{RT: rt, ID: "c0ffee"} }

// wait runs g.Wait in the background and returns its verdict on a channel.
func wait(ctx context.Context, g Gate, rt runtime.Runtime, events <-chan runtime.Event, errs <-chan error) <-chan Verdict {
	out := make(chan Verdict, 1)
	go func() { out <- g.Wait(ctx, target(rt), events, errs) }()
	return out
}

func await(t *testing.T, ch <-chan Verdict, within time.Duration) Verdict {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		t.Fatalf("no verdict within %s", within)
	}
	panic("unreachable")
}

func TestWaitHealthyEvent(t *testing.T) {
	rt := &fakeRuntime{container: runningHC}
	events := make(chan runtime.Event, 1)
	var mu sync.Mutex
	var statuses []string
	g := Gate{Window: time.Minute, Progress: func(s string) {
		mu.Lock()
		statuses = append(statuses, s)
		mu.Unlock()
	}}
	out := wait(context.Background(), g, rt, events, nil)

	time.Sleep(20 * time.Millisecond) // let the gate reach its select
	sent := time.Now()
	events <- runtime.Event{Kind: runtime.EventHealthy, Time: sent}
	v := await(t, out, 100*time.Millisecond)

	if !v.Healthy || v.Check != CheckRunning || !strings.Contains(v.Reason, "healthcheck healthy") {
		t.Fatalf("verdict = %+v; want healthy", v)
	}
	if !v.SignalAt.Equal(sent) {
		t.Errorf("SignalAt = %v, want the event's time %v", v.SignalAt, sent)
	}
	if l := v.Latency(); l <= 0 || l > 100*time.Millisecond {
		t.Errorf("Latency = %s; want (0, 100ms]", l)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(statuses, ",") != "waiting for health,healthy" {
		t.Errorf("progress = %q, want [waiting for health healthy]", statuses)
	}
}

func TestWaitMinHealthy(t *testing.T) {
	rt := &fakeRuntime{container: runningHC}
	events := make(chan runtime.Event, 1)
	const hold = 50 * time.Millisecond
	out := wait(context.Background(), Gate{Window: time.Minute, MinHealthy: hold}, rt, events, nil)

	healthyAt := time.Now()
	events <- runtime.Event{Kind: runtime.EventHealthy, Time: healthyAt}
	v := await(t, out, time.Second)
	if !v.Healthy {
		t.Fatalf("verdict = %+v; want healthy", v)
	}
	if d := v.DecidedAt.Sub(healthyAt); d < hold {
		t.Errorf("decided %s after healthy; want at least min_healthy %s", d, hold)
	}
	// min_healthy is timed on this host's clock, from when the event
	// arrived: a little after the event's own time.
	if d := v.SignalAt.Sub(healthyAt.Add(hold)); d < 0 || d > 30*time.Millisecond {
		t.Errorf("SignalAt = healthy+%s, want healthy+%s (from the event's arrival)", v.SignalAt.Sub(healthyAt), hold)
	}
	if l := v.Latency(); l > 100*time.Millisecond {
		t.Errorf("Latency = %s after min_healthy ran out; want under 100ms", l)
	}
}

func TestWaitDie(t *testing.T) {
	rt := &fakeRuntime{container: created}
	events := make(chan runtime.Event, 2)
	out := wait(context.Background(), Gate{Window: time.Minute, MinHealthy: time.Minute}, rt, events, nil)
	events <- runtime.Event{Kind: runtime.EventStart, Time: time.Now()}
	events <- runtime.Event{Kind: runtime.EventDie, Time: time.Now(), ExitCode: 2}
	v := await(t, out, time.Second)
	if v.Healthy || v.Check != CheckExit || !strings.Contains(v.Reason, "exited with code 2") {
		t.Fatalf("verdict = %+v; want exit code 2", v)
	}
}

func TestWaitJob(t *testing.T) {
	rt := &fakeRuntime{container: created}
	events := make(chan runtime.Event, 2)
	out := wait(context.Background(), Gate{Window: time.Minute, Job: true}, rt, events, nil)
	events <- runtime.Event{Kind: runtime.EventStart, Time: time.Now()}
	exited := time.Now()
	events <- runtime.Event{Kind: runtime.EventDie, Time: exited, ExitCode: 0}
	v := await(t, out, time.Second)
	if !v.Healthy || !v.SignalAt.Equal(exited) || !strings.Contains(v.Reason, "job completed with exit code 0") {
		t.Fatalf("verdict = %+v; want the job's exit 0", v)
	}
}

func TestWaitCancelled(t *testing.T) {
	rt := &fakeRuntime{container: runningHC}
	ctx, cancel := context.WithCancelCause(context.Background())
	out := wait(ctx, Gate{Window: time.Minute}, rt, make(chan runtime.Event), nil)
	time.Sleep(10 * time.Millisecond)
	cancel(errors.New("interrupt signal"))
	v := await(t, out, 100*time.Millisecond)
	if v.Healthy || v.Check != CheckCancelled || !strings.Contains(v.Reason, "interrupted: interrupt signal") {
		t.Fatalf("verdict = %+v; want cancelled with the cause", v)
	}
}

func TestWaitDeadline(t *testing.T) {
	rt := &fakeRuntime{container: runningHC}
	start := time.Now()
	v := Gate{Window: 50 * time.Millisecond}.Wait(context.Background(), target(rt), make(chan runtime.Event), nil)
	if v.Healthy || v.Check != CheckDeadline {
		t.Fatalf("verdict = %+v; want deadline", v)
	}
	for _, sub := range []string{"health window (50ms)", "its healthcheck never reported healthy", "raise health.window"} {
		if !strings.Contains(v.Reason, sub) {
			t.Errorf("reason %q; want it to contain %q", v.Reason, sub)
		}
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Errorf("deadline verdict after %s; want about 50ms", d)
	}
}

func TestWaitInspectError(t *testing.T) {
	rt := &fakeRuntime{inspectErr: errors.New("no such container")}
	v := Gate{Window: time.Minute}.Wait(context.Background(), target(rt), nil, nil)
	if v.Healthy || v.Check != CheckRunning || !strings.Contains(v.Reason, "inspect container: no such container") {
		t.Fatalf("verdict = %+v", v)
	}
}

func TestWaitInitialVerdict(t *testing.T) {
	rt := &fakeRuntime{container: exitedStarted(0)}
	v := Gate{Window: time.Minute, Job: true}.Wait(context.Background(), target(rt), nil, nil)
	if !v.Healthy || !strings.Contains(v.Reason, "job completed") {
		t.Fatalf("verdict = %+v; want the job's exit 0 from inspect", v)
	}
}

func TestWaitEventStreamLost(t *testing.T) {
	rt := &fakeRuntime{container: runningHC}
	errs := make(chan error, 1)
	errs <- errors.New("docker events: connection reset")
	v := Gate{Window: time.Minute}.Wait(context.Background(), target(rt), make(chan runtime.Event), errs)
	if v.Healthy || !strings.Contains(v.Reason, "lost the runtime's event stream: docker events: connection reset") {
		t.Fatalf("verdict = %+v", v)
	}
}

// TestWaitClosedChannels checks that a closed event stream (a runtime whose
// watch ended without saying why) fails the gate at once instead of leaving
// it blind until the deadline, and that a closed error channel alone does
// not make it spin.
func TestWaitClosedChannels(t *testing.T) {
	rt := &fakeRuntime{container: runningHC}
	events := make(chan runtime.Event)
	errs := make(chan error)
	close(events)
	close(errs)
	v := Gate{Window: time.Minute}.Wait(context.Background(), target(rt), events, errs)
	if v.Healthy || !strings.Contains(v.Reason, "lost the runtime's event stream") {
		t.Fatalf("verdict = %+v; want the lost stream", v)
	}

	errs = make(chan error)
	close(errs)
	before := cpuTime(t)
	v = Gate{Window: 200 * time.Millisecond}.Wait(context.Background(), target(rt), make(chan runtime.Event), errs)
	used := cpuTime(t) - before
	if v.Check != CheckDeadline {
		t.Fatalf("verdict = %+v; want deadline", v)
	}
	if used > 100*time.Millisecond {
		t.Errorf("the gate used %s of CPU in a 200ms wait: it spins on a closed channel", used)
	}
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skipf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestWaitProbes(t *testing.T) {
	var mu sync.Mutex
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		w.Write([]byte("warming up"))
	}))
	t.Cleanup(srv.Close)
	rt := &fakeRuntime{container: runningBare, addr: srv.Listener.Addr().String()}
	p := FromConfig(config.Probe{HTTP: &config.HTTPProbe{Port: 8080, Path: "/healthz", Status: 200},
		Interval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(time.Second)})

	// Failing until the deadline: the reason names the probe and why.
	v := Gate{Window: 100 * time.Millisecond, Probes: []Prober{p}}.Wait(context.Background(), target(rt), nil, nil)
	if v.Check != CheckDeadline || !strings.Contains(v.Reason, "probe failing: http GET :8080/healthz: status 503, want 200: warming up") {
		t.Fatalf("verdict = %+v", v)
	}

	// Passing on a later probe round.
	out := wait(context.Background(), Gate{Window: time.Minute, Probes: []Prober{p}}, rt, nil, nil)
	time.Sleep(30 * time.Millisecond)
	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	v = await(t, out, time.Second)
	if !v.Healthy || !strings.Contains(v.Reason, "probes passing") {
		t.Fatalf("verdict = %+v; want healthy", v)
	}
}

func TestProbeInterval(t *testing.T) {
	mk := func(d time.Duration) Prober { return &TCPProber{probe: probe{interval: d}} }
	for _, tc := range []struct {
		ps   []Prober
		want time.Duration
	}{
		{nil, time.Second},
		{[]Prober{mk(0)}, time.Second},
		{[]Prober{mk(5 * time.Second)}, time.Second},
		{[]Prober{mk(5 * time.Second), mk(200 * time.Millisecond), mk(500 * time.Millisecond)}, 200 * time.Millisecond},
	} {
		if got := probeInterval(tc.ps); got != tc.want {
			t.Errorf("probeInterval = %s, want %s", got, tc.want)
		}
	}
}

func TestVerdictLatency(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		v    Verdict
		want time.Duration
	}{
		{Verdict{SignalAt: now, DecidedAt: now.Add(30 * time.Millisecond)}, 30 * time.Millisecond},
		{Verdict{DecidedAt: now}, 0},
		{Verdict{SignalAt: now, DecidedAt: now.Add(-time.Second)}, 0}, // clocks disagree
	} {
		if got := tc.v.Latency(); got != tc.want {
			t.Errorf("Latency = %s, want %s", got, tc.want)
		}
	}
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
