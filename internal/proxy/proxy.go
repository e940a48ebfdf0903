// Package proxy is gantry's HTTP reverse proxy: it routes requests by host
// and path prefix to the container port of each service's active release,
// published on 127.0.0.1, and switches a route from one release to another
// atomically, so that deploys and rollbacks lose no request. Old releases
// drain: their requests in flight (and WebSockets) finish, up to a drain
// timeout. Routes, active releases and maintenance are written to a state
// file before they take effect and read back when the proxy restarts.
//
// The hot path is engineered rather than delegated to httputil.ReverseProxy
// (which measured 0.3x nginx here): plain HTTP/1.1 requests without a body
// are served by a loop of the proxy's own (h1.go), which hands every other
// connection to net/http; the routing table is immutable behind
// an atomic.Pointer, so a lookup takes no lock and allocates nothing; each
// upstream has its own LIFO pool of keep-alive HTTP/1.1 connections used
// from the request's goroutine (no hand-off between goroutines, as
// net/http's Transport does); copy buffers come from a pool; metric label
// values are resolved when a route changes, never per request. Upgraded
// connections (WebSocket) go through httputil.ReverseProxy, whose upgrade
// handling is complete and whose cost does not matter for long-lived
// connections.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/config"
)

// Options configure a Proxy. Zero values take the defaults.
type Options struct {
	// StateFile is where routes, active releases and maintenance are kept
	// (JSON, written atomically). Required.
	StateFile string
	// MaxBody is the largest request body passed on; larger is 413.
	MaxBody int64
	// DrainTimeout is the default time an old release's requests may go
	// on after a switch away from it.
	DrainTimeout time.Duration
	// DialTimeout bounds a connection to an upstream (default 5s).
	DialTimeout time.Duration
	// IdleTimeout closes upstream connections idle longer (default 90s).
	IdleTimeout time.Duration
	// MaxIdlePerUpstream caps the kept-alive connections of one upstream
	// (default 1024).
	MaxIdlePerUpstream int
	// Registerer receives the proxy's metrics; nil registers none.
	Registerer prometheus.Registerer
	Log        *slog.Logger

	errorLog *log.Logger
}

// Switch reasons; rollback and abort count as aborts.
const (
	ReasonDeploy   = "deploy"
	ReasonRollback = "rollback"
	ReasonAbort    = "abort"
	ReasonManual   = "manual"
)

// Proxy is the reverse proxy and its state. It is an http.Handler.
type Proxy struct {
	opts Options
	log  *slog.Logger
	m    *metrics
	tbl  atomic.Pointer[table]

	mu       sync.Mutex // serializes changes; requests never take it
	state    State
	backends map[backendKey]*backend
	// changed is closed when the table changes (and replaced): requests
	// whose every swarm task refused them wait on it (tasks.go).
	changed atomic.Pointer[chan struct{}]
}

type backendKey struct{ env, service, addr string }

// New reads the state file (the routes and releases the proxy served
// before it stopped) and returns a proxy serving them.
func New(o Options) (*Proxy, error) {
	if o.StateFile == "" {
		return nil, errors.New("proxy: a state file is required")
	}
	if o.MaxBody <= 0 {
		o.MaxBody = config.DefaultProxyMaxBody
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = config.DefaultProxyDrainTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.MaxIdlePerUpstream <= 0 {
		o.MaxIdlePerUpstream = 1024
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.errorLog = slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn)
	p := &Proxy{opts: o, log: o.Log, m: newMetrics(o.Registerer), backends: map[backendKey]*backend{}}
	st, err := loadState(o.StateFile)
	if err != nil {
		return nil, err
	}
	p.state = st
	p.tbl.Store(p.build(st))
	p.tableChanged()
	return p, nil
}

// ErrorLog is the logger for an http.Server serving the proxy.
func (p *Proxy) ErrorLog() *log.Logger { return p.opts.errorLog }

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	e := p.tbl.Load().lookup(r.Host, r.URL.Path)
	switch {
	case e == nil:
		p.m.unrouted.Inc()
		writePage(w, http.StatusNotFound, "no-route", notFoundPage)
		return
	case e.maint != nil:
		e.own.inc(http.StatusServiceUnavailable)
		writePage(w, http.StatusServiceUnavailable, "maintenance", e.maint.page)
		return
	case e.b == nil && e.tasks == nil:
		e.own.inc(http.StatusServiceUnavailable)
		writePage(w, http.StatusServiceUnavailable, "no-release", noReleasePage(e.Env, e.Service))
		return
	case r.ContentLength > p.opts.MaxBody:
		p.tooLarge(w, e)
		return
	}
	b := e.pick(w, r)
	e.inflight.Inc()
	b.inflight.Add(1)
	defer func() { p.done(e, b, start) }()
	if isUpgrade(r) {
		b.serveUpgrade(w, r, p)
		return
	}
	tried, waited := 1, false // swarm tasks tried; waited for new ones
	for attempt := 0; ; attempt++ {
		c, err := b.pool.get(r.Context())
		// sent: some of the request may have reached the upstream.
		sent := false
		if err == nil {
			var status int
			var retry bool
			status, retry, err = b.roundTrip(c, w, r, p.opts.MaxBody)
			switch {
			case err == nil:
				b.codes.inc(status)
				return
			case errors.Is(err, errBodyTooLarge):
				p.tooLarge(w, e)
				return
			case status != 0:
				// The answer had begun: end it broken rather than let a
				// truncated body look complete.
				b.codes.inc(status)
				var gone errClientGone
				if !errors.As(err, &gone) && r.Context().Err() == nil {
					b.errs.Inc()
					p.logUpstream(b, err)
				}
				panic(http.ErrAbortHandler)
			case retry && attempt == 0:
				continue
			}
			// A request that may be sent again (no body, an idempotent
			// method) which got no answer (nothing was written to the
			// client: the write of the request or the read of the answer
			// failed) may go to another swarm task: the one it reached
			// was stopping.
			sent = !retry && !resendable(r)
		}
		if r.Context().Err() != nil {
			// The client went away; nobody reads an answer.
			b.codes.inc(499)
			return
		}
		if !sent {
			// A swarm task that refused it (it stopped before gantry
			// took it off the route): another task.
			if nb := p.nextTask(r.Context(), &e, b, &tried, &waited, r.Host, r.URL.Path); nb != nil {
				b.inflight.Add(-1)
				nb.inflight.Add(1)
				b, attempt = nb, -1
				continue
			}
			if r.Context().Err() != nil {
				b.codes.inc(499) // gone while it waited for tasks
				return
			}
		}
		p.badGateway(w, b, err)
		return
	}
}

func (p *Proxy) done(e *entry, b *backend, start time.Time) {
	b.inflight.Add(-1)
	e.inflight.Dec()
	d := time.Since(start)
	b.dur.Observe(d.Seconds())
	if w := b.win.Load(); w != nil {
		w.observe(d)
	}
}

func (p *Proxy) tooLarge(w http.ResponseWriter, e *entry) {
	p.m.tooLarge.Inc()
	e.own.inc(http.StatusRequestEntityTooLarge)
	w.Header().Set("Connection", "close")
	writePage(w, http.StatusRequestEntityTooLarge, "body-too-large", tooLargePage(p.opts.MaxBody))
}

func (p *Proxy) badGateway(w http.ResponseWriter, b *backend, err error) {
	b.errs.Inc()
	b.codes.inc(http.StatusBadGateway)
	p.logUpstream(b, err)
	writePage(w, http.StatusBadGateway, "upstream-unreachable", badGatewayPage(b.env, b.service, b.release))
}

// logUpstream logs an upstream failure, at most once a second per
// upstream: a release that refuses connections under load would flood the
// log; the counter has every one.
func (p *Proxy) logUpstream(b *backend, err error) {
	now := time.Now().UnixNano()
	last := b.lastLog.Load()
	if now-last < int64(time.Second) || !b.lastLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("upstream failed; answered 502", "env", b.env, "service", b.service, "release", b.release, "upstream", b.addr, "err", err)
}

func isUpgrade(r *http.Request) bool {
	return len(r.Header["Upgrade"]) > 0 && listed(r.Header["Connection"], "Upgrade")
}

// serveUpgrade passes an upgraded connection (WebSocket) through. It counts
// as in flight until it closes; a drain timeout cuts it.
func (b *backend) serveUpgrade(w http.ResponseWriter, r *http.Request, p *Proxy) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	b.upMu.Lock()
	b.upSeq++
	id := b.upSeq
	b.upgraded[id] = cancel
	b.upMu.Unlock()
	defer func() {
		b.upMu.Lock()
		delete(b.upgraded, id)
		b.upMu.Unlock()
	}()
	sw := &statusWriter{ResponseWriter: w}
	b.upgrader.ServeHTTP(sw, r.WithContext(ctx))
	if sw.status != 0 && sw.status != http.StatusBadGateway {
		b.codes.inc(sw.status)
	}
}

// statusWriter remembers the status an upgrade answered; Unwrap lets
// http.ResponseController reach the connection to hijack it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 || s.status < 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// build makes the routing table of a state, with the backends of the
// active releases (reused when they already exist, so their connections
// and counts in flight carry over).
func (p *Proxy) build(st State) *table {
	t := &table{hosts: map[string][]*entry{}}
	keep := map[*backend]bool{}
	for _, r := range st.Routes {
		e := &entry{Route: r,
			own:      p.m.codes(r.Env, r.Service, ""),
			inflight: p.m.inflight.WithLabelValues(r.Env, r.Service),
		}
		if r.Upstream != nil {
			e.b = p.backend(r.Env, r.Service, *r.Upstream)
		}
		for _, u := range r.Tasks {
			e.tasks = append(e.tasks, p.backend(r.Env, r.Service, u))
		}
		p.buildCanary(e, keep)
		if mt, ok := st.Maintenance[r.Env]; ok {
			e.maint = &maintenance{page: maintenancePage(r.Env, mt.Message)}
		}
		t.all = append(t.all, e)
		if r.Host == "" {
			t.any = append(t.any, e)
		} else {
			t.hosts[r.Host] = append(t.hosts[r.Host], e)
		}
	}
	sortEntries(t.any)
	for _, es := range t.hosts {
		sortEntries(es)
	}
	p.dropWindows(p.tbl.Load(), t, keep)
	return t
}

// backend returns the backend of an upstream, made on first use. The
// release is part of the metric labels, so a new release at the same
// address makes a new backend (a swarm task on a port a gone task had),
// and the old one retires.
func (p *Proxy) backend(env, service string, u Upstream) *backend {
	k := backendKey{env, service, u.Addr}
	old, ok := p.backends[k]
	if ok && old.release == u.Release {
		return old
	}
	if ok {
		go old.retire(p.opts.DrainTimeout)
	}
	b := newBackend(p.m, env, service, u, &p.opts)
	b.upgrader.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) { p.badGateway(w, b, err) }
	p.backends[k] = b
	return b
}

// commit saves a new state and then makes it the one requests see. A state
// that cannot be saved does not take effect.
func (p *Proxy) commit(st State) error {
	if err := checkRoutes(st.Routes); err != nil {
		return fmt.Errorf("%w: %w", ErrInput, err)
	}
	if err := saveState(p.opts.StateFile, st); err != nil {
		return err
	}
	p.m.stateSave.Inc()
	p.state = st
	p.tbl.Store(p.build(st))
	p.tableChanged()
	return nil
}

// ErrInput marks a change the proxy refused as invalid: nothing changed.
var ErrInput = errors.New("invalid input")

// ErrNotFound marks a change to a route or upstream the proxy does not have.
var ErrNotFound = errors.New("not found")

// State is a copy of the proxy's state, with the requests in flight per
// route and upstream.
func (p *Proxy) State() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	s := Status{State: st, InFlight: map[string]int64{}}
	for k, b := range p.backends {
		if n := b.inflight.Load(); n > 0 {
			s.InFlight[k.env+"/"+k.service+"/"+k.addr] = n
		}
	}
	return s
}

// Status is the state and the requests in flight per env/service/upstream.
type Status struct {
	State
	InFlight map[string]int64 `json:"in_flight"`
}

// SetRoutes replaces the routes of the given environments (every
// environment when envs is nil) with routes: a route that stays (same
// environment and service) keeps its active and previous release and its
// canary.
func (p *Proxy) SetRoutes(routes []Route, envs []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	owned := func(env string) bool {
		if envs == nil {
			return true
		}
		for _, e := range envs {
			if e == env {
				return true
			}
		}
		return false
	}
	old := p.state.clone()
	st := State{Maintenance: old.Maintenance}
	for _, r := range old.Routes {
		if !owned(r.Env) {
			st.Routes = append(st.Routes, r)
		}
	}
	for _, r := range routes {
		if !owned(r.Env) {
			return fmt.Errorf("%w: route %s/%s is in an environment not being set (%v)", ErrInput, r.Env, r.Service, envs)
		}
		if i := old.find(r.Env, r.Service); i >= 0 {
			o := old.Routes[i]
			r.Upstream, r.Previous, r.SwitchedAt, r.Canary, r.Tasks = o.Upstream, o.Previous, o.SwitchedAt, o.Canary, o.Tasks
		} else {
			r.Upstream, r.Previous, r.SwitchedAt, r.Canary, r.Tasks = nil, nil, time.Time{}, nil, nil
		}
		st.Routes = append(st.Routes, r)
	}
	return p.commit(st)
}

// SwitchRequest moves a route's traffic to an upstream. Host and Path
// create or update the route; with Path empty the route must exist and
// keeps its host and path.
type SwitchRequest struct {
	Env     string   `json:"env"`
	Service string   `json:"service"`
	Host    string   `json:"host,omitempty"`
	Path    string   `json:"path,omitempty"`
	To      Upstream `json:"to"`
	// Reason is deploy, rollback, abort or manual.
	Reason string `json:"reason,omitempty"`
}

// SwitchResult says what a switch replaced.
type SwitchResult struct {
	Route    Route     `json:"route"`
	Previous *Upstream `json:"previous,omitempty"`
	// Canary is the canary a switch ended (drain it too); nil when the
	// route had none.
	Canary *Upstream `json:"canary,omitempty"`
}

// Switch sends every new request of a route to an upstream, at once: the
// requests in flight on the previous one finish there (Drain waits for
// them). The upstream must accept a connection first: traffic never moves
// to a release that is not listening. A switch ends a canary the route
// has: all the traffic goes to the one upstream switched to (a rollback
// during a canary must not leave part of it on a release), and the
// canary's upstream is drained like an old release.
func (p *Proxy) Switch(ctx context.Context, req SwitchRequest) (SwitchResult, error) {
	if err := checkAddr(req.To.Addr); err != nil {
		return SwitchResult{}, fmt.Errorf("%w: %w", ErrInput, err)
	}
	switch req.Reason {
	case "":
		req.Reason = ReasonManual
	case ReasonDeploy, ReasonRollback, ReasonAbort, ReasonManual:
	default:
		return SwitchResult{}, fmt.Errorf("%w: %q is not a switch reason; use deploy, rollback, abort or manual", ErrInput, req.Reason)
	}
	if err := p.dial(ctx, req.Env, req.Service, req.To, ""); err != nil {
		return SwitchResult{}, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	i, err := st.place(req.Env, req.Service, req.Host, req.Path)
	if err != nil {
		return SwitchResult{}, err
	}
	r := &st.Routes[i]
	prev := r.Upstream
	to := req.To
	if prev == nil || *prev != to {
		r.Previous = prev
	}
	r.Upstream = &to
	r.SwitchedAt = time.Now().UTC()
	canary := r.Canary
	r.Canary = nil
	r.Tasks = nil // a repair on a swarm route: the next task list replaces it
	if err := p.commit(st); err != nil {
		return SwitchResult{}, err
	}
	p.m.switches.WithLabelValues(req.Env, req.Service, req.Reason).Inc()
	if req.Reason == ReasonRollback || req.Reason == ReasonAbort {
		p.m.aborts.WithLabelValues(req.Env, req.Service).Inc()
	}
	p.log.Info("switched", "env", req.Env, "service", req.Service, "to", to.Addr, "release", to.Release, "reason", req.Reason)
	if canary != nil {
		p.log.Info("canary ended by a switch", "env", req.Env, "service", req.Service, "canary", canary.Upstream.Addr, "release", canary.Upstream.Release)
	}
	res := SwitchResult{Route: p.state.Routes[i], Previous: prev}
	if canary != nil {
		res.Canary = &canary.Upstream
	}
	return res, nil
}

// dial connects to an upstream before traffic moves to it: traffic never
// moves to a release that is not listening. what names it in the error
// ("canary ").
func (p *Proxy) dial(ctx context.Context, env, service string, u Upstream, what string) error {
	d := net.Dialer{Timeout: p.opts.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", u.Addr)
	if err != nil {
		return fmt.Errorf("%w: %s%s of %s in %s at %s does not accept connections (%v); traffic stays where it is", ErrInput, what, releaseName(u.Release), service, env, u.Addr, err)
	}
	c.Close()
	return nil
}

func releaseName(r string) string {
	if r == "" {
		return "the upstream"
	}
	return "release " + r
}

// DrainRequest waits for an old upstream's requests to finish.
type DrainRequest struct {
	Env     string        `json:"env"`
	Service string        `json:"service"`
	Addr    string        `json:"addr"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// DrainResult says how a drain ended.
type DrainResult struct {
	// Cut is the number of requests and WebSockets still open at the
	// timeout, and closed.
	Cut     int           `json:"cut"`
	Elapsed time.Duration `json:"elapsed"`
}

// drainSettle is how long a drain waits before it first looks: a request
// that loaded the routing table just before the switch has counted itself
// in flight by then.
const drainSettle = 20 * time.Millisecond

// Drain waits until an upstream that no route sends traffic to has no
// request in flight, or until the timeout (default: the proxy's drain
// timeout), when it cuts what is left. Then its idle connections close.
func (p *Proxy) Drain(ctx context.Context, req DrainRequest) (DrainResult, error) {
	start := time.Now()
	if req.Timeout <= 0 {
		req.Timeout = p.opts.DrainTimeout
	}
	p.mu.Lock()
	b, ok := p.backends[backendKey{req.Env, req.Service, req.Addr}]
	if ok {
		for _, r := range p.state.Routes {
			if r.Env == req.Env && r.Service == req.Service && r.Upstream != nil && r.Upstream.Addr == req.Addr {
				p.mu.Unlock()
				return DrainResult{}, fmt.Errorf("%w: %s is the active upstream of %s in %s; switch away from it first", ErrInput, req.Addr, req.Service, req.Env)
			}
			if r.Env == req.Env && r.Service == req.Service && r.Canary != nil && r.Canary.Upstream.Addr == req.Addr {
				p.mu.Unlock()
				return DrainResult{}, fmt.Errorf("%w: %s is the canary of %s in %s; abort or promote the canary first", ErrInput, req.Addr, req.Service, req.Env)
			}
			if r.Env == req.Env && r.Service == req.Service && r.hasTask(req.Addr) {
				p.mu.Unlock()
				return DrainResult{}, fmt.Errorf("%w: %s is a running swarm task of %s in %s; gantry drains a task when Swarm stops it", ErrInput, req.Addr, req.Service, req.Env)
			}
		}
	}
	p.mu.Unlock()
	if !ok {
		return DrainResult{Elapsed: time.Since(start)}, nil // never served, nothing to wait for
	}
	deadline := time.NewTimer(req.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	select {
	case <-time.After(drainSettle):
	case <-ctx.Done():
		return DrainResult{}, ctx.Err()
	}
	res := DrainResult{}
wait:
	for b.inflight.Load() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			if p.routedAgain(b) {
				return DrainResult{Elapsed: time.Since(start)}, nil
			}
			res.Cut = b.cut()
			p.m.drainCut.WithLabelValues(req.Env, req.Service).Add(float64(res.Cut))
			break wait
		case <-ctx.Done():
			return DrainResult{}, ctx.Err()
		}
	}
	if p.routedAgain(b) {
		return DrainResult{Elapsed: time.Since(start)}, nil
	}
	b.pool.closeIdle()
	p.mu.Lock()
	if cur := p.backends[backendKey{req.Env, req.Service, req.Addr}]; cur == b && !p.routed(b) {
		delete(p.backends, backendKey{req.Env, req.Service, req.Addr})
	}
	p.mu.Unlock()
	res.Elapsed = time.Since(start)
	p.log.Info("drained", "env", req.Env, "service", req.Service, "upstream", req.Addr, "cut", res.Cut, "elapsed", res.Elapsed)
	return res, nil
}

// routedAgain says whether a route took a backend back while it drained (a
// swarm task that left the list and came back): its drain stops there.
func (p *Proxy) routedAgain(b *backend) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.backends[backendKey{b.env, b.service, b.addr}] == b && p.routed(b)
}

func (p *Proxy) routed(b *backend) bool {
	for _, r := range p.state.Routes {
		if r.Env == b.env && r.Service == b.service && r.Upstream != nil && r.Upstream.Addr == b.addr {
			return true
		}
		if r.Env == b.env && r.Service == b.service && r.Canary != nil && r.Canary.Upstream.Addr == b.addr {
			return true
		}
		if r.Env == b.env && r.Service == b.service && r.hasTask(b.addr) {
			return true
		}
	}
	return false
}

// retire closes the connections of a backend no table has any more once
// its requests in flight finished (or after timeout, cutting them), as a
// drain does; a request of an old table that reaches it later closes its
// connection when done.
func (b *backend) retire(timeout time.Duration) {
	b.pool.mu.Lock()
	b.pool.retired = true
	b.pool.mu.Unlock()
	time.Sleep(drainSettle)
	deadline := time.Now().Add(timeout)
	for b.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.cut()
}

// cut ends what is still open on a backend: upgraded connections are
// cancelled, pooled connections (busy ones too) closed.
func (b *backend) cut() int {
	return b.cutUpgraded() + b.pool.closeAll()
}

// cutUpgraded cancels the backend's upgraded connections and says how
// many there were.
func (b *backend) cutUpgraded() int {
	b.upMu.Lock()
	defer b.upMu.Unlock()
	for _, cancel := range b.upgraded {
		cancel()
	}
	return len(b.upgraded)
}

// SetMaintenance turns an environment's maintenance page on or off: while
// on, every route of the environment answers 503 with the page.
func (p *Proxy) SetMaintenance(env string, on bool, message string) error {
	if env == "" {
		return fmt.Errorf("%w: name the environment", ErrInput)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	if on {
		st.Maintenance[env] = Maintenance{Message: message, Since: time.Now().UTC()}
	} else {
		delete(st.Maintenance, env)
	}
	if err := p.commit(st); err != nil {
		return err
	}
	p.log.Info("maintenance", "env", env, "on", on)
	return nil
}

// Close closes the idle upstream connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.backends {
		b.pool.closeIdle()
	}
}
