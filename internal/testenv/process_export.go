package testenv

import (
	"syscall"
	"time"
)

// ProcessSpec describes a long-running child for StartProcess: what the
// test servers use, offered to programs such as the benchmark harness that
// start other servers the same way.
type ProcessSpec struct {
	Name       string              // for messages
	Path       string              // absolute path of the binary
	Args       []string            // arguments, without argv[0]
	Dir        string              // working directory
	Env        []string            // added to os.Environ()
	Cred       *syscall.Credential // run as this user; nil: as ourselves
	LogPath    string              // stdout and stderr are appended here
	StopSignal syscall.Signal      // sent first by Stop
	Grace      time.Duration       // before SIGKILL; 0 means 10 s
}

// Process is a child started by StartProcess, in its own process group and
// killed by the kernel if this process dies.
type Process struct{ p *process }

// StartProcess starts spec with its output appended to spec.LogPath.
func StartProcess(spec ProcessSpec) (*Process, error) {
	p, err := startProcess(procSpec{
		name: spec.Name, path: spec.Path, args: spec.Args, dir: spec.Dir, env: spec.Env,
		cred: spec.Cred, logPath: spec.LogPath, stopSignal: spec.StopSignal, grace: spec.Grace,
	})
	if err != nil {
		return nil, err
	}
	return &Process{p}, nil
}

// PID returns the child's process id.
func (p *Process) PID() int { return p.p.pid() }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool { return p.p.exited() }

// WaitErr is the child's exit status once Exited is true.
func (p *Process) WaitErr() error {
	if !p.p.exited() {
		return nil
	}
	return p.p.waitErr
}

// Stop sends StopSignal, then SIGKILL to the process group after Grace.
// Safe to call more than once.
func (p *Process) Stop() error { return p.p.stop() }

// LogTail returns about the last n bytes of the child's log.
func (p *Process) LogTail(n int) string { return p.p.logTail(n) }

// FileTail returns about the last n bytes of the file at path, from a line
// boundary.
func FileTail(path string, n int) string { return fileTail(path, n) }
