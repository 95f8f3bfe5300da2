package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/internal/testenv"
)

// pgProxy is a postgres listener in front of a throwaway Postgres.
type pgProxy struct {
	*outrigger
	PG   *testenv.Postgres
	Addr string
}

// pgProxyConfig is a postgres listener for upstream with the given pool
// mode and size; users app (scram) and md5user, the server's own passwords.
func pgProxyConfig(listen, upstream, mode string, size int, extra string) string {
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
postgres:
  - name: appdb
    listen: %q
    upstream: {address: %q}
    pool: {mode: %s, size: %d, acquire_timeout: 5s%s}
    auth:
      method: scram-sha-256
      users:
        - {name: app, password: app}
        - {name: postgres, password: postgres}
`, listen, upstream, mode, size, extra)
}

func startPGProxy(t *testing.T, mode string, size int, extra string) *pgProxy {
	t.Helper()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	addr := testenv.FreeAddr(t)
	o := startOutrigger(t, pgProxyConfig(addr, pg.Addr(), mode, size, extra))
	return &pgProxy{outrigger: o, PG: pg, Addr: addr}
}

// dsn is a client DSN for the proxy.
func (p *pgProxy) dsn(user, password, db string, extra ...string) string {
	host, port, _ := net.SplitHostPort(p.Addr)
	s := fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable", host, port, user, password, db)
	for _, e := range extra {
		s += " " + e
	}
	return s
}

func (p *pgProxy) connect(t testing.TB, extra ...string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn("app", "app", "app", extra...))
	if err != nil {
		t.Fatalf("connect through outrigger: %v\n%s", err, p.Logs)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestPGSmoke(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			p := startPGProxy(t, mode, 2, "")
			ctx := testCtx(t, 30*time.Second)
			c := p.connect(t)
			var n int
			if err := c.QueryRow(ctx, "select $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
				t.Fatalf("select: %v %d", err, n)
			}
			for i := range 20 {
				var s string
				if err := c.QueryRow(ctx, "select $1::text", strconv.Itoa(i)).Scan(&s); err != nil || s != strconv.Itoa(i) {
					t.Fatalf("select %d: %v %q", i, err, s)
				}
			}
			if _, err := c.Exec(ctx, "create table if not exists t (id int primary key, v text)"); err != nil {
				t.Fatal(err)
			}
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "insert into t values (1, 'a') on conflict do nothing"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			var v string
			if err := c.QueryRow(ctx, "select v from t where id = 1").Scan(&v); err != nil || v != "a" {
				t.Fatalf("read back: %v %q", err, v)
			}
			_, err = c.Exec(ctx, "select 1/0")
			if err == nil {
				t.Fatal("division by zero did not fail")
			}
			if err := c.QueryRow(ctx, "select 7").Scan(&n); err != nil || n != 7 {
				t.Fatalf("after error: %v %d", err, n)
			}
		})
	}
}

// TestPGBenchModes runs pgbench in every query mode, with and without a new
// connection per transaction, through session and transaction pooling
// (SCRAM from pgbench to Outrigger and from Outrigger to Postgres): no
// failed transactions, and never more server connections than the pool.
func TestPGBenchModes(t *testing.T) {
	integrationOnly(t)
	pgbench := pgClient(t, "pgbench")
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			p := startPGProxy(t, mode, 4, "")
			host, port := splitHostPort(t, p.Addr)
			env := append(os.Environ(), "PGPASSWORD=app")
			run := func(args ...string) string {
				t.Helper()
				cmd := exec.Command(pgbench, append([]string{"-h", host, "-p", port, "-U", "app"}, args...)...)
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("pgbench %v: %v\n%s\n%s", args, err, out, p.Logs)
				}
				return string(out)
			}
			run("-i", "-s", "1", "-q", "app")
			clients := "8"
			if mode == "session" {
				clients = "4" // one server per client: no more than the pool
			}
			for _, qm := range []string{"simple", "extended", "prepared"} {
				for _, connect := range []bool{false, true} {
					args := []string{"-M", qm, "-c", clients, "-j", "2", "-t", "200", "-n", "app"}
					if connect {
						args = append([]string{"-C"}, args...)
						args[len(args)-3] = "50"
					}
					out := run(args...)
					if m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out); m == nil || m[1] != "0" {
						t.Errorf("pgbench %v: failed transactions %v\n%s", args, m, out)
					}
					if m := regexp.MustCompile(`number of transactions actually processed: (\d+)/`).FindStringSubmatch(out); m == nil || m[1] == "0" {
						t.Errorf("pgbench %v: nothing processed\n%s", args, out)
					}
				}
			}
			n := serverConnections(t, p.PG)
			if n > 4 {
				t.Errorf("upstream has %d connections from outrigger, pool size is 4", n)
			}
		})
	}
}

// serverConnections counts the app user's backends on pg.
func serverConnections(t *testing.T, pg *testenv.Postgres) int {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c, err := pgx.Connect(ctx, pg.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "select count(*) from pg_stat_activity where usename = 'app'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPGLimits checks pool.max_clients, client_idle_timeout,
// idle_in_transaction_timeout and query_timeout against real clients.
func TestPGLimits(t *testing.T) {
	p := startPGProxy(t, "transaction", 2, ", max_clients: 2, client_idle_timeout: 700ms, idle_in_transaction_timeout: 700ms, query_timeout: 700ms")
	ctx := testCtx(t, 30*time.Second)

	t.Run("query_timeout", func(t *testing.T) {
		c := p.connect(t)
		_, err := c.Exec(ctx, "select pg_sleep(5)")
		if code := sqlState(err); code != "57014" {
			t.Fatalf("pg_sleep(5) with query_timeout 700ms: %v (SQLSTATE %q), want 57014", err, code)
		}
		var n int
		if err := c.QueryRow(ctx, "select 1").Scan(&n); err != nil {
			t.Fatalf("session not usable after the timeout: %v", err)
		}
	})
	// Sessions end a moment after their clients close: wait for the
	// previous sub-test's clients to be gone before counting.
	waitClients := func(t *testing.T, n float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for p.metric(`outrigger_pg_clients{listener="appdb"}`) > n {
			if time.Now().After(deadline) {
				t.Fatalf("outrigger_pg_clients stays above %v", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Run("max_clients", func(t *testing.T) {
		waitClients(t, 0)
		a := p.connect(t)
		_ = a
		b := p.connect(t)
		_ = b
		c, err := pgx.Connect(ctx, p.dsn("app", "app", "app"))
		if err == nil {
			c.Close(ctx)
			t.Fatal("a third client got in with max_clients 2")
		}
		if code := sqlState(err); code != "53300" {
			t.Fatalf("third client: %v (SQLSTATE %q), want 53300", err, code)
		}
	})
	t.Run("client_idle_timeout", func(t *testing.T) {
		waitClients(t, 0)
		c := p.connect(t)
		time.Sleep(1500 * time.Millisecond)
		_, err := c.Exec(ctx, "select 1")
		if err == nil {
			t.Fatal("idle session still open after client_idle_timeout")
		}
	})
	t.Run("idle_in_transaction_timeout", func(t *testing.T) {
		waitClients(t, 0)
		c := p.connect(t)
		if _, err := c.Exec(ctx, "begin"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "create temp table if not exists x (a int) on commit drop"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if _, err := c.Exec(ctx, "select 1"); err == nil {
			t.Fatal("session idle in transaction still open after idle_in_transaction_timeout")
		}
		// The server went back clean: a new client is not in a transaction.
		d := p.connect(t)
		var inTx bool
		if err := d.QueryRow(ctx, "select txid_current_if_assigned() is not null").Scan(&inTx); err != nil || inTx {
			t.Fatalf("next client: in transaction %v, err %v", inTx, err)
		}
	})
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestPGAdminConsole connects psql to the virtual database "outrigger" and
// checks SHOW POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, VERSION and
// PAUSE/RESUME against live traffic.
func TestPGAdminConsole(t *testing.T) {
	psql := pgClient(t, "psql")
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	addr := testenv.FreeAddr(t)
	cfg := pgProxyConfig(addr, pg.Addr(), "transaction", 2, "") + "    admin_users: [postgres]\n"
	o := startOutrigger(t, cfg)
	p := &pgProxy{outrigger: o, PG: pg, Addr: addr}
	ctx := testCtx(t, 30*time.Second)
	c := p.connect(t)
	if _, err := c.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, addr)
	admin := func(cmd string) string {
		t.Helper()
		out, err := runCmd(psql, []string{"PGPASSWORD=postgres"}, "-h", host, "-p", port, "-U", "postgres", "-d", "outrigger", "-A", "-F", "|", "-c", cmd)
		if err != nil {
			t.Fatalf("psql -c %q: %v\n%s", cmd, err, out)
		}
		return out
	}
	pools := admin("SHOW POOLS")
	if !strings.Contains(pools, "database|user|cl_active|cl_waiting|sv_active|sv_idle") || !strings.Contains(pools, "app|app|1|0|") {
		t.Errorf("SHOW POOLS:\n%s", pools)
	}
	if out := admin("SHOW CLIENTS"); !strings.Contains(out, "C|app|app|idle|127.0.0.1|") {
		t.Errorf("SHOW CLIENTS:\n%s", out)
	}
	if out := admin("SHOW SERVERS"); !strings.Contains(out, "S|app|app|idle|127.0.0.1|") {
		t.Errorf("SHOW SERVERS:\n%s", out)
	}
	if out := admin("SHOW STATS"); !regexp.MustCompile(`app\|app\|[1-9]\d*\|[1-9]\d*\|`).MatchString(out) {
		t.Errorf("SHOW STATS:\n%s", out)
	}
	for cmd, want := range map[string]string{"SHOW DATABASES": "transaction", "SHOW CONFIG": "pool_mode|transaction", "SHOW VERSION": "Outrigger"} {
		if out := admin(cmd); !strings.Contains(out, want) {
			t.Errorf("%s: want %q in\n%s", cmd, want, out)
		}
	}
	if out := admin("PAUSE"); !strings.Contains(out, "PAUSE") {
		t.Errorf("PAUSE:\n%s", out)
	}
	done := make(chan error, 1)
	finished := make(chan struct{})
	qctx, qcancel := context.WithCancel(ctx)
	go func() {
		defer close(finished)
		var n int
		done <- c.QueryRow(qctx, "select 5").Scan(&n)
	}()
	// c is closed at cleanup: a query still waiting (RESUME failed) is
	// cancelled and over by then.
	defer func() { qcancel(); <-finished }()
	select {
	case err := <-done:
		t.Fatalf("a query ran while paused (err %v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	admin("RESUME")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("query after RESUME: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("query still waiting after RESUME")
	}
	// A non-admin user cannot use the console.
	if out, err := runCmd(psql, []string{"PGPASSWORD=app"}, "-h", host, "-p", port, "-U", "app", "-d", "outrigger", "-c", "SHOW POOLS"); err == nil {
		t.Errorf("app used the admin console:\n%s", out)
	}
}

func runCmd(bin string, env []string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPGTLSCertAuthAndUnixSocket: a TLS listener with client_auth require
// and auth.method cert lets in the SPIFFE identity mapped to app and no
// one else; a listener on a Unix socket serves psql-style host=/dir.
func TestPGTLSCertAuthAndUnixSocket(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	ca := testenv.NewCA(t, "mesh")
	dir := t.TempDir()
	server := ca.Issue(t, testenv.LeafOptions{})
	replaceFile(t, filepath.Join(dir, "ca.crt"), ca.CertPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.crt"), server.CertPEM)
	replaceFile(t, filepath.Join(dir, "sidecar.key"), server.KeyPEM)
	sockDir := t.TempDir()
	listen := testenv.FreeAddr(t)
	startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
tls:
  mesh: {cert: %[1]s/sidecar.crt, key: %[1]s/sidecar.key, ca: %[1]s/ca.crt, client_auth: require}
postgres:
  - name: secure
    listen: %[2]s
    tls: mesh
    upstream: {address: %[3]s}
    auth:
      method: cert
      users:
        - {name: app, principals: ["spiffe://example.org/*/app"], upstream_password: app}
  - name: local
    listen: unix:%[4]s/.s.PGSQL.6432
    upstream: {address: %[3]s}
    auth: {method: md5, users: [{name: app, password: localpw, upstream_password: app}]}
`, dir, listen, pg.Addr(), sockDir))
	ctx := testCtx(t, 30*time.Second)
	host, port := splitHostPort(t, listen)
	connect := func(leaf *testenv.Leaf, user string) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=app sslmode=require", host, port, user))
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if leaf != nil {
			cert := leaf.TLSCertificate()
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLSConfig = tc
		cfg.Fallbacks = nil
		return pgx.ConnectConfig(ctx, cfg)
	}
	good := ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://example.org/prod/app"}})
	c, err := connect(good, "app")
	if err != nil {
		t.Fatalf("mapped identity refused: %v", err)
	}
	var ssl bool
	if err := c.QueryRow(ctx, "select 1 = 1").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("query over TLS: %v", err)
	}
	c.Close(ctx)
	other := ca.Issue(t, testenv.LeafOptions{Client: true, URIs: []string{"spiffe://example.org/prod/billing"}})
	if c, err := connect(other, "app"); err == nil {
		c.Close(ctx)
		t.Error("an identity not mapped to app logged in as app")
	} else if code := sqlState(err); code != "28000" {
		t.Errorf("unmapped identity: %v (SQLSTATE %q), want 28000", err, code)
	}
	if c, err := connect(nil, "app"); err == nil {
		c.Close(ctx)
		t.Error("a client without a certificate logged in")
	}
	// Plaintext to a TLS listener is refused.
	if c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=app dbname=app sslmode=disable", host, port)); err == nil {
		c.Close(ctx)
		t.Error("plaintext client accepted on a TLS listener")
	}

	uc, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=6432 user=app password=localpw dbname=app sslmode=disable", sockDir))
	if err != nil {
		t.Fatalf("unix socket with md5: %v", err)
	}
	defer uc.Close(ctx)
	var n int
	if err := uc.QueryRow(ctx, "select 3").Scan(&n); err != nil || n != 3 {
		t.Fatalf("unix socket query: %v %d", err, n)
	}
}
