package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The proxy's plain-HTTP listener is served by a loop of its own for the
// requests nearly all traffic is made of: HTTP/1.1, no body, no upgrade.
// net/http's server costs per request about what nginx's whole proxying
// does (a goroutine reading in the background, several read deadlines, a
// context, a response struct, sorted headers), which left the proxy behind
// nginx in latency. Everything else (request bodies, Expect, upgrades
// such as WebSocket and h2c, HTTP/1.0, HTTP/2 with prior knowledge, heads
// larger than the loop's buffer, anything malformed) is handed, with the
// bytes already read, to the proxy's http.Server on the same connection,
// which then serves that connection to its end: every corner of HTTP stays
// net/http's.
//
// What net/http's background read gives, noticing a client that goes away
// while its request waits for the upstream, the loop gives by starting the
// same read only for a request still waiting after watchAfter: fast
// requests never pay for it. One goroutine per listener looks for such
// requests every watchTick; a timer per request would cost more than the
// request (each reset can wake the runtime's network poller).

// watchAfter is how long a request may wait for its answer before the loop
// watches the client connection for a close; watchTick is how often the
// loop looks.
const (
	watchAfter = 20 * time.Millisecond
	watchTick  = 10 * time.Millisecond
)

// h1BufSize is the loop's read buffer: a request head larger than this is
// handed to net/http (which allows up to 1 MiB).
const h1BufSize = 8 << 10

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1BufSize) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// errHandOff says a request is for net/http to serve.
var errHandOff = errors.New("hand the connection to net/http")

// h1Server runs the loop on one listener.
type h1Server struct {
	p             *Proxy
	ln            net.Listener
	handoff       *handoffListener
	headerTimeout time.Duration
	idleTimeout   time.Duration

	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	closing  bool
	watching bool // watchLoop runs
	// draining: answers say Connection: close, and end their connection,
	// from the moment shutdown begins (as net/http's keep-alives end).
	draining atomic.Bool
}

func newH1Server(p *Proxy, srv *http.Server, ln net.Listener) *h1Server {
	return &h1Server{
		p:             p,
		ln:            ln,
		handoff:       &handoffListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})},
		headerTimeout: srv.ReadHeaderTimeout,
		idleTimeout:   srv.IdleTimeout,
		conns:         map[*h1Conn]struct{}{},
	}
}

// serve accepts connections until shutdown.
func (s *h1Server) serve() error {
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := &h1Conn{s: s, nc: nc}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		if !s.watching {
			s.watching = true
			go s.watchLoop()
		}
		s.mu.Unlock()
		go c.serve()
	}
}

// shutdown stops the loop: idle connections are closed at once, busy ones
// when their request is answered, and every one left when ctx ends.
func (s *h1Server) shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.ln.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			if c.state.CompareAndSwap(connIdle, connClosed) {
				c.nc.Close()
			}
		}
		left := len(s.conns)
		s.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.state.Store(connClosed)
				c.nc.Close()
			}
			s.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// watchLoop starts the watch of each request waiting longer than
// watchAfter, while the listener has connections. A pass looks at every
// connection, so with many of them it comes less often (one more tick per
// 500 connections): its cost stays about the same.
func (s *h1Server) watchLoop() {
	wait := time.NewTimer(watchTick)
	defer wait.Stop()
	for range wait.C {
		now := time.Now().UnixNano()
		s.mu.Lock()
		n := len(s.conns)
		if n == 0 {
			s.watching = false
			s.mu.Unlock()
			return
		}
		for c := range s.conns {
			if at := c.reqAt.Load(); at != 0 && now-at >= int64(watchAfter) {
				c.startWatch(at)
			}
		}
		s.mu.Unlock()
		wait.Reset(watchTick * time.Duration(1+n/500))
	}
}

func (s *h1Server) forget(c *h1Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

const (
	connIdle int32 = iota
	connActive
	connClosed
)

// h1Conn is one client connection in the loop. Its request, URL, header
// maps and writer are reused from one request to the next.
type h1Conn struct {
	s     *h1Server
	nc    net.Conn
	state atomic.Int32
	cr    connReader
	br    *bufio.Reader
	bw    *bufio.Writer
	ctx   context.Context
	// cancel ends ctx: the client went away, or the connection ended.
	cancel context.CancelFunc

	req  *http.Request
	url  url.URL
	w    h1Writer
	vals []string

	// reqAt is when the request in flight began (Unix ns), 0 when there
	// is none or its watch has begun. It is set and cleared under watchMu,
	// so a watch is started for the request it was meant for, once.
	reqAt     atomic.Int64
	watchMu   sync.Mutex
	watching  bool // a watch read may be running
	stopped   bool // the request ended: no watch read may start
	watchDone chan struct{}
	gone      atomic.Bool
	// up is the upstream connection the request in flight reads its
	// answer from (goneWatch): a client gone aborts that read. Whoever
	// takes it out, the watch or the request, decides.
	up atomic.Pointer[upConn]
}

// watchUpstream has u's read aborted if the client goes away.
func (c *h1Conn) watchUpstream(u *upConn) {
	c.up.Store(u)
	// A client gone before the store: its watch found nothing to abort.
	if c.ctx.Err() != nil && c.up.CompareAndSwap(u, nil) {
		u.abort()
	}
}

func (c *h1Conn) serve() {
	handedOff := false
	defer func() {
		if handedOff {
			return
		}
		c.cancel()
		c.nc.Close()
		c.s.forget(c)
		c.releaseBuffers()
	}()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	rw := newRawIO(c.nc)
	c.cr.c = rw
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(rw)
	c.req = (&http.Request{}).WithContext(c.ctx)
	c.req.RemoteAddr = c.nc.RemoteAddr().String()
	c.w = h1Writer{c: c, h: http.Header{}}
	c.watchDone = make(chan struct{}, 1)

	for first := true; ; first = false {
		// As net/http: a new connection's first request must come within
		// the header timeout; between requests the idle timeout applies
		// until a head begins.
		if wait := c.s.idleTimeout; first || wait <= 0 {
			if c.s.headerTimeout > 0 {
				c.nc.SetReadDeadline(time.Now().Add(c.s.headerTimeout))
			}
		} else {
			c.nc.SetReadDeadline(time.Now().Add(wait))
		}
		n, err := c.readHead(first)
		if err == nil {
			err = c.parse(n)
		}
		if errors.Is(err, errHandOff) {
			handedOff = c.handOff()
			return
		}
		if err != nil || !c.state.CompareAndSwap(connIdle, connActive) {
			return
		}
		// The read deadline stays: nothing reads the connection while the
		// request is served but a watch, which clears it first.
		if !c.serveOne() || c.s.draining.Load() {
			return
		}
		if !c.state.CompareAndSwap(connActive, connIdle) {
			return
		}
	}
}

// readHead waits for a whole request head in the buffer and says how long
// it is; a head larger than the buffer is for net/http.
func (c *h1Conn) readHead(first bool) (int, error) {
	if _, err := c.br.Peek(1); err != nil {
		return 0, err
	}
	timed := first
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if end := headEnd(buf); end > 0 {
			return end, nil
		}
		if c.br.Buffered() >= c.br.Size() {
			return 0, errHandOff
		}
		if !timed && c.s.headerTimeout > 0 {
			// The head has begun: the rest must come within the header
			// timeout (a slow client holds no connection forever).
			c.nc.SetReadDeadline(time.Now().Add(c.s.headerTimeout))
			timed = true
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			return 0, err
		}
	}
}

// parse reads the head of n bytes into c.req, or says errHandOff for any
// request the loop leaves to net/http. Nothing is consumed until the head
// is taken, so a hand-off passes every byte on.
func (c *h1Conn) parse(n int) error {
	block, _ := c.br.Peek(n)
	line, rest, ok := cutCRLF(block)
	if !ok {
		return errHandOff
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || len(line) < sp1+11 || string(line[len(line)-9:]) != " HTTP/1.1" {
		return errHandOff
	}
	method := knownMethod(line[:sp1])
	target := line[sp1+1 : len(line)-9]
	if method == "" || len(target) == 0 || target[0] != '/' {
		return errHandOff
	}
	for _, b := range target {
		if b <= ' ' || b == 0x7f {
			return errHandOff
		}
	}

	// One string for the head: keys and values are slices of it.
	s := string(rest)
	r := c.req
	h := r.Header
	if h == nil {
		h = http.Header{}
	} else {
		clear(h)
	}
	nl := strings.Count(s, "\n")
	if cap(c.vals) < nl {
		c.vals = make([]string, nl)
	}
	vals := c.vals[:nl]
	nv := 0
	host, hasHost, closeConn, hasCL := "", false, false, false
	for {
		i := strings.IndexByte(s, '\n')
		if i < 1 || s[i-1] != '\r' {
			return errHandOff
		}
		kv := s[:i-1]
		s = s[i+1:]
		if kv == "" {
			break
		}
		if kv[0] == ' ' || kv[0] == '\t' {
			return errHandOff // obs-fold
		}
		k, v, ok := headerField(kv)
		if !ok {
			return errHandOff
		}
		for j := 0; j < len(v); j++ {
			if b := v[j]; (b < ' ' && b != '\t') || b == 0x7f {
				return errHandOff
			}
		}
		switch k {
		case "Host":
			if hasHost || !simpleHost(v) {
				return errHandOff
			}
			host, hasHost = v, true
			continue
		case "Content-Length":
			if v != "0" || hasCL {
				return errHandOff
			}
			hasCL = true
		case "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings":
			return errHandOff
		case "Connection":
			if listedToken(v, "close") {
				closeConn = true
			}
		}
		nv = addValue(h, vals, nv, k, v)
	}
	if !hasHost {
		return errHandOff
	}
	// RFC 9111 5.4, as net/http reads it: Pragma: no-cache without a
	// Cache-Control means Cache-Control: no-cache.
	if p, ok := h["Pragma"]; ok && len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}

	c.url = url.URL{}
	t := string(target)
	if strings.ContainsAny(t, "%#") {
		u, err := url.ParseRequestURI(t)
		if err != nil {
			return errHandOff
		}
		c.url = *u
	} else if q := strings.IndexByte(t, '?'); q >= 0 {
		c.url.Path, c.url.RawQuery, c.url.ForceQuery = t[:q], t[q+1:], q == len(t)-1
	} else {
		c.url.Path = t
	}
	c.br.Discard(n)

	r.Method, r.URL, r.RequestURI, r.Host, r.Header = method, &c.url, t, host, h
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Body, r.ContentLength, r.Close = http.NoBody, 0, closeConn
	// The request is reused from one to the next: nothing of the last may
	// show. Its context is the connection's (cancelled when the client goes
	// away): the proxy's handler keeps neither beyond its return.
	r.Form, r.PostForm, r.MultipartForm, r.Trailer, r.TransferEncoding = nil, nil, nil, nil, nil
	return nil
}

// serveOne answers the parsed request; it says whether the connection may
// carry another.
func (c *h1Conn) serveOne() (keep bool) {
	w := &c.w
	w.reset(c.req)
	c.watchMu.Lock()
	c.stopped = false
	c.reqAt.Store(time.Now().UnixNano())
	c.watchMu.Unlock()
	aborted := c.handle()
	c.stopWatch()
	if len(c.req.Header) > maxKeptHeaders || cap(c.vals) > maxKeptHeaders {
		// A head of many lines: its map and values are not kept for the
		// connection's life (clear never shrinks a map).
		c.req.Header, c.vals = nil, nil
	}
	if aborted || c.gone.Load() {
		return false
	}
	if err := w.finish(); err != nil {
		return false
	}
	if len(w.h) > maxKeptHeaders {
		w.h = http.Header{}
	}
	return !w.closeAfter && !c.req.Close
}

// maxKeptHeaders is the most header lines whose map a connection keeps
// from one request to the next.
const maxKeptHeaders = 64

// handle runs the proxy's handler; it says whether the handler aborted the
// answer (http.ErrAbortHandler, or a panic, logged as net/http does).
func (c *h1Conn) handle() (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.p.opts.errorLog.Printf("http: panic serving %s: %v\n%s", c.req.RemoteAddr, v, buf)
			}
		}
	}()
	c.s.p.ServeHTTP(&c.w, c.req)
	return false
}

// startWatch runs when a request has waited watchAfter: a read of the
// client connection in the background ends when the client closes it (the
// request's context is cancelled, which ends the wait for the upstream) or
// sends a byte (kept for the next request), or when the request ends.
func (c *h1Conn) startWatch(at int64) {
	c.watchMu.Lock()
	// The request may have ended (and another begun) since at was read;
	// a byte a watch already read is the client's next request: it is
	// here, and a second read could not keep its byte.
	if c.stopped || c.watching || c.reqAt.Load() != at || c.cr.hasPending {
		c.watchMu.Unlock()
		return
	}
	c.reqAt.Store(0)
	c.watching = true
	c.nc.SetReadDeadline(time.Time{})
	c.watchMu.Unlock()
	go func() {
		defer func() { c.watchDone <- struct{}{} }()
		var b [1]byte
		n, err := c.nc.Read(b[:])
		if n == 1 {
			c.cr.pending, c.cr.hasPending = b[0], true
			return
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			c.gone.Store(true)
			c.cancel()
			if u := c.up.Swap(nil); u != nil {
				u.abort()
			}
		}
	}()
}

// stopWatch ends the request's watch, and waits for its read to return.
func (c *h1Conn) stopWatch() {
	c.watchMu.Lock()
	c.reqAt.Store(0)
	c.stopped = true
	watching := c.watching
	c.watching = false
	if watching {
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
	c.watchMu.Unlock()
	if watching {
		<-c.watchDone
		c.nc.SetReadDeadline(time.Time{})
	}
}

// handOff gives the connection, with every byte read so far, to the
// proxy's http.Server. It says whether it was taken.
func (c *h1Conn) handOff() bool {
	buf, _ := c.br.Peek(c.br.Buffered())
	pre := append([]byte(nil), buf...)
	if c.cr.hasPending {
		pre = append(pre, c.cr.pending)
	}
	c.nc.SetReadDeadline(time.Time{})
	c.s.forget(c)
	c.cancel()
	c.releaseBuffers()
	if !c.s.handoff.hand(&prefixConn{Conn: c.nc, pre: pre}) {
		c.nc.Close()
	}
	return true
}

// releaseBuffers gives the connection's buffers back to their pools.
func (c *h1Conn) releaseBuffers() {
	if c.br == nil {
		return
	}
	c.br.Reset(nil)
	h1Readers.Put(c.br)
	c.bw.Reset(nil)
	h1Writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// connReader reads the client connection, after the byte a watch read.
type connReader struct {
	c          io.Reader
	pending    byte
	hasPending bool
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.hasPending && len(p) > 0 {
		p[0], r.hasPending = r.pending, false
		return 1, nil
	}
	return r.c.Read(p)
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	pre []byte
}

// CloseWrite half-closes the connection, as net/http does before it closes
// one with a request body left unread (an answer 413 must reach the client
// before a reset).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener is how connections reach the proxy's http.Server.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

func (l *handoffListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// h1Writer writes the answer of one request straight into the
// connection's buffer: the status line, the headers as they are in the
// map, and the body, chunked when its length is not known.
type h1Writer struct {
	c           *h1Conn
	h           http.Header
	head        bool // a HEAD request: no body
	wroteHeader bool
	bodyless    bool
	chunked     bool
	declared    int64 // Content-Length written, or -1
	written     int64
	closeAfter  bool
	err         error
}

func (w *h1Writer) reset(r *http.Request) {
	clear(w.h)
	w.head = r.Method == http.MethodHead
	w.wroteHeader, w.bodyless, w.chunked, w.closeAfter = false, false, false, false
	w.declared, w.written, w.err = -1, 0, nil
}

func (w *h1Writer) Header() http.Header { return w.h }

func (w *h1Writer) WriteHeader(code int) {
	if w.wroteHeader || code < 200 || code > 999 {
		return
	}
	w.wroteHeader = true
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	var num [20]byte
	bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	w.bodyless = w.head || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := w.h["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 || len(cl) > 1 {
			delete(w.h, "Content-Length")
		} else {
			w.declared = n
		}
	}
	if _, ok := w.h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if conn := w.h["Connection"]; len(conn) > 0 && listedToken(conn[0], "close") {
		w.closeAfter = true
	}
	closeSaid := w.closeAfter
	if w.c.s.draining.Load() {
		w.closeAfter = true
	}
	noBody := code == http.StatusNoContent || code == http.StatusNotModified
	for k, vv := range w.h {
		// As net/http: no framing headers on 204 and 304, nor a type on 304.
		if noBody && (k == "Content-Length" || k == "Transfer-Encoding" || (code == http.StatusNotModified && k == "Content-Type")) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	switch {
	case w.bodyless, w.declared >= 0:
	default:
		w.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if (w.c.req.Close || w.closeAfter) && !closeSaid {
		w.closeAfter = true
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.bodyless || len(p) == 0 {
		return len(p), nil
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		// More than the Content-Length announced would be read as the
		// next answer.
		w.closeAfter = true
		return 0, http.ErrContentLength
	}
	bw := w.c.bw
	if w.chunked {
		var num [16]byte
		bw.Write(strconv.AppendInt(num[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what is buffered: for streamed answers (server-sent events,
// chunked bodies), each write as it comes.
func (w *h1Writer) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
}

// finish ends the answer and sends it. A body shorter than the length
// announced cannot be followed by another answer: the connection closes.
func (w *h1Writer) finish() error {
	if !w.wroteHeader {
		w.h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if w.chunked {
		w.c.bw.WriteString("0\r\n\r\n")
	}
	if !w.bodyless && w.declared >= 0 && w.written != w.declared {
		w.closeAfter = true
	}
	return w.c.bw.Flush()
}

// httpDate is the Date header's value, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &cachedDate{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

// loopMethods are the methods the loop serves itself.
var loopMethods = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodDelete, http.MethodOptions, http.MethodPatch}

// knownMethod returns the method as a constant (no string kept per
// request), or "" for a method the loop leaves to net/http.
func knownMethod(b []byte) string {
	for _, m := range loopMethods {
		if string(b) == m {
			return m
		}
	}
	return ""
}

// simpleHost accepts the host names, IPv4 and bracketed IPv6 addresses,
// with a port, that need no closer look; net/http judges the rest.
func simpleHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '.', b == '-', b == ':', b == '[', b == ']', b == '_':
		default:
			return false
		}
	}
	return true
}

func cutCRLF(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}
