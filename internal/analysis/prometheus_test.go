package analysis

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/testenv"
)

// app is a scrape target whose http_requests_total grows by 20 requests
// per scrape, a settable share of them failing: traffic without a load loop.
type app struct {
	srv      *httptest.Server
	errShare atomic.Uint64
}

func newApp(t *testing.T, version string) *app {
	a := &app{}
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests."}, []string{"code", "version"})
	reg.MustRegister(reqs)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		share := math.Float64frombits(a.errShare.Load())
		bad := math.Round(20 * share)
		reqs.WithLabelValues("500", version).Add(bad)
		reqs.WithLabelValues("200", version).Add(20 - bad)
		metrics.ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) fail(share float64) { a.errShare.Store(math.Float64bits(share)) }

func scrapeConfig(targets ...string) string {
	return fmt.Sprintf(`global: { scrape_interval: 200ms, evaluation_interval: 1s }
scrape_configs:
  - job_name: app
    static_configs: [ { targets: [%s] } ]
`, strings.Join(targets, ", "))
}

const errorRate = `sum(rate(http_requests_total{code=~"5..",version="{{.Release}}"}[2s])) / sum(rate(http_requests_total{version="{{.Release}}"}[2s]))`

func analysisFor(t *testing.T, promURL string, watch time.Duration, c config.Check) *config.Analysis {
	t.Helper()
	c.Query = errorRate
	c.SuccessIf = cond(t, "result < 0.01")
	if c.Interval == 0 {
		c.Interval = config.Duration(300 * time.Millisecond)
	}
	zero, one := 0, 1
	c.FailureLimit, c.InconclusiveLimit = &zero, &one
	return &config.Analysis{Prometheus: promURL, Watch: config.Duration(watch), Timeout: config.Duration(2 * time.Second), Checks: []config.Check{c}}
}

// waitForData waits until Prometheus answers the error-rate query for a
// release with a number: two scrapes make a rate.
func waitForData(t *testing.T, a *Analyzer, release string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		q, _ := a.cfg.Checks[0].Render(config.QueryData{Release: release})
		m := a.measure(context.Background(), &a.cfg.Checks[0], q)
		if m.Phase != Inconclusive {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("Prometheus never had data for the release")
}

// TestAgainstPrometheus: a real Prometheus scrapes an app; the analysis
// passes while its error rate is 0 and fails, with the query, the value and
// the condition in the report, once a quarter of its requests fail.
func TestAgainstPrometheus(t *testing.T) {
	good := newApp(t, "2.0.0")
	u, _ := url.Parse(good.srv.URL)
	prom := testenv.StartPrometheus(t, scrapeConfig(u.Host))

	a, err := New(analysisFor(t, prom.URL, time.Minute, config.Check{Name: "error-rate", Count: 3}))
	if err != nil {
		t.Fatal(err)
	}
	waitForData(t, a, "2.0.0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := a.Start(ctx, config.QueryData{Release: "2.0.0"}, nil).Watch(ctx)
	if rep.Phase != Successful || rep.Checks[0].Successful != 3 {
		t.Fatalf("healthy release: %s %s %+v", rep.Phase, rep.Reason, rep.Checks)
	}

	a2, _ := New(analysisFor(t, prom.URL, time.Minute, config.Check{Name: "error-rate"}))
	run := a2.Start(ctx, config.QueryData{Release: "2.0.0"}, nil)
	defer run.Stop()
	time.Sleep(700 * time.Millisecond)
	if rep := run.Report(); rep.Phase != Running {
		t.Fatalf("before the errors: %s %s", rep.Phase, rep.Reason)
	}
	good.fail(0.25)
	select {
	case <-run.Failed():
	case <-time.After(15 * time.Second):
		t.Fatalf("the analysis did not fail within 15s of a 25%% error rate: %+v", run.Report())
	}
	rep = run.Report()
	c := rep.Decisive()
	if rep.Phase != Failed || c == nil {
		t.Fatalf("report: %+v", rep)
	}
	last := c.Measurements[len(c.Measurements)-1]
	if !strings.Contains(c.Query, `version="2.0.0"`) || c.SuccessIf != "result < 0.01" || last.Phase != Failed || len(last.Values) != 1 || last.Values[0] <= 0.01 {
		t.Errorf("the report lacks the query, the threshold or the value: %+v", c)
	}
	if !strings.Contains(rep.Reason, "error-rate") || !strings.Contains(rep.Reason, "success_if result < 0.01 does not hold") {
		t.Errorf("reason: %s", rep.Reason)
	}
}

// TestUnreachablePrometheusIsInconclusive: a Prometheus that stopped
// answering never passes a release.
func TestUnreachablePrometheusIsInconclusive(t *testing.T) {
	prom := testenv.StartPrometheus(t, scrapeConfig())
	prom.Stop()
	a, err := New(analysisFor(t, prom.URL, 2*time.Second, config.Check{Name: "error-rate", Interval: config.Duration(200 * time.Millisecond)}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep := a.Start(ctx, config.QueryData{Release: "2.0.0"}, nil).Watch(ctx)
	if rep.Phase != Inconclusive || !rep.Failing() {
		t.Fatalf("unreachable Prometheus gave %s: %s", rep.Phase, rep.Reason)
	}
	if !strings.Contains(rep.Reason, "Prometheus gave no answer") || !strings.Contains(rep.Reason, "connection refused") {
		t.Errorf("reason: %s", rep.Reason)
	}
}
