package pg

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// Read buffer sizes. A message that fits is handed out as a slice of the
// reader's buffer (no copy); a larger one is read into a spill buffer, up to
// the limit. Servers send result sets, so their side reads in big chunks;
// clients mostly send short queries.
const (
	serverReadBuffer = 16 << 10
	clientReadBuffer = 2 << 10
)

// msg is one protocol message as read from the wire. Raw holds the whole
// message (type byte, length and body) and Body the part after the length;
// both are valid only until the next call to the reader that returned them.
type msg struct {
	Type byte
	Raw  []byte
	Body []byte
}

// ProtocolError is a message that breaks the protocol: the client gets 08P01
// and the connection closes.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "pg: protocol violation: " + e.Msg }

// SQLState is 08P01.
func (e *ProtocolError) SQLState() string { return "08P01" }

// frameReader frames typed protocol messages from r without decoding them.
// Messages longer than max are refused before their body is read.
//
// Its buffer is borrowed from a pool while there is input and given back
// when it runs dry. A client's reader waits for input with only a small
// array of its own (first), which a typical query fits, so an idle client
// holds no buffer; a server's reader (size serverReadBuffer: servers are
// few and their replies large) reads straight into the pool's buffer.
type frameReader struct {
	src   io.Reader
	size  int
	pool  *sync.Pool
	buf   []byte  // nil while empty
	bufp  *[]byte // what the pool gave, to give back
	r, w  int
	max   int
	spill []byte
	first []byte // nil: read into a pool buffer even when empty
}

// firstReadSize is the array a client's reader waits with.
const firstReadSize = 512

var bufPools sync.Map // size -> *sync.Pool

func bufPool(size int) *sync.Pool {
	if p, ok := bufPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := bufPools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	return p.(*sync.Pool)
}

func newFrameReader(r io.Reader, size, max int) *frameReader {
	f := &frameReader{src: r, size: size, pool: bufPool(size), max: max}
	if size < serverReadBuffer {
		f.first = make([]byte, min(firstReadSize, size))
	}
	return f
}

// buffered reports how many bytes wait in the buffer.
func (f *frameReader) n() int { return f.w - f.r }

// release gives the buffer back once it is empty.
func (f *frameReader) release() {
	if f.buf != nil && f.r == f.w {
		f.pool.Put(f.bufp)
		f.buf, f.bufp, f.r, f.w = nil, nil, 0, 0
	}
}

// take borrows a buffer from the pool.
func (f *frameReader) take() {
	f.bufp = f.pool.Get().(*[]byte)
	f.buf, f.r, f.w = (*f.bufp)[:f.size], 0, 0
}

// fill reads at least once more from src, waiting without a buffer when
// none is held.
//
// An error that comes with data is dropped: the next read returns it again
// (a closed connection stays closed), and a deadline that expired is not
// kept as if it always would.
func (f *frameReader) fill() error {
	if f.buf == nil && f.first != nil {
		n, err := f.src.Read(f.first)
		if n == 0 {
			return err
		}
		f.take()
		f.w = copy(f.buf, f.first[:n])
		return nil
	}
	if f.buf == nil {
		f.take()
		n, err := f.src.Read(f.buf)
		f.w = n
		if n > 0 {
			return nil
		}
		f.release()
		return err
	}
	if f.r > 0 {
		copy(f.buf, f.buf[f.r:f.w])
		f.w -= f.r
		f.r = 0
	}
	n, err := f.src.Read(f.buf[f.w:])
	f.w += n
	if n > 0 {
		return nil
	}
	return err
}

// need makes at least k bytes available (k <= size).
func (f *frameReader) need(k int) error {
	for f.n() < k {
		if err := f.fill(); err != nil {
			if err == io.EOF && f.n() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// next reads one message. The returned msg aliases the reader's buffers.
func (f *frameReader) next() (msg, error) {
	f.release()
	if err := f.need(5); err != nil {
		return msg{}, err
	}
	hdr := f.buf[f.r : f.r+5]
	typ := hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 {
		return msg{}, &ProtocolError{Msg: fmt.Sprintf("message %q has invalid length %d", typ, n)}
	}
	if n > f.max {
		return msg{}, &ProtocolError{Msg: fmt.Sprintf("message %q of %d bytes is over the %d byte limit", typ, n, f.max)}
	}
	total := n + 1
	if total <= f.size {
		if err := f.need(total); err != nil {
			return msg{}, unexpected(err)
		}
		raw := f.buf[f.r : f.r+total]
		f.r += total
		return msg{Type: typ, Raw: raw, Body: raw[5:]}, nil
	}
	if cap(f.spill) < total {
		f.spill = make([]byte, total)
	}
	raw := f.spill[:total]
	k := copy(raw, f.buf[f.r:f.w])
	f.r += k
	if _, err := io.ReadFull(f.src, raw[k:]); err != nil {
		return msg{}, unexpected(err)
	}
	return msg{Type: typ, Raw: raw, Body: raw[5:]}, nil
}

// Read reads raw bytes (the startup packets before framing begins).
func (f *frameReader) Read(p []byte) (int, error) {
	if f.n() == 0 {
		if err := f.fill(); err != nil {
			return 0, err
		}
	}
	k := copy(p, f.buf[f.r:f.w])
	f.r += k
	f.release()
	return k, nil
}

// peekByte reads (waiting if needed) and keeps the next byte.
func (f *frameReader) peekByte() error { return f.need(1) }

// shrink lets go of a large spill buffer once a big message is done with,
// so an idle session holds only what it needs.
func (f *frameReader) shrink() {
	if cap(f.spill) > 64<<10 {
		f.spill = nil
	}
}

// ready reports whether a whole message is waiting in the read buffer, so
// reading it cannot block.
func (f *frameReader) ready() bool {
	n := f.n()
	if n < 5 {
		return false
	}
	size := int(binary.BigEndian.Uint32(f.buf[f.r+1:f.r+5])) + 1
	return size <= n || size > f.size
}

// buffered reports whether more input is waiting in the read buffer, so
// the relay can batch its writes until the input runs dry.
func (f *frameReader) buffered() bool { return f.n() > 0 }

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendMsg appends a message with type typ and body to dst.
func appendMsg(dst []byte, typ byte, body ...[]byte) []byte {
	n := 4
	for _, b := range body {
		n += len(b)
	}
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	for _, b := range body {
		dst = append(dst, b...)
	}
	return dst
}

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}
