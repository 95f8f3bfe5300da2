package policy

import "sync/atomic"

// Live holds the engine of the live config version. The process keeps one
// for all its listeners across reloads: a reload stores the new engine,
// and every open session moves to it (Engine.Rebind) before its next
// check, so new rules apply from the next statement or command.
type Live struct {
	p atomic.Pointer[Engine]
}

// Load returns the live engine; nil for a nil Live or before the first
// Store.
func (l *Live) Load() *Engine {
	if l == nil {
		return nil
	}
	return l.p.Load()
}

// Store makes e the live engine.
func (l *Live) Store(e *Engine) { l.p.Store(e) }

// Enforces reports whether the engine can refuse or delay anything: it has
// a rule or a rate limit, or policy.default is deny. A frontend skips the
// checks (and the classification they need) while the live engine does
// not enforce; a nil engine does not.
func (e *Engine) Enforces() bool {
	return e != nil && (len(e.rules) > 0 || len(e.limits) > 0 || !e.defaultAllow)
}
