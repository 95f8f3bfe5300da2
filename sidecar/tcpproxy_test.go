package sidecar

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/metrics"
)

// startServer runs a sidecar Server on YAML config for the test's life.
func startServer(t *testing.T, yaml string) *Server {
	t.Helper()
	cfg := mustLoad(t, yaml)
	srv := NewServer(Options{Logger: testLogger(t), Metrics: metrics.New(metrics.BuildInfo{})})
	if err := srv.Apply(cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func mustLoad(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Load(config.Source{Data: []byte(yaml), Environ: []string{}})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func tcpYAML(upstreams string, extra string) string {
	return fmt.Sprintf(`admin: {listen: "off"}
shutdown: {drain_timeout: 2s}
tcp:
  - name: t
    listen: 127.0.0.1:0
    upstream: {%s, backoff: 50ms, max_backoff: 200ms, connect_timeout: 1s}
%s`, upstreams, extra)
}

func TestTCPProxyEchoAndHalfClose(t *testing.T) {
	up := testenv.EchoServer(t)
	srv := startServer(t, tcpYAML("address: "+up, ""))
	addr := srv.ListenerAddr("t").String()

	payload := make([]byte, 3<<20) // several splice chunks
	rand.Read(payload)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite() // half-close: the echo must still come back
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo: got %d bytes, want %d (equal=%v)", len(got), len(payload), bytes.Equal(got, payload))
	}
	m := srv.Metrics()
	if v := testutil.ToFloat64(m.BytesReceived.WithLabelValues("t", "tcp")); v != float64(len(payload)) {
		t.Errorf("received bytes metric = %v, want %d", v, len(payload))
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.ConnClosed.WithLabelValues("t", "tcp")) == 1 })
	if v := testutil.ToFloat64(m.ConnActive.WithLabelValues("t", "tcp")); v != 0 {
		t.Errorf("active = %v after close", v)
	}
}

func TestTCPProxyFailoverAndBackoff(t *testing.T) {
	up := testenv.EchoServer(t)
	dead := closedPort(t)
	srv := startServer(t, tcpYAML(fmt.Sprintf("addresses: [%s, %s]", dead, up), ""))
	addr := srv.ListenerAddr("t").String()
	for i := 0; i < 6; i++ {
		roundTrip(t, addr, fmt.Sprintf("hello %d\n", i))
	}
	m := srv.Metrics()
	fails := testutil.ToFloat64(m.UpstreamConnectFailures.WithLabelValues("t", dead))
	if fails < 1 {
		t.Errorf("dead address never tried")
	}
	if fails > 3 {
		t.Errorf("dead address tried %v times in 6 connections: backoff not applied", fails)
	}
}

func roundTrip(t *testing.T, addr, line string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line {
		t.Fatalf("round trip: %q, %v", got, err)
	}
}

func TestTCPProxyUpstreamDown(t *testing.T) {
	srv := startServer(t, tcpYAML("address: "+closedPort(t), ""))
	c, err := net.Dial("tcp", srv.ListenerAddr("t").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded with no upstream")
	}
}

func TestTCPProxyIdleTimeout(t *testing.T) {
	up := testenv.EchoServer(t)
	srv := startServer(t, tcpYAML("address: "+up, "    idle_timeout: 300ms\n"))
	c, err := net.Dial("tcp", srv.ListenerAddr("t").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Traffic in one direction keeps the connection alive past the timeout.
	r := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		fmt.Fprintf(c, "tick %d\n", i)
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("closed while active: %v", err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read = %v, want EOF", err)
	}
}

func TestTCPProxyMaxConnections(t *testing.T) {
	up := testenv.EchoServer(t)
	srv := startServer(t, tcpYAML("address: "+up, "    max_connections: 2\n"))
	addr := srv.ListenerAddr("t").String()
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "x\n")
		bufio.NewReader(c).ReadString('\n')
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection served past max_connections")
	}
	if v := testutil.ToFloat64(srv.Metrics().ConnRefused.WithLabelValues("t", "tcp", "max_connections")); v != 1 {
		t.Errorf("refused metric = %v", v)
	}
	held[0].Close()
	waitFor(t, func() bool { return testutil.ToFloat64(srv.Metrics().ConnActive.WithLabelValues("t", "tcp")) == 1 })
	roundTrip(t, addr, "again\n")
}

func TestTCPProxyUnixSocket(t *testing.T) {
	up := testenv.EchoServer(t)
	sock := t.TempDir() + "/proxy.sock"
	srv := startServer(t, strings.Replace(tcpYAML("address: "+up, ""), "127.0.0.1:0", "unix:"+sock, 1))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "over unix\n")
	if got, _ := bufio.NewReader(c).ReadString('\n'); got != "over unix\n" {
		t.Fatalf("got %q", got)
	}
	_ = srv
}

func TestReloadKeepsUnchangedListener(t *testing.T) {
	up := testenv.EchoServer(t)
	base := tcpYAML("address: "+up, "")
	srv := startServer(t, base)
	addr := srv.ListenerAddr("t").String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	fmt.Fprint(c, "before\n")
	r.ReadString('\n')

	// Add a listener; "t" is unchanged.
	added := base + fmt.Sprintf("  - {name: u, listen: 127.0.0.1:0, upstream: {address: %s}}\n", up)
	if err := srv.Apply(mustLoad(t, strings.Replace(added, "127.0.0.1:0", addr, 1))); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "after\n")
	if got, err := r.ReadString('\n'); got != "after\n" {
		t.Fatalf("connection on unchanged listener broken by reload: %q %v", got, err)
	}
	roundTrip(t, srv.ListenerAddr("u").String(), "new listener\n")

	// A bad config (unknown TLS profile) is rejected whole; both listeners stay.
	bad := strings.Replace(added, "name: u,", "name: u, tls: nope,", 1)
	if cfg, err := config.Load(config.Source{Data: []byte(bad), Environ: []string{}}); err == nil {
		t.Fatalf("bad config accepted: %+v", cfg)
	}
	// One that validates but cannot be built: its new address is taken.
	taken, _ := net.Listen("tcp", "127.0.0.1:0")
	defer taken.Close()
	clash := added + fmt.Sprintf("  - {name: v, listen: %s, upstream: {address: %s}}\n", taken.Addr(), up)
	if err := srv.Apply(mustLoad(t, strings.Replace(clash, "127.0.0.1:0", addr, 1))); err == nil {
		t.Fatal("apply with a taken address succeeded")
	}
	if srv.ListenerAddr("v") != nil {
		t.Fatal("half-applied config: v is listening")
	}
	fmt.Fprint(c, "still\n")
	if got, _ := r.ReadString('\n'); got != "still\n" {
		t.Fatalf("connection broken by a rejected reload: %q", got)
	}
}

func TestReloadChangedListenerDrainsOldConnections(t *testing.T) {
	up1, up2 := testenv.EchoServer(t), testenv.EchoServer(t)
	srv := startServer(t, tcpYAML("address: "+up1, ""))
	addr := srv.ListenerAddr("t").String()
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	r := bufio.NewReader(c)
	fmt.Fprint(c, "one\n")
	r.ReadString('\n')

	next := strings.Replace(tcpYAML("address: "+up2, ""), "127.0.0.1:0", addr, 1)
	if err := srv.Apply(mustLoad(t, next)); err != nil {
		t.Fatal(err)
	}
	if srv.ListenerAddr("t").String() != addr {
		t.Fatal("socket changed")
	}
	// The old connection keeps working until it ends or the drain timeout (2s).
	fmt.Fprint(c, "two\n")
	if got, _ := r.ReadString('\n'); got != "two\n" {
		t.Fatalf("old connection cut at once: %q", got)
	}
	roundTrip(t, addr, "via new handler\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("old connection outlived the drain timeout")
	}
}

var waitMu sync.Mutex

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	waitMu.Lock()
	defer waitMu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadForgetsRemovedSeries: a listener a reload removed, and upstream
// addresses it dropped, leave no series behind once drained.
func TestReloadForgetsRemovedSeries(t *testing.T) {
	up := testenv.EchoServer(t)
	dead := closedPort(t)
	first := fmt.Sprintf(`admin: {listen: "off"}
shutdown: {drain_timeout: 1s}
tcp:
  - {name: a, listen: 127.0.0.1:0, upstream: {addresses: [%s, %s]}}
  - {name: b, listen: 127.0.0.1:0, upstream: {address: %s}}
`, up, dead, up)
	srv := startServer(t, first)
	aAddr, bAddr := srv.ListenerAddr("a").String(), srv.ListenerAddr("b").String()
	roundTrip(t, bAddr, "b\n")
	m := srv.Metrics()
	count := func(name, listener string) int {
		mfs, _ := m.Registry.Gather()
		n := 0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, s := range mf.GetMetric() {
				for _, l := range s.GetLabel() {
					if l.GetName() == "listener" && l.GetValue() == listener {
						n++
					}
				}
			}
		}
		return n
	}
	if count("outrigger_upstream_healthy", "a") != 2 || count("outrigger_listener_connections_accepted_total", "b") != 1 {
		t.Fatal("series missing before the reload")
	}
	next := fmt.Sprintf(`admin: {listen: "off"}
shutdown: {drain_timeout: 1s}
tcp:
  - {name: a, listen: %s, upstream: {address: %s}}
`, aAddr, up)
	if err := srv.Apply(mustLoad(t, next)); err != nil {
		t.Fatal(err)
	}
	if n := count("outrigger_upstream_healthy", "a"); n != 1 {
		t.Errorf("listener a has %d upstream_healthy series, want 1", n)
	}
	waitFor(t, func() bool { return count("outrigger_listener_connections_accepted_total", "b") == 0 })
	roundTrip(t, aAddr, "a still works\n")
}
