package pg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pool"
	"github.com/outrigger/outrigger/sidecar"
)

// authSource learns users that are not in auth.users from the database:
// it runs auth_query as auth_user over a small pool per database and
// caches each answer (a verifier, or that there is no such user) for
// auth_cache_ttl. Positive and negative answers are cached alike, so a
// login takes the same path, and the same time, whether its user exists.
type authSource struct {
	h     *Handler
	cfg   config.PGAuth
	cache *expirable.LRU[poolKey, authAnswer]
	m     struct{ found, missing, failed, cached prometheus.Counter }

	mu       sync.Mutex
	pools    map[string]*pool.Pool[*pgconn.PgConn] // by database
	keys     map[string]*passKey                   // by user name
	inflight map[poolKey]*authCall
}

// authAnswer is what auth_query said of a user: found with its verifier,
// or not.
type authAnswer struct {
	found bool
	v     verifier
}

// maxAuthCache bounds the cached answers (and the databases auth_query
// runs in, as the pools are made only for databases clients asked for).
const maxAuthCache = 10000

func newAuthSource(h *Handler) *authSource {
	a := &authSource{
		h: h, cfg: h.cfg.Auth,
		cache: expirable.NewLRU[poolKey, authAnswer](maxAuthCache, nil, h.cfg.Auth.AuthCacheTTL),
		pools: map[string]*pool.Pool[*pgconn.PgConn]{},
		keys:  map[string]*passKey{},

		inflight: map[poolKey]*authCall{},
	}
	c := h.m.m.PGAuthQueries
	l := h.env.Name
	a.m.found = c.WithLabelValues(l, "found")
	a.m.missing = c.WithLabelValues(l, "missing")
	a.m.failed = c.WithLabelValues(l, "error")
	a.m.cached = c.WithLabelValues(l, "cached")
	return a
}

// errAuthQuery is what a client is told when auth_query cannot answer; the
// cause goes to the log, not to the client.
func (a *authSource) errAuthQuery(name string) *Error {
	return fatalf(codeInvalidAuthorization, "cannot check the login of user %q: auth_query of listener %s failed (see Outrigger's log)", name, a.h.env.Name)
}

// user returns the user name logs in as, from the cache or auth_query: a
// user whose login is checked against the verifier, or nil when the
// database has no such user (or no password for it).
func (a *authSource) user(ctx context.Context, database, name string) (*user, error) {
	db := a.cfg.AuthDatabase
	if db == "" {
		db = database
	}
	key := poolKey{database: db, user: name}
	ans, ok := a.cache.Get(key)
	if ok {
		a.m.cached.Inc()
	} else {
		var err error
		if ans, err = a.lookup(ctx, key); err != nil {
			return nil, a.errAuthQuery(name)
		}
	}
	if !ans.found {
		return nil, nil
	}
	u := &user{name: name, upstream: upstreamCreds{user: name}}
	switch {
	case ans.v.plain != "":
		u.password = ans.v.plain
		u.upstream.password = ans.v.plain
		if ans.v.scram != nil {
			u.scram = *ans.v.scram
		}
	case ans.v.scram != nil:
		u.scram = *ans.v.scram
		u.upstream.pass = a.passKey(name)
	case ans.v.md5 != "":
		u.md5 = ans.v.md5
		u.upstream.pass = a.passKey(name)
	}
	return u, nil
}

// lookup runs auth_query for key and caches its answer. Logins that miss
// the cache for the same user at once share one query.
func (a *authSource) lookup(ctx context.Context, key poolKey) (authAnswer, error) {
	a.mu.Lock()
	if c := a.inflight[key]; c != nil {
		a.mu.Unlock()
		select {
		case <-c.done:
			return c.ans, c.err
		case <-ctx.Done():
			return authAnswer{}, ctx.Err()
		}
	}
	c := &authCall{done: make(chan struct{})}
	a.inflight[key] = c
	a.mu.Unlock()

	// Not canceled with the first login: others may wait on it. query
	// bounds its own time.
	c.ans, c.err = a.query(context.WithoutCancel(ctx), key.database, key.user)
	switch {
	case c.err != nil:
		a.m.failed.Inc()
		a.h.env.Logger.Warn("postgres auth_query failed", slog.String("database", key.database), slog.String("user", key.user), slog.Any("error", c.err))
	case c.ans.found:
		a.m.found.Inc()
	default:
		a.m.missing.Inc()
	}
	if c.err == nil {
		a.cache.Add(key, c.ans)
	}
	a.mu.Lock()
	delete(a.inflight, key)
	a.mu.Unlock()
	close(c.done)
	return c.ans, c.err
}

// authCall is an auth_query in flight, for the logins waiting on it.
type authCall struct {
	done chan struct{}
	ans  authAnswer
	err  error
}

// forget drops what the cache holds of a user, after the server refused a
// login with it.
func (a *authSource) forget(database, name string) {
	db := a.cfg.AuthDatabase
	if db == "" {
		db = database
	}
	a.cache.Remove(poolKey{database: db, user: name})
}

func (a *authSource) passKey(name string) *passKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := a.keys[name]
	if k == nil {
		if len(a.keys) >= maxAuthCache {
			// Users with no session open hold no key: forget them.
			for n, old := range a.keys {
				if old.idle() {
					delete(a.keys, n)
				}
			}
		}
		k = &passKey{}
		a.keys[name] = k
	}
	return k
}

// query runs auth_query for name in database db.
func (a *authSource) query(ctx context.Context, db, name string) (authAnswer, error) {
	p, err := a.pool(db)
	if err != nil {
		return authAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.h.cfg.Upstream.ConnectTimeout+a.h.cfg.Pool.AcquireTimeout)
	defer cancel()
	lease, err := p.Acquire(ctx)
	if err != nil {
		return authAnswer{}, err
	}
	// The name goes as a parameter, never into the SQL text.
	res := lease.Conn().ExecParams(ctx, a.cfg.AuthQuery, [][]byte{[]byte(name)}, nil, nil, nil).Read()
	if res.Err != nil {
		var pgErr *pgconn.PgError
		if errors.As(res.Err, &pgErr) {
			lease.Release() // a query error leaves the connection usable
		} else {
			lease.Discard()
		}
		return authAnswer{}, res.Err
	}
	lease.Release()
	if len(res.Rows) == 0 {
		return authAnswer{}, nil
	}
	row := res.Rows[0]
	if len(row) < 2 {
		return authAnswer{}, fmt.Errorf("auth_query returned %d columns, want 2 (user name, password)", len(row))
	}
	if row[1] == nil {
		return authAnswer{}, nil // a user without a password cannot log in with one
	}
	v, err := parseVerifier(string(row[1]))
	if err != nil {
		return authAnswer{}, fmt.Errorf("auth_query's password for user %q: %w", name, err)
	}
	if v.plain != "" && a.cfg.Method == "scram-sha-256" {
		// A plaintext password (a function may return one): SCRAM
		// clients are checked against a verifier made from it.
		c, err := scramCreds(name, v.plain)
		if err != nil {
			return authAnswer{}, err
		}
		v.scram = &c
	}
	return authAnswer{found: true, v: v}, nil
}

// pool returns the auth_query pool for database db, making it on first use.
func (a *authSource) pool(db string) (*pool.Pool[*pgconn.PgConn], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.pools[db]; p != nil {
		return p, nil
	}
	if len(a.pools) >= maxPools {
		return nil, fmt.Errorf("auth_query runs in too many databases (%d)", maxPools)
	}
	h := a.h
	p, err := pool.New(pool.Config{
		Name:             "auth_query/" + db,
		Size:             a.cfg.AuthPoolSize,
		IdleTimeout:      h.cfg.Pool.ServerIdleTimeout,
		MaxLifetime:      h.cfg.Pool.ServerLifetime,
		HealthCheckAfter: time.Second,
	}, pool.Hooks[*pgconn.PgConn]{
		Dial: func(ctx context.Context) (*pgconn.PgConn, error) {
			var pc *pgconn.PgConn
			err := h.eachAddr(ctx, func(addr *sidecar.UpstreamAddr) (err error) {
				pc, err = pgconn.ConnectConfig(ctx, h.pgConfig(addr, a.cfg.AuthUser, a.cfg.AuthPassword.Reveal(), db))
				return err
			})
			return pc, err
		},
		Close: func(pc *pgconn.PgConn) error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return pc.Close(ctx)
		},
		Check: func(ctx context.Context, pc *pgconn.PgConn) error { return pc.CheckConn() },
	})
	if err != nil {
		return nil, err
	}
	a.pools[db] = p
	return p, nil
}

// close ends the auth_query pools.
func (a *authSource) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for db, p := range a.pools {
		p.Close()
		delete(a.pools, db)
	}
}
