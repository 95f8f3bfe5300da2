package pg

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/sidecar"
)

// adminDatabase is the virtual database of the admin console.
const adminDatabase = "outrigger"

// The admin console answers PgBouncer's commands with PgBouncer's column
// names where the concept is the same, so habits and exporters carry over.
// It speaks the simple query protocol only, like PgBouncer's.

func (h *Handler) isAdmin(user string) bool {
	return slices.Contains(h.cfg.AdminUsers, user)
}

// serveAdmin runs an admin console session after login.
func (s *session) serveAdmin() error {
	for {
		m, err := s.fr.next()
		if err != nil {
			return err
		}
		switch m.Type {
		case 'Q':
			s.adminQuery(strings.TrimSpace(string(trimNul(m.Body))))
		case 'X':
			return errTerminate
		case 'S', 'H':
			s.mu.Lock()
			s.writeClient([]byte{'Z', 0, 0, 0, 5, 'I'})
			s.mu.Unlock()
		default:
			s.mu.Lock()
			s.writeClient(appendError(nil, errorf(codeFeatureNotSupported, "the admin console takes simple queries only")))
			s.mu.Unlock()
		}
		s.mu.Lock()
		err = s.flushClient()
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// adminQuery answers one command and ReadyForQuery.
func (s *session) adminQuery(q string) {
	q = strings.TrimRight(q, "; \t\n")
	words := strings.Fields(strings.ToLower(q))
	var buf []byte
	var err *Error
	switch {
	case len(words) == 2 && words[0] == "show":
		buf, err = s.h.adminShow(buf, words[1])
	case len(words) == 1 && words[0] == "pause":
		s.h.pause()
		buf = appendTag(buf, "PAUSE")
	case len(words) == 1 && words[0] == "resume":
		s.h.resume()
		buf = appendTag(buf, "RESUME")
	case len(words) == 2 && words[0] == "kill_client":
		buf, err = s.h.killClient(buf, words[1])
	case (len(words) == 1 || len(words) == 2) && words[0] == "reconnect":
		buf, err = s.h.reconnect(buf, strings.Fields(q)[1:])
	case len(words) == 1 && words[0] == "reload":
		if s.h.env.RequestReload == nil {
			err = errorf(codeFeatureNotSupported, "RELOAD is not available here")
		} else {
			s.h.env.RequestReload()
			buf = appendTag(buf, "RELOAD")
		}
	case len(words) == 0:
		buf, _ = (&pgproto3.EmptyQueryResponse{}).Encode(buf)
	default:
		err = errorf("42601", "unknown admin command %q (SHOW POOLS|CLIENTS|SERVERS|STATS|DATABASES|CONFIG|VERSION, PAUSE, RESUME, RELOAD, KILL_CLIENT id, RECONNECT [db])", q)
	}
	if err != nil {
		buf = appendError(buf[:0], err)
	}
	buf = append(buf, 'Z', 0, 0, 0, 5, 'I')
	s.mu.Lock()
	s.writeClient(buf)
	s.mu.Unlock()
}

func appendTag(buf []byte, tag string) []byte {
	return appendMsg(buf, 'C', []byte(tag), []byte{0})
}

// appendRows appends a result set of text columns.
func appendRows(buf []byte, cols []string, rows [][]string) []byte {
	rd := pgproto3.RowDescription{}
	for _, c := range cols {
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1})
	}
	buf, _ = rd.Encode(buf)
	for _, r := range rows {
		dr := pgproto3.DataRow{}
		for _, v := range r {
			dr.Values = append(dr.Values, []byte(v))
		}
		buf, _ = dr.Encode(buf)
	}
	return appendTag(buf, "SHOW")
}

func (h *Handler) adminShow(buf []byte, what string) ([]byte, *Error) {
	switch what {
	case "pools":
		cols := []string{"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode"}
		var rows [][]string
		clients := h.clientsByPool()
		for _, sp := range h.poolList() {
			st := sp.p.Stats()
			c := clients[sp.key]
			rows = append(rows, []string{sp.key.database, sp.key.user, itoa(c.active), itoa(st.Waiting), itoa(st.InUse), itoa(st.Idle), "0", "0", itoa(st.Dialing), "0", "0", h.cfg.Pool.Mode})
		}
		return appendRows(buf, cols, rows), nil
	case "clients":
		cols := []string{"type", "user", "database", "state", "addr", "port", "connect_time", "request_time", "tls", "application_name", "pinned", "id"}
		var rows [][]string
		for _, s := range h.sessionList() {
			rows = append(rows, s.adminRow())
		}
		return appendRows(buf, cols, rows), nil
	case "servers":
		cols := []string{"type", "user", "database", "state", "addr", "port", "connect_time", "remote_pid", "tls"}
		var rows [][]string
		for _, sp := range h.poolList() {
			for _, srv := range sp.serverList() {
				state := "idle"
				if srv.active.Load() {
					state = "active"
				}
				host, port := splitAddr(srv.addr.Address)
				tls := ""
				if h.cfg.Upstream.TLS.Mode != "disable" {
					tls = "TLS"
				}
				rows = append(rows, []string{"S", sp.creds.user, sp.key.database, state, host, port, srv.created.Format(time.DateTime), itoa(int(srv.pid)), tls})
			}
		}
		return appendRows(buf, cols, rows), nil
	case "stats":
		cols := []string{"database", "user", "total_xact_count", "total_query_count", "total_xact_time", "total_query_time", "total_wait_time", "avg_xact_time", "avg_query_time",
			"total_server_assignment_count", "total_client_parse_count", "total_server_parse_count", "total_bind_count"}
		var rows [][]string
		for _, sp := range h.poolList() {
			x, q := sp.m.xacts.Load(), sp.m.queries.Load()
			xt, qt := sp.m.xactMicros.Load(), sp.m.queryMicros.Load()
			st := sp.p.Stats()
			rows = append(rows, []string{sp.key.database, sp.key.user, u64(x), u64(q), u64(xt), u64(qt),
				strconv.FormatInt(st.WaitTime.Microseconds(), 10), u64(avg(xt, x)), u64(avg(qt, q)),
				u64(st.Acquired), u64(sp.m.clientParses.Load()), u64(sp.m.serverParses.Load()), u64(sp.m.binds.Load())})
		}
		return appendRows(buf, cols, rows), nil
	case "databases":
		cols := []string{"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "pool_mode", "max_connections", "current_connections", "paused", "disabled"}
		var rows [][]string
		for _, sp := range h.poolList() {
			host, port := splitAddr(h.cfg.Upstream.AllAddresses()[0])
			paused := "0"
			if h.paused.Load() {
				paused = "1"
			}
			rows = append(rows, []string{sp.key.database, host, port, sp.key.database, sp.creds.user, itoa(h.cfg.Pool.Size), itoa(h.cfg.Pool.MinIdle), h.cfg.Pool.Mode, itoa(h.cfg.Pool.Size), itoa(sp.p.Stats().Open), paused, "0"})
		}
		return appendRows(buf, cols, rows), nil
	case "config":
		p := h.cfg.Pool
		kv := [][]string{
			{"listen", h.cfg.Listen}, {"pool_mode", p.Mode}, {"default_pool_size", itoa(p.Size)}, {"min_pool_size", itoa(p.MinIdle)},
			{"max_client_conn", itoa(p.MaxClients)}, {"query_wait_timeout", p.AcquireTimeout.String()},
			{"server_idle_timeout", p.ServerIdleTimeout.String()}, {"server_lifetime", p.ServerLifetime.String()},
			{"idle_transaction_timeout", p.IdleInTransactionTimeout.String()}, {"query_timeout", p.QueryTimeout.String()},
			{"client_idle_timeout", p.ClientIdleTimeout.String()}, {"server_reset_query", p.ResetQuery},
			{"max_prepared_statements", itoa(p.MaxPreparedStatements)}, {"on_session_state", p.OnSessionState},
			{"auth_type", h.cfg.Auth.Method}, {"max_packet_size", itoa(h.cfg.MaxMessageSize)},
			{"auth_user", h.cfg.Auth.AuthUser}, {"auth_query", h.cfg.Auth.AuthQuery}, {"auth_dbname", h.cfg.Auth.AuthDatabase},
			{"transaction_timeout", p.TransactionTimeout.String()}, {"query_wait_notify", p.QueryWaitNotify.String()},
			{"max_user_client_connections", itoa(p.MaxUserClients)}, {"max_db_client_connections", itoa(p.MaxDBClients)},
		}
		rows := make([][]string, 0, len(kv))
		for _, r := range kv {
			rows = append(rows, []string{r[0], r[1], "no"})
		}
		return appendRows(buf, []string{"key", "value", "changeable"}, rows), nil
	case "version":
		v := h.env.Version
		if v == "" {
			v = "dev"
		}
		return appendRows(buf, []string{"version"}, [][]string{{"Outrigger " + v}}), nil
	}
	return buf, errorf("42601", "unknown SHOW subject %q (POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, VERSION)", what)
}

func itoa(n int) string   { return strconv.Itoa(n) }
func u64(n uint64) string { return strconv.FormatUint(n, 10) }
func avg(t, n uint64) uint64 {
	if n == 0 {
		return 0
	}
	return t / n
}

func splitAddr(a string) (string, string) {
	if strings.HasPrefix(a, "unix:") {
		return a, ""
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return a, ""
	}
	return host, port
}

func (h *Handler) poolList() []*serverPool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*serverPool, 0, len(h.pools))
	for _, sp := range h.pools {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b *serverPool) int { return strings.Compare(poolLabel(a.key), poolLabel(b.key)) })
	return out
}

func (h *Handler) sessionList() []*session {
	h.cancels.mu.Lock()
	defer h.cancels.mu.Unlock()
	out := make([]*session, 0, len(h.cancels.sessions))
	for _, s := range h.cancels.sessions {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *session) int { return a.connected.Compare(b.connected) })
	return out
}

type poolClients struct{ active int }

func (h *Handler) clientsByPool() map[poolKey]poolClients {
	out := map[poolKey]poolClients{}
	for _, s := range h.sessionList() {
		if s.pool == nil {
			continue
		}
		c := out[s.pool.key]
		c.active++
		out[s.pool.key] = c
	}
	return out
}

// info is the session as GET /clients and SHOW CLIENTS show it.
func (s *session) info() sidecar.ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := sidecar.ClientIdle
	switch {
	case s.waiting:
		state = sidecar.ClientWaiting
	case s.srv != nil:
		state = sidecar.ClientActive
	}
	return sidecar.ClientInfo{
		Remote: s.sc.RemoteAddr().String(), Principal: s.principal.Identity,
		User: s.user, Database: s.db, State: state,
		ConnectedAt: s.connected, LastRequestAt: s.lastRequest, Pinned: s.pinned, TLS: s.tls,
	}
}

// Clients lists the listener's client sessions for GET /clients
// (sidecar.ClientLister).
func (h *Handler) Clients() []sidecar.ClientInfo {
	list := h.sessionList()
	out := make([]sidecar.ClientInfo, 0, len(list))
	for _, s := range list {
		out = append(out, s.info())
	}
	return out
}

// adminRow is the session's SHOW CLIENTS row.
func (s *session) adminRow() []string {
	ci := s.info()
	host, port := splitAddr(ci.Remote)
	tls := ""
	if ci.TLS {
		tls = "TLS"
	}
	req := ""
	if !ci.LastRequestAt.IsZero() {
		req = ci.LastRequestAt.Format(time.DateTime)
	}
	s.mu.Lock()
	app := s.appName
	s.mu.Unlock()
	return []string{"C", ci.User, ci.Database, ci.State, host, port, ci.ConnectedAt.Format(time.DateTime), req, tls, app, ci.Pinned, strconv.FormatUint(s.id, 10)}
}

// pause stops new server attachments until resume and waits (up to a
// minute) for the servers in use to come back.
func (h *Handler) pause() {
	h.pauseMu.Lock()
	if !h.paused.Load() {
		h.resumed = make(chan struct{})
		h.paused.Store(true)
	}
	h.pauseMu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		busy := 0
		for _, sp := range h.poolList() {
			busy += sp.p.Stats().InUse
		}
		if busy == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *Handler) resume() {
	h.pauseMu.Lock()
	defer h.pauseMu.Unlock()
	if h.paused.Load() {
		h.paused.Store(false)
		close(h.resumed)
	}
}

// waitResume blocks a session that needs a server while the listener is
// paused.
func (h *Handler) waitResume(ctx context.Context) error {
	if !h.paused.Load() {
		return nil
	}
	h.pauseMu.Lock()
	ch := h.resumed
	paused := h.paused.Load()
	h.pauseMu.Unlock()
	if !paused {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pg: paused: %w", ctx.Err())
	}
}

var _ sidecar.ClientLister = (*Handler)(nil)

// killClient ends the client whose SHOW CLIENTS id is arg.
func (h *Handler) killClient(buf []byte, arg string) ([]byte, *Error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		return buf, errorf("22023", "KILL_CLIENT takes a client id from SHOW CLIENTS, not %q", arg)
	}
	for _, s := range h.sessionList() {
		if s.id == id {
			h.m.kills.Inc()
			s.mu.Lock()
			s.terminateLocked(fatalf(codeAdminShutdown, "terminating connection due to administrator command (KILL_CLIENT)"))
			s.mu.Unlock()
			return appendTag(buf, "KILL_CLIENT"), nil
		}
	}
	return buf, errorf("42704", "no client with id %d on this listener", id)
}

// reconnect retires the server connections of every pool (or of one
// database's): idle ones close now, the rest as they come back, and new
// ones are dialed as clients need them.
func (h *Handler) reconnect(buf []byte, db []string) ([]byte, *Error) {
	n := 0
	for _, sp := range h.poolList() {
		if len(db) == 0 || sp.key.database == db[0] {
			sp.p.Retire()
			n++
		}
	}
	if len(db) > 0 && n == 0 {
		return buf, errorf(codeInvalidCatalog, "no pool for database %q on this listener", db[0])
	}
	return appendTag(buf, "RECONNECT"), nil
}
