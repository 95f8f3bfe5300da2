package redis

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// validReplies are one complete reply each, of every type.
var validReplies = []struct {
	name string
	in   string
	kind byte
	push bool
}{
	{"simple string", "+OK\r\n", '+', false},
	{"empty simple string", "+\r\n", '+', false},
	{"simple error", "-ERR unknown command 'foo'\r\n", '-', false},
	{"integer", ":1000\r\n", ':', false},
	{"negative integer", ":-42\r\n", ':', false},
	{"bulk", "$5\r\nhello\r\n", '$', false},
	{"empty bulk", "$0\r\n\r\n", '$', false},
	{"bulk holding CRLF", "$4\r\na\r\nb\r\n", '$', false},
	{"binary bulk", "$3\r\n\x00\r\xff\r\n", '$', false},
	{"null bulk", "$-1\r\n", '$', false},
	{"array", "*2\r\n$3\r\nfoo\r\n:1\r\n", '*', false},
	{"empty array", "*0\r\n", '*', false},
	{"null array", "*-1\r\n", '*', false},
	{"nested arrays", "*3\r\n*2\r\n+a\r\n*0\r\n*-1\r\n*1\r\n*1\r\n$-1\r\n", '*', false},
	{"null", "_\r\n", '_', false},
	{"double", ",3.14\r\n", ',', false},
	{"double inf", ",-inf\r\n", ',', false},
	{"boolean true", "#t\r\n", '#', false},
	{"boolean false", "#f\r\n", '#', false},
	{"blob error", "!21\r\nSYNTAX invalid syntax\r\n", '!', false},
	{"verbatim", "=15\r\ntxt:Some string\r\n", '=', false},
	{"big number", "(3492890328409238509324850943850943825024385\r\n", '(', false},
	{"negative big number", "(-1\r\n", '(', false},
	{"map", "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", '%', false},
	{"empty map", "%0\r\n", '%', false},
	{"set", "~3\r\n+a\r\n+b\r\n#t\r\n", '~', false},
	{"push", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", '>', true},
	{"invalidate push", ">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n", '>', true},
	{"attribute then bulk", "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n$3\r\nfoo\r\n", '$', false},
	{"attribute inside array", "*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", '*', false},
	{"attribute then push", "|1\r\n+a\r\n+b\r\n>1\r\n+x\r\n", '>', true},
	{"empty attribute", "|0\r\n:1\r\n", ':', false},
	{"attribute on an attribute", "|1\r\n|1\r\n+x\r\n+y\r\n+k\r\n+v\r\n#f\r\n", '#', false},
	{"attribute in a map value", "%1\r\n+k\r\n|1\r\n+a\r\n+b\r\n*1\r\n:1\r\n", '%', false},
	{"map of aggregates", "%1\r\n*1\r\n:1\r\n~1\r\n#t\r\n", '%', false},
	{"push inside array", "*1\r\n>1\r\n:1\r\n", '*', false},
}

func TestReplyReaderValid(t *testing.T) {
	for _, tt := range validReplies {
		t.Run(tt.name, func(t *testing.T) {
			for _, rd := range readers(tt.in) {
				rr := NewReplyReader(rd.r)
				rep, err := rr.Next()
				if err != nil {
					t.Fatalf("%s: Next: %v", rd.name, err)
				}
				if string(rep.Raw) != tt.in || rep.Kind != tt.kind || rep.Push != tt.push {
					t.Fatalf("%s: Next = {%q %q push=%v}, want {%q %q push=%v}", rd.name, rep.Raw, rep.Kind, rep.Push, tt.in, tt.kind, tt.push)
				}
				if _, err := rr.Next(); err != io.EOF {
					t.Fatalf("%s: Next after the reply: %v, want io.EOF", rd.name, err)
				}
			}
		})
	}
}

// TestReplyReaderStream reads every valid reply back to back, through
// readers that split the input in different ways.
func TestReplyReaderStream(t *testing.T) {
	var all strings.Builder
	for _, tt := range validReplies {
		all.WriteString(tt.in)
	}
	for _, rd := range readers(all.String()) {
		t.Run(rd.name, func(t *testing.T) {
			rr := NewReplyReader(rd.r)
			for i, tt := range validReplies {
				rep, err := rr.Next()
				if err != nil {
					t.Fatalf("reply %d (%s): %v", i, tt.name, err)
				}
				if string(rep.Raw) != tt.in || rep.Kind != tt.kind || rep.Push != tt.push {
					t.Fatalf("reply %d = {%q %q %v}, want %q", i, rep.Raw, rep.Kind, rep.Push, tt.in)
				}
			}
			if _, err := rr.Next(); err != io.EOF {
				t.Fatalf("at the end: %v, want io.EOF", err)
			}
			if _, err := rr.Next(); err != io.EOF {
				t.Fatalf("io.EOF is not sticky: %v", err)
			}
		})
	}
}

type namedReader struct {
	name string
	r    io.Reader
}

// readers returns s through readers that deliver it whole, a byte at a
// time, in halves, and with io.EOF along with the last data.
func readers(s string) []namedReader {
	return []namedReader{
		{"whole", strings.NewReader(s)},
		{"one byte", iotest.OneByteReader(strings.NewReader(s))},
		{"half", iotest.HalfReader(strings.NewReader(s))},
		{"data+EOF", iotest.DataErrReader(strings.NewReader(s))},
	}
}

func TestReplyReaderErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit func(*ReplyReader)
		want  error // ErrProtocol, ErrReplyLimit, io.EOF or io.ErrUnexpectedEOF
	}{
		{"empty stream", "", nil, io.EOF},
		{"unknown type", "?x\r\n", nil, ErrProtocol},
		{"inline text", "OK\r\n", nil, ErrProtocol},
		{"CR without LF", "+OK\rX\r\n", nil, ErrProtocol},
		{"LF inside a simple string", "+O\nK\r\n", nil, ErrProtocol},
		{"LF inside an error", "-E\nR\r\n", nil, ErrProtocol},
		{"integer not a number", ":abc\r\n", nil, ErrProtocol},
		{"empty integer", ":\r\n", nil, ErrProtocol},
		{"sign only", ":-\r\n", nil, ErrProtocol},
		{"big number not a number", "(12a\r\n", nil, ErrProtocol},
		{"bulk length not a number", "$abc\r\n", nil, ErrProtocol},
		{"bulk length -2", "$-2\r\n", nil, ErrProtocol},
		{"bulk length with a leading zero", "$01\r\na\r\n", nil, ErrProtocol},
		{"bulk length with a plus", "$+1\r\na\r\n", nil, ErrProtocol},
		{"empty bulk length", "$\r\n", nil, ErrProtocol},
		{"bulk longer than its length", "$3\r\nabcd\r\n", nil, ErrProtocol},
		{"streamed bulk", "$?\r\n;4\r\nHell\r\n;0\r\n", nil, ErrProtocol},
		{"streamed array", "*?\r\n:1\r\n.\r\n", nil, ErrProtocol},
		{"streamed map", "%?\r\n", nil, ErrProtocol},
		{"negative map", "%-1\r\n", nil, ErrProtocol},
		{"negative set", "~-1\r\n", nil, ErrProtocol},
		{"negative push", ">-1\r\n", nil, ErrProtocol},
		{"negative blob error", "!-1\r\n", nil, ErrProtocol},
		{"null with a payload", "_x\r\n", nil, ErrProtocol},
		{"boolean x", "#x\r\n", nil, ErrProtocol},
		{"boolean too long", "#tt\r\n", nil, ErrProtocol},
		{"empty double", ",\r\n", nil, ErrProtocol},
		{"verbatim too short", "=3\r\nabc\r\n", nil, ErrProtocol},
		{"verbatim without colon", "=5\r\nabcde\r\n", nil, ErrProtocol},
		{"header line too long", ":" + strings.Repeat("1", 40) + "\r\n", nil, ErrProtocol},
		{"bad element inside array", "*2\r\n:1\r\n?\r\n", nil, ErrProtocol},
		{"truncated bulk", "$5\r\nhel", nil, io.ErrUnexpectedEOF},
		{"truncated header", "$5", nil, io.ErrUnexpectedEOF},
		{"truncated after CR", "+OK\r", nil, io.ErrUnexpectedEOF},
		{"truncated array", "*2\r\n:1\r\n", nil, io.ErrUnexpectedEOF},
		{"attribute alone", "|1\r\n+a\r\n+b\r\n", nil, io.ErrUnexpectedEOF},
		{"bulk length over MaxBulkLen", "$11\r\nhello world\r\n", func(r *ReplyReader) { r.MaxBulkLen = 10 }, ErrReplyLimit},
		{"huge bulk length", "$99999999999999999999999999\r\n", nil, ErrReplyLimit},
		{"simple string over MaxBulkLen", "+hello world\r\n", func(r *ReplyReader) { r.MaxBulkLen = 10 }, ErrReplyLimit},
		{"simple string over MaxBulkLen, unterminated", "+hello world", func(r *ReplyReader) { r.MaxBulkLen = 10 }, ErrReplyLimit},
		{"too deep", "*1\r\n*1\r\n*1\r\n:1\r\n", func(r *ReplyReader) { r.MaxDepth = 2 }, ErrReplyLimit},
		{"attribute counts as depth", "*1\r\n|1\r\n+a\r\n+b\r\n:1\r\n", func(r *ReplyReader) { r.MaxDepth = 1 }, ErrReplyLimit},
		{"array over MaxAggregateLen", "*4\r\n", func(r *ReplyReader) { r.MaxAggregateLen = 3 }, ErrReplyLimit},
		{"map over MaxAggregateLen", "%4\r\n", func(r *ReplyReader) { r.MaxAggregateLen = 3 }, ErrReplyLimit},
		{"huge array", "*99999999999\r\n", nil, ErrReplyLimit},
		{"reply over MaxReplySize", "*3\r\n$10\r\n0123456789\r\n", func(r *ReplyReader) { r.MaxReplySize = 20 }, ErrReplyLimit},
		{"bulk over MaxReplySize", "$30\r\n", func(r *ReplyReader) { r.MaxReplySize = 20 }, ErrReplyLimit},
		{"line over MaxReplySize", "*1\r\n+" + strings.Repeat("x", 30), func(r *ReplyReader) { r.MaxReplySize = 20 }, ErrReplyLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, rd := range readers(tt.in) {
				rr := NewReplyReader(rd.r)
				if tt.limit != nil {
					tt.limit(rr)
				}
				rep, err := rr.Next()
				if !errors.Is(err, tt.want) {
					t.Fatalf("%s: Next = %q, %v; want %v", rd.name, rep.Raw, err, tt.want)
				}
				var pe *ProtocolError
				if errors.Is(tt.want, ErrProtocol) || errors.Is(tt.want, ErrReplyLimit) {
					if !errors.As(err, &pe) || !errors.Is(err, ErrProtocol) {
						t.Fatalf("%s: %v is not a *ProtocolError wrapping ErrProtocol", rd.name, err)
					}
					if errors.Is(err, ErrReplyLimit) != (tt.want == ErrReplyLimit) {
						t.Fatalf("%s: %v: ErrReplyLimit is %v, want %v", rd.name, err, !(tt.want == ErrReplyLimit), tt.want == ErrReplyLimit)
					}
				}
				if _, err2 := rr.Next(); err2 != err {
					t.Fatalf("%s: error not sticky: %v, then %v", rd.name, err, err2)
				}
			}
		})
	}
}

func TestProtocolErrorOffset(t *testing.T) {
	rr := NewReplyReader(strings.NewReader("+OK\r\n*2\r\n:1\r\n:x\r\n"))
	if _, err := rr.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := rr.Next()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Offset != 13 {
		t.Fatalf("err = %v, want a *ProtocolError at offset 13", err)
	}
	if !strings.Contains(err.Error(), "byte 13") {
		t.Fatalf("Error() = %q", err.Error())
	}
}

// TestReplyReaderRawLifetime checks that Raw aliases the buffer (valid
// until the next call) and cannot be appended into the buffer.
func TestReplyReaderRawLifetime(t *testing.T) {
	rr := NewReplyReader(strings.NewReader("+a\r\n+b\r\n"))
	a, _ := rr.Next()
	if cap(a.Raw) != len(a.Raw) {
		t.Fatalf("Raw has spare capacity %d: an append would write into the buffer", cap(a.Raw)-len(a.Raw))
	}
	if rr.Buffered() != 4 {
		t.Fatalf("Buffered() = %d, want 4", rr.Buffered())
	}
	b, _ := rr.Next()
	if string(b.Raw) != "+b\r\n" || rr.Buffered() != 0 {
		t.Fatalf("second reply %q, Buffered %d", b.Raw, rr.Buffered())
	}
}

// timeoutReader returns the chunks in turn, with a timeout error between
// them, like a connection with a read deadline.
type timeoutReader struct {
	chunks []string
	gap    bool
}

var errTimeout = errors.New("i/o timeout")

func (r *timeoutReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	if r.gap {
		r.gap = false
		return 0, errTimeout
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if r.chunks[0] == "" {
		r.chunks = r.chunks[1:]
		r.gap = true
	}
	return n, nil
}

// TestReplyReaderResumesAfterReadError: a read error that is not EOF
// leaves the reply in progress intact, and Next can be called again.
func TestReplyReaderResumesAfterReadError(t *testing.T) {
	rr := NewReplyReader(&timeoutReader{chunks: []string{"*2\r\n$5\r\nhe", "llo\r\n:", "1\r\n+OK\r\n"}})
	var got []string
	timeouts := 0
	for {
		rep, err := rr.Next()
		if errors.Is(err, errTimeout) {
			timeouts++
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(rep.Raw))
	}
	if strings.Join(got, "|") != "*2\r\n$5\r\nhello\r\n:1\r\n|+OK\r\n" || timeouts != 2 {
		t.Fatalf("got %q after %d timeouts", got, timeouts)
	}
}

func TestReplyReaderReset(t *testing.T) {
	rr := NewReplyReader(strings.NewReader("?bad\r\n"))
	if _, err := rr.Next(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v", err)
	}
	rr.Reset(strings.NewReader(":1\r\n"))
	if rep, err := rr.Next(); err != nil || string(rep.Raw) != ":1\r\n" {
		t.Fatalf("after Reset: %q, %v", rep.Raw, err)
	}
	var zero ReplyReader
	if _, err := zero.Next(); err != io.EOF {
		t.Fatalf("zero ReplyReader: %v, want io.EOF", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReplyReaderNoProgress(t *testing.T) {
	if _, err := NewReplyReader(zeroReader{}).Next(); err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

// TestReplyReaderBufferBounds: the buffer grows with the data that arrives
// and no further than the reply needs, and shrinks after a large reply.
func TestReplyReaderBufferBounds(t *testing.T) {
	t.Run("announced bulk allocates nothing by itself", func(t *testing.T) {
		rr := NewReplyReader(strings.NewReader("$500000000\r\nabc"))
		if _, err := rr.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("err = %v", err)
		}
		if len(rr.buf) > initialBufSize {
			t.Fatalf("buffer grew to %d for a 500 MB announcement", len(rr.buf))
		}
	})
	t.Run("endless line stops at the limit", func(t *testing.T) {
		rr := NewReplyReader(io.MultiReader(strings.NewReader("+"), endless('x')))
		rr.MaxBulkLen = 1 << 20
		if _, err := rr.Next(); !errors.Is(err, ErrReplyLimit) {
			t.Fatalf("err = %v", err)
		}
		if len(rr.buf) > 2<<20+initialBufSize {
			t.Fatalf("buffer grew to %d", len(rr.buf))
		}
	})
	t.Run("large bulk then shrink", func(t *testing.T) {
		big := bulk(3 << 20)
		rr := NewReplyReader(iotest.HalfReader(strings.NewReader(string(big) + "+OK\r\n")))
		rep, err := rr.Next()
		if err != nil || !bytes.Equal(rep.Raw, big) {
			t.Fatalf("large bulk: %d bytes, %v", len(rep.Raw), err)
		}
		if len(rr.buf) > len(big)+initialBufSize {
			t.Fatalf("buffer %d for a reply of %d", len(rr.buf), len(big))
		}
		if rep, err := rr.Next(); err != nil || string(rep.Raw) != "+OK\r\n" {
			t.Fatalf("after: %q, %v", rep.Raw, err)
		}
		if len(rr.buf) > DefaultMaxRetained {
			t.Fatalf("buffer still %d after a small reply", len(rr.buf))
		}
	})
}

type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

// bulk returns a bulk string reply with n bytes of payload.
func bulk(n int) []byte {
	var b bytes.Buffer
	b.WriteString("$")
	b.WriteString(strconv.Itoa(n))
	b.WriteString("\r\n")
	b.Write(bytes.Repeat([]byte{'v'}, n))
	b.WriteString("\r\n")
	return b.Bytes()
}

// repeatReader serves pattern over and over, like an upstream that answers
// the same pipeline forever.
type repeatReader struct {
	pattern []byte
	off     int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pattern[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pattern)
	}
	return n, nil
}

// smallPipeline is what a pipelined GET/SET/INCR/LRANGE workload answers.
var smallPipeline = []byte("+OK\r\n$5\r\nhello\r\n:42\r\n*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n_\r\n%1\r\n+k\r\n#t\r\n")

func TestReplyReaderDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern []byte
	}{{"small replies", smallPipeline}, {"512 KiB bulks", bulk(512 << 10)}} {
		rr := NewReplyReader(&repeatReader{pattern: tc.pattern})
		for range 100 { // warm up: the buffer and the stack reach their size
			if _, err := rr.Next(); err != nil {
				t.Fatal(err)
			}
		}
		if allocs := testing.AllocsPerRun(1000, func() {
			if _, err := rr.Next(); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("%s: %v allocations per reply, want 0", tc.name, allocs)
		}
	}
}

func BenchmarkReplyReader(b *testing.B) {
	for _, bc := range []struct {
		name    string
		pattern []byte
		replies int // in one pattern
	}{
		{"small", smallPipeline, 7},
		{"bulk16KiB", bulk(16 << 10), 1},
		{"bulk512KiB", bulk(512 << 10), 1},
		{"bulk4MiB", bulk(4 << 20), 1}, // above MaxRetained: a buffer per reply
	} {
		b.Run(bc.name, func(b *testing.B) {
			rr := NewReplyReader(&repeatReader{pattern: bc.pattern})
			b.SetBytes(int64(len(bc.pattern) / bc.replies))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rr.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
