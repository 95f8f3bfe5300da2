//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr puts the child in its own process group (so the stop ladder can
// kill the whole group) and runs it as cred when set. Outside Linux there is
// no parent-death signal, so a test binary that is killed can leave servers
// behind.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: cred,
	}
}

// groupAlive reports whether process group pgid has any member (zombies
// included).
func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}
