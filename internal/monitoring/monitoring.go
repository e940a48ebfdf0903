// Package monitoring writes and checks the monitoring stack gantry offers
// its users' hosts: a compose project with Prometheus (15 s scrapes, 30 days
// kept, gantry and the deployed services as targets, alert rules for
// gantry's metrics), Alertmanager (routes by severity to PagerDuty, Slack
// and email, secrets read from files), Grafana (data sources and a gantry
// dashboard provisioned), Loki with Grafana Alloy shipping container logs
// (7 days kept), node-exporter and cAdvisor; every image pinned, every
// container non-root with a healthcheck, on one network.
package monitoring

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/template"

	"github.com/gantryhq/gantry/internal/config"
)

// ErrInput marks bad options; nothing was written.
var ErrInput = errors.New("invalid input")

// Images are the pinned images of the stack, for the user's hosts (tests
// only read the files, never pull them).
type Images struct {
	Prometheus, Alertmanager, Grafana, Loki, Alloy, NodeExporter, Cadvisor string
}

// DefaultImages are the versions `monitoring init` pins.
var DefaultImages = Images{
	Prometheus:   "prom/prometheus:v3.5.0",
	Alertmanager: "prom/alertmanager:v0.28.1",
	Grafana:      "grafana/grafana:12.0.2",
	Loki:         "grafana/loki:3.5.1",
	Alloy:        "grafana/alloy:v1.9.1",
	NodeExporter: "prom/node-exporter:v1.9.1",
	Cadvisor:     "gcr.io/cadvisor/cadvisor:v0.52.1",
}

// The notes' numbers: 15-second scrapes, 30 days of metrics, 7 days of logs.
const (
	ScrapeInterval = "15s"
	Retention      = "30d"
	LogRetention   = "168h"
)

// Options say what `monitoring init` writes.
type Options struct {
	// Dir is where the stack is written.
	Dir string
	// Project names the stack (gantry.yaml's project; "gantry" without one).
	Project string
	// Networks are the Docker networks of the project's environments:
	// Prometheus joins them to scrape the services.
	Networks []string
	// GantryTarget is gantry server's HOST:PORT as Prometheus reaches it
	// (default host.docker.internal:8443, the Docker host).
	GantryTarget string
	// GantryScheme is https (default) or http.
	GantryScheme string
	// GantryServerName is the name gantry server's certificate is checked
	// for (default localhost, which gantry's self-signed certificate has).
	GantryServerName string
	// GantryCA is the PEM certificate to trust for gantry server (its
	// self-signed certificate, when init finds it); nil writes a
	// placeholder to replace.
	GantryCA []byte
	// ProxyTarget is gantry proxy's --metrics-listen as Prometheus reaches
	// it (default host.docker.internal:9180); "none" scrapes no proxy of
	// its own (gantry server --proxy serves the proxy's metrics).
	ProxyTarget string
	// Alert routing: Slack channel, email recipient and sender, SMTP host.
	SlackChannel  string
	EmailTo       string
	EmailFrom     string
	SMTPSmarthost string
	// UID and GID the containers run as (never 0), and the group owning the
	// Docker socket, written to .env.
	UID, GID, DockerGID int
	// Force overwrites an existing stack's configuration; secrets that
	// hold something other than their placeholder are kept.
	Force  bool
	Images Images
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = "monitoring"
	}
	if o.Project == "" {
		o.Project = "gantry"
	}
	if o.GantryTarget == "" {
		o.GantryTarget = "host.docker.internal:8443"
	}
	if o.GantryScheme == "" {
		o.GantryScheme = "https"
	}
	if o.GantryServerName == "" {
		o.GantryServerName = "localhost"
	}
	if o.ProxyTarget == "" {
		o.ProxyTarget = "host.docker.internal:9180"
	}
	if o.SlackChannel == "" {
		o.SlackChannel = "#alerts"
	}
	if o.EmailTo == "" {
		o.EmailTo = "ops@example.com"
	}
	if o.EmailFrom == "" {
		o.EmailFrom = "alerts@example.com"
	}
	if o.SMTPSmarthost == "" {
		o.SMTPSmarthost = "smtp.example.com:587"
	}
	if o.Images == (Images{}) {
		o.Images = DefaultImages
	}
	switch {
	case o.GantryScheme != "https" && o.GantryScheme != "http":
		return fmt.Errorf("%w: --gantry-scheme %q: use https or http", ErrInput, o.GantryScheme)
	case !validHostPort(o.GantryTarget):
		return fmt.Errorf("%w: --gantry-target %q: want HOST:PORT, for example host.docker.internal:8443", ErrInput, o.GantryTarget)
	case o.ProxyTarget != "none" && !validHostPort(o.ProxyTarget):
		return fmt.Errorf("%w: --proxy-target %q: want HOST:PORT, for example host.docker.internal:9180, or none", ErrInput, o.ProxyTarget)
	case !strings.Contains(o.SMTPSmarthost, ":"):
		return fmt.Errorf("%w: --smtp %q: want HOST:PORT, for example smtp.example.com:587", ErrInput, o.SMTPSmarthost)
	case !strings.Contains(o.EmailTo, "@") || !strings.Contains(o.EmailFrom, "@"):
		return fmt.Errorf("%w: --email-to and --email-from take email addresses", ErrInput)
	case o.UID <= 0 || o.GID <= 0:
		return fmt.Errorf("%w: the containers must run as a user other than root (uid %d, gid %d); run init as that user, or pass --uid and --gid", ErrInput, o.UID, o.GID)
	}
	for _, s := range []string{o.Project, o.GantryTarget, o.ProxyTarget, o.GantryServerName, o.SlackChannel, o.EmailTo, o.EmailFrom, o.SMTPSmarthost} {
		if strings.ContainsAny(s, "\"'\\\n\r\t ") {
			return fmt.Errorf("%w: %q has quotes, spaces or control characters", ErrInput, s)
		}
	}
	return nil
}

func validHostPort(s string) bool {
	host, port, ok := strings.Cut(s, ":")
	return ok && host != "" && port != "" && strings.Trim(port, "0123456789") == ""
}

//go:embed templates/*.tmpl
var templates embed.FS

// The stack's configuration files, by path under Dir, and their templates.
var files = []struct{ path, tmpl string }{
	{ComposePath, "compose.yaml.tmpl"},
	{PrometheusPath, "prometheus.yml.tmpl"},
	{RulesPath, "gantry.rules.yml.tmpl"},
	{AlertmanagerPath, "alertmanager.yml.tmpl"},
	{"grafana/provisioning/datasources/datasources.yml", "datasources.yml.tmpl"},
	{"grafana/provisioning/dashboards/dashboards.yml", "dashboards.yml.tmpl"},
	{LokiPath, "loki.yaml.tmpl"},
	{"alloy/config.alloy", "config.alloy.tmpl"},
}

// Paths of the files check reads, under Dir.
const (
	ComposePath      = "compose.yaml"
	PrometheusPath   = "prometheus/prometheus.yml"
	RulesPath        = "prometheus/rules/gantry.rules.yml"
	AlertmanagerPath = "alertmanager/alertmanager.yml"
	LokiPath         = "loki/loki.yaml"
)

// DashboardPath is the gantry dashboard, under Dir.
const DashboardPath = "grafana/dashboards/gantry.json"

// Secrets are the files under secrets/ that the stack reads, with what
// each must hold. init writes a placeholder; check warns while it stays.
var Secrets = []struct{ Name, Holds string }{
	{"gantry_metrics_token", "a viewer token for gantry server's /metrics: gantry token create --name prometheus --role viewer"},
	{"gantry_ca.pem", "gantry server's certificate (PEM), e.g. .gantry/server/self-signed.crt"},
	{"slack_webhook_url", "the Slack incoming webhook URL"},
	{"pagerduty_routing_key", "the PagerDuty Events v2 routing key"},
	{"smtp_password", "the SMTP password of the alert sender"},
	{"grafana_admin_password", "the password of Grafana's admin user"},
}

// Placeholder starts every secret file init writes; check warns about
// files that still hold it.
const Placeholder = "REPLACE-ME: "

// Written is what Init wrote.
type Written struct {
	Dir   string   `json:"dir"`
	Files []string `json:"files"`
	// Placeholders are the secret files that still need their value.
	Placeholders []string `json:"placeholders"`
	Networks     []string `json:"networks"`
}

// Init writes the stack into o.Dir. It refuses to overwrite an existing
// stack unless o.Force; secrets that hold a value are never overwritten.
func Init(o Options) (*Written, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	sort.Strings(o.Networks)
	if !o.Force {
		if _, err := os.Stat(filepath.Join(o.Dir, ComposePath)); err == nil {
			return nil, fmt.Errorf("%w: %s already holds a monitoring stack; pass --force to write it again (secrets with a value are kept)", ErrInput, o.Dir)
		}
	}
	rendered, err := Render(o)
	if err != nil {
		return nil, err
	}
	w := &Written{Dir: o.Dir, Networks: o.Networks}
	paths := make([]string, 0, len(rendered))
	for p := range rendered {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := writeFile(filepath.Join(o.Dir, p), rendered[p], 0o644); err != nil {
			return nil, err
		}
		w.Files = append(w.Files, p)
	}
	for _, d := range []string{"prometheus", "alertmanager", "grafana", "loki", "alloy"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, "data", d), 0o700); err != nil {
			return nil, err
		}
	}
	for _, s := range Secrets {
		path := filepath.Join(o.Dir, "secrets", s.Name)
		content := []byte(Placeholder + s.Holds + "\n")
		if s.Name == "gantry_ca.pem" && len(o.GantryCA) > 0 {
			content = o.GantryCA
		}
		if old, err := os.ReadFile(path); err == nil && !bytes.HasPrefix(old, []byte(Placeholder)) {
			continue // a value the user put there
		}
		if err := writeFile(path, content, 0o600); err != nil {
			return nil, err
		}
		if bytes.HasPrefix(content, []byte(Placeholder)) {
			w.Placeholders = append(w.Placeholders, "secrets/"+s.Name)
		}
	}
	env := fmt.Sprintf("# Written by gantry monitoring init: who the containers run as, and the\n# group of the Docker socket (Prometheus, Alloy and cAdvisor read it).\nMONITORING_UID=%d\nMONITORING_GID=%d\nDOCKER_GID=%d\n", o.UID, o.GID, o.DockerGID)
	if err := writeFile(filepath.Join(o.Dir, ".env"), []byte(env), 0o644); err != nil {
		return nil, err
	}
	ignore := "# Secrets and data of the monitoring stack stay out of git.\nsecrets/\ndata/\n"
	if err := writeFile(filepath.Join(o.Dir, ".gitignore"), []byte(ignore), 0o644); err != nil {
		return nil, err
	}
	w.Files = append(w.Files, ".env", ".gitignore")
	if err := chown(o.Dir, o.UID, o.GID); err != nil {
		return nil, fmt.Errorf("give the stack's secrets and data to uid %d: %w", o.UID, err)
	}
	return w, nil
}

// Render produces the stack's configuration files (not secrets, .env or
// data directories), by path under Dir.
func Render(o Options) (map[string][]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	o.Networks = slices.Sorted(slices.Values(o.Networks))
	data := struct {
		Options
		ScrapeInterval, Retention, LogRetention string
	}{o, ScrapeInterval, Retention, LogRetention}
	t, err := template.New("").Delims("<%", "%>").Funcs(template.FuncMap{"join": strings.Join}).ParseFS(templates, "templates/*.tmpl")
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range files {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, f.tmpl, data); err != nil {
			return nil, fmt.Errorf("render %s: %w", f.path, err)
		}
		out[f.path] = b.Bytes()
	}
	dash, err := Dashboard(o.Project)
	if err != nil {
		return nil, err
	}
	out[DashboardPath] = dash
	return out, nil
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// FromProject fills in what gantry.yaml says about the stack: the
// project's name and the Docker networks of its environments (from their
// compose models), which Prometheus joins to scrape the services.
func FromProject(ctx context.Context, f *config.File, o *Options) error {
	o.Project = f.Project
	seen := map[string]bool{}
	for _, env := range f.EnvNames() {
		p, _, err := f.ComposeProject(ctx, env)
		if err != nil {
			return err
		}
		for _, n := range p.Networks {
			if n.Name != "" && !seen[n.Name] {
				seen[n.Name] = true
				o.Networks = append(o.Networks, n.Name)
			}
		}
	}
	sort.Strings(o.Networks)
	return nil
}

// chown gives the stack's secrets and data to the containers' user, when
// init runs as root (the containers never do).
func chown(dir string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for _, sub := range []string{"secrets", "data"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
