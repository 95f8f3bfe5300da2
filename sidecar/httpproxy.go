package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// HTTP proxy tunables that the config does not expose.
const (
	httpMaxHeaderBytes      = 1 << 20
	httpMaxIdleConnsPerHost = 64
	httpIdleConnTimeout     = 90 * time.Second
	httpExpectContinue      = time.Second
	// httpDiscardLimit is how much of a discarded (retried) response body is
	// read to keep its upstream connection reusable; beyond it the connection
	// is closed instead.
	httpDiscardLimit = 64 << 10
	// retryWindow is the sliding window of the retry budget, in one-second
	// buckets.
	retryWindow = 10
	// noRouteLabel is the route label of requests that matched no route.
	noRouteLabel = "none"
)

// errRouteTimeout ends an upstream exchange that ran past the route's timeout
// before the response headers arrived.
var errRouteTimeout = errors.New("sidecar: upstream timeout")

// HTTPProxy is the Handler of an http listener: a reverse proxy that routes
// by Host and longest path prefix, retries safely within a listener-wide
// budget, and terminates client TLS (with HTTP/2 via ALPN) when the listener
// has a profile.
//
// Data flow: the listener's accept loop calls ServeConn on its own goroutine;
// ServeConn runs the TLS handshake (if any) and hands the connection to one
// http.Server through a channel-backed net.Listener. The http.Server owns the
// connection from then on; its ConnState hook closes the *Conn when the
// server is done with it, so the listener's books stay right. Each request is
// matched to a route, whose httputil.ReverseProxy sends it through the
// route's retrying RoundTripper to an http.Transport that dials with the
// route's Upstream.
type HTTPProxy struct {
	env    Env
	log    *slog.Logger
	m      *metrics.Metrics
	routes []*httpRoute
	budget *retryBudget
	srv    *http.Server
	ln     *connListener

	mu    sync.Mutex
	conns map[net.Conn]*Conn // what the http.Server sees -> the listener's Conn

	draining   atomic.Bool
	drainOnce  sync.Once
	closeOnce  sync.Once
	stopCtx    context.Context // cancelled by Close; bounds the Shutdown that Drain starts
	stopCancel context.CancelFunc
	serveDone  chan struct{}
}

// httpRoute is one compiled route: its matching rule, upstream, transport,
// reverse proxy and metric children.
type httpRoute struct {
	label   string // metric label: the prefix, with the host in front when set
	prefix  string
	host    string // lower-case, without port; "" matches any host
	wild    bool   // host is "*.suffix": match any name ending in host (".suffix")
	timeout time.Duration
	retries int

	up        *Upstream
	keys      map[*UpstreamAddr]string // address -> URL host used for it
	addrByKey map[string]*UpstreamAddr // and back, for DialContext
	transport *http.Transport
	proxy     *httputil.ReverseProxy

	requests  *prometheus.CounterVec // curried with listener and route
	duration  prometheus.Observer
	retried   map[string]prometheus.Counter // by reason: connect, status
	exhausted prometheus.Counter
}

// NewHTTPProxy is the Builder for http listeners.
func NewHTTPProxy(env Env, section any) (Handler, error) {
	cfg, ok := section.(*config.HTTP)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("http: want a *config.HTTP section, got %T", section)
	}
	if len(cfg.Routes) == 0 {
		return nil, errors.New("routes: at least one route is required")
	}
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	if env.Metrics == nil {
		env.Metrics = metrics.New(metrics.BuildInfo{})
	}
	p := &HTTPProxy{
		env:       env,
		log:       env.Logger,
		m:         env.Metrics,
		budget:    newRetryBudget(cfg.RetryBudget, time.Now),
		ln:        newConnListener(env.Name),
		conns:     map[net.Conn]*Conn{},
		serveDone: make(chan struct{}),
	}
	p.stopCtx, p.stopCancel = context.WithCancel(context.Background())
	errLog := slog.NewLogLogger(env.Logger.Handler(), slog.LevelDebug)
	for i := range cfg.Routes {
		rt, err := p.newRoute(cfg.Routes[i], errLog)
		if err != nil {
			for _, r := range p.routes {
				r.transport.CloseIdleConnections()
			}
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		p.routes = append(p.routes, rt)
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true) // only over TLS with ALPN h2: plaintext h2c stays off
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          errLog,
		ConnState:         p.connState,
		Protocols:         &protocols,
	}
	go func() {
		defer close(p.serveDone)
		if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			p.log.Warn("http server stopped", "err", err)
		}
	}()
	return p, nil
}

// newRoute compiles one route: its upstream, transport and reverse proxy.
func (p *HTTPProxy) newRoute(rc config.Route, errLog *log.Logger) (*httpRoute, error) {
	up, err := NewUpstream(p.env.Name, rc.Upstream, p.env.Dialer, p.m)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	rt := &httpRoute{
		prefix:    rc.Prefix,
		timeout:   rc.Timeout,
		retries:   max(rc.Retries, 0),
		up:        up,
		keys:      map[*UpstreamAddr]string{},
		addrByKey: map[string]*UpstreamAddr{},
	}
	if rt.prefix == "" {
		rt.prefix = "/"
	}
	switch h := canonicalHost(rc.Host); {
	case h == "" || h == "*":
	case strings.HasPrefix(h, "*."):
		rt.host, rt.wild = h[1:], true
	default:
		rt.host = h
	}
	rt.label = rt.prefix
	if rc.Host != "" {
		rt.label = strings.ToLower(rc.Host) + rt.prefix
	}
	for i, a := range up.Addrs() {
		key := a.Address
		if _, dup := rt.addrByKey[key]; dup || a.network != "tcp" || !plainHostPort(key) {
			key = fmt.Sprintf("upstream-%d.invalid:80", i)
		}
		rt.keys[a] = key
		rt.addrByKey[key] = a
	}
	rt.transport = &http.Transport{
		Proxy:                  nil, // never HTTP_PROXY from the environment
		DialContext:            rt.dial,
		ForceAttemptHTTP2:      false,
		MaxIdleConnsPerHost:    httpMaxIdleConnsPerHost,
		IdleConnTimeout:        httpIdleConnTimeout,
		ExpectContinueTimeout:  httpExpectContinue,
		MaxResponseHeaderBytes: httpMaxHeaderBytes,
		// Pass Content-Encoding through untouched instead of asking for gzip
		// and decoding it on the client's behalf.
		DisableCompression: true,
	}
	rt.requests = p.m.HTTPRequests.MustCurryWith(prometheus.Labels{"listener": p.env.Name, "route": rt.label})
	rt.duration = p.m.HTTPRequestDuration.WithLabelValues(p.env.Name, rt.label)
	rt.retried = map[string]prometheus.Counter{
		"connect": p.m.HTTPRetries.WithLabelValues(p.env.Name, rt.label, "connect"),
		"status":  p.m.HTTPRetries.WithLabelValues(p.env.Name, rt.label, "status"),
	}
	rt.exhausted = p.m.HTTPRetriesExhausted.WithLabelValues(p.env.Name, rt.label)
	rt.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = rt.keys[rt.up.Addrs()[0]] // the RoundTripper picks the real one per attempt
			if !InjectHTTP(pr.In.Context(), pr.Out.Header) {
				ensureTraceparent(pr.Out.Header)
			}
		},
		Transport:    &retryTransport{rt: rt, budget: p.budget},
		BufferPool:   proxyBuffers{},
		ErrorLog:     errLog,
		ErrorHandler: p.errorHandler(rt),
	}
	return rt, nil
}

// plainHostPort reports whether an upstream address can stand as a URL host
// as it is (so the transport hands the same string back to DialContext).
func plainHostPort(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '/' || c == '@' {
			return false
		}
	}
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != "" && net.JoinHostPort(host, port) == s
}

// dialError marks a failed connect: nothing reached the upstream, so the
// request may go to another address whatever its method.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial is the transport's DialContext: addr is the URL host the
// RoundTripper chose, mapped back to its upstream address.
func (rt *httpRoute) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	a := rt.addrByKey[addr]
	if a == nil {
		return nil, &dialError{fmt.Errorf("sidecar: no upstream address for %q", addr)}
	}
	c, err := rt.up.DialAddr(ctx, a, true)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// ServeConn runs the TLS handshake when the listener has a profile and hands
// the connection to the http.Server, which owns it from then on. After Drain
// it just closes c.
func (p *HTTPProxy) ServeConn(ctx context.Context, c *Conn) {
	if p.draining.Load() {
		c.Close()
		return
	}
	var nc net.Conn = c.Counting()
	if p.env.ServerTLS != nil {
		tc, _, ok := p.env.AcceptTLS(ctx, c, []string{"h2", "http/1.1"})
		if !ok {
			return
		}
		nc = tc // unwrapped: http.Server speaks HTTP/2 only on a *tls.Conn
	}
	p.mu.Lock()
	p.conns[nc] = c
	p.mu.Unlock()
	if !p.ln.deliver(nc) {
		p.forget(nc)
		c.Close()
	}
}

// connState keeps the listener's books: a connection the http.Server is done
// with is closed through its *Conn. A hijacked one (a protocol upgrade) now
// belongs to the ReverseProxy, which closes it when the tunnel ends; its
// Close reaches the *Conn through the counting wrapper (or the *tls.Conn on
// top of it), so it is only forgotten here.
func (p *HTTPProxy) connState(nc net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive, http.StateIdle:
		p.mu.Lock()
		c := p.conns[nc]
		p.mu.Unlock()
		if c != nil {
			if st == http.StateActive {
				c.MarkActive()
			} else {
				c.MarkIdle()
			}
		}
	case http.StateClosed:
		if c := p.forget(nc); c != nil {
			c.Close()
		}
	case http.StateHijacked:
		p.forget(nc)
	}
}

func (p *HTTPProxy) forget(nc net.Conn) *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[nc]
	delete(p.conns, nc)
	return c
}

// Drain stops taking connections and shuts the http.Server down in the
// background: idle keep-alive connections close now, in-flight requests run
// to their end, HTTP/2 clients get a GOAWAY.
func (p *HTTPProxy) Drain() {
	p.drainOnce.Do(func() {
		p.draining.Store(true)
		p.ln.Close()
		go func() {
			if err := p.srv.Shutdown(p.stopCtx); err != nil && !errors.Is(err, context.Canceled) {
				p.log.Debug("http shutdown", "err", err)
			}
		}()
	})
}

// Close closes the http.Server (and every connection it still holds), the
// channel listener and the upstream transports' idle connections.
func (p *HTTPProxy) Close() error {
	p.closeOnce.Do(func() {
		p.draining.Store(true)
		p.stopCancel()
		p.ln.Close()
		p.srv.Close()
		<-p.serveDone
		for _, rt := range p.routes {
			rt.transport.CloseIdleConnections()
		}
	})
	return nil
}

// ServeHTTP routes one request to its route's reverse proxy and records it
// in the metrics. A request no route matches gets 404.
func (p *HTTPProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := p.match(r.Host, r.URL.Path)
	if rt == nil {
		p.m.HTTPRequests.WithLabelValues(p.env.Name, noRouteLabel, "4xx").Inc()
		http.Error(w, "outrigger: no route for this host and path", http.StatusNotFound)
		return
	}
	sw := &statusWriter{ResponseWriter: w, start: time.Now(), duration: rt.duration}
	var span trace.Span
	if p.env.Tracer.Enabled() {
		var ctx context.Context
		ctx, span = p.env.Tracer.StartHTTP(r.Context(), r, p.env.Name, rt.label)
		r = r.WithContext(ctx)
	}
	defer func() {
		if sw.code == 0 { // the proxy gave up without a response (panicked with ErrAbortHandler)
			sw.duration.Observe(time.Since(sw.start).Seconds())
		}
		rt.requests.WithLabelValues(codeClass(sw.code)).Inc()
		if span != nil {
			EndHTTP(span, sw.code)
		}
	}()
	rt.proxy.ServeHTTP(sw, r)
}

// match picks the route for a request: routes whose host matches (an exact
// host beats a wildcard, a longer wildcard beats a shorter one, both beat a
// route without host) and whose prefix starts the path; among those the
// longest prefix; on a tie the first in config order.
func (p *HTTPProxy) match(host, path string) *httpRoute {
	h := canonicalHost(host)
	var best *httpRoute
	bestRank, bestPrefix := -1, -1
	for _, rt := range p.routes {
		if !strings.HasPrefix(path, rt.prefix) {
			continue
		}
		rank := 0
		switch {
		case rt.host == "":
		case rt.wild:
			if len(h) <= len(rt.host) || !strings.HasSuffix(h, rt.host) {
				continue
			}
			rank = 1 + len(rt.host)
		default:
			if h != rt.host {
				continue
			}
			rank = 1 << 16 // any exact host beats any wildcard
		}
		if rank > bestRank || rank == bestRank && len(rt.prefix) > bestPrefix {
			best, bestRank, bestPrefix = rt, rank, len(rt.prefix)
		}
	}
	return best
}

// canonicalHost lower-cases a host, drops its port, IPv6 brackets and a
// trailing dot.
func canonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// errorHandler renders a failed upstream exchange: 504 when the route's
// timeout passed, 502 when no upstream address could be reached or the
// upstream broke the exchange. A client that went away gets 499 (it does
// not see it; it keeps the 5xx metrics clean).
func (p *HTTPProxy) errorHandler(rt *httpRoute) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		var de *dialError
		switch {
		case errors.Is(err, errRouteTimeout):
			p.log.Warn("upstream timeout", "route", rt.label, "timeout", rt.timeout.String(), "method", r.Method)
			http.Error(w, fmt.Sprintf("outrigger: upstream timed out after %s (route %s)", rt.timeout, rt.label), http.StatusGatewayTimeout)
		case r.Context().Err() != nil:
			p.log.Debug("client went away", "route", rt.label, "err", err)
			w.WriteHeader(499)
		case errors.As(err, &de):
			p.log.Warn("upstream unreachable", "route", rt.label, "err", err)
			http.Error(w, fmt.Sprintf("outrigger: upstream unreachable (route %s)", rt.label), http.StatusBadGateway)
		default:
			p.log.Warn("upstream error", "route", rt.label, "err", err)
			http.Error(w, fmt.Sprintf("outrigger: bad gateway (route %s)", rt.label), http.StatusBadGateway)
		}
	}
}

// codeClass is a status code's metric label: 1xx..5xx, "error" when no
// response was written.
func codeClass(code int) string {
	if code < 100 || code > 599 {
		return "error"
	}
	return string(rune('0'+code/100)) + "xx"
}

// statusWriter notes the final status code and the time to the response
// headers. Unwrap keeps Flush and Hijack (through http.ResponseController)
// working.
type statusWriter struct {
	http.ResponseWriter
	code     int
	start    time.Time
	duration prometheus.Observer
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
		w.duration.Observe(time.Since(w.start).Seconds())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the server's ResponseWriter.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// retryTransport is a route's RoundTripper: it bounds the exchange up to the
// response headers by the route's timeout, picks an upstream address per
// attempt and retries what is safe to retry:
//
//   - a failed connect (nothing reached the upstream) for any method, as long
//     as the request body has not been read;
//   - 502, 503 or 504 from the upstream for idempotent methods whose body can
//     be sent again (none, or GetBody).
//
// Each retry needs the listener's retry budget. It is only used under the
// route's ReverseProxy, which wraps the request body so that Close is a
// no-op and closes the real body itself; so an attempt that fails does not
// spoil the body for the next.
type retryTransport struct {
	rt     *httpRoute
	budget *retryBudget
}

// RoundTrip sends req with retries; see retryTransport.
func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.rt
	t.budget.request()
	ctx, cancel := context.WithCancelCause(req.Context())
	var timer *time.Timer
	if rt.timeout > 0 {
		timer = time.AfterFunc(rt.timeout, func() { cancel(errRouteTimeout) })
	}
	stop := func() bool { return timer == nil || timer.Stop() }

	var body *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &trackedBody{rc: req.Body}
	}
	statusRetry := idempotentMethod(req.Method) && (body == nil || req.GetBody != nil)
	tried := map[*UpstreamAddr]bool{}
	var (
		resp *http.Response
		err  error
	)
	for attempt := 0; ; attempt++ {
		addr := rt.up.Pick(tried)
		if addr == nil { // every address tried: go round again
			clear(tried)
			addr = rt.up.Pick(tried)
		}
		tried[addr] = true
		areq := req.WithContext(ctx)
		u := *req.URL
		u.Host = rt.keys[addr]
		areq.URL = &u
		switch {
		case body == nil:
		case attempt == 0 || !body.read.Load():
			areq.Body = body
		default: // a status retry after the body was sent: replay it
			b, gerr := req.GetBody()
			if gerr != nil {
				err = gerr
				break
			}
			areq.Body = b
		}
		if err != nil {
			break
		}
		resp, err = rt.transport.RoundTrip(areq)

		reason := ""
		var de *dialError
		switch {
		case err != nil && errors.Is(context.Cause(ctx), errRouteTimeout):
			err = errRouteTimeout
		case err != nil && req.Context().Err() != nil:
			// The client went away: nothing to retry for.
		case err != nil:
			if errors.As(err, &de) && (body == nil || !body.read.Load() || req.GetBody != nil) {
				reason = "connect"
			}
		case statusRetry && retryableStatus(resp.StatusCode):
			reason = "status"
		}
		if reason == "" || attempt >= rt.retries {
			break
		}
		if !t.budget.allow() {
			rt.exhausted.Inc()
			break
		}
		rt.retried[reason].Inc()
		if resp != nil {
			discard(resp.Body)
			resp = nil
		}
		err = nil
	}
	if err != nil {
		stop()
		cancel(err)
		return nil, err
	}
	if !stop() { // the timeout fired just as the headers came in
		resp.Body.Close()
		cancel(errRouteTimeout)
		return nil, errRouteTimeout
	}
	if resp.Body == nil {
		cancel(nil)
		return resp, nil
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &cancelRWBody{ReadWriteCloser: rwc, cancel: cancel}
	} else {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	}
	return resp, nil
}

// idempotentMethod reports whether a method may be sent twice (RFC 9110 9.2.2).
func idempotentMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func retryableStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// discard reads a little of a response body that is thrown away, so that
// its connection can be reused, and closes it.
func discard(b io.ReadCloser) {
	io.CopyN(io.Discard, b, httpDiscardLimit)
	b.Close()
}

// trackedBody notes whether the request body was read, that is whether any
// of it may have reached an upstream. Close is left to the body's owner.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *trackedBody) Close() error { return nil }

// cancelBody ends the exchange's context once the response body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// cancelRWBody is cancelBody for a 101 response, whose body is the upgraded
// connection and must stay writable.
type cancelRWBody struct {
	io.ReadWriteCloser
	cancel context.CancelCauseFunc
}

func (b *cancelRWBody) Close() error {
	err := b.ReadWriteCloser.Close()
	b.cancel(nil)
	return err
}

// retryBudget caps retries for one listener. A retry is allowed when the
// current second has had fewer than MinPerSecond of the always-allowed
// retries, or else when the other retries of the last 10 seconds stay within
// Ratio times the requests of those seconds; so the two allowances add up.
type retryBudget struct {
	ratio     float64
	minPerSec int64
	now       func() time.Time

	mu      sync.Mutex
	buckets [retryWindow]budgetBucket
}

// budgetBucket counts one second: requests, retries charged to the ratio,
// and retries taken from the per-second minimum.
type budgetBucket struct {
	sec                     int64
	requests, retries, free int64
}

func newRetryBudget(cfg config.RetryBudget, now func() time.Time) *retryBudget {
	return &retryBudget{ratio: max(cfg.Ratio, 0), minPerSec: int64(max(cfg.MinPerSecond, 0)), now: now}
}

// bucket returns the bucket of second s, emptied if it held an older second.
func (b *retryBudget) bucket(s int64) *budgetBucket {
	bk := &b.buckets[(s%retryWindow+retryWindow)%retryWindow]
	if bk.sec != s {
		*bk = budgetBucket{sec: s}
	}
	return bk
}

// request records one request (the first attempt).
func (b *retryBudget) request() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bucket(b.now().Unix()).requests++
}

// allow reports whether one more retry fits the budget, and if so records it.
func (b *retryBudget) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.now().Unix()
	cur := b.bucket(s)
	if cur.free < b.minPerSec {
		cur.free++
		return true
	}
	var requests, retries int64
	for i := range b.buckets {
		if d := s - b.buckets[i].sec; d >= 0 && d < retryWindow {
			requests += b.buckets[i].requests
			retries += b.buckets[i].retries
		}
	}
	if float64(retries+1) > b.ratio*float64(requests) {
		return false
	}
	cur.retries++
	return true
}

// ensureTraceparent gives a request a W3C traceparent when it has no valid
// one, starting a new sampled trace (and dropping a tracestate that belonged
// to the invalid one). A valid traceparent is left as it is.
func ensureTraceparent(h http.Header) {
	if validTraceparent(h.Values("Traceparent")) {
		return
	}
	h.Del("Tracestate")
	h.Set("Traceparent", newTraceparent())
}

// newTraceparent returns "00-<trace id>-<parent id>-01" with random,
// non-zero ids.
func newTraceparent() string {
	var id [24]byte
	for {
		rand.Read(id[:]) // never fails (crypto/rand aborts the process instead)
		if !allZero(id[:16]) && !allZero(id[16:]) {
			break
		}
	}
	buf := make([]byte, 0, 55)
	buf = append(buf, "00-"...)
	buf = hex.AppendEncode(buf, id[:16])
	buf = append(buf, '-')
	buf = hex.AppendEncode(buf, id[16:])
	buf = append(buf, "-01"...)
	return string(buf)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// validTraceparent checks a traceparent header per W3C Trace Context: one
// value, version (not ff) - 32 hex trace id - 16 hex parent id - 2 hex flags,
// lower-case, ids not all zero; version 00 is exactly 55 characters, later
// versions may carry more after a dash.
func validTraceparent(vals []string) bool {
	if len(vals) != 1 {
		return false
	}
	v := vals[0]
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	version, traceID, parentID, flags := v[0:2], v[3:35], v[36:52], v[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(traceID) || !lowerHex(parentID) || !lowerHex(flags) {
		return false
	}
	if strings.Trim(traceID, "0") == "" || strings.Trim(parentID, "0") == "" {
		return false
	}
	if version == "00" {
		return len(v) == 55
	}
	return len(v) == 55 || v[55] == '-'
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// proxyBuffers lends the ReverseProxy its 32 KiB copy buffers.
type proxyBuffers struct{}

var proxyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (proxyBuffers) Get() []byte { return *proxyBufferPool.Get().(*[]byte) }

func (proxyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		b = b[:cap(b)]
		proxyBufferPool.Put(&b)
	}
}

// connListener is the net.Listener that the handler's http.Server accepts
// from: ServeConn delivers connections the sidecar listener already accepted
// (and, with TLS, already shook hands on).
type connListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	addr      connListenerAddr
}

type connListenerAddr string

func (a connListenerAddr) Network() string { return "outrigger" }
func (a connListenerAddr) String() string  { return string(a) }

func newConnListener(name string) *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{}), addr: connListenerAddr(name)}
}

// deliver hands c to Accept; false once the listener is closed.
func (l *connListener) deliver(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next delivered connection, or net.ErrClosed.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and deliver fail from now on.
func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr names the listener (it has no socket of its own).
func (l *connListener) Addr() net.Addr { return l.addr }
