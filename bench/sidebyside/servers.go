package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/internal/testenv"
)

// The database every Postgres case uses, and who logs in to it.
const (
	pgUser     = testenv.PostgresAppUser
	pgPassword = testenv.PostgresAppPassword
	pgDatabase = testenv.PostgresAppDatabase
	pgScale    = 10
	// pgMaxConnections is the server's max_connections: what a direct
	// connection and HAProxy run into at 1000 clients.
	pgMaxConnections = 200
)

// servers are the throwaway Postgres and Redis everything sits in front of.
type servers struct {
	pg    *testenv.Postgres
	redis *testenv.Redis
}

func (s *servers) stop() {
	if s.pg != nil {
		_ = s.pg.Stop()
	}
	if s.redis != nil {
		_ = s.redis.Stop()
	}
}

// startPostgres launches Postgres and fills it with pgbench's tables.
func startPostgres(ctx context.Context, pgbench string) (*testenv.Postgres, error) {
	pg, err := testenv.LaunchPostgres(testenv.PostgresOptions{ExtraConf: map[string]string{
		"max_connections": strconv.Itoa(pgMaxConnections),
		"shared_buffers":  "256MB", // the scale-10 data set fits
	}})
	if err != nil {
		return nil, err
	}
	res := runTool(ctx, 5*time.Minute, pgbench,
		[]string{"-i", "-s", strconv.Itoa(pgScale), "-q", "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pgUser, pgDatabase},
		pgEnv(), "")
	if res.err != nil {
		_ = pg.Stop()
		return nil, fmt.Errorf("pgbench -i -s %d: %v\n%s%s", pgScale, res.err, res.stdout, res.stderr)
	}
	return pg, nil
}

// startRedis launches a Redis that takes as many clients as the
// descriptor limit allows.
func startRedis() (*testenv.Redis, error) {
	return testenv.LaunchRedis(testenv.RedisOptions{ExtraConf: map[string]string{"maxclients": "20000"}})
}

// pgEnv is the environment every Postgres client tool gets.
func pgEnv() []string {
	return []string{"PGPASSWORD=" + pgPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10"}
}

// pgDSN is the app user's DSN for addr ("host:port").
func pgDSN(addr string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=10", pgUser, pgPassword, addr, pgDatabase)
}

// pgPing connects through addr and runs SELECT 1.
func pgPing(ctx context.Context, addr string) error {
	conn, err := pgconn.Connect(ctx, pgDSN(addr))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	return err
}

// resetTPCB does what pgbench's own vacuum step does, directly on the
// server, so every TPC-B run starts from the same state whatever proxy it
// goes through.
func resetTPCB(ctx context.Context, pgAddr string) error {
	conn, err := pgconn.Connect(ctx, pgDSN(pgAddr))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{"VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history"} {
		if _, err := conn.Exec(ctx, q).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// findPgbench looks on PATH, then beside the Postgres server binaries.
func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	if dir, err := testenv.PostgresBinDir(); err == nil {
		p := filepath.Join(dir, "pgbench")
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("pgbench not found on PATH or beside the Postgres server binaries (scripts/deps.sh installs it)")
}

// serviceUser is who runs daemons that refuse root (PgBouncer): the
// postgres OS user when we are root, else ourselves (nil).
func serviceUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, errors.New("running as root and there is neither a postgres nor a nobody user to run PgBouncer as")
}

// chownTree gives dir and everything in it to cred's user.
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}
