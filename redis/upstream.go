package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/outrigger/outrigger/internal/rawio"
	"github.com/outrigger/outrigger/pool"
)

// poolKey is the connection state that upstream connections are set up
// with; clients with the same state share connections. Pools are per
// database: a client's SELECT moves it to the pool of that database rather
// than sending SELECT on a shared connection.
type poolKey struct {
	db       int
	user     string
	password string
	proto    int // 2 or 3
	// CLIENT NO-EVICT on and CLIENT NO-TOUCH on: connection modes that
	// follow the client the way its database does.
	noEvict, noTouch bool
}

// lanes are the shared (multiplexed) upstream connections of one poolKey:
// size of them, dialed on first use and re-dialed after failure, no more
// often than the backoff allows. Each client session sticks to one of them,
// so its commands reach the server in the order it sent them.
type lanes struct {
	key   poolKey
	h     *Handler
	mu    sync.Mutex
	slots []laneSlot
	next  int
}

type laneSlot struct {
	l       *lane
	failed  error
	retryAt time.Time
}

// laneBackoff is how long a shared connection that failed to dial answers
// commands with the dial error instead of dialing again.
const laneBackoff = 250 * time.Millisecond

// assign picks the shared connection index for a new session.
func (ls *lanes) assign() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	i := ls.next % len(ls.slots)
	ls.next++
	return i
}

// get returns the live lane at index i, dialing it if needed.
func (ls *lanes) get(ctx context.Context, i int) (*lane, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := &ls.slots[i]
	if s.l != nil && s.l.alive() {
		return s.l, nil
	}
	if s.failed != nil && time.Now().Before(s.retryAt) {
		return nil, s.failed
	}
	l, err := ls.h.dialLane(ctx, ls.key, ls.h.cfg.Pool.CommandTimeout, "shared")
	if err != nil {
		s.l, s.failed, s.retryAt = nil, err, time.Now().Add(laneBackoff)
		return nil, err
	}
	s.l, s.failed = l, nil
	return l, nil
}

func (ls *lanes) close() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, s := range ls.slots {
		if s.l != nil {
			s.l.close(nil)
		}
	}
}

// depth is the commands in flight on the shared connections.
func (ls *lanes) depth() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for _, s := range ls.slots {
		if s.l != nil {
			n += s.l.depth()
		}
	}
	return n
}

func (ls *lanes) open() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for _, s := range ls.slots {
		if s.l != nil && s.l.alive() {
			n++
		}
	}
	return n
}

// dialLane connects to the upstream and brings the connection to key's
// state: HELLO with the protocol version (and AUTH when there is a
// password), then SELECT for a database other than 0, and CLIENT NO-EVICT
// and NO-TOUCH when the key has them. Upstreams must be Redis 6 or newer
// (HELLO). timeout is the lane's reply timeout (0: none). The upstream's
// answers are checked: a refused AUTH or SELECT fails the dial with the
// server's own error.
//
// A user whom Redis denies SELECT may still be in a database other than 0:
// a client that selected it as another user and then switched users with
// AUTH or HELLO, as Redis allows. For such a key the connection is set up
// as the client's connection was: as the user it came from (see noteVia),
// SELECT, then AUTH as the new user.
func (h *Handler) dialLane(ctx context.Context, key poolKey, timeout time.Duration, kind string) (*lane, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Upstream.ConnectTimeout+h.cfg.Pool.CommandTimeout)
	defer cancel()
	conn, hello, err := h.dialSetup(ctx, key, nil)
	var se *selectRefused
	if errors.As(err, &se) {
		h.noteSelectRefused(key, se.upstreamError)
		if via, ok := h.viaFor(key); ok {
			conn, hello, err = h.dialSetup(ctx, key, &via)
		}
	}
	if err != nil {
		return nil, err
	}
	g := h.env.Metrics.RedisUpstreamConns.WithLabelValues(h.env.Name, kind)
	g.Inc()
	return newLane(conn, timeout, hello, h.upstreamAlive, g.Dec), nil
}

// selectRefused is the server's refusal of the setup's SELECT.
type selectRefused struct{ *upstreamError }

// dialSetup dials and sends the setup commands of key (see dialLane), as
// the user of via first when via is set; it returns the connection and the
// server's reply to HELLO.
func (h *Handler) dialSetup(ctx context.Context, key poolKey, via *poolKey) (net.Conn, []byte, error) {
	conn, _, err := h.up.Dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	conn = rawio.Wrap(conn)
	// HELLO sets the protocol, authenticates, and answers with the server's
	// facts, which the lane keeps for clients that send HELLO themselves.
	as := key
	if via != nil {
		as = *via
	}
	args := []string{"HELLO", strconv.Itoa(key.proto)}
	if as.password != "" {
		args = append(args, "AUTH", userOrDefault(as.user), as.password)
	}
	setup := appendCommand(nil, args...)
	steps, selectStep := 1, -1
	if key.db != 0 {
		setup = appendCommand(setup, "SELECT", strconv.Itoa(key.db))
		selectStep = steps
		steps++
	}
	if via != nil {
		setup = append(setup, appendAuth(key)...)
		steps++
	}
	if key.noEvict {
		setup = appendCommand(setup, "CLIENT", "NO-EVICT", "on")
		steps++
	}
	if key.noTouch {
		setup = appendCommand(setup, "CLIENT", "NO-TOUCH", "on")
		steps++
	}
	fail := func(err error) (net.Conn, []byte, error) {
		conn.Close()
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(setup); err != nil {
		return fail(err)
	}
	var hello []byte
	rr := NewReplyReader(conn)
	for i := range steps {
		rep, err := rr.Next()
		if err != nil {
			return fail(fmt.Errorf("redis: upstream setup: %w", err))
		}
		if rep.IsError() {
			ue := &upstreamError{line: string(trimCRLF(rep.Raw[1:]))}
			if i == selectStep && strings.HasPrefix(ue.line, "NOPERM") {
				return fail(&selectRefused{ue})
			}
			return fail(ue)
		}
		if i == 0 {
			hello = append([]byte(nil), rep.Raw...)
		}
	}
	if rr.Buffered() > 0 {
		return fail(errors.New("redis: upstream sent more than the setup replies"))
	}
	conn.SetDeadline(time.Time{})
	return conn, hello, nil
}

// credentials are a poolKey's user and password.
type credentials struct{ user, password string }

// noteVia records that a client moved from key from to key to by
// switching users (AUTH, HELLO AUTH) in a database other than 0, so that a
// connection of to can be set up through from's user (see dialLane).
func (h *Handler) noteVia(to, from poolKey) {
	if to.db == 0 || (to.user == from.user && to.password == from.password) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.via[to]; !ok && len(h.via) < maxPoolKeys {
		h.via[to] = from
	}
}

func (h *Handler) viaFor(key poolKey) (poolKey, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	via, ok := h.via[key]
	return via, ok
}

// noteSelectRefused records Redis's refusal of SELECT to key's user.
func (h *Handler) noteSelectRefused(key poolKey, ue *upstreamError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := credentials{key.user, key.password}
	if _, ok := h.noSelect[c]; ok || len(h.noSelect) < maxPoolKeys {
		h.noSelect[c] = ue
	}
}

// selectRefusal is Redis's refusal of SELECT to key's user, once seen
// (nil before): the client's own SELECT then gets it, even for a database
// whose connections exist (set up through another user) or need no
// SELECT (0).
func (h *Handler) selectRefusal(key poolKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ue := h.noSelect[credentials{key.user, key.password}]; ue != nil {
		return ue
	}
	return nil
}

// probeCommand is a command no Redis has. Redis answers it with "unknown
// command" as soon as it reads it, before any check that could hold or
// refuse it: authentication, a running script (-BUSY), loading, CLIENT
// PAUSE ALL (which postpones even a known command with the wrong arity).
// So any live server answers it in any state, and it does nothing (Redis
// counts it in rejected_calls and errorstat_ERR).
var probeCommand = appendCommand(nil, "OUTRIGGER.PROBE")

// upstreamAlive reports whether the upstream answers a command on a new
// connection within pool.command_timeout: any reply (an error included)
// means it is alive. Lanes ask when a reply is late. An answer less than
// half a timeout old is reused, so the lanes of a busy server share a
// probe rather than each dialling one.
func (h *Handler) upstreamAlive() bool {
	h.liveMu.Lock()
	defer h.liveMu.Unlock()
	if !h.liveAt.IsZero() && time.Since(h.liveAt) < h.cfg.Pool.CommandTimeout/2 {
		return h.liveOK
	}
	ok := h.probeUpstream()
	h.liveAt, h.liveOK = time.Now(), ok
	if h.env.Metrics != nil {
		result := "dead"
		if ok {
			result = "alive"
		}
		h.env.Metrics.RedisUpstreamProbes.WithLabelValues(h.env.Name, result).Inc()
	}
	return ok
}

func (h *Handler) probeUpstream() bool {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Pool.CommandTimeout)
	defer cancel()
	conn, _, err := h.up.Dial(ctx)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(probeCommand); err != nil {
		return false
	}
	_, err = NewReplyReader(conn).Next()
	return err == nil
}

// upstreamError is an error reply from the upstream during connection setup
// (WRONGPASS, NOPERM, ERR DB index is out of range): the client gets it as
// the server said it.
type upstreamError struct{ line string }

func (e *upstreamError) Error() string { return e.line }

func userOrDefault(u string) string {
	if u == "" {
		return "default"
	}
	return u
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// appendCommand encodes a command as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = redcon.AppendArray(b, len(args))
	for _, a := range args {
		b = redcon.AppendBulkString(b, a)
	}
	return b
}

// newPinnedPool makes the bounded pool of dedicated connections for key.
func (h *Handler) newPinnedPool(key poolKey) (*pool.Pool[*lane], error) {
	return pool.New(pool.Config{
		Name:           h.env.Name + "/pinned/db" + strconv.Itoa(key.db),
		Size:           h.cfg.Pool.PinnedSize,
		AcquireTimeout: h.cfg.Upstream.ConnectTimeout + h.cfg.Pool.CommandTimeout,
		IdleTimeout:    5 * time.Minute,
	}, pool.Hooks[*lane]{
		// The reply clock does not run for blocking commands (see lane.rearm).
		Dial: func(ctx context.Context) (*lane, error) {
			return h.dialLane(ctx, key, h.cfg.Pool.CommandTimeout, "pinned")
		},
		Close: func(l *lane) error { l.close(nil); return nil },
		Check: func(_ context.Context, l *lane) error {
			if !l.alive() {
				return errLaneClosed
			}
			return nil
		},
	})
}
