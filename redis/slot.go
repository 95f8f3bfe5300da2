package redis

import (
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/metrics"
)

// slot is the place in a client's reply stream that one command's reply
// fills. The session's drain writes slots out in the order the client sent
// its commands, waiting on each; whoever answers the command (an upstream
// lane, or the session itself) completes it exactly once.
//
// Slots belong to their session and are reused once drain has written them
// (so a command costs no allocation in steady state). Completion sets ready
// and then signals the session's wake channel; a waiter re-checks ready
// after every signal, so a stale signal only costs a loop.
type slot struct {
	ready atomic.Bool
	wake  chan struct{} // the session's
	buf   []byte        // the reply, copied: the lane's reader reuses its buffer
	err   error         // set instead of buf when the command failed in the proxy
	cmd   *Command
	start time.Time
	// blocking commands stop the upstream reply clock while they wait.
	blocking bool
	// replace, when set, is the error line written instead of the reply:
	// the EXEC of a transaction the policy aborted, sent as DISCARD.
	replace string

	// What the command's record needs (observe.go). refusal is the outcome
	// of an answer the session made in Redis's place for its own reasons
	// (denied, rate_limited, proxy_error; OutcomeOK: the reply decides),
	// rule the policy rule or rate limit behind a refusal, db the database
	// the command ran in, span its span (nil with tracing off).
	refusal metrics.Outcome
	rule    string
	db      int
	span    trace.Span

	// sess is set while the command is detached: the lane's reader writes
	// its reply to that session's client itself (direct.go).
	sess *session
}

// isDone reports whether the slot is answered.
func (s *slot) isDone() bool { return s.ready.Load() }

func (s *slot) finish() {
	s.ready.Store(true)
	select {
	case s.wake <- struct{}{}:
	default: // a signal is pending already; the waiter re-checks ready
	}
}

// complete fills the slot with a copy of the reply's raw bytes.
func (s *slot) complete(raw []byte) {
	s.buf = append(s.buf[:0], raw...)
	s.finish()
}

// fail answers the command with an error line.
func (s *slot) fail(err error) {
	if sess := s.sess; sess != nil {
		if sess.deliver(s, nil, err) {
			sess.flushDirect()
		}
		return
	}
	s.err = err
	s.finish()
}

// answer fills the slot with a reply the proxy made itself.
func (s *slot) answer(build func([]byte) []byte) {
	s.buf = build(s.buf[:0])
	s.finish()
}

// ok answers +OK.
func (s *slot) ok() { s.answer(redcon.AppendOK) }

// error answers with a RESP error line (msg starts with its code: "ERR ...").
func (s *slot) error(msg string) {
	s.answer(func(b []byte) []byte { return redcon.AppendError(b, msg) })
}
