package pg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/pg/classify"
	"github.com/outrigger/outrigger/policy"
	"github.com/outrigger/outrigger/pool"
	"github.com/outrigger/outrigger/sidecar"
)

// session is one client connection. Two goroutines serve it: the client
// goroutine (run) reads the client, decides and writes to the server; the
// relay goroutine, one per server attachment, reads the server and writes
// to the client. mu guards the shared state and the client writer.
type session struct {
	h    *Handler
	ctx  context.Context
	sc   *sidecar.Conn
	conn net.Conn
	fr   *frameReader

	// Owned by the client goroutine.
	out []byte // messages for the attached server, not yet written
	// outTerm is len(out) just after a message the server answers in full
	// without waiting for more (Query, Sync, Flush, FunctionCall): out ends
	// a round trip when they are equal.
	outTerm int
	pool    *serverPool
	stmts   map[string]*clientStmt
	anon    *clientStmt // the unnamed statement
	skip    bool        // a local error: drop extended messages until Sync
	user    string
	db      string
	counted bool // counted in Handler.clients
	pid     uint32
	secret  uint32
	// principal is who the client is for the policy; pol what the policy
	// keeps of the session (nil while the live engine enforces nothing).
	principal policy.Principal
	pol       *sessionPolicy
	// For the record of the round trip in progress (observe.go): an error
	// Outrigger answered in it and its started record, the text of the
	// statement its last Execute ran (kept only while observing), and the
	// rows it returned.
	roundErr *Error
	roundObs *observed
	execSQL  []byte
	rows     int64
	timedOut bool // query_timeout canceled the round trip in progress

	mu         sync.Mutex
	w          *bufio.Writer
	werr       error
	srv        *server
	lease      *pool.Lease[*server]
	relayDone  chan struct{}
	q          queue
	open       bool // extended messages sent since the last Sync
	copying    bool
	txStatus   byte
	pinned     string
	closing    bool
	settings   *settings // what the client has set
	startup    *settings // what its StartupMessage set (RESET goes back to it)
	portals    map[string]*clientStmt
	txEffects  []classify.Effect
	txStart    time.Time
	rolledBack bool
	fatalSent  bool
	dropStmts  bool // DISCARD ALL or DEALLOCATE ALL committed
	// stmtsStale says dropStmts or undo has news, so the client goroutine
	// takes the lock only then.
	stmtsStale atomic.Bool
	// undo are changes to the client's statement names whose messages the
	// server skipped or failed (the relay finds them; the client goroutine
	// owns the names).
	undo []undoStep
	// namesAt holds, for each statement name a queued message changed
	// (ahead of the server's answer), the round trip (see queue.ends) the
	// change was made in; allAt+1 the same for a DEALLOCATE ALL (0: none).
	// A message whose handling depends on such a name waits, once that
	// round trip is closed by a Sync, for its answer (see awaitNames).
	// Written under mu by the client goroutine, which alone reads it.
	namesAt map[string]uint64
	allAt   uint64
	// latest is, for each statement name, the newest change to it that
	// may still be undone (each change keeps the one before it): an undo
	// applies only to the newest, so a change that undoing an earlier
	// message would hide stays. Written under mu by the client goroutine.
	latest map[string]*stmtChange
	// settled is signalled by the relay goroutine as replies come in, for
	// awaitNames. Its L is &mu.
	settled sync.Cond
	// srvSkip: the server skips every message up to the next Sync, after
	// an error in the extended protocol that came before the client's Sync
	// did; skipCode and skipErr are that error's, for the Sync's record.
	srvSkip  bool
	skipCode string
	skipErr  *Error
	// srvOpen: extended-protocol messages went to the server since its
	// last Sync.
	srvOpen bool
	// txDDL: the transaction in progress ran DDL; its end moves the
	// statement epoch on (see schemaChanging).
	txDDL bool
	// waitCancel aborts a wait for a server (a CancelRequest for a query
	// that has not reached one); waitCanceled says it did. It is set only
	// while the session waits; waitCtx and waitCtxCancel are the context
	// of every wait, made once and again only after a cancel ended it.
	waitCancel    context.CancelFunc
	waitCanceled  bool
	waitCtx       context.Context
	waitCtxCancel context.CancelFunc
	dead          bool // the server failed under the session: it is over
	queryTimer    *time.Timer
	writing       bool // the client goroutine is writing to srv
	kick          bool // the relay's read was interrupted to detach
	// For SHOW CLIENTS.
	connected   time.Time
	lastRequest time.Time
	appName     string
	tls         bool
	waiting     bool
	// passHeld is the auth_query user's key this session lends its pool
	// (released when it ends).
	passHeld *passKey
	// id names the session in SHOW CLIENTS and KILL_CLIENT.
	id uint64
	// limited: counted in the handler's per-user and per-database counts.
	limited bool
	// txTimeout is transaction_timeout for this client; txTimer ends the
	// session when a transaction outlives it.
	txTimeout time.Duration
	txTimer   *time.Timer
}

// clientStmt is a statement a client prepared with a Parse. In transaction
// and statement mode it runs on servers under a shared name.
type clientStmt struct {
	name    string
	server  string // "" for the unnamed statement
	parse   []byte // the Parse message a server is sent
	effects []classify.Effect
	ddl     bool   // its text may change the schema (see mayChangeSchema)
	epoch   uint64 // the statement epoch its shared name is of
	// shape is a hash of the RowDescription (or NoData) the client was
	// last given for it (0: it never described it); checking says a
	// hidden Describe is finding the shape of a server-side copy, and
	// broken that a copy's shape differed: the statement can no longer run
	// as the client prepared it, and every Bind of it fails as Postgres
	// fails it (see checkShape).
	shape            uint64
	checking, broken bool
}

// clientWriteBuffer is the client writer's size: replies are batched up to
// it, and a larger write goes straight to the socket.
const clientWriteBuffer = 4 << 10

// maxClientStatements bounds the prepared statements one client may hold
// at once.
const maxClientStatements = 10000

func (h *Handler) newSession(ctx context.Context, c *sidecar.Conn) *session {
	conn := c.Counting()
	s := &session{
		h: h, ctx: ctx, sc: c, conn: conn,
		fr:       newFrameReader(conn, clientReadBuffer, h.cfg.MaxMessageSize),
		stmts:    map[string]*clientStmt{},
		txStatus: 'I',
		settings: emptySettings, startup: emptySettings,
		connected: c.Accepted,
		id:        h.lastID.Add(1),
	}
	s.settled.L = &s.mu
	return s
}

func (s *session) renames() bool { return s.h.mode != modeSession }

// run serves the session after login to its end.
func (s *session) run() {
	var err error
	if s.db == adminDatabase {
		err = s.serveAdmin()
	} else {
		s.h.m.clients.Inc()
		err = s.serve()
		s.h.m.clients.Dec()
	}
	s.finish(err)
}

// login runs startup and authentication and sends the client what
// Postgres would: AuthenticationOk, ParameterStatus, BackendKeyData,
// ReadyForQuery.
func (s *session) login() error {
	res, err := s.readStartup(s.ctx)
	if err != nil {
		return err
	}
	if res.cancel {
		return io.EOF
	}
	if n := s.h.clients.Add(1); n > int64(s.h.cfg.Pool.MaxClients) {
		s.h.clients.Add(-1)
		return fatalf(codeTooManyConnections, "no more connections allowed: pool.max_clients (%d) reached on listener %s", s.h.cfg.Pool.MaxClients, s.h.env.Name)
	}
	s.counted = true
	s.user = res.params["user"]
	s.db = res.params["database"]
	if s.db == "" {
		s.db = s.user
	}
	if res.minor > 0 || len(res.unknown) > 0 {
		if err := s.sendStartup(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: res.unknown}); err != nil {
			return err
		}
	}
	s.appName = res.params["application_name"]
	s.tls = res.tls
	creds, err := s.authenticate(s.user, res.principal)
	if err != nil {
		return err
	}
	s.txTimeout = s.h.cfg.Pool.TransactionTimeout
	if u := s.h.users[s.user]; u != nil && u.txTimeout > 0 {
		s.txTimeout = u.txTimeout
	}
	s.principal = principalOf(s.h.env.Name, res.principal, s.user, s.db, s.sc.RemoteAddr())
	if s.db == adminDatabase {
		if !s.h.isAdmin(s.user) {
			return fatalf(codeInvalidAuthorization, "user %q is not an admin user of this listener (postgres[].admin_users)", s.user)
		}
		s.h.cancels.register(s)
		var buf []byte
		buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
		for _, kv := range [][2]string{{"server_version", "15.0 (Outrigger admin console)"}, {"client_encoding", "UTF8"}, {"server_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}} {
			buf, _ = (&pgproto3.ParameterStatus{Name: kv[0], Value: kv[1]}).Encode(buf)
		}
		buf, _ = (&pgproto3.BackendKeyData{ProcessID: s.pid, SecretKey: be32(s.secret)}).Encode(buf)
		buf = append(buf, 'Z', 0, 0, 0, 5, 'I')
		s.mu.Lock()
		defer s.mu.Unlock()
		s.writeClient(buf)
		return s.flushClient()
	}
	if err := s.h.countClient(s.user, s.db); err != nil {
		return err
	}
	s.limited = true
	if s.startup, err = startupSettings(res.params); err != nil {
		return err
	}
	s.settings = s.startup
	ctx, cancel := context.WithTimeout(s.ctx, s.h.cfg.Pool.AcquireTimeout+s.h.cfg.Upstream.ConnectTimeout)
	defer cancel()
	if s.pool, err = s.h.serverPool(ctx, poolKey{database: s.db, user: s.user}, creds); err != nil {
		s.h.m.upErrors.WithLabelValues("auth").Inc()
		if creds.pass != nil {
			// The server refused what auth_query said: ask it again next time.
			s.h.auth.forget(s.db, s.user)
		}
		return err
	}
	status, err := s.pool.clientStatus(ctx, s.startup)
	if err != nil {
		return err
	}
	if s.h.mode == modeSession {
		// The session has its server from the start, and the client its
		// process id: pg_backend_pid(), pg_stat_activity and the server's
		// logs agree with what the driver reports. Cancels still come to
		// Outrigger, with its own secret.
		srv, err := s.lockServer()
		if err != nil {
			if e := clientError(err); !e.Fatal {
				e.Fatal = true
				return e
			}
			return err
		}
		pid := srv.pid
		s.mu.Unlock()
		s.h.cancels.registerAs(s, pid)
	} else {
		s.h.cancels.register(s)
	}
	var buf []byte
	buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
	for _, k := range slices.Sorted(maps.Keys(status)) {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: status[k]}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: s.pid, SecretKey: be32(s.secret)}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(buf)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeClient(buf)
	return s.flushClient()
}

// clientStatus is the ParameterStatus set a client with these startup
// settings sees: what a server reports once they are applied. It is
// learned on a server the first time and cached per pool.
func (sp *serverPool) clientStatus(ctx context.Context, st *settings) (map[string]string, error) {
	sp.mu.Lock()
	if st == emptySettings {
		defer sp.mu.Unlock()
		return sp.base, nil
	}
	if m := sp.statusBySettings[st.sum]; m != nil {
		sp.mu.Unlock()
		return m, nil
	}
	sp.mu.Unlock()
	lease, err := sp.p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	srv := lease.Conn()
	if sql := diffSQL(srv.settings, st); sql != "" {
		if err := srv.exec(ctx, sql); err != nil {
			lease.Discard()
			var e *Error
			if errors.As(clientError(err), &e) && e.Code != codeConnectionFailure {
				e.Fatal = true
				return nil, e
			}
			return nil, err
		}
		srv.settings = st
	}
	status := make(map[string]string, len(sp.base)+len(srv.params))
	maps.Copy(status, sp.base)
	maps.Copy(status, srv.params)
	lease.Release()
	sp.mu.Lock()
	if len(sp.statusBySettings) >= 64 {
		clear(sp.statusBySettings)
	}
	sp.statusBySettings[st.sum] = status
	sp.mu.Unlock()
	return status, nil
}

var errTerminate = errors.New("pg: client sent Terminate")

// errServerLost ends a session whose server failed under it.
var errServerLost = fatalf(codeConnectionFailure, "server connection lost")

// serve reads client messages until the client leaves.
func (s *session) serve() error {
	for {
		if !s.fr.buffered() {
			s.mu.Lock()
			s.armIdle()
			s.mu.Unlock()
		}
		m, err := s.fr.next()
		if err != nil {
			return s.idleError(err)
		}
		if err := s.handle(m); err != nil {
			return err
		}
		if !s.fr.buffered() || len(s.out) >= 64<<10 {
			s.fr.shrink()
			if err := s.flush(); err != nil {
				return err
			}
		}
	}
}

// handle processes one client message.
func (s *session) handle(m msg) error {
	if s.skip {
		// After an error in the extended protocol Postgres ignores every
		// message but Sync (and Terminate), a simple Query included.
		switch m.Type {
		case 'S', 'X':
			s.skip = false
		default:
			return nil
		}
	}
	switch m.Type {
	case 'P', 'B', 'D', 'C', 'Q':
		if s.stmtsStale.CompareAndSwap(true, false) {
			s.applyStmtChanges()
		}
	}
	switch m.Type {
	case 'Q':
		return s.onQuery(m)
	case 'P':
		return s.onParse(m)
	case 'B':
		return s.onBind(m)
	case 'D':
		return s.onDescribe(m)
	case 'E':
		return s.onExecute(m)
	case 'C':
		return s.onClose(m)
	case 'S':
		return s.onSync(m)
	case 'H':
		return s.onFlush(m)
	case 'd', 'c', 'f':
		return s.onCopy(m)
	case 'F':
		if pol := s.policy(); pol != nil {
			if e := pol.check(s.ctx, nil, true); e != nil {
				return s.refuse(e, true, nil)
			}
		}
		return s.forward(m, item{kind: itFunc, start: time.Now(), obs: s.startRoundTrip(nil)})
	case 'X':
		return errTerminate
	default:
		return &ProtocolError{Msg: "unexpected message type " + quoteType(m.Type)}
	}
}

func quoteType(t byte) string {
	if t >= 0x20 && t < 0x7f {
		return "'" + string(t) + "'"
	}
	return "0x" + string("0123456789abcdef"[t>>4]) + string("0123456789abcdef"[t&15])
}

// lockServer returns the attached server with mu held, attaching one from
// the pool first if needed (and bringing its session parameters in line
// with the client's). On error mu is not held.
func (s *session) lockServer() (*server, error) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return nil, errServerLost
	}
	if s.srv != nil {
		if s.txStart.IsZero() {
			// A new transaction on a server the session kept (session
			// mode, a pin, or a round trip that overlapped the last one's
			// end): bring its parameters in line as on a fresh attach,
			// since the last transaction may have changed what the client
			// should have (RESET goes back to a startup value the server
			// does not have as its default).
			s.startTx()
			if s.srv.txStatus == 'I' && !s.srvOpen {
				// (Not in the middle of a pipeline the server has not
				// seen the Sync of: a query there would end its implicit
				// transaction.)
				s.syncSettings(s.srv)
			}
		}
		return s.srv, nil
	}
	s.waiting = true
	s.lastRequest = time.Now()
	if s.waitCtx == nil || s.waitCtx.Err() != nil {
		s.waitCtx, s.waitCtxCancel = context.WithCancel(s.ctx)
	}
	ctx := s.waitCtx
	s.waitCancel, s.waitCanceled = s.waitCtxCancel, false
	s.mu.Unlock()
	if d := s.h.cfg.Pool.QueryWaitNotify; d > 0 {
		notify := time.AfterFunc(d, s.notifyWaiting)
		defer notify.Stop()
	}
	err := s.h.waitResume(ctx)
	var lease *pool.Lease[*server]
	if err == nil {
		lease, err = s.pool.p.Acquire(ctx)
	}
	if err != nil {
		s.mu.Lock()
		s.waiting = false
		s.waitCancel = nil
		if s.waitCanceled {
			// Nothing reached a server: the cancel stops it here.
			err = errorf(codeQueryCanceled, "canceling statement due to user request")
		}
		s.mu.Unlock()
		return nil, err
	}
	srv := lease.Conn()
	srv.active.Store(true)
	s.mu.Lock()
	s.waiting = false
	s.waitCancel = nil
	s.srv, s.lease = srv, lease
	s.startTx()
	s.syncSettings(srv)
	if !s.inlineEligible() {
		s.startRelay(srv)
	}
	return srv, nil
}

// inlineEligible reports whether a new attachment starts on the
// synchronous path: the client goroutine reads the server's replies itself
// after each round trip (readInline). A server that stays attached while
// the client is idle and may speak on its own (session mode, a pinned
// session: notifications) gets a relay goroutine instead. mu held.
func (s *session) inlineEligible() bool {
	return s.h.mode != modeSession && s.pinned == ""
}

// startRelay starts the relay goroutine for the attached server. mu held.
func (s *session) startRelay(srv *server) {
	done := make(chan struct{})
	s.relayDone = done
	go s.relay(srv, s.lease, done)
}

// syncSettings queues the hidden query that gives srv the client's
// session parameters, if they differ. mu held.
func (s *session) syncSettings(srv *server) {
	if sql := diffSQL(srv.settings, s.settings); sql != "" {
		s.expect(item{kind: itHidden})
		s.out = appendMsg(s.out, 'Q', []byte(sql), []byte{0})
		srv.settings = s.settings
	}
}

// forward sends m as it is, expecting it.
func (s *session) forward(m msg, it item) error {
	if _, err := s.lockServer(); err != nil {
		return err
	}
	s.expect(it)
	s.mu.Unlock()
	s.out = append(s.out, m.Raw...)
	if m.Type == 'S' || m.Type == 'F' {
		s.outTerm = len(s.out)
	}
	return nil
}

// inspect classifies sql for session-state effects (res is its
// classification if the policy already made it). It returns the effects
// to apply once the statement commits, or a client error when a statement
// cannot be carried by this pool mode.
func (s *session) inspect(text []byte, res *classify.Result) ([]classify.Effect, *Error) {
	// The prefilter reads the message buffer in place; only text that may
	// change session state is copied for the parser (whose cache keeps
	// its keys).
	if len(text) == 0 || !classify.MayAffectSession(unsafe.String(&text[0], len(text))) {
		return nil, nil
	}
	if res == nil {
		res = s.h.classes.ClassifyBytes(text)
	}
	var effects []classify.Effect
	for i := range res.Statements {
		effects = append(effects, res.Statements[i].Effects...)
	}
	if !s.renames() {
		return effects, nil
	}
	for _, e := range effects {
		if e.Kind != classify.EffectPin || s.pinned != "" {
			continue
		}
		if s.h.cfg.Pool.OnSessionState == "error" {
			return nil, errorf(codeFeatureNotSupported, "%s is not supported in %s pooling mode (pool.on_session_state: error)", e.Reason, s.h.cfg.Pool.Mode)
		}
		s.pin(string(e.Reason))
	}
	return effects, nil
}

func (s *session) pin(reason string) {
	s.mu.Lock()
	first := s.pinned == ""
	if first {
		s.pinned = reason
	}
	s.mu.Unlock()
	if first {
		s.h.m.pins.WithLabelValues(reason).Inc()
	}
}

func (s *session) onQuery(m msg) error {
	text := trimNul(m.Body)
	var res *classify.Result
	if pol := s.policy(); pol != nil {
		res = s.h.classes.ClassifyBytes(text)
		if e := pol.check(s.ctx, res, true); e != nil {
			return s.refuse(e, true, text)
		}
		// A simple query replaces the unnamed statement and portal.
		delete(pol.stmts, "")
		delete(pol.portals, "")
	}
	effects, cerr := s.inspect(text, res)
	if cerr == nil && s.h.mode == modeStatement && beginsTransaction(text) {
		cerr = errorf(codeFeatureNotSupported, "transaction blocks are not allowed in statement pooling mode")
	}
	if cerr != nil {
		return s.localError(cerr, true)
	}
	if s.renames() {
		if done, err := s.deallocate(text, res); done {
			return err
		}
	}
	ddl := mayChangeSchema(text) && s.isDDL(text, res)
	srv, err := s.lockServer()
	if err != nil {
		return s.acquireFailed(err, true)
	}
	// A simple query drops the unnamed statement, on the server and so
	// for the client.
	it := item{kind: itQuery, effects: effects, start: time.Now(), obs: s.startRoundTrip(text)}
	s.setUnnamed(srv, &it, nil)
	var chg *stmtChange
	if s.renames() && (s.anon != nil || s.changePending("")) {
		// (Even with no unnamed statement in the books: one an earlier
		// message's undoing may bring back goes too.)
		chg = &stmtChange{prev: s.anon}
		s.anon = nil
	}
	if ddl {
		s.schemaChanging()
	}
	it.chg = chg
	s.expect(it)
	s.startQueryTimer()
	s.mu.Unlock()
	s.out = append(s.out, m.Raw...)
	s.outTerm = len(s.out)
	return nil
}

// localError answers the client with e in place of the server, in order,
// through the server when one is open (see answerError).
func (s *session) localError(e *Error, query bool) error {
	return s.answerError(e, query, nil)
}

// localErrorObs answers with e alone, the server untouched: a Query gets
// its ReadyForQuery too; in the extended protocol the messages up to the
// next Sync are dropped, as Postgres does after an error. o is the round
// trip's started record.
func (s *session) localErrorObs(e *Error, query bool, o *observed) error {
	s.mu.Lock()
	s.expect(item{kind: itQuery, act: actSynth, synth: 'E', errMsg: e})
	if query {
		// (Of kind itQuery: a ReadyForQuery the server skips with the
		// Query if an error came before it, not a Sync that ends skipping.)
		s.expect(item{kind: itQuery, act: actSynth, synth: 'Z', ends: true, errMsg: e, obs: o})
	} else {
		// The round trip ends at the client's Sync, which carries it.
		s.skip = true
		s.roundErr, s.roundObs = e, o
	}
	s.pumpSynth()
	s.mu.Unlock()
	return nil
}

// acquireFailed answers a client whose message needed a server that could
// not be had: 53300 on a pool timeout (the session goes on), else a
// fatal error.
func (s *session) acquireFailed(err error, query bool) error {
	e := clientError(err)
	if e.Fatal {
		return e
	}
	return s.localError(e, query)
}

func trimNul(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == 0 {
		return b[:n-1]
	}
	return b
}

// beginsTransaction reports whether sql starts with BEGIN or START
// TRANSACTION (after blanks and comments).
func beginsTransaction(sql []byte) bool {
	w := firstWord(sql)
	return w == "begin" || w == "start"
}

func firstWord(sql []byte) string {
	return string(bytes.ToLower(leadingWord(sql)))
}

func (s *session) onSync(m msg) error {
	s.mu.Lock()
	s.open = false
	it := item{kind: itSync, start: time.Now(), errMsg: s.roundErr, obs: s.roundObs}
	s.roundErr, s.roundObs = nil, nil
	if it.obs == nil {
		it.obs = s.startRoundTrip(s.execSQL)
	}
	s.execSQL = nil
	if s.srv == nil && s.q.empty() {
		// Nothing went to a server since the last Sync (every message was
		// answered by Outrigger): answer this one too.
		it.act, it.synth, it.ends = actSynth, 'Z', true
		s.q.push(it)
		s.pumpSynth()
		s.mu.Unlock()
		return nil
	}
	s.startQueryTimer()
	s.mu.Unlock()
	return s.forward(m, it)
}

func (s *session) onFlush(m msg) error {
	s.mu.Lock()
	idle := s.srv == nil || (s.q.empty() && !s.open)
	s.mu.Unlock()
	if idle {
		return nil // nothing outstanding on a server to flush
	}
	s.out = append(s.out, m.Raw...)
	s.outTerm = len(s.out)
	return nil
}

func (s *session) onCopy(m msg) error {
	// Clients stream CopyData right behind their COPY without waiting for
	// CopyInResponse, so copy messages go to the server while anything is
	// in flight on it; the server ignores them outside COPY, as it would
	// unproxied. With nothing in flight there is no COPY to feed.
	s.mu.Lock()
	active := s.srv != nil && (s.copying || !s.q.empty())
	s.mu.Unlock()
	if !active {
		return nil
	}
	s.out = append(s.out, m.Raw...)
	return nil
}

// flush writes what the client goroutine has for the server, and anything
// Outrigger answered itself to the client.
func (s *session) flush() error {
	s.mu.Lock()
	srv := s.srv
	s.pumpSynth()
	err := s.flushClient()
	write := len(s.out) > 0 && srv != nil
	inline := write && s.relayDone == nil
	// While the write runs the server stays attached: bytes with no reply
	// of their own (CopyData, Flush) may follow a round trip that has
	// already ended, and must not reach a server that went back to the pool.
	s.writing = write && !inline
	s.mu.Unlock()
	switch {
	case inline:
		srv.write(s.out)
		if s.outTerm == len(s.out) {
			s.readInline(srv)
		} else {
			// The server will not answer all of it yet (a pipeline
			// arriving in pieces, COPY data): its replies must be read
			// while the client goes on sending.
			s.mu.Lock()
			if s.srv == srv && s.relayDone == nil {
				s.startRelay(srv)
			}
			s.mu.Unlock()
		}
	case write:
		srv.write(s.out)
		s.mu.Lock()
		s.writing = false
		if s.srv == srv && s.detachable(srv) {
			// The relay saw the round trip end while we wrote; it waits in
			// a read. Wake it to give the server back.
			s.kick = true
			_ = srv.conn.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
	}
	if cap(s.out) > 1<<20 {
		s.out = nil
	} else {
		s.out = s.out[:0]
	}
	s.outTerm = 0
	return err
}

// flushClient writes buffered replies to the client. mu held.
func (s *session) flushClient() error {
	if s.werr != nil {
		return s.werr
	}
	if s.w == nil {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		s.werr = err
		return err
	}
	if s.q.empty() {
		// Idle: the buffer goes back to the pool, so an idle client holds
		// none.
		s.w.Reset(nil)
		writerPool.Put(s.w)
		s.w = nil
	}
	return nil
}

// writerPool holds client write buffers between round trips.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientWriteBuffer) }}

// writeClient buffers a message for the client. mu held.
func (s *session) writeClient(b []byte) {
	if s.werr != nil {
		return
	}
	if s.w == nil {
		s.w = writerPool.Get().(*bufio.Writer)
		s.w.Reset(s.conn)
	}
	if _, err := s.w.Write(b); err != nil {
		s.werr = err
	}
}

// finish ends the session: the client gets a final error if there is one,
// and the server goes back to the pool clean, or is closed.
func (s *session) finish(err error) {
	s.mu.Lock()
	if s.waitCtxCancel != nil {
		s.waitCtxCancel() // unhooks it from s.ctx, which may outlive the session
	}
	s.mu.Unlock()
	if err != nil && !errors.Is(err, errTerminate) && !errors.Is(err, io.EOF) && !isClosed(err) {
		e := clientError(err)
		s.mu.Lock()
		if !s.fatalSent {
			e.Fatal = true
			s.writeClient(appendError(nil, e))
			_ = s.flushClient()
		}
		s.mu.Unlock()
		if !errors.Is(err, errAuthFailed) {
			s.h.env.Logger.Debug("postgres session ended", slog.String("user", s.user), slog.String("database", s.db), slog.Any("error", err))
		}
	}
	s.mu.Lock()
	s.closing = true
	srv, done := s.srv, s.relayDone
	if srv != nil && done == nil {
		// Attached on the synchronous path, with no reader: end the
		// attachment as a relay would on the session's close.
		s.relayEnded(srv, s.lease, os.ErrDeadlineExceeded)
		srv = nil
	} else {
		s.mu.Unlock()
	}
	if srv != nil {
		_ = srv.conn.SetReadDeadline(time.Now())
		<-done
	} else if done != nil {
		<-done
	}
	if s.pid != 0 {
		s.h.cancels.unregister(s)
	}
	if s.counted {
		s.h.clients.Add(-1)
	}
	if s.passHeld != nil {
		s.passHeld.release()
	}
	if s.limited {
		s.h.uncountClient(s.user, s.db)
	}
	s.mu.Lock()
	s.stopTx()
	s.mu.Unlock()
	s.stopQueryTimer()
	_ = s.sc.Close()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

func be32(v uint32) []byte {
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
