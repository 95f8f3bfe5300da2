package integration

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/internal/testenv"
)

// TestPGAuthQuery runs listeners with no auth.users at all: users are
// learned with auth_query (a SECURITY DEFINER function on one listener,
// PgBouncer's default query on pg_shadow on another), checked against the
// verifier Postgres stores, and logged in upstream with the client's own
// SCRAM proof (or the md5 hash). Users created after Outrigger started
// log in with pgx, psql and pgbench -C; a password change is honoured once
// the cache expires; a dropped user is refused; unknown users and wrong
// passwords get the same 28P01; a wrong auth_user password gives a FATAL
// naming the listener and a metric. Afterwards the config, /config, the
// debug log and /metrics are searched for every password, verifier, key
// and hash: none is there.
func TestPGAuthQuery(t *testing.T) {
	integrationOnly(t)
	psql := pgClient(t, "psql")
	pgbench := pgClient(t, "pgbench")
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	db := testenv.PostgresAppDatabase
	pg.Exec(t, "CREATE ROLE authq LOGIN PASSWORD 'authq-secret-pw'")
	pg.Exec(t, "CREATE ROLE authsu LOGIN SUPERUSER PASSWORD 'authsu-secret-pw'")
	pg.ExecIn(t, db, `CREATE FUNCTION public.user_lookup(i_username text, OUT uname text, OUT phash text) RETURNS record
		LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
		AS $$ SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow WHERE usename = i_username $$`)
	pg.ExecIn(t, db, "REVOKE ALL ON FUNCTION public.user_lookup(text) FROM public")
	pg.ExecIn(t, db, "GRANT EXECUTE ON FUNCTION public.user_lookup(text) TO authq")

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	authqFile := write("authq", "authq-secret-pw\n")
	authsuFile := write("authsu", "authsu-secret-pw\n")
	badFile := write("bad", "not-the-password\n")
	addrs := map[string]string{"aq": testenv.FreeAddr(t), "aqmd5": testenv.FreeAddr(t), "aqbad": testenv.FreeAddr(t)}
	cfg := fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
log: {level: debug}
postgres:
  - name: aq
    listen: %q
    upstream: {address: %q}
    pool: {mode: transaction, size: 2, acquire_timeout: 5s}
    auth:
      method: scram-sha-256
      auth_user: authq
      auth_password_file: %q
      auth_query: SELECT uname, phash FROM public.user_lookup($1)
      auth_database: %s
      auth_cache_ttl: 1s
  - name: aqmd5
    listen: %q
    upstream: {address: %q}
    pool: {mode: session, size: 4, acquire_timeout: 5s}
    auth:
      method: md5
      auth_user: authsu
      auth_password_file: %q
      auth_cache_ttl: 1s
  - name: aqbad
    listen: %q
    upstream: {address: %q}
    pool: {mode: transaction, size: 2}
    auth:
      method: scram-sha-256
      auth_user: authq
      auth_password_file: %q
`, addrs["aq"], pg.Addr(), authqFile, db, addrs["aqmd5"], pg.Addr(), authsuFile, addrs["aqbad"], pg.Addr(), badFile)
	o := startOutrigger(t, cfg)
	ctx := testCtx(t, 2*time.Minute)

	// Users created after Outrigger started.
	users := map[string]string{"aq_u1": "u1-Secret-pw", "aq_u2": "u2-Secret-pw", "aq_u3": "u3-Secret-pw"}
	for u, pw := range users {
		pg.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", u, pw))
	}
	dsn := func(listener, user, pw string) string {
		host, port := splitHostPort(t, addrs[listener])
		return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable", host, port, user, pw, db)
	}
	login := func(listener, user, pw string) error {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn(listener, user, pw))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var who string
		if err := c.QueryRow(ctx, "select current_user").Scan(&who); err != nil {
			return err
		}
		if who != user {
			t.Errorf("%s: current_user is %q, want %q", listener, who, user)
		}
		return nil
	}
	mustLogin := func(listener, user, pw string) {
		t.Helper()
		if err := login(listener, user, pw); err != nil {
			t.Fatalf("%s as %s: %v\n%s", listener, user, err, o.Logs)
		}
	}

	for _, l := range []string{"aq", "aqmd5"} {
		for u, pw := range users {
			mustLogin(l, u, pw)
			host, port := splitHostPort(t, addrs[l])
			out, err := runCmd(psql, []string{"PGPASSWORD=" + pw}, "-h", host, "-p", port, "-U", u, "-d", db, "-Atc", "select current_user")
			if err != nil || strings.TrimSpace(out) != u {
				t.Errorf("%s: psql as %s: %v %q", l, u, err, out)
			}
		}
	}
	// md5 from end to end: a user whose stored password is an md5 hash
	// (and whom the server's pg_hba checks with md5).
	mustLogin("aqmd5", testenv.PostgresMD5User, testenv.PostgresMD5Password)

	// pgbench, a new connection per transaction, as each user.
	script := write("select.sql", "select 1;\n")
	host, port := splitHostPort(t, addrs["aq"])
	for u, pw := range users {
		cmd := []string{"-h", host, "-p", port, "-U", u, "-n", "-C", "-c", "4", "-j", "2", "-t", "25", "-f", script, db}
		out, err := runCmd(pgbench, []string{"PGPASSWORD=" + pw}, cmd...)
		if err != nil {
			t.Fatalf("pgbench as %s: %v\n%s", u, err, out)
		}
		if m := regexp.MustCompile(`number of transactions actually processed: (\d+)/`).FindStringSubmatch(out); m == nil || m[1] != "100" {
			t.Errorf("pgbench as %s: %v\n%s", u, m, out)
		}
	}

	// Unknown users, users without a password and wrong passwords look
	// the same.
	pg.Exec(t, "CREATE ROLE aq_nopw LOGIN")
	for _, l := range []string{"aq", "aqmd5"} {
		errUnknown := login(l, "aq_nobody", "whatever")
		errNull := login(l, "aq_nopw", "whatever")
		errWrong := login(l, "aq_u1", "wrong")
		if pgCode(errUnknown) != "28P01" || pgCode(errNull) != "28P01" || pgCode(errWrong) != "28P01" {
			t.Errorf("%s: unknown user: %v; NULL password: %v; wrong password: %v; want 28P01 for each", l, errUnknown, errNull, errWrong)
		}
		if errUnknown != nil && errWrong != nil && strings.ReplaceAll(errUnknown.Error(), "aq_nobody", "X") != strings.ReplaceAll(errWrong.Error(), "aq_u1", "X") {
			t.Errorf("%s: an unknown user's error differs from a wrong password's:\n%v\n%v", l, errUnknown, errWrong)
		}
	}

	// A password change: the old password works while the answer is
	// cached, the new one once it expired.
	verifierBefore := rolpassword(t, pg, "aq_u1")
	pg.Exec(t, "ALTER ROLE aq_u1 PASSWORD 'u1-Changed-pw'")
	eventually(t, "the new password of aq_u1", func() bool { return login("aq", "aq_u1", "u1-Changed-pw") == nil })
	if err := login("aq", "aq_u1", users["aq_u1"]); pgCode(err) != "28P01" {
		t.Errorf("old password after the change: %v, want 28P01", err)
	}
	users["aq_u1-new"] = "u1-Changed-pw"

	// A dropped user is refused.
	pg.Exec(t, "DROP ROLE aq_u2")
	eventually(t, "aq_u2 refused", func() bool { return pgCode(login("aq", "aq_u2", users["aq_u2"])) == "28P01" })

	// A broken auth_user: a FATAL naming the listener, and a metric.
	err := login("aqbad", "aq_u3", users["aq_u3"])
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "aqbad") {
		t.Errorf("auth_user with a wrong password: %v, want 28000 naming listener aqbad", err)
	}
	if v := o.metric(`outrigger_pg_auth_queries_total{listener="aqbad",result="error"}`); v < 1 {
		t.Errorf("auth_queries_total{result=error} = %v", v)
	}
	if v := o.metric(`outrigger_pg_auth_queries_total{listener="aq",result="found"}`); v < 3 {
		t.Errorf("auth_queries_total{result=found} = %v", v)
	}

	// Nothing secret anywhere Outrigger writes or shows.
	var secrets []string
	for _, pw := range users {
		secrets = append(secrets, pw)
	}
	secrets = append(secrets, "authq-secret-pw", "authsu-secret-pw", "not-the-password")
	for _, v := range []string{verifierBefore, rolpassword(t, pg, "aq_u1"), rolpassword(t, pg, "aq_u3"), rolpassword(t, pg, testenv.PostgresMD5User)} {
		secrets = append(secrets, verifierParts(t, v)...)
	}
	secrets = append(secrets, clientKeyForms(t, rolpassword(t, pg, "aq_u3"), users["aq_u3"])...)
	conf, _ := os.ReadFile(o.Path)
	_, shown := o.admin("/config")
	_, metrics := o.admin("/metrics")
	for name, text := range map[string]string{"config file": string(conf), "/config": shown, "log": o.Logs.String(), "/metrics": metrics} {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds a secret (%.6s…)", name, s)
			}
		}
	}
	if !strings.Contains(o.Logs.String(), "auth_query failed") {
		t.Errorf("the failed auth_query is not in the log")
	}
}

// rolpassword is the verifier Postgres stores for role.
func rolpassword(t *testing.T, pg *testenv.Postgres, role string) string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	c, err := pgx.Connect(ctx, pg.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var v string
	if err := c.QueryRow(ctx, "select rolpassword from pg_authid where rolname = $1", role).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// verifierParts are the verifier and each of its secret parts as they
// might be printed.
func verifierParts(t *testing.T, v string) []string {
	t.Helper()
	out := []string{v}
	if strings.HasPrefix(v, "md5") {
		return append(out, v[3:])
	}
	m := regexp.MustCompile(`^SCRAM-SHA-256\$\d+:[^$]+\$([^:]+):(.+)$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("verifier %q", v)
	}
	for _, k := range m[1:] {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k, hex.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw))
	}
	return out
}

// clientKeyForms are the ClientKey of a SCRAM verifier's password,
// printed the ways a leak might print it.
func clientKeyForms(t *testing.T, v, password string) []string {
	t.Helper()
	m := regexp.MustCompile(`^SCRAM-SHA-256\$(\d+):([^$]+)\$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("verifier %q", v)
	}
	iters, _ := strconv.Atoi(m[1])
	salt, _ := base64.StdEncoding.DecodeString(m[2])
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	key := mac.Sum(nil)
	return []string{base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key), hex.EncodeToString(key)}
}

// TestPGSCRAMMalformed sends malformed and mutated SCRAM messages to a
// SCRAM listener (a user from auth.users, and one from auth_query): a
// message that is not SCRAM's shape gets FATAL 08P01, a well-formed one
// with a wrong proof 28P01, and every login ends with an ErrorResponse
// (no hang, no silent close); the listener serves a good login after.
func TestPGSCRAMMalformed(t *testing.T) {
	integrationOnly(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	pg.Exec(t, "CREATE ROLE authsu LOGIN SUPERUSER PASSWORD 'authsu-pw'")
	addr := testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
postgres:
  - name: scram
    listen: %q
    upstream: {address: %q}
    pool: {mode: transaction, size: 2}
    auth:
      method: scram-sha-256
      users: [{name: app, password: app}]
      auth_user: authsu
      auth_password: authsu-pw
`, addr, pg.Addr()))
	ctx := testCtx(t, 2*time.Minute)
	// login sends first (or a valid client-first when first is "") and
	// final, and returns the SQLSTATE the server ended with.
	login := func(user string, first []byte, final func(serverFirst string) []byte) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fe := pgproto3.NewFrontend(c, c)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": user, "database": testenv.PostgresAppDatabase}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for step := 0; ; step++ {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("%s: step %d: %v (closed without an ErrorResponse)", user, step, err)
			}
			switch m := m.(type) {
			case *pgproto3.AuthenticationSASL:
				fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: first})
			case *pgproto3.AuthenticationSASLContinue:
				fe.Send(&pgproto3.SASLResponse{Data: final(string(m.Data))})
			case *pgproto3.ErrorResponse:
				return m.Code
			case *pgproto3.AuthenticationSASLFinal, *pgproto3.AuthenticationOk:
				return "ok"
			default:
				t.Fatalf("%s: unexpected %T", user, m)
			}
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	goodFirst := []byte("n,,n=,r=clientnonce0123456789")
	proofFor := func(sf string, proof string) []byte {
		r := ""
		for _, a := range strings.Split(sf, ",") {
			if strings.HasPrefix(a, "r=") {
				r = a
			}
		}
		return []byte("c=biws," + r + ",p=" + proof)
	}
	zero := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, user := range []string{"app", "authsu"} {
		for _, bad := range [][]byte{nil, []byte("garbage"), []byte("n,,"), []byte("q,,n=,r=abc"), []byte("n,,n=,"), []byte("n,x,n=,r=abc"), {0xff, 0xfe, ','}} {
			if code := login(user, bad, nil); code != "08P01" {
				t.Errorf("%s: client-first %q: %s, want 08P01", user, bad, code)
			}
		}
		for _, bad := range []string{"", "c=biws", "r=x,p=" + zero, "c=biws,r=x,p=short"} {
			if code := login(user, goodFirst, func(string) []byte { return []byte(bad) }); code != "08P01" {
				t.Errorf("%s: client-final %q: %s, want 08P01", user, bad, code)
			}
		}
		if code := login(user, goodFirst, func(sf string) []byte { return proofFor(sf, zero) }); code != "28P01" {
			t.Errorf("%s: a wrong proof: %s, want 28P01", user, code)
		}
		// Random mutations of a valid client-final: always an error.
		rng := rand.New(rand.NewPCG(1, uint64(len(user))))
		for range 50 {
			code := login(user, goodFirst, func(sf string) []byte {
				b := proofFor(sf, zero)
				for range 1 + rng.IntN(4) {
					b[rng.IntN(len(b))] = byte(rng.IntN(256))
				}
				return b
			})
			if code != "08P01" && code != "28P01" {
				t.Fatalf("%s: mutated client-final: %s", user, code)
			}
		}
	}
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:app@%s/%s?sslmode=disable", addr, testenv.PostgresAppDatabase))
	if err != nil {
		t.Fatalf("a good login after the bad ones: %v\n%s", err, o.Logs)
	}
	c.Close(ctx)
}

// TestPGAuthQueryChannelBinding: with TLS to a Postgres that offers
// SCRAM-SHA-256-PLUS, the pass-through login binds to the TLS channel
// (verify-full against the server's CA), and the user gets in.
func TestPGAuthQueryChannelBinding(t *testing.T) {
	integrationOnly(t)
	ca := testenv.NewCA(t, "pg-ca")
	leaf := ca.Issue(t, testenv.LeafOptions{CommonName: "localhost"})
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{TLS: leaf})
	pg.Exec(t, "CREATE ROLE authsu LOGIN SUPERUSER PASSWORD 'authsu-pw'")
	caPath, _ := ca.WriteFiles(t.TempDir())
	addr := testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
log: {level: debug}
postgres:
  - name: cb
    listen: %q
    upstream: {address: %q, tls: {mode: verify-full, ca: %q, server_name: localhost}}
    pool: {mode: transaction, size: 2}
    auth:
      method: scram-sha-256
      auth_user: authsu
      auth_password: authsu-pw
`, addr, pg.Addr(), caPath))
	pg.Exec(t, "CREATE ROLE cb_user LOGIN PASSWORD 'cb-pw'")
	ctx := testCtx(t, 30*time.Second)
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://cb_user:cb-pw@%s/%s?sslmode=disable", addr, testenv.PostgresAppDatabase))
	if err != nil {
		t.Fatalf("login: %v\n%s", err, o.Logs)
	}
	defer c.Close(ctx)
	var ssl bool
	if err := c.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("the server connection is not TLS: %v %v", ssl, err)
	}
	if !strings.Contains(o.Logs.String(), `"mechanism":"SCRAM-SHA-256-PLUS"`) {
		t.Errorf("the upstream login did not use channel binding:\n%s", o.Logs)
	}
}
