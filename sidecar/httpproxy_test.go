package sidecar

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// startHTTPSidecar runs a sidecar Server with the given YAML (one http
// listener named "web") and returns it and the listener's base URL host.
func startHTTPSidecar(t *testing.T, yaml string) (*Server, string) {
	t.Helper()
	cfg, err := config.Load(config.Source{Data: []byte(yaml), Environ: []string{}})
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	srv := NewServer(Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: metrics.New(metrics.BuildInfo{}),
	})
	if err := srv.Apply(cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	addr := srv.ListenerAddr("web")
	if addr == nil {
		t.Fatal("no listener named web")
	}
	return srv, addr.String()
}

// httpYAML is a config with one http listener "web" and the given routes
// (YAML list items, already indented) and extra listener keys.
func httpYAML(routes string, extra string) string {
	return fmt.Sprintf(`admin: {listen: "off"}
shutdown: {drain_timeout: 2s}
reload: {watch: false}
http:
  - name: web
    listen: 127.0.0.1:0
%s    routes:
%s`, extra, routes)
}

// closedAddr returns a 127.0.0.1 address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// upstreamServer is an httptest server that counts its requests.
type upstreamServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstreamServer {
	t.Helper()
	u := &upstreamServer{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstreamServer) addr() string { return u.Listener.Addr().String() }

// testClient is a plain HTTP client whose idle connections are closed at
// the end of the test.
func testClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func doRequest(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if h := hdr.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestHTTPProxyBasic(t *testing.T) {
	const existing = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name        string
		traceparent string
		wantSame    bool
	}{
		{name: "no traceparent"},
		{name: "valid traceparent kept", traceparent: existing, wantSame: true},
		{name: "invalid traceparent replaced", traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type seen struct{ traceparent, xff, xfp, path, host string }
			got := make(chan seen, 1)
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				got <- seen{r.Header.Get("Traceparent"), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.URL.RequestURI(), r.Host}
				w.Header().Set("X-Upstream", "yes")
				io.WriteString(w, "hello")
			})
			srv, addr := startHTTPSidecar(t, httpYAML(fmt.Sprintf("      - {prefix: /, upstream: {address: %q}}\n", up.addr()), ""))
			hdr := http.Header{}
			if tt.traceparent != "" {
				hdr.Set("Traceparent", tt.traceparent)
			}
			resp, body := doRequest(t, testClient(t), "GET", "http://"+addr+"/a/b?x=1", nil, hdr)
			if resp.StatusCode != 200 || body != "hello" || resp.Header.Get("X-Upstream") != "yes" {
				t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
			}
			s := <-got
			if s.path != "/a/b?x=1" {
				t.Errorf("upstream path %q", s.path)
			}
			if s.host != addr {
				t.Errorf("upstream Host %q, want the client's %q", s.host, addr)
			}
			if s.xff != "127.0.0.1" || s.xfp != "http" {
				t.Errorf("X-Forwarded-For %q, X-Forwarded-Proto %q", s.xff, s.xfp)
			}
			if !validTraceparent([]string{s.traceparent}) {
				t.Errorf("upstream traceparent %q is not valid", s.traceparent)
			}
			if (s.traceparent == tt.traceparent) != tt.wantSame {
				t.Errorf("upstream traceparent %q, sent %q, want same=%v", s.traceparent, tt.traceparent, tt.wantSame)
			}
			m := srv.Metrics()
			if n := testutil.ToFloat64(m.HTTPRequests.WithLabelValues("web", "/", "2xx")); n != 1 {
				t.Errorf("requests_total{2xx} = %v, want 1", n)
			}
			if n := testutil.CollectAndCount(m.HTTPRequestDuration); n != 1 {
				t.Errorf("request_duration series = %d, want 1", n)
			}
		})
	}
}

func TestHTTPProxyRetryConnectFailure(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%s %s", r.Method, b)
			})
			routes := fmt.Sprintf("      - {prefix: /, upstream: {addresses: [%q, %q]}}\n", closedAddr(t), up.addr())
			srv, addr := startHTTPSidecar(t, httpYAML(routes, ""))
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("payload")
			}
			resp, got := doRequest(t, testClient(t), method, "http://"+addr+"/", body, nil)
			want := method + " "
			if method == "POST" {
				want += "payload"
			}
			if resp.StatusCode != 200 || got != want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, got, want)
			}
			if n := up.hits.Load(); n != 1 {
				t.Errorf("upstream saw %d requests, want 1", n)
			}
			if n := testutil.ToFloat64(srv.Metrics().HTTPRetries.WithLabelValues("web", "/", "connect")); n != 1 {
				t.Errorf("retries_total{connect} = %v, want 1", n)
			}
		})
	}
}

func TestHTTPProxyRetryStatus(t *testing.T) {
	tests := []struct {
		method     string
		body       string
		wantStatus int
		wantFirst  int64 // requests the 503 upstream saw
		wantSecond int64
	}{
		{method: "GET", wantStatus: 200, wantFirst: 1, wantSecond: 1},
		{method: "DELETE", wantStatus: 200, wantFirst: 1, wantSecond: 1},
		// Idempotent, but a client's streamed body cannot be sent again.
		{method: "PUT", body: "data", wantStatus: 503, wantFirst: 1, wantSecond: 0},
		{method: "POST", body: "data", wantStatus: 503, wantFirst: 1, wantSecond: 0},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			bad := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
			})
			good := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, "ok")
			})
			routes := fmt.Sprintf("      - {prefix: /, upstream: {addresses: [%q, %q]}}\n", bad.addr(), good.addr())
			srv, addr := startHTTPSidecar(t, httpYAML(routes, ""))
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			resp, _ := doRequest(t, testClient(t), tt.method, "http://"+addr+"/x", body, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if n := bad.hits.Load(); n != tt.wantFirst {
				t.Errorf("first upstream saw %d requests, want %d", n, tt.wantFirst)
			}
			if n := good.hits.Load(); n != tt.wantSecond {
				t.Errorf("second upstream saw %d requests, want %d", n, tt.wantSecond)
			}
			wantRetries := float64(tt.wantSecond)
			if n := testutil.ToFloat64(srv.Metrics().HTTPRetries.WithLabelValues("web", "/", "status")); n != wantRetries {
				t.Errorf("retries_total{status} = %v, want %v", n, wantRetries)
			}
		})
	}
}

func TestHTTPProxyTimeout(t *testing.T) {
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	routes := fmt.Sprintf("      - {prefix: /, timeout: 200ms, upstream: {address: %q}}\n", slow.addr())
	srv, addr := startHTTPSidecar(t, httpYAML(routes, ""))
	resp, body := doRequest(t, testClient(t), "GET", "http://"+addr+"/", nil, nil)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d %q, want 504", resp.StatusCode, body)
	}
	if !strings.Contains(body, "route /") {
		t.Errorf("body %q does not name the route", body)
	}
	if n := testutil.ToFloat64(srv.Metrics().HTTPRequests.WithLabelValues("web", "/", "5xx")); n != 1 {
		t.Errorf("requests_total{5xx} = %v, want 1", n)
	}
}

func TestHTTPProxyUnreachable(t *testing.T) {
	routes := fmt.Sprintf("      - {prefix: /, retries: 1, upstream: {address: %q}}\n", closedAddr(t))
	_, addr := startHTTPSidecar(t, httpYAML(routes, ""))
	resp, body := doRequest(t, testClient(t), "GET", "http://"+addr+"/", nil, nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "unreachable") {
		t.Fatalf("got %d %q, want 502 unreachable", resp.StatusCode, body)
	}
}

func TestHTTPProxyRouting(t *testing.T) {
	named := func(name string) *upstreamServer {
		return newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	root, api, apiV2, hostA, wild := named("root"), named("api"), named("api-v2"), named("host-a"), named("wild")
	routes := fmt.Sprintf(`      - {prefix: /app, upstream: {address: %q}}
      - {prefix: /api, upstream: {address: %q}}
      - {prefix: /api/v2, upstream: {address: %q}}
      - {prefix: /, host: A.example.com, upstream: {address: %q}}
      - {prefix: /, host: "*.wild.test", upstream: {address: %q}}
`, root.addr(), api.addr(), apiV2.addr(), hostA.addr(), wild.addr())
	_, addr := startHTTPSidecar(t, httpYAML(routes, ""))
	c := testClient(t)
	tests := []struct {
		host, path string
		want       string // upstream name, or "404"
	}{
		{"", "/app/x", "root"},
		{"", "/api", "api"},
		{"", "/api/v1/users", "api"},
		{"", "/api/v2/users", "api-v2"},
		{"a.example.com:8080", "/anything", "host-a"},
		{"a.example.com", "/api/v2/x", "host-a"}, // a matching host beats a longer prefix
		{"x.y.wild.test", "/", "wild"},
		{"wild.test", "/", "404"},
		{"b.example.com", "/other", "404"},
		{"", "/", "404"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			hdr := http.Header{}
			if tt.host != "" {
				hdr.Set("Host", tt.host)
			}
			resp, body := doRequest(t, c, "GET", "http://"+addr+tt.path, nil, hdr)
			if tt.want == "404" {
				if resp.StatusCode != 404 {
					t.Fatalf("got %d %q, want 404", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 200 || body != tt.want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, tt.want)
			}
		})
	}
}

func TestHTTPProxyTLS(t *testing.T) {
	dir := t.TempDir()
	caPool, certFile, keyFile := writeHTTPTestCerts(t, dir)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	})
	yaml := fmt.Sprintf("tls:\n  edge: {cert: %q, key: %q}\n", certFile, keyFile) +
		httpYAML(fmt.Sprintf("      - {prefix: /, upstream: {address: %q}}\n", up.addr()), "    tls: edge\n")
	srv, addr := startHTTPSidecar(t, yaml)
	tests := []struct {
		name      string
		h2        bool
		wantMajor int
	}{
		{name: "h2", h2: true, wantMajor: 2},
		{name: "http1.1", h2: false, wantMajor: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}, ForceAttemptHTTP2: tt.h2}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := 0; i < 2; i++ { // the second request reuses the connection
				resp, body := doRequest(t, c, "GET", "https://"+addr+"/", nil, nil)
				if resp.StatusCode != 200 || body != "https" {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
				if resp.ProtoMajor != tt.wantMajor {
					t.Fatalf("ProtoMajor %d, want %d", resp.ProtoMajor, tt.wantMajor)
				}
			}
		})
	}
	m := srv.Metrics()
	if n := testutil.ToFloat64(m.BytesReceived.WithLabelValues("web", "http")); n == 0 {
		t.Error("no bytes counted as received over TLS")
	}
	waitNoActiveConns(t, srv) // the clients closed their connections
}

// waitNoActiveConns waits until the "web" listener has no open connection
// on its books.
func waitNoActiveConns(t *testing.T, srv *Server) {
	t.Helper()
	g := srv.Metrics().ConnActive.WithLabelValues("web", "http")
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(g) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v connections still active", testutil.ToFloat64(g))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHTTPProxyUpgrade(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})
	srv, addr := startHTTPSidecar(t, httpYAML(fmt.Sprintf("      - {prefix: /, upstream: {address: %q}}\n", up.addr()), ""))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if n := testutil.ToFloat64(srv.Metrics().ConnActive.WithLabelValues("web", "http")); n != 1 {
		t.Errorf("%v connections active during the tunnel, want 1", n)
	}
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo ping\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	// The upstream ends the tunnel; the proxy closes the client connection.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the tunnel: %v, want EOF", err)
	}
	waitNoActiveConns(t, srv)
}

// writeHTTPTestCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost, writes the server's PEM files into dir and returns the CA pool.
func writeHTTPTestCerts(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "outrigger test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "outrigger test server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

func TestHTTPProxyRetryBudgetExhausted(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	routes := fmt.Sprintf("      - {prefix: /, upstream: {addresses: [%q, %q]}}\n", closedAddr(t), up.addr())
	srv, addr := startHTTPSidecar(t, httpYAML(routes, "    retry_budget: {ratio: 0, min_per_second: 0}\n"))
	resp, body := doRequest(t, testClient(t), "GET", "http://"+addr+"/", nil, nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d %q, want 502 (no retry allowed)", resp.StatusCode, body)
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("second upstream saw %d requests, want 0", n)
	}
	m := srv.Metrics()
	if n := testutil.ToFloat64(m.HTTPRetriesExhausted.WithLabelValues("web", "/")); n != 1 {
		t.Errorf("retry_budget_exhausted_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.HTTPRetries.WithLabelValues("web", "/", "connect")); n != 0 {
		t.Errorf("retries_total{connect} = %v, want 0", n)
	}
}

func TestHTTPRetryBudget(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name     string
		cfg      config.RetryBudget
		requests int
		want     int // retries allowed right after the requests
	}{
		{name: "nothing", cfg: config.RetryBudget{}, requests: 100, want: 0},
		{name: "min only", cfg: config.RetryBudget{MinPerSecond: 3}, requests: 0, want: 3},
		{name: "ratio", cfg: config.RetryBudget{Ratio: 0.2}, requests: 50, want: 10},
		{name: "ratio and min", cfg: config.RetryBudget{Ratio: 0.5, MinPerSecond: 2}, requests: 4, want: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRetryBudget(tt.cfg, clock)
			for i := 0; i < tt.requests; i++ {
				b.request()
			}
			got := 0
			for b.allow() && got < 1000 {
				got++
			}
			if got != tt.want {
				t.Errorf("allowed %d retries, want %d", got, tt.want)
			}
		})
	}

	// The ratio's requests slide out of the 10 s window.
	b := newRetryBudget(config.RetryBudget{Ratio: 1}, clock)
	b.request()
	if !b.allow() || b.allow() {
		t.Fatal("want exactly one retry for one request")
	}
	now = now.Add(5 * time.Second)
	b.request()
	if !b.allow() {
		t.Fatal("want a retry for the second request")
	}
	now = now.Add(6 * time.Second) // the first second left the window
	if b.allow() {
		t.Fatal("retry allowed although the window holds 1 request and 1 retry")
	}
	b.request()
	if !b.allow() {
		t.Fatal("want a retry after a new request")
	}
}

func TestHTTPTraceparent(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validTraceparent([]string{tt.v}); got != tt.want {
			t.Errorf("validTraceparent(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
	if validTraceparent([]string{tests[0].v, tests[1].v}) {
		t.Error("two traceparent headers accepted")
	}
	a, b := newTraceparent(), newTraceparent()
	if !validTraceparent([]string{a}) || a == b {
		t.Errorf("newTraceparent gave %q then %q", a, b)
	}
	h := http.Header{"Traceparent": {"bogus"}, "Tracestate": {"k=v"}}
	ensureTraceparent(h)
	if !validTraceparent(h.Values("Traceparent")) || h.Get("Tracestate") != "" {
		t.Errorf("after ensureTraceparent: %v", h)
	}
}

func TestHTTPProxyBadSection(t *testing.T) {
	env := Env{Name: "x", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.New(metrics.BuildInfo{})}
	for _, section := range []any{nil, &config.TCP{}, (*config.HTTP)(nil), &config.HTTP{}} {
		if h, err := NewHTTPProxy(env, section); err == nil {
			h.Close()
			t.Errorf("NewHTTPProxy(%T) succeeded", section)
		}
	}
}

func TestHTTPProxyDrain(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	})
	cfg, err := config.Load(config.Source{Environ: []string{}, Data: []byte(httpYAML(
		fmt.Sprintf("      - {prefix: /, upstream: {address: %q}}\n", up.addr()), ""))})
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Name: "web", Kind: config.KindHTTP, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.New(metrics.BuildInfo{})}
	h, err := NewHTTPProxy(env, &cfg.HTTP[0])
	if err != nil {
		t.Fatal(err)
	}
	ref := newHandlerRef(h, "web", config.KindHTTP, "h", 100, env.Metrics, env.Logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			if c, ok := ref.admit(raw); ok {
				go h.ServeConn(t.Context(), c)
			} else {
				raw.Close()
			}
		}
	}()
	c := testClient(t)
	base := "http://" + ln.Addr().String()
	if resp, _ := doRequest(t, c, "GET", base+"/", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	slow := make(chan string, 1)
	go func() {
		resp, err := c.Get(base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	for up.hits.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	retired := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ref.retire(ctx)
		close(retired)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-retired:
		t.Fatal("retired while a request was in flight")
	default:
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	select {
	case <-retired:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not retire after its last request")
	}
	if n := ref.count(); n != 0 {
		t.Errorf("%d connections still on the books", n)
	}
}
