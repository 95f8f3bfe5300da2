package redis

import (
	"sync"
	"time"

	"github.com/tidwall/redcon"
)

// slot is the place in a client's reply stream that one command's reply
// fills. The session's drain writes slots out in the order the client sent
// its commands, waiting on each; whoever answers the command (an upstream
// lane, or the session itself) completes it exactly once.
type slot struct {
	done  chan struct{}
	buf   []byte // the reply, copied: the lane's reader reuses its buffer
	err   error  // set instead of buf when the command failed in the proxy
	cmd   *Command
	start time.Time
	// blocking commands stop the upstream reply clock while they wait.
	blocking bool
	// internal slots (a passthrough barrier, a protocol error) are not
	// commands and are not counted.
	internal bool
	// after, if set, runs in drain once the reply is written.
	after func()
}

// replyBufs recycles reply buffers. Slots themselves are not recycled: the
// session keeps a pointer to its last slot after drain is done with it.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func newSlot(cmd *Command) *slot {
	bp := replyBufs.Get().(*[]byte)
	return &slot{done: make(chan struct{}), buf: (*bp)[:0], cmd: cmd, start: time.Now()}
}

// releaseSlot recycles the reply buffer once drain has written it.
func releaseSlot(s *slot) {
	b := s.buf
	s.buf = nil
	if cap(b) <= 64<<10 { // do not pin large replies in the pool
		b = b[:0]
		replyBufs.Put(&b)
	}
}

// complete fills the slot with a copy of the reply's raw bytes.
func (s *slot) complete(raw []byte) {
	s.buf = append(s.buf[:0], raw...)
	close(s.done)
}

// fail answers the command with an error line.
func (s *slot) fail(err error) {
	s.err = err
	close(s.done)
}

// answer fills the slot with a reply the proxy made itself.
func (s *slot) answer(build func([]byte) []byte) {
	s.buf = build(s.buf[:0])
	close(s.done)
}

// ok answers +OK.
func (s *slot) ok() { s.answer(redcon.AppendOK) }

// errorf answers with a RESP error line (msg starts with its code: "ERR ...").
func (s *slot) error(msg string) {
	s.answer(func(b []byte) []byte { return redcon.AppendError(b, msg) })
}
