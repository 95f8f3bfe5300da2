// Package bench is the side-by-side benchmark harness's pure half: it parses
// what pgbench and redis-benchmark print, reduces many runs to medians,
// checks the targets of the Postgres, Redis, observability and benchmark
// issues, and renders
// the results as markdown tables, PNG charts (gonum.org/v1/plot) and
// BENCHMARKS.md. Nothing in it starts a process, so its tests are fast and
// run with `go test ./...`.
//
// The other half, bench/sidebyside, is the program that takes the numbers:
//
//	make bench                        # full: 3 interleaved rounds, ~40 minutes
//	make bench-quick                  # 1 round of short runs, ~3 minutes
//	make bench PROFILE=pg-select-c64  # plus Outrigger's CPU and allocation profiles
//	go run ./bench/sidebyside -h      # every flag (cases, contestants, durations)
//
// # How data flows
//
// bench/sidebyside starts a throwaway Postgres (pgbench scale 10) and Redis
// with internal/testenv, then each contestant in front of them: direct,
// HAProxy (mode tcp), PgBouncer (transaction pooling, pool 20) or twemproxy,
// Outrigger (bin/outrigger with a postgres listener in transaction mode,
// pool 20, and a redis listener, pool 4), and Outrigger with its access log
// on (OutriggerLogged: a second process of the same binary with the same
// config plus access_log enabled, sample_rate 0.01, slow_threshold 1s,
// written to a file in its directory; metrics are on in both). A contestant
// that is missing, does not start, or (Outrigger's postgres listener,
// before it is built) is refused by `outrigger check` is recorded as
// unavailable with its reason; the run goes on. -contestants picks some of
// them: `-contestants outrigger,outrigger-logged` measures only the access
// log's cost.
//
// First each proxy is started afresh and its memory per idle client is
// measured (VmRSS before and after 1000 and then 5000 clients that finished
// startup and authentication, or answered one PING); OutriggerLogged is
// left out, as an idle client logs nothing (MeasuresIdle). Then the load
// cases run in rounds: round → case → contestant, so every contestant sees
// the same drift in the machine's load. Each pgbench run yields a Run (tps, pgbench's
// average latency, and the 99th percentile read from its per-transaction
// log); each redis-benchmark run yields one Run per command it tests (from
// --csv: rps, average and p99). For a contestant that is a process of the
// harness's (not direct), the process's CPU time is read from
// /proc/PID/stat just before and just after the tool runs and kept as CPU
// seconds and CPU µs per operation (ShareCPU: the commands of one
// redis-benchmark run share one reading). A run that fails keeps its
// reason.
//
// All of it goes into a Results, written as results.json. Summarize turns it
// into one Stat per case and contestant (median, min–max, latency medians, or
// the reason for n/a); Evaluate checks DefaultTargets against that (issue
// 6's are cost targets: OutriggerLogged's median ops/s over Outrigger's on
// the same case of the same run, at least 0.97); the
// Write* functions render results.md, the charts and BENCHMARKS.md, with
// every n/a explained in a footnote.
//
// # Reading the results
//
// BENCHMARKS.md explains the columns. In short: ×direct and ×peer are the
// contestant's figure divided by direct's and by the peer's (PgBouncer,
// twemproxy); for ops/s higher is better, for latency lower. The access-log
// variant is never a reference column; its ratio to Outrigger is in the
// targets table. A quick run has
// one round and short runs, so it says roughly where things stand, and it is
// marked as such at the top of the page. The machine's load average at the
// start and the end is recorded, because on a shared machine it matters.
//
// bench/idle is the stand-alone form of the memory measurement for one RESP
// proxy.
package bench
