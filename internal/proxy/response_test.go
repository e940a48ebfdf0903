package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestReadHead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		in      string
		want    respHead
		headers http.Header
		body    string // what copyBody passes on
		reuse   bool
		err     string
	}{
		{name: "content length", in: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhelloNEXT",
			want: respHead{status: 200, length: 5}, headers: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"5"}, "X-A": {"1"}},
			body: "hello", reuse: true},
		{name: "chunked with trailers", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT",
			want: respHead{status: 200, length: -1, chunked: true}, headers: http.Header{}, body: "hello world", reuse: true},
		{name: "until close", in: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n",
			want: respHead{status: 200, length: -1, close: true, stream: true}, headers: http.Header{"Content-Type": {"text/event-stream"}},
			body: "data: 1\n\ndata: 2\n\n", reuse: false},
		{name: "head request", method: "HEAD", in: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nNEXT",
			want: respHead{status: 200, length: 0}, headers: http.Header{"Content-Length": {"1000"}}, body: "", reuse: true},
		{name: "no content", in: "HTTP/1.1 204 No Content\r\n\r\nNEXT", want: respHead{status: 204}, headers: http.Header{}, reuse: true},
		{name: "not modified", in: "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\nNEXT",
			want: respHead{status: 304}, headers: http.Header{"Etag": {`"x"`}}, reuse: true},
		{name: "100 continue first", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nokNEXT",
			want: respHead{status: 201, length: 2}, headers: http.Header{"Content-Length": {"2"}}, body: "ok", reuse: true},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
			want: respHead{status: 200, length: 2, close: true}, headers: http.Header{"Content-Length": {"2"}}, body: "ok", reuse: false},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
			want: respHead{status: 200, length: 2}, headers: http.Header{"Content-Length": {"2"}}, body: "ok", reuse: true},
		{name: "connection close and listed headers", in: "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
			want: respHead{status: 200, length: 0, close: true}, headers: http.Header{"Content-Length": {"0"}}, reuse: false},
		{name: "lower case keys, repeated headers, bare LF", in: "HTTP/1.1 200 OK\ncontent-length: 2\nset-cookie: a=1\nSet-Cookie: b=2\nX-Empty:\n\nok",
			want: respHead{status: 200, length: 2}, headers: http.Header{"Content-Length": {"2"}, "Set-Cookie": {"a=1", "b=2"}, "X-Empty": {""}}, body: "ok", reuse: true},
		{name: "status without reason", in: "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", want: respHead{status: 404}, headers: http.Header{"Content-Length": {"0"}}, reuse: true},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", err: "two Content-Length headers"},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", err: "Content-Length"},
		{name: "other transfer encoding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: "only chunked"},
		{name: "bad key", in: "HTTP/1.1 200 OK\r\nBad Key: 1\r\n\r\n", err: "header line"},
		{name: "not http", in: "SSH-2.0-OpenSSH_9.2\r\n\r\n", err: "status line"},
		{name: "switching protocols", in: "HTTP/1.1 101 Switching Protocols\r\n\r\n", err: "switched protocols"},
		{name: "truncated", in: "HTTP/1.1 200 OK\r\nContent-Le", err: io.ErrUnexpectedEOF.Error()},
		{name: "closed at once", in: "", err: errNothingRead.Error()},
		{name: "head too large", in: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", 20<<10) + "\r\n\r\n", err: "larger than 16 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 16<<10)
			h := http.Header{}
			hd, err := readHead(br, method, h)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("readHead = %+v, %v; want an error containing %q", hd, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("readHead: %v", err)
			}
			if hd != tc.want {
				t.Errorf("head = %+v, want %+v", hd, tc.want)
			}
			if !reflect.DeepEqual(h, tc.headers) {
				t.Errorf("headers = %v, want %v", h, tc.headers)
			}
			var body bytes.Buffer
			reuse, err := copyBody(&body, br, hd, nil)
			if err != nil {
				t.Fatalf("copyBody: %v", err)
			}
			if body.String() != tc.body || reuse != tc.reuse {
				t.Errorf("body %q reuse %v, want %q %v", body.String(), reuse, tc.body, tc.reuse)
			}
			if reuse {
				if rest, _ := io.ReadAll(br); string(rest) != "NEXT" && string(rest) != "" {
					t.Errorf("after the answer the connection holds %q; want the next answer (NEXT) or nothing", rest)
				}
			}
		})
	}
}

// TestCopyBodyTruncated: an upstream that closes before its Content-Length
// is a broken answer, not a complete one.
func TestCopyBodyTruncated(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("hel"))
	_, err := copyBody(io.Discard, br, respHead{status: 200, length: 5}, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("copyBody of a short body: %v, want unexpected EOF", err)
	}
}

// FuzzReadHead feeds arbitrary answers to the head parser: it must not
// panic, and what it accepts must be sane.
func FuzzReadHead(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	f.Add("HTTP/1.0 100 Continue\n\nHTTP/1.1 404\nconnection: close, x\nx: 1\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		h := http.Header{}
		br := bufio.NewReaderSize(strings.NewReader(in), 16<<10)
		hd, err := readHead(br, http.MethodGet, h)
		if err != nil {
			return
		}
		if hd.status < 200 || hd.status > 999 || hd.length < -1 || (hd.chunked && hd.length != -1) {
			t.Fatalf("accepted %q as %+v", in, hd)
		}
		for k, vv := range h {
			if !validKey(k) || skipResponseHeader[k] || strings.ContainsAny(strings.Join(vv, ""), "\r\n") {
				t.Fatalf("accepted %q with header %q: %q", in, k, vv)
			}
		}
		copyBody(io.Discard, br, hd, nil)
	})
}
