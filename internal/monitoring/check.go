package monitoring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Levels of a finding.
const (
	OK   = "ok"
	Warn = "warn"
	Fail = "fail"
)

// Finding is one result of Check.
type Finding struct {
	Level  string `json:"level"`
	What   string `json:"what"`
	Detail string `json:"detail,omitempty"`
}

// Report is what Check found.
type Report struct {
	Dir      string    `json:"dir"`
	Findings []Finding `json:"findings"`
}

// Failed says whether a check failed (warnings do not fail).
func (r *Report) Failed() bool {
	for _, f := range r.Findings {
		if f.Level == Fail {
			return true
		}
	}
	return false
}

func (r *Report) add(level, what, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Level: level, What: what, Detail: fmt.Sprintf(format, args...)})
}

// CheckOptions say what Check compares the stack with.
type CheckOptions struct {
	// Exported are the metric families gantry exports (server and
	// proxy); the dashboard may use no other metric, the rules no other
	// gantry_ metric.
	Exported []string
	// Promtool and Amtool are the tools' paths; empty looks them up on
	// PATH (and in /usr/bin), "-" skips them.
	Promtool, Amtool string
}

// ErrFailed is returned (wrapped) by callers when a report has failures.
var ErrFailed = errors.New("the monitoring stack has problems")

// Check validates a stack written by Init (and maybe edited since): the
// compose file loads with compose-go and keeps its promises (pinned
// images, healthchecks, non-root users, one network, ports on 127.0.0.1),
// Prometheus scrapes every 15 s and keeps 30 days, the rules and the
// dashboard use only metrics gantry exports, Alertmanager routes every
// severity and reads its secrets from files, Loki keeps 7 days; and
// promtool and amtool accept the files when they are installed.
func Check(ctx context.Context, dir string, o CheckOptions) (*Report, error) {
	r := &Report{Dir: dir}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a monitoring stack (gantry monitoring init --dir %s writes one)", ErrInput, dir, dir)
	}
	exported := map[string]bool{}
	for _, m := range o.Exported {
		exported[m] = true
	}
	checkCompose(ctx, r, dir)
	checkPrometheus(r, dir)
	checkRules(r, dir, exported)
	checkAlertmanager(r, dir)
	checkDashboard(r, dir, exported)
	checkLoki(r, dir)
	checkSecrets(r, dir)
	runTools(ctx, r, dir, o)
	return r, nil
}

func readYAML(r *Report, dir, path string, v any) bool {
	b, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		r.add(Fail, path, "%v; gantry monitoring init writes it", err)
		return false
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		r.add(Fail, path, "not valid YAML: %v", err)
		return false
	}
	return true
}

// The services the stack must have.
var stackServices = []string{"prometheus", "alertmanager", "grafana", "loki", "alloy", "node-exporter", "cadvisor"}

func checkCompose(ctx context.Context, r *Report, dir string) {
	po, err := cli.NewProjectOptions([]string{filepath.Join(dir, ComposePath)}, cli.WithWorkingDirectory(dir), cli.WithEnvFiles(), cli.WithDotEnv, cli.WithName("gantry-monitoring"))
	if err != nil {
		r.add(Fail, ComposePath, "%v", err)
		return
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		r.add(Fail, ComposePath, "does not load with compose-go: %v", err)
		return
	}
	problems := 0
	bad := func(format string, args ...any) {
		problems++
		r.add(Fail, ComposePath, format, args...)
	}
	for _, name := range stackServices {
		if _, ok := p.Services[name]; !ok {
			bad("service %s is missing", name)
		}
	}
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := p.Services[n]
		if !pinned(s.Image) {
			bad("service %s: image %q is not pinned to a version (name:tag, not latest)", n, s.Image)
		}
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
			bad("service %s has no healthcheck", n)
		}
		if user, _, _ := strings.Cut(s.User, ":"); user == "" || user == "0" || user == "root" {
			bad("service %s runs as root (user %q); set user to a non-root uid", n, s.User)
		}
		if _, ok := s.Networks["monitoring"]; !ok {
			bad("service %s is not on the network monitoring", n)
		}
		for _, port := range s.Ports {
			if port.Published != "" && port.HostIP != "127.0.0.1" {
				bad("service %s publishes port %s on %q; publish on 127.0.0.1 (reach it through an SSH tunnel or a proxy with TLS)", n, port.Published, port.HostIP)
			}
		}
	}
	if prom, ok := p.Services["prometheus"]; ok {
		want := "--storage.tsdb.retention.time=" + Retention
		if !slices.Contains([]string(prom.Command), want) {
			bad("prometheus keeps its data for other than %s: its command lacks %s", Retention, want)
		}
	}
	if n, ok := p.Networks["monitoring"]; !ok || bool(n.External) {
		bad("the network monitoring is not defined by the stack")
	}
	if problems == 0 {
		r.add(OK, ComposePath, "%d services load with compose-go: images pinned, healthchecks, non-root users, network monitoring, ports on 127.0.0.1 only", len(p.Services))
	}
}

// pinned says whether an image reference names a version: a tag other
// than latest, or a digest.
func pinned(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	return colon > slash && ref[colon+1:] != "latest" && ref[colon+1:] != ""
}

func checkPrometheus(r *Report, dir string) {
	var cfg struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
		} `yaml:"global"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	if !readYAML(r, dir, PrometheusPath, &cfg) {
		return
	}
	ok := true
	if cfg.Global.ScrapeInterval != ScrapeInterval {
		ok = false
		r.add(Fail, PrometheusPath, "global.scrape_interval is %q; the stack scrapes every %s", cfg.Global.ScrapeInterval, ScrapeInterval)
	}
	var jobs []string
	for _, s := range cfg.ScrapeConfigs {
		jobs = append(jobs, s.JobName)
	}
	for _, want := range []string{"gantry", "services"} {
		if !slices.Contains(jobs, want) {
			ok = false
			r.add(Fail, PrometheusPath, "no scrape job %s", want)
		}
	}
	if ok {
		r.add(OK, PrometheusPath, "scrapes every %s: %s", ScrapeInterval, strings.Join(jobs, ", "))
	}
}

var grafanaVar = regexp.MustCompile(`\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}`)
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$`)

// metricsOf parses a PromQL expression (Grafana's interval variables and
// label_values() allowed) and returns the metric families it reads:
// histogram series (_bucket, _sum, _count) count as their family when
// known names them so.
func metricsOf(expr string, known map[string]bool) ([]string, error) {
	expr = grafanaVar.ReplaceAllString(expr, "5m")
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			if name == "" {
				for _, m := range vs.LabelMatchers {
					if m.Name == "__name__" {
						name = m.Value
					}
				}
			}
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suf); ok && known[base] && !known[name] {
					name = base
				}
			}
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		return nil
	})
	return out, nil
}

func checkRules(r *Report, dir string, exported map[string]bool) {
	var rf struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Record string            `yaml:"record"`
				Expr   string            `yaml:"expr"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if !readYAML(r, dir, RulesPath, &rf) {
		return
	}
	n, ok := 0, true
	for _, g := range rf.Groups {
		for _, rule := range g.Rules {
			n++
			name := rule.Alert + rule.Record
			if rule.Alert != "" && !slices.Contains([]string{"critical", "warning", "info"}, rule.Labels["severity"]) {
				ok = false
				r.add(Fail, RulesPath, "alert %s: severity %q; use critical, warning or info, which alertmanager.yml routes", name, rule.Labels["severity"])
			}
			ms, err := metricsOf(rule.Expr, exported)
			if err != nil {
				ok = false
				r.add(Fail, RulesPath, "%s: the expression does not parse: %v", name, err)
				continue
			}
			for _, m := range ms {
				if strings.HasPrefix(m, "gantry_") && len(exported) > 0 && !exported[m] {
					ok = false
					r.add(Fail, RulesPath, "%s: gantry exports no metric %s", name, m)
				}
			}
		}
	}
	if ok {
		r.add(OK, RulesPath, "%d rules, each alert with a routed severity, gantry's metrics as gantry exports them", n)
	}
}

func checkAlertmanager(r *Report, dir string) {
	var am struct {
		Global map[string]any `yaml:"global"`
		Route  struct {
			Receiver string `yaml:"receiver"`
			Routes   []struct {
				Matchers []string `yaml:"matchers"`
				Receiver string   `yaml:"receiver"`
			} `yaml:"routes"`
		} `yaml:"route"`
		Receivers []map[string]any `yaml:"receivers"`
	}
	if !readYAML(r, dir, AlertmanagerPath, &am) {
		return
	}
	ok := true
	defined := map[string]bool{}
	for _, rc := range am.Receivers {
		name, _ := rc["name"].(string)
		defined[name] = true
		for kind, v := range rc {
			list, _ := v.([]any)
			for _, item := range list {
				m, _ := item.(map[string]any)
				for _, key := range []string{"api_url", "routing_key", "service_key", "auth_password", "url"} {
					if _, inline := m[key]; inline {
						ok = false
						r.add(Fail, AlertmanagerPath, "receiver %s: %s.%s holds a secret in the file; use %s_file with a file under secrets/", name, kind, key, key)
					}
				}
			}
		}
	}
	if _, inline := am.Global["smtp_auth_password"]; inline {
		ok = false
		r.add(Fail, AlertmanagerPath, "global.smtp_auth_password holds a secret in the file; use smtp_auth_password_file")
	}
	if !defined[am.Route.Receiver] {
		ok = false
		r.add(Fail, AlertmanagerPath, "route.receiver %q is not a receiver", am.Route.Receiver)
	}
	routed := map[string]bool{}
	for _, rt := range am.Route.Routes {
		if !defined[rt.Receiver] {
			ok = false
			r.add(Fail, AlertmanagerPath, "a route sends to %q, which is not a receiver", rt.Receiver)
		}
		for _, m := range rt.Matchers {
			if sev, found := strings.CutPrefix(strings.ReplaceAll(m, " ", ""), "severity="); found {
				routed[strings.Trim(sev, `"`)] = true
			}
		}
	}
	for _, sev := range []string{"critical", "warning", "info"} {
		if !routed[sev] {
			ok = false
			r.add(Fail, AlertmanagerPath, "no route for severity %s", sev)
		}
	}
	if ok {
		r.add(OK, AlertmanagerPath, "routes critical, warning and info to receivers that read their secrets from files")
	}
}

func checkDashboard(r *Report, dir string, exported map[string]bool) {
	b, err := os.ReadFile(filepath.Join(dir, DashboardPath))
	if err != nil {
		r.add(Fail, DashboardPath, "%v; gantry monitoring init writes it", err)
		return
	}
	qs, err := DashboardQueries(b)
	if err != nil {
		r.add(Fail, DashboardPath, "not valid JSON: %v", err)
		return
	}
	titles := make([]string, 0, len(qs))
	for t := range qs {
		titles = append(titles, t)
	}
	sort.Strings(titles)
	ok, n := true, 0
	var used []string
	for _, t := range titles {
		for _, q := range qs[t] {
			n++
			ms, err := metricsOf(q, exported)
			if err != nil {
				ok = false
				r.add(Fail, DashboardPath, "panel %q: the query does not parse: %v", t, err)
				continue
			}
			for _, m := range ms {
				if len(exported) > 0 && !exported[m] {
					ok = false
					r.add(Fail, DashboardPath, "panel %q uses %s, which gantry does not export", t, m)
				}
				if !slices.Contains(used, m) {
					used = append(used, m)
				}
			}
		}
	}
	switch {
	case !ok:
	case len(exported) == 0:
		r.add(Warn, DashboardPath, "%d queries parse; not compared with gantry's metrics (none given)", n)
	default:
		r.add(OK, DashboardPath, "%d queries parse and use only metrics gantry exports (%d of them)", n, len(used))
	}
}

func checkLoki(r *Report, dir string) {
	var lc struct {
		Limits struct {
			Retention string `yaml:"retention_period"`
		} `yaml:"limits_config"`
		Compactor struct {
			RetentionEnabled bool `yaml:"retention_enabled"`
		} `yaml:"compactor"`
	}
	if !readYAML(r, dir, LokiPath, &lc) {
		return
	}
	d, err := time.ParseDuration(lc.Limits.Retention)
	switch {
	case err != nil || d != 7*24*time.Hour:
		r.add(Fail, LokiPath, "limits_config.retention_period is %q; the stack keeps logs %s", lc.Limits.Retention, LogRetention)
	case !lc.Compactor.RetentionEnabled:
		r.add(Fail, LokiPath, "compactor.retention_enabled is off, so nothing is ever deleted")
	default:
		r.add(OK, LokiPath, "logs kept %s", LogRetention)
	}
}

func checkSecrets(r *Report, dir string) {
	var waiting []string
	for _, s := range Secrets {
		path := filepath.Join("secrets", s.Name)
		b, err := os.ReadFile(filepath.Join(dir, path))
		switch {
		case err != nil:
			r.add(Fail, path, "%v; write %s there", err, s.Holds)
		case bytes.HasPrefix(b, []byte(Placeholder)) || len(bytes.TrimSpace(b)) == 0:
			waiting = append(waiting, path)
			r.add(Warn, path, "holds no value yet: write %s there", s.Holds)
		}
	}
	if len(waiting) == 0 {
		r.add(OK, "secrets/", "every secret file holds a value")
	}
}

// lookTool finds a tool: the given path, or on PATH, or in /usr/bin.
func lookTool(given, name string) (string, bool) {
	if given == "-" {
		return "", false
	}
	if given != "" {
		return given, true
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	if _, err := os.Stat("/usr/bin/" + name); err == nil {
		return "/usr/bin/" + name, true
	}
	return "", false
}

func runTools(ctx context.Context, r *Report, dir string, o CheckOptions) {
	run := func(what, tool string, args ...string) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
		detail := strings.TrimSpace(string(out))
		if err != nil {
			r.add(Fail, what, "%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, detail)
			return
		}
		r.add(OK, what, "%s %s accepts it", filepath.Base(tool), strings.Join(args[:len(args)-1], " "))
	}
	if p, ok := lookTool(o.Promtool, "promtool"); ok {
		run(PrometheusPath, p, "check", "config", filepath.Join(dir, PrometheusPath))
		run(RulesPath, p, "check", "rules", filepath.Join(dir, RulesPath))
	} else if o.Promtool != "-" {
		r.add(Warn, "promtool", "not installed, so Prometheus's own checks did not run (Debian: apt-get install prometheus)")
	}
	if p, ok := lookTool(o.Amtool, "amtool"); ok {
		run(AlertmanagerPath, p, "check-config", filepath.Join(dir, AlertmanagerPath))
	} else if o.Amtool != "-" {
		r.add(Warn, "amtool", "not installed, so Alertmanager's own check did not run (Debian: apt-get install prometheus-alertmanager)")
	}
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// MetricNames lists the metric families a collector (a registry with
// gantry's collectors registered) describes, whether or not they have a
// series yet: every vector, before its first label values.
func MetricNames(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var out []string
	for d := range ch {
		// Desc has no accessor for its name; its String() names it.
		if m := fqName.FindStringSubmatch(d.String()); m != nil && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}
