package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/internal/pgtest"
)

// Process is a child the benchmark started and must stop.
type Process struct {
	name    string
	cmd     *exec.Cmd
	stopSig syscall.Signal
	exited  chan struct{}
	logPath string
}

// StartProcess starts cmd in a process group of its own that dies with us
// (pgtest.Spawn: stopSig is also its parent-death signal), its output
// appended to logPath.
func StartProcess(name string, cmd *exec.Cmd, stopSig syscall.Signal, logPath string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := pgtest.Spawn(cmd, stopSig); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, stopSig: stopSig, exited: make(chan struct{}), logPath: logPath}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Name is the name the process was started with, for messages.
func (p *Process) Name() string { return p.name }

// PID is the process's id, also its process group's.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop sends the graceful signal, waits up to 20 s, then kills the process
// group. It is safe to call more than once, and on nil.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(p.stopSig)
		t := time.NewTimer(20 * time.Second)
		select {
		case <-p.exited:
		case <-t.C:
		}
		t.Stop()
	}
	// Whatever the process left in its group goes too.
	pgtest.KillGroup(p.PID())
	<-p.exited
}

// Wait waits up to d for the process to exit by itself, and reports
// whether it did.
func (p *Process) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// LogTail is the end of the process's output, for an error message.
func (p *Process) LogTail() string {
	b, _ := os.ReadFile(p.logPath)
	return string(Tail(b, 3000))
}

// Tail is the last n bytes of b, or b.
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// RandomSecret is a fresh password or token: 24 random bytes in hex.
func RandomSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// FreePort is a loopback port reserved for this process (internal/freeport).
func FreePort() (int, error) { return freeport.Port() }

// ProcessesUnder lists the live processes whose command line mentions dir,
// as "pid: command line": a test's proof that a run stopped every child it
// started in its working directory.
func ProcessesUnder(dir string) []string {
	var found []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, dir) {
			found = append(found, filepath.Base(filepath.Dir(f))+": "+cmd)
		}
	}
	return found
}
