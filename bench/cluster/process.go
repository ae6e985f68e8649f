package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
)

// process is a child we started and must stop.
type process struct {
	name    string
	cmd     *exec.Cmd
	stopSig syscall.Signal
	exited  chan struct{}
	logPath string
}

// startProcess starts cmd in a process group of its own that dies with us
// (pgtest.Spawn), its output appended to logPath.
func startProcess(name string, cmd *exec.Cmd, stopSig syscall.Signal, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := pgtest.Spawn(cmd, stopSig); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, stopSig: stopSig, exited: make(chan struct{}), logPath: logPath}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends the graceful signal, waits up to 20 s, then kills the process
// group. It is safe to call more than once, and on nil.
func (p *process) stop() {
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
	// Whatever the node left in its group goes too.
	pgtest.KillGroup(p.cmd.Process.Pid)
	<-p.exited
}

// wait waits up to d for the process to exit by itself.
func (p *process) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	return string(tail(b, 3000))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// endpoint is where a PostgreSQL client connects and as whom.
type endpoint struct {
	host     string
	port     int
	user     string
	password string
	db       string
}

func (ep endpoint) dsn() string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(ep.host, strconv.Itoa(ep.port)),
		User: url.UserPassword(ep.user, ep.password), Path: "/" + ep.db, RawQuery: "sslmode=disable&connect_timeout=5"}
	return u.String()
}

// login opens and closes one PostgreSQL session at ep.
func login(ctx context.Context, cfg *pgconn.Config) error {
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func randomSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
