package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
	"github.com/outrigger/outrigger/internal/testenv"
)

// TestCheckListsEveryProblem: `outrigger check` on a file with three errors
// prints all three, each with its key path, and exits 1.
func TestCheckListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(`
postgres:
  - name: appdb
    listen: 127.0.0.1:6432
    upstream: {address: 127.0.0.1:5432}
    pool: {size: 0}
    auth: {method: trust}
redis:
  - name: cache
    listen: 127.0.0.1:6380
    upstream: {address: "no-port-here"}
tcp:
  - {name: other, listen: 127.0.0.1:7000, upstream: {address: 127.0.0.1:7001}, idle_timout: 5s}
`), 0o644)
	var out bytes.Buffer
	code := cli.Main(context.Background(), []string{"check", "-c", path}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}})
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, &out)
	}
	for _, want := range []string{
		"postgres[0].pool.size: must be > 0",
		"redis[0].upstream.address:",
		"tcp[0].idle_timout: unknown key",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, &out)
		}
	}
	// The unknown key stops decoding first; the other two come from Validate,
	// so check them with the typo fixed too.
	os.WriteFile(path, bytes.Replace(mustRead(t, path), []byte("idle_timout: 5s"), []byte("idle_timeout: -5s"), 1), 0o644)
	out.Reset()
	cli.Main(context.Background(), []string{"check", "-c", path}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}})
	if n := strings.Count(out.String(), path+": "); n != 3 {
		t.Errorf("%d problems printed, want 3:\n%s", n, &out)
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckGoodConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(path, []byte(`tcp: [{name: other, listen: 127.0.0.1:7000, upstream: {address: 127.0.0.1:7001}}]`), 0o644)
	var out bytes.Buffer
	if code := cli.Main(context.Background(), []string{"check", "-c", path}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}}); code != 0 {
		t.Fatalf("exit %d:\n%s", code, &out)
	}
	if !strings.Contains(out.String(), "ok: 1 listener(s): tcp other 127.0.0.1:7000") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("summary = %q", &out)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := cli.Main(context.Background(), []string{"version"}, cli.Options{Stdout: &out}); code != 0 {
		t.Fatal(code)
	}
	if !strings.HasPrefix(out.String(), "outrigger ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("version = %q", &out)
	}
}

func say(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, line)
	got, err := r.ReadString('\n')
	if err != nil || got != line {
		t.Fatalf("round trip %q: got %q, %v", line, got, err)
	}
}

// TestLiveReload: a file change that adds a listener keeps an open connection
// on an unchanged listener alive; a broken file is rejected whole, the
// running config stays, and the rejected counter goes up.
func TestLiveReload(t *testing.T) {
	integrationOnly(t)
	up := testenv.EchoServer(t)
	a, b := testenv.FreeAddr(t), testenv.FreeAddr(t)
	base := fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
reload: {debounce: 50ms}
tcp:
  - {name: a, listen: %s, upstream: {address: %s}}
`, a, up)
	o := startOutrigger(t, base)
	c, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	say(t, c, r, "before\n")

	o.rewrite(base + fmt.Sprintf("  - {name: b, listen: %s, upstream: {address: %s}}\n", b, up))
	eventually(t, "listener b", func() bool {
		cb, err := net.Dial("tcp", b)
		if err == nil {
			cb.Close()
		}
		return err == nil
	})
	say(t, c, r, "after adding b\n")
	if v := o.metric(`outrigger_config_reloads_total{result="success"}`); v != 2 {
		t.Errorf("successful reloads = %v, want 2 (start + file change)", v)
	}
	if v := o.metric("outrigger_config_push_latency_seconds_count"); v != 1 {
		t.Errorf("push latency observations = %v, want 1", v)
	}

	// Broken: a typo'd key and a bad duration. Rejected whole.
	o.rewrite(base + fmt.Sprintf("  - {name: b, listen: %s, upstream: {address: %s}, idle_timeout: soon, colour: red}\n", b, up))
	eventually(t, "the rejected counter", func() bool {
		return o.metric(`outrigger_config_reloads_total{result="rejected"}`) == 1
	})
	if !strings.Contains(o.Logs.String(), "colour: unknown key") {
		t.Errorf("rejection does not list the problem:\n%s", o.Logs)
	}
	say(t, c, r, "after a broken file\n")
	cb, err := net.Dial("tcp", b)
	if err != nil {
		t.Fatalf("listener b gone after a rejected reload: %v", err)
	}
	rb := bufio.NewReader(cb)
	say(t, cb, rb, "b still serves\n")
	cb.Close()
	if code, body := o.admin("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
}

// TestSIGHUPReload reloads on SIGHUP as well as on file change.
func TestSIGHUPReload(t *testing.T) {
	integrationOnly(t)
	up := testenv.EchoServer(t)
	a, b := testenv.FreeAddr(t), testenv.FreeAddr(t)
	base := fmt.Sprintf(`admin: {listen: "127.0.0.1:0"}
reload: {watch: false}
tcp:
  - {name: a, listen: %s, upstream: {address: %s}}
`, a, up)
	o := startOutrigger(t, base)
	o.rewrite(base + fmt.Sprintf("  - {name: b, listen: %s, upstream: {address: %s}}\n", b, up))
	time.Sleep(100 * time.Millisecond)
	if o.Srv.ListenerAddr("b") != nil {
		t.Fatal("reloaded without SIGHUP while reload.watch is false")
	}
	o.sigs <- sighup
	eventually(t, "listener b after SIGHUP", func() bool { return o.Srv.ListenerAddr("b") != nil })
}

// TestRuntimeMaxProcs runs the binary: runtime.max_procs sets GOMAXPROCS
// (go_sched_gomaxprocs_threads on /metrics), a reload changes it, and with
// auto a GOMAXPROCS environment variable wins.
func TestRuntimeMaxProcs(t *testing.T) {
	integrationOnly(t)
	bin := outriggerBinary(t)
	admin := testenv.FreeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "outrigger.yaml")
	write := func(maxProcs string) {
		tmp := cfgPath + ".new"
		os.WriteFile(tmp, []byte(fmt.Sprintf("admin: {listen: %s}\nreload: {debounce: 50ms}\nruntime: {max_procs: %s}\n", admin, maxProcs)), 0o644)
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write("2")
	var logs testenv.SyncBuffer
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = []string{"GOMAXPROCS=3"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("outrigger log:\n%s", logs.String())
		}
	})
	gomaxprocs := func() float64 {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
				var v float64
				fmt.Sscan(rest, &v)
				return v
			}
		}
		return -1
	}
	eventually(t, "GOMAXPROCS 2 from max_procs: 2", func() bool { return gomaxprocs() == 2 })
	write("auto")
	eventually(t, "GOMAXPROCS 3 from the environment with max_procs: auto", func() bool { return gomaxprocs() == 3 })
	write("1")
	eventually(t, "GOMAXPROCS 1 after a reload to max_procs: 1", func() bool { return gomaxprocs() == 1 })
}
