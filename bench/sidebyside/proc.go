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

// procSpec describes one long-running child: a contestant.
type procSpec struct {
	name     string
	path     string
	args     []string
	dir      string
	env      []string
	cred     *syscall.Credential // run as this user; nil: as ourselves
	logPath  string              // stdout and stderr
	stopSig  syscall.Signal
	stopWait time.Duration // before SIGKILL; 0: 5 s
}

// proc is a running child. It is in its own process group, and the kernel
// kills it if the harness dies (Pdeathsig), so nothing outlives a crashed
// or interrupted run.
type proc struct {
	spec    procSpec
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
}

// startProc starts spec with its output appended to spec.logPath.
func startProc(spec procSpec) (*proc, error) {
	logFile, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(spec.cred)
	p := &proc{spec: spec, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits; keep
		// this thread until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends the stop signal, then SIGKILL to the child's process group
// after the grace period. Safe to call more than once.
func (p *proc) stop() error {
	p.stopOnce.Do(func() {
		pid := p.pid()
		wait := p.spec.stopWait
		if wait == 0 {
			wait = 5 * time.Second
		}
		if !p.exited() {
			_ = syscall.Kill(pid, p.spec.stopSig)
			select {
			case <-p.done:
			case <-time.After(wait):
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-p.done
				p.stopErr = fmt.Errorf("%s (pid %d) ignored %v for %v and was killed", p.spec.name, pid, p.spec.stopSig, wait)
			}
		}
		// Stragglers of our own group (none expected).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	})
	return p.stopErr
}

func (p *proc) logTail(n int) string { return fileTail(p.spec.logPath, n) }

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(log empty)"
	}
	return s
}

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
	cmd.SysProcAttr = sysProcAttr(nil)
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
