package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestDeployThroughTheAPI deploys, fails a deploy, rolls back, and kills a
// serving container, all through the server with the real Docker engine:
// the results, the audit log, status, the watcher and the metrics.
func TestDeployThroughTheAPI(t *testing.T) {
	f := newFixture(t)
	unhealthy := testenv.Image(t, testenv.Unhealthy)

	v1 := f.deploy("staging", `{"release":"1.0.0"}`)
	if v1.State != store.Succeeded || v1.Actor != "editor" || len(v1.Steps) == 0 || len(v1.Transitions) < 3 {
		t.Fatalf("first deploy: %+v", v1)
	}
	v2 := f.deploy("staging", fmt.Sprintf(`{"release":"2.0.0","images":{"web":%q}}`, unhealthy))
	if v2.State != store.RolledBack {
		t.Fatalf("an unhealthy release: %s %s", v2.State, v2.Reason)
	}
	var res deploy.Result
	if err := jsonUnmarshal(v2.Result, &res); err != nil || res.Failure == nil || res.Failure.Service != "web" {
		t.Fatalf("the deployment's result: %v %s", err, v2.Result)
	}
	var st deploy.Status
	f.get("viewer", "/api/v1/envs/staging/status").json(t, &st)
	if st.Release != "1.0.0" || len(st.Services) != 1 || st.Services[0].Health != "healthy" {
		t.Fatalf("status after the rollback: %+v", st)
	}
	var hs []deploy.HistoryEntry
	f.get("viewer", "/api/v1/envs/staging/history").json(t, &hs)
	if len(hs) != 2 || hs[0].State != store.RolledBack || !hs[1].Serving {
		t.Fatalf("history: %+v", hs)
	}

	// A second deploy while one runs: busy, and nothing recorded for it.
	r := f.post("editor", "/api/v1/envs/staging/deploy", `{"release":"3.0.0"}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("deploy 3.0.0: %d %s", r.status, r.body)
	}
	var a Accepted
	r.json(t, &a)
	busy := f.post("editor", "/api/v1/envs/staging/deploy", `{"release":"3.0.1"}`)
	if busy.status != http.StatusConflict || !strings.Contains(string(busy.body), `"busy"`) {
		t.Errorf("a deploy during a deploy: %d %s", busy.status, busy.body)
	}
	f.waitDeployment(a.Deployment)

	rb := f.post("editor", "/api/v1/envs/staging/rollback", `{"to":"1.0.0"}`)
	if rb.status != http.StatusAccepted {
		t.Fatalf("rollback: %d %s", rb.status, rb.body)
	}
	rb.json(t, &a)
	if v := f.waitDeployment(a.Deployment); v.State != store.Succeeded || v.Kind != "rollback" {
		t.Fatalf("rollback: %s %s\n%s", v.State, v.Reason, v.Result)
	}

	// The audit log has each request and each outcome.
	evs, _ := f.srv.audit.List(context.Background(), audit.Filter{Action: "deploy", Limit: -1})
	var actions []string
	for i := len(evs) - 1; i >= 0; i-- {
		actions = append(actions, evs[i].Action+":"+string(evs[i].Outcome))
	}
	if got := strings.Join(actions, " "); got != "deploy:ok deploy.finish:ok deploy:ok deploy.finish:failed deploy:ok deploy:failed deploy.finish:ok" {
		t.Errorf("audited deploys: %s", got)
	}

	// The watcher: a serving container killed behind gantry's back shows in
	// status and in gantry_service_healthy.
	healthy := func() float64 { return testutil.ToFloat64(f.srv.m.serviceHealthy.WithLabelValues("staging", "web")) }
	testenv.WaitFor(t, 10*time.Second, "gantry_service_healthy{env=staging,service=web} = 1", func() bool { return healthy() == 1 })
	c := testenv.Docker(t)
	cs, err := c.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", runtime.LabelProject+"="+f.project), filters.Arg("label", runtime.LabelEnv+"=staging"))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("running containers: %v %d", err, len(cs))
	}
	if err := c.ContainerKill(context.Background(), cs[0].ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "gantry_service_healthy = 0 after the kill", func() bool { return healthy() == 0 })
	f.get("viewer", "/api/v1/envs/staging/status").json(t, &st)
	if st.Services[0].State == "running" {
		t.Errorf("status after the kill: %+v", st.Services[0])
	}

	// Metrics: derived from the record, and named as Prometheus wants them.
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gantry_deployments_total", map[string]string{"env": "staging", "result": "rolled_back"}, 1},
		{"gantry_deployments_total", map[string]string{"env": "staging", "result": "succeeded"}, 2},
		{"gantry_rollbacks_total", map[string]string{"env": "staging", "reason": "health_gate"}, 1},
		{"gantry_rollbacks_total", map[string]string{"env": "staging", "reason": "manual"}, 1},
		{"gantry_deploy_duration_seconds", map[string]string{"env": "staging"}, 3},
		{"gantry_health_gate_duration_seconds", map[string]string{"env": "staging"}, 3},
		{"gantry_approvals_pending", map[string]string{"env": "production"}, 0},
		{"gantry_release_info", map[string]string{"env": "staging", "service": "web", "version": "1.0.0"}, 1},
	} {
		if got := gathered(t, f.reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	m := f.get("viewer", "/metrics")
	for _, want := range []string{"gantry_http_requests_total{code=\"202\",method=\"POST\",route=\"/api/v1/envs/{env}/deploy\"}", "gantry_service_healthy", "gantry_http_request_duration_seconds_bucket"} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	problems, err := promlint.New(bytes.NewReader(m.body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestProbes: the probes answer without a token, readiness is cached, and
// the API says it is starting until Start ran.
func TestProbes(t *testing.T) {
	f := newFixture(t)
	var r Readiness
	res := f.get("none", "/readyz")
	res.json(t, &r)
	if res.status != 200 || r.Status != "ok" || r.Checks["store"] != "ok" || len(r.Checks) != 2 {
		t.Fatalf("readyz: %d %s", res.status, res.body)
	}
	var r2 Readiness
	f.get("none", "/readyz").json(t, &r2)
	if !r2.CheckedAt.Equal(r.CheckedAt) {
		t.Errorf("a second /readyz right after the first checked again")
	}

	s, err := New(Options{ConfigPath: writeConfig(t), Store: openStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/livez": 200, "/startupz": 503, "/readyz": 503, "/api/v1/status": 503} {
		req, _ := http.NewRequest("GET", path, nil)
		rec := newRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s before start: %d, want %d", path, rec.Code, want)
		}
	}
}

// gathered is the value of the series of a metric family in reg whose
// labels include labels (a counter's or gauge's value, a histogram's
// count), summed over the series that match; it gathers as a scrape does.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}
