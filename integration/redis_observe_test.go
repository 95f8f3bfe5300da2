package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/sidecar"
)

// Observability of the Redis frontend against a real redis-server: the
// access log (a denied, a slow and two failed commands, with sampling at 0
// nothing else, and never a key or value), the span of a command, the
// outcome metric, and GET /clients.

// roMarker is in every key and value the test uses: it must never reach
// the access log.
const roMarker = "zq7marker"

func roConfig(listen, upstream, logPath, endpoint string) string {
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
log: {level: info}
reload: {watch: false}
shutdown: {drain_timeout: 2s}
access_log: {enabled: true, output: %q, sample_rate: 0, slow_threshold: 200ms}
tracing: {endpoint: %q, sample_ratio: 1}
redis:
  - name: %s
    listen: %s
    upstream: {address: %s, connect_timeout: 2s}
    pool: {size: 2, pinned_size: 8, command_timeout: 5s}
policy:
  default: allow
  rules:
    - name: reports-readonly
      when: {user: reporter}
      redis: {categories: ["@read", "@connection"]}
`, logPath, endpoint, redisListener, listen, upstream)
}

func TestRedisAccessLogAndTracing(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: []testenv.RedisACLUser{{Name: "reporter"}}})
	recv, endpoint := newOTLPReceiver(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, roConfig(listen, up.Addr, logPath, endpoint))

	app := rpDial(t, listen)
	key, str, val := roMarker+":key", roMarker+":str", roMarker+":value"
	for range 20 { // fast and fine: not sampled at 0
		if got := app.do("SET", key, val); got != "+OK" {
			t.Fatalf("SET = %s", got)
		}
		if got := app.do("GET", key); got != "$"+val {
			t.Fatalf("GET = %s", got)
		}
	}
	reporter := rpDial(t, listen)
	if got := reporter.do("AUTH", "reporter", "x"); got != "+OK" {
		t.Fatalf("AUTH = %s", got)
	}
	if got := reporter.do("SET", key, val); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("reporter's SET = %s, want NOPERM", got)
	}
	// Slow: a blocking pop on an empty list that gives up after 300ms.
	if got := app.do("BLPOP", roMarker+":empty", "0.3"); got != "*[]" && got != "$nil" && !strings.HasPrefix(got, "*-1") {
		t.Fatalf("BLPOP = %s, want a nil reply", got)
	}
	if got := app.do("SET", str, val); got != "+OK" {
		t.Fatalf("SET = %s", got)
	}
	if got := app.do("LPUSH", str, val); !strings.HasPrefix(got, "-WRONGTYPE") {
		t.Fatalf("LPUSH on a string = %s", got)
	}
	if got := app.do("INCR", str); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("INCR on a string = %s", got)
	}

	var lines []map[string]any
	eventually(t, "four access log lines", func() bool {
		lines = accessLines(t, logPath)
		return len(lines) >= 4
	})
	time.Sleep(100 * time.Millisecond) // a fifth line would be a bug: give it the chance to show
	if lines = accessLines(t, logPath); len(lines) != 4 {
		t.Errorf("%d access log lines, want 4 (denied, slow, two errors; no sampled ones):\n%v", len(lines), lines)
	}
	appAddr, reporterAddr := app.c.LocalAddr().String(), reporter.c.LocalAddr().String()
	byKind := map[string]map[string]any{}
	for _, l := range lines {
		raw, _ := json.Marshal(l)
		if strings.Contains(string(raw), roMarker) {
			t.Errorf("a key or value reached the access log: %s", raw)
		}
		for _, k := range []string{"time", "listener", "client", "user", "database", "kind", "duration_ms", "outcome", "trace_id"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line without %s: %s", k, raw)
			}
		}
		if _, ok := l["statement"]; ok {
			t.Errorf("a redis line with a statement: %s", raw)
		}
		if l["listener"] != redisListener || l["database"] != "0" {
			t.Errorf("where: %s", raw)
		}
		byKind[fmt.Sprint(l["kind"])] = l
	}
	if d := byKind["set"]; d == nil || d["outcome"] != "denied" || d["code"] != "NOPERM" || d["rule"] != "reports-readonly" ||
		d["user"] != "reporter" || d["client"] != reporterAddr {
		t.Errorf("denied line: %v", d)
	}
	if s := byKind["blpop"]; s == nil || s["outcome"] != "ok" || s["duration_ms"].(float64) < 200 || s["user"] != "default" ||
		s["client"] != appAddr || s["code"] != nil {
		t.Errorf("slow line: %v", s)
	}
	if e := byKind["lpush"]; e == nil || e["outcome"] != "error" || e["code"] != "WRONGTYPE" || e["client"] != appAddr {
		t.Errorf("WRONGTYPE line: %v", e)
	}
	if e := byKind["incr"]; e == nil || e["outcome"] != "error" || e["code"] != "ERR" {
		t.Errorf("ERR line: %v", e)
	}

	// Spans: the failed LPUSH's, found by the trace id its line carries,
	// and a GET's, each with the database semantic conventions.
	var lpush *spanSeen
	if e := byKind["lpush"]; e != nil {
		tid, _ := e["trace_id"].(string)
		eventually(t, "the LPUSH span", func() bool { lpush = recv.find(tid); return lpush != nil })
		if lpush.name != "LPUSH" || lpush.attrs["db.operation.name"] != "LPUSH" || lpush.attrs["db.response.status_code"] != "WRONGTYPE" ||
			lpush.attrs["error.type"] != "WRONGTYPE" {
			t.Errorf("LPUSH span %q: %v", lpush.name, lpush.attrs)
		}
	}
	var get *spanSeen
	eventually(t, "a GET span", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		for i := range recv.spans {
			if recv.spans[i].name == "GET" {
				get = &recv.spans[i]
				return true
			}
		}
		return false
	})
	want := map[string]string{
		"db.system.name": "redis", "db.system": "redis", "db.operation.name": "GET", "db.namespace": "0",
		"server.address": "127.0.0.1", "outrigger.listener": redisListener,
	}
	for k, v := range want {
		if get.attrs[k] != v {
			t.Errorf("GET span %s = %q, want %q (%v)", k, get.attrs[k], v, get.attrs)
		}
	}
	if get.parentID != "" {
		t.Errorf("GET span has a parent %s: redis commands start their own traces", get.parentID)
	}
	recv.mu.Lock()
	for _, sp := range recv.spans {
		if strings.Contains(fmt.Sprint(sp.name, sp.attrs), roMarker) {
			t.Errorf("a key or value reached a span: %s %v", sp.name, sp.attrs)
		}
	}
	recv.mu.Unlock()

	// The outcome metric.
	for _, series := range []string{
		`outrigger_redis_command_results_total{command="get",error_class="none",listener="rd",outcome="ok"}`,
		`outrigger_redis_command_results_total{command="set",error_class="NOPERM",listener="rd",outcome="denied"}`,
		`outrigger_redis_command_results_total{command="lpush",error_class="WRONGTYPE",listener="rd",outcome="error"}`,
		`outrigger_redis_command_results_total{command="incr",error_class="ERR",listener="rd",outcome="error"}`,
	} {
		if v := o.metric(series); v < 1 {
			t.Errorf("%s = %v, want >= 1", series, v)
		}
	}
	if v := o.metric(`outrigger_redis_command_results_total{command="get",error_class="none",listener="rd",outcome="ok"}`); v != 20 {
		t.Errorf("ok GETs counted %v times, want 20", v)
	}
}

// GET /clients lists every redis client with its user, database, state and
// the reason of its dedicated connection.
func TestRedisAdminClients(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{ACLUsers: []testenv.RedisACLUser{{Name: "ops"}}})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, redisProxyConfig(listen, up.Addr, 2, 5*time.Second))
	ctx := testCtx(t, 30*time.Second)

	// A subscriber, authenticated as ops (pinned: pubsub).
	sub := proxyClient(t, listen, 3, func(opt *redis.Options) { opt.Username, opt.Password = "ops", "x" })
	ps := sub.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	// A client of database 2 inside MULTI (pinned: transaction).
	tx := proxyClient(t, listen, 2, func(opt *redis.Options) { opt.DB = 2 })
	cn := tx.Conn()
	defer cn.Close()
	if err := cn.Do(ctx, "MULTI").Err(); err != nil {
		t.Fatalf("MULTI: %v", err)
	}

	var clients []sidecar.ClientInfo
	var body string
	// A session turns idle just after it has written its last reply.
	eventually(t, "both clients idle in /clients", func() bool {
		var code int
		code, body = o.admin("/clients")
		clients = nil
		if code != 200 || json.Unmarshal([]byte(body), &clients) != nil || len(clients) != 2 {
			return false
		}
		return clients[0].State == sidecar.ClientIdle && clients[1].State == sidecar.ClientIdle
	})
	byPin := map[string]sidecar.ClientInfo{}
	for _, c := range clients {
		if c.Listener != redisListener || c.Kind != "redis" || c.TLS || c.ConnectedAt.IsZero() || c.LastRequestAt.IsZero() || c.Remote == "" {
			t.Errorf("client: %+v", c)
		}
		byPin[c.Pinned] = c
	}
	if c, ok := byPin["pubsub"]; !ok || c.User != "ops" || c.Database != "0" {
		t.Errorf("subscriber: %+v (all: %s)", c, body)
	}
	if c, ok := byPin["transaction"]; !ok || c.User != "default" || c.Database != "2" {
		t.Errorf("client in MULTI: %+v (all: %s)", c, body)
	}

	// The transaction ends: the pin goes with it.
	if err := cn.Do(ctx, "DISCARD").Err(); err != nil {
		t.Fatalf("DISCARD: %v", err)
	}
	eventually(t, "the transaction's pin gone", func() bool {
		_, body = o.admin("/clients")
		clients = nil
		if json.Unmarshal([]byte(body), &clients) != nil {
			return false
		}
		for _, c := range clients {
			if c.Database == "2" {
				return c.Pinned == ""
			}
		}
		return false
	})
}

// A command whose reply does not come within pool.command_timeout (the
// server is stopped) ends with outcome timeout, in the metric and the
// access log.
func TestRedisCommandTimeoutOutcome(t *testing.T) {
	integrationOnly(t)
	up := testenv.StartRedis(t, testenv.RedisOptions{})
	logPath := filepath.Join(t.TempDir(), "access.log")
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
access_log: {enabled: true, output: %q, sample_rate: 0, slow_threshold: 10s}
redis:
  - name: %s
    listen: %s
    upstream: {address: %s, connect_timeout: 2s}
    pool: {size: 1, command_timeout: 200ms}
`, logPath, redisListener, listen, up.Addr))
	app := rpDial(t, listen)
	if got := app.do("PING"); got != "+PONG" {
		t.Fatalf("PING = %s", got)
	}
	// A stopped server (a paused one is alive: its commands wait on; see
	// TestRedisBusyIsNotDead).
	if err := syscall.Kill(up.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	got := app.do("GET", roMarker+":key")
	_ = syscall.Kill(up.PID(), syscall.SIGCONT)
	if !strings.HasPrefix(got, "-ERR") || !strings.Contains(got, "no reply from upstream") {
		t.Fatalf("GET on a stopped server = %s, want the timeout error", got)
	}
	series := `outrigger_redis_command_results_total{command="get",error_class="ERR",listener="rd",outcome="timeout"}`
	if v := o.metric(series); v != 1 {
		t.Errorf("%s = %v, want 1", series, v)
	}
	var lines []map[string]any
	eventually(t, "the timeout's access log line", func() bool {
		lines = accessLines(t, logPath)
		return len(lines) >= 1
	})
	if l := lines[0]; len(lines) != 1 || l["kind"] != "get" || l["outcome"] != "timeout" || l["code"] != "ERR" {
		t.Errorf("access log: %v", lines)
	}
}
