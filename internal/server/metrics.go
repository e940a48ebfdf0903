package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, registered on an injected
// registry (a fresh one per server, so tests can run several).
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	deployments     *prometheus.CounterVec
	deployDuration  *prometheus.HistogramVec
	rollbacks       *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	auditEvents     *prometheus.CounterVec
	serviceHealthy  *prometheus.GaugeVec
	inFlight        prometheus.Gauge
	decisions       *prometheus.CounterVec
	promotions      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_deployments_total",
			Help: "Deployments run by the server, by environment, kind (deploy, rollback) and final state.",
		}, []string{"env", "kind", "state"}),
		deployDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_deployment_duration_seconds",
			Help:    "Time from a deployment's start to its final state, by environment and kind.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}, []string{"env", "kind"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_rollbacks_total",
			Help: "Rollbacks, by environment and trigger: automatic (a failed health gate) or manual (a rollback request).",
		}, []string{"env", "trigger"}),
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
	}
	reg.MustRegister(m.requests, m.requestDuration, m.deployments, m.deployDuration, m.rollbacks, m.authFailures, m.auditEvents, m.serviceHealthy, m.inFlight, m.decisions, m.promotions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
