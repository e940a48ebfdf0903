package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrInsecure is returned for a listen address beyond loopback without users:
// the registry would let anyone on the network push.
var ErrInsecure = errors.New("refusing to serve without authentication beyond loopback")

// ErrBusy is returned when another process holds the registry's root.
var ErrBusy = errors.New("registry root in use")

// ServeOptions add the listener to Options.
type ServeOptions struct {
	Options
	// Addr is the TCP address to listen on. Default DefaultAddr.
	Addr string
	// InsecureOpen allows a non-loopback Addr without Users.
	InsecureOpen bool
	// Ready is called with the address actually listened on (useful with
	// port 0) once the registry accepts connections.
	Ready func(addr string)
}

// DefaultAddr is loopback: the local Docker engine pulls from 127.0.0.0/8
// registries over plain HTTP without any daemon configuration.
const DefaultAddr = "127.0.0.1:5000"

// Serve runs the registry on opts.Addr until ctx is cancelled, then shuts
// down gracefully, letting requests in flight finish for up to 10 seconds.
// While it runs it holds the root's lock, so gc refuses to sweep under it.
func Serve(ctx context.Context, opts ServeOptions) error {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if err := checkAddr(opts.Addr, opts.Users != "", opts.InsecureOpen); err != nil {
		return err
	}
	if opts.Root == "" {
		return fmt.Errorf("%w: the registry needs a root directory", ErrInput)
	}
	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return fmt.Errorf("registry root: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another registry running there? pick another with --addr)", opts.Addr, err)
	}
	defer ln.Close()
	unlock, err := lockRoot(opts.Root, ln.Addr().String())
	if err != nil {
		return err
	}
	defer unlock()
	reg, err := New(ctx, opts.Options)
	if err != nil {
		return err
	}
	defer reg.Close()
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	reg.log.Info("registry listening", "addr", ln.Addr().String(), "root", opts.Root, "auth", opts.Users != "", "anonymous_pull", opts.AnonymousPull)
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg.log.Info("registry shutting down", "addr", ln.Addr().String())
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("registry shutdown: %w", err)
	}
	return nil
}

// checkAddr refuses a listener reachable from other hosts without
// authentication, unless explicitly asked for.
func checkAddr(addr string, auth, insecureOpen bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: %v (use HOST:PORT, for example 127.0.0.1:5000)", ErrInput, addr, err)
	}
	if auth || insecureOpen || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("%w: %s is not a loopback address and no --users file is set; add users (gantry registry user add NAME) and pass --users, or pass --insecure-open if anyone who reaches %s may push", ErrInsecure, addr, addr)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// lockInfo is written into the lock file so that a refused gc can say who
// holds the root.
type lockInfo struct {
	PID  int    `json:"pid"`
	Addr string `json:"addr"`
}

const lockName = "serve.lock"

// lockRoot takes an exclusive flock on ROOT/serve.lock. The kernel drops it
// when the process dies, so a crash never leaves a stale lock behind.
func lockRoot(root, addr string) (unlock func(), err error) {
	path := filepath.Join(root, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("registry lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, busyError(path)
	}
	f.Truncate(0)
	json.NewEncoder(f).Encode(lockInfo{PID: os.Getpid(), Addr: addr})
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func busyError(path string) error {
	var info lockInfo
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &info)
	}
	if info.PID != 0 {
		return fmt.Errorf("%w: a registry server (pid %d, listening on %s) holds %s; stop it first", ErrBusy, info.PID, info.Addr, filepath.Dir(path))
	}
	return fmt.Errorf("%w: another gantry process holds %s; stop it first", ErrBusy, filepath.Dir(path))
}

// Server is a registry started in the background by Start.
type Server struct {
	// Addr is the address the registry listens on, such as 127.0.0.1:40123.
	Addr   string
	cancel context.CancelFunc
	done   chan error
}

// Start runs Serve in the background and returns once the registry accepts
// connections: for tests and demos that need a registry in-process. Use
// Addr "127.0.0.1:0" for a free port. Stop it with Stop.
func Start(ctx context.Context, opts ServeOptions) (*Server, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	user := opts.Ready
	opts.Ready = func(addr string) {
		if user != nil {
			user(addr)
		}
		ready <- addr
	}
	go func() { s.done <- Serve(ctx, opts) }()
	select {
	case s.Addr = <-ready:
		return s, nil
	case err := <-s.done:
		cancel()
		return nil, err
	}
}

// Stop shuts the registry down gracefully and returns Serve's error.
func (s *Server) Stop() error {
	s.cancel()
	return <-s.done
}
