package testenv

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// handedOut remembers every port FreePort has returned in this process, so two
// servers started back to back never get the same port from us. The kernel can
// still give a returned port to someone else before the server binds it; the
// server starters retry with a new port when the bind fails.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that
// this process has not handed out before. It fails the test if none is found.
// PickFreePort is the same for programs that have no testing.TB.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := PickFreePort()
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	return port
}

// FreeAddr returns "127.0.0.1:NNNN" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// PickFreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before (through FreePort, FreeAddr or
// PickFreePort), or an error if none is found.
func PickFreePort() (int, error) {
	var lastErr error
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			lastErr = err
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		handedOut.Lock()
		seen := handedOut.ports[port]
		handedOut.ports[port] = true
		handedOut.Unlock()
		if !seen {
			return port, nil
		}
	}
	if lastErr == nil {
		lastErr = errNoFreePort
	}
	return 0, lastErr
}
