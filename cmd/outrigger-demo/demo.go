package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// options are what the environment asks of one run.
type options struct {
	// exitAfterSummary skips the wait for Ctrl-C (DEMO_EXIT=1).
	exitAfterSummary bool
}

// demo is one run: where it prints, and what it started, so that teardown
// can stop it in reverse order.
type demo struct {
	out   io.Writer
	start time.Time
	tmp   string // config and outrigger.log; removed last
	pg    *testenv.Postgres
	redis *testenv.Redis
	or    *outrigger
}

// errInterrupted is what a step returns when Ctrl-C (or SIGTERM) came first.
var errInterrupted = errors.New("interrupted")

// run is the whole demo; it returns the process exit code. Whatever happens,
// everything it started is stopped before it returns.
func run(ctx context.Context, out io.Writer, opts options) (code int) {
	d := &demo{out: out, start: time.Now()}
	defer func() {
		if err := d.teardown(); err != nil {
			fmt.Fprintf(out, "demo: teardown: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()

	if err := d.runAll(ctx, opts); err != nil {
		if errors.Is(err, errInterrupted) || ctx.Err() != nil {
			fmt.Fprintln(out, "\ndemo: interrupted; stopping")
			return 130
		}
		fmt.Fprintf(out, "\ndemo: FAILED: %v\n", err)
		d.printOutriggerLogTail()
		return 1
	}
	return 0
}

// runAll is the demo's script, step by step.
func (d *demo) runAll(ctx context.Context, opts options) error {
	if err := d.startServers(ctx); err != nil {
		return err
	}
	if err := d.startOutrigger(ctx); err != nil {
		return err
	}
	res, err := d.runBenchmarks(ctx)
	if err != nil {
		return err
	}
	if err := d.printSummary(res); err != nil {
		return err
	}
	if opts.exitAfterSummary {
		fmt.Fprintln(d.out, "\nDEMO_EXIT is set: stopping.")
		return nil
	}
	d.printConnectionStrings()
	return d.waitForSignal(ctx)
}

// waitForSignal returns when the user presses Ctrl-C, or with an error if
// outrigger stops by itself first (POST /drain, say).
func (d *demo) waitForSignal(ctx context.Context) error {
	select {
	case <-ctx.Done():
		fmt.Fprintln(d.out, "\nCtrl-C: stopping outrigger, Postgres and Redis.")
		return nil
	case <-d.or.exited:
		if d.or.code == 0 {
			fmt.Fprintln(d.out, "\noutrigger stopped (drained over the admin API); stopping the rest.")
			return nil
		}
		return fmt.Errorf("outrigger exited with code %d", d.or.code)
	}
}

// teardown stops outrigger, Redis and Postgres and removes the temp dir, in
// that order, says what it stopped, and returns every error it met.
func (d *demo) teardown() error {
	var errs, stopped []string
	stop := func(what string, started bool, f func() error) {
		if !started {
			return
		}
		if err := f(); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", what, err))
			return
		}
		stopped = append(stopped, what)
	}
	stop("outrigger", d.or != nil, func() error { return d.or.stop() })
	stop("redis", d.redis != nil, func() error { return d.redis.Stop() })
	stop("postgres", d.pg != nil, func() error { return d.pg.Stop() })
	stop("temp dir", d.tmp != "", func() error { return os.RemoveAll(d.tmp) })
	if len(stopped) > 0 {
		fmt.Fprintf(d.out, "Stopped and removed: %s.\n", strings.Join(stopped, ", "))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// printOutriggerLogTail shows the end of outrigger's log after a failure,
// before teardown removes it.
func (d *demo) printOutriggerLogTail() {
	if d.or == nil {
		return
	}
	b, err := os.ReadFile(d.or.logPath)
	if err != nil || len(b) == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(len(lines)-15, 0):]
	fmt.Fprintf(d.out, "--- last lines of %s ---\n%s\n", d.or.logPath, strings.Join(lines, "\n"))
}

// envTrue reports whether the environment variable key is set to 1, true, yes
// or on.
func envTrue(key string) bool {
	switch strings.ToLower(os.Getenv(key)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// since is how long the demo has run.
func (d *demo) since() time.Duration { return time.Since(d.start) }
