package testenv

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

var errNoFreePort = errors.New("testenv: no free port found")

// stopGrace is how long a server gets to exit after its stop signal before it
// (and its whole process group) is sent SIGKILL.
const stopGrace = 10 * time.Second

// procSpec describes one child process.
type procSpec struct {
	name       string              // for messages: "postgres", "redis-server", "initdb"
	path       string              // absolute path of the binary
	args       []string            // arguments, without argv[0]
	dir        string              // working directory
	env        []string            // added to os.Environ()
	cred       *syscall.Credential // run as this user; nil: as ourselves
	logPath    string              // stdout and stderr are appended here
	stopSignal syscall.Signal      // first rung of the stop ladder
	grace      time.Duration       // before SIGKILL; 0 means stopGrace
}

// process is a running child started by startProcess. One goroutine owns the
// exec.Cmd: it starts the child, calls Wait and then closes done; every other
// method only reads done, so a process may be stopped from any goroutine, once
// or more.
type process struct {
	spec    procSpec
	cmd     *exec.Cmd
	done    chan struct{} // closed when the child has exited and been reaped
	waitErr error         // valid after done is closed

	stopOnce sync.Once
	stopErr  error
}

// startProcess starts spec as a child in its own process group, with stdout
// and stderr appended to spec.logPath (the file descriptor is handed to the
// child, so no goroutine copies output).
func startProcess(spec procSpec) (*process, error) {
	logFile, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testenv: open %s log: %w", spec.name, err)
	}
	defer logFile.Close() // the child has its own copy after Start

	cmd := exec.Command(spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr(spec.cred)
	p := &process{spec: spec, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child
		// exits, not the process. Keep that thread for this goroutine alone
		// until the child is gone, so the Go runtime cannot retire it early.
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
		return nil, fmt.Errorf("testenv: start %s: %w", spec.name, err)
	}
	return p, nil
}

// pid returns the child's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the child has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the child: its stop signal, then SIGKILL to its process group
// after stopGrace. Any member of the group still alive after the leader exits
// (a Postgres backend, say) is killed as well. It is safe to call more than
// once; later calls return the first result.
func (p *process) stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.doStop() })
	return p.stopErr
}

func (p *process) doStop() error {
	pid := p.pid()
	grace := p.spec.grace
	if grace == 0 {
		grace = stopGrace
	}
	var killed bool
	if !p.exited() {
		_ = syscall.Kill(pid, p.spec.stopSignal)
		select {
		case <-p.done:
		case <-time.After(grace):
			killed = true
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// The leader is gone; its process group id cannot be reused while any
	// member exists, so this reaches only our stragglers.
	if groupAlive(pid) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		// Wait (briefly) until the kernel has torn them down, so that nothing
		// of ours runs or holds a port when we return.
		for deadline := time.Now().Add(2 * time.Second); groupAlive(pid) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if killed {
		return fmt.Errorf("testenv: %s (pid %d) ignored %v for %v and was killed", p.spec.name, pid, p.spec.stopSignal, grace)
	}
	return nil
}

// logTail returns about the last maxBytes of the child's log, starting at a
// line boundary.
func (p *process) logTail(maxBytes int) string {
	return fileTail(p.spec.logPath, maxBytes)
}

func fileTail(path string, maxBytes int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(st.Size()-int64(maxBytes), 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	if len(b) == 0 {
		return "(log empty)"
	}
	return strings.TrimRight(string(b), "\n")
}

// runToCompletion runs spec (a short-lived tool such as initdb) and returns
// its combined output. It shares sysProcAttr with startProcess, so the tool
// runs as the same user as the server and dies with the test binary.
func runToCompletion(ctx context.Context, spec procSpec) ([]byte, error) {
	cmd := exec.CommandContext(ctx, spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = append(os.Environ(), spec.env...)
	cmd.SysProcAttr = sysProcAttr(spec.cred)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out []byte
	var err error
	done := make(chan struct{})
	go func() { // see startProcess
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	<-done
	if err != nil {
		return out, fmt.Errorf("testenv: %s: %w", spec.name, err)
	}
	return out, nil
}

// launchSpec tells launch how to start one server and how to tell it is ready.
type launchSpec struct {
	name    string                                    // "postgres", "redis-server"
	build   func(port int) procSpec                   // the process to run on port
	ready   func(ctx context.Context, port int) error // nil once the server serves
	timeout time.Duration                             // for one attempt to become ready
}

// launchServer starts a server on a free port and waits until ready
// succeeds. If the server exits before that because its port was taken in the
// meantime, it tries again with a new port (three attempts in all), telling
// logf. On error no process of its is left running, and the error holds the
// tail of the server log.
func launchServer(ls launchSpec, logf logf) (*process, int, error) {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		port, err := PickFreePort()
		if err != nil {
			return nil, 0, fmt.Errorf("testenv: find a free port: %w", err)
		}
		spec := ls.build(port)
		start := time.Now()
		p, err := startProcess(spec)
		if err != nil {
			return nil, 0, err
		}
		err = waitReady(p, port, ls)
		if err == nil {
			return p, port, nil
		}
		exited, tail := p.exited(), p.logTail(logTailBytes)
		_ = p.stop()
		if exited && attempt < attempts && strings.Contains(tail, "already in use") {
			logf("testenv: %s port %d was taken, retrying with another", ls.name, port)
			_ = os.Truncate(spec.logPath, 0)
			continue
		}
		return nil, 0, fmt.Errorf("testenv: %s (pid %d, port %d) not ready after %v: %w\n--- log tail (%s) ---\n%s",
			ls.name, p.pid(), port, time.Since(start).Round(time.Millisecond), err, spec.logPath, tail)
	}
}

// waitReady polls ls.ready until it succeeds, the process exits, or
// ls.timeout passes.
func waitReady(p *process, port int, ls launchSpec) error {
	deadline := time.Now().Add(ls.timeout)
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("exited early (%v); last probe error: %v", p.waitErr, lastErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		lastErr = ls.ready(ctx, port)
		cancel()
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v; last probe error: %w", ls.timeout, lastErr)
		}
		select {
		case <-p.done:
		case <-time.After(25 * time.Millisecond):
		}
	}
}
