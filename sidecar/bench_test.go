package sidecar

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

// BenchmarkTCPProxyThroughput pushes bytes client -> proxy -> sink over
// loopback through the whole tcp listener path (accept, admit, dial, Pipe
// with splice). Compare against BenchmarkLoopbackDirect for the proxy's cost.
func BenchmarkTCPProxyThroughput(b *testing.B) {
	sink := testenv.SinkServer(b)
	srv := startServerB(b, tcpYAML("address: "+sink, ""))
	benchmarkStream(b, srv.ListenerAddr("t").String())
}

// BenchmarkLoopbackDirect is the same stream with no proxy in between.
func BenchmarkLoopbackDirect(b *testing.B) {
	benchmarkStream(b, testenv.SinkServer(b))
}

// BenchmarkTCPProxyConnect measures a whole short connection through the
// proxy: connect, one echo round trip, close.
func BenchmarkTCPProxyConnect(b *testing.B) {
	up := testenv.EchoServer(b)
	srv := startServerB(b, tcpYAML("address: "+up, ""))
	addr := srv.ListenerAddr("t").String()
	buf := make([]byte, 5)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write([]byte("ping\n"))
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func benchmarkStream(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

func startServerB(b *testing.B, yaml string) *Server {
	b.Helper()
	cfg := mustLoad(b, yaml)
	srv := NewServer(Options{Logger: testLogger(b)})
	if err := srv.Apply(cfg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		done := make(chan struct{})
		go func() { srv.Shutdown(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	return srv
}
