package redis

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrCommandTooLarge is returned by CommandReader.Next when a command is
// larger than the reader's limit.
var ErrCommandTooLarge = errors.New("redis: command too large")

// Cmd is one client command. Raw is its RESP encoding (an inline command is
// re-encoded as RESP) and Args its arguments; both point into the reader's
// buffer and are valid only until the next call to Next.
type Cmd struct {
	Raw  []byte
	Args [][]byte
}

// CommandReader reads client commands strictly, as Redis does: RESP arrays
// of bulk strings with canonical lengths (no sign, no leading zero), or
// inline commands (one line, split on spaces). Framing is done by a
// ReplyReader, so the same limits bound memory: one command may not exceed
// max bytes, and the buffer never holds more than one command beyond what
// has been returned. Empty arrays and empty inline lines are skipped, as
// Redis skips them.
type CommandReader struct {
	rr     ReplyReader
	max    int
	args   [][]byte
	inline []byte
}

// NewCommandReader reads commands from r, each at most max bytes.
func NewCommandReader(r io.Reader, max int) *CommandReader {
	cr := &CommandReader{max: max}
	cr.rr.rd = r
	cr.rr.Inline = true
	cr.rr.MaxBulkLen = max
	cr.rr.MaxReplySize = max
	cr.rr.MaxDepth = 1
	cr.rr.MaxAggregateLen = 1 << 20
	// Small to start: an idle client keeps little; a pipelining one grows
	// the buffer (and keeps it, up to MaxRetained).
	cr.rr.initial = 512
	return cr
}

// Buffered reports how many bytes of further commands are already read.
func (cr *CommandReader) Buffered() int { return cr.rr.Buffered() }

// Next returns the next command. Malformed input gives an error that
// matches ErrProtocol and reads like Redis's own ("Protocol error: ...");
// a command over the limit gives ErrCommandTooLarge. Both are final.
func (cr *CommandReader) Next() (Cmd, error) {
	for {
		rep, err := cr.rr.Next()
		if err != nil {
			switch {
			case !errors.Is(err, ErrReplyLimit):
				return Cmd{}, err
			case strings.Contains(err.Error(), "MaxDepth"):
				return Cmd{}, &ProtocolError{Offset: -1, Detail: "expected '$', got '*'"}
			case strings.Contains(err.Error(), "MaxAggregateLen"):
				return Cmd{}, &ProtocolError{Offset: -1, Detail: "invalid multibulk length"}
			}
			return Cmd{}, fmt.Errorf("%w: %w", ErrCommandTooLarge, err)
		}
		if rep.Kind == 'i' {
			cmd, ok, err := cr.parseInline(rep.Raw)
			if err != nil {
				return Cmd{}, err
			}
			if ok {
				return cmd, nil
			}
			continue
		}
		cmd, err := cr.parseArray(rep.Raw)
		if err != nil {
			return Cmd{}, err
		}
		if len(cmd.Args) > 0 {
			return cmd, nil
		}
	}
}

// parseArray splits a framed "*N" array into its bulk arguments. The
// ReplyReader has checked every length and CRLF; what is left to refuse is
// an element that is not a bulk string.
func (cr *CommandReader) parseArray(raw []byte) (Cmd, error) {
	i := bytes.IndexByte(raw, '\r')
	if raw[1] == '-' { // *-1: a null array, ignored
		return Cmd{}, nil
	}
	n := atoiChecked(raw[1:i])
	pos := i + 2
	cr.args = cr.args[:0]
	for k := 0; k < n; k++ {
		if raw[pos] != '$' {
			return Cmd{}, &ProtocolError{Offset: -1, Detail: fmt.Sprintf("expected '$', got '%c'", raw[pos])}
		}
		j := pos + bytes.IndexByte(raw[pos:], '\r')
		if raw[pos+1] == '-' {
			return Cmd{}, &ProtocolError{Offset: -1, Detail: "invalid bulk length"}
		}
		size := atoiChecked(raw[pos+1 : j])
		start := j + 2
		cr.args = append(cr.args, raw[start:start+size:start+size])
		pos = start + size + 2
	}
	return Cmd{Raw: raw, Args: cr.args}, nil
}

// atoiChecked parses digits the ReplyReader has already validated.
func atoiChecked(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}

// parseInline splits an inline command as Redis does (SplitArgs: white
// space, and "..." and '...' quoting with escapes) and re-encodes it as
// RESP. Unbalanced quotes are a protocol error, as on Redis.
func (cr *CommandReader) parseInline(line []byte) (Cmd, bool, error) {
	line = bytes.TrimRight(line, "\r\n")
	var fields [][]byte
	if bytes.ContainsAny(line, "\"'") {
		var err error
		if fields, err = SplitArgs(line); err != nil {
			return Cmd{}, false, &ProtocolError{Offset: -1, Detail: err.Error()}
		}
	} else {
		fields = bytes.Fields(line)
	}
	if len(fields) == 0 {
		return Cmd{}, false, nil
	}
	cr.inline = appendArrayHeader(cr.inline[:0], len(fields))
	cr.args = cr.args[:0]
	for _, f := range fields {
		cr.inline = appendBulkHeader(cr.inline, len(f))
		cr.inline = append(cr.inline, f...)
		cr.inline = append(cr.inline, '\r', '\n')
	}
	// Point the args at the re-encoded bytes, which Raw is.
	raw := cr.inline
	pos := bytes.IndexByte(raw, '\n') + 1
	for range fields {
		j := pos + bytes.IndexByte(raw[pos:], '\r')
		size := atoiChecked(raw[pos+1 : j])
		start := j + 2
		cr.args = append(cr.args, raw[start:start+size:start+size])
		pos = start + size + 2
	}
	return Cmd{Raw: raw, Args: cr.args}, true, nil
}

func appendArrayHeader(b []byte, n int) []byte {
	b = append(b, '*')
	b = appendInt(b, n)
	return append(b, '\r', '\n')
}

func appendBulkHeader(b []byte, n int) []byte {
	b = append(b, '$')
	b = appendInt(b, n)
	return append(b, '\r', '\n')
}

func appendInt(b []byte, n int) []byte {
	var tmp [20]byte
	i := len(tmp)
	if n == 0 {
		return append(b, '0')
	}
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[i:]...)
}
