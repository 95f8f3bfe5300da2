package sidecar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
)

// AccessLog is the process's access log: one JSON line per query or command,
// for every slow or failed one and a random sample of the rest. One
// AccessLog lives as long as the Server; a reload that changes the
// access_log section swaps what it writes to and how it samples, for every
// handler at once (also those the reload carried over). A nil *AccessLog,
// and one whose section has enabled: false, log nothing.
//
// A frontend asks Want once per request, with what it knows cheaply (the
// time it took, whether it failed); only when that says yes does it fill an
// AccessEntry (normalising the SQL, say) and call Log:
//
//	if al := env.AccessLog; al.Want(d, outcome != metrics.OutcomeOK) {
//		al.Log(&sidecar.AccessEntry{...})
//	}
type AccessLog struct {
	cur atomic.Pointer[accessSink]
}

// accessSink is one version of the access_log section, opened.
type accessSink struct {
	h         slog.Handler
	threshold uint64 // a request is sampled when rand.Uint64() < threshold
	all       bool   // sample_rate 1
	slow      time.Duration
	maxStmt   int
	out       *batchWriter // nil for writers given in code (NewAccessLogTo)
	hash      string
}

// accessFlushEvery is how long a line may wait in an access log's buffer.
const accessFlushEvery = 100 * time.Millisecond

// accessBatchBytes is how much waits at most before a write.
const accessBatchBytes = 64 << 10

// batchWriter gathers access log lines and writes them out together, every
// accessFlushEvery or once accessBatchBytes wait: a busy log costs a few
// write system calls a second instead of one per line. (A blocking write
// to a file is a system call the Go runtime must hand a thread to; one per
// sampled request keeps its monitor waking every 20 µs. Batched, Redis GET
// at 50 clients keeps 0.996× of its throughput at 1 % sampling in
// BENCHMARKS.md.) A crash loses at most the lines of the last
// accessFlushEvery.
type batchWriter struct {
	mu     sync.Mutex
	w      io.Writer
	file   *os.File // closed by Close; nil for stdout and stderr
	buf    []byte
	timer  *time.Timer
	armed  bool
	closed bool
}

func newBatchWriter(w io.Writer, f *os.File) *batchWriter {
	b := &batchWriter{w: w, file: f}
	b.timer = time.AfterFunc(time.Hour, b.flush)
	b.timer.Stop()
	return b
}

// Write keeps p (one line: slog writes a record in one call) for the next
// batch.
func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p) // a handler that still held the old version
	}
	b.buf = append(b.buf, p...)
	switch {
	case len(b.buf) >= accessBatchBytes:
		b.flushLocked()
	case !b.armed:
		b.armed = true
		b.timer.Reset(accessFlushEvery)
	}
	return len(p), nil
}

func (b *batchWriter) flush() {
	b.mu.Lock()
	b.flushLocked()
	b.mu.Unlock()
}

func (b *batchWriter) flushLocked() {
	b.armed = false
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf)
	b.buf = b.buf[:0]
	if cap(b.buf) > 4*accessBatchBytes {
		b.buf = nil
	}
}

// Close writes what waits and closes the file, if the log has one.
func (b *batchWriter) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timer.Stop()
	b.flushLocked()
	b.closed = true
	if b.file != nil {
		return b.file.Close()
	}
	return nil
}

// AccessEntry is one line of the access log. Statement is the text to log,
// already free of values: a frontend passes SQL through the normaliser of
// package pg/classify, and never a Redis key or value. Fields left zero are
// left out of the line (but duration, outcome and rows are always there).
type AccessEntry struct {
	// Time is when the request began; zero means Duration before Log.
	Time      time.Time
	Listener  string
	Pool      string
	Client    string // the client's address
	Principal string // from the client certificate
	User      string
	Database  string
	// Kind is the statement kind ("select", "insert"; several joined with
	// commas for a multi-statement string) or the Redis command name.
	Kind string
	// Statement is the normalised SQL; Log truncates it to
	// access_log.max_statement_length. Empty for Redis.
	Statement string
	Duration  time.Duration
	Rows      int64 // rows returned or affected
	Bytes     int64 // reply bytes sent to the client
	Outcome   metrics.Outcome
	// Code is the SQLSTATE of the error the client got, or the first word
	// of a Redis error reply ("WRONGTYPE"); "" for none.
	Code string
	// Rule is the policy rule or rate limit that denied or limited it.
	Rule string
	// TraceID is the W3C trace the request belongs to (from the span, or a
	// sqlcommenter traceparent); zero for none. See TraceIDFrom.
	TraceID trace.TraceID
}

// NewAccessLog returns an access log that is off until Configure.
func NewAccessLog() *AccessLog { return &AccessLog{} }

// NewAccessLogTo returns an access log that writes to w with the sampling
// of c (c.Output is ignored); for tests and embedding.
func NewAccessLogTo(w io.Writer, c config.AccessLog) *AccessLog {
	a := &AccessLog{}
	a.cur.Store(newAccessSink(w, c))
	return a
}

// newAccessSink writes to w; a *batchWriter is also what Close and a
// reload close.
func newAccessSink(w io.Writer, c config.AccessLog) *accessSink {
	out, _ := w.(*batchWriter)
	s := &accessSink{
		h: slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				return slog.Attr{} // every line is INFO; the level says nothing
			}
			return a
		}}),
		slow:    c.SlowThreshold,
		maxStmt: c.MaxStatementLength,
		out:     out,
		hash:    config.Hash(c),
	}
	switch {
	case c.SampleRate >= 1:
		s.all = true
	case c.SampleRate > 0:
		s.threshold = uint64(c.SampleRate * math.MaxUint64)
	}
	if s.maxStmt <= 0 {
		s.maxStmt = 2048
	}
	return s
}

// Configure makes c the live access_log section: it opens the output when
// the section changed (stdout and stderr are the writers given), and
// returns the file the previous version wrote to, which the caller closes
// once handlers no longer write to it (nil when there is none to close).
// On error nothing changes.
func (a *AccessLog) Configure(c config.AccessLog, stdout, stderr io.Writer) (old io.Closer, err error) {
	next, changed, err := a.prepare(c, stdout, stderr)
	if err != nil || !changed {
		return nil, err
	}
	return a.commit(next), nil
}

// prepare opens what c needs when it differs from the live section.
func (a *AccessLog) prepare(c config.AccessLog, stdout, stderr io.Writer) (next *accessSink, changed bool, err error) {
	cur := a.cur.Load()
	if !c.Enabled {
		return nil, cur != nil, nil
	}
	if cur != nil && cur.hash == config.Hash(c) {
		return cur, false, nil
	}
	var w io.Writer
	var f *os.File
	switch c.Output {
	case "stdout":
		w = stdout
	case "stderr", "":
		w = stderr
	default:
		if f, err = os.OpenFile(c.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return nil, false, fmt.Errorf("access_log.output: %w", err)
		}
		w = f
	}
	return newAccessSink(newBatchWriter(w, f), c), true, nil
}

// commit makes next live and returns the previous version's output, which
// the caller closes (writing its last lines, closing its file).
func (a *AccessLog) commit(next *accessSink) io.Closer {
	return closerOf(a.cur.Swap(next))
}

// abandon closes what prepare opened for a version that will not go live.
func (s *accessSink) abandon() {
	if s != nil && s.out != nil {
		s.out.Close()
	}
}

func closerOf(s *accessSink) io.Closer {
	if s == nil || s.out == nil {
		return nil
	}
	return s.out
}

// Close turns the log off and closes its file.
func (a *AccessLog) Close() error {
	if a == nil {
		return nil
	}
	if c := closerOf(a.cur.Swap(nil)); c != nil {
		return c.Close()
	}
	return nil
}

// Enabled reports whether the access log is on.
func (a *AccessLog) Enabled() bool { return a != nil && a.cur.Load() != nil }

// Want reports whether a request that took d, and failed or not, is to be
// logged: always when it failed (any outcome but ok) or took at least
// access_log.slow_threshold, else with probability
// access_log.sample_rate. It costs an atomic load and, for a fast
// successful request, one draw of the runtime's random generator; it never
// allocates.
func (a *AccessLog) Want(d time.Duration, failed bool) bool {
	if a == nil {
		return false
	}
	s := a.cur.Load()
	if s == nil {
		return false
	}
	if failed || d >= s.slow || s.all {
		return true
	}
	return s.threshold != 0 && rand.Uint64() < s.threshold
}

// Log writes e as one line. It does not check Want: a caller that logs
// every request may call it directly. It is safe for concurrent use.
func (a *AccessLog) Log(e *AccessEntry) {
	if a == nil {
		return
	}
	s := a.cur.Load()
	if s == nil {
		return
	}
	t := e.Time
	if t.IsZero() {
		t = time.Now().Add(-e.Duration)
	}
	r := slog.NewRecord(t, slog.LevelInfo, "access", 0)
	add := func(k, v string) {
		if v != "" {
			r.AddAttrs(slog.String(k, v))
		}
	}
	add("listener", e.Listener)
	add("pool", e.Pool)
	add("client", e.Client)
	add("principal", e.Principal)
	add("user", e.User)
	add("database", e.Database)
	add("kind", e.Kind)
	if e.Statement != "" {
		stmt, cut := truncate(e.Statement, s.maxStmt)
		r.AddAttrs(slog.String("statement", stmt))
		if cut {
			r.AddAttrs(slog.Bool("statement_truncated", true))
		}
	}
	r.AddAttrs(
		slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
		slog.Int64("rows", e.Rows),
	)
	if e.Bytes != 0 {
		r.AddAttrs(slog.Int64("bytes", e.Bytes))
	}
	r.AddAttrs(slog.String("outcome", e.Outcome.String()))
	add("code", e.Code)
	add("rule", e.Rule)
	if e.TraceID.IsValid() {
		r.AddAttrs(slog.String("trace_id", e.TraceID.String()))
	}
	_ = s.h.Handle(context.Background(), r)
}

// truncate cuts s to at most n bytes at a UTF-8 character boundary.
func truncate(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}
