package redis

import (
	"net"
	"sync"

	"github.com/tidwall/redcon"

	"github.com/outrigger/outrigger/internal/rawio"
	"github.com/outrigger/outrigger/metrics"
)

// Direct replies: the common command (not pinned, not answered here, no
// earlier reply of the client's still waiting in its session) is detached
// from the session once it is queued on the shared connection. The lane's
// reader then writes its reply to the client itself, with a non-blocking
// write, instead of handing it to the session's goroutine; the session
// goes back to reading the client as soon as its pipeline is sent. So a
// command costs two network wake-ups (client readable, upstream readable),
// as in an event loop, and no goroutine hand-off, which on a machine with
// idle cores also moves the work to another thread.
//
// Order: a client's detached commands all go to one lane, which answers
// them in the order they were queued; the reader appends each reply to the
// session's buffer in that order, under the lane's delivery lock (so a
// lane failing concurrently cannot put a failure before an earlier reply).
// Replies for a session are written when the reader has nothing more
// buffered, one write for all of them. Before the session writes anything
// itself, changes state the reader reads (the principal, for the command's
// record), or sends to another connection, it waits until every detached
// reply is written (settleDirect), so nothing overtakes them.
//
// A client that does not read its replies fills its socket: the
// non-blocking write then leaves the rest to a goroutine of the session's
// (writeBacklog) that writes with blocking writes, and further replies
// queue behind it, so the lane's reader never waits for one client. The
// session stops reading the client after max_pipeline detached commands
// until their replies are written (backpressure, as for other commands).
// TLS clients do not take this path (a TLS record cannot be written in
// part without its connection's lock).
type directOut struct {
	mu       sync.Mutex
	raw      net.Conn // the client socket (rawio); nil: no direct replies
	buf      []byte   // replies delivered, not yet written
	spare    []byte   // the other buffer, for the backlog writer
	n        int      // how many replies buf holds
	detached int      // commands detached whose replies are not yet written
	waiting  bool     // the session waits for detached to reach 0
	backlog  bool     // writeBacklog is running
	queued   bool     // on a lane reader's flush list
	broken   bool     // a write to the client failed: replies are dropped
	ret      []*slot  // slots delivered, for the session to reuse
}

// directConn returns the socket under c for non-blocking writes, or nil
// when c is not a plain socket.
func directConn(c net.Conn) net.Conn {
	if rc := rawio.Wrap(c); rawio.CanTryWrite(rc) {
		return rc
	}
	return nil
}

// canDetach reports whether a command for shared lane l may be detached.
func (s *session) canDetach(l *lane) bool {
	return s.d.raw != nil && len(s.out) == 0 && (s.cur == nil || s.cur == l)
}

// sendDetached queues the command in sl on lane l, whose reader will write
// its reply.
func (s *session) sendDetached(l *lane, raw []byte, sl *slot) {
	sl.sess = s
	s.d.mu.Lock()
	s.d.detached++
	full := s.d.detached >= s.h.cfg.MaxPipeline
	s.d.mu.Unlock()
	s.cur, s.last = l, nil
	l.queue(raw, sl)
	if full {
		s.settleDirect()
	}
}

// settleDirect sends what is queued and waits until every detached reply
// is written to the client.
func (s *session) settleDirect() {
	if s.d.raw == nil {
		return
	}
	s.d.mu.Lock()
	if s.d.detached == 0 {
		s.d.mu.Unlock()
		return
	}
	s.d.mu.Unlock()
	s.flush()
	s.d.mu.Lock()
	for s.d.detached > 0 {
		s.d.waiting = true
		s.d.mu.Unlock()
		<-s.wake
		s.d.mu.Lock()
	}
	s.d.waiting = false
	s.d.mu.Unlock()
}

// deliver records a detached command and adds its reply (or the failure
// that ended it) to the session's buffer; it reports whether the session
// needs a flushDirect that is not already due. Callers hold the lane's
// delivery lock, so replies are added in the lane's order.
func (s *session) deliver(sl *slot, raw []byte, err error) bool {
	outcome, reply, errReply := metrics.OutcomeOK, raw, []byte(nil)
	switch {
	case err != nil:
		outcome = errOutcome(err)
		reply = redcon.AppendError(nil, errorLine(err))
		errReply = reply
	case isErrorReply(raw):
		outcome, errReply = metrics.OutcomeError, raw
	}
	s.record(sl, outcome, errReply, len(reply))
	d := &s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, reply...)
	d.n++
	sl.sess = nil
	d.ret = append(d.ret, sl)
	if d.queued || d.backlog {
		return false
	}
	d.queued = true
	return true
}

// flushDirect writes the delivered replies with one non-blocking write;
// what the socket does not take goes to writeBacklog.
func (s *session) flushDirect() {
	d := &s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queued = false
	if d.backlog || d.n == 0 {
		return
	}
	if d.broken {
		s.wrote()
		return
	}
	n, err := rawio.TryWrite(d.raw, d.buf)
	s.c.CountSent(int64(n))
	switch {
	case err != nil:
		d.broken = true
		s.wrote()
	case n == len(d.buf):
		s.wrote()
	default:
		d.buf = d.buf[:copy(d.buf, d.buf[n:])]
		d.backlog = true
		go s.writeBacklog()
	}
}

// wrote ends the replies in buf (written, or dropped for a client that is
// gone) and wakes the session when nothing detached is left; d.mu is held.
func (s *session) wrote() {
	d := &s.d
	d.buf = d.buf[:0]
	if cap(d.buf) > 64<<10 {
		d.buf = nil
	}
	d.detached -= d.n
	d.n = 0
	s.wakeIfSettled()
}

// writeBacklog writes the replies a full socket did not take, with
// blocking writes, until none is left.
func (s *session) writeBacklog() {
	d := &s.d
	d.mu.Lock()
	for d.n > 0 && !d.broken {
		buf, n := d.buf, d.n
		d.buf, d.n = d.spare[:0], 0
		d.mu.Unlock()
		_, err := s.client.Write(buf)
		d.mu.Lock()
		d.spare = buf[:0]
		if cap(d.spare) > 64<<10 {
			d.spare = nil
		}
		d.detached -= n
		if err != nil {
			d.broken = true
		}
		s.wakeIfSettled()
	}
	if d.broken {
		s.wrote() // drops what is left
	}
	d.backlog = false
	d.mu.Unlock()
}

// wakeIfSettled signals a session waiting in settleDirect once nothing
// detached is left; d.mu is held.
func (s *session) wakeIfSettled() {
	if s.d.detached == 0 && s.d.waiting {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// takeDelivered moves the slots the lane reader is done with to the free
// list.
func (s *session) takeDelivered() {
	s.d.mu.Lock()
	n := min(len(s.d.ret), maxFreeSlots-len(s.free))
	s.free = append(s.free, s.d.ret[:n]...)
	clear(s.d.ret)
	s.d.ret = s.d.ret[:0]
	s.d.mu.Unlock()
}
