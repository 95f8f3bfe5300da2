package pg

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"maps"
	"strings"
	"time"

	"github.com/outrigger/outrigger/pg/classify"
)

// In transaction and statement mode a client's prepared statements must
// follow it from server to server. Each named Parse is kept by the session
// and sent to servers under a shared name derived from the query text,
// parameter types and the handler's statement epoch, so equal statements
// from many clients are prepared once per server. A server that lacks a
// statement gets a hidden Parse just before the Bind or Describe that needs
// it; a Parse for a statement the server already has, and a Close of a
// statement, are answered by Outrigger in order.
//
// The session changes its statement names as each message arrives, ahead
// of the server's answer. Each such change rides on the message's queue
// item (stmtChange); if the server skips the message (an error came before
// it in the same batch) or the message fails, the relay logs the change to
// be undone (undoStep), and the client goroutine undoes it before its next
// statement message, so the names end as Postgres leaves them.
//
// Schema changes: a statement's shared name includes the epoch, which DDL
// seen on the listener and a server's "cached plan must not change result
// type" or "cache lookup failed" answer move on. From then on a client
// that prepares the text again gets a new server-side statement, planned
// for the new schema; statements of older epochs are closed on each server
// at its next Parse.

// sharedName is the server-side name for a statement: the same query,
// parameter types and epoch give the same name on every server.
func sharedName(query, types []byte, epoch uint64) string {
	h := sha256.New()
	h.Write(query)
	h.Write([]byte{0})
	h.Write(types)
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	h.Write(e[:])
	var sum [32]byte
	return sharedPrefix + hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// sharedPrefix starts every shared statement name. A client's own name
// with this prefix is never sent to a server, where it could name another
// client's statement.
const sharedPrefix = "_or_"

// stmtChange is what a message did to one of the client's statement names
// before the server answered it: the name held prev and now holds set (nil:
// no statement). name "" is the unnamed statement.
type stmtChange struct {
	name      string
	set, prev *clientStmt
	// keep: a failure gives the name back its prev (a DEALLOCATE that
	// failed freed nothing).
	keep bool
	// all are the names a DEALLOCATE ALL freed, given back as prev is.
	all map[string]*clientStmt
	// next is another change the same message made.
	next *stmtChange
	// before is the change to name that was newest when this one was
	// made (see session.latest).
	before *stmtChange
}

// undoStep is a stmtChange to take back: skipped, the name holds prev
// again; failed (the message itself failed), it holds no statement, as
// Postgres drops the unnamed statement before parsing a new one.
type undoStep struct {
	c      *stmtChange
	failed bool
}

// undoChange takes back one change (see undoStep).
func (s *session) undoChange(c *stmtChange, failed bool) {
	for name, cs := range c.all {
		if s.stmts[name] == nil {
			s.stmts[name] = cs
		}
	}
	if c.all != nil {
		return
	}
	if s.latest[c.name] != c {
		return // a later message changed the name again
	}
	if !failed || c.keep {
		// The name is back where it was before c: an undo of the change
		// before may apply now. (A failed message that drops the name
		// leaves it dropped, whatever came before.)
		s.latest[c.name] = c.before
	}
	s.undoTo(c, failed)
}

// undoTo gives c's name what it held before c (nothing, if c's message
// failed: Postgres drops the unnamed statement before parsing a new one).
func (s *session) undoTo(c *stmtChange, failed bool) {
	if failed && !c.keep {
		s.storeStmt(c.name, nil)
	} else {
		s.storeStmt(c.name, c.prev)
	}
}

// undoNow takes back the changes of a message that was never sent (nor
// expected).
func (s *session) undoNow(c *stmtChange) {
	for ; c != nil; c = c.next {
		for name, cs := range c.all {
			s.stmts[name] = cs
		}
		if c.all == nil {
			s.undoTo(c, false)
		}
	}
}

// lookupStmt returns what name holds ("" is the unnamed statement).
func (s *session) lookupStmt(name string) *clientStmt {
	if name == "" {
		return s.anon
	}
	return s.stmts[name]
}

func (s *session) storeStmt(name string, cs *clientStmt) {
	switch {
	case name == "":
		s.anon = cs
	case cs == nil:
		delete(s.stmts, name)
	default:
		s.stmts[name] = cs
	}
}

func (s *session) onParse(m msg) error {
	name, rest, ok1 := cstring(m.Body)
	query, types, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return &ProtocolError{Msg: "malformed Parse message"}
	}
	s.pool.m.clientParses.Add(1)
	if len(name) > 0 {
		if err := s.awaitNames(name, false); err != nil {
			return err
		}
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
		if len(name) == 0 {
			s.anon = nil
		}
		return s.localError(cerr, false)
	}
	ddl := mayChangeSchema(query) && s.isDDL(query, res)
	s.mu.Lock()
	s.open = true
	s.mu.Unlock()
	if !s.renames() {
		return s.forward(m, item{kind: itParse})
	}
	if len(name) == 0 {
		cs := &clientStmt{parse: append([]byte(nil), m.Raw...), effects: effects, ddl: ddl}
		srv, err := s.lockServer()
		if err != nil {
			s.anon = nil
			return s.acquireFailed(err, false)
		}
		chg := &stmtChange{set: cs, prev: s.anon}
		s.anon = cs
		it := item{kind: itParse, chg: chg}
		s.setUnnamed(srv, &it, cs)
		s.expect(it)
		s.mu.Unlock()
		s.out = append(s.out, m.Raw...)
		return nil
	}
	if old := s.stmts[string(name)]; old != nil {
		return s.parseDuplicate(old, query, types)
	}
	if len(s.stmts) >= maxClientStatements {
		return s.localError(errorf("53400", "too many prepared statements on this connection (%d)", maxClientStatements), false)
	}
	epoch := s.h.epoch.Load()
	cs := &clientStmt{name: string(name), server: sharedName(query, types, epoch), epoch: epoch, effects: effects, ddl: ddl}
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
		return s.synth(itParse, '1', nil)
	}
	srv, err := s.lockServer()
	if err != nil {
		delete(s.stmts, cs.name) // never prepared
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	chg := &stmtChange{name: cs.name, set: cs}
	if srv.prepared.Contains(cs.server) {
		srv.prepared.Get(cs.server)
		s.h.m.prepared.hit.Inc()
		if s.txStatus == 'E' || s.q.ends != s.q.endsDone {
			// The server's transaction may be aborted when it reaches
			// this Parse, and Postgres then refuses it (25P02): the
			// server is asked, by parsing the text as its unnamed
			// statement, which succeeds and fails as this Parse would.
			it := item{kind: itParse, chg: chg}
			s.setUnnamed(srv, &it, nil)
			s.expect(it)
			s.out = appendMsg(s.out, 'P', []byte{0}, query, []byte{0}, types)
			return nil
		}
		s.expect(item{kind: itParse, act: actSynth, synth: '1', chg: chg})
		s.pumpSynth()
		return nil
	}
	s.h.m.prepared.miss.Inc()
	s.prepare(srv, cs, actForward, chg)
	return nil
}

// parseDuplicate answers a Parse of a name the client already holds.
// Postgres parses the text first and then finds the name taken, so the
// server answers: the text goes under the old statement's shared name,
// which the server has, and its error (a syntax error, or 42P05 with the
// shared name put back to the client's) reaches the client.
func (s *session) parseDuplicate(old *clientStmt, query, types []byte) error {
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	s.ensurePrepared(srv, old)
	s.expect(item{kind: itParse, cs: old})
	s.out = appendMsg(s.out, 'P', []byte(old.server), []byte{0}, query, []byte{0}, types)
	return nil
}

// prepare sends cs's Parse to srv; chg is the client's change of names, if
// this is the client's own Parse. mu held.
func (s *session) prepare(srv *server, cs *clientStmt, act action, chg *stmtChange) {
	s.pool.m.serverParses.Add(1)
	if cs.server == "" {
		it := item{kind: itParse, act: act, chg: chg}
		s.setUnnamed(srv, &it, cs)
		s.expect(it)
		s.out = append(s.out, cs.parse...)
		return
	}
	s.sweepEpochs(srv)
	srv.prepared.Add(cs.server, stmtCopy{epoch: cs.epoch})
	// Statements evicted to make room (or of an older epoch) are closed
	// first, so a name closed and prepared again never meets itself.
	for _, old := range srv.toClose {
		s.h.m.prepared.eviction.Inc()
		s.expect(item{kind: itClose, act: actDrop, server: old})
		s.out = appendMsg(s.out, 'C', []byte{'S'}, []byte(old), []byte{0})
	}
	srv.toClose = srv.toClose[:0]
	s.expect(item{kind: itParse, act: act, server: cs.server, chg: chg, cs: cs})
	s.out = append(s.out, cs.parse...)
}

// sweepEpochs queues for closing the statements srv holds from epochs
// before the handler's current one. mu held.
func (s *session) sweepEpochs(srv *server) {
	cur := s.h.epoch.Load()
	if srv.epoch == cur {
		return
	}
	for _, name := range srv.prepared.Keys() {
		if c, ok := srv.prepared.Peek(name); ok && c.epoch != cur {
			srv.prepared.Remove(name)
			srv.toClose = append(srv.toClose, name)
		}
	}
	srv.epoch = cur
}

// ensurePrepared re-prepares cs on srv if srv lacks it. mu held.
func (s *session) ensurePrepared(srv *server, cs *clientStmt) {
	if cs.server == "" {
		if srv.unnamed != cs {
			s.prepare(srv, cs, actDrop, nil)
		}
		return
	}
	if _, ok := srv.prepared.Get(cs.server); !ok {
		s.prepare(srv, cs, actDrop, nil)
	}
}

// planChanged is Postgres's error for a prepared statement whose result
// columns a schema change altered.
var planChanged = errorf("0A000", "cached plan must not change result type")

// stmtCopy is what a server holds of one shared statement: the statement
// epoch of its name, and a hash of its result shape (0: not known yet).
type stmtCopy struct{ epoch, shape uint64 }

// Result shapes. Postgres plans a prepared statement once and, when the
// schema changes under it, plans it again, but refuses to run it if its
// result columns changed (0A000): the client decodes rows by the
// description it was given. The server-side copies of one shared name are
// each planned for the schema of the moment they were prepared, so before
// a client statement whose shape the client knows is bound to a copy whose
// shape Outrigger does not know, a hidden Describe finds it; a copy whose
// shape is not the one the client was given breaks the client's statement
// as Postgres would.

var shapeSeed = maphash.MakeSeed()

// noteShape takes in the RowDescription or NoData body of a Describe of
// done.cs on srv. mu held.
func (s *session) noteShape(srv *server, done *item, body []byte) {
	cs := done.cs
	h := maphash.Bytes(shapeSeed, body) | 1
	if c, ok := srv.prepared.Peek(cs.server); ok && c.shape != h {
		c.shape = h
		srv.prepared.Add(cs.server, c)
	}
	if done.act == actDrop {
		cs.checking = false
	} else {
		cs.shape = h // the client's own Describe: what it now knows
	}
}

// bindCheck makes sure a Bind of cs on srv runs what the client prepared
// (see Result shapes): it finds the shape of srv's copy if need be, and
// reports whether cs is broken. mu held; on error it is not, and srv may
// be another server after a wait.
func (s *session) bindCheck(srv *server, cs *clientStmt) (*server, bool, error) {
	if cs.server == "" || cs.shape == 0 || cs.broken {
		return srv, cs.broken, nil
	}
	c, ok := srv.prepared.Peek(cs.server)
	if !ok || c.shape == 0 {
		if err := s.checkShape(srv, cs, !ok); err != nil {
			return nil, false, err
		}
		var err error
		if srv, err = s.lockServer(); err != nil {
			return nil, false, s.acquireFailed(err, false)
		}
		c, ok = srv.prepared.Peek(cs.server)
	}
	if ok && c.shape != 0 && c.shape != cs.shape {
		cs.broken = true
	}
	return srv, cs.broken, nil
}

// checkShape prepares cs on srv if asked, asks for the copy's shape and
// waits for the answer (see noteShape). mu held; it unlocks.
func (s *session) checkShape(srv *server, cs *clientStmt, prepare bool) error {
	if prepare {
		s.prepare(srv, cs, actDrop, nil)
	}
	cs.checking = true
	s.expect(item{kind: itDescribe, act: actDrop, cs: cs})
	if cs.checking {
		s.out = appendMsg(s.out, 'D', []byte{'S'}, []byte(cs.server), []byte{0})
		s.out = appendMsg(s.out, 'H')
		s.outTerm = len(s.out)
	}
	s.mu.Unlock()
	s.h.m.prepared.awaited.Inc()
	if err := s.flush(); err != nil {
		return err
	}
	s.mu.Lock()
	for cs.checking && s.srv != nil && s.relayDone != nil {
		s.settled.Wait()
	}
	cs.checking = false
	s.mu.Unlock()
	return nil
}

// unknownStatement is Postgres's error for a statement the client never
// prepared, for a name Outrigger must not send to a server (see
// sharedPrefix).
func unknownStatement(name []byte) *Error {
	if len(name) == 0 {
		return errorf("26000", "unnamed prepared statement does not exist")
	}
	return errorf("26000", "prepared statement \"%s\" does not exist", name)
}

// statement finds the client statement a Bind or Describe names.
func (s *session) statement(name []byte) *clientStmt {
	if len(name) == 0 {
		return s.anon
	}
	return s.stmts[string(name)]
}

// noStatement sends m, a Bind or Describe of a statement the client does
// not have, to the server under the client's own name, which no server in
// the pool has: the server answers with its own error, and the failure
// ends the server's pipeline as it would unpooled. The unnamed statement
// of the server (another client's, perhaps) is closed first.
func (s *session) noStatement(m msg, name []byte, kind itemKind) error {
	if bytes.HasPrefix(name, []byte(sharedPrefix)) {
		return s.localError(unknownStatement(name), false)
	}
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	if len(name) == 0 {
		it := item{kind: itClose, act: actDrop}
		s.setUnnamed(srv, &it, nil)
		s.expect(it)
		s.out = appendMsg(s.out, 'C', []byte{'S', 0})
	}
	s.expect(item{kind: kind})
	s.out = append(s.out, m.Raw...)
	return nil
}

func (s *session) onBind(m msg) error {
	portal, rest, ok1 := cstring(m.Body)
	name, params, ok2 := cstring(rest)
	if !ok1 || !ok2 {
		return &ProtocolError{Msg: "malformed Bind message"}
	}
	s.pool.m.binds.Add(1)
	if s.pol != nil {
		s.pol.bind(portal, name)
	}
	s.mu.Lock()
	s.open = true
	s.mu.Unlock()
	if !s.renames() {
		return s.forward(m, item{kind: itBind})
	}
	if err := s.awaitNames(name, false); err != nil {
		return err
	}
	cs := s.statement(name)
	if cs == nil {
		return s.noStatement(m, name, itBind)
	}
	if cs.broken {
		return s.answerError(planChanged, false, nil)
	}
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, false)
	}
	srv, broken, err := s.bindCheck(srv, cs)
	if err != nil {
		return err
	}
	if broken {
		s.mu.Unlock()
		return s.answerError(planChanged, false, nil)
	}
	defer s.mu.Unlock()
	if s.portals == nil {
		s.portals = map[string]*clientStmt{}
	}
	s.portals[string(portal)] = cs
	s.ensurePrepared(srv, cs)
	s.expect(item{kind: itBind, cs: cs})
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
	if err := s.awaitNames(name, false); err != nil {
		return err
	}
	cs := s.statement(name)
	if cs == nil {
		return s.noStatement(m, name, itDescribe)
	}
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, false)
	}
	defer s.mu.Unlock()
	s.ensurePrepared(srv, cs)
	s.expect(item{kind: itDescribe, cs: cs})
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
		it.cs = cs
		if cs.ddl {
			s.schemaChanging()
		}
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
			return s.synth(itClose, '3', nil)
		}
		return s.forward(m, item{kind: itClose})
	}
	name, _, ok := cstring(m.Body[1:])
	if !ok {
		return &ProtocolError{Msg: "malformed Close message"}
	}
	if err := s.awaitNames(name, false); err != nil {
		return err
	}
	var chg *stmtChange
	if prev := s.lookupStmt(string(name)); prev != nil {
		chg = &stmtChange{name: string(name), prev: prev}
		s.storeStmt(string(name), nil)
	}
	// The shared statement stays on servers for other clients (and is
	// closed there when max_prepared_statements evicts it).
	return s.synth(itClose, '3', chg)
}

// synth answers one message of kind k in Outrigger's name, in order.
func (s *session) synth(k itemKind, reply byte, chg *stmtChange) error {
	s.mu.Lock()
	s.expect(item{kind: k, act: actSynth, synth: reply, chg: chg})
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
		case 'C':
			s.writeClient(appendMsg(nil, 'C', []byte(done.tag), []byte{0}))
		default:
			s.writeClient([]byte{done.synth, 0, 0, 0, 4})
		}
	}
}

// expect queues the reply to a message just sent to the server (or
// answered in its place). While the server skips to the next Sync after an
// error (srvSkip), every message but Sync is skipped as it comes: nothing
// answers it. mu held.
func (s *session) expect(it item) {
	switch it.kind {
	case itSync:
		s.srvOpen = false
		if s.srvSkip {
			s.srvSkip = false
			it.failed = true
			it.code = s.skipCode
			if it.errMsg == nil {
				it.errMsg = s.skipErr
			}
		}
	case itParse, itBind, itDescribe, itExecute, itClose:
		s.srvOpen = true
	}
	if it.chg != nil {
		s.noteChange(it.chg)
	}
	if s.srvSkip && it.kind != itSync {
		s.unrun(s.srv, &it, false)
		s.restoreUnnamed(s.srv, &it, false)
		return
	}
	s.q.push(it)
}

// settledNames reports whether no change to the client's names can still
// be undone: nothing is in flight and every undo is applied. mu held.
func (s *session) settledNames() bool { return s.q.empty() && len(s.undo) == 0 }

// changePending reports whether a change to name may still be undone. mu
// held.
func (s *session) changePending(name string) bool {
	return s.latest[name] != nil && !s.settledNames()
}

// noteChange books chg, a change to the client's names made ahead of the
// server's answer: the newest change of each name (latest), and the round
// trip it is in (namesAt). mu held.
func (s *session) noteChange(chg *stmtChange) {
	if s.latest == nil {
		s.latest, s.namesAt = map[string]*stmtChange{}, map[string]uint64{}
	} else if s.settledNames() {
		clear(s.latest)
		clear(s.namesAt)
		s.allAt = 0
	}
	for c := chg; c != nil; c = c.next {
		if c.all != nil {
			s.allAt = s.q.ends + 1
			continue
		}
		c.before, s.latest[c.name] = s.latest[c.name], c
		s.namesAt[c.name] = s.q.ends
	}
}

// awaitNames makes a message that depends on the statement name (all:
// on every name) see it as Postgres will: if a change to it is still
// unanswered in a round trip the client has already ended with a Sync,
// whether it happened (the server may skip or fail that message) is known
// only from the server's answer, so the client's messages so far are sent
// and the answer awaited. A change in the round trip still open needs no
// wait: if it does not happen, the server skips what follows it too.
func (s *session) awaitNames(name []byte, all bool) error {
	if len(s.namesAt) == 0 && s.allAt == 0 {
		return nil
	}
	s.mu.Lock()
	at, ok := s.namesAt[string(name)]
	if all {
		ok = false
		for _, a := range s.namesAt {
			if !ok || a > at {
				at, ok = a, true
			}
		}
	}
	if s.allAt > 0 && (!ok || s.allAt-1 > at) {
		at, ok = s.allAt-1, true
	}
	closed := ok && at < s.q.ends && at >= s.q.endsDone
	if ok && at < s.q.endsDone {
		if all {
			clear(s.namesAt)
		} else {
			delete(s.namesAt, string(name))
		}
		if s.allAt > 0 && s.allAt-1 < s.q.endsDone {
			s.allAt = 0
		}
	}
	s.mu.Unlock()
	if !closed {
		return nil
	}
	s.h.m.prepared.awaited.Inc()
	if err := s.flush(); err != nil {
		return err
	}
	s.mu.Lock()
	for at >= s.q.endsDone && s.srv != nil && s.relayDone != nil {
		s.settled.Wait()
	}
	s.mu.Unlock()
	if s.stmtsStale.CompareAndSwap(true, false) {
		s.applyStmtChanges()
	}
	return nil
}

// setUnnamed books that the message of it replaces srv's unnamed
// statement with cs (nil: with none a client can use). mu held.
func (s *session) setUnnamed(srv *server, it *item, cs *clientStmt) {
	it.was, it.wasSeq = srv.unnamed, srv.unnamedSeq
	srv.unnamedSeq++
	it.unnamedSeq = srv.unnamedSeq
	srv.unnamed = cs
}

// restoreUnnamed books an item that replaced srv's unnamed statement and
// failed (Postgres drops the unnamed statement first: none is left) or
// was skipped (the one before is still there), unless a later message
// replaced it again. Several are undone newest first. mu held.
func (s *session) restoreUnnamed(srv *server, it *item, failed bool) {
	if srv == nil || it.unnamedSeq == 0 || srv.unnamedSeq != it.unnamedSeq {
		return
	}
	if failed {
		srv.unnamed = nil
		return
	}
	srv.unnamed, srv.unnamedSeq = it.was, it.wasSeq
}

// unrun books an item whose message the server did not carry out: it
// failed, or an error before it made the server skip it. mu held.
func (s *session) unrun(srv *server, it *item, failed bool) {
	if srv != nil && s.renames() {
		switch it.kind {
		case itParse:
			if it.server != "" {
				srv.prepared.Remove(it.server)
			}
		case itClose:
			if it.act == actDrop && it.server != "" {
				srv.toClose = append(srv.toClose, it.server) // still there
			}
		}
	}
	if it.kind == itDescribe && it.act == actDrop && it.cs != nil {
		it.cs.checking = false // skipped: the Bind after it is too
	}
	if it.kind == itHidden && srv != nil {
		srv.settings = unknownSettings
	}
	if it.chg != nil {
		s.undo = append(s.undo, undoStep{c: it.chg, failed: failed})
		s.stmtsStale.Store(true)
	}
}

// applyStmtChanges takes in what the relay found about the client's
// statements: changes to undo (newest first), and DISCARD ALL or
// DEALLOCATE ALL committed.
func (s *session) applyStmtChanges() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.undo) - 1; i >= 0; i-- {
		u := s.undo[i]
		for c := u.c; c != nil; c = c.next {
			s.undoChange(c, u.failed)
		}
	}
	clear(s.undo)
	s.undo = s.undo[:0]
	if s.dropStmts {
		clear(s.stmts)
		s.anon = nil
		s.dropStmts = false
	}
}

// deallocate serves a simple Query that is one DEALLOCATE [PREPARE] of a
// statement the client prepared with the protocol, or DEALLOCATE ALL. The
// client's statements are Outrigger's to free (the server-side ones are
// shared), so it frees them and answers as Postgres does: alone when
// nothing is open, else through the server with a statement that does
// nothing, so that an aborted transaction fails it with 25P02 as it would
// fail DEALLOCATE (the names are then given back). Any other DEALLOCATE
// goes to the server, which has the name (an SQL PREPARE on a pinned
// server) or answers 26000 in its own words. It reports whether it
// answered.
func (s *session) deallocate(text []byte, res *classify.Result) (bool, error) {
	if !bytes.EqualFold(leadingWord(text), []byte("deallocate")) {
		return false, nil
	}
	if res == nil {
		res = s.h.classes.ClassifyBytes(text)
	}
	if res.Err != nil || len(res.Statements) != 1 || res.Statements[0].Kind != classify.KindDeallocate {
		return false, nil
	}
	st := &res.Statements[0]
	all := len(st.Effects) > 0 && st.Effects[0].Kind == classify.EffectDeallocateAll
	if err := s.awaitNames([]byte(st.Deallocates), all); err != nil {
		return true, err
	}
	tag := "DEALLOCATE"
	chg := &stmtChange{keep: true}
	switch {
	case all && s.pinned != "":
		return false, nil // the server's SQL-level statements go too
	case all:
		tag = "DEALLOCATE ALL"
		chg.all = maps.Clone(s.stmts)
		clear(s.stmts)
	case s.stmts[st.Deallocates] != nil:
		chg.name, chg.prev = st.Deallocates, s.stmts[st.Deallocates]
		delete(s.stmts, st.Deallocates)
	case strings.HasPrefix(st.Deallocates, sharedPrefix):
		return true, s.localError(unknownStatement([]byte(st.Deallocates)), true)
	default:
		return false, nil
	}
	// A simple query drops the unnamed statement too.
	if s.anon != nil {
		chg.next = &stmtChange{prev: s.anon}
		s.anon = nil
	}
	o := s.startRoundTrip(text)
	s.mu.Lock()
	alone := s.srv == nil && s.q.empty()
	s.mu.Unlock()
	if alone {
		s.mu.Lock()
		s.expect(item{kind: itQuery, act: actSynth, synth: 'C', tag: tag, chg: chg})
		s.expect(item{kind: itQuery, act: actSynth, synth: 'Z', ends: true, start: time.Now(), obs: o})
		s.pumpSynth()
		s.mu.Unlock()
		return true, nil
	}
	srv, err := s.lockServer()
	if err != nil {
		s.undoNow(chg)
		return true, s.acquireFailed(err, true)
	}
	it := item{kind: itQuery, tag: tag, chg: chg, start: time.Now(), obs: o}
	s.setUnnamed(srv, &it, nil)
	s.expect(it)
	s.startQueryTimer()
	s.mu.Unlock()
	s.out = appendMsg(s.out, 'Q', []byte("DO $outrigger$BEGIN END$outrigger$"), []byte{0})
	s.outTerm = len(s.out)
	return true, nil
}
