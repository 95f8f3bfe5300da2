package pool

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultMaxWaiters bounds the wait queue when Config.MaxWaiters is 0.
const DefaultMaxWaiters = 10000

// Config sizes a pool and sets its timeouts. The zero value of each duration
// turns that feature off; Size must be set.
type Config struct {
	// Name identifies the pool in errors and stats, e.g. "appdb/app/orders".
	Name string
	// Size bounds the connections the pool holds at once: idle, lent out,
	// being dialed and being closed all count. Must be > 0.
	Size int
	// MinIdle is the number of idle connections maintenance keeps ready
	// (dialing more up to Size, and sparing them from idle reaping).
	// Between 0 and Size.
	MinIdle int
	// MaxWaiters bounds the Acquire calls that may queue at once; the next
	// one fails with *TooManyWaitersError. 0 means DefaultMaxWaiters.
	MaxWaiters int
	// AcquireTimeout bounds one Acquire call: the time in the queue plus the
	// dial it may make. 0 leaves it to the caller's context.
	AcquireTimeout time.Duration
	// IdleTimeout closes connections idle this long, MinIdle excepted.
	IdleTimeout time.Duration
	// MaxLifetime closes connections this old: idle ones by maintenance and on
	// borrow, lent ones when they come back.
	MaxLifetime time.Duration
	// HealthCheckAfter: a connection idle at least this long is checked with
	// Hooks.Check before it is lent. 0 checks on every borrow.
	HealthCheckAfter time.Duration
	// MaintenanceInterval is how often maintenance runs. 0 derives it from
	// IdleTimeout and MaxLifetime (half the shorter, within 100ms..30s).
	MaintenanceInterval time.Duration
}

// Validate returns every problem with c, joined, each naming its field.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("pool %s: %s: "+format, append([]any{c.Name, field}, args...)...))
	}
	if c.Size <= 0 {
		add("size", "must be > 0")
	}
	if c.MinIdle < 0 || (c.Size > 0 && c.MinIdle > c.Size) {
		add("min_idle", "must be between 0 and size (%d)", c.Size)
	}
	if c.MaxWaiters < 0 {
		add("max_waiters", "must be >= 0")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"acquire_timeout", c.AcquireTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"max_lifetime", c.MaxLifetime},
		{"health_check_after", c.HealthCheckAfter},
		{"maintenance_interval", c.MaintenanceInterval},
	} {
		if d.v < 0 {
			add(d.field, "must be >= 0")
		}
	}
	return errors.Join(errs...)
}

// interval is how often maintenance runs.
func (c Config) interval() time.Duration {
	if c.MaintenanceInterval > 0 {
		return c.MaintenanceInterval
	}
	d := 30 * time.Second
	for _, t := range []time.Duration{c.IdleTimeout, c.MaxLifetime} {
		if t > 0 && t/2 < d {
			d = t / 2
		}
	}
	return max(d, 100*time.Millisecond)
}

// Hooks are what a pool needs from its user: how to make, close, check and
// reset a connection of type C, plus optional observers. Every hook is called
// without the pool's lock held, from the goroutine named on it.
type Hooks[C any] struct {
	// Dial makes a connection. Called by the Acquire caller that needs one, or
	// by maintenance to keep MinIdle; ctx carries what is left of
	// AcquireTimeout (or is cancelled by Close for maintenance dials).
	// Required.
	Dial func(ctx context.Context) (C, error)
	// Close closes a connection; the pool calls it exactly once per
	// connection and ignores its error. Required.
	Close func(c C) error
	// Check, if set, tells whether an idle connection is still usable. It runs
	// in Acquire, with the caller's ctx, on connections idle at least
	// Config.HealthCheckAfter. On error the connection is closed and Acquire
	// moves on to another one.
	Check func(ctx context.Context, c C) error
	// Reset, if set, makes a connection clean again for Lease.ReleaseDirty
	// (for Postgres: DISCARD ALL). It runs in the releasing goroutine with a
	// context that Close cancels, and should bound its own time. On error,
	// or if Reset is nil, ReleaseDirty closes the connection.
	Reset func(ctx context.Context, c C) error
	// OnAcquireWait, if set, is called once per Acquire that reached the pool
	// (not refused at once for ErrClosed or a full queue), with the time spent
	// in the wait queue: 0 when a connection or a free slot was there at once.
	// It feeds a histogram; it must be fast and must not call into the pool.
	OnAcquireWait func(waited time.Duration)
	// Clock is the source of time; nil means RealClock.
	Clock Clock
}

func (h Hooks[C]) validate(name string) error {
	var errs []error
	if h.Dial == nil {
		errs = append(errs, fmt.Errorf("pool %s: hooks: Dial is required", name))
	}
	if h.Close == nil {
		errs = append(errs, fmt.Errorf("pool %s: hooks: Close is required", name))
	}
	return errors.Join(errs...)
}
