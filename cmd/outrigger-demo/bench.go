package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// The benchmarks the demo runs, as the Makefile's help promises.
var (
	pgbenchInitArgs = []string{"-i", "-s", "1"}
	pgbenchRunArgs  = []string{"-S", "-c", "8", "-j", "2", "-T", "5", "-P", "1"}
	redisBenchArgs  = []string{"-t", "get,set", "-n", "50000", "-c", "20", "-P", "16", "-q"}
)

// toolTimeout bounds each benchmark command, so a wedged proxy cannot hang
// the demo.
const toolTimeout = 2 * time.Minute

// benchResults is what the benchmarks measured.
type benchResults struct {
	pgbench      pgbenchResult
	redis        map[string]float64 // requests per second by test name (SET, GET)
	pgElapsed    time.Duration      // pgbench, init and run
	redisElapsed time.Duration
}

// pgbenchResult is the part of pgbench's report the summary shows.
type pgbenchResult struct {
	TPS          float64
	LatencyAvgMS float64
	Failed       int64   // -1 when pgbench did not report it
	FailedPct    float64 // of all transactions
	Processed    int64
}

// runBenchmarks drives pgbench through the appdb listener and
// redis-benchmark through the cache listener, showing their progress.
func (d *demo) runBenchmarks(ctx context.Context) (benchResults, error) {
	var res benchResults
	var err error
	t0 := time.Now()
	if res.pgbench, err = d.runPgbench(ctx); err != nil {
		return res, err
	}
	res.pgElapsed = time.Since(t0)
	t0 = time.Now()
	if res.redis, err = d.runRedisBenchmark(ctx); err != nil {
		return res, err
	}
	res.redisElapsed = time.Since(t0)
	return res, nil
}

// runPgbench initializes the pgbench tables and runs the select-only
// benchmark, both through the appdb listener, as the app user.
func (d *demo) runPgbench(ctx context.Context) (pgbenchResult, error) {
	pgbench, err := findPgbench()
	if err != nil {
		return pgbenchResult{}, err
	}
	host, port := splitAddr(d.or.srv.ListenerAddr(listenerAppDB).String())
	conn := []string{"-h", host, "-p", port, "-U", testenv.PostgresAppUser}
	env := []string{"PGPASSWORD=" + testenv.PostgresAppPassword, "PGSSLMODE=disable"}
	run := func(step []string) (string, error) {
		fmt.Fprintf(d.out, "\npgbench %s (through %s)\n", strings.Join(step, " "), listenerAppDB)
		args := append(append(slices.Clone(conn), step...), testenv.PostgresAppDatabase)
		return runTool(ctx, d.out, "pgbench", pgbench, env, args...)
	}
	if _, err := run(pgbenchInitArgs); err != nil {
		return pgbenchResult{}, err
	}
	out, err := run(pgbenchRunArgs)
	if err != nil {
		return pgbenchResult{}, err
	}
	return parsePgbench(out)
}

// runRedisBenchmark runs redis-benchmark through the cache listener.
func (d *demo) runRedisBenchmark(ctx context.Context) (map[string]float64, error) {
	redisBench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return nil, errors.New("redis-benchmark not found on PATH; run scripts/deps.sh (or apt-get install redis-tools)")
	}
	host, port := splitAddr(d.or.srv.ListenerAddr(listenerCache).String())
	fmt.Fprintf(d.out, "\nredis-benchmark %s (through %s)\n", strings.Join(redisBenchArgs, " "), listenerCache)
	out, err := runTool(ctx, d.out, "redis-benchmark", redisBench, nil, append([]string{"-h", host, "-p", port}, redisBenchArgs...)...)
	if err != nil {
		return nil, err
	}
	return parseRedisBenchmark(out)
}

// findPgbench looks on PATH, then beside the Postgres server binaries.
func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	if dir, err := testenv.PostgresBinDir(); err == nil {
		p := filepath.Join(dir, "pgbench")
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("pgbench not found on PATH or beside the Postgres server binaries; run scripts/deps.sh (or apt-get install postgresql)")
}

// runTool runs one client command with its output shown as it comes
// (each line prefixed with name) and returns that output.
func runTool(ctx context.Context, out io.Writer, name, path string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	w := newToolWriter(out, "  "+name+" | ", isTerminal(out))
	cmd.Stdout, cmd.Stderr = w, w // one writer: one pipe, output in order
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	w.Flush()
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || killedBy(err, syscall.SIGINT):
		// Ctrl-C reaches the tool (same terminal process group) and us.
		return "", errInterrupted
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("%s %s: no result after %v", name, strings.Join(args, " "), toolTimeout)
	case err != nil:
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return w.Captured(), nil
}

// killedBy reports whether err says the command died of sig.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

var (
	pgTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)
	pgTPSAny    = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	pgLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	pgFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+) \(([0-9.]+)%\)`)
	pgProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	redisRPS    = regexp.MustCompile(`^([A-Za-z_-]+[A-Za-z0-9_ -]*): ([0-9.]+) requests per second`)
)

// parsePgbench reads the report pgbench prints at the end of a run.
func parsePgbench(out string) (pgbenchResult, error) {
	r := pgbenchResult{Failed: -1}
	m := pgTPS.FindStringSubmatch(out)
	if m == nil {
		m = pgTPSAny.FindStringSubmatch(out)
	}
	if m == nil {
		return r, errors.New("pgbench printed no tps line")
	}
	r.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := pgLatency.FindStringSubmatch(out); m != nil {
		r.LatencyAvgMS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := pgFailed.FindStringSubmatch(out); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
		r.FailedPct, _ = strconv.ParseFloat(m[2], 64)
	}
	if m := pgProcessed.FindStringSubmatch(out); m != nil {
		r.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// parseRedisBenchmark reads the final "-q" lines ("SET: 123456.79 requests
// per second, p50=0.135 msec"); progress segments end with \r and say
// "rps=", so they do not match.
func parseRedisBenchmark(out string) (map[string]float64, error) {
	rps := map[string]float64{}
	for _, seg := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if m := redisRPS.FindStringSubmatch(strings.TrimSpace(seg)); m != nil {
			rps[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
	}
	if len(rps) == 0 {
		return nil, errors.New("redis-benchmark printed no \"requests per second\" lines")
	}
	return rps, nil
}
