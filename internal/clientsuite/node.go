package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/identity"
)

// nodeSpec is what a suite's phigate node needs: one resource (the suite's
// database, reached with the gateway's own role over verified TLS), one
// identity with a grant that allows every statement class and masks
// nothing, loopback cleartext allowed (as the suites connect without TLS
// by default) and TLS with the suite's own server certificate (so that the
// suite's TLS tests verify phigate exactly as they verify PostgreSQL).
type nodeSpec struct {
	Dir          string // node configuration and log
	DataDir      string // recordings, keys
	Resource     string // the database name agents use, and the upstream database
	UpstreamAddr string
	GatewayUser  string
	PasswordFile string
	UpstreamCA   string
	UpstreamName string // the name the upstream certificate is checked against
	CertFile     string // what agents see
	KeyFile      string
	Token        string
}

// nodeProc runs `phigate node` and restarts it if it dies: a crash is a
// finding to report, and the rest of the leg still needs a gateway to
// talk to.
type nodeProc struct {
	phigate, cfgFile string
	spec             nodeSpec
	port             int
	log              *os.File // the node's output, across restarts

	mu      sync.Mutex
	crashes []crash

	stopReq chan struct{}
	stopped chan error
}

// crash is an unexpected exit of the node: its error and where in the log
// the process's output lies.
type crash struct {
	err      error
	from, to int64
}

// maxRestarts: beyond this many crashes the node is left down.
const maxRestarts = 20

// identityName is the one identity of a suite's node. Agents may put any
// user name in their startup message; phigate takes who they are from the
// token.
const identityName = "clientsuite"

// startNode writes the configuration and runs `phigate node` as a child
// process, returning once an agent can log in and run a query through it.
func startNode(ctx context.Context, phigate string, spec nodeSpec) (*nodeProc, error) {
	var cfg node.Config
	cfg.Node.ID = "clientsuite-" + spec.Resource
	cfg.Node.DataDir = spec.DataDir
	port, err := freePortAvoiding()
	if err != nil {
		return nil, err
	}
	cfg.Listen.Postgres = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.Listen.CleartextLoopback = true
	cfg.TLS.CertFile, cfg.TLS.KeyFile = spec.CertFile, spec.KeyFile
	cfg.Keys.AuditorPublicKeyFile = "none" // nothing is masked, so there is nothing to prove
	cfg.Log.Level = "info"
	cfg.Identities.Tokens = []node.TokenConfig{{
		Name: identityName, Kind: "ci", Groups: []string{"clientsuite"},
		TokenSHA256: identity.HashToken(spec.Token),
	}}
	cfg.Resources = []node.ResourceConfig{{
		Name: spec.Resource, Address: spec.UpstreamAddr, Database: spec.Resource,
		User: spec.GatewayUser, PasswordFile: spec.PasswordFile,
		TLS: "verify-full", CAFile: spec.UpstreamCA, ServerName: spec.UpstreamName,
	}}
	cfg.Grants = []node.GrantConfig{{
		Name: "clientsuite-all", Identities: []string{identityName},
		Resources: []string{spec.Resource}, Allow: []string{"all"},
	}}
	b, err := yaml.Marshal(&cfg)
	if err != nil {
		return nil, err
	}
	b = append([]byte("# Written by internal/clientsuite: allow everything, mask nothing.\n"), b...)
	cfgFile := filepath.Join(spec.Dir, "phigate.yaml")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(spec.Dir, "node.log"))
	if err != nil {
		return nil, err
	}
	n := &nodeProc{phigate: phigate, cfgFile: cfgFile, spec: spec, port: port, log: logf,
		stopReq: make(chan struct{}), stopped: make(chan error, 1)}
	cmd, done, off, err := n.launch()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := n.waitReady(ctx, done); err != nil {
		n.kill(cmd, done)
		logf.Close()
		return nil, fmt.Errorf("phigate node: %w\n%s", err, tail(n.logSince(off), 20))
	}
	go n.supervise(cmd, done, off)
	return n, nil
}

// launch starts the node process; done receives its exit.
func (n *nodeProc) launch() (*exec.Cmd, chan error, int64, error) {
	off, _ := n.log.Seek(0, io.SeekEnd)
	cmd := exec.Command(n.phigate, "node", "--config", n.cfgFile)
	cmd.Env = cleanEnv(nil)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := pgtest.Spawn(cmd, syscall.SIGTERM); err != nil {
		return nil, nil, 0, fmt.Errorf("start phigate: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done, off, nil
}

func (n *nodeProc) supervise(cmd *exec.Cmd, done chan error, off int64) {
	for {
		select {
		case <-n.stopReq:
			n.stopped <- n.terminate(cmd, done)
			return
		case err := <-done:
			fmt.Printf("  phigate node exited unexpectedly (%v); restarting it\n", err)
			n.mu.Lock()
			n.crashes = append(n.crashes, crash{err: err, from: off, to: -1})
			count := len(n.crashes)
			n.mu.Unlock()
			if count > maxRestarts {
				<-n.stopReq
				n.stopped <- errors.New("phigate node crashed too often; left down")
				return
			}
			var lerr error
			if cmd, done, off, lerr = n.launch(); lerr != nil {
				<-n.stopReq
				n.stopped <- lerr
				return
			}
			n.mu.Lock()
			n.crashes[count-1].to = off
			n.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_ = n.waitReady(ctx, done)
			cancel()
		}
	}
}

// Crashes returns how each unexpected exit of the node ended: the panic
// and its first frames. The log is read now, after the fact: a dead
// process's last lines are not always readable the moment it is reaped.
func (n *nodeProc) Crashes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, _ := os.ReadFile(n.log.Name())
	var out []string
	for _, c := range n.crashes {
		to := c.to
		if to < 0 || to > int64(len(b)) {
			to = int64(len(b))
		}
		from := min(c.from, to)
		out = append(out, crashSummary(c.err, string(b[from:to])))
	}
	return out
}

// waitReady polls until an agent can log in with the token and run a
// query: listening is not enough, the upstream leg must work too.
func (n *nodeProc) waitReady(ctx context.Context, done chan error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=clientsuite dbname=%s sslmode=disable", n.port, n.spec.Resource)
	var last error
	for {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			return err
		}
		cfg.Password = n.spec.Token
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		c, err := pgconn.ConnectConfig(attempt, cfg)
		if err == nil {
			_, err = c.Exec(attempt, "select 1").ReadAll()
			c.Close(attempt)
		}
		cancelAttempt()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %v", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the node (SIGTERM: every session records its end) and the
// supervisor. It is idempotent.
func (n *nodeProc) stop() error {
	select {
	case <-n.stopReq:
	default:
		close(n.stopReq)
	}
	err, ok := <-n.stopped
	if ok {
		close(n.stopped)
		n.log.Close()
	}
	return err
}

func (n *nodeProc) terminate(cmd *exec.Cmd, done chan error) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && !ee.Exited()) {
			return fmt.Errorf("phigate node: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		n.kill(cmd, done)
		return errors.New("phigate node did not stop in 30s; killed")
	}
}

func (n *nodeProc) kill(cmd *exec.Cmd, done chan error) {
	pgtest.KillGroup(cmd.Process.Pid)
	<-done
}

func (n *nodeProc) logSince(off int64) string {
	b, err := os.ReadFile(n.log.Name())
	if err != nil || off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

// crashSummary is the panic message and the first frames of phigate's own
// code below it, or the exit status and the log's last lines.
func crashSummary(err error, log string) string {
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "panic:") && !strings.HasPrefix(l, "fatal error:") {
			continue
		}
		out := []string{l}
		for _, f := range lines[i+1:] {
			if strings.HasPrefix(f, "github.com/phigate/phigate/") {
				out = append(out, "  "+f)
				if len(out) == 6 {
					break
				}
			}
		}
		return strings.Join(out, "\n")
	}
	return fmt.Sprintf("exit: %v\n%s", err, tail(log, 5))
}

// freePortAvoiding is a reserved loopback port; internal/freeport never
// hands out the ports lib/pq's tests give a meaning of their own.
func freePortAvoiding() (int, error) { return freeport.Port() }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
