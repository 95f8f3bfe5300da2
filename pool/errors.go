package pool

import (
	"errors"
	"fmt"
	"time"
)

// ErrClosed is returned by Acquire once the pool is closed or draining, and
// handed to every waiter that Close or Drain wakes.
var ErrClosed = errors.New("pool: closed")

// ErrAcquireTimeout matches every *AcquireTimeoutError through errors.Is, for
// callers that only need to know which kind of failure it was.
var ErrAcquireTimeout = errors.New("pool: acquire timeout")

// ErrTooManyWaiters matches every *TooManyWaitersError through errors.Is.
var ErrTooManyWaiters = errors.New("pool: too many waiters")

// AcquireTimeoutError reports that Acquire got no connection within
// Config.AcquireTimeout: every connection stayed in use, or the dial that
// would have made one did not finish in the time left.
type AcquireTimeoutError struct {
	// Pool is the Config.Name of the pool.
	Pool string
	// Waited is how long the Acquire call tried, by the pool's clock.
	Waited time.Duration
	// Err is the dial error when the time ran out during a dial, else nil.
	Err error
}

// Error names the pool and how long the caller waited.
func (e *AcquireTimeoutError) Error() string {
	msg := fmt.Sprintf("pool: acquire timeout: pool %s: no connection after %s", e.Pool, e.Waited)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrAcquireTimeout.
func (e *AcquireTimeoutError) Is(target error) bool { return target == ErrAcquireTimeout }

// Unwrap returns the dial error, if the time ran out during a dial.
func (e *AcquireTimeoutError) Unwrap() error { return e.Err }

// Timeout reports true, as net.Error does for a timeout.
func (e *AcquireTimeoutError) Timeout() bool { return true }

// SafeToRetry reports true: no work reached an upstream through this
// Acquire, so the caller may try again (later, or elsewhere).
func (e *AcquireTimeoutError) SafeToRetry() bool { return true }

// TooManyWaitersError reports that Acquire found the wait queue at
// Config.MaxWaiters and refused to queue one more caller.
type TooManyWaitersError struct {
	// Pool is the Config.Name of the pool.
	Pool string
	// Limit is the queue bound that was reached.
	Limit int
}

// Error names the pool and the bound.
func (e *TooManyWaitersError) Error() string {
	return fmt.Sprintf("pool: too many waiters: pool %s: %d callers already wait", e.Pool, e.Limit)
}

// Is reports whether target is ErrTooManyWaiters.
func (e *TooManyWaitersError) Is(target error) bool { return target == ErrTooManyWaiters }

// SafeToRetry reports true: nothing reached an upstream.
func (e *TooManyWaitersError) SafeToRetry() bool { return true }

// DialError wraps an error from Hooks.Dial made on behalf of Acquire.
type DialError struct {
	// Pool is the Config.Name of the pool.
	Pool string
	// Err is what Hooks.Dial returned.
	Err error
}

// Error names the pool and the dial error.
func (e *DialError) Error() string { return "pool: dial: pool " + e.Pool + ": " + e.Err.Error() }

// Unwrap returns the dial error.
func (e *DialError) Unwrap() error { return e.Err }

// SafeToRetry reports true: a connection that was never made carried no work.
func (e *DialError) SafeToRetry() bool { return true }
