package integration

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/outrigger/outrigger/internal/testenv"
)

// otlpReceiver is an in-process OTLP/HTTP traces endpoint that keeps the
// spans it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []spanSeen
}

type spanSeen struct {
	name, traceID, parentID string
	attrs                   map[string]string
}

func newOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var msg coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					seen := spanSeen{name: sp.Name, traceID: hex.EncodeToString(sp.TraceId), parentID: hex.EncodeToString(sp.ParentSpanId), attrs: map[string]string{}}
					for _, kv := range sp.Attributes {
						seen.attrs[kv.Key] = kv.Value.GetStringValue()
					}
					r.spans = append(r.spans, seen)
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL + "/v1/traces"
}

func (r *otlpReceiver) find(traceID string) *spanSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.spans {
		if r.spans[i].traceID == traceID {
			return &r.spans[i]
		}
	}
	return nil
}

// accessLines reads the access log's JSON lines.
func accessLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// The access log has a line for a denied query, a slow one and a failed
// one (with sampling at 0 nothing else), with the documented fields and
// the SQL normalised; a traceparent in a sqlcommenter comment reaches the
// span the sidecar exports and the access log line.
func TestPGAccessLogAndTracing(t *testing.T) {
	integrationOnly(t)
	ctx := testCtx(t, 60*time.Second)
	pg, _ := policyDB(ctx, t)
	recv, endpoint := newOTLPReceiver(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	addr := testenv.FreeAddr(t)
	p := &pgProxy{outrigger: startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
access_log: {enabled: true, output: %q, sample_rate: 0, slow_threshold: 300ms}
tracing: {endpoint: %q, sample_ratio: 0}
postgres:
  - name: appdb
    listen: %q
    upstream: {address: %q}
    pool: {mode: transaction, size: 2}
    auth: {method: scram-sha-256, users: [{name: app, password: app}]}
policy:
  rules:
    - {name: no-secrets, when: {user: app}, postgres: {tables: [orders, customers]}}
`, logPath, endpoint, addr, pg.Addr())), PG: pg, Addr: addr}
	c := p.connect(t)
	for range 20 { // fast and fine: not sampled at 0
		mustExec(ctx, t, c, "SELECT * FROM orders WHERE id = 1 AND amount > 5")
	}
	if _, err := c.Exec(ctx, "SELECT * FROM secrets WHERE s = 'denied-literal'"); pgCode(err) != "42501" {
		t.Fatalf("denied query: %v", err)
	}
	mustExec(ctx, t, c, "SELECT pg_sleep(0.4), 'slow-literal' FROM orders")
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	failing := "SELECT amount / 0, 'error-literal' FROM orders /*traceparent='00-" + traceID + "-" + parentID + "-01'*/"
	if _, err := c.Exec(ctx, failing, pgx.QueryExecModeSimpleProtocol); pgCode(err) != "22012" {
		t.Fatalf("failing query: %v", err)
	}
	var lines []map[string]any
	eventually(t, "three access log lines", func() bool {
		lines = accessLines(t, logPath)
		return len(lines) >= 3
	})
	if len(lines) != 3 {
		t.Errorf("%d access log lines, want 3 (denied, slow, error; no sampled ones):\n%v", len(lines), lines)
	}
	byOutcome := map[string]map[string]any{}
	for _, l := range lines {
		if strings.Contains(fmt.Sprint(l), "literal") {
			t.Errorf("a literal reached the access log: %v", l)
		}
		for _, k := range []string{"time", "listener", "pool", "user", "database", "kind", "statement", "duration_ms", "rows", "outcome"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line without %s: %v", k, l)
			}
		}
		if l["listener"] != "appdb" || l["pool"] != "app/app" || l["user"] != "app" || l["database"] != "app" {
			t.Errorf("who: %v", l)
		}
		out, _ := l["outcome"].(string)
		if l["duration_ms"].(float64) >= 300 {
			out = "slow"
		}
		byOutcome[out] = l
	}
	if d := byOutcome["denied"]; d == nil || d["code"] != "42501" || d["rule"] != "no-secrets" || d["kind"] != "select" ||
		d["statement"] != "SELECT * FROM secrets WHERE s = $1" {
		t.Errorf("denied line: %v", d)
	}
	if s := byOutcome["slow"]; s == nil || s["outcome"] != "ok" || s["statement"] != "SELECT pg_sleep($1), $2 FROM orders" || s["rows"] != 1.0 {
		t.Errorf("slow line: %v", s)
	}
	e := byOutcome["error"]
	if e == nil || e["code"] != "22012" || e["trace_id"] != traceID || !strings.HasPrefix(e["statement"].(string), "SELECT amount / $1, $2 FROM orders") {
		t.Errorf("error line: %v", e)
	}
	var span *spanSeen
	eventually(t, "the exported span", func() bool { span = recv.find(traceID); return span != nil })
	if span.parentID != parentID {
		t.Errorf("span parent %s, want the traceparent's %s", span.parentID, parentID)
	}
	if span.attrs["db.namespace"] != "app" || !strings.HasPrefix(span.attrs["db.query.text"], "SELECT amount / $1, $2 FROM orders") {
		t.Errorf("span attributes: %v", span.attrs)
	}
}
