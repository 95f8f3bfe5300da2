package redis

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/sidecar"
)

// Every command a client sends ends in one record (record): its outcome and
// duration through the listener's metrics.RedisRecorder, a line of the
// access log when it wants one (sampled; slow and failed commands always),
// and the end of its span when tracing is on. The command is named from the
// command table (lower case, "container|sub" for a subcommand, "unknown"
// for a command the table lacks): never from the client's text. Keys and
// values never reach any of the three. What only a logged or traced command
// needs (the entry, the database index as text, the span's attributes) is
// made only when the access log wants the line or the tracer is on, so an
// ok command that is neither logged nor traced costs the recorder's two
// series lookups and updates and the access log's Want, and allocates
// nothing.
//
// The outcome (outcomeOf):
//
//   - ok: the reply is not an error (an EXEC whose queued commands failed
//     is ok: the errors are inside its array);
//   - error: an error reply from Redis, or one Outrigger answers as Redis
//     would (NOAUTH, a SELECT argument error, EXECABORT after a refused
//     queued command); error_class and the access log's code are its
//     first word;
//   - denied and rate_limited: the policy refused it (Decision.RedisError);
//     the access log names the rule or rate limit;
//   - timeout: no reply within pool.command_timeout (every command in
//     flight on that upstream connection fails with it);
//   - proxy_error: Outrigger could not serve it: no upstream connection, no
//     dedicated connection within the pool's acquire timeout, a command in
//     refuse_commands, a malformed or oversized command (counted as
//     "unknown"), a connection lost with the command in flight.
//
// In passthrough (pub/sub, MONITOR, CLIENT REPLY, CLIENT TRACKING) frames
// are not matched to commands: a command that is sent counts as ok, its
// duration the time to send it.

// unknownCommand names a command the table does not know, in metrics, the
// access log and span names.
const unknownCommand = "unknown"

// commandName is c's name for the record: the table's, or "unknown".
func commandName(c *Command) string {
	if c == nil {
		return unknownCommand
	}
	return c.Name
}

// setOperation fills operation in c and its subcommands, once at init.
func setOperation(c *Command) {
	c.operation = strings.ToUpper(c.Name)
	for _, sub := range c.Subcommands {
		setOperation(sub)
	}
}

// startSpan starts the span of the command in sl when tracing is on. The
// span's db.namespace is the database the command runs in, server.address
// the listener's first upstream address; there is no trace context to
// continue (RESP has no comment channel), so each command's span is the
// root of its own trace, head-sampled by tracing.sample_ratio.
func (s *session) startSpan(sl *slot) {
	t := s.h.env.Tracer
	if !t.Enabled() {
		return
	}
	op := "UNKNOWN"
	if sl.cmd != nil {
		op = sl.cmd.operation
	}
	_, sl.span = t.StartDB(s.ctx, &sidecar.DBSpan{
		System: "redis", Operation: op, Namespace: strconv.Itoa(sl.db),
		Server: s.h.upstreamAddr, Listener: s.h.env.Name,
	})
}

// errOutcome is the outcome of a command that failed in the proxy with err.
func errOutcome(err error) metrics.Outcome {
	var ue *upstreamError
	switch {
	case errors.Is(err, errCommandTimeout):
		return metrics.OutcomeTimeout
	case errors.As(err, &ue):
		// The server refused the connection state the command asked for
		// (WRONGPASS, ERR DB index is out of range): its own error reply.
		return metrics.OutcomeError
	}
	return metrics.OutcomeProxyError
}

// isErrorReply reports whether a reply is a RESP error (a simple error, or
// a RESP3 blob error).
func isErrorReply(reply []byte) bool {
	return len(reply) > 0 && (reply[0] == '-' || reply[0] == '!')
}

// errorText is the text of an error reply, for RedisErrorClass: a blob
// error's length line is skipped.
func errorText(reply []byte) []byte {
	if len(reply) > 0 && reply[0] == '!' {
		if i := bytes.IndexByte(reply, '\n'); i >= 0 {
			return reply[i+1:]
		}
	}
	return reply
}

// errorCode is the access log's and span's code for an error reply: its
// first word when Redis defines that code, "other" for any other, "" for
// no error. It is one of a fixed set of strings.
func errorCode(errReply []byte) string {
	if errReply == nil {
		return ""
	}
	if c := metrics.RedisErrorClass(errorText(errReply)); c != metrics.ErrorClassNone {
		return c
	}
	return ""
}

// record ends the command in sl, which ended with outcome out; errReply is
// the error reply the client got (nil for none), n the bytes of the reply.
// Only the session's goroutine calls it.
func (s *session) record(sl *slot, out metrics.Outcome, errReply []byte, n int) {
	if sl.refusal != metrics.OutcomeOK {
		out = sl.refusal
	}
	d := time.Since(sl.start)
	name := commandName(sl.cmd)
	s.h.m.rec.Record(name, d, out, errorText(errReply))
	span := sl.span
	sl.span = nil
	if span != nil {
		sidecar.EndDB(span, out, errorCode(errReply), -1)
	}
	al := s.h.env.AccessLog
	if !al.Want(d, out != metrics.OutcomeOK) {
		return
	}
	e := sidecar.AccessEntry{
		Time: sl.start, Listener: s.h.env.Name,
		Client: s.c.RemoteAddr().String(), Principal: s.pol.principal.Identity,
		User: s.pol.principal.User, Database: strconv.Itoa(sl.db), Kind: name,
		Duration: d, Bytes: int64(n), Outcome: out, Code: errorCode(errReply),
		Rule: sl.rule,
	}
	if span != nil && span.SpanContext().IsSampled() {
		e.TraceID = span.SpanContext().TraceID()
	}
	al.Log(&e)
}

// upstreamAddrOf is the address spans name as the server: the first one
// configured.
func upstreamAddrOf(u []string) string {
	if len(u) > 0 {
		return u[0]
	}
	return ""
}
