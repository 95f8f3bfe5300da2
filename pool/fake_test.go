package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when a test calls Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	d       time.Duration
	when    time.Time
	f       func()
	stopped bool // stopped or fired
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, d: d, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time forward and runs, in this goroutine, every timer that
// became due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	live := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.when.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			live = append(live, t)
		}
	}
	c.timers = live
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pending counts armed timers of duration d.
func (c *fakeClock) pending(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped && t.d == d {
			n++
		}
	}
	return n
}

// fakeConn stands in for an upstream connection.
type fakeConn struct {
	id     int
	bad    atomic.Bool // Check fails
	dirty  atomic.Bool // Reset fails
	closed atomic.Bool
	inUse  atomic.Bool // held by a lease in the hammer test
}

// fakeUpstream makes fakeConns and counts what happens to them.
type fakeUpstream struct {
	mu      sync.Mutex
	conns   []*fakeConn
	dialErr func(n int) error // n counts dials from 1; nil: succeed
	// dialGate, if set, blocks each dial until it can receive (or ctx ends).
	dialGate chan struct{}

	open, maxOpen atomic.Int64
	dials         atomic.Int64
	closes        atomic.Int64
	doubleCloses  atomic.Int64
	checks        atomic.Int64
	resets        atomic.Int64
}

var errDialRefused = errors.New("connection refused")

func (u *fakeUpstream) dial(ctx context.Context) (*fakeConn, error) {
	n := int(u.dials.Add(1))
	if u.dialGate != nil {
		select {
		case <-u.dialGate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if u.dialErr != nil {
		if err := u.dialErr(n); err != nil {
			return nil, err
		}
	}
	o := u.open.Add(1)
	for {
		m := u.maxOpen.Load()
		if o <= m || u.maxOpen.CompareAndSwap(m, o) {
			break
		}
	}
	u.mu.Lock()
	c := &fakeConn{id: len(u.conns) + 1}
	u.conns = append(u.conns, c)
	u.mu.Unlock()
	return c, nil
}

func (u *fakeUpstream) close(c *fakeConn) error {
	if c.closed.Swap(true) {
		u.doubleCloses.Add(1)
		return errors.New("double close")
	}
	u.closes.Add(1)
	u.open.Add(-1)
	return nil
}

func (u *fakeUpstream) check(_ context.Context, c *fakeConn) error {
	u.checks.Add(1)
	if c.bad.Load() {
		return errors.New("server closed the connection")
	}
	return nil
}

func (u *fakeUpstream) reset(_ context.Context, c *fakeConn) error {
	u.resets.Add(1)
	if c.dirty.Load() {
		return errors.New("reset failed")
	}
	return nil
}

func (u *fakeUpstream) conn(id int) *fakeConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns[id-1]
}

func (u *fakeUpstream) hooks(clock Clock) Hooks[*fakeConn] {
	return Hooks[*fakeConn]{Dial: u.dial, Close: u.close, Check: u.check, Reset: u.reset, Clock: clock}
}

// newTestPool makes a pool over a fresh fakeUpstream; edit may change the
// hooks. The pool is closed at cleanup, where no connection may have been
// closed twice.
func newTestPool(t testing.TB, cfg Config, clock Clock, edit func(*fakeUpstream, *Hooks[*fakeConn])) (*Pool[*fakeConn], *fakeUpstream) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "appdb/app"
	}
	if cfg.MaintenanceInterval == 0 {
		cfg.MaintenanceInterval = time.Hour // tests call maintainOnce or Advance
	}
	u := &fakeUpstream{}
	h := u.hooks(clock)
	if edit != nil {
		edit(u, &h)
	}
	p, err := New(cfg, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		p.Close()
		if n := u.doubleCloses.Load(); n != 0 {
			t.Errorf("%d connections closed twice", n)
		}
	})
	return p, u
}

// waitFor polls cond until it holds; the bound is only a safety net against a
// hung test, never a performance assertion.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitWaiting(t testing.TB, p *Pool[*fakeConn], n int) {
	t.Helper()
	waitFor(t, "waiters", func() bool { return p.Stats().Waiting == n })
}

type result struct {
	l   *Lease[*fakeConn]
	err error
}

// acquireAsync starts an Acquire and returns where its result will arrive.
func acquireAsync(ctx context.Context, p *Pool[*fakeConn]) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := p.Acquire(ctx)
		ch <- result{l, err}
	}()
	return ch
}

func mustAcquire(t testing.TB, p *Pool[*fakeConn]) *Lease[*fakeConn] {
	t.Helper()
	l, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return l
}

// checkInvariants compares a quiet pool's stats with the fake upstream.
func checkInvariants(t testing.TB, p *Pool[*fakeConn], u *fakeUpstream) {
	t.Helper()
	s := p.Stats()
	if s.Open != s.Idle+s.InUse+s.Dialing+s.Closing {
		t.Errorf("Open %d != Idle %d + InUse %d + Dialing %d + Closing %d", s.Open, s.Idle, s.InUse, s.Dialing, s.Closing)
	}
	if s.Open > s.Size {
		t.Errorf("Open %d > Size %d", s.Open, s.Size)
	}
	if got := u.open.Load(); got != int64(s.Idle+s.InUse) {
		t.Errorf("upstream has %d open connections, pool counts %d idle + %d in use", got, s.Idle, s.InUse)
	}
}
