//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// connAlive says whether an idle connection is still open: a peek that
// would block means nothing arrived, so the upstream has not closed it. One
// non-blocking syscall, done only for connections idle a while.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: open, nothing to read. 0 bytes: closed. Bytes on an idle
		// connection: the upstream sent something unasked; not reusable.
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
