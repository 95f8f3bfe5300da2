package sidecar

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

func TestTraceContextFromSQL(t *testing.T) {
	tests := []struct {
		name    string
		sql     string
		traced  bool
		sampled bool
		state   string
	}{
		{"comment at the end", "SELECT 1 /*traceparent='00-" + testTraceID + "-" + testSpanID + "-01'*/", true, true, ""},
		{"at the end before a semicolon", "SELECT 1 /*controller='index',traceparent='00-" + testTraceID + "-" + testSpanID + "-01',tracestate='congo%3Dt61rcWkgMzE%2Crojo%3D00f067aa0ba902b7'*/ ;\n", true, true, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
		{"at the start", "/*traceparent='00-" + testTraceID + "-" + testSpanID + "-00'*/ UPDATE t SET a = 1", true, false, ""},
		{"url-encoded traceparent", "SELECT 1 /*traceparent='00%2D" + testTraceID + "%2D" + testSpanID + "%2D01'*/", true, true, ""},
		{"no comment", "SELECT 1", false, false, ""},
		{"comment in the middle", "SELECT /*traceparent='00-" + testTraceID + "-" + testSpanID + "-01'*/ 1", false, false, ""},
		{"invalid traceparent", "SELECT 1 /*traceparent='00-xyz-" + testSpanID + "-01'*/", false, false, ""},
		{"all-zero trace id", "SELECT 1 /*traceparent='00-00000000000000000000000000000000-" + testSpanID + "-01'*/", false, false, ""},
		{"other keys only", "SELECT 1 /*action='run',framework='x'*/", false, false, ""},
		{"unterminated", "SELECT 1 /*traceparent='00-" + testTraceID + "-" + testSpanID + "-01'", false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := trace.SpanContextFromContext(TraceContextFromSQL(context.Background(), tt.sql))
			if sc.IsValid() != tt.traced {
				t.Fatalf("valid = %v, want %v", sc.IsValid(), tt.traced)
			}
			if !tt.traced {
				return
			}
			if sc.TraceID().String() != testTraceID || sc.SpanID().String() != testSpanID || !sc.IsRemote() {
				t.Errorf("span context %v", sc)
			}
			if sc.IsSampled() != tt.sampled {
				t.Errorf("sampled = %v, want %v", sc.IsSampled(), tt.sampled)
			}
			if got := sc.TraceState().String(); got != tt.state {
				t.Errorf("tracestate = %q, want %q", got, tt.state)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() {
		TraceContextFromSQL(context.Background(), "SELECT abalance FROM pgbench_accounts WHERE aid = $1")
	}); n != 0 {
		t.Errorf("SQL without a comment: %.1f allocations", n)
	}
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestSpanContinuesSQLCommenterTrace: a sampled traceparent in a
// sqlcommenter comment gives a span in that trace, child of that span,
// even when the ratio samples no new trace; the span carries the semantic
// convention attributes.
func TestSpanContinuesSQLCommenterTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))))
	defer tp.Shutdown(context.Background())
	tr := NewTracerFrom(tp)

	sql := "SELECT * FROM orders WHERE id = 42 /*traceparent='00-" + testTraceID + "-" + testSpanID + "-01'*/"
	ctx := TraceContextFromSQL(context.Background(), sql)
	ctx, span := tr.StartDB(ctx, &DBSpan{System: "postgresql", Operation: "SELECT", Namespace: "app",
		Query: "SELECT * FROM orders WHERE id = $1 /*traceparent='00-...'*/", Server: "127.0.0.1:5432", Listener: "appdb", Pool: "app/app"})
	if got := TraceIDFrom(ctx).String(); got != testTraceID {
		t.Errorf("TraceIDFrom = %s, want %s", got, testTraceID)
	}
	EndDB(span, metrics.OutcomeError, "42P01", 0)

	// Without a trace context and with ratio 0: no span.
	_, span = tr.StartDB(context.Background(), &DBSpan{System: "redis", Operation: "GET"})
	EndDB(span, metrics.OutcomeOK, "", -1)

	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1", len(spans))
	}
	s := spans[0]
	if s.SpanContext.TraceID().String() != testTraceID || s.Parent.SpanID().String() != testSpanID || !s.Parent.IsRemote() {
		t.Errorf("span trace %s parent %s, want %s %s", s.SpanContext.TraceID(), s.Parent.SpanID(), testTraceID, testSpanID)
	}
	if s.Name != "SELECT" || s.SpanKind != trace.SpanKindClient {
		t.Errorf("name %q kind %v", s.Name, s.SpanKind)
	}
	a := attrs(s)
	for k, v := range map[attribute.Key]string{
		"db.system.name": "postgresql", "db.system": "postgresql", "db.operation.name": "SELECT",
		"db.namespace": "app", "server.address": "127.0.0.1", "db.response.status_code": "42P01",
		"error.type": "42P01", "outrigger.listener": "appdb", "outrigger.pool": "app/app",
	} {
		if a[k].AsString() != v {
			t.Errorf("%s = %q, want %q", k, a[k].AsString(), v)
		}
	}
	if a["server.port"].AsInt64() != 5432 {
		t.Errorf("server.port = %v", a["server.port"])
	}
	if s.Status.Code != codes.Error {
		t.Errorf("status %v, want Error", s.Status)
	}
}

// TestTracerOff: a nil Tracer and one that is off return the context as it
// was and a span that records nothing, without allocating.
func TestTracerOff(t *testing.T) {
	var nilTr *Tracer
	for _, tr := range []*Tracer{nilTr, NewTracer()} {
		if tr.Enabled() {
			t.Error("enabled")
		}
		ctx := context.Background()
		got, span := tr.StartDB(ctx, &DBSpan{System: "redis"})
		if got != ctx || span.IsRecording() {
			t.Error("an off tracer made a span")
		}
		EndDB(span, metrics.OutcomeOK, "", 1)
		q := &DBSpan{System: "redis", Operation: "GET"}
		if n := testing.AllocsPerRun(100, func() {
			_, sp := tr.StartDB(ctx, q)
			EndDB(sp, metrics.OutcomeOK, "", 1)
		}); n != 0 {
			t.Errorf("StartDB+EndDB off: %.1f allocations", n)
		}
	}
	if err := nilTr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestTracerExportsOverOTLPHTTP: with an endpoint, spans reach it as
// OTLP/HTTP requests once the tracer is shut down (flushed); a reload to
// no endpoint turns it off.
func TestTracerExportsOverOTLPHTTP(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	tr := NewTracer()
	if _, err := tr.Configure(config.Tracing{Endpoint: "http://" + ln.Addr().String(), SampleRatio: 1, ServiceName: "outrigger"}, "test"); err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("not enabled")
	}
	_, span := tr.StartDB(context.Background(), &DBSpan{System: "redis", Operation: "GET", Namespace: "0"})
	if !span.IsRecording() {
		t.Fatal("ratio 1 did not sample")
	}
	EndDB(span, metrics.OutcomeOK, "", -1)
	shutdown, err := tr.Configure(config.Tracing{SampleRatio: 1, ServiceName: "outrigger"}, "test")
	if err != nil || shutdown == nil {
		t.Fatalf("turning tracing off: shutdown %v, %v", shutdown != nil, err)
	}
	if tr.Enabled() {
		t.Error("still enabled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "POST /v1/traces application/x-protobuf" {
		t.Errorf("collector saw %q, want a POST /v1/traces of protobuf", paths)
	}
}

func BenchmarkStartDBOff(b *testing.B) {
	tr := NewTracer()
	q := &DBSpan{System: "postgresql", Operation: "SELECT"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, sp := tr.StartDB(ctx, q)
		EndDB(sp, metrics.OutcomeOK, "", 1)
	}
}
