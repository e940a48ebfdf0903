package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	p, err := New(Options{StateFile: filepath.Join(t.TempDir(), "state.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetRoutes([]Route{
		{Env: "prod", Service: "web", Host: "shop.example", Path: "/"},
		{Env: "prod", Service: "api", Host: "shop.example", Path: "/api/"},
		{Env: "prod", Service: "v2", Host: "shop.example", Path: "/api/v2"},
		{Env: "prod", Service: "admin", Host: "admin.shop.example", Path: "/"},
		{Env: "staging", Service: "web", Path: "/"},
		{Env: "staging", Service: "docs", Path: "/docs"},
		{Env: "ip", Service: "web", Host: "::1", Path: "/"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	tbl := p.tbl.Load()
	for _, tc := range []struct {
		host, path, want string
	}{
		{"shop.example", "/", "prod/web"},
		{"shop.example", "/cart", "prod/web"},
		{"shop.example", "/api", "prod/api"},
		{"shop.example", "/api/", "prod/api"},
		{"shop.example", "/api/orders", "prod/api"},
		{"shop.example", "/apis", "prod/web"},
		{"shop.example", "/api/v2/x", "prod/v2"},
		{"shop.example", "/api/v20", "prod/api"},
		{"Shop.Example", "/api", "prod/api"},
		{"shop.example:8443", "/api", "prod/api"},
		{"shop.example.", "/", "prod/web"},
		{"admin.shop.example", "/api", "prod/admin"},
		{"other.example", "/docs/intro", "staging/docs"},
		{"other.example", "/", "staging/web"},
		{"", "/", "staging/web"},
		{"[::1]:80", "/", "ip/web"},
		{"[::1]", "/x", "ip/web"},
	} {
		e := tbl.lookup(tc.host, tc.path)
		got := "none"
		if e != nil {
			got = e.Env + "/" + e.Service
		}
		if got != tc.want {
			t.Errorf("lookup(%q, %q) = %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { tbl.lookup("shop.example:443", "/api/orders/1") }); allocs != 0 {
		t.Errorf("a lookup allocates %v times, want 0", allocs)
	}
}

func TestCheckRoutes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes []Route
		err    string
	}{
		{"good", []Route{{Env: "a", Service: "web", Host: "Shop.Example.", Path: "/"}, {Env: "a", Service: "api", Host: "shop.example", Path: "/api/"}}, ""},
		{"same place", []Route{{Env: "a", Service: "web", Host: "shop.example", Path: "/api"}, {Env: "b", Service: "api", Host: "shop.example", Path: "/api/"}},
			"the route of api in b overlaps the route of web in a (shop.example, path /api)"},
		{"same place any host", []Route{{Env: "a", Service: "web"}, {Env: "b", Service: "web", Path: "/"}}, "(any host, path /)"},
		{"two routes of a service", []Route{{Env: "a", Service: "web", Host: "x.example"}, {Env: "a", Service: "web", Host: "y.example"}}, "two routes for web in a"},
		{"bad host", []Route{{Env: "a", Service: "web", Host: "-shop.example"}}, `"-shop.example" is not a valid host name`},
		{"host with port", []Route{{Env: "a", Service: "web", Host: "shop.example:80"}}, "is not a valid host name"},
		{"bad path", []Route{{Env: "a", Service: "web", Path: "api"}}, `"api" is not a path prefix`},
		{"query in path", []Route{{Env: "a", Service: "web", Path: "/api?x=1"}}, "is not a path prefix"},
		{"no service", []Route{{Env: "a"}}, "needs its environment and service"},
		{"bad upstream", []Route{{Env: "a", Service: "web", Upstream: &Upstream{Addr: "localhost"}}}, `"localhost" is not an upstream address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRoutes(tc.routes)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("checkRoutes: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("checkRoutes = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

// TestWriteHead checks the request head sent upstream: hop-by-hop headers
// and the client's X-Forwarded-* dropped, ours set, the length framed.
func TestWriteHead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		req     func() *http.Request
		bodyLen int64
		want    []string
		notWant []string
	}{
		{"get", func() *http.Request {
			r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader("GET /a/b?c=d HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nAccept: */*\r\nExpect: 100-continue\r\n\r\n")))
			r.RemoteAddr = "10.0.0.7:5555"
			return r
		}, 0,
			[]string{"GET /a/b?c=d HTTP/1.1\r\nHost: shop.example\r\n", "Accept: */*\r\n", "X-Forwarded-For: 10.0.0.7\r\n", "X-Forwarded-Proto: http\r\n", "X-Forwarded-Host: shop.example\r\n\r\n"},
			[]string{"6.6.6.6", "X-Hop", "Keep-Alive", "Connection", "Expect", "Content-Length"}},
		{"post over tls from ipv6", func() *http.Request {
			r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader("POST /up HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\n\r\nhello")))
			r.RemoteAddr = "[2001:db8::1]:5555"
			r.TLS = &tls.ConnectionState{}
			return r
		}, 5,
			[]string{"POST /up HTTP/1.1\r\n", "X-Forwarded-For: 2001:db8::1\r\n", "X-Forwarded-Proto: https\r\n", "Content-Length: 5\r\n\r\n"}, nil},
		{"chunked", func() *http.Request {
			r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader("PUT /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")))
			r.RemoteAddr = "127.0.0.1:1"
			return r
		}, -1,
			[]string{"Transfer-Encoding: chunked\r\n\r\n"}, []string{"Content-Length"}},
		{"empty post", func() *http.Request {
			r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader("POST /x HTTP/1.1\r\nHost: a\r\n\r\n")))
			r.RemoteAddr = "127.0.0.1:1"
			return r
		}, 0,
			[]string{"Content-Length: 0\r\n\r\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			bw := bufio.NewWriter(&b)
			writeHead(bw, tc.req(), tc.bodyLen)
			bw.Flush()
			head := b.String()
			for _, w := range tc.want {
				if !strings.Contains(head, w) {
					t.Errorf("head lacks %q:\n%s", w, head)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(head, nw) {
					t.Errorf("head has %q:\n%s", nw, head)
				}
			}
			if strings.Count(head, "\r\n\r\n") != 1 || !strings.HasSuffix(head, "\r\n\r\n") {
				t.Errorf("head does not end once with a blank line:\n%q", head)
			}
		})
	}
}

// TestStateFile checks that the state survives a new Proxy, that a change
// that cannot be saved does not take effect, and that a broken state file
// is a clear error.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy", "state.json")
	p, err := New(Options{StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	routes := []Route{{Env: "prod", Service: "web", Host: "shop.example", Path: "/"}}
	if err := p.SetRoutes(routes, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.SetMaintenance("prod", true, "soon"); err != nil {
		t.Fatal(err)
	}
	p2, err := New(Options{StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if st := p2.State(); len(st.Routes) != 1 || st.Routes[0].Host != "shop.example" || st.Maintenance["prod"].Message != "soon" {
		t.Errorf("state after a new start: %+v", st)
	}
	// A state that cannot be written changes nothing: a directory (not
	// empty) where the file goes makes the rename fail, even for root.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := p2.SetMaintenance("prod", false, ""); err == nil {
		t.Error("a change that could not be saved succeeded")
	}
	if _, on := p2.State().Maintenance["prod"]; !on {
		t.Error("a change that could not be saved took effect")
	}
	os.RemoveAll(path)
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{StateFile: path}); err == nil || !strings.Contains(err.Error(), "is not valid JSON") || !strings.Contains(err.Error(), "move it away") {
		t.Errorf("a broken state file: %v", err)
	}
}
