// Command serverbench fills a gantry store for bench/server.sh (10,000
// deployments, 1,000,000 audit events) and puts a bounded load on a gantry
// server's routes, or on the Docker Engine API for comparison, printing
// latency percentiles as JSON lines.
//
//	serverbench seed -state DIR -project P -env staging -deployments 10000 -audit 1000000
//	serverbench load -url https://127.0.0.1:8443 -fingerprint FP -token T -n 5000 -c 50 PATH...
//	serverbench load -docker -n 5000 -c 50 PATH...
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/store"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: serverbench seed|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "seed":
		err = seed(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: seed or load", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serverbench:", err)
		os.Exit(1)
	}
}

func seed(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	state := fs.String("state", "", "state directory (the store)")
	project := fs.String("project", "", "project")
	env := fs.String("env", "staging", "environment of the deployments")
	deployments := fs.Int("deployments", 10000, "deployments to record")
	events := fs.Int("audit", 1000000, "audit events to record")
	fs.Parse(args)
	if *state == "" || *project == "" {
		return errors.New("seed needs -state and -project")
	}
	st, err := store.Open(*state)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	// Deployments go in with SQL, in one transaction: the store's API
	// commits each transition on its own (it must, for crash safety), which
	// would take minutes here.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(*state, store.FileName)+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	t0 := time.Now().Add(-time.Duration(*deployments) * time.Hour).UTC()
	ins, err := tx.Prepare(`INSERT INTO deployments (project, env, release, kind, state, reason, plan_id, previous_id, plan, result, actor, pid, created_at, updated_at, finished_at)
		VALUES (?,?,?,?,?,?,0,0,'{}','{}',?,0,?,?,?)`)
	if err != nil {
		return err
	}
	tr, err := tx.Prepare(`INSERT INTO transitions (deployment_id, from_state, to_state, reason, at) VALUES (?,?,?,?,?)`)
	if err != nil {
		return err
	}
	for i := range *deployments {
		state, reason := "succeeded", "all services healthy"
		if i%7 == 3 {
			state, reason = "rolled_back", "service web failed its health gate (healthcheck): healthcheck reports unhealthy; rolled back"
		}
		at := t0.Add(time.Duration(i) * time.Hour)
		ts, te := at.Format(time.RFC3339Nano), at.Add(30*time.Second).Format(time.RFC3339Nano)
		res, err := ins.Exec(*project, *env, fmt.Sprintf("0.%d.%d", i/100, i%100), "deploy", state, reason, "ci", ts, te, te)
		if err != nil {
			return err
		}
		id, _ := res.LastInsertId()
		if _, err := tx.Exec(`UPDATE deployments SET plan_id=? WHERE id=?`, id, id); err != nil {
			return err
		}
		for _, s := range [][2]string{{"", "pending"}, {"pending", "deploying"}, {"deploying", "verifying"}, {"verifying", state}} {
			if s[1] == "verifying" && state != "succeeded" {
				continue
			}
			if _, err := tr.Exec(id, s[0], s[1], "", ts); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "serverbench: %d deployments in %s\n", *deployments, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	l := audit.Open(st)
	actors := []string{"ci", "alice", "bob", "deploy-bot", "carol"}
	actions := []string{"deploy", "deploy.finish", "rollback", "token.create", "promotion.request", "promotion.approve", "login"}
	e0 := time.Now().Add(-400 * 24 * time.Hour)
	step := 400 * 24 * time.Hour / time.Duration(max(*events, 1))
	const batch = 20000
	for done := 0; done < *events; done += batch {
		n := min(batch, *events-done)
		evs := make([]audit.Event, n)
		for j := range evs {
			i := done + j
			out := audit.OK
			if i%50 == 0 {
				out = audit.Denied
			}
			evs[j] = audit.Event{Time: e0.Add(time.Duration(i) * step), Actor: actors[i%len(actors)], Role: "editor", Action: actions[i%len(actions)],
				Object: fmt.Sprintf("env/%s", *env), Outcome: out, RequestID: fmt.Sprintf("seed-%d", i), Client: "127.0.0.1:40000",
				Detail: map[string]string{"release": fmt.Sprintf("0.%d.%d", i/100, i%100), "status": "202"}}
		}
		if err := l.AppendMany(context.Background(), evs); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "serverbench: %d audit events in %s\n", *events, time.Since(start).Round(time.Millisecond))
	return nil
}

type result struct {
	Target  string  `json:"target"`
	Path    string  `json:"path"`
	N       int     `json:"n"`
	C       int     `json:"c"`
	Errors  int64   `json:"errors"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	Seconds float64 `json:"seconds"`
	// WarmupMs is how long the c untimed first requests took, all at once:
	// with new connections, that is c TLS handshakes.
	WarmupMs float64 `json:"warmup_ms"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	base := fs.String("url", "", "server URL")
	fp := fs.String("fingerprint", "", "the server certificate's SHA-256 fingerprint")
	token := fs.String("token", "", "bearer token")
	useDocker := fs.Bool("docker", false, "load the Docker Engine API on /var/run/docker.sock instead")
	n := fs.Int("n", 5000, "requests per path")
	c := fs.Int("c", 50, "concurrent clients")
	timeout := fs.Duration("timeout", 2*time.Minute, "stop a path's load after this long")
	fs.Parse(args)
	tr := &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}
	target := *base
	if *useDocker {
		target = "http://docker"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", "/var/run/docker.sock")
		}
	} else if *fp != "" {
		want := strings.ToLower(strings.ReplaceAll(*fp, ":", ""))
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				sum := sha256.Sum256(raw[0])
				if hex.EncodeToString(sum[:]) != want {
					return errors.New("certificate fingerprint mismatch")
				}
				return nil
			}}
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for _, path := range fs.Args() {
		r, err := run(hc, target, path, *token, *n, *c, *timeout)
		if err != nil {
			return err
		}
		r.Target = "gantry"
		if *useDocker {
			r.Target = "docker"
		}
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
	}
	return nil
}

// run sends n GETs of path with c workers, bounded by timeout.
func run(hc *http.Client, base, path, token string, n, c int, timeout time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Each client first sends one untimed request, which must succeed, and
	// all start the timed ones together: the timed requests are list
	// requests on open connections, as a dashboard or a CI job polling the
	// server sends them; the connections' TLS handshakes (50 at once on a
	// cold client) are reported apart, as warmup_ms.
	warm := time.Now()
	werrs := make(chan error, c)
	var ready sync.WaitGroup
	for range c {
		ready.Add(1)
		go func() {
			defer ready.Done()
			if _, err := get(ctx, hc, base+path, token); err != nil {
				werrs <- err
			}
		}()
	}
	ready.Wait()
	close(werrs)
	if err := <-werrs; err != nil {
		return result{}, fmt.Errorf("%s: %w", path, err)
	}
	warmup := time.Since(warm)
	lat := make([]time.Duration, n)
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				d, err := get(ctx, hc, base+path, token)
				if err != nil {
					errs.Add(1)
				}
				lat[i] = d
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	done := min(int(next.Load()), n)
	l := lat[:done]
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pct := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return result{Path: path, N: done, C: c, Errors: errs.Load(), P50ms: ms(pct(0.50)), P99ms: ms(pct(0.99)), MaxMs: ms(l[len(l)-1]), Seconds: took.Seconds(),
		WarmupMs: ms(warmup)}, nil
}

func get(ctx context.Context, hc *http.Client, url, token string) (time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	t := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return time.Since(t), err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t)
	if resp.StatusCode != 200 {
		return d, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return d, nil
}
