package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigShowsAnalysisAndNotifyWithoutSecrets: gantry config prints the
// analysis and where alerts go; a receiver's secret prints as <secret>,
// never its value.
func TestConfigShowsAnalysisAndNotifyWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	const secret = "https://hooks.slack.com/services/T0/B0/do-not-print-4411"
	os.WriteFile(filepath.Join(dir, "slack_webhook"), []byte(secret), 0o600)
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: 127.0.0.1:1/web:1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte(`project: shop
environments:
  staging:
    analysis:
      prometheus: http://127.0.0.1:9090
      checks:
        - { name: error-rate, query: 'sum(rate(errors[1m]))', success_if: '< 0.01' }
notify:
  routes:
    - { severity: critical, to: [slack], repeat: 30m, escalate_after: 15m, escalate_to: [pd] }
  receivers:
    slack: { webhook_url_file: slack_webhook }
    pd: { type: pagerduty, routing_key_env: PD_KEY }
`), 0o644)
	for _, args := range [][]string{{"config", "staging"}, {"config", "staging", "--output", "json"}} {
		out, errb, code := run(t, dir, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb)
		}
		if strings.Contains(out+errb, "do-not-print-4411") {
			t.Errorf("%v printed the secret:\n%s", args, out)
		}
		// JSON writes < as \u003c.
		for _, want := range []string{"error-rate", "0.01", "slack_webhook", "PD_KEY"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v lacks %q:\n%s", args, want, out)
			}
		}
	}
	out, _, _ := run(t, dir, "config", "staging")
	for _, want := range []string{"critical -> slack, repeat 30m0s, escalate after 15m0s to pd", "receiver slack: slack <secret> from " + filepath.Join(dir, "slack_webhook"), "receiver pd: pagerduty <secret> from $PD_KEY"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

// TestAlertsAckUnknownIsBadInput: acknowledging an alert that does not
// exist exits 2 and says how to list them.
func TestAlertsAckUnknownIsBadInput(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: shop\nenvironments: { staging: {} }\n"), 0o644)
	state := filepath.Join(dir, ".state")
	_, errb, code := run(t, dir, "--state-dir", state, "alerts", "ack", "42")
	if code != 2 || !strings.Contains(errb, "gantry alerts --all") {
		t.Errorf("exit %d: %s", code, errb)
	}
	_, errb, code = run(t, dir, "--state-dir", state, "alerts", "ack", "x")
	if code != 2 || !strings.Contains(errb, "not an alert id") {
		t.Errorf("exit %d: %s", code, errb)
	}
	out, _, code := run(t, dir, "--state-dir", state, "alerts")
	if code != 0 || !strings.Contains(out, "no alerts") {
		t.Errorf("alerts: exit %d %s", code, out)
	}
}
