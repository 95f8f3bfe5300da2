package sidecar

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/metrics"
)

// tlsEchoServer is an upstream that speaks TLS with cert and, when clientCAs
// is set, requires a client certificate from them.
func tlsEchoServer(t *testing.T, cert tls.Certificate, clientCAs *testenv.CA) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = clientCAs.Pool()
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Serve(t, ln, func(c net.Conn) {
		io.Copy(c, c)
	})
}

func TestUpstreamTLSOrigination(t *testing.T) {
	ca := testenv.NewCA(t, "upstream-ca")
	other := testenv.NewCA(t, "other-ca")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	caFile := write("ca.crt", ca.CertPEM)
	otherCA := write("other.crt", other.CertPEM)
	client := ca.Issue(t, testenv.LeafOptions{Client: true, CommonName: "outrigger"})
	clientCert, clientKey := write("client.crt", client.CertPEM), write("client.key", client.KeyPEM)

	// The server certificate names "db.internal" only, not 127.0.0.1.
	named := ca.Issue(t, testenv.LeafOptions{DNSNames: []string{"db.internal"}})
	plain := tlsEchoServer(t, named.TLSCertificate(), nil)
	mutual := tlsEchoServer(t, named.TLSCertificate(), ca)

	tests := []struct {
		name string
		addr string
		tls  config.UpstreamTLS
		ok   bool
	}{
		{"require skips verification", plain, config.UpstreamTLS{Mode: "require"}, true},
		{"verify-ca accepts the chain whatever the name", plain, config.UpstreamTLS{Mode: "verify-ca", CA: caFile}, true},
		{"verify-ca refuses another CA", plain, config.UpstreamTLS{Mode: "verify-ca", CA: otherCA}, false},
		{"verify-full refuses a name mismatch", plain, config.UpstreamTLS{Mode: "verify-full", CA: caFile}, false},
		{"verify-full with server_name", plain, config.UpstreamTLS{Mode: "verify-full", CA: caFile, ServerName: "db.internal"}, true},
		{"mTLS upstream without a client cert", mutual, config.UpstreamTLS{Mode: "verify-full", CA: caFile, ServerName: "db.internal"}, false},
		{"mTLS upstream with a client cert", mutual, config.UpstreamTLS{Mode: "verify-full", CA: caFile, ServerName: "db.internal", Cert: clientCert, Key: clientKey}, true},
		{"plaintext to a TLS upstream", plain, config.UpstreamTLS{Mode: "disable"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Upstream{Address: tt.addr, ConnectTimeout: 2 * time.Second, Backoff: time.Millisecond, MaxBackoff: time.Millisecond, TLS: tt.tls}
			u, err := NewUpstream("t", cfg, nil, metrics.New(metrics.BuildInfo{}))
			if err != nil {
				t.Fatal(err)
			}
			err = echoOnce(u)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok = %v", err, tt.ok)
			}
		})
	}
}

func echoOnce(u *Upstream) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := u.Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprint(c, "hi\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "hi\n" {
		return fmt.Errorf("echo %q", line)
	}
	return nil
}

// TestUpstreamRoundRobinAndHealth checks rotation across healthy addresses,
// skipping of a failed one during its backoff, and its return afterwards.
func TestUpstreamRoundRobinAndHealth(t *testing.T) {
	a, b := testenv.EchoServer(t), testenv.EchoServer(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	now := time.Unix(1000, 0)
	cfg := config.Upstream{Addresses: []string{a, dead, b}, ConnectTimeout: time.Second, Backoff: 10 * time.Second, MaxBackoff: 40 * time.Second}
	u, err := NewUpstream("t", cfg, nil, metrics.New(metrics.BuildInfo{}))
	if err != nil {
		t.Fatal(err)
	}
	u.now = func() time.Time { return now }
	used := map[string]int{}
	for i := 0; i < 9; i++ {
		c, addr, err := u.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		used[addr.Address]++
	}
	if used[dead] != 0 || used[a] < 4 || used[b] < 4 {
		t.Fatalf("rotation = %v", used)
	}
	d := u.addrs[1]
	if d.failures != 1 || !d.until.Equal(now.Add(10*time.Second)) {
		t.Fatalf("dead address: failures %d until %v", d.failures, d.until)
	}
	// After the backoff it is tried again, fails, and backs off twice as long.
	now = now.Add(11 * time.Second)
	for i := 0; i < 3; i++ {
		c, _, err := u.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if d.failures != 2 || !d.until.Equal(now.Add(20*time.Second)) {
		t.Fatalf("second backoff: failures %d until %v", d.failures, d.until)
	}
	// All addresses in backoff: they are still tried rather than failing blind.
	only := config.Upstream{Address: dead, ConnectTimeout: time.Second, Backoff: time.Hour, MaxBackoff: time.Hour}
	u2, _ := NewUpstream("t2", only, nil, metrics.New(metrics.BuildInfo{}))
	u2.Dial(context.Background())
	u2.Dial(context.Background())
	if u2.addrs[0].failures != 2 {
		t.Fatalf("address in backoff was not retried when it is the only one: %d", u2.addrs[0].failures)
	}
}
