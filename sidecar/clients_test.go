package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
)

// lister stands in for a frontend that lists its own clients.
type lister struct{ closer }

func (lister) Clients() []ClientInfo {
	return []ClientInfo{{Remote: "127.0.0.1:1234", User: "app", Database: "app", State: ClientWaiting,
		ConnectedAt: time.Unix(100, 0), LastRequestAt: time.Unix(200, 0), Pinned: "listen"}}
}

func getClients(t *testing.T, srv *Server) []ClientInfo {
	t.Helper()
	code, body := get(t, "http://"+srv.AdminAddr().String()+"/clients")
	if code != 200 {
		t.Fatalf("/clients = %d %s", code, body)
	}
	var out []ClientInfo
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/clients: %v: %s", err, body)
	}
	return out
}

// TestClientsEndpoint: GET /clients lists the connections of tcp and http
// listeners from what the listener tracks, and a frontend's own list.
func TestClientsEndpoint(t *testing.T) {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) })}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(uln)
	defer up.Close()
	srv := startWithHandler(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
shutdown: {drain_timeout: 2s}
tcp:
  - {name: t, listen: 127.0.0.1:0, upstream: {address: %s}}
http:
  - {name: web, listen: 127.0.0.1:0, routes: [{prefix: /, upstream: {address: %s}}]}
postgres:
  - {name: pg, listen: 127.0.0.1:0, upstream: {address: 127.0.0.1:1}}
`, testenv.EchoServer(t), uln.Addr()), config.KindPostgres, lister{})

	if got := getClients(t, srv); len(got) != 1 || got[0].Listener != "pg" || got[0].Kind != "postgres" ||
		got[0].State != "waiting" || got[0].Pinned != "listen" || got[0].User != "app" {
		t.Fatalf("/clients with no connections: %+v", got)
	}

	tc := dialTCP(t, srv.ListenerAddr("t").String())
	defer tc.Close()
	roundTrip(t, srv.ListenerAddr("t").String(), "ping\n") // a second, short connection
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + srv.ListenerAddr("web").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	// Read to the end: a body closed unread makes the client close the
	// connection, which would leave the list.
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	var got []ClientInfo
	eventually(t, "tcp and http clients listed", func() bool {
		got = getClients(t, srv)
		n := map[string]int{}
		for _, c := range got {
			n[c.Listener]++
		}
		return len(got) == 3 && n["t"] == 1 && n["web"] == 1
	})
	by := map[string]ClientInfo{}
	for _, c := range got {
		by[c.Listener] = c
	}
	if c := by["t"]; c.Kind != "tcp" || c.Remote != tc.LocalAddr().String() || c.State != "active" || c.ConnectedAt.IsZero() || c.TLS {
		t.Errorf("tcp client: %+v (dialled from %s)", c, tc.LocalAddr())
	}
	// The http.Server marks the connection idle once the handler has
	// returned, which may be after the client already has its response:
	// either state is right here, but the request must be on record.
	if c := by["web"]; c.Kind != "http" || (c.State != "idle" && c.State != "active") || c.LastRequestAt.IsZero() || !strings.HasPrefix(c.Remote, "127.0.0.1:") {
		t.Errorf("http client after one request: %+v", c)
	}
	_, body := get(t, "http://"+srv.AdminAddr().String()+"/clients")
	if strings.Contains(body, `"last_request_at": "0001`) {
		t.Errorf("a zero last_request_at is shown: %s", body)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestObservabilityInEnv: handlers get the server's access log and tracer,
// which follow the live sections across a reload that keeps the handler;
// an output that cannot be opened rejects the config and changes nothing.
func TestObservabilityInEnv(t *testing.T) {
	var got Env
	dir := t.TempDir()
	base := fmt.Sprintf(`admin: {listen: "off"}
postgres:
  - {name: pg, listen: %s, upstream: {address: 127.0.0.1:1}}
`, testenv.FreeAddr(t))
	srv := NewServer(Options{Logger: testLogger(t), Builders: map[config.ListenerKind]Builder{
		config.KindPostgres: func(env Env, _ any) (Handler, error) { got = env; return closer{}, nil },
	}})
	t.Cleanup(srv.Shutdown)
	if err := srv.Apply(mustLoad(t, base)); err != nil {
		t.Fatal(err)
	}
	if got.AccessLog != srv.AccessLog() || got.Tracer != srv.Tracer() || got.AccessLog.Enabled() || got.Tracer.Enabled() {
		t.Fatalf("env: %+v", got)
	}
	got = Env{}
	if err := srv.Apply(mustLoad(t, base+"access_log: {enabled: true, output: "+dir+"/a.log, sample_rate: 1}\n")); err != nil {
		t.Fatal(err)
	}
	if got.AccessLog != nil {
		t.Error("the unchanged handler was rebuilt")
	}
	if !srv.AccessLog().Enabled() || !srv.AccessLog().Want(0, false) {
		t.Error("access log not on after the reload")
	}
	if err := srv.Apply(mustLoad(t, base+"access_log: {enabled: true, output: "+dir+"}\n")); err == nil || !strings.Contains(err.Error(), "access_log.output") {
		t.Fatalf("an output that is a directory: %v", err)
	}
	if !srv.AccessLog().Want(0, false) {
		t.Error("a rejected config changed the access log")
	}
}
