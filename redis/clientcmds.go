package redis

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// The CLIENT subcommands that name clients (KILL, UNBLOCK, LIST, INFO) act
// on Outrigger's clients, whose ids are the ones CLIENT ID gives: the
// server's clients are Outrigger's shared connections, which belong to no
// client. Redis still decides whether the client may run the command and
// whether its arguments are good: each is first sent upstream in a form
// that matches none of the server's clients (or, for UNBLOCK of a blocked
// client, translated to the upstream connection it blocks on), so ACL
// refusals and syntax errors come in Redis's own words.

// noClientID is a client id no server has (Redis counts up from 1).
const noClientID = math.MaxInt64

// ask sends a command of Outrigger's own where the client's next command
// would go (its pinned connection, else its shared one) and waits for the
// reply, which does not reach the client: the raw reply, or the failure.
func (s *session) ask(raw []byte) ([]byte, error) {
	l := s.pinnedLane()
	if l == nil {
		var err error
		if l, err = s.sharedLane(); err != nil {
			return nil, fmt.Errorf("upstream unavailable: %w", err)
		}
	}
	// Everything the client sent before is answered first, so the hidden
	// command needs no place in the order (and none in the reply stream).
	s.flush()
	if s.last != nil {
		s.wait(s.last)
	}
	s.settleDirect()
	sl := s.newSlot(nil)
	l.send(raw, sl)
	s.wait(sl)
	defer s.releaseSlot(sl)
	if sl.err != nil {
		return nil, sl.err
	}
	return append([]byte(nil), sl.buf...), nil
}

// askFirst asks Redis about raw (see ask) and reports true when the
// client's command may go on; otherwise sl has Redis's error (or the
// failure) for the client.
func (s *session) askFirst(raw []byte, sl *slot) bool {
	rep, err := s.ask(raw)
	switch {
	case err != nil:
		sl.fail(err)
		return false
	case len(rep) > 0 && (rep[0] == '-' || rep[0] == '!'):
		sl.answer(func(b []byte) []byte { return append(b, rep...) })
		return false
	}
	return true
}

func (s *session) pinnedLane() *lane {
	if s.pinned == nil {
		return nil
	}
	return s.pinned.Conn()
}

// sharedLane is the client's shared connection, dialled again if it died.
func (s *session) sharedLane() (*lane, error) {
	l := s.shared
	if l == nil || !l.alive() {
		var err error
		if l, err = s.h.shared(s.key).get(s.ctx, s.laneIdx); err != nil {
			s.shared = nil
			return nil, err
		}
		s.shared = l
	}
	return l, nil
}

// setBlocked records the pinned connection a blocking command waits on
// (nil once it is answered), for CLIENT UNBLOCK from other clients.
func (s *session) setBlocked(l *lane) {
	s.blockMu.Lock()
	s.blockedOn = l
	s.blockMu.Unlock()
}

// clientUnblock handles CLIENT UNBLOCK id [TIMEOUT|ERROR]. It returns the
// command to send on the client's own connection, or nil when it answered
// sl. For a client of this listener that is blocked, the command goes,
// with the id of the upstream connection it blocks on, to a connection of
// its own (the other client's connection stays its until the answer: see
// setBlocked); for any other id it goes with an id no server has, so that
// Redis answers 0 after its own checks.
func (s *session) clientUnblock(args [][]byte, raw []byte, sl *slot) []byte {
	if len(args) < 3 || len(args) > 4 {
		return raw // Redis's own error
	}
	id, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		return raw
	}
	rewrite := func(upstream int64) []byte {
		a := []string{"CLIENT", "UNBLOCK", strconv.FormatInt(upstream, 10)}
		if len(args) == 4 {
			a = append(a, string(args[3]))
		}
		return appendCommand(nil, a...)
	}
	if t := s.h.sessionByID(id); t != nil && t != s {
		t.blockMu.Lock()
		defer t.blockMu.Unlock()
		if l := t.blockedOn; l != nil && l.upstreamID != 0 {
			s.outOfBand(rewrite(l.upstreamID), sl)
			return nil
		}
	}
	return rewrite(noClientID)
}

// sessionByID finds the listener's client with id.
func (h *Handler) sessionByID(id int64) *session {
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	for s := range h.sessions {
		if s.id == id {
			return s
		}
	}
	return nil
}

// clientKill handles CLIENT KILL: addr (the old form) or filters (ID,
// TYPE, USER, ADDR, LADDR, SKIPME, MAXAGE), matched against this listener's
// clients, which are closed; never an upstream connection. The old form
// answers OK or "No such client", the new one the count closed, as Redis
// does.
func (s *session) clientKill(args [][]byte, sl *slot) {
	var probe []byte
	if len(args) == 3 {
		probe = appendCommand(nil, "CLIENT", "KILL", "ID", strconv.FormatInt(noClientID, 10))
	} else {
		// The client's filters, validated by Redis, then an ID no server
		// has: Redis takes the last ID given, so it closes nothing.
		a := make([]string, 0, len(args)+2)
		for _, b := range args {
			a = append(a, string(b))
		}
		probe = appendCommand(nil, append(a, "ID", strconv.FormatInt(noClientID, 10))...)
	}
	if !s.askFirst(probe, sl) {
		return
	}
	var match func(t *session, f viewFields) bool
	if len(args) == 3 {
		addr := string(args[2])
		match = func(t *session, _ viewFields) bool { return t.c.RemoteAddr().String() == addr }
	} else {
		var ok bool
		if match, ok = killFilter(s, args[2:]); !ok {
			sl.error("ERR syntax error")
			return
		}
	}
	n := 0
	for _, t := range s.h.sessionList() {
		if !match(t, t.view.fields()) {
			continue
		}
		n++
		if t == s {
			s.killed = true // after this reply, as Redis closes a client that kills itself
		} else {
			t.c.Close()
		}
	}
	switch {
	case len(args) > 3:
		sl.answer(func(b []byte) []byte { return redcon.AppendInt(b, int64(n)) })
	case n == 0:
		sl.error("ERR No such client")
	default:
		sl.ok()
	}
}

// killFilter builds CLIENT KILL's filter from its option pairs (Redis has
// checked them already); ok is false for one it does not know.
func killFilter(self *session, opts [][]byte) (match func(*session, viewFields) bool, ok bool) {
	var (
		id             int64
		typ, user      string
		addr, laddr    string
		skipMe         = true
		maxAge         int64
		hasID, hasType bool
		hasUser        bool
	)
	if len(opts)%2 != 0 {
		return nil, false
	}
	for i := 0; i < len(opts); i += 2 {
		val := string(opts[i+1])
		switch strings.ToLower(string(opts[i])) {
		case "id":
			id, hasID = parseInt64(val), true
		case "type":
			typ, hasType = strings.ToLower(val), true
		case "user":
			user, hasUser = val, true
		case "addr":
			addr = val
		case "laddr":
			laddr = val
		case "skipme":
			skipMe = strings.EqualFold(val, "yes")
		case "maxage":
			maxAge = parseInt64(val)
		default:
			return nil, false
		}
	}
	return func(t *session, f viewFields) bool {
		switch {
		case hasID && t.id != id,
			hasType && clientType(f) != typ && !(typ == "slave" && clientType(f) == "replica"),
			hasUser && f.user != user,
			addr != "" && t.c.RemoteAddr().String() != addr,
			laddr != "" && t.c.LocalAddr().String() != laddr,
			skipMe && t == self,
			maxAge > 0 && int64(time.Since(t.c.Accepted)/time.Second) < maxAge:
			return false
		}
		return true
	}, true
}

func parseInt64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// clientType is the client's type as CLIENT KILL TYPE and CLIENT LIST
// TYPE name it: a client of Outrigger is never a master or replica.
func clientType(f viewFields) string {
	if f.pinned == pinPubSub {
		return "pubsub"
	}
	return "normal"
}

// clientList answers CLIENT LIST [TYPE type | ID id ...] with a line per
// client of this listener, once Redis has accepted the command as the
// client sent it (its own list is not shown).
func (s *session) clientList(args [][]byte, raw []byte, sl *slot) {
	if !s.askFirst(raw, sl) {
		return
	}
	var keep func(*session, viewFields) bool
	switch {
	case len(args) == 4 && equalFold(args[2], "type"):
		typ := strings.ToLower(string(args[3]))
		if typ == "slave" {
			typ = "replica"
		}
		keep = func(_ *session, f viewFields) bool { return clientType(f) == typ }
	case len(args) >= 4 && equalFold(args[2], "id"):
		ids := map[int64]bool{}
		for _, a := range args[3:] {
			ids[parseInt64(string(a))] = true
		}
		keep = func(t *session, _ viewFields) bool { return ids[t.id] }
	default:
		keep = func(*session, viewFields) bool { return true }
	}
	var text []byte
	for _, t := range s.h.sessionList() {
		if f := t.view.fields(); keep(t, f) {
			text = t.appendInfo(text, f)
		}
	}
	sl.answer(func(b []byte) []byte { return appendVerbatim(b, s.key.proto, text) })
}

// appendInfo appends the client's line of CLIENT LIST and CLIENT INFO, in
// Redis's format. Counters Outrigger has no equivalent for (buffers,
// memory, subscriptions) are 0; fd is -1.
func (s *session) appendInfo(b []byte, f viewFields) []byte {
	now := time.Now()
	idle := time.Duration(0)
	if ns := s.view.lastRequest.Load(); ns != 0 {
		idle = now.Sub(time.Unix(0, ns))
	}
	cmd := "NULL"
	if c := s.view.lastCmd.Load(); c != nil {
		cmd = c.Name
	}
	multi := -1
	if f.pinned == pinTransaction {
		multi = 0
	}
	return fmt.Appendf(b, "id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=%d sub=0 psub=0 ssub=0 multi=%d qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
		s.id, s.c.RemoteAddr(), s.c.LocalAddr(), f.name, int64(now.Sub(s.c.Accepted)/time.Second), int64(idle/time.Second),
		clientFlags(f), f.db, multi, cmd, f.user, f.proto, f.libName, f.libVer)
}

// clientFlags is the flags field of a client's line.
func clientFlags(f viewFields) string {
	var b strings.Builder
	switch f.pinned {
	case pinMonitor:
		b.WriteString("O")
	case pinPubSub:
		b.WriteString("P")
	case pinTransaction:
		b.WriteString("x")
	case pinBlocking:
		b.WriteString("b")
	}
	if f.noEvict {
		b.WriteString("e")
	}
	if f.noTouch {
		b.WriteString("T")
	}
	if b.Len() == 0 {
		return "N"
	}
	return b.String()
}

// appendVerbatim appends text as Redis sends CLIENT LIST and CLIENT INFO:
// a verbatim string of format txt in RESP3, a bulk string in RESP2.
func appendVerbatim(b []byte, proto int, text []byte) []byte {
	if proto != 3 {
		return redcon.AppendBulk(b, text)
	}
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(len(text)+4), 10)
	b = append(b, "\r\ntxt:"...)
	b = append(b, text...)
	return append(b, '\r', '\n')
}

// clientMode handles CLIENT NO-EVICT and CLIENT NO-TOUCH on|off: the mode
// follows the client as its database does (it moves to the shared
// connections set up with that mode), so it never reaches a connection
// other clients use.
func (s *session) clientMode(args [][]byte, sl *slot) bool {
	name := strings.ToLower(string(args[1]))
	if len(args) != 3 {
		sl.error("ERR wrong number of arguments for 'client|" + name + "' command")
		return false
	}
	var on bool
	switch {
	case equalFold(args[2], "on"):
		on = true
	case equalFold(args[2], "off"):
	default:
		sl.error("ERR syntax error")
		return false
	}
	key := s.key
	if s.pinned != nil {
		key = s.keyAfterPinned()
	}
	if name == "no-evict" {
		key.noEvict = on
	} else {
		key.noTouch = on
	}
	if s.pinned != nil {
		// Inside MULTI or WATCH: on the pinned connection, which is not
		// clean afterwards.
		s.dirty = true
		s.sendKeyChange(key, nil, appendCommand(nil, "CLIENT", strings.ToUpper(name), string(args[2])), sl)
		return true
	}
	if key == s.key {
		sl.ok()
		return false
	}
	s.moveTo(key, sl, redcon.AppendOK)
	return false
}

// isClientSub reports whether args are CLIENT sub (for subcommands the
// table may not have, such as NO-TOUCH before Redis 7.2).
func isClientSub(args [][]byte, sub string) bool {
	return len(args) >= 2 && equalFold(args[0], "client") && bytes.EqualFold(args[1], []byte(sub))
}
