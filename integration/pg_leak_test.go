package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The leak corpus of issue 3: in transaction mode one client's session
// state never reaches another client that shares its pool, and the client
// keeps its own state from one transaction to the next, on whichever server
// it lands.

// sessionView is what a client observes of its session parameters.
type sessionView struct {
	SearchPath, StatementTimeout, XY, AppName string
}

func (v sessionView) String() string {
	return fmt.Sprintf("search_path=%q statement_timeout=%q x.y=%q application_name=%q", v.SearchPath, v.StatementTimeout, v.XY, v.AppName)
}

// viewOf reads c's session parameters in one statement (one transaction).
func viewOf(ctx context.Context, t *testing.T, c *pgx.Conn) sessionView {
	t.Helper()
	var v sessionView
	err := c.QueryRow(ctx, `select current_setting('search_path'), current_setting('statement_timeout'),
		coalesce(current_setting('x.y', true), ''), current_setting('application_name')`).Scan(&v.SearchPath, &v.StatementTimeout, &v.XY, &v.AppName)
	if err != nil {
		t.Fatalf("reading the session's parameters: %v", err)
	}
	return v
}

// viewInTx reads the same inside an explicit transaction, with SHOW.
func viewInTx(ctx context.Context, t *testing.T, c *pgx.Conn) sessionView {
	t.Helper()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var v sessionView
	for _, q := range []struct {
		sql string
		dst *string
	}{
		{"show search_path", &v.SearchPath},
		{"show statement_timeout", &v.StatementTimeout},
		{"select coalesce(current_setting('x.y', true), '')", &v.XY},
		{"show application_name", &v.AppName},
	} {
		if err := tx.QueryRow(ctx, q.sql, pgx.QueryExecModeSimpleProtocol).Scan(q.dst); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}

// runAs runs one statement the way a client of the given protocol would:
// a simple Query, an unnamed extended-protocol statement, or a named
// prepared statement.
func runAs(ctx context.Context, c *pgx.Conn, proto, sql string) error {
	switch proto {
	case "simple":
		_, err := c.PgConn().Exec(ctx, sql).ReadAll()
		return err
	case "extended":
		return c.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
	case "prepared":
		name := fmt.Sprintf("leak_%x", len(sql)*7919+int(sql[len(sql)-1]))
		if _, err := c.PgConn().Prepare(ctx, name, sql, nil); err != nil {
			return err
		}
		return c.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read().Err
	}
	panic(proto)
}

func TestPGLeakSettings(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	for _, proto := range []string{"simple", "extended", "prepared"} {
		t.Run(proto, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			a := p.connect(t)
			b := p.connect(t)
			baseA, baseB := viewOf(ctx, t, a), viewOf(ctx, t, b)
			if baseA != baseB {
				t.Fatalf("two fresh clients differ: A %v, B %v", baseA, baseB)
			}
			for _, sql := range []string{
				"SET search_path TO x",
				"SET statement_timeout = 1234",
				"SELECT set_config('x.y', '1', false)",
				"SET application_name = 'a'",
			} {
				if err := runAs(ctx, a, proto, sql); err != nil {
					t.Fatalf("A: %s: %v", sql, err)
				}
			}
			wantA := sessionView{SearchPath: "x", StatementTimeout: "1234ms", XY: "1", AppName: "a"}
			for round := range 3 {
				if v := viewOf(ctx, t, b); v != baseB {
					t.Fatalf("round %d: B sees %v, want its defaults %v", round, v, baseB)
				}
				if v := viewInTx(ctx, t, b); v != baseB {
					t.Fatalf("round %d: B in a transaction sees %v, want %v", round, v, baseB)
				}
				if v := viewOf(ctx, t, a); v != wantA {
					t.Fatalf("round %d: A sees %v, want its own %v", round, v, wantA)
				}
				if v := viewInTx(ctx, t, a); v != wantA {
					t.Fatalf("round %d: A in a transaction sees %v, want %v", round, v, wantA)
				}
			}
			if got := a.PgConn().ParameterStatus("application_name"); got != "a" {
				t.Errorf("A's ParameterStatus application_name = %q, want a", got)
			}
			if got := b.PgConn().ParameterStatus("application_name"); got != baseB.AppName {
				t.Errorf("B's ParameterStatus application_name = %q, want %q", got, baseB.AppName)
			}
			// A new client after all that starts clean too.
			c := p.connect(t)
			if v := viewOf(ctx, t, c); v != baseB {
				t.Fatalf("a new client sees %v, want %v", v, baseB)
			}
			// RESET ALL takes A back to its defaults, and B stays put.
			if err := runAs(ctx, a, proto, "RESET ALL"); err != nil {
				t.Fatal(err)
			}
			if v := viewOf(ctx, t, a); v.SearchPath != baseA.SearchPath || v.StatementTimeout != baseA.StatementTimeout || v.AppName != baseA.AppName {
				t.Fatalf("A after RESET ALL: %v, want %v", v, baseA)
			}
		})
	}
}

// TestPGLeakStartupParams: parameters a client sets at startup are its
// own; RESET goes back to them, as on Postgres.
func TestPGLeakStartupParams(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t, "application_name=startA", "search_path=sa")
	b := p.connect(t, "application_name=startB")
	for range 3 {
		if v := viewOf(ctx, t, a); v.AppName != "startA" || v.SearchPath != "sa" {
			t.Fatalf("A: %v", v)
		}
		if v := viewOf(ctx, t, b); v.AppName != "startB" || v.SearchPath != `"$user", public` {
			t.Fatalf("B: %v", v)
		}
	}
	mustExec(ctx, t, a, "set application_name = 'changed'")
	if v := viewOf(ctx, t, b); v.AppName != "startB" {
		t.Fatalf("B: %v", v)
	}
	mustExec(ctx, t, a, "reset application_name")
	if v := viewOf(ctx, t, a); v.AppName != "startA" {
		t.Fatalf("A after RESET application_name: %q, want its startup value startA", v.AppName)
	}
}

// TestPGLeakTransactional: SET in a transaction that rolls back does not
// stick; SET LOCAL ends with its transaction; neither reaches B.
func TestPGLeakTransactional(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	b := p.connect(t)
	base := viewOf(ctx, t, b)
	check := func(t *testing.T, what string) {
		t.Helper()
		if v := viewOf(ctx, t, a); v != base {
			t.Fatalf("A after %s: %v, want %v", what, v, base)
		}
		if v := viewOf(ctx, t, b); v != base {
			t.Fatalf("B after A's %s: %v, want %v", what, v, base)
		}
	}
	t.Run("rollback", func(t *testing.T) {
		mustExec(ctx, t, a, "begin")
		mustExec(ctx, t, a, "set statement_timeout = 777")
		mustExec(ctx, t, a, "select set_config('x.y', '7', false)")
		if v := scalar[string](ctx, t, a, "show statement_timeout"); v != "777ms" {
			t.Fatalf("inside the transaction: %q", v)
		}
		mustExec(ctx, t, a, "rollback")
		check(t, "SET; ROLLBACK")
	})
	t.Run("error-then-rollback", func(t *testing.T) {
		mustExec(ctx, t, a, "begin")
		mustExec(ctx, t, a, "set search_path to y")
		if _, err := a.Exec(ctx, "select 1/0"); pgCode(err) != "22012" {
			t.Fatal(err)
		}
		mustExec(ctx, t, a, "rollback")
		check(t, "SET; error; ROLLBACK")
	})
	t.Run("failed-implicit-transaction", func(t *testing.T) {
		if _, err := a.Exec(ctx, "set application_name = 'nope'; select 1/0"); pgCode(err) != "22012" {
			t.Fatal(err)
		}
		check(t, "a multi-statement query that failed")
	})
	t.Run("rollback-to-savepoint", func(t *testing.T) {
		mustExec(ctx, t, a, "begin")
		mustExec(ctx, t, a, "savepoint s")
		mustExec(ctx, t, a, "set application_name = 'sp'")
		mustExec(ctx, t, a, "rollback to savepoint s")
		mustExec(ctx, t, a, "commit")
		check(t, "SAVEPOINT; SET; ROLLBACK TO SAVEPOINT; COMMIT")
	})
	t.Run("set-local", func(t *testing.T) {
		mustExec(ctx, t, a, "begin")
		mustExec(ctx, t, a, "set local statement_timeout = 555")
		mustExec(ctx, t, a, "select set_config('x.y', '5', true)")
		if v := scalar[string](ctx, t, a, "show statement_timeout"); v != "555ms" {
			t.Fatalf("inside the transaction: %q", v)
		}
		mustExec(ctx, t, a, "commit")
		if v := viewOf(ctx, t, a); v.StatementTimeout != base.StatementTimeout || v.SearchPath != base.SearchPath || v.AppName != base.AppName {
			t.Fatalf("A after SET LOCAL; COMMIT: %v, want %v", v, base)
		}
		if v := viewOf(ctx, t, b); v.StatementTimeout != base.StatementTimeout {
			t.Fatalf("B after A's SET LOCAL: %v", v)
		}
	})
	t.Run("commit-sticks", func(t *testing.T) {
		mustExec(ctx, t, a, "begin")
		mustExec(ctx, t, a, "set statement_timeout = 888")
		mustExec(ctx, t, a, "commit")
		if v := viewOf(ctx, t, a); v.StatementTimeout != "888ms" {
			t.Fatalf("A after SET; COMMIT: %v", v)
		}
		if v := viewOf(ctx, t, b); v != base {
			t.Fatalf("B: %v", v)
		}
		mustExec(ctx, t, a, "reset statement_timeout")
	})
}

// TestPGLeakSavepointKeepsOuterSet: what a transaction set before a
// savepoint survives ROLLBACK TO SAVEPOINT and COMMIT, as on Postgres.
func TestPGLeakSavepointKeepsOuterSet(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	b := p.connect(t)
	mustExec(ctx, t, a, "begin")
	mustExec(ctx, t, a, "set statement_timeout = 1111")
	mustExec(ctx, t, a, "savepoint s")
	mustExec(ctx, t, a, "set application_name = 'inner'")
	mustExec(ctx, t, a, "rollback to savepoint s")
	mustExec(ctx, t, a, "commit")
	if v := scalar[string](ctx, t, a, "show statement_timeout"); v != "1111ms" {
		t.Fatalf("A's statement_timeout right after COMMIT: %q, want 1111ms (Postgres keeps the outer SET)", v)
	}
	_ = viewOf(ctx, t, b) // B takes the server between A's transactions
	if v := viewOf(ctx, t, a); v.StatementTimeout != "1111ms" || v.AppName != "" {
		t.Fatalf("A on its next transaction: %v, want statement_timeout 1111ms and no application_name", v)
	}
}

// pinCase is one kind of session state that transaction pooling cannot
// carry: how A makes it, how A shows it still has it, how a session
// shows it does not (run by B, and on every server once A is gone).
type pinCase struct {
	reason string
	setup  string // run by the superuser before the test
	make   string
	// aHas is a query whose first column is true on A's session.
	aHas string
	// clean is a query whose first column is true on a session without
	// A's state; it must not itself pin.
	clean string
}

var pinCases = []pinCase{
	{reason: "set_role", setup: "create role r1; grant r1 to app",
		make: "set role r1", aHas: "select current_user = 'r1'", clean: "select current_user = 'app'"},
	{reason: "temp_table",
		make: "create temp table tt (a int); insert into tt values (1)",
		aHas: "select count(*) = 1 from pg_temp.tt", clean: "select to_regclass('pg_temp.tt') is null"},
	{reason: "advisory_lock",
		make: "select pg_advisory_lock(1)",
		aHas: "select count(*) = 1 from pg_locks where locktype = 'advisory' and objid = 1 and granted and pid = pg_backend_pid()",
		// B's own transaction-scoped try: false while another session holds it.
		clean: "select not exists (select 1 from pg_locks where locktype = 'advisory' and objid = 1 and pid = pg_backend_pid())"},
	{reason: "listen",
		make: "listen ch", aHas: "select 'ch' in (select pg_listening_channels())",
		clean: "select not exists (select 1 from pg_listening_channels())"},
	{reason: "prepare",
		make: "prepare q as select 41 + 1", aHas: "select count(*) = 1 from pg_prepared_statements where name = 'q'",
		clean: "select count(*) = 0 from pg_prepared_statements where name = 'q'"},
	{reason: "with_hold_cursor",
		make: "declare cur cursor with hold for select generate_series(1, 10)",
		aHas: "select count(*) = 1 from pg_cursors where name = 'cur'", clean: "select count(*) = 0 from pg_cursors where name = 'cur'"},
}

func boolOf(ctx context.Context, t *testing.T, c *pgx.Conn, sql string) bool {
	t.Helper()
	var v bool
	if err := c.QueryRow(ctx, sql, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// TestPGLeakPins: with a pool of two, A's session state pins A to its
// server (its backend never changes, B never gets it, the pins metric
// counts it), and once A leaves, no server carries the state on.
func TestPGLeakPins(t *testing.T) {
	integrationOnly(t)
	for _, pc := range pinCases {
		t.Run(pc.reason, func(t *testing.T) {
			p := startPGProxy(t, "transaction", 2, "")
			ctx := testCtx(t, 30*time.Second)
			if pc.setup != "" {
				p.PG.Exec(t, pc.setup)
			}
			a := p.connect(t)
			b := p.connect(t)
			before := p.pinsMetric(pc.reason)
			if _, err := a.Exec(ctx, pc.make); err != nil {
				t.Fatalf("A: %s: %v", pc.make, err)
			}
			aPid := scalar[int32](ctx, t, a, "select pg_backend_pid()")
			for i := range 6 {
				if !boolOf(ctx, t, a, pc.aHas) {
					t.Fatalf("round %d: A lost its own state (%s)", i, pc.aHas)
				}
				if pid := scalar[int32](ctx, t, a, "select pg_backend_pid()"); pid != aPid {
					t.Fatalf("round %d: A moved from backend %d to %d", i, aPid, pid)
				}
				var bPid int32
				var clean bool
				if err := b.QueryRow(ctx, "select pg_backend_pid(), ("+pc.clean+")", pgx.QueryExecModeSimpleProtocol).Scan(&bPid, &clean); err != nil {
					t.Fatal(err)
				}
				if bPid == aPid {
					t.Fatalf("round %d: B got A's pinned backend %d", i, aPid)
				}
				if !clean {
					t.Fatalf("round %d: B sees A's %s (%s is false)", i, pc.reason, pc.clean)
				}
			}
			if got := p.pinsMetric(pc.reason); got != before+1 {
				t.Errorf("outrigger_pg_pins_total{reason=%q} = %v, want %v", pc.reason, got, before+1)
			}
			switch pc.reason {
			case "listen":
				super := superConn(t, p.PG)
				mustExec(ctx, t, super, "notify ch, 'to-a'")
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				n, err := a.WaitForNotification(wctx)
				cancel()
				if err != nil || n.Payload != "to-a" {
					t.Fatalf("A's notification: %+v %v", n, err)
				}
				mustExec(ctx, t, b, "select 1")
				wctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				n, err = b.WaitForNotification(wctx)
				cancel()
				if err == nil {
					t.Fatalf("B got A's notification %+v", n)
				}
			case "advisory_lock":
				if boolOf(ctx, t, b, "select pg_try_advisory_xact_lock(1)") {
					t.Fatal("B took advisory lock 1 while A holds it")
				}
			case "prepare":
				if n := scalar[int](ctx, t, a, "execute q"); n != 42 {
					t.Fatalf("A: execute q: %d", n)
				}
			}
			// A leaves. Both servers, held at once, are clean.
			a.Close(ctx)
			eventually(t, "A's session to end", func() bool { return p.metric(`outrigger_pg_clients{listener="appdb"}`) == 1 })
			b2 := p.connect(t)
			tx1, err := b.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx1.Rollback(ctx)
			tx2, err := b2.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx2.Rollback(ctx)
			pids := map[int32]bool{}
			for i, tx := range []pgx.Tx{tx1, tx2} {
				var pid int32
				var clean, lockFree bool
				if err := tx.QueryRow(ctx, "select pg_backend_pid(), ("+pc.clean+"), not exists (select 1 from pg_locks where locktype = 'advisory')", pgx.QueryExecModeSimpleProtocol).Scan(&pid, &clean, &lockFree); err != nil {
					t.Fatal(err)
				}
				pids[pid] = true
				if !clean || !lockFree {
					t.Errorf("server %d (backend %d) after A left: clean %v, no advisory locks %v", i, pid, clean, lockFree)
				}
			}
			if !pids[aPid] {
				// Closing A's server is as good as cleaning it; say which.
				t.Logf("A's backend %d was closed, not reused", aPid)
			}
		})
	}
}

// TestPGLeakOnSessionStateError: with pool.on_session_state: error, each
// statement that would pin is refused with 0A000, nothing is pinned, and
// the session goes on.
func TestPGLeakOnSessionStateError(t *testing.T) {
	p := startPGProxy(t, "transaction", 2, ", on_session_state: error")
	for _, pc := range pinCases {
		t.Run(pc.reason, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			if pc.setup != "" {
				p.PG.Exec(t, pc.setup)
			}
			a := p.connect(t)
			_, err := a.Exec(ctx, pc.make)
			if code := pgCode(err); code != "0A000" {
				t.Fatalf("A: %s: %v (SQLSTATE %q), want 0A000", pc.make, err, code)
			}
			if !boolOf(ctx, t, a, pc.clean) {
				t.Fatalf("A's refused %s left state behind", pc.reason)
			}
			if got := p.pinsMetric(pc.reason); got != 0 {
				t.Errorf("pins_total{reason=%q} = %v with on_session_state: error", pc.reason, got)
			}
			// The extended protocol is refused the same way.
			if pc.reason == "advisory_lock" {
				_, err := a.Exec(ctx, "select pg_advisory_lock($1)", 1)
				if code := pgCode(err); code != "0A000" {
					t.Fatalf("extended pg_advisory_lock: %v, want 0A000", err)
				}
			}
			if n := scalar[int](ctx, t, a, "select $1::int", 9); n != 9 {
				t.Fatalf("session after the refusal: %d", n)
			}
			if n := scalar[int](ctx, t, a, "select 10"); n != 10 {
				t.Fatalf("session after the refusal: %d", n)
			}
			if strings.Contains(p.Logs.String(), "panic") {
				t.Fatalf("panic in the log:\n%s", p.Logs)
			}
		})
	}
}

// TestPGLeakMultiStatementRollback: a simple query that commits a SET and
// then rolls back a later transaction keeps the committed SET, as on
// Postgres.
func TestPGLeakMultiStatementRollback(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	b := p.connect(t)
	mustExec(ctx, t, a, "begin; set statement_timeout = 2222; commit; begin; set application_name = 'no'; rollback")
	_ = viewOf(ctx, t, b)
	if v := viewOf(ctx, t, a); v.StatementTimeout != "2222ms" || v.AppName != "" {
		t.Fatalf("A: %v, want statement_timeout 2222ms (committed) and no application_name (rolled back)", v)
	}
}

// TestPGLeakParameterStatus: a parameter the server reports
// (application_name) changed where the classifier cannot see it, inside a
// function, is still the client's alone: B never sees it, and A keeps it.
func TestPGLeakParameterStatus(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	p.PG.Exec(t, `create function set_app(v text) returns void language plpgsql as $$ begin perform set_config('application_name', v, false); end $$`)
	a := p.connect(t)
	b := p.connect(t)
	base := viewOf(ctx, t, b)
	mustExec(ctx, t, a, "select set_app('from-a')")
	if got := a.PgConn().ParameterStatus("application_name"); got != "from-a" {
		t.Fatalf("A's ParameterStatus application_name = %q", got)
	}
	if v := viewOf(ctx, t, b); v.AppName != base.AppName {
		t.Fatalf("B sees application_name %q that A set in a function; want %q", v.AppName, base.AppName)
	}
	if v := viewOf(ctx, t, a); v.AppName != "from-a" {
		t.Fatalf("A lost its application_name: %q", v.AppName)
	}
}

// TestPGLeakPreparedNames: in transaction mode clients that use the same
// statement names for different statements, on one server, each run their
// own.
func TestPGLeakPreparedNames(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	b := p.connect(t)
	if _, err := a.Prepare(ctx, "s1", "select 'a:' || $1::text"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx, "s1", "select 'b:' || $1::int::text"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if s := scalar[string](ctx, t, a, "s1", "x"); s != "a:x" {
			t.Fatalf("round %d: A's s1 gave %q", i, s)
		}
		if s := scalar[string](ctx, t, b, "s1", i); s != "b:"+fmt.Sprint(i) {
			t.Fatalf("round %d: B's s1 gave %q", i, s)
		}
	}
	// B drops its s1; A's is untouched, B's is gone.
	if err := b.Deallocate(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if s := scalar[string](ctx, t, a, "s1", "y"); s != "a:y" {
		t.Fatalf("A's s1 after B deallocated its own: %q", s)
	}
	_, err := b.PgConn().ExecPrepared(ctx, "s1", [][]byte{[]byte("1")}, nil, nil).Close()
	if code := pgCode(err); code != "26000" {
		t.Fatalf("B's deallocated s1: %v (SQLSTATE %q), want 26000", err, code)
	}
}

// TestPGLeakForeignStatement: a client that binds a statement it never
// parsed gets 26000, as on Postgres; it must not run what another client
// left on the server: the unnamed statement, or a shared prepared
// statement under Outrigger's server-side name.
func TestPGLeakForeignStatement(t *testing.T) {
	p := startPGProxy(t, "transaction", 1, "")
	ctx := testCtx(t, 30*time.Second)
	a := p.connect(t)
	b := p.connect(t)
	// A leaves an unnamed statement and a named one on the one server.
	rr := a.PgConn().ExecParams(ctx, "select 'unnamed secret of A'::text", nil, nil, nil, nil).Read()
	if rr.Err != nil || len(rr.Rows) != 1 {
		t.Fatalf("A: %v %v", rr.Err, rr.Rows)
	}
	const named = "select 'named secret of A'::text"
	if _, err := a.PgConn().Prepare(ctx, "s1", named, nil); err != nil {
		t.Fatal(err)
	}
	// Outrigger's server-side name for it: "_or_" and 12 bytes of
	// sha256(query, NUL, the Parse's parameter-type bytes).
	h := sha256.Sum256([]byte(named + "\x00\x00\x00"))
	shared := "_or_" + hex.EncodeToString(h[:12])
	for _, name := range []string{"", shared} {
		f := b.PgConn().Frontend()
		f.Send(&pgproto3.Bind{PreparedStatement: name})
		f.Send(&pgproto3.Execute{})
		f.Send(&pgproto3.Sync{})
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = b.PgConn().Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []string
		code := ""
		for done := false; !done; {
			m, err := f.Receive()
			if err != nil {
				t.Fatalf("B: %v", err)
			}
			switch m := m.(type) {
			case *pgproto3.DataRow:
				got = append(got, string(m.Values[0]))
			case *pgproto3.ErrorResponse:
				code = m.Code
			case *pgproto3.ReadyForQuery:
				done = true
			}
		}
		if len(got) > 0 {
			t.Fatalf("B bound statement %q it never parsed and got A's %q", name, got)
		}
		if code != "26000" {
			t.Fatalf("B's Bind of statement %q it never parsed: SQLSTATE %q, want 26000", name, code)
		}
	}
}
