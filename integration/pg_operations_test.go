package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/internal/testenv"
)

// adminConsole opens the admin console of p as postgres and returns a
// function that runs one command and gives its rows as maps.
func adminConsole(t *testing.T, p *pgProxy) func(cmd string) ([]map[string]string, error) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	c, err := pgconn.Connect(ctx, p.dsn("postgres", "postgres", "outrigger"))
	if err != nil {
		t.Fatalf("admin console: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return func(cmd string) ([]map[string]string, error) {
		res, err := c.Exec(ctx, cmd).ReadAll()
		if err != nil {
			return nil, err
		}
		var out []map[string]string
		for _, r := range res {
			for _, row := range r.Rows {
				m := map[string]string{}
				for i, f := range r.FieldDescriptions {
					m[f.Name] = string(row[i])
				}
				out = append(out, m)
			}
		}
		return out, nil
	}
}

// TestPGOperations covers the PgBouncer-style operations: transaction_timeout
// (pool-wide and per user), query_wait_notify, max_user_client_connections
// and max_db_client_connections, KILL_CLIENT, RECONNECT, and the prepared
// statement counters of SHOW STATS.
func TestPGOperations(t *testing.T) {
	integrationOnly(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	addr := testenv.FreeAddr(t)
	cfg := pgConf{Mode: "transaction", Size: 1,
		PoolKeys: ", acquire_timeout: 10s, transaction_timeout: 3s, query_wait_notify: 200ms, max_user_client_connections: 3, max_db_client_connections: 4",
		Users:    []string{"{name: app, password: app, transaction_timeout: 400ms}", "{name: postgres, password: postgres}"},
		Listener: "admin_users: [postgres]",
	}.yaml(addr, pg.Addr())
	o := startOutrigger(t, cfg)
	p := &pgProxy{outrigger: o, PG: pg, Addr: addr}
	ctx := testCtx(t, 2*time.Minute)
	admin := adminConsole(t, p) // a client of postgres in database outrigger

	t.Run("transaction_timeout", func(t *testing.T) {
		c := p.connect(t)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = tx.Exec(ctx, "select pg_sleep(5)")
		if pgCode(err) != "25P04" {
			t.Fatalf("a query past app's transaction_timeout: %v, want 25P04", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("ended after %v, not at the timeout", d)
		}
		if !c.IsClosed() {
			if _, err := c.Exec(ctx, "select 1"); err == nil {
				t.Error("the session went on after its transaction timed out")
			}
		}
		// Idle in a transaction too.
		c2 := p.connect(t)
		tx2, _ := c2.Begin(ctx)
		if _, err := tx2.Exec(ctx, "select 1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		if _, err := tx2.Exec(ctx, "select 1"); pgCode(err) != "25P04" {
			t.Errorf("idle past transaction_timeout: %v, want 25P04", err)
		}
		// postgres has the pool's 3s: a 1s transaction is fine.
		c3, err := pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
		if err != nil {
			t.Fatal(err)
		}
		defer c3.Close(ctx)
		tx3, _ := c3.Begin(ctx)
		if _, err := tx3.Exec(ctx, "select pg_sleep(1)"); err != nil {
			t.Errorf("a 1s transaction under the pool's 3s: %v", err)
		}
		if err := tx3.Commit(ctx); err != nil {
			t.Error(err)
		}
		// The pool is whole again: its one server serves the next client.
		c4 := p.connect(t)
		if _, err := c4.Exec(ctx, "select 1"); err != nil {
			t.Errorf("after the timeouts: %v", err)
		}
		if v := o.metric(`outrigger_pg_client_terminations_total{listener="appdb",reason="transaction_timeout"}`); v != 2 {
			t.Errorf("terminations{transaction_timeout} = %v, want 2", v)
		}
	})

	t.Run("transaction_timeout_session_mode", func(t *testing.T) {
		saddr := testenv.FreeAddr(t)
		startOutrigger(t, pgConf{Mode: "session", Size: 2, PoolKeys: ", transaction_timeout: 400ms"}.yaml(saddr, pg.Addr()))
		sp := &pgProxy{PG: pg, Addr: saddr}
		c, err := pgx.Connect(ctx, sp.dsn("app", "app", "app"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		// Holding its server between transactions is not a transaction.
		time.Sleep(700 * time.Millisecond)
		if _, err := c.Exec(ctx, "select 1"); err != nil {
			t.Fatalf("idle outside a transaction past transaction_timeout: %v", err)
		}
		time.Sleep(700 * time.Millisecond)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatalf("BEGIN after idling: %v", err)
		}
		time.Sleep(700 * time.Millisecond)
		if _, err := tx.Exec(ctx, "select 1"); pgCode(err) != "25P04" {
			t.Errorf("idle in a transaction past transaction_timeout: %v, want 25P04", err)
		}
	})

	t.Run("query_wait_notify", func(t *testing.T) {
		holder, err := pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close(ctx)
		tx, _ := holder.Begin(ctx)
		if _, err := tx.Exec(ctx, "select 1"); err != nil { // holds the pool's one server
			t.Fatal(err)
		}
		var mu sync.Mutex
		var notices []string
		ccfg, _ := pgx.ParseConfig(p.dsn("postgres", "postgres", "app")) // the holder's pool
		ccfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Message)
			mu.Unlock()
		}
		waiter, err := pgx.ConnectConfig(ctx, ccfg)
		if err != nil {
			t.Fatal(err)
		}
		defer waiter.Close(ctx)
		done := make(chan error, 1)
		go func() { _, err := waiter.Exec(ctx, "select 1"); done <- err }()
		time.Sleep(600 * time.Millisecond)
		_ = tx.Commit(ctx)
		if err := <-done; err != nil {
			t.Fatalf("the queued query: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(notices) != 1 || !strings.Contains(notices[0], "waiting for a server connection") {
			t.Errorf("notices: %q, want one about the wait", notices)
		}
		if _, err := waiter.Exec(ctx, "select 1"); err != nil || len(notices) != 1 {
			t.Errorf("a query that did not wait: %v, notices %d", err, len(notices))
		}
	})

	t.Run("client_limits", func(t *testing.T) {
		var conns []*pgx.Conn
		defer func() {
			for _, c := range conns {
				c.Close(ctx)
			}
		}()
		for range 3 {
			c, err := pgx.Connect(ctx, p.dsn("app", "app", "app"))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		_, err := pgx.Connect(ctx, p.dsn("app", "app", "app"))
		if pgCode(err) != "53300" || !strings.Contains(err.Error(), "max_user_client_connections") {
			t.Errorf("a 4th client of app: %v, want 53300 naming max_user_client_connections", err)
		}
		c, err := pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
		if err != nil {
			t.Fatalf("a 4th client of database app, as postgres: %v", err)
		}
		conns = append(conns, c)
		_, err = pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
		if pgCode(err) != "53300" || !strings.Contains(err.Error(), "max_db_client_connections") {
			t.Errorf("a 5th client of database app: %v, want 53300 naming max_db_client_connections", err)
		}
		conns[0].Close(ctx)
		eventually(t, "a slot of app to free", func() bool {
			c, err := pgx.Connect(ctx, p.dsn("app", "app", "app"))
			if err != nil {
				return false
			}
			conns[0] = c
			return true
		})
	})

	t.Run("kill_client", func(t *testing.T) {
		victim := p.connect(t, "application_name=victim")
		if _, err := victim.Exec(ctx, "select 1"); err != nil {
			t.Fatal(err)
		}
		rows, err := admin("SHOW CLIENTS")
		if err != nil {
			t.Fatal(err)
		}
		id := ""
		for _, r := range rows {
			if r["application_name"] == "victim" {
				id = r["id"]
			}
		}
		if id == "" {
			t.Fatalf("SHOW CLIENTS has no victim: %v", rows)
		}
		if _, err := admin("KILL_CLIENT " + id); err != nil {
			t.Fatal(err)
		}
		if _, err := victim.Exec(ctx, "select 1"); pgCode(err) != "57P01" && !victim.IsClosed() {
			t.Errorf("the killed client: %v, want 57P01", err)
		}
		if _, err := admin("KILL_CLIENT " + id); pgCode(err) != "42704" {
			t.Errorf("KILL_CLIENT of a client that is gone: %v, want 42704", err)
		}
		if v := o.metric(`outrigger_pg_client_terminations_total{listener="appdb",reason="kill_client"}`); v != 1 {
			t.Errorf("terminations{kill_client} = %v", v)
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		c := p.connect(t)
		pid := func(q interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}) int {
			t.Helper()
			var n int
			if err := q.QueryRow(ctx, "select pg_backend_pid()").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := pid(c)
		if again := pid(c); again != before {
			t.Fatalf("pool of size 1 gave two servers: %d %d", before, again)
		}
		// A server lent out during RECONNECT closes when it comes back.
		tx, _ := c.Begin(ctx)
		if got := pid(tx); got != before {
			t.Fatalf("in the transaction: %d, want %d", got, before)
		}
		if _, err := admin("RECONNECT app"); err != nil {
			t.Fatal(err)
		}
		if got := pid(tx); got != before {
			t.Errorf("RECONNECT moved a transaction in progress: %d", got)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		after := pid(c)
		if after == before {
			t.Errorf("after RECONNECT the old server %d is still lent", before)
		}
		eventually(t, "the old server to close", func() bool {
			var n int
			sc, err := pgx.Connect(ctx, pg.SuperDSN())
			if err != nil {
				return false
			}
			defer sc.Close(ctx)
			_ = sc.QueryRow(ctx, "select count(*) from pg_stat_activity where pid = $1", before).Scan(&n)
			return n == 0
		})
		// An idle server closes at once.
		if _, err := admin("RECONNECT"); err != nil {
			t.Fatal(err)
		}
		if got := pid(c); got == after {
			t.Errorf("after RECONNECT the idle server %d is still lent", after)
		}
		if _, err := admin("RECONNECT nosuchdb"); pgCode(err) != "3D000" {
			t.Errorf("RECONNECT of an unknown database: %v, want 3D000", err)
		}
	})

	t.Run("show_stats", func(t *testing.T) {
		c := p.connect(t) // pgx caches statements: one Parse, many Binds
		for i := range 5 {
			var n int
			if err := c.QueryRow(ctx, "select $1::int + 41", i).Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := admin("SHOW STATS")
		if err != nil {
			t.Fatal(err)
		}
		var app map[string]string
		for _, r := range rows {
			if r["database"] == "app" && r["user"] == "app" {
				app = r
			}
		}
		if app == nil {
			t.Fatalf("SHOW STATS: no app/app row: %v", rows)
		}
		for _, col := range []string{"total_client_parse_count", "total_server_parse_count", "total_bind_count", "total_server_assignment_count"} {
			if v, ok := app[col]; !ok || v == "0" || v == "" {
				t.Errorf("SHOW STATS %s = %q", col, v)
			}
		}
		var binds, parses int
		fmt.Sscan(app["total_bind_count"], &binds)
		fmt.Sscan(app["total_client_parse_count"], &parses)
		if binds < parses+4 {
			t.Errorf("binds %d, client parses %d: the statement cache should bind more than it parses", binds, parses)
		}
	})
}
