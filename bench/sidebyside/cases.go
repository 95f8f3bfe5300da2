package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger/outrigger/bench"
)

// benchCase is one tool invocation; it yields one row per command it tests.
type benchCase struct {
	id       string // "pg-select-c64", "redis-c50-p16"
	protocol string
	clients  int

	// pgbench
	pgArgs      []string
	tpcb        bool          // reset the TPC-B tables on the server first
	minDuration time.Duration // at least this long (1000 clients take seconds to connect)

	// redis-benchmark
	tests    []string // "set", "get"
	requests int      // per test, full mode
	pipeline int
}

// allCases are the cases of issue 7, in run order.
var allCases = []benchCase{
	{id: "pg-select-c64", protocol: bench.Postgres, clients: 64, pgArgs: []string{"-S"}},
	{id: "pg-select-ext-c64", protocol: bench.Postgres, clients: 64, pgArgs: []string{"-S", "-M", "extended"}},
	{id: "pg-tpcb-c32", protocol: bench.Postgres, clients: 32, tpcb: true},
	{id: "pg-connect-select-c16", protocol: bench.Postgres, clients: 16, pgArgs: []string{"-C", "-S"}},
	{id: "pg-select-c8", protocol: bench.Postgres, clients: 8, pgArgs: []string{"-S"}},
	{id: "pg-prepared-select-c16", protocol: bench.Postgres, clients: 16, pgArgs: []string{"-M", "prepared", "-S"}},
	{id: "pg-select-c1000", protocol: bench.Postgres, clients: 1000, pgArgs: []string{"-S"}, minDuration: 10 * time.Second},

	{id: "redis-c50", protocol: bench.Redis, clients: 50, tests: []string{"set", "get"}, requests: 600_000},
	{id: "redis-c50-p16", protocol: bench.Redis, clients: 50, tests: []string{"set", "get"}, requests: 4_000_000, pipeline: 16},
	{id: "redis-c500", protocol: bench.Redis, clients: 500, tests: []string{"set", "get"}, requests: 600_000},
	{id: "redis-list-c50", protocol: bench.Redis, clients: 50, tests: []string{"lpush", "lpop"}, requests: 600_000},
	{id: "redis-c1", protocol: bench.Redis, clients: 1, tests: []string{"set", "get"}, requests: 100_000},
	{id: "redis-c5000", protocol: bench.Redis, clients: 5000, tests: []string{"set", "get"}, requests: 500_000},
}

// rows returns the result rows of c.
func (c benchCase) rows() []bench.CaseInfo {
	if c.protocol == bench.Postgres {
		title := ""
		switch {
		case c.tpcb:
			title = "TPC-B"
		case strings.Join(c.pgArgs, " ") == "-S":
			title = "`-S` simple"
		default:
			title = "`" + strings.Join(c.pgArgs, " ") + "`"
		}
		title += fmt.Sprintf(", %d clients", c.clients)
		cmd := strings.Join(strings.Fields(fmt.Sprintf("pgbench %s -c %d -j %d", strings.Join(c.pgArgs, " "), c.clients, min(2, c.clients))), " ")
		return []bench.CaseInfo{{ID: c.id, Protocol: c.protocol, Title: title, Command: cmd, Clients: c.clients}}
	}
	var out []bench.CaseInfo
	for _, t := range c.tests {
		title := fmt.Sprintf("%s, %d client", strings.ToUpper(t), c.clients)
		if c.clients != 1 {
			title += "s"
		}
		suffix := fmt.Sprintf("-c%d", c.clients)
		cmd := fmt.Sprintf("redis-benchmark -t %s -c %d", strings.Join(c.tests, ","), c.clients)
		if c.pipeline > 1 {
			title += fmt.Sprintf(", `-P %d`", c.pipeline)
			suffix += fmt.Sprintf("-p%d", c.pipeline)
			cmd += fmt.Sprintf(" -P %d", c.pipeline)
		}
		out = append(out, bench.CaseInfo{ID: "redis-" + t + suffix, Protocol: c.protocol, Title: title, Command: cmd + " -r 100000", Clients: c.clients})
	}
	return out
}

// matches reports whether name selects c: its id, one of its row ids, or
// "postgres"/"redis".
func (c benchCase) matches(name string) bool {
	if name == c.id || name == c.protocol {
		return true
	}
	for _, r := range c.rows() {
		if r.ID == name {
			return true
		}
	}
	return false
}

// runner runs cases against instances.
type runner struct {
	pgbench, redisBenchmark string
	pgServer                string // direct address, for the TPC-B reset
	duration                time.Duration
	redisScale              float64
	tmp                     string
}

// run runs case c once against addr and returns one Run per row. pid, when
// not 0, is the contestant's process, whose CPU time is read just before
// and just after the tool runs (see cpuMeter).
func (r *runner) run(ctx context.Context, c benchCase, addr string, pid int, round int, contestant string) []bench.Run {
	if c.protocol == bench.Postgres {
		return []bench.Run{r.runPgbench(ctx, c, addr, pid, round, contestant)}
	}
	return r.runRedisBenchmark(ctx, c, addr, pid, round, contestant)
}

// cpuMeter reads a contestant process's CPU time (user + system, from
// /proc/PID/stat) around one run of a benchmark tool.
type cpuMeter struct {
	pid        int // 0: nothing to read (direct)
	start, end float64
	err        error
}

// startCPU takes the reading before the tool starts.
func startCPU(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid}
	if pid != 0 {
		m.start, m.err = bench.ProcCPUSeconds(pid)
	}
	return m
}

// stop takes the reading after the tool has finished.
func (m *cpuMeter) stop() {
	if m.pid == 0 {
		return
	}
	var err error
	m.end, err = bench.ProcCPUSeconds(m.pid)
	m.err = errors.Join(m.err, err)
}

// record records the CPU used between start and stop in runs, the rows of
// that tool run (bench.ShareCPU). A reading that failed leaves the runs
// without CPU and says so in their Error; they count still.
func (m *cpuMeter) record(runs []bench.Run) {
	if m.pid == 0 {
		return
	}
	if m.err != nil {
		for i := range runs {
			if runs[i].OK {
				runs[i].Error = joinNote(runs[i].Error, "CPU unknown: "+m.err.Error())
			}
		}
		return
	}
	bench.ShareCPU(runs, m.end-m.start)
}

// joinNote appends note to a counted run's remark.
func joinNote(s, note string) string {
	if s == "" {
		return note
	}
	return s + "; " + note
}

func (c benchCase) pgDuration(d time.Duration) time.Duration { return max(d, c.minDuration) }

func (c benchCase) redisRequests(scale float64) int {
	n := int(math.Round(float64(c.requests) * scale))
	// Enough requests that every client sends a few.
	return max(n, 10*c.clients, 1000)
}

func (r *runner) runPgbench(ctx context.Context, c benchCase, addr string, pid int, round int, contestant string) bench.Run {
	run := bench.Run{Round: round, Case: c.id, Contestant: contestant}
	if c.tpcb {
		if err := resetTPCB(ctx, r.pgServer); err != nil {
			run.Error = "resetting the TPC-B tables: " + err.Error()
			return run
		}
	}
	logDir, err := os.MkdirTemp(r.tmp, "pgbench-log-*")
	if err != nil {
		run.Error = err.Error()
		return run
	}
	defer os.RemoveAll(logDir)
	host, port, _ := net.SplitHostPort(addr)
	d := c.pgDuration(r.duration)
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	args := []string{"-h", host, "-p", port, "-U", pgUser, "-n",
		"-c", strconv.Itoa(c.clients), "-j", strconv.Itoa(min(2, c.clients)), "-T", strconv.Itoa(secs),
		"--log", "--log-prefix", filepath.Join(logDir, "pgbench_log")}
	args = append(args, c.pgArgs...)
	args = append(args, pgDatabase)
	cpu := startCPU(pid)
	res := runTool(ctx, d+2*time.Minute, r.pgbench, args, pgEnv(), "")
	cpu.stop()
	run.Seconds = res.elapsed.Seconds()
	out := res.stdout + res.stderr
	pr, perr := bench.ParsePgbench(out)
	switch {
	case perr != nil:
		run.Error = "pgbench: " + perr.Error()
		if note := exitNote(res.err); note != "" {
			run.Error += " (pgbench " + note + ")"
		}
		return run
	case res.err != nil:
		run.Error = "pgbench: " + exitNote(res.err)
		return run
	}
	run.OK, run.OpsPerSec, run.LatAvgMS, run.Ops = true, pr.TPS, pr.LatencyAvgMS, pr.Processed
	if p99, err := logP99(logDir); err == nil {
		run.LatP99MS = p99
	} else {
		run.Error = "p99 unknown: " + err.Error() // the run still counts
	}
	runs := []bench.Run{run}
	cpu.record(runs)
	return runs[0]
}

// logP99 reads every per-thread log in dir and returns the 99th percentile
// latency in ms.
func logP99(dir string) (float64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "pgbench_log*"))
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("no pgbench log in %s", dir)
	}
	var all []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return 0, err
		}
		lat, err := bench.ReadPgbenchLog(fh)
		fh.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		all = append(all, lat...)
	}
	if len(all) == 0 {
		return 0, errors.New("the pgbench log holds no completed transaction")
	}
	return bench.Percentile(all, 99), nil
}

func (r *runner) runRedisBenchmark(ctx context.Context, c benchCase, addr string, pid int, round int, contestant string) []bench.Run {
	rows := c.rows()
	runs := make([]bench.Run, len(rows))
	for i, row := range rows {
		runs[i] = bench.Run{Round: round, Case: row.ID, Contestant: contestant}
	}
	fail := func(msg string) []bench.Run {
		for i := range runs {
			runs[i].Error = msg
		}
		return runs
	}
	host, port, _ := net.SplitHostPort(addr)
	n := c.redisRequests(r.redisScale)
	args := []string{"-h", host, "-p", port, "-t", strings.Join(c.tests, ","), "-n", strconv.Itoa(n),
		"-c", strconv.Itoa(c.clients), "-r", "100000", "--csv"}
	if c.pipeline > 1 {
		args = append(args, "-P", strconv.Itoa(c.pipeline))
	}
	// A hang guard, not a budget: 20k requests/s at the very least.
	timeout := time.Minute + time.Duration(n*len(c.tests)/20_000)*time.Second
	cpu := startCPU(pid)
	res := runTool(ctx, timeout, r.redisBenchmark, args, nil, "Could not connect")
	cpu.stop()
	tests, perr := bench.ParseRedisCSV(res.stdout, res.stderr)
	if perr != nil {
		msg := "redis-benchmark: " + perr.Error()
		if note := exitNote(res.err); note != "" {
			msg += " (" + note + ")"
		}
		return fail(msg)
	}
	if res.err != nil {
		return fail("redis-benchmark: " + exitNote(res.err))
	}
	per := res.elapsed.Seconds() / float64(len(rows))
	for i, row := range rows {
		runs[i].Seconds = per
		found := false
		for _, t := range tests {
			if strings.EqualFold(t.Test, c.tests[i]) {
				runs[i].OK, runs[i].OpsPerSec, runs[i].LatAvgMS, runs[i].LatP99MS = true, t.RPS, t.AvgMS, t.P99MS
				// redis-benchmark -n runs exactly n requests per test.
				runs[i].Ops = int64(n)
				found = true
			}
		}
		if !found {
			runs[i].Error = fmt.Sprintf("redis-benchmark reported no %s result", strings.ToUpper(c.tests[i]))
		}
		_ = row
	}
	// One reading covers every test of this tool run: ShareCPU gives each
	// row the same µs per op, the CPU over the operations of all tests.
	cpu.record(runs)
	return runs
}
