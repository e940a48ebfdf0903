package config

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAnalysisAndNotifyFixtures loads testdata/{analysis,notify}/*.yaml:
// good ones load, bad ones fail at their line and field with a message
// that says what to do. A fixture without a row fails the test.
func TestAnalysisAndNotifyFixtures(t *testing.T) {
	tests := map[string]struct {
		line  int
		field string
		msg   []string
	}{
		"analysis/good.full.yaml":                 {},
		"analysis/good.minimal.yaml":              {},
		"notify/good.routes.yaml":                 {},
		"notify/good.alertmanager.yaml":           {},
		"analysis/bad.condition-not-bool.yaml":    {9, "environments.staging.analysis.checks.0.success_if", []string{`"result + 1" is not a condition`, "expected bool"}},
		"analysis/bad.condition.yaml":             {9, "environments.staging.analysis.checks.0.success_if", []string{`"result <<< 0.01" is not a condition`, "result < 0.01"}},
		"analysis/bad.count-and-duration.yaml":    {11, "environments.staging.analysis.checks.0.duration", []string{"a count or after a duration, not both"}},
		"analysis/bad.duplicate-check.yaml":       {8, "environments.staging.analysis.checks.1.name", []string{`two checks are named "up"`}},
		"analysis/bad.failure-limit.yaml":         {11, "environments.staging.analysis.checks.0.failure_limit", []string{"lets all 3 measurements fail"}},
		"analysis/bad.interval.yaml":              {6, "environments.staging.analysis.interval", []string{"at least 100ms"}},
		"analysis/bad.no-checks.yaml":             {0, "environments.staging.analysis.checks", []string{"no checks", "success_if"}},
		"analysis/bad.no-condition.yaml":          {7, "environments.staging.analysis.checks.0", []string{"success_if, fail_if or both"}},
		"analysis/bad.no-prometheus.yaml":         {0, "environments.staging.analysis.prometheus", []string{"needs a Prometheus", "http://127.0.0.1:9090"}},
		"analysis/bad.prometheus-url.yaml":        {5, "environments.staging.analysis.prometheus", []string{`"127.0.0.1:9090" is not a Prometheus URL`}},
		"analysis/bad.template.yaml":              {8, "environments.staging.analysis.checks.0.query", []string{"not a valid template", "{{.Release}}"}},
		"analysis/bad.unknown-field.yaml":         {7, "environments.staging.analysis.checks.0.success", []string{"unknown field in check", "success_if, fail_if"}},
		"notify/bad.alertmanager-and-routes.yaml": {6, "notify.routes", []string{"Alertmanager routes the alerts", "alertmanager.yml"}},
		"notify/bad.email-address.yaml":           {7, "notify.receivers.mail.to.0", []string{`"oncall" is not an email address`}},
		"notify/bad.escalate-half.yaml":           {6, "notify.routes.0", []string{"escalate_after", "escalate_to"}},
		"notify/bad.inline-secret.yaml":           {7, "notify.receivers.slack.webhook_url", []string{"webhook_url is a secret", "webhook_url_file", "webhook_url_env"}},
		"notify/bad.receiver-type.yaml":           {7, "notify.receivers.teams", []string{"type: webhook, slack, pagerduty or email"}},
		"notify/bad.route-receiver.yaml":          {6, "notify.routes.0.to.0", []string{`no receiver "pagerdutty"`, "known: pagerduty"}},
		"notify/bad.secret-both.yaml":             {7, "notify.receivers.pagerduty.routing_key_file", []string{"not both"}},
		"notify/bad.secret-missing.yaml":          {7, "notify.receivers.pagerduty", []string{"needs its routing_key", "routing_key_file"}},
		"notify/bad.severity.yaml":                {6, "notify.routes.0.severity", []string{`"high" is not a severity`}},
		"notify/bad.unknown-field.yaml":           {7, "notify.receivers.slack.icon", []string{"unknown field in receiver", "webhook_url_file"}},
		"notify/bad.wrong-secret-kind.yaml":       {7, "notify.receivers.hook", []string{"routing_key_* are for pagerduty receivers"}},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range files {
		name := filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path)
		if !strings.HasPrefix(name, "analysis/") && !strings.HasPrefix(name, "notify/") {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatalf("fixture %s has no row in the test table", name)
			}
			_, err := Load(path)
			if strings.Contains(name, "/good.") {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load: %v (%T), want a *config.Error", err, err)
			}
			if ce.Line != want.line || ce.Field != want.field {
				t.Errorf("at %d %q, want %d %q (%v)", ce.Line, ce.Field, want.line, want.field, err)
			}
			for _, sub := range want.msg {
				if !strings.Contains(ce.Msg, sub) {
					t.Errorf("Msg = %q; want it to contain %q", ce.Msg, sub)
				}
			}
		})
	}
	if n != len(tests) {
		t.Errorf("%d fixtures for %d rows: a row names a missing file", n, len(tests))
	}
}

func TestAnalysisDefaults(t *testing.T) {
	f, err := Load("testdata/analysis/good.full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := f.Environments["staging"].Analysis
	if a.Watch.D() != 5*time.Minute || a.Timeout.D() != DefaultAnalysisTimeout {
		t.Errorf("watch %s timeout %s", a.Watch.D(), a.Timeout.D())
	}
	c := a.Checks[1]
	if c.Interval.D() != time.Second || c.InitialDelay.D() != 10*time.Second || *c.FailureLimit != 1 || *c.InconclusiveLimit != 2 || c.Count != 5 {
		t.Errorf("check latency did not inherit the analysis defaults: %+v", c)
	}
	if c.FailIf.Source != "result > 0.5" {
		t.Errorf("shorthand condition = %q", c.FailIf.Source)
	}
	q, err := a.Checks[0].Render(QueryData{Release: "2.0.0"})
	if err != nil || !strings.Contains(q, `version="2.0.0"`) {
		t.Errorf("Render = %q, %v", q, err)
	}
	m, err := Load("testdata/analysis/good.minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ma := m.Environments["staging"].Analysis
	if ma.Watch != 0 || ma.Interval.D() != DefaultAnalysisInterval || *ma.Checks[0].InconclusiveLimit != DefaultInconclusiveLimit {
		t.Errorf("minimal: watch %s (written 0s), interval %s, inconclusive limit %d", ma.Watch.D(), ma.Interval.D(), *ma.Checks[0].InconclusiveLimit)
	}
}

func TestConditionEval(t *testing.T) {
	tests := []struct {
		cond   string
		values []float64
		want   bool
		err    bool
	}{
		{"result < 0.01", []float64{0.001}, true, false},
		{"result < 0.01", []float64{0.5}, false, false},
		{"< 0.01", []float64{0}, true, false},
		{">= 2", []float64{2}, true, false},
		{"result < 0.01", []float64{0.001, 0.002}, false, false}, // several values: result is NaN
		{"all(results, # < 0.01)", []float64{0.001, 0.002}, true, false},
		{"any(results, # > 0.5)", []float64{0.1, 0.9}, true, false},
		{"len(results) == 3", []float64{1, 2, 3}, true, false},
		{"result < 0.01 || result > 100", []float64{math.Inf(1)}, true, false},
	}
	for _, tt := range tests {
		c, err := CompileCondition(tt.cond)
		if err != nil {
			t.Fatalf("%s: %v", tt.cond, err)
		}
		got, err := c.Eval(tt.values)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s over %v = %t, %v; want %t", tt.cond, tt.values, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "result <", "foo > 1", "'text'"} {
		if _, err := CompileCondition(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "slack")
	const value = "https://hooks.slack.com/services/T0/B0/very-secret-token"
	if err := os.WriteFile(file, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Secret{File: file}
	v, err := s.Value()
	if err != nil || v != value {
		t.Fatalf("Value = %q, %v", v, err)
	}
	b, _ := json.Marshal(map[string]any{"secret": s, "receiver": Receiver{Type: "slack", WebhookURLFile: file, Secret: s}})
	var back struct {
		Secret   string
		Receiver struct{ Secret string }
	}
	json.Unmarshal(b, &back)
	if strings.Contains(string(b), "very-secret-token") || back.Secret != Redacted || back.Receiver.Secret != Redacted {
		t.Errorf("JSON: %s", b)
	}
	if s.String() != Redacted {
		t.Errorf("String() = %q", s.String())
	}
	t.Setenv("GANTRY_TEST_EMPTY_SECRET", "")
	for _, bad := range []Secret{{File: filepath.Join(dir, "missing")}, {Env: "GANTRY_TEST_EMPTY_SECRET"}, {}} {
		if _, err := bad.Value(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestReceiverPathsRelativeToGantryYAML(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "gantry.yaml")
	os.WriteFile(p, []byte("project: shop\nenvironments: { staging: {} }\nnotify:\n  routes: [ { to: [hook] } ]\n  receivers:\n    hook: { type: webhook, url_file: secrets/hook }\n"), 0o644)
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Notify.Receivers["hook"].Secret.File; got != filepath.Join(dir, "secrets", "hook") {
		t.Errorf("url_file resolved to %s", got)
	}
}
