package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outrigger/outrigger/internal/testenv"
)

// pgPolicyYAML is a postgres listener whose user app is governed by a
// read-only rule limited to two tables (and, when rw, by a read-write rule
// on them instead); user postgres has no rule and gets policy.default.
func pgPolicyYAML(listen, upstream, mode string, rw bool) string {
	stmts := "[select]"
	if rw {
		stmts = "[select, insert, update, delete]"
	}
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
reload: {watch: false}
postgres:
  - name: appdb
    listen: %q
    upstream: {address: %q}
    pool: {mode: %s, size: 4}
    auth:
      method: scram-sha-256
      users:
        - {name: app, password: app}
        - {name: postgres, password: postgres}
policy:
  default: allow
  rules:
    - name: reporting
      when: {user: app}
      postgres: {statements: %s, tables: ["public.orders", "public.customers"], functions: [count, sum]}
`, listen, upstream, mode, stmts)
}

// policyFixture creates the tables, view, function and procedure the
// corpus aims at, owned by app, so only the policy stands in the way.
const policyFixture = `
CREATE TABLE orders (id int PRIMARY KEY, amount int);
CREATE TABLE customers (id int PRIMARY KEY, name text);
CREATE TABLE secrets (id int, s text);
INSERT INTO orders VALUES (1, 10);
INSERT INTO customers VALUES (1, 'a');
INSERT INTO secrets VALUES (1, 'top');
CREATE SEQUENCE seq;
CREATE VIEW secret_view AS SELECT * FROM secrets;
CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS $$ UPDATE orders SET amount = amount + 1 RETURNING 1 $$;
CREATE PROCEDURE wipe() LANGUAGE sql AS $$ DELETE FROM orders $$;
`

// policyDB starts a Postgres with policyFixture loaded, and a direct
// connection to it as app (closed when the test ends).
func policyDB(ctx context.Context, t *testing.T) (*testenv.Postgres, *pgx.Conn) {
	t.Helper()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	direct, err := pgx.Connect(ctx, pg.DSN("app", "app", "app"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	mustExec(ctx, t, direct, policyFixture)
	return pg, direct
}

// policyState is what the corpus must leave untouched, read directly
// from Postgres.
func policyState(ctx context.Context, t *testing.T, direct *pgx.Conn) string {
	t.Helper()
	var st string
	err := direct.QueryRow(ctx, `SELECT (SELECT string_agg(id || ':' || amount, ',') FROM orders) || ' ' ||
		(SELECT string_agg(id || ':' || name, ',') FROM customers) || ' ' ||
		(SELECT string_agg(id || ':' || s, ',') FROM secrets) || ' ' ||
		(SELECT count(*) FROM pg_class WHERE relname IN ('t2', 't3', 'tt')) || ' ' ||
		(SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders') || ' ' ||
		(SELECT last_value || ':' || is_called FROM seq) || ' ' ||
		(SELECT count(*) FROM pg_description WHERE objoid = 'orders'::regclass)`).Scan(&st)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// pgBypassCorpus are statements a read-only principal limited to orders
// and customers must not get through, in any protocol.
var pgBypassCorpus = []struct {
	sql        string
	simpleOnly bool // more than one statement, or COPY
}{
	{sql: "DELETE FROM orders"},
	{sql: "delete from ORDERS"},
	{sql: "/* report */ DeLeTe\nFROM orders -- nothing to see"},
	{sql: "UPDATE orders SET amount = 0"},
	{sql: "INSERT INTO orders VALUES (2, 20)"},
	{sql: "SELECT 1; DELETE FROM orders", simpleOnly: true},
	{sql: "SELECT * FROM orders; COMMIT; UPDATE customers SET name = 'x'", simpleOnly: true},
	{sql: "BEGIN; DELETE FROM orders; COMMIT", simpleOnly: true},
	{sql: "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d"},
	{sql: "WITH x AS (SELECT 1) INSERT INTO orders SELECT 3, 30"},
	{sql: "SELECT * FROM orders WHERE id IN (SELECT id FROM (WITH u AS (UPDATE customers SET name = 'y' RETURNING id) SELECT id FROM u) s)"},
	{sql: "SELECT * FROM secrets"},
	{sql: "select * from SECRETS"},
	{sql: `SELECT * FROM "secrets"`},
	{sql: "SELECT * FROM public.secrets"},
	{sql: "TABLE secrets"},
	{sql: "SELECT * FROM orders JOIN secrets USING (id)"},
	{sql: "SELECT * FROM orders WHERE id IN (SELECT id FROM secrets)"},
	{sql: "SELECT (SELECT s FROM secrets LIMIT 1)"},
	{sql: "SELECT * FROM orders, LATERAL (SELECT * FROM secrets) s"},
	{sql: "SELECT id, amount FROM orders UNION SELECT id, 1 FROM secrets"},
	{sql: "VALUES ((SELECT s FROM secrets))"},
	{sql: "SELECT * FROM secret_view"},
	{sql: "SELECT * FROM pg_shadow"},
	{sql: "SELECT bump()"},
	{sql: "SELECT * FROM bump()"},
	{sql: "SELECT count(*) FROM orders WHERE bump() = 1"},
	{sql: "CALL wipe()"},
	{sql: "DO $$BEGIN DELETE FROM orders; END$$"},
	{sql: "COPY orders FROM STDIN", simpleOnly: true},
	{sql: "COPY orders TO '/tmp/outrigger-policy-copy'"},
	{sql: "CREATE TABLE t2 AS SELECT * FROM orders"},
	{sql: "SELECT * INTO t3 FROM orders"},
	{sql: "CREATE TEMP TABLE tt (x int)"},
	{sql: "EXPLAIN ANALYZE DELETE FROM orders"},
	{sql: "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE orders SET amount = 1"},
	{sql: "SELECT set_config('search_path', 'pg_temp', false)"},
	{sql: "SET search_path = secrets_schema"},
	{sql: "PREPARE w AS DELETE FROM orders"},
	{sql: "EXECUTE w"},
	{sql: "EXPLAIN ANALYZE EXECUTE w"},
	{sql: "SELECT nextval('seq')"},
	{sql: "SELECT * FROM orders FOR UPDATE"},
	{sql: "SELECT pg_advisory_lock(1)"},
	{sql: "TRUNCATE orders"},
	{sql: "DROP TABLE orders"},
	{sql: "ALTER TABLE orders ADD COLUMN x int"},
	{sql: "GRANT ALL ON orders TO PUBLIC"},
	{sql: "COMMENT ON TABLE orders IS 'x'"},
	{sql: "MERGE INTO orders o USING customers c ON o.id = c.id WHEN MATCHED THEN DELETE"},
	{sql: "LOCK orders"},
	{sql: "VACUUM orders"},
	{sql: "NOTIFY ch"},
	{sql: "LISTEN ch"},
	{sql: "SELECT lo_import('/etc/hostname')"},
	{sql: "SELEC * FROM orders"},
}

// pgAllowedCorpus must keep working for the same principal.
var pgAllowedCorpus = []string{
	"SELECT * FROM orders",
	"select o.id, c.name from orders o join customers c using (id)",
	"SELECT count(*) FROM public.customers",
	"WITH x AS (SELECT * FROM orders) SELECT sum(amount) FROM x",
	"/* app=report */ SELECT id FROM orders WHERE amount > $1",
}

func TestPGPolicyBypassCorpus(t *testing.T) {
	integrationOnly(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t, 120*time.Second)
			pg, direct := policyDB(ctx, t)
			before := policyState(ctx, t, direct)
			addr := testenv.FreeAddr(t)
			p := &pgProxy{outrigger: startOutrigger(t, pgPolicyYAML(addr, pg.Addr(), mode, false)), PG: pg, Addr: addr}
			c := p.connect(t)
			checks, bypass := 0, 0
			for _, tc := range pgBypassCorpus {
				modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}
				if tc.simpleOnly {
					modes = modes[:1]
				}
				for _, qm := range modes {
					checks++
					var err error
					if strings.HasPrefix(tc.sql, "COPY orders FROM STDIN") {
						_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("7\t70\n"), tc.sql)
					} else {
						_, err = c.Exec(ctx, tc.sql, qm)
					}
					if code := pgCode(err); code != "42501" {
						bypass++
						t.Errorf("%v %q: got %v (SQLSTATE %q), want a 42501 refusal", qm, tc.sql, err, code)
					} else if !strings.Contains(err.Error(), `policy rule "reporting"`) {
						t.Errorf("%v %q: the refusal does not name the rule: %v", qm, tc.sql, err)
					}
					// The session goes on.
					if n := scalar[int64](ctx, t, c, "SELECT count(*) FROM orders"); n != 1 {
						t.Fatalf("after %q: %d orders", tc.sql, n)
					}
				}
			}
			for _, sql := range pgAllowedCorpus {
				for _, qm := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
					var args []any
					if strings.Contains(sql, "$1") {
						args = append(args, 0)
					}
					rows, err := c.Query(ctx, sql, append([]any{qm}, args...)...)
					if err == nil {
						for rows.Next() {
						}
						rows.Close()
						err = rows.Err()
					}
					if err != nil {
						t.Errorf("%v %q: refused: %v", qm, sql, err)
					}
				}
			}
			if after := policyState(ctx, t, direct); after != before {
				t.Errorf("the database changed under the read-only rule:\nbefore %s\nafter  %s", before, after)
			}
			if _, err := os.Stat("/tmp/outrigger-policy-copy"); err == nil {
				t.Error("COPY TO a server file ran")
			}
			t.Logf("%d refusal checks over %d statements, %d bypasses", checks, len(pgBypassCorpus), bypass)
			if v := p.metric(`outrigger_policy_decisions_total{decision="deny",listener="appdb",rule="reporting"}`); v < float64(checks) {
				t.Errorf("deny decisions counted: %v, want at least %d", v, checks)
			}
			// A session with no rule gets policy.default (allow).
			admin, err := pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(ctx)
			mustExec(ctx, t, admin, "UPDATE secrets SET s = s")
		})
	}
}

// A statement refused inside a transaction leaves the transaction failed,
// as Postgres would: what follows gets 25P02 until ROLLBACK, which
// recovers the session; in both protocols and pool modes.
func TestPGPolicyRefusalFailsTransaction(t *testing.T) {
	integrationOnly(t)
	ctx := testCtx(t, 60*time.Second)
	pg, _ := policyDB(ctx, t)
	for _, mode := range []string{"transaction", "session"} {
		addr := testenv.FreeAddr(t)
		p := &pgProxy{outrigger: startOutrigger(t, pgPolicyYAML(addr, pg.Addr(), mode, false)), PG: pg, Addr: addr}
		for _, qm := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			t.Run(fmt.Sprintf("%s/%v", mode, qm), func(t *testing.T) {
				c := p.connect(t)
				mustExec(ctx, t, c, "BEGIN")
				if _, err := c.Exec(ctx, "SELECT * FROM orders", qm); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, "DELETE FROM orders", qm); pgCode(err) != "42501" {
					t.Fatalf("DELETE in a transaction: %v, want 42501", err)
				}
				if _, err := c.Exec(ctx, "SELECT * FROM orders", qm); pgCode(err) != "25P02" {
					t.Fatalf("after a refusal in a transaction: %v, want 25P02", err)
				}
				if st := c.PgConn().TxStatus(); st != 'E' {
					t.Errorf("transaction status %q, want E", st)
				}
				mustExec(ctx, t, c, "ROLLBACK")
				if n := scalar[int64](ctx, t, c, "SELECT count(*) FROM orders"); n != 1 {
					t.Errorf("after ROLLBACK: %d orders", n)
				}
				// Outside a transaction a refusal leaves the session idle.
				if _, err := c.Exec(ctx, "DELETE FROM orders", qm); pgCode(err) != "42501" {
					t.Fatalf("DELETE: %v, want 42501", err)
				}
				if st := c.PgConn().TxStatus(); st != 'I' {
					t.Errorf("transaction status %q after a refusal outside a transaction, want I", st)
				}
			})
		}
	}
}

// A reload from a read-write rule to a read-only rule applies from the
// next statement of an open session, including a statement it prepared
// while writes were allowed.
func TestPGPolicyReload(t *testing.T) {
	integrationOnly(t)
	ctx := testCtx(t, 60*time.Second)
	pg, direct := policyDB(ctx, t)
	addr := testenv.FreeAddr(t)
	o := startOutrigger(t, pgPolicyYAML(addr, pg.Addr(), "transaction", true))
	p := &pgProxy{outrigger: o, PG: pg, Addr: addr}
	c := p.connect(t)
	const upd = "UPDATE orders SET amount = amount + 1 WHERE id = $1"
	if _, err := c.Exec(ctx, upd, 1); err != nil { // prepared and run: allowed
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO orders VALUES (5, 50)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	o.rewrite(pgPolicyYAML(addr, pg.Addr(), "transaction", false))
	o.sigs <- sighup
	eventually(t, "the reload", func() bool {
		return o.metric(`outrigger_config_reloads_total{result="success"}`) >= 2
	})
	if _, err := c.Exec(ctx, "DELETE FROM orders WHERE id = 5", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" {
		t.Errorf("a write after the reload: %v, want 42501", err)
	}
	if _, err := c.Exec(ctx, upd, 1); pgCode(err) != "42501" {
		t.Errorf("a statement prepared before the reload, run after it: %v, want 42501", err)
	}
	if n := scalar[int64](ctx, t, direct, "SELECT count(*) FROM orders"); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
	if n := scalar[int64](ctx, t, c, "SELECT amount FROM orders WHERE id = 1"); n != 11 {
		t.Errorf("amount %d, want 11", n)
	}
}

// A principal identified by its mTLS SPIFFE ID gets its rule; the same
// user with no client certificate gets policy.default.
func TestPGPolicyMTLSPrincipal(t *testing.T) {
	integrationOnly(t)
	ctx := testCtx(t, 60*time.Second)
	pg, _ := policyDB(ctx, t)
	ca := testenv.NewCA(t, "mesh")
	dir := t.TempDir()
	server := ca.Issue(t, testenv.LeafOptions{})
	replaceFile(t, filepath.Join(dir, "ca.crt"), ca.CertPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.crt"), server.CertPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.key"), server.KeyPEM)
	listen := testenv.FreeAddr(t)
	startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
tls:
  mesh: {cert: %[1]s/sidecar.crt, key: %[1]s/sidecar.key, ca: %[1]s/ca.crt, client_auth: request}
postgres:
  - name: secure
    listen: %[2]s
    tls: mesh
    upstream: {address: %[3]s}
    auth: {method: scram-sha-256, users: [{name: app, password: app}]}
policy:
  default: deny
  rules:
    - name: reporting
      when: {principal: "spiffe://example.org/ns/prod/sa/reporting"}
      postgres: {statements: [select], tables: [orders]}
`, dir, listen, pg.Addr()))
	host, port := splitHostPort(t, listen)
	connect := func(leaf *testenv.Leaf) *pgx.Conn {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=app password=app dbname=app sslmode=require", host, port))
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if leaf != nil {
			tc.Certificates = []tls.Certificate{leaf.TLSCertificate()}
		}
		cfg.TLSConfig, cfg.Fallbacks = tc, nil
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	reporting := connect(ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://example.org/ns/prod/sa/reporting"}}))
	if n := scalar[int64](ctx, t, reporting, "SELECT count(*) FROM orders"); n != 1 {
		t.Errorf("the reporting principal read %d orders", n)
	}
	if _, err := reporting.Exec(ctx, "SELECT * FROM secrets"); pgCode(err) != "42501" || !strings.Contains(err.Error(), `"reporting"`) {
		t.Errorf("reporting principal, another table: %v, want 42501 naming the rule", err)
	}
	anonymous := connect(nil)
	_, err := anonymous.Exec(ctx, "SELECT count(*) FROM orders")
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), `"default"`) {
		t.Errorf("no certificate: %v, want 42501 from policy.default", err)
	}
}

// Rate limiting at 100 statements/s with a burst of 10 holds within 10 %
// over 10 s under a flood that asks for far more, in both modes (reject:
// a Go flood counts what got through; delay: pgbench, which stops a client
// at its first error, runs without one), and another principal is not
// slowed down.
func TestPGPolicyRateLimit(t *testing.T) {
	integrationOnly(t)
	pgbench := pgClient(t, "pgbench")
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	for _, onLimit := range []string{"reject", "delay"} {
		t.Run(onLimit, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			p := &pgProxy{outrigger: startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
postgres:
  - name: appdb
    listen: %q
    upstream: {address: %q}
    pool: {mode: transaction, size: 8}
    auth: {method: scram-sha-256, users: [{name: app, password: app}, {name: postgres, password: postgres}]}
policy:
  rate_limits:
    - {name: app-rate, when: {user: app}, rate: 100, burst: 10, per: user, on_limit: %s, max_delay: 2s}
`, addr, pg.Addr(), onLimit)), PG: pg, Addr: addr}
			ctx := testCtx(t, 90*time.Second)
			host, port := splitHostPort(t, addr)
			if onLimit == "delay" {
				ph, pp := splitHostPort(t, pg.Addr())
				cmd := exec.Command(pgbench, "-h", ph, "-p", pp, "-U", "app", "-i", "-s", "1", "-q", "app")
				cmd.Env = append(os.Environ(), "PGPASSWORD=app")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("pgbench -i: %v\n%s", err, out)
				}
			}
			// The other principal runs alongside the flood.
			other := make(chan [2]int, 1)
			stop := make(chan struct{})
			go func() {
				c, err := pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
				if err != nil {
					other <- [2]int{0, 1}
					return
				}
				defer c.Close(context.Background())
				var ok, failed int
				for {
					select {
					case <-stop:
						other <- [2]int{ok, failed}
						return
					default:
					}
					if _, err := c.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
						failed++
					} else {
						ok++
					}
				}
			}()
			// A measure that fails ends the test before close(stop): the
			// other principal stops before the proxy does.
			defer func() {
				select {
				case <-stop:
				default:
					close(stop)
					<-other
				}
			}()
			measure := func() (allowed int, window time.Duration) {
				if onLimit == "reject" {
					return pgFlood(ctx, t, p, 8, 10*time.Second)
				}
				start := time.Now()
				cmd := exec.Command(pgbench, "-h", host, "-p", port, "-U", "app", "-S", "-M", "prepared", "-c", "8", "-j", "2", "-T", "10", "-n", "app")
				cmd.Env = append(os.Environ(), "PGPASSWORD=app")
				out, err := cmd.CombinedOutput()
				window = time.Since(start)
				if err != nil {
					t.Fatalf("pgbench: %v\n%s", err, out)
				}
				m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(string(out))
				if m == nil {
					t.Fatalf("pgbench output:\n%s", out)
				}
				allowed, _ = strconv.Atoi(m[1])
				if f := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(string(out)); f == nil || f[1] != "0" {
					t.Errorf("pgbench failed transactions %v: a delay turned into a refusal", f)
				}
				return allowed, window
			}
			// More than the limit allows is a failure at once. Fewer means
			// the flood itself stalled (a machine busy with other work
			// starves it), not that the limit let less through: the
			// measurement is taken once more, starting from a drained
			// bucket.
			allowed, window := measure()
			if want := 100*window.Seconds() + 10; float64(allowed) < want*0.9 && float64(allowed) <= want*1.1 {
				t.Logf("%s: %d statements allowed in %v, under %.0f - 10%%: the flood stalled; measuring again", onLimit, allowed, window, want)
				allowed, window = measure()
			}
			close(stop)
			o := <-other
			want := 100*window.Seconds() + 10
			t.Logf("%s: %d statements allowed in %v (limit gives %.0f); other principal: %d ok, %d failed", onLimit, allowed, window.Round(time.Millisecond), want, o[0], o[1])
			if float64(allowed) > want*1.1 || float64(allowed) < want*0.9 {
				t.Errorf("%d statements allowed in %v, want %.0f ± 10%%", allowed, window, want)
			}
			if o[1] != 0 || o[0] < 3*int(window.Seconds())*100 {
				t.Errorf("the other principal: %d ok, %d failed in %v; want no failure and far more than the limit", o[0], o[1], window)
			}
		})
	}
}

// pgFlood runs n clients of user app sending SELECT 1 as fast as they can
// for d, and returns how many were allowed and the window they ran in.
func pgFlood(ctx context.Context, t *testing.T, p *pgProxy, n int, d time.Duration) (int, time.Duration) {
	t.Helper()
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := pgx.Connect(ctx, p.dsn("app", "app", "app"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	var mu sync.Mutex
	allowed, other := 0, []error{}
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				_, err := c.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
				mu.Lock()
				switch code := pgCode(err); {
				case err == nil:
					allowed++
				case code != "53400":
					other = append(other, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	window := time.Since(start)
	if len(other) > 0 {
		t.Errorf("%d errors other than the rate limit's 53400, first: %v", len(other), other[0])
	}
	return allowed, window
}
