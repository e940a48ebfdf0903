package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantryhq/gantry/internal/testenv"
)

// rawConn is a client connection that writes bytes as they are and reads
// answers one by one, to see what the proxy's HTTP/1.1 loop does with each
// kind of request on one connection.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, base string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// answer reads one answer to a request of method; its body is read whole.
func (r *rawConn) answer(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read the answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("read the body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// closed says whether the proxy closed the connection (EOF within a
// second).
func (r *rawConn) closed() bool {
	r.c.SetReadDeadline(time.Now().Add(time.Second))
	defer r.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := r.br.ReadByte()
	return err == io.EOF
}

func get11(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: raw\r\n\r\n"
}

func TestHTTP1Loop(t *testing.T) {
	project := testenv.Project(t, "h1")
	web := startUpstream(t, project, "web-1")
	rp := startProxy(t, proxyConf{maxBody: 1 << 20})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", web, ReasonDeploy)

	wantEcho := func(t *testing.T, resp *http.Response, body, path string) {
		t.Helper()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
		}
		if e := decodeEcho(t, body); e.Path != path || e.Release != "web-1" {
			t.Fatalf("%s: answered for %s on %s", path, e.Path, e.Release)
		}
	}

	t.Run("pipelined requests answered in order", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send(get11("/a") + get11("/b?x=1") + get11("/c"))
		for _, p := range []string{"/a", "/b", "/c"} {
			resp, body := c.answer(http.MethodGet)
			wantEcho(t, resp, body, p)
			if resp.Header.Get("Date") == "" {
				t.Errorf("%s: no Date header", p)
			}
		}
	})

	t.Run("a body, 100-continue and HTTP/1.0 after plain requests on one connection", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send(get11("/first"))
		resp, body := c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/first")

		payload := strings.Repeat("gantry", 1000)
		sum := sha256.Sum256([]byte(payload))
		want := fmt.Sprintf("%d %s\n", len(payload), hex.EncodeToString(sum[:]))
		c.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: %d\r\n\r\n%s", len(payload), payload))
		if resp, body := c.answer(http.MethodPost); resp.StatusCode != 200 || body != want {
			t.Fatalf("upload: %d %q, want %q", resp.StatusCode, body, want)
		}

		// The connection is net/http's now, and still serves.
		c.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: shop.test\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(payload)))
		interim, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodPost})
		if err != nil || interim.StatusCode != http.StatusContinue {
			t.Fatalf("want 100 Continue first, got %v %v", interim, err)
		}
		c.send(payload)
		if resp, body := c.answer(http.MethodPost); resp.StatusCode != 200 || body != want {
			t.Fatalf("upload after 100-continue: %d %q", resp.StatusCode, body)
		}
		c.send(get11("/after"))
		resp, body = c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/after")

		c10 := dialRaw(t, rp.http)
		c10.send("GET /old HTTP/1.0\r\nHost: shop.test\r\n\r\n")
		resp, body = c10.answer(http.MethodGet)
		wantEcho(t, resp, body, "/old")
		if !c10.closed() {
			t.Error("an HTTP/1.0 request without keep-alive should end its connection")
		}
	})

	t.Run("HEAD, 204 and 304 carry no body", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send("HEAD /h HTTP/1.1\r\nHost: shop.test\r\n\r\n" + get11("/status?code=204") + get11("/status?code=304") + get11("/next"))
		if resp, body := c.answer(http.MethodHead); resp.StatusCode != 200 || body != "" {
			t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
		}
		for _, code := range []int{204, 304} {
			resp, body := c.answer(http.MethodGet)
			if resp.StatusCode != code || body != "" || len(resp.TransferEncoding) > 0 {
				t.Fatalf("want %d without a body, got %d %q %v", code, resp.StatusCode, body, resp.TransferEncoding)
			}
		}
		resp, body := c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/next")
	})

	t.Run("a streamed answer is chunked and flushed", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send(get11("/stream?n=3&every=300ms"))
		resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
		}
		start := time.Now()
		first, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || first != "data: web-1 0\n" {
			t.Fatalf("first line %q, %v", first, err)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Errorf("the first event came after %s: it was held back, not flushed", d)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.send(get11("/again"))
		r2, body := c.answer(http.MethodGet)
		wantEcho(t, r2, body, "/again")
	})

	t.Run("Connection: close is honoured", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send("GET /bye HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
		resp, body := c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/bye")
		if !resp.Close {
			t.Error("the answer should say Connection: close")
		}
		if !c.closed() {
			t.Error("the connection should be closed after the answer")
		}
	})

	t.Run("large heads and escaped paths", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		cookie := strings.Repeat("k", 12<<10) // larger than the loop's buffer
		c.send("GET /big HTTP/1.1\r\nHost: shop.test\r\nCookie: id=" + cookie + "\r\n\r\n")
		resp, body := c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/big")
		c2 := dialRaw(t, rp.http)
		c2.send(get11("/a%20b/c?q=%2F"))
		resp, body = c2.answer(http.MethodGet)
		wantEcho(t, resp, body, "/a b/c")
	})

	t.Run("malformed requests get 400 from net/http", func(t *testing.T) {
		for name, req := range map[string]string{
			"no Host":        "GET / HTTP/1.1\r\n\r\n",
			"two Hosts":      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
			"bad host":       "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
			"bad header key": "GET / HTTP/1.1\r\nHost: shop.test\r\nX A: 1\r\n\r\n",
			"not HTTP":       "HELLO, THIS IS NOT HTTP AT ALL\r\n\r\n",
		} {
			c := dialRaw(t, rp.http)
			c.send(req)
			start := time.Now()
			resp, _ := c.answer(http.MethodGet)
			t.Logf("%s: %d after %s", name, resp.StatusCode, time.Since(start))
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
			}
		}
	})

	t.Run("a client gone with a request pipelined behind its long one is noticed", func(t *testing.T) {
		gone := rp.p.m.requests.WithLabelValues("prod", "web", "web-1", "4xx")
		before := testutil.ToFloat64(gone)
		c := dialRaw(t, rp.http)
		c.send(get11("/slow?d=8s") + get11("/next"))
		time.Sleep(100 * time.Millisecond)
		c.c.Close()
		deadline := time.Now().Add(3 * time.Second)
		for testutil.ToFloat64(gone) == before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := testutil.ToFloat64(gone); n != before+1 {
			t.Errorf("4xx of web-1 went from %v to %v within 3s of the client going; want one more (499), long before the upstream's 8s answer", before, n)
		}
	})

	t.Run("a body over max_body is refused 413, and the client reads it", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send("POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 4194304\r\n\r\n" + strings.Repeat("x", 64<<10))
		resp, _ := c.answer(http.MethodPost)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	})

	t.Run("a client that sends nothing more is closed after the idle timeout only", func(t *testing.T) {
		c := dialRaw(t, rp.http)
		c.send(get11("/idle"))
		resp, body := c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/idle")
		if c.closed() {
			t.Fatal("a kept-alive connection was closed at once")
		}
		c.send(get11("/still"))
		resp, body = c.answer(http.MethodGet)
		wantEcho(t, resp, body, "/still")
	})
}

// FuzzParseHead compares the loop's parse of a request head with
// net/http's: a head the loop takes must mean the same to both.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		get11("/"),
		"GET /a?b=c HTTP/1.1\r\nHost: x:80\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
		"HEAD /%41 HTTP/1.1\r\nhost: [::1]:8080\r\nconnection: close\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"DELETE /x# HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nA:\t v \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		n := headEnd(head)
		if n == 0 || n > h1BufSize {
			return
		}
		c := &h1Conn{br: bufio.NewReaderSize(bytes.NewReader(head), h1BufSize), req: &http.Request{}}
		if _, err := c.br.Peek(n); err != nil {
			return
		}
		if err := c.parse(n); err != nil {
			return
		}
		got := c.req
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head[:n])))
		if err != nil {
			t.Fatalf("the loop took %q, which net/http refuses: %v", head[:n], err)
		}
		if got.Method != want.Method || got.Host != want.Host || got.RequestURI != want.RequestURI ||
			got.URL.Path != want.URL.Path || got.URL.RawQuery != want.URL.RawQuery || got.Close != want.Close ||
			got.ContentLength != want.ContentLength {
			t.Fatalf("%q: loop %s %s %s path %q query %q close %v len %d; net/http %s %s %s path %q query %q close %v len %d",
				head[:n], got.Method, got.Host, got.RequestURI, got.URL.Path, got.URL.RawQuery, got.Close, got.ContentLength,
				want.Method, want.Host, want.RequestURI, want.URL.Path, want.URL.RawQuery, want.Close, want.ContentLength)
		}
		for k, v := range want.Header {
			if strings.Join(got.Header[k], "\x00") != strings.Join(v, "\x00") {
				t.Fatalf("%q: header %s: loop %q, net/http %q", head[:n], k, got.Header[k], v)
			}
		}
		for k := range got.Header {
			if _, ok := want.Header[k]; !ok {
				t.Fatalf("%q: the loop has header %s, net/http not", head[:n], k)
			}
		}
	})
}

// TestHTTP1Timeouts runs the loop alone with short timeouts: a new
// connection must send its first request within the header timeout; a
// kept-alive one may then wait for the idle timeout.
func TestHTTP1Timeouts(t *testing.T) {
	p, err := New(Options{StateFile: t.TempDir() + "/state.json"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newH1Server(p, &http.Server{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 3 * time.Second}, ln)
	go s.serve()
	t.Cleanup(func() { s.shutdown(t.Context()) })
	base := "http://" + ln.Addr().String()

	silent := dialRaw(t, base)
	start := time.Now()
	silent.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.br.ReadByte(); err != io.EOF {
		t.Fatalf("a silent new connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a silent new connection was closed after %s; want the header timeout (300ms)", d)
	}

	kept := dialRaw(t, base)
	kept.send(get11("/"))
	if resp, _ := kept.answer(http.MethodGet); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404 (no route)", resp.StatusCode)
	}
	time.Sleep(time.Second) // past the header timeout, within the idle one
	kept.send(get11("/"))
	if resp, _ := kept.answer(http.MethodGet); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after a second idle: status %d, want 404", resp.StatusCode)
	}
}

// TestHTTP1ShutdownEndsKeepAlive: an answer given while the proxy shuts
// down says Connection: close and ends its connection.
func TestHTTP1ShutdownEndsKeepAlive(t *testing.T) {
	project := testenv.Project(t, "h1stop")
	web := startUpstream(t, project, "web-1")
	rp := startProxy(t, proxyConf{})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", web, ReasonDeploy)
	c := dialRaw(t, rp.http)
	c.send(get11("/slow?d=600ms"))
	time.Sleep(200 * time.Millisecond)
	rp.stop()
	resp, body := c.answer(http.MethodGet)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "slept") {
		t.Fatalf("the request in flight: %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("an answer during shutdown should say Connection: close")
	}
	if !c.closed() {
		t.Error("the connection should end after the answer during shutdown")
	}
}

// TestWatchStartsOncePerRequest: a watch is started only for the request
// it was meant for, once, and never after that request ended.
func TestWatchStartsOncePerRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	c := &h1Conn{nc: server, watchDone: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()

	at := time.Now().UnixNano()
	c.reqAt.Store(at)
	c.startWatch(at)
	c.startWatch(at) // a second pass of the loop: no second read
	c.stopWatch()
	if len(c.watchDone) != 0 {
		t.Fatal("a second watch read was started for one request")
	}
	c.startWatch(at) // late, after the request ended
	if c.watching {
		t.Fatal("a watch started after its request ended")
	}
	c.watchMu.Lock()
	c.stopped = false
	c.reqAt.Store(at + 1) // the next request
	c.watchMu.Unlock()
	c.startWatch(at) // meant for the one before
	if c.watching {
		t.Fatal("a watch meant for the last request started for the next")
	}
	client.Write([]byte("G"))
	c.startWatch(at + 1)
	time.Sleep(100 * time.Millisecond) // the read takes the byte already sent
	c.stopWatch()
	if !c.cr.hasPending || c.cr.pending != 'G' {
		t.Fatal("the byte the watch read was not kept for the next request")
	}
}
