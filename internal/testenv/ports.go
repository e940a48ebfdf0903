package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a server a test starts itself or a container port it publishes.
//
// It picks below the kernel's ephemeral range (ip_local_port_range,
// 32768-60999 by default), at random and checked by a bind. A port the
// kernel handed out for 127.0.0.1:0 could be handed out again, to another
// test binary's connection or to Docker publishing a container on an
// ephemeral port, before this test binds it ("port is already
// allocated"); below the range only another test's explicit choice can
// collide, and the random pick makes that unlikely.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := 20000, ephemeralStart()
	if hi-lo < 1000 {
		return kernelPort(t)
	}
	for range 50 {
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port
		}
	}
	return kernelPort(t)
}

// FreeAddr is FreePort as a 127.0.0.1:PORT address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

func kernelPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port on 127.0.0.1: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
