// Package server is gantry's control plane: an HTTP/JSON API over the same
// store and deploy engine as the CLI, with token authentication, roles, an
// audit record of every state-changing, refused and denied request, probes,
// Prometheus metrics, and a watcher that follows every environment after
// its deploys.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	alerts "github.com/gantryhq/gantry/internal/notify"
	"github.com/gantryhq/gantry/internal/store"
)

// Options configure a Server.
type Options struct {
	// ConfigPath is gantry.yaml; it is read again for every deploy, so an
	// edited file applies without a restart.
	ConfigPath string
	// StateDir holds the store and the key of secret fingerprints.
	StateDir string
	Store    *store.Store
	Log      *slog.Logger
	// Registry receives the server's metrics; nil means a new one.
	Registry *prometheus.Registry
	// MetricsPublic serves /metrics without a token.
	MetricsPublic bool
	// HealthPublic serves the health view (/health/{env}) without a token,
	// for load balancers.
	HealthPublic bool
	// ReadyCache is how long /readyz reuses its last check (default 1s; the
	// notes allow up to 30s).
	ReadyCache time.Duration
	// Resync is how often the watcher re-reads each environment even
	// without Docker events (default 15s).
	Resync time.Duration
	// ShutdownGrace is how long Shutdown lets running deployments finish
	// before it interrupts them (they then roll back).
	ShutdownGrace time.Duration
	// AlertTick is how often alerts are repeated, escalated and resynced
	// (default 5s).
	AlertTick time.Duration
	// LoginFailuresPerMinute is how many failed logins per client address
	// and minute are audited one by one; the rest of the minute are audited
	// as one event with their count (default 20; negative: every one).
	LoginFailuresPerMinute int
}

// Server is the control plane. Create it with New, serve Handler, call
// Start once the listener is up (it recovers interrupted deployments and
// starts the watchers), and Shutdown at the end.
type Server struct {
	opts    Options
	project string
	envs    []string
	st      *store.Store
	log     *slog.Logger
	tokens  *auth.Tokens
	audit   *audit.Log
	reg     *prometheus.Registry
	m       *metrics
	routes  []*route
	handler http.Handler

	started atomic.Bool
	ready   readyCache

	baseCtx   context.Context
	cancel    context.CancelFunc
	watchWG   sync.WaitGroup
	deploysWG sync.WaitGroup

	watchers map[string]*watcher
	// lists keeps the encoded answers of history and audit list requests.
	lists listCache
	// logins decides which failed logins are audited one by one.
	logins *loginLimiter

	runMu   sync.Mutex
	running map[string][]*runningDeploy

	// alerts is nil when gantry.yaml sends alerts nowhere.
	alerts *alerts.Manager
}

// New builds a server over an open store and a loaded gantry.yaml.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.ConfigPath == "" {
		return nil, errors.New("server: a store and gantry.yaml are required")
	}
	f, err := config.Load(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.ReadyCache <= 0 {
		o.ReadyCache = time.Second
	}
	if o.Resync <= 0 {
		o.Resync = 15 * time.Second
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = time.Minute
	}
	if o.LoginFailuresPerMinute == 0 {
		o.LoginFailuresPerMinute = DefaultLoginFailuresPerMinute
	}
	s := &Server{opts: o, project: f.Project, envs: f.EnvNames(), st: o.Store, log: o.Log,
		tokens: auth.New(o.Store), audit: audit.Open(o.Store), reg: o.Registry, watchers: map[string]*watcher{}, running: map[string][]*runningDeploy{},
		logins: newLoginLimiter(o.LoginFailuresPerMinute)}
	s.m = newMetrics(o.Registry, o.Store, f.Project, s.envs, func(err error) {
		o.Log.Warn("metrics: reading the record failed", "err", err)
	})
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.alerts = s.openAlerts(f)
	for _, name := range s.envs {
		env, _ := f.Env(name)
		s.watchers[name] = newWatcher(s, env)
	}
	s.routes = s.table()
	if err := checkTable(s.routes); err != nil {
		return nil, err
	}
	s.handler = s.buildMux()
	return s, nil
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Start recovers deployments that a killed server (or CLI) left unfinished
// in every environment, then starts the watchers and marks the server
// started (/startupz). Recovery of an environment whose Docker host does
// not answer is retried by its watcher.
func (s *Server) Start(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range s.watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ids, err := w.recover(ctx); err != nil {
				s.log.Warn("recovery at startup failed; the watcher retries", "env", w.env, "err", err)
			} else if len(ids) > 0 {
				s.log.Info("recovered interrupted deployments", "env", w.env, "deployments", ids)
			}
		}()
	}
	wg.Wait()
	for _, w := range s.watchers {
		s.watchWG.Add(1)
		go func() {
			defer s.watchWG.Done()
			w.run(s.baseCtx)
		}()
	}
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		s.flushLogins(s.baseCtx)
	}()
	s.runAlerts()
	s.started.Store(true)
}

// Shutdown lets running deployments finish for ShutdownGrace (or until ctx
// ends), then interrupts them (the engine rolls them back) and stops the
// watchers.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.deploysWG.Wait(); close(done) }()
	t := time.NewTimer(s.opts.ShutdownGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	s.cancel()
	all := make(chan struct{})
	go func() { s.deploysWG.Wait(); s.watchWG.Wait(); close(all) }()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server shutdown: %w", ctx.Err())
	}
}
