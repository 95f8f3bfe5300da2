package pg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/outrigger/outrigger/pg/classify"
	"github.com/outrigger/outrigger/pool"
)

// relay reads srv for the session while it is attached: it forwards
// replies to the client as raw bytes, decoding only the messages that
// drive state, and gives the server back to the pool at ReadyForQuery when
// nothing is outstanding (transaction and statement mode) or when the
// session ends.
func (s *session) relay(srv *server, lease *pool.Lease[*server], done chan struct{}) {
	defer close(done)
	for {
		m, err := srv.fr.next()
		s.mu.Lock()
		if err != nil && s.kick && !s.closing && errors.Is(err, os.ErrDeadlineExceeded) {
			if s.detachable(srv) {
				s.detach()
				s.mu.Unlock()
				srv.quiesce()
				lease.Release()
				return
			}
			s.kick = false
			_ = srv.conn.SetReadDeadline(time.Time{})
			s.mu.Unlock()
			continue
		}
		if err != nil {
			s.relayEnded(srv, lease, err)
			return
		}
		broken := s.onServer(srv, m)
		// Batch what the server already sent into one client write.
		for !broken && srv.fr.ready() {
			if m, err = srv.fr.next(); err != nil {
				s.relayEnded(srv, lease, err)
				return
			}
			broken = s.onServer(srv, m)
		}
		_ = s.flushClient()
		s.settled.Broadcast()
		if broken {
			s.relayEnded(srv, lease, errServerDesync)
			return
		}
		if s.detachable(srv) {
			s.detach()
			s.mu.Unlock()
			srv.quiesce()
			lease.Release()
			return
		}
		s.mu.Unlock()
	}
}

var errServerDesync = errors.New("pg: server reply does not match what was sent")

// detachable reports whether the server can go back to the pool. mu held.
func (s *session) detachable(srv *server) bool {
	return s.h.mode != modeSession && s.pinned == "" && !s.closing && !s.writing &&
		s.q.empty() && !s.open && !s.copying && srv.txStatus == 'I'
}

// detach unhooks the server and ends the transaction's bookkeeping. mu held.
func (s *session) detach() {
	if s.kick {
		// A wake-up meant for this attachment must not reach the next
		// user of the server.
		s.kick = false
		_ = s.srv.conn.SetReadDeadline(time.Time{})
	}
	s.srv.active.Store(false)
	s.srv, s.lease, s.relayDone = nil, nil, nil
	clear(s.portals)
}

// relayEnded handles the end of the relay's reads: the session closing (a
// deadline the client goroutine set) or the server failing. mu held; it
// unlocks.
func (s *session) relayEnded(srv *server, lease *pool.Lease[*server], err error) {
	closing := s.closing && errors.Is(err, os.ErrDeadlineExceeded)
	clean := s.q.empty() && !s.open && !s.copying
	pinned := s.pinned != ""
	var lost *item
	if it := s.q.front(); it != nil {
		c := *it
		lost = &c
	}
	srv.active.Store(false)
	s.srv, s.lease, s.relayDone = nil, nil, nil
	s.q.reset()
	s.srvSkip, s.srvOpen = false, false
	s.settled.Broadcast()
	if closing {
		s.mu.Unlock()
		srv.quiesce()
		_ = srv.conn.SetReadDeadline(time.Time{})
		switch {
		case !clean:
			lease.Discard()
		case pinned || s.h.mode == modeSession || srv.txStatus != 'I':
			srv.needsReset = pinned
			lease.ReleaseDirty()
		default:
			lease.Release()
		}
		return
	}
	// The server failed under a live session: the client's transaction
	// and anything in flight are gone, as they would be had the client
	// been connected to that server. The session ends with it: nothing the
	// client sent after may run on another server.
	s.dead = true
	if lost != nil {
		// The round trip in flight is lost with the server.
		s.record(lost.start, lost.obs, errServerLost, "")
	}
	if !s.fatalSent {
		e := fatalf(codeConnectionFailure, "server connection lost: %v", err)
		if errors.Is(err, errServerDesync) {
			e.Code = codeProtocolViolation
			e.Message = "server reply out of step with the request stream"
		}
		s.writeClient(appendError(nil, e))
		_ = s.flushClient()
		s.fatalSent = true
	}
	s.mu.Unlock()
	s.h.m.upErrors.WithLabelValues("lost").Inc()
	srv.quiesce()
	lease.Discard()
	_ = s.conn.Close()
}

// onServer handles one server message. mu held. It returns true when the
// reply stream no longer matches the queue (the server must be closed).
func (s *session) onServer(srv *server, m msg) (broken bool) {
	s.pumpSynth()
	it := s.q.front()
	if it != nil && it.kind == itProbe {
		return s.onProbe(srv, m)
	}
	if it != nil && it.kind == itHidden {
		// Replies to Outrigger's own query never reach the client.
		switch m.Type {
		case 'E':
			return s.onServerError(srv, m, it)
		case 'Z':
			return s.onReady(srv, m, it)
		case 'S':
			srv.noteParameter(m.Body)
		}
		return false
	}
	switch m.Type {
	case 'D':
		s.rows++
	case 'd', 'c', 'V':
		// DataRow, CopyData, CopyDone, FunctionCallResponse: forwarded
		// as they are.
	case 't':
		if it != nil && it.kind == itDescribe && it.act == actDrop {
			return false // Outrigger's own Describe (see checkShape)
		}
	case 'T', 'n':
		if it == nil || it.kind != itDescribe {
			if m.Type == 'n' {
				return true
			}
			break // a Query's or an Execute's rows follow
		}
		done := s.q.pop()
		if done.cs != nil && done.cs.server != "" {
			s.noteShape(srv, &done, m.Body)
		}
		if done.act == actDrop {
			return false
		}
	case '1':
		if it == nil || it.kind != itParse {
			return true
		}
		done := s.q.pop()
		if done.server != "" {
			s.h.noteKnown(done.server)
		}
		if done.act == actDrop || done.act == actRefuse {
			return false
		}
	case '2':
		if it == nil || it.kind != itBind {
			return true
		}
		if s.q.pop().act == actRefuse {
			return false
		}
	case '3':
		if it == nil || it.kind != itClose {
			return true
		}
		if s.q.pop().act == actDrop {
			return false
		}
	case 'C':
		switch {
		case it == nil:
			return true
		case it.act == actRefuse:
			// The refusal statement cannot succeed; if it did, the
			// client still gets its refusal.
			if it.kind == itExecute {
				s.q.pop()
			}
			s.writeClient(appendError(nil, it.errMsg))
			return false
		case it.kind == itExecute:
			done := s.q.pop()
			s.txEffects = append(s.txEffects, done.effects...)
		case it.kind == itQuery && it.tag != "":
			// The statement that stood in for one Outrigger served
			// (DEALLOCATE): the client gets its tag.
			s.writeClient(appendMsg(nil, 'C', []byte(it.tag), []byte{0}))
			return false
		case it.kind == itQuery:
		default:
			return true
		}
		if tag := m.Body; len(tag) >= 8 && string(tag[:8]) == "ROLLBACK" {
			s.rolledBack = true
		}
		s.copying = false
	case 'I', 's':
		if it == nil {
			return true
		}
		if it.kind == itExecute {
			s.q.pop()
		}
	case 'G', 'H', 'W':
		s.copying = true
	case 'S':
		srv.noteParameter(m.Body)
		s.noteReported(srv, m.Body)
	case 'N', 'A':
	case 'E':
		return s.onServerError(srv, m, it)
	case 'Z':
		return s.onReady(srv, m, it)
	default:
		return true
	}
	s.writeClient(m.Raw)
	return false
}

// reportedSettable are the parameters a server reports with
// ParameterStatus that a session can change. A change the classifier could
// not see (inside a function, say) is still known from the report, and is
// replayed or reset like a SET.
var reportedSettable = map[string]bool{
	"application_name": true, "client_encoding": true, "datestyle": true,
	"intervalstyle": true, "timezone": true, "standard_conforming_strings": true,
	"default_transaction_read_only": true, "search_path": true,
}

// noteReported records a reported parameter change as a setting of the
// client's session and of the server. mu held.
func (s *session) noteReported(srv *server, body []byte) {
	name, rest, ok := cstring(body)
	if !ok {
		return
	}
	val, _, ok := cstring(rest)
	if !ok {
		return
	}
	n := strings.ToLower(string(name))
	if !reportedSettable[n] {
		return
	}
	stmt := setStatement(n, string(val))
	s.settings = s.settings.with(n, stmt)
	srv.settings = srv.settings.with(n, stmt)
}

// onServerError forwards an ErrorResponse and, in the extended protocol,
// drops the items the server will now skip up to the next Sync.
func (s *session) onServerError(srv *server, m msg, it *item) bool {
	if it == nil {
		// An error outside any request: the server is going away
		// (pg_terminate_backend, shutdown). Pass it on; the read error
		// that follows ends the session.
		s.writeClient(m.Raw)
		s.fatalSent = isFatal(m.Body)
		return false
	}
	if it.kind == itHidden {
		// Bringing the server's parameters in line failed: the client's
		// session cannot be reproduced on this server.
		e := fatalf(codeConnectionFailure, "could not restore session parameters on a server connection")
		s.writeClient(appendError(nil, e))
		s.fatalSent = true
		_ = s.conn.Close()
		return true
	}
	shared := it.cs != nil && it.cs.server != ""
	switch {
	case it.act == actRefuse:
		s.writeClient(appendError(nil, it.errMsg))
	case shared && it.cs.name != "":
		// The server named the statement by its shared name.
		s.writeClient(renameInError(m.Raw, it.cs.server, it.cs.name))
	default:
		s.writeClient(m.Raw)
	}
	s.copying = false
	it.failed = true
	if it.code == "" {
		it.code = sqlState(m.Body)
	}
	if shared && planInvalidated(it.code, m.Body) {
		s.retire(srv, it.cs.server)
	}
	switch it.kind {
	case itQuery, itSync, itFunc:
		if it.chg != nil {
			// What a failed Query did to the names (a DEALLOCATE that an
			// aborted transaction refused) is taken back.
			s.undo = append(s.undo, undoStep{c: it.chg, failed: true})
			s.stmtsStale.Store(true)
			it.chg = nil
		}
		return false
	}
	// The server now skips every message up to the next Sync: their
	// items go, and so does what they did to the books.
	code := it.code
	var refusal *Error
	if it.act == actRefuse {
		refusal = it.errMsg
	}
	// What the failed and skipped messages did to the server's unnamed
	// statement is undone newest first, once they are all known.
	var unnamed [4]item
	un := unnamed[:0]
	defer func() {
		for i := len(un) - 1; i >= 0; i-- {
			s.restoreUnnamed(srv, &un[i], un[i].failed)
		}
	}()
	for first := true; ; first = false {
		f := s.q.front()
		if f == nil {
			// The client's Sync is still to come: what it sends until then
			// is skipped as it comes.
			s.srvSkip, s.skipCode, s.skipErr = true, code, refusal
			return false
		}
		if f.kind == itSync {
			f.failed = true
			f.code = code
			if refusal != nil {
				f.errMsg = refusal
			}
			return false
		}
		done := s.q.pop()
		s.unrun(srv, &done, first)
		if done.unnamedSeq != 0 {
			done.failed = first
			un = append(un, done)
		}
	}
}

// planInvalidated reports whether a server error says a prepared
// statement can no longer run as prepared: its result type changed under
// it (0A000 "cached plan must not change result type") or a type it was
// prepared with is gone (XX000 "cache lookup failed").
func planInvalidated(code string, body []byte) bool {
	switch code {
	case "0A000":
		return bytes.Equal(errorField(body, 'R'), []byte("RevalidateCachedQuery")) ||
			bytes.Contains(errorField(body, 'M'), []byte("cached plan must not change result type"))
	case "XX000":
		return bytes.HasPrefix(errorField(body, 'M'), []byte("cache lookup failed"))
	}
	return false
}

// retire forgets a shared statement that no longer matches the schema: it
// is closed on srv at its next Parse, and the epoch moves on, so the next
// Parse of its text, on any server, prepares it anew. mu held.
func (s *session) retire(srv *server, name string) {
	if srv.prepared.Remove(name) {
		srv.toClose = append(srv.toClose, name)
	}
	s.h.known.Delete(name)
	s.h.epoch.Add(1)
	s.h.m.prepared.retired.Inc()
}

// errorField returns the value of field f of an ErrorResponse body.
func errorField(body []byte, f byte) []byte {
	for len(body) > 1 {
		field := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return nil
		}
		if field == f {
			return v
		}
		body = rest
	}
	return nil
}

// renameInError returns the ErrorResponse raw with from replaced by to in
// its text fields; raw itself when from does not occur.
func renameInError(raw []byte, from, to string) []byte {
	if len(raw) < 5 || !bytes.Contains(raw[5:], []byte(from)) {
		return raw
	}
	out := append([]byte(nil), raw[:5]...)
	body := raw[5:]
	for len(body) > 1 {
		field := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return raw
		}
		out = append(out, field)
		out = append(out, bytes.ReplaceAll(v, []byte(from), []byte(to))...)
		out = append(out, 0)
		body = rest
	}
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	return out
}

func isFatal(body []byte) bool {
	for len(body) > 1 {
		field := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			return false
		}
		if field == 'V' || field == 'S' {
			return string(v) == "FATAL" || string(v) == "PANIC"
		}
		body = rest
	}
	return false
}

// onReady handles ReadyForQuery: the end of a Query or of a Sync.
func (s *session) onReady(srv *server, m msg, it *item) bool {
	if len(m.Body) != 1 || it == nil {
		return true
	}
	switch it.kind {
	case itSync, itQuery, itFunc, itHidden:
	default:
		return true
	}
	done := s.q.pop()
	status := m.Body[0]
	srv.txStatus = status
	s.copying = false
	if done.kind == itHidden {
		return false
	}
	s.txStatus = status
	if s.q.empty() {
		s.stopQueryTimer()
		s.armIdle()
	}
	if done.kind == itQuery && !done.failed {
		s.txEffects = append(s.txEffects, done.effects...)
	}
	s.record(done.start, done.obs, done.errMsg, done.code)
	if status == 'I' {
		if s.txDDL {
			// Its DDL is committed (or rolled back) now: statements
			// prepared while it ran may be planned for the old schema.
			s.txDDL = false
			s.h.epoch.Add(1)
		}
		s.pool.m.xacts.Add(1)
		if !s.txStart.IsZero() {
			d := time.Since(s.txStart)
			s.pool.m.txDur.Observe(d.Seconds())
			s.pool.m.xactMicros.Add(uint64(d.Microseconds()))
			s.txStart = time.Time{}
			s.stopTx()
		}
		probing := false
		if s.rolledBack || done.failed {
			s.pool.m.rollbacks.Inc()
			if len(s.txEffects) > 0 {
				// What was rolled back is uncertain (ROLLBACK TO SAVEPOINT
				// has the same tag as ROLLBACK, and one query string may
				// commit some SETs and roll back others): ask the server.
				probing = s.probeSettings(srv)
			}
		} else {
			s.pool.m.commits.Inc()
			s.commitEffects(srv)
		}
		s.txEffects = s.txEffects[:0]
		s.rolledBack = false
		if probing {
			// The client's ReadyForQuery follows the probe's answer, so
			// its next statement finds the settings known.
			s.q.push(item{act: actSynth, synth: 'Z'})
			return false
		}
	}
	s.writeClient(m.Raw)
	return false
}

// probeSettings asks the server for the current values of the parameters
// a rolled-back transaction touched (see onProbe). It returns false, and
// makes the server start over at its next use, when it cannot: effects
// that reset everything, or replies still in flight behind this one. mu
// held.
func (s *session) probeSettings(srv *server) bool {
	var names []string
	seen := map[string]bool{}
	for _, e := range s.txEffects {
		switch e.Kind {
		case classify.EffectSet, classify.EffectReset:
			if !seen[e.Name] {
				seen[e.Name] = true
				names = append(names, e.Name)
			}
		case classify.EffectPin:
		default:
			srv.settings = unknownSettings
			return false
		}
	}
	if len(names) == 0 || !s.q.empty() {
		if len(names) > 0 {
			srv.settings = unknownSettings
		}
		return false
	}
	lits := make([]string, len(names))
	for i, n := range names {
		lits[i] = quoteLiteral(n)
	}
	sql := "SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[" + strings.Join(lits, ",") + "]::text[]) AS n"
	s.q.push(item{kind: itProbe})
	srv.write(appendMsg(nil, 'Q', []byte(sql), []byte{0}))
	return true
}

// onProbe handles the answer to probeSettings: each row gives a
// parameter's value on the server, which becomes the client's and the
// server's setting. mu held.
func (s *session) onProbe(srv *server, m msg) bool {
	switch m.Type {
	case 'D':
		name, val, isNull, ok := twoColumns(m.Body)
		if !ok {
			srv.settings = unknownSettings
			return false
		}
		stmt := ""
		if !isNull {
			stmt = setStatement(name, val)
		}
		s.settings = s.settings.with(name, stmt)
		srv.settings = srv.settings.with(name, stmt)
	case 'E':
		srv.settings = unknownSettings
	case 'S':
		srv.noteParameter(m.Body)
	case 'Z':
		if len(m.Body) != 1 {
			return true
		}
		s.q.pop()
		srv.txStatus = m.Body[0]
		s.pumpSynth()
	}
	return false
}

// twoColumns reads a DataRow of two text columns; the second may be null.
func twoColumns(body []byte) (a, b string, bNull, ok bool) {
	if len(body) < 2 || binary.BigEndian.Uint16(body) != 2 {
		return "", "", false, false
	}
	body = body[2:]
	var cols [2][]byte
	var null [2]bool
	for i := range 2 {
		if len(body) < 4 {
			return "", "", false, false
		}
		n := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if n < 0 {
			null[i] = true
			continue
		}
		if int(n) > len(body) {
			return "", "", false, false
		}
		cols[i], body = body[:n], body[n:]
	}
	if null[0] {
		return "", "", false, false
	}
	return string(cols[0]), string(cols[1]), null[1], true
}

// commitEffects applies the session-state effects of a committed
// transaction to the client's settings and to what the server has. mu held.
func (s *session) commitEffects(srv *server) {
	if len(s.txEffects) == 0 {
		return
	}
	cs, ss := s.settings, srv.settings
	for _, e := range s.txEffects {
		switch e.Kind {
		case classify.EffectSet:
			cs = cs.with(e.Name, e.SQL)
			ss = ss.with(e.Name, e.SQL)
		case classify.EffectReset:
			cs = cs.with(e.Name, s.startup.m[e.Name])
			ss = ss.with(e.Name, "")
		case classify.EffectResetAll:
			cs, ss = s.startup, emptySettings
		case classify.EffectDiscardAll:
			cs, ss = s.startup, emptySettings
			s.dropStatements(srv)
		case classify.EffectDeallocateAll:
			s.dropStatements(srv)
		}
	}
	s.settings, srv.settings = cs, ss
}

// dropStatements forgets the client's prepared statements and the
// server's shared ones (DISCARD ALL, DEALLOCATE ALL removed them there).
func (s *session) dropStatements(srv *server) {
	if s.renames() {
		s.dropStmts = true // the client goroutine owns the map
		s.stmtsStale.Store(true)
	}
	srv.clearPrepared()
}

// readInline is the synchronous path: after a round trip is written to an
// attachment that has no relay goroutine, the client goroutine reads the
// server's replies itself until every reply it expects has arrived, and
// then gives the server back if it can. A round trip then costs no
// goroutine hand-off. It hands over to a relay goroutine when the server
// waits for the client (CopyInResponse, CopyBothResponse).
func (s *session) readInline(srv *server) {
	lease := s.lease
	for {
		s.mu.Lock()
		s.pumpSynth()
		if s.srv != srv {
			s.mu.Unlock()
			return
		}
		if s.q.empty() {
			// Every reply is in: the same end as the relay's.
			_ = s.flushClient()
			switch {
			case s.detachable(srv):
				s.detach()
				s.mu.Unlock()
				lease.Release()
			case !s.inlineEligible():
				// It stays attached and may speak on its own (LISTEN
				// pinned the session): a relay reads it from now on.
				s.startRelay(srv)
				s.mu.Unlock()
			default:
				// An open transaction: the server is read again with
				// the client's next round trip.
				s.mu.Unlock()
			}
			return
		}
		s.mu.Unlock()
		m, err := srv.fr.next()
		s.mu.Lock()
		if err != nil {
			s.relayEnded(srv, lease, err)
			return
		}
		handOff := false
		broken := s.onServer(srv, m)
		handOff = m.Type == 'G' || m.Type == 'W'
		for !broken && !handOff && srv.fr.ready() {
			if m, err = srv.fr.next(); err != nil {
				s.relayEnded(srv, lease, err)
				return
			}
			broken = s.onServer(srv, m)
			handOff = m.Type == 'G' || m.Type == 'W'
		}
		_ = s.flushClient()
		if broken {
			s.relayEnded(srv, lease, errServerDesync)
			return
		}
		if handOff {
			s.startRelay(srv)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}
