package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The client half of issue 3's "Done when": stock clients (pgx in every
// query mode, psql) through session and transaction pooling, with SCRAM
// from the client to Outrigger and from Outrigger to Postgres; the other
// auth methods; and the login failures a client must see as Postgres
// would show them.

func TestPGClients(t *testing.T) {
	integrationOnly(t)
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			p := startPGProxy(t, mode, 4, "")
			p.PG.Exec(t, `create table copy_t (id int primary key, v text, ts timestamptz);
				create table batch_t (id int primary key, v text);
				create table big (id int primary key, v text);
				create table ms (a int);
				create table copy_p (a int);
				alter table copy_p owner to app; alter table copy_t owner to app; alter table batch_t owner to app;
				alter table big owner to app; alter table ms owner to app`)

			t.Run("simple", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				c := p.connectCfg(t, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol })
				checkQueries(t, c, "simple")
				// Multi-statement simple query (Exec without args).
				if _, err := c.Exec(ctx, "select 1; select 2; select 3"); err != nil {
					t.Fatal(err)
				}
				// And a mode given per query on a default-mode connection.
				d := p.connect(t)
				var s string
				if err := d.QueryRow(ctx, "select $1::text || $2::text", pgx.QueryExecModeSimpleProtocol, "it's", ` a \ test`).Scan(&s); err != nil || s != `it's a \ test` {
					t.Fatalf("per-query simple protocol: %q %v", s, err)
				}
			})

			for _, qm := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
				t.Run("extended/"+qm.String(), func(t *testing.T) {
					// Four clients at once, so in transaction mode each
					// lands on servers that lack its statements.
					var wg sync.WaitGroup
					defer wg.Wait() // a failed connect: the clients started use conns closed at cleanup
					errs := make(chan error, 4)
					for i := range 4 {
						c := p.connectCfg(t, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = qm })
						wg.Add(1)
						go func() {
							defer wg.Done()
							for j := range 25 {
								if err := queriesOnce(c, fmt.Sprintf("c%d-%d", i, j)); err != nil {
									errs <- fmt.Errorf("client %d iteration %d: %w", i, j, err)
									return
								}
							}
						}()
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						t.Error(err)
					}
				})
			}

			t.Run("extended/named-prepare", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				c := p.connect(t)
				hold := p.connect(t) // holds a server in a transaction now and then
				if _, err := c.Prepare(ctx, "add", "select $1::int + $2::int"); err != nil {
					t.Fatal(err)
				}
				for i := range 20 {
					if i%5 == 2 {
						mustExec(ctx, t, hold, "begin")
						mustExec(ctx, t, hold, "select 1")
					}
					var n int
					if err := c.QueryRow(ctx, "add", i, 1000).Scan(&n); err != nil || n != i+1000 {
						t.Fatalf("prepared add(%d): %d %v", i, n, err)
					}
					if i%5 == 2 {
						mustExec(ctx, t, hold, "commit")
					}
				}
				if err := c.Deallocate(ctx, "add"); err != nil {
					t.Fatal(err)
				}
				// After deallocate the same name can be prepared again, with another text.
				if _, err := c.Prepare(ctx, "add", "select $1::int - $2::int"); err != nil {
					t.Fatal(err)
				}
				if n := scalar[int](ctx, t, c, "add", 10, 3); n != 7 {
					t.Fatalf("re-prepared add: %d, want 7", n)
				}
				// An error in the extended protocol, then the session goes on.
				if _, err := c.Exec(ctx, "select $1::int / 0", 1); pgCode(err) != "22012" {
					t.Fatalf("division by zero: %v", err)
				}
				if n := scalar[int](ctx, t, c, "select $1::int", 5); n != 5 {
					t.Fatalf("after error: %d", n)
				}
			})

			for _, qm := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
				t.Run("batch/"+qm.String(), func(t *testing.T) {
					ctx := testCtx(t, 30*time.Second)
					c := p.connectCfg(t, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = qm })
					mustExec(ctx, t, c, "delete from batch_t")
					b := &pgx.Batch{}
					type want struct {
						kind string
						v    any
					}
					var wants []want
					for i := range 50 {
						switch i % 4 {
						case 0:
							b.Queue("select $1::int * 2", i)
							wants = append(wants, want{"int", i * 2})
						case 1:
							b.Queue("insert into batch_t values ($1, $2)", i, "v"+strconv.Itoa(i))
							wants = append(wants, want{"exec", "INSERT 0 1"})
						case 2:
							b.Queue("select $1::text", "t"+strconv.Itoa(i))
							wants = append(wants, want{"text", "t" + strconv.Itoa(i)})
						case 3:
							b.Queue("select count(*)::int from batch_t")
							wants = append(wants, want{"int", (i + 2) / 4})
						}
					}
					br := c.SendBatch(ctx, b)
					for i, w := range wants {
						switch w.kind {
						case "int":
							var n int
							if err := br.QueryRow().Scan(&n); err != nil || n != w.v.(int) {
								t.Fatalf("batch query %d: %d %v, want %v", i, n, err, w.v)
							}
						case "text":
							var s string
							if err := br.QueryRow().Scan(&s); err != nil || s != w.v.(string) {
								t.Fatalf("batch query %d: %q %v, want %v", i, s, err, w.v)
							}
						case "exec":
							tag, err := br.Exec()
							if err != nil || tag.String() != w.v.(string) {
								t.Fatalf("batch exec %d: %q %v", i, tag, err)
							}
						}
					}
					if err := br.Close(); err != nil {
						t.Fatal(err)
					}
					if n := scalar[int](ctx, t, c, "select count(*)::int from batch_t"); n != 13 {
						t.Fatalf("batch inserted %d rows, want 13", n)
					}
				})
			}

			t.Run("copyfrom", func(t *testing.T) {
				ctx := testCtx(t, 30*time.Second)
				c := p.connect(t)
				mustExec(ctx, t, c, "delete from copy_t")
				ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
				rows := make([][]any, 10000)
				for i := range rows {
					rows[i] = []any{i, fmt.Sprintf("row %d\ttab \\ back", i), ts.Add(time.Duration(i) * time.Second)}
				}
				n, err := c.CopyFrom(ctx, pgx.Identifier{"copy_t"}, []string{"id", "v", "ts"}, pgx.CopyFromRows(rows))
				if err != nil || n != 10000 {
					t.Fatalf("CopyFrom: %d %v", n, err)
				}
				var cnt, sum int64
				var v string
				if err := c.QueryRow(ctx, "select count(*), sum(id), (select v from copy_t where id = 4242) from copy_t").Scan(&cnt, &sum, &v); err != nil {
					t.Fatal(err)
				}
				if cnt != 10000 || sum != 10000*9999/2 || v != "row 4242\ttab \\ back" {
					t.Fatalf("after CopyFrom: count %d sum %d v %q", cnt, sum, v)
				}
			})

			// pgx pipelines its CopyData right behind the COPY query, without
			// waiting for CopyInResponse (the protocol allows it). Small
			// copies, whose first CopyData follows at once, must work too.
			t.Run("copyfrom-small", func(t *testing.T) {
				ctx := testCtx(t, 15*time.Second)
				c := p.connect(t)
				mustExec(ctx, t, c, "delete from copy_t")
				ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
				for i := range 20 {
					rows := [][]any{{2 * i, "a", ts}, {2*i + 1, "b", ts}}
					if n, err := c.CopyFrom(ctx, pgx.Identifier{"copy_t"}, []string{"id", "v", "ts"}, pgx.CopyFromRows(rows)); err != nil || n != 2 {
						t.Fatalf("CopyFrom %d: %d %v", i, n, err)
					}
				}
				// A COPY that fails (duplicate key) leaves the session usable.
				_, err := c.CopyFrom(ctx, pgx.Identifier{"copy_t"}, []string{"id", "v", "ts"}, pgx.CopyFromRows([][]any{{0, "dup", ts}}))
				if pgCode(err) != "23505" {
					t.Fatalf("duplicate CopyFrom: %v, want 23505", err)
				}
				// CopyFrom inside a transaction that rolls back.
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				extra := [][]any{{20000, "x", ts}, {20001, "y", ts}}
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"copy_t"}, []string{"id", "v", "ts"}, pgx.CopyFromRows(extra)); err != nil {
					t.Fatal(err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Fatal(err)
				}
				if n := scalar[int](ctx, t, c, "select count(*)::int from copy_t"); n != 40 {
					t.Fatalf("after the copies: %d rows, want 40", n)
				}
			})

			// The same at the protocol level: Query, CopyData and CopyDone in
			// one write. Postgres itself takes it (checked first).
			t.Run("copy-pipelined-raw", func(t *testing.T) {
				direct, err := pipelinedCopy(p.PG.DSN("app", "app", "app"))
				if err != nil || direct != "COPY 3" {
					t.Fatalf("direct to Postgres: %q %v", direct, err)
				}
				got, err := pipelinedCopy(p.dsn("app", "app", "app"))
				if err != nil || got != "COPY 3" {
					t.Fatalf("through outrigger: %q %v (direct: %q)", got, err, direct)
				}
			})

			listenModes := []string{"session"}
			if mode == "transaction" {
				listenModes = nil // covered by the pin tests of TestPGLeak
			}
			for range listenModes {
				t.Run("listen-notify", func(t *testing.T) {
					ctx := testCtx(t, 30*time.Second)
					a := p.connect(t)
					b := p.connect(t)
					mustExec(ctx, t, a, "listen ch")
					mustExec(ctx, t, b, "notify ch, 'hello'")
					wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					n, err := a.WaitForNotification(wctx)
					if err != nil {
						t.Fatalf("WaitForNotification: %v", err)
					}
					if n.Channel != "ch" || n.Payload != "hello" {
						t.Fatalf("notification %+v", n)
					}
					// A notification that arrives while A waits (not queued before).
					notified := make(chan struct{})
					go func() {
						defer close(notified)
						time.Sleep(300 * time.Millisecond)
						_, _ = b.Exec(ctx, "select pg_notify('ch', 'later')")
					}()
					// b is closed when the test ends: not before its Exec returns.
					defer func() { <-notified }()
					n, err = a.WaitForNotification(wctx)
					if err != nil || n.Payload != "later" {
						t.Fatalf("second notification: %+v %v", n, err)
					}
					// A is still a normal session.
					if v := scalar[int](ctx, t, a, "select 3"); v != 3 {
						t.Fatal(v)
					}
				})
			}

			t.Run("psql-multi-statement", func(t *testing.T) {
				out, err := p.psql(t, "-c", "delete from ms; insert into ms values (1),(2),(3); select count(*) from ms; set application_name = 'psqlx'; show application_name; select 'done'")
				if err != nil {
					t.Fatalf("psql: %v\n%s", err, out)
				}
				lines := strings.Fields(out)
				for _, w := range []string{"3", "psqlx", "done"} {
					if !containsStr(lines, w) {
						t.Fatalf("psql output lacks %q:\n%s", w, out)
					}
				}
				// An error in the middle of a multi-statement string: the
				// whole string is one implicit transaction, rolled back.
				out, err = p.psql(t, "-c", "insert into ms values (4); select 1/0; insert into ms values (5)")
				if err == nil || !strings.Contains(out, "division by zero") {
					t.Fatalf("psql with an error: %v\n%s", err, out)
				}
				out, err = p.psql(t, "-c", "select count(*) from ms; select txid_current_if_assigned() is null")
				if err != nil || !strings.Contains(out, "3\nt") {
					t.Fatalf("after the failed string: %v\n%s (want 3 rows and no open transaction)", err, out)
				}
			})

			t.Run("psql-copy-100k", func(t *testing.T) {
				integrationOnly(t)
				ctx := testCtx(t, 60*time.Second)
				dir := t.TempDir()
				in := filepath.Join(dir, "in.tsv")
				var buf bytes.Buffer
				for i := range 100000 {
					sum := sha256.Sum256([]byte(strconv.Itoa(i)))
					fmt.Fprintf(&buf, "%d\t%s\\t%s\n", i, hex.EncodeToString(sum[:8]), "é€")
				}
				if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := p.psql(t, "-c", "delete from big"); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				out, err := p.psql(t, "-c", fmt.Sprintf(`\copy big from '%s'`, in))
				if err != nil || !strings.Contains(out, "COPY 100000") {
					t.Fatalf("\\copy in: %v\n%s", err, out)
				}
				outFile := filepath.Join(dir, "out.tsv")
				out, err = p.psql(t, "-c", fmt.Sprintf(`\copy (select id, v from big order by id) to '%s'`, outFile))
				if err != nil || !strings.Contains(out, "COPY 100000") {
					t.Fatalf("\\copy out: %v\n%s", err, out)
				}
				got, err := os.ReadFile(outFile)
				if err != nil {
					t.Fatal(err)
				}
				if a, b := sha256.Sum256(buf.Bytes()), sha256.Sum256(got); a != b {
					t.Fatalf("\\copy out differs from what went in: %d bytes in, %d out; first line out %q", buf.Len(), len(got), firstLine(got))
				}
				// And the server agrees, read directly.
				super := superConn(t, p.PG)
				var cnt int
				var digest string
				if err := super.QueryRow(ctx, `select count(*), md5(string_agg(id || E'\t' || v, E'\n' order by id)) from big`).Scan(&cnt, &digest); err != nil {
					t.Fatal(err)
				}
				var want strings.Builder
				sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
				for i := 0; sc.Scan(); i++ {
					if i > 0 {
						want.WriteByte('\n')
					}
					want.WriteString(strings.Replace(sc.Text(), `\t`, "\t", 1))
				}
				if cnt != 100000 || digest != md5hex(want.String()) {
					t.Fatalf("server has %d rows, digest %s, want 100000 and %s", cnt, digest, md5hex(want.String()))
				}
			})
		})
	}
}

// checkQueries runs a set of typed queries on c and checks the values.
func checkQueries(t *testing.T, c *pgx.Conn, label string) {
	t.Helper()
	for i := range 10 {
		if err := queriesOnce(c, fmt.Sprintf("%s-%d", label, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// queriesOnce runs one round of typed queries (params of several types,
// NULL, many rows, an error) and checks every value.
func queriesOnce(c *pgx.Conn, tag string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		s  string
		n  int64
		b  []byte
		ok bool
		nl *string
		ts time.Time
		fl float64
		ar []int32
	)
	when := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	err := c.QueryRow(ctx, "select $1::text, $2::int8 * 3, $3::bytea, $4::bool, $5::text, $6::timestamptz, $7::float8 / 2, $8::int4[]",
		tag+` it's "q" \`, int64(14), []byte{0, 1, 2, 255}, true, nil, when, 3.0, []int32{1, 2, 3}).Scan(&s, &n, &b, &ok, &nl, &ts, &fl, &ar)
	if err != nil {
		return err
	}
	if s != tag+` it's "q" \` || n != 42 || !bytes.Equal(b, []byte{0, 1, 2, 255}) || !ok || nl != nil || !ts.Equal(when) || fl != 1.5 || len(ar) != 3 || ar[2] != 3 {
		return fmt.Errorf("wrong values: %q %d %v %v %v %v %v %v", s, n, b, ok, nl, ts, fl, ar)
	}
	rows, err := c.Query(ctx, "select g, 'x' || g from generate_series(1, $1::int) g", 1000)
	if err != nil {
		return err
	}
	var cnt, sum int
	for rows.Next() {
		var g int
		var x string
		if err := rows.Scan(&g, &x); err != nil {
			return err
		}
		if x != "x"+strconv.Itoa(g) {
			return fmt.Errorf("row %d: %q", g, x)
		}
		cnt++
		sum += g
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if cnt != 1000 || sum != 500500 {
		return fmt.Errorf("generate_series: %d rows, sum %d", cnt, sum)
	}
	_, err = c.Exec(ctx, "select 1 / ($1::int - 1)", 1)
	if pgCode(err) != "22012" {
		return fmt.Errorf("division by zero: %v", err)
	}
	if err := c.QueryRow(ctx, "select $1::text", tag).Scan(&s); err != nil || s != tag {
		return fmt.Errorf("after an error: %q %v", s, err)
	}
	return nil
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// psql runs psql against the proxy as app (SCRAM), unaligned and tuples only.
func (p *pgProxy) psql(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := pgClient(t, "psql")
	host, port := splitHostPort(t, p.Addr)
	cmd := exec.Command(bin, append([]string{"-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "app", "-d", "app"}, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD=app", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPGAuthMethods: md5 and trust between client and Outrigger, a wrong
// password (28P01, no pool made), an upstream that refuses Outrigger's
// credentials (the server's 28P01, no pool made), and an unknown database
// (the server's 3D000).
func TestPGAuthMethods(t *testing.T) {
	integrationOnly(t)
	t.Run("md5", func(t *testing.T) {
		p := startPGConf(t, pgConf{Mode: "transaction", Size: 2, Method: "md5"})
		ctx := testCtx(t, 30*time.Second)
		c := p.connect(t)
		if u := scalar[string](ctx, t, c, "select current_user"); u != "app" {
			t.Fatalf("current_user %q", u)
		}
		_, err := pgx.Connect(ctx, p.dsn("app", "wrong", "app"))
		if pgCode(err) != "28P01" {
			t.Fatalf("md5 with a wrong password: %v, want 28P01", err)
		}
	})
	t.Run("trust", func(t *testing.T) {
		p := startPGConf(t, pgConf{Mode: "transaction", Size: 2, Method: "trust"})
		ctx := testCtx(t, 30*time.Second)
		host, port := splitHostPort(t, p.Addr)
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=app dbname=app sslmode=disable", host, port))
		if err != nil {
			t.Fatalf("trust login without a password: %v", err)
		}
		defer c.Close(ctx)
		if u := scalar[string](ctx, t, c, "select current_user"); u != "app" {
			t.Fatalf("current_user %q", u)
		}
		// A user the listener does not know is refused.
		_, err = pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=nobody dbname=app sslmode=disable", host, port))
		if code := pgCode(err); code != "28000" {
			t.Fatalf("unknown user under trust: %v, want 28000", err)
		}
	})
	t.Run("failures", func(t *testing.T) {
		p := startPGConf(t, pgConf{Mode: "transaction", Size: 2, Users: []string{
			"{name: app, password: app}",
			"{name: md5user, password: md5user, upstream_password: not-the-password}",
		}})
		ctx := testCtx(t, 30*time.Second)

		_, err := pgx.Connect(ctx, p.dsn("app", "wrong", "app"))
		if pgCode(err) != "28P01" {
			t.Fatalf("wrong password: %v, want 28P01", err)
		}
		// Outrigger accepts md5user, Postgres refuses Outrigger.
		_, err = pgx.Connect(ctx, p.dsn("md5user", "md5user", "app"))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28P01" || !strings.Contains(pe.Message, "md5user") {
			t.Fatalf("upstream refused the login: %v, want the server's 28P01", err)
		}
		_, err = pgx.Connect(ctx, p.dsn("app", "app", "nosuchdb"))
		if !errors.As(err, &pe) || pe.Code != "3D000" || !strings.Contains(pe.Message, "nosuchdb") {
			t.Fatalf("unknown database: %v, want the server's 3D000", err)
		}
		if n := serverConnections(t, p.PG); n != 0 {
			t.Errorf("%d server connections after failed logins, want 0", n)
		}
		_, pools := p.admin("/pools")
		for _, name := range []string{"app/app", "app/md5user", "app/ghost", "nosuchdb/app"} {
			if strings.Contains(pools, name) {
				t.Errorf("a failed login left a pool %s behind: %s", name, pools)
			}
		}
		// Failures over, a good login works.
		c := p.connect(t)
		if n := scalar[int](ctx, t, c, "select 1"); n != 1 {
			t.Fatal(n)
		}
		_, pools = p.admin("/pools")
		if !strings.Contains(pools, "app/app") {
			t.Errorf("/pools lacks app/app after a good login: %s", pools)
		}
	})
}

// TestPGAuthUnknownUserSCRAM: a user the listener does not know gets the
// same SCRAM exchange and the same 28P01 as a known user with a wrong
// password, so a client cannot tell the two apart.
func TestPGAuthUnknownUserSCRAM(t *testing.T) {
	p := startPGConf(t, pgConf{Mode: "transaction", Size: 2})
	ctx := testCtx(t, 30*time.Second)
	_, errKnown := pgx.Connect(ctx, p.dsn("app", "wrong", "app"))
	_, errGhost := pgx.Connect(ctx, p.dsn("ghost", "wrong", "app"))
	if pgCode(errKnown) != "28P01" {
		t.Fatalf("known user, wrong password: %v, want 28P01", errKnown)
	}
	if pgCode(errGhost) != "28P01" {
		t.Fatalf("unknown user: %v, want 28P01 as for a known user (%v)", errGhost, errKnown)
	}
}

// pipelinedCopy connects to dsn and sends a COPY FROM STDIN query, its
// CopyData and its CopyDone in one write, as pgx does, then reads to
// ReadyForQuery and returns the command tag.
func pipelinedCopy(dsn string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer pc.Close(context.Background())
	f := pc.Frontend()
	f.Send(&pgproto3.Query{String: "copy copy_p from stdin"})
	f.Send(&pgproto3.CopyData{Data: []byte("1\n2\n3\n")})
	f.Send(&pgproto3.CopyDone{})
	if err := f.Flush(); err != nil {
		return "", err
	}
	_ = pc.Conn().SetReadDeadline(time.Now().Add(3 * time.Second))
	tag := ""
	for {
		m, err := f.Receive()
		if err != nil {
			return tag, fmt.Errorf("after %q: %w", tag, err)
		}
		switch m := m.(type) {
		case *pgproto3.CommandComplete:
			tag = string(m.CommandTag)
		case *pgproto3.ErrorResponse:
			return tag, fmt.Errorf("error %s: %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return tag, nil
		}
	}
}
