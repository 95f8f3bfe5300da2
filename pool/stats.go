package pool

import "time"

// counters are the pool's running totals, guarded by Pool.mu.
type counters struct {
	dialed, dialFailures                  uint64
	waits, timeouts, canceled, rejected   uint64
	closedIdle, closedLifetime, discarded uint64
	retired                               uint64
	healthCheckFailures, resetFailures    uint64
	waitTime                              time.Duration
}

// Stats is a consistent snapshot of a pool, for metrics and the admin
// /pools endpoint. Gauges are the state at the moment of the call; totals
// count since New.
type Stats struct {
	// Name is Config.Name.
	Name string
	// Size is Config.Size, the bound on Open.
	Size int
	// Open counts every connection slot taken: Idle + InUse + Dialing + Closing.
	Open int
	// Idle counts connections ready to lend.
	Idle int
	// InUse counts lent connections.
	InUse int
	// Dialing counts dials in flight (for Acquire callers or MinIdle).
	Dialing int
	// Closing counts connections whose Hooks.Close is running.
	Closing int
	// Waiting counts Acquire calls in the wait queue.
	Waiting int
	// Draining is true once Drain began, until the pool is closed.
	Draining bool
	// Closed is true once Close began (Drain ends in Close).
	Closed bool

	// Acquired counts leases handed out.
	Acquired uint64
	// Waits counts Acquire calls that had to queue.
	Waits uint64
	// WaitTime is the total time Acquire calls spent in the queue.
	WaitTime time.Duration
	// Timeouts counts Acquire calls that failed with *AcquireTimeoutError.
	Timeouts uint64
	// Canceled counts queued Acquire calls whose context ended.
	Canceled uint64
	// Rejected counts Acquire calls refused with *TooManyWaitersError.
	Rejected uint64
	// Dialed counts connections made.
	Dialed uint64
	// DialFailures counts failed dials (not those the caller gave up on).
	DialFailures uint64
	// ClosedIdle counts connections closed for IdleTimeout.
	ClosedIdle uint64
	// ClosedLifetime counts connections closed for MaxLifetime.
	ClosedLifetime uint64
	// HealthCheckFailures counts idle connections that failed Hooks.Check.
	HealthCheckFailures uint64
	// ResetFailures counts connections closed because Hooks.Reset failed.
	ResetFailures uint64
	// Discarded counts connections closed by Lease.Discard or ReleaseDirty.
	Discarded uint64
	// Retired counts connections closed for Retire.
	Retired uint64
}

// Stats returns a snapshot of the pool.
func (p *Pool[C]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	return Stats{
		Name:     p.cfg.Name,
		Size:     p.cfg.Size,
		Open:     p.openLocked(),
		Idle:     len(p.idle),
		InUse:    p.inUse,
		Dialing:  p.dialing,
		Closing:  p.closing,
		Waiting:  p.waiters.len(),
		Draining: p.state == stateDraining,
		Closed:   p.state == stateClosed,

		Acquired:            p.acquired.Load(),
		Waits:               c.waits,
		WaitTime:            c.waitTime,
		Timeouts:            c.timeouts,
		Canceled:            c.canceled,
		Rejected:            c.rejected,
		Dialed:              c.dialed,
		DialFailures:        c.dialFailures,
		ClosedIdle:          c.closedIdle,
		ClosedLifetime:      c.closedLifetime,
		HealthCheckFailures: c.healthCheckFailures,
		ResetFailures:       c.resetFailures,
		Discarded:           c.discarded,
		Retired:             c.retired,
	}
}
