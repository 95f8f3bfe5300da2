package pool

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings; none means valid
	}{
		{"ok", Config{Name: "p", Size: 4, MinIdle: 4}, nil},
		{"size", Config{Name: "p"}, []string{"pool p: size: must be > 0"}},
		{"min idle above size", Config{Name: "p", Size: 2, MinIdle: 3}, []string{"min_idle: must be between 0 and size (2)"}},
		{"negatives, all listed", Config{Name: "p", Size: 1, MaxWaiters: -1, AcquireTimeout: -1, IdleTimeout: -1, MaxLifetime: -1, HealthCheckAfter: -1},
			[]string{"max_waiters", "acquire_timeout", "idle_timeout", "max_lifetime", "health_check_after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := New(Config{Name: "p", Size: 1}, Hooks[int]{}); err == nil ||
		!strings.Contains(err.Error(), "Dial is required") || !strings.Contains(err.Error(), "Close is required") {
		t.Errorf("New without hooks: %v", err)
	}
}

func TestAcquireReusesMostRecentlyReleased(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 3}, nil, nil)
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	a.Release()
	b.Release()
	if got := mustAcquire(t, p); got.Conn() != b.Conn() {
		t.Errorf("got conn %d, want the last released (%d)", got.Conn().id, b.Conn().id)
	}
	if d := u.dials.Load(); d != 2 {
		t.Errorf("dials = %d, want 2", d)
	}
}

func TestFIFOFairness(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 1}, nil, nil)
	held := mustAcquire(t, p)

	const n = 10
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := p.Acquire(context.Background())
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			l.Release()
		}()
		waitWaiting(t, p, i+1) // arrival order is i
	}
	held.Release()
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("served in order %v, want 0..%d", order, n-1)
		}
	}
	if len(order) != n {
		t.Fatalf("served %d waiters, want %d", len(order), n)
	}
	if d := u.dials.Load(); d != 1 {
		t.Errorf("dials = %d; every waiter should get the released connection", d)
	}
	s := p.Stats()
	if s.Waits != n || s.Acquired != n+1 {
		t.Errorf("Waits %d Acquired %d, want %d and %d", s.Waits, s.Acquired, n, n+1)
	}
}

func TestReleaseHandsOffToOldestWaiter(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1}, nil, nil)
	held := mustAcquire(t, p)
	ch := acquireAsync(context.Background(), p)
	waitWaiting(t, p, 1)
	held.Release()
	// The hand-off happens inside Release: the connection never becomes idle,
	// so no newcomer can take it.
	if s := p.Stats(); s.Idle != 0 || s.InUse != 1 || s.Waiting != 0 {
		t.Fatalf("after Release: %+v", s)
	}
	if _, err := p.Acquire(ctxDone()); !errors.Is(err, context.Canceled) {
		t.Fatalf("newcomer: %v", err)
	}
	r := <-ch
	if r.err != nil || r.l.Conn() != held.Conn() {
		t.Fatalf("waiter got %v, %v", r.l, r.err)
	}
	r.l.Release()
}

func ctxDone() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestAcquireTimeout(t *testing.T) {
	const timeout = 5 * time.Second
	tests := []struct {
		name string
		// setup leaves one Acquire about to time out, under clk.
		setup func(t *testing.T, p *Pool[*fakeConn], u *fakeUpstream)
		gate  bool
		cause error // what the timeout wraps
	}{
		{
			name: "queued",
			setup: func(t *testing.T, p *Pool[*fakeConn], u *fakeUpstream) {
				mustAcquire(t, p) // held until Close
			},
		},
		{
			name:  "dialing",
			gate:  true, // the dial never finishes by itself
			setup: func(t *testing.T, p *Pool[*fakeConn], u *fakeUpstream) {},
			cause: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			p, u := newTestPool(t, Config{Name: "appdb/app", Size: 1, AcquireTimeout: timeout}, clk,
				func(u *fakeUpstream, h *Hooks[*fakeConn]) {
					if tt.gate {
						u.dialGate = make(chan struct{})
					}
				})
			tt.setup(t, p, u)
			ch := acquireAsync(context.Background(), p)
			waitFor(t, "acquire timer", func() bool { return clk.pending(timeout) == 1 })
			clk.Advance(timeout)
			r := <-ch
			if r.err == nil {
				t.Fatal("Acquire succeeded")
			}
			if !errors.Is(r.err, ErrAcquireTimeout) {
				t.Errorf("errors.Is(%v, ErrAcquireTimeout) = false", r.err)
			}
			var te *AcquireTimeoutError
			if !errors.As(r.err, &te) {
				t.Fatalf("error %T is not *AcquireTimeoutError", r.err)
			}
			if te.Pool != "appdb/app" || te.Waited != timeout {
				t.Errorf("Pool %q Waited %v", te.Pool, te.Waited)
			}
			if want := "pool: acquire timeout: pool appdb/app: no connection after 5s"; !strings.HasPrefix(r.err.Error(), want) {
				t.Errorf("message %q, want prefix %q", r.err, want)
			}
			if tt.cause != nil && !errors.Is(r.err, tt.cause) {
				t.Errorf("error %v does not wrap %v", r.err, tt.cause)
			}
			if !te.Timeout() || !te.SafeToRetry() {
				t.Error("Timeout/SafeToRetry should be true")
			}
			s := p.Stats()
			if s.Timeouts != 1 || s.Waiting != 0 || s.Dialing != 0 || s.DialFailures != 0 {
				t.Errorf("stats: %+v", s)
			}
		})
	}
}

func TestCancelWhileWaitingRemovesWaiter(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1}, nil, nil)
	held := mustAcquire(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	ch := acquireAsync(ctx, p)
	waitWaiting(t, p, 1)
	cancel()
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Acquire: %v", r.err)
	}
	if s := p.Stats(); s.Waiting != 0 || s.Canceled != 1 {
		t.Fatalf("stats: %+v", s)
	}
	held.Release()
	if s := p.Stats(); s.Idle != 1 || s.InUse != 0 {
		t.Fatalf("released connection went to a gone waiter: %+v", s)
	}
}

func TestMaxWaiters(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1, MaxWaiters: 2}, nil, nil)
	held := mustAcquire(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	a, b := acquireAsync(ctx, p), acquireAsync(ctx, p)
	waitWaiting(t, p, 2)
	_, err := p.Acquire(context.Background())
	var tw *TooManyWaitersError
	if !errors.Is(err, ErrTooManyWaiters) || !errors.As(err, &tw) || tw.Limit != 2 || tw.Pool != "appdb/app" {
		t.Fatalf("third waiter: %v", err)
	}
	if s := p.Stats(); s.Rejected != 1 {
		t.Errorf("Rejected = %d", s.Rejected)
	}
	cancel()
	<-a
	<-b
	held.Release()
}

func TestFailedDialWakesNextWaiter(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 1}, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
		u.dialGate = make(chan struct{})
		u.dialErr = func(n int) error {
			if n == 1 {
				return errDialRefused
			}
			return nil
		}
	})
	first := acquireAsync(context.Background(), p)
	waitFor(t, "first dial", func() bool { return u.dials.Load() == 1 })
	second := acquireAsync(context.Background(), p)
	waitWaiting(t, p, 1)

	u.dialGate <- struct{}{} // the first dial fails
	r := <-first
	var de *DialError
	if !errors.Is(r.err, errDialRefused) || !errors.As(r.err, &de) || de.Pool != "appdb/app" {
		t.Fatalf("first: %v", r.err)
	}
	waitFor(t, "second dial", func() bool { return u.dials.Load() == 2 })
	u.dialGate <- struct{}{} // the second, made by the woken waiter, succeeds
	r = <-second
	if r.err != nil {
		t.Fatalf("second: %v", r.err)
	}
	s := p.Stats()
	if s.DialFailures != 1 || s.Dialed != 1 || s.InUse != 1 || s.Waiting != 0 {
		t.Errorf("stats: %+v", s)
	}
	r.l.Release()
}

func TestLeaseEndsOnce(t *testing.T) {
	type op func(*Lease[*fakeConn])
	rel := (*Lease[*fakeConn]).Release
	dirty := (*Lease[*fakeConn]).ReleaseDirty
	disc := (*Lease[*fakeConn]).Discard
	tests := []struct {
		name     string
		ops      []op
		wantIdle int
	}{
		{"release release", []op{rel, rel}, 1},
		{"release discard", []op{rel, disc}, 1},
		{"discard release", []op{disc, rel}, 0},
		{"discard discard", []op{disc, disc}, 0},
		{"dirty release", []op{dirty, rel}, 1},
		{"dirty dirty", []op{dirty, dirty}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, u := newTestPool(t, Config{Size: 2}, nil, nil)
			l := mustAcquire(t, p)
			for _, f := range tt.ops {
				f(l)
			}
			s := p.Stats()
			if s.InUse != 0 || s.Idle != tt.wantIdle || s.Open != tt.wantIdle {
				t.Errorf("stats: %+v", s)
			}
			checkInvariants(t, p, u)
		})
	}
}

func TestStaleLeaseCannotReleaseNewOwner(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 1}, nil, nil)
	old := mustAcquire(t, p)
	old.Release()
	cur := mustAcquire(t, p)
	if cur.Conn() != old.Conn() {
		t.Fatal("expected the same connection")
	}
	old.Release()
	old.ReleaseDirty()
	old.Discard()
	if s := p.Stats(); s.InUse != 1 || s.Idle != 0 || cur.Conn().closed.Load() {
		t.Fatalf("a stale lease touched the current one: %+v", s)
	}
	cur.Release()
	checkInvariants(t, p, u)
}

func TestReleaseDirty(t *testing.T) {
	tests := []struct {
		name       string
		noReset    bool
		resetFails bool
		wantIdle   int
		wantFail   uint64
	}{
		{name: "reset ok", wantIdle: 1},
		{name: "reset fails", resetFails: true, wantFail: 1},
		{name: "no reset hook", noReset: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, u := newTestPool(t, Config{Size: 1}, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
				if tt.noReset {
					h.Reset = nil
				}
			})
			l := mustAcquire(t, p)
			l.Conn().dirty.Store(tt.resetFails)
			l.ReleaseDirty()
			s := p.Stats()
			if s.Idle != tt.wantIdle || s.ResetFailures != tt.wantFail || s.InUse != 0 {
				t.Errorf("stats: %+v", s)
			}
			if l.Conn().closed.Load() == (tt.wantIdle == 1) {
				t.Errorf("closed = %v", l.Conn().closed.Load())
			}
			checkInvariants(t, p, u)
		})
	}
}

func TestHealthCheckOnBorrow(t *testing.T) {
	const after = time.Minute
	tests := []struct {
		name      string
		idleFor   time.Duration
		bad       []bool // per idle connection, bottom first; the top is lent first
		wantConn  int    // id of the connection lent
		wantCheck int64
		wantFail  uint64
		wantDials int64
	}{
		{name: "fresh, not checked", idleFor: after - 1, bad: []bool{true}, wantConn: 1, wantCheck: 0, wantDials: 1},
		{name: "stale and healthy", idleFor: after, bad: []bool{false}, wantConn: 1, wantCheck: 1, wantDials: 1},
		{name: "stale and bad: dial a new one", idleFor: after, bad: []bool{true}, wantConn: 2, wantCheck: 1, wantFail: 1, wantDials: 2},
		{name: "stale and bad: next idle one", idleFor: 2 * after, bad: []bool{false, true}, wantConn: 1, wantCheck: 2, wantFail: 1, wantDials: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			p, u := newTestPool(t, Config{Size: 3, HealthCheckAfter: after}, clk, nil)
			var ls []*Lease[*fakeConn]
			for range tt.bad {
				ls = append(ls, mustAcquire(t, p))
			}
			for i, l := range ls {
				l.Conn().bad.Store(tt.bad[i])
				l.Release()
			}
			clk.Advance(tt.idleFor)
			l := mustAcquire(t, p)
			defer l.Release()
			if l.Conn().id != tt.wantConn {
				t.Errorf("lent conn %d, want %d", l.Conn().id, tt.wantConn)
			}
			s := p.Stats()
			if u.checks.Load() != tt.wantCheck || s.HealthCheckFailures != tt.wantFail || u.dials.Load() != tt.wantDials {
				t.Errorf("checks %d dials %d stats %+v", u.checks.Load(), u.dials.Load(), s)
			}
			checkInvariants(t, p, u)
		})
	}
}

func TestCanceledAroundCheck(t *testing.T) {
	tests := []struct {
		name       string
		duringWait bool // cancel from OnAcquireWait, which runs before the check
		wantIdle   int  // a connection whose check never ran is kept
	}{
		{name: "before check", duringWait: true, wantIdle: 1},
		{name: "during check", duringWait: false, wantIdle: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var armed atomic.Bool
			p, u := newTestPool(t, Config{Size: 1}, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
				h.OnAcquireWait = func(time.Duration) {
					if armed.Load() && tt.duringWait {
						cancel()
					}
				}
				h.Check = func(ctx context.Context, c *fakeConn) error {
					if armed.Load() && !tt.duringWait {
						cancel()
						return ctx.Err()
					}
					return nil
				}
			})
			mustAcquire(t, p).Release()
			armed.Store(true)
			if _, err := p.Acquire(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Acquire: %v", err)
			}
			s := p.Stats()
			if s.Idle != tt.wantIdle || s.InUse != 0 || s.Dialing != 0 || s.HealthCheckFailures != 0 {
				t.Fatalf("stats: %+v", s)
			}
			if d := u.dials.Load(); d != 1 {
				t.Errorf("dials = %d, want 1", d)
			}
			checkInvariants(t, p, u)
		})
	}
}

func TestLifetimeOnBorrowAndRelease(t *testing.T) {
	clk := newFakeClock()
	p, u := newTestPool(t, Config{Size: 2, MaxLifetime: time.Hour}, clk, nil)
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	a.Release()
	clk.Advance(time.Hour)
	c := mustAcquire(t, p) // a is too old: closed, a new one dialed
	if c.Conn() == a.Conn() || !a.Conn().closed.Load() {
		t.Fatalf("lent an expired connection")
	}
	b.Release() // too old: closed on release
	if !b.Conn().closed.Load() {
		t.Fatal("expired connection kept on release")
	}
	c.Release()
	if s := p.Stats(); s.ClosedLifetime != 2 || s.Idle != 1 {
		t.Fatalf("stats: %+v", s)
	}
	checkInvariants(t, p, u)
}

func TestOnAcquireWait(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	var got []time.Duration
	p, _ := newTestPool(t, Config{Size: 1}, clk, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
		h.OnAcquireWait = func(d time.Duration) {
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
		}
	})
	held := mustAcquire(t, p)
	ch := acquireAsync(context.Background(), p)
	waitWaiting(t, p, 1)
	clk.Advance(3 * time.Second)
	held.Release()
	r := <-ch
	r.l.Release()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != 0 || got[1] != 3*time.Second {
		t.Fatalf("observed %v, want [0s 3s]", got)
	}
	if s := p.Stats(); s.WaitTime != 3*time.Second || s.Waits != 1 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestSizeNeverExceeded hammers one pool from 50 goroutines with every way
// of ending a lease, cancellations, failing checks and resets, and
// maintenance running on the real clock. -race checks the rest.
func TestSizeNeverExceeded(t *testing.T) {
	const size, workers, iters = 5, 50, 300
	p, u := newTestPool(t, Config{
		Size: size, MinIdle: 2, MaxWaiters: workers,
		IdleTimeout: time.Millisecond, MaxLifetime: 3 * time.Millisecond,
		MaintenanceInterval: time.Millisecond,
	}, nil, func(u *fakeUpstream, h *Hooks[*fakeConn]) {
		u.dialErr = func(n int) error {
			if n%17 == 0 {
				return errDialRefused
			}
			return nil
		}
	})
	var held, maxHeld atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range iters {
				if w%10 == 0 && i%50 == 0 {
					time.Sleep(2 * time.Millisecond) // let connections age and idle
				}
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if i%7 == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(100))*time.Microsecond)
				}
				l, err := p.Acquire(ctx)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errDialRefused) {
						t.Errorf("Acquire: %v", err)
						return
					}
					continue
				}
				if l.Conn().inUse.Swap(true) {
					t.Error("one connection lent twice at once")
				}
				if l.Conn().closed.Load() {
					t.Error("lent a closed connection")
				}
				h := held.Add(1)
				for m := maxHeld.Load(); h > m && !maxHeld.CompareAndSwap(m, h); m = maxHeld.Load() {
				}
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(50)) * time.Microsecond)
				}
				l.Conn().bad.Store(rng.IntN(100) == 0)
				l.Conn().dirty.Store(rng.IntN(10) == 0)
				held.Add(-1)
				l.Conn().inUse.Store(false)
				switch rng.IntN(50) {
				case 0:
					l.Discard()
				case 1, 2, 3, 4, 5:
					l.ReleaseDirty()
				default:
					l.Release()
				}
				if rng.IntN(3) == 0 {
					l.Release() // a second end is a no-op
				}
			}
		}()
	}
	wg.Wait()
	if m := maxHeld.Load(); m > size {
		t.Errorf("%d leases held at once, Size %d", m, size)
	}
	if m := u.maxOpen.Load(); m > size {
		t.Errorf("%d upstream connections open at once, Size %d", m, size)
	}
	s := p.Stats()
	if s.InUse != 0 || s.Waiting != 0 || s.Open > size {
		t.Errorf("after the hammer: %+v", s)
	}
	p.Close()
	if o := u.open.Load(); o != 0 {
		t.Errorf("%d upstream connections left open after Close", o)
	}
	t.Logf("stats: %+v", p.Stats())
}
