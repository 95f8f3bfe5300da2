package pool

import "context"

// Close stops the pool at once: Acquire fails with ErrClosed from now on,
// every waiter wakes with ErrClosed, maintenance stops (its dial in flight is
// cancelled), idle connections are closed before Close returns, and lent
// ones are closed as their leases end. Close ends a Drain in progress.
// Close is idempotent.
func (p *Pool[C]) Close() {
	p.mu.Lock()
	if p.state == stateClosed {
		p.mu.Unlock()
		return
	}
	if p.state == stateDraining && !p.drainedClosed {
		p.drainedClosed = true // Close ends a Drain early
		close(p.drained)
	}
	p.state = stateClosed
	p.wakeAllLocked(ErrClosed)
	idle := p.takeIdleLocked()
	p.mu.Unlock()

	p.cancel()
	close(p.stop)
	<-p.maintDone
	p.closeIdle(idle)
}

// Drain stops the pool gracefully: it lends nothing more (Acquire and every
// waiter get ErrClosed), closes idle connections, and waits until every
// lease has ended (each returned connection is closed) or ctx ends; then it
// closes the pool. It returns ctx.Err() if ctx ended first, else nil.
// Concurrent calls all wait; Drain after Close returns nil.
func (p *Pool[C]) Drain(ctx context.Context) error {
	p.mu.Lock()
	switch p.state {
	case stateClosed:
		p.mu.Unlock()
		return nil
	case stateOpen:
		p.state = stateDraining
		p.drained = make(chan struct{})
		p.wakeAllLocked(ErrClosed)
		idle := p.takeIdleLocked()
		p.checkDrainedLocked()
		p.mu.Unlock()
		p.closeIdle(idle)
	default:
		p.mu.Unlock()
	}
	var err error
	select {
	case <-p.drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.Close()
	return err
}

// wakeAllLocked empties the wait queue, failing every waiter with err.
func (p *Pool[C]) wakeAllLocked(err error) {
	for w := p.waiters.popFront(); w != nil; w = p.waiters.popFront() {
		p.dequeuedLocked(w)
		w.err = err
		w.ready <- struct{}{}
	}
}

// takeIdleLocked moves every idle connection to closing and returns them.
func (p *Pool[C]) takeIdleLocked() []*conn[C] {
	idle := p.idle
	p.idle = nil
	p.closing += len(idle)
	return idle
}

// closeIdle closes what takeIdleLocked took, then frees their slots.
func (p *Pool[C]) closeIdle(idle []*conn[C]) {
	if len(idle) == 0 {
		return
	}
	for _, cn := range idle {
		p.closeConn(cn.c)
	}
	p.mu.Lock()
	p.closing -= len(idle)
	p.checkDrainedLocked()
	p.mu.Unlock()
}

// checkDrainedLocked ends a drain once nothing is lent, dialing or closing.
func (p *Pool[C]) checkDrainedLocked() {
	if p.state == stateDraining && !p.drainedClosed && p.inUse+p.dialing+p.closing == 0 {
		p.drainedClosed = true
		close(p.drained)
	}
}
