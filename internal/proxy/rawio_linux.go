package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawIO reads and writes a connection as net.Conn does, through the
// network poller, but makes its read and write system calls raw: without
// telling the Go scheduler that the thread is in a system call. On a
// socket, which Go keeps non-blocking, they never block.
//
// Why: a thread the kernel preempts as a write returns (the write woke the
// peer on this CPU, as most writes on a busy host do) is still "in a
// system call" to the scheduler until it runs again. When no P is idle,
// the scheduler's monitor then takes the thread's P after 20 µs, wakes
// another thread to run it, and goes back to looking every 20 µs instead
// of every 10 ms. Measured at saturation on 2 cores (bench/proxy.sh's
// setup, old and new binaries side by side), raw calls cut the proxy's CPU
// per request by a sixth in front of a process (32.4 to 27.1 µs) and by a
// quarter in front of a container (50.1 to 37.8 µs), and its context
// switches by nearly half. Everything else (deadlines, a close from another
// goroutine, waiting for the socket) is net's own, through
// syscall.RawConn.
//
// The cost: goroutines queued on that P wait for the thread, or for
// another P to take them, and so does a garbage collection's
// stop-the-world. Measured at saturation, its pauses stayed what they were
// (0.1 to 2.5 ms on the bench's 2 cores, one collection every 2 s or so).
type rawIO struct {
	nc net.Conn
	rc syscall.RawConn

	// The read and the write under way, for callbacks made once (a
	// closure per call would be an allocation per call). Like the bufio
	// reader and writer over it, a rawIO takes one Read and one Write at
	// a time.
	rp      []byte
	rn      int
	rerrno  syscall.Errno
	readFn  func(fd uintptr) bool
	wp      []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// newRawIO is nc's reader and writer: rawIO for a socket, nc itself for
// anything else (a TLS connection, a pipe in a test). A connection that
// wraps a socket and changes what Read or Write do (PROXY protocol, say)
// must not offer SyscallConn: rawIO would go around it.
func newRawIO(nc net.Conn) io.ReadWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	r := &rawIO{nc: nc, rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rp, r.rn, r.rerrno = p, 0, 0
	err := r.rc.Read(r.readFn)
	n, errno := r.rn, r.rerrno
	r.rp = nil
	if err := r.failed("read", err, errno); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// read is the callback of a Read: false to wait until the socket is
// readable.
func (r *rawIO) read(fd uintptr) bool {
	p := r.rp
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.rn, r.rerrno = int(n), e
		return true
	}
}

// Write writes all of p, waiting for room in the socket's buffer as
// net.Conn's Write does.
func (r *rawIO) Write(p []byte) (int, error) {
	r.wp, r.wn, r.werrno = p, 0, 0
	err := r.rc.Write(r.writeFn)
	n, errno := r.wn, r.werrno
	r.wp = nil
	if err := r.failed("write", err, errno); err != nil {
		return n, err
	}
	if n < len(p) {
		return n, io.ErrUnexpectedEOF // a write of nothing, as net says
	}
	return n, nil
}

// write is the callback of a Write: false to wait until the socket has
// room.
func (r *rawIO) write(fd uintptr) bool {
	p := r.wp
	for r.wn < len(p) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[r.wn])), uintptr(len(p)-r.wn))
		switch e {
		case 0:
			if n == 0 {
				return true // nothing written and no error: give up
			}
			r.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.werrno = e
			return true
		}
	}
	return true
}

// failed is the error of a read or write, as net.Conn gives it: a
// *net.OpError named for the call (syscall.RawConn's own errors, a
// deadline or a close, say "raw-read" and "raw-write"), or nil.
func (r *rawIO) failed(op string, err error, errno syscall.Errno) error {
	switch {
	case err != nil:
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
	case errno != 0:
		err = os.NewSyscallError(op, errno)
	default:
		return nil
	}
	return &net.OpError{Op: op, Net: r.nc.LocalAddr().Network(), Source: r.nc.LocalAddr(), Addr: r.nc.RemoteAddr(), Err: err}
}
