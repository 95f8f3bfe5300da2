package policy

import (
	"errors"
	"fmt"

	"github.com/outrigger/outrigger/config"
)

// rule is a compiled policy.rules entry.
type rule struct {
	name  string
	when  matcher
	audit bool
	// message is the rule's own message, "" if none.
	message string
	// pg and redis are nil when the rule has no such section: it then
	// allows nothing on that protocol (beyond what is always allowed).
	pg    *pgRule
	redis *redisRule
}

// compileRule compiles r; key is its config path for errors.
func compileRule(key string, r config.Rule) (rule, error) {
	var errs []error
	when, err := compileMatch(key+".when", r.When)
	errs = append(errs, err)
	out := rule{
		name:    r.Name,
		when:    when,
		audit:   r.Mode == "audit",
		message: oneLine(r.Message),
	}
	if r.Postgres != nil {
		out.pg, err = compilePostgres(key+".postgres", *r.Postgres)
		errs = append(errs, err)
	}
	if r.Redis != nil {
		out.redis, err = compileRedis(key+".redis", *r.Redis)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// decide turns a verdict of the rule into a decision: reason is "" when the
// rule allows the request. Only a refusal builds a string.
func (r *rule) decide(reason string) Decision {
	if reason == "" {
		return Decision{Action: Allow, Rule: r.name}
	}
	msg := reason
	if r.message != "" {
		msg = fmt.Sprintf("%s (%s)", reason, r.message)
	}
	if r.audit {
		return Decision{Action: Allow, Rule: r.name, Message: msg, Audit: true}
	}
	return Decision{Action: Deny, Rule: r.name, Message: msg}
}
