package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pair returns two connected sockets of network ("tcp" or "unix"), the
// first wrapped.
func pair(t *testing.T, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-acc
	if peer == nil {
		t.Fatal("accept failed")
	}
	w := Wrap(c)
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { w.Close(); peer.Close() })
	return w, peer
}

func TestReadWrite(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			c, peer := pair(t, network)
			// Larger than any socket buffer: Write must wait for the peer.
			msg := bytes.Repeat([]byte("outrigger"), 1<<20)
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(peer, int64(len(msg))))
				got <- b
			}()
			n, err := c.Write(msg)
			if err != nil || n != len(msg) {
				t.Fatalf("Write = %d, %v; want %d", n, err, len(msg))
			}
			if b := <-got; !bytes.Equal(b, msg) {
				t.Fatalf("the peer read %d bytes, not what was written", len(b))
			}
			go peer.Write([]byte("reply"))
			buf := make([]byte, 16)
			n, err = io.ReadAtLeast(c, buf, 5)
			if err != nil || string(buf[:n]) != "reply" {
				t.Fatalf("Read = %q, %v", buf[:n], err)
			}
			peer.Close()
			if n, err := c.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("Read after the peer closed = %d, %v; want io.EOF", n, err)
			}
		})
	}
}

func TestDeadlineAndClose(t *testing.T) {
	c, _ := pair(t, "tcp")
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v; want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	c.Close()
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed conn: %v; want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed conn: %v; want net.ErrClosed", err)
	}
}

// TryWrite takes what the socket has room for and never waits: against a
// peer that does not read, it ends up taking nothing.
func TestTryWriteFull(t *testing.T) {
	c, peer := pair(t, "tcp")
	chunk := make([]byte, 64<<10)
	total := 0
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("the socket never filled")
		}
		n, err := TryWrite(c, chunk)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n == 0 {
			break
		}
	}
	got, err := io.ReadAll(io.LimitReader(peer, int64(total)))
	if err != nil || len(got) != total {
		t.Fatalf("the peer read %d of %d bytes: %v", len(got), total, err)
	}
	peer.Close()
	time.Sleep(10 * time.Millisecond)
	var err2 error
	for range 100 { // a reset shows on a later write
		if _, err2 = TryWrite(c, chunk); err2 != nil {
			break
		}
	}
	if err2 == nil {
		t.Error("TryWrite to a closed peer never failed")
	}
}

func TestWrapLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Error("Wrap changed a pipe")
	}
	if CanTryWrite(a) {
		t.Error("CanTryWrite on a pipe")
	}
	if _, err := TryWrite(a, []byte("x")); err == nil {
		t.Error("TryWrite on a pipe did not fail")
	}
}

// A read or write allocates nothing (the hot path of every frontend).
func TestNoAllocs(t *testing.T) {
	c, peer := pair(t, "tcp")
	msg := []byte("ping")
	buf := make([]byte, 64)
	pbuf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, pbuf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := TryWrite(c, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, pbuf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round trip, want 0", allocs)
	}
}

func BenchmarkWriteRead(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(s, s) // echo
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := Wrap(nc)
	defer c.Close()
	msg, buf := []byte("*1\r\n$4\r\nPING\r\n"), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		c.Write(msg)
		io.ReadFull(c, buf[:len(msg)])
	}
}
