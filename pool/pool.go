package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// state is the life stage of a pool. It only moves forward:
// stateOpen -> stateDraining -> stateClosed, or stateOpen -> stateClosed.
type state int8

const (
	// stateOpen lends connections.
	stateOpen state = iota
	// stateDraining lends nothing more and closes connections as they come
	// back, until none is out; then the pool closes.
	stateDraining
	// stateClosed holds no idle connections and closes the rest as they come
	// back.
	stateClosed
)

// conn is one upstream connection and its timestamps. c and created never
// change; idleSince is written by the goroutine that owns the connection
// (its lessee, or the pool under mu while it is idle).
type conn[C any] struct {
	c         C
	created   time.Time
	idleSince time.Time
	// gen is the pool's Retire generation when its dial began.
	gen uint64
}

// Pool is a bounded pool of upstream connections of type C, with a FIFO wait
// queue, health checks on borrow and background reaping. It is safe for
// concurrent use. Create it with New; stop it with Close or Drain.
type Pool[C any] struct {
	cfg        Config
	hooks      Hooks[C]
	clock      Clock
	maxWaiters int
	// stampIdle: a release must record idleSince (for IdleTimeout or Check).
	stampIdle bool

	// ctx is cancelled by Close; maintenance dials and Reset run under it.
	ctx    context.Context
	cancel context.CancelFunc
	// kick wakes maintenance early (buffered 1); stop ends it; maintDone is
	// closed when it has ended.
	kick      chan struct{}
	stop      chan struct{}
	maintDone chan struct{}
	tickFn    func()
	// maintMu serializes maintenance rounds (the goroutine's, or a test's).
	// Lock order: maintMu, then mu.
	maintMu sync.Mutex

	// acquired counts leases handed out; atomic so the fast path takes the
	// lock once.
	acquired atomic.Uint64
	// gen counts Retire calls: a connection whose dial began in an earlier
	// generation is closed when it comes back.
	gen atomic.Uint64

	mu    sync.Mutex
	state state
	// idle is a stack: the most recently released connection is on top
	// (the end) and is lent first, so the bottom ones age out.
	idle []*conn[C]
	// inUse counts lent connections (and ones a waiter was handed but has not
	// taken yet); dialing counts dials in flight; closing counts connections
	// being closed. idle+inUse+dialing+closing <= cfg.Size, always.
	inUse, dialing, closing int
	waiters                 waitQueue[C]
	// drained is closed once a draining pool has nothing out.
	drained       chan struct{}
	drainedClosed bool
	counts        counters
}

// New validates cfg and hooks and starts the pool's maintenance goroutine,
// which dials MinIdle connections in the background; New itself does not dial.
func New[C any](cfg Config, hooks Hooks[C]) (*Pool[C], error) {
	if err := errors.Join(cfg.Validate(), hooks.validate(cfg.Name)); err != nil {
		return nil, err
	}
	p := &Pool[C]{
		cfg:        cfg,
		hooks:      hooks,
		clock:      hooks.Clock,
		maxWaiters: cfg.MaxWaiters,
		stampIdle:  cfg.IdleTimeout > 0 || hooks.Check != nil,
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		maintDone:  make(chan struct{}),
		idle:       make([]*conn[C], 0, cfg.Size),
	}
	if p.clock == nil {
		p.clock = RealClock{}
	}
	if p.maxWaiters == 0 {
		p.maxWaiters = DefaultMaxWaiters
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.tickFn = p.tick
	go p.maintainLoop()
	return p, nil
}

// Name returns Config.Name.
func (p *Pool[C]) Name() string { return p.cfg.Name }

// Config returns the Config the pool was made with.
func (p *Pool[C]) Config() Config { return p.cfg }

// lease wraps a connection the caller now owns. A Lease is never reused, so
// a stale *Lease can never release someone else's connection.
func (p *Pool[C]) lease(cn *conn[C]) *Lease[C] {
	p.acquired.Add(1)
	return &Lease[C]{p: p, cn: cn}
}

// openLocked counts every slot taken.
func (p *Pool[C]) openLocked() int {
	return len(p.idle) + p.inUse + p.dialing + p.closing
}

// popIdleLocked takes the most recently released idle connection, or nil.
func (p *Pool[C]) popIdleLocked() *conn[C] {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	cn := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return cn
}

// putLocked makes a healthy connection available: to the oldest waiter if
// there is one, else onto the idle stack. Only while open.
func (p *Pool[C]) putLocked(cn *conn[C]) {
	if !p.handOffLocked(cn) {
		p.idle = append(p.idle, cn)
	}
}

// freeSlotLocked is called whenever a slot is given up. While open, the
// oldest waiter gets it as a permit to dial; while draining, the last slot
// to come back ends the drain.
func (p *Pool[C]) freeSlotLocked() {
	switch p.state {
	case stateOpen:
		p.handOffLocked(nil)
	case stateDraining:
		p.checkDrainedLocked()
	}
}

// retireAndUnlock closes c, whose slot the caller moved out of its counter,
// without the lock, then frees the slot. Called with p.mu held; returns with
// it released. The slot stays taken (in closing) until the close is done, so
// there are never more than Size upstream connections.
func (p *Pool[C]) retireAndUnlock(c C) {
	p.closing++
	p.mu.Unlock()
	p.closeConn(c)
	p.mu.Lock()
	p.closing--
	p.freeSlotLocked()
	p.mu.Unlock()
}

// closeConn calls Hooks.Close; its error is of no use to anyone.
func (p *Pool[C]) closeConn(c C) { _ = p.hooks.Close(c) }

// kickLocked asks maintenance to top up MinIdle after a connection closed.
func (p *Pool[C]) kickLocked() {
	if p.cfg.MinIdle > 0 && p.state == stateOpen && len(p.idle) < p.cfg.MinIdle {
		p.tick()
	}
}
