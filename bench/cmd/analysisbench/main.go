// Command analysisbench measures how fast a failing analysis gets the
// previous release serving again, for bench/analysis.sh: release 1.1.0 of
// the example app passes its health gate and serves under a bounded load;
// then half its requests fail (its health check stays green), the
// analysis (Prometheus, 1 s interval) fails in the watch window, and
// gantry rolls back to 1.0.0. It prints one JSON line per round and a
// summary against the goal: from the failing measurement to 1.0.0 serving
// within one analysis interval plus 1 s.
//
//	analysisbench -gantry bin/gantry -rounds 3
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/deploy"
)

type options struct {
	gantry, prometheus, oldImage, newImage string
	rounds, appPort, promPort              int
	interval                               time.Duration
	keep                                   bool
}

func main() {
	var o options
	flag.StringVar(&o.gantry, "gantry", "bin/gantry", "the gantry binary")
	flag.StringVar(&o.prometheus, "prometheus", "/usr/bin/prometheus", "the Prometheus binary (Debian's prometheus)")
	flag.StringVar(&o.oldImage, "old", "gantry-example/app:1.0.0", "the release serving before (version 1.0.0)")
	flag.StringVar(&o.newImage, "new", "gantry-example/app:1.1.0", "the release that starts failing (version 1.1.0)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds")
	flag.IntVar(&o.appPort, "app-port", 26080, "the app's port on 127.0.0.1")
	flag.IntVar(&o.promPort, "prometheus-port", 26090, "Prometheus's port on 127.0.0.1")
	flag.DurationVar(&o.interval, "interval", time.Second, "the analysis interval")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "analysisbench:", err)
		os.Exit(1)
	}
}

// Round is one measurement.
type Round struct {
	Round int `json:"round"`
	// DecidedToServing: from the failing measurement (the analysis's
	// decided_at) to GET /version answering 1.0.0.
	DecidedToServing float64 `json:"decided_to_serving_seconds"`
	// ErrorsToServing: from the moment requests began to fail, which adds
	// Prometheus's scrape and rate window to the analysis.
	ErrorsToServing float64 `json:"errors_to_serving_seconds"`
	// RollbackSeconds is gantry's own account of the rollback.
	RollbackSeconds float64 `json:"gantry_rollback_seconds"`
}

func run(ctx context.Context, o options) error {
	for _, p := range []int{o.appPort, o.promPort} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return fmt.Errorf("port %d on 127.0.0.1 is taken; pass -app-port/-prometheus-port: %w", p, err)
		}
		l.Close()
	}
	work, err := os.MkdirTemp("", "gantry-analysisbench")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	}
	promURL, stopProm, err := startPrometheus(ctx, o, work)
	if err != nil {
		return err
	}
	defer stopProm()
	var rounds []Round
	for i := 1; i <= o.rounds && ctx.Err() == nil; i++ {
		r, err := round(ctx, o, work, promURL, i)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		rounds = append(rounds, r)
	}
	if len(rounds) == 0 {
		return ctx.Err()
	}
	goal := o.interval + time.Second
	med := func(f func(Round) float64) (float64, float64) {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2], v[len(v)-1]
	}
	m, mx := med(func(r Round) float64 { return r.DecidedToServing })
	em, emx := med(func(r Round) float64 { return r.ErrorsToServing })
	verdict := "met"
	if time.Duration(mx*float64(time.Second)) > goal {
		verdict = "MISSED"
	}
	fmt.Printf("analysis rollback: failing measurement -> previous release serving: median %.2fs, max %.2fs (goal <= %s: %s); errors begin -> previous serving: median %.2fs, max %.2fs (%d rounds)\n",
		m, mx, goal, verdict, em, emx, len(rounds))
	return nil
}

func startPrometheus(ctx context.Context, o options, work string) (string, func(), error) {
	dir := filepath.Join(work, "prometheus")
	os.MkdirAll(dir, 0o755)
	cfg := fmt.Sprintf("global: { scrape_interval: 500ms, scrape_timeout: 500ms }\nscrape_configs:\n  - job_name: app\n    static_configs: [ { targets: ['127.0.0.1:%d'] } ]\n", o.appPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", o.promPort)
	cmd := exec.Command(o.prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s (bash scripts/ensure-prometheus.sh installs it): %w", o.prometheus, err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := http.Get(url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url, stop, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("prometheus did not become ready in 30s")
}

const composeYAML = `services:
  web:
    image: IMAGE
    ports: ["127.0.0.1:PORT:8080"]
    read_only: true
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 5s
      retries: 5
`

const gantryYAML = `project: PROJECT
compose: compose.yaml
environments:
  staging:
    health: { window: 60s, min_healthy: 1s }
ANALYSIS`

const analysisYAML = `    analysis:
      prometheus: PROM
      interval: INTERVAL
      initial_delay: 1s
      watch: 2m
      inconclusive_limit: 60
      checks:
        - name: error-rate
          service: web
          query: 'sum(rate(http_requests_total{code="500",version="{{.Release}}"}[3s])) / sum(rate(http_requests_total{version="{{.Release}}"}[3s]))'
          success_if: result < 0.05
`

func round(ctx context.Context, o options, work, promURL string, n int) (Round, error) {
	r := Round{Round: n}
	project := fmt.Sprintf("gbench-an-%d-%d", os.Getpid(), n)
	dir := filepath.Join(work, project)
	os.MkdirAll(dir, 0o755)
	defer removeProject(project)
	rep := strings.NewReplacer("PROJECT", project, "PORT", fmt.Sprint(o.appPort), "IMAGE", o.oldImage, "PROM", promURL, "INTERVAL", o.interval.String())
	write := func(name, s string) error {
		return os.WriteFile(filepath.Join(dir, name), []byte(rep.Replace(s)), 0o644)
	}
	if err := write("compose.yaml", composeYAML); err != nil {
		return r, err
	}
	// 1.0.0 first, without analysis: the release to roll back to.
	if err := write("gantry.yaml", strings.Replace(gantryYAML, "ANALYSIS", "", 1)); err != nil {
		return r, err
	}
	gantry := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, o.gantry, append([]string{"--state-dir", filepath.Join(dir, ".state")}, args...)...)
		c.Dir = dir
		return c
	}
	if out, err := gantry(ctx, "deploy", "staging", "--release", "1.0.0", "--image", "web="+o.oldImage).CombinedOutput(); err != nil {
		return r, fmt.Errorf("deploy 1.0.0: %v\n%s", err, out)
	}
	if err := write("gantry.yaml", strings.Replace(gantryYAML, "ANALYSIS", analysisYAML, 1)); err != nil {
		return r, err
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	app := fmt.Sprintf("http://127.0.0.1:%d", o.appPort)
	stopLoad := load(rctx, app+"/version")
	defer stopLoad()

	cmd := gantry(rctx, "deploy", "staging", "--release", "1.1.0", "--image", "web="+o.newImage, "--output", "json")
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return r, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// 1.1.0 serves once its gate passed; its analysis then needs a few
	// good measurements (the rate window fills) before the errors begin.
	if err := until(rctx, 90*time.Second, func() bool { return version(app) == "1.1.0" }); err != nil {
		return r, fmt.Errorf("1.1.0 never served: %w", err)
	}
	time.Sleep(3*o.interval + 3*time.Second)
	resp, err := http.Post(app+"/errors?rate=0.5", "", nil)
	if err != nil {
		return r, err
	}
	resp.Body.Close()
	flipped := time.Now()
	var serving time.Time
	if err := until(rctx, 2*time.Minute, func() bool {
		if version(app) == "1.0.0" {
			serving = time.Now()
			return true
		}
		return false
	}); err != nil {
		return r, fmt.Errorf("1.0.0 never served again: %w", err)
	}
	select {
	case <-done:
	case <-rctx.Done():
		return r, rctx.Err()
	}
	var res deploy.Result
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return r, fmt.Errorf("deploy result: %v\n%s", err, out.String())
	}
	if res.State != "rolled_back" || res.Analysis == nil || res.Analysis.DecidedAt == nil {
		return r, fmt.Errorf("want a rollback by analysis, got state %s: %s", res.State, res.Reason)
	}
	r.DecidedToServing = serving.Sub(*res.Analysis.DecidedAt).Seconds()
	r.ErrorsToServing = serving.Sub(flipped).Seconds()
	r.RollbackSeconds = res.RollbackSeconds
	return r, nil
}

// load sends GET url every 20ms until stopped or ctx ends: a bounded load.
func load(ctx context.Context, url string) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: time.Second}
		for ctx.Err() == nil {
			if resp, err := c.Get(url); err == nil {
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// version is what the app answers on /version, "" when it does not.
func version(app string) string {
	c := &http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get(app + "/version")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// until polls cond every 10ms.
func until(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("not within %s", d)
}

func removeProject(project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label=io.gantry.project="+project).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		exec.CommandContext(ctx, "docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
	}
	out, _ = exec.CommandContext(ctx, "docker", "network", "ls", "-q", "--filter", "label=io.gantry.project="+project).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		exec.CommandContext(ctx, "docker", append([]string{"network", "rm"}, ids...)...).Run()
	}
}
