package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backend is one release's upstream of one route: a container port
// published on loopback. It keeps its own pool of HTTP/1.1 connections and
// counts its requests in flight, so that a drain knows when the old release
// has finished.
type backend struct {
	env, service, addr, release string

	inflight atomic.Int64
	lastLog  atomic.Int64 // unix nanoseconds of the last failure logged
	pool     connPool
	codes    codeCounters
	dur      prometheus.Observer
	errs     prometheus.Counter
	// win counts the backend's answers over a canary step; nil when no
	// canary involves it.
	win atomic.Pointer[window]

	// upgraded holds the cancel functions of upgraded connections
	// (WebSockets), which a drain timeout cuts.
	upMu     sync.Mutex
	upgraded map[uint64]context.CancelFunc
	upSeq    uint64
	upgrader *httputil.ReverseProxy
}

func newBackend(m *metrics, env, service string, u Upstream, o *Options) *backend {
	b := &backend{env: env, service: service, addr: u.Addr, release: u.Release,
		codes:    m.codes(env, service, u.Release),
		dur:      m.duration.WithLabelValues(env, service, u.Release),
		errs:     m.upErrors.WithLabelValues(env, service, u.Release),
		upgraded: map[uint64]context.CancelFunc{},
	}
	b.codes.win = &b.win
	b.pool = connPool{addr: u.Addr, dialTimeout: o.DialTimeout, idleTimeout: o.IdleTimeout, maxIdle: o.MaxIdlePerUpstream}
	target := &url.URL{Scheme: "http", Host: u.Addr}
	b.upgrader = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		// Upgraded connections are not pooled: each has its own.
		Transport: &http.Transport{
			DialContext:        (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			DisableCompression: true,
			DisableKeepAlives:  true,
		},
		BufferPool: bufPool{},
		ErrorLog:   o.errorLog,
	}
	return b
}

// upConn is one pooled connection to a backend.
type upConn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	// abort ends a read of the answer: what a client that went away does.
	abort func()
}

func (c *upConn) close() { c.c.Close() }

// connPool is a LIFO pool of idle keep-alive connections to one address.
// LIFO keeps the hottest connections in use and lets the others expire.
type connPool struct {
	addr        string
	dialTimeout time.Duration
	idleTimeout time.Duration
	maxIdle     int

	mu     sync.Mutex
	idle   []*upConn
	open   map[*upConn]struct{} // every open connection, idle or busy
	closed bool                 // drained: connections are not kept
	// retired: no table has the backend any more (retire); connections
	// are not kept, even after a late request reopened one.
	retired bool
}

// aliveAfter is how long a connection may sit idle before it is checked for
// a close by the upstream (a server's keep-alive timeout) before reuse.
const aliveAfter = time.Second

func (p *connPool) get(ctx context.Context) (*upConn, error) {
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		idle := time.Since(c.idleAt)
		if idle > p.idleTimeout || (idle > aliveAfter && !connAlive(c.c)) {
			delete(p.open, c)
			p.mu.Unlock()
			c.close()
			p.mu.Lock()
			continue
		}
		p.closed = false
		p.mu.Unlock()
		c.reused = true
		return c, nil
	}
	p.closed = false
	p.mu.Unlock()
	d := net.Dialer{Timeout: p.dialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	rw := newRawIO(nc)
	c := &upConn{c: nc, br: bufio.NewReaderSize(rw, 16<<10), bw: bufio.NewWriterSize(rw, 8<<10)}
	c.abort = func() { nc.SetReadDeadline(aLongTimeAgo) }
	p.mu.Lock()
	if p.open == nil {
		p.open = map[*upConn]struct{}{}
	}
	p.open[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

func (p *connPool) put(c *upConn) {
	p.mu.Lock()
	if p.closed || p.retired || len(p.idle) >= p.maxIdle {
		delete(p.open, c)
		p.mu.Unlock()
		c.close()
		return
	}
	c.idleAt = time.Now()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *connPool) discard(c *upConn) {
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
	c.close()
}

// closeIdle closes the idle connections and keeps no more: the backend is
// drained. A later request (a switch back) opens new ones.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	for _, c := range idle {
		delete(p.open, c)
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// closeAll cuts every connection, busy ones too: the requests on them end
// with an error. It returns how many were busy.
func (p *connPool) closeAll() int {
	p.mu.Lock()
	busy := len(p.open) - len(p.idle)
	all := make([]*upConn, 0, len(p.open))
	for c := range p.open {
		all = append(all, c)
	}
	p.open, p.idle, p.closed = nil, nil, true
	p.mu.Unlock()
	for _, c := range all {
		c.close()
	}
	return busy
}

// bufPool shares 32 KiB copy buffers between requests.
type bufPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufPool) Put(b []byte) { buffers.Put(&b) }

// errBodyTooLarge ends a request whose body (of unknown length) grew past
// max_body while it was being sent.
var errBodyTooLarge = errors.New("request body too large")

// hop-by-hop headers (RFC 9110 7.6.1) are not forwarded; neither are the
// client's X-Forwarded-*, which the proxy sets itself (an edge proxy does
// not trust them), nor Content-Length, written from the request's length.
var skipRequestHeader = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true,
	"Content-Length": true, "Expect": true,
}

var skipResponseHeader = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// writeHead writes the request line and headers of r for the upstream.
func writeHead(bw *bufio.Writer, r *http.Request, bodyLen int64) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	uri := r.RequestURI
	if uri == "" || (uri[0] != '/' && uri != "*") {
		uri = r.URL.RequestURI() // absolute-form, or an HTTP/2 request without :path
	}
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if skipRequestHeader[k] || (len(conn) > 0 && listed(conn, k)) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(clientIP(r.RemoteAddr))
	if r.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
	}
	bw.WriteString(r.Host)
	switch {
	case bodyLen > 0:
		bw.WriteString("\r\nContent-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], bodyLen, 10))
	case bodyLen < 0:
		bw.WriteString("\r\nTransfer-Encoding: chunked")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("\r\nContent-Length: 0")
	}
	bw.WriteString("\r\n\r\n")
}

// listed says whether header k is named in a Connection header's tokens.
func listed(conn []string, k string) bool {
	for _, v := range conn {
		for len(v) > 0 {
			var tok string
			if i := indexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, ""
			}
			if equalFoldTrim(tok, k) {
				return true
			}
		}
	}
	return false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func equalFoldTrim(tok, k string) bool {
	for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
		tok = tok[1:]
	}
	for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
		tok = tok[:len(tok)-1]
	}
	if len(tok) != len(k) {
		return false
	}
	for i := 0; i < len(k); i++ {
		a, b := tok[i], k[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// clientIP is the host part of a RemoteAddr, without allocating.
func clientIP(remote string) string {
	if i := lastIndexByte(remote, ':'); i >= 0 {
		remote = remote[:i]
	}
	if len(remote) > 1 && remote[0] == '[' {
		remote = remote[1 : len(remote)-1]
	}
	return remote
}

func lastIndexByte(s string, c byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// writeBody sends the request body, chunked when its length is unknown,
// and flushes.
func writeBody(bw *bufio.Writer, body io.Reader, n int64, max int64) error {
	buf := bufPool{}.Get()
	defer bufPool{}.Put(buf)
	if n >= 0 {
		if _, err := io.CopyBuffer(bw, io.LimitReader(body, n), buf); err != nil {
			return err
		}
		return bw.Flush()
	}
	cw := httputil.NewChunkedWriter(bw)
	var sent int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			sent += int64(k)
			if sent > max {
				return errBodyTooLarge
			}
			if _, err := cw.Write(buf[:k]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		return err
	}
	return bw.Flush()
}

// roundTrip sends r to the backend over c and copies the answer to w. It
// returns the status written (0 when nothing was), whether the request may
// be sent again on a new connection (a reused connection the upstream had
// closed, before any byte of an answer), and the error.
func (b *backend) roundTrip(c *upConn, w http.ResponseWriter, r *http.Request, max int64) (status int, retry bool, err error) {
	bodyLen := r.ContentLength
	hasBody := r.Body != nil && r.Body != http.NoBody && bodyLen != 0
	if !hasBody {
		bodyLen = 0
	}
	writeHead(c.bw, r, bodyLen)
	var bw *bodyWriter
	if !hasBody {
		if err := c.bw.Flush(); err != nil {
			b.pool.discard(c)
			return 0, c.reused && replayable(r), err
		}
	} else {
		// The body goes in its own goroutine so that an upstream that
		// answers before reading all of it does not deadlock the proxy.
		bw = &bodyWriter{done: make(chan error, 1)}
		go bw.run(c, r.Body, bodyLen, max)
	}

	// A client that goes away ends the wait for the upstream.
	watch := abortOnGone(w, r, c)

	h := w.Header()
	hd, err := readHead(c.br, r.Method, h)
	if err != nil {
		watch.stop()
		b.pool.discard(c)
		if !errors.Is(err, errNothingRead) {
			// A head read in part. When nothing was read, h holds only
			// what the proxy set (a canary's sticky cookie), which a
			// retry must keep.
			clear(h)
		}
		if bw != nil && bw.tooLarge.Load() {
			return 0, false, errBodyTooLarge
		}
		return 0, !hasBody && c.reused && replayable(r) && errors.Is(err, errNothingRead), err
	}
	if _, ok := h["Content-Type"]; !ok {
		// The upstream's headers pass as they are: net/http would guess a
		// type from the body.
		h["Content-Type"] = nil
	}
	w.WriteHeader(hd.status)

	var flusher http.Flusher
	if hd.length < 0 || hd.stream {
		flusher, _ = w.(http.Flusher)
	}
	reuse, werr := copyBody(w, c.br, hd, flusher)
	// A cancel that fired (or fires now) may have set the read deadline:
	// such a connection is not reused.
	reuse = watch.stop() && reuse && werr == nil
	if bw != nil {
		select {
		case berr := <-bw.done:
			reuse = reuse && berr == nil
		default:
			// The upstream answered before taking the whole body: the
			// connection cannot carry another request.
			reuse = false
		}
	}
	if reuse {
		b.pool.put(c)
	} else {
		b.pool.discard(c)
	}
	if werr != nil {
		return hd.status, false, fmt.Errorf("copy the answer: %w", werr)
	}
	return hd.status, false, nil
}

// goneWatch is an abortOnGone under way: on a connection of the HTTP/1.1
// loop, through the loop's own watch for its client going away (h), which
// aborts the read itself; elsewhere through context.AfterFunc (after),
// which costs an allocation and two locked map changes per request.
type goneWatch struct {
	h     *h1Conn
	c     *upConn
	after func() bool
}

// stop ends the watch: false when the abort ran or runs, as the stop of
// context.AfterFunc says.
func (s goneWatch) stop() bool {
	if s.h != nil {
		return s.h.up.CompareAndSwap(s.c, nil)
	}
	return s.after()
}

// abortOnGone has c's read of the answer aborted when r's client goes away.
func abortOnGone(w http.ResponseWriter, r *http.Request, c *upConn) goneWatch {
	if hw, ok := w.(*h1Writer); ok {
		hw.c.watchUpstream(c)
		return goneWatch{h: hw.c, c: c}
	}
	return goneWatch{after: context.AfterFunc(r.Context(), c.abort)}
}

// errNothingRead marks a connection that ended before any byte of an
// answer: the upstream closed a kept-alive connection as the request went
// out, so the request may be sent again.
var errNothingRead = errors.New("the upstream closed the connection before answering")

// bodyWriter sends a request body to the upstream beside the read of the
// answer.
type bodyWriter struct {
	done     chan error
	tooLarge atomic.Bool
}

func (w *bodyWriter) run(c *upConn, body io.Reader, n, max int64) {
	err := writeBody(c.bw, body, n, max)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			w.tooLarge.Store(true)
		}
		c.close() // ends the read of the answer
	}
	w.done <- err
}

var aLongTimeAgo = time.Unix(1, 0)

// replayable requests may be sent again: no body, and a method that does
// not change anything, or an Idempotency-Key (as net/http's Transport).
// resendable is a request that may go to another upstream after one that
// did not answer: replayable, with no body.
func resendable(r *http.Request) bool {
	return replayable(r) && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0)
}

func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	return ok
}
