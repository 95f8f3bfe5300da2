package sidecar

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
)

// ClientInfo is one client connection as GET /clients shows it.
type ClientInfo struct {
	Listener string `json:"listener"`
	Kind     string `json:"kind"`
	// Remote is the client's address as the socket has it.
	Remote string `json:"remote"`
	// Principal is the identity of the client certificate, if any.
	Principal string `json:"principal,omitempty"`
	// User and Database are what the client logged in as (Redis: Database
	// is the selected database index).
	User     string `json:"user,omitempty"`
	Database string `json:"database,omitempty"`
	// State is one of the ClientState values.
	State       string    `json:"state"`
	ConnectedAt time.Time `json:"connected_at"`
	// LastRequestAt is when the client's last query, command or HTTP
	// request began (zero: none yet, or not known for this kind).
	LastRequestAt time.Time `json:"last_request_at,omitzero"`
	// Pinned is why the client holds a dedicated server or upstream
	// connection ("" when it does not): a reason of the pins metrics.
	Pinned string `json:"pinned,omitempty"`
	TLS    bool   `json:"tls"`
}

// Client states.
const (
	// ClientIdle: connected, nothing in flight.
	ClientIdle = "idle"
	// ClientActive: a request is being served (or, for tcp, bytes flow).
	ClientActive = "active"
	// ClientWaiting: a request waits for a server connection from a pool
	// (or for a rate limit).
	ClientWaiting = "waiting"
	// ClientLogin: still in the TLS handshake or authentication.
	ClientLogin = "login"
)

// ClientLister is implemented by handlers that know their clients better
// than the listener does (the protocol frontends). Clients is called from
// the admin server's goroutine, concurrently with the handler's work; it
// returns a snapshot of every client connection the handler holds, draining
// ones included. Listener and Kind may be left empty: the admin server
// fills them in.
type ClientLister interface {
	Clients() []ClientInfo
}

// connActivity is what a Conn knows of its requests, for handlers that keep
// no client list of their own (the HTTP proxy sets it).
type connActivity struct {
	active      atomic.Bool
	lastRequest atomic.Int64 // unix nanoseconds; 0: none
}

// MarkActive records that a request on c began now.
func (c *Conn) MarkActive() {
	c.act.lastRequest.Store(time.Now().UnixNano())
	c.act.active.Store(true)
}

// MarkIdle records that c has no request in flight.
func (c *Conn) MarkIdle() { c.act.active.Store(false) }

// clients lists the connections of every handler the server holds, the
// ones that a reload replaced and that still drain included, sorted by
// listener and then by connection time.
func (s *Server) clients() []ClientInfo {
	s.refsMu.Lock()
	refs := make([]*handlerRef, 0, len(s.refs))
	for r := range s.refs {
		refs = append(refs, r)
	}
	s.refsMu.Unlock()
	out := []ClientInfo{}
	for _, r := range refs {
		out = append(out, r.clients()...)
	}
	slices.SortStableFunc(out, func(a, b ClientInfo) int {
		if c := cmp.Compare(a.Listener, b.Listener); c != 0 {
			return c
		}
		return a.ConnectedAt.Compare(b.ConnectedAt)
	})
	return out
}

// clients asks the handler, or lists the connections the listener tracks.
func (r *handlerRef) clients() []ClientInfo {
	if cl, ok := r.h.(ClientLister); ok {
		out := cl.Clients()
		for i := range out {
			if out[i].Listener == "" {
				out[i].Listener = r.name
			}
			if out[i].Kind == "" {
				out[i].Kind = string(r.kind)
			}
		}
		return out
	}
	r.mu.Lock()
	conns := make([]*Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	out := make([]ClientInfo, 0, len(conns))
	for _, c := range conns {
		ci := ClientInfo{
			Listener: r.name, Kind: string(r.kind), Remote: c.RemoteAddr().String(),
			State: ClientActive, ConnectedAt: c.Accepted, TLS: r.tls,
		}
		if ns := c.act.lastRequest.Load(); ns != 0 {
			ci.LastRequestAt = time.Unix(0, ns)
			if !c.act.active.Load() {
				ci.State = ClientIdle
			}
		}
		out = append(out, ci)
	}
	return out
}
