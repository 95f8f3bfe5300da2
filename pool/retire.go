package pool

// Retire closes every connection that is open now: idle ones at once, lent
// ones when their leases end (Release closes them instead of keeping
// them). The pool stays open and dials new connections as they are
// needed. It is for an upstream whose connections should not be reused:
// after a failover, a migration, or changed credentials.
func (p *Pool[C]) Retire() {
	p.mu.Lock()
	if p.state != stateOpen {
		p.mu.Unlock()
		return
	}
	p.gen.Add(1)
	idle := p.takeIdleLocked()
	p.counts.retired += uint64(len(idle))
	p.mu.Unlock()
	for _, cn := range idle {
		p.closeConn(cn.c)
		p.mu.Lock()
		p.closing--
		p.freeSlotLocked()
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.kickLocked()
	p.mu.Unlock()
}

// retiredLocked reports whether cn was open (or dialing) when Retire was
// last called.
func (p *Pool[C]) retiredLocked(cn *conn[C]) bool { return cn.gen < p.gen.Load() }
