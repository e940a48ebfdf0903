package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/analysis"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/testenv"
)

// analysisYAML is gantry.yaml with an analysis of the error rate of the
// release, against PROM.
const analysisYAML = `
project: PROJECT
compose: compose.yaml
environments:
  staging:
    health:
      window: 30s
      min_healthy: 1s
    analysis:
      prometheus: PROM
      interval: 500ms
      initial_delay: 1s
      watch: WATCH
      inconclusive_limit: 20
      checks:
        - name: error-rate
          service: web
          query: 'sum(rate(http_requests_total{code="500",version="{{.Release}}"}[5s])) / sum(rate(http_requests_total{version="{{.Release}}"}[5s]))'
          success_if: result < 0.05
NOTIFY`

// analysisCompose is webFixed with a health check that tolerates a busy
// machine: these tests are about the analysis, not the health gate.
var analysisCompose = strings.Replace(webFixed, "      timeout: 3s\n      retries: 2", "      timeout: 5s\n      retries: 5", 1)

// traffic sends GET /version to the app every 20ms until stop is called
// or a minute passes: a bounded load that gives the error rate its data.
func traffic(t *testing.T, port int) (stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: time.Second}
		for ctx.Err() == nil {
			if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/version", port)); err == nil {
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func analysisProject(t *testing.T, watch string) (*project, *testenv.Server, func(watch string)) {
	t.Helper()
	port := testenv.FreePort(t)
	prom := testenv.StartPrometheus(t, fmt.Sprintf(`global: { scrape_interval: 500ms, scrape_timeout: 500ms }
scrape_configs:
  - job_name: app
    static_configs: [ { targets: ["127.0.0.1:%d"] } ]
`, port))
	gy := strings.NewReplacer("PROM", prom.URL, "WATCH", watch, "NOTIFY", "").Replace(analysisYAML)
	if !strings.Contains(analysisCompose, "retries: 5") {
		t.Fatal("analysisCompose did not loosen webFixed's health check")
	}
	p := newProject(t, "analysis", gy, analysisCompose)
	p.port = port
	p.write("compose.yaml", analysisCompose)
	setWatch := func(w string) {
		p.write("gantry.yaml", strings.NewReplacer("PROM", prom.URL, "WATCH", w, "NOTIFY", p.notify).Replace(analysisYAML))
	}
	return p, prom, setWatch
}

// TestAnalysisRollsBackAfterHealthGate: release 2.0.0 passes its health
// gate and serves; then half of its requests fail (its health check stays
// green), and the analysis in the watch window rolls it back to 1.0.0,
// recording the query, the values and the threshold on the deployment.
func TestAnalysisRollsBackAfterHealthGate(t *testing.T) {
	p, prom, setWatch := analysisProject(t, "8s")
	// Alerts go to a real Alertmanager, which routes critical ones to a
	// webhook of the test.
	hook := newHook(t)
	am := testenv.StartAlertmanager(t, fmt.Sprintf(`route:
  receiver: rest
  group_wait: 100ms
  routes:
    - { matchers: ['severity="critical"'], receiver: crit }
receivers:
  - { name: crit, webhook_configs: [ { url: '%s' } ] }
  - { name: rest }
`, hook.URL))
	p.notify = "notify: { alertmanager: " + am.URL + " }\n"
	traffic(t, p.port)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := get(prom.URL + "/api/v1/query?query=http_requests_total")
			t.Logf("Prometheus has http_requests_total: %s", b)
		}
	})
	first := p.deploy(0, "staging", "--release", "1.0.0", "--image", "web=IMG_healthy")
	if first.Analysis == nil || first.Analysis.Phase != analysis.Successful {
		t.Fatalf("release 1.0.0 without errors: analysis %+v", first.Analysis)
	}
	setWatch("60s")

	cmd, out, errb := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2", "--output", "json")
	// Wait until 2.0.0 has passed its health gate and serves.
	waitFor(t, 60*time.Second, "2.0.0 to pass its health gate", func() bool {
		for _, h := range p.history("staging") {
			if h.Release == "2.0.0" && h.State == "succeeded" {
				return true
			}
		}
		return false
	})
	if v := p.version(); v != "2.0.0" {
		t.Fatalf("serving %s after the gate, want 2.0.0", v)
	}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/errors?rate=0.5", p.port), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	failedAt := time.Now()

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the deploy did not end within 60s of the errors\nstderr:\n%s", errb)
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("deploy exit %d, want 3 (rolled back)\nstdout:\n%s\nstderr:\n%s", code, out, errb)
	}
	t.Logf("rolled back %.1fs after the errors began", time.Since(failedAt).Seconds())
	var res deploy.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("result: %v\n%s", err, out)
	}
	if res.State != "rolled_back" || res.Failure == nil || res.Failure.Check != "analysis" || res.Failure.Service != "web" {
		t.Fatalf("result: state %s failure %+v", res.State, res.Failure)
	}
	if v := p.version(); v != "1.0.0" {
		t.Errorf("serving %s after the rollback, want 1.0.0", v)
	}
	if !strings.Contains(errb.String(), "analysis failed") {
		t.Errorf("stderr does not say the analysis failed:\n%s", errb)
	}

	// The record: history shows the analysis with the query, the values and
	// the threshold; the serving release is 1.0.0 again.
	hs := p.history("staging")
	var rolled *deploy.HistoryEntry
	for i := range hs {
		if hs[i].Release == "2.0.0" {
			rolled = &hs[i]
		}
	}
	if rolled == nil || rolled.State != "rolled_back" || !strings.Contains(rolled.Reason, "analysis failed") {
		t.Fatalf("history: %+v", hs)
	}
	var rec deploy.Result
	if err := json.Unmarshal(rolled.Result, &rec); err != nil || rec.Analysis == nil {
		t.Fatalf("history result: %v %s", err, rolled.Result)
	}
	c := rec.Analysis.Decisive()
	if c == nil || !strings.Contains(c.Query, `version="2.0.0"`) || c.SuccessIf != "result < 0.05" {
		t.Fatalf("recorded analysis lacks the query or the threshold: %+v", rec.Analysis)
	}
	last := c.Measurements[len(c.Measurements)-1]
	if last.Phase != analysis.Failed || len(last.Values) != 1 || last.Values[0] < 0.05 {
		t.Errorf("last measurement %+v, want a failed one above 0.05", last)
	}
	if st := p.status("staging"); st.Release != "1.0.0" || st.LastAnalysis == nil || st.LastAnalysis.Release != "2.0.0" ||
		st.LastAnalysis.State != "rolled_back" || st.LastAnalysis.Analysis.Decisive() == nil {
		t.Errorf("status: serving %s, last analysis %+v", st.Release, st.LastAnalysis)
	}
	// GantryAnalysisFailed reached Alertmanager and its critical route.
	waitFor(t, 20*time.Second, "the analysis alert at the critical receiver", func() bool {
		return strings.Contains(hook.body(), `"alertname":"GantryAnalysisFailed"`)
	})
	if b := hook.body(); !strings.Contains(b, `"release":"2.0.0"`) || !strings.Contains(b, `"severity":"critical"`) || !strings.Contains(b, "threshold: success_if result \\u003c 0.05") {
		t.Errorf("alert at the receiver: %s", b)
	}
	if r := p.run("alerts", "--output", "json"); r.code != 0 || !strings.Contains(r.stdout, "GantryAnalysisFailed") || !strings.Contains(r.stdout, "GantryRolledBack") {
		t.Errorf("gantry alerts: %s", r)
	}
}

// hook is a webhook receiver of the test that keeps what it was sent.
type hook struct {
	URL string
	mu  sync.Mutex
	got strings.Builder
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got.Write(b)
		h.got.WriteString("\n")
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

func (h *hook) body() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got.String()
}

// TestAnalysisUnreachablePrometheusRollsBack: a Prometheus that does not
// answer is inconclusive, never success: the release is rolled back.
func TestAnalysisUnreachablePrometheusRollsBack(t *testing.T) {
	p, prom, _ := analysisProject(t, "8s")
	traffic(t, p.port)
	p.deploy(0, "staging", "--release", "1.0.0", "--image", "web=IMG_healthy")
	prom.Stop()
	p.write("gantry.yaml", strings.Replace(strings.NewReplacer("PROM", prom.URL, "WATCH", "3s", "NOTIFY", "").Replace(analysisYAML), "inconclusive_limit: 20", "inconclusive_limit: 2", 1))
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	if res.Analysis == nil || res.Analysis.Phase != analysis.Inconclusive || !strings.Contains(res.Analysis.Reason, "Prometheus gave no answer") {
		t.Fatalf("analysis: %+v", res.Analysis)
	}
	if v := p.version(); v != "1.0.0" {
		t.Errorf("serving %s, want 1.0.0", v)
	}
}

// TestAnalysisWatchInterruptedIsRecorded: gantry is killed (SIGKILL) in
// the watch window of a release that passed its gate. The release keeps
// serving; the record said the analysis was running, and the next command
// records it interrupted and says so.
func TestAnalysisWatchInterruptedIsRecorded(t *testing.T) {
	p, _, _ := analysisProject(t, "60s")
	traffic(t, p.port)
	cmd, _, errb := p.start("deploy", "staging", "--release", "1.0.0", "--image", "web=IMG_healthy")
	waitFor(t, 60*time.Second, "1.0.0 to pass its health gate", func() bool {
		for _, h := range p.history("staging") {
			if h.Release == "1.0.0" && h.State == "succeeded" {
				return true
			}
		}
		return false
	})
	waitFor(t, 10*time.Second, "the record to say the analysis runs", func() bool {
		a := p.status("staging").LastAnalysis
		return a != nil && a.Release == "1.0.0" && a.Analysis.Phase == analysis.Running
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	t.Logf("the killed deploy said:\n%s", errb)

	r := p.run("status", "staging", "--output", "json")
	if r.code != 0 || !strings.Contains(r.stderr, "watch window was cut short") {
		t.Fatalf("the command after the kill should say the watch was cut short: %s", r)
	}
	var st deploy.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Release != "1.0.0" || st.LastAnalysis == nil || st.LastAnalysis.Analysis.Phase != analysis.Interrupted ||
		!strings.Contains(st.LastAnalysis.Analysis.Reason, "not watched since") {
		t.Errorf("after the kill: serving %q, analysis %+v; want 1.0.0 serving, its analysis interrupted", st.Release, st.LastAnalysis)
	}
	if v := p.version(); v != "1.0.0" {
		t.Errorf("serving %q, want 1.0.0 (an interrupted watch is no verdict)", v)
	}
	// Recorded once: the next command has nothing to say.
	if r := p.run("status", "staging"); strings.Contains(r.stderr, "cut short") {
		t.Errorf("the interrupted watch was reported again: %s", r)
	}
}
