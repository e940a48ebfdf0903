//go:build linux

package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestRawIOIsRaw(t *testing.T) {
	a, _ := tcpPair(t)
	if _, raw := newRawIO(a).(*rawIO); !raw {
		t.Fatal("newRawIO of a TCP connection is not raw")
	}
	if _, raw := newRawIO(tlsLikeConn{a}).(*rawIO); raw {
		t.Fatal("newRawIO of a connection without a socket is raw")
	}
}

// A read and a write cost no allocation (net.Conn's cost none either).
func TestRawIONoAllocations(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := newRawIO(a), newRawIO(b)
	msg, buf := []byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ra.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rb, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read: %v allocations, want 0", allocs)
	}
}

// tlsLikeConn hides the socket, as a TLS connection does.
type tlsLikeConn struct{ net.Conn }

// A write larger than the socket buffers waits for the reader (EAGAIN, then
// the poller) and arrives whole; a read gets what was sent, then EOF.
func TestRawIOLargeWriteAndEOF(t *testing.T) {
	a, b := tcpPair(t)
	a.SetWriteBuffer(16 << 10)
	b.SetReadBuffer(16 << 10)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := newRawIO(a).Write(want)
		if err == nil && n != len(want) {
			err = errors.New("short write")
		}
		a.CloseWrite()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // the writer fills the buffers and waits
	got, err := io.ReadAll(newRawIO(b))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(want))
	}
	if n, err := newRawIO(b).Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v; want 0, EOF", n, err)
	}
}

// Errors are net.Conn's: a deadline is a timeout with the same message, a
// close from another goroutine is net.ErrClosed, a reset is ECONNRESET.
func TestRawIOErrors(t *testing.T) {
	a, b := tcpPair(t)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, netErr := a.Read(make([]byte, 8))
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := newRawIO(a).Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v; want a timeout", err)
	}
	if err.Error() != netErr.Error() {
		t.Fatalf("read past the deadline: %q; net.Conn says %q", err, netErr)
	}
	a.SetReadDeadline(time.Time{})

	got := make(chan error, 1)
	go func() {
		_, err := newRawIO(a).Read(make([]byte, 8))
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("read with nothing sent returned: %v; want it to wait", err)
	default:
	}
	a.Close()
	if err := <-got; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a connection closed meanwhile: %v; want net.ErrClosed", err)
	}

	c, d := tcpPair(t)
	d.SetLinger(0)
	d.Close() // a reset
	time.Sleep(20 * time.Millisecond)
	if _, err := newRawIO(c).Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read of a reset connection: %v; want ECONNRESET", err)
	}
	if _, err := newRawIO(c).Write([]byte("x")); !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a reset connection: %v; want EPIPE or ECONNRESET", err)
	}
	_ = b
}
