package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a socket read and written with raw system calls; everything
// else (deadlines, Close, addresses) is the wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// The functions handed to RawConn and their arguments and results live
	// in the Conn, made once, so a call allocates nothing; rmu and wmu
	// keep concurrent readers (and writers) from sharing them.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(uintptr) bool

	wmu     sync.Mutex
	wbuf    []byte
	wdone   int
	werr    syscall.Errno
	wait    bool // Write waits for room; TryWrite does not
	writeFn func(uintptr) bool
}

// Wrap returns c as a Conn when it is a TCP or Unix socket, and c itself
// otherwise (a TLS connection: wrap the socket under it instead).
func Wrap(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{Conn: c, rc: rc}
	rw.readFn = rw.read
	rw.writeFn = rw.write
	return rw
}

// SyscallConn returns the socket's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// Read reads what the socket has, waiting in the poller while it has
// nothing.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerr = b, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one read(2) for Read: false (wait for the poller) on EAGAIN.
func (c *Conn) read(fd uintptr) bool {
	b := c.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e == syscall.EINTR {
			continue
		}
		if e == syscall.EAGAIN {
			return false
		}
		c.rn, c.rerr = int(r), e
		return true
	}
}

// Write writes all of b, waiting in the poller while the socket is full.
func (c *Conn) Write(b []byte) (int, error) {
	return c.writeAll(b, true)
}

// writeAll writes b, waiting for room when wait is set, and returns how
// much went out.
func (c *Conn) writeAll(b []byte, wait bool) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbuf, c.wdone, c.werr, c.wait = b, 0, 0, wait
	err := c.rc.Write(c.writeFn)
	done, errno := c.wdone, c.werr
	c.wbuf = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return done, c.opError("write", err)
	case errno != 0:
		return done, c.opError("write", errno)
	}
	return done, nil
}

// write makes write(2) calls for writeAll until all is written, an error,
// or EAGAIN (false, to wait for the poller, when c.wait is set).
func (c *Conn) write(fd uintptr) bool {
	for c.wdone < len(c.wbuf) {
		b := c.wbuf[c.wdone:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			c.wdone += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return !c.wait
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// TryWrite writes as much of b as the socket takes now, without waiting:
// n is 0 when it is full. It fails on a connection Wrap did not wrap.
func TryWrite(c net.Conn, b []byte) (n int, err error) {
	rc, ok := c.(*Conn)
	if !ok {
		return 0, errNotRaw
	}
	return rc.writeAll(b, false)
}

// CanTryWrite reports whether TryWrite works on c.
func CanTryWrite(c net.Conn) bool {
	_, ok := c.(*Conn)
	return ok
}

var errNotRaw = &net.OpError{Op: "write", Net: "raw", Err: syscall.EINVAL}

// opError wraps err as the net package would, so callers that look for
// timeouts (os.ErrDeadlineExceeded, net.Error) or closed connections
// (net.ErrClosed) find them.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		// RawConn already wraps poller errors ("raw-read"): name the op.
		oe.Op = op
		return oe
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
