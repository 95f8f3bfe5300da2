// Package integration holds Outrigger's end-to-end tests. Each test starts
// real, throwaway Postgres and Redis servers through internal/testenv, runs
// Outrigger (in-process through cli.Main, or as a built binary where the test
// is about the process: signals, exit codes), and drives it with real clients:
// pgx, go-redis, psql, pgbench, redis-cli and redis-benchmark.
//
// Nothing here mocks a database. Tests that need a server binary skip with a
// message naming the package to install only when that binary is absent; run
// `make deps` (scripts/deps.sh) to install them. `go test -short` skips the
// tests that start servers.
package integration
