package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"syscall"
)

// respHead is an upstream answer's head, its headers already in the
// client's header map: http.ReadResponse would build a Response, a header
// map and a string per line only for them to be copied again. Here the
// whole head becomes one string, keys and values are slices of it, and the
// values share one backing array.
type respHead struct {
	status  int
	length  int64 // body length; -1: chunked or until close
	chunked bool
	close   bool // the connection ends after this answer
	stream  bool // text/event-stream: flush every write
}

var (
	errHeadTooLarge = errors.New("the upstream's answer headers are larger than 16 KiB")
	errBadHead      = errors.New("the upstream's answer is not valid HTTP/1.x")
)

// readHead reads the final answer head of r's request from br into h,
// skipping 100 Continue and 103 Early Hints.
func readHead(br *bufio.Reader, method string, h http.Header) (respHead, error) {
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
			return respHead{}, fmt.Errorf("%w: %w", errNothingRead, err)
		}
		return respHead{}, err
	}
	for {
		hd, interim, err := readOneHead(br, method, h)
		if err != nil || !interim {
			return hd, err
		}
	}
}

func readOneHead(br *bufio.Reader, method string, h http.Header) (hd respHead, interim bool, err error) {
	var block []byte
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := headEnd(buf); end > 0 {
			block = buf[:end]
			break
		}
		if br.Buffered() >= br.Size() {
			return hd, false, errHeadTooLarge
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return hd, false, err
		}
	}
	s := string(block)
	br.Discard(len(block))

	line, rest, _ := strings.Cut(s, "\n")
	line = strings.TrimSuffix(line, "\r")
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' || line[7] < '0' || line[7] > '9' {
		return hd, false, fmt.Errorf("%w: status line %q", errBadHead, line)
	}
	hd.status, err = strconv.Atoi(line[9:12])
	if err != nil || hd.status < 100 || hd.status > 999 || (len(line) > 12 && line[12] != ' ') {
		return hd, false, fmt.Errorf("%w: status line %q", errBadHead, line)
	}
	if hd.status == http.StatusSwitchingProtocols {
		return hd, false, errors.New("the upstream switched protocols for a request that asked for no upgrade")
	}
	if hd.status < 200 {
		return hd, true, nil // 100 Continue, 103 Early Hints: the final answer follows
	}
	http10 := line[7] == '0'
	keepAlive := false

	vals := make([]string, strings.Count(rest, "\n"))
	nv := 0
	hd.length = -1
	var cl string
	var conn []string
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		k, v, ok := headerField(line)
		if !ok || strings.ContainsAny(v, "\r\x00") {
			return hd, false, fmt.Errorf("%w: header line %q", errBadHead, line)
		}
		switch k {
		case "Content-Length":
			if cl != "" && cl != v {
				return hd, false, fmt.Errorf("%w: two Content-Length headers, %q and %q", errBadHead, cl, v)
			}
			cl = v
		case "Transfer-Encoding":
			if !strings.EqualFold(v, "chunked") {
				return hd, false, fmt.Errorf("%w: Transfer-Encoding %q (only chunked)", errBadHead, v)
			}
			hd.chunked = true
			continue
		case "Connection":
			conn = append(conn, v)
			if listedToken(v, "close") {
				hd.close = true
			}
			if listedToken(v, "keep-alive") {
				keepAlive = true
			}
			continue
		case "Content-Type":
			hd.stream = strings.HasPrefix(v, "text/event-stream")
		}
		if skipResponseHeader[k] {
			continue
		}
		nv = addValue(h, vals, nv, k, v)
	}
	for _, c := range conn {
		for k := range h {
			if listedToken(c, k) {
				delete(h, k)
			}
		}
	}
	if http10 && !keepAlive {
		hd.close = true
	}
	switch {
	case method == http.MethodHead || hd.status == http.StatusNoContent || hd.status == http.StatusNotModified:
		hd.length, hd.chunked = 0, false
	case hd.chunked:
		delete(h, "Content-Length")
	case cl != "":
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || cl[0] == '+' {
			return hd, false, fmt.Errorf("%w: Content-Length %q", errBadHead, cl)
		}
		hd.length = n
	default:
		hd.close = true // the body ends when the connection does
	}
	return hd, false, nil
}

// headerField splits a header line into its key, canonical, and its value
// without the spaces around it; ok is false when the key is not a token.
func headerField(line string) (k, v string, ok bool) {
	k, v, ok = strings.Cut(line, ":")
	if !ok || !validKey(k) {
		return "", "", false
	}
	if !canonical(k) {
		k = http.CanonicalHeaderKey(k)
	}
	return k, strings.Trim(v, " \t"), true
}

// addValue adds v to h[k] and returns the next free index of vals: a
// first value is a slice of vals, so that the values of one head share one
// backing array (a later one is appended to it).
func addValue(h http.Header, vals []string, nv int, k, v string) int {
	if old, ok := h[k]; ok {
		h[k] = append(old, v)
		return nv
	}
	vals[nv] = v
	h[k] = vals[nv : nv+1 : nv+1]
	return nv + 1
}

// headEnd is the length of the head at the start of b (through its blank
// line), or 0 when b does not hold all of it yet.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// validKey says whether k is an HTTP token (RFC 9110 5.6.2).
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// canonical says whether k is already in canonical form (Content-Type),
// as most servers write it, so that it needs no new string.
func canonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if (upper && 'a' <= c && c <= 'z') || (!upper && 'A' <= c && c <= 'Z') {
			return false
		}
		upper = c == '-'
	}
	return true
}

// listedToken says whether a comma-separated header value lists tok.
func listedToken(v, tok string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if equalFoldTrim(t, tok) {
			return true
		}
	}
	return false
}

// copyBody copies an answer's body from br to w, straight from br's buffer
// (no copy buffer for the common case), flushing each write when flusher is
// set. It returns whether the connection may carry another request.
func copyBody(w io.Writer, br *bufio.Reader, hd respHead, flusher http.Flusher) (reuse bool, err error) {
	if hd.chunked {
		ok, err := copyChunked(w, br, flusher)
		return ok && !hd.close, err
	}
	remaining := hd.length
	for remaining != 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF && remaining < 0 {
					return false, nil // a body until close ends with the connection
				}
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return false, err
			}
		}
		n := br.Buffered()
		if remaining > 0 && int64(n) > remaining {
			n = int(remaining)
		}
		b, _ := br.Peek(n)
		if _, err := w.Write(b); err != nil {
			return false, errClientGone{err}
		}
		br.Discard(n)
		if remaining > 0 {
			remaining -= int64(n)
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	return !hd.close, nil
}

func copyChunked(w io.Writer, br *bufio.Reader, flusher http.Flusher) (bool, error) {
	cr := httputil.NewChunkedReader(br)
	buf := bufPool{}.Get()
	defer bufPool{}.Put(buf)
	for {
		n, err := cr.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false, errClientGone{werr}
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, err
		}
	}
	// The trailer section (dropped) ends with a blank line.
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return true, nil
		}
	}
}

// errClientGone is a failed write to the client, not the upstream's fault.
type errClientGone struct{ err error }

func (e errClientGone) Error() string { return "write to the client: " + e.err.Error() }
func (e errClientGone) Unwrap() error { return e.err }
