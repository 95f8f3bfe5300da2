package pool

import (
	"context"
	"sort"
	"testing"
	"time"
)

func idleIDs(p *Pool[*fakeConn]) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []int
	for _, cn := range p.idle {
		ids = append(ids, cn.c.id)
	}
	sort.Ints(ids)
	return ids
}

func TestMinIdleDialedAtStartAndRefilled(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 4, MinIdle: 2}, nil, nil)
	waitFor(t, "MinIdle at start", func() bool { s := p.Stats(); return s.Idle == 2 && s.Dialing == 0 })
	l := mustAcquire(t, p)
	l.Discard() // one idle left: maintenance is kicked to dial another
	waitFor(t, "MinIdle refilled", func() bool { s := p.Stats(); return s.Idle == 2 && s.Dialing == 0 })
	if s := p.Stats(); s.Dialed != 3 || s.Discarded != 1 {
		t.Errorf("stats: %+v", s)
	}
	checkInvariants(t, p, u)
}

func TestMinIdleDialFailureEndsRound(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 4, MinIdle: 3}, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
		u.dialErr = func(int) error { return errDialRefused }
	})
	waitFor(t, "first round", func() bool { return u.dials.Load() == 1 && p.Stats().Dialing == 0 })
	p.maintainOnce()
	if d := u.dials.Load(); d != 2 {
		t.Fatalf("dials = %d: a failed dial should end the round", d)
	}
	if s := p.Stats(); s.DialFailures != 2 || s.Open != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestIdleReapingKeepsMinIdle(t *testing.T) {
	const interval = 30 * time.Second
	clk := newFakeClock()
	p, u := newTestPool(t, Config{Size: 5, MinIdle: 2, IdleTimeout: time.Minute, MaintenanceInterval: interval}, clk, nil)
	waitFor(t, "MinIdle at start", func() bool { s := p.Stats(); return s.Idle == 2 && s.Dialing == 0 })

	var ls []*Lease[*fakeConn]
	for range 5 {
		ls = append(ls, mustAcquire(t, p))
	}
	for _, l := range ls { // the last released are the warmest
		l.Release()
	}
	if s := p.Stats(); s.Idle != 5 {
		t.Fatalf("stats: %+v", s)
	}
	// Through the maintenance goroutine: once its timer is armed, move past
	// both the interval and the idle timeout.
	waitFor(t, "maintenance timer", func() bool { return clk.pending(interval) == 1 })
	clk.Advance(2 * time.Minute)
	waitFor(t, "idle reaping", func() bool { return p.Stats().ClosedIdle == 3 })

	want := []int{ls[3].Conn().id, ls[4].Conn().id}
	sort.Ints(want)
	if got := idleIDs(p); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("kept %v, want the warmest %v", got, want)
	}
	s := p.Stats()
	if s.Idle != 2 || s.Open != 2 || s.ClosedLifetime != 0 {
		t.Errorf("stats: %+v", s)
	}
	checkInvariants(t, p, u)
}

func TestIdleReapingSparesRecentlyUsed(t *testing.T) {
	clk := newFakeClock()
	p, u := newTestPool(t, Config{Size: 3, IdleTimeout: time.Minute}, clk, nil)
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	a.Release()
	clk.Advance(40 * time.Second)
	b.Release()
	clk.Advance(40 * time.Second) // a idle 80s, b idle 40s
	p.maintainOnce()
	if got := idleIDs(p); len(got) != 1 || got[0] != b.Conn().id {
		t.Fatalf("idle after reaping: %v, want [%d]", got, b.Conn().id)
	}
	if s := p.Stats(); s.ClosedIdle != 1 {
		t.Fatalf("stats: %+v", s)
	}
	checkInvariants(t, p, u)
}

func TestLifetimeReaping(t *testing.T) {
	clk := newFakeClock()
	p, u := newTestPool(t, Config{Size: 3, MaxLifetime: time.Hour}, clk, nil)
	idle, lent := mustAcquire(t, p), mustAcquire(t, p)
	idle.Release()
	clk.Advance(time.Hour)
	p.maintainOnce()
	if !idle.Conn().closed.Load() || lent.Conn().closed.Load() {
		t.Fatal("lifetime reaping: want the idle one closed, the lent one kept")
	}
	if s := p.Stats(); s.ClosedLifetime != 1 || s.Idle != 0 || s.InUse != 1 {
		t.Fatalf("stats: %+v", s)
	}
	lent.Release() // closed when it comes back
	if s := p.Stats(); s.ClosedLifetime != 2 || s.Open != 0 {
		t.Fatalf("stats: %+v", s)
	}
	checkInvariants(t, p, u)
}

func TestLifetimeReapingRefillsMinIdle(t *testing.T) {
	clk := newFakeClock()
	p, u := newTestPool(t, Config{Size: 3, MinIdle: 2, MaxLifetime: time.Hour}, clk, nil)
	waitFor(t, "MinIdle at start", func() bool { s := p.Stats(); return s.Idle == 2 && s.Dialing == 0 })
	clk.Advance(time.Hour)
	p.maintainOnce() // expired ones go even below MinIdle, then new ones come
	waitFor(t, "refill", func() bool { s := p.Stats(); return s.Idle == 2 && s.Dialing == 0 && s.ClosedLifetime == 2 })
	if got := idleIDs(p); got[0] <= 2 {
		t.Errorf("idle %v: want new connections", got)
	}
	checkInvariants(t, p, u)
}

func TestCloseCancelsMaintenanceDial(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 2, MinIdle: 1}, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
		u.dialGate = make(chan struct{}) // never opened
	})
	waitFor(t, "maintenance dial", func() bool { return u.dials.Load() == 1 })
	p.Close() // returns: the dial sees its context cancelled
	if s := p.Stats(); s.Dialing != 0 || s.DialFailures != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if _, err := p.Acquire(context.Background()); err != ErrClosed {
		t.Fatalf("Acquire after Close: %v", err)
	}
}
