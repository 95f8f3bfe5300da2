package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outrigger/outrigger/internal/testenv"
)

// pgClient finds a Postgres client binary (psql, pgbench) or skips.
func pgClient(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if dir, err := testenv.PostgresBinDir(); err == nil {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Skipf("%s not found (apt-get install postgresql-client)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tcpConfig(listeners string) string {
	return fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
log: {level: debug}
shutdown: {drain_timeout: 5s}
tcp:
%s`, listeners)
}

// TestPgbenchThroughTCPListener runs pgbench -S with 32 clients for 10 s
// through a tcp listener in front of a real Postgres: no errors allowed.
func TestPgbenchThroughTCPListener(t *testing.T) {
	integrationOnly(t)
	pgbench := pgClient(t, "pgbench")
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{ExtraConf: map[string]string{"max_connections": "100"}})
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, tcpConfig(fmt.Sprintf("  - {name: pg, listen: %s, upstream: {address: %s}}\n", listen, pg.Addr())))
	host, port := splitHostPort(t, listen)

	env := append(os.Environ(), "PGPASSWORD="+testenv.PostgresAppPassword)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(pgbench, append([]string{"-h", host, "-p", port, "-U", testenv.PostgresAppUser}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-i", "-s", "1", "-q", testenv.PostgresAppDatabase)
	out := run("-S", "-c", "32", "-j", "2", "-T", "10", "-n", testenv.PostgresAppDatabase)
	t.Logf("pgbench -S -c 32 -T 10 through outrigger:\n%s", out)
	if m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out); m == nil || m[1] != "0" {
		t.Errorf("failed transactions: %v", m)
	}
	m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("no transactions processed")
	}
	if v := o.metric(`outrigger_listener_connections_accepted_total{kind="tcp",listener="pg"}`); v < 33 {
		t.Errorf("accepted connections metric = %v, want >= 33", v)
	}
}

// TestRedisBenchmarkThroughTCPListener runs redis-benchmark -t get,set,
// without and with pipelining, through a tcp listener: no errors allowed.
func TestRedisBenchmarkThroughTCPListener(t *testing.T) {
	integrationOnly(t)
	bench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark not found (apt-get install redis-tools)")
	}
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, tcpConfig(fmt.Sprintf("  - {name: cache, listen: %s, upstream: {address: %s}}\n", listen, rd.Addr)))
	host, port := splitHostPort(t, listen)
	for _, pipeline := range []string{"1", "16"} {
		cmd := exec.Command(bench, "-h", host, "-p", port, "-t", "get,set", "-n", "20000", "-c", "50", "-P", pipeline, "--csv")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-benchmark -P %s: %v\n%s", pipeline, err, out)
		}
		text := string(out)
		t.Logf("redis-benchmark -P %s:\n%s", pipeline, text)
		if strings.Contains(strings.ToLower(text), "error") {
			t.Errorf("redis-benchmark reported errors:\n%s", text)
		}
		for _, test := range []string{`"SET"`, `"GET"`} {
			if !strings.Contains(text, test) {
				t.Errorf("no %s result in:\n%s", test, text)
			}
		}
	}
	// The data went through: a key set through the proxy is in the server.
	c := rd.Client(t)
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n == 0 {
		t.Errorf("dbsize after benchmark = %d, %v", n, err)
	}
}

// TestPgxThroughTCPListener checks a plain pgx session (SCRAM auth, extended
// protocol, a transaction) through the L4 proxy.
func TestPgxThroughTCPListener(t *testing.T) {
	integrationOnly(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	listen := testenv.FreeAddr(t)
	startOutrigger(t, tcpConfig(fmt.Sprintf("  - {name: pg, listen: %s, upstream: {address: %s}}\n", listen, pg.Addr())))
	host, port := splitHostPort(t, listen)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:app@%s:%s/app?sslmode=disable", host, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE t (id int primary key, v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES ($1, $2)", 1, "one"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM t WHERE id = $1", 1).Scan(&v); err != nil || v != "one" {
		t.Fatalf("select: %q %v", v, err)
	}
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	return addr[:i], addr[i+1:]
}
