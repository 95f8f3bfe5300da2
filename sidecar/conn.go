package sidecar

import (
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/outrigger/outrigger/internal/rawio"
)

// Conn is one accepted client connection. The embedded net.Conn is the raw
// socket (a *net.TCPConn or *net.UnixConn), so handlers may hand it to io.Copy
// and get splice(2); they must end the connection with c.Close, which also
// takes it off the listener's books.
type Conn struct {
	net.Conn
	// Accepted is when the listener accepted it.
	Accepted time.Time

	ref       *handlerRef
	act       connActivity
	closeOnce sync.Once
	closed    chan struct{}
}

// Close closes the socket once and releases the connection's slot.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		close(c.closed)
		c.ref.release(c)
	})
	return err
}

// Done is closed once the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// CountReceived adds n bytes read from the client to the listener's metrics.
func (c *Conn) CountReceived(n int64) {
	if n > 0 {
		c.ref.received.Add(float64(n))
	}
}

// CountSent adds n bytes written to the client to the listener's metrics.
func (c *Conn) CountSent(n int64) {
	if n > 0 {
		c.ref.sent.Add(float64(n))
	}
}

// Counting returns a net.Conn that counts its reads and writes into the
// listener's byte metrics; use it where splice does not apply anyway (TLS,
// protocol frontends). Close on it closes c.
// Its reads and writes are raw system calls (package rawio) when c is a
// plain socket.
func (c *Conn) Counting() net.Conn { return &countingConn{Conn: rawio.Wrap(c.Conn), c: c} }

type countingConn struct {
	net.Conn
	c *Conn
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.CountReceived(int64(n))
	return n, err
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.CountSent(int64(n))
	return n, err
}

func (cc *countingConn) Close() error { return cc.c.Close() }

// Go runs f on a new goroutine that owns c from then on, with the
// protection ServeConn has: a panic in f is logged and closes c, never the
// process. A handler uses it to go on with a connection on a fresh, small
// stack once a deep setup phase (a TLS handshake, authentication) is over,
// so a long-lived idle connection does not keep that phase's stack.
func (c *Conn) Go(f func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				if c.ref != nil {
					c.ref.log.Error("handler panic; connection closed", "remote", c.RemoteAddr().String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				}
				c.Close()
			}
		}()
		f()
	}()
}
