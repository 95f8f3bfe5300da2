package redis

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Default limits of a ReplyReader; a zero limit field means its default.
const (
	// DefaultMaxBulkLen is Redis's own proto-max-bulk-len: 512 MiB.
	DefaultMaxBulkLen = 512 << 20
	// DefaultMaxDepth bounds how deeply aggregates (and attributes) nest.
	// Redis itself sends replies nested about 8000 deep: a Lua script that
	// returns a table containing itself is converted until Lua's C stack
	// limit (8000), then ends with -ERR reached lua stack limit. A frame of
	// the stack is a few words, so the bound costs at most a few hundred
	// KiB per reader, and only while such a reply is read.
	DefaultMaxDepth = 16 << 10
	// DefaultMaxAggregateLen bounds the element count of one aggregate (the
	// pair count of a map or attribute).
	DefaultMaxAggregateLen = 1<<32 - 1
	// DefaultMaxReplySize bounds the bytes of one whole reply, and so the
	// buffer: 1 GiB.
	DefaultMaxReplySize = 1 << 30
	// DefaultMaxRetained is the largest buffer a ReplyReader keeps between
	// replies; after a larger reply it goes back to a small one.
	DefaultMaxRetained = 1 << 20
)

// initialBufSize is the buffer a ReplyReader starts with.
const initialBufSize = 4 << 10

// maxEmptyReads is how many (0, nil) results from Read in a row make Next
// give up with io.ErrNoProgress.
const maxEmptyReads = 100

var (
	// ErrProtocol is wrapped by every error that malformed reply bytes cause
	// (a *ProtocolError). The stream cannot be resynchronized after one: the
	// connection must be closed.
	ErrProtocol = errors.New("redis: protocol error")
	// ErrReplyLimit is also wrapped by the *ProtocolError of a reply that
	// exceeds one of a ReplyReader's limits.
	ErrReplyLimit = errors.New("redis: reply exceeds a limit")
)

// ProtocolError describes a malformed or oversized reply. It wraps
// ErrProtocol, and ErrReplyLimit when a limit was exceeded.
type ProtocolError struct {
	// Offset is the position in the stream (counted from the first byte
	// the ReplyReader read) of the header the problem is in.
	Offset int64
	// Detail says what is wrong.
	Detail string
	limit  bool
}

// Error returns "redis: protocol error at byte N: detail", or for a limit
// "redis: reply exceeds a limit at byte N: detail".
func (e *ProtocolError) Error() string {
	if e.limit {
		return fmt.Sprintf("redis: reply exceeds a limit at byte %d: %s", e.Offset, e.Detail)
	}
	return fmt.Sprintf("redis: protocol error at byte %d: %s", e.Offset, e.Detail)
}

// Unwrap returns ErrProtocol, and ErrReplyLimit for a limit.
func (e *ProtocolError) Unwrap() []error {
	if e.limit {
		return []error{ErrProtocol, ErrReplyLimit}
	}
	return []error{ErrProtocol}
}

// Reply is one complete reply as ReplyReader.Next returns it.
type Reply struct {
	// Raw is the reply's bytes exactly as the server sent them, attributes
	// included, ending in CRLF. It aliases the reader's buffer: it is
	// valid only until the next call to Next or Reset. Copy it to keep it.
	Raw []byte
	// Kind is the RESP type byte of the reply's value (after any
	// attributes): one of + - : $ * for RESP2, and _ , # ! = ( % ~ > for
	// RESP3. It is never '|'.
	Kind byte
	// Push is true for a RESP3 push frame (Kind '>'): out-of-band data
	// such as a pub/sub message or a client-tracking invalidation, which
	// answers no command.
	Push bool
}

// IsError reports whether the reply is an error (simple '-' or blob '!').
func (r Reply) IsError() bool { return r.Kind == '-' || r.Kind == '!' }

// frame is an aggregate being scanned: how many elements it still needs,
// and whether it is an attribute (which annotates the value that follows it
// and is not an element of its parent).
type frame struct {
	remaining int
	attr      bool
}

// ReplyReader frames the replies a Redis server sends: it finds where each
// reply ends without decoding its values, so replies can be forwarded as
// raw bytes. It reads RESP2 and RESP3 (attributes and push frames
// included); RESP3 streamed strings and aggregates ($?, *? and the like),
// which Redis does not send, are refused as protocol errors.
//
// A ReplyReader owns one buffer. It grows by doubling as data arrives, no
// further than the end of the reply in hand when that is known, and never
// beyond MaxReplySize; once it has grown beyond MaxRetained, the next call
// to Next replaces it with a small one. In steady state Next does not
// allocate. The limits may be set before the first call to Next; zero means
// the default.
//
// A ReplyReader is not safe for concurrent use: one goroutine (the
// connection's reader) calls Next.
type ReplyReader struct {
	// MaxBulkLen bounds the length of a bulk, blob error or verbatim string
	// and of a simple string, simple error, double or big-number line
	// (default DefaultMaxBulkLen).
	MaxBulkLen int
	// MaxDepth bounds the nesting of aggregates and attributes (default
	// DefaultMaxDepth).
	MaxDepth int
	// MaxAggregateLen bounds the element count of an array, set or push,
	// and the pair count of a map or attribute (default
	// DefaultMaxAggregateLen).
	MaxAggregateLen int
	// MaxReplySize bounds the size of one whole reply (default
	// DefaultMaxReplySize). A reply is refused as soon as what has
	// arrived shows that it must exceed it.
	MaxReplySize int
	// MaxRetained is the largest buffer kept between replies (default
	// DefaultMaxRetained).
	MaxRetained int
	// Inline makes a top-level line that does not start with '*' one
	// "reply" of Kind 'i' (a client's inline command), as Redis reads
	// commands. Replies from servers never set it.
	Inline bool

	rd  io.Reader
	buf []byte
	// initial is the first buffer's size (0: initialBufSize).
	initial int
	r       int // buf[r:w] is unread: the reply being scanned starts at r
	w       int
	// last is the length of the reply the previous Next returned; the next
	// call consumes it (so Raw stays valid until then).
	last int
	// base is the stream offset of buf[0], for error offsets.
	base int64
	err  error // a sticky protocol error or io.EOF
	// readErr is an error Read returned together with data; it is
	// reported once that data is used up.
	readErr error

	// The scan of the reply in progress, resumable after more data arrives.
	pos   int // offset from r of the next header to scan
	seen  int // bytes after the type byte of the header at pos known to hold no CR
	need  int // bytes from r needed before scanning again
	stack []frame
	kind  byte
}

// NewReplyReader returns a ReplyReader that reads replies from rd with the
// default limits.
func NewReplyReader(rd io.Reader) *ReplyReader {
	return &ReplyReader{rd: rd}
}

// Reset makes rr read from rd, discarding any buffered data, scan state and
// error; it keeps the buffer and the limits.
func (rr *ReplyReader) Reset(rd io.Reader) {
	rr.rd = rd
	rr.r, rr.w, rr.last, rr.base = 0, 0, 0, 0
	rr.err, rr.readErr = nil, nil
	rr.resetScan()
}

// Buffered returns how many bytes after the last reply Next returned are
// already in the buffer (so 0 means the next Next will read from the
// connection). A relay can use it to write replies out once per batch.
func (rr *ReplyReader) Buffered() int { return rr.w - rr.r - rr.last }

// Next returns the next complete reply. Its Raw bytes are valid only until
// the next call to Next or Reset.
//
// At the end of the stream between replies Next returns io.EOF, and inside
// a reply io.ErrUnexpectedEOF. Malformed or oversized input gives a
// *ProtocolError (errors.Is ErrProtocol). Both are sticky: every later call
// returns the same error. Any other error from the underlying reader is
// returned as is, and Next may be called again (after a read deadline, for
// example): the reply in progress is kept.
func (rr *ReplyReader) Next() (Reply, error) {
	if rr.err != nil {
		return Reply{}, rr.err
	}
	rr.consume()
	for {
		done, err := rr.scan()
		if err != nil {
			rr.err = err
			return Reply{}, err
		}
		if done {
			end := rr.r + rr.pos
			rep := Reply{Raw: rr.buf[rr.r:end:end], Kind: rr.kind, Push: rr.kind == '>'}
			rr.last = rr.pos
			rr.resetScan()
			return rep, nil
		}
		if err := rr.fill(); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				rr.err = err
			}
			return Reply{}, err
		}
	}
}

func (rr *ReplyReader) resetScan() {
	rr.pos, rr.seen, rr.need, rr.kind = 0, 0, 0, 0
	rr.stack = rr.stack[:0]
}

// consume drops the reply the previous Next returned, and gives back an
// outsized buffer.
func (rr *ReplyReader) consume() {
	rr.r += rr.last
	rr.last = 0
	if rr.r == rr.w {
		rr.base += int64(rr.r)
		rr.r, rr.w = 0, 0
	}
	if init := rr.initialSize(); len(rr.buf) > max(limit(rr.MaxRetained, DefaultMaxRetained), init) && rr.w-rr.r <= init {
		nb := make([]byte, init)
		rr.base += int64(rr.r)
		rr.w = copy(nb, rr.buf[rr.r:rr.w])
		rr.r = 0
		rr.buf = nb
	}
}

// fill reads more data into the free end of the buffer. When there is
// none, it moves the unread bytes to the front if that makes room for the
// reply in progress (or frees half the buffer), and otherwise doubles the
// buffer, but not beyond the end of the reply in progress when that is
// known (rr.need) nor beyond MaxReplySize. So the buffer grows only as data
// arrives: a header announcing a huge bulk allocates nothing by itself.
func (rr *ReplyReader) fill() error {
	if rr.readErr != nil {
		err := rr.readErr
		rr.readErr = nil
		return rr.eof(err)
	}
	if rr.rd == nil {
		return rr.eof(io.EOF)
	}
	if rr.w == len(rr.buf) {
		if rr.r > 0 && (rr.need <= len(rr.buf) || rr.r >= len(rr.buf)/2) {
			rr.base += int64(rr.r)
			rr.w = copy(rr.buf, rr.buf[rr.r:rr.w])
			rr.r = 0
		} else {
			size := max(2*len(rr.buf), rr.initialSize())
			if rr.need > rr.w-rr.r+1 {
				size = min(size, rr.need)
			}
			size = min(size, limit(rr.MaxReplySize, DefaultMaxReplySize))
			size = max(size, rr.w-rr.r+1)
			nb := make([]byte, size)
			rr.base += int64(rr.r)
			rr.w = copy(nb, rr.buf[rr.r:rr.w])
			rr.r = 0
			rr.buf = nb
		}
	}
	for range maxEmptyReads {
		n, err := rr.rd.Read(rr.buf[rr.w:])
		if n < 0 || n > len(rr.buf)-rr.w {
			return errors.New("redis: reader returned an invalid count")
		}
		rr.w += n
		if n > 0 {
			rr.readErr = err
			return nil
		}
		if err != nil {
			return rr.eof(err)
		}
	}
	return io.ErrNoProgress
}

func (rr *ReplyReader) initialSize() int {
	if rr.initial > 0 {
		return rr.initial
	}
	return initialBufSize
}

// eof turns io.EOF inside a reply into io.ErrUnexpectedEOF.
func (rr *ReplyReader) eof(err error) error {
	if err == io.EOF && rr.w > rr.r {
		return io.ErrUnexpectedEOF
	}
	return err
}

func limit(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// maxHeaderLine bounds the line of a length, count, integer, null or
// boolean header: digits of an int64 and a sign, with room to spare.
const maxHeaderLine = 32

// scan advances over the buffered headers and payloads of the reply in
// progress. It reports true when the reply is complete (rr.pos is then its
// length), false when it needs more data (rr.need says how much).
func (rr *ReplyReader) scan() (bool, error) {
	if rr.w-rr.r < rr.need {
		return false, nil
	}
	maxBulk := limit(rr.MaxBulkLen, DefaultMaxBulkLen)
	maxReply := limit(rr.MaxReplySize, DefaultMaxReplySize)
	for {
		data := rr.buf[rr.r+rr.pos : rr.w]
		if len(data) == 0 {
			rr.need = rr.pos + 1
			return false, nil
		}
		t := data[0]
		if rr.Inline && t != '*' && len(rr.stack) == 0 && rr.pos == 0 {
			return rr.scanInline(data)
		}
		lineMax := maxHeaderLine
		switch t {
		case '+', '-', ',', '(':
			lineMax = maxBulk
		case ':', '_', '#', '$', '!', '=', '*', '%', '~', '>', '|':
		default:
			return false, rr.protoErr("unknown reply type byte %q", t)
		}

		// Find the CR that ends the header line, resuming where the last
		// attempt stopped.
		i := bytes.IndexByte(data[1+rr.seen:], '\r')
		if i < 0 {
			rr.seen = len(data) - 1
			if rr.seen > lineMax {
				return false, rr.lineTooLong(t, lineMax)
			}
			if rr.pos+len(data)+2 > maxReply { // the line still needs its CRLF
				return false, rr.limitErr("reply larger than MaxReplySize %d", maxReply)
			}
			rr.need = rr.pos + len(data) + 1
			return false, nil
		}
		cr := 1 + rr.seen + i
		if cr-1 > lineMax {
			return false, rr.lineTooLong(t, lineMax)
		}
		if cr+1 >= len(data) {
			if rr.pos+cr+2 > maxReply {
				return false, rr.limitErr("reply larger than MaxReplySize %d", maxReply)
			}
			rr.seen = cr - 1 // look at this CR again
			rr.need = rr.pos + cr + 2
			return false, nil
		}
		if data[cr+1] != '\n' {
			return false, rr.protoErr("CR not followed by LF in %q header", t)
		}
		line := data[1:cr]
		hdr := cr + 2
		rr.seen = 0

		size := hdr // bytes of this header and its payload
		element := true
		var count int // elements of a new aggregate
		switch t {
		case '+', '-', ',':
			if bytes.IndexByte(line, '\n') >= 0 {
				return false, rr.protoErr("LF inside a %q line", t)
			}
			if t == ',' && len(line) == 0 {
				return false, rr.protoErr("empty double")
			}
		case ':', '(':
			if !validInteger(line) {
				return false, rr.protoErr("invalid number %q in %q reply", line, t)
			}
		case '_':
			if len(line) != 0 {
				return false, rr.protoErr("null with a payload %q", line)
			}
		case '#':
			if len(line) != 1 || (line[0] != 't' && line[0] != 'f') {
				return false, rr.protoErr("invalid boolean %q", line)
			}
		case '$', '!', '=':
			n, err := rr.length(t, line, maxBulk, "MaxBulkLen")
			if err != nil {
				return false, err
			}
			if n >= 0 {
				if hdr+n+2 > maxReply-rr.pos {
					return false, rr.limitErr("reply larger than MaxReplySize %d", maxReply)
				}
				size = hdr + n + 2
				if len(data) < size {
					rr.need = rr.pos + size
					return false, nil
				}
				if data[size-2] != '\r' || data[size-1] != '\n' {
					return false, rr.protoErr("%q payload of %d bytes not followed by CRLF", t, n)
				}
				if t == '=' && (n < 4 || data[hdr+3] != ':') {
					return false, rr.protoErr("verbatim string without a 3-byte format and ':'")
				}
			}
		case '*', '%', '~', '>', '|':
			n, err := rr.length(t, line, limit(rr.MaxAggregateLen, DefaultMaxAggregateLen), "MaxAggregateLen")
			if err != nil {
				return false, err
			}
			count = n
			if t == '%' || t == '|' {
				count = 2 * n
			}
			if t == '|' {
				element = false // annotates the value that follows
			}
		}

		if rr.pos+size > maxReply {
			return false, rr.limitErr("reply larger than MaxReplySize %d", maxReply)
		}
		if maxDepth := limit(rr.MaxDepth, DefaultMaxDepth); count > 0 && len(rr.stack) >= maxDepth {
			return false, rr.limitErr("aggregates nested deeper than MaxDepth %d", maxDepth)
		}
		if len(rr.stack) == 0 && t != '|' {
			rr.kind = t
		}
		rr.pos += size

		if count > 0 {
			rr.stack = append(rr.stack, frame{remaining: count, attr: t == '|'})
			continue
		}
		if element && rr.elementDone() {
			rr.need = 0
			return true, nil
		}
	}
}

// MaxInline bounds an inline command's line, as Redis's PROTO_INLINE_MAX_SIZE.
const MaxInline = 64 << 10

// scanInline finds the end of an inline command: one line up to LF. It is
// returned whole (CR and LF included) with Kind 'i'.
func (rr *ReplyReader) scanInline(data []byte) (bool, error) {
	i := bytes.IndexByte(data[rr.seen:], '\n')
	if i < 0 {
		rr.seen = len(data)
		if rr.seen > MaxInline {
			return false, rr.limitErr("inline command longer than %d bytes", MaxInline)
		}
		rr.need = len(data) + 1
		return false, nil
	}
	rr.pos = rr.seen + i + 1
	rr.seen, rr.need = 0, 0
	rr.kind = 'i'
	return true, nil
}

// elementDone counts one complete element against the open aggregates and
// reports whether the whole reply is complete.
func (rr *ReplyReader) elementDone() bool {
	for len(rr.stack) > 0 {
		top := &rr.stack[len(rr.stack)-1]
		top.remaining--
		if top.remaining > 0 {
			return false
		}
		attr := top.attr
		rr.stack = rr.stack[:len(rr.stack)-1]
		if attr {
			// The attribute is complete; the value it annotates follows
			// and is the element.
			return false
		}
	}
	return true
}

// length parses the length or count in the header line of type t: -1 (a
// RESP2 null, only for '$' and '*'), or 0 to maxN.
func (rr *ReplyReader) length(t byte, line []byte, maxN int, what string) (int, error) {
	if len(line) == 1 && line[0] == '?' {
		return 0, rr.protoErr("streamed %q reply (RESP3 streaming is not supported)", t)
	}
	if len(line) == 2 && line[0] == '-' && line[1] == '1' {
		if t == '$' || t == '*' {
			return -1, nil
		}
		return 0, rr.protoErr("negative length in %q header", t)
	}
	if len(line) == 0 || (line[0] == '0' && len(line) > 1) {
		return 0, rr.protoErr("invalid length %q in %q header", line, t)
	}
	n := 0
	for _, c := range line {
		if c < '0' || c > '9' {
			return 0, rr.protoErr("invalid length %q in %q header", line, t)
		}
		n = n*10 + int(c-'0')
		if n > maxN {
			return 0, rr.limitErr("%q length %s exceeds %s %d", t, line, what, maxN)
		}
	}
	return n, nil
}

// validInteger reports whether b is an optional '-' and one or more digits.
func validInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (rr *ReplyReader) lineTooLong(t byte, maxLen int) error {
	if maxLen == maxHeaderLine {
		return rr.protoErr("%q header line longer than %d bytes", t, maxLen)
	}
	return rr.limitErr("%q line longer than MaxBulkLen %d", t, maxLen)
}

func (rr *ReplyReader) protoErr(format string, args ...any) error {
	return &ProtocolError{Offset: rr.base + int64(rr.r+rr.pos), Detail: fmt.Sprintf(format, args...)}
}

func (rr *ReplyReader) limitErr(format string, args ...any) error {
	return &ProtocolError{Offset: rr.base + int64(rr.r+rr.pos), Detail: fmt.Sprintf(format, args...), limit: true}
}
