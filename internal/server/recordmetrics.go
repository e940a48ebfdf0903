package server

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// recordMetrics are the deployment metrics, derived from the record at
// every scrape: deployments that finished since the last scrape are read
// (by id, plus those that were still running then) and counted once; a
// deploy that succeeded and was rolled back later by its analysis (in the
// watch window after the switch) counts as succeeded in
// gantry_deployments_total and in gantry_rollbacks_total{reason="analysis"}. So a
// deploy run by the CLI next to the server, by another server over the
// same store, or before this server started counts like one the server ran;
// after a restart the counters start again from the whole record, which
// only ever grows, so rate() sees no reset.
type recordMetrics struct {
	st      *store.Store
	project string
	envs    []string
	onErr   func(error)

	mu      sync.Mutex
	lastID  int64
	running map[int64]bool
	// watched are deploys that succeeded less than revertHorizon ago: a
	// failing analysis in the watch window after the switch may still
	// roll them back (store.Revert).
	watched map[int64]time.Time

	deployments *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	rollbacks   *prometheus.CounterVec
	gate        *prometheus.HistogramVec
	approvals   *prometheus.GaugeVec
}

func newRecordMetrics(st *store.Store, project string, envs []string, onErr func(error)) *recordMetrics {
	return &recordMetrics{st: st, project: project, envs: envs, onErr: onErr, running: map[int64]bool{}, watched: map[int64]time.Time{},
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_deployments_total",
			Help: "Deployments recorded (by the server or the CLI) that reached a final state, by environment and result: succeeded, failed, rolled_back or cancelled. Rollback requests count in gantry_rollbacks_total.",
		}, []string{"env", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_deploy_duration_seconds",
			Help:    "Time from a deployment's start to its final state (waiting for approval not included), by environment.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200},
		}, []string{"env"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_rollbacks_total",
			Help: "Rollbacks, by environment and reason: health_gate (a release failed its health gate), analysis (a failed analysis), interrupted (a deploy cancelled or killed and recovered), error (a deploy step failed) or manual (gantry rollback).",
		}, []string{"env", "reason"}),
		gate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_health_gate_duration_seconds",
			Help:    "Time from a new container's start to its health gate's verdict, healthy or not, by environment.",
			Buckets: []float64{.25, .5, 1, 2, 5, 10, 20, 30, 60, 120, 300},
		}, []string{"env"}),
		approvals: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_approvals_pending",
			Help: "Promotions waiting for approval, by target environment.",
		}, []string{"env"}),
	}
}

func (r *recordMetrics) vecs() []prometheus.Collector {
	return []prometheus.Collector{r.deployments, r.duration, r.rollbacks, r.gate, r.approvals}
}

// Describe implements prometheus.Collector.
func (r *recordMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.vecs() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it reads what the record gained
// since the last scrape, then reports.
func (r *recordMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.sync(ctx); err != nil && r.onErr != nil {
		r.onErr(err)
	}
	for _, c := range r.vecs() {
		c.Collect(ch)
	}
}

// revertHorizon is how long after its success a deploy is read again for
// a rollback by analysis: longer than any sensible watch window.
const revertHorizon = time.Hour

func (r *recordMetrics) sync(ctx context.Context) error {
	if r.st == nil {
		return nil // RegisterMetrics: described, never read
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	ids := make([]int64, 0, len(r.running)+len(r.watched))
	for id := range r.running {
		ids = append(ids, id)
	}
	for id, at := range r.watched {
		if now.Sub(at) > revertHorizon {
			delete(r.watched, id)
			continue
		}
		ids = append(ids, id)
	}
	ds, err := r.st.DeploymentsSince(ctx, r.project, r.lastID, ids)
	if err != nil {
		return err
	}
	var done []*store.Deployment
	for _, d := range ds {
		r.lastID = max(r.lastID, d.ID)
		if _, ok := r.watched[d.ID]; ok {
			// Counted as succeeded already; a rollback by analysis in the
			// watch window counts as a rollback, not as a second result.
			if d.State == store.RolledBack {
				delete(r.watched, d.ID)
				if reason, ok := rollbackReason(d, result(d)); ok {
					r.rollbacks.WithLabelValues(d.Env, reason).Inc()
				}
			}
			continue
		}
		if !d.State.Terminal() {
			r.running[d.ID] = true
			continue
		}
		delete(r.running, d.ID)
		if d.Kind != "rollback" && d.State == store.Succeeded && d.FinishedAt != nil && now.Sub(*d.FinishedAt) < revertHorizon {
			r.watched[d.ID] = *d.FinishedAt
		}
		done = append(done, d)
	}
	envOf := map[int64]string{}
	var gated []int64
	for _, d := range done {
		res := result(d)
		if d.Kind == "rollback" {
			if d.State == store.Succeeded {
				r.rollbacks.WithLabelValues(d.Env, "manual").Inc()
			}
			continue
		}
		r.deployments.WithLabelValues(d.Env, string(d.State)).Inc()
		if reason, ok := rollbackReason(d, res); ok {
			r.rollbacks.WithLabelValues(d.Env, reason).Inc()
		}
		if secs, ok := deploySeconds(d, res); ok {
			r.duration.WithLabelValues(d.Env).Observe(secs)
		}
		envOf[d.ID] = d.Env
		gated = append(gated, d.ID)
	}
	if len(gated) > 0 {
		ts, err := r.st.GateTimings(ctx, gated)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.Seconds >= 0 {
				r.gate.WithLabelValues(envOf[t.Deployment]).Observe(t.Seconds)
			}
		}
	}
	pending, err := r.st.Pending(ctx, r.project, store.AwaitingApproval)
	if err != nil {
		return err
	}
	r.approvals.Reset()
	for _, env := range r.envs {
		r.approvals.WithLabelValues(env).Set(float64(pending[env]))
	}
	for env, n := range pending {
		r.approvals.WithLabelValues(env).Set(float64(n))
	}
	return nil
}

// result decodes what the engine recorded about a deployment's end; a
// deployment recovered after a kill has none.
func result(d *store.Deployment) *deploy.Result {
	var res deploy.Result
	if len(d.Result) == 0 || json.Unmarshal(d.Result, &res) != nil {
		return &res
	}
	return &res
}

// rollbackReason says why a deploy was rolled back, from the check its
// failure names.
func rollbackReason(d *store.Deployment, res *deploy.Result) (string, bool) {
	if d.State != store.RolledBack {
		return "", false
	}
	check := ""
	if res.Failure != nil {
		check = res.Failure.Check
	}
	switch {
	case strings.HasPrefix(check, "analysis"):
		return "analysis", true
	case check == "cancelled", check == "" && strings.HasPrefix(d.Reason, "interrupted"):
		return "interrupted", true
	case check == "rollback", check == "canary" && res.Failure.Canary != nil && res.Failure.Canary.Verdict == deploy.CanaryManualAbort:
		// Asked for: gantry rollback of a deploy under way, gantry
		// promote --abort.
		return "manual", true
	case check == "running", check == "healthcheck", check == "probe", check == "exit", check == "oom", check == "deadline", check == "verify":
		return "health_gate", true
	}
	return "error", true
}

// deploySeconds is how long a deploy ran: from the engine's result, or
// from its record when it has none; a deployment cancelled before it ran
// (a rejected promotion) has no duration.
func deploySeconds(d *store.Deployment, res *deploy.Result) (float64, bool) {
	switch {
	case res.DurationSeconds > 0:
		return res.DurationSeconds, true
	case d.State == store.Cancelled || d.FinishedAt == nil:
		return 0, false
	}
	return d.FinishedAt.Sub(d.CreatedAt).Seconds(), true
}
