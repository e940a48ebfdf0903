// Command gantry-bench times `gantry deploy` against `docker compose up -d --wait`
// on the same stacks, side by side in one run, and reports gantry's verdict
// latency and rollback time against the project's goals.
//
// It is run by `make bench` through bench/run.sh, which builds the images and
// the Compose plugin first. Every Docker object it makes belongs to a bench-*
// project and is removed when it ends, also on failure or Ctrl-C.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Goals the bench checks; they are reported, never asserted in tests.
const (
	goalDeployRatio = 1.10
	goalVerdict     = 0.2 // seconds
	goalRollback    = 3.0 // seconds
)

// Bounds on every step, so that a stuck tool cannot hang the bench.
const (
	composeUpTimeout = 3 * time.Minute
	gantryTimeout    = 4 * time.Minute
	cleanupTimeout   = 2 * time.Minute
	waitSeconds      = "120" // compose --wait-timeout
)

type options struct {
	gantry      string
	dir         string
	rounds      int
	image       string
	badImage    string
	composeOnly bool
	cleanupOnly bool
	total       time.Duration
}

// stack is one compose project under bench/stacks, deployed by both tools
// under different project names so that they never share an object.
type stack struct {
	name    string // folder under bench/stacks
	dir     string
	gantry  string // gantry.yaml's project
	compose string // compose project name for docker compose
	svc     string // the service the rollback bench replaces
}

func (s stack) gantryComposeProject() string { return s.gantry + "-bench" }

func newStack(dir, name string) stack {
	return stack{
		name:    name,
		dir:     filepath.Join(dir, "stacks", name),
		gantry:  "bench-" + name,
		compose: "bench-compose-" + name,
		svc:     "web",
	}
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.StringVar(&o.gantry, "gantry", envOr("GANTRY", "bin/gantry"), "gantry binary (env GANTRY)")
	flag.StringVar(&o.dir, "dir", "bench", "the bench folder holding stacks/")
	flag.IntVar(&o.rounds, "rounds", envInt("BENCH_ROUNDS", 3), "rounds per stack (env BENCH_ROUNDS)")
	flag.StringVar(&o.image, "image", envOr("BENCH_IMAGE", "gantry-example/app:1.0.0"), "healthy image (env BENCH_IMAGE)")
	flag.StringVar(&o.badImage, "bad-image", envOr("BENCH_BAD_IMAGE", "gantry-example/app:2.0.0-unhealthy"), "image that never becomes healthy (env BENCH_BAD_IMAGE)")
	flag.BoolVar(&o.composeOnly, "compose-only", false, "time docker compose only (while gantry does not build)")
	flag.BoolVar(&o.cleanupOnly, "cleanup", false, "only remove what an earlier run left behind")
	flag.DurationVar(&o.total, "timeout", 45*time.Minute, "bound on the whole run")
	flag.Parse()

	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "gantry-bench: -rounds (BENCH_ROUNDS) must be at least 1")
		return 2
	}
	var err error
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		fmt.Fprintln(os.Stderr, "gantry-bench:", err)
		return 2
	}
	if o.gantry, err = filepath.Abs(o.gantry); err != nil {
		fmt.Fprintln(os.Stderr, "gantry-bench:", err)
		return 2
	}

	stacks := []stack{newStack(o.dir, "one"), newStack(o.dir, "five")}
	rb := newStack(o.dir, "rollback")
	all := append(append([]stack{}, stacks...), rb)

	b := &bench{o: o}
	// Cleanup runs on every way out, with its own deadline: the run's context
	// may already be cancelled by then.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for _, s := range all {
			b.cleanup(ctx, s)
		}
	}()
	if o.cleanupOnly {
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.total)
	defer cancel()

	if err := b.preflight(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gantry-bench:", err)
		return 1
	}

	var results []stackResult
	for _, s := range stacks {
		r, err := b.deployStack(ctx, s)
		if err != nil {
			return failed(ctx, s, err)
		}
		results = append(results, r)
	}
	rbr, err := b.rollbackStack(ctx, rb)
	if err != nil {
		return failed(ctx, rb, err)
	}
	report(os.Stdout, o, results, rbr)
	return 0
}

// failed reports why a stack could not be measured and picks the exit code.
func failed(ctx context.Context, s stack, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "gantry-bench: stopped during stack %s (%v); cleaning up\n", s.name, context.Cause(ctx))
		return 130
	}
	fmt.Fprintf(os.Stderr, "gantry-bench: stack %s: %v\n", s.name, err)
	return 1
}

type bench struct {
	o options
}

func (b *bench) preflight(ctx context.Context) error {
	if _, err := b.docker(ctx, time.Minute, "", "compose", "version"); err != nil {
		return fmt.Errorf("docker compose does not work (run scripts/ensure-compose.sh): %w", err)
	}
	imgs := []string{b.o.image, b.o.badImage}
	if !b.o.composeOnly {
		if _, err := os.Stat(b.o.gantry); err != nil {
			return fmt.Errorf("gantry binary %s: %w (run make build, or pass -compose-only)", b.o.gantry, err)
		}
	}
	for _, img := range imgs {
		if _, err := b.docker(ctx, time.Minute, "", "image", "inspect", "--format", "{{.Id}}", img); err != nil {
			return fmt.Errorf("image %s is missing; build it with: bash examples/build.sh --all", img)
		}
	}
	return nil
}

// stackResult holds the wall times of every round, in seconds.
type stackResult struct {
	s       stack
	compose []float64
	gantry  []float64
	verdict []float64 // per gantry deploy: the slowest service's verdict latency
}

func (b *bench) deployStack(ctx context.Context, s stack) (stackResult, error) {
	r := stackResult{s: s}
	for i := 1; i <= b.o.rounds; i++ {
		// Alternate which tool goes first so that neither always gets the
		// warmer (or busier) machine.
		order := []string{"compose", "gantry"}
		if i%2 == 0 {
			order = []string{"gantry", "compose"}
		}
		for _, tool := range order {
			if tool == "gantry" && b.o.composeOnly {
				continue
			}
			b.cleanup(ctx, s)
			if err := ctx.Err(); err != nil {
				return r, err
			}
			switch tool {
			case "compose":
				d, err := b.composeUp(ctx, s, b.o.image)
				if err != nil {
					return r, fmt.Errorf("round %d: %w", i, err)
				}
				r.compose = append(r.compose, d)
				fmt.Printf("  %-5s round %d  compose up --wait  %6.2fs\n", s.name, i, d)
			case "gantry":
				dir, err := os.MkdirTemp("", "gantry-bench-state-")
				if err != nil {
					return r, err
				}
				d, out, err := b.gantryDeploy(ctx, s, dir, fmt.Sprintf("r%d", i))
				os.RemoveAll(dir)
				if err != nil {
					return r, fmt.Errorf("round %d: %w", i, err)
				}
				r.gantry = append(r.gantry, d)
				v := findNumbers(out, "verdict_latency_seconds")
				if len(v) > 0 {
					r.verdict = append(r.verdict, maxOf(v))
				}
				fmt.Printf("  %-5s round %d  gantry deploy      %6.2fs  (verdict latency %s)\n", s.name, i, d, fmtSeconds(v))
			}
		}
		b.cleanup(ctx, s)
	}
	return r, nil
}

// rollbackResult holds per round: gantry's own rollback_seconds, gantry's whole
// failed deploy, and the peer's manual rollback (compose up of the old image).
type rollbackResult struct {
	gantry        []float64
	gantryFailed  []float64
	composeManual []float64
}

func (b *bench) rollbackStack(ctx context.Context, s stack) (rollbackResult, error) {
	var r rollbackResult
	url := "http://127.0.0.1:18199/healthz"
	for i := 1; i <= b.o.rounds; i++ {
		// The peer: compose up the good image, up the bad one (its --wait
		// fails), then put the good one back by hand, which is what a user
		// of plain compose would do; that last step is timed.
		b.cleanup(ctx, s)
		if _, err := b.composeUp(ctx, s, b.o.image); err != nil {
			return r, fmt.Errorf("round %d: compose up of the good image: %w", i, err)
		}
		if _, err := b.composeUp(ctx, s, b.o.badImage); err == nil {
			return r, fmt.Errorf("round %d: compose up --wait of %s succeeded; the bench needs an image that never becomes healthy", i, b.o.badImage)
		}
		d, err := b.composeUp(ctx, s, b.o.image)
		if err != nil {
			return r, fmt.Errorf("round %d: compose manual rollback: %w", i, err)
		}
		if err := httpOK(ctx, url); err != nil {
			return r, fmt.Errorf("round %d: after compose's manual rollback: %w", i, err)
		}
		r.composeManual = append(r.composeManual, d)
		fmt.Printf("  %-8s round %d  compose manual rollback (up --wait of the old image)  %6.2fs\n", s.name, i, d)

		if b.o.composeOnly {
			continue
		}
		b.cleanup(ctx, s)
		dir, err := os.MkdirTemp("", "gantry-bench-state-")
		if err != nil {
			return r, err
		}
		rs, failed, err := b.gantryRollbackRound(ctx, s, dir, i)
		os.RemoveAll(dir)
		if err != nil {
			return r, fmt.Errorf("round %d: %w", i, err)
		}
		if err := httpOK(ctx, url); err != nil {
			return r, fmt.Errorf("round %d: after gantry's rollback the old release does not answer: %w", i, err)
		}
		r.gantry = append(r.gantry, rs)
		r.gantryFailed = append(r.gantryFailed, failed)
		fmt.Printf("  %-8s round %d  gantry failed deploy %6.2fs, of which rollback %6.2fs\n", s.name, i, failed, rs)
	}
	b.cleanup(ctx, s)
	return r, nil
}

func (b *bench) gantryRollbackRound(ctx context.Context, s stack, stateDir string, round int) (rollback, failed float64, err error) {
	if _, _, err := b.gantryDeploy(ctx, s, stateDir, fmt.Sprintf("r%d-good", round)); err != nil {
		return 0, 0, fmt.Errorf("deploy of the good release: %w", err)
	}
	start := time.Now()
	stdout, runErr := b.gantry(ctx, s, "deploy", "bench",
		"--release", fmt.Sprintf("r%d-bad", round),
		"--image", s.svc+"="+b.o.badImage,
		"--state-dir", stateDir, "--output", "json")
	failed = time.Since(start).Seconds()
	if runErr == nil {
		return 0, 0, fmt.Errorf("gantry deploy of %s succeeded; it should have rolled back", b.o.badImage)
	}
	out, perr := parseJSON(stdout)
	if perr != nil {
		return 0, 0, fmt.Errorf("gantry deploy of %s failed without JSON output (%v): %w", b.o.badImage, perr, runErr)
	}
	v := findNumbers(out, "rollback_seconds")
	if len(v) == 0 {
		return 0, 0, fmt.Errorf("gantry's JSON output has no rollback_seconds: %s", truncate(stdout, 2000))
	}
	return maxOf(v), failed, nil
}

// composeUp times `docker compose up -d --wait` of a stack with image.
func (b *bench) composeUp(ctx context.Context, s stack, image string) (float64, error) {
	start := time.Now()
	_, err := b.run(ctx, composeUpTimeout, s.dir, []string{"BENCH_IMAGE=" + image},
		"docker", "compose", "-p", s.compose, "-f", "compose.yaml",
		"up", "-d", "--wait", "--wait-timeout", waitSeconds)
	return time.Since(start).Seconds(), err
}

// gantryDeploy times `gantry deploy` and returns its parsed JSON output.
func (b *bench) gantryDeploy(ctx context.Context, s stack, stateDir, release string) (float64, any, error) {
	start := time.Now()
	stdout, err := b.gantry(ctx, s, "deploy", "bench", "--release", release,
		"--state-dir", stateDir, "--output", "json")
	d := time.Since(start).Seconds()
	if err != nil {
		return d, nil, fmt.Errorf("gantry deploy: %w", err)
	}
	out, err := parseJSON(stdout)
	if err != nil {
		return d, nil, fmt.Errorf("gantry deploy --output json: %v: %s", err, truncate(stdout, 2000))
	}
	return d, out, nil
}

func (b *bench) gantry(ctx context.Context, s stack, args ...string) ([]byte, error) {
	return b.run(ctx, gantryTimeout, s.dir, []string{"BENCH_IMAGE=" + b.o.image}, b.o.gantry, args...)
}

func (b *bench) docker(ctx context.Context, timeout time.Duration, dir string, args ...string) ([]byte, error) {
	return b.run(ctx, timeout, dir, nil, "docker", args...)
}

// run runs one command bounded by timeout and returns its stdout; the error
// carries the tail of its stderr.
func (b *bench) run(ctx context.Context, timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(stderr.String(), 15))
	}
	return stdout.Bytes(), nil
}

// cleanup removes what either tool left of a stack: the compose project, and
// every container, network and volume labelled with gantry's project or the
// compose project names. Errors are ignored: there may be nothing to remove.
func (b *bench) cleanup(ctx context.Context, s stack) {
	_, _ = b.run(ctx, cleanupTimeout, s.dir, []string{"BENCH_IMAGE=" + b.o.image},
		"docker", "compose", "-p", s.compose, "-f", "compose.yaml", "down", "-v", "--remove-orphans", "-t", "3")
	labels := []string{
		"io.gantry.project=" + s.gantry,
		"com.docker.compose.project=" + s.gantryComposeProject(),
		"com.docker.compose.project=" + s.compose,
	}
	for _, l := range labels {
		if ids := b.ids(ctx, "ps", "-aq", "--filter", "label="+l); len(ids) > 0 {
			_, _ = b.docker(ctx, cleanupTimeout, "", append([]string{"rm", "-f", "-v"}, ids...)...)
		}
	}
	for _, l := range labels {
		if ids := b.ids(ctx, "network", "ls", "-q", "--filter", "label="+l); len(ids) > 0 {
			_, _ = b.docker(ctx, cleanupTimeout, "", append([]string{"network", "rm"}, ids...)...)
		}
		if ids := b.ids(ctx, "volume", "ls", "-q", "--filter", "label="+l); len(ids) > 0 {
			_, _ = b.docker(ctx, cleanupTimeout, "", append([]string{"volume", "rm", "-f"}, ids...)...)
		}
	}
}

func (b *bench) ids(ctx context.Context, args ...string) []string {
	out, err := b.docker(ctx, time.Minute, "", args...)
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// httpOK checks that url answers 200 within a few seconds.
func httpOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// parseJSON reads gantry's --output json: one JSON document or several (a
// failed deploy prints its result, then an error object). It returns them all
// as one list, for findNumbers.
func parseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, v)
	}
	if len(docs) == 0 {
		return nil, errors.New("no JSON on stdout")
	}
	return docs, nil
}

// findNumbers collects every number stored under key anywhere in v, so the
// bench does not depend on where the CLI nests it.
func findNumbers(v any, key string) []float64 {
	var out []float64
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if f, ok := x.(float64); ok && k == key {
				out = append(out, f)
				continue
			}
			out = append(out, findNumbers(x, key)...)
		}
	case []any:
		for _, x := range t {
			out = append(out, findNumbers(x, key)...)
		}
	}
	return out
}

func report(w io.Writer, o options, rs []stackResult, rb rollbackResult) {
	fmt.Fprintf(w, "\ngantry bench: %d round(s) per stack, image %s\n\n", o.rounds, o.image)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stack\tcompose up -d --wait\tgantry deploy\tratio gantry/compose\tverdict latency (max over services)\t")
	worstRatio := math.NaN()
	worstVerdict := math.NaN()
	for _, r := range rs {
		c, g := median(r.compose), median(r.gantry)
		ratio := g / c
		fmt.Fprintf(tw, "%s (%d svc)\t%.2fs\t%s\t%s\t%s\t\n", r.s.name, serviceCount(r.s.name), c, secs(g), ratioStr(ratio), secs3(median(r.verdict)))
		worstRatio = nanMax(worstRatio, ratio)
		worstVerdict = nanMax(worstVerdict, median(r.verdict))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "rollback (stop-first, fixed port)\tgantry rollback_seconds\tgantry failed deploy in all\tcompose manual rollback\t")
	fmt.Fprintf(tw, "rollback (1 svc)\t%s\t%s\t%s\t\n", secs(median(rb.gantry)), secs(median(rb.gantryFailed)), secs(median(rb.composeManual)))
	tw.Flush()
	fmt.Fprintln(w, "(medians; compose manual rollback = `docker compose up -d --wait` of the old image after a failed update)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "goals:")
	goal(w, fmt.Sprintf("deploy ratio <= %.1fx", goalDeployRatio), ratioStr(worstRatio)+" (worst stack)", worstRatio, goalDeployRatio)
	goal(w, fmt.Sprintf("verdict latency <= %.1f s", goalVerdict), secs3(worstVerdict)+" (worst stack)", worstVerdict, goalVerdict)
	goal(w, fmt.Sprintf("rollback <= %.0f s", goalRollback), secs(median(rb.gantry)), median(rb.gantry), goalRollback)
}

func goal(w io.Writer, what, got string, v, limit float64) {
	verdict := "met"
	switch {
	case math.IsNaN(v):
		verdict = "not measured"
	case v > limit:
		verdict = "NOT MET"
	}
	fmt.Fprintf(w, "  %-24s %-22s %s\n", what, got, verdict)
}

func serviceCount(name string) int {
	if name == "five" {
		return 5
	}
	return 1
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

func nanMax(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Max(a, b)
}

func secs(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fs", v)
}

// secs3 prints sub-second figures, such as verdict latency, to the millisecond.
func secs3(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.3fs", v)
}

func ratioStr(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

func fmtSeconds(v []float64) string {
	if len(v) == 0 {
		return "not reported"
	}
	return fmt.Sprintf("%.3fs", maxOf(v))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if v := os.Getenv(key); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}
