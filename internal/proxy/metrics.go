package proxy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics. Label values are resolved
// when a route or a backend is made, never per request: the hot path only
// increments counters it already holds.
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inflight     *prometheus.GaugeVec
	upErrors     *prometheus.CounterVec
	switches     *prometheus.CounterVec
	aborts       *prometheus.CounterVec
	drainCut     *prometheus.CounterVec
	canaryWeight *prometheus.GaugeVec
	unrouted     prometheus.Counter
	tooLarge     prometheus.Counter
	stateSave    prometheus.Counter
}

// Status classes, the code label of gantry_proxy_requests_total.
var classes = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// codeCounters are the request counters of one (env, service, release), by
// status class.
// A backend's also count its 5xx into its canary step's window, when it
// has one.
type codeCounters struct {
	c   [len(classes)]prometheus.Counter
	win *atomic.Pointer[window] // nil for the proxy's own answers
}

func (c *codeCounters) inc(status int) {
	i := status/100 - 1
	if i < 0 || i >= len(c.c) {
		i = 4 // a status outside 100-599 is the upstream's failure
	}
	c.c[i].Inc()
	if i == 4 && c.win != nil {
		if w := c.win.Load(); w != nil {
			w.errors.Add(1)
		}
	}
}

// durationBuckets reach down to a fraction of a millisecond: the added
// latency of a proxy on loopback is measured in microseconds.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_proxy_requests_total",
			Help: "Requests the proxy answered, by environment, service, release (empty when the proxy answered itself: maintenance, nothing routed, body too large) and status class.",
		}, []string{"env", "service", "release", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_proxy_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by environment, service and release.",
			Buckets: durationBuckets,
		}, []string{"env", "service", "release"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_proxy_requests_in_flight",
			Help: "Requests (and WebSockets) being served, by environment and service.",
		}, []string{"env", "service"}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_proxy_upstream_errors_total",
			Help: "Requests answered 502 because the release's container could not be reached or broke the connection.",
		}, []string{"env", "service", "release"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_proxy_switches_total",
			Help: "Switches of a route's active release, by environment, service and reason (deploy, rollback, abort, manual).",
		}, []string{"env", "service", "reason"}),
		aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_proxy_aborts_total",
			Help: "Switches back to the previous release (reason rollback or abort) and canary aborts, by environment and service.",
		}, []string{"env", "service"}),
		drainCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_proxy_drain_cut_total",
			Help: "Requests and WebSockets of an old release still open at the end of the drain timeout, and cut.",
		}, []string{"env", "service"}),
		canaryWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_proxy_canary_weight",
			Help: "Percent of a route's requests (or sticky clients) sent to its canary release; 0 when the route has no canary (after a promote or an abort).",
		}, []string{"env", "service"}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_proxy_unrouted_requests_total",
			Help: "Requests for a host and path that no route answers (404).",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_proxy_body_too_large_total",
			Help: "Requests refused with 413 because their body is over max_body.",
		}),
		stateSave: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_proxy_state_saves_total",
			Help: "Times the proxy's state (routes, active releases, maintenance) was written to its state file.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inflight, m.upErrors, m.switches, m.aborts, m.drainCut, m.canaryWeight, m.unrouted, m.tooLarge, m.stateSave)
	}
	return m
}

func (m *metrics) codes(env, service, release string) codeCounters {
	var c codeCounters
	for i, cl := range classes {
		c.c[i] = m.requests.WithLabelValues(env, service, release, cl)
	}
	return c
}
