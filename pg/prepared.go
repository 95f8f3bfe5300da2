package pg

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/outrigger/outrigger/pg/classify"
)

// In transaction and statement mode a client's prepared statements must
// follow it from server to server. Each named Parse is kept by the session
// and sent to servers under a shared name derived from the query text and
// parameter types, so equal statements from many clients are prepared once
// per server. A server that lacks a statement gets a hidden Parse just
// before the Bind or Describe that needs it; a Parse for a statement the
// server already has, and a Close of a statement, are answered by
// Outrigger in order.

// sharedName is the server-side name for a statement: the same query and
// parameter types give the same name on every server.
func sharedName(query, types []byte) string {
	h := sha256.New()
	h.Write(query)
	h.Write([]byte{0})
	h.Write(types)
	var sum [32]byte
	return "_or_" + hex.EncodeToString(h.Sum(sum[:0])[:12])
}

func (s *session) onParse(m msg) error {
	name, rest, ok1 := cstring(m.Body)
	query, types, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return &ProtocolError{Msg: "malformed Parse message"}
	}
	var res *classify.Result
	if pol := s.policy(); pol != nil {
		res = s.h.classes.ClassifyBytes(query)
		if e := pol.check(s.ctx, res, false); e != nil {
			if len(name) == 0 {
				s.anon = nil // a failed Parse leaves no unnamed statement
			}
			return s.refuse(e, false, query)
		}
		if !s.renames() || len(name) == 0 || s.stmts[string(name)] == nil {
			pol.remember(string(name), res) // not for a duplicate name, which fails
		}
	}
	effects, cerr := s.inspect(query, res)
	if cerr != nil {
		return s.localError(cerr, false)
	}
	s.mu.Lock()
	s.open = true
	s.mu.Unlock()
	if !s.renames() {
		return s.forward(m, item{kind: itParse})
	}
	if len(name) == 0 {
		cs := &clientStmt{parse: append([]byte(nil), m.Raw...), effects: effects}
		s.anon = cs
		srv, err := s.lockServer()
		if err != nil {
			return s.acquireFailed(err, false)
		}
		srv.unnamed = cs
		s.q.push(item{kind: itParse})
		s.mu.Unlock()
		s.out = append(s.out, m.Raw...)
		return nil
	}
	if _, dup := s.stmts[string(name)]; dup {
		return s.localError(errorf("42P05", "prepared statement %q already exists", name), false)
	}
	if len(s.stmts) >= maxClientStatements {
		return s.localError(errorf("53400", "too many prepared statements on this connection (%d)", maxClientStatements), false)
	}
	cs := &clientStmt{name: string(name), server: sharedName(query, types), effects: effects}
	cs.parse = appendMsg(nil, 'P', []byte(cs.server), []byte{0}, query, []byte{0}, types)
	s.stmts[cs.name] = cs
	s.mu.Lock()
	attached := s.srv != nil
	s.mu.Unlock()
	if _, known := s.h.known.Load(cs.server); known && !attached {
		// Some server prepared this text without error before: answer at
		// once and prepare it where the client's Bind lands. A client
		// preparing statements while its other connections hold servers
		// (pgbench -C -M prepared) then needs no server to do so.
		s.h.m.prepared.hit.Inc()
		return s.synth('1')
	}
	srv, err := s.lockServer()
	if err != nil {
		delete(s.stmts, cs.name) // never prepared
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	if srv.prepared.Contains(cs.server) {
		srv.prepared.Get(cs.server)
		s.h.m.prepared.hit.Inc()
		s.q.push(item{kind: itParse, act: actSynth, synth: '1', stmt: cs})
		s.pumpSynth()
		return nil
	}
	s.h.m.prepared.miss.Inc()
	s.prepare(srv, cs, actForward)
	return nil
}

// prepare sends cs's Parse to srv. mu held.
func (s *session) prepare(srv *server, cs *clientStmt, act action) {
	if cs.server == "" {
		srv.unnamed = cs
		s.q.push(item{kind: itParse, act: act})
		s.out = append(s.out, cs.parse...)
		return
	}
	srv.prepared.Add(cs.server, struct{}{})
	it := item{kind: itParse, act: act, server: cs.server}
	if act == actForward {
		it.stmt = cs // the client's own Parse: if it fails, the statement is not there
	}
	s.q.push(it)
	s.out = append(s.out, cs.parse...)
	for _, old := range srv.toClose {
		s.h.m.prepared.eviction.Inc()
		s.q.push(item{kind: itClose, act: actDrop})
		s.out = appendMsg(s.out, 'C', []byte{'S'}, []byte(old), []byte{0})
	}
	srv.toClose = srv.toClose[:0]
}

// ensurePrepared re-prepares cs on srv if srv lacks it. mu held.
func (s *session) ensurePrepared(srv *server, cs *clientStmt) {
	if cs.server == "" {
		if srv.unnamed != cs {
			s.prepare(srv, cs, actDrop)
		}
		return
	}
	if _, ok := srv.prepared.Get(cs.server); !ok {
		s.prepare(srv, cs, actDrop)
	}
}

// unknownStatement is Postgres's error for a statement the client never
// prepared. Outrigger answers it itself: on a shared server the name might
// be another client's.
func unknownStatement(name []byte) *Error {
	if len(name) == 0 {
		return errorf("26000", "unnamed prepared statement does not exist")
	}
	return errorf("26000", "prepared statement %q does not exist", name)
}

// statement finds the client statement a Bind or Describe names.
func (s *session) statement(name []byte) *clientStmt {
	if len(name) == 0 {
		return s.anon
	}
	return s.stmts[string(name)]
}

func (s *session) onBind(m msg) error {
	portal, rest, ok1 := cstring(m.Body)
	name, params, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return &ProtocolError{Msg: "malformed Bind message"}
	}
	if s.pol != nil {
		s.pol.bind(portal, name)
	}
	s.mu.Lock()
	s.open = true
	s.mu.Unlock()
	if !s.renames() {
		return s.forward(m, item{kind: itBind})
	}
	cs := s.statement(name)
	if cs == nil {
		return s.localError(unknownStatement(name), false)
	}
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	if s.portals == nil {
		s.portals = map[string]*clientStmt{}
	}
	s.portals[string(portal)] = cs
	s.ensurePrepared(srv, cs)
	s.q.push(item{kind: itBind})
	if cs.server == "" {
		s.out = append(s.out, m.Raw...)
		return nil
	}
	s.out = appendMsg(s.out, 'B', portal, []byte{0}, []byte(cs.server), []byte{0}, params)
	return nil
}

func (s *session) onDescribe(m msg) error {
	if len(m.Body) < 2 {
		return &ProtocolError{Msg: "malformed Describe message"}
	}
	s.mu.Lock()
	s.open = true
	s.mu.Unlock()
	if !s.renames() || m.Body[0] != 'S' {
		return s.forward(m, item{kind: itDescribe})
	}
	name, _, ok := cstring(m.Body[1:])
	if !ok {
		return &ProtocolError{Msg: "malformed Describe message"}
	}
	cs := s.statement(name)
	if cs == nil {
		return s.localError(unknownStatement(name), false)
	}
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	s.ensurePrepared(srv, cs)
	s.q.push(item{kind: itDescribe})
	if cs.server == "" {
		s.out = append(s.out, m.Raw...)
	} else {
		s.out = appendMsg(s.out, 'D', []byte{'S'}, []byte(cs.server), []byte{0})
	}
	return nil
}

func (s *session) onExecute(m msg) error {
	portal, _, ok := cstring(m.Body)
	if !ok {
		return &ProtocolError{Msg: "malformed Execute message"}
	}
	if pol := s.policy(); pol != nil {
		if e := pol.check(s.ctx, pol.portals[string(portal)], true); e != nil {
			return s.refuse(e, false, nil)
		}
	}
	it := item{kind: itExecute}
	s.mu.Lock()
	s.open = true
	if cs := s.portals[string(portal)]; cs != nil {
		it.effects = cs.effects
		if s.h.observing() {
			s.execSQL = parseText(cs.parse)
		}
	}
	s.mu.Unlock()
	return s.forward(m, it)
}

func (s *session) onClose(m msg) error {
	if len(m.Body) < 2 {
		return &ProtocolError{Msg: "malformed Close message"}
	}
	if s.pol != nil {
		if name, _, ok := cstring(m.Body[1:]); ok {
			if m.Body[0] == 'S' {
				delete(s.pol.stmts, string(name))
			} else {
				delete(s.pol.portals, string(name))
			}
		}
	}
	s.mu.Lock()
	s.open = true
	s.mu.Unlock()
	if !s.renames() || m.Body[0] != 'S' {
		s.mu.Lock()
		noServer := s.srv == nil
		s.mu.Unlock()
		if noServer && m.Body[0] == 'P' && s.renames() {
			// No server: no portal. Closing a missing portal is no error.
			return s.synth('3')
		}
		return s.forward(m, item{kind: itClose})
	}
	name, _, ok := cstring(m.Body[1:])
	if !ok {
		return &ProtocolError{Msg: "malformed Close message"}
	}
	if len(name) == 0 {
		s.anon = nil
	} else {
		delete(s.stmts, string(name))
	}
	// The shared statement stays on servers for other clients (and is
	// closed there when max_prepared_statements evicts it).
	return s.synth('3')
}

// synth answers one message in Outrigger's name, in order.
func (s *session) synth(reply byte) error {
	s.mu.Lock()
	s.q.push(item{act: actSynth, synth: reply})
	s.pumpSynth()
	s.mu.Unlock()
	return nil
}

// pumpSynth writes the replies Outrigger owes at the front of the queue.
// mu held.
func (s *session) pumpSynth() {
	for {
		it := s.q.front()
		if it == nil || it.act != actSynth {
			return
		}
		done := s.q.pop()
		switch done.synth {
		case 'E':
			s.writeClient(appendError(nil, done.errMsg))
		case 'Z':
			s.writeClient([]byte{'Z', 0, 0, 0, 5, s.txStatus})
			if done.ends {
				s.record(done.start, done.obs, done.errMsg, "")
			}
		default:
			s.writeClient([]byte{done.synth, 0, 0, 0, 4})
		}
	}
}
