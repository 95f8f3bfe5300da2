package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/sidecar"
)

// outrigger is one in-process run of `outrigger run -c FILE`.
type outrigger struct {
	t    *testing.T
	Path string // the config file
	Srv  *sidecar.Server
	Logs *testenv.SyncBuffer
	sigs chan os.Signal
	done chan int
}

func integrationOnly(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: -short")
	}
}

// startOutrigger writes yaml to a config file and runs the sidecar on it
// until the test ends (then it is sent SIGTERM and must exit 0).
func startOutrigger(t *testing.T, yaml string) *outrigger {
	t.Helper()
	o := &outrigger{t: t, Path: filepath.Join(t.TempDir(), "outrigger.yaml"), Logs: &testenv.SyncBuffer{},
		sigs: make(chan os.Signal, 1), done: make(chan int, 1)}
	if err := os.WriteFile(o.Path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	started := make(chan *sidecar.Server, 1)
	go func() {
		o.done <- cli.Main(context.Background(), []string{"run", "-c", o.Path}, cli.Options{
			Stdout: o.Logs, Stderr: o.Logs, Signals: o.sigs, Environ: []string{},
			Started: func(s *sidecar.Server) { started <- s },
		})
	}()
	select {
	case o.Srv = <-started:
	case code := <-o.done:
		t.Fatalf("outrigger exited with %d:\n%s", code, o.Logs)
	case <-time.After(30 * time.Second):
		o.sigs <- syscall.SIGTERM // no cleanup stops it: it stops itself if it ever starts
		t.Fatalf("outrigger did not start:\n%s", o.Logs)
	}
	t.Cleanup(func() {
		o.sigs <- syscall.SIGTERM
		select {
		case code := <-o.done:
			if code != 0 {
				t.Errorf("outrigger exit code %d", code)
			}
		case <-time.After(60 * time.Second):
			t.Error("outrigger did not exit after SIGTERM")
		}
		if t.Failed() {
			t.Logf("outrigger log:\n%s", o.Logs)
		}
	})
	return o
}

// rewrite replaces the config file the way `kubectl apply` of a ConfigMap
// lands: new content renamed over the old.
func (o *outrigger) rewrite(yaml string) {
	o.t.Helper()
	tmp := o.Path + ".new"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		o.t.Fatal(err)
	}
	if err := os.Rename(tmp, o.Path); err != nil {
		o.t.Fatal(err)
	}
}

// admin GETs a path on the admin server.
func (o *outrigger) admin(path string) (int, string) {
	o.t.Helper()
	resp, err := http.Get("http://" + o.Srv.AdminAddr().String() + path)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample line of /metrics ("name{labels}"),
// or -1 when absent.
func (o *outrigger) metric(series string) float64 {
	o.t.Helper()
	_, body := o.admin("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return -1
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// outriggerBinary builds cmd/outrigger once per test run.
func outriggerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outrigger-bin-*")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "outrigger")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/outrigger/outrigger/cmd/outrigger").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	// The Outrigger servers these tests run in-process would set the test
	// process's GOMAXPROCS (runtime.max_procs: auto); with GOMAXPROCS in
	// the environment, auto keeps what the tests run with.
	if os.Getenv("GOMAXPROCS") == "" {
		os.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func httpPost(url string) (int, error) {
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
