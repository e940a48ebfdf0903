package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/store"
)

func newServerCmd(g *globals) *cobra.Command {
	var lo server.ListenOptions
	var metricsPublic, healthPublic, withProxy bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run gantry's control plane: the HTTP API, with tokens, roles and an audit log",
		Long: `Serve gantry's HTTP/JSON API until SIGINT or SIGTERM: status, history,
deployments, releases, deploy and rollback, tokens and the audit log, with
the same store and deploy engine as the CLI. The OpenAPI document is at
/api/openapi.json; docs/server.md describes it all.

Every request but /livez, /readyz and /startupz (and /metrics with
--metrics-public, /health/ENV with --health-public) needs a token (gantry token create; make the first admin
token on this machine). Deploys run in the server: a request answers 202
with the deployment's id, and clients follow it. At start, the server
recovers deployments that a killed server or CLI left unfinished; a
watcher follows every environment and shows a container that dies or turns
unhealthy later in status and in gantry_service_healthy.

TLS is required (1.2 at least): --tls-cert and --tls-key (read again when
they change), or --tls-self-signed to try it out (made once in the state
directory; its SHA-256 fingerprint is printed for clients to pin). Plain
HTTP only with --insecure-http, and only on a loopback address.

With --proxy the server also runs the gantry proxy (gantry proxy --help,
docs/proxy.md) as gantry.yaml's proxy section says; its metrics are in the
server's /metrics.`,
		Example: `  gantry server --tls-self-signed
  gantry server --addr 0.0.0.0:8443 --tls-cert /etc/gantry/tls.crt --tls-key /etc/gantry/tls.key
  gantry server --insecure-http --addr 127.0.0.1:8080 --metrics-public
  gantry server --tls-self-signed --proxy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lo.Check(); err != nil {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			tuneGC()
			f, err := g.loadFile()
			if err != nil {
				return err
			}
			dir := g.stateDirFor(f)
			st, err := store.Open(dir)
			if err != nil {
				return err
			}
			defer st.Close()
			lo.Dir = filepath.Join(dir, "server")
			reg := prometheus.NewRegistry()
			srv, err := server.New(server.Options{ConfigPath: f.Path, StateDir: dir, Store: st, Log: g.log, MetricsPublic: metricsPublic, HealthPublic: healthPublic, ShutdownGrace: grace, Registry: reg})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			proxyDone, err := g.startProxy(ctx, stop, withProxy, reg)
			if err != nil {
				return err
			}
			err = server.Serve(ctx, lo, srv.Handler(), g.log, func(l server.Listening) {
				fmt.Fprintf(g.stdout, "gantry server listening on %s://%s\n", l.Scheme, l.Addr)
				if l.Fingerprint != "" {
					fmt.Fprintf(g.stdout, "TLS certificate SHA-256 fingerprint: %s\n", l.Fingerprint)
				}
				go srv.Start(ctx)
			})
			sctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
			defer cancel()
			if serr := srv.Shutdown(sctx); serr != nil {
				g.log.Warn("shutdown", "err", serr)
			}
			if errors.Is(err, server.ErrInput) {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			if perr := proxyDone(); perr != nil && err == nil {
				return proxyErr(perr)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&lo.Addr, "addr", "127.0.0.1:8443", "address to listen on, HOST:PORT")
	fs.StringVar(&lo.CertFile, "tls-cert", "", "TLS certificate (PEM, chain first), reloaded when it changes")
	fs.StringVar(&lo.KeyFile, "tls-key", "", "TLS private key (PEM), reloaded when it changes")
	fs.BoolVar(&lo.SelfSigned, "tls-self-signed", false, "serve a self-signed certificate made in the state directory; prints its fingerprint")
	fs.BoolVar(&lo.InsecureHTTP, "insecure-http", false, "serve plain HTTP (loopback addresses only)")
	fs.BoolVar(&metricsPublic, "metrics-public", false, "serve /metrics without a token (for a Prometheus scraping without one)")
	fs.BoolVar(&healthPublic, "health-public", false, "serve the health view /health/ENV without a token (for load balancers)")
	fs.BoolVar(&withProxy, "proxy", false, "also run the gantry proxy, as gantry.yaml's proxy section says (docs/proxy.md)")
	fs.DurationVar(&grace, "shutdown-grace", time.Minute, "on SIGTERM, how long running deployments may finish before they are interrupted and rolled back")
	return cmd
}

// tuneGC trades memory the server has to spare for less garbage collection
// under load: collect at 3x the live heap instead of 2x, but collect
// harder past 60 MiB (the server's goal is under 100 MiB resident).
// GOGC and GOMEMLIMIT still decide when set.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(60 << 20)
	}
}
