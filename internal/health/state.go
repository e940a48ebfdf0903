package health

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/runtime"
)

// state is the gate's pure decision logic: it is fed the container's
// initial state, its events, probe results and clock ticks, and says when a
// verdict is reached. It does no I/O, so it is tested and fuzzed alone.
type state struct {
	job            bool
	minHealthy     time.Duration
	hasHealthcheck bool
	hasProbes      bool

	running      bool
	hcHealthy    bool
	hcSignal     time.Time
	probesOK     bool
	probeWhy     string
	probeSignal  time.Time
	healthySince time.Time
	sawStart     bool

	result *outcome
}

type outcome struct {
	ok     bool
	check  Check
	reason string
	signal time.Time
}

func newState(g Gate, c runtime.Container) *state {
	s := &state{job: g.Job, minHealthy: g.MinHealthy, hasHealthcheck: c.Healthcheck, hasProbes: len(g.Probes) > 0}
	s.probesOK = !s.hasProbes
	now := time.Now()
	switch c.State {
	case "running":
		s.running, s.sawStart = true, true
		if c.Restarting || c.RestartCount > 0 {
			s.fail(CheckExit, now, "container is restarting (restart count %d): it keeps exiting", c.RestartCount)
			return s
		}
	case "exited", "dead":
		at := c.FinishedAt
		if at.IsZero() {
			at = now
		}
		switch {
		case c.OOMKilled:
			s.fail(CheckOOM, at, "killed: out of memory (OOM), exit code %d", c.ExitCode)
			return s
		case s.job && c.ExitCode == 0:
			s.pass(at, "job completed with exit code 0")
			return s
		case s.job:
			s.fail(CheckExit, at, "job exited with code %d", c.ExitCode)
			return s
		case !c.StartedAt.IsZero():
			s.fail(CheckExit, at, "exited with code %d", c.ExitCode)
			return s
		}
	case "restarting":
		s.fail(CheckExit, now, "container is restarting: it keeps exiting")
		return s
	}
	switch c.Health {
	case "healthy":
		s.hcHealthy, s.hcSignal = true, now
	case "unhealthy":
		s.fail(CheckHealthcheck, now, "healthcheck reports unhealthy")
		return s
	}
	s.update(now)
	return s
}

func (s *state) fail(check Check, at time.Time, format string, args ...any) {
	if s.result == nil {
		s.result = &outcome{ok: false, check: check, reason: fmt.Sprintf(format, args...), signal: at}
	}
}

func (s *state) pass(at time.Time, reason string) {
	if s.result == nil {
		s.result = &outcome{ok: true, check: CheckRunning, reason: reason, signal: at}
	}
}

func (s *state) event(ev runtime.Event) {
	if s.result != nil {
		return
	}
	switch ev.Kind {
	case runtime.EventStart:
		// A restart after an exit is caught by the die before it; this
		// start may also be the one the initial inspect already saw.
		s.running, s.sawStart = true, true
	case runtime.EventRestart:
		if !s.job {
			s.fail(CheckExit, ev.Time, "container restarted: it keeps exiting (restart loop)")
		}
	case runtime.EventOOM:
		s.fail(CheckOOM, ev.Time, "killed: out of memory (OOM)")
	case runtime.EventDie:
		s.running = false
		if s.job {
			if ev.ExitCode == 0 {
				s.pass(ev.Time, "job completed with exit code 0")
			} else {
				s.fail(CheckExit, ev.Time, "job exited with code %d", ev.ExitCode)
			}
			return
		}
		s.fail(CheckExit, ev.Time, "exited with code %d", ev.ExitCode)
	case runtime.EventHealthy:
		if !s.hcHealthy {
			s.hcHealthy, s.hcSignal = true, ev.Time
		}
	case runtime.EventUnhealthy:
		s.fail(CheckHealthcheck, ev.Time, "healthcheck reports unhealthy")
	}
	s.update(ev.Time)
}

func (s *state) probeResult(ok bool, why string, at time.Time) {
	if s.result != nil {
		return
	}
	if ok && !s.probesOK {
		s.probeSignal = at
	}
	s.probesOK, s.probeWhy = ok, why
	s.update(at)
}

func (s *state) tick(now time.Time) { s.update(now) }

// healthy says whether every check passes right now.
func (s *state) healthy() bool {
	return s.running && (s.hcHealthy || !s.hasHealthcheck) && s.probesOK
}

func (s *state) update(now time.Time) {
	if s.result != nil || s.job {
		return
	}
	if !s.healthy() {
		s.healthySince = time.Time{}
		return
	}
	if s.healthySince.IsZero() {
		s.healthySince = latest(s.hcSignal, s.probeSignal, now)
		if !s.hasHealthcheck && !s.hasProbes {
			s.healthySince = now
		}
	}
	if !now.Before(s.healthySince.Add(s.minHealthy)) {
		signal := s.healthySince
		if s.minHealthy > 0 {
			signal = s.healthySince.Add(s.minHealthy)
		}
		s.pass(signal, s.passReason())
	}
}

func (s *state) passReason() string {
	switch {
	case s.hasHealthcheck && s.hasProbes:
		return fmt.Sprintf("healthcheck healthy and probes passing for %s", s.minHealthy)
	case s.hasHealthcheck:
		return fmt.Sprintf("healthcheck healthy for %s", s.minHealthy)
	case s.hasProbes:
		return fmt.Sprintf("probes passing for %s", s.minHealthy)
	}
	return fmt.Sprintf("running for %s (no healthcheck or probe defined)", s.minHealthy)
}

// latest returns the latest non-zero time, or fallback when all are zero.
// A check that never changed (no healthcheck) does not count.
func latest(a, b, fallback time.Time) time.Time {
	t := a
	if b.After(t) {
		t = b
	}
	if t.IsZero() {
		return fallback
	}
	return t
}

// passAt is when the container passes if nothing changes.
func (s *state) passAt() (time.Time, bool) {
	if s.result != nil || s.job || s.healthySince.IsZero() {
		return time.Time{}, false
	}
	return s.healthySince.Add(s.minHealthy), true
}

func (s *state) verdict(now time.Time) (outcome, bool) {
	if s.result == nil {
		return outcome{}, false
	}
	return *s.result, true
}

func (s *state) status() string {
	switch {
	case s.result != nil && s.result.ok:
		return "healthy"
	case s.result != nil:
		return "failed"
	case !s.running && !s.sawStart:
		return "starting"
	case s.job:
		return "running job"
	case !s.healthySince.IsZero():
		return fmt.Sprintf("healthy, holding %s", s.minHealthy)
	}
	return "waiting for health"
}

func (s *state) deadlineReason(window time.Duration) string {
	if s.job {
		return fmt.Sprintf("job did not complete within the health window (%s)", window)
	}
	why := "it never became healthy"
	switch {
	case !s.running:
		why = "the container is not running"
	case s.hasHealthcheck && !s.hcHealthy:
		why = "its healthcheck never reported healthy"
	case !s.probesOK:
		why = "probe failing: " + s.probeWhy
	case !s.healthySince.IsZero():
		why = fmt.Sprintf("it did not stay healthy for %s", s.minHealthy)
	}
	return fmt.Sprintf("not healthy within the health window (%s): %s; if the service needs longer to start, raise health.window", window, why)
}
