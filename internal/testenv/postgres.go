package testenv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The roles and database every server from LaunchPostgres or StartPostgres
// has. pg_hba.conf gives each user the authentication method in its name: the
// superuser and app use scram-sha-256, md5user uses md5 (its password is
// stored as an MD5 hash), and trustuser needs no password. Every line covers
// both the Unix socket and TCP from 127.0.0.1.
const (
	PostgresSuperUser     = "postgres"
	PostgresSuperPassword = "postgres"
	PostgresAppUser       = "app"
	PostgresAppPassword   = "app"
	PostgresMD5User       = "md5user"
	PostgresMD5Password   = "md5user"
	PostgresTrustUser     = "trustuser"
	PostgresAppDatabase   = "app" // owned by PostgresAppUser
)

// postgresReadyTimeout bounds how long a new server may take to accept
// connections.
const postgresReadyTimeout = 60 * time.Second

// ErrPostgresNotFound is returned (wrapped) by PostgresBinDir when no
// directory holding both initdb and postgres is found.
var ErrPostgresNotFound = errors.New("testenv: PostgreSQL server binaries not found")

// PostgresOptions configures LaunchPostgres and StartPostgres. The zero value
// is ready to use.
type PostgresOptions struct {
	// ExtraConf is appended to postgresql.conf after testenv's own settings,
	// in key order, so it can override them (in postgresql.conf the last line
	// wins). Values are quoted for you: write "on" or "64MB", not "'on'". The
	// port and the data directory are set on the command line and cannot be
	// changed here. Files the server must read (ssl_cert_file, say) have to be
	// readable by the server's user, which is "postgres" when run as root.
	ExtraConf map[string]string
	// TLS, when set, is the server certificate Postgres serves TLS with
	// (ssl = on; plaintext still works). Its files are written into the
	// data directory, owned by the server's user.
	TLS *Leaf
}

// Postgres is a running throwaway PostgreSQL server started by LaunchPostgres
// or StartPostgres. It listens on Host:Port (TCP) and in SocketDir (Unix
// socket). Stop ends it and deletes its directory; StartPostgres calls Stop
// when the test that started it ends.
type Postgres struct {
	Host      string // always "127.0.0.1"
	Port      int
	BinDir    string // where initdb and postgres were found
	Dir       string // the server's own directory, removed by Stop
	DataDir   string // Dir/data
	SocketDir string // unix_socket_directories; equal to Dir
	LogPath   string // the server's stdout and stderr

	srv        *server
	initdbTook time.Duration
	readyTook  time.Duration // initdb included
}

// LaunchPostgres initializes a new cluster in a temp directory, starts
// postgres on a free port of 127.0.0.1, creates the roles and the database
// described by the Postgres* constants, and returns once the server accepts
// connections. It is StartPostgres for programs that have no testing.TB: the
// caller must call Stop, which stops the server (SIGINT, then SIGKILL after
// 10 s) and removes its directory. If the server binaries are not installed,
// the error wraps ErrPostgresNotFound. On error nothing is left running and
// no directory is left behind.
func LaunchPostgres(opts PostgresOptions) (*Postgres, error) {
	return launchPostgres(opts, discard)
}

// StartPostgres is LaunchPostgres for a test: the server is stopped and its
// directory removed in t.Cleanup, and if the test failed the tail of the
// server log is printed. If the server binaries are not installed, the test
// is skipped; any other problem fails it.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	pg, err := launchPostgres(opts, t.Logf)
	if errors.Is(err, ErrPostgresNotFound) {
		t.Skip("testenv: PostgreSQL server binaries not found (apt-get install postgresql)")
	}
	if err != nil {
		t.Fatal(err)
	}
	pg.srv.stopAtCleanup(t)
	t.Logf("testenv: postgres pid %d on %s (dir %s; initdb %v, ready %v)",
		pg.PID(), pg.Addr(), pg.Dir, pg.initdbTook.Round(time.Millisecond), pg.readyTook.Round(time.Millisecond))
	return pg
}

func launchPostgres(opts PostgresOptions, logf logf) (_ *Postgres, err error) {
	binDir, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}

	// Our own directory rather than t.TempDir(): the server's user must be able
	// to reach it (t.TempDir's parents may be 0700 root), and the Unix socket
	// path must stay short.
	dir, err := newServerDir("outrigger-pg-*")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{
		Host:      "127.0.0.1",
		BinDir:    binDir,
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: dir,
		LogPath:   filepath.Join(dir, "postgres.log"),
	}
	pg.srv = &server{name: "postgres", dir: dir, logPath: pg.LogPath}
	defer func() {
		if err != nil {
			_ = pg.srv.stop()
		}
	}()
	if err := chownTo(dir, cred); err != nil {
		return nil, err
	}

	start := time.Now()
	if err := pg.initdb(cred); err != nil {
		return nil, err
	}
	if err := pg.writeConfig(opts, cred); err != nil {
		return nil, err
	}
	pg.initdbTook = time.Since(start)

	pg.srv.proc, pg.Port, err = launchServer(launchSpec{
		name:    "postgres",
		timeout: postgresReadyTimeout,
		build: func(port int) procSpec {
			return procSpec{
				name:       "postgres",
				path:       filepath.Join(binDir, "postgres"),
				args:       []string{"-D", pg.DataDir, "-p", strconv.Itoa(port)},
				dir:        dir,
				env:        []string{"LC_ALL=C"},
				cred:       cred,
				logPath:    pg.LogPath,
				stopSignal: syscall.SIGINT, // fast shutdown
			}
		},
		ready: func(ctx context.Context, port int) error {
			pg.Port = port
			conn, err := pgconn.Connect(ctx, pg.SuperDSN())
			if err != nil {
				return err
			}
			return conn.Close(ctx)
		},
	}, logf)
	if err != nil {
		return nil, err
	}
	if err := pg.bootstrap(); err != nil {
		return nil, fmt.Errorf("%w\n--- log tail ---\n%s", err, pg.srv.proc.logTail(logTailBytes))
	}
	pg.readyTook = time.Since(start)
	return pg, nil
}

// Addr returns "127.0.0.1:port".
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// PID returns the process id of the postmaster.
func (p *Postgres) PID() int { return p.srv.proc.pid() }

// DSN returns a postgres:// URL for user, password and database db over TCP,
// with sslmode=disable. An empty password leaves it out of the URL.
func (p *Postgres) DSN(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Host: p.Addr(), Path: "/" + db, RawQuery: "sslmode=disable"}
	if password == "" {
		u.User = url.User(user)
	} else {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// SuperDSN returns the DSN of the superuser in the "postgres" database.
func (p *Postgres) SuperDSN() string {
	return p.DSN(PostgresSuperUser, PostgresSuperPassword, "postgres")
}

// Exec runs sql (one or more statements, simple query protocol, so no
// parameters) as the superuser in the app database, failing the test on any
// error.
func (p *Postgres) Exec(t testing.TB, sql string) {
	t.Helper()
	p.ExecIn(t, PostgresAppDatabase, sql)
}

// ExecIn is Exec in database db.
func (p *Postgres) ExecIn(t testing.TB, db, sql string) {
	t.Helper()
	if err := p.exec(db, sql); err != nil {
		t.Fatal(err)
	}
}

// Stop stops the server (SIGINT, then SIGKILL after 10 s) and then removes
// its directory. A test may call it before its cleanup does, to see what
// clients see when the database goes away; the log tail that a failed test
// prints is read just before the directory goes. Stop can be called more than
// once, from any goroutine; later calls return the first result.
func (p *Postgres) Stop() error { return p.srv.stop() }

func (p *Postgres) exec(db, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.DSN(PostgresSuperUser, PostgresSuperPassword, db))
	if err != nil {
		return fmt.Errorf("testenv: connect as %s to %s: %w", PostgresSuperUser, db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("testenv: exec %q: %w", abbreviate(sql, 200), err)
	}
	return nil
}

// initdb creates the cluster in p.DataDir with the superuser's password set.
func (p *Postgres) initdb(cred *syscall.Credential) error {
	pwfile := filepath.Join(p.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(PostgresSuperPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	defer os.Remove(pwfile)
	if err := chownTo(pwfile, cred); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := runToCompletion(ctx, procSpec{
		name: "initdb",
		path: filepath.Join(p.BinDir, "initdb"),
		args: []string{
			"-D", p.DataDir,
			"--username=" + PostgresSuperUser,
			"--pwfile=" + pwfile,
			"--auth=scram-sha-256", // replaced by our pg_hba.conf below
			"--encoding=UTF8",
			"--locale=C",
			"--no-sync",
		},
		dir:  p.Dir,
		env:  []string{"LC_ALL=C"},
		cred: cred,
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// writeConfig replaces pg_hba.conf and appends our settings, then
// opts.ExtraConf, to postgresql.conf.
func (p *Postgres) writeConfig(opts PostgresOptions, cred *syscall.Credential) error {
	hba := fmt.Sprintf(`# Written by outrigger internal/testenv. First match wins.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all  %[1]s                 trust
host    all  %[1]s  127.0.0.1/32   trust
local   all  %[2]s                 md5
host    all  %[2]s  127.0.0.1/32   md5
local   all  all                   scram-sha-256
host    all  all    127.0.0.1/32   scram-sha-256
`, PostgresTrustUser, PostgresMD5User)
	hbaPath := filepath.Join(p.DataDir, "pg_hba.conf")
	if err := os.WriteFile(hbaPath, []byte(hba), 0o600); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	if err := chownTo(hbaPath, cred); err != nil {
		return err
	}

	var b strings.Builder
	b.WriteString("\n# Added by outrigger internal/testenv.\n")
	conf := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": p.SocketDir,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"password_encryption":     "scram-sha-256",
		"logging_collector":       "off",
		"log_destination":         "stderr",
		"max_connections":         "200",
		"shared_buffers":          "32MB",
		"max_wal_size":            "1GB",
	}
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(&b, "%s = %s\n", k, confQuote(conf[k]))
	}
	if opts.TLS != nil {
		cert, key := opts.TLS.WriteFiles(p.DataDir)
		for _, f := range []string{cert, key} {
			if err := chownTo(f, cred); err != nil {
				return err
			}
		}
		fmt.Fprintf(&b, "ssl = on\nssl_cert_file = %s\nssl_key_file = %s\n", confQuote(cert), confQuote(key))
	}
	if len(opts.ExtraConf) > 0 {
		b.WriteString("# PostgresOptions.ExtraConf\n")
		for _, k := range slices.Sorted(maps.Keys(opts.ExtraConf)) {
			fmt.Fprintf(&b, "%s = %s\n", k, confQuote(opts.ExtraConf[k]))
		}
	}
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("testenv: %w", err)
	}
	return f.Close()
}

// bootstrap creates the roles and the app database.
func (p *Postgres) bootstrap() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.SuperDSN())
	if err != nil {
		return fmt.Errorf("testenv: connect as superuser: %w", err)
	}
	defer conn.Close(context.Background())
	// One statement per round trip: CREATE DATABASE refuses to run in the
	// implicit transaction of a multi-statement query.
	stmts := []string{
		"SET password_encryption = 'scram-sha-256'",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", PostgresAppUser, sqlQuote(PostgresAppPassword)),
		"SET password_encryption = 'md5'",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", PostgresMD5User, sqlQuote(PostgresMD5Password)),
		fmt.Sprintf("CREATE ROLE %s LOGIN", PostgresTrustUser),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", PostgresAppDatabase, PostgresAppUser),
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s).ReadAll(); err != nil {
			return fmt.Errorf("testenv: bootstrap %q: %w", s, err)
		}
	}
	return nil
}

// PostgresBinDir returns the directory holding the PostgreSQL server binaries
// (initdb and postgres). It looks, in order, at $TESTENV_PG_BINDIR, at
// postgres on PATH (symlinks resolved), at `pg_config --bindir`, and at the
// newest /usr/lib/postgresql/*/bin (the Debian and Ubuntu layout). The error
// wraps ErrPostgresNotFound when none has them.
func PostgresBinDir() (string, error) {
	if d := os.Getenv("TESTENV_PG_BINDIR"); d != "" {
		if hasPostgresServer(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w in $TESTENV_PG_BINDIR=%s", ErrPostgresNotFound, d)
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && hasPostgresServer(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if hasPostgresServer(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	if pgc, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgc, "--bindir").Output(); err == nil {
			if d := strings.TrimSpace(string(out)); hasPostgresServer(d) {
				return d, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // newest first
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, d := range dirs {
		if hasPostgresServer(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (looked at PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)", ErrPostgresNotFound)
}

func hasPostgresServer(dir string) bool {
	for _, name := range []string{"postgres", "initdb"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted version strings such as "9.6" and "15"
// numerically; parts that are not numbers compare as 0.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// postgresCredential returns nil when we are not root. As root it returns the
// credential of the "postgres" OS user, because postgres refuses to run as
// root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: running as root, and postgres refuses to run as root, but there is no \"postgres\" OS user to run it as (%v); create one (useradd --system postgres) or run the tests as another user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testenv: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTo gives path to cred's user; with no credential it does nothing.
func chownTo(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

// confQuote quotes a postgresql.conf value.
func confQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// sqlQuote quotes an SQL string literal.
func sqlQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
