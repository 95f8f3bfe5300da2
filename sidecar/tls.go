package sidecar

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

// TLSProfile is a loaded server-side TLS profile. The certificate, key and CA
// bundle are re-read from disk every reload_interval; a changed, valid set is
// used by the next handshake, so certificate rotation needs no restart and
// drops no connection. A set that fails to load (a half-written file, say) is
// logged and counted, and the last good one stays in use.
type TLSProfile struct {
	name string
	cfg  config.TLSProfile
	m    *metrics.Metrics
	log  *slog.Logger

	state atomic.Pointer[tlsState]
	base  *tls.Config

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

type tlsState struct {
	cert     *tls.Certificate
	pool     *x509.CertPool
	raw      [3][]byte // cert, key, ca as read, to spot changes
	notAfter time.Time
}

// LoadTLSProfile reads a profile's files and starts watching them. It fails if
// they do not load; Close stops the watch.
func LoadTLSProfile(name string, cfg config.TLSProfile, m *metrics.Metrics, log *slog.Logger) (*TLSProfile, error) {
	p := &TLSProfile{name: name, cfg: cfg, m: m, log: log.With("tls_profile", name), stop: make(chan struct{}), done: make(chan struct{})}
	st, err := p.load()
	if err != nil {
		return nil, fmt.Errorf("tls.%s: %w", name, err)
	}
	p.state.Store(st)
	p.publish(st)
	min := uint16(tls.VersionTLS12)
	if cfg.MinVersion == "1.3" {
		min = tls.VersionTLS13
	}
	var auth tls.ClientAuthType
	switch cfg.ClientAuth {
	case "request":
		auth = tls.VerifyClientCertIfGiven
	case "require":
		auth = tls.RequireAndVerifyClientCert
	default:
		auth = tls.NoClientCert
	}
	p.base = &tls.Config{MinVersion: min, ClientAuth: auth}
	go p.watch()
	return p, nil
}

// Name is the profile's name under tls:.
func (p *TLSProfile) Name() string { return p.name }

// ServerConfig returns a tls.Config for a server socket that always presents
// the profile's current certificate and verifies clients against its current
// CA bundle. nextProtos sets ALPN ("h2", "http/1.1"); nil for none.
func (p *TLSProfile) ServerConfig(nextProtos []string) *tls.Config {
	c := p.base.Clone()
	c.NextProtos = nextProtos
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		st := p.state.Load()
		cc := p.base.Clone()
		cc.NextProtos = nextProtos
		cc.Certificates = []tls.Certificate{*st.cert}
		cc.ClientCAs = st.pool
		return cc, nil
	}
	return c
}

// Close stops watching the files.
func (p *TLSProfile) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

func (p *TLSProfile) load() (*tlsState, error) {
	var st tlsState
	var err error
	for i, f := range []string{p.cfg.Cert, p.cfg.Key, p.cfg.CA} {
		if f == "" {
			continue
		}
		if st.raw[i], err = os.ReadFile(f); err != nil {
			return nil, err
		}
	}
	cert, err := tls.X509KeyPair(st.raw[0], st.raw[1])
	if err != nil {
		return nil, fmt.Errorf("cert %s / key %s: %w", p.cfg.Cert, p.cfg.Key, err)
	}
	st.cert = &cert
	st.notAfter = cert.Leaf.NotAfter
	if p.cfg.CA != "" {
		st.pool = x509.NewCertPool()
		if !st.pool.AppendCertsFromPEM(st.raw[2]) {
			return nil, fmt.Errorf("ca %s: no PEM certificates", p.cfg.CA)
		}
	}
	return &st, nil
}

func (p *TLSProfile) publish(st *tlsState) {
	p.m.TLSCertExpiry.WithLabelValues(p.name, "cert").Set(float64(st.notAfter.Unix()))
	if exp, ok := earliestExpiry(st.raw[2]); ok {
		p.m.TLSCertExpiry.WithLabelValues(p.name, "ca").Set(float64(exp.Unix()))
	}
}

func (p *TLSProfile) watch() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.reloadIfChanged()
	}
}

// reloadIfChanged re-reads the files and swaps them in when their bytes changed.
func (p *TLSProfile) reloadIfChanged() {
	cur := p.state.Load()
	changed := false
	for i, f := range []string{p.cfg.Cert, p.cfg.Key, p.cfg.CA} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Equal(b, cur.raw[i]) {
			changed = true
			break
		}
	}
	if !changed {
		return
	}
	st, err := p.load()
	if err != nil {
		p.m.TLSReloads.WithLabelValues(p.name, "error").Inc()
		p.log.Warn("certificate reload failed; keeping the current certificate", "err", err)
		return
	}
	p.state.Store(st)
	p.publish(st)
	p.m.TLSReloads.WithLabelValues(p.name, "success").Inc()
	p.log.Info("certificate reloaded", "not_after", st.notAfter)
}

func earliestExpiry(bundle []byte) (time.Time, bool) {
	var min time.Time
	for len(bundle) > 0 {
		var b *pem.Block
		b, bundle = pem.Decode(bundle)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && (min.IsZero() || c.NotAfter.Before(min)) {
			min = c.NotAfter
		}
	}
	return min, !min.IsZero()
}

// PeerIdentity is the principal a verified client certificate gives: its first
// SPIFFE URI SAN, else its subject common name; "" without a certificate.
func PeerIdentity(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return leaf.Subject.CommonName
}

// HandshakeTimeout bounds a client-facing TLS handshake.
const HandshakeTimeout = 10 * time.Second

// ServerHandshake runs the server side of TLS on conn with the profile,
// records the result in the metrics and returns the TLS connection and the
// peer's identity. On failure conn is left open for the caller to close.
func ServerHandshake(ctx context.Context, conn net.Conn, p *TLSProfile, nextProtos []string, listener string) (*tls.Conn, string, error) {
	tc := tls.Server(conn, p.ServerConfig(nextProtos))
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	p.m.TLSHandshakeTime.WithLabelValues(listener).Observe(time.Since(start).Seconds())
	if err != nil {
		reason := HandshakeFailureReason(err)
		p.m.TLSHandshakes.WithLabelValues(listener, "error", reason).Inc()
		return nil, "", fmt.Errorf("tls handshake (%s): %w", reason, err)
	}
	p.m.TLSHandshakes.WithLabelValues(listener, "ok", "none").Inc()
	return tc, PeerIdentity(tc.ConnectionState()), nil
}

// AcceptTLS runs the server side of TLS for a client connection of the
// listener env describes: over c.Counting(), so the listener's byte counters
// see the bytes on the wire. A failed handshake is counted as a refused
// connection, logged, and closes c (ok is false). The client's principal is
// logged when it has one.
func (env Env) AcceptTLS(ctx context.Context, c *Conn, nextProtos []string) (tc *tls.Conn, principal string, ok bool) {
	tc, principal, err := ServerHandshake(ctx, c.Counting(), env.ServerTLS, nextProtos, env.Name)
	if err != nil {
		env.Metrics.ConnRefused.WithLabelValues(env.Name, string(env.Kind), "tls").Inc()
		env.Logger.Info("client refused", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return nil, "", false
	}
	if principal != "" {
		env.Logger.Info("client authenticated", "remote", c.RemoteAddr().String(), "principal", principal,
			"alpn", tc.ConnectionState().NegotiatedProtocol)
	}
	return tc, principal, true
}

// HandshakeFailureReason sorts a handshake error into a bounded set of words
// for metrics and logs: no_certificate, unknown_ca, expired_certificate,
// bad_certificate, client_rejected_certificate (the client distrusts the
// sidecar's certificate), timeout, protocol, client_closed, other.
func HandshakeFailureReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var rec tls.RecordHeaderError
	var alert tls.AlertError
	var netErr net.Error
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &unknown):
		return "unknown_ca"
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "expired_certificate"
		}
		return "bad_certificate"
	case errors.As(err, &hostname):
		return "bad_certificate"
	case strings.Contains(err.Error(), "didn't provide a certificate"),
		strings.Contains(err.Error(), "certificate required"):
		return "no_certificate"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "remote error: tls: bad certificate"),
		strings.Contains(err.Error(), "remote error: tls: unknown certificate authority"),
		strings.Contains(err.Error(), "remote error: tls: certificate expired"):
		return "client_rejected_certificate" // the client distrusts ours
	case errors.As(err, &rec), errors.As(err, &alert), strings.HasPrefix(err.Error(), "tls:"),
		strings.Contains(err.Error(), "local error: tls:"), strings.Contains(err.Error(), "remote error: tls:"):
		return "protocol"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "client_closed"
	default:
		return "other"
	}
}
