package bench

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// PgbenchResult is what pgbench's closing report says.
type PgbenchResult struct {
	TPS          float64
	LatencyAvgMS float64
	Processed    int64
	Failed       int64 // -1 when the report has no such line
	Aborted      int   // clients that pgbench reports as aborted
	RunAborted   bool  // "Run was aborted; the above results are incomplete."
	Errors       []string
}

var (
	pgbenchTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(`)
	pgbenchLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	pgbenchProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	pgbenchFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	pgbenchClientAb  = regexp.MustCompile(`(?m)^pgbench: error: client [0-9]+ (?:script [0-9]+ )?aborted`)
	spaces           = regexp.MustCompile(`\s+`)
)

// ParsePgbench reads the output (stdout and stderr together) of one pgbench
// run. It returns an error, naming the first thing pgbench complained about,
// when the run cannot be counted: no tps line, no transaction processed, a
// client aborted, or a transaction failed.
func ParsePgbench(out string) (PgbenchResult, error) {
	r := PgbenchResult{Failed: -1}
	for _, line := range strings.Split(out, "\n") {
		if msg, ok := strings.CutPrefix(strings.TrimSpace(line), "pgbench: error: "); ok {
			if strings.HasPrefix(msg, "Run was aborted") {
				r.RunAborted = true
				continue
			}
			r.Errors = append(r.Errors, oneLine(msg))
		}
	}
	r.Aborted = len(pgbenchClientAb.FindAllString(out, -1))
	if m := pgbenchProcessed.FindStringSubmatch(out); m != nil {
		r.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := pgbenchFailed.FindStringSubmatch(out); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := pgbenchLatency.FindStringSubmatch(out); m != nil {
		r.LatencyAvgMS, _ = strconv.ParseFloat(m[1], 64)
	}
	m := pgbenchTPS.FindStringSubmatch(out)
	if m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	switch {
	case r.RunAborted || r.Aborted > 0:
		return r, fmt.Errorf("run aborted (%d clients aborted): %s", r.Aborted, r.firstError("no error printed"))
	case m == nil && len(r.Errors) > 0:
		msg := r.firstError("")
		for _, e := range r.Errors {
			if strings.HasPrefix(e, "could not create connection") && !strings.Contains(msg, e) {
				msg += " (" + e + ")"
				break
			}
		}
		return r, errors.New(msg)
	case m == nil && pgbenchProcessed.MatchString(out) && r.Processed == 0:
		return r, errors.New("no transaction completed within the duration (connecting all clients took longer?)")
	case m == nil:
		return r, errors.New("no tps line in the output")
	case r.Processed == 0:
		return r, errors.New("no transaction completed")
	case r.Failed > 0:
		return r, fmt.Errorf("%d failed transactions: %s", r.Failed, r.firstError("no error printed"))
	}
	return r, nil
}

// firstError returns the most telling error pgbench printed: the first
// that carries a server message (FATAL, ERROR), else the first, else def.
func (r PgbenchResult) firstError(def string) string {
	for _, e := range r.Errors {
		if i := strings.Index(e, "FATAL:"); i >= 0 {
			return e[i:]
		}
		if i := strings.Index(e, "ERROR:"); i >= 0 {
			return e[i:]
		}
	}
	if len(r.Errors) > 0 {
		return r.Errors[0]
	}
	return def
}

// ReadPgbenchLog reads a pgbench per-transaction log (--log; one file per
// thread) and returns each transaction's latency in milliseconds. A line is
// "client_id transaction_no time script_no time_epoch time_us [...]", where
// time is the latency in microseconds, or "failed"/"skipped" for a
// transaction that did not complete (left out here).
func ReadPgbenchLog(r io.Reader) ([]float64, error) {
	var lat []float64
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return lat, fmt.Errorf("pgbench log line %d: %d fields, want at least 6", n, len(f))
		}
		if f[2] == "failed" || f[2] == "skipped" {
			continue
		}
		us, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return lat, fmt.Errorf("pgbench log line %d: latency %q: %v", n, f[2], err)
		}
		lat = append(lat, us/1000)
	}
	return lat, sc.Err()
}

// RedisTest is one test of a redis-benchmark --csv report.
type RedisTest struct {
	Test  string  // "SET", "GET", "LPUSH"
	RPS   float64 // requests per second
	AvgMS float64
	P50MS float64
	P99MS float64
}

// ParseRedisCSV reads the --csv report of redis-benchmark (7.x):
//
//	"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
//	"SET","138888.89","0.203","0.048","0.191","0.295","0.503","2.143"
//
// stderr, when given, supplies the reason when there are no rows (redis-benchmark
// prints "Could not connect to Redis at ..." there).
func ParseRedisCSV(stdout, stderr string) ([]RedisTest, error) {
	recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark csv: %w", err)
	}
	col := map[string]int{}
	var tests []RedisTest
	for _, rec := range recs {
		if len(rec) > 0 && rec[0] == "test" {
			for i, name := range rec {
				col[name] = i
			}
			continue
		}
		if len(col) == 0 {
			return nil, fmt.Errorf("redis-benchmark csv: row %q before the header", rec)
		}
		get := func(name string) (float64, error) {
			i, ok := col[name]
			if !ok || i >= len(rec) {
				return 0, fmt.Errorf("redis-benchmark csv: no column %q", name)
			}
			return strconv.ParseFloat(rec[i], 64)
		}
		t := RedisTest{Test: rec[0]}
		var errs []error
		var e error
		t.RPS, e = get("rps")
		errs = append(errs, e)
		t.AvgMS, e = get("avg_latency_ms")
		errs = append(errs, e)
		t.P50MS, e = get("p50_latency_ms")
		errs = append(errs, e)
		t.P99MS, e = get("p99_latency_ms")
		errs = append(errs, e)
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("redis-benchmark csv, test %s: %w", t.Test, err)
		}
		tests = append(tests, t)
	}
	if len(tests) == 0 {
		if reason := redisBenchmarkError(stderr); reason != "" {
			return nil, errors.New(reason)
		}
		return nil, errors.New("redis-benchmark printed no results")
	}
	return tests, nil
}

// redisBenchmarkError picks the line of redis-benchmark's stderr that says
// what went wrong. Progress lines end in \r; the CONFIG warning that every
// proxy without CONFIG causes is not an error.
func redisBenchmarkError(stderr string) string {
	for _, seg := range strings.FieldsFunc(stderr, func(r rune) bool { return r == '\n' || r == '\r' }) {
		seg = strings.TrimSpace(seg)
		if seg == "" || strings.HasPrefix(seg, "WARNING: Could not fetch server CONFIG") || strings.Contains(seg, "rps=") {
			continue
		}
		return oneLine(seg)
	}
	return ""
}

// oneLine collapses runs of white space, so a message fits a table cell or
// a footnote.
func oneLine(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }
