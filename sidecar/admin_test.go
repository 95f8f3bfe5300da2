package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	_, base := startAdminServer(t)
	tests := []struct {
		path     string
		code     int
		contains string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/metrics", 200, `outrigger_build_info{`},
		{"/metrics", 200, "go_goroutines"},
		{"/metrics", 200, "process_open_fds"},
		{"/config", 200, `"drain_timeout": 5000000000`},
		{"/pools", 200, "{"},
		{"/debug/pprof/", 200, "goroutine"},
		{"/drain", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := get(t, base+tt.path)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Errorf("GET %s = %d %.200q, want %d containing %q", tt.path, code, body, tt.code, tt.contains)
			}
		})
	}
}

// closer is a Handler that hangs up at once, standing in for a frontend.
type closer struct{}

func (closer) ServeConn(_ context.Context, c *Conn) { c.Close() }
func (closer) Drain()                               {}
func (closer) Close() error                         { return nil }

func TestAdminConfigRedactsSecrets(t *testing.T) {
	t.Setenv("ADMIN_TEST_PW", "env-secret-value")
	srv := startWithHandler(t, `admin: {listen: "127.0.0.1:0"}
postgres:
  - name: appdb
    listen: 127.0.0.1:0
    upstream: {address: 127.0.0.1:1}
    auth:
      users:
        - {name: app, password: literal-secret-value}
        - {name: env, password: "${ADMIN_TEST_PW}"}
`, config.KindPostgres, closer{})
	code, body := get(t, "http://"+srv.AdminAddr().String()+"/config")
	if code != 200 || !strings.Contains(body, `"name": "app"`) {
		t.Fatalf("/config = %d %s", code, body)
	}
	if strings.Contains(body, "secret-value") {
		t.Fatalf("/config prints a secret:\n%s", body)
	}
	if strings.Count(body, "[redacted]") != 2 {
		t.Errorf("want 2 redacted passwords in:\n%s", body)
	}
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprint(c, "hi\n")
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDrainEndpointAndReadiness(t *testing.T) {
	srv, base := startAdminServer(t)
	resp, err := http.Post(base+"/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /drain = %d", resp.StatusCode)
	}
	select {
	case <-srv.DrainRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("drain not requested")
	}
	// Hold a connection so the drain takes a while, and watch /readyz turn 503.
	c := dialTCP(t, srv.ListenerAddr("t").String())
	done := make(chan struct{})
	go func() { srv.Shutdown(); close(done) }()
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusServiceUnavailable })
	if err := srv.Apply(srv.Config()); err != ErrDraining {
		t.Errorf("Apply while draining = %v", err)
	}
	c.Close()
	<-done
}

// panicker is a Handler whose every connection panics.
type panicker struct{ closer }

func (panicker) ServeConn(context.Context, *Conn) { panic("boom") }

func TestHandlerPanicEndsOnlyTheConnection(t *testing.T) {
	srv := startWithHandler(t, `admin: {listen: "off"}
redis: [{name: r, listen: 127.0.0.1:0, upstream: {address: 127.0.0.1:1}}]
`, config.KindRedis, panicker{})
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", srv.ListenerAddr("r").String())
		if err != nil {
			t.Fatalf("listener gone after a panic: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("read succeeded")
		}
		c.Close()
	}
	waitFor(t, func() bool {
		return testutil.ToFloat64(srv.Metrics().ConnActive.WithLabelValues("r", "redis")) == 0
	})
}

// startWithHandler runs a Server on yaml whose listeners of kind are all
// served by h (standing in for a protocol frontend).
func startWithHandler(t *testing.T, yaml string, kind config.ListenerKind, h Handler) *Server {
	t.Helper()
	cfg, err := config.Load(config.Source{Data: []byte(yaml)})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Options{Logger: testLogger(t), Builders: map[config.ListenerKind]Builder{
		kind: func(Env, any) (Handler, error) { return h, nil },
	}})
	if err := srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// startAdminServer runs a server with the admin API and one tcp listener
// "t" in front of an echo server; base is the admin URL.
func startAdminServer(t *testing.T) (*Server, string) {
	t.Helper()
	srv := startServer(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
shutdown: {drain_timeout: 5s}
tcp:
  - {name: t, listen: 127.0.0.1:0, upstream: {address: %s}}
`, testenv.EchoServer(t)))
	return srv, "http://" + srv.AdminAddr().String()
}
