package integration

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestRedisTLSBothSides runs the redis listener with TLS on both sides: a
// client-facing profile with client_auth: require, and TLS origination
// (verify-full, with a client certificate) to a Redis that speaks only TLS.
func TestRedisTLSBothSides(t *testing.T) {
	integrationOnly(t)
	ca := testenv.NewCA(t, "mesh")
	server := ca.Issue(t, testenv.LeafOptions{})
	files := testenv.WriteTLSFiles(t, ca, server)
	up := testenv.StartRedis(t, testenv.RedisOptions{TLS: files})
	sidecarLeaf := ca.Issue(t, testenv.LeafOptions{Client: true, Server: true, CommonName: "outrigger", DNSNames: []string{"localhost"}, IPs: []string{"127.0.0.1"}})
	sidecarFiles := testenv.WriteTLSFiles(t, ca, sidecarLeaf)
	listen := testenv.FreeAddr(t)
	startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
tls:
  mesh: {cert: %[1]s, key: %[2]s, ca: %[3]s, client_auth: require}
redis:
  - name: secure
    listen: %[4]s
    tls: mesh
    upstream:
      address: %[5]s
      tls: {mode: verify-full, ca: %[3]s, cert: %[1]s, key: %[2]s, server_name: localhost}
    pool: {size: 2}
`, sidecarFiles.CertFile, sidecarFiles.KeyFile, sidecarFiles.CAFile, listen, up.Addr))

	app := ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://example.org/ns/prod/sa/app"}})
	cert := app.TLSCertificate()
	ctx := testCtx(t, 30*time.Second)
	c := proxyClient(t, listen, 3, func(o *redis.Options) {
		o.TLSConfig = &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{cert}}
	})
	if err := c.Set(ctx, "tls:k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS both ways: %v", err)
	}
	if got, err := c.Get(ctx, "tls:k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "tls:n"); return nil }); err != nil {
		t.Fatalf("MULTI/EXEC over TLS: %v", err)
	}
	noCert := proxyClient(t, listen, 3, func(o *redis.Options) {
		o.TLSConfig = &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		o.MaxRetries = -1
	})
	if err := noCert.Ping(ctx).Err(); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}
