package redis

import (
	"cmp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/sidecar"
)

// GET /clients on the admin server asks the handler for its sessions
// (sidecar.ClientLister). A session's fields belong to its goroutine, so
// what the admin server (and CLIENT LIST, CLIENT KILL of other sessions)
// reads is a view the session publishes: its state and its last command
// and that command's start in atomics (three stores per command), and its
// user, database, pin reason, name and flags under a mutex, written only
// when one of them changed (publish compares after each command).

// Session states, as sidecar.ClientInfo.State names them.
const (
	viewIdle int32 = iota
	viewActive
	viewWaiting
)

var viewStates = [...]string{viewIdle: sidecar.ClientIdle, viewActive: sidecar.ClientActive, viewWaiting: sidecar.ClientWaiting}

// sessionView is what GET /clients, CLIENT LIST and CLIENT KILL see of a
// session from other goroutines.
type sessionView struct {
	state       atomic.Int32 // viewIdle, viewActive, viewWaiting
	lastRequest atomic.Int64 // unix nanoseconds of the last command's start; 0: none
	lastCmd     atomic.Pointer[Command]

	mu  sync.Mutex // guards cur, which only the session writes
	cur viewFields
}

// viewFields are the parts of a session's state that change rarely: the
// session publishes them when they differ from the last published.
type viewFields struct {
	user             string
	db, proto        int
	pinned           string // the pin reason ("transaction", "pubsub"), "" when not pinned
	name             string
	libName, libVer  string
	noEvict, noTouch bool
}

// setState records the session's state (one of the view constants).
func (s *session) setState(st int32) { s.view.state.Store(st) }

// publish updates the view's fields when they changed. Only the session's
// goroutine calls it, and only it writes them, so it reads them without
// the lock.
func (s *session) publish() {
	v := &s.view
	f := s.fieldsNow()
	if f == v.cur {
		return
	}
	v.mu.Lock()
	v.cur = f
	v.mu.Unlock()
}

// fieldsNow is the session's view fields as they are (its goroutine only).
func (s *session) fieldsNow() viewFields {
	return viewFields{
		user: s.pol.principal.User, db: s.key.db, proto: s.key.proto, pinned: s.pinReason,
		name: s.name, libName: s.libName, libVer: s.libVer,
		noEvict: s.key.noEvict, noTouch: s.key.noTouch,
	}
}

// fields reads the view's fields (from any goroutine).
func (v *sessionView) fields() viewFields {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cur
}

// register adds s to the handler's sessions; forget removes it.
func (h *Handler) register(s *session) {
	h.sessMu.Lock()
	h.sessions[s] = struct{}{}
	h.sessMu.Unlock()
}

func (h *Handler) forget(s *session) {
	h.sessMu.Lock()
	delete(h.sessions, s)
	h.sessMu.Unlock()
}

// clientInfo is the session as GET /clients shows it.
func (s *session) clientInfo() sidecar.ClientInfo {
	v := &s.view
	ci := sidecar.ClientInfo{
		Remote: s.c.RemoteAddr().String(), Principal: s.pol.principal.Identity,
		State: viewStates[v.state.Load()], ConnectedAt: s.c.Accepted,
		TLS: s.h.env.ServerTLS != nil,
	}
	if ns := v.lastRequest.Load(); ns != 0 {
		ci.LastRequestAt = time.Unix(0, ns)
	}
	f := v.fields()
	ci.User, ci.Database, ci.Pinned = f.user, strconv.Itoa(f.db), f.pinned
	return ci
}

// Clients lists the listener's client sessions for GET /clients
// (sidecar.ClientLister): user is the name the client authenticated as
// ("default" before AUTH or HELLO AUTH), database the selected index,
// pinned the reason of its dedicated upstream connection (the reason label
// of outrigger_redis_pins_total).
func (h *Handler) Clients() []sidecar.ClientInfo {
	list := h.sessionList()
	out := make([]sidecar.ClientInfo, 0, len(list))
	for _, s := range list {
		out = append(out, s.clientInfo())
	}
	return out
}

// sessionList is the sessions being served, in the order of their ids.
func (h *Handler) sessionList() []*session {
	h.sessMu.Lock()
	list := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		list = append(list, s)
	}
	h.sessMu.Unlock()
	slices.SortFunc(list, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	return list
}

var _ sidecar.ClientLister = (*Handler)(nil)
