package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/monitoring"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/server"
)

func newMonitoringCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "monitoring",
		Short: "Write and check a monitoring stack for your hosts: Prometheus, Alertmanager, Grafana, Loki",
		Long: `gantry monitoring init writes a Docker Compose project that watches the hosts
gantry deploys to; gantry monitoring check validates it. See
docs/observability.md.`,
		Example: `  gantry monitoring init --dir monitoring
  gantry monitoring check --dir monitoring`,
	}
	cmd.AddCommand(newMonitoringInitCmd(g), newMonitoringCheckCmd(g))
	return cmd
}

func monitoringErr(err error) error {
	if errors.Is(err, monitoring.ErrInput) && !errors.Is(err, errUsage) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

func newMonitoringInitCmd(g *globals) *cobra.Command {
	var o monitoring.Options
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the monitoring stack: compose file, Prometheus, alert rules, Alertmanager, Grafana, Loki, Alloy",
		Long: `Write a monitoring stack into --dir (default monitoring/), for the hosts
gantry deploys to:

  compose.yaml     Prometheus (15s scrapes, 30 days kept), Alertmanager,
                   Grafana, Loki (7 days of logs), Grafana Alloy shipping
                   every container's output, node-exporter and cAdvisor:
                   pinned images, healthchecks, non-root users, one network
                   "monitoring", ports only on 127.0.0.1
  prometheus/      scrape jobs for gantry server, gantry proxy and the
                   services gantry deployed (found through Docker, labelled
                   with env, service and release), alert rules for gantry
  alertmanager/    routes by severity: critical to PagerDuty and Slack,
                   warning to Slack, info to email
  grafana/         data sources and the gantry dashboard
  secrets/         placeholder files for the token, webhook, routing key
                   and passwords: write the real values there

With gantry.yaml next to it, Prometheus joins the Docker networks of the
project's environments so it can scrape the services (deploy once first:
the networks must exist). Nothing is started; start the stack with
docker compose up -d in the directory, after gantry monitoring check.`,
		Example: `  gantry monitoring init
  gantry monitoring init --dir /srv/monitoring --slack-channel '#ops' --email-to oncall@example.com
  gantry monitoring init --gantry-target 172.17.0.1:8443 --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := monitoringOptions(cmd, g, &o); err != nil {
				return err
			}
			w, err := monitoring.Init(o)
			if err != nil {
				return monitoringErr(err)
			}
			if g.output == "json" {
				return g.printJSON(w)
			}
			fmt.Fprintf(g.stdout, "wrote the monitoring stack to %s (%d files)\n", w.Dir, len(w.Files))
			if len(w.Networks) > 0 {
				fmt.Fprintf(g.stdout, "Prometheus joins the networks %s to scrape the services\n", strings.Join(w.Networks, ", "))
			}
			if len(w.Placeholders) > 0 {
				fmt.Fprintf(g.stdout, "\nwrite the real values into:\n")
				for _, p := range w.Placeholders {
					fmt.Fprintf(g.stdout, "  %s\n", filepath.Join(w.Dir, p))
				}
			}
			fmt.Fprintf(g.stdout, "\nthen: gantry monitoring check --dir %s && (cd %s && docker compose up -d)\n", w.Dir, w.Dir)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Dir, "dir", "monitoring", "directory to write the stack into")
	fs.BoolVar(&o.Force, "force", false, "write over an existing stack (secrets that hold a value are kept)")
	fs.StringVar(&o.GantryTarget, "gantry-target", "host.docker.internal:8443", "gantry server's HOST:PORT as Prometheus reaches it (the Docker host is host.docker.internal)")
	fs.StringVar(&o.GantryScheme, "gantry-scheme", "https", "https, or http for a server on plain HTTP")
	fs.StringVar(&o.GantryServerName, "gantry-server-name", "localhost", "the name gantry server's TLS certificate is checked for")
	fs.StringVar(&o.ProxyTarget, "proxy-target", "host.docker.internal:9180", "gantry proxy's --metrics-listen as Prometheus reaches it; none when gantry server --proxy serves the proxy's metrics")
	fs.StringVar(&o.SlackChannel, "slack-channel", "#alerts", "Slack channel of critical and warning alerts")
	fs.StringVar(&o.EmailTo, "email-to", "ops@example.com", "recipient of info alerts")
	fs.StringVar(&o.EmailFrom, "email-from", "alerts@example.com", "sender (and SMTP user) of email alerts")
	fs.StringVar(&o.SMTPSmarthost, "smtp", "smtp.example.com:587", "SMTP server HOST:PORT (STARTTLS)")
	fs.IntVar(&o.UID, "uid", 0, "uid the containers run as (default: yours, or 65534 when you are root)")
	fs.IntVar(&o.GID, "gid", 0, "gid the containers run as (default: yours, or 65534 when you are root)")
	return cmd
}

// monitoringOptions completes the options from gantry.yaml (when there is
// one), the state directory (gantry server's self-signed certificate) and
// this machine (the user, the Docker socket's group).
func monitoringOptions(cmd *cobra.Command, g *globals, o *monitoring.Options) error {
	if _, err := os.Stat(g.file); err == nil {
		f, err := g.loadFile()
		if err != nil {
			return err
		}
		if err := monitoring.FromProject(cmd.Context(), f, o); err != nil {
			return err
		}
		if ca, err := os.ReadFile(filepath.Join(g.stateDirFor(f), "server", "self-signed.crt")); err == nil {
			o.GantryCA = ca
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534 // nobody: the containers never run as root
	}
	if o.UID == 0 {
		o.UID = uid
	}
	if o.GID == 0 {
		o.GID = gid
	}
	o.DockerGID = 999
	if st, err := os.Stat("/var/run/docker.sock"); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			o.DockerGID = int(sys.Gid)
		}
	}
	return nil
}

func newMonitoringCheckCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a monitoring stack written by gantry monitoring init",
		Long: `Check the monitoring stack in --dir: the compose file loads with compose-go
and keeps its promises (pinned images, healthchecks, non-root users, the
network monitoring, ports on 127.0.0.1 only); Prometheus scrapes every 15s
and keeps 30 days; the alert rules and the dashboard parse and use only the
metrics gantry exports; Alertmanager routes critical, warning and info and
reads every secret from a file; Loki keeps 7 days. When promtool and amtool
are installed (Debian: prometheus, prometheus-alertmanager) their checks run
too. Secret files still holding their placeholder are warnings. Exits 1 when
a check fails.`,
		Example: `  gantry monitoring check
  gantry monitoring check --dir /srv/monitoring --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := exportedMetrics()
			if err != nil {
				return err
			}
			rep, err := monitoring.Check(cmd.Context(), dir, monitoring.CheckOptions{Exported: names})
			if err != nil {
				return monitoringErr(err)
			}
			if g.output == "json" {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				for _, f := range rep.Findings {
					fmt.Fprintf(g.stdout, "%-4s %s: %s\n", f.Level, f.What, strings.ReplaceAll(f.Detail, "\n", "\n     "))
				}
			}
			if rep.Failed() {
				return fmt.Errorf("%w in %s; the lines marked fail say what to change", monitoring.ErrFailed, dir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "monitoring", "directory of the stack")
	return cmd
}

// exportedMetrics lists the metric families gantry server and gantry proxy
// register, from a registry they register on as they do when they run.
func exportedMetrics() ([]string, error) {
	reg := prometheus.NewRegistry()
	server.RegisterMetrics(reg)
	tmp, err := os.MkdirTemp("", "gantry-metrics")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := proxy.New(proxy.Options{StateFile: filepath.Join(tmp, "state.json"), Registerer: reg}); err != nil {
		return nil, err
	}
	return monitoring.MetricNames(reg), nil
}
