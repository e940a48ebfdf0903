package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/server"
)

// proxyErr makes the proxy's bad-input errors exit with code 2.
func proxyErr(err error) error {
	if (errors.Is(err, proxy.ErrInput) || errors.Is(err, proxy.ErrNotFound)) && !errors.Is(err, errUsage) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

// proxyFlags are `gantry proxy`'s overrides of gantry.yaml's proxy section.
type proxyFlags struct {
	listen, tlsListen, tlsCert, tlsKey, maxBody, metrics string
	drain                                                time.Duration
}

func (pf *proxyFlags) bind(cmd *cobra.Command, prefix string) {
	fs := cmd.Flags()
	fs.StringVar(&pf.listen, prefix+"listen", "", "plain HTTP address (HTTP/1.1 and h2c); default proxy.listen, else :80")
	fs.StringVar(&pf.tlsListen, prefix+"tls-listen", "", "HTTPS address (HTTP/1.1 and HTTP/2); default proxy.tls.listen")
	fs.StringVar(&pf.tlsCert, prefix+"tls-cert", "", "TLS certificate (PEM, chain first), reloaded when it changes; default proxy.tls.cert")
	fs.StringVar(&pf.tlsKey, prefix+"tls-key", "", "TLS private key (PEM); default proxy.tls.key")
	fs.StringVar(&pf.maxBody, prefix+"max-body", "", "largest request body passed on, like 10MB; larger is answered 413; default proxy.max_body")
	fs.DurationVar(&pf.drain, prefix+"drain-timeout", 0, "how long an old release's requests may go on after a switch; default proxy.drain_timeout")
}

// options resolves the flags against gantry.yaml into proxy.RunOptions.
func (pf *proxyFlags) options(g *globals) (proxy.RunOptions, error) {
	f, err := g.loadFile()
	if err != nil {
		return proxy.RunOptions{}, err
	}
	o := proxy.RunOptions{File: f, StateDir: g.stateDirFor(f), Listen: pf.listen, TLSListen: pf.tlsListen, DrainTimeout: pf.drain, Log: g.log}
	if pf.maxBody != "" {
		n, err := units.RAMInBytes(pf.maxBody)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("%w: --max-body %q is not a size; write it like 10MB, 512KB or 1GB", errUsage, pf.maxBody)
		}
		o.MaxBody = n
	}
	cert, key := pf.tlsCert, pf.tlsKey
	if t := f.Proxy.TLS; t != nil {
		if cert == "" {
			cert = relTo(f.Dir, t.Cert)
		}
		if key == "" {
			key = relTo(f.Dir, t.Key)
		}
	}
	if (cert == "") != (key == "") {
		return o, fmt.Errorf("%w: --tls-cert and --tls-key go together: give both files", errUsage)
	}
	if cert != "" {
		if o.TLSListen == "" && f.Proxy.TLS == nil {
			return o, fmt.Errorf("%w: a certificate needs an HTTPS address: add --tls-listen :443 (or proxy.tls in gantry.yaml)", errUsage)
		}
		rl, err := server.NewCertReloader(cert, key, g.log)
		if err != nil {
			return o, fmt.Errorf("%w: %w", errUsage, err)
		}
		o.GetCertificate = rl.GetCertificate
	} else if o.TLSListen != "" {
		return o, fmt.Errorf("%w: --tls-listen needs a certificate: give --tls-cert and --tls-key", errUsage)
	}
	return o, nil
}

func newProxyCmd(g *globals) *cobra.Command {
	var pf proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the gantry proxy: routes by host and path to each service's active release",
		Long: `Serve the routes of gantry.yaml (environments.<env>.routes) until SIGINT or
SIGTERM. Each route sends its traffic to the container port of the
service's active release, published on 127.0.0.1; a deploy starts the new
release beside the old one and switches the route at once, and the old
release drains (its requests in flight finish, up to the drain timeout).
A route of a swarm environment goes to the service's running tasks in
turn, which the proxy follows as Swarm starts and stops them.

The proxy passes X-Forwarded-For, -Proto and -Host, speaks HTTP/1.1 and
HTTP/2 (h2 over TLS, h2c with prior knowledge), passes WebSockets and
streamed answers through, answers 413 to bodies over max_body, 503 with a
page during maintenance and 502 with a page when a release does not
answer. Routes, active releases and maintenance are kept in
<state-dir>/proxy/state.json and served again after a restart; the deploy
engine and the subcommands below change them through the admin socket
<state-dir>/proxy/admin.sock (mode 0600). docs/proxy.md has the details.`,
		Example: `  gantry proxy --listen :80
  gantry proxy --listen 127.0.0.1:8000 --tls-listen :443 --tls-cert shop.crt --tls-key shop.key
  gantry proxy status
  gantry proxy switch staging web 127.0.0.1:49153 --release 1.4.0
  gantry proxy maintenance staging on --message "Back at 14:00 UTC"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := pf.options(g)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			o.Registerer = reg
			if pf.metrics != "" {
				stop, err := serveMetrics(pf.metrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				if err != nil {
					return err
				}
				defer stop()
			}
			tuneProxyGC()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			defer g.followRoutes(ctx, o.File)()
			return proxyErr(proxy.Run(ctx, o, g.printListening))
		},
	}
	pf.bind(cmd, "")
	cmd.Flags().StringVar(&pf.metrics, "metrics-listen", "", "serve Prometheus metrics on this address (HOST:PORT, /metrics); none by default")
	cmd.AddCommand(newProxyStatusCmd(g), newProxySwitchCmd(g), newProxyDrainCmd(g), newProxyMaintenanceCmd(g))
	return cmd
}

// relTo resolves a path written in gantry.yaml against its directory.
func relTo(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// serveMetrics serves h on addr until the returned stop is called.
func serveMetrics(addr string, h http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --metrics-listen %s: %w", errUsage, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// printListening says where a started proxy listens.
func (g *globals) printListening(l proxy.Listening) {
	if l.HTTP != "" {
		fmt.Fprintf(g.stdout, "gantry proxy listening on http://%s\n", l.HTTP)
	}
	if l.HTTPS != "" {
		fmt.Fprintf(g.stdout, "gantry proxy listening on https://%s\n", l.HTTPS)
	}
	fmt.Fprintf(g.stdout, "admin socket %s\n", l.Admin)
}

// tuneProxyGC collects at 5x the live heap: the proxy's live heap is small
// (buffers of open connections) and its garbage comes per request, so a
// bigger allowance is fewer collections for little memory; 256 MiB bounds
// it. GOGC and GOMEMLIMIT still decide when set.
func tuneProxyGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}

// startProxy runs the proxy beside gantry server when on; done waits for
// it to stop and returns its error. A proxy that fails stops the server.
func (g *globals) startProxy(ctx context.Context, stopServer func(), on bool, reg prometheus.Registerer) (done func() error, err error) {
	if !on {
		return func() error { return nil }, nil
	}
	var pf proxyFlags
	o, err := pf.options(g)
	if err != nil {
		return nil, err
	}
	o.Registerer = reg
	errc := make(chan error, 1)
	stopFollowing := g.followRoutes(ctx, o.File)
	go func() {
		defer stopFollowing()
		err := proxy.Run(ctx, o, g.printListening)
		if err != nil {
			g.log.Error("the proxy stopped; stopping the server", "err", err)
			stopServer()
		}
		errc <- err
	}()
	return func() error { return <-errc }, nil
}

// routeResync is how often the proxy looks whether a route's container
// was restarted on a new port without a start event it saw, and sets a
// swarm route's tasks again whether they changed or not.
const routeResync = 30 * time.Second

// followRoutes keeps the routes of every environment of f that has routes
// on its serving release's containers (see deploy.FollowRoutes), or on a
// swarm on its running tasks (deploy.FollowTasks), beside a running
// proxy. The returned stop ends it and waits.
func (g *globals) followRoutes(ctx context.Context, f *config.File) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, name := range f.EnvNames() {
		env := f.Environments[name]
		if len(env.Routes) == 0 {
			continue
		}
		wg.Go(func() {
			s := g.openUntil(ctx, name)
			if s == nil {
				return
			}
			defer s.Close()
			if env.IsSwarm() {
				s.engine.FollowTasks(ctx, f.Project, name, routeResync)
				return
			}
			s.engine.FollowRoutes(ctx, f.Project, name, routeResync)
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// openUntil opens an environment for its routes' follower, trying again
// every 5 s while it cannot (its store or an ssh helper missing, say: the
// runtime itself is reached lazily): until then its routes do not follow
// restarted containers or swarm tasks, which it says once. nil: ctx ended
// first.
func (g *globals) openUntil(ctx context.Context, name string) *session {
	warned := false
	for {
		s, err := g.open(name, nil)
		if err == nil {
			if warned {
				g.log.Info("routes of this environment follow it again", "env", name)
			}
			return s
		}
		if !warned {
			g.log.Warn("routes of this environment do not follow restarted containers or swarm tasks until it opens; trying again every 5s", "env", name, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// proxyClient is the admin client of the proxy of this project.
func (g *globals) proxyClient() (*proxy.Client, error) {
	f, err := g.loadFile()
	if err != nil {
		return nil, err
	}
	return proxy.NewClient(proxy.AdminSocket(g.stateDirFor(f))), nil
}

func newProxyStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show the proxy's routes, their active and previous releases, maintenance and requests in flight",
		Example: "  gantry proxy status\n  gantry proxy status --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.proxyClient()
			if err != nil {
				return err
			}
			st, err := c.State(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(st)
			}
			printProxyStatus(g, st)
			return nil
		},
	}
}

func printProxyStatus(g *globals, st proxy.Status) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENV\tSERVICE\tHOST\tPATH\tRELEASE\tUPSTREAM\tIN FLIGHT\tPREVIOUS\tSTATE")
	for _, r := range st.Routes {
		host, rel, up, prev, state := r.Host, "-", "-", "-", "serving"
		if host == "" {
			host = "*"
		}
		var inflight int64
		switch {
		case r.Upstream != nil:
			rel, up = orDash(r.Upstream.Release), r.Upstream.Addr
			inflight = st.InFlight[r.Env+"/"+r.Service+"/"+r.Upstream.Addr]
		case len(r.Tasks) > 0:
			var rels []string
			for _, t := range r.Tasks {
				if !slices.Contains(rels, orDash(t.Release)) {
					rels = append(rels, orDash(t.Release))
				}
				inflight += st.InFlight[r.Env+"/"+r.Service+"/"+t.Addr]
			}
			rel, up = strings.Join(rels, ","), fmt.Sprintf("%d swarm tasks", len(r.Tasks))
		default:
			state = "no release"
		}
		if r.Previous != nil {
			prev = orDash(r.Previous.Release) + " " + r.Previous.Addr
		}
		if c := r.Canary; c != nil {
			state = fmt.Sprintf("canary %d%%", c.Weight)
		}
		if _, ok := st.Maintenance[r.Env]; ok {
			state = "maintenance"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Env, r.Service, host, r.Path, rel, up, inflight, prev, state)
	}
	tw.Flush()
	for _, r := range st.Routes {
		c := r.Canary
		if c == nil {
			continue
		}
		sticky := "each request drawn at random"
		switch {
		case c.Sticky.Header != "":
			sticky = "sticky by header " + c.Sticky.Header
		case c.Sticky.Cookie != "":
			sticky = "sticky by cookie " + c.Sticky.Cookie
		}
		fmt.Fprintf(g.stdout, "canary: %s/%s release %s at %s takes %d%% (step %d, since %s), %s; %d in flight\n",
			r.Env, r.Service, orDash(c.Upstream.Release), c.Upstream.Addr, c.Weight, c.Step, c.StepStarted.Local().Format(time.TimeOnly),
			sticky, st.InFlight[r.Env+"/"+r.Service+"/"+c.Upstream.Addr])
	}
	for _, r := range st.Routes {
		for _, t := range r.Tasks {
			fmt.Fprintf(g.stdout, "task: %s/%s release %s at %s; %d in flight\n", r.Env, r.Service, orDash(t.Release), t.Addr, st.InFlight[r.Env+"/"+r.Service+"/"+t.Addr])
		}
	}
	var draining []string
	for k, n := range st.InFlight {
		if !activeKey(st, k) {
			draining = append(draining, fmt.Sprintf("%s (%d in flight)", k, n))
		}
	}
	sort.Strings(draining)
	for _, d := range draining {
		fmt.Fprintf(g.stdout, "draining: %s\n", d)
	}
}

func activeKey(st proxy.Status, k string) bool {
	for _, r := range st.Routes {
		if r.Upstream != nil && r.Env+"/"+r.Service+"/"+r.Upstream.Addr == k {
			return true
		}
		if r.Canary != nil && r.Env+"/"+r.Service+"/"+r.Canary.Upstream.Addr == k {
			return true
		}
		for _, t := range r.Tasks {
			if r.Env+"/"+r.Service+"/"+t.Addr == k {
				return true
			}
		}
	}
	return false
}

func newProxySwitchCmd(g *globals) *cobra.Command {
	var req proxy.SwitchRequest
	cmd := &cobra.Command{
		Use:   "switch ENV SERVICE HOST:PORT",
		Short: "Send a route's traffic to an upstream, at once (deploys do this themselves)",
		Long: `Switch the route of SERVICE in ENV to the upstream at HOST:PORT: every new
request goes there, requests in flight finish where they are. The upstream
must accept connections, else nothing changes. The route's host and path
are gantry.yaml's. Deploys switch by themselves; this is for repairs.`,
		Example: "  gantry proxy switch staging web 127.0.0.1:49153 --release 1.4.0",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 {
				return fmt.Errorf("%w: %s needs ENV SERVICE HOST:PORT, for example `%s staging web 127.0.0.1:49153`", errUsage, cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.loadFile()
			if err != nil {
				return err
			}
			env, err := f.Env(args[0])
			if err != nil {
				return err
			}
			r, ok := env.Routes[args[1]]
			if !ok {
				return fmt.Errorf("%w: %s has no route in %s; add it under environments.%s.routes in gantry.yaml", errUsage, args[1], args[0], args[0])
			}
			req.Env, req.Service, req.Host, req.Path, req.To.Addr = args[0], args[1], r.Host, r.Path, args[2]
			res, err := proxy.NewClient(proxy.AdminSocket(g.stateDirFor(f))).Switch(cmd.Context(), req)
			if err != nil {
				return proxyErr(err)
			}
			if g.output == "json" {
				return g.printJSON(res)
			}
			from := "nothing"
			if res.Previous != nil {
				from = res.Previous.Addr
			}
			fmt.Fprintf(g.stdout, "switched %s in %s: %s -> %s\n", req.Service, req.Env, from, req.To.Addr)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.To.Release, "release", "", "the release the upstream runs (for metrics and status)")
	cmd.Flags().StringVar(&req.Reason, "reason", proxy.ReasonManual, "deploy, rollback, abort or manual (rollback and abort count in gantry_proxy_aborts_total)")
	return cmd
}

func newProxyDrainCmd(g *globals) *cobra.Command {
	var req proxy.DrainRequest
	cmd := &cobra.Command{
		Use:     "drain ENV SERVICE HOST:PORT",
		Short:   "Wait for an old upstream's requests to finish; cut what is left at the timeout",
		Example: "  gantry proxy drain staging web 127.0.0.1:49152 --timeout 30s",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 {
				return fmt.Errorf("%w: %s needs ENV SERVICE HOST:PORT", errUsage, cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.proxyClient()
			if err != nil {
				return err
			}
			req.Env, req.Service, req.Addr = args[0], args[1], args[2]
			res, err := c.Drain(cmd.Context(), req)
			if err != nil {
				return proxyErr(err)
			}
			if g.output == "json" {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.stdout, "drained %s in %s (%s): %d cut after %s\n", req.Service, req.Env, req.Addr, res.Cut, res.Elapsed.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().DurationVar(&req.Timeout, "timeout", 0, "how long to wait; default the proxy's drain timeout")
	return cmd
}

func newProxyMaintenanceCmd(g *globals) *cobra.Command {
	var message string
	cmd := &cobra.Command{
		Use:   "maintenance ENV on|off",
		Short: "Answer every route of an environment with 503 and a maintenance page, or stop",
		Example: `  gantry proxy maintenance production on --message "Back at 14:00 UTC"
  gantry proxy maintenance production off`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || (args[1] != "on" && args[1] != "off") {
				return fmt.Errorf("%w: %s needs ENV and on or off, for example `%s staging on`", errUsage, cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.loadFile()
			if err != nil {
				return err
			}
			if _, err := f.Env(args[0]); err != nil {
				return err
			}
			c := proxy.NewClient(proxy.AdminSocket(g.stateDirFor(f)))
			if err := c.SetMaintenance(cmd.Context(), args[0], args[1] == "on", message); err != nil {
				return proxyErr(err)
			}
			if g.output == "json" {
				return g.printJSON(map[string]any{"env": args[0], "maintenance": args[1] == "on"})
			}
			fmt.Fprintf(g.stdout, "maintenance %s in %s\n", args[1], args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&message, "message", "", "the sentence the maintenance page shows")
	return cmd
}
