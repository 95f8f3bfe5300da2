package redis

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// errLaneClosed fails commands queued on an upstream connection that closed.
var errLaneClosed = errors.New("redis: upstream connection closed")

// request is one client command on its way to an upstream connection. The
// upstream's reply (or an error) completes its slot.
type request struct {
	raw  []byte // the command as RESP; owned by the request until written
	slot *slot
}

// lane is one upstream connection and the two goroutines that drive it: the
// writer batches every queued request into one write, and pushes each onto
// pending before writing it; the reader frames replies and completes the
// pending requests in FIFO order. A reply that does not arrive within the
// command timeout fails every request in flight, and the lane closes: its
// reply stream can no longer be matched to requests.
//
// The reply clock runs only while requests are in flight (see sent and
// replied), so an idle lane waits for its next command without limit but
// still notices at once when the server closes it.
//
// A shared lane carries many clients' commands; a pinned lane belongs to one
// client at a time. In passthrough mode (pub/sub, MONITOR, CLIENT REPLY,
// CLIENT TRACKING) replies are not matched to requests: every frame goes to
// the passthrough sink, in order.
type lane struct {
	conn    net.Conn
	timeout time.Duration
	in      chan *request
	pending chan *request // requests written, awaiting replies, in order
	done    chan struct{} // closed when the lane has failed or closed
	once    sync.Once
	err     error

	mu       sync.Mutex
	sink     func(raw []byte, flush bool) error // passthrough: every frame goes here
	inflight int                                // requests written and not answered

	// hello is the upstream's reply to the HELLO sent when the lane was
	// set up (nil for RESP2 lanes set up without HELLO).
	hello []byte
}

const (
	laneQueue   = 1024 // requests queued before senders wait
	lanePending = 4096 // requests in flight before the writer waits
	writeBatch  = 64 << 10
)

func newLane(conn net.Conn, timeout time.Duration) *lane {
	l := &lane{
		conn:    conn,
		timeout: timeout,
		in:      make(chan *request, laneQueue),
		pending: make(chan *request, lanePending),
		done:    make(chan struct{}),
	}
	go l.writeLoop()
	go l.readLoop()
	return l
}

// send queues a request, or fails its slot at once if the lane is down.
func (l *lane) send(r *request) {
	select {
	case l.in <- r:
	case <-l.done:
		if r.slot != nil {
			r.slot.fail(l.failure())
		}
	}
}

// alive reports whether the lane still carries requests.
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

// close ends the lane with err (nil for an orderly close) and fails what is
// in flight. Safe to call more than once.
func (l *lane) close(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
		l.conn.Close()
	})
}

func (l *lane) writeLoop() {
	w := bufio.NewWriterSize(l.conn, writeBatch)
	for {
		var r *request
		select {
		case r = <-l.in:
		case <-l.done:
			l.drainQueued()
			return
		}
		for r != nil {
			if r.slot != nil {
				select {
				case l.pending <- r:
					l.sent()
				case <-l.done:
					r.slot.fail(l.failure())
					l.drainQueued()
					return
				}
			}
			if _, err := w.Write(r.raw); err != nil {
				l.close(fmt.Errorf("redis: writing upstream: %w", err))
				l.drainQueued()
				return
			}
			r = nil
			if w.Buffered() < writeBatch {
				select {
				case r = <-l.in:
				default:
				}
			}
		}
		if err := w.Flush(); err != nil {
			l.close(fmt.Errorf("redis: writing upstream: %w", err))
			l.drainQueued()
			return
		}
	}
}

func (l *lane) drainQueued() {
	err := l.failure()
	for {
		select {
		case r := <-l.in:
			if r.slot != nil {
				r.slot.fail(err)
			}
		default:
			return
		}
	}
}

// readLoop reads replies as they come, whether or not a request is
// waiting: so a lane whose server went away (EOF) closes at once, not on the
// next command. Each reply completes the oldest pending request; in
// passthrough it goes to the sink instead.
func (l *lane) readLoop() {
	rr := NewReplyReader(l.conn)
	defer func() {
		err := l.failure()
		for {
			select {
			case r := <-l.pending:
				r.slot.fail(err)
			default:
				return
			}
		}
	}()
	for {
		rep, err := rr.Next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("redis: no reply from upstream within %s", l.timeout)
			} else {
				err = fmt.Errorf("redis: upstream: %w", err)
			}
			l.close(err)
			return
		}
		if sink := l.passthroughSink(); sink != nil {
			if err := sink(rep.Raw, rr.Buffered() == 0); err != nil {
				l.close(err)
				return
			}
			continue
		}
		var r *request
		select {
		case r = <-l.pending:
		default:
		}
		if r == nil || rep.Push {
			// A reply nobody asked for, or out-of-band data: the stream can
			// no longer be matched to requests.
			err := errors.New("redis: upstream sent a reply no command was waiting for")
			if r != nil {
				r.slot.fail(err)
			}
			l.close(err)
			return
		}
		l.replied()
		r.slot.complete(rep.Raw)
	}
}

// sent counts a request in flight and starts the reply clock if it is the
// only one.
func (l *lane) sent() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight++
	if l.inflight == 1 && l.timeout > 0 {
		l.conn.SetReadDeadline(time.Now().Add(l.timeout))
	}
}

// replied counts a reply: the clock restarts for the next request in flight,
// or stops when none is left.
func (l *lane) replied() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	switch {
	case l.timeout == 0:
	case l.inflight > 0:
		l.conn.SetReadDeadline(time.Now().Add(l.timeout))
	default:
		l.conn.SetReadDeadline(time.Time{})
	}
}

func (l *lane) passthroughSink() func(raw []byte, flush bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sink
}

// passthrough switches the lane to forwarding every frame to sink (flush is
// set when no further frame is buffered). Only call it when no request with
// a slot is in flight: from then on requests carry no slot.
func (l *lane) passthrough(sink func(raw []byte, flush bool) error) {
	l.mu.Lock()
	l.sink = sink
	l.mu.Unlock()
}
