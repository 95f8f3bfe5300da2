package policy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/metrics"
)

// counters are the series of outrigger_policy_decisions_total for one
// (listener, rule or rate limit). Only the decisions that the rule or limit
// can make have a series; the others are nil.
type counters struct {
	allow, deny, auditDeny prometheus.Counter // a rule or the default
	rateLimited, delayed   prometheus.Counter // a rate limit
}

// counterCache hands out counters, each resolved once per engine (resolving
// a series takes a lock and a hash; counting with it is one atomic add).
type counterCache struct {
	vec *prometheus.CounterVec
	m   sync.Map // counterKey -> *counters
}

type counterKey struct {
	listener, name string
	limit          bool // a rate limit may share a rule's name
}

func newCounterCache(m *metrics.Metrics) *counterCache {
	if m == nil || m.PolicyDecisions == nil {
		return nil
	}
	return &counterCache{vec: m.PolicyDecisions}
}

// forRule returns the counters of a rule (r nil: the default) on listener.
func (c *counterCache) forRule(listener string, r *rule, defaultAllow bool) *counters {
	if c == nil {
		return nil
	}
	name := defaultRuleName
	if r != nil {
		name = r.name
	}
	return c.get(counterKey{listener, name, false}, func() *counters {
		out := counters{allow: c.vec.WithLabelValues(listener, name, "allow")}
		switch {
		case r != nil && r.audit:
			out.auditDeny = c.vec.WithLabelValues(listener, name, "audit_deny")
		case r != nil || !defaultAllow:
			out.deny = c.vec.WithLabelValues(listener, name, "deny")
		}
		return &out
	})
}

// forLimit returns the counters of a rate limit on listener.
func (c *counterCache) forLimit(listener string, l *limit) *counters {
	if c == nil {
		return nil
	}
	return c.get(counterKey{listener, l.name, true}, func() *counters {
		out := counters{rateLimited: c.vec.WithLabelValues(listener, l.name, "rate_limited")}
		if !l.reject {
			out.delayed = c.vec.WithLabelValues(listener, l.name, "delayed")
		}
		return &out
	})
}

func (c *counterCache) get(k counterKey, mk func() *counters) *counters {
	if v, ok := c.m.Load(k); ok {
		return v.(*counters)
	}
	v, _ := c.m.LoadOrStore(k, mk())
	return v.(*counters)
}

// count adds d to the session's series: one count per check.
func (s *Session) count(d Decision) {
	if s.ctr == nil {
		return
	}
	var c prometheus.Counter
	switch {
	case d.Action == RateLimited:
		if sl := s.limitNamed(d.Rule); sl != nil && sl.ctr != nil {
			c = sl.ctr.rateLimited
		}
	case d.Action == Deny:
		c = s.ctr.deny
	case d.Audit:
		c = s.ctr.auditDeny
	case d.Delay > 0:
		if sl := s.limitNamed(d.Limit); sl != nil && sl.ctr != nil {
			c = sl.ctr.delayed
		}
	default:
		c = s.ctr.allow
	}
	if c != nil {
		c.Inc()
	}
}

func (s *Session) limitNamed(name string) *sessionLimit {
	for i := range s.limits {
		if s.limits[i].l.name == name {
			return &s.limits[i]
		}
	}
	return nil
}
