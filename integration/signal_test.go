package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/internal/testenv"
)

var sighup = syscall.SIGHUP

// TestSIGTERMDrains runs the real binary: with a connection in flight, SIGTERM
// closes the listener (new connections are refused), lets the open
// connection finish its work, and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	integrationOnly(t)
	bin := outriggerBinary(t)
	up := testenv.EchoServer(t)
	listen, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "outrigger.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`admin: {listen: %s}
shutdown: {drain_timeout: 20s}
tcp:
  - {name: a, listen: %s, upstream: {address: %s}}
`, admin, listen, up)), 0o644)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = []string{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(waited)
		exited <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
		if t.Failed() {
			t.Logf("outrigger log:\n%s", logs.String())
		}
	})

	var c net.Conn
	eventually(t, "the listener", func() bool {
		var err error
		c, err = net.Dial("tcp", listen)
		return err == nil
	})
	defer c.Close()
	r := bufio.NewReader(c)
	say(t, c, r, "in flight\n")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new connections to be refused", func() bool {
		nc, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			nc.Close()
			return false
		}
		return true
	})
	// The connection that was open keeps working during the drain.
	say(t, c, r, "still in flight\n")
	select {
	case err := <-exited:
		t.Fatalf("exited before its connection finished: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	c.Close() // the client finishes
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not exit after its last connection closed")
	}
}

// TestDrainTimeoutClosesStragglers: a connection that outlives
// shutdown.drain_timeout is closed and the process still exits 0.
func TestDrainTimeoutClosesStragglers(t *testing.T) {
	integrationOnly(t)
	up := testenv.EchoServer(t)
	listen := testenv.FreeAddr(t)
	o := startOutrigger(t, fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
shutdown: {drain_timeout: 300ms}
tcp:
  - {name: a, listen: %s, upstream: {address: %s}}
`, listen, up))
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	say(t, c, r, "hello\n")
	// POST /drain starts the same drain as SIGTERM.
	resp, err := httpPost("http://" + o.Srv.AdminAddr().String() + "/drain")
	if err != nil || resp != 202 {
		t.Fatalf("POST /drain = %d, %v", resp, err)
	}
	select {
	case code := <-o.done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		o.done <- code // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after the drain timeout")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("straggler connection still open")
	}
}

// TestDemo runs the demo as `make demo` does, with DEMO_EXIT=1: it must print
// its summary and exit 0, leaving nothing running.
func TestDemo(t *testing.T) {
	integrationOnly(t)
	pgClient(t, "pgbench")
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		t.Skip("redis-benchmark not found (apt-get install redis-tools)")
	}
	bin := filepath.Join(t.TempDir(), "outrigger-demo")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/outrigger/outrigger/cmd/outrigger-demo").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DEMO_EXIT=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"== Summary", "transactions/s", "requests/s", "Stopped and removed"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The summary's columns are as wide as its widest value, which depends
	// on the throughput measured: match the row, not its padding.
	if !regexp.MustCompile(`(?m)^\s*failed transactions\s+0\s`).Match(out) {
		t.Errorf("demo output lacks a failed transactions row of 0:\n%s", out)
	}
}
