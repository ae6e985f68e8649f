package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
)

// Roles in the benchmark database. The passwords are random per run.
const (
	benchDB   = "bench"
	benchUser = "bench_user" // direct and through PgBouncer
	svcUser   = "phigate_svc"
	agentName = "bench-agent" // phigate identity
)

// process is a child we started and must stop.
type process struct {
	name    string
	cmd     *exec.Cmd
	stopSig syscall.Signal
	exited  chan struct{}
	logPath string
}

func startProcess(name string, cmd *exec.Cmd, stopSig syscall.Signal, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
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

func (p *process) pid() int { return p.cmd.Process.Pid }

// stop sends the graceful signal, waits, then kills the process group.
func (p *process) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(p.stopSig)
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	pgtest.KillGroup(p.pid())
	<-p.exited
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	return string(tail(b, 3000))
}

// waitConnect polls until ep accepts a real PostgreSQL session, p exits or
// the deadline passes.
func waitConnect(ctx context.Context, ep endpoint, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := pgconn.Connect(ctx, ep.dsn())
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %v\n%s", p.name, err, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v\n%s", p.name, err, p.logTail())
		case <-tick.C:
		}
	}
}

func (ep endpoint) dsn() string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(ep.host, strconv.Itoa(ep.port)),
		User: url.UserPassword(ep.user, ep.password), Path: "/" + ep.db, RawQuery: "sslmode=disable"}
	return u.String()
}

func randomSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeForService writes a file the service user (postgres, when we are
// root) can read.
func writeForService(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	uid, gid, other, err := pgtest.ServiceUser()
	if err != nil || !other {
		return err
	}
	return os.Chown(path, uid, gid)
}

// startPgBouncer runs PgBouncer (session pooling) in front of pg for
// benchUser.
func startPgBouncer(ctx context.Context, bin, dir string, pg *pgtest.Server, password string) (*process, endpoint, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, endpoint{}, err
	}
	uid, gid, other, err := pgtest.ServiceUser()
	if err != nil {
		return nil, endpoint{}, err
	}
	if other {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, endpoint{}, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, endpoint{}, err
	}
	ini := fmt.Sprintf(`[databases]
%s = host=127.0.0.1 port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = session
max_client_conn = 1000
default_pool_size = 200
logfile = %s
pidfile = %s
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = disable
server_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
`, benchDB, pg.Port(), benchDB, port, filepath.Join(dir, "userlist.txt"),
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	userlist := fmt.Sprintf("%q %q\n", benchUser, password)
	if err := writeForService(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, endpoint{}, err
	}
	if err := writeForService(filepath.Join(dir, "userlist.txt"), []byte(userlist), 0o600); err != nil {
		return nil, endpoint{}, err
	}
	if strings.Contains(bin, "/") {
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, endpoint{}, err
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	if err := pgtest.AsServiceUser(cmd); err != nil {
		return nil, endpoint{}, err
	}
	// SIGINT is PgBouncer's "safe" shutdown, which waits for clients;
	// SIGTERM ends it at once.
	p, err := startProcess("pgbouncer", cmd, syscall.SIGTERM, filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, endpoint{}, err
	}
	ep := endpoint{host: "127.0.0.1", port: port, user: benchUser, password: password, db: benchDB}
	if err := waitConnect(ctx, ep, p); err != nil {
		p.stop()
		b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		return nil, endpoint{}, fmt.Errorf("%w\n%s", err, tail(b, 2000))
	}
	return p, ep, nil
}

// phigateConfig is the node configuration for the benchmark: recording on
// (the default, fsync) and a masking profile that touches pgbench_accounts.
func phigateConfig(dataDir string, port int, upstream, pwFile, tokenHash string) string {
	return fmt.Sprintf(`# written by bench/pg
node:
  id: bench-1
  data_dir: %s
listen:
  postgres: 127.0.0.1:%d
  cleartext_loopback: true
identities:
  tokens:
    - name: %s
      kind: agent
      groups: [bench]
      token_sha256: "%s"
resources:
  - name: %s
    protocol: postgres
    address: %s
    database: %s
    user: %s
    password_file: %s
    tls: disable
grants:
  - name: bench-all
    groups: [bench]
    resources: [%s]
    allow: [all]
    masking: bench-profile
masking:
  profiles:
    bench-profile:
      rules:
        - column: public.pgbench_accounts.filler
          action: redact
        - column: public.pgbench_history.filler
          action: redact
        - pattern: "^masked_"
          action: redact
`, dataDir, port, agentName, tokenHash, benchDB, upstream, benchDB, svcUser, pwFile, benchDB)
}

// startPhigate runs the phigate binary with a generated configuration.
func startPhigate(ctx context.Context, bin, dir string, pg *pgtest.Server, svcPassword string) (*process, endpoint, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, endpoint{}, fmt.Errorf("phigate binary: %w (run make build, or pass -phigate)", err)
	}
	// The node runs in dir; a relative path would be looked up from there.
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, endpoint{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, endpoint{}, err
	}
	port, err := freePort()
	if err != nil {
		return nil, endpoint{}, err
	}
	token := randomSecret()
	sum := sha256.Sum256([]byte(token))
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(svcPassword+"\n"), 0o600); err != nil {
		return nil, endpoint{}, err
	}
	cfg := filepath.Join(dir, "phigate.yaml")
	conf := phigateConfig(filepath.Join(dir, "data"), port, pg.Addr(), pwFile, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, endpoint{}, err
	}
	cmd := exec.Command(bin, "node", "--config", cfg)
	cmd.Dir = dir
	p, err := startProcess("phigate", cmd, syscall.SIGTERM, filepath.Join(dir, "phigate.log"))
	if err != nil {
		return nil, endpoint{}, err
	}
	ep := endpoint{host: "127.0.0.1", port: port, user: agentName, password: token, db: benchDB}
	if err := waitConnect(ctx, ep, p); err != nil {
		p.stop()
		return nil, endpoint{}, err
	}
	return p, ep, nil
}

// setupPostgres starts PostgreSQL as production would run it (fsync on),
// creates the roles and loads pgbench's tables.
func setupPostgres(ctx context.Context, dir string, scale int, pgbench string, logf func(string, ...any)) (*pgtest.Server, endpoint, string, error) {
	benchPW, svcPW := randomSecret(), randomSecret()
	pg, err := pgtest.Start(ctx, dir, pgtest.Options{
		Users: []pgtest.User{
			{Name: benchUser, Password: benchPW, Auth: pgtest.AuthSCRAM},
			{Name: svcUser, Password: svcPW, Auth: pgtest.AuthSCRAM},
		},
		Settings: map[string]string{
			"max_connections": "300",
			"shared_buffers":  "256MB",
			"max_wal_size":    "4GB",
		},
	})
	if err != nil {
		return nil, endpoint{}, "", err
	}
	fail := func(err error) (*pgtest.Server, endpoint, string, error) {
		pg.Stop()
		return nil, endpoint{}, "", err
	}
	if err := pg.CreateDatabase(ctx, benchDB, benchUser); err != nil {
		return fail(err)
	}
	// The gateway's role works on the same tables as bench_user.
	if err := pg.Exec(ctx, benchDB, fmt.Sprintf("GRANT %s TO %s", benchUser, svcUser)); err != nil {
		return fail(err)
	}
	direct := endpoint{host: "127.0.0.1", port: pg.Port(), user: benchUser, password: benchPW, db: benchDB}
	logf("pgbench -i -s %d", scale)
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-s", strconv.Itoa(scale), "-q",
		"-h", direct.host, "-p", strconv.Itoa(direct.port), "-U", direct.user, direct.db)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+benchPW, "PGSSLMODE=disable")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgbench -i: %w\n%s", err, tail(out, 2000)))
	}
	return pg, direct, svcPW, nil
}

// peakRSS reads VmHWM (peak resident set) of pid, in bytes.
func peakRSS(pid int) (int64, error) { return procStatusKB(pid, "VmHWM:") }

// rss reads VmRSS (resident set now) of pid, in bytes.
func rss(pid int) (int64, error) { return procStatusKB(pid, "VmRSS:") }

func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeakRSS resets pid's VmHWM to its current RSS (Linux >= 4.0), so the
// next peakRSS covers only what happens from now on.
func resetPeakRSS(pid int) error {
	err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	if err != nil {
		return errors.Join(errors.New("cannot reset peak RSS"), err)
	}
	return nil
}

// fsyncLatency measures what one durable append costs on dir's file system:
// n writes of 4 KiB, each followed by fsync. Recording makes every command
// wait for (a group of) these, so it is the floor under phigate's latency.
func fsyncLatency(dir string, n int) (p50, p99 float64, err error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]int64, 0, n)
	for range n {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(start).Microseconds())
	}
	slices.Sort(lat)
	return float64(Percentile(lat, 50)) / 1000, float64(Percentile(lat, 99)) / 1000, nil
}
