package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how a query or command ended, for the outcome label of
// outrigger_pg_query_results_total and outrigger_redis_command_results_total
// and for the access log. The set is fixed.
type Outcome uint8

// The outcomes. OutcomeError is an error reply from the server;
// OutcomeProxyError an error Outrigger answered in the server's place for
// any other reason than the three that have their own outcome (no upstream
// connection, a statement the pool mode refuses, a lost server).
const (
	OutcomeOK Outcome = iota
	OutcomeError
	OutcomeProxyError
	OutcomeDenied
	OutcomeRateLimited
	OutcomeTimeout
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "error", "proxy_error", "denied", "rate_limited", "timeout"}

// String is the outcome's label value.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "error"
}

// Outcomes returns every outcome label value, in order.
func Outcomes() []string { return append([]string(nil), outcomeNames[:]...) }

// ErrorClassNone is the error_class of a request that did not fail with an
// error code (outcome ok, or a failure that has none).
const ErrorClassNone = "none"

// ErrorClassOther is the error_class of a code outside the known set.
const ErrorClassOther = "other"

// sqlstateClasses are the SQLSTATE classes of Postgres (Appendix A of its
// manual); a code of another class is counted as "other".
var sqlstateClasses = func() map[string]string {
	m := map[string]string{}
	for _, c := range []string{
		"00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z",
		"20", "21", "22", "23", "24", "25", "26", "27", "28", "2B", "2D", "2F",
		"34", "38", "39", "3B", "3D", "3F", "40", "42", "44", "53", "54", "55",
		"57", "58", "72", "F0", "HV", "P0", "XX",
	} {
		m[c] = c
	}
	return m
}()

// SQLStateClass maps a SQLSTATE to the error_class label: its two-character
// class when Postgres defines that class ("42" for 42P01), "other" for any
// other code, "none" for "". The result is one of a fixed set of constant
// strings (never a slice of code), and the call does not allocate.
func SQLStateClass(code string) string {
	if code == "" {
		return ErrorClassNone
	}
	if len(code) < 2 {
		return ErrorClassOther
	}
	if c, ok := sqlstateClasses[code[:2]]; ok {
		return c
	}
	return ErrorClassOther
}

// SQLStateClasses returns every value SQLStateClass can return.
func SQLStateClasses() []string {
	out := []string{ErrorClassNone, ErrorClassOther}
	for c := range sqlstateClasses {
		out = append(out, c)
	}
	return out
}

// redisErrorPrefixes are the error codes Redis and its modules put first in
// an error reply; any other first word counts as "other".
var redisErrorPrefixes = func() map[string]string {
	m := map[string]string{}
	for _, p := range []string{
		"ERR", "WRONGTYPE", "NOPERM", "NOAUTH", "WRONGPASS", "MOVED", "ASK",
		"TRYAGAIN", "CLUSTERDOWN", "CROSSSLOT", "LOADING", "BUSY", "BUSYKEY",
		"BUSYGROUP", "NOSCRIPT", "NOTBUSY", "READONLY", "MASTERDOWN", "MISCONF",
		"NOREPLICAS", "OOM", "EXECABORT", "NOGROUP", "NOPROTO", "UNBLOCKED",
		"UNKILLABLE", "NOTREADY",
	} {
		m[p] = p
	}
	return m
}()

// RedisErrorClass maps a RESP error reply to the error_class label: its
// first word ("-WRONGTYPE Operation against ..." gives "WRONGTYPE") when
// Redis defines that code, "other" for any other, "none" for an empty
// reply. reply may start with the '-' (or '!' of a RESP3 blob error's type
// byte) or not, and may end in CRLF. The result is one of a fixed set of
// constant strings, and the call does not allocate.
func RedisErrorClass(reply []byte) string {
	if len(reply) > 0 && (reply[0] == '-' || reply[0] == '!') {
		reply = reply[1:]
	}
	if len(reply) == 0 {
		return ErrorClassNone
	}
	end := 0
	for end < len(reply) && end < 16 && reply[end] != ' ' && reply[end] != '\r' && reply[end] != '\n' {
		end++
	}
	if p, ok := redisErrorPrefixes[string(reply[:end])]; ok {
		return p
	}
	return ErrorClassOther
}

// RedisErrorClasses returns every value RedisErrorClass can return.
func RedisErrorClasses() []string {
	out := []string{ErrorClassNone, ErrorClassOther}
	for p := range redisErrorPrefixes {
		out = append(out, p)
	}
	return out
}

// PGPoolRecorder records the results of one pool's round trips. Its ok
// child and histogram are resolved once, so recording a successful round
// trip is two atomic adds and allocates nothing. Make one per pool (or per
// client session) with Metrics.PGPoolRecorder and keep it.
type PGPoolRecorder struct {
	results        *prometheus.CounterVec
	listener, pool string
	ok             prometheus.Counter
	duration       prometheus.Observer
}

// PGPoolRecorder returns a recorder for listener and pool. A nil *Metrics
// gives a nil recorder, whose Record does nothing.
func (m *Metrics) PGPoolRecorder(listener, pool string) *PGPoolRecorder {
	if m == nil {
		return nil
	}
	return &PGPoolRecorder{
		results: m.PGQueryResults, listener: listener, pool: pool,
		ok:       m.PGQueryResults.WithLabelValues(listener, pool, OutcomeOK.String(), ErrorClassNone),
		duration: m.PGQueryDuration.WithLabelValues(listener, pool),
	}
}

// Record counts one round trip in outrigger_pg_query_results_total and
// observes its time in outrigger_pg_query_duration_seconds. sqlstate is the
// code of the ErrorResponse the client got ("" for none).
func (r *PGPoolRecorder) Record(d time.Duration, o Outcome, sqlstate string) {
	if r == nil {
		return
	}
	r.duration.Observe(d.Seconds())
	if o == OutcomeOK {
		r.ok.Inc()
		return
	}
	r.results.WithLabelValues(r.listener, r.pool, o.String(), SQLStateClass(sqlstate)).Inc()
}

// RedisRecorder records the results of one redis listener's commands. Make
// one per listener (or per client session) with Metrics.RedisRecorder.
type RedisRecorder struct {
	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	listener string
	// series holds each command's ok counter and duration observer,
	// resolved on its first use (command names are bounded by the command
	// table), so recording a successful command looks up no labels.
	series sync.Map // command -> *redisSeries
}

type redisSeries struct {
	ok       prometheus.Counter
	duration prometheus.Observer
}

func (r *RedisRecorder) seriesFor(command string) *redisSeries {
	if v, ok := r.series.Load(command); ok {
		return v.(*redisSeries)
	}
	v, _ := r.series.LoadOrStore(command, &redisSeries{
		ok:       r.results.WithLabelValues(r.listener, command, OutcomeOK.String(), ErrorClassNone),
		duration: r.duration.WithLabelValues(r.listener, command),
	})
	return v.(*redisSeries)
}

// RedisRecorder returns a recorder for listener. A nil *Metrics gives a nil
// recorder, whose Record does nothing.
func (m *Metrics) RedisRecorder(listener string) *RedisRecorder {
	if m == nil {
		return nil
	}
	return &RedisRecorder{results: m.RedisCommandResults, duration: m.RedisCommandDuration, listener: listener}
}

// Record counts one command in outrigger_redis_command_results_total and
// observes its time in outrigger_redis_command_duration_seconds. command
// must come from the command table (its lower-case name, "container|sub"
// for subcommands); errReply is the error reply the client got (nil for
// none). A command whose series exist already allocates nothing.
func (r *RedisRecorder) Record(command string, d time.Duration, o Outcome, errReply []byte) {
	if r == nil {
		return
	}
	s := r.seriesFor(command)
	s.duration.Observe(d.Seconds())
	if o == OutcomeOK && len(errReply) == 0 {
		s.ok.Inc()
		return
	}
	r.results.WithLabelValues(r.listener, command, o.String(), RedisErrorClass(errReply)).Inc()
}
