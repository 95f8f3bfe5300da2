package redis

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger/outrigger/sidecar"
)

// GET /clients on the admin server asks the handler for its sessions
// (sidecar.ClientLister). A session's fields belong to its goroutine, so
// what the admin server reads is a view the session publishes: its state
// and the start of its last command in atomics (two stores per command),
// and its user, database and pin reason under a mutex, written only when
// one of them changed (publish compares after each command).

// Session states, as sidecar.ClientInfo.State names them.
const (
	viewIdle int32 = iota
	viewActive
	viewWaiting
)

var viewStates = [...]string{viewIdle: sidecar.ClientIdle, viewActive: sidecar.ClientActive, viewWaiting: sidecar.ClientWaiting}

// sessionView is what GET /clients shows of a session.
type sessionView struct {
	state       atomic.Int32 // viewIdle, viewActive, viewWaiting
	lastRequest atomic.Int64 // unix nanoseconds of the last command's start; 0: none

	mu     sync.Mutex // guards the fields below, which only the session writes
	user   string
	db     int
	pinned string // the pin reason ("transaction", "pubsub"), "" when not pinned
}

// setState records the session's state (one of the view constants).
func (s *session) setState(st int32) { s.view.state.Store(st) }

// publish updates the view's user, database and pin reason when they
// changed. Only the session's goroutine calls it, and only it writes those
// fields, so it reads them without the lock.
func (s *session) publish() {
	v := &s.view
	user, db, pin := s.pol.principal.User, s.key.db, s.pinReason
	if user == v.user && db == v.db && pin == v.pinned {
		return
	}
	v.mu.Lock()
	v.user, v.db, v.pinned = user, db, pin
	v.mu.Unlock()
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
	v.mu.Lock()
	ci.User, ci.Database, ci.Pinned = v.user, strconv.Itoa(v.db), v.pinned
	v.mu.Unlock()
	return ci
}

// Clients lists the listener's client sessions for GET /clients
// (sidecar.ClientLister): user is the name the client authenticated as
// ("default" before AUTH or HELLO AUTH), database the selected index,
// pinned the reason of its dedicated upstream connection (the reason label
// of outrigger_redis_pins_total).
func (h *Handler) Clients() []sidecar.ClientInfo {
	h.sessMu.Lock()
	list := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		list = append(list, s)
	}
	h.sessMu.Unlock()
	out := make([]sidecar.ClientInfo, 0, len(list))
	for _, s := range list {
		out = append(out, s.clientInfo())
	}
	return out
}

var _ sidecar.ClientLister = (*Handler)(nil)
