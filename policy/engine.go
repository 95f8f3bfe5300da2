package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/pg/classify"
)

// defaultRuleName is Decision.Rule for sessions that no rule governs.
const defaultRuleName = config.ReservedRuleName

// Engine is the policy of one config version: the compiled rules and rate
// limits, and the handler chain that answers checks. It is immutable once
// Compile returns (only the rate limits' buckets and the metric series
// cache change), and safe for concurrent use. A reload compiles a new
// Engine; the frontends swap it in atomically and move their sessions to
// it with Rebind.
type Engine struct {
	rules        []rule
	limits       []*limit
	defaultAllow bool
	clock        Clock
	counters     *counterCache
	dlog         *decisionLog
	handler      Handler
}

// Clock tells the time to the rate limits; tests pass a fake one.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Option configures Compile.
type Option func(*options)

type options struct {
	metrics    *metrics.Metrics
	clock      Clock
	prev       *Engine
	maxBuckets int
	logger     *slog.Logger
}

// WithMetrics counts every decision in m.PolicyDecisions
// (outrigger_policy_decisions_total).
func WithMetrics(m *metrics.Metrics) Option { return func(o *options) { o.metrics = m } }

// WithLogger writes a line for every refusal and audit decision to l,
// at most 10 a second (a flood is summarised: the next line says how many
// were left out). The lines name the principal, rule, outcome and
// statement kinds or command, never query text, parameters or keys.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock sets the clock of the rate limits (the default is time.Now).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithPrevious passes the engine that the new one replaces: each rate limit
// whose config did not change keeps its per-principal, per-user and
// per-rule buckets (and Rebind carries per-client buckets), so a reload
// neither refills nor resets them.
func WithPrevious(old *Engine) Option { return func(o *options) { o.prev = old } }

// WithMaxBuckets bounds the buckets that one rate limit with per: principal
// or per: user keeps (DefaultMaxBuckets unless set): beyond it the bucket
// of the key least recently given to a new session is dropped. A session
// keeps the bucket it was given, so a key with sessions open during an
// eviction may have two buckets for a while.
func WithMaxBuckets(n int) Option { return func(o *options) { o.maxBuckets = n } }

// Compile validates cfg (as config.Validate does, so the errors name key
// paths such as policy.rules[2].postgres.tables[0]) and builds its Engine.
// Empty strings in cfg take their documented defaults, as config.Load
// fills them; cfg is not modified.
func Compile(cfg config.Policy, opts ...Option) (*Engine, error) {
	o := options{clock: systemClock{}, maxBuckets: DefaultMaxBuckets}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxBuckets < 1 {
		return nil, fmt.Errorf("policy: max buckets %d: must be > 0", o.maxBuckets)
	}
	cfg = withDefaults(cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		defaultAllow: cfg.Default == "allow",
		clock:        o.clock,
		counters:     newCounterCache(o.metrics),
		dlog:         newDecisionLog(o.logger),
	}
	var errs []error
	for i, rc := range cfg.Rules {
		r, err := compileRule(fmt.Sprintf("policy.rules[%d]", i), rc)
		errs = append(errs, err)
		e.rules = append(e.rules, r)
	}
	for i, lc := range cfg.RateLimits {
		l, err := compileLimit(fmt.Sprintf("policy.rate_limits[%d]", i), lc, o.maxBuckets, o.prev)
		errs = append(errs, err)
		e.limits = append(e.limits, l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	e.handler = buildChain(e.links(), endOfChain)
	return e, nil
}

// withDefaults returns a copy of cfg with the defaults of config's
// `default` tags in its empty strings (config.Load has already filled
// them in a loaded config).
func withDefaults(cfg config.Policy) config.Policy {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&cfg.Default, "allow")
	cfg.Rules = append([]config.Rule(nil), cfg.Rules...)
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		def(&r.Mode, "enforce")
		if r.Postgres != nil {
			pg := *r.Postgres
			def(&pg.OnParseError, "deny")
			r.Postgres = &pg
		}
	}
	cfg.RateLimits = append([]config.RateLimit(nil), cfg.RateLimits...)
	for i := range cfg.RateLimits {
		l := &cfg.RateLimits[i]
		def(&l.Per, "principal")
		def(&l.OnLimit, "reject")
	}
	return cfg
}

// Session is the policy of one client session: the rule that governs it
// and the rate limits that apply to it, resolved once from its Principal.
// Its checks are safe for concurrent use.
type Session struct {
	eng    *Engine
	p      Principal
	rule   *rule // nil: policy.default
	limits []sessionLimit
	ctr    *counters
}

// Session resolves the policy of a new client session: the first rule
// whose when matches p governs it (none: policy.default), and every rate
// limit whose when matches p applies to it, with the bucket its per: says.
// A frontend calls it once the principal is known (after authentication),
// and again when it changes (Redis AUTH).
func (e *Engine) Session(p Principal) *Session { return e.newSession(p, nil) }

// Rebind returns s if e resolved it, else a session of e for the same
// principal, carrying the per-client buckets of the rate limits that did
// not change. A frontend calls it before each check with the engine that
// is live now, so that a reload applies from the next statement of every
// open session. Rebind does not allocate when s is e's.
func (e *Engine) Rebind(s *Session) *Session {
	if s == nil || s.eng == e {
		return s
	}
	return e.newSession(s.p, s)
}

func (e *Engine) newSession(p Principal, prev *Session) *Session {
	s := &Session{eng: e, p: p}
	for i := range e.rules {
		if e.rules[i].when.match(&p) {
			s.rule = &e.rules[i]
			break
		}
	}
	for _, l := range e.limits {
		if !l.when.match(&p) {
			continue
		}
		var prevBucket *rate.Limiter
		if prev != nil && l.per == perClient {
			for _, psl := range prev.limits {
				if psl.l.hash == l.hash {
					prevBucket = psl.bucket
				}
			}
		}
		s.limits = append(s.limits, sessionLimit{l: l, bucket: l.bucket(&p, prevBucket), ctr: e.counters.forLimit(p.Listener, l)})
	}
	s.ctr = e.counters.forRule(p.Listener, s.rule, e.defaultAllow)
	return s
}

// CheckPostgres decides on one Postgres statement string: st is the
// classification of the whole text (every statement of a simple Query, or
// of a Parse), typically from a classify.Cache. A nil st is refused by
// every rule that has a postgres section. It does not allocate when it
// allows without a delay.
func (s *Session) CheckPostgres(ctx context.Context, st *classify.Result) Decision {
	return s.eng.handler(ctx, Request{Protocol: Postgres, Session: s, SQL: st})
}

// AuthorizePostgres decides on a statement that is prepared, not run: a
// Parse, or the statement an SQL EXECUTE runs (whose EXECUTE is checked
// itself). Only the rules decide; no rate-limit token is spent (each run
// of the statement is checked with CheckPostgres and spends one), and only
// a refusal or an audit is counted, so that the decision metric counts
// each statement run once.
func (s *Session) AuthorizePostgres(ctx context.Context, st *classify.Result) Decision {
	return s.eng.handler(ctx, Request{Protocol: Postgres, Session: s, SQL: st, Authorize: true})
}

// CheckRedis decides on one Redis command (also one queued inside MULTI).
// It does not allocate when it allows without a delay.
func (s *Session) CheckRedis(ctx context.Context, cmd RedisCommand) Decision {
	return s.eng.handler(ctx, Request{Protocol: Redis, Session: s, Redis: cmd})
}

// Principal returns the principal the session was resolved for.
func (s *Session) Principal() Principal { return s.p }

// RuleName returns the name of the rule that governs the session, or
// "default".
func (s *Session) RuleName() string {
	if s.rule == nil {
		return defaultRuleName
	}
	return s.rule.name
}

// Engine returns the engine that resolved the session.
func (s *Session) Engine() *Engine { return s.eng }
