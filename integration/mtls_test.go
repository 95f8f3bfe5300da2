package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// replaceFile swaps a file's content by rename, as a Secret volume does.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestMTLSInFrontOfRedis puts a tcp listener with client_auth: require in
// front of a real Redis and talks to it with go-redis over TLS: no
// certificate and a certificate from another CA are refused, a good one
// passes and its SPIFFE ID is logged, and replacing the certificate and key
// on disk makes new handshakes present the new certificate, with no restart
// and without dropping the open connection.
func TestMTLSInFrontOfRedis(t *testing.T) {
	integrationOnly(t)
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	ca := testenv.NewCA(t, "mesh")
	dir := t.TempDir()
	server := ca.Issue(t, testenv.LeafOptions{})
	replaceFile(t, filepath.Join(dir, "ca.crt"), ca.CertPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.crt"), server.CertPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.key"), server.KeyPEM)
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
tls:
  mesh: {cert: %[1]s/sidecar.crt, key: %[1]s/sidecar.key, ca: %[1]s/ca.crt, client_auth: require, reload_interval: 100ms}
tcp:
  - {name: cache, listen: %[2]s, tls: mesh, upstream: {address: %[3]s}}
`, dir, listen, rd.Addr))

	client := func(cert *tls.Certificate, roots *testenv.CA, extra ...*testenv.CA) *redis.Client {
		cfg := &tls.Config{RootCAs: roots.Pool(), ServerName: "localhost"}
		for _, e := range extra {
			cfg.RootCAs.AddCert(e.Cert)
		}
		if cert != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c := redis.NewClient(&redis.Options{Addr: listen, TLSConfig: cfg, PoolSize: 1, MaxRetries: -1, DialTimeout: 5 * time.Second})
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := client(nil, ca).Ping(ctx).Err(); err == nil {
		t.Error("a client without a certificate was let through")
	}
	other := testenv.NewCA(t, "other")
	strangerLeaf := other.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://other.org/sa/x"}})
	stranger := strangerLeaf.TLSCertificate()
	if err := client(&stranger, ca).Ping(ctx).Err(); err == nil {
		t.Error("a client with a certificate from another CA was let through")
	}
	goodLeaf := ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://example.org/ns/prod/sa/app"}})
	good := goodLeaf.TLSCertificate()
	held := client(&good, ca)
	if err := held.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("a good client was refused: %v", err)
	}
	eventually(t, "the SPIFFE ID in the log", func() bool {
		return strings.Contains(o.Logs.String(), "spiffe://example.org/ns/prod/sa/app")
	})
	if v := o.metric(`outrigger_tls_handshakes_total{listener="cache",reason="no_certificate",result="error"}`); v < 1 {
		t.Errorf("no_certificate handshakes = %v", v)
	}
	if v := o.metric(`outrigger_tls_handshakes_total{listener="cache",reason="unknown_ca",result="error"}`); v < 1 {
		t.Errorf("unknown_ca handshakes = %v", v)
	}

	// Rotate the server certificate (a new one from the same CA).
	rotated := ca.Issue(t, testenv.LeafOptions{CommonName: "localhost-rotated"})
	replaceFile(t, filepath.Join(dir, "sidecar.key"), rotated.KeyPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.crt"), rotated.CertPEM)
	eventually(t, "new handshakes to present the new certificate", func() bool {
		c, err := tls.Dial("tcp", listen, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{good}})
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName == "localhost-rotated"
	})
	// The connection opened before the rotation still serves.
	if got, err := held.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("open connection after rotation: %q %v", got, err)
	}
	if v := o.metric(`outrigger_listener_connections_accepted_total{kind="tcp",listener="cache"}`); v < 4 {
		t.Errorf("accepted = %v", v)
	}
}
