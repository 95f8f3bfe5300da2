package pg

import (
	"bufio"
	"io"
	"testing"

	"github.com/outrigger/outrigger/config"
)

// cyclic repeats one byte stream forever.
type cyclic struct {
	b   []byte
	off int
}

func (c *cyclic) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.b[c.off:])
		n += k
		c.off = (c.off + k) % len(c.b)
	}
	return n, nil
}

// BenchmarkRelayDataRow measures the relay's per-message work for the
// message that dominates result sets: framing a DataRow from the server's
// read buffer, checking it against the expected-reply queue and copying it
// into the client's write buffer. It must not allocate.
func BenchmarkRelayDataRow(b *testing.B) {
	row := appendMsg(nil, 'D', []byte{0, 2, 0, 0, 0, 5}, []byte("hello"), []byte{0, 0, 0, 8}, []byte("12345678"))
	var stream []byte
	for range 64 {
		stream = append(stream, row...)
	}
	srv := &server{fr: newFrameReader(&cyclic{b: stream}, serverReadBuffer, 1<<30), settings: emptySettings}
	s := &session{conn: discardConn{}, w: bufio.NewWriterSize(io.Discard, 8<<10), txStatus: 'T'}
	s.q.push(item{kind: itExecute})
	b.SetBytes(int64(len(row)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m, err := srv.fr.next()
		if err != nil {
			b.Fatal(err)
		}
		s.mu.Lock()
		if s.onServer(srv, m) {
			b.Fatal("desync")
		}
		if !srv.fr.ready() {
			_ = s.flushClient()
		}
		s.mu.Unlock()
	}
}

// BenchmarkRelayRoundTrip is one simple-protocol round trip as the relay
// sees it: RowDescription, one DataRow, CommandComplete, ReadyForQuery,
// with the queue item pushed by the client side.
func BenchmarkRelayRoundTrip(b *testing.B) {
	var stream []byte
	stream = appendMsg(stream, 'T', []byte{0, 1}, []byte("a\x00"), make([]byte, 18))
	stream = appendMsg(stream, 'D', []byte{0, 1, 0, 0, 0, 1}, []byte("1"))
	stream = appendMsg(stream, 'C', []byte("SELECT 1\x00"))
	stream = appendMsg(stream, 'Z', []byte{'T'})
	srv := &server{fr: newFrameReader(&cyclic{b: stream}, serverReadBuffer, 1<<30), settings: emptySettings}
	s := &session{h: &Handler{cfg: &config.Postgres{}}, conn: discardConn{}, w: bufio.NewWriterSize(io.Discard, 8<<10), txStatus: 'T', pool: &serverPool{m: newHandlerMetrics(testEnv()).pool(poolKey{"db", "u"})}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.mu.Lock()
		s.q.push(item{kind: itQuery})
		s.mu.Unlock()
		for range 4 {
			m, err := srv.fr.next()
			if err != nil {
				b.Fatal(err)
			}
			s.mu.Lock()
			if s.onServer(srv, m) {
				b.Fatal("desync")
			}
			s.mu.Unlock()
		}
		s.mu.Lock()
		_ = s.flushClient()
		s.mu.Unlock()
	}
}
