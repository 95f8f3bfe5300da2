package pool

import (
	"context"
	"errors"
	"time"
)

// Acquire lends a connection: the most recently used idle one (checked with
// Hooks.Check if it sat idle at least HealthCheckAfter), else a new one if
// fewer than Size are open, else it waits in a FIFO queue until a connection
// is released to it or a slot frees up for it to dial. It gives up after
// Config.AcquireTimeout with *AcquireTimeoutError, or when ctx ends with
// ctx.Err(). It fails at once with ErrClosed once Close or Drain began, and
// with *TooManyWaitersError when MaxWaiters callers already wait. A failed
// dial returns *DialError (and hands the slot to the next waiter).
//
// The caller owns the Lease until it calls Release, ReleaseDirty or Discard.
func (p *Pool[C]) Acquire(ctx context.Context) (*Lease[C], error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.state != stateOpen {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	// Strict FIFO: with anyone queued, a newcomer queues too.
	if p.waiters.len() > 0 || (len(p.idle) == 0 && p.openLocked() >= p.cfg.Size) {
		return p.wait(ctx)
	}
	cn := p.popIdleLocked()
	if cn != nil {
		p.inUse++
	} else {
		p.dialing++
	}
	p.mu.Unlock()
	if p.hooks.OnAcquireWait != nil {
		p.hooks.OnAcquireWait(0)
	}
	return p.obtain(ctx, cn, time.Time{})
}

// wait queues the caller. Called with p.mu held; returns with it released.
func (p *Pool[C]) wait(ctx context.Context) (*Lease[C], error) {
	if p.waiters.len() >= p.maxWaiters {
		p.counts.rejected++
		p.mu.Unlock()
		return nil, &TooManyWaitersError{Pool: p.cfg.Name, Limit: p.maxWaiters}
	}
	w := &waiter[C]{ready: make(chan struct{}, 1), enq: p.clock.Now()}
	p.waiters.push(w)
	p.counts.waits++
	p.mu.Unlock()

	var t Timer
	if p.cfg.AcquireTimeout > 0 {
		t = p.clock.AfterFunc(p.cfg.AcquireTimeout, func() { p.expire(w) })
	}
	var err error
	select {
	case <-w.ready:
	case <-ctx.Done():
		err = ctx.Err()
		p.mu.Lock()
		if w.queued {
			p.waiters.remove(w)
			p.counts.canceled++
			p.dequeuedLocked(w)
			p.mu.Unlock()
			break
		}
		p.mu.Unlock()
		// Dequeued concurrently: the outcome is set and the send is done.
		<-w.ready
		if w.err != nil {
			err = w.err
		} else {
			p.giveBack(w.cn)
		}
		w.cn = nil
	}
	if t != nil {
		t.Stop()
	}
	if p.hooks.OnAcquireWait != nil {
		p.hooks.OnAcquireWait(w.waited)
	}
	if err != nil {
		return nil, err
	}
	if w.err != nil {
		return nil, w.err
	}
	var deadline time.Time
	if p.cfg.AcquireTimeout > 0 {
		deadline = w.enq.Add(p.cfg.AcquireTimeout)
	}
	return p.obtain(ctx, w.cn, deadline)
}

// expire is the AcquireTimeout of waiter w.
func (p *Pool[C]) expire(w *waiter[C]) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.queued {
		return
	}
	p.waiters.remove(w)
	p.counts.timeouts++
	p.dequeuedLocked(w)
	w.err = &AcquireTimeoutError{Pool: p.cfg.Name, Waited: w.waited}
	w.ready <- struct{}{}
}

// dequeuedLocked records the wait of a waiter that just left the queue.
func (p *Pool[C]) dequeuedLocked(w *waiter[C]) {
	w.waited = p.clock.Now().Sub(w.enq)
	p.counts.waitTime += w.waited
}

// handOffLocked gives the oldest waiter cn (counted in inUse), or a permit
// to dial if cn is nil (counted in dialing). It reports false if nobody waits.
func (p *Pool[C]) handOffLocked(cn *conn[C]) bool {
	w := p.waiters.popFront()
	if w == nil {
		return false
	}
	if cn != nil {
		p.inUse++
	} else {
		p.dialing++
	}
	p.dequeuedLocked(w)
	w.cn = cn
	w.ready <- struct{}{}
	return true
}

// giveBack returns a slot that a waiter was handed but will not use.
func (p *Pool[C]) giveBack(cn *conn[C]) {
	if cn != nil {
		p.release(cn)
		return
	}
	p.mu.Lock()
	p.dialing--
	p.freeSlotLocked()
	p.mu.Unlock()
}

// verdict is what vet decided about a connection about to be lent.
type verdict int8

const (
	vetOK verdict = iota
	vetExpired
	vetUnhealthy
	// vetCanceled: the caller's ctx ended before Check could run.
	vetCanceled
	// vetInterrupted: the caller's ctx ended during Check, which failed; the
	// connection's state is unknown, so it is closed (not counted as a
	// health check failure).
	vetInterrupted
)

// obtain turns a slot the caller holds into a Lease. The slot is either an
// idle or handed-off connection (cn != nil, counted in inUse) or a permit to
// dial (cn == nil, counted in dialing). deadline is when AcquireTimeout runs
// out (zero: from now). On error the slot is freed.
func (p *Pool[C]) obtain(ctx context.Context, cn *conn[C], deadline time.Time) (*Lease[C], error) {
	for cn != nil {
		v := p.vet(ctx, cn)
		if v == vetOK {
			return p.lease(cn), nil
		}
		if v == vetCanceled {
			p.release(cn) // cn is fine; the caller is gone
			return nil, ctx.Err()
		}
		p.closeConn(cn.c)
		p.mu.Lock()
		switch v {
		case vetExpired:
			p.counts.closedLifetime++
		case vetUnhealthy:
			p.counts.healthCheckFailures++
		}
		p.inUse--
		var err error
		if p.state != stateOpen {
			err = ErrClosed
		} else {
			err = ctx.Err()
		}
		if err != nil {
			p.freeSlotLocked()
			p.mu.Unlock()
			return nil, err
		}
		// Keep the slot: take the next idle connection, or dial.
		if cn = p.popIdleLocked(); cn != nil {
			p.inUse++
		} else {
			p.dialing++
		}
		p.mu.Unlock()
	}
	return p.dialLease(ctx, deadline)
}

// vet decides whether cn may be lent: not past MaxLifetime, and healthy if
// it sat idle at least HealthCheckAfter.
func (p *Pool[C]) vet(ctx context.Context, cn *conn[C]) verdict {
	life := p.cfg.MaxLifetime
	if life <= 0 && p.hooks.Check == nil {
		return vetOK
	}
	now := p.clock.Now()
	if life > 0 && now.Sub(cn.created) >= life {
		return vetExpired
	}
	if p.hooks.Check != nil && now.Sub(cn.idleSince) >= p.cfg.HealthCheckAfter {
		if ctx.Err() != nil {
			return vetCanceled
		}
		if err := p.hooks.Check(ctx, cn.c); err != nil {
			if ctx.Err() != nil {
				return vetInterrupted
			}
			return vetUnhealthy
		}
	}
	return vetOK
}

// dialLease dials on a permit the caller holds (counted in dialing).
func (p *Pool[C]) dialLease(ctx context.Context, deadline time.Time) (*Lease[C], error) {
	gen := p.gen.Load()
	c, err := p.dial(ctx, deadline)
	p.mu.Lock()
	p.dialing--
	if err != nil {
		switch {
		case errors.Is(err, ErrAcquireTimeout):
			p.counts.timeouts++
		case ctx.Err() != nil: // the caller gave up; not the upstream's fault
		default:
			p.counts.dialFailures++
		}
		p.freeSlotLocked()
		p.mu.Unlock()
		return nil, err
	}
	p.counts.dialed++
	if p.state != stateOpen {
		p.retireAndUnlock(c)
		return nil, ErrClosed
	}
	p.inUse++
	p.mu.Unlock()
	now := p.clock.Now()
	return p.lease(&conn[C]{c: c, created: now, idleSince: now, gen: gen}), nil
}

// errDialBudget is the cancel cause of a dial that ran out of AcquireTimeout.
var errDialBudget = errors.New("pool: acquire timeout during dial")

// dial calls Hooks.Dial with what is left of AcquireTimeout before deadline.
func (p *Pool[C]) dial(ctx context.Context, deadline time.Time) (C, error) {
	if p.cfg.AcquireTimeout <= 0 {
		c, err := p.hooks.Dial(ctx)
		if err != nil {
			return c, &DialError{Pool: p.cfg.Name, Err: err}
		}
		return c, nil
	}
	now := p.clock.Now()
	if deadline.IsZero() {
		deadline = now.Add(p.cfg.AcquireTimeout)
	}
	start := deadline.Add(-p.cfg.AcquireTimeout)
	left := deadline.Sub(now)
	if left <= 0 {
		var zero C
		return zero, &AcquireTimeoutError{Pool: p.cfg.Name, Waited: now.Sub(start)}
	}
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := p.clock.AfterFunc(left, func() { cancel(errDialBudget) })
	c, err := p.hooks.Dial(dctx)
	t.Stop()
	if err != nil {
		if ctx.Err() == nil && context.Cause(dctx) == errDialBudget {
			return c, &AcquireTimeoutError{Pool: p.cfg.Name, Waited: p.clock.Now().Sub(start), Err: err}
		}
		return c, &DialError{Pool: p.cfg.Name, Err: err}
	}
	return c, nil
}
