package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/internal/testenv"
)

// Helpers shared by the pg_clients, pg_leak, pg_faults and pg_load tests.

// pgListenerName is the name pgProxyConfig and pgConf give the listener.
const pgListenerName = "appdb"

// pgConf is a postgres listener config with more knobs than
// pgProxyConfig: the auth method, the users, and keys at the listener
// level.
type pgConf struct {
	Mode     string // session | transaction | statement
	Size     int
	PoolKeys string // extra keys in the pool map, each starting with ", "
	Method   string // default scram-sha-256
	// Users are YAML flow maps, one per user; default app and postgres
	// with their server passwords.
	Users    []string
	Listener string // extra YAML lines at the listener level (indented by 4)
}

func (c pgConf) yaml(listen, upstream string) string {
	method := c.Method
	if method == "" {
		method = "scram-sha-256"
	}
	users := c.Users
	if users == nil {
		users = []string{"{name: app, password: app}", "{name: postgres, password: postgres}"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `admin: {listen: "127.0.0.1:0"}
postgres:
  - name: %s
    listen: %q
    upstream: {address: %q}
    pool: {mode: %s, size: %d%s}
`, pgListenerName, listen, upstream, c.Mode, c.Size, c.PoolKeys)
	if c.Listener != "" {
		for _, l := range strings.Split(strings.TrimRight(c.Listener, "\n"), "\n") {
			b.WriteString("    " + l + "\n")
		}
	}
	fmt.Fprintf(&b, "    auth:\n      method: %s\n", method)
	if len(users) > 0 {
		b.WriteString("      users:\n")
		for _, u := range users {
			b.WriteString("        - " + u + "\n")
		}
	}
	return b.String()
}

// startPGConf starts a throwaway Postgres and an Outrigger in front of it.
func startPGConf(t *testing.T, c pgConf) *pgProxy {
	t.Helper()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	addr := testenv.FreeAddr(t)
	o := startOutrigger(t, c.yaml(addr, pg.Addr()))
	return &pgProxy{outrigger: o, PG: pg, Addr: addr}
}

// pgCode is the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// connectCfg connects to the proxy as app with a config changed by mutate.
func (p *pgProxy) connectCfg(t testing.TB, mutate func(*pgx.ConnConfig), extra ...string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(p.dsn("app", "app", "app", extra...))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through outrigger: %v\n%s", err, p.Logs)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// superConn is a direct superuser connection to the server (not through
// Outrigger), in the app database.
func superConn(t testing.TB, pg *testenv.Postgres) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN(testenv.PostgresSuperUser, testenv.PostgresSuperPassword, testenv.PostgresAppDatabase))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// appBackends lists the pids of the app user's backends, which are
// Outrigger's server connections.
func appBackends(ctx context.Context, super *pgx.Conn) ([]int32, error) {
	rows, err := super.Query(ctx, "select pid from pg_stat_activity where usename = 'app' order by pid")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int32])
}

// pinsMetric is the pins counter for reason (0 when absent).
func (p *pgProxy) pinsMetric(reason string) float64 {
	v := p.metric(fmt.Sprintf(`outrigger_pg_pins_total{listener=%q,reason=%q}`, pgListenerName, reason))
	if v < 0 {
		return 0
	}
	return v
}

// scalar runs sql and scans one value.
func scalar[T any](ctx context.Context, t testing.TB, c *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := c.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// mustExec runs sql (simple protocol when there are no args).
func mustExec(ctx context.Context, t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
