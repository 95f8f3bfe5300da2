package policy

import (
	"context"

	"github.com/outrigger/outrigger/pg/classify"
)

// Protocol says which kind of request a Request carries.
type Protocol uint8

// The protocols.
const (
	Postgres Protocol = iota + 1
	Redis
)

// Request is one check on its way down the chain. It travels by value, so
// that a check does not allocate.
type Request struct {
	Protocol Protocol
	Session  *Session
	// SQL is the classification of a whole Postgres statement string (all
	// its statements), for Protocol Postgres. Shared; not modified.
	SQL *classify.Result
	// Redis is the command, for Protocol Redis.
	Redis RedisCommand
	// Authorize asks for the rules' verdict alone (Session.AuthorizePostgres):
	// rate limits pass it by, and an allow is not counted.
	Authorize bool
}

// Handler answers a Request. The handlers of an Engine are built once, by
// Compile, and are safe for concurrent use.
type Handler func(ctx context.Context, req Request) Decision

// Plugin is one link of the chain: it answers the request itself (refuses,
// rate-limits, allows) or passes it to next, and may look at what next
// answered. A new kind of rule is one more Plugin in Engine.links.
type Plugin func(next Handler) Handler

// links declares the chain, outermost first. This is the one place that
// says in which order the checks run:
//
//  1. countDecisions (with WithMetrics): counts what the rest decided;
//     logDecisions (with WithLogger): logs refusals and audits, sampled;
//  2. alwaysAllowed: transaction control and the Redis commands that every
//     session may run, exempt from the rest (a ROLLBACK must never be
//     rate-limited);
//  3. rateLimits: the session's rate limits; refuses, or sets Delay on
//     what the rest decides (a refused request still spent its tokens);
//  4. governingRule: the first rule whose when matched the session;
//  5. defaultRule: policy.default, for a session no rule matched.
func (e *Engine) links() []Plugin {
	var ls []Plugin
	if e.counters != nil {
		ls = append(ls, countDecisions)
	}
	if e.dlog != nil {
		ls = append(ls, e.logDecisions)
	}
	return append(ls, alwaysAllowed, e.rateLimits, governingRule, defaultRule(e.defaultAllow))
}

// buildChain wraps last in links, the first link outermost.
func buildChain(links []Plugin, last Handler) Handler {
	h := last
	for i := len(links) - 1; i >= 0; i-- {
		h = links[i](h)
	}
	return h
}

// endOfChain refuses: no link decided, which a correct chain never lets
// happen (defaultRule always decides). Failing closed all the same.
func endOfChain(_ context.Context, req Request) Decision {
	return Decision{Action: Deny, Rule: defaultRuleName, Message: "no policy decision"}
}

func countDecisions(next Handler) Handler {
	return func(ctx context.Context, req Request) Decision {
		d := next(ctx, req)
		if !req.Authorize || d.Action != Allow || d.Audit {
			req.Session.count(d)
		}
		return d
	}
}

func alwaysAllowed(next Handler) Handler {
	return func(ctx context.Context, req Request) Decision {
		if req.Protocol == Postgres && transactionControl(req.SQL) ||
			req.Protocol == Redis && alwaysAllowedRedisCommand(req.Redis.Name) {
			return Decision{Action: Allow, Rule: req.Session.RuleName()}
		}
		return next(ctx, req)
	}
}

func (e *Engine) rateLimits(next Handler) Handler {
	return func(ctx context.Context, req Request) Decision {
		s := req.Session
		if len(s.limits) == 0 || req.Authorize {
			return next(ctx, req)
		}
		refused, by, delay := take(s.limits, e.clock.Now())
		if refused != nil {
			l := refused.l
			return Decision{Action: RateLimited, Rule: l.name, Limit: l.name, Message: l.message}
		}
		d := next(ctx, req)
		if by != nil && d.Action != RateLimited {
			d.Delay, d.Limit = delay, by.l.name
		}
		return d
	}
}

func governingRule(next Handler) Handler {
	return func(ctx context.Context, req Request) Decision {
		r := req.Session.rule
		if r == nil {
			return next(ctx, req)
		}
		return r.decide(r.check(&req))
	}
}

// check returns why r refuses req, or "".
func (r *rule) check(req *Request) string {
	switch req.Protocol {
	case Postgres:
		if r.pg == nil {
			return "the rule allows no Postgres statements"
		}
		return r.pg.check(req.SQL)
	case Redis:
		if r.redis == nil {
			return "the rule allows no Redis commands"
		}
		return r.redis.check(&req.Redis)
	}
	return "unknown protocol"
}

func defaultRule(allow bool) Plugin {
	return func(Handler) Handler {
		if allow {
			return func(context.Context, Request) Decision {
				return Decision{Action: Allow, Rule: defaultRuleName}
			}
		}
		return func(context.Context, Request) Decision {
			return Decision{Action: Deny, Rule: defaultRuleName, Message: "no policy rule matches this session, and policy.default is deny"}
		}
	}
}
