package pool

import (
	"context"
	"errors"
	"testing"
)

func TestCloseWakesWaiters(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 1}, nil, nil)
	held := mustAcquire(t, p)
	var chs []<-chan result
	for i := range 3 {
		chs = append(chs, acquireAsync(context.Background(), p))
		waitWaiting(t, p, i+1)
	}
	p.Close()
	for i, ch := range chs {
		if r := <-ch; !errors.Is(r.err, ErrClosed) {
			t.Errorf("waiter %d: %v", i, r.err)
		}
	}
	if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
	if s := p.Stats(); !s.Closed || s.Waiting != 0 || s.InUse != 1 {
		t.Errorf("stats: %+v", s)
	}
	held.Release() // closed, not pooled
	if !held.Conn().closed.Load() {
		t.Error("lease released after Close was not closed")
	}
	p.Close() // idempotent
	if o := u.open.Load(); o != 0 {
		t.Errorf("%d connections left open", o)
	}
}

func TestCloseClosesIdle(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 3}, nil, nil)
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	a.Release()
	b.Release()
	p.Close()
	if o := u.open.Load(); o != 0 {
		t.Errorf("%d connections left open", o)
	}
	if s := p.Stats(); s.Open != 0 {
		t.Errorf("stats: %+v", s)
	}
}

func TestDrainWaitsForLeases(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 3}, nil, nil)
	a, b, c := mustAcquire(t, p), mustAcquire(t, p), mustAcquire(t, p)
	c.Release() // idle: closed as soon as the drain starts
	done := make(chan error, 1)
	go func() { done <- p.Drain(context.Background()) }()
	waitFor(t, "draining", func() bool { s := p.Stats(); return s.Draining && s.Idle == 0 && s.Closing == 0 })
	if !c.Conn().closed.Load() {
		t.Error("idle connection not closed by Drain")
	}
	if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire while draining: %v", err)
	}
	a.Release()
	if !a.Conn().closed.Load() {
		t.Error("connection released during the drain was not closed")
	}
	select {
	case err := <-done:
		t.Fatalf("Drain returned (%v) with a lease still out", err)
	default:
	}
	b.Release()
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if s := p.Stats(); !s.Closed || s.Open != 0 {
		t.Errorf("stats: %+v", s)
	}
	if o := u.open.Load(); o != 0 {
		t.Errorf("%d connections left open", o)
	}
}

func TestDrainWakesWaiters(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1}, nil, nil)
	held := mustAcquire(t, p)
	ch := acquireAsync(context.Background(), p)
	waitWaiting(t, p, 1)
	done := make(chan error, 1)
	go func() { done <- p.Drain(context.Background()) }()
	if r := <-ch; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("waiter: %v", r.err)
	}
	held.Release()
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

func TestDrainEnds(t *testing.T) {
	tests := []struct {
		name string
		end  func(cancel context.CancelFunc, p *Pool[*fakeConn])
		want error
	}{
		{"context ends", func(cancel context.CancelFunc, _ *Pool[*fakeConn]) { cancel() }, context.Canceled},
		{"Close", func(_ context.CancelFunc, p *Pool[*fakeConn]) { p.Close() }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, u := newTestPool(t, Config{Size: 1}, nil, nil)
			held := mustAcquire(t, p)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Drain(ctx) }()
			waitFor(t, "draining", func() bool { return p.Stats().Draining })
			tt.end(cancel, p)
			if err := <-done; !errors.Is(err, tt.want) && err != tt.want {
				t.Fatalf("Drain: %v, want %v", err, tt.want)
			}
			if s := p.Stats(); !s.Closed || s.InUse != 1 {
				t.Fatalf("stats: %+v", s)
			}
			held.Release()
			if o := u.open.Load(); o != 0 {
				t.Errorf("%d connections left open", o)
			}
			if err := p.Drain(context.Background()); err != nil {
				t.Errorf("Drain after Close: %v", err)
			}
		})
	}
}

func TestRetire(t *testing.T) {
	p, u := newTestPool(t, Config{Size: 3}, nil, nil)
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	b.Release() // idle: closed by Retire at once
	p.Retire()
	if !b.Conn().closed.Load() {
		t.Error("an idle connection survived Retire")
	}
	c := mustAcquire(t, p) // dialed after Retire: kept
	a.Release()            // lent during Retire: closed as it comes back
	if !a.Conn().closed.Load() {
		t.Error("a connection lent during Retire was pooled again")
	}
	c.Release()
	if c.Conn().closed.Load() {
		t.Error("a connection dialed after Retire was closed")
	}
	d := mustAcquire(t, p)
	if d.Conn() != c.Conn() {
		t.Error("the new connection was not lent again")
	}
	d.Release()
	if s := p.Stats(); s.Retired != 2 || s.Open != 1 || s.Idle != 1 {
		t.Errorf("stats: %+v", s)
	}
	if o := u.open.Load(); o != 1 {
		t.Errorf("%d connections open, want 1", o)
	}
}
