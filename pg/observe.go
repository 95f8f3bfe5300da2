package pg

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/sidecar"
)

// Every round trip a client makes (a simple Query, FunctionCall, or the
// extended-protocol messages up to a Sync) ends in one record: the
// outrigger_pg_query_results_total outcome and the query duration, a line
// of the access log when it wants one (sampled; slow and failed round
// trips always), and the end of its span when tracing is on. What only a
// logged or traced round trip needs (its text, its classification, its
// normalised form) is kept or computed only when the access log or the
// tracer is on.

// observed is what the record of one round trip needs: it rides on the
// queue item that ends the round trip. Records are reused (observedPool):
// a round trip started while the access log is on costs a copy of its text
// into a kept buffer, and no allocation.
type observed struct {
	sql  []byte     // the statement text, kept only for the access log or a span
	span trace.Span // nil unless tracing is on
}

// maxKeptSQL bounds the text buffer a reused record keeps: a record that
// held a longer statement is dropped, not kept for the next round trip.
const maxKeptSQL = 16 << 10

var observedPool = sync.Pool{New: func() any { return new(observed) }}

// release returns o to observedPool once its round trip is recorded.
func (o *observed) release() {
	if cap(o.sql) > maxKeptSQL {
		return
	}
	o.sql, o.span = o.sql[:0], nil
	observedPool.Put(o)
}

// observing reports whether round trips keep their text: the access log
// or the tracer is on.
func (h *Handler) observing() bool {
	return h.env.AccessLog.Enabled() || h.env.Tracer.Enabled()
}

// startRoundTrip prepares the record of a round trip whose statement text
// is sql (nil when unknown). mu not needed: it touches only its result.
func (s *session) startRoundTrip(sql []byte) *observed {
	if !s.h.observing() {
		return nil
	}
	o := observedPool.Get().(*observed)
	o.sql = append(o.sql[:0], sql...)
	if t := s.h.env.Tracer; t.Enabled() {
		text := string(o.sql)
		ctx := sidecar.TraceContextFromSQL(s.ctx, text)
		_, o.span = t.StartDB(ctx, &sidecar.DBSpan{
			System: "postgresql", Operation: s.operation(text), Namespace: s.db,
			Query: s.h.norm.Normalize(text), Server: s.h.upstreamAddr(),
			Listener: s.h.env.Name, Pool: s.poolName(),
		})
	}
	return o
}

// operation is the statement kind of sql, upper case, for a span name.
func (s *session) operation(sql string) string {
	res := s.h.classes.Classify(sql)
	if res.Err != nil || len(res.Statements) == 0 {
		return "QUERY"
	}
	return strings.ToUpper(string(res.Statements[0].Kind))
}

// kinds lists the statement kinds of sql, for the access log. norm is sql
// normalised: literals never change a statement's kind (a classify test
// checks it over its corpus), and the normalised text is the same for
// every execution of a statement, so it is what is classified, found in
// the cache after the first time. sql itself, with its literals, is a new
// text nearly every time: it would cost a parse and push useful entries
// out of the cache. sql is classified only when norm does not parse.
func (s *session) kinds(sql, norm string) string {
	res := s.h.classes.Classify(norm)
	if res.Err != nil {
		res = s.h.classes.Classify(sql)
	}
	if res.Err != nil {
		return "unparsed"
	}
	ks := make([]string, 0, len(res.Statements))
	for _, st := range res.Statements {
		ks = append(ks, string(st.Kind))
	}
	return strings.Join(ks, ",")
}

func (s *session) poolName() string {
	if s.pool == nil {
		return ""
	}
	return poolLabel(s.pool.key)
}

func (h *Handler) upstreamAddr() string {
	if a := h.cfg.Upstream.AllAddresses(); len(a) > 0 {
		return a[0]
	}
	return ""
}

// outcomeOf is the outcome of a round trip that ended with the error e
// Outrigger answered itself (nil: none) and, for an error from the server,
// code. Outrigger's own errors are proxy_error (no server could be had, a
// limit of Outrigger's, what a pool mode cannot carry, a lost server),
// except those it gives in Postgres's place for the client's own mistake
// or request, which Postgres would have given too: error.
func outcomeOf(e *Error, code string, timedOut bool) metrics.Outcome {
	switch {
	case e != nil && e.refusal:
		if e.Code == codeInsufficientPrivilege {
			return metrics.OutcomeDenied
		}
		return metrics.OutcomeRateLimited
	case e != nil && (e.Code == "26000" || e.Code == "42P05" || e.Code == codeQueryCanceled):
		return metrics.OutcomeError
	case e != nil:
		return metrics.OutcomeProxyError
	case code == codeQueryCanceled && timedOut:
		return metrics.OutcomeTimeout
	case code != "":
		return metrics.OutcomeError
	}
	return metrics.OutcomeOK
}

// record ends a round trip: metrics, access log, span. local is the error
// Outrigger answered with itself (nil when the server answered); code the
// SQLSTATE the server answered with ("" for none). mu held.
func (s *session) record(start time.Time, o *observed, local *Error, code string) {
	if s.pool == nil {
		return
	}
	var d time.Duration
	if !start.IsZero() {
		d = time.Since(start)
	}
	out := outcomeOf(local, code, s.timedOut)
	if local != nil {
		code = local.Code
	}
	s.pool.m.rec.Record(d, out, code)
	s.pool.m.queries.Add(1)
	s.pool.m.queryMicros.Add(uint64(d.Microseconds()))
	rows := s.rows
	s.rows = 0
	if o == nil {
		return
	}
	defer o.release()
	if o.span != nil {
		sidecar.EndDB(o.span, out, code, rows)
	}
	if !s.h.env.AccessLog.Want(d, out != metrics.OutcomeOK) {
		return
	}
	sql := string(o.sql)
	e := sidecar.AccessEntry{
		Time: start, Listener: s.h.env.Name, Pool: s.poolName(),
		Client: s.sc.RemoteAddr().String(), Principal: s.principal.Identity,
		User: s.user, Database: s.db,
		Duration: d, Rows: rows, Outcome: out, Code: code,
	}
	if sql != "" {
		e.Statement = s.h.norm.Normalize(sql)
		e.Kind = s.kinds(sql, e.Statement)
	}
	if local != nil && local.refusal {
		e.Rule = local.rule
	}
	if o.span != nil && o.span.SpanContext().IsSampled() {
		e.TraceID = o.span.SpanContext().TraceID()
	} else if sql != "" {
		e.TraceID = sidecar.TraceIDFrom(sidecar.TraceContextFromSQL(context.Background(), sql))
	}
	s.h.env.AccessLog.Log(&e)
}

// sqlState returns the SQLSTATE of an ErrorResponse body.
func sqlState(body []byte) string {
	for len(body) > 1 {
		field := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return ""
		}
		if field == 'C' {
			return string(v)
		}
		body = rest
	}
	return ""
}

// parseText returns the query text of a Parse message (type and length
// included), or nil.
func parseText(parse []byte) []byte {
	if len(parse) < 5 {
		return nil
	}
	_, rest, ok := cstring(parse[5:])
	if !ok {
		return nil
	}
	q, _, ok := cstring(rest)
	if !ok {
		return nil
	}
	return q
}
