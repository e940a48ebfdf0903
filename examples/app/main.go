// Command app is the one small program behind every gantry example image.
//
// Its behaviour is chosen at build time (-ldflags "-X main.version=1.0.0
// -X main.mode=unhealthy") so that each image tag is a fixed, known release:
// a healthy one, one whose health check always fails, one that crashes, one
// that is slow to become ready. The env var APP_MODE overrides the mode.
//
// The images are built FROM scratch, which has no shell and no curl, so the
// same binary is also the image's HEALTHCHECK (`app check`) and a one-shot
// job (`app migrate`).
//
// It exports http_requests_total{code,version} at /metrics for Prometheus,
// and can be told to fail a share of its requests (POST /errors?rate=0.5,
// or APP_ERROR_RATE) while its health check stays green: the release that
// is "healthy" but fails its users, which only analysis catches. APP_DELAY
// (like 300ms) makes it answer those requests that late: the release that
// is healthy but slow, which a canary's max_p99 catches.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Set with -ldflags "-X main.version=... -X main.mode=...".
var (
	version = "dev"
	mode    = "healthy"
)

// Modes the app can run in.
const (
	modeHealthy   = "healthy"
	modeUnhealthy = "unhealthy"
	modeCrash     = "crash"
	modeSlow      = "slow"
)

// Exit codes, distinct so that a deploy log tells which failure it was.
const (
	exitOK        = 0
	exitCheck     = 1 // `check`: not healthy
	exitUsage     = 2 // bad subcommand, mode or setting
	exitCrash     = 3 // mode crash: exited on purpose
	exitNoSecret  = 4 // APP_SECRET_FILE does not exist
	exitMigrate   = 5 // APP_MIGRATE_FAIL=1, or the migration could not be written
	exitDataDir   = 6 // APP_DATA_DIR is not writable
	exitListen    = 7 // the port could not be bound
	defaultPort   = "8080"
	startsLogName = "starts.log"
	migratedName  = "migrated"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run executes one subcommand and returns the process exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		cfg, err := loadConfig(getenv)
		if err != nil {
			fmt.Fprintf(stderr, "app: %v\n", err)
			return exitUsage
		}
		return serve(cfg, stdout, stderr)
	case "check":
		return check(port(getenv), stderr)
	case "migrate":
		return migrate(getenv, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, version)
		return exitOK
	default:
		fmt.Fprintf(stderr, "app: unknown command %q; use serve (default), check, migrate or version\n", cmd)
		return exitUsage
	}
}

func port(getenv func(string) string) string {
	if p := getenv("PORT"); p != "" {
		return p
	}
	return defaultPort
}

// config is what `serve` reads from its build and its environment.
type config struct {
	Version    string
	Mode       string
	Port       string
	Hostname   string
	CrashAfter time.Duration
	SlowFor    time.Duration
	BackendURL string
	SecretFile string
	DataDir    string
	ErrorRate  float64
	// Delay holds every counted answer back (APP_DELAY).
	Delay time.Duration
	// Tick, when set, prints a numbered line to stdout at that interval
	// (APP_TICK), for tests of log streaming.
	Tick time.Duration
}

func loadConfig(getenv func(string) string) (config, error) {
	host, _ := os.Hostname()
	c := config{
		Version:    version,
		Mode:       mode,
		Port:       port(getenv),
		Hostname:   host,
		CrashAfter: 2 * time.Second,
		SlowFor:    20 * time.Second,
		BackendURL: strings.TrimRight(getenv("APP_BACKEND_URL"), "/"),
		SecretFile: getenv("APP_SECRET_FILE"),
		DataDir:    getenv("APP_DATA_DIR"),
	}
	if v := getenv("APP_ERROR_RATE"); v != "" {
		r, err := parseRate(v)
		if err != nil {
			return c, fmt.Errorf("APP_ERROR_RATE=%q: %w", v, err)
		}
		c.ErrorRate = r
	}
	if m := getenv("APP_MODE"); m != "" {
		c.Mode = m
	}
	switch c.Mode {
	case modeHealthy, modeUnhealthy, modeCrash, modeSlow:
	default:
		return c, fmt.Errorf("unknown mode %q; use healthy, unhealthy, crash or slow", c.Mode)
	}
	for _, d := range []struct {
		env string
		dst *time.Duration
	}{{"APP_CRASH_AFTER", &c.CrashAfter}, {"APP_SLOW_FOR", &c.SlowFor}, {"APP_TICK", &c.Tick}, {"APP_DELAY", &c.Delay}} {
		if v := getenv(d.env); v != "" {
			p, err := time.ParseDuration(v)
			if err != nil || p < 0 {
				return c, fmt.Errorf("%s=%q is not a duration; write it like 2s or 1m", d.env, v)
			}
			*d.dst = p
		}
	}
	return c, nil
}

func parseRate(v string) (float64, error) {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || r < 0 || r > 1 {
		return 0, fmt.Errorf("the error rate is a number from 0 to 1, like 0.5")
	}
	return r, nil
}

// server holds the state the HTTP handlers share.
type server struct {
	cfg     config
	started time.Time
	now     func() time.Time
	client  *http.Client

	// errorRate is the share of requests answered with 500 (as float64
	// bits); served counts requests, so that failing ones are spread evenly.
	errorRate atomic.Uint64
	served    atomic.Uint64
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	// probes counts /healthz requests by who asked, so that a test sees
	// how often gantry's probes reach the app.
	probes *prometheus.CounterVec
}

func newServer(cfg config, started time.Time) *server {
	s := &server{
		cfg:      cfg,
		started:  started,
		now:      time.Now,
		client:   &http.Client{Timeout: time.Second},
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests served, by status code and the app's version; probes and scrapes are not counted.",
		}, []string{"code", "version"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healthz_requests_total",
			Help: "Requests to /healthz, by prober: gantry (User-Agent gantry-health) or other (the image's HEALTHCHECK and anyone else).",
		}, []string{"prober"}),
	}
	s.errorRate.Store(math.Float64bits(cfg.ErrorRate))
	s.registry.MustRegister(s.requests, s.probes)
	s.probes.WithLabelValues("gantry")
	s.probes.WithLabelValues("other")
	// Both series exist from the start, so that a rate over them is 0, not
	// absent, before the first error.
	s.requests.WithLabelValues("200", cfg.Version)
	s.requests.WithLabelValues("500", cfg.Version)
	return s
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.counted(s.index))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /version", s.counted(s.version))
	mux.HandleFunc("GET /secret", s.secret)
	mux.HandleFunc("GET /data", s.data)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /errors", s.setErrors)
	return mux
}

// counted answers 500 for the configured share of requests and counts
// every answer in http_requests_total.
func (s *server) counted(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d := s.cfg.Delay; d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		n := s.served.Add(1)
		rate := math.Float64frombits(s.errorRate.Load())
		// Request n fails when the running count of failures should grow:
		// exact shares (0.5: every other request), no randomness in tests.
		if rate > 0 && math.Floor(float64(n)*rate) > math.Floor(float64(n-1)*rate) {
			s.requests.WithLabelValues("500", s.cfg.Version).Inc()
			http.Error(w, "failing on purpose (error rate "+strconv.FormatFloat(rate, 'g', -1, 64)+")", http.StatusInternalServerError)
			return
		}
		s.requests.WithLabelValues("200", s.cfg.Version).Inc()
		h(w, r)
	}
}

// setErrors sets the share of requests that fail: POST /errors?rate=0.5.
func (s *server) setErrors(w http.ResponseWriter, r *http.Request) {
	rate, err := parseRate(r.URL.Query().Get("rate"))
	if err != nil {
		http.Error(w, "rate: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.errorRate.Store(math.Float64bits(rate))
	fmt.Fprintf(w, "error rate %g\n", rate)
}

func (s *server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"version":  s.cfg.Version,
		"mode":     s.cfg.Mode,
		"hostname": s.cfg.Hostname,
	})
}

func (s *server) version(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, s.cfg.Version)
}

// healthz answers with the status and reason of the app's health.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	prober := "other"
	if strings.HasPrefix(r.UserAgent(), "gantry-health") {
		prober = "gantry"
	}
	s.probes.WithLabelValues(prober).Inc()
	code, msg := s.health(r.Context())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func (s *server) health(ctx context.Context) (int, string) {
	switch s.cfg.Mode {
	case modeUnhealthy:
		return http.StatusInternalServerError, "unhealthy (mode unhealthy)"
	case modeSlow:
		if left := s.cfg.SlowFor - s.now().Sub(s.started); left > 0 {
			return http.StatusServiceUnavailable, fmt.Sprintf("starting (mode slow, ready in %s)", left.Round(time.Second))
		}
	}
	if s.cfg.BackendURL != "" {
		if err := s.checkBackend(ctx); err != nil {
			return http.StatusServiceUnavailable, "backend unhealthy: " + err.Error()
		}
	}
	return http.StatusOK, "ok"
}

func (s *server) checkBackend(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.BackendURL+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/healthz returned %d", s.cfg.BackendURL, resp.StatusCode)
	}
	return nil
}

// secret proves the secret was mounted without ever revealing it.
func (s *server) secret(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.SecretFile == "" {
		http.Error(w, "no secret configured (APP_SECRET_FILE is empty)", http.StatusNotFound)
		return
	}
	b, err := os.ReadFile(s.cfg.SecretFile)
	if err != nil {
		http.Error(w, "cannot read the secret file", http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(b)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, hex.EncodeToString(sum[:]))
}

func (s *server) data(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.DataDir == "" {
		http.Error(w, "no data dir configured (APP_DATA_DIR is empty)", http.StatusNotFound)
		return
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, startsLogName))
	if err != nil {
		http.Error(w, "cannot read "+startsLogName+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b)
}

// recordStart appends one line to DataDir/starts.log, so that a volume shows
// how many containers have used it.
func recordStart(cfg config, at time.Time) error {
	f, err := os.OpenFile(filepath.Join(cfg.DataDir, startsLogName), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s version=%s host=%s\n", at.UTC().Format(time.RFC3339Nano), cfg.Version, cfg.Hostname)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func serve(cfg config, stdout, stderr io.Writer) int {
	started := time.Now()
	if cfg.SecretFile != "" {
		if _, err := os.Stat(cfg.SecretFile); err != nil {
			fmt.Fprintf(stderr, "app: secret file %s (APP_SECRET_FILE) is not available: %v\n", cfg.SecretFile, err)
			return exitNoSecret
		}
	}
	if cfg.DataDir != "" {
		if err := recordStart(cfg, started); err != nil {
			fmt.Fprintf(stderr, "app: cannot record the start in APP_DATA_DIR=%s: %v\n", cfg.DataDir, err)
			return exitDataDir
		}
	}
	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		fmt.Fprintf(stderr, "app: %v\n", err)
		return exitListen
	}
	srv := &http.Server{
		Handler:           newServer(cfg, started).handler(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	fmt.Fprintf(stderr, "app: start version=%s mode=%s port=%s host=%s\n", cfg.Version, cfg.Mode, cfg.Port, cfg.Hostname)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var crash <-chan time.Time
	if cfg.Mode == modeCrash {
		crash = time.After(cfg.CrashAfter)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.Tick > 0 {
		go tick(ctx, cfg, stdout)
	}

	code := exitOK
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "app: %v\n", err)
		return exitListen
	case <-crash:
		fmt.Fprintf(stderr, "app: crashing on purpose after %s (mode crash)\n", cfg.CrashAfter)
		return exitCrash
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintf(stderr, "app: shutdown: %v\n", err)
		code = 1
	}
	fmt.Fprintf(stderr, "app: stopped version=%s\n", cfg.Version)
	return code
}

// check is the image HEALTHCHECK: FROM scratch has no curl.
func check(port string, stderr io.Writer) int {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "check: %v\n", err)
		return exitCheck
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "check: /healthz returned %d: %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
		return exitCheck
	}
	return exitOK
}

// migrate is the one-shot job of the shop example.
func migrate(getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv("APP_MIGRATE_FAIL") == "1" {
		fmt.Fprintf(stderr, "migrate: failing on purpose (APP_MIGRATE_FAIL=1), version=%s\n", version)
		return exitMigrate
	}
	dir := getenv("APP_DATA_DIR")
	if dir == "" {
		fmt.Fprintln(stderr, "migrate: APP_DATA_DIR is empty; set it to the data volume's mount path")
		return exitUsage
	}
	p := filepath.Join(dir, migratedName)
	if err := os.WriteFile(p, []byte(version+"\n"), 0o644); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		fmt.Fprintf(stderr, "migrate: cannot write %s: %v\n", p, err)
		return exitMigrate
	}
	fmt.Fprintf(stdout, "migrate: migrated to version %s (%s)\n", version, p)
	return exitOK
}

// tick prints "tick N version=V" to stdout every cfg.Tick until ctx ends.
func tick(ctx context.Context, cfg config, stdout io.Writer) {
	t := time.NewTicker(cfg.Tick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-t.C:
			fmt.Fprintf(stdout, "tick %d version=%s\n", n, cfg.Version)
		case <-ctx.Done():
			return
		}
	}
}
