package sidecar

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/metrics"
)

type mtlsFixture struct {
	srv    *Server
	addr   string
	ca     *testenv.CA
	dir    string
	logs   *testenv.SyncBuffer
	client *testenv.Leaf
}

// newMTLSFixture runs a tcp listener with client_auth: require in front of an
// echo server.
func newMTLSFixture(t *testing.T, clientAuth string) *mtlsFixture {
	t.Helper()
	f := &mtlsFixture{ca: testenv.NewCA(t, "mesh-ca"), dir: t.TempDir(), logs: &testenv.SyncBuffer{}}
	server := f.ca.Issue(t, testenv.LeafOptions{})
	writeFile(t, filepath.Join(f.dir, "ca.crt"), f.ca.CertPEM)
	writeFile(t, filepath.Join(f.dir, "tls.crt"), server.CertPEM)
	writeFile(t, filepath.Join(f.dir, "tls.key"), server.KeyPEM)
	f.client = f.ca.Issue(t, testenv.LeafOptions{Client: true, CommonName: "app", URIs: []string{"spiffe://example.org/ns/prod/sa/app"}})
	yaml := fmt.Sprintf(`admin: {listen: "off"}
shutdown: {drain_timeout: 1s}
tls:
  mesh: {cert: %[1]s/tls.crt, key: %[1]s/tls.key, ca: %[1]s/ca.crt, client_auth: %[2]s, reload_interval: 50ms}
tcp:
  - {name: secure, listen: 127.0.0.1:0, tls: mesh, upstream: {address: %[3]s}}
`, f.dir, clientAuth, testenv.EchoServer(t))
	f.srv = NewServer(Options{
		Logger:  slog.New(slog.NewJSONHandler(f.logs, nil)),
		Metrics: metrics.New(metrics.BuildInfo{}),
	})
	if err := f.srv.Apply(mustLoad(t, yaml)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Shutdown)
	f.addr = f.srv.ListenerAddr("secure").String()
	return f
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	// Write then rename, as secret volumes and cert-manager do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dial connects with TLS and proves the connection works end to end.
func (f *mtlsFixture) dial(cert *tls.Certificate) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost"}
	if cert != nil {
		// Send the certificate even when its issuer is not among the CAs the
		// server asks for (Go's default would send none), as libpq does.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", f.addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// TLS 1.3 reports a rejected client certificate on the first read.
	fmt.Fprint(c, "ping\n")
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if got != "ping\n" {
		c.Close()
		return nil, fmt.Errorf("echo: %q", got)
	}
	return c, nil
}

func TestMTLSRequire(t *testing.T) {
	f := newMTLSFixture(t, "require")
	other := testenv.NewCA(t, "other-ca")
	stranger := other.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://evil.org/x"}})
	expired := f.ca.Issue(t, testenv.LeafOptions{Client: true, NotAfter: time.Now().Add(-time.Minute)})
	good := f.client.TLSCertificate()
	strangerCert, expiredCert := stranger.TLSCertificate(), expired.TLSCertificate()

	tests := []struct {
		name   string
		cert   *tls.Certificate
		ok     bool
		reason string
	}{
		{"no certificate", nil, false, "no_certificate"},
		{"certificate from another CA", &strangerCert, false, "unknown_ca"},
		{"expired certificate", &expiredCert, false, "expired_certificate"},
		{"good certificate", &good, true, "none"},
	}
	m := f.srv.Metrics()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.dial(tt.cert)
			if tt.ok != (err == nil) {
				t.Fatalf("dial: err = %v, want ok = %v", err, tt.ok)
			}
			if c != nil {
				c.Close()
			}
			defer func() {
				if t.Failed() {
					t.Log(f.logs.String())
				}
			}()
			result := "error"
			if tt.ok {
				result = "ok"
			}
			waitFor(t, func() bool {
				return testutil.ToFloat64(m.TLSHandshakes.WithLabelValues("secure", result, tt.reason)) == 1
			})
		})
	}
	if !strings.Contains(f.logs.String(), `"principal":"spiffe://example.org/ns/prod/sa/app"`) {
		t.Errorf("SPIFFE ID not logged:\n%s", f.logs.String())
	}
}

func TestMTLSRequestAllowsNoCert(t *testing.T) {
	f := newMTLSFixture(t, "request")
	c, err := f.dial(nil)
	if err != nil {
		t.Fatalf("client_auth request refused a client without certificate: %v", err)
	}
	c.Close()
}

func TestCertRotationWithoutRestart(t *testing.T) {
	f := newMTLSFixture(t, "require")
	good := f.client.TLSCertificate()
	held, err := f.dial(&good)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	oldSerial := held.ConnectionState().PeerCertificates[0].SerialNumber

	// Rotate: a new CA signs the new server certificate and the new client CA
	// bundle holds both CAs (as a rotation does).
	ca2 := testenv.NewCA(t, "mesh-ca-2")
	server2 := ca2.Issue(t, testenv.LeafOptions{})
	writeFile(t, filepath.Join(f.dir, "ca.crt"), append(append([]byte{}, f.ca.CertPEM...), ca2.CertPEM...))
	writeFile(t, filepath.Join(f.dir, "tls.key"), server2.KeyPEM)
	writeFile(t, filepath.Join(f.dir, "tls.crt"), server2.CertPEM)

	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	pool.AddCert(ca2.Cert)
	waitFor(t, func() bool {
		c, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{good}})
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(server2.Cert.SerialNumber) == 0
	})
	if v := testutil.ToFloat64(f.srv.Metrics().TLSReloads.WithLabelValues("mesh", "success")); v < 1 {
		t.Errorf("reload metric = %v", v)
	}
	// The connection made before the rotation is still alive.
	held.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(held, "still there\n")
	if got, err := bufio.NewReader(held).ReadString('\n'); got != "still there\n" {
		t.Fatalf("connection dropped by rotation: %q %v", got, err)
	}
	if held.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) != 0 {
		t.Fatal("held connection changed certificate")
	}
}

func TestCertReloadKeepsLastGoodOnBrokenFile(t *testing.T) {
	f := newMTLSFixture(t, "require")
	writeFile(t, filepath.Join(f.dir, "tls.crt"), []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	waitFor(t, func() bool {
		return testutil.ToFloat64(f.srv.Metrics().TLSReloads.WithLabelValues("mesh", "error")) >= 1
	})
	good := f.client.TLSCertificate()
	c, err := f.dial(&good)
	if err != nil {
		t.Fatalf("broken file on disk broke serving: %v", err)
	}
	c.Close()
}

func TestHandshakeFailureReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "none"},
		{x509.UnknownAuthorityError{}, "unknown_ca"},
		{x509.CertificateInvalidError{Reason: x509.Expired}, "expired_certificate"},
		{x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}, "bad_certificate"},
		{errors.New("tls: client didn't provide a certificate"), "no_certificate"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "protocol"},
		{os.ErrDeadlineExceeded, "timeout"},
		{errors.New("weird"), "other"},
	}
	for _, tt := range tests {
		if got := HandshakeFailureReason(tt.err); got != tt.want {
			t.Errorf("HandshakeFailureReason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestPeerIdentity(t *testing.T) {
	ca := testenv.NewCA(t, "ca")
	spiffe := ca.Issue(t, testenv.LeafOptions{Client: true, CommonName: "cn-app", URIs: []string{"https://not-spiffe/x", "spiffe://example.org/sa/app"}})
	cnOnly := ca.Issue(t, testenv.LeafOptions{Client: true, CommonName: "cn-app"})
	tests := []struct {
		name string
		cs   tls.ConnectionState
		want string
	}{
		{"spiffe first", tls.ConnectionState{PeerCertificates: []*x509.Certificate{spiffe.Cert}}, "spiffe://example.org/sa/app"},
		{"cn fallback", tls.ConnectionState{PeerCertificates: []*x509.Certificate{cnOnly.Cert}}, "cn-app"},
		{"no certificate", tls.ConnectionState{}, ""},
	}
	for _, tt := range tests {
		if got := PeerIdentity(tt.cs); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestHandshakeReasonWhenClientDistrustsUs(t *testing.T) {
	f := newMTLSFixture(t, "none")
	stranger := testenv.NewCA(t, "stranger")
	_, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: stranger.Pool(), ServerName: "localhost"})
	if err == nil {
		t.Fatal("client trusted a certificate from a CA it does not know")
	}
	waitFor(t, func() bool {
		return testutil.ToFloat64(f.srv.Metrics().TLSHandshakes.WithLabelValues("secure", "error", "client_rejected_certificate")) == 1
	})
}
