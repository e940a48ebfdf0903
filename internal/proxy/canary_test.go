package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"golang.org/x/net/websocket"

	"github.com/gantryhq/gantry/internal/testenv"
)

// loopbackUpstream is an HTTP server on an ephemeral 127.0.0.1 port that
// answers as the test application does on / (JSON naming its release);
// handler, when given, answers instead. It stops when the test ends.
func loopbackUpstream(t testing.TB, release string, handler http.HandlerFunc) (upstream, *httptest.Server) {
	t.Helper()
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, "{\"release\":%q,\"path\":%q}\n", release, r.URL.Path)
		}
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return upstream{addr: srv.Listener.Addr().String(), release: release}, srv
}

// canaryProxy starts a proxy routing web in prod (shop.test/) to a stable
// loopback upstream, beside a canary one (answering with handler when
// given) at a weight; pc.stateFile is the state file when set.
func canaryProxy(t testing.TB, pc proxyConf, weight int, sticky Sticky, handler http.HandlerFunc) (rp *running, stable, canary upstream, csrv *httptest.Server) {
	t.Helper()
	stable, _ = loopbackUpstream(t, "stable", nil)
	canary, csrv = loopbackUpstream(t, "canary", handler)
	rp = startProxy(t, pc)
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", stable, ReasonDeploy)
	if weight >= 0 {
		mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: weight, Step: 1, Sticky: sticky})
	}
	return rp, stable, canary, csrv
}

func mustCanary(t testing.TB, p *Proxy, req CanaryRequest) Route {
	t.Helper()
	r, err := p.SetCanary(context.Background(), req)
	if err != nil {
		t.Fatalf("set canary %+v: %v", req, err)
	}
	return r
}

func up(u upstream) Upstream { return Upstream{Addr: u.addr, Release: u.release} }

// releaseFor sends one GET through the proxy with the given header and
// returns the release that answered.
func releaseFor(t testing.TB, hc *http.Client, base string, header http.Header) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Host = "shop.test"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rel, err := releaseOf(resp, b)
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	return rel
}

// split sends n GETs from workers goroutines and counts them by release.
func split(t *testing.T, base string, n int) map[string]int {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				rel := releaseFor(t, hc, base, nil)
				mu.Lock()
				got[rel]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

// TestCanaryWeightSplit sends 2000 requests with no stickiness at weight
// 20: about a fifth go to the canary; weights 0 and 100 are exact.
func TestCanaryWeightSplit(t *testing.T) {
	rp, _, canary, _ := canaryProxy(t, proxyConf{}, 20, Sticky{}, nil)

	got := split(t, rp.http, 2000)
	// 400 expected; the binomial's standard deviation is 18: 80 is 4.5 of them.
	if c := got["canary"]; c < 320 || c > 480 || got["stable"] != 2000-c {
		t.Errorf("at weight 20, 2000 requests went %v; want about 400 to the canary", got)
	}
	if n := testutil.ToFloat64(rp.p.m.canaryWeight.WithLabelValues("prod", "web")); n != 20 {
		t.Errorf("gantry_proxy_canary_weight = %v, want 20", n)
	}
	for _, w := range []int{0, 100} {
		mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: w, Step: 1})
		got := split(t, rp.http, 200)
		want := map[string]int{"stable": 200}
		if w == 100 {
			want = map[string]int{"canary": 200}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("at weight %d: %v, want %v", w, got, want)
		}
	}
}

// TestCanarySticky checks that a client keeps its release across 50
// requests, by header and by cookie, and stays on the canary when the
// weight rises.
func TestCanarySticky(t *testing.T) {
	rp, _, canary, _ := canaryProxy(t, proxyConf{}, -1, Sticky{}, nil)
	const clients = 20

	// clientsOn runs every client for n requests and returns the release
	// each saw, failing when one saw two.
	type client struct {
		hc     *http.Client
		header http.Header
	}
	clientsOn := func(t *testing.T, cs []client, n int) []string {
		t.Helper()
		seen := make([]string, len(cs))
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				for range n {
					rel := releaseFor(t, c.hc, rp.http, c.header)
					if seen[i] == "" {
						seen[i] = rel
					} else if seen[i] != rel {
						t.Errorf("client %d went to %s, then %s", i, seen[i], rel)
						return
					}
				}
			})
		}
		wg.Wait()
		return seen
	}
	check := func(t *testing.T, cs []client) {
		t.Helper()
		before := clientsOn(t, cs, 50)
		n := strings.Count(strings.Join(before, " "), "canary")
		if n == 0 || n == clients {
			t.Errorf("at weight 40, %d of %d clients on the canary; want some on each side", n, clients)
		}
		mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 80, Step: 2, Sticky: rp.p.State().Routes[0].Canary.Sticky})
		after := clientsOn(t, cs, 10)
		for i := range cs {
			if before[i] == "canary" && after[i] != "canary" {
				t.Errorf("client %d was on the canary at weight 40 and went to %s at 80", i, after[i])
			}
		}
		if m := strings.Count(strings.Join(after, " "), "canary"); m < n {
			t.Errorf("clients on the canary: %d at weight 40, %d at 80", n, m)
		}
	}

	t.Run("header", func(t *testing.T) {
		mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 40, Step: 1, Sticky: Sticky{Header: "x-user-id"}})
		hc := &http.Client{Timeout: 10 * time.Second}
		cs := make([]client, clients)
		for i := range cs {
			cs[i] = client{hc: hc, header: http.Header{"X-User-Id": {fmt.Sprint("user-", i)}}}
		}
		check(t, cs)
	})

	t.Run("cookie", func(t *testing.T) {
		mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 40, Step: 1, Sticky: Sticky{Cookie: "gantry-canary"}})
		// The proxy sets the cookie once, on the first answer.
		req, _ := http.NewRequest(http.MethodGet, rp.http+"/", nil)
		req.Host = "shop.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Values("Set-Cookie")
		if len(sc) != 1 || !strings.HasPrefix(sc[0], "gantry-canary=") || !strings.Contains(sc[0], "; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax") {
			t.Fatalf("Set-Cookie on a first request: %q", sc)
		}
		id := strings.TrimPrefix(strings.SplitN(sc[0], ";", 2)[0], "gantry-canary=")
		req.Header.Set("Cookie", "other=1; gantry-canary="+id)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("Set-Cookie again on a request that has the cookie: %q", sc)
		}

		cs := make([]client, clients)
		ids := map[string]bool{}
		hc := &http.Client{Timeout: 10 * time.Second}
		for i := range cs {
			// A first request gets the cookie, which the client sends back.
			req, _ := http.NewRequest(http.MethodGet, rp.http+"/", nil)
			req.Host = "shop.test"
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, c := range resp.Cookies() {
				if c.Name == "gantry-canary" && c.HttpOnly && c.Path == "/" {
					ids[c.Value] = true
					cs[i] = client{hc: hc, header: http.Header{"Cookie": {"theme=dark; gantry-canary=" + c.Value}}}
				}
			}
		}
		if len(ids) != clients {
			t.Fatalf("%d clients got %d distinct cookie ids", clients, len(ids))
		}
		check(t, cs)
	})
}

// TestCanaryCookieOnRetry: the sticky cookie set on a request survives
// the retry of that request on a new connection, when the upstream had
// closed the kept-alive one as the request went out.
func TestCanaryCookieOnRetry(t *testing.T) {
	stable, _ := loopbackUpstream(t, "stable", nil)
	// The canary answers the first request of each connection, keeping
	// it alive, and closes it when a second arrives.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"release\":\"canary\"}")
				http.ReadRequest(br) // then closes without an answer
			}()
		}
	}()
	rp := startProxy(t, proxyConf{})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", stable, ReasonDeploy)
	mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: Upstream{Addr: ln.Addr().String(), Release: "canary"}, Weight: 100, Sticky: Sticky{Cookie: "gantry-canary"}})
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodGet, rp.http+"/", nil)
		req.Host = "shop.test"
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rel, err := releaseOf(resp, b); err != nil || rel != "canary" {
			t.Fatalf("request %d: %s, %v", i, rel, err)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) != 1 || !strings.HasPrefix(sc[0], "gantry-canary=") {
			t.Errorf("request %d (the first on a fresh connection, the others retried): Set-Cookie %q", i, sc)
		}
	}
}

// TestCanaryAbortUnderLoad aborts a canary at weight 50 while a load
// generator sends 200 requests/s: no request fails, every request after
// the abort goes to the stable release, and a long request on the canary
// finishes there; then the canary drains.
func TestCanaryAbortUnderLoad(t *testing.T) {
	project := testenv.Project(t, "canary")
	blue := startUpstream(t, project, "blue")
	green := startUpstream(t, project, "green")
	rp := startProxy(t, proxyConf{drain: 5 * time.Second})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", blue, ReasonDeploy)
	mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(green), Weight: 50, Step: 1, Sticky: Sticky{Header: "X-User-Id"}})

	load := testenv.StartLoad(t, rp.http+"/", "shop.test", 200, 3*time.Second, releaseOf)
	time.Sleep(time.Second)

	// A long request of a user on the canary (bucket below 50).
	user := ""
	for i := 0; user == ""; i++ {
		if id := fmt.Sprint("user-", i); bucketOf(id) < 50 {
			user = id
		}
	}
	longDone := longRequest(rp.http, "shop.test", "/slow?d=1500ms", http.Header{"X-User-Id": {user}})
	time.Sleep(300 * time.Millisecond)

	// Watchers send requests back to back across the abort, each noting
	// when it started: none that started after the abort returned may
	// reach the canary.
	type seen struct {
		start time.Time
		rel   string
	}
	var (
		seenMu  sync.Mutex
		watched []seen
		abortAt time.Time
		wg      sync.WaitGroup
	)
	watchUntil := time.Now().Add(time.Second)
	for w := range 4 {
		wg.Go(func() {
			hc := &http.Client{Timeout: 10 * time.Second}
			for i := 0; time.Now().Before(watchUntil) && i < 2000; i++ {
				start := time.Now()
				rel := releaseFor(t, hc, rp.http, http.Header{"X-User-Id": {fmt.Sprint("watcher-", w, "-", i)}})
				seenMu.Lock()
				watched = append(watched, seen{start, rel})
				seenMu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	res, err := rp.p.AbortCanary(context.Background(), "prod", "web", "error ratio 0.2 over 0.05")
	if err != nil {
		t.Fatal(err)
	}
	seenMu.Lock()
	abortAt = time.Now()
	seenMu.Unlock()
	if res.Previous == nil || res.Previous.Addr != green.addr || res.Route.Canary != nil || res.Route.Upstream.Addr != blue.addr {
		t.Errorf("abort result: %+v, previous %+v; want the canary green as previous, blue active", res.Route, res.Previous)
	}
	wg.Wait()
	var before, after, late int
	for _, s := range watched {
		switch {
		case !s.start.After(abortAt):
			before++
		case s.rel != "blue":
			late++
		default:
			after++
		}
	}
	t.Logf("watchers: %d requests before the abort, %d after it", before, after+late)
	if late > 0 || after == 0 || before == 0 {
		t.Errorf("%d of %d requests started after the abort went to the canary; want none (and some on each side of it: %d before)", late, after+late, before)
	}
	drained := startDrain(t, rp.p, "prod", "web", green.addr)
	if got := <-longDone; got != "200 green slept 1.5s" {
		t.Errorf("the long request on the canary during the abort: %q, want 200 green slept 1.5s", got)
	}
	if r := <-drained; r.Cut != 0 {
		t.Errorf("the canary's drain cut %d requests, want 0", r.Cut)
	}

	noFailures(t, load, "abort", "blue", "green")
	if n := testutil.ToFloat64(rp.p.m.aborts.WithLabelValues("prod", "web")); n != 1 {
		t.Errorf("gantry_proxy_aborts_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(rp.p.m.switches.WithLabelValues("prod", "web", ReasonAbort)); n != 1 {
		t.Errorf("gantry_proxy_switches_total{reason=abort} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(rp.p.m.canaryWeight.WithLabelValues("prod", "web")); n != 0 {
		t.Errorf("gantry_proxy_canary_weight after the abort = %v, want 0", n)
	}
	if _, err := rp.p.CanaryStats("prod", "web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stats after the abort: %v, want not found", err)
	}
}

// TestCanaryWebSocket: a WebSocket to the canary counts in its statistics
// when it ends.
func TestCanaryWebSocket(t *testing.T) {
	ws := websocket.Handler(func(c *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(c, &msg) == nil {
			websocket.Message.Send(c, "canary: "+msg)
		}
	})
	rp, _, _, _ := canaryProxy(t, proxyConf{}, 100, Sticky{Cookie: "gantry-canary"}, ws.ServeHTTP)
	conn := dialWS(t, rp.http, "shop.test")
	if got := wsEcho(t, conn, "hi"); got != "canary: hi" {
		t.Errorf("WebSocket at weight 100: %q", got)
	}
	if s, _ := rp.p.CanaryStats("prod", "web"); s.Canary.Requests != 0 {
		t.Errorf("an open WebSocket counted already: %+v", s.Canary)
	}
	conn.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s, _ := rp.p.CanaryStats("prod", "web")
		if s.Canary.Requests == 1 && s.Canary.Errors == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a WebSocket that ended: canary stats %+v, want 1 request", s.Canary)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCanaryStats counts a failing, slow canary's 5xx and latency, and the
// proxy's own 502 when it stops; a new step starts from zero.
func TestCanaryStats(t *testing.T) {
	rp, stable, canary, csrv := canaryProxy(t, proxyConf{}, 50, Sticky{}, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
		http.Error(w, "broken", http.StatusInternalServerError)
	})

	send := func(n int) (codes map[int]int) {
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		hc := &http.Client{Timeout: 10 * time.Second}
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					resp, _ := get(t, hc, rp.http, "shop.test", "/")
					mu.Lock()
					codes[resp.StatusCode]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return codes
	}
	// waitStats waits for the counts of n requests (a request counts when
	// its handler returns, just after the client has the answer).
	waitStats := func(n int64) CanaryStats {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			s, err := rp.p.CanaryStats("prod", "web")
			if err != nil {
				t.Fatal(err)
			}
			if s.Stable.Requests+s.Canary.Requests >= n || time.Now().After(deadline) {
				return s
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	codes := send(200)
	s := waitStats(200)
	t.Logf("answers %v; stats %+v", codes, s)
	if s.Stable.Requests+s.Canary.Requests != 200 || s.Canary.Requests != int64(codes[500]) || s.Stable.Requests != int64(codes[200]) {
		t.Errorf("stats count %d + %d requests, want %v", s.Stable.Requests, s.Canary.Requests, codes)
	}
	if s.Canary.Errors != s.Canary.Requests || s.Canary.ErrorRatio != 1 || s.Stable.Errors != 0 || s.Stable.ErrorRatio != 0 {
		t.Errorf("errors: stable %d (%v), canary %d (%v); want 0 and all", s.Stable.Errors, s.Stable.ErrorRatio, s.Canary.Errors, s.Canary.ErrorRatio)
	}
	if s.Canary.P50 < 30*time.Millisecond || s.Canary.P99 < s.Canary.P50 || s.Canary.P50 > 300*time.Millisecond {
		t.Errorf("canary latency p50 %s p99 %s; it sleeps 30ms", s.Canary.P50, s.Canary.P99)
	}
	if s.Stable.P50 >= s.Canary.P50 {
		t.Errorf("stable p50 %s, canary p50 %s; the stable release answers at once", s.Stable.P50, s.Canary.P50)
	}
	if s.Step != 1 || s.Weight != 50 || s.Canary.Release != "canary" || s.Stable.Addr != stable.addr || s.Since.IsZero() {
		t.Errorf("stats header: %+v", s)
	}

	// A new step starts from zero.
	mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 50, Step: 2})
	s2, _ := rp.p.CanaryStats("prod", "web")
	if s2.Step != 2 || s2.Stable.Requests != 0 || s2.Canary.Requests != 0 || s2.Canary.Errors != 0 || !s2.Since.After(s.Since) {
		t.Errorf("stats at a new step: %+v", s2)
	}

	// A canary that stops answering: the proxy's 502 count as its errors.
	csrv.Close()
	codes = send(100)
	s = waitStats(100)
	if s.Canary.Requests == 0 || s.Canary.Errors != s.Canary.Requests || int64(codes[http.StatusBadGateway]) != s.Canary.Errors {
		t.Errorf("a stopped canary: answers %v, stats %+v; want every canary request a counted 502", codes, s.Canary)
	}
}

// TestCanaryRestart restarts a proxy with a canary in its state: it serves
// the same split, client by client.
func TestCanaryRestart(t *testing.T) {
	state := t.TempDir() + "/state.json"
	rp, _, canary, _ := canaryProxy(t, proxyConf{stateFile: state}, -1, Sticky{}, nil)
	mustCanary(t, rp.p, CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 30, Step: 2, Sticky: Sticky{Header: "X-User-Id"}})
	before := rp.p.State().State
	hc := &http.Client{Timeout: 10 * time.Second}
	assign := func(base string) []string {
		var got []string
		for i := range 40 {
			got = append(got, releaseFor(t, hc, base, http.Header{"X-User-Id": {fmt.Sprint("user-", i)}}))
		}
		return got
	}
	was := assign(rp.http)
	rp.stop()
	<-rp.stopped

	rp2 := startProxy(t, proxyConf{stateFile: state})
	if after := rp2.p.State().State; !sameRoutes(before, after) {
		t.Errorf("state after the restart:\n%+v\nwant\n%+v", after, before)
	}
	if c := rp2.p.State().Routes[0].Canary; c == nil || c.Weight != 30 || c.Step != 2 || c.StepStarted.IsZero() {
		t.Errorf("canary after the restart: %+v", c)
	}
	if is := assign(rp2.http); fmt.Sprint(is) != fmt.Sprint(was) {
		t.Errorf("clients' releases after the restart:\n%v\nwant\n%v", is, was)
	}
	s, err := rp2.p.CanaryStats("prod", "web")
	if err != nil || s.Step != 2 || s.Stable.Requests+s.Canary.Requests == 0 {
		t.Errorf("stats after the restart: %+v, %v", s, err)
	}
	if n := testutil.ToFloat64(rp2.p.m.canaryWeight.WithLabelValues("prod", "web")); n != 30 {
		t.Errorf("gantry_proxy_canary_weight after the restart = %v, want 30", n)
	}
}

// TestCanaryBadInput: each bad request is refused with a clear error and
// changes neither the state nor the state file.
func TestCanaryBadInput(t *testing.T) {
	state := t.TempDir() + "/state.json"
	rp, stable, canary, _ := canaryProxy(t, proxyConf{stateFile: state}, 10, Sticky{}, nil)
	p := rp.p
	ctx := context.Background()
	if err := p.SetRoutes([]Route{{Env: "staging", Service: "web", Host: "staging.test", Path: "/"}}, []string{"staging"}); err != nil {
		t.Fatal(err)
	}
	before := p.State().State
	file, _ := os.ReadFile(state)
	closed := testenv.ClosedPort(t)

	set := func(req CanaryRequest) func() error {
		return func() error { _, err := p.SetCanary(ctx, req); return err }
	}
	for _, tc := range []struct {
		name      string
		call      func() error
		sentinel  error
		mentioned string
	}{
		{"no route", set(CanaryRequest{Env: "prod", Service: "nope", To: up(canary), Weight: 10}), ErrInput, "no stable release routed for nope in prod"},
		{"no stable release", set(CanaryRequest{Env: "staging", Service: "web", To: up(canary), Weight: 10}), ErrInput, "a first deploy is blue/green"},
		{"weight 150", set(CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 150}), ErrInput, "weight 150 is not a percentage"},
		{"weight -1", set(CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: -1}), ErrInput, "give 0 to 100"},
		{"step -1", set(CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 10, Step: -1}), ErrInput, "steps count from 1"},
		{"canary is the stable address", set(CanaryRequest{Env: "prod", Service: "web", To: up(stable), Weight: 10}), ErrInput, "is the stable release's address too"},
		{"canary not listening", set(CanaryRequest{Env: "prod", Service: "web", To: Upstream{Addr: closed, Release: "2"}, Weight: 10}), ErrInput, "does not accept connections"},
		{"bad address", set(CanaryRequest{Env: "prod", Service: "web", To: Upstream{Addr: "nowhere"}, Weight: 10}), ErrInput, "is not an upstream address"},
		{"sticky both ways", set(CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 10, Sticky: Sticky{Cookie: "c", Header: "X-User"}}), ErrInput, "choose one"},
		{"bad header name", set(CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 10, Sticky: Sticky{Header: "X User"}}), ErrInput, "is not a header name"},
		{"bad cookie name", set(CanaryRequest{Env: "prod", Service: "web", To: up(canary), Weight: 10, Sticky: Sticky{Cookie: "a;b"}}), ErrInput, "is not a cookie name"},
		{"no service", set(CanaryRequest{Env: "prod", To: up(canary), Weight: 10}), ErrInput, "needs its environment and service"},
		{"promote unknown", func() error { _, err := p.PromoteCanary(ctx, "prod", "nope"); return err }, ErrNotFound, "nope in prod has no canary to promote"},
		{"abort unknown", func() error { _, err := p.AbortCanary(ctx, "staging", "web", "x"); return err }, ErrNotFound, "web in staging has no canary to abort"},
		{"stats unknown", func() error { _, err := p.CanaryStats("staging", "web"); return err }, ErrNotFound, "has no canary"},
		{"drain the canary", func() error {
			_, err := p.Drain(ctx, DrainRequest{Env: "prod", Service: "web", Addr: canary.addr})
			return err
		}, ErrInput, "is the canary of web in prod; abort or promote the canary first"},
		{"drain the stable release", func() error {
			_, err := p.Drain(ctx, DrainRequest{Env: "prod", Service: "web", Addr: stable.addr})
			return err
		}, ErrInput, "is the active upstream"},
	} {
		err := tc.call()
		if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.mentioned) {
			t.Errorf("%s: %v; want %v mentioning %q", tc.name, err, tc.sentinel, tc.mentioned)
		}
	}
	if after := p.State().State; !sameRoutes(before, after) {
		t.Errorf("bad input changed the state:\n%+v\nwant\n%+v", after, before)
	}
	if now, _ := os.ReadFile(state); !bytes.Equal(now, file) {
		t.Errorf("bad input changed the state file:\n%s\nwant\n%s", now, file)
	}
	// A state file with a bad canary is refused when the proxy starts.
	bad := strings.Replace(string(file), `"weight": 10`, `"weight": 101`, 1)
	if bad == string(file) {
		t.Fatalf("the state file has no canary weight to spoil:\n%s", file)
	}
	badFile := t.TempDir() + "/state.json"
	os.WriteFile(badFile, []byte(bad), 0o600)
	if _, err := New(Options{StateFile: badFile}); err == nil || !strings.Contains(err.Error(), "weight 101 is not a percentage") {
		t.Errorf("a state file with weight 101: %v", err)
	}
}

// TestCanaryRoutesAndSwitch: SetRoutes keeps a staying route's canary; a
// switch ends it, all the traffic on the one release switched to.
func TestCanaryRoutesAndSwitch(t *testing.T) {
	rp, stable, canary, _ := canaryProxy(t, proxyConf{}, 100, Sticky{}, nil)
	p := rp.p
	if err := p.SetRoutes([]Route{{Env: "prod", Service: "web", Host: "shop.test", Path: "/"}, {Env: "prod", Service: "api", Host: "shop.test", Path: "/api"}}, nil); err != nil {
		t.Fatal(err)
	}
	if c := p.State().Routes[0].Canary; c == nil || c.Upstream.Addr != canary.addr {
		t.Fatalf("the canary after SetRoutes: %+v", c)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	if rel := releaseFor(t, hc, rp.http, nil); rel != "canary" {
		t.Errorf("at weight 100 after SetRoutes: %s", rel)
	}
	res := mustSwitch(t, p, "prod", "web", "", "", stable, ReasonRollback)
	if res.Route.Canary != nil || res.Canary == nil || *res.Canary != up(canary) {
		t.Errorf("a switch during a canary: route's canary %+v, ended canary %+v; want none, and %s ended", res.Route.Canary, res.Canary, canary.addr)
	}
	for range 20 {
		if rel := releaseFor(t, hc, rp.http, nil); rel != "stable" {
			t.Fatalf("after a switch during a canary: %s", rel)
		}
	}
	if _, err := p.Drain(context.Background(), DrainRequest{Env: "prod", Service: "web", Addr: canary.addr, Timeout: time.Second}); err != nil {
		t.Errorf("drain the canary a switch ended: %v", err)
	}
}

// TestCanaryAdminAPI drives a canary through the admin socket as the
// engine does: set, stats, promote (then drain the old stable), set
// again, abort (then drain the canary), and bad input.
func TestCanaryAdminAPI(t *testing.T) {
	v1, _ := loopbackUpstream(t, "v1", nil)
	v2, _ := loopbackUpstream(t, "v2", nil)
	v3, _ := loopbackUpstream(t, "v3", nil)
	rp := startProxy(t, proxyConf{})
	c := NewClient(rp.admin)
	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}
	if _, err := c.Switch(ctx, SwitchRequest{Env: "prod", Service: "web", Host: "shop.test", Path: "/", To: up(v1), Reason: ReasonDeploy}); err != nil {
		t.Fatal(err)
	}
	r, err := c.SetCanary(ctx, CanaryRequest{Env: "prod", Service: "web", To: up(v2), Weight: 100, Step: 1, Sticky: Sticky{Cookie: "gantry-canary"}})
	if err != nil || r.Canary == nil || r.Canary.Upstream != up(v2) || r.Canary.Weight != 100 || r.Canary.Sticky.Cookie != "gantry-canary" {
		t.Fatalf("set canary: %+v, %v", r.Canary, err)
	}
	if rel := releaseFor(t, hc, rp.http, nil); rel != "v2" {
		t.Errorf("at weight 100: %s", rel)
	}
	s, err := c.CanaryStats(ctx, "prod", "web")
	if err != nil || s.Canary.Requests != 1 || s.Canary.Release != "v2" || s.Stable.Release != "v1" || s.Canary.P50 == 0 {
		t.Errorf("stats: %+v, %v", s, err)
	}
	res, err := c.PromoteCanary(ctx, "prod", "web")
	if err != nil || res.Previous == nil || *res.Previous != up(v1) || *res.Route.Upstream != up(v2) || res.Route.Canary != nil || *res.Route.Previous != up(v1) {
		t.Fatalf("promote: %+v, %v", res, err)
	}
	if n := testutil.ToFloat64(rp.p.m.switches.WithLabelValues("prod", "web", ReasonDeploy)); n != 2 {
		t.Errorf("switches{deploy} = %v, want 2 (the first deploy and the promote)", n)
	}
	if _, err := c.Drain(ctx, DrainRequest{Env: "prod", Service: "web", Addr: v1.addr}); err != nil {
		t.Errorf("drain the old stable after a promote: %v", err)
	}
	for range 10 {
		if rel := releaseFor(t, hc, rp.http, nil); rel != "v2" {
			t.Fatalf("after the promote: %s", rel)
		}
	}

	if _, err := c.SetCanary(ctx, CanaryRequest{Env: "prod", Service: "web", To: up(v3), Weight: 100, Step: 1}); err != nil {
		t.Fatal(err)
	}
	res, err = c.AbortCanary(ctx, "prod", "web", "p99 900ms over 800ms")
	if err != nil || res.Previous == nil || *res.Previous != up(v3) || *res.Route.Upstream != up(v2) || res.Route.Canary != nil {
		t.Fatalf("abort: %+v, %v", res, err)
	}
	if _, err := c.Drain(ctx, DrainRequest{Env: "prod", Service: "web", Addr: v3.addr}); err != nil {
		t.Errorf("drain the canary after an abort: %v", err)
	}
	if rel := releaseFor(t, hc, rp.http, nil); rel != "v2" {
		t.Errorf("after the abort: %s", rel)
	}

	// Errors keep their kind across the socket.
	if _, err := c.SetCanary(ctx, CanaryRequest{Env: "prod", Service: "web", To: up(v3), Weight: 150}); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "weight 150") {
		t.Errorf("weight 150 through the socket: %v", err)
	}
	for name, err := range map[string]error{
		"promote": func() error { _, err := c.PromoteCanary(ctx, "prod", "web"); return err }(),
		"abort":   func() error { _, err := c.AbortCanary(ctx, "prod", "web", ""); return err }(),
		"stats":   func() error { _, err := c.CanaryStats(ctx, "prod", "web"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no canary") {
			t.Errorf("%s with no canary through the socket: %v", name, err)
		}
	}
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st.Routes[0])
	if strings.Contains(string(b), "canary") {
		t.Errorf("the route still shows a canary: %s", b)
	}
}

// TestCanaryMetricsLint: the proxy's metrics, canary ones included, pass
// promlint.
func TestCanaryMetricsLint(t *testing.T) {
	rp, _, _, _ := canaryProxy(t, proxyConf{}, 50, Sticky{}, nil)
	split(t, rp.http, 20)
	if _, err := rp.p.AbortCanary(context.Background(), "prod", "web", "test"); err != nil {
		t.Fatal(err)
	}
	mfs, err := rp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(rp.reg, "gantry_proxy_canary_weight"); n != 1 {
		t.Errorf("gantry_proxy_canary_weight series: %d, want 1", n)
	}
}

// TestLatencyBuckets checks the histogram's resolution: a duration's
// bucket's upper edge is above it by at most the resolution of its range.
func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d, res time.Duration
	}{
		{0, time.Millisecond},
		{300 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{42*time.Millisecond + 500*time.Microsecond, time.Millisecond},
		{99 * time.Millisecond, time.Millisecond},
		{100 * time.Millisecond, 10 * time.Millisecond},
		{805 * time.Millisecond, 10 * time.Millisecond},
		{999 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, 100 * time.Millisecond},
		{9999 * time.Millisecond, 100 * time.Millisecond},
		{10 * time.Second, time.Second},
		{59 * time.Second, time.Second},
	} {
		i := latencyBucket(tc.d)
		if up := bucketUpper(i); up <= tc.d || up-tc.d > tc.res {
			t.Errorf("%s: bucket %d up to %s; want above it by at most %s", tc.d, i, up, tc.res)
		}
		if i > 0 && bucketUpper(i-1) > tc.d {
			t.Errorf("%s: bucket %d, but bucket %d ends at %s", tc.d, i, i-1, bucketUpper(i-1))
		}
	}
	if i := latencyBucket(time.Hour); i != latencyBuckets-1 || bucketUpper(i) != time.Minute {
		t.Errorf("an hour: bucket %d up to %s", i, bucketUpper(i))
	}
	for i := 1; i < latencyBuckets; i++ {
		if bucketUpper(i) <= bucketUpper(i-1) && i != latencyBuckets-1 {
			t.Errorf("bucket %d ends at %s, not after bucket %d (%s)", i, bucketUpper(i), i-1, bucketUpper(i-1))
		}
	}

	var w window
	for i := range 100 {
		w.observe(time.Duration(i) * time.Millisecond) // 0..99 ms, one each
	}
	w.errors.Add(5)
	s := w.stats(Upstream{Addr: "127.0.0.1:1"})
	if s.Requests != 100 || s.Errors != 5 || s.ErrorRatio != 0.05 || s.P50 != 50*time.Millisecond || s.P95 != 95*time.Millisecond || s.P99 != 99*time.Millisecond {
		t.Errorf("stats of 0..99 ms: %+v", s)
	}
	if s := (*window)(nil).stats(Upstream{}); s.Requests != 0 || s.P99 != 0 {
		t.Errorf("no window: %+v", s)
	}
}

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct {
		cookies []string
		want    string
		ok      bool
	}{
		{nil, "", false},
		{[]string{"a=1"}, "", false},
		{[]string{"gantry-canary=abc"}, "abc", true},
		{[]string{"a=1; gantry-canary=abc; b=2"}, "abc", true},
		{[]string{"a=1", `gantry-canary="q"`}, "q", true}, // HTTP/2 splits cookies
		{[]string{"gantry-canary-x=1;gantry-canary="}, "", false},
		{[]string{"xgantry-canary=1"}, "", false},
	} {
		v, ok := cookieValue(http.Header{"Cookie": tc.cookies}, "gantry-canary")
		if v != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.cookies, v, ok, tc.want, tc.ok)
		}
	}
}

// TestPickAllocs: choosing a release allocates nothing, with or without a
// canary, sticky by header or drawn at random (a cookie already set).
func TestPickAllocs(t *testing.T) {
	stable, canary := &backend{}, &backend{}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User-Id", "user-1")
	r.Header.Set("Cookie", "a=b; gantry-canary=xyz")
	w := httptest.NewRecorder()
	for name, e := range map[string]*entry{
		"no canary": {b: stable},
		"random":    {b: stable, cb: canary, weight: 50},
		"header":    {b: stable, cb: canary, weight: 50, stickyHeader: "X-User-Id"},
		"cookie":    {b: stable, cb: canary, weight: 50, stickyCookie: "gantry-canary"},
	} {
		if n := testing.AllocsPerRun(100, func() { e.pick(w, r) }); n != 0 {
			t.Errorf("%s: %v allocations per pick", name, n)
		}
	}
	// Buckets spread: 10000 ids over 100 buckets, none far from 100.
	var counts [100]int
	for i := range 10000 {
		counts[bucketOf(fmt.Sprint("user-", i))]++
	}
	for b, n := range counts {
		if n < 50 || n > 150 {
			t.Errorf("bucket %d holds %d of 10000 ids", b, n)
		}
	}
}
