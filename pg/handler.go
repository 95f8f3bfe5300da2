package pg

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pg/classify"
	"github.com/outrigger/outrigger/pool"
	"github.com/outrigger/outrigger/sidecar"
)

// poolKey names a server pool: the database and the user a client logged
// in as.
type poolKey struct {
	database, user string
}

// upstreamCreds are what Outrigger logs in to Postgres with.
type upstreamCreds struct {
	user, password string
	// pass, for a user learned with auth_query, holds the key its clients
	// proved, which the login upstream uses instead of a password.
	pass *passKey
}

// maxPools bounds the (database, user) pools of one listener. A pool is
// made only after a server accepted its credentials, so clients cannot
// fill this with made-up names.
const maxPools = 256

// Handler is the sidecar.Handler of a postgres listener: it authenticates
// clients, owns the server pools (one per database and user) and runs one
// session per client.
type Handler struct {
	env     sidecar.Env
	cfg     *config.Postgres
	up      *sidecar.Upstream
	connCfg *pgconn.Config
	mode    poolMode
	users   map[string]*user
	auth    *authSource // nil without auth.auth_user
	classes *classify.Cache
	norm    *classify.Normalizer // access log and span statements
	m       *handlerMetrics
	cancels *cancelRegistry
	clients atomic.Int64  // sessions past startup, for pool.max_clients
	lastID  atomic.Uint64 // session ids, for SHOW CLIENTS and KILL_CLIENT
	// mockSecret salts the stand-in credentials of unknown users.
	mockSecret [32]byte

	// PAUSE on the admin console holds new attachments until RESUME.
	paused  atomic.Bool
	pauseMu sync.Mutex
	resumed chan struct{}

	// known holds shared statement names some server prepared without
	// error (at most maxKnown).
	known      sync.Map
	knownCount atomic.Int64
	// epoch is part of every shared statement name: DDL and a statement
	// planned for an old schema move it on (see prepared.go).
	epoch atomic.Uint64

	mu      sync.Mutex
	pools   map[poolKey]*serverPool
	closing bool
	// Clients per user and per database, for
	// pool.max_user_client_connections and max_db_client_connections.
	userClients, dbClients map[string]int
}

type poolMode uint8

const (
	modeSession poolMode = iota
	modeTransaction
	modeStatement
)

// NewHandler is the sidecar.Builder for postgres listeners.
func NewHandler(env sidecar.Env, section any) (sidecar.Handler, error) {
	cfg, ok := section.(*config.Postgres)
	if !ok {
		return nil, fmt.Errorf("pg: section is %T, not *config.Postgres", section)
	}
	up, err := sidecar.NewUpstream(env.Name, cfg.Upstream, env.Dialer, env.Metrics)
	if err != nil {
		return nil, err
	}
	// pgconn wants a Config made by ParseConfig; everything that matters is
	// set per dial, and nothing from the environment (PG* variables) may
	// leak into it.
	connCfg, err := pgconn.ParseConfig("host=127.0.0.1 port=5432 sslmode=disable")
	if err != nil {
		return nil, err
	}
	connCfg.RuntimeParams = map[string]string{}
	connCfg.Fallbacks = nil
	connCfg.ConnectTimeout = cfg.Upstream.ConnectTimeout
	connCfg.KerberosSrvName, connCfg.KerberosSpn = "", ""
	h := &Handler{
		env: env, cfg: cfg, up: up, connCfg: connCfg,
		classes: classify.NewCache(4096),
		norm:    classify.NewNormalizer(4096),
		m:       newHandlerMetrics(env),
		cancels: newCancelRegistry(),
		pools:   map[poolKey]*serverPool{},

		userClients: map[string]int{}, dbClients: map[string]int{},
	}
	switch cfg.Pool.Mode {
	case "session":
		h.mode = modeSession
	case "statement":
		h.mode = modeStatement
	default:
		h.mode = modeTransaction
	}
	_, _ = rand.Read(h.mockSecret[:])
	if h.users, err = buildUsers(cfg.Auth); err != nil {
		return nil, err
	}
	if cfg.Auth.AuthUser != "" {
		h.auth = newAuthSource(h)
	}
	return h, nil
}

// serverPool is the pool of server connections for one (database, user).
type serverPool struct {
	key   poolKey
	creds upstreamCreds
	p     *pool.Pool[*server]
	m     *poolMetrics

	mu      sync.Mutex
	servers map[*server]struct{} // open connections, for SHOW SERVERS
	// base is what a fresh server connection reports (ParameterStatus),
	// the start of every client's view.
	base map[string]string
	// statusBySettings caches what a server reports once a client's
	// startup settings are applied, by settings sum.
	statusBySettings map[uint64]map[string]string
}

// serverPool returns the pool for key, making it (and proving its
// credentials with one connection) on first use.
func (h *Handler) serverPool(ctx context.Context, key poolKey, creds upstreamCreds) (*serverPool, error) {
	h.mu.Lock()
	if sp := h.pools[key]; sp != nil {
		h.mu.Unlock()
		if sp.creds != creds {
			return nil, fatalf(codeInvalidAuthorization, "user %q is connected upstream with other credentials", key.user)
		}
		return sp, nil
	}
	if h.closing {
		h.mu.Unlock()
		return nil, pool.ErrClosed
	}
	if len(h.pools) >= maxPools {
		h.mu.Unlock()
		return nil, fatalf(codeTooManyConnections, "too many (database, user) pools on this listener (%d)", maxPools)
	}
	h.mu.Unlock()

	// Prove the credentials before the pool exists: a failed login leaves
	// nothing behind.
	first, err := h.dialServer(ctx, key, creds)
	if err != nil {
		return nil, err
	}
	sp := &serverPool{key: key, creds: creds, base: maps.Clone(first.params), statusBySettings: map[uint64]map[string]string{}}
	sp.m = h.m.pool(key)
	pcfg := pool.Config{
		Name:           key.database + "/" + key.user,
		Size:           h.cfg.Pool.Size,
		MinIdle:        h.cfg.Pool.MinIdle,
		AcquireTimeout: h.cfg.Pool.AcquireTimeout,
		IdleTimeout:    h.cfg.Pool.ServerIdleTimeout,
		MaxLifetime:    h.cfg.Pool.ServerLifetime,
		// A connection idle for a millisecond or more is checked before it
		// is lent (one non-blocking peek): a terminated backend is found
		// before a client's query meets it. One given back less than a
		// millisecond ago is lent at once: under load that is most
		// borrows, and the peek is a system call per transaction. A
		// backend that died in that window fails the query that meets it
		// with a clean error, as it would unpooled.
		HealthCheckAfter: time.Millisecond,
	}
	p, err := pool.New(pcfg, pool.Hooks[*server]{
		Dial: func(ctx context.Context) (*server, error) {
			s := sp.takeFirst(&first)
			if s == nil {
				var err error
				if s, err = h.dialServer(ctx, key, creds); err != nil {
					h.m.upErrors.WithLabelValues("connect").Inc()
					return nil, err
				}
			}
			sp.track(s, true)
			return s, nil
		},
		Close: func(s *server) error {
			sp.track(s, false)
			return s.close()
		},
		Check: func(ctx context.Context, s *server) error { return s.check(ctx) },
		Reset: func(ctx context.Context, s *server) error {
			err := h.resetServer(ctx, s)
			if err != nil {
				h.m.upErrors.WithLabelValues("reset").Inc()
			}
			return err
		},
		OnAcquireWait: sp.m.acquireWait,
	})
	if err != nil {
		first.close()
		return nil, err
	}
	sp.p = p
	h.mu.Lock()
	if old := h.pools[key]; old != nil { // another client made it first
		h.mu.Unlock()
		p.Close()
		if s := sp.takeFirst(&first); s != nil {
			s.close()
		}
		return old, nil
	}
	h.pools[key] = sp
	h.mu.Unlock()
	h.m.trackPool(sp)
	return sp, nil
}

func (sp *serverPool) track(s *server, open bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.servers == nil {
		sp.servers = map[*server]struct{}{}
	}
	if open {
		sp.servers[s] = struct{}{}
	} else {
		delete(sp.servers, s)
	}
}

func (sp *serverPool) serverList() []*server {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	out := make([]*server, 0, len(sp.servers))
	for s := range sp.servers {
		out = append(out, s)
	}
	return out
}

// takeFirst hands the connection that proved the credentials to the
// pool's first dial.
func (sp *serverPool) takeFirst(first **server) *server {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	s := *first
	*first = nil
	return s
}

// resetServer is the pool's Reset hook, for a server given back by a
// session that may have left state on it: a transaction is rolled back;
// in session mode reset_query runs.
func (h *Handler) resetServer(ctx context.Context, s *server) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s.txStatus != 'I' {
		if err := s.exec(ctx, "ROLLBACK"); err != nil {
			return err
		}
	}
	reset := ""
	switch {
	case h.mode == modeSession:
		reset = h.cfg.Pool.ResetQuery
	case s.needsReset:
		reset = "DISCARD ALL"
	}
	if reset != "" {
		if err := s.exec(ctx, reset); err != nil {
			return err
		}
		s.clearPrepared()
		s.settings = emptySettings
		s.needsReset = false
	}
	if s.txStatus != 'I' {
		return errors.New("pg: server still in a transaction after reset")
	}
	return nil
}

// ServeConn runs one client session.
func (h *Handler) ServeConn(ctx context.Context, c *sidecar.Conn) {
	s := h.newSession(ctx, c)
	if err := s.login(); err != nil {
		s.finish(err)
		return
	}
	// Authentication grows this goroutine's stack; the session lives on
	// a fresh one, so an idle client costs a small stack.
	c.Go(s.run)
}

// countClient counts a client of user in database db against
// pool.max_user_client_connections and max_db_client_connections.
func (h *Handler) countClient(user, db string) error {
	p := &h.cfg.Pool
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.MaxUserClients > 0 && h.userClients[user] >= p.MaxUserClients {
		return fatalf(codeTooManyConnections, "too many connections for role %q: pool.max_user_client_connections (%d) reached on listener %s", user, p.MaxUserClients, h.env.Name)
	}
	if p.MaxDBClients > 0 && h.dbClients[db] >= p.MaxDBClients {
		return fatalf(codeTooManyConnections, "too many connections for database %q: pool.max_db_client_connections (%d) reached on listener %s", db, p.MaxDBClients, h.env.Name)
	}
	h.userClients[user]++
	h.dbClients[db]++
	return nil
}

func (h *Handler) uncountClient(user, db string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for m, k := range map[*map[string]int]string{&h.userClients: user, &h.dbClients: db} {
		if (*m)[k]--; (*m)[k] <= 0 {
			delete(*m, k)
		}
	}
}

// Drain has nothing to do at once: sessions end when their clients leave,
// or the listener closes them at the drain timeout.
func (h *Handler) Drain() {}

// Close closes every pool.
func (h *Handler) Close() error {
	h.mu.Lock()
	h.closing = true
	pools := h.pools
	h.pools = map[poolKey]*serverPool{}
	h.mu.Unlock()
	for _, sp := range pools {
		sp.p.Close()
		h.m.forgetPool(sp)
	}
	if h.auth != nil {
		h.auth.close()
	}
	return nil
}

// Stats reports every pool for the admin /pools endpoint.
func (h *Handler) Stats() any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]pool.Stats, 0, len(h.pools))
	for _, sp := range h.pools {
		out = append(out, sp.p.Stats())
	}
	return out
}

// maxKnown bounds the statement names remembered as prepared fine.
const maxKnown = 100000

func (h *Handler) noteKnown(name string) {
	if h.knownCount.Load() >= maxKnown {
		return
	}
	if _, loaded := h.known.LoadOrStore(name, struct{}{}); !loaded {
		h.knownCount.Add(1)
	}
}

// minVirtualPID is the least process id a client of a transaction or
// statement pool gets: above the largest pid Linux hands out (2^22, the
// ceiling of kernel.pid_max), so pg_terminate_backend or pg_cancel_backend
// with a pid a client got from Outrigger can never reach a real backend.
const minVirtualPID = 1 << 22

// randomKey returns the BackendKeyData a client gets: Outrigger's own, so a
// CancelRequest names the client, never a server. The pid is in
// [minVirtualPID, 2^31).
func randomKey() (uint32, uint32) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	pid := minVirtualPID + binary.BigEndian.Uint32(b[:4])%(1<<31-minVirtualPID)
	return pid, binary.BigEndian.Uint32(b[4:])
}
