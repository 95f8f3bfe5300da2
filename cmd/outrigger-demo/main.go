// Command outrigger-demo is `make demo`: a tour of outrigger on one machine,
// with nothing to set up first.
//
// It starts a throwaway PostgreSQL and Redis (internal/testenv), runs
// outrigger in this process (cli.Main) in front of them with the config in
// outrigger-demo.yaml, drives pgbench and redis-benchmark through it, and
// prints a summary of what the benchmarks measured and what outrigger's own
// metrics counted. Then it prints connection strings and stays up for psql,
// redis-cli and curl until Ctrl-C (SIGINT or SIGTERM). With DEMO_EXIT=1 it
// exits right after the summary. Either way it stops outrigger, stops both
// servers and removes its temporary directories; on any failure it says what
// failed, does the same and exits 1.
//
// Outrigger's JSON log goes to outrigger.log in the demo's temp dir, not to
// the terminal.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one ends the demo at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Stdout, options{exitAfterSummary: envTrue("DEMO_EXIT")})
	stop()
	os.Exit(code)
}
