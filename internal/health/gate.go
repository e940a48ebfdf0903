// Package health decides whether a freshly started container is healthy:
// the health gate. It follows the runtime's event stream (start, die, oom,
// health_status) instead of sleeping between polls, so a verdict follows a
// change within a fraction of a second, and adds gantry's own probes (HTTP,
// TCP, exec) on top of the image's healthcheck.
package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/runtime"
)

// Check names what a verdict was decided on.
type Check string

const (
	CheckRunning     Check = "running"
	CheckHealthcheck Check = "healthcheck"
	CheckProbe       Check = "probe"
	CheckExit        Check = "exit"
	CheckOOM         Check = "oom"
	CheckDeadline    Check = "deadline"
	CheckCancelled   Check = "cancelled"
)

// Verdict is the outcome of a health gate.
type Verdict struct {
	Healthy bool
	Check   Check
	Reason  string
	// SignalAt is when the runtime saw the change the verdict follows (the
	// health status event, the exit); DecidedAt when the gate decided.
	SignalAt  time.Time
	DecidedAt time.Time
}

// Latency is how long the gate took to decide after the runtime's signal.
func (v Verdict) Latency() time.Duration {
	if v.SignalAt.IsZero() || v.DecidedAt.Before(v.SignalAt) {
		return 0
	}
	return v.DecidedAt.Sub(v.SignalAt)
}

// Gate is the policy a container must pass.
type Gate struct {
	// Window is the deadline for becoming healthy.
	Window time.Duration
	// MinHealthy is how long the container must stay healthy to pass.
	MinHealthy time.Duration
	// Job: the container must run to completion and exit 0.
	Job bool
	// Probes run by gantry; all must pass.
	Probes []Prober
	// Progress, when set, hears about state changes ("starting",
	// "waiting for health", "healthy").
	Progress func(status string)
}

// Target is the container the gate watches, and how to reach it.
type Target struct {
	RT runtime.Runtime
	ID string
}

// Wait runs the gate against a container. Call it after subscribing
// events with rt.Watch and before starting the container: events holds the
// subscription.
func (g Gate) Wait(ctx context.Context, t Target, events <-chan runtime.Event, errs <-chan error) Verdict {
	deadline := time.NewTimer(g.Window)
	defer deadline.Stop()
	decide := func(ok bool, check Check, signal time.Time, format string, args ...any) Verdict {
		v := Verdict{Healthy: ok, Check: check, Reason: fmt.Sprintf(format, args...), SignalAt: signal, DecidedAt: time.Now()}
		if !ok && (check == CheckHealthcheck || check == CheckDeadline) {
			v.Reason += healthFailure(ctx, t)
		}
		return v
	}
	progress := func(s string) {
		if g.Progress != nil {
			g.Progress(s)
		}
	}

	c, err := t.RT.Inspect(ctx, t.ID)
	if err != nil {
		return decide(false, CheckRunning, time.Now(), "inspect container: %v", err)
	}
	s := newState(g, c)
	if v, done := s.verdict(time.Now()); done {
		return decide(v.ok, v.check, v.signal, "%s", v.reason)
	}

	probeTick := time.NewTicker(probeInterval(g.Probes))
	defer probeTick.Stop()
	var stable <-chan time.Time
	var stableTimer *time.Timer
	arm := func() {
		if stableTimer != nil {
			stableTimer.Stop()
			stableTimer, stable = nil, nil
		}
		if at, ok := s.passAt(); ok {
			d := time.Until(at)
			if d < 0 {
				d = 0
			}
			stableTimer = time.NewTimer(d)
			stable = stableTimer.C
		}
	}
	defer func() {
		if stableTimer != nil {
			stableTimer.Stop()
		}
	}()
	runProbes := func() {
		if len(g.Probes) == 0 || !s.running {
			return
		}
		ok, why := true, ""
		for _, p := range g.Probes {
			if err := p.Probe(ctx, t); err != nil {
				ok, why = false, fmt.Sprintf("%s: %v", p, err)
				break
			}
		}
		s.probeResult(ok, why, time.Now())
	}
	runProbes()
	lastStatus := ""
	for {
		if st := s.status(); st != lastStatus {
			progress(st)
			lastStatus = st
		}
		if v, done := s.verdict(time.Now()); done {
			return decide(v.ok, v.check, v.signal, "%s", v.reason)
		}
		arm()
		select {
		case <-ctx.Done():
			return decide(false, CheckCancelled, time.Now(), "interrupted: %v", context.Cause(ctx))
		case <-deadline.C:
			return decide(false, CheckDeadline, time.Now(), "%s", s.deadlineReason(g.Window))
		case err, ok := <-errs:
			if !ok {
				// A closed channel is always ready: stop selecting on it,
				// or the loop spins until the deadline.
				errs = nil
				continue
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return decide(false, CheckRunning, time.Now(), "lost the runtime's event stream: %v", err)
			}
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return decide(false, CheckCancelled, time.Now(), "interrupted: %v", context.Cause(ctx))
				}
				return decide(false, CheckRunning, time.Now(), "lost the runtime's event stream; the container's state is unknown")
			}
			// Decide on this host's clock: the daemon's may differ (a
			// remote host), and min_healthy is timed here. Report the
			// daemon's own time as the signal, for the verdict latency.
			received := ev
			received.Time = time.Now()
			decided := s.result != nil
			s.event(received)
			if !decided && s.result != nil && s.result.signal.Equal(received.Time) {
				s.result.signal = ev.Time
			}
		case <-probeTick.C:
			runProbes()
		case <-stable:
			stable = nil
			s.tick(time.Now())
		}
	}
}

// healthFailure says how the container's healthcheck failed (its streak and
// the last check's output), as a suffix for a failed verdict's reason; ""
// when it has no failing check to show.
func healthFailure(ctx context.Context, t Target) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c, err := t.RT.Inspect(ctx, t.ID)
	if err != nil || c.HealthFailure == "" {
		return ""
	}
	return ": " + c.HealthFailure
}

func probeInterval(ps []Prober) time.Duration {
	d := time.Second
	for _, p := range ps {
		if i := p.Interval(); i > 0 && i < d {
			d = i
		}
	}
	return d
}
