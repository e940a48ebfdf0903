package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/websocket"

	"github.com/gantryhq/gantry/internal/testenv"
)

// echo is what the test application answers on /.
type echo struct {
	Release string              `json:"release"`
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`
}

func decodeEcho(t testing.TB, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("answer is not the test application's JSON: %v\n%s", err, body)
	}
	return e
}

func mustSwitch(t testing.TB, p *Proxy, env, svc, host, path string, u upstream, reason string) SwitchResult {
	t.Helper()
	res, err := p.Switch(context.Background(), SwitchRequest{Env: env, Service: svc, Host: host, Path: path, To: Upstream{Addr: u.addr, Release: u.release}, Reason: reason})
	if err != nil {
		t.Fatalf("switch %s/%s to %s: %v", env, svc, u.release, err)
	}
	return res
}

// TestProxy runs one proxy in front of real containers (FROM scratch, ports
// published on 127.0.0.1) and checks routing, headers, protocols, limits,
// maintenance and failures.
func TestProxy(t *testing.T) {
	project := testenv.Project(t, "proxy")
	web := startUpstream(t, project, "web-1")
	api := startUpstream(t, project, "api-1")
	admin := startUpstream(t, project, "admin-1")
	rp := startProxy(t, proxyConf{tls: true, maxBody: 1 << 20})
	p := rp.p
	mustSwitch(t, p, "prod", "web", "shop.test", "/", web, ReasonDeploy)
	mustSwitch(t, p, "prod", "api", "shop.test", "/api", api, ReasonDeploy)
	mustSwitch(t, p, "staging", "web", "", "/", admin, ReasonDeploy)
	hc := &http.Client{Timeout: 10 * time.Second}

	t.Run("routing by host and path", func(t *testing.T) {
		for _, tc := range []struct {
			host, path, release string
		}{
			{"shop.test", "/", "web-1"},
			{"shop.test", "/index.html", "web-1"},
			{"shop.test", "/api", "api-1"},
			{"shop.test", "/api/orders/1", "api-1"},
			{"shop.test", "/apis", "web-1"}, // whole segments only
			{"SHOP.test:80", "/api/x", "api-1"},
			{"other.test", "/api", "admin-1"}, // the route for any host
			{"127.0.0.1", "/", "admin-1"},
		} {
			resp, body := get(t, hc, rp.http, tc.host, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s%s: status %d, want 200: %s", tc.host, tc.path, resp.StatusCode, body)
				continue
			}
			if e := decodeEcho(t, body); e.Release != tc.release || e.Path != tc.path {
				t.Errorf("%s%s went to %s (path %s), want %s", tc.host, tc.path, e.Release, e.Path, tc.release)
			}
		}
	})

	t.Run("forwarded headers", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, rp.http+"/x?q=1", nil)
		req.Host = "shop.test"
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim is not passed on
		req.Header.Set("X-Custom", "kept")
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "dropped")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e := decodeEcho(t, string(b))
		h := http.Header(e.Headers)
		if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want 127.0.0.1 (the client's address only)", got)
		}
		if got := h.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto = %q, want http", got)
		}
		if got := h.Get("X-Forwarded-Host"); got != "shop.test" {
			t.Errorf("X-Forwarded-Host = %q, want shop.test", got)
		}
		if e.Host != "shop.test" {
			t.Errorf("Host = %q, want shop.test (passed unchanged)", e.Host)
		}
		if got := h.Get("X-Custom"); got != "kept" {
			t.Errorf("X-Custom = %q, want kept", got)
		}
		if got := h.Get("X-Hop"); got != "" {
			t.Errorf("X-Hop, named in Connection, was forwarded: %q", got)
		}
	})

	t.Run("HTTP/2 over TLS and h2c", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, body := get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, rp.https, "shop.test", "/api/h2")
		if resp.ProtoMajor != 2 {
			t.Errorf("HTTPS answered with %s, want HTTP/2", resp.Proto)
		}
		e := decodeEcho(t, body)
		if e.Release != "api-1" || http.Header(e.Headers).Get("X-Forwarded-Proto") != "https" {
			t.Errorf("over h2: release %s, X-Forwarded-Proto %q; want api-1, https", e.Release, http.Header(e.Headers).Get("X-Forwarded-Proto"))
		}

		protos := new(http.Protocols)
		protos.SetUnencryptedHTTP2(true)
		h2c := &http.Transport{Protocols: protos}
		defer h2c.CloseIdleConnections()
		resp, body = get(t, &http.Client{Transport: h2c, Timeout: 10 * time.Second}, rp.http, "shop.test", "/h2c")
		if resp.ProtoMajor != 2 || decodeEcho(t, body).Release != "web-1" {
			t.Errorf("h2c: %s, %s; want HTTP/2 to web-1", resp.Proto, body)
		}
	})

	t.Run("WebSocket", func(t *testing.T) {
		ws := dialWS(t, rp.http, "shop.test")
		defer ws.Close()
		for i := range 3 {
			if got := wsEcho(t, ws, fmt.Sprint("hello ", i)); got != fmt.Sprint("web-1: hello ", i) {
				t.Errorf("echo %d = %q", i, got)
			}
		}
	})

	t.Run("streaming", func(t *testing.T) {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, rp.http+"/stream?n=4&every=300ms", nil)
		req.Host = "shop.test"
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "web-1 0") {
			t.Fatalf("first event: %q, %v", line, err)
		}
		if first := time.Since(start); first > 600*time.Millisecond {
			t.Errorf("the first event came after %s; a streamed answer must be flushed as it comes (the whole took 1.2s)", first)
		}
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "web-1 3") {
			t.Errorf("the stream ended early: %q", rest)
		}
	})

	t.Run("client goes away", func(t *testing.T) {
		// A client that gives up on a long request ends the proxy's wait
		// for the upstream at once (counted 499, in 4xx; not an upstream
		// error), over HTTP/1.1, HTTP/1.1 over TLS and HTTP/2.
		h1tls := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		h2 := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		for _, tc := range []struct {
			name, base string
			tr         *http.Transport
			proto      int
		}{
			{"HTTP/1.1", rp.http, &http.Transport{}, 1},
			{"HTTP/1.1 over TLS", rp.https, h1tls, 1},
			{"HTTP/2", rp.https, h2, 2},
		} {
			defer tc.tr.CloseIdleConnections()
			// A first request opens the connection, so that the one
			// given up on goes over a kept-alive one.
			if resp, _ := get(t, &http.Client{Transport: tc.tr}, tc.base, "shop.test", "/"); resp.ProtoMajor != tc.proto {
				t.Fatalf("%s: answered over %s", tc.name, resp.Proto)
			}
			gone := p.m.requests.WithLabelValues("prod", "web", "web-1", "4xx")
			before := testutil.ToFloat64(gone)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.base+"/slow?d=8s", nil)
			req.Host = "shop.test"
			if _, err := (&http.Client{Transport: tc.tr}).Do(req); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: the request given up on: %v", tc.name, err)
			}
			cancel()
			deadline := time.Now().Add(3 * time.Second)
			for testutil.ToFloat64(gone) == before && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := testutil.ToFloat64(gone); n != before+1 {
				t.Errorf("%s: 4xx of web-1 went from %v to %v within 3s of the client going; want one more (499), long before the upstream's 8s answer", tc.name, before, n)
			}
			if n := testutil.ToFloat64(p.m.inflight.WithLabelValues("prod", "web")); n != 0 {
				t.Errorf("%s: %v requests still in flight after the client went", tc.name, n)
			}
		}
		if n := testutil.ToFloat64(p.m.upErrors.WithLabelValues("prod", "web", "web-1")); n != 0 {
			t.Errorf("upstream errors of web-1 = %v; a client going away is not the upstream's failure", n)
		}
	})

	t.Run("request bodies", func(t *testing.T) {
		small := bytes.Repeat([]byte("a"), 512<<10)
		sum := sha256.Sum256(small)
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(small)
			if chunked {
				body = io.MultiReader(bytes.NewReader(small)) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, rp.http+"/upload", body)
			req.Host = "shop.test"
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %s\n", len(small), hex.EncodeToString(sum[:])); string(b) != want {
				t.Errorf("upload (chunked %v): %d %q, want %q", chunked, resp.StatusCode, b, want)
			}
		}
		big := bytes.Repeat([]byte("b"), 2<<20)
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(big)
			if chunked {
				body = io.MultiReader(bytes.NewReader(big))
			}
			req, _ := http.NewRequest(http.MethodPost, rp.http+"/upload", body)
			req.Host = "shop.test"
			resp, err := hc.Do(req)
			if err != nil {
				// The proxy may close before the client sent it all.
				if !chunked {
					t.Fatalf("a body over max_body: %v", err)
				}
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get(ErrorHeader) != "body-too-large" {
				t.Errorf("a body of 2 MiB over max_body 1 MiB (chunked %v): %d %s %q, want 413 body-too-large", chunked, resp.StatusCode, resp.Header.Get(ErrorHeader), b)
			}
		}
		if n := testutil.ToFloat64(p.m.tooLarge); n < 1 {
			t.Errorf("gantry_proxy_body_too_large_total = %v, want at least 1", n)
		}
	})

	t.Run("no route", func(t *testing.T) {
		// Only staging's any-host route covers other hosts; take it away.
		if err := p.SetRoutes([]Route{{Env: "staging", Service: "web", Host: "staging.test", Path: "/"}}, []string{"staging"}); err != nil {
			t.Fatal(err)
		}
		resp, body := get(t, hc, rp.http, "unknown.test", "/")
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get(ErrorHeader) != "no-route" {
			t.Errorf("unknown host: %d %s, want 404 no-route", resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
		if !strings.Contains(body, "No route") {
			t.Errorf("404 page: %s", body)
		}
		// The route kept its release through SetRoutes.
		resp, body = get(t, hc, rp.http, "staging.test", "/")
		if resp.StatusCode != http.StatusOK || decodeEcho(t, body).Release != "admin-1" {
			t.Errorf("staging.test: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("maintenance", func(t *testing.T) {
		if err := p.SetMaintenance("prod", true, "Back at 14:00 UTC."); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/", "/api/x"} {
			resp, body := get(t, hc, rp.http, "shop.test", path)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ErrorHeader) != "maintenance" ||
				!strings.Contains(body, "Back at 14:00 UTC.") || resp.Header.Get("Retry-After") == "" {
				t.Errorf("maintenance %s: %d %s %q", path, resp.StatusCode, resp.Header.Get(ErrorHeader), body)
			}
		}
		// Another environment keeps serving.
		if resp, _ := get(t, hc, rp.http, "staging.test", "/"); resp.StatusCode != http.StatusOK {
			t.Errorf("staging during prod's maintenance: %d", resp.StatusCode)
		}
		if err := p.SetMaintenance("prod", false, ""); err != nil {
			t.Fatal(err)
		}
		if resp, _ := get(t, hc, rp.http, "shop.test", "/"); resp.StatusCode != http.StatusOK {
			t.Errorf("after maintenance: %d", resp.StatusCode)
		}
		if n := testutil.ToFloat64(p.m.requests.WithLabelValues("prod", "web", "", "5xx")); n != 1 {
			t.Errorf("maintenance answers counted with release \"\": %v, want 1", n)
		}
	})

	t.Run("refused upstream", func(t *testing.T) {
		// A switch to an address that refuses connections changes nothing.
		_, err := p.Switch(context.Background(), SwitchRequest{Env: "prod", Service: "web", To: Upstream{Addr: testenv.ClosedPort(t), Release: "web-2"}})
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "does not accept connections") {
			t.Errorf("switch to a closed port: %v", err)
		}
		if resp, body := get(t, hc, rp.http, "shop.test", "/"); decodeEcho(t, body).Release != "web-1" {
			t.Errorf("after a refused switch: %d %s", resp.StatusCode, body)
		}
		// A release that stops answering after the switch: 502, counted.
		stopUpstream(t, admin)
		resp, body := get(t, hc, rp.http, "staging.test", "/")
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ErrorHeader) != "upstream-unreachable" ||
			!strings.Contains(body, "web in staging (release admin-1) is not answering") {
			t.Errorf("stopped upstream: %d %s %q", resp.StatusCode, resp.Header.Get(ErrorHeader), body)
		}
		if n := testutil.ToFloat64(p.m.upErrors.WithLabelValues("staging", "web", "admin-1")); n != 1 {
			t.Errorf("gantry_proxy_upstream_errors_total = %v, want 1", n)
		}
		if n := testutil.ToFloat64(p.m.requests.WithLabelValues("staging", "web", "admin-1", "5xx")); n != 1 {
			t.Errorf("requests_total{5xx} of admin-1 = %v, want 1", n)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if n := testutil.ToFloat64(p.m.requests.WithLabelValues("prod", "api", "api-1", "2xx")); n < 4 {
			t.Errorf("2xx of api-1 = %v, want at least 4", n)
		}
		if n := testutil.ToFloat64(p.m.switches.WithLabelValues("prod", "web", ReasonDeploy)); n != 1 {
			t.Errorf("switches of prod/web = %v, want 1", n)
		}
		if c := testutil.CollectAndCount(rp.reg, "gantry_proxy_request_duration_seconds"); c < 3 {
			t.Errorf("duration histograms: %d series, want one per release served (3)", c)
		}
		if n := testutil.ToFloat64(p.m.inflight.WithLabelValues("prod", "web")); n != 0 {
			t.Errorf("in flight after the requests ended: %v", n)
		}
	})
}

// TestSwitchUnderLoad switches a route from blue to green while a load
// generator sends 200 requests/s: no request fails, a long request in
// flight finishes on blue, and a WebSocket to blue stays open until the
// drain timeout, when it is cut.
func TestSwitchUnderLoad(t *testing.T) {
	project := testenv.Project(t, "switch")
	blue := startUpstream(t, project, "blue")
	green := startUpstream(t, project, "green")
	const drainTimeout = 2500 * time.Millisecond
	rp := startProxy(t, proxyConf{drain: drainTimeout})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", blue, ReasonDeploy)

	load := testenv.StartLoad(t, rp.http+"/", "shop.test", 200, 4*time.Second, releaseOf)
	time.Sleep(500 * time.Millisecond)

	// A long request and a WebSocket, both on blue.
	longDone := longRequest(rp.http, "shop.test", "/slow?d=2s", nil)
	ws := dialWS(t, rp.http, "shop.test")
	defer ws.Close()
	if got := wsEcho(t, ws, "before"); got != "blue: before" {
		t.Fatalf("WebSocket before the switch: %q", got)
	}
	time.Sleep(time.Second)

	res := mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", green, ReasonDeploy)
	switched := time.Now()
	if res.Previous == nil || res.Previous.Release != "blue" {
		t.Errorf("previous = %+v, want blue", res.Previous)
	}
	drained := startDrain(t, rp.p, "prod", "web", blue.addr)

	// New requests go to green at once; the WebSocket stays on blue.
	if _, body := get(t, http.DefaultClient, rp.http, "shop.test", "/"); decodeEcho(t, body).Release != "green" {
		t.Errorf("a request after the switch went to %s", body)
	}
	if got := wsEcho(t, ws, "after"); got != "blue: after" {
		t.Errorf("WebSocket after the switch: %q, want blue: after", got)
	}
	if got := <-longDone; got != "200 blue slept 2s" {
		t.Errorf("the long request in flight during the switch: %q, want 200 blue slept 2s", got)
	}

	// At the drain timeout, the WebSocket is cut.
	ws.SetReadDeadline(time.Now().Add(drainTimeout + 3*time.Second))
	var msg string
	err := websocket.Message.Receive(ws, &msg)
	closedAfter := time.Since(switched)
	if err == nil {
		t.Errorf("the WebSocket got %q instead of closing at the drain timeout", msg)
	} else if closedAfter < drainTimeout || closedAfter > drainTimeout+2*time.Second {
		t.Errorf("the WebSocket closed %s after the switch, want at the drain timeout (%s): %v", closedAfter, drainTimeout, err)
	}
	if r := <-drained; r.Cut != 1 {
		t.Errorf("drain cut %d, want 1 (the WebSocket)", r.Cut)
	}

	noFailures(t, load, "switch", "blue", "green")
	if n := testutil.ToFloat64(rp.p.m.drainCut.WithLabelValues("prod", "web")); n != 1 {
		t.Errorf("gantry_proxy_drain_cut_total = %v, want 1", n)
	}

	// Rollback is a switch back: counted as an abort.
	mustSwitch(t, rp.p, "prod", "web", "", "", blue, ReasonRollback)
	if _, body := get(t, http.DefaultClient, rp.http, "shop.test", "/"); decodeEcho(t, body).Release != "blue" {
		t.Errorf("after the switch back: %s", body)
	}
	if n := testutil.ToFloat64(rp.p.m.aborts.WithLabelValues("prod", "web")); n != 1 {
		t.Errorf("gantry_proxy_aborts_total = %v, want 1", n)
	}
}

// TestRestartKeepsRoutes restarts the proxy in the middle of a load: it
// comes back on the same address with the same routes and releases.
func TestRestartKeepsRoutes(t *testing.T) {
	project := testenv.Project(t, "restart")
	blue := startUpstream(t, project, "blue")
	green := startUpstream(t, project, "green")
	state := t.TempDir() + "/state.json"
	rp := startProxy(t, proxyConf{stateFile: state})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", blue, ReasonDeploy)
	mustSwitch(t, rp.p, "prod", "api", "shop.test", "/api", green, ReasonDeploy)
	if err := rp.p.SetMaintenance("staging", true, "later"); err != nil {
		t.Fatal(err)
	}
	before := rp.p.State().State

	load := testenv.StartLoad(t, rp.http+"/", "shop.test", 100, 3*time.Second, releaseOf)
	time.Sleep(time.Second)
	rp.stop()
	if <-rp.stopped; rp.err != nil {
		t.Fatalf("proxy stop: %v", rp.err)
	}
	rp2 := startProxy(t, proxyConf{stateFile: state, listen: strings.TrimPrefix(rp.http, "http://")})
	restarted := time.Now()
	after := rp2.p.State().State
	if !sameRoutes(before, after) {
		t.Errorf("routes after the restart:\n%+v\nwant\n%+v", after, before)
	}
	st := load.Wait()
	if n := st.FailedAfter(restarted); n != 0 {
		t.Errorf("%d requests failed after the restart: %v", n, st.Errors)
	}
	if _, body := get(t, http.DefaultClient, rp2.http, "shop.test", "/api/x"); decodeEcho(t, body).Release != "green" {
		t.Errorf("api after the restart: %s", body)
	}
	if resp, _ := get(t, http.DefaultClient, rp2.http, "shop.test", "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("web after the restart: %d", resp.StatusCode)
	}
}

func sameRoutes(a, b State) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestAdminAPI changes the proxy through its Unix socket, as the deploy
// engine does, including bad input that changes nothing.
func TestAdminAPI(t *testing.T) {
	project := testenv.Project(t, "admin")
	blue := startUpstream(t, project, "blue")
	rp := startProxy(t, proxyConf{})
	c := NewClient(rp.admin)
	ctx := context.Background()
	if err := c.SetRoutes(ctx, []Route{{Env: "prod", Service: "web", Host: "shop.test", Path: "/"}, {Env: "prod", Service: "api", Host: "shop.test", Path: "/api/"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Switch(ctx, SwitchRequest{Env: "prod", Service: "web", To: Upstream{Addr: blue.addr, Release: "blue"}, Reason: ReasonDeploy}); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, http.DefaultClient, rp.http, "shop.test", "/"); decodeEcho(t, body).Release != "blue" {
		t.Errorf("after a switch through the socket: %s", body)
	}
	before, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"overlapping routes": func() error {
			return c.SetRoutes(ctx, []Route{{Env: "prod", Service: "web", Host: "shop.test", Path: "/"}, {Env: "prod", Service: "shop", Host: "shop.test", Path: "/"}}, nil)
		},
		"invalid host": func() error {
			return c.SetRoutes(ctx, []Route{{Env: "prod", Service: "web", Host: "shop_test!", Path: "/"}}, nil)
		},
		"unknown route": func() error {
			_, err := c.Switch(ctx, SwitchRequest{Env: "prod", Service: "nope", To: Upstream{Addr: blue.addr}})
			return err
		},
		"bad reason": func() error {
			_, err := c.Switch(ctx, SwitchRequest{Env: "prod", Service: "web", To: Upstream{Addr: blue.addr}, Reason: "whim"})
			return err
		},
		"drain the active upstream": func() error {
			_, err := c.Drain(ctx, DrainRequest{Env: "prod", Service: "web", Addr: blue.addr})
			return err
		},
	} {
		err := call()
		if !errors.Is(err, ErrInput) && !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want a bad-input error", name, err)
		}
	}
	after, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !sameRoutes(before.State, after.State) {
		t.Errorf("bad input changed the state:\n%+v\n%+v", after.State, before.State)
	}
	// No proxy on a socket: a clear error.
	_, err = NewClient(t.TempDir() + "/none.sock").State(ctx)
	if !errors.Is(err, ErrNoProxy) || !strings.Contains(err.Error(), "gantry proxy") {
		t.Errorf("no proxy: %v", err)
	}
}

func dialWS(t testing.TB, base, host string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig(strings.Replace(base, "http://", "ws://", 1)+"/ws", "http://"+host)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{}
	cfg.Dialer = &net.Dialer{Timeout: 5 * time.Second}
	// The Host header routes; the websocket package sends the URL's host.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Location.Host = host
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		t.Fatalf("WebSocket through the proxy: %v", err)
	}
	return ws
}

func wsEcho(t testing.TB, ws *websocket.Conn, msg string) string {
	t.Helper()
	ws.SetDeadline(time.Now().Add(5 * time.Second))
	defer ws.SetDeadline(time.Time{})
	if err := websocket.Message.Send(ws, msg); err != nil {
		t.Fatalf("WebSocket send: %v", err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil {
		t.Fatalf("WebSocket receive: %v", err)
	}
	return got
}

// longRequest sends a GET through the proxy in the background and
// delivers "STATUS BODY" (or the error) when it ends.
func longRequest(base, host, path string, header http.Header) <-chan string {
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Host = host
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}()
	return done
}

// startDrain drains an upstream in the background.
func startDrain(t testing.TB, p *Proxy, env, service, addr string) <-chan DrainResult {
	drained := make(chan DrainResult, 1)
	go func() {
		r, err := p.Drain(context.Background(), DrainRequest{Env: env, Service: service, Addr: addr})
		if err != nil {
			t.Error(err)
		}
		drained <- r
	}()
	return drained
}

// noFailures waits for a load across a change and wants every request
// answered by the application, some by each of the releases.
func noFailures(t testing.TB, load *testenv.Load, change string, releases ...string) {
	t.Helper()
	st := load.Wait()
	t.Logf("load: %d requests, %d failed, by release %v", st.Total, st.Failed, st.ByKey)
	if st.Failed != 0 {
		t.Errorf("%d of %d requests failed across the %s: %v", st.Failed, st.Total, change, st.Errors)
	}
	for _, r := range releases {
		if st.ByKey[r] == 0 {
			t.Errorf("requests by release %v: want some on %s", st.ByKey, r)
		}
	}
}

// releaseOf is the load's check: a 200 from the test application, counted
// by the release that answered; the proxy's own answers fail.
func releaseOf(resp *http.Response, body []byte) (string, error) {
	var e echo
	switch {
	case resp.StatusCode != http.StatusOK || resp.Header.Get(ErrorHeader) != "":
		return "", fmt.Errorf("status %d %s", resp.StatusCode, resp.Header.Get(ErrorHeader))
	case json.Unmarshal(body, &e) != nil || e.Release == "":
		return "", fmt.Errorf("not the application's answer: %.100s", body)
	}
	return e.Release, nil
}
