package policy

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// decisionLogRate and decisionLogBurst bound the decision log: a flood of
// refused requests logs at most this many lines a second; the next line
// written says how many were left out.
const (
	decisionLogRate  = 10
	decisionLogBurst = 20
)

// decisionLog writes one line per refusal and per audit decision
// (WithLogger), sampled by a token bucket. The lines carry who asked
// (principal, user, database, listener), what decided (rule, limit,
// outcome, message) and what was asked (the statement kinds or the
// command name), never query text, parameters or keys.
type decisionLog struct {
	log        *slog.Logger
	bucket     *rate.Limiter
	suppressed atomic.Int64
}

func newDecisionLog(l *slog.Logger) *decisionLog {
	if l == nil {
		return nil
	}
	return &decisionLog{log: l, bucket: rate.NewLimiter(decisionLogRate, decisionLogBurst)}
}

// logDecisions is the chain link that writes the decision log.
func (e *Engine) logDecisions(next Handler) Handler {
	return func(ctx context.Context, req Request) Decision {
		d := next(ctx, req)
		if d.Action != Allow || d.Audit {
			e.dlog.write(ctx, &req, &d)
		}
		return d
	}
}

func (l *decisionLog) write(ctx context.Context, req *Request, d *Decision) {
	if !l.bucket.AllowN(time.Now(), 1) {
		l.suppressed.Add(1)
		return
	}
	p := req.Session.p
	attrs := []slog.Attr{
		slog.String("outcome", d.Outcome()),
		slog.String("rule", d.Rule),
		slog.String("principal", p.Identity),
		slog.String("user", p.User),
		slog.String("listener", p.Listener),
	}
	if p.Database != "" {
		attrs = append(attrs, slog.String("database", p.Database))
	}
	if d.Limit != "" {
		attrs = append(attrs, slog.String("limit", d.Limit))
	}
	switch req.Protocol {
	case Postgres:
		attrs = append(attrs, slog.Any("statement_kinds", statementKinds(req)))
	case Redis:
		attrs = append(attrs, slog.String("command", req.Redis.Name))
	}
	if d.Message != "" {
		attrs = append(attrs, slog.String("message", d.Message))
	}
	if n := l.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed", n))
	}
	msg := "policy refused a request"
	if d.Action == Allow {
		msg = "policy audit: a rule in audit mode would refuse this request"
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// statementKinds lists the kinds of every statement of a Postgres request
// ("unparsed" when the parser rejected it, "unknown" without a
// classification).
func statementKinds(req *Request) []string {
	switch {
	case req.SQL == nil:
		return []string{"unknown"}
	case req.SQL.Err != nil:
		return []string{"unparsed"}
	}
	var out []string
	for i := range req.SQL.Statements {
		for _, k := range req.SQL.Statements[i].Kinds {
			out = append(out, string(k))
		}
	}
	return out
}
