package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/sidecar"
)

// TestPGStressFirstQuery hammers the first round trip of fresh sessions on
// a fresh Outrigger, round after round for about 15 s: each round starts a
// new Outrigger in transaction mode with a pool of 4 (so the pool is made
// by concurrent logins and its servers are dialled under contention), 32
// clients log in at once with startup parameters that need the hidden
// settings query (application_name and search_path, a few different sets
// so the per-pool status cache misses), and each runs its first query at
// once, then a few more. Every reply must be the client's own; a round
// trip that gets no answer within 20 s fails the test with a goroutine
// dump (no timing is asserted: the bound only turns a hang into a
// failure).
func TestPGStressFirstQuery(t *testing.T) {
	integrationOnly(t)
	const (
		clients  = 32
		poolSize = 4
		duration = 15 * time.Second
		hang     = 20 * time.Second
	)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	deadline := time.Now().Add(duration)
	var rounds, queries atomic.Int64
	for round := 0; time.Now().Before(deadline); round++ {
		addr := testenv.FreeAddr(t)
		stop := runOutrigger(t, pgProxyConfig(addr, pg.Addr(), "transaction", poolSize, ""))
		host, port, _ := net.SplitHostPort(addr)
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := stressClient(host, port, round, i, hang, &queries); err != nil {
					errs <- fmt.Errorf("round %d client %d: %w", round, i, err)
				}
			}()
		}
		roundDone := make(chan struct{})
		go func() { wg.Wait(); close(roundDone) }()
		select {
		case <-roundDone:
		case <-time.After(7 * time.Second):
			buf := make([]byte, 8<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Logf("round %d stuck; goroutines:\n%s", round, buf)
			t.Logf("backends:\n%s", stressBackends(pg))
			<-roundDone
		}
		close(errs)
		failed := false
		for err := range errs {
			failed = true
			t.Error(err)
		}
		if failed {
			buf := make([]byte, 8<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Logf("goroutines:\n%s", buf)
			stop()
			return
		}
		stop()
		rounds.Add(1)
	}
	t.Logf("%d rounds, %d queries", rounds.Load(), queries.Load())
}

func stressBackends(pg *testenv.Postgres) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, pg.DSN(testenv.PostgresSuperUser, testenv.PostgresSuperPassword, testenv.PostgresAppDatabase))
	if err != nil {
		return err.Error()
	}
	defer c.Close(ctx)
	res, err := c.Exec(ctx, "select pid, client_port, state, wait_event, now()-state_change, query from pg_stat_activity where usename = 'app'").ReadAll()
	if err != nil {
		return err.Error()
	}
	out := ""
	for _, r := range res[0].Rows {
		for _, v := range r {
			out += string(v) + " | "
		}
		out += "\n"
	}
	return out
}

// stressClient logs in with startup parameters that differ from a fresh
// server's, runs its first query at once and then a few more, and checks
// that every reply is its own.
func stressClient(host, port string, round, i int, hang time.Duration, queries *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=app password=app dbname=app sslmode=disable", host, port))
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = "stress-" + strconv.Itoa(i%3)
	if i%2 == 0 {
		cfg.RuntimeParams["search_path"] = "public"
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(context.Background())
	for n := range 4 {
		want := strconv.Itoa(round*100000 + i*10 + n)
		res, err := c.Exec(ctx, "SELECT "+want+"::text, current_setting('application_name')").ReadAll()
		if err != nil {
			return fmt.Errorf("query %d: %w", n, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 {
			return fmt.Errorf("query %d: unexpected result shape", n)
		}
		row := res[0].Rows[0]
		if got := string(row[0]); got != want {
			return fmt.Errorf("query %d: got %q, want %q (another client's reply)", n, got, want)
		}
		if got, wantApp := string(row[1]), cfg.RuntimeParams["application_name"]; got != wantApp {
			return fmt.Errorf("query %d: application_name %q, want %q", n, got, wantApp)
		}
		queries.Add(1)
	}
	return nil
}

// runOutrigger runs the sidecar on yaml in-process and returns a function
// that stops it (SIGTERM, then waits for a clean exit). The stop also runs
// when the test ends, if it has not been called.
func runOutrigger(t *testing.T, yaml string) (stop func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	sigs := make(chan os.Signal, 1)
	done := make(chan int, 1)
	started := make(chan *sidecar.Server, 1)
	go func() {
		done <- cli.Main(context.Background(), []string{"run", "-c", path}, cli.Options{
			Stdout: logs, Stderr: logs, Signals: sigs, Environ: []string{},
			Started: func(s *sidecar.Server) { started <- s },
		})
	}()
	select {
	case <-started:
	case code := <-done:
		t.Fatalf("outrigger exited with %d:\n%s", code, logs)
	case <-time.After(30 * time.Second):
		sigs <- syscall.SIGTERM // no cleanup stops it: it stops itself if it ever starts
		t.Fatalf("outrigger did not start:\n%s", logs)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			sigs <- syscall.SIGTERM
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("outrigger exit code %d:\n%s", code, logs)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("outrigger did not exit after SIGTERM:\n%s", logs)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
