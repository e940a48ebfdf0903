package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so that a
// benchmark of ServeHTTP measures the proxy and the upstream round trip.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkServeHTTP measures one proxied GET over a kept-alive loopback
// connection to a real upstream, with its allocations: the hot path's
// budget. Run: go test -run x -bench ServeHTTP -benchmem ./internal/proxy
// benchUpstream is a small upstream answering a constant, on loopback.
func benchUpstream(b *testing.B) string {
	body := []byte("hello from upstream\n")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	b.Cleanup(up.Close)
	return up.Listener.Addr().String()
}

func BenchmarkServeHTTP(b *testing.B) {
	p, err := New(Options{StateFile: filepath.Join(b.TempDir(), "state.json")})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Switch(b.Context(), SwitchRequest{Env: "bench", Service: "web", Path: "/", To: Upstream{Addr: benchUpstream(b), Release: "1"}}); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://shop.example/index.html", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		p.ServeHTTP(w, req)
	}
}

// BenchmarkServeHTTPCanary is BenchmarkServeHTTP on a route with a canary
// at weight 50, sticky by a header: the pick's cost and the step's
// statistics, beside the round trip.
func BenchmarkServeHTTPCanary(b *testing.B) {
	body := []byte("hello from upstream\n")
	var addrs [2]string
	for i := range addrs {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}))
		defer up.Close()
		addrs[i] = up.Listener.Addr().String()
	}
	p, err := New(Options{StateFile: filepath.Join(b.TempDir(), "state.json")})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Switch(b.Context(), SwitchRequest{Env: "bench", Service: "web", Path: "/", To: Upstream{Addr: addrs[0], Release: "1"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := p.SetCanary(b.Context(), CanaryRequest{Env: "bench", Service: "web", To: Upstream{Addr: addrs[1], Release: "2"}, Weight: 50, Sticky: Sticky{Header: "X-User-Id"}}); err != nil {
		b.Fatal(err)
	}
	reqs := make([]*http.Request, 64)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "http://shop.example/index.html", nil)
		reqs[i].RemoteAddr = "127.0.0.1:40000"
		reqs[i].Header.Set("X-User-Id", strconv.Itoa(i))
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		p.ServeHTTP(w, reqs[i%len(reqs)])
	}
}

// BenchmarkLookup is the routing table's lookup: no allocation.
func BenchmarkLookup(b *testing.B) {
	p, err := New(Options{StateFile: filepath.Join(b.TempDir(), "state.json")})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	routes := []Route{
		{Env: "prod", Service: "web", Host: "shop.example", Path: "/"},
		{Env: "prod", Service: "api", Host: "shop.example", Path: "/api"},
		{Env: "prod", Service: "admin", Host: "admin.shop.example", Path: "/"},
		{Env: "staging", Service: "web", Path: "/"},
	}
	if err := p.SetRoutes(routes, nil); err != nil {
		b.Fatal(err)
	}
	t := p.tbl.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if e := t.lookup("shop.example:443", "/api/orders/17"); e == nil || e.Service != "api" {
			b.Fatal("wrong route")
		}
	}
}

// BenchmarkSwitch is a switch of a route between two upstreams: the state
// saved, the table rebuilt and swapped. What a rollback waits for.
func BenchmarkSwitch(b *testing.B) {
	ups := [2]string{}
	for i := range ups {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		ups[i] = ln.Addr().String()
	}
	p, err := New(Options{StateFile: filepath.Join(b.TempDir(), "state.json")})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Switch(b.Context(), SwitchRequest{Env: "prod", Service: "web", Path: "/", To: Upstream{Addr: ups[i%2]}, Reason: ReasonRollback}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeConn is one proxied GET through the proxy's listener, on a
// kept-alive client connection, one request at a time: the whole server
// path (the HTTP/1.1 loop, the handler, the upstream round trip) with its
// allocations. Run: go test -run x -bench ServeConn -benchmem ./internal/proxy
func BenchmarkServeConn(b *testing.B) {
	r := startProxy(b, proxyConf{})
	if _, err := r.p.Switch(b.Context(), SwitchRequest{Env: "bench", Service: "web", Path: "/", To: Upstream{Addr: benchUpstream(b), Release: "1"}}); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(r.http, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /index.html HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
			b.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		resp.Body.Close()
	}
}
