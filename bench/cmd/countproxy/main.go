// Command countproxy is a reverse proxy in front of a registry that counts
// what clients send to it: request body bytes and requests, per HTTP method
// and per kind of path (blob upload, blob, manifest, ...). bench/push.sh puts
// it between gantry, crane and docker and the registry to measure how many
// bytes a copy between two repositories really sends.
//
// It serves its counts at GET /-/counts (JSON) and zeroes them at
// POST /-/reset; every other request goes to the registry. Both its
// address and the registry's must be on loopback: the bench never sends
// traffic off the machine.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	target := flag.String("target", "", "the registry, host:port on loopback")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file once listening")
	flag.Parse()
	if err := run(*listen, *target, *addrFile); err != nil {
		fmt.Fprintln(os.Stderr, "countproxy:", err)
		os.Exit(1)
	}
}

func run(listen, target, addrFile string) error {
	if !loopback(listen) || !loopback(target) {
		return fmt.Errorf("-listen %q and -target %q must both be loopback host:port", listen, target)
	}
	up := &url.URL{Scheme: "http", Host: target}
	c := &counts{m: map[key]*tally{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			// The registry builds upload Locations from Host: keep the
			// proxy's, so that clients come back through it.
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
		ErrorLog:      log.New(os.Stderr, "countproxy: ", 0),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/counts", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(c.snapshot())
	})
	mux.HandleFunc("POST /-/reset", func(w http.ResponseWriter, _ *http.Request) {
		c.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		k := key{Method: r.Method, Kind: kindOf(r.URL.Path)}
		body := &countingBody{r: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = body
		}
		cw := &countingWriter{ResponseWriter: w}
		rp.ServeHTTP(cw, r)
		c.add(k, body.n.Load(), headerBytes(r), cw.n)
	})

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func loopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// kindOf names the part of the distribution API a path belongs to.
func kindOf(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return "base"
	case !strings.HasPrefix(path, "/v2/"):
		return "other"
	case strings.Contains(path, "/blobs/uploads"):
		return "blob-upload"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}

// headerBytes is about what the request line and headers take on the wire.
func headerBytes(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.URL.RequestURI()) + len(r.Proto) + 4)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n + int64(len(r.Host)+8) + 2
}

type key struct{ Method, Kind string }

type tally struct {
	Requests      int64 `json:"requests"`
	BodyBytes     int64 `json:"body_bytes"`
	HeaderBytes   int64 `json:"header_bytes"`
	ResponseBytes int64 `json:"response_bytes"`
}

type counts struct {
	mu sync.Mutex
	m  map[key]*tally
}

func (c *counts) add(k key, body, header, resp int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.m[k]
	if t == nil {
		t = &tally{}
		c.m[k] = t
	}
	t.Requests++
	t.BodyBytes += body
	t.HeaderBytes += header
	t.ResponseBytes += resp
}

func (c *counts) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[key]*tally{}
}

// Snapshot is what GET /-/counts answers: the totals, and one row per
// method and kind of path.
type Snapshot struct {
	Total tally `json:"total"`
	Rows  []Row `json:"rows"`
}

type Row struct {
	Method string `json:"method"`
	Kind   string `json:"kind"`
	tally
}

func (c *counts) snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Snapshot
	for k, t := range c.m {
		s.Rows = append(s.Rows, Row{Method: k.Method, Kind: k.Kind, tally: *t})
		s.Total.Requests += t.Requests
		s.Total.BodyBytes += t.BodyBytes
		s.Total.HeaderBytes += t.HeaderBytes
		s.Total.ResponseBytes += t.ResponseBytes
	}
	sort.Slice(s.Rows, func(i, j int) bool {
		if s.Rows[i].Kind != s.Rows[j].Kind {
			return s.Rows[i].Kind < s.Rows[j].Kind
		}
		return s.Rows[i].Method < s.Rows[j].Method
	})
	return s
}

// countingBody counts the request body bytes the proxy reads, which are
// the bytes it forwards.
type countingBody struct {
	r io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.r.Close() }

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets the reverse proxy stream large blobs through.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
