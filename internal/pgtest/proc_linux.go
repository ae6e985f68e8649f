//go:build linux

package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce     sync.Once
	spawnRequests = make(chan spawnRequest)
)

// spawner starts every child from one OS thread that lives as long as the
// process. Linux sends the parent-death signal when the thread that forked a
// child exits, not when the process does; Go may retire threads, so children
// are forked from a thread that is locked and never let go.
func spawner() {
	runtime.LockOSThread() // never unlocked, on purpose
	for r := range spawnRequests {
		r.done <- r.cmd.Start()
	}
}

// Spawn starts cmd in a process group of its own, with sig as its
// parent-death signal: when this process dies, however it dies, the kernel
// sends sig to the child. Choose the child's graceful-but-prompt signal
// (SIGINT for postgres, SIGTERM for pgbouncer and phigate).
//
// Being in its own group, the child does not get the terminal's Ctrl-C
// directly; the caller stops it, in order, and KillGroup finishes the job.
func Spawn(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = sig
	spawnOnce.Do(func() { go spawner() })
	done := make(chan error, 1)
	spawnRequests <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// KillGroup sends SIGKILL to the process group pgid (as made by Spawn) and
// reports whether any process was still in it.
func KillGroup(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	return syscall.Kill(-pgid, syscall.SIGKILL) == nil
}

// GroupAlive reports whether any process of group pgid still exists.
func GroupAlive(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	return syscall.Kill(-pgid, 0) == nil
}

var (
	serviceOnce sync.Once
	serviceUID  int
	serviceGID  int
	serviceErr  error
)

// ServiceUser returns the uid and gid that PostgreSQL and PgBouncer run as:
// the "postgres" OS user when this process is root (both refuse to run as
// root), and the current user otherwise. asOther is false in the second case.
func ServiceUser() (uid, gid int, asOther bool, err error) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), false, nil
	}
	serviceOnce.Do(func() {
		u, err := user.Lookup("postgres")
		if err != nil {
			serviceErr = fmt.Errorf("pgtest: running as root needs the postgres OS user: %w", err)
			return
		}
		serviceUID, _ = strconv.Atoi(u.Uid)
		serviceGID, _ = strconv.Atoi(u.Gid)
	})
	return serviceUID, serviceGID, true, serviceErr
}

// AsServiceUser makes cmd run as ServiceUser's user when that is not the
// current one.
func AsServiceUser(cmd *exec.Cmd) error {
	uid, gid, other, err := ServiceUser()
	if err != nil || !other {
		return err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}
