package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gantryhq/gantry/internal/store"
)

// metrics are the server's Prometheus metrics, registered on an injected
// registry (a fresh one per server, so tests can run several). The
// deployment metrics (gantry_deployments_total and the others of
// recordMetrics) are derived from the record, not counted as the server
// runs deployments, so the CLI's deploys count too.
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	authFailures    *prometheus.CounterVec
	auditEvents     *prometheus.CounterVec
	serviceHealthy  *prometheus.GaugeVec
	releaseInfo     *prometheus.GaugeVec
	inFlight        prometheus.Gauge
	decisions       *prometheus.CounterVec
	promotions      *prometheus.CounterVec
	record          *recordMetrics
}

func newMetrics(reg prometheus.Registerer, st *store.Store, project string, envs []string, onErr func(error)) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_http_requests_total",
			Help: "API requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_http_request_duration_seconds",
			Help:    "Time to answer API requests, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_auth_failures_total",
			Help: "Requests refused for authentication (no, invalid, expired or revoked token) or authorization (denied).",
		}, []string{"reason"}),
		auditEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_audit_events_total",
			Help: "Audit events written by the server, by outcome.",
		}, []string{"outcome"}),
		serviceHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_service_healthy",
			Help: "1 when the serving container of a service is running and healthy, 0 otherwise, as the watcher last saw it.",
		}, []string{"env", "service"}),
		releaseInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_release_info",
			Help: "1 for each service of the release serving in an environment, with its version and image digest (the image ID when the image has no registry digest).",
		}, []string{"env", "service", "version", "digest"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_approval_decisions_total",
			Help: "Approvals and rejections of promotions through the server, by environment, decision (approve, reject) and outcome (ok, denied, failed).",
		}, []string{"env", "decision", "outcome"}),
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_promotion_requests_total",
			Help: "Promotion requests through the server, by target environment and outcome (ok, denied, failed).",
		}, []string{"env", "outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_deployments_in_progress",
			Help: "Deployments and rollbacks the server is running now.",
		}),
		record: newRecordMetrics(st, project, envs, onErr),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.authFailures, m.auditEvents, m.serviceHealthy, m.releaseInfo, m.inFlight, m.decisions, m.promotions, m.record,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RegisterMetrics registers every metric the server exports on reg, with
// no store behind them: for listing what gantry exports (gantry
// monitoring check compares the dashboard with it), not for serving.
func RegisterMetrics(reg prometheus.Registerer) {
	newMetrics(reg, nil, "", nil, nil)
}
