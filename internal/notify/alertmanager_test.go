package notify

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/analysis"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestAlertmanagerRoutesBySeverity: gantry posts its alerts to a real
// Alertmanager, whose route tree sends critical ones to one webhook
// receiver of the test and warnings to another; a release that succeeds
// afterwards resolves them, and Alertmanager says so to both.
func TestAlertmanagerRoutesBySeverity(t *testing.T) {
	crit, warn, rest := newTestReceiver(t), newTestReceiver(t), newTestReceiver(t)
	am := testenv.StartAlertmanager(t, fmt.Sprintf(`route:
  receiver: rest
  group_by: [alertname, env]
  group_wait: 100ms
  group_interval: 500ms
  repeat_interval: 1h
  routes:
    - { matchers: ['severity="critical"'], receiver: crit }
    - { matchers: ['severity="warning"'], receiver: warn }
receivers:
  - { name: crit, webhook_configs: [ { url: '%s', send_resolved: true } ] }
  - { name: warn, webhook_configs: [ { url: '%s', send_resolved: true } ] }
  - { name: rest, webhook_configs: [ { url: '%s', send_resolved: true } ] }
`, crit.srv.URL, warn.srv.URL, rest.srv.URL))
	cfg := loadNotify(t, "  alertmanager: "+am.URL+"\n")
	st := openStore(t)
	m, err := New(cfg, st, "shop")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res := &deploy.Result{Deployment: 4, Project: "shop", Env: "staging", Release: "2.0.0", Previous: "1.0.0", State: store.RolledBack,
		Reason: "analysis failed: check error-rate failed", Failure: &deploy.Failure{Service: "web", Check: "analysis", Reason: "check error-rate failed"},
		Analysis: &analysis.Report{Phase: analysis.Failed, Reason: "check error-rate failed", Checks: []analysis.CheckReport{{
			Name: "error-rate", Service: "web", Query: `sum(rate(http_requests_total{code="500",version="2.0.0"}[1m]))`, SuccessIf: "result < 0.01", Phase: analysis.Failed,
			Measurements: []analysis.Measurement{{Check: "error-rate", Phase: analysis.Failed, Values: []analysis.Value{0.25}}}}}}}
	if err := m.DeploymentFinished(ctx, res); err != nil {
		t.Fatal(err)
	}
	c := crit.waitGot(t, 1, "critical receiver")[0]
	w := warn.waitGot(t, 1, "warning receiver")[0]
	ca := c["alerts"].([]any)[0].(map[string]any)
	labels := ca["labels"].(map[string]any)
	if labels["alertname"] != AnalysisFailed || labels["severity"] != "critical" || labels["env"] != "staging" || labels["service"] != "web" || labels["release"] != "2.0.0" || c["status"] != "firing" {
		t.Errorf("critical receiver got %v", c)
	}
	if desc := ca["annotations"].(map[string]any)["description"].(string); desc == "" || !contains(desc, "threshold: success_if result < 0.01") || !contains(desc, "0.25") {
		t.Errorf("the analysis alert lacks the query, threshold or value: %q", desc)
	}
	if wl := w["alerts"].([]any)[0].(map[string]any)["labels"].(map[string]any); wl["alertname"] != RolledBack || wl["severity"] != "warning" {
		t.Errorf("warning receiver got %v", w)
	}
	if n := len(rest.got()); n != 0 {
		t.Errorf("the default receiver got %d messages", n)
	}

	// The next release succeeds: both alerts resolve.
	ok := &deploy.Result{Deployment: 5, Project: "shop", Env: "staging", Release: "2.0.1", State: store.Succeeded}
	if err := m.DeploymentFinished(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if g := crit.waitGot(t, 2, "critical resolve"); g[1]["status"] != "resolved" {
		t.Errorf("critical receiver: %v", g[1])
	}
	if g := warn.waitGot(t, 2, "warning resolve"); g[1]["status"] != "resolved" {
		t.Errorf("warning receiver: %v", g[1])
	}
	if as, _ := st.Alerts(ctx, false, 0); len(as) != 0 {
		t.Errorf("still firing: %+v", as)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
