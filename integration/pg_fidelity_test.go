package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/internal/testenv"
)

// What stock drivers see of the extended protocol, prepared statements
// across schema changes and backend identity: the same through Outrigger,
// in session and in transaction mode, as on a direct connection. Most
// checks are differential: the same calls go to every target and what the
// driver reports (results, SQLSTATEs, tags, in order) must be equal to the
// direct connection's.

// pgTarget is one way to reach the test database.
type pgTarget struct {
	name string // direct, session, transaction
	dsn  string
}

// pgListener is one postgres listener of startPGTargets.
type pgListener struct {
	name, mode string
	size       int
}

// startPGTargets starts a throwaway Postgres and one Outrigger with a
// listener per entry of ls (user app with its server password); the
// targets are direct first, then the listeners in order.
func startPGTargets(t *testing.T, ls ...pgListener) (*testenv.Postgres, *outrigger, []pgTarget) {
	t.Helper()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	var cfg strings.Builder
	cfg.WriteString("admin: {listen: \"127.0.0.1:0\"}\npostgres:\n")
	targets := []pgTarget{{name: "direct", dsn: pg.DSN("app", "app", "app")}}
	for _, l := range ls {
		addr := testenv.FreeAddr(t)
		fmt.Fprintf(&cfg, `  - name: %s
    listen: %q
    upstream: {address: %q}
    pool: {mode: %s, size: %d, acquire_timeout: 20s}
    auth:
      method: scram-sha-256
      users:
        - {name: app, password: app}
`, l.name, addr, pg.Addr(), l.mode, l.size)
		host, port, _ := net.SplitHostPort(addr)
		targets = append(targets, pgTarget{name: l.name, dsn: fmt.Sprintf("host=%s port=%s user=app password=app dbname=app sslmode=disable", host, port)})
	}
	return pg, startOutrigger(t, cfg.String()), targets
}

// fidelityModes are the listeners the fidelity tests compare with direct.
var fidelityModes = []pgListener{{"session", "session", 2}, {"transaction", "transaction", 2}}

func connectTarget(ctx context.Context, t testing.TB, tg pgTarget, mutate func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(tg.dsn)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("%s: connect: %v", tg.name, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// outcome renders an error the way the transcripts compare it.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return "error " + pe.Code + " " + pe.Message
	}
	return "error " + err.Error()
}

// pipelineTranscript reads every result of a pipeline the caller has
// sent, in order.
func pipelineTranscript(p *pgconn.Pipeline) string {
	var b strings.Builder
	for {
		res, err := p.GetResults()
		if err != nil {
			fmt.Fprintf(&b, "%s\n", outcome(err))
			if strings.HasPrefix(outcome(err), "error ") && !errors.As(err, new(*pgconn.PgError)) {
				return b.String() // the connection is gone
			}
			continue
		}
		switch r := res.(type) {
		case nil:
			return b.String()
		case *pgconn.ResultReader:
			for r.NextRow() {
				fmt.Fprintf(&b, "row %q\n", r.Values())
			}
			tag, err := r.Close()
			fmt.Fprintf(&b, "%s %s\n", tag, outcome(err))
		case *pgconn.StatementDescription:
			fmt.Fprintf(&b, "statement %s params %v fields %d\n", r.Name, r.ParamOIDs, len(r.Fields))
		case *pgconn.PipelineSync:
			b.WriteString("sync\n")
		case *pgconn.CloseComplete:
			b.WriteString("close\n")
		default:
			fmt.Fprintf(&b, "%T\n", r)
		}
	}
}

// sameEverywhere runs f on every target and fails unless each gives the
// transcript the direct connection gave; want, if set, must hold of the
// direct transcript (the check means something only if direct shows it).
func sameEverywhere(t *testing.T, targets []pgTarget, want func(direct string) bool, f func(t *testing.T, tg pgTarget) string) {
	t.Helper()
	var direct string
	for i, tg := range targets {
		got := f(t, tg)
		if i == 0 {
			direct = got
			if want != nil && !want(direct) {
				t.Fatalf("direct transcript lacks what the test is about:\n%s", direct)
			}
			continue
		}
		if got != direct {
			t.Errorf("%s differs from direct\ndirect:\n%s\n%s:\n%s", tg.name, direct, tg.name, got)
		}
	}
}

func TestPGFidelity(t *testing.T) {
	integrationOnly(t)
	pg, o, targets := startPGTargets(t, fidelityModes...)
	pg.Exec(t, `create table fid (id int primary key, v text); alter table fid owner to app;
		insert into fid select g, 'v' || g from generate_series(1, 10) g;
		create type mood as enum ('sad', 'ok'); alter type mood owner to app`)
	ctx := testCtx(t, 5*time.Minute)

	// Flush, not Sync: three statements, the second failing while it runs,
	// a Flush, more statements, then the Sync.
	t.Run("pipeline-flush-error-sync", func(t *testing.T) {
		sameEverywhere(t, targets, func(d string) bool { return strings.Contains(d, "22012") }, func(t *testing.T, tg pgTarget) string {
			pc := connectTarget(ctx, t, tg, nil).PgConn()
			p := pc.StartPipeline(ctx)
			p.SendQueryParams("select 1", nil, nil, nil, nil)
			p.SendQueryParams("select 1/(3-n) from generate_series(1,10) n", nil, nil, nil, nil)
			p.SendQueryParams("select 3", nil, nil, nil, nil)
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			p.SendPrepare("skipped", "select 4", nil)
			p.SendQueryParams("select 5", nil, nil, nil, nil)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			tr := pipelineTranscript(p)
			if err := p.Close(); err != nil {
				tr += "close: " + outcome(err) + "\n"
			}
			// The session goes on, and the skipped Parse left nothing.
			_, err := pc.Prepare(ctx, "skipped", "select 4", nil)
			tr += "prepare skipped again: " + outcome(err) + "\n"
			r := pc.ExecPrepared(ctx, "skipped", nil, nil, nil).Read()
			tr += fmt.Sprintf("%v %s\n", r.Rows, outcome(r.Err))
			return tr
		})
	})

	// Several Parse + Describe in one pipeline with one Sync, executed
	// from later pipelines.
	t.Run("pipeline-send-prepare", func(t *testing.T) {
		sameEverywhere(t, targets, nil, func(t *testing.T, tg pgTarget) string {
			pc := connectTarget(ctx, t, tg, nil).PgConn()
			p := pc.StartPipeline(ctx)
			for i := range 5 {
				p.SendPrepare(fmt.Sprintf("pp%d", i), fmt.Sprintf("select $1::int + %d", i), nil)
			}
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			tr := pipelineTranscript(p)
			for round := range 3 {
				for i := range 5 {
					p.SendQueryPrepared(fmt.Sprintf("pp%d", i), [][]byte{[]byte(fmt.Sprint(round))}, nil, nil)
				}
				if err := p.Sync(); err != nil {
					t.Fatal(err)
				}
				tr += pipelineTranscript(p)
			}
			// Prepared, executed and closed in one write, the executions
			// behind the Sync before its answer.
			for i := range 5 {
				p.SendPrepare(fmt.Sprintf("pq%d", i), fmt.Sprintf("select $1::int * %d", i), nil)
			}
			p.SendPipelineSync()
			for i := range 5 {
				p.SendQueryPrepared(fmt.Sprintf("pq%d", i), [][]byte{[]byte("3")}, nil, nil)
			}
			p.SendPipelineSync()
			for i := range 5 {
				p.SendDeallocate(fmt.Sprintf("pq%d", i))
			}
			p.SendPrepare("pq0", "select 'again'", nil)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			tr += pipelineTranscript(p)
			if err := p.Close(); err != nil {
				tr += "close: " + outcome(err) + "\n"
			}
			if strings.Contains(tr, "error") {
				t.Errorf("%s: %s", tg.name, tr)
			}
			return tr
		})
	})

	// Forward as it arrives: the server's own statement timer runs from
	// the first message of a batch whose messages come with pauses.
	t.Run("statement-timeout-between-messages", func(t *testing.T) {
		sameEverywhere(t, targets, func(d string) bool { return strings.Contains(d, "C57014") }, func(t *testing.T, tg pgTarget) string {
			c := dialDiff(ctx, t, diffTarget{name: tg.name, dsn: tg.dsn})
			defer c.close()
			got, err := c.run([]diffStep{
				{msg: &pgproto3.Query{String: "set statement_timeout = '100ms'"}},
				{msg: &pgproto3.Parse{Name: "slow", Query: "select $1::int"}},
				{pause: 200 * time.Millisecond},
				{msg: &pgproto3.Describe{ObjectType: 'S', Name: "slow"}},
				{msg: &pgproto3.Sync{}},
				{msg: &pgproto3.Parse{Name: "slow", Query: "select $1::int"}},
				{msg: &pgproto3.Bind{PreparedStatement: "slow", Parameters: [][]byte{[]byte("7")}}},
				{msg: &pgproto3.Execute{}},
				{msg: &pgproto3.Sync{}},
			})
			if err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
			return describeReplies(maskShared(got))
		})
	})

	// pgx batches in every QueryExecMode, with a failing statement in one.
	t.Run("batch-every-exec-mode", func(t *testing.T) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
			t.Run(mode.String(), func(t *testing.T) {
				sameEverywhere(t, targets, func(d string) bool { return strings.Contains(d, "22012") }, func(t *testing.T, tg pgTarget) string {
					c := connectTarget(ctx, t, tg, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = mode })
					var tr strings.Builder
					for round := range 3 {
						b := &pgx.Batch{}
						b.Queue("select v from fid where id = $1", round+1)
						b.Queue("select $1::mood::text", "ok")
						b.Queue("select count(*) from fid where id <= $1", round+5)
						if round == 1 {
							b.Queue("select 1/$1::int", 0)
						}
						b.Queue("select $1::text || 'x'", "y")
						br := c.SendBatch(ctx, b)
						for range b.Len() {
							rows, err := br.Query()
							if err != nil {
								fmt.Fprintf(&tr, "%s\n", outcome(err))
								continue
							}
							vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
							fmt.Fprintf(&tr, "%v %s\n", vals, outcome(err))
						}
						fmt.Fprintf(&tr, "close %s\n", outcome(br.Close()))
					}
					return tr.String()
				})
			})
		}
	})

	// DEALLOCATE as SQL over statements prepared with the protocol.
	t.Run("deallocate-sql", func(t *testing.T) {
		sameEverywhere(t, targets, func(d string) bool { return strings.Contains(d, "26000") }, func(t *testing.T, tg pgTarget) string {
			pc := connectTarget(ctx, t, tg, nil).PgConn()
			var tr strings.Builder
			step := func(what string, err error) { fmt.Fprintf(&tr, "%s: %s\n", what, outcome(err)) }
			exec := func(sql string) {
				res, err := pc.Exec(ctx, sql).ReadAll()
				for _, r := range res {
					fmt.Fprintf(&tr, "%s: tag %s\n", sql, r.CommandTag)
				}
				step(sql, err)
			}
			_, err := pc.Prepare(ctx, "d1", "select 1", nil)
			step("prepare d1", err)
			_, err = pc.Prepare(ctx, "d2", "select 2", nil)
			step("prepare d2", err)
			exec("deallocate d1")
			_, err = pc.Prepare(ctx, "d1", "select 11", nil)
			step("prepare d1 again", err)
			exec("deallocate prepare d1")
			exec("deallocate d1")
			exec("deallocate nosuch")
			exec("begin")
			exec("select 1/0")
			exec("deallocate d2")
			exec("rollback")
			r := pc.ExecPrepared(ctx, "d2", nil, nil, nil).Read()
			step("d2 after a refused deallocate", r.Err)
			exec("deallocate all")
			r = pc.ExecPrepared(ctx, "d2", nil, nil, nil).Read()
			step("d2 after deallocate all", r.Err)
			_, err = pc.Prepare(ctx, "d2", "select 22", nil)
			step("prepare d2 again", err)
			exec("discard all")
			r = pc.ExecPrepared(ctx, "d2", nil, nil, nil).Read()
			step("d2 after discard all", r.Err)
			return tr.String()
		})
	})

	// The statement cache across schema changes: after DDL made through
	// the same listener or directly, a pgx client's next retry succeeds;
	// a statement whose result columns changed fails as it fails direct
	// (0A000, once: pgx then prepares it again), the others at most once.
	t.Run("statement-cache-across-ddl", func(t *testing.T) {
		for _, via := range []string{"listener", "direct"} {
			t.Run(via, func(t *testing.T) {
				sameEverywhere(t, targets, func(d string) bool { return strings.Contains(d, "0A000") }, func(t *testing.T, tg pgTarget) string {
					app := connectTarget(ctx, t, tg, nil)
					ddlTarget := tg
					if via == "direct" {
						ddlTarget = targets[0]
					}
					ddl := connectTarget(ctx, t, ddlTarget, nil)
					tbl, typ := "sc_"+via+"_"+tg.name, "scm_"+via+"_"+tg.name
					mustExec(ctx, t, ddl, "create table "+tbl+" (id int, a text)")
					mustExec(ctx, t, ddl, "insert into "+tbl+" values (1, 'a')")
					mustExec(ctx, t, ddl, "create type "+typ+" as enum ('x', 'y')")
					queries := []string{"select * from " + tbl + " where id = $1", "select $1::" + typ + "::text", "select 'x'::" + typ + " = $1"}
					args := [][]any{{1}, {"x"}, {"x"}}
					var tr strings.Builder
					runAll := func(round string) {
						for i, q := range queries {
							var err error
							for attempt := range 2 {
								var rows pgx.Rows
								rows, err = app.Query(ctx, q, args[i]...)
								if err == nil {
									_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
								}
								if i == 0 {
									// (Only the table's statement is compared: a
									// parameter of a type dropped and created again
									// is a documented difference.)
									fmt.Fprintf(&tr, "%s: attempt %d: %s\n", round, attempt, pgCode(err))
								}
								if err == nil {
									break
								}
							}
							if err != nil {
								t.Errorf("%s: %s: %s: the retry failed too: %s", tg.name, round, q, outcome(err))
							}
						}
					}
					runAll("before")
					for i := range 3 {
						mustExec(ctx, t, ddl, fmt.Sprintf("alter table %s add column c%d int", tbl, i))
						runAll(fmt.Sprintf("after add column %d", i))
						mustExec(ctx, t, ddl, fmt.Sprintf("alter table %s drop column c%d", tbl, i))
						runAll(fmt.Sprintf("after drop column %d", i))
						mustExec(ctx, t, ddl, fmt.Sprintf("drop type %s; create type %s as enum ('x', 'y', 'z%d')", typ, typ, i))
						runAll(fmt.Sprintf("after type recreated %d", i))
					}
					return tr.String()
				})
			})
		}
	})

	// Backend identity: in session mode the driver's pid is the server's;
	// in transaction mode it is above any pid Linux gives.
	t.Run("backend-pid", func(t *testing.T) {
		for _, tg := range targets {
			c := connectTarget(ctx, t, tg, nil)
			pid := c.PgConn().PID()
			server := scalar[uint32](ctx, t, c, "select pg_backend_pid()::int8")
			switch tg.name {
			case "transaction":
				if pid < 1<<22 {
					t.Errorf("%s: virtual pid %d, want >= 4194304", tg.name, pid)
				}
			default:
				if pid != server {
					t.Errorf("%s: driver pid %d, pg_backend_pid() %d", tg.name, pid, server)
				}
			}
		}
	})

	// A dead server ends a session-mode client's connection at once, even
	// while the client is idle, as a direct connection ends.
	t.Run("terminated-backend-seen-by-checkconn", func(t *testing.T) {
		super := superConn(t, pg)
		for _, tg := range targets {
			c := connectTarget(ctx, t, tg, nil)
			if tg.name == "transaction" {
				mustExec(ctx, t, c, "listen fidelity") // pinned: it keeps its server
			}
			pid := scalar[int32](ctx, t, c, "select pg_backend_pid()")
			if !scalar[bool](ctx, t, super, "select pg_terminate_backend($1)", pid) {
				t.Fatalf("%s: pg_terminate_backend returned false", tg.name)
			}
			start := time.Now()
			for c.PgConn().CheckConn() == nil {
				if time.Since(start) > time.Second {
					t.Fatalf("%s: CheckConn still sees a live connection 1 s after its server was terminated", tg.name)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := c.Ping(ctx); err == nil {
				t.Errorf("%s: Ping succeeded on a connection whose server is gone", tg.name)
			}
		}
	})
	_ = o
}

// TestPGMigrationUnderLoad: 200 clients in transaction mode (pool 4) run
// prepared statements over a table and an enum type while another client
// alters both 20 times. After each change every client succeeds by its
// next retry, and no other error occurs. Each change waits until every
// client has run both its statements since the one before, so that no
// client's retry can meet the next change (which could fail it direct too).
func TestPGMigrationUnderLoad(t *testing.T) {
	integrationOnly(t)
	pg, o, targets := startPGTargets(t, pgListener{"transaction", "transaction", 4})
	pg.Exec(t, `create table mig (id int primary key, a text); alter table mig owner to app;
		insert into mig select g, 'a' || g from generate_series(1, 50) g;
		create type mig_mood as enum ('m0'); alter type mig_mood owner to app`)
	tg := targets[1]
	ctx := testCtx(t, 5*time.Minute)
	const clients = 200
	var (
		stop      atomic.Bool
		ok, fails atomic.Int64
		mu        sync.Mutex
		bad       []string
		wg        sync.WaitGroup
	)
	var failed atomic.Bool
	report := func(s string) {
		failed.Store(true)
		mu.Lock()
		if len(bad) < 20 {
			bad = append(bad, s)
		}
		mu.Unlock()
	}
	var done [clients]atomic.Int64 // each client's successful queries
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connectTarget(ctx, t, tg, nil)
	}
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			queries := []string{"select * from mig where id = $1", "select 'm0'::mig_mood::text || $1::text"}
			for k := 0; !stop.Load(); k++ {
				q := queries[k%2]
				var err error
				for attempt := range 2 {
					var rows pgx.Rows
					var arg any = 1 + (i+k)%50
					if k%2 == 1 {
						arg = fmt.Sprint(arg)
					}
					rows, err = c.Query(ctx, q, arg)
					if err == nil {
						_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
					}
					if err == nil {
						break
					}
					if attempt == 0 {
						fails.Add(1)
						if code := pgCode(err); code != "0A000" && code != "XX000" {
							report(fmt.Sprintf("client %d: %s: %s", i, q, outcome(err)))
						}
					}
				}
				if err != nil {
					report(fmt.Sprintf("client %d: %s: the retry failed too: %s", i, q, outcome(err)))
					return
				}
				ok.Add(1)
				done[i].Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	ddl := connectTarget(ctx, t, tg, nil)
	change := func(sql string) {
		var seen [clients]int64
		for i := range seen {
			seen[i] = done[i].Load()
		}
		mustExec(ctx, t, ddl, sql)
		deadline := time.Now().Add(time.Minute)
		for i := range seen {
			for done[i].Load() < seen[i]+3 && !failed.Load() {
				if time.Now().After(deadline) {
					t.Fatalf("client %d made no progress for a minute after %q", i, sql)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	for i := range 20 {
		if i%2 == 0 {
			change(fmt.Sprintf("alter table mig add column c%d int", i))
		} else {
			change(fmt.Sprintf("alter table mig drop column c%d", i-1))
		}
		change(fmt.Sprintf("alter type mig_mood add value 'm%d'", i+1))
		if i%5 == 4 {
			change("drop type mig_mood; create type mig_mood as enum ('m0')")
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d queries succeeded, %d first attempts failed and were retried", ok.Load(), fails.Load())
	if len(bad) > 0 {
		t.Fatalf("errors beyond the schema-change retries:\n%s\n%s", strings.Join(bad, "\n"), o.Logs)
	}
	if ok.Load() < clients*10 {
		t.Fatalf("only %d queries succeeded", ok.Load())
	}
}
