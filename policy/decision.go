package policy

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Action is what a Decision tells the frontend to do.
type Action uint8

// The actions.
const (
	// Allow: run the query or command (after Delay, if any).
	Allow Action = iota
	// Deny: refuse it with PostgresError or RedisError; the session goes on.
	Deny
	// RateLimited: refuse it with PostgresError or RedisError; the session
	// goes on.
	RateLimited
)

// String returns "allow", "deny" or "rate_limited".
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case RateLimited:
		return "rate_limited"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is the answer to one check. Its strings come from the compiled
// config (they are not built per check, except Message on a refusal), so a
// caller may keep them.
type Decision struct {
	Action Action
	// Rule names what decided: the rule that governs the session
	// ("default" for policy.default), or for RateLimited the rate limit.
	Rule string
	// Limit names the rate limit that delayed or refused the request, ""
	// when none did.
	Limit string
	// Message says why a request was refused, or for Audit why it would
	// have been; the rule's own message, if it has one, is part of it.
	// Empty for a plain Allow.
	Message string
	// Delay is how long the caller waits before running an allowed request
	// (a rate limit with on_limit: delay). It is never more than that
	// limit's max_delay.
	Delay time.Duration
	// Audit is set on an Allow by a rule in audit mode that would have
	// denied the request: the caller logs Message, and the request runs.
	Audit bool
}

// Wait holds the caller for Delay (at once when there is none). It
// reports false when ctx ended first: the request must then not run.
func (d Decision) Wait(ctx context.Context) bool {
	if d.Delay <= 0 {
		return true
	}
	t := time.NewTimer(d.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Outcome returns the decision as the metric outrigger_policy_decisions_total
// counts it: "allow", "deny", "rate_limited", "delayed" (allowed after a
// Delay) or "audit_deny" (allowed by Audit).
func (d Decision) Outcome() string {
	switch {
	case d.Action == Deny:
		return "deny"
	case d.Action == RateLimited:
		return "rate_limited"
	case d.Audit:
		return "audit_deny"
	case d.Delay > 0:
		return "delayed"
	}
	return "allow"
}

// SQLSTATE codes of refused statements.
const (
	// CodeDenied is insufficient_privilege, for Deny.
	CodeDenied = "42501"
	// CodeRateLimited is configuration_limit_exceeded (class 53,
	// insufficient resources), for RateLimited: a configured limit, not the
	// server, refused the statement, and 53300 already means a pool
	// timeout.
	CodeRateLimited = "53400"
)

// PostgresError returns the SQLSTATE and message of the ErrorResponse
// (severity ERROR) that a refused statement gets; "", "" for Allow.
func (d Decision) PostgresError() (code, message string) {
	switch d.Action {
	case Deny:
		return CodeDenied, "permission denied by policy rule " + strconv.Quote(d.Rule) + ": " + d.Message
	case RateLimited:
		return CodeRateLimited, "rate limited by policy rate limit " + strconv.Quote(d.Rule) + ": " + d.Message
	}
	return "", ""
}

// RedisError returns the error line that a refused command gets, without
// the leading '-' and the CRLF (redcon.AppendError adds them):
// "NOPERM policy rule \"name\": <message>" for Deny and
// "ERR rate limited <name>" for RateLimited; "" for Allow. CR and LF in it
// become spaces.
func (d Decision) RedisError() string {
	switch d.Action {
	case Deny:
		return oneLine("NOPERM policy rule " + strconv.Quote(d.Rule) + ": " + d.Message)
	case RateLimited:
		return oneLine("ERR rate limited " + d.Rule)
	}
	return ""
}

// oneLine replaces CR and LF, which would end a RESP error line early.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
