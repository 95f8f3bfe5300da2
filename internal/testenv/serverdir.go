package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ownerFile, in each server directory, holds the PID of the process (a test
// binary, or a program such as the demo) that made it. One that dies without
// stopping its servers (killed, or panicking on -timeout) takes its servers
// with it (see sysProcAttr) but leaves their directories; the next
// LaunchPostgres or LaunchRedis in any process removes directories whose
// owner is gone.
const ownerFile = "testenv.owner"

// logTailBytes is how much of a server log goes into error messages and into
// the log tail printed for a failed test.
const logTailBytes = 4096

var sweepOnce sync.Once

// newServerDir makes a directory for one server in the system temp dir, named
// prefix + random, mode 0755 (so a server running as another user can reach
// it), with the owner file in it. On error nothing is left behind.
func newServerDir(prefix string) (string, error) {
	sweepOnce.Do(sweepStaleDirs)
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("testenv: %w", err)
	}
	return dir, nil
}

// server is what a Postgres and a Redis have in common: a directory and,
// once launched, a process whose log is in that directory. stop ends the
// process and then removes the directory, once; later calls return the first
// result.
type server struct {
	name    string // "postgres", "redis-server"
	dir     string
	logPath string
	proc    *process // nil until launched

	stopOnce sync.Once
	stopErr  error
	tail     string // the log tail, read after the process ended and before the directory went
}

func (s *server) stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.proc != nil {
			errs = append(errs, s.proc.stop())
		}
		s.tail = fileTail(s.logPath, logTailBytes)
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("testenv: remove %s: %w", s.dir, err))
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// stopAtCleanup is the testing.TB side of a launched server: stop it and
// remove its directory in t.Cleanup, and print the tail of its log if the
// test failed.
func (s *server) stopAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("testenv: %s log tail (%s):\n%s", s.name, s.logPath, s.tail)
		}
	})
}

// logf receives progress messages, such as a retry on another port. t.Logf
// is one; discard drops them.
type logf func(format string, args ...any)

func discard(string, ...any) {}

// sweepStaleDirs removes server directories left by processes that no
// longer run. Directories without an owner file are never touched.
func sweepStaleDirs() {
	for _, prefix := range []string{"outrigger-pg-", "outrigger-redis-"} {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, ownerFile))
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 0 || pid == os.Getpid() {
				continue
			}
			if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
				// A dead owner's servers died with it (Pdeathsig); give any
				// straggler a moment anyway before pulling the files away.
				if st, err := os.Stat(dir); err == nil && time.Since(st.ModTime()) > time.Second {
					_ = os.RemoveAll(dir)
				}
			}
		}
	}
}
