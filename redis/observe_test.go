package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/policy"
	"github.com/outrigger/outrigger/sidecar"
)

// observedSession is a session of a handler whose metrics, access log and
// tracer the test reads; nothing is dialed.
func observedSession(t testing.TB, al *sidecar.AccessLog, tr *sidecar.Tracer) *session {
	t.Helper()
	env := sidecar.Env{Name: "cache", Metrics: metrics.New(metrics.BuildInfo{}), AccessLog: al, Tracer: tr}
	hh, err := NewHandler(env, &config.Redis{
		Upstream:    config.Upstream{Address: "10.0.0.7:6380"},
		Pool:        config.RedisPool{Size: 1, PinnedSize: 1},
		MaxPipeline: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	client, peer := net.Pipe()
	t.Cleanup(func() { client.Close(); peer.Close() })
	go io.Copy(io.Discard, peer) // the replies drain writes
	return hh.(*Handler).newSession(context.Background(), &sidecar.Conn{Conn: client, Accepted: time.Now()}, client, "")
}

// resultCount is the value of outrigger_redis_command_results_total for
// the labels given (a subset), summed.
func resultCount(t testing.TB, m *metrics.Metrics, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "outrigger_redis_command_results_total" {
			continue
		}
	series:
		for _, s := range mf.Metric {
			have := map[string]string{}
			for _, lp := range s.Label {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			sum += s.Counter.GetValue()
		}
	}
	return sum
}

func TestErrOutcome(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want metrics.Outcome
	}{
		{"command timeout", fmt.Errorf("%w within %s", errCommandTimeout, time.Second), metrics.OutcomeTimeout},
		{"server refused the state", &upstreamError{line: "WRONGPASS invalid username-password pair"}, metrics.OutcomeError},
		{"lane closed", errLaneClosed, metrics.OutcomeProxyError},
		{"upstream unavailable", fmt.Errorf("upstream unavailable: %w", errors.New("connection refused")), metrics.OutcomeProxyError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errOutcome(tt.err); got != tt.want {
				t.Errorf("errOutcome = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	tests := []struct{ reply, want string }{
		{"", ""},
		{"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", "WRONGTYPE"},
		{"-ERR value is not an integer or out of range\r\n", "ERR"},
		{"!21\r\nSYNTAX invalid syntax\r\n", "other"},
		{"!26\r\nNOPERM this user has no permissions\r\n", "NOPERM"},
		{"-secret-key-marker is not a code\r\n", "other"},
	}
	for _, tt := range tests {
		var reply []byte
		if tt.reply != "" {
			reply = []byte(tt.reply)
		}
		if got := errorCode(reply); got != tt.want {
			t.Errorf("errorCode(%q) = %q, want %q", tt.reply, got, tt.want)
		}
	}
}

// Each outcome is recorded under the command's table name, with the
// access log line and span attributes documented in observe.go, and no key
// or value anywhere.
func TestRecord(t *testing.T) {
	var logBuf bytes.Buffer
	al := sidecar.NewAccessLogTo(&logBuf, config.AccessLog{Enabled: true, SampleRate: 0, SlowThreshold: time.Hour})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	s := observedSession(t, al, sidecar.NewTracerFrom(tp))
	s.key.db = 3
	s.pol.principal.User = "reporter"

	tests := []struct {
		name    string
		args    []string
		prepare func(sl *slot)
		outcome string
		class   string
		rule    string
	}{
		{"ok", []string{"GET", "marker-key"}, func(sl *slot) { sl.complete([]byte("$12\r\nmarker-value\r\n")) }, "ok", "none", ""},
		{"error", []string{"LPUSH", "marker-key", "marker-value"}, func(sl *slot) {
			sl.complete([]byte("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"))
		}, "error", "WRONGTYPE", ""},
		{"denied", []string{"SET", "marker-key", "marker-value"}, func(sl *slot) {
			d := policy.Decision{Action: policy.Deny, Rule: "readonly", Message: "not allowed"}
			s.applyDecision(&d, sl)
		}, "denied", "NOPERM", "readonly"},
		{"rate limited", []string{"GET", "marker-key"}, func(sl *slot) {
			d := policy.Decision{Action: policy.RateLimited, Rule: "per-client"}
			s.applyDecision(&d, sl)
		}, "rate_limited", "ERR", "per-client"},
		{"timeout", []string{"GET", "marker-key"}, func(sl *slot) {
			sl.fail(fmt.Errorf("%w within %s", errCommandTimeout, time.Second))
		}, "timeout", "ERR", ""},
		{"refused by the proxy", []string{"FLUSHALL"}, func(sl *slot) { sl.fail(refusedError(sl.cmd)) }, "proxy_error", "NOPERM", ""},
		{"unknown command", []string{"MARKERCMD", "marker-key"}, func(sl *slot) {
			sl.complete([]byte("-ERR unknown command 'MARKERCMD'\r\n"))
		}, "error", "ERR", ""},
		{"subcommand", []string{"CONFIG", "GET", "maxmemory"}, func(sl *slot) { sl.complete([]byte("*0\r\n")) }, "ok", "none", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logBuf.Reset()
			exp.Reset()
			args := argv(tt.args...)
			c := Lookup(args)
			sl := s.newSlot(c)
			s.startSpan(sl)
			tt.prepare(sl)
			if len(s.out) == 0 {
				s.out = append(s.out, sl)
			}
			s.drain()

			name := commandName(c)
			if got := resultCount(t, s.h.env.Metrics, map[string]string{"command": name, "outcome": tt.outcome, "error_class": tt.class}); got < 1 {
				t.Errorf("no %s/%s/%s result counted", name, tt.outcome, tt.class)
			}
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			attrs := map[string]string{}
			for _, kv := range sp.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if sp.Name != strings.ToUpper(name) || attrs["db.system.name"] != "redis" || attrs["db.operation.name"] != strings.ToUpper(name) ||
				attrs["db.namespace"] != "3" || attrs["server.address"] != "10.0.0.7" || attrs["server.port"] != "6380" {
				t.Errorf("span %q: %v", sp.Name, attrs)
			}
			if tt.outcome != "ok" && attrs["outrigger.outcome"] != tt.outcome {
				t.Errorf("span outcome %q, want %q", attrs["outrigger.outcome"], tt.outcome)
			}
			if tt.outcome == "ok" {
				if logBuf.Len() != 0 {
					t.Errorf("a fast ok command logged at sample_rate 0: %s", logBuf.String())
				}
				return
			}
			var line map[string]any
			if err := json.Unmarshal(logBuf.Bytes(), &line); err != nil {
				t.Fatalf("access log %q: %v", logBuf.String(), err)
			}
			want := map[string]any{
				"listener": "cache", "client": "pipe", "user": "reporter", "database": "3",
				"kind": name, "outcome": tt.outcome, "code": tt.class, "trace_id": sp.SpanContext.TraceID().String(),
			}
			if tt.rule != "" {
				want["rule"] = tt.rule
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s = %v, want %v (line %s)", k, line[k], v, logBuf.String())
				}
			}
			if _, ok := line["statement"]; ok {
				t.Errorf("a statement in a redis line: %s", logBuf.String())
			}
			if strings.Contains(logBuf.String(), "marker") {
				t.Errorf("a key, value or raw command name reached the access log: %s", logBuf.String())
			}
		})
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// Recording an ok command allocates nothing, with the access log on (a
// fast command not sampled) and tracing off.
func TestRecordOKDoesNotAllocate(t *testing.T) {
	al := sidecar.NewAccessLogTo(discard{}, config.AccessLog{Enabled: true, SampleRate: 0, SlowThreshold: time.Hour})
	s := observedSession(t, al, sidecar.NewTracer())
	c := Lookup(argv("GET", "k"))
	sl := s.newSlot(c)
	s.record(sl, metrics.OutcomeOK, nil, 8) // the series exist from here on
	s.releaseSlot(sl)
	if n := testing.AllocsPerRun(1000, func() {
		sl := s.newSlot(c)
		s.startSpan(sl)
		s.record(sl, metrics.OutcomeOK, nil, 8)
		s.releaseSlot(sl)
	}); n != 0 {
		t.Errorf("%v allocations per ok command, want 0", n)
	}
}

// BenchmarkRecordOK is the bookkeeping of one ok GET when its reply is
// written: the recorder, and the access log's Want with the log on and
// nothing sampled; tracing off.
func BenchmarkRecordOK(b *testing.B) {
	al := sidecar.NewAccessLogTo(discard{}, config.AccessLog{Enabled: true, SampleRate: 0, SlowThreshold: time.Hour})
	s := observedSession(b, al, sidecar.NewTracer())
	c := Lookup(argv("GET", "k"))
	sl := s.newSlot(c)
	b.ReportAllocs()
	for b.Loop() {
		s.startSpan(sl)
		s.record(sl, metrics.OutcomeOK, nil, 8)
	}
}
