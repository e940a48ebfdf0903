package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

func TestRollbackReason(t *testing.T) {
	for _, c := range []struct {
		state  store.State
		check  string
		reason string
		want   string
		ok     bool
	}{
		{store.Succeeded, "", "", "", false},
		{store.Failed, "apply", "", "", false},
		{store.RolledBack, "healthcheck", "", "health_gate", true},
		{store.RolledBack, "exit", "", "health_gate", true},
		{store.RolledBack, "oom", "", "health_gate", true},
		{store.RolledBack, "deadline", "", "health_gate", true},
		{store.RolledBack, "probe", "", "health_gate", true},
		{store.RolledBack, "verify", "", "health_gate", true},
		{store.RolledBack, "analysis", "", "analysis", true},
		{store.RolledBack, "analysis:error-rate", "", "analysis", true},
		{store.RolledBack, "cancelled", "", "interrupted", true},
		{store.RolledBack, "", "interrupted: gantry pid 1 stopped while verifying", "interrupted", true},
		{store.RolledBack, "apply", "", "error", true},
		{store.RolledBack, "", "", "error", true},
	} {
		res := &deploy.Result{}
		if c.check != "" {
			res.Failure = &deploy.Failure{Check: c.check}
		}
		got, ok := rollbackReason(&store.Deployment{State: c.state, Reason: c.reason}, res)
		if got != c.want || ok != c.ok {
			t.Errorf("%s %q %q: %q %v, want %q %v", c.state, c.check, c.reason, got, ok, c.want, c.ok)
		}
	}
}

// TestMetricsFromTheRecord: deploys run without the server (as the CLI
// runs them, over the same store) count in the server's metrics, and
// /metrics passes promlint.
func TestMetricsFromTheRecord(t *testing.T) {
	f := newFixture(t)
	before := gathered(t, f.reg, "gantry_deployments_total", nil)
	if before != 0 {
		t.Fatalf("gantry_deployments_total before any deploy: %v", before)
	}
	localDeploy(t, f, "staging", "1.0.0", nil)
	localDeploy(t, f, "staging", "2.0.0", map[string]string{"web": testenv.Image(t, testenv.Unhealthy)})
	if n := gathered(t, f.reg, "gantry_deployments_total", map[string]string{"env": "staging", "result": "succeeded"}); n != 1 {
		t.Errorf("succeeded deploys run by the CLI: %v", n)
	}
	if n := gathered(t, f.reg, "gantry_rollbacks_total", map[string]string{"env": "staging", "reason": "health_gate"}); n != 1 {
		t.Errorf("rollbacks after a failed health gate, run by the CLI: %v", n)
	}
	if n := gathered(t, f.reg, "gantry_health_gate_duration_seconds", nil); n != 2 {
		t.Errorf("health gates measured: %v", n)
	}
	// A second scrape counts nothing twice.
	if n := gathered(t, f.reg, "gantry_deployments_total", nil); n != 2 {
		t.Errorf("gantry_deployments_total after a second scrape: %v", n)
	}
	m := f.get("viewer", "/metrics")
	problems, err := promlint.New(bytes.NewReader(m.body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{"gantry_deployments_total", "gantry_deploy_duration_seconds_bucket", "gantry_rollbacks_total", "gantry_health_gate_duration_seconds_bucket", "gantry_approvals_pending", "gantry_release_info", "gantry_service_healthy"} {
		if !bytes.Contains(m.body, []byte("\n"+name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// A real Prometheus scrapes the server with a viewer token, as the
	// stack gantry monitoring init writes does, and sees the CLI's deploys.
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	prom := testenv.StartPrometheus(t, fmt.Sprintf(`global: { scrape_interval: 500ms, scrape_timeout: 400ms }
scrape_configs:
  - job_name: gantry
    authorization: { credentials: %q }
    static_configs: [{ targets: [%q] }]
`, f.tokens["viewer"], u.Host))
	query := prom.URL + "/api/v1/query?query=" + url.QueryEscape(`gantry_deployments_total{job="gantry",env="staging",result="succeeded"}`)
	var last string
	for deadline := time.Now().Add(30 * time.Second); ; {
		var res struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if r, err := http.Get(query); err == nil {
			body, _ := io.ReadAll(r.Body)
			r.Body.Close()
			last = string(body)
			if json.Unmarshal(body, &res) == nil && len(res.Data.Result) == 1 && res.Data.Result[0].Value[1] == "1" {
				break
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never saw gantry_deployments_total{env=staging,result=succeeded} = 1; last answer: %s\nprometheus: %s", last, prom.Output())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// localDeploy deploys as the CLI does: the engine over the fixture's
// store, without the server.
func localDeploy(t *testing.T, f *fixture, env, release string, images map[string]string) *deploy.Result {
	t.Helper()
	ctx := context.Background()
	file, err := config.Load(filepath.Join(f.dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := file.Resolve(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := docker.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	res, _ := deploy.New(rt, f.st, filepath.Join(f.dir, ".gantry")).Deploy(ctx, m, release, images)
	if res == nil {
		t.Fatalf("deploy %s to %s recorded nothing", release, env)
	}
	return res
}

// TestMetricsCountARevertByAnalysis: a deploy that succeeded, was counted,
// and was rolled back later by its analysis (store.Revert in the watch
// window) counts once as succeeded and once as a rollback for analysis.
func TestMetricsCountARevertByAnalysis(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRecordMetrics(st, "p", []string{"staging"}, func(err error) { t.Error(err) }))
	prev := &store.Deployment{Project: "p", Env: "staging", Release: "1.0.0", Kind: "deploy"}
	d := &store.Deployment{Project: "p", Env: "staging", Release: "2.0.0", Kind: "deploy"}
	for _, x := range []*store.Deployment{prev, d} {
		if err := st.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
		for _, to := range []store.State{store.Deploying, store.Verifying} {
			if err := st.Transition(ctx, x.ID, to, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Succeed(ctx, x, "all services healthy"); err != nil {
			t.Fatal(err)
		}
	}
	if n := gathered(t, reg, "gantry_deployments_total", map[string]string{"result": "succeeded"}); n != 2 {
		t.Fatalf("succeeded: %v", n)
	}
	st.SetResult(ctx, d.ID, &deploy.Result{Failure: &deploy.Failure{Check: "analysis", Reason: "error-rate 0.5 > 0.01"}})
	if err := st.Revert(ctx, d, prev.ID, "analysis failed"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if n := gathered(t, reg, "gantry_rollbacks_total", map[string]string{"env": "staging", "reason": "analysis"}); n != 1 {
			t.Fatalf("rollbacks for analysis: %v", n)
		}
	}
	if n := gathered(t, reg, "gantry_deployments_total", nil); n != 2 {
		t.Fatalf("a revert changed gantry_deployments_total to %v", n)
	}
}
