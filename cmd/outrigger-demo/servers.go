package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// startServers launches the throwaway Postgres and Redis that outrigger will
// sit in front of, and says where they are.
func (d *demo) startServers(ctx context.Context) error {
	fmt.Fprintln(d.out, "Starting a throwaway PostgreSQL and Redis (internal/testenv)...")
	t0 := time.Now()
	pg, err := testenv.LaunchPostgres(testenv.PostgresOptions{})
	if errors.Is(err, testenv.ErrPostgresNotFound) {
		return fmt.Errorf("%w; run scripts/deps.sh to install it", err)
	}
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	d.pg = pg
	fmt.Fprintf(d.out, "  postgres  %-16s pid %-7d %s  (%v)\n", pg.Addr(), pg.PID(), pg.Dir, time.Since(t0).Round(time.Millisecond))
	if ctx.Err() != nil {
		return errInterrupted
	}

	t0 = time.Now()
	r, err := testenv.LaunchRedis(testenv.RedisOptions{})
	if errors.Is(err, testenv.ErrRedisNotFound) {
		return fmt.Errorf("%w; run scripts/deps.sh to install it", err)
	}
	if err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	d.redis = r
	fmt.Fprintf(d.out, "  redis     %-16s pid %-7d %s  (%v)\n", r.Addr, r.PID(), r.Dir, time.Since(t0).Round(time.Millisecond))
	if ctx.Err() != nil {
		return errInterrupted
	}
	return nil
}
