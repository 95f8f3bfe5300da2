package sidecar

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/config"
)

// copyChunk is how much one io.Copy call may move before the idle clock is
// checked again. Between *net.TCPConn (or Unix) sockets each call is splice(2).
const copyChunk = 64 << 10

// errIdle ends a proxied connection that saw no traffic for idle_timeout.
var errIdle = errors.New("sidecar: idle timeout")

// TCPProxy is the Handler of a tcp listener: an L4 proxy with optional TLS
// termination (the listener's profile) and origination (upstream.tls).
type TCPProxy struct {
	env Env
	cfg *config.TCP
	up  *Upstream
}

// NewTCPProxy is the Builder for tcp listeners.
func NewTCPProxy(env Env, section any) (Handler, error) {
	cfg := section.(*config.TCP)
	up, err := NewUpstream(env.Name, cfg.Upstream, env.Dialer, env.Metrics)
	if err != nil {
		return nil, err
	}
	return &TCPProxy{env: env, cfg: cfg, up: up}, nil
}

// ServeConn proxies one client connection until either side closes it.
func (p *TCPProxy) ServeConn(ctx context.Context, c *Conn) {
	defer c.Close()
	var client net.Conn = c.Conn
	received, sent := c.CountReceived, c.CountSent
	if p.env.ServerTLS != nil {
		// Count bytes on the wire, TLS records included, as the HTTP
		// listener does; Pipe then sees the decrypted stream.
		tc, _, ok := p.env.AcceptTLS(ctx, c, nil)
		if !ok {
			return
		}
		client = tc
		received, sent = func(int64) {}, func(int64) {}
	}
	up, addr, err := p.up.Dial(ctx)
	if err != nil {
		p.env.Logger.Warn("upstream unreachable", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	defer up.Close()
	err = Pipe(client, up, p.cfg.IdleTimeout, received, sent)
	if err != nil && !isClosedErr(err) {
		p.env.Logger.Debug("connection ended", "remote", c.RemoteAddr().String(), "upstream", addr.Address, "err", err)
	}
}

// Drain has nothing to do: TCP connections end when their peers close them,
// or when the listener closes them at the drain timeout.
func (p *TCPProxy) Drain() {}

// Close releases nothing; upstream connections belong to client connections.
func (p *TCPProxy) Close() error { return nil }

// Pipe copies bytes both ways between client and upstream until both
// directions have ended. An EOF from one side half-closes the other (so
// request/response protocols that shut down writes keep working); any other
// error, or idle seconds with no traffic either way, ends both directions.
// The first error wins. Neither connection is closed. received and sent count
// bytes from and to the client.
func Pipe(client, upstream net.Conn, idle time.Duration, received, sent func(int64)) error {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var (
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
		stopped  atomic.Bool
	)
	fail := func(err error) {
		once.Do(func() {
			firstErr = err
			stopped.Store(true)
			// Unblock the other direction.
			client.SetDeadline(time.Unix(1, 0))
			upstream.SetDeadline(time.Unix(1, 0))
		})
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := copyHalf(upstream, client, idle, &last, &stopped, received); err != nil {
			fail(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := copyHalf(client, upstream, idle, &last, &stopped, sent); err != nil {
			fail(err)
		}
	}()
	wg.Wait()
	return firstErr
}

// copyHalf moves src to dst chunk by chunk, re-arming the idle deadline
// between chunks. It returns nil at EOF, after closing dst for writing.
func copyHalf(dst, src net.Conn, idle time.Duration, last *atomic.Int64, stopped *atomic.Bool, count func(int64)) error {
	var w io.Writer = dst
	var buf []byte // socket to socket: splice(2) moves the bytes, no buffer
	if !isRawSocket(src) || !isRawSocket(dst) {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf = *bp
		w = writerOnly{dst} // use buf, not a fresh one per ReadFrom call
	}
	lr := &io.LimitedReader{R: src}
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		if stopped.Load() { // fail() ran before the re-arm above
			return nil
		}
		lr.N = copyChunk
		n, err := io.CopyBuffer(w, lr, buf)
		if n > 0 {
			count(n)
			last.Store(time.Now().UnixNano())
		}
		switch {
		case err == nil && n < copyChunk: // EOF
			closeWrite(dst)
			return nil
		case err == nil && !stopped.Load():
			continue
		case err == nil:
			return nil
		case stopped.Load():
			return err
		case idle > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, last.Load())) < idle {
				continue // the other direction is busy
			}
			return errIdle
		default:
			return err
		}
	}
}

type writerOnly struct{ io.Writer }

// copyBufs holds the buffers of TLS-side copies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func isRawSocket(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF)
}
