package sidecar

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func accessCfg(rate float64) config.AccessLog {
	return config.AccessLog{Enabled: true, Output: "stderr", SampleRate: rate, SlowThreshold: time.Second, MaxStatementLength: 32}
}

func TestAccessLogWant(t *testing.T) {
	var nilLog *AccessLog
	if nilLog.Want(time.Hour, true) || nilLog.Enabled() {
		t.Error("a nil access log wants a line")
	}
	nilLog.Log(&AccessEntry{}) // no panic
	if NewAccessLog().Want(time.Hour, true) {
		t.Error("an access log that is off wants a line")
	}
	none := NewAccessLogTo(&syncBuf{}, accessCfg(0))
	all := NewAccessLogTo(&syncBuf{}, accessCfg(1))
	half := NewAccessLogTo(&syncBuf{}, accessCfg(0.5))
	tests := []struct {
		name   string
		a      *AccessLog
		d      time.Duration
		failed bool
		want   bool
	}{
		{"fast ok, rate 0", none, time.Millisecond, false, false},
		{"slow ok, rate 0", none, time.Second, false, true},
		{"failed, rate 0", none, time.Microsecond, true, true},
		{"fast ok, rate 1", all, time.Microsecond, false, true},
	}
	for _, tt := range tests {
		if got := tt.a.Want(tt.d, tt.failed); got != tt.want {
			t.Errorf("%s: Want = %v, want %v", tt.name, got, tt.want)
		}
	}
	n := 0
	for range 10000 {
		if half.Want(time.Millisecond, false) {
			n++
		}
	}
	if n < 4000 || n > 6000 {
		t.Errorf("sample_rate 0.5: %d of 10000 wanted", n)
	}
}

func TestAccessLogLine(t *testing.T) {
	var buf syncBuf
	a := NewAccessLogTo(&buf, accessCfg(0))
	var tid trace.TraceID
	copy(tid[:], []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36})
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a.Log(&AccessEntry{
		Time: start, Listener: "appdb", Pool: "app/app", Client: "10.1.2.3:5555", Principal: "spiffe://x/y",
		User: "app", Database: "app", Kind: "select",
		Statement: "SELECT a, b, c FROM orders WHERE id = $1 AND name = $2 -- ünïcode",
		Duration:  1500 * time.Microsecond, Rows: 3, Bytes: 120,
		Outcome: metrics.OutcomeDenied, Code: "42501", Rule: "reporting", TraceID: tid,
	})
	a.Log(&AccessEntry{Listener: "cache", Kind: "get", Duration: time.Millisecond, Outcome: metrics.OutcomeOK})
	lines := buf.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	l := lines[0]
	want := map[string]any{
		"time": "2025-03-01T12:00:00Z", "msg": "access", "listener": "appdb", "pool": "app/app",
		"client": "10.1.2.3:5555", "principal": "spiffe://x/y", "user": "app", "database": "app",
		"kind": "select", "statement": "SELECT a, b, c FROM orders WHERE", "statement_truncated": true,
		"duration_ms": 1.5, "rows": float64(3), "bytes": float64(120), "outcome": "denied",
		"code": "42501", "rule": "reporting", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %#v, want %#v", k, l[k], v)
		}
	}
	if _, ok := l["level"]; ok {
		t.Error("the line has a level")
	}
	if len(l) != len(want) {
		t.Errorf("line has %d fields, want %d: %v", len(l), len(want), l)
	}
	r := lines[1]
	for _, k := range []string{"pool", "statement", "code", "trace_id", "bytes"} {
		if _, ok := r[k]; ok {
			t.Errorf("a redis line with no %s has it: %v", k, r)
		}
	}
	if r["outcome"] != "ok" || r["rows"] != float64(0) || r["kind"] != "get" {
		t.Errorf("redis line: %v", r)
	}
}

func TestAccessLogTruncatesAtRuneBoundary(t *testing.T) {
	s := strings.Repeat("a", 15) + "é" // é is 2 bytes: 15 and 16
	got, cut := truncate(s, 16)
	if !cut || got != strings.Repeat("a", 15) {
		t.Errorf("truncate = %q, %v", got, cut)
	}
}

// TestAccessLogReload: Configure follows the section: a file output is
// opened, an unchanged section keeps it, a changed one hands back the old
// file to close, enabled: false turns it off.
func TestAccessLogReload(t *testing.T) {
	dir := t.TempDir()
	a := NewAccessLog()
	var stderr syncBuf
	c := accessCfg(1)
	c.Output = filepath.Join(dir, "a.log")
	old, err := a.Configure(c, nil, &stderr)
	if err != nil || old != nil {
		t.Fatalf("Configure: %v, %v", old, err)
	}
	a.Log(&AccessEntry{Listener: "one"})
	if old, _ := a.Configure(c, nil, &stderr); old != nil {
		t.Error("an unchanged section gave back a file")
	}
	c.Output = "stderr"
	old, err = a.Configure(c, nil, &stderr)
	if err != nil || old == nil {
		t.Fatalf("changing the output: %v, %v", old, err)
	}
	old.Close()
	a.Log(&AccessEntry{Listener: "two"})
	b, _ := os.ReadFile(filepath.Join(dir, "a.log"))
	if !strings.Contains(string(b), `"listener":"one"`) || strings.Contains(string(b), "two") {
		t.Errorf("file: %s", b)
	}
	fi, _ := os.Stat(filepath.Join(dir, "a.log"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	c.Enabled = false
	old, err = a.Configure(c, nil, &stderr)
	if err != nil || old == nil {
		t.Fatalf("turning it off: %v, %v", old, err)
	}
	old.Close() // writes the lines still waiting in the batch
	if got := stderr.lines(t); len(got) != 1 || got[0]["listener"] != "two" {
		t.Errorf("stderr: %v", got)
	}
	if a.Enabled() || a.Want(time.Hour, true) {
		t.Error("enabled: false still logs")
	}
	c.Enabled, c.Output = true, filepath.Join(dir, "no", "such", "dir.log")
	if _, err := a.Configure(c, nil, &stderr); err == nil || !strings.Contains(err.Error(), "access_log.output") {
		t.Errorf("a file that cannot be opened: %v", err)
	}
}

// TestAccessLogBatches: lines wait in a batch and reach the output within
// accessFlushEvery, or as soon as accessBatchBytes wait.
func TestAccessLogBatches(t *testing.T) {
	var out syncBuf
	b := newBatchWriter(&out, nil)
	defer b.Close()
	b.Write([]byte("{\"n\":1}\n"))
	if len(out.lines(t)) != 0 {
		t.Fatal("a line was written at once, not batched")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(out.lines(t)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the batch was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	line := []byte("{\"n\":2," + `"pad":"` + strings.Repeat("x", 1000) + "\"}\n")
	for range accessBatchBytes/len(line) + 1 {
		b.Write(line)
	}
	if got := len(out.lines(t)); got < 2 {
		t.Errorf("%d lines after %d bytes waited; the batch should have been written", got, accessBatchBytes)
	}
}

// TestWantAllocatesNothing: the question asked for every request never
// allocates, whether the answer is yes or no.
func TestWantAllocatesNothing(t *testing.T) {
	a := NewAccessLogTo(&syncBuf{}, accessCfg(0.01))
	if n := testing.AllocsPerRun(1000, func() { a.Want(time.Millisecond, false) }); n != 0 {
		t.Errorf("Want: %.1f allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() { a.Want(time.Millisecond, true) }); n != 0 {
		t.Errorf("Want (failed): %.1f allocations", n)
	}
}

// BenchmarkAccessLogWant is the access log's cost for a request it does not
// log (the common case at the default sample rate).
func BenchmarkAccessLogWant(b *testing.B) {
	a := NewAccessLogTo(&syncBuf{}, accessCfg(0.01))
	b.ReportAllocs()
	for b.Loop() {
		a.Want(300*time.Microsecond, false)
	}
}

// BenchmarkAccessLogOff is its cost with access_log.enabled false.
func BenchmarkAccessLogOff(b *testing.B) {
	a := NewAccessLog()
	b.ReportAllocs()
	for b.Loop() {
		a.Want(300*time.Microsecond, false)
	}
}

// BenchmarkAccessLogLine is the cost of one line written.
func BenchmarkAccessLogLine(b *testing.B) {
	a := NewAccessLogTo(io.Discard, accessCfg(1))
	e := &AccessEntry{Listener: "appdb", Pool: "app/app", User: "app", Database: "app", Kind: "select",
		Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = $1", Duration: 300 * time.Microsecond, Rows: 1}
	b.ReportAllocs()
	for b.Loop() {
		a.Log(e)
	}
}
