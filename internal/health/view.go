package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/runtime"
)

// The health view answers "is what serves in this environment healthy, and
// if not, what is wrong" for dashboards, load balancers and people: per
// service, the three states Kubernetes' probes name, read from the serving
// containers and gantry's probes:
//
//   - startup: the container started and finished starting (its Docker
//     healthcheck left "starting"); pending while it starts;
//   - liveness: the process runs and is not failing: running, not
//     restarting, healthcheck not unhealthy;
//   - readiness: it should take traffic: live, started, healthcheck healthy
//     when it has one, and gantry's probe of the service passing.
//
// Results are cached (Cache), so that polling the view does not load the
// services.

// ProbeState is the state of one of a service's three checks.
type ProbeState string

// The states of a check.
const (
	Pass    ProbeState = "pass"
	Fail    ProbeState = "fail"
	Pending ProbeState = "pending"
)

// ViewStatus sums up an environment.
type ViewStatus string

// The statuses of an environment's view.
const (
	// StatusHealthy: every service is ready.
	StatusHealthy ViewStatus = "healthy"
	// StatusDegraded: some services are ready, some not.
	StatusDegraded ViewStatus = "degraded"
	// StatusUnhealthy: no service is ready.
	StatusUnhealthy ViewStatus = "unhealthy"
	// StatusEmpty: nothing is deployed.
	StatusEmpty ViewStatus = "empty"
)

// View is the health of what serves in one environment.
type View struct {
	Env      string          `json:"env"`
	Release  string          `json:"release,omitempty"`
	Status   ViewStatus      `json:"status"`
	Services []ServiceHealth `json:"services"`
	// CheckedAt is when the containers were read and probed; answers reuse
	// the check for CacheSeconds.
	CheckedAt    time.Time `json:"checked_at"`
	CacheSeconds float64   `json:"cache_seconds"`
}

// ServiceHealth is one service of a view.
type ServiceHealth struct {
	Service   string     `json:"service"`
	Release   string     `json:"release"`
	Container string     `json:"container,omitempty"`
	Startup   ProbeState `json:"startup"`
	Liveness  ProbeState `json:"liveness"`
	Readiness ProbeState `json:"readiness"`
	// Probe is gantry's probe of the service, when it has one.
	Probe string `json:"probe,omitempty"`
	// Detail says why a check does not pass (or that a job completed).
	Detail string `json:"detail,omitempty"`
}

// Ready says whether the service should take traffic.
func (s ServiceHealth) Ready() bool { return s.Readiness == Pass }

// Subject is a serving container the view checks.
type Subject struct {
	Service   string
	Release   string
	Container string // its name or ID; empty when the record expects one that is gone
	Job       bool
	Probe     Prober // nil without one
}

// Assess reads every subject's container and runs its probe, all at once,
// and sums them up.
func Assess(ctx context.Context, rt runtime.Runtime, env, release string, subjects []Subject) *View {
	v := &View{Env: env, Release: release, Services: make([]ServiceHealth, len(subjects))}
	var wg sync.WaitGroup
	for i, sub := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.Services[i] = checkOne(ctx, rt, sub)
		}()
	}
	wg.Wait()
	v.CheckedAt = time.Now().UTC()
	v.Status = sum(v.Services)
	return v
}

func checkOne(ctx context.Context, rt runtime.Runtime, sub Subject) ServiceHealth {
	var c runtime.Container
	var err error
	if sub.Container != "" {
		c, err = rt.Inspect(ctx, sub.Container)
	}
	found := sub.Container != "" && err == nil
	var probeErr error
	probed := false
	if found && sub.Probe != nil && c.Running() && !sub.Job {
		probed = true
		probeErr = sub.Probe.Probe(ctx, Target{RT: rt, ID: c.ID})
	}
	sh := Classify(c, found, sub.Job, probed, probeErr)
	sh.Service, sh.Release, sh.Container = sub.Service, sub.Release, sub.Container
	if sub.Probe != nil {
		sh.Probe = sub.Probe.String()
	}
	if sub.Container != "" && err != nil && sh.Detail == "" {
		sh.Detail = "container " + sub.Container + ": " + err.Error()
	}
	return sh
}

// Classify decides a service's three states from its container (found
// false: the record expects a container that is not there) and its probe's
// result (probed false: no probe ran). It is pure, for table tests.
func Classify(c runtime.Container, found, job, probed bool, probeErr error) ServiceHealth {
	s := ServiceHealth{Startup: Fail, Liveness: Fail, Readiness: Fail}
	switch {
	case !found:
		s.Detail = "no container: it was removed or never created"
		return s
	case job && (c.State == "exited" || c.State == "dead"):
		if c.ExitCode == 0 {
			s.Startup, s.Liveness, s.Readiness, s.Detail = Pass, Pass, Pass, "job completed with exit code 0"
		} else {
			s.Detail = fmt.Sprintf("job exited with code %d", c.ExitCode)
		}
		return s
	case c.Restarting || c.State == "restarting":
		s.Detail = fmt.Sprintf("restarting (restart count %d): it keeps exiting", c.RestartCount)
		return s
	case c.State == "created":
		s.Startup, s.Detail = Pending, "created, not started"
		return s
	case !c.Running():
		s.Detail = fmt.Sprintf("%s with exit code %d", c.State, c.ExitCode)
		if c.OOMKilled {
			s.Detail = fmt.Sprintf("killed: out of memory (OOM), exit code %d", c.ExitCode)
		}
		return s
	}
	s.Liveness, s.Startup = Pass, Pass
	switch c.Health {
	case "starting":
		s.Startup, s.Detail = Pending, "healthcheck starting"
		return s
	case "unhealthy":
		s.Liveness, s.Detail = Fail, "healthcheck unhealthy"
		return s
	}
	switch {
	case job:
		s.Detail = "job running"
	case probed && probeErr != nil:
		s.Detail = "probe failing: " + oneLine(probeErr.Error())
	default:
		s.Readiness = Pass
		if c.RestartCount > 0 {
			s.Detail = fmt.Sprintf("restarted %d times", c.RestartCount)
		}
	}
	return s
}

func sum(ss []ServiceHealth) ViewStatus {
	if len(ss) == 0 {
		return StatusEmpty
	}
	ready := 0
	for _, s := range ss {
		if s.Ready() {
			ready++
		}
	}
	switch ready {
	case len(ss):
		return StatusHealthy
	case 0:
		return StatusUnhealthy
	}
	return StatusDegraded
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Only narrows the view to one service, whose readiness then decides the
// status; false when the service is not in the view.
func (v *View) Only(service string) (*View, bool) {
	one := *v
	one.Services = nil
	for _, s := range v.Services {
		if s.Service == service {
			one.Services = append(one.Services, s)
		}
	}
	if len(one.Services) == 0 {
		return nil, false
	}
	one.Status = sum(one.Services)
	return &one, true
}

// ErrUnhealthy is returned (wrapped) by those who report a view that is not
// healthy, for an exit code.
var ErrUnhealthy = errors.New("not healthy")

// Problem says what is not healthy in a view, or nil.
func (v *View) Problem() error {
	if v.Status == StatusHealthy {
		return nil
	}
	if v.Status == StatusEmpty {
		return fmt.Errorf("%w: %s: nothing is deployed (gantry deploy %s)", ErrUnhealthy, v.Env, v.Env)
	}
	var bad []string
	for _, s := range v.Services {
		if !s.Ready() {
			bad = append(bad, fmt.Sprintf("%s (%s)", s.Service, s.Detail))
		}
	}
	return fmt.Errorf("%w: %s is %s: %d of %d services not ready: %s", ErrUnhealthy, v.Env, v.Status, len(bad), len(v.Services), strings.Join(bad, "; "))
}

// Cache keeps an environment's last view for a TTL. Within it, answers
// reuse the view and its JSON; after it, the first caller refreshes and
// every caller that comes meanwhile waits for that one refresh (single
// flight), so a poll storm costs one check per TTL. Failed refreshes are
// not kept.
type Cache struct {
	mu     sync.Mutex
	view   *View
	body   []byte
	flight *flight
}

type flight struct {
	done chan struct{}
	view *View
	body []byte
	err  error
}

// Get returns a view at most ttl old and its JSON encoding, calling
// refresh when there is none. refresh runs detached from ctx (a caller
// that gives up does not cancel it for the others) within timeout.
func (c *Cache) Get(ctx context.Context, ttl, timeout time.Duration, refresh func(context.Context) (*View, error)) (*View, []byte, error) {
	c.mu.Lock()
	if c.view != nil && time.Since(c.view.CheckedAt) < ttl {
		v, b := c.view, c.body
		c.mu.Unlock()
		return v, b, nil
	}
	f := c.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.flight = f
		go c.run(f, ttl, timeout, refresh, context.WithoutCancel(ctx))
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.view, f.body, f.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (c *Cache) run(f *flight, ttl, timeout time.Duration, refresh func(context.Context) (*View, error), ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := refresh(ctx)
	if err == nil {
		v.CacheSeconds = ttl.Seconds()
		b, merr := json.Marshal(v)
		if merr != nil {
			err = merr
		}
		f.view, f.body = v, append(b, '\n')
	}
	f.err = err
	c.mu.Lock()
	if err == nil {
		c.view, c.body = f.view, f.body
	}
	c.flight = nil
	c.mu.Unlock()
	close(f.done)
}
