package pool

import (
	"sync/atomic"
	"time"
)

// Lease is one connection lent by Acquire. The goroutine that holds it owns
// the connection until it calls exactly one of Release, ReleaseDirty or
// Discard; later calls to any of them are no-ops, so a slot is never freed
// twice. Every Acquire returns a new Lease, so an old *Lease kept by mistake
// can never give back a connection that has since been lent to someone else.
type Lease[C any] struct {
	p    *Pool[C]
	cn   *conn[C]
	done atomic.Bool
}

// Conn returns the leased connection. It must not be used after the lease
// ends.
func (l *Lease[C]) Conn() C { return l.cn.c }

// Created returns when the connection was dialed.
func (l *Lease[C]) Created() time.Time { return l.cn.created }

// Release gives a healthy connection back: to the oldest waiter if anyone
// waits, else to the top of the idle stack. A connection past MaxLifetime, or
// one released after Close or Drain began, is closed instead.
func (l *Lease[C]) Release() {
	if l.done.CompareAndSwap(false, true) {
		l.p.release(l.cn)
	}
}

// ReleaseDirty gives back a connection that may hold session state: it runs
// Hooks.Reset in the calling goroutine (and blocks while it runs), then
// releases the connection as Release does. If Reset fails, is not set, or the
// pool is closing, the connection is closed instead.
func (l *Lease[C]) ReleaseDirty() {
	if !l.done.CompareAndSwap(false, true) {
		return
	}
	p := l.p
	if p.hooks.Reset == nil || p.ctx.Err() != nil {
		p.discard(l.cn, false)
		return
	}
	if err := p.hooks.Reset(p.ctx, l.cn.c); err != nil {
		p.discard(l.cn, true)
		return
	}
	p.release(l.cn)
}

// Discard closes the connection (for a broken or unrecoverable one) and
// frees its slot for the next waiter.
func (l *Lease[C]) Discard() {
	if l.done.CompareAndSwap(false, true) {
		l.p.discard(l.cn, false)
	}
}

// release takes back a connection counted in inUse.
func (p *Pool[C]) release(cn *conn[C]) {
	var now time.Time
	if p.stampIdle || p.cfg.MaxLifetime > 0 {
		now = p.clock.Now()
	}
	p.mu.Lock()
	p.inUse--
	if p.state != stateOpen {
		p.retireAndUnlock(cn.c)
		return
	}
	if p.retiredLocked(cn) {
		p.counts.retired++
		p.kickLocked()
		p.retireAndUnlock(cn.c)
		return
	}
	if p.cfg.MaxLifetime > 0 && now.Sub(cn.created) >= p.cfg.MaxLifetime {
		p.counts.closedLifetime++
		p.kickLocked()
		p.retireAndUnlock(cn.c)
		return
	}
	cn.idleSince = now
	p.putLocked(cn)
	p.mu.Unlock()
}

// discard closes a connection counted in inUse.
func (p *Pool[C]) discard(cn *conn[C], resetFailed bool) {
	p.mu.Lock()
	p.inUse--
	if resetFailed {
		p.counts.resetFailures++
	}
	p.counts.discarded++
	p.kickLocked()
	p.retireAndUnlock(cn.c)
}
