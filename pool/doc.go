// Package pool is a generic, bounded pool of upstream connections, shared by
// the Postgres frontend (one Pool per (database, user), of server
// connections) and the Redis frontend (pinned connections). It knows nothing
// of any protocol: the connection type C and how to dial, close, check and
// reset one come in as Hooks.
//
// # Data flow
//
// Acquire takes, in order: the most recently released idle connection (the
// idle set is a stack, so rarely used connections sink to the bottom and age
// out); else a free slot, on which the caller dials outside the lock; else a
// place at the back of a FIFO wait queue. A Lease gives the connection back:
// Release hands it straight to the oldest waiter if there is one, else pushes
// it on the idle stack; ReleaseDirty first runs Hooks.Reset; Discard closes it
// and hands the freed slot to the oldest waiter as a permit to dial. A failed
// dial frees its slot the same way, so the next waiter tries. While anyone
// waits, newcomers queue behind them: service is strictly first come, first
// served.
//
// Every connection holds one of Config.Size slots from the moment its dial
// starts until its Hooks.Close returns: idle, in use, dialing and closing all
// count, so there are never more than Size upstream connections. The wait
// queue is bounded by Config.MaxWaiters. Connections idle at least
// HealthCheckAfter are checked with Hooks.Check on borrow; a bad one is closed
// and Acquire moves on to the next idle one, or dials, keeping its slot.
//
// # Goroutines and ownership
//
// A Pool has one mutex guarding its counters, idle stack and wait queue; it
// is never held across a hook (Dial, Close, Check, Reset, OnAcquireWait).
// Each Pool runs one maintenance goroutine, started by New and stopped by
// Close: every Config interval (or at once when kicked) it closes idle
// connections past MaxLifetime or IdleTimeout (sparing MinIdle of the latter)
// and dials up to MinIdle idle connections, one at a time. AcquireTimeout
// fires on a Clock timer goroutine, which only dequeues the waiter.
//
// A connection is owned by exactly one party at a time: the idle stack (under
// the mutex), the goroutine holding its Lease, a waiter it was handed to, or
// the goroutine closing it. Hooks.Check and Hooks.Dial run in the Acquire
// caller's goroutine; Hooks.Reset in the goroutine calling ReleaseDirty;
// Hooks.Close in whichever goroutine retires the connection.
//
// # Shutdown
//
// Close fails all waiters and later Acquire calls with ErrClosed, closes idle
// connections and closes lent ones as they come back. Drain does the same but
// first waits, until its context ends, for every lease to come back.
//
// # Observability
//
// Stats returns a consistent snapshot (gauges and totals) for a metrics
// collector or the admin /pools endpoint; Hooks.OnAcquireWait reports each
// Acquire's time in the queue for a histogram. The pool imports no metrics
// package.
package pool
