package sidecar

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// httpPropagator reads and writes W3C traceparent and tracestate headers.
var httpPropagator = propagation.TraceContext{}

// StartHTTP starts a server span for one proxied HTTP request, as a child
// of the trace context in its traceparent header (a sampled one is always
// honoured), named by method and route. With tracing off it returns ctx and
// a no-op span, and costs one atomic load.
func (t *Tracer) StartHTTP(ctx context.Context, r *http.Request, listener, route string) (context.Context, trace.Span) {
	if !t.Enabled() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	v := t.cur.Load()
	ctx = httpPropagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	ctx, span := v.tr.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.HTTPRoute(route),
			semconv.URLPath(r.URL.Path),
			semconv.ServerAddress(r.Host),
			attribute.String("outrigger.listener", listener),
		)
	}
	return ctx, span
}

// InjectHTTP writes the span context of ctx into h as traceparent (and
// tracestate), so the upstream continues the trace; it reports false, and
// leaves h alone, when ctx carries no valid span context.
func InjectHTTP(ctx context.Context, h http.Header) bool {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return false
	}
	h.Del("Traceparent")
	h.Del("Tracestate")
	httpPropagator.Inject(ctx, propagation.HeaderCarrier(h))
	return true
}

// EndHTTP ends a span from StartHTTP with the response status (0: the
// proxy gave up without a response).
func EndHTTP(span trace.Span, status int) {
	if span.IsRecording() {
		if status > 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		}
		if status == 0 || status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	span.End()
}
