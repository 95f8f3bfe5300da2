package pg

import (
	"bufio"
	"io"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/sidecar"
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
// with the queue item pushed by the client side. With access-log the
// access log is on but writes nothing (sample_rate 0, no slow or failed
// round trip): what every round trip pays for the lines that are written,
// the kept statement text. Neither allocates.
func BenchmarkRelayRoundTrip(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchRoundTrip(b, nil) })
	b.Run("access-log", func(b *testing.B) {
		benchRoundTrip(b, sidecar.NewAccessLogTo(io.Discard, config.AccessLog{Enabled: true, SlowThreshold: time.Hour}))
	})
}

func benchRoundTrip(b *testing.B, log *sidecar.AccessLog) {
	var stream []byte
	stream = appendMsg(stream, 'T', []byte{0, 1}, []byte("a\x00"), make([]byte, 18))
	stream = appendMsg(stream, 'D', []byte{0, 1, 0, 0, 0, 1}, []byte("1"))
	stream = appendMsg(stream, 'C', []byte("SELECT 1\x00"))
	stream = appendMsg(stream, 'Z', []byte{'T'})
	sql := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;")
	srv := &server{fr: newFrameReader(&cyclic{b: stream}, serverReadBuffer, 1<<30), settings: emptySettings}
	env := testEnv()
	env.AccessLog = log
	s := &session{h: &Handler{env: env, cfg: &config.Postgres{}}, conn: discardConn{}, w: bufio.NewWriterSize(io.Discard, 8<<10), txStatus: 'T', pool: &serverPool{m: newHandlerMetrics(env).pool(poolKey{"db", "u"})}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.mu.Lock()
		s.q.push(item{kind: itQuery, start: time.Now(), obs: s.startRoundTrip(sql)})
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
