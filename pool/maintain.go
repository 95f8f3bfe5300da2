package pool

// maintainLoop is the pool's one background goroutine, started by New and
// ended by Close. It runs maintainOnce every Config interval, and early when
// kicked (a connection closed while fewer than MinIdle are idle).
func (p *Pool[C]) maintainLoop() {
	defer close(p.maintDone)
	interval := p.cfg.interval()
	for {
		p.maintainOnce()
		t := p.clock.AfterFunc(interval, p.tickFn)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-p.kick:
			t.Stop()
		}
	}
}

// tick wakes maintenance without blocking.
func (p *Pool[C]) tick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// maintainOnce closes idle connections past MaxLifetime or IdleTimeout
// (keeping MinIdle of the latter), then dials up to MinIdle idle ones.
// Rounds never overlap (maintMu), so MinIdle is not overshot.
func (p *Pool[C]) maintainOnce() {
	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	p.reap()
	p.fillMinIdle()
}

// reap closes expired idle connections. The idle stack is ordered coldest
// first, so idle reaping removes the longest idle ones and keeps the
// warmest MinIdle.
func (p *Pool[C]) reap() {
	life, idleTO := p.cfg.MaxLifetime, p.cfg.IdleTimeout
	if life <= 0 && idleTO <= 0 {
		return
	}
	p.mu.Lock()
	if p.state != stateOpen {
		p.mu.Unlock()
		return
	}
	now := p.clock.Now()
	var doomed []C
	left := len(p.idle) // idle connections that would remain
	keep := p.idle[:0]
	for _, cn := range p.idle {
		switch {
		case life > 0 && now.Sub(cn.created) >= life:
			p.counts.closedLifetime++
		case idleTO > 0 && now.Sub(cn.idleSince) >= idleTO && left > p.cfg.MinIdle:
			p.counts.closedIdle++
		default:
			keep = append(keep, cn)
			continue
		}
		doomed = append(doomed, cn.c)
		left--
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	if len(doomed) == 0 {
		p.mu.Unlock()
		return
	}
	p.closing += len(doomed)
	p.mu.Unlock()
	for _, c := range doomed {
		p.closeConn(c)
	}
	p.mu.Lock()
	for range doomed {
		p.closing--
		p.freeSlotLocked()
	}
	p.mu.Unlock()
}

// fillMinIdle dials, one at a time, until MinIdle connections are idle or
// Size is reached. A failed dial ends the round; the next tick tries again.
func (p *Pool[C]) fillMinIdle() {
	if p.cfg.MinIdle <= 0 {
		return
	}
	for {
		p.mu.Lock()
		if p.state != stateOpen || len(p.idle) >= p.cfg.MinIdle ||
			p.openLocked() >= p.cfg.Size || p.waiters.len() > 0 {
			p.mu.Unlock()
			return
		}
		p.dialing++
		p.mu.Unlock()

		gen := p.gen.Load()
		c, err := p.hooks.Dial(p.ctx)
		now := p.clock.Now()
		p.mu.Lock()
		p.dialing--
		if err != nil {
			if p.ctx.Err() == nil {
				p.counts.dialFailures++
			}
			p.freeSlotLocked()
			p.mu.Unlock()
			return
		}
		p.counts.dialed++
		if p.state != stateOpen {
			p.retireAndUnlock(c)
			return
		}
		p.putLocked(&conn[C]{c: c, created: now, idleSince: now, gen: gen})
		p.mu.Unlock()
	}
}
