package pg

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"sync"
	"time"
)

// cancelRegistry maps the BackendKeyData Outrigger gave each client to its
// session.
type cancelRegistry struct {
	mu       sync.Mutex
	sessions map[uint32]*session
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{sessions: map[uint32]*session{}}
}

// register gives s a process id no other open session has.
func (r *cancelRegistry) register(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		pid, secret := randomKey()
		if _, taken := r.sessions[pid]; !taken && pid != 0 {
			s.pid, s.secret = pid, secret
			r.sessions[pid] = s
			return
		}
	}
}

// registerAs gives s the process id pid: its server's, in session mode.
// A session that had the same server before and has not ended yet loses
// the id to s (its server is s's now).
func (r *cancelRegistry) registerAs(s *session, pid uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, s.secret = randomKey()
	s.pid = pid
	r.sessions[pid] = s
}

func (r *cancelRegistry) unregister(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.pid] == s {
		delete(r.sessions, s.pid)
	}
}

func (r *cancelRegistry) lookup(pid uint32, key []byte) *session {
	r.mu.Lock()
	s := r.sessions[pid]
	r.mu.Unlock()
	if s == nil || len(key) != 4 {
		return nil
	}
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], s.secret)
	if subtle.ConstantTimeCompare(want[:], key) != 1 {
		return nil
	}
	return s
}

// cancel forwards a client's CancelRequest to the server that runs its
// query now, with that server's own key. A client with nothing in flight
// gets nothing sent: its old server may serve someone else by now.
func (h *Handler) cancel(pid uint32, key []byte) {
	s := h.cancels.lookup(pid, key)
	if s == nil {
		h.m.cancels.unknown.Inc()
		return
	}
	s.mu.Lock()
	srv := s.srv
	busy := srv != nil && !s.q.empty()
	if srv == nil && s.waitCancel != nil {
		s.waitCanceled = true
		s.waitCancel()
		s.mu.Unlock()
		h.m.cancels.queued.Inc()
		return
	}
	s.mu.Unlock()
	if !busy {
		h.m.cancels.idle.Inc()
		return
	}
	h.m.cancels.forwarded.Inc()
	h.sendCancel(srv)
}

// sendCancel asks the server to cancel what it runs, on a new connection.
func (h *Handler) sendCancel(srv *server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.up.DialAddr(ctx, srv.addr, false)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 0, 16+len(srv.key))
	buf = binary.BigEndian.AppendUint32(buf, uint32(12+len(srv.key)))
	buf = binary.BigEndian.AppendUint32(buf, codeCancelRequest)
	buf = binary.BigEndian.AppendUint32(buf, srv.pid)
	buf = append(buf, srv.key...)
	if _, err := c.Write(buf); err != nil {
		return
	}
	// Postgres closes the connection once it has read the request.
	var b [1]byte
	_, _ = c.Read(b[:])
}
