package redis

import (
	"context"
	"crypto/subtle"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/pool"
	"github.com/outrigger/outrigger/sidecar"
)

// Handler is the sidecar.Handler of a redis listener: it owns the listener's
// upstream connections (shared lanes and pinned pools, per poolKey) and
// serves each client connection with a session.
type Handler struct {
	env     sidecar.Env
	cfg     *config.Redis
	up      *sidecar.Upstream
	refused map[*Command]bool
	m       *handlerMetrics
	nextID  atomic.Int64
	// upstreamAddr is the server.address of spans.
	upstreamAddr string

	// sessions are the client sessions being served, for GET /clients.
	sessMu   sync.Mutex
	sessions map[*session]struct{}

	probeMu sync.Mutex // serialises proving new connection states (enter)

	// The last liveness probe (see upstreamAlive): when, and its answer.
	liveMu sync.Mutex
	liveAt time.Time
	liveOK bool

	mu     sync.Mutex
	lanes  map[poolKey]*lanes
	pinned map[poolKey]*pool.Pool[*lane]
	// via and noSelect serve users whom Redis denies SELECT (dialLane).
	via      map[poolKey]poolKey
	noSelect map[credentials]*upstreamError
}

// NewHandler is the sidecar.Builder for redis listeners.
func NewHandler(env sidecar.Env, section any) (sidecar.Handler, error) {
	cfg, ok := section.(*config.Redis)
	if !ok {
		return nil, fmt.Errorf("redis: section is %T, not *config.Redis", section)
	}
	up, err := sidecar.NewUpstream(env.Name, cfg.Upstream, env.Dialer, env.Metrics)
	if err != nil {
		return nil, err
	}
	refused := map[*Command]bool{}
	for _, name := range cfg.RefuseCommands {
		args := [][]byte{}
		for _, part := range strings.Split(name, "|") {
			args = append(args, []byte(part))
		}
		c := Lookup(args)
		if c == nil || !strings.EqualFold(c.Name, name) {
			return nil, fmt.Errorf("refuse_commands: unknown command %q", name)
		}
		refused[c] = true
	}
	h := &Handler{
		env: env, cfg: cfg, up: up, refused: refused,
		m:            newHandlerMetrics(env),
		upstreamAddr: upstreamAddrOf(cfg.Upstream.AllAddresses()),
		sessions:     map[*session]struct{}{},
		lanes:        map[poolKey]*lanes{},
		pinned:       map[poolKey]*pool.Pool[*lane]{},
		via:          map[poolKey]poolKey{},
		noSelect:     map[credentials]*upstreamError{},
	}
	if env.Metrics != nil {
		env.Metrics.RedisInFlight.Set(env.Name, h, h.inFlight)
	}
	return h, nil
}

// ServeConn runs one client session.
func (h *Handler) ServeConn(ctx context.Context, c *sidecar.Conn) {
	client := c.Counting()
	identity := ""
	if h.env.ServerTLS != nil {
		tc, principal, ok := h.env.AcceptTLS(ctx, c, nil)
		if !ok {
			return
		}
		client, identity = tc, principal
	}
	s := h.newSession(ctx, c, client, identity)
	if h.env.ServerTLS == nil {
		s.d.raw = directConn(c.Conn)
	}
	s.run()
}

// initialKey is the connection state a new client starts in: RESP2,
// database 0, and the upstream user for clients that did not authenticate.
func (h *Handler) initialKey() poolKey {
	return poolKey{proto: 2, user: h.cfg.Auth.UpstreamUser, password: h.cfg.Auth.UpstreamPassword.Reveal()}
}

// mapUser checks the credentials in key (as the client gave them to AUTH or
// HELLO) against the listener's own users and, when they match, replaces
// them with that user's upstream credentials. Without users configured the
// client's credentials go upstream unchanged.
func (h *Handler) mapUser(key *poolKey) bool {
	if len(h.cfg.Auth.Users) == 0 {
		return true
	}
	name := key.user
	if name == "" {
		name = "default"
	}
	for _, u := range h.cfg.Auth.Users {
		if u.Name == name {
			if subtle.ConstantTimeCompare([]byte(u.Password.Reveal()), []byte(key.password)) != 1 {
				return false
			}
			key.user, key.password = u.UpstreamUser, u.UpstreamPassword.Reveal()
			return true
		}
	}
	return false
}

// shared returns the shared lanes for key, creating them on first use.
func (h *Handler) shared(key poolKey) *lanes {
	h.mu.Lock()
	defer h.mu.Unlock()
	ls := h.lanes[key]
	if ls == nil {
		ls = &lanes{key: key, h: h, slots: make([]laneSlot, h.cfg.Pool.Size)}
		h.lanes[key] = ls
	}
	return ls
}

// maxPoolKeys bounds the distinct connection states (database, user,
// protocol) a listener keeps connections for.
const maxPoolKeys = 256

// enter proves that a connection in key's state can be made and returns the
// shared connection index for a session moving there. A state that fails
// (a bad password, a database that does not exist) leaves nothing behind, so
// clients cannot make the listener hold state without bound.
func (h *Handler) enter(ctx context.Context, key poolKey) (int, error) {
	h.mu.Lock()
	ls := h.lanes[key]
	n := len(h.lanes)
	h.mu.Unlock()
	if ls != nil {
		idx := ls.assign()
		_, err := ls.get(ctx, idx)
		return idx, err
	}
	if n >= maxPoolKeys {
		return 0, fmt.Errorf("too many distinct connection states on this listener (%d)", maxPoolKeys)
	}
	// One probe at a time: a thousand clients arriving with the same new
	// state wait for the first one's connection instead of dialing their own.
	h.probeMu.Lock()
	defer h.probeMu.Unlock()
	h.mu.Lock()
	ls = h.lanes[key]
	h.mu.Unlock()
	if ls != nil {
		idx := ls.assign()
		_, err := ls.get(ctx, idx)
		return idx, err
	}
	l, err := h.dialLane(ctx, key, h.cfg.Pool.CommandTimeout, "shared")
	if err != nil {
		return 0, err
	}
	ls = h.shared(key)
	ls.mu.Lock()
	if ls.slots[0].l == nil {
		ls.slots[0].l = l
		l = nil
	}
	ls.mu.Unlock()
	if l != nil {
		l.close(nil) // another session got there first
	}
	return ls.assign(), nil
}

// pinnedPool returns the pool of dedicated connections for key.
func (h *Handler) pinnedPool(key poolKey) (*pool.Pool[*lane], error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.pinned[key]; p != nil {
		return p, nil
	}
	p, err := h.newPinnedPool(key)
	if err != nil {
		return nil, err
	}
	h.pinned[key] = p
	return p, nil
}

// Drain has nothing to do at once: sessions end when their clients leave,
// or the listener closes them at the drain timeout.
func (h *Handler) Drain() {}

// Close closes every upstream connection.
// inFlight is the listener's outrigger_redis_in_flight_commands.
func (h *Handler) inFlight() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ls := range h.lanes {
		n += ls.depth()
	}
	return n
}

func (h *Handler) Close() error {
	if h.env.Metrics != nil {
		h.env.Metrics.RedisInFlight.Delete(h.env.Name, h)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ls := range h.lanes {
		ls.close()
	}
	for _, p := range h.pinned {
		p.Close()
	}
	return nil
}

// Stats is what /pools shows for a redis listener.
func (h *Handler) Stats() any {
	h.mu.Lock()
	defer h.mu.Unlock()
	type poolStats struct {
		DB     int        `json:"db"`
		User   string     `json:"user,omitempty"`
		Proto  int        `json:"resp"`
		Shared int        `json:"shared_open"`
		Size   int        `json:"shared_size"`
		Pinned pool.Stats `json:"pinned"`
	}
	var out []poolStats
	for key, ls := range h.lanes {
		ps := poolStats{DB: key.db, User: key.user, Proto: key.proto, Shared: ls.open(), Size: len(ls.slots)}
		if p := h.pinned[key]; p != nil {
			ps.Pinned = p.Stats()
		}
		out = append(out, ps)
	}
	return out
}

// handlerMetrics are the redis metrics of one listener: the recorder of
// command results and durations (see observe.go), the clients gauge and the
// pins counter.
type handlerMetrics struct {
	rec     *metrics.RedisRecorder
	clients prometheus.Gauge
	pins    *prometheus.CounterVec
}

func newHandlerMetrics(env sidecar.Env) *handlerMetrics {
	return &handlerMetrics{
		rec:     env.Metrics.RedisRecorder(env.Name),
		clients: env.Metrics.RedisClients.WithLabelValues(env.Name),
		pins:    env.Metrics.RedisPins,
	}
}
