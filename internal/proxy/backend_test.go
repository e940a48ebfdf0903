package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// An upstream that closes a kept-alive connection while it sits idle in the
// pool, and lingers (shuts its side, then reads and discards, never
// answering), as Apache does at its keep-alive timeout: the next request on
// that connection is sent again on a new one, and answered. (A wait for
// the poller to report the answer, without the read that finds the close,
// would wait for nothing: the poller saw the close before the request.)
func TestRetryAfterLingeringClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				body := fmt.Sprintf("connection %d", n)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, br) // until the proxy closes
			}()
		}
	}()
	rp := startProxy(t, proxyConf{})
	mustSwitch(t, rp.p, "prod", "web", "shop.test", "/", upstream{addr: ln.Addr().String(), release: "1"}, ReasonDeploy)
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, first := get(t, hc, rp.http, "shop.test", "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d %q", resp.StatusCode, first)
	}
	time.Sleep(50 * time.Millisecond) // the proxy's poller sees the close
	resp, second := get(t, hc, rp.http, "shop.test", "/")
	if resp.StatusCode != http.StatusOK || second == first {
		t.Fatalf("second request: %d %q (the first: %q); want 200 from a new connection", resp.StatusCode, second, first)
	}
}
