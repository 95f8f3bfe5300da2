package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// toolResult is what a finished benchmark tool left.
type toolResult struct {
	stdout, stderr string
	err            error // exit status, timeout, or the watch firing
	elapsed        time.Duration
}

// runTool runs a client tool (pgbench, redis-benchmark) to completion with a
// timeout. When stderr shows watch (redis-benchmark's "Could not connect",
// after which it can hang for ever), the tool gets a few seconds to exit and
// is then killed.
func runTool(ctx context.Context, timeout time.Duration, path string, args, env []string, watch string) toolResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &watchWriter{needle: watch, fired: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- cmd.Run()
	}()
	var err error
	var watched bool
	select {
	case err = <-done:
	case <-stderr.fired:
		select {
		case err = <-done:
		case <-time.After(3 * time.Second):
			watched = true
			cancel()
			err = <-done
		}
	}
	res := toolResult{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	switch {
	case watched:
		res.err = fmt.Errorf("stopped after %q", watch)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.err = fmt.Errorf("no result within %v", timeout)
	default:
		res.err = err
	}
	return res
}

// watchWriter collects output and closes fired when needle first appears.
type watchWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	needle string
	fired  chan struct{}
	once   sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if w.needle != "" && bytes.Contains(w.buf.Bytes(), []byte(w.needle)) {
		w.once.Do(func() { close(w.fired) })
	}
	return n, err
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

var _ io.Writer = (*watchWriter)(nil)

// exitNote describes how a tool died, for a footnote ("killed by signal:
// segmentation fault").
func exitNote(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "crashed: " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// firstLine returns the first line of a command's output, trimmed.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// version runs path with args and returns the first line it prints
// (stdout, else stderr).
func version(path string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return firstLine(string(out))
}
