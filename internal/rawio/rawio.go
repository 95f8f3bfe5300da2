// Package rawio reads and writes the sockets of Outrigger's protocol
// frontends without the Go runtime's system-call bookkeeping.
//
// A read or write through net.Conn enters the runtime's syscall state: a
// processor (P) stays attached to the thread, and the runtime's monitor
// thread, which wakes every 20 µs while it keeps finding a P in a system
// call and every 10 ms otherwise, takes that P away from a call that
// outlasts one of its ticks and wakes another thread to run it. Writes to
// loopback sockets wake the reader on the other end inside the call and
// take tens of microseconds on a virtual machine, so under load nearly
// every call outlasts a tick: the monitor stays at 20 µs and a proxy spends
// much of its CPU on thread wake-ups that do no work.
//
// The sockets are non-blocking (the runtime's poller drives them), so a
// read or write returns at once, with EAGAIN when it cannot progress. Conn
// makes those calls with syscall.RawSyscall inside syscall.RawConn's
// Read and Write: the runtime sees no system call, and the poller still
// parks the goroutine on EAGAIN, with deadlines as for any net.Conn.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a socket read and written with raw system calls; everything
// else (deadlines, Close, addresses) is the wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn
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
	return &Conn{Conn: c, rc: rc}
}

// SyscallConn returns the socket's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// Read reads what the socket has, waiting in the poller while it has
// nothing.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			if e == syscall.EINTR {
				continue
			}
			if e == syscall.EAGAIN {
				return false
			}
			n, errno = int(r), e
			return true
		}
	})
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

// Write writes all of b, waiting in the poller while the socket is full.
func (c *Conn) Write(b []byte) (int, error) {
	var done int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			n, e := write(fd, b[done:])
			if e == syscall.EAGAIN {
				return false
			}
			if e != 0 {
				errno = e
				return true
			}
			done += n
		}
		return true
	})
	switch {
	case err != nil:
		return done, c.opError("write", err)
	case errno != 0:
		return done, c.opError("write", errno)
	}
	return done, nil
}

// TryWrite writes as much of b as the socket takes now, without waiting:
// n is 0 when it is full.
func TryWrite(c net.Conn, b []byte) (n int, err error) {
	rc, ok := c.(*Conn)
	if !ok || len(b) == 0 {
		return 0, errNotRaw
	}
	var errno syscall.Errno
	werr := rc.rc.Write(func(fd uintptr) bool {
		var e syscall.Errno
		n, e = write(fd, b)
		if e != 0 && e != syscall.EAGAIN {
			errno = e
		}
		return true // never wait: the caller deals with what is left
	})
	switch {
	case werr != nil:
		return n, rc.opError("write", werr)
	case errno != 0:
		return n, rc.opError("write", errno)
	}
	return n, nil
}

// CanTryWrite reports whether TryWrite works on c.
func CanTryWrite(c net.Conn) bool {
	_, ok := c.(*Conn)
	return ok
}

var errNotRaw = &net.OpError{Op: "write", Net: "raw", Err: syscall.EINVAL}

// write is one write(2), retried on EINTR; n is 0 on an error.
func write(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), 0
	}
}

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
