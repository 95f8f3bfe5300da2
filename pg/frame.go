package pg

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// readBufferSize is the size of the buffered reader on each side. A message
// that fits is handed out as a slice of the reader's buffer (no copy); a
// larger one is read into the session's spill buffer, up to the limit.
const readBufferSize = 16 << 10

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
type frameReader struct {
	r     *bufio.Reader
	max   int
	spill []byte
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, readBufferSize), max: max}
}

// next reads one message. The returned msg aliases the reader's buffers.
func (f *frameReader) next() (msg, error) {
	hdr, err := f.r.Peek(5)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return msg{}, err
	}
	typ := hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 {
		return msg{}, &ProtocolError{Msg: fmt.Sprintf("message %q has invalid length %d", typ, n)}
	}
	if n > f.max {
		return msg{}, &ProtocolError{Msg: fmt.Sprintf("message %q of %d bytes is over the %d byte limit", typ, n, f.max)}
	}
	total := n + 1
	if total <= f.r.Size() {
		raw, err := f.r.Peek(total)
		if err != nil {
			return msg{}, unexpected(err)
		}
		_, _ = f.r.Discard(total)
		return msg{Type: typ, Raw: raw, Body: raw[5:]}, nil
	}
	if cap(f.spill) < total {
		f.spill = make([]byte, total)
	}
	raw := f.spill[:total]
	if _, err := io.ReadFull(f.r, raw); err != nil {
		return msg{}, unexpected(err)
	}
	return msg{Type: typ, Raw: raw, Body: raw[5:]}, nil
}

// shrink lets go of a large spill buffer once a big message is done with,
// so an idle session holds only its reader's buffer.
func (f *frameReader) shrink() {
	if cap(f.spill) > 256<<10 {
		f.spill = nil
	}
}

// ready reports whether a whole message is waiting in the read buffer, so
// reading it cannot block.
func (f *frameReader) ready() bool {
	n := f.r.Buffered()
	if n < 5 {
		return false
	}
	hdr, _ := f.r.Peek(5)
	size := int(binary.BigEndian.Uint32(hdr[1:5])) + 1
	return size <= n || size > f.r.Size()
}

// buffered reports whether more input is waiting in the read buffer, so the
// relay can batch its writes until the input runs dry.
func (f *frameReader) buffered() bool { return f.r.Buffered() > 0 }

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
