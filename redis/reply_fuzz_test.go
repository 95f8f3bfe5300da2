package redis

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"testing"
	"testing/iotest"
)

// FuzzReplyReader feeds arbitrary bytes to a ReplyReader, with the default
// limits and with small ones. Properties:
//
//   - it never panics, and never returns a reply longer than the input;
//   - it agrees with refParse, a separate recursive-descent framer written
//     for this test, on every reply (bytes, kind, push) and on how the
//     stream ends (EOF, unexpected EOF, or a protocol error);
//   - reading the same bytes one byte at a time gives the same replies;
//   - each reply's raw bytes, read alone, are exactly one reply with the
//     same kind;
//   - the concatenation of the replies splits back into the same replies.
func FuzzReplyReader(f *testing.F) {
	for _, tt := range validReplies {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range fuzzLimits {
			checkReplyStream(t, data, lim)
		}
	})
}

type replyLimits struct{ bulk, depth, agg, reply int }

var fuzzLimits = []replyLimits{
	{DefaultMaxBulkLen, DefaultMaxDepth, DefaultMaxAggregateLen, DefaultMaxReplySize},
	{bulk: 16, depth: 3, agg: 4, reply: 64},
}

func newLimited(r io.Reader, lim replyLimits) *ReplyReader {
	rr := NewReplyReader(r)
	rr.MaxBulkLen, rr.MaxDepth, rr.MaxAggregateLen, rr.MaxReplySize = lim.bulk, lim.depth, lim.agg, lim.reply
	return rr
}

type seenReply struct {
	raw  string
	kind byte
	push bool
}

// readAll returns every reply rr gives and the error that ends the stream,
// classified as io.EOF, io.ErrUnexpectedEOF or ErrProtocol.
func readAll(t *testing.T, rr *ReplyReader) ([]seenReply, error) {
	var out []seenReply
	for {
		rep, err := rr.Next()
		if err != nil {
			switch {
			case err == io.EOF, err == io.ErrUnexpectedEOF:
				return out, err
			case errors.Is(err, ErrProtocol):
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("ErrProtocol without a *ProtocolError: %v", err)
				}
				return out, ErrProtocol
			}
			t.Fatalf("unexpected error %v", err)
		}
		if rep.Kind == '|' || rep.Push != (rep.Kind == '>') {
			t.Fatalf("reply %q has Kind %q Push %v", rep.Raw, rep.Kind, rep.Push)
		}
		out = append(out, seenReply{string(rep.Raw), rep.Kind, rep.Push})
	}
}

func checkReplyStream(t *testing.T, data []byte, lim replyLimits) {
	got, end := readAll(t, newLimited(bytes.NewReader(data), lim))

	// Against the reference framer.
	want, wantEnd := refStream(data, lim)
	if len(got) != len(want) || end != wantEnd {
		t.Fatalf("limits %+v: ReplyReader gives %d replies then %v; refParse %d then %v\ngot  %+v\nwant %+v", lim, len(got), end, len(want), wantEnd, got, want)
	}
	var all []byte
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("limits %+v: reply %d = %+v, refParse says %+v", lim, i, got[i], want[i])
		}
		all = append(all, got[i].raw...)
	}
	if !bytes.HasPrefix(data, all) {
		t.Fatalf("the replies are not a prefix of the input")
	}

	// One byte at a time.
	slow, slowEnd := readAll(t, newLimited(iotest.OneByteReader(bytes.NewReader(data)), lim))
	if len(slow) != len(got) || slowEnd != end {
		t.Fatalf("limits %+v: one byte at a time gives %d replies then %v; whole %d then %v", lim, len(slow), slowEnd, len(got), end)
	}
	for i := range slow {
		if slow[i] != got[i] {
			t.Fatalf("one byte at a time: reply %d = %+v, whole %+v", i, slow[i], got[i])
		}
	}

	// Each reply alone, and all of them again.
	for _, rep := range got {
		alone, aloneEnd := readAll(t, newLimited(bytes.NewReader([]byte(rep.raw)), lim))
		if len(alone) != 1 || alone[0] != rep || aloneEnd != io.EOF {
			t.Fatalf("reply %q alone reads as %+v then %v", rep.raw, alone, aloneEnd)
		}
	}
	again, againEnd := readAll(t, newLimited(iotest.HalfReader(bytes.NewReader(all)), lim))
	if len(again) != len(got) || againEnd != io.EOF {
		t.Fatalf("the concatenated replies read as %d replies then %v, want %d then EOF", len(again), againEnd, len(got))
	}
	for i := range again {
		if again[i] != got[i] {
			t.Fatalf("concatenated: reply %d = %+v, want %+v", i, again[i], got[i])
		}
	}
}

// refStream frames data with refParse, reply after reply.
func refStream(data []byte, lim replyLimits) ([]seenReply, error) {
	var out []seenReply
	for {
		if len(data) == 0 {
			return out, io.EOF
		}
		p := &refParser{data: data, lim: lim}
		switch p.value(0) {
		case refIncomplete:
			return out, io.ErrUnexpectedEOF
		case refBad:
			return out, ErrProtocol
		}
		out = append(out, seenReply{string(data[:p.pos]), p.kind, p.kind == '>'})
		data = data[p.pos:]
	}
}

const (
	refOK = iota
	refIncomplete
	refBad
)

// refParser is the reference framer: a straightforward recursive descent
// over input that is all there, written from the RESP3 specification and
// the documented limits rather than from ReplyReader's code.
type refParser struct {
	data []byte
	pos  int
	lim  replyLimits
	kind byte
}

var (
	refInteger = regexp.MustCompile(`^-?[0-9]+$`)
	refLength  = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
)

// value parses one value, with any attributes before it, at depth (the
// number of aggregates around it).
func (p *refParser) value(depth int) int {
	for {
		start := p.pos
		if start >= len(p.data) {
			return refIncomplete
		}
		t := p.data[start]
		if !bytes.ContainsRune([]byte("+-:$*_,#!=(%~>|"), rune(t)) {
			return refBad
		}
		lineMax := 32
		if bytes.IndexByte([]byte("+-,("), t) >= 0 {
			lineMax = p.lim.bulk
		}
		rest := p.data[start:]
		cr := bytes.IndexByte(rest[1:], '\r')
		if cr < 0 {
			if len(rest)-1 > lineMax || start+len(rest)+2 > p.lim.reply {
				return refBad
			}
			return refIncomplete
		}
		cr++ // index in rest
		if cr-1 > lineMax {
			return refBad
		}
		if cr+1 >= len(rest) {
			if start+cr+2 > p.lim.reply {
				return refBad
			}
			return refIncomplete
		}
		if rest[cr+1] != '\n' {
			return refBad
		}
		line := string(rest[1:cr])
		size := cr + 2
		count := 0
		switch t {
		case '+', '-', ',':
			if bytes.IndexByte([]byte(line), '\n') >= 0 || (t == ',' && line == "") {
				return refBad
			}
		case ':', '(':
			if !refInteger.MatchString(line) {
				return refBad
			}
		case '_':
			if line != "" {
				return refBad
			}
		case '#':
			if line != "t" && line != "f" {
				return refBad
			}
		case '$', '!', '=':
			n, st := refLen(t, line, p.lim.bulk)
			if st != refOK {
				return st
			}
			if n >= 0 {
				if start+size+n+2 > p.lim.reply {
					return refBad
				}
				if len(rest) < size+n+2 {
					return refIncomplete
				}
				if string(rest[size+n:size+n+2]) != "\r\n" {
					return refBad
				}
				if t == '=' && (n < 4 || rest[size+3] != ':') {
					return refBad
				}
				size += n + 2
			}
		default: // aggregates
			n, st := refLen(t, line, p.lim.agg)
			if st != refOK {
				return st
			}
			count = n
			if t == '%' || t == '|' {
				count = 2 * n
			}
		}
		if start+size > p.lim.reply {
			return refBad
		}
		if count > 0 && depth >= p.lim.depth {
			return refBad
		}
		if depth == 0 && t != '|' {
			p.kind = t
		}
		p.pos = start + size
		for range count {
			if st := p.value(depth + 1); st != refOK {
				return st
			}
		}
		if t != '|' {
			return refOK
		}
		// An attribute: the value it annotates follows, at the same depth.
	}
}

// refLen parses a length or count: -1 for '$' and '*' (a null), else 0 to
// max.
func refLen(t byte, line string, max int) (int, int) {
	if line == "-1" && (t == '$' || t == '*') {
		return -1, refOK
	}
	if !refLength.MatchString(line) {
		return 0, refBad
	}
	n, err := strconv.Atoi(line)
	if err != nil || n > max {
		return 0, refBad
	}
	return n, refOK
}
