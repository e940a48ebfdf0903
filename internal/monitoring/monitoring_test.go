package monitoring

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testOptions are fixed, so the output is too.
func testOptions(dir string) Options {
	return Options{Dir: dir, Project: "shop", Networks: []string{"shop-staging_default", "shop-production_default", "shop-production_backend"},
		UID: 1000, GID: 1000, DockerGID: 999}
}

// TestGolden: the generated configuration, file by file, against
// testdata/golden (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	files, err := Render(testOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		golden := filepath.Join("testdata", "golden", p)
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			if err := os.WriteFile(golden, files[p], 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -run TestGolden -update writes it)", err)
		}
		if string(want) != string(files[p]) {
			t.Errorf("%s differs from %s (go test -run TestGolden -update, if the change is intended)", p, golden)
		}
	}
}

// tool finds a Debian tool the test needs, or fails saying how to get it.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, ok := lookTool("", name); ok {
		return p
	}
	t.Fatalf("this test needs %s, which is not installed: run `make deps` (scripts/ensure-prometheus.sh) as root, or apt-get install %s", name, pkg)
	return ""
}

// exported lists what a real gantry server and proxy register, on the
// registry they serve /metrics from.
func exported(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gantry.yaml")
	os.WriteFile(cfg, []byte("project: shop\nenvironments:\n  staging: {}\n"), 0o644)
	st, err := store.Open(filepath.Join(dir, ".gantry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	if _, err := server.New(server.Options{ConfigPath: cfg, StateDir: filepath.Join(dir, ".gantry"), Store: st, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.New(proxy.Options{StateFile: filepath.Join(dir, "proxy.json"), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	names := MetricNames(reg)
	for _, want := range []string{"gantry_deployments_total", "gantry_deploy_duration_seconds", "gantry_rollbacks_total", "gantry_health_gate_duration_seconds",
		"gantry_service_healthy", "gantry_release_info", "gantry_approvals_pending", "gantry_proxy_requests_total", "go_goroutines"} {
		if !contains(names, want) {
			t.Fatalf("the registry lacks %s: %v", want, names)
		}
	}
	return names
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestInitIsAccepted: what init writes passes promtool check config,
// promtool check rules and amtool check-config (Debian's, run here), loads
// with compose-go, and its dashboard parses and uses only metrics that a
// real gantry server and proxy register.
func TestInitIsAccepted(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	dir := filepath.Join(t.TempDir(), "monitoring")
	w, err := Init(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Placeholders) != len(Secrets) {
		t.Errorf("placeholders: %v", w.Placeholders)
	}
	for _, c := range [][]string{
		{promtool, "check", "config", filepath.Join(dir, PrometheusPath)},
		{promtool, "check", "rules", filepath.Join(dir, RulesPath)},
		{amtool, "check-config", filepath.Join(dir, AlertmanagerPath)},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(c[1:], " "), err, out)
		}
	}
	rep, err := Check(context.Background(), dir, CheckOptions{Exported: exported(t), Promtool: promtool, Amtool: amtool})
	if err != nil {
		t.Fatal(err)
	}
	warns := 0
	for _, f := range rep.Findings {
		switch f.Level {
		case Fail:
			t.Errorf("check: %s: %s", f.What, f.Detail)
		case Warn:
			warns++
		}
	}
	if warns != len(Secrets) {
		t.Errorf("%d warnings, want one per placeholder secret (%d): %+v", warns, len(Secrets), rep.Findings)
	}
	// With values in the secrets, nothing is left to warn about.
	for _, s := range Secrets {
		os.WriteFile(filepath.Join(dir, "secrets", s.Name), []byte("value\n"), 0o600)
	}
	rep, _ = Check(context.Background(), dir, CheckOptions{Exported: exported(t), Promtool: "-", Amtool: "-"})
	for _, f := range rep.Findings {
		if f.Level != OK {
			t.Errorf("with every secret written: %s %s: %s", f.Level, f.What, f.Detail)
		}
	}
	// init again: refused without --force; with it the secrets stay.
	if _, err := Init(testOptions(dir)); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("a second init: %v", err)
	}
	o := testOptions(dir)
	o.Force = true
	if w, err := Init(o); err != nil || len(w.Placeholders) != 0 {
		t.Fatalf("init --force: %v %+v", err, w)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "secrets", "slack_webhook_url")); string(b) != "value\n" {
		t.Errorf("init --force overwrote a secret: %q", b)
	}
}

// TestCheckFinds: each kind of broken stack is reported as a failure that
// names what to change.
func TestCheckFinds(t *testing.T) {
	names := exported(t)
	for _, c := range []struct {
		name, file, old, new, want string
	}{
		{"a metric gantry does not export", DashboardPath, "gantry_approvals_pending{", "gantry_approvals_waiting{", `uses gantry_approvals_waiting, which gantry does not export`},
		{"a query that does not parse", DashboardPath, `sum(gantry_deployments_in_progress)`, `sum(gantry_deployments_in_progress`, `panel "Deploys in progress": the query does not parse`},
		{"a floating image", ComposePath, "prom/alertmanager:v0.28.1", "prom/alertmanager:latest", `image "prom/alertmanager:latest" is not pinned`},
		{"root", ComposePath, `user: "${MONITORING_UID}:${MONITORING_GID}"`, `user: "0:0"`, "runs as root"},
		{"a port on every interface", ComposePath, `"127.0.0.1:3000:3000"`, `"3000:3000"`, `publishes port 3000 on ""`},
		{"no healthcheck", ComposePath, "      test: [\"CMD\", \"wget\", \"-q\", \"--spider\", \"http://127.0.0.1:9100/metrics\"]", "      disable: true", "service node-exporter has no healthcheck"},
		{"a shorter retention", ComposePath, "retention.time=30d", "retention.time=7d", "keeps its data for other than 30d"},
		{"a compose file that does not load", ComposePath, "services:", "services: [", "does not load with compose-go"},
		{"a slower scrape", PrometheusPath, "scrape_interval: 15s", "scrape_interval: 1m", `global.scrape_interval is "1m"`},
		{"an inline webhook", AlertmanagerPath, "api_url_file: /run/secrets/slack_webhook_url", "api_url: https://hooks.slack.com/services/x", "slack_configs.api_url holds a secret"},
		{"an unrouted severity", AlertmanagerPath, `severity="info"`, `severity="debug"`, "no route for severity info"},
		{"an alert without severity", RulesPath, "severity: info", "severity: low", `severity "low"`},
		{"a rule on a metric gantry lacks", RulesPath, "gantry_service_healthy == 0", "gantry_service_up == 0", "gantry exports no metric gantry_service_up"},
		{"logs kept 30 days", LokiPath, "retention_period: 168h", "retention_period: 720h", `retention_period is "720h"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Init(Options{Dir: dir, Project: "shop", UID: 1000, GID: 1000, DockerGID: 999}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.file)
			b, _ := os.ReadFile(path)
			if !strings.Contains(string(b), c.old) {
				t.Fatalf("%s has no %q", c.file, c.old)
			}
			os.WriteFile(path, []byte(strings.Replace(string(b), c.old, c.new, 1)), 0o644)
			rep, err := Check(context.Background(), dir, CheckOptions{Exported: names, Promtool: "-", Amtool: "-"})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range rep.Findings {
				found = found || (f.Level == Fail && strings.Contains(f.Detail, c.want))
			}
			if !found || !rep.Failed() {
				t.Errorf("no failure %q in %+v", c.want, rep.Findings)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.GantryScheme = "ftp" }, "--gantry-scheme"},
		{func(o *Options) { o.GantryTarget = "gantry" }, "--gantry-target"},
		{func(o *Options) { o.ProxyTarget = "proxy" }, "--proxy-target"},
		{func(o *Options) { o.UID = 0 }, "other than root"},
		{func(o *Options) { o.EmailTo = "ops" }, "email addresses"},
		{func(o *Options) { o.SlackChannel = "#a b" }, "spaces"},
	} {
		dir := filepath.Join(t.TempDir(), "m")
		o := Options{Dir: dir, UID: 1000, GID: 1000}
		c.mod(&o)
		if _, err := Init(o); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.want, err)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%q: bad options wrote %s", c.want, dir)
		}
	}
}

func TestMetricsOf(t *testing.T) {
	known := map[string]bool{"gantry_deploy_duration_seconds": true, "up": true}
	for _, c := range []struct {
		expr string
		want string
	}{
		{`sum by (env) (rate(gantry_deploy_duration_seconds_bucket{env=~"$env"}[$__rate_interval]))`, "gantry_deploy_duration_seconds"},
		{`label_values(gantry_approvals_pending, env)`, "gantry_approvals_pending"},
		{`{__name__="up"} == 0`, "up"},
		{`a_total / on (env) group_left b_total`, "a_total b_total"},
		{`1 + 2`, ""},
	} {
		got, err := metricsOf(c.expr, known)
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%s: %v %v, want %s", c.expr, got, err, c.want)
		}
	}
}

// TestProxyTargetNone: with the proxy inside gantry server there is no
// proxy job, and promtool still accepts the configuration.
func TestProxyTargetNone(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	dir := t.TempDir()
	o := testOptions(dir)
	o.ProxyTarget = "none"
	if _, err := Init(o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, PrometheusPath))
	if strings.Contains(string(b), "gantry-proxy") {
		t.Errorf("a proxy job with --proxy-target none:\n%s", b)
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(dir, PrometheusPath)).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}
