package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoUpstream is returned when every upstream address failed to connect.
var ErrNoUpstream = errors.New("sidecar: no upstream address reachable")

// Upstream dials one listener's upstream addresses: round-robin, with a
// connect timeout, TLS origination per tls.mode, and passive health: an
// address that fails to connect is skipped for a backoff that doubles with
// each further failure (up to max_backoff) and resets on success. When every
// address is in backoff, they are tried anyway, soonest-due first, rather than
// failing without a try.
type Upstream struct {
	cfg    config.Upstream
	dialer Dialer
	tls    *tls.Config // nil: plaintext
	addrs  []*UpstreamAddr
	next   atomic.Uint64
	now    func() time.Time
}

// UpstreamAddr is one upstream address and its health.
type UpstreamAddr struct {
	// Address as configured (host:port or unix:/path).
	Address         string
	network, target string

	mu       sync.Mutex
	failures int
	until    time.Time

	connectTime prometheus.Observer
	failed      prometheus.Counter
	healthy     prometheus.Gauge
}

// NewUpstream prepares dialing for a listener; it loads the TLS client files now.
func NewUpstream(listener string, cfg config.Upstream, dialer Dialer, m *metrics.Metrics) (*Upstream, error) {
	if dialer == nil {
		dialer = &net.Dialer{}
	}
	u := &Upstream{cfg: cfg, dialer: dialer, now: time.Now}
	for _, a := range cfg.AllAddresses() {
		network, target, err := config.ParseAddress(a)
		if err != nil {
			return nil, err
		}
		ua := &UpstreamAddr{
			Address: a, network: network, target: target,
			connectTime: m.UpstreamConnectDuration.WithLabelValues(listener, a),
			failed:      m.UpstreamConnectFailures.WithLabelValues(listener, a),
			healthy:     m.UpstreamHealthy.WithLabelValues(listener, a),
		}
		ua.healthy.Set(1)
		u.addrs = append(u.addrs, ua)
	}
	if len(u.addrs) == 0 {
		return nil, errors.New("upstream: no address")
	}
	tc, err := ClientTLSConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	u.tls = tc
	return u, nil
}

// ClientTLSConfig builds the client side of TLS for an upstream: nil for mode
// disable; require encrypts without verifying; verify-ca checks the chain
// against tls.ca but not the name; verify-full checks both.
func ClientTLSConfig(t config.UpstreamTLS) (*tls.Config, error) {
	if t.Mode == "" || t.Mode == "disable" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("upstream tls cert: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if t.CA != "" {
		b, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("upstream tls ca: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("upstream tls ca %s: no PEM certificates", t.CA)
		}
		c.RootCAs = pool
	}
	switch t.Mode {
	case "require":
		c.InsecureSkipVerify = true
	case "verify-ca":
		c.InsecureSkipVerify = true // the chain is checked below, the name is not
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("upstream presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	return c, nil
}

// TLSConfig is the client TLS config for addr (nil when tls.mode is disable),
// with the server name set for verify-full.
func (u *Upstream) TLSConfig(addr *UpstreamAddr) *tls.Config {
	if u.tls == nil {
		return nil
	}
	c := u.tls.Clone()
	if c.ServerName == "" && addr.network == "tcp" {
		host, _, _ := net.SplitHostPort(addr.target)
		c.ServerName = host
	}
	return c
}

// Addrs returns the upstream addresses in config order.
func (u *Upstream) Addrs() []*UpstreamAddr { return u.addrs }

// Pick returns the next address in the rotation that is not in backoff and not
// in skip; if there is none, the one whose backoff ends soonest (skip still
// applies); nil if skip holds them all.
func (u *Upstream) Pick(skip map[*UpstreamAddr]bool) *UpstreamAddr {
	n := uint64(len(u.addrs))
	start := u.next.Add(1) - 1
	now := u.now()
	var soonest *UpstreamAddr
	var soonestAt time.Time
	for i := uint64(0); i < n; i++ {
		a := u.addrs[(start+i)%n]
		if skip[a] {
			continue
		}
		a.mu.Lock()
		until := a.until
		a.mu.Unlock()
		if !now.Before(until) {
			return a
		}
		if soonest == nil || until.Before(soonestAt) {
			soonest, soonestAt = a, until
		}
	}
	return soonest
}

// Dial connects to one address after another, in rotation, until one answers.
// Nothing is sent before a connection is made, so moving on is always safe.
func (u *Upstream) Dial(ctx context.Context) (net.Conn, *UpstreamAddr, error) {
	skip := map[*UpstreamAddr]bool{}
	var errs []error
	for {
		a := u.Pick(skip)
		if a == nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrNoUpstream, errors.Join(errs...))
		}
		c, err := u.DialAddr(ctx, a, true)
		if err == nil {
			return c, a, nil
		}
		errs = append(errs, err)
		skip[a] = true
		if ctx.Err() != nil {
			return nil, nil, err
		}
	}
}

// DialAddr connects to one address within connect_timeout, with TLS per
// tls.mode when withTLS is set, and records the result in metrics and health.
func (u *Upstream) DialAddr(ctx context.Context, a *UpstreamAddr, withTLS bool) (net.Conn, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, u.cfg.ConnectTimeout)
	defer cancel()
	start := time.Now()
	c, err := u.dialer.DialContext(ctx, a.network, a.target)
	if err == nil && withTLS && u.tls != nil {
		tc := tls.Client(c, u.TLSConfig(a))
		if err = tc.HandshakeContext(ctx); err != nil {
			c.Close()
		} else {
			c = tc
		}
	}
	if err != nil {
		if parent.Err() == nil { // the caller gave up: no verdict on the address
			u.markFailed(a)
		}
		return nil, fmt.Errorf("upstream %s: %w", a.Address, err)
	}
	a.connectTime.Observe(time.Since(start).Seconds())
	u.MarkHealthy(a)
	return c, nil
}

func (u *Upstream) markFailed(a *UpstreamAddr) {
	a.failed.Inc()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures++
	d := u.cfg.Backoff
	for i := 1; i < a.failures && d < u.cfg.MaxBackoff; i++ {
		d *= 2
	}
	if d > u.cfg.MaxBackoff {
		d = u.cfg.MaxBackoff
	}
	a.until = u.now().Add(d)
	a.healthy.Set(0)
}

// MarkHealthy puts a back into rotation at once.
func (u *Upstream) MarkHealthy(a *UpstreamAddr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = 0
	a.until = time.Time{}
	a.healthy.Set(1)
}

// MarkFailed takes a out of rotation for its backoff, for failures seen after
// the connect (a frontend whose upstream handshake failed, say).
func (u *Upstream) MarkFailed(a *UpstreamAddr) { u.markFailed(a) }
