package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/config"
)

// StateFile is where a proxy keeps its state in gantry's state directory.
func StateFile(stateDir string) string { return filepath.Join(stateDir, "proxy", "state.json") }

// AdminSocket is the proxy's admin socket in gantry's state directory, where
// the deploy engine finds it.
func AdminSocket(stateDir string) string { return filepath.Join(stateDir, "proxy", "admin.sock") }

// maxSocketPath is the longest Unix socket path Linux accepts.
const maxSocketPath = 107

// RoutesFromConfig lists the routes of every environment in gantry.yaml.
func RoutesFromConfig(f *config.File) []Route {
	var routes []Route
	for _, env := range f.EnvNames() {
		e := f.Environments[env]
		for _, svc := range slices.Sorted(maps.Keys(e.Routes)) {
			r := e.Routes[svc]
			routes = append(routes, Route{Env: env, Service: svc, Host: r.Host, Path: r.Path})
		}
	}
	return routes
}

// RunOptions start a proxy for a project: its routes come from gantry.yaml,
// its listeners and limits from the proxy section, each overridden by a
// non-zero field here.
type RunOptions struct {
	File     *config.File
	StateDir string

	Listen    string
	TLSListen string
	// GetCertificate serves the certificate (the caller reloads it when
	// its files change); required with TLSListen or proxy.tls.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	MaxBody        int64
	DrainTimeout   time.Duration

	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Run starts the proxy with the state it had, sets the routes of
// gantry.yaml (a route that stays keeps its release), and serves until ctx
// ends.
func Run(ctx context.Context, o RunOptions, ready func(Listening)) error {
	pc := o.File.Proxy
	if o.Listen == "" {
		o.Listen = pc.Listen
	}
	if o.TLSListen == "" && pc.TLS != nil {
		o.TLSListen = pc.TLS.Listen
	}
	if o.MaxBody <= 0 {
		o.MaxBody = int64(pc.MaxBody)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = pc.DrainTimeout.D()
	}
	sock := AdminSocket(o.StateDir)
	if len(sock) > maxSocketPath {
		return fmt.Errorf("%w: the admin socket path %s is longer than the %d characters Unix sockets allow; use a shorter --state-dir", ErrInput, sock, maxSocketPath)
	}
	p, err := New(Options{StateFile: StateFile(o.StateDir), MaxBody: o.MaxBody, DrainTimeout: o.DrainTimeout,
		Registerer: o.Registerer, Log: o.Log})
	if err != nil {
		return err
	}
	if err := p.SetRoutes(RoutesFromConfig(o.File), nil); err != nil {
		return err
	}
	return p.Serve(ctx, ServeOptions{Listen: o.Listen, TLSListen: o.TLSListen, GetCertificate: o.GetCertificate, AdminSocket: sock}, ready)
}
