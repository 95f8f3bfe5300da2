package pg

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/outrigger/outrigger/pg/classify"
	"github.com/outrigger/outrigger/policy"
)

// Every statement text a client sends is checked by the policy once,
// classified by the real Postgres parser (through the handler's cache):
//
//   - a simple Query: its whole text (all its statements), with the rules
//     and the rate limits;
//   - a Parse: its text, with the rules only (preparing spends no token);
//   - an Execute: the statement its portal was bound from, with the rules
//     (again: a reload may have changed them) and the rate limits, so each
//     run of a prepared statement counts once;
//   - an SQL EXECUTE (also under EXPLAIN ANALYZE or CREATE TABLE AS): what
//     the named statement was prepared as, with the rules;
//   - a FunctionCall message: it names a function by OID, which no rule
//     can match, so every rule with a postgres section refuses it.
//
// What the policy cannot classify (a portal or statement it never saw,
// such as one prepared before the policy was enabled) is refused under
// every rule that restricts Postgres statements: the checks fail closed.

// sessionPolicy is what the policy keeps of one client session while the
// live engine enforces anything.
type sessionPolicy struct {
	sess *policy.Session
	// stmts are the classifications of the session's prepared statements
	// by name: Parse and SQL PREPARE share one namespace, as on Postgres;
	// "" is the unnamed statement. portals are those of its portals.
	stmts   map[string]*classify.Result
	portals map[string]*classify.Result
}

// policy returns the session's policy for the engine that is live now
// (after a reload, the new engine's rules apply from the next statement),
// or nil when the live engine enforces nothing.
func (s *session) policy() *sessionPolicy {
	eng := s.h.env.Policy.Load()
	if !eng.Enforces() {
		return nil
	}
	p := s.pol
	if p == nil {
		p = &sessionPolicy{stmts: map[string]*classify.Result{}, portals: map[string]*classify.Result{}}
		s.pol = p
	}
	if p.sess == nil {
		p.sess = eng.Session(s.principal)
	} else {
		p.sess = eng.Rebind(p.sess)
	}
	return p
}

// principalOf is who a session is for the policy.
func principalOf(listener, identity, user, db string, remote net.Addr) policy.Principal {
	p := policy.Principal{Identity: identity, User: user, Database: db, Listener: listener}
	if a, ok := remote.(*net.TCPAddr); ok {
		p.Source, _ = netip.AddrFromSlice(a.IP)
		p.Source = p.Source.Unmap()
	}
	return p
}

// check decides on a statement text (res nil: one that could not be
// classified). run says it is about to run (Query, Execute,
// FunctionCall): rate limits apply, and a delay is waited out here. It
// returns the error that refuses it, or nil.
func (p *sessionPolicy) check(ctx context.Context, res *classify.Result, run bool) *Error {
	var d policy.Decision
	if run {
		d = p.sess.CheckPostgres(ctx, res)
	} else {
		d = p.sess.AuthorizePostgres(ctx, res)
	}
	if d.Action == policy.Allow && res != nil {
		// An SQL EXECUTE runs what was prepared under its name (earlier,
		// or by a PREPARE before it in the same text).
		var prepared map[string]*classify.Result
		for i := range res.Statements {
			st := &res.Statements[i]
			for _, name := range st.Executes {
				pr, ok := prepared[name]
				if !ok {
					pr = p.stmts[name]
				}
				if pd := p.sess.AuthorizePostgres(ctx, pr); pd.Action != policy.Allow {
					d = pd
					break
				}
			}
			if st.Prepares != "" {
				if prepared == nil {
					prepared = map[string]*classify.Result{}
				}
				prepared[st.Prepares] = &classify.Result{Statements: []classify.Statement{*st}}
			}
		}
		if d.Action == policy.Allow {
			for name, pr := range prepared {
				p.remember(name, pr)
			}
			if forgetsStatements(res) {
				clear(p.stmts)
				clear(p.portals)
			}
		}
	}
	if d.Action != policy.Allow {
		code, msg := d.PostgresError()
		return &Error{Code: code, Message: msg, refusal: true, rule: d.Rule}
	}
	if !d.Wait(ctx) {
		// The session ended while the rate limit held the statement
		// back: it must not run.
		return &Error{Code: policy.CodeRateLimited, Message: "the session ended while a rate limit held the statement back", refusal: true, rule: d.Limit}
	}
	return nil
}

// maxPolicyNames bounds the statements and portals a session's policy
// remembers; beyond it a new name is not remembered, and running it is
// refused under rules (fail closed) rather than memory growing.
const maxPolicyNames = 2 * maxClientStatements

// remember records what statement name was prepared as.
func (p *sessionPolicy) remember(name string, res *classify.Result) {
	if _, ok := p.stmts[name]; ok || len(p.stmts) < maxPolicyNames {
		p.stmts[name] = res
	}
}

// bind records what portal was bound from statement stmt.
func (p *sessionPolicy) bind(portal, stmt []byte) {
	if _, ok := p.portals[string(portal)]; ok || len(p.portals) < maxPolicyNames {
		p.portals[string(portal)] = p.stmts[string(stmt)]
	}
}

// forgetsStatements reports whether res drops every prepared statement
// (DISCARD ALL, DEALLOCATE ALL).
func forgetsStatements(res *classify.Result) bool {
	for i := range res.Statements {
		for _, e := range res.Statements[i].Effects {
			if e.Kind == classify.EffectDiscardAll || e.Kind == classify.EffectDeallocateAll {
				return true
			}
		}
	}
	return false
}

// refusalSQL is what Outrigger runs on an attached server in place of a
// refused statement: it fails with the refusal's SQLSTATE (the client is
// given Outrigger's own error in its place), which leaves the server's
// transaction exactly as a refusal by Postgres would.
func refusalSQL(code string) []byte {
	return []byte("DO $outrigger$BEGIN RAISE EXCEPTION USING ERRCODE = '" + code + "', MESSAGE = 'statement refused by an Outrigger policy'; END$outrigger$")
}

// refuse answers a statement the policy refused with e; query says it
// came as a simple Query (or FunctionCall), else as an extended-protocol
// message. With a server attached the refusal goes through the server, so
// that its transaction fails as Postgres would make it: in an explicit
// transaction what follows gets 25P02 until ROLLBACK, and in a pipeline
// the implicit transaction rolls back and the server skips to the Sync.
// With nothing open on a server (no transaction, nothing in flight),
// Outrigger answers alone.
func (s *session) refuse(e *Error, query bool, text []byte) error {
	return s.answerError(e, query, s.startRoundTrip(text))
}

// answerError answers a message with Outrigger's error e (a refusal, or a
// limit of Outrigger's own) so that the server's transaction fails as it
// would had Postgres raised e; o is the round trip's started record.
func (s *session) answerError(e *Error, query bool, o *observed) error {
	s.mu.Lock()
	srv := s.srv
	if srv == nil || s.dead || s.txStatus == 'I' && !s.open && s.q.empty() {
		// Nothing open on a server: answering alone is the same.
		s.mu.Unlock()
		return s.localErrorObs(e, query, o)
	}
	defer s.mu.Unlock()
	sql := refusalSQL(e.Code)
	if query {
		s.expect(item{kind: itQuery, act: actRefuse, errMsg: e, start: time.Now(), obs: o})
		s.out = appendMsg(s.out, 'Q', sql, []byte{0})
		s.outTerm = len(s.out)
		return nil
	}
	// The unnamed statement and portal carry the failing statement; the
	// client's own unnamed statement is prepared again where it is next
	// used.
	s.open = true
	it := item{kind: itParse, act: actRefuse, errMsg: e}
	s.setUnnamed(srv, &it, nil)
	s.expect(it)
	s.expect(item{kind: itBind, act: actRefuse, errMsg: e})
	s.expect(item{kind: itExecute, act: actRefuse, errMsg: e})
	s.out = appendMsg(s.out, 'P', []byte{0}, sql, []byte{0, 0, 0})
	s.out = appendMsg(s.out, 'B', []byte{0, 0, 0, 0, 0, 0, 0, 0})
	s.out = appendMsg(s.out, 'E', []byte{0, 0, 0, 0, 0})
	s.skip = true
	s.roundObs = o // the round trip ends at the client's Sync
	return nil
}
