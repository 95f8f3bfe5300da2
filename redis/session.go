package redis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/policy"
	"github.com/outrigger/outrigger/pool"
	"github.com/outrigger/outrigger/sidecar"
)

// Pin reasons, for metrics and logs.
const (
	pinTransaction = "transaction"
	pinWatch       = "watch"
	pinBlocking    = "blocking"
	pinPubSub      = "pubsub"
	pinMonitor     = "monitor"
	pinClientMode  = "client_mode"
)

// session is one client connection. Its goroutine reads the client's
// commands a pipeline at a time and routes each one: to the client's shared
// upstream connection, to a pinned connection of its own, or to an answer
// made here. Every command gets a slot in order; once the pipeline is sent,
// drain writes the slots' replies out in that order. A session never has commands in flight on two
// upstream connections at once: before it moves to another connection it
// waits for the last command it sent, so the server sees its commands in the
// order the client sent them.
type session struct {
	h      *Handler
	c      *sidecar.Conn
	client net.Conn
	id     int64
	ctx    context.Context

	key     poolKey
	laneIdx int
	shared  *lane // the shared connection laneIdx named when last used (no lock per command)
	authed  bool  // authenticated as one of the listener's own users
	name    string
	libName string
	libVer  string

	cur  *lane // the upstream connection the last command went to
	last *slot // the last command sent to an upstream

	pinned    *pool.Lease[*lane]
	pinReason string
	inMulti   bool
	watching  bool
	// releaseOn is the command (EXEC, DISCARD, UNWATCH, a blocking command)
	// whose answer ends the need for the pinned connection: it goes back to
	// the pool as soon as that answer arrives, even if the client then goes
	// quiet: drain gives it back once that reply is written.
	releaseOn *slot
	dirty     bool // the pinned connection's state changed: close it after
	// pending are the state changes (SELECT, AUTH, HELLO, CLIENT NO-EVICT)
	// queued inside MULTI: each is the client's if EXEC runs the
	// transaction and that command's own reply in it is not an error.
	// multiPos is the position in the transaction of the last command
	// queued; execSlot is the EXEC.
	pending     []pendingChange
	multiPos    int
	execSlot    *slot
	passthrough bool

	// pol is the session's policy state; multiRefused is set when the
	// policy refused a command queued in the open MULTI, so that its EXEC
	// discards the transaction and answers EXECABORT, as Redis does when
	// an ACL check fails while queueing.
	pol          policyState
	multiRefused bool

	// out holds the slots of the commands read since the last drain, in
	// order; drain writes their replies. It grows with the client's
	// pipeline and keeps its size: an idle client that never pipelined
	// keeps one pointer.
	out  []*slot
	free []*slot       // written slots, for reuse
	wake chan struct{} // signalled when one of this session's slots is answered
	in   peekConn      // the client, as the command reader reads it
	wmu  sync.Mutex
	w    *bufio.Writer
	// d holds the replies the lane's reader writes itself (direct.go).
	d directOut

	// view is what GET /clients shows of the session (clients.go).
	view sessionView

	// blockedOn is the pinned connection a blocking command of this
	// client waits on, for CLIENT UNBLOCK from other clients: it holds
	// blockMu while it unblocks, and the session takes it to clear
	// blockedOn before the connection can serve anyone else.
	blockMu   sync.Mutex
	blockedOn *lane
	// killed is set when the client's CLIENT KILL matched itself: the
	// connection closes after that reply.
	killed bool
}

// newSession makes the session of client; identity is its mTLS identity
// ("" without a verified client certificate).
func (h *Handler) newSession(ctx context.Context, c *sidecar.Conn, client net.Conn, identity string) *session {
	s := &session{
		h: h, c: c, client: client, ctx: ctx,
		id:   h.nextID.Add(1),
		key:  h.initialKey(),
		wake: make(chan struct{}, 1),
		in:   peekConn{Conn: client},
	}
	s.pol.principal = policy.Principal{
		Identity: identity,
		User:     defaultUser,
		Listener: h.env.Name,
		Source:   sourceAddr(c.RemoteAddr()),
	}
	s.laneIdx = h.shared(s.key).assign()
	s.publish()
	return s
}

func (s *session) run() {
	cr := NewCommandReader(&s.in, s.h.cfg.MaxCommandBytes)
	s.h.m.clients.Inc()
	defer s.h.m.clients.Dec()
	s.h.register(s)
	defer s.h.forget(s)
	defer s.finish() // also after a panic: a pinned connection is let go
	for {
		cmd, err := cr.Next()
		if err != nil {
			s.readFailed(err)
			return
		}
		s.setState(viewActive)
		ok := s.dispatch(cmd)
		s.publish()
		if !ok {
			return
		}
		if cr.Buffered() == 0 {
			// The pipeline read so far is dispatched: one write upstream
			// for all of it, then its replies, in order, in one write to
			// the client, before the reader waits for more.
			s.flush()
			s.drain()
			s.publish()
			s.setState(viewIdle)
		}
	}
}

// readFailed answers a malformed or oversized command with an error, as
// Redis does, before the connection closes.
func (s *session) readFailed(err error) {
	var msg string
	switch {
	case errors.Is(err, ErrCommandTooLarge):
		msg = fmt.Sprintf("ERR Protocol error: command larger than %d bytes", s.h.cfg.MaxCommandBytes)
	case errors.Is(err, ErrProtocol):
		var pe *ProtocolError
		detail := err.Error()
		if errors.As(err, &pe) {
			detail = pe.Detail
		}
		msg = "ERR Protocol error: " + detail
	default:
		return // EOF or a broken connection: nobody to tell
	}
	if s.passthrough {
		return
	}
	// Counted as an unknown command that Outrigger could not serve.
	s.settleDirect()
	sl := s.newSlot(nil)
	sl.refusal = metrics.OutcomeProxyError
	sl.error(msg)
	s.out = append(s.out, sl)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// finish writes what is answered, then gives back or closes
// the pinned connection and the client connection.
func (s *session) finish() {
	if p := recover(); p != nil {
		// Do not drain: a slot may never be answered.
		s.h.env.Logger.Error("redis session panic; connection closed", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		s.unpin(true)
		s.c.Close()
		return
	}
	if s.passthrough || s.pinReason == pinBlocking {
		// The client is gone: nobody waits for the end of a subscription or
		// a blocking command, and the connection cannot be given back.
		s.unpin(true)
	}
	s.flush()
	s.settleDirect()
	s.drain() // gives back a connection whose last command ended its use
	s.unpin(true)
	s.c.Close()
}

// drain writes the replies of every command read since the last drain, in
// the order the client sent them, waiting for each in turn; what is ready is
// written before any wait. A blocking command is waited for while the
// client is watched, so a client that leaves is noticed (see waitBlocking).
func (s *session) drain() {
	if len(s.out) == 0 {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.takeWriter()
	defer s.putWriter()
	for i, sl := range s.out {
		if !sl.isDone() {
			s.w.Flush()
			s.wmu.Unlock()
			if sl.blocking {
				s.waitBlocking(sl)
			}
			s.wait(sl)
			s.wmu.Lock()
		}
		outcome, reply := metrics.OutcomeOK, sl.buf
		var errReply []byte
		switch {
		case sl.replace != "":
			// EXEC of a transaction the policy aborted: the DISCARD sent
			// in its place has run (or the connection failed, which
			// discards it too).
			outcome = metrics.OutcomeError
			reply = redcon.AppendError(nil, sl.replace)
			errReply = reply
		case sl.err != nil:
			outcome = errOutcome(sl.err)
			reply = redcon.AppendError(nil, errorLine(sl.err))
			errReply = reply
		case isErrorReply(sl.buf):
			outcome = metrics.OutcomeError
			errReply = sl.buf
		}
		s.w.Write(reply)
		s.record(sl, outcome, errReply, len(reply))
		if sl == s.execSlot {
			s.applyPending(sl.buf)
		}
		if sl == s.releaseOn {
			s.releaseOn = nil
			s.unpin(false)
		}
		s.releaseSlot(sl)
		s.out[i] = nil
	}
	s.out = s.out[:0]
	s.last = nil // every command is answered, and its slot free for reuse
	s.w.Flush()
}

// writers lends the client write buffers: a session holds one only while it
// writes (drain) or for good in passthrough, so an idle client costs no
// write buffer.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// takeWriter makes s.w usable; wmu is held.
func (s *session) takeWriter() {
	if s.w == nil {
		s.w = writers.Get().(*bufio.Writer)
		s.w.Reset(s.client)
	}
}

// putWriter gives s.w back once flushed, unless passthrough keeps it; wmu
// is held.
func (s *session) putWriter() {
	if s.w == nil || s.passthrough || s.w.Flush() != nil {
		return
	}
	s.w.Reset(nil)
	writers.Put(s.w)
	s.w = nil
}

// newSlot takes a slot for cmd, reusing a written one when it can.
func (s *session) newSlot(cmd *Command) *slot {
	var sl *slot
	if len(s.free) == 0 && s.d.raw != nil {
		s.takeDelivered()
	}
	if n := len(s.free); n > 0 {
		sl = s.free[n-1]
		s.free = s.free[:n-1]
		sl.ready.Store(false)
		sl.buf, sl.err, sl.blocking, sl.replace = sl.buf[:0], nil, false, ""
		sl.refusal, sl.rule, sl.span = metrics.OutcomeOK, "", nil
	} else {
		sl = &slot{wake: s.wake}
	}
	sl.cmd, sl.start, sl.db = cmd, time.Now(), s.key.db
	return sl
}

// maxFreeSlots is how many written slots a session keeps for reuse.
const maxFreeSlots = 256

// releaseSlot keeps a written slot for reuse.
func (s *session) releaseSlot(sl *slot) {
	if cap(sl.buf) > 64<<10 {
		sl.buf = nil // do not keep a large reply's buffer
	}
	if len(s.free) < maxFreeSlots {
		s.free = append(s.free, sl)
	}
}

// wait blocks until sl is answered.
func (s *session) wait(sl *slot) {
	for !sl.isDone() {
		<-s.wake
	}
}

// waitBlocking waits for a blocking command's reply while reading one byte
// from the client on the side: if the client goes away, the pinned
// connection is closed at once (which fails the command) instead of being
// held until the command times out, possibly never. A byte that arrives
// (the client pipelined more) is kept for the command reader.
func (s *session) waitBlocking(sl *slot) {
	res := make(chan error, 1)
	go func() {
		var b [1]byte
		n, err := s.client.Read(b[:])
		if n == 1 {
			s.in.push(b[0])
		}
		res <- err
	}()
	for !sl.isDone() && res != nil {
		select {
		case <-s.wake:
		case err := <-res:
			res = nil
			if err != nil { // the client left: closing the connection fails sl
				s.unpin(true)
			}
		}
	}
	if res != nil { // answered while the side read waits: stop it
		s.client.SetReadDeadline(time.Unix(1, 0))
		<-res
		s.client.SetReadDeadline(time.Time{})
	}
}

// peekConn is the client connection with bytes read on the side
// (waitBlocking) put back in front.
type peekConn struct {
	net.Conn
	mu  sync.Mutex
	pre []byte
}

func (p *peekConn) push(b byte) {
	p.mu.Lock()
	p.pre = append(p.pre, b)
	p.mu.Unlock()
}

func (p *peekConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	return p.Conn.Read(b)
}

func refusedError(c *Command) error {
	return &refusal{line: "NOPERM Outrigger refuses the '" + c.Name + "' command (redis[].refuse_commands)"}
}

// refusal is a refusal of Outrigger's own, in Redis's words: its whole
// error line.
type refusal struct{ line string }

func (e *refusal) Error() string { return e.line }

// errorLine renders a proxy-side failure as a RESP error line: the
// upstream's own words when it refused (WRONGPASS, NOPERM), a refusal's
// own line, else ERR.
func errorLine(err error) string {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return ue.line
	}
	var r *refusal
	if errors.As(err, &r) {
		return r.line
	}
	return "ERR " + err.Error()
}

// enqueue gives sl its place in the reply stream. When max_pipeline
// replies are outstanding the session stops reading the client and writes
// them first (backpressure).
func (s *session) enqueue(sl *slot) {
	if len(s.out) == 0 {
		s.settleDirect() // its detached replies go first
	}
	s.out = append(s.out, sl)
	if len(s.out) >= s.h.cfg.MaxPipeline {
		s.flush()
		s.drain()
	}
}

// send routes one command to lane l in order (see session).
// raw may be the reader's buffer: the lane copies it. The command is only
// queued on the lane; run flushes once the client's pipeline is read (or
// right away when the session must wait).
func (s *session) send(l *lane, raw []byte, sl *slot) {
	if s.cur != l && s.cur != nil {
		s.cur.flush()
		if s.last != nil {
			s.wait(s.last)
		}
		s.settleDirect()
	}
	s.cur, s.last = l, sl
	if s.inMulti && s.pinned != nil && l == s.pinned.Conn() && queues(sl.cmd) {
		s.multiPos++ // a command queued in the transaction
	}
	l.queue(raw, sl) // before enqueue, which may wait for sl
	s.enqueue(sl)
}

// flush writes the commands queued on the current lane.
func (s *session) flush() {
	if s.cur != nil {
		s.cur.flush()
	}
}

// settle waits until the last command sent upstream is answered, then gives
// a pinned connection back when the command that needed it is over.
func (s *session) settle() {
	s.flush()
	if s.last != nil {
		s.wait(s.last)
	}
	s.settleDirect()
	if s.releaseOn != nil {
		s.wait(s.releaseOn)
		if s.releaseOn == s.execSlot {
			// The commands after EXEC run in the state it left.
			s.applyPending(s.execSlot.buf)
		}
		s.releaseOn = nil
		s.unpin(false)
	}
}

// sendReleasing sends the command that ends the pin (see releaseOn).
func (s *session) sendReleasing(l *lane, raw []byte, sl *slot) {
	s.releaseOn = sl // before send: a drain inside it may write sl
	s.send(l, raw, sl)
}

// statefulCommands are the commands dispatch handles itself: every case
// of its switch (a test checks the two agree).
var statefulCommands = []string{
	"quit", "select", "auth", "hello",
	"client|setname", "client|getname", "client|id", "client|info", "client|setinfo",
	"client|no-evict", "client|no-touch", "client|kill", "client|unblock", "client|list",
	"reset", "unsubscribe", "punsubscribe", "sunsubscribe",
	"subscribe", "psubscribe", "ssubscribe", "monitor", "client|reply", "client|tracking",
	"multi", "watch", "exec", "discard", "unwatch",
}

// outOfBandCommands act on work that other connections are doing: a
// running script or function (which holds Redis busy, serving only the
// commands flagged allow_busy: these, besides the connection-state ones
// dispatch handles) or a CLIENT PAUSE (which holds the other clients'
// commands). Each runs on an upstream connection dialled for it, never
// queued on a shared connection behind the very commands it exists to stop
// (see outOfBand).
var outOfBandCommands = []string{"script|kill", "function|kill", "function|stats", "shutdown", "client|unpause"}

// outOfBand runs raw on a connection of its own, dialled for it in the
// session's state (user, database, protocol) and closed once it answers.
func (s *session) outOfBand(raw []byte, sl *slot) {
	l, err := s.h.dialLane(s.ctx, s.key, s.h.cfg.Pool.CommandTimeout, "control")
	if err != nil {
		sl.fail(fmt.Errorf("upstream unavailable: %w", err)) // a refusal in the server's words
		s.enqueue(sl)
		return
	}
	s.send(l, raw, sl)
	l.flush()
	s.wait(sl)
	l.close(errControlDone)
	s.cur = nil // nothing more goes to l
}

// errControlDone closes an out-of-band connection after its command.
var errControlDone = errors.New("redis: out-of-band command answered")

// dispatch routes one command; false ends the session (QUIT).
func (s *session) dispatch(cmd Cmd) bool {
	if s.passthrough {
		return s.passthroughCommand(cmd)
	}
	if s.releaseOn != nil {
		s.settle()
	}
	c := Lookup(cmd.Args)
	sl := s.newSlot(c)
	s.view.lastRequest.Store(sl.start.UnixNano())
	s.view.lastCmd.Store(c)
	s.startSpan(sl)
	if s.h.cfg.Auth.Required && !s.authed && !authFree(c) {
		sl.error("NOAUTH Authentication required.")
		s.enqueue(sl)
		return true
	}
	if c != nil && s.h.refused[c] {
		sl.fail(refusedError(c))
		s.enqueue(sl)
		return true
	}
	if d, enforced := s.pol.check(s.ctx, s.h.env.Policy, c, cmd.Args); enforced {
		if !s.applyDecision(&d, sl) {
			return s.ctx.Err() == nil
		}
	}
	name := ""
	if c != nil {
		name = c.Name
		if name == "client" && isClientSub(cmd.Args, "no-touch") {
			name = "client|no-touch" // Redis 7.2 and later
		}
		if c.stateful {
			// It may change what the records of detached commands read
			// (the user), or answer here: those replies go first.
			s.settleDirect()
		}
	}
	if (s.inMulti || (s.pinned != nil && name == "hello")) && queuedInMulti(name) {
		// (HELLO under WATCH runs on the watching connection at once.)
		s.queueInMulti(name, cmd, sl)
		return true
	}
	switch name {
	case "quit":
		s.settle()
		sl.ok()
		s.out = append(s.out, sl)
		s.drain()
		return false
	case "select":
		s.local(sl, s.selectDB(cmd.Args, sl))
		return true
	case "auth":
		s.local(sl, s.auth(cmd.Args, sl))
		return true
	case "hello":
		sent := s.hello(cmd.Args, sl)
		var ue *upstreamError
		if sl.err != nil && !errors.As(sl.err, &ue) {
			// The upstream is unreachable (not a refusal such as
			// WRONGPASS). Clients read an error reply to HELLO as "this
			// server has no HELLO" and stay on RESP2 for good; close
			// instead, as a server that is down would, and they reconnect.
			s.record(sl, errOutcome(sl.err), redcon.AppendError(nil, errorLine(sl.err)), 0)
			return false
		}
		s.local(sl, sent)
		return true
	case "client|setname", "client|getname", "client|id", "client|info", "client|setinfo":
		s.local(sl, s.clientCommand(name, cmd.Args, sl))
		return true
	case "client|no-evict", "client|no-touch":
		s.local(sl, s.clientMode(cmd.Args, sl))
		return true
	case "client|kill":
		if !s.inMulti {
			s.clientKill(cmd.Args, sl)
			s.enqueue(sl)
			if s.killed {
				s.flush()
				s.drain()
				return false
			}
			return true
		}
	case "client|unblock":
		if !s.inMulti {
			if cmd.Raw = s.clientUnblock(cmd.Args, cmd.Raw, sl); cmd.Raw == nil {
				return true
			}
		}
	case "client|list":
		if !s.inMulti {
			s.clientList(cmd.Args, cmd.Raw, sl)
			s.enqueue(sl)
			return true
		}
	case "reset":
		s.local(sl, s.reset(sl))
		return true
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		// Not subscribed (else the session would be in passthrough): answer
		// as Redis does, without touching a shared connection.
		s.local(sl, s.unsubscribed(name, cmd.Args, sl))
		return true
	case "subscribe", "psubscribe", "ssubscribe":
		return s.startPassthrough(cmd, sl, pinPubSub)
	case "monitor":
		return s.startPassthrough(cmd, sl, pinMonitor)
	case "client|reply", "client|tracking":
		return s.startPassthrough(cmd, sl, pinClientMode)
	case "multi":
		if s.pinned == nil && !s.pin(pinTransaction, sl) {
			return true
		}
		if !s.inMulti { // (a nested MULTI is refused, not queued)
			s.multiPos = -1 // MULTI itself is not in the transaction
		}
		s.inMulti = true
	case "watch":
		if s.pinned == nil && !s.pin(pinWatch, sl) {
			return true
		}
		s.watching = true
	case "exec", "discard":
		if s.pinned != nil && s.multiRefused {
			s.abortTransaction(name, sl)
			return true
		}
		if s.pinned != nil && s.inMulti {
			// EXEC and DISCARD end the transaction and unwatch all keys,
			// whatever their answer: the connection is clean after.
			// (Without MULTI, under WATCH alone, Redis refuses them and the
			// keys stay watched: they go to the connection as any command.)
			if name == "exec" && len(s.pending) > 0 {
				s.execSlot = sl
			} else {
				s.pending = nil
			}
			s.inMulti, s.watching = false, false
			s.sendReleasing(s.pinned.Conn(), cmd.Raw, sl)
			return true
		}
	case "unwatch":
		if s.pinned != nil && !s.inMulti {
			s.watching = false
			s.sendReleasing(s.pinned.Conn(), cmd.Raw, sl)
			return true
		}
	}
	if c != nil && c.outOfBand && !s.inMulti {
		s.outOfBand(cmd.Raw, sl)
		return true
	}
	if s.pinned != nil {
		s.send(s.pinned.Conn(), cmd.Raw, sl)
		return true
	}
	if c != nil && IsBlocking(c, cmd.Args) {
		if !s.pin(pinBlocking, sl) {
			return true
		}
		sl.blocking = true
		s.setBlocked(s.pinned.Conn())
		s.sendReleasing(s.pinned.Conn(), cmd.Raw, sl)
		return true
	}
	l := s.shared
	if l == nil || !l.alive() {
		var err error
		if l, err = s.h.shared(s.key).get(s.ctx, s.laneIdx); err != nil {
			s.shared = nil
			sl.fail(fmt.Errorf("upstream unavailable: %w", err))
			s.enqueue(sl)
			return true
		}
		s.shared = l
	}
	if s.canDetach(l) {
		s.sendDetached(l, cmd.Raw, sl)
		return true
	}
	s.send(l, cmd.Raw, sl)
	return true
}

// queuedInMulti says which of the commands the session answers itself
// Redis queues inside MULTI, to run at EXEC.
func queuedInMulti(name string) bool {
	switch name {
	case "hello", "client|setname", "client|getname", "client|id", "client|info", "client|setinfo",
		"unsubscribe", "punsubscribe", "sunsubscribe":
		return true
	}
	return false
}

// queueInMulti sends such a command to the transaction's connection, as
// Redis queues it; the state it changes (protocol, user, name) is the
// client's from then on, as with SELECT and AUTH inside MULTI.
func (s *session) queueInMulti(name string, cmd Cmd, sl *slot) {
	switch name {
	case "hello":
		s.dirty = true
		if key, hname, user, authed, bad := s.parseHello(s.keyAfterPinned(), cmd.Args); bad == "" {
			var u *string
			if authed {
				u = &user
				s.authed = true
			}
			s.sendChange(pendingChange{after: key, user: u, name: &hname}, cmd.Raw, sl)
			return
		}
	case "client|setname":
		s.dirty = true
		if len(cmd.Args) == 3 && !bytes.ContainsAny(cmd.Args[2], " \n") {
			name := string(cmd.Args[2])
			s.sendChange(pendingChange{after: s.keyAfterPinned(), name: &name}, cmd.Raw, sl)
			return
		}
	case "client|setinfo":
		s.dirty = true
	}
	s.send(s.pinned.Conn(), cmd.Raw, sl)
}

// local finishes a command the session handled: sent is true when the
// handler passed it upstream (which enqueued its slot), else the handler
// answered sl itself and it joins the reply stream here.
func (s *session) local(sl *slot, sent bool) {
	if !sent {
		s.enqueue(sl)
	}
}

// pin takes a dedicated upstream connection for this client. On failure it
// answers sl with the error and returns false.
func (s *session) pin(reason string, sl *slot) bool {
	s.settle()
	p, err := s.h.pinnedPool(s.key)
	if err == nil {
		var lease *pool.Lease[*lane]
		s.setState(viewWaiting)
		lease, err = p.Acquire(s.ctx)
		s.setState(viewActive)
		if err == nil {
			s.pinned, s.pinReason, s.dirty = lease, reason, false
			s.h.m.pins.WithLabelValues(s.h.env.Name, reason).Inc()
			return true
		}
	}
	sl.fail(fmt.Errorf("no dedicated upstream connection for %s: %w", reason, err))
	s.enqueue(sl)
	return false
}

// unpin gives the pinned connection back when it is provably clean, or
// closes it. abandon is set when the session ends with it possibly busy.
func (s *session) unpin(abandon bool) {
	if s.pinned == nil {
		return
	}
	// With abandon unset, callers know the last command on the connection
	// is answered.
	if s.blockedOn != nil {
		s.setBlocked(nil) // waits for a CLIENT UNBLOCK of it to be answered
	}
	l := s.pinned.Conn()
	clean := !abandon && !s.dirty && !s.inMulti && !s.watching && !s.passthrough && l.alive()
	if clean {
		s.pinned.Release()
	} else {
		s.pinned.Discard()
	}
	s.pinned, s.pinReason = nil, ""
	s.inMulti, s.watching, s.dirty, s.releaseOn = false, false, false, nil
	s.pending, s.execSlot = nil, nil
	s.multiRefused = false
}

// startPassthrough moves the session into passthrough for the rest of its
// life: a dedicated connection whose every frame (replies, messages, pushes)
// goes straight to the client, in order.
func (s *session) startPassthrough(cmd Cmd, sl *slot, reason string) bool {
	if s.pinned == nil {
		if !s.pin(reason, sl) {
			// As if the server were down: the error, then the connection
			// closes, so a subscriber reconnects and subscribes again
			// rather than waiting on a connection that carries nothing.
			s.settle()
			return false
		}
	} else {
		s.settle()
	}
	s.dirty = true
	// Every reply so far goes out before frames start to flow.
	s.drain()
	s.passthrough = true
	l := s.pinned.Conn()
	l.passthrough(func(raw []byte, flush bool) error {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.takeWriter()
		if _, err := s.w.Write(raw); err != nil {
			return err
		}
		if flush {
			return s.w.Flush()
		}
		return nil
	})
	go func() {
		// The upstream closed (QUIT, a kill, a failure): so does the client.
		<-l.done
		s.client.Close()
	}()
	l.send(cmd.Raw, nil)
	s.record(sl, metrics.OutcomeOK, nil, 0)
	return true
}

func (s *session) passthroughCommand(cmd Cmd) bool {
	l := s.pinned.Conn()
	c := Lookup(cmd.Args)
	// The slot only carries the command's record: frames are not matched
	// to commands here.
	sl := s.newSlot(c)
	defer s.releaseSlot(sl)
	s.view.lastRequest.Store(sl.start.UnixNano())
	s.view.lastCmd.Store(c)
	s.startSpan(sl)
	if c != nil && s.h.refused[c] {
		sl.refusal = metrics.OutcomeProxyError
		s.writeNow(errorLine(refusedError(c)), sl)
		return true
	}
	if d, enforced := s.pol.check(s.ctx, s.h.env.Policy, c, cmd.Args); enforced {
		if d.Action != policy.Allow {
			// Frames flow as the server sends them here, so the refusal
			// goes out at once, as the refusal of a refused command does.
			sl.refusal, sl.rule = refusalOutcome(&d), d.Rule
			s.writeNow(d.RedisError(), sl)
			return true
		}
		if d.Delay > 0 && !s.holdBack(&d, sl) {
			return false
		}
	}
	l.send(cmd.Raw, nil)
	s.record(sl, metrics.OutcomeOK, nil, 0)
	return l.alive()
}

// writeNow writes an error line to a client in passthrough, the answer to
// the command in sl, and records it.
func (s *session) writeNow(line string, sl *slot) {
	reply := redcon.AppendError(nil, line)
	s.wmu.Lock()
	s.w.Write(reply)
	s.w.Flush()
	s.wmu.Unlock()
	s.record(sl, metrics.OutcomeError, reply, len(reply))
}

// refusalOutcome is the outcome of a command the policy refused.
func refusalOutcome(d *policy.Decision) metrics.Outcome {
	if d.Action == policy.RateLimited {
		return metrics.OutcomeRateLimited
	}
	return metrics.OutcomeDenied
}

// holdBack waits out a rate limit's delay before sl's command is sent. It
// reports false, with the command recorded as rate limited, when the
// client left meanwhile: the command never ran.
func (s *session) holdBack(d *policy.Decision, sl *slot) bool {
	s.setState(viewWaiting)
	ok := d.Wait(s.ctx)
	s.setState(viewActive)
	if !ok {
		sl.refusal, sl.rule = metrics.OutcomeRateLimited, d.Limit
		s.record(sl, metrics.OutcomeRateLimited, nil, 0)
	}
	return ok
}

// applyDecision carries out the policy's decision on the command in sl
// (the engine has logged a refusal or an audit). A refusal answers sl in its place in the reply
// stream (and inside MULTI dooms the transaction) and returns false, as
// does a client that leaves during a delay; an allowed command returns
// true, after its delay: the commands already sent go upstream first, and
// this session's goroutine waits alone, so the clients that share its
// upstream connection are not held up.
func (s *session) applyDecision(d *policy.Decision, sl *slot) bool {
	if d.Action != policy.Allow {
		sl.refusal, sl.rule = refusalOutcome(d), d.Rule
		sl.error(d.RedisError())
		if s.inMulti {
			s.multiRefused = true
		}
		s.enqueue(sl)
		return false
	}
	if d.Delay > 0 {
		s.flush()
		s.drain()
		if !s.holdBack(d, sl) {
			s.releaseSlot(sl)
			return false
		}
	}
	return true
}

// execAbort is Redis's answer to EXEC when a command failed to queue.
const execAbort = "EXECABORT Transaction discarded because of previous errors."

// discardCommand is sent in place of the EXEC of a transaction that the
// policy doomed: the queued commands never run, and the connection is
// clean after.
var discardCommand = []byte("*1\r\n$7\r\nDISCARD\r\n")

// abortTransaction ends a MULTI in which the policy refused a command:
// DISCARD goes upstream either way; EXEC is answered EXECABORT, DISCARD
// with the server's +OK.
func (s *session) abortTransaction(name string, sl *slot) {
	if name == "exec" {
		sl.replace = execAbort
	}
	s.pending = nil
	s.inMulti, s.watching, s.multiRefused = false, false, false
	s.sendReleasing(s.pinned.Conn(), discardCommand, sl)
}

// selectDB moves the client to the pool of another database.
func (s *session) selectDB(args [][]byte, sl *slot) bool {
	if len(args) != 2 {
		sl.error("ERR wrong number of arguments for 'select' command")
		return false
	}
	db, err := strconv.Atoi(string(args[1]))
	if err != nil || db < 0 {
		sl.error("ERR value is not an integer or out of range")
		return false
	}
	if s.pinned != nil {
		// Inside MULTI or WATCH: the server decides; the connection is
		// not clean afterwards.
		s.dirty = true
		key := s.keyAfterPinned()
		key.db = db
		s.sendKeyChange(key, nil, appendCommand(nil, "SELECT", strconv.Itoa(db)), sl)
		return true
	}
	key := s.key
	key.db = db
	if err := s.h.selectRefusal(key); err != nil {
		sl.fail(err) // Redis's NOPERM, as it refuses this user's SELECT
		return false
	}
	s.moveTo(key, sl, redcon.AppendOK)
	return false
}

// keyAfterPinned is the state the client will be in once the commands
// sent on its pinned connection so far have run.
func (s *session) keyAfterPinned() poolKey {
	if n := len(s.pending); n > 0 {
		return s.pending[n-1].after
	}
	return s.key
}

// sendKeyChange sends raw, a command that moves the client to key (SELECT,
// AUTH, HELLO, CLIENT NO-EVICT) and, with user set, makes that user its
// principal, on the pinned connection. Inside MULTI it is only queued:
// the change is the client's if the transaction runs it without error
// (see applyPending). Under WATCH alone it runs now, and the change is
// the client's once the server has accepted it.
func (s *session) sendKeyChange(key poolKey, user *string, raw []byte, sl *slot) {
	s.sendChange(pendingChange{after: key, user: user}, raw, sl)
}

// sendChange is sendKeyChange for a change c (its after state, user and
// name; its position and before state are filled in here).
func (s *session) sendChange(c pendingChange, raw []byte, sl *slot) {
	c.pos, c.before = s.multiPos+1, s.keyAfterPinned()
	if s.inMulti {
		s.pending = append(s.pending, c)
		s.send(s.pinned.Conn(), raw, sl)
		return
	}
	s.send(s.pinned.Conn(), raw, sl)
	s.flush()
	s.wait(sl)
	if sl.err != nil || isErrorReply(sl.buf) {
		return
	}
	if key := c.apply(s.key); key != s.key {
		s.switchKey(key)
	}
	c.applyRest(s)
}

// applyRest gives the client the user and name of c.
func (c pendingChange) applyRest(s *session) {
	if c.user != nil {
		s.pol.setUser(*c.user)
	}
	if c.name != nil {
		s.name = *c.name
	}
}

// queues reports whether Redis queues c inside MULTI: all but MULTI and
// WATCH, which it refuses there at once without aborting the transaction
// (a command refused at queueing for its arity or name aborts it, so its
// place does not matter).
func queues(c *Command) bool {
	return c == nil || (c.Name != "multi" && c.Name != "watch")
}

// pendingChange is a state change queued inside MULTI: the state before
// and after it, at its position in the transaction, and the user it makes
// the client's policy principal (AUTH, HELLO AUTH).
type pendingChange struct {
	pos           int
	before, after poolKey
	user, name    *string
}

// applyPending gives the client the state changes its transaction made,
// once EXEC's reply is in: none when EXEC did not run it (EXECABORT, a
// WATCH abort), and only those whose own replies in it are not errors
// (SELECT 99 fails inside a transaction that runs).
func (s *session) applyPending(exec []byte) {
	defer func() { s.pending, s.execSlot = nil, nil }()
	eol := bytes.IndexByte(exec, '\n')
	if len(exec) < 2 || exec[0] != '*' || exec[1] == '-' || eol < 0 {
		return
	}
	var failed []bool
	rr := NewReplyReader(bytes.NewReader(exec[eol+1:]))
	for {
		rep, err := rr.Next()
		if err != nil {
			break
		}
		failed = append(failed, rep.IsError())
	}
	key := s.key
	for _, c := range s.pending {
		if c.pos < 0 || c.pos >= len(failed) || failed[c.pos] {
			continue
		}
		key = c.apply(key)
		c.applyRest(s)
	}
	if key != s.key {
		s.switchKey(key)
	}
}

// apply makes on key the change c made on the state before it.
func (c pendingChange) apply(key poolKey) poolKey {
	if c.after.db != c.before.db {
		key.db = c.after.db
	}
	if c.after.user != c.before.user || c.after.password != c.before.password {
		key.user, key.password = c.after.user, c.after.password
	}
	if c.after.proto != c.before.proto {
		key.proto = c.after.proto
	}
	if c.after.noEvict != c.before.noEvict {
		key.noEvict = c.after.noEvict
	}
	if c.after.noTouch != c.before.noTouch {
		key.noTouch = c.after.noTouch
	}
	return key
}

// switchKey moves the client to key's shared connections (the server has
// already accepted the change on the pinned connection).
func (s *session) switchKey(key poolKey) {
	s.key, s.cur, s.shared = key, nil, nil
}

// moveTo switches the client to the pool for key, proving first that a
// connection in that state can be made (so a bad database or password gets
// the server's own error), and answers sl with ok on success.
func (s *session) moveTo(key poolKey, sl *slot, ok func([]byte) []byte) bool {
	s.settle()
	idx, err := s.h.enter(s.ctx, key)
	if err != nil {
		sl.fail(err)
		return false
	}
	s.key, s.laneIdx, s.cur, s.shared = key, idx, nil, nil
	sl.answer(ok)
	return true
}

// auth changes the upstream user: AUTH password, or AUTH user password.
func (s *session) auth(args [][]byte, sl *slot) bool {
	key := s.key
	user := defaultUser // the name the client authenticates with
	switch len(args) {
	case 2:
		key.user, key.password = "", string(args[1])
	case 3:
		key.user, key.password = string(args[1]), string(args[2])
		user = key.user
	default:
		sl.error("ERR wrong number of arguments for 'auth' command")
		return false
	}
	if !s.h.mapUser(&key) {
		sl.error(wrongPass)
		return false
	}
	if s.pinned != nil {
		s.dirty = true
		key.db = s.keyAfterPinned().db
		s.authed = true
		s.sendKeyChange(key, &user, appendAuth(key), sl)
		return true
	}
	s.h.noteVia(key, s.key)
	if s.moveTo(key, sl, redcon.AppendOK) {
		s.authed = true
		s.pol.setUser(user)
	}
	return false
}

// defaultUser is the user Redis names a client that has not authenticated
// (or authenticated with a password alone).
const defaultUser = "default"

// authFree says which commands a client may send before it authenticates
// when auth.required is set.
func authFree(c *Command) bool {
	if c == nil {
		return false
	}
	switch c.Name {
	case "auth", "hello", "ping", "quit":
		return true
	}
	return false
}

// wrongPass is Redis's answer to bad credentials.
const wrongPass = "WRONGPASS invalid username-password pair or user is disabled."

func appendAuth(k poolKey) []byte {
	if k.user == "" {
		return appendCommand(nil, "AUTH", k.password)
	}
	return appendCommand(nil, "AUTH", k.user, k.password)
}

// parseHello reads HELLO's arguments: the state they move a client in
// key to, its name, the user HELLO AUTH authenticates (authed set), or
// the error line Redis gives for them.
func (s *session) parseHello(key poolKey, args [][]byte) (_ poolKey, name, user string, authed bool, bad string) {
	name = s.name
	if len(args) < 2 {
		return key, name, "", false, ""
	}
	v, err := strconv.Atoi(string(args[1]))
	if err != nil {
		return key, name, "", false, "ERR Protocol version is not an integer or out of range"
	}
	if v != 2 && v != 3 {
		return key, name, "", false, "NOPROTO unsupported protocol version"
	}
	key.proto = v
	for i := 2; i < len(args); i++ {
		switch {
		case equalFold(args[i], "auth") && i+2 < len(args):
			key.user, key.password = string(args[i+1]), string(args[i+2])
			user = key.user
			if !s.h.mapUser(&key) {
				return key, name, "", false, wrongPass
			}
			authed = true
			i += 2
		case equalFold(args[i], "setname") && i+1 < len(args):
			name = string(args[i+1])
			i++
		default:
			return key, name, "", false, fmt.Sprintf("ERR Syntax error in HELLO option '%s'", args[i])
		}
	}
	return key, name, user, authed, ""
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] with the
// upstream's own HELLO reply for that protocol, after moving the client to
// a pool of that protocol (and user).
func (s *session) hello(args [][]byte, sl *slot) bool {
	key, name, user, authed, bad := s.parseHello(s.key, args)
	if bad != "" {
		sl.error(bad)
		return false
	}
	if s.h.cfg.Auth.Required && !s.authed && !authed {
		sl.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return false
	}
	s.h.noteVia(key, s.key)
	ok := s.moveTo(key, sl, func(b []byte) []byte {
		l, err := s.h.shared(key).get(s.ctx, s.laneIdx)
		if err != nil || l.hello == nil {
			return redcon.AppendError(b, "ERR upstream did not answer HELLO")
		}
		return append(b, helloWithID(l.hello, s.id)...)
	})
	if ok {
		s.name = name
		s.authed = s.authed || authed
		if authed {
			s.pol.setUser(user)
		}
	}
	return false
}

// clientCommand answers the CLIENT subcommands that concern this client
// alone, so they never touch a shared connection. It never sends.
func (s *session) clientCommand(name string, args [][]byte, sl *slot) bool {
	switch name {
	case "client|setname":
		if len(args) != 3 {
			sl.error("ERR wrong number of arguments for 'client|setname' command")
			return false
		}
		if bytes.ContainsAny(args[2], " \n") {
			sl.error("ERR Client names cannot contain spaces, newlines or special characters.")
			return false
		}
		s.name = string(args[2])
		sl.ok()
	case "client|getname":
		sl.answer(func(b []byte) []byte {
			if s.name == "" {
				return appendNull(b, s.key.proto)
			}
			return redcon.AppendBulkString(b, s.name)
		})
	case "client|id":
		sl.answer(func(b []byte) []byte { return redcon.AppendInt(b, s.id) })
	case "client|info":
		sl.answer(func(b []byte) []byte { return appendVerbatim(b, s.key.proto, s.appendInfo(nil, s.fieldsNow())) })
	case "client|setinfo":
		if len(args) != 4 {
			sl.error("ERR wrong number of arguments for 'client|setinfo' command")
			return false
		}
		switch {
		case equalFold(args[2], "lib-name"):
			s.libName = string(args[3])
		case equalFold(args[2], "lib-ver"):
			s.libVer = string(args[3])
		default:
			sl.error(fmt.Sprintf("ERR Unrecognized option '%s'", args[2]))
			return false
		}
		sl.ok()
	}
	return false
}

// unsubscribed answers an UNSUBSCRIBE family command from a client that has
// no subscriptions: one [kind, channel-or-nil, 0] frame per channel named
// (or one for none), pushes in RESP3.
func (s *session) unsubscribed(kind string, args [][]byte, sl *slot) bool {
	sl.answer(func(b []byte) []byte {
		frame := func(b []byte, ch []byte) []byte {
			if s.key.proto == 3 {
				b = append(b, ">3\r\n"...)
			} else {
				b = redcon.AppendArray(b, 3)
			}
			b = redcon.AppendBulkString(b, kind)
			if ch == nil {
				b = appendNull(b, s.key.proto)
			} else {
				b = redcon.AppendBulk(b, ch)
			}
			return redcon.AppendInt(b, 0)
		}
		if len(args) < 2 {
			return frame(b, nil)
		}
		for _, ch := range args[1:] {
			b = frame(b, ch)
		}
		return b
	})
	return false
}

// appendNull appends the null reply of the protocol: RESP3's own, or
// RESP2's null bulk string.
func appendNull(b []byte, proto int) []byte {
	if proto == 3 {
		return append(b, "_\r\n"...)
	}
	return redcon.AppendNull(b)
}

// reset answers RESET: back to a fresh connection's state.
func (s *session) reset(sl *slot) bool {
	s.settle()
	s.unpin(true)
	s.key, s.authed = s.h.initialKey(), false
	s.pol.setUser(defaultUser)
	s.laneIdx, s.shared = s.h.shared(s.key).assign(), nil
	s.cur, s.name, s.libName, s.libVer = nil, "", "", ""
	sl.answer(func(b []byte) []byte { return redcon.AppendString(b, "RESET") })
	return false
}
