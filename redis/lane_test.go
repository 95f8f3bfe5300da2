package redis

import (
	"errors"
	"net"
	"testing"
	"time"
)

// laneWithServer starts a server that accepts one connection and answers
// every command frame it reads with +OK after the delay the test sends for
// it (never when negative), and a lane to it.
func laneWithServer(t *testing.T, timeout time.Duration, replies <-chan time.Duration) *lane {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cr := NewCommandReader(c, 1<<20)
		for {
			if _, err := cr.Next(); err != nil {
				return
			}
			d, ok := <-replies
			if !ok {
				return
			}
			if d < 0 {
				continue // never answer this one
			}
			time.Sleep(d)
			if _, err := c.Write([]byte("+OK\r\n")); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	l := newLane(conn, timeout, nil, nil, nil)
	t.Cleanup(func() { l.close(nil) })
	return l
}

func roundTrip(l *lane) *slot {
	sl := &slot{wake: make(chan struct{}, 1)}
	l.send([]byte("*1\r\n$4\r\nPING\r\n"), sl)
	for !sl.isDone() {
		<-sl.wake
	}
	return sl
}

// The reply clock is lazy (the read deadline is set when it expires, not
// per command): a lane idle for several timeouts still serves its next
// command, and commands whose replies each come within the timeout succeed
// however long they take together.
func TestLaneIdleLongerThanTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	replies := make(chan time.Duration, 8)
	l := laneWithServer(t, timeout, replies)
	replies <- 0
	if sl := roundTrip(l); sl.err != nil || string(sl.buf) != "+OK\r\n" {
		t.Fatalf("first command: %q %v", sl.buf, sl.err)
	}
	time.Sleep(4 * timeout) // the deadline expires while the lane is idle
	for i := range 3 {
		replies <- timeout / 2
		if sl := roundTrip(l); sl.err != nil || string(sl.buf) != "+OK\r\n" {
			t.Fatalf("command %d after an idle spell: %q %v", i, sl.buf, sl.err)
		}
	}
	if !l.alive() {
		t.Fatalf("lane closed: %v", l.failure())
	}
}

// A command with no reply fails with errCommandTimeout, no sooner than the
// timeout after it was sent, and closes the lane.
func TestLaneCommandTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	replies := make(chan time.Duration, 8)
	l := laneWithServer(t, timeout, replies)
	replies <- 0
	roundTrip(l)
	time.Sleep(timeout * 3 / 4) // a deadline set earlier may expire before the command's own
	replies <- -1
	start := time.Now()
	sl := roundTrip(l)
	took := time.Since(start)
	if !errors.Is(sl.err, errCommandTimeout) {
		t.Fatalf("unanswered command: got %q %v, want errCommandTimeout", sl.buf, sl.err)
	}
	if took < timeout {
		t.Errorf("the command failed after %v, before its timeout %v", took, timeout)
	}
	if l.alive() {
		t.Error("the lane is still open after a timeout")
	}
}
