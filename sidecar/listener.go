package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// handlerRef is one Handler as a listener uses it: the connections it serves
// and the metric children they update. A listener holds exactly one current
// handlerRef; a replaced one lives on until its connections end.
type handlerRef struct {
	h       Handler
	name    string
	kind    config.ListenerKind
	hash    string
	maxConn int64
	log     *slog.Logger
	tls     bool // the listener has a client-facing TLS profile

	active                   prometheus.Gauge
	accepted, closed         prometheus.Counter
	received, sent           prometheus.Counter
	refusedMax, refusedDrain prometheus.Counter

	// ctx is what ServeConn gets: it ends when the drain timeout forces the
	// handler's remaining connections closed, or once the handler is closed.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[*Conn]struct{}
	idle  chan struct{} // closed when retired and the last connection ends
	gone  bool
}

func newHandlerRef(h Handler, name string, kind config.ListenerKind, hash string, maxConn int, m *metrics.Metrics, log *slog.Logger) *handlerRef {
	k := string(kind)
	ctx, cancel := context.WithCancel(context.Background())
	return &handlerRef{
		ctx: ctx, cancel: cancel,
		h: h, name: name, kind: kind, hash: hash, maxConn: int64(maxConn), log: log,
		active:       m.ConnActive.WithLabelValues(name, k),
		accepted:     m.ConnAccepted.WithLabelValues(name, k),
		closed:       m.ConnClosed.WithLabelValues(name, k),
		received:     m.BytesReceived.WithLabelValues(name, k),
		sent:         m.BytesSent.WithLabelValues(name, k),
		refusedMax:   m.ConnRefused.WithLabelValues(name, k, "max_connections"),
		refusedDrain: m.ConnRefused.WithLabelValues(name, k, "draining"),
		conns:        map[*Conn]struct{}{},
		idle:         make(chan struct{}),
	}
}

func (r *handlerRef) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// admit registers a new connection, or reports false when the handler is
// retired or at max_connections.
func (r *handlerRef) admit(raw net.Conn) (*Conn, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		r.refusedDrain.Inc()
		return nil, false
	}
	if int64(len(r.conns)) >= r.maxConn {
		r.refusedMax.Inc()
		return nil, false
	}
	c := &Conn{Conn: raw, Accepted: time.Now(), ref: r, closed: make(chan struct{})}
	r.conns[c] = struct{}{}
	r.accepted.Inc()
	r.active.Inc()
	return c, true
}

func (r *handlerRef) release(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.conns[c]; !ok {
		return
	}
	delete(r.conns, c)
	r.active.Dec()
	r.closed.Inc()
	if r.gone && len(r.conns) == 0 {
		close(r.idle)
	}
}

// retire stops admitting connections, asks the handler to drain, waits for
// its connections to end until ctx is done, closes the rest and then the
// handler itself.
func (r *handlerRef) retire(ctx context.Context) {
	r.mu.Lock()
	if !r.gone {
		r.gone = true
		if len(r.conns) == 0 {
			close(r.idle)
		}
	}
	r.mu.Unlock()
	r.h.Drain()
	select {
	case <-r.idle:
	case <-ctx.Done():
		r.cancel()
		r.mu.Lock()
		left := make([]*Conn, 0, len(r.conns))
		for c := range r.conns {
			left = append(left, c)
		}
		r.mu.Unlock()
		if len(left) > 0 {
			r.log.Warn("drain timeout: closing connections", "count", len(left))
		}
		for _, c := range left {
			c.Close()
		}
		<-r.idle
	}
	r.cancel()
	if err := r.h.Close(); err != nil {
		r.log.Warn("closing handler", "err", err)
	}
}

// Listener is one bound socket and its accept loop. Its handler can be
// swapped by a reload without closing the socket or the open connections.
type Listener struct {
	key           string // the listen address as configured; the bound one for host:0
	network, addr string
	ln            net.Listener
	cur           atomic.Pointer[handlerRef]
	done          chan struct{}
	log           *slog.Logger
}

// Listen binds a listen address (host:port or unix:/path). A stale Unix
// socket file that nobody listens on is removed first.
func Listen(address string) (net.Listener, error) {
	network, addr, err := config.ParseAddress(address)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		removeStaleSocket(addr)
	}
	return net.Listen(network, addr)
}

func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return // live: Listen will fail with "address in use"
	}
	os.Remove(path)
}

func newListener(ln net.Listener, address string, log *slog.Logger) *Listener {
	network, addr, _ := config.ParseAddress(address)
	key := address
	if network == "tcp" && strings.HasSuffix(address, ":0") {
		key = ln.Addr().String() // several host:0 listeners are several sockets
	}
	return &Listener{key: key, network: network, addr: addr, ln: ln, done: make(chan struct{}), log: log}
}

// Addr is the bound address (with the real port when the config said :0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// serve runs the accept loop until the socket is closed.
func (l *Listener) serve() {
	defer close(l.done)
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			l.log.Warn("accept", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ref := l.cur.Load()
		c, ok := ref.admit(raw)
		if !ok {
			raw.Close()
			continue
		}
		go serve(ref, c)
	}
}

// serve runs one connection; a panic in a handler ends that connection,
// never the process.
func serve(ref *handlerRef, c *Conn) {
	defer func() {
		if p := recover(); p != nil {
			ref.log.Error("handler panic; connection closed", "remote", c.RemoteAddr().String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			c.Close()
		}
	}()
	ref.h.ServeConn(ref.ctx, c)
}

// swap installs a new handler and returns the previous one.
func (l *Listener) swap(ref *handlerRef) *handlerRef { return l.cur.Swap(ref) }

// stop closes the socket (new connections are refused from here on) and
// waits for the accept loop to end. Open connections are untouched.
func (l *Listener) stop() {
	l.ln.Close()
	<-l.done
}
