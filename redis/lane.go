package redis

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// errLaneClosed fails commands queued on an upstream connection that closed.
var errLaneClosed = errors.New("redis: upstream connection closed")

// errCommandTimeout fails the commands in flight on a connection whose
// reply did not come within pool.command_timeout and whose server did not
// answer a probe either (wrapped with the timeout); their outcome is
// timeout.
var errCommandTimeout = errors.New("redis: no reply from upstream")

// lane is one upstream connection. Writes are group-committed by the
// sessions themselves, with no writer goroutine: a session appends its
// commands to the lane's buffer (queue) and then flushes; if another session
// is already writing, that one writes these bytes too, so the commands of
// many clients go out in one write and nobody waits for a hand-off. One
// reader goroutine frames replies and completes the pending slots in FIFO
// order; the order of pending is the order of the bytes in the buffer,
// since both are appended under one lock.
//
// The reply clock: when a reply does not arrive within the timeout of the
// oldest command's start (its queueing, or the previous reply, whichever
// is later), the lane asks whether the server is alive (probe: a command
// on another connection). A server that answers is busy (a long script, a
// big SORT, a CLIENT PAUSE): the commands will still run, so they wait on,
// for another timeout before the next probe. One that does not answer is
// stopped or unreachable: every command in flight fails, saying its fate
// is unknown, and the lane closes (its reply stream can no longer be
// matched to commands). Blocking commands and an
// idle lane wait without limit, and the reader still notices at once when
// the server closes the connection. The clock is lazy: the connection's
// read deadline is set only by the reader when it expires (to the oldest
// command's deadline, or a timeout ahead when nothing is due), never per
// command, so a command costs no timer update (which would also wake the
// runtime's network poller).
//
// A shared lane carries many clients' commands; a pinned lane belongs to one
// client at a time. In passthrough mode (pub/sub, MONITOR, CLIENT REPLY,
// CLIENT TRACKING) replies are not matched to commands: every frame goes to
// the passthrough sink, in order.
type lane struct {
	conn    net.Conn
	timeout time.Duration
	done    chan struct{} // closed when the lane has failed or closed
	once    sync.Once
	err     error

	// deliver is held by whoever answers pending commands (the reader, or
	// close failing them) from taking them off pending until their replies
	// are handed on, so a client's replies keep their order.
	deliver sync.Mutex

	mu       sync.Mutex
	wbuf     []byte  // commands queued, not yet written
	spare    []byte  // the other write buffer, swapped in while writing
	flushing bool    // a session is writing; it will write wbuf too
	pending  []*slot // slots of commands queued or written, not answered
	head     int     // pending[head:] are live
	queued   int     // how many of pending are in wbuf, not yet written
	// since is when the oldest pending command started waiting for its
	// reply: when it was queued on an idle lane, or when the reply before
	// it came.
	since time.Time
	sink  func(raw []byte, flush bool) error

	// hello is the upstream's reply to the HELLO sent when the lane was set up.
	hello []byte
	// upstreamID is the server's client id of this connection (from hello).
	upstreamID int64

	// probe reports whether the server answers on another connection
	// (nil: never asked, a late reply fails the lane).
	probe func() bool

	onClose func()
}

// newLane starts driving conn; hello is the server's reply to the setup's
// HELLO; probe, if set, is asked when a reply is late (see lane.probe);
// onClose, if set, runs once when the lane closes.
func newLane(conn net.Conn, timeout time.Duration, hello []byte, probe func() bool, onClose func()) *lane {
	l := &lane{conn: conn, timeout: timeout, done: make(chan struct{}), hello: hello, upstreamID: helloID(hello), probe: probe, onClose: onClose}
	if timeout > 0 {
		conn.SetReadDeadline(time.Now().Add(timeout))
	}
	go l.readLoop()
	return l
}

// depth is how many commands are queued or written and not answered.
func (l *lane) depth() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending) - l.head
}

// queue appends a command for the next flush; sl, if not nil, gets its
// reply. It fails sl at once if the lane is down.
func (l *lane) queue(raw []byte, sl *slot) {
	l.mu.Lock()
	if !l.alive() {
		l.mu.Unlock()
		if sl != nil {
			l.deliver.Lock()
			sl.fail(l.failure())
			l.deliver.Unlock()
		}
		return
	}
	if sl != nil {
		if len(l.pending) == l.head && l.timeout > 0 {
			l.since = time.Now()
		}
		l.pending = append(l.pending, sl)
		l.queued++
	}
	l.wbuf = append(l.wbuf, raw...)
	big := len(l.wbuf) >= flushAt
	l.mu.Unlock()
	if big {
		l.flush() // a long pipeline goes out in chunks, not all at the end
	}
}

// flushAt is how much a lane buffers before a queued command writes it out.
const flushAt = 64 << 10

// flush writes what is queued, unless another session is writing already
// (then that one writes it).
func (l *lane) flush() {
	l.mu.Lock()
	if l.flushing {
		l.mu.Unlock()
		return
	}
	l.flushing = true
	busy := len(l.pending)-l.head > l.queued
	l.mu.Unlock()
	if busy {
		// Commands written earlier are in flight, so other clients use
		// this connection now: let the sessions that are ready to run
		// queue their commands first. They see flushing set and leave the
		// write to this one, so many clients' commands go out in one write
		// (as an event loop would batch them). A lone client does not
		// yield: that would only move its goroutine to another thread.
		runtime.Gosched()
	}
	l.mu.Lock()
	for len(l.wbuf) > 0 {
		buf := l.wbuf
		l.wbuf = l.spare[:0]
		l.queued = 0
		l.mu.Unlock()
		_, err := l.conn.Write(buf)
		l.mu.Lock()
		l.spare = buf[:0]
		if cap(l.spare) > 1<<20 {
			l.spare = nil // do not keep a huge buffer after a big command
		}
		if err != nil {
			l.flushing = false
			l.mu.Unlock()
			l.close(fmt.Errorf("redis: writing upstream: %w", err))
			return
		}
	}
	l.flushing = false
	l.mu.Unlock()
}

// send queues and flushes one command.
func (l *lane) send(raw []byte, sl *slot) {
	l.queue(raw, sl)
	l.flush()
}

// alive reports whether the lane still carries commands.
func (l *lane) alive() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

func (l *lane) failure() error {
	<-l.done
	if l.err != nil {
		return l.err
	}
	return errLaneClosed
}

// close ends the lane with err (nil for an orderly close) and fails every
// command in flight. Safe to call more than once.
func (l *lane) close(err error) {
	l.once.Do(func() {
		// Marked closed and emptied in one step under both locks: a
		// command queued after sees the lane down and fails only once
		// these failures are handed on (queue takes deliver too).
		l.deliver.Lock()
		l.mu.Lock()
		l.err = err
		close(l.done)
		left := l.pending[l.head:]
		l.pending, l.head = nil, 0
		l.mu.Unlock()
		l.conn.Close()
		failWith := l.failure()
		for _, sl := range left {
			sl.fail(failWith)
		}
		l.deliver.Unlock()
		if l.onClose != nil {
			l.onClose()
		}
	})
}

// readLoop reads replies as they come, whether or not a command is waiting:
// so a lane whose server went away (EOF) closes at once, not on the next
// command. Each reply completes the oldest pending slot; in passthrough it
// goes to the sink instead.
func (l *lane) readLoop() {
	rr := NewReplyReader(l.conn)
	// Sessions with direct replies delivered and not yet written: written
	// when nothing more is buffered, or when the loop ends.
	var toFlush []*session
	flushAll := func() {
		for i, s := range toFlush {
			s.flushDirect()
			toFlush[i] = nil
		}
		toFlush = toFlush[:0]
	}
	defer flushAll()
	for {
		if len(toFlush) > 0 && rr.Buffered() == 0 {
			flushAll()
		}
		rep, err := rr.Next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if l.rearm() {
					continue
				}
				if l.probe != nil && l.probe() {
					l.extend()
					continue
				}
				err = fmt.Errorf("%w within %s, nor to a probe on a new connection: the commands in flight may or may not have run", errCommandTimeout, l.timeout)
			} else {
				err = fmt.Errorf("redis: upstream: %w", err)
			}
			l.close(err)
			return
		}
		l.deliver.Lock()
		l.mu.Lock()
		sink := l.sink
		var sl *slot
		if sink == nil && l.head < len(l.pending) && !rep.Push {
			sl = l.pending[l.head]
			l.pending[l.head] = nil
			l.head++
			if l.head == len(l.pending) {
				l.pending, l.head = l.pending[:0], 0
			} else if l.timeout > 0 {
				l.since = time.Now()
			}
		}
		l.mu.Unlock()
		switch {
		case sink != nil:
			l.deliver.Unlock()
			if err := sink(rep.Raw, rr.Buffered() == 0); err != nil {
				l.close(err)
				return
			}
		case sl == nil:
			l.deliver.Unlock()
			// A reply nobody asked for, or out-of-band data: the stream can
			// no longer be matched to commands.
			l.close(errors.New("redis: upstream sent a reply no command was waiting for"))
			return
		case sl.sess != nil:
			s := sl.sess
			if s.deliver(sl, rep.Raw, nil) {
				toFlush = append(toFlush, s)
			}
			l.deliver.Unlock()
		default:
			sl.complete(rep.Raw)
			l.deliver.Unlock()
		}
	}
}

// rearm runs when the read deadline expires: it sets the next one and
// reports true, or reports false when the oldest command in flight has
// waited its whole timeout. With nothing due (an idle lane, a blocking
// command first in line) the next deadline is a timeout ahead.
func (l *lane) rearm() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	next := now.Add(l.timeout)
	if l.head < len(l.pending) && !l.pending[l.head].blocking {
		due := l.since.Add(l.timeout)
		if !now.Before(due) {
			return false
		}
		next = due
	}
	l.conn.SetReadDeadline(next)
	return true
}

// extend gives the commands in flight another timeout after a probe found
// the server alive: their replies are late because it is busy.
func (l *lane) extend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since = time.Now()
	l.conn.SetReadDeadline(l.since.Add(l.timeout))
}

// passthrough switches the lane to forwarding every frame to sink (flush is
// set when no further frame is buffered). Only call it when no command with
// a slot is in flight: from then on commands carry no slot.
func (l *lane) passthrough(sink func(raw []byte, flush bool) error) {
	l.mu.Lock()
	l.sink = sink
	l.mu.Unlock()
}
