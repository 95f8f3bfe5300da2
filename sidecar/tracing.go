package sidecar

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

// Tracer starts the spans of queries and commands. One Tracer lives as long
// as the Server; a reload that changes the tracing section swaps the
// OpenTelemetry provider behind it, for every handler at once. With tracing
// off (no tracing.endpoint), and for a nil *Tracer, StartDB returns the
// context it got and a no-op span without allocating, so frontends call it
// unconditionally.
type Tracer struct {
	cur atomic.Pointer[tracerVersion]
}

type tracerVersion struct {
	tr   trace.Tracer
	tp   *sdktrace.TracerProvider // nil when the provider was given in code
	hash string
}

// instrumentationName names Outrigger's tracer in exported spans.
const instrumentationName = "github.com/outrigger/outrigger"

// NewTracer returns a Tracer that is off until Configure.
func NewTracer() *Tracer { return &Tracer{} }

// NewTracerFrom returns a Tracer that starts spans on tp (tests hand it an
// SDK provider with an in-memory exporter). Configure must not be called on
// it.
func NewTracerFrom(tp trace.TracerProvider) *Tracer {
	t := &Tracer{}
	t.cur.Store(&tracerVersion{tr: tp.Tracer(instrumentationName)})
	return t
}

// Configure makes c the live tracing section. When the section changed it
// builds a new provider (an OTLP/HTTP exporter in batches, sampling
// parent-based with c.SampleRatio for new traces) and returns a function
// that flushes and shuts down the previous one, for the caller to run once
// the new one is live (nil when there is nothing to shut down).
func (t *Tracer) Configure(c config.Tracing, version string) (shutdownOld func(context.Context) error, err error) {
	next, changed, err := t.prepare(c, version)
	if err != nil || !changed {
		return nil, err
	}
	return t.commit(next), nil
}

// prepare builds the provider c needs when it differs from the live one.
func (t *Tracer) prepare(c config.Tracing, version string) (next *tracerVersion, changed bool, err error) {
	cur := t.cur.Load()
	h := config.Hash(c)
	if cur != nil && cur.hash == h || cur == nil && c.Endpoint == "" {
		return cur, false, nil
	}
	if c.Endpoint == "" {
		return &tracerVersion{hash: h}, true, nil // off
	}
	endpoint := c.Endpoint
	if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1/traces"
		endpoint = u.String()
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, false, fmt.Errorf("tracing.endpoint: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(c.ServiceName), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
	)
	return &tracerVersion{tr: tp.Tracer(instrumentationName), tp: tp, hash: h}, true, nil
}

// commit makes next live and returns the shutdown of the previous provider
// (nil when there was none of the SDK's).
func (t *Tracer) commit(next *tracerVersion) func(context.Context) error {
	cur := t.cur.Swap(next)
	if cur == nil || cur.tp == nil {
		return nil
	}
	return cur.tp.Shutdown
}

// abandon shuts down a provider prepare built for a version that will not
// go live.
func (v *tracerVersion) abandon() {
	if v != nil && v.tp != nil {
		v.tp.Shutdown(context.Background())
	}
}

// Shutdown flushes the spans ended so far and stops the exporter; the
// Tracer is off from then on.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	cur := t.cur.Swap(nil)
	if cur == nil || cur.tp == nil {
		return nil
	}
	return cur.tp.Shutdown(ctx)
}

// Enabled reports whether spans are being made.
func (t *Tracer) Enabled() bool {
	if t == nil {
		return false
	}
	v := t.cur.Load()
	return v != nil && v.tr != nil
}

// DBSpan describes one query or command for StartDB.
type DBSpan struct {
	// System is "postgresql" or "redis" (db.system.name, and db.system).
	System string
	// Operation is the statement kind ("SELECT") or command name ("GET")
	// (db.operation.name); it also names the span.
	Operation string
	// Namespace is the database name, or the Redis database index
	// (db.namespace).
	Namespace string
	// Query is the normalised SQL (db.query.text); never Redis values.
	Query string
	// Server is the upstream address, host:port (server.address and
	// server.port).
	Server string
	// Listener and Pool are Outrigger's (outrigger.listener,
	// outrigger.pool).
	Listener, Pool string
}

// StartDB starts a client span for one query or command, as a child of the
// span in ctx (see TraceContextFromSQL), and returns the context that
// carries it. The attributes are set only when the span is sampled. End it
// with EndDB. With tracing off it returns ctx and a no-op span.
func (t *Tracer) StartDB(ctx context.Context, s *DBSpan) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(context.Background())
	}
	v := t.cur.Load()
	if v == nil || v.tr == nil {
		return ctx, trace.SpanFromContext(context.Background())
	}
	name := s.Operation
	if name == "" {
		name = s.System
	}
	ctx, span := v.tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	if !span.IsRecording() {
		return ctx, span
	}
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs,
		semconv.DBSystemNameKey.String(s.System),
		attribute.String("db.system", s.System))
	if s.Operation != "" {
		attrs = append(attrs, semconv.DBOperationName(s.Operation))
	}
	if s.Namespace != "" {
		attrs = append(attrs, semconv.DBNamespace(s.Namespace))
	}
	if s.Query != "" {
		attrs = append(attrs, semconv.DBQueryText(s.Query))
	}
	if s.Server != "" {
		host, port := splitHostPort(s.Server)
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if s.Listener != "" {
		attrs = append(attrs, attribute.String("outrigger.listener", s.Listener))
	}
	if s.Pool != "" {
		attrs = append(attrs, attribute.String("outrigger.pool", s.Pool))
	}
	span.SetAttributes(attrs...)
	return ctx, span
}

// EndDB ends a span from StartDB with how the request ended: code is the
// SQLSTATE or the Redis error code ("" for none); rows, when >= 0, is the
// number of rows returned or affected (db.response.returned_rows).
func EndDB(span trace.Span, o metrics.Outcome, code string, rows int64) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if rows >= 0 {
		span.SetAttributes(attribute.Int64("db.response.returned_rows", rows))
	}
	if code != "" {
		span.SetAttributes(semconv.DBResponseStatusCode(code))
	}
	if o != metrics.OutcomeOK {
		et := code
		if et == "" {
			et = o.String()
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(et), attribute.String("outrigger.outcome", o.String()))
		span.SetStatus(codes.Error, o.String())
	}
	span.End()
}

// TraceIDFrom returns the trace id of the span or remote span context in
// ctx (zero when there is none), for AccessEntry.TraceID.
func TraceIDFrom(ctx context.Context) trace.TraceID {
	return trace.SpanContextFromContext(ctx).TraceID()
}

func splitHostPort(hp string) (string, int) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 || strings.HasPrefix(hp, "unix:") {
		return hp, 0
	}
	port := 0
	for _, c := range hp[i+1:] {
		if c < '0' || c > '9' {
			return hp, 0
		}
		port = port*10 + int(c-'0')
	}
	return strings.Trim(hp[:i], "[]"), port
}

// TraceContextFromSQL returns ctx with the remote span context of a W3C
// trace context that a sqlcommenter comment carries in sql:
// /*traceparent='00-<32 hex>-<16 hex>-01',tracestate='...'*/ as the last
// thing in the text (before an optional ';') or as the first. Values are
// URL-encoded (sqlcommenter's rule); keys other than traceparent and
// tracestate are ignored. Text without such a comment, or with an invalid
// traceparent, gives ctx unchanged; looking costs a few comparisons and no
// allocation unless the text starts or ends with a comment.
func TraceContextFromSQL(ctx context.Context, sql string) context.Context {
	body, ok := sqlComment(sql)
	if !ok || !strings.Contains(body, "traceparent") {
		return ctx
	}
	carrier := propagation.MapCarrier{}
	for body != "" {
		var kv string
		kv, body = cutUnquoted(body)
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k != "traceparent" && k != "tracestate" {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			continue
		}
		v = strings.ReplaceAll(v[1:len(v)-1], `\'`, `'`)
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		carrier[k] = v
	}
	if carrier["traceparent"] == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, carrier)
}

// sqlComment returns the body of the /* */ comment that ends sql (spaces
// and a ';' after it allowed) or, failing that, the one that starts it.
func sqlComment(sql string) (string, bool) {
	s := strings.TrimRight(sql, " \t\r\n;")
	if strings.HasSuffix(s, "*/") {
		if i := strings.LastIndex(s, "/*"); i >= 0 && i+2 <= len(s)-2 {
			return s[i+2 : len(s)-2], true
		}
	}
	s = strings.TrimLeft(sql, " \t\r\n")
	if strings.HasPrefix(s, "/*") {
		if i := strings.Index(s[2:], "*/"); i >= 0 {
			return s[2 : 2+i], true
		}
	}
	return "", false
}

// cutUnquoted splits s at the first comma outside single quotes.
func cutUnquoted(s string) (string, string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			quoted = !quoted
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}
