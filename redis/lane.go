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
// reply did not come within pool.command_timeout (wrapped with the
// timeout); their outcome is timeout.
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
// The reply clock runs only while commands are in flight: a reply that does
// not arrive within the timeout fails every command in flight and closes
// the lane (its reply stream can no longer be matched to commands). An idle
// lane waits without limit, but its reader still notices at once when the
// server closes the connection.
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

	mu       sync.Mutex
	wbuf     []byte  // commands queued, not yet written
	spare    []byte  // the other write buffer, swapped in while writing
	flushing bool    // a session is writing; it will write wbuf too
	pending  []*slot // slots of commands queued or written, not answered
	head     int     // pending[head:] are live
	sink     func(raw []byte, flush bool) error

	// hello is the upstream's reply to the HELLO sent when the lane was set up.
	hello []byte

	onClose func()
}

// newLane starts driving conn; onClose, if set, runs once when it closes.
func newLane(conn net.Conn, timeout time.Duration, onClose func()) *lane {
	l := &lane{conn: conn, timeout: timeout, done: make(chan struct{}), onClose: onClose}
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
			sl.fail(l.failure())
		}
		return
	}
	if sl != nil {
		first := len(l.pending) == l.head
		l.pending = append(l.pending, sl)
		if first {
			l.armLocked()
		}
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
	l.mu.Unlock()
	// Let the other sessions that are ready to run queue their commands
	// first: they see flushing set and leave the write to this one, so many
	// clients' commands go out in one write (as an event loop would batch
	// them). When nothing else is runnable this returns at once.
	runtime.Gosched()
	l.mu.Lock()
	for len(l.wbuf) > 0 {
		buf := l.wbuf
		l.wbuf = l.spare[:0]
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
		l.err = err
		close(l.done)
		l.conn.Close()
		l.mu.Lock()
		left := l.pending[l.head:]
		l.pending, l.head = nil, 0
		l.mu.Unlock()
		failWith := l.failure()
		for _, sl := range left {
			sl.fail(failWith)
		}
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
	for {
		rep, err := rr.Next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%w within %s", errCommandTimeout, l.timeout)
			} else {
				err = fmt.Errorf("redis: upstream: %w", err)
			}
			l.close(err)
			return
		}
		l.mu.Lock()
		sink := l.sink
		var sl *slot
		if sink == nil && l.head < len(l.pending) && !rep.Push {
			sl = l.pending[l.head]
			l.pending[l.head] = nil
			l.head++
			if l.head == len(l.pending) {
				l.pending, l.head = l.pending[:0], 0
			}
			l.armLocked()
		}
		l.mu.Unlock()
		switch {
		case sink != nil:
			if err := sink(rep.Raw, rr.Buffered() == 0); err != nil {
				l.close(err)
				return
			}
		case sl == nil:
			// A reply nobody asked for, or out-of-band data: the stream can
			// no longer be matched to commands.
			l.close(errors.New("redis: upstream sent a reply no command was waiting for"))
			return
		default:
			sl.complete(rep.Raw)
		}
	}
}

// armLocked starts the reply clock for the oldest command in flight, or
// stops it when there is none or that command is a blocking one (BLPOP
// waits as long as it asked to). l.mu is held.
func (l *lane) armLocked() {
	if l.timeout <= 0 {
		return
	}
	if l.head == len(l.pending) || l.pending[l.head].blocking {
		l.conn.SetReadDeadline(time.Time{})
		return
	}
	l.conn.SetReadDeadline(time.Now().Add(l.timeout))
}

// passthrough switches the lane to forwarding every frame to sink (flush is
// set when no further frame is buffered). Only call it when no command with
// a slot is in flight: from then on commands carry no slot.
func (l *lane) passthrough(sink func(raw []byte, flush bool) error) {
	l.mu.Lock()
	l.sink = sink
	l.mu.Unlock()
}
