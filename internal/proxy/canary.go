package proxy

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Canary is a second release of a route taking Weight percent of its
// traffic, beside the route's Upstream (the stable release).
type Canary struct {
	Upstream Upstream `json:"upstream"`
	// Weight is the percent of requests (or of sticky clients) sent to the
	// canary, 0 to 100.
	Weight int `json:"weight"`
	// Step is the 1-based step number, for records and metrics; a new step
	// starts new statistics.
	Step        int       `json:"step"`
	Sticky      Sticky    `json:"sticky,omitzero"`
	StepStarted time.Time `json:"step_started"`
}

// Sticky says how one client keeps seeing one release. With Header set,
// the value of that request header is hashed (FNV-1a) to a bucket 0..99;
// with Cookie set, that cookie's value is; when the cookie is absent the
// proxy makes a random id and sets it on the answer (Path=/; HttpOnly;
// SameSite=Lax; Max-Age one day; Secure over HTTPS). Bucket < Weight goes
// to the canary, so raising the weight keeps every client already on the
// canary there. Neither set, or the header missing on a request with
// Header set: each request is drawn at random.
type Sticky struct {
	Cookie string `json:"cookie,omitempty"`
	Header string `json:"header,omitempty"`
}

// CanaryRequest starts a canary on a route, or changes its weight, step
// or stickiness.
type CanaryRequest struct {
	Env     string `json:"env"`
	Service string `json:"service"`
	// To is the canary release's upstream.
	To     Upstream `json:"to"`
	Weight int      `json:"weight"`
	// Step is the 1-based step number (0 is taken as 1). A new step, or a
	// new To, starts the statistics of both releases afresh.
	Step   int    `json:"step"`
	Sticky Sticky `json:"sticky,omitzero"`
}

// CanaryAction promotes or aborts a route's canary.
type CanaryAction struct {
	Env     string `json:"env"`
	Service string `json:"service"`
	// Reason is free text for the log (an abort's verdict).
	Reason string `json:"reason,omitempty"`
}

// CanaryStats are the statistics of both releases of a route with a canary
// since its step started (or since the proxy started, when later).
type CanaryStats struct {
	Env     string       `json:"env"`
	Service string       `json:"service"`
	Step    int          `json:"step"`
	Weight  int          `json:"weight"`
	Since   time.Time    `json:"since"`
	Stable  ReleaseStats `json:"stable"`
	Canary  ReleaseStats `json:"canary"`
}

// ReleaseStats are one release's answers over a canary step.
type ReleaseStats struct {
	Release string `json:"release,omitempty"`
	Addr    string `json:"addr"`
	// Requests answered since the step started (upgrades included when
	// they end).
	Requests int64 `json:"requests"`
	// Errors are 5xx answers, including the proxy's own 502 for this
	// upstream.
	Errors int64 `json:"errors"`
	// ErrorRatio is Errors/Requests, 0 when Requests is 0.
	ErrorRatio float64 `json:"error_ratio"`
	// Latency quantiles from the step's histogram, each the upper edge of
	// its bucket (1 ms wide up to 100 ms; see latencyBucket).
	P50 time.Duration `json:"p50"`
	P95 time.Duration `json:"p95"`
	P99 time.Duration `json:"p99"`
}

// pick chooses the backend of a request: the stable one, unless the route
// has a canary. Small enough to inline, so a route without a canary pays a
// nil check.
func (e *entry) pick(w http.ResponseWriter, r *http.Request) *backend {
	if e.cb == nil {
		if e.tasks != nil {
			return e.pickTask()
		}
		return e.b
	}
	return e.pickCanary(w, r)
}

func (e *entry) pickCanary(w http.ResponseWriter, r *http.Request) *backend {
	var bucket uint32
	switch {
	case e.stickyHeader != "":
		if v := r.Header[e.stickyHeader]; len(v) > 0 && v[0] != "" {
			bucket = bucketOf(v[0])
		} else {
			bucket = rand.Uint32N(100)
		}
	case e.stickyCookie != "":
		id, ok := cookieValue(r.Header, e.stickyCookie)
		if !ok {
			id = crand.Text()
			c := e.stickyCookie + "=" + id + "; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
			if r.TLS != nil {
				c += "; Secure"
			}
			h := w.Header()
			h["Set-Cookie"] = append(h["Set-Cookie"], c)
		}
		bucket = bucketOf(id)
	default:
		bucket = rand.Uint32N(100)
	}
	if bucket < e.weight {
		return e.cb
	}
	return e.b
}

// bucketOf hashes a sticky id (FNV-1a, 32 bits) to a bucket 0..99, without
// allocating.
func bucketOf(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h % 100
}

// cookieValue finds a cookie in a request's Cookie headers without
// parsing the others (http.Request.Cookie allocates them all).
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				v = strings.Trim(v, `"`)
				return v, v != ""
			}
		}
	}
	return "", false
}

// window is one release's statistics over a canary step. A backend holds
// its current window behind an atomic.Pointer: requests add to it without
// a lock, and a new step swaps in a new one.
type window struct {
	key     windowKey
	since   time.Time
	errors  atomic.Int64
	buckets [latencyBuckets]atomic.Int64
}

// windowKey is what a step's statistics belong to: a new step number or a
// new canary release starts new ones.
type windowKey struct {
	step   int
	canary Upstream
}

// The latency histogram has fixed buckets: 1 ms wide below 100 ms, 10 ms
// to 1 s, 100 ms to 10 s, 1 s to 60 s, and one for 60 s and more.
const latencyBuckets = 100 + 90 + 90 + 50 + 1

func latencyBucket(d time.Duration) int {
	ms := int(d / time.Millisecond)
	switch {
	case ms < 0:
		return 0
	case ms < 100:
		return ms
	case ms < 1000:
		return 100 + (ms-100)/10
	case ms < 10000:
		return 190 + (ms-1000)/100
	case ms < 60000:
		return 280 + (ms-10000)/1000
	}
	return latencyBuckets - 1
}

// bucketUpper is the upper edge of a latency bucket (60 s for the last).
func bucketUpper(i int) time.Duration {
	var ms int
	switch {
	case i < 100:
		ms = i + 1
	case i < 190:
		ms = 100 + (i-100+1)*10
	case i < 280:
		ms = 1000 + (i-190+1)*100
	case i < 330:
		ms = 10000 + (i-280+1)*1000
	default:
		ms = 60000
	}
	return time.Duration(ms) * time.Millisecond
}

func (w *window) observe(d time.Duration) { w.buckets[latencyBucket(d)].Add(1) }

// stats reads a window. Requests counted while it reads may land in one
// count and not another; the next read has them.
func (w *window) stats(u Upstream) ReleaseStats {
	s := ReleaseStats{Release: u.Release, Addr: u.Addr}
	if w == nil {
		return s
	}
	var counts [latencyBuckets]int64
	for i := range w.buckets {
		counts[i] = w.buckets[i].Load()
		s.Requests += counts[i]
	}
	s.Errors = w.errors.Load()
	if s.Requests > 0 {
		s.ErrorRatio = min(1, float64(s.Errors)/float64(s.Requests))
	}
	s.P50, s.P95, s.P99 = quantile(counts[:], s.Requests, 0.50), quantile(counts[:], s.Requests, 0.95), quantile(counts[:], s.Requests, 0.99)
	return s
}

// quantile is the upper edge of the bucket holding the q-quantile of n
// observations; 0 when there are none.
func quantile(counts []int64, n int64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n) + 0.999999)
	rank = max(1, min(n, rank))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(len(counts) - 1)
}

// checkCanary validates a route's canary, as the state file or a request
// gives it.
func checkCanary(r *Route) error {
	c := r.Canary
	if c == nil {
		return nil
	}
	if err := checkAddr(c.Upstream.Addr); err != nil {
		return fmt.Errorf("canary of %s in %s: %w", r.Service, r.Env, err)
	}
	if c.Weight < 0 || c.Weight > 100 {
		return fmt.Errorf("canary of %s in %s: weight %d is not a percentage; give 0 to 100", r.Service, r.Env, c.Weight)
	}
	if c.Step < 0 {
		return fmt.Errorf("canary of %s in %s: step %d; steps count from 1", r.Service, r.Env, c.Step)
	}
	if r.Upstream == nil {
		return fmt.Errorf("canary of %s in %s: no stable release routed; a first deploy is blue/green, not canary", r.Service, r.Env)
	}
	if r.Upstream.Addr == c.Upstream.Addr {
		return fmt.Errorf("canary of %s in %s: %s is the stable release's address too; a canary runs beside the stable release, on its own port", r.Service, r.Env, c.Upstream.Addr)
	}
	s := c.Sticky
	switch {
	case s.Cookie != "" && s.Header != "":
		return fmt.Errorf("canary of %s in %s: sticky by cookie %q and by header %q; choose one", r.Service, r.Env, s.Cookie, s.Header)
	case s.Cookie != "" && !validKey(s.Cookie):
		return fmt.Errorf("canary of %s in %s: %q is not a cookie name; use letters, digits and -, like gantry-canary", r.Service, r.Env, s.Cookie)
	case s.Header != "" && !validKey(s.Header):
		return fmt.Errorf("canary of %s in %s: %q is not a header name; use letters, digits and -, like X-User-Id", r.Service, r.Env, s.Header)
	}
	return nil
}

// canaryRoute finds the route a canary request is for; it must have a
// stable release.
func (st *State) canaryRoute(env, service string) (int, error) {
	i := st.find(env, service)
	if i < 0 || st.Routes[i].Upstream == nil {
		return -1, fmt.Errorf("%w: no stable release routed for %s in %s; a first deploy is blue/green, not canary", ErrInput, service, env)
	}
	return i, nil
}

// withCanary finds a route that has a canary, to promote or abort.
func (st *State) withCanary(env, service, verb string) (int, error) {
	i := st.find(env, service)
	if i < 0 || st.Routes[i].Canary == nil {
		return -1, fmt.Errorf("%w: %s in %s has no canary to %s", ErrNotFound, service, env, verb)
	}
	return i, nil
}

// SetCanary sends Weight percent of a route's traffic to a canary release,
// beside its stable one (the route's Upstream), or changes the weight, step
// or stickiness of the canary it has. The canary must accept a connection
// first. A new Step, or a new To, starts both releases' statistics afresh.
func (p *Proxy) SetCanary(ctx context.Context, req CanaryRequest) (Route, error) {
	if req.Env == "" || req.Service == "" {
		return Route{}, fmt.Errorf("%w: a canary needs its environment and service", ErrInput)
	}
	if req.Step == 0 {
		req.Step = 1
	}
	c := Canary{Upstream: req.To, Weight: req.Weight, Step: req.Step, Sticky: req.Sticky}
	// Refuse what is wrong with the request or the route before dialling:
	// a missing route says more than a refused connection.
	p.mu.Lock()
	i, err := p.state.canaryRoute(req.Env, req.Service)
	if err == nil {
		r := p.state.Routes[i]
		r.Canary = &c
		if err = checkCanary(&r); err != nil {
			err = fmt.Errorf("%w: %w", ErrInput, err)
		}
	}
	p.mu.Unlock()
	if err != nil {
		return Route{}, err
	}
	if err := p.dial(ctx, req.Env, req.Service, req.To, "canary "); err != nil {
		return Route{}, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	if i, err = st.canaryRoute(req.Env, req.Service); err != nil {
		return Route{}, err // the route went while the canary was dialled
	}
	r := &st.Routes[i]
	c.StepStarted = time.Now().UTC()
	if old := r.Canary; old != nil && old.Upstream == c.Upstream && old.Step == c.Step {
		c.StepStarted = old.StepStarted
	}
	r.Canary = &c
	if err := p.commit(st); err != nil {
		return Route{}, err
	}
	p.log.Info("canary", "env", req.Env, "service", req.Service, "canary", c.Upstream.Addr, "release", c.Upstream.Release, "weight", c.Weight, "step", c.Step)
	return p.state.Routes[i], nil
}

// PromoteCanary makes a route's canary its stable release, taking all the
// traffic at once; the old stable release becomes Previous (what a
// rollback returns to, and what to drain). Counted as a switch for a
// deploy.
func (p *Proxy) PromoteCanary(ctx context.Context, env, service string) (SwitchResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	i, err := st.withCanary(env, service, "promote")
	if err != nil {
		return SwitchResult{}, err
	}
	r := &st.Routes[i]
	prev := r.Upstream
	to := r.Canary.Upstream
	r.Upstream, r.Previous, r.Canary = &to, prev, nil
	r.SwitchedAt = time.Now().UTC()
	if err := p.commit(st); err != nil {
		return SwitchResult{}, err
	}
	p.m.switches.WithLabelValues(env, service, ReasonDeploy).Inc()
	p.log.Info("canary promoted", "env", env, "service", service, "to", to.Addr, "release", to.Release)
	return SwitchResult{Route: p.state.Routes[i], Previous: prev}, nil
}

// AbortCanary sends all of a route's traffic back to its stable release at
// once; the canary's requests in flight finish there (drain it with the
// address in SwitchResult.Previous). Counted as a switch for an abort, and
// as an abort. reason is logged.
func (p *Proxy) AbortCanary(ctx context.Context, env, service, reason string) (SwitchResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	i, err := st.withCanary(env, service, "abort")
	if err != nil {
		return SwitchResult{}, err
	}
	r := &st.Routes[i]
	canary := r.Canary.Upstream
	r.Canary = nil
	if err := p.commit(st); err != nil {
		return SwitchResult{}, err
	}
	p.m.switches.WithLabelValues(env, service, ReasonAbort).Inc()
	p.m.aborts.WithLabelValues(env, service).Inc()
	p.log.Warn("canary aborted", "env", env, "service", service, "canary", canary.Addr, "release", canary.Release, "reason", reason)
	return SwitchResult{Route: p.state.Routes[i], Previous: &canary}, nil
}

// CanaryStats are the statistics of both releases of a route's canary over
// its current step.
func (p *Proxy) CanaryStats(env, service string) (CanaryStats, error) {
	for _, e := range p.tbl.Load().all {
		if e.Env != env || e.Service != service {
			continue
		}
		if e.cb == nil {
			break
		}
		c := e.Canary
		cw := e.cb.win.Load()
		s := CanaryStats{Env: env, Service: service, Step: c.Step, Weight: c.Weight,
			Stable: e.b.win.Load().stats(*e.Upstream), Canary: cw.stats(c.Upstream)}
		if cw != nil {
			s.Since = cw.since
		}
		return s, nil
	}
	return CanaryStats{}, fmt.Errorf("%w: %s in %s has no canary", ErrNotFound, service, env)
}

// buildCanary resolves a route's canary in its table entry and makes sure
// both releases count into the step's windows.
func (p *Proxy) buildCanary(e *entry, keep map[*backend]bool) {
	c := e.Canary
	if c == nil || e.b == nil {
		return
	}
	e.cb = p.backend(e.Env, e.Service, c.Upstream)
	e.weight = uint32(c.Weight)
	e.stickyHeader = http.CanonicalHeaderKey(c.Sticky.Header)
	e.stickyCookie = c.Sticky.Cookie
	key := windowKey{step: c.Step, canary: c.Upstream}
	now := time.Now().UTC()
	for _, b := range [2]*backend{e.b, e.cb} {
		if w := b.win.Load(); w == nil || w.key != key {
			b.win.Store(&window{key: key, since: now})
		}
		keep[b] = true
	}
	p.m.canaryWeight.WithLabelValues(e.Env, e.Service).Set(float64(c.Weight))
}

// dropWindows stops the counting of backends no canary uses any more, and
// sets the canary weight of routes that lost their canary to 0.
func (p *Proxy) dropWindows(old, t *table, keep map[*backend]bool) {
	for _, b := range p.backends {
		if !keep[b] && b.win.Load() != nil {
			b.win.Store(nil)
		}
	}
	if old == nil {
		return
	}
	for _, oe := range old.all {
		if oe.cb == nil {
			continue
		}
		gone := true
		for _, e := range t.all {
			if e.Env == oe.Env && e.Service == oe.Service && e.cb != nil {
				gone = false
				break
			}
		}
		if gone {
			p.m.canaryWeight.WithLabelValues(oe.Env, oe.Service).Set(0)
		}
	}
}
