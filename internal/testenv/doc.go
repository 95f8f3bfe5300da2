// Package testenv starts real, throwaway PostgreSQL and Redis servers for Go
// tests and programs, issues test certificates, and hands out free loopback
// ports.
//
// Integration tests never mock the database: they call StartPostgres or
// StartRedis, which run the real server binaries installed on the machine as
// child processes of the test binary and return connection details. A program
// that has no testing.TB (cmd/outrigger-demo) calls LaunchPostgres and
// LaunchRedis instead, gets an error rather than a skip or a failed test, and
// calls Stop itself; Start* are thin wrappers over Launch*, so both take the
// same path. PickFreePort is FreePort for programs.
//
// Each server gets its own directory under the system temp dir (short paths,
// so Unix socket names stay under the 107-byte limit), a free port on
// 127.0.0.1, and no persistence (fsync off for Postgres; no RDB or AOF for Redis).
//
// Data flow of one StartPostgres call:
//
//	PostgresBinDir -> initdb (temp dir) -> pg_hba.conf and postgresql.conf
//	written by us -> postgres started as a child (its PID kept) -> poll with
//	pgconn until it accepts connections -> roles and the app database created
//	(all of this is LaunchPostgres) -> t.Cleanup(Stop): SIGINT (fast
//	shutdown), SIGKILL after 10 s, directory removed.
//
// StartRedis is the same shape: redis-server with a generated redis.conf,
// polled with PING until it answers, stopped with SIGTERM then SIGKILL.
//
// Both servers share one process helper (process.go). It puts the child in its
// own process group, asks the kernel to kill it if the test binary (or
// program) dies (Linux), sends its stdout and stderr to a log file in the
// server directory, and stops it by PID with a signal ladder. Stop ends the
// server and then removes its directory, once, however often it is called.
// When a test fails, the tail of the server log is printed with t.Logf. When
// run as root, Postgres (which refuses to run as root) is run as the
// "postgres" OS user.
//
// A missing server binary skips the test with a message naming the package to
// install (Launch* return an error wrapping ErrPostgresNotFound or
// ErrRedisNotFound); any other problem fails it. Every function that takes a
// testing.TB registers its cleanup with t.Cleanup, so nothing outlives the test
// that asked for it; Launch* leave nothing behind when they fail. Servers are
// independent, so parallel tests may each start their own.
//
// Certificates (NewCA, CA.Issue) are generated in memory with ECDSA P-256 and
// can be written to files for servers that need them, such as StartRedis with
// RedisOptions.TLS.
package testenv
