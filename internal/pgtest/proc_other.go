//go:build !linux

package pgtest

import (
	"os"
	"os/exec"
	"syscall"
)

// Spawn starts cmd. Only Linux has a parent-death signal; elsewhere a child
// can outlive a process that is killed without running its cleanups.
func Spawn(cmd *exec.Cmd, sig syscall.Signal) error { return cmd.Start() }

// KillGroup kills the process pgid (no process groups here).
func KillGroup(pgid int) bool {
	p, err := os.FindProcess(pgid)
	if err != nil {
		return false
	}
	return p.Kill() == nil
}

// GroupAlive is not known here; it reports false.
func GroupAlive(pgid int) bool { return false }

// ServiceUser returns the current user.
func ServiceUser() (uid, gid int, asOther bool, err error) {
	return os.Geteuid(), os.Getegid(), false, nil
}

// AsServiceUser does nothing here.
func AsServiceUser(cmd *exec.Cmd) error { return nil }
