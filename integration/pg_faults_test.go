package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Faults from issue 3's "Done when": clients that die mid-transaction,
// servers terminated under a client, cancels (timely and stale), a pool
// with no connection to lend, and a message over max_message_size.

// rawClient is a client through the proxy that the test can kill at any
// protocol point: pgconn for startup, then the socket closed without a
// Terminate.
func rawClient(t *testing.T, p *pgProxy) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, p.dsn("app", "app", "app"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Conn().Close() })
	return pc
}

func rawExec(t *testing.T, pc *pgconn.PgConn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestPGFaultClientKilled: a client that goes away in the middle of a
// transaction, at several points of the protocol, leaves nothing for the
// next client of its server: no open transaction, no uncommitted row.
func TestPGFaultClientKilled(t *testing.T) {
	integrationOnly(t)
	deaths := []struct {
		name string
		// die runs after BEGIN and an INSERT, then the socket is closed.
		die func(t *testing.T, pc *pgconn.PgConn)
	}{
		{"idle-in-transaction", func(t *testing.T, pc *pgconn.PgConn) {}},
		{"mid-query", func(t *testing.T, pc *pgconn.PgConn) {
			f := pc.Frontend()
			f.Send(&pgproto3.Query{String: "select pg_sleep(1)"})
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}},
		{"unread-results", func(t *testing.T, pc *pgconn.PgConn) {
			f := pc.Frontend()
			f.Send(&pgproto3.Query{String: "select repeat('x', 100) from generate_series(1, 200000)"})
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}},
		{"mid-copy", func(t *testing.T, pc *pgconn.PgConn) {
			f := pc.Frontend()
			f.Send(&pgproto3.Query{String: "copy k (tag) from stdin"})
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			_ = pc.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				m, err := f.Receive()
				if err != nil {
					t.Fatalf("waiting for CopyInResponse: %v", err)
				}
				if _, ok := m.(*pgproto3.CopyInResponse); ok {
					break
				}
			}
			f.Send(&pgproto3.CopyData{Data: []byte("copied\n")})
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}},
		{"extended-without-sync", func(t *testing.T, pc *pgconn.PgConn) {
			f := pc.Frontend()
			f.Send(&pgproto3.Parse{Query: "insert into k (tag) values ('extended')"})
			f.Send(&pgproto3.Bind{})
			f.Send(&pgproto3.Execute{})
			f.Send(&pgproto3.Flush{})
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}},
	}
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startPGProxy(t, mode, 1, "")
			p.PG.Exec(t, "create table k (tag text); alter table k owner to app")
			super := superConn(t, p.PG)
			for _, d := range deaths {
				t.Run(d.name, func(t *testing.T) {
					ctx := testCtx(t, 30*time.Second)
					pc := rawClient(t, p)
					rawExec(t, pc, "begin")
					rawExec(t, pc, "insert into k (tag) values ('uncommitted')")
					d.die(t, pc)
					pc.Conn().Close()

					// The next client of the one server sees no transaction.
					c := p.connect(t)
					var noXid, fresh bool
					var rows int
					// Simple protocol: the statement starts the transaction,
					// so now() = statement_timestamp() unless one was open.
					err := c.QueryRow(ctx, "select txid_current_if_assigned() is null, now() = statement_timestamp(), (select count(*)::int from k)", pgx.QueryExecModeSimpleProtocol).Scan(&noXid, &fresh, &rows)
					if err != nil {
						t.Fatalf("next client: %v", err)
					}
					if !noXid || !fresh || rows != 0 {
						t.Fatalf("next client: no transaction id %v, fresh transaction %v, rows in k %d: the dead client's transaction is still open", noXid, fresh, rows)
					}
					c.Close(ctx)
					// And no backend stays idle in transaction for it.
					eventually(t, "no app backend idle in transaction", func() bool {
						var n int
						_ = super.QueryRow(ctx, "select count(*) from pg_stat_activity where usename = 'app' and state like 'idle in transaction%'").Scan(&n)
						return n == 0
					})
					if n := scalar[int](ctx, t, super, "select count(*)::int from k"); n != 0 {
						t.Fatalf("%d rows committed by a client that never committed", n)
					}
				})
			}
		})
	}
}

// appBackendPid is the one backend of the app user (the pool has one).
func appBackendPid(ctx context.Context, t *testing.T, super *pgx.Conn) int32 {
	t.Helper()
	pids, err := appBackends(ctx, super)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 {
		t.Fatalf("app has %d backends (%v), want the pool's one", len(pids), pids)
	}
	return pids[0]
}

// TestPGFaultTerminateBackend: pg_terminate_backend on the server a client
// is using mid-transaction gives that client a clean error (the server's
// 57P01, or 08006), and the pool heals: the next client gets a new server
// and the dead transaction's row is gone.
func TestPGFaultTerminateBackend(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startPGProxy(t, mode, 1, "")
			p.PG.Exec(t, "create table k (tag text); alter table k owner to app")
			super := superConn(t, p.PG)
			ctx := testCtx(t, 30*time.Second)

			a := p.connect(t)
			mustExec(ctx, t, a, "begin")
			mustExec(ctx, t, a, "insert into k values ('doomed')")
			pid := appBackendPid(ctx, t, super)
			if !scalar[bool](ctx, t, super, "select pg_terminate_backend($1)", pid) {
				t.Fatal("pg_terminate_backend returned false")
			}
			start := time.Now()
			_, err := a.Exec(ctx, "insert into k values ('after')")
			if err == nil {
				t.Fatal("a query on a terminated server succeeded")
			}
			if code := pgCode(err); code != "57P01" && code != "08006" {
				t.Fatalf("client error %v (SQLSTATE %q), want the server's 57P01 or 08006", err, code)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("the error took %v", d)
			}

			b := p.connect(t)
			if n := scalar[int](ctx, t, b, "select count(*)::int from k"); n != 0 {
				t.Fatalf("%d rows from the terminated transaction", n)
			}
			if newPid := appBackendPid(ctx, t, super); newPid == pid {
				t.Fatalf("the pool still has terminated backend %d", pid)
			}
			for i := range 5 {
				if n := scalar[int](ctx, t, b, "select $1::int", i); n != i {
					t.Fatal(n)
				}
			}
		})
	}
}

// TestPGFaultTerminateIdleServer: in transaction mode a server terminated
// while it sits in the pool is found dead before a client's query meets it
// (an idle connection is checked before it is lent): the idle client's
// next query just works.
func TestPGFaultTerminateIdleServer(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	super := superConn(t, p.PG)
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	mustExec(ctx, t, a, "select 1")
	pid := appBackendPid(ctx, t, super)
	mustExec(ctx, t, super, fmt.Sprintf("select pg_terminate_backend(%d)", pid))
	eventually(t, "the backend to exit", func() bool {
		pids, err := appBackends(ctx, super)
		return err == nil && len(pids) == 0
	})
	time.Sleep(1100 * time.Millisecond) // past the pool's health-check age
	if n := scalar[int](ctx, t, a, "select 42"); n != 42 {
		t.Fatal(n)
	}
}

// TestPGFaultTerminateIdleServerAtOnce: the same, with the client's query
// right after the server died. The client was idle and had nothing on that
// server; it must not lose its session for it. A server is checked before
// it is lent once it has been idle for a millisecond (pg/handler.go,
// HealthCheckAfter); one that dies within a millisecond of being given
// back meets the next query, as documented, so the test lets that
// millisecond pass before the backend dies (on a fast run everything
// below can take less).
func TestPGFaultTerminateIdleServerAtOnce(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	super := superConn(t, p.PG)
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	mustExec(ctx, t, a, "select 1")
	time.Sleep(5 * time.Millisecond)
	pid := appBackendPid(ctx, t, super)
	mustExec(ctx, t, super, fmt.Sprintf("select pg_terminate_backend(%d)", pid))
	eventually(t, "the backend to exit", func() bool {
		pids, err := appBackends(ctx, super)
		return err == nil && len(pids) == 0
	})
	if _, err := a.Exec(ctx, "select 42"); err != nil {
		t.Fatalf("an idle client's query after its last server died: %v", err)
	}
}

// cancelOnCtx makes pgx send a CancelRequest when a query's context ends.
func cancelOnCtx(cc *pgx.ConnConfig) {
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 10 * time.Second}
	}
}

// sendCancel sends a CancelRequest to addr and waits for the close.
func sendCancel(t *testing.T, addr string, pid uint32, key []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := binary.BigEndian.AppendUint32(nil, uint32(12+len(key)))
	buf = binary.BigEndian.AppendUint32(buf, 80877102)
	buf = binary.BigEndian.AppendUint32(buf, pid)
	buf = append(buf, key...)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("after CancelRequest: %v", err)
	}
}

func TestPGCancel(t *testing.T) {
	integrationOnly(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startPGProxy(t, mode, 4, "")
			metric := func(result string) float64 {
				return p.metric(fmt.Sprintf(`outrigger_pg_cancels_total{listener=%q,result=%q}`, pgListenerName, result))
			}

			t.Run("ctx-cancel", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				c := p.connectCfg(t, cancelOnCtx)
				for _, proto := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
					before := metric("forwarded")
					qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
					start := time.Now()
					_, err := c.Exec(qctx, "select pg_sleep($1::float8)", proto, 10.0)
					cancel()
					took := time.Since(start)
					if code := pgCode(err); code != "57014" {
						t.Fatalf("%v: cancelled pg_sleep(10): %v (SQLSTATE %q), want 57014", proto, err, code)
					}
					if took > 1500*time.Millisecond {
						t.Fatalf("%v: the cancel took %v", proto, took)
					}
					if n := scalar[int](ctx, t, c, "select 5"); n != 5 {
						t.Fatalf("session after the cancel: %d", n)
					}
					if got := metric("forwarded"); got != before+1 {
						t.Errorf("cancels_total{result=forwarded} = %v, want %v", got, before+1)
					}
				}
			})

			t.Run("stale-cancel", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				a := p.connect(t)
				mustExec(ctx, t, a, "select 1")
				pid, key := a.PgConn().PID(), a.PgConn().SecretKey()
				before := metric("idle")
				// Other clients run queries on the pool's servers, which A
				// may have used a moment ago.
				var wg sync.WaitGroup
				defer wg.Wait() // a failed connect or sendCancel: the b's are closed at cleanup
				errs := make(chan error, 2)
				for range 2 {
					b := p.connect(t)
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := b.Exec(ctx, "select pg_sleep(0.8)")
						errs <- err
					}()
				}
				time.Sleep(200 * time.Millisecond)
				sendCancel(t, p.Addr, pid, key)
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("another client's query hit by A's stale cancel: %v", err)
					}
				}
				if got := metric("idle"); got != before+1 {
					t.Errorf("cancels_total{result=idle} = %v, want %v", got, before+1)
				}
				// A's own next query is untouched as well.
				if _, err := a.Exec(ctx, "select pg_sleep(0.3)"); err != nil {
					t.Fatalf("A after its stale cancel: %v", err)
				}
			})

			t.Run("wrong-key", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				a := p.connect(t)
				pid := a.PgConn().PID()
				key := append([]byte(nil), a.PgConn().SecretKey()...)
				key[0] ^= 0xff
				before := metric("unknown")
				done := make(chan error, 1)
				finished := make(chan struct{})
				go func() {
					defer close(finished)
					_, err := a.Exec(ctx, "select pg_sleep(0.8)")
					done <- err
				}()
				// a is closed at cleanup: if sendCancel fails, not before its Exec returns.
				defer func() { <-finished }()
				time.Sleep(200 * time.Millisecond)
				sendCancel(t, p.Addr, pid, key)
				if err := <-done; err != nil {
					t.Fatalf("a cancel with the wrong key cancelled the query: %v", err)
				}
				if got := metric("unknown"); got != before+1 {
					t.Errorf("cancels_total{result=unknown} = %v, want %v", got, before+1)
				}
			})
		})
	}
}

// TestPGPoolExhausted: with the pool's one server held, another client's
// query waits acquire_timeout and gets 53300 naming the pool, in the simple
// and the extended protocol; its session goes on once the server is free.
func TestPGPoolExhausted(t *testing.T) {
	integrationOnly(t)
	p := startPGConf(t, pgConf{Mode: "transaction", Size: 1, PoolKeys: ", acquire_timeout: 500ms"})
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	mustExec(ctx, t, a, "begin")
	mustExec(ctx, t, a, "select 1")
	var clients []*pgx.Conn
	for _, q := range []struct {
		name string
		run  func(b *pgx.Conn) error
	}{
		{"simple", func(b *pgx.Conn) error { _, err := b.Exec(ctx, "select 1"); return err }},
		{"extended", func(b *pgx.Conn) error { _, err := b.Exec(ctx, "select $1::int", 1); return err }},
		{"batch", func(b *pgx.Conn) error {
			batch := &pgx.Batch{}
			batch.Queue("select $1::int + 1", 1)
			batch.Queue("select 2")
			return b.SendBatch(ctx, batch).Close()
		}},
	} {
		b := p.connect(t)
		clients = append(clients, b)
		start := time.Now()
		err := q.run(b)
		took := time.Since(start)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53300" {
			t.Fatalf("%s: %v, want 53300", q.name, err)
		}
		if !strings.Contains(pe.Message, "app/app") {
			t.Errorf("%s: message %q does not name the pool app/app", q.name, pe.Message)
		}
		if took < 400*time.Millisecond || took > 3*time.Second {
			t.Errorf("%s: 53300 after %v, want about acquire_timeout (500ms)", q.name, took)
		}
		if b.IsClosed() {
			t.Fatalf("%s: B's connection closed on 53300", q.name)
		}
	}
	mustExec(ctx, t, a, "commit")
	// Every B goes on. (Re-running the very statement whose Parse timed
	// out is TestPGParseFailureForgotten.)
	for i, b := range clients {
		if n := scalar[int](ctx, t, b, "select $1::int * 10", i); n != i*10 {
			t.Fatal(n)
		}
		if n := scalar[int](ctx, t, b, "select 8"); n != 8 {
			t.Fatal(n)
		}
	}
	if n := scalar[int](ctx, t, a, "select 9"); n != 9 {
		t.Fatal(n)
	}
}

// TestPGMaxMessageSize: a message over max_message_size is refused with
// 08P01 and the connection closes; one under it works.
func TestPGMaxMessageSize(t *testing.T) {
	p := startPGConf(t, pgConf{Mode: "transaction", Size: 2, Listener: "max_message_size: 4096"})
	ctx := testCtx(t, 30*time.Second)
	big := "select '" + strings.Repeat("x", 10<<10) + "'"
	small := "select '" + strings.Repeat("y", 3000) + "'"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			c := p.connectCfg(t, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = mode })
			var s string
			if err := c.QueryRow(ctx, small).Scan(&s); err != nil || len(s) != 3000 {
				t.Fatalf("a 3 kB query: %v", err)
			}
			err := c.QueryRow(ctx, big).Scan(&s)
			if code := pgCode(err); code != "08P01" {
				t.Fatalf("a 10 kB query over max_message_size 4096: %v (SQLSTATE %q), want 08P01", err, code)
			}
			if _, err := c.Exec(ctx, "select 1"); err == nil {
				t.Fatal("the connection is still open after 08P01")
			}
			// Others are unaffected.
			d := p.connect(t)
			if n := scalar[int](ctx, t, d, "select 1"); n != 1 {
				t.Fatal(n)
			}
		})
	}
	// The refusal comes from the length alone: a header that announces
	// 100 MB, with no body behind it, is answered at once.
	t.Run("header-only", func(t *testing.T) {
		pc := rawClient(t, p)
		hdr := binary.BigEndian.AppendUint32([]byte{'Q'}, 100<<20)
		if _, err := pc.Conn().Write(append(hdr, "select"...)); err != nil {
			t.Fatal(err)
		}
		_ = pc.Conn().SetReadDeadline(time.Now().Add(2 * time.Second))
		m, err := pc.Frontend().Receive()
		if err != nil {
			t.Fatalf("no answer to a 100 MB header within 2 s: %v", err)
		}
		er, ok := m.(*pgproto3.ErrorResponse)
		if !ok || er.Code != "08P01" {
			t.Fatalf("answer %#v, want ErrorResponse 08P01", m)
		}
		if _, err := pc.Frontend().Receive(); err == nil {
			t.Fatal("the connection stayed open")
		}
	})
}

// TestPGParseFailureForgotten: a named Parse that failed (the server's
// syntax error, or no server to be had) leaves no statement behind: the
// client may prepare the same name again, as on Postgres. pgx does exactly
// this with its statement cache after an error.
func TestPGParseFailureForgotten(t *testing.T) {
	p := startPGConf(t, pgConf{Mode: "transaction", Size: 1, PoolKeys: ", acquire_timeout: 500ms"})
	ctx := testCtx(t, 30*time.Second)
	t.Run("syntax-error", func(t *testing.T) {
		c := p.connect(t)
		if _, err := c.Prepare(ctx, "s1", "selec 1"); pgCode(err) != "42601" {
			t.Fatalf("bad Parse: %v, want 42601", err)
		}
		if _, err := c.Prepare(ctx, "s1", "select 1"); err != nil {
			t.Fatalf("Parse of the same name after the failed one: %v", err)
		}
		// pgx's statement cache retries the same bad text: the same error again.
		for range 2 {
			if _, err := c.Exec(ctx, "selec $1::int", 1); pgCode(err) != "42601" {
				t.Fatalf("cached bad statement: %v, want 42601 each time", err)
			}
		}
	})
	t.Run("acquire-timeout", func(t *testing.T) {
		a := p.connect(t)
		b := p.connect(t)
		mustExec(ctx, t, a, "begin")
		if _, err := b.Exec(ctx, "select $1::int + 100", 1); pgCode(err) != "53300" {
			t.Fatalf("B with the pool held: %v, want 53300", err)
		}
		mustExec(ctx, t, a, "commit")
		if n := scalar[int](ctx, t, b, "select $1::int + 100", 1); n != 101 {
			t.Fatalf("the same statement once the pool is free: %d", n)
		}
	})
}

// TestPGCancelWhileQueued: a query waiting for a server (the pool is
// exhausted) is the client's query in progress; a cancel for it must stop
// it, as Postgres stops a query it has received, instead of letting it run
// once a server frees up.
func TestPGCancelWhileQueued(t *testing.T) {
	p := startPGConf(t, pgConf{Mode: "transaction", Size: 1, PoolKeys: ", acquire_timeout: 10s"})
	p.PG.Exec(t, "create table k (tag text); alter table k owner to app")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	b := p.connectCfg(t, cancelOnCtx)
	mustExec(ctx, t, a, "begin")
	mustExec(ctx, t, a, "select 1")
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		time.Sleep(1500 * time.Millisecond)
		_, _ = a.Exec(ctx, "commit")
	}()
	// a is closed by the test's cleanup: its commit must be over by then.
	defer func() { <-committed }()
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Exec(qctx, "insert into k values ('cancelled')", pgx.QueryExecModeSimpleProtocol)
	took := time.Since(start)
	super := superConn(t, p.PG)
	time.Sleep(300 * time.Millisecond)
	n := scalar[int](ctx, t, super, "select count(*)::int from k")
	if err == nil || n != 0 {
		t.Fatalf("a query cancelled while it waited for a server ran anyway after %v (err %v, rows %d)", took, err, n)
	}
	if code := pgCode(err); code != "57014" {
		t.Fatalf("cancelled while queued: %v (SQLSTATE %q), want 57014", err, code)
	}
}
