package sidecar

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

// With tracing on, a proxied HTTP request gets a server span in the trace
// of its traceparent, and the upstream gets a traceparent whose parent is
// that span; without a traceparent a new trace starts (per the sampler).
func TestHTTPProxySpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))))
	defer tp.Shutdown(context.Background())
	got := make(chan string, 4)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
		w.WriteHeader(http.StatusTeapot)
	})
	cfg, err := config.Load(config.Source{Data: []byte(httpYAML("      - {prefix: /api, upstream: {address: "+up.addr()+"}}\n", "")), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.New(metrics.BuildInfo{})})
	if err := srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// The config has no tracing section: hand the live tracer the test's
	// provider.
	srv.tracer.cur.Store(NewTracerFrom(tp).cur.Load())
	defer srv.Shutdown()
	base := "http://" + srv.ListenerAddr("web").String()

	c := testClient(t)
	hdr := http.Header{"Traceparent": {"00-" + testTraceID + "-" + testSpanID + "-01"}}
	resp, _ := doRequest(t, c, "GET", base+"/api/x", nil, hdr)
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("status %d", resp.StatusCode)
	}
	upstreamTP := <-got
	// The span ends when the handler returns, just after the client has
	// its response.
	var spans tracetest.SpanStubs
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if spans = exp.GetSpans(); len(spans) > 0 {
			break
		}
	}
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.Name != "GET /api" || sp.SpanContext.TraceID().String() != testTraceID || sp.Parent.SpanID().String() != testSpanID {
		t.Errorf("span %q trace %s parent %s", sp.Name, sp.SpanContext.TraceID(), sp.Parent.SpanID())
	}
	if want := "00-" + testTraceID + "-" + sp.SpanContext.SpanID().String() + "-01"; upstreamTP != want {
		t.Errorf("upstream traceparent %q, want %q (the span's)", upstreamTP, want)
	}
	if a := attrs(sp); a["http.response.status_code"].AsInt64() != http.StatusTeapot || a["http.route"].AsString() != "/api" {
		t.Errorf("attributes %v", a)
	}

	// No traceparent and a ratio of 0: no span, and the upstream still gets
	// a valid traceparent of a new trace.
	exp.Reset()
	doRequest(t, c, "GET", base+"/api/y", nil, nil)
	if tp := <-got; !strings.HasPrefix(tp, "00-") || len(tp) != 55 {
		t.Errorf("upstream traceparent %q", tp)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans for an unsampled request", n)
	}
}
