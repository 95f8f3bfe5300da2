package testenv

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// EchoServer listens on a free 127.0.0.1 port and copies every connection's
// bytes back to it; when the client half-closes, it finishes the echo and
// half-closes too. It stops with the test. It returns host:port.
func EchoServer(t testing.TB) string {
	return serveTCP(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// SinkServer listens on a free 127.0.0.1 port and discards what it reads.
func SinkServer(t testing.TB) string {
	return serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
}

func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, ln, handle)
}

// Serve accepts on ln until the test ends, running handle on each connection
// on its own goroutine and closing the connection after. It returns ln's
// address.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, for capturing logs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
