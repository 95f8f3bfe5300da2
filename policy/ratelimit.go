package policy

import (
	"fmt"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/outrigger/outrigger/config"
)

// DefaultMaxBuckets bounds the buckets one rate limit keeps for per:
// principal and per: user (see WithMaxBuckets).
const DefaultMaxBuckets = 10000

// perKind says what one bucket of a rate limit is kept for.
type perKind uint8

const (
	perPrincipal perKind = iota // one per Principal.Identity, shared by its sessions
	perUser                     // one per Principal.User, shared by its sessions
	perClient                   // one per Session
	perRule                     // one for the whole rate limit
)

// limit is a compiled policy.rate_limits entry. Its buckets are golang.org/x/time/rate
// token buckets.
type limit struct {
	name     string
	when     matcher
	per      perKind
	reject   bool
	maxDelay time.Duration
	rate     rate.Limit
	burst    int
	// hash identifies the entry's config: a reload whose entry has the same
	// hash keeps the buckets (WithPrevious, Engine.Rebind).
	hash string
	// message is the refusal's Message, built once.
	message string

	// shared is the one bucket of per: rule.
	shared *rate.Limiter
	// buckets are those of per: principal and per: user, by key, at most
	// the engine's maxBuckets of them; the least recently resolved goes
	// first.
	buckets *lru.Cache[string, *rate.Limiter]
}

func compileLimit(key string, c config.RateLimit, maxBuckets int, prev *Engine) (*limit, error) {
	when, err := compileMatch(key+".when", c.When)
	if err != nil {
		return nil, err
	}
	l := &limit{
		name:     c.Name,
		when:     when,
		reject:   c.OnLimit != "delay",
		maxDelay: c.MaxDelay,
		rate:     rate.Limit(c.Rate),
		burst:    c.Burst,
		hash:     config.Hash(c),
		message:  fmt.Sprintf("more than %s requests per second (burst %d)", strconv.FormatFloat(c.Rate, 'f', -1, 64), c.Burst),
	}
	if l.reject {
		l.maxDelay = 0
	}
	switch c.Per {
	case "user":
		l.per = perUser
	case "client":
		l.per = perClient
	case "rule":
		l.per = perRule
	default:
		l.per = perPrincipal
	}
	if old := prev.limitByHash(l.hash); old != nil {
		l.shared, l.buckets = old.shared, old.buckets
		return l, nil
	}
	switch l.per {
	case perRule:
		l.shared = rate.NewLimiter(l.rate, l.burst)
	case perPrincipal, perUser:
		l.buckets, err = lru.New[string, *rate.Limiter](maxBuckets)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", key, err)
		}
	}
	return l, nil
}

// bucket returns the bucket a session of p takes tokens from; prev is the
// bucket of the same limit in the session this one replaces (Rebind), or
// nil.
func (l *limit) bucket(p *Principal, prev *rate.Limiter) *rate.Limiter {
	var key string
	switch l.per {
	case perRule:
		return l.shared
	case perClient:
		if prev != nil {
			return prev
		}
		return rate.NewLimiter(l.rate, l.burst)
	case perUser:
		key = p.User
	default:
		key = p.Identity
	}
	if b, ok := l.buckets.Get(key); ok {
		return b
	}
	b := rate.NewLimiter(l.rate, l.burst)
	if old, found, _ := l.buckets.PeekOrAdd(key, b); found {
		return old
	}
	return b
}

// sessionLimit is a limit as it applies to one session.
type sessionLimit struct {
	l      *limit
	bucket *rate.Limiter
	ctr    *counters
}

// maxHeld is how many reservations take fits on its stack; more rate
// limits on one session still work, with an allocation.
const maxHeld = 4

// take takes one token from each of the session's buckets at now. A bucket
// that is empty refuses the request when its limit rejects, or when the
// wait would pass its max_delay; the tokens already taken from the other
// buckets are then given back. Otherwise delay is the longest wait and by
// the limit that imposes it. It does not allocate for up to maxHeld limits.
func take(limits []sessionLimit, now time.Time) (refused, by *sessionLimit, delay time.Duration) {
	held := make([]rate.Reservation, 0, maxHeld)
	for i := range limits {
		sl := &limits[i]
		// Refuse without reserving when the bucket cannot serve within
		// max_delay: a reservation cancelled while a later one is
		// outstanding does not give its token back (x/time/rate), so
		// under a concurrent flood reserve-then-cancel would drain the
		// bucket below its rate. Cancels remain only for races at the
		// boundary and for the tokens of the other limits.
		if sl.bucket.TokensAt(now) < 1-sl.l.maxDelay.Seconds()*float64(sl.l.rate) {
			for j := range held {
				held[j].CancelAt(now)
			}
			return sl, nil, 0
		}
		r := *sl.bucket.ReserveN(now, 1)
		d := r.DelayFrom(now)
		if d > sl.l.maxDelay {
			r.CancelAt(now)
			for j := range held {
				held[j].CancelAt(now)
			}
			return sl, nil, 0
		}
		held = append(held, r)
		if d > delay || by == nil {
			delay, by = d, sl
		}
	}
	if delay == 0 {
		by = nil
	}
	return nil, by, delay
}

// limitByHash returns the limit of e whose config hash is h, or nil (also
// for a nil e).
func (e *Engine) limitByHash(h string) *limit {
	if e == nil {
		return nil
	}
	for _, l := range e.limits {
		if l.hash == h {
			return l
		}
	}
	return nil
}
