package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/internal/pgtest"
)

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
// the direct role.
func startPgBouncer(ctx context.Context, bin, dir string, pg *harness.Postgres) (*harness.Process, harness.Endpoint, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, harness.Endpoint{}, err
	}
	uid, gid, other, err := pgtest.ServiceUser()
	if err != nil {
		return nil, harness.Endpoint{}, err
	}
	if other {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, harness.Endpoint{}, err
		}
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, harness.Endpoint{}, err
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
`, harness.DB, pg.Port(), harness.DB, port, filepath.Join(dir, "userlist.txt"),
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	userlist := fmt.Sprintf("%q %q\n", pg.Direct.User, pg.Direct.Password)
	if err := writeForService(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, harness.Endpoint{}, err
	}
	if err := writeForService(filepath.Join(dir, "userlist.txt"), []byte(userlist), 0o600); err != nil {
		return nil, harness.Endpoint{}, err
	}
	if strings.Contains(bin, "/") {
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, harness.Endpoint{}, err
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	if err := pgtest.AsServiceUser(cmd); err != nil {
		return nil, harness.Endpoint{}, err
	}
	// SIGINT is PgBouncer's "safe" shutdown, which waits for clients;
	// SIGTERM ends it at once.
	p, err := harness.StartProcess("pgbouncer", cmd, syscall.SIGTERM, filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, harness.Endpoint{}, err
	}
	ep := harness.Endpoint{Host: "127.0.0.1", Port: port, User: pg.Direct.User, Password: pg.Direct.Password, DB: harness.DB}
	if err := harness.WaitConnect(ctx, ep, p); err != nil {
		p.Stop()
		b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		return nil, harness.Endpoint{}, fmt.Errorf("%w\n%s", err, harness.Tail(b, 2000))
	}
	return p, ep, nil
}

// phigateConfig is the node configuration for the benchmark: recording on
// (the default, fsync) and the masking profile of harness.PolicySections,
// which touches pgbench_accounts.
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
`, dataDir, port, harness.AgentName, tokenHash) + harness.PolicySections(upstream, pwFile)
}

// startPhigate runs the phigate binary with a generated configuration.
func startPhigate(ctx context.Context, bin, dir string, pg *harness.Postgres) (*harness.Process, harness.Endpoint, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, harness.Endpoint{}, fmt.Errorf("phigate binary: %w (run make build, or pass -phigate)", err)
	}
	// The node runs in dir; a relative path would be looked up from there.
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, harness.Endpoint{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, harness.Endpoint{}, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, harness.Endpoint{}, err
	}
	token := harness.RandomSecret()
	sum := sha256.Sum256([]byte(token))
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(pg.GatewayPassword+"\n"), 0o600); err != nil {
		return nil, harness.Endpoint{}, err
	}
	cfg := filepath.Join(dir, "phigate.yaml")
	conf := phigateConfig(filepath.Join(dir, "data"), port, pg.Addr(), pwFile, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, harness.Endpoint{}, err
	}
	cmd := exec.Command(bin, "node", "--config", cfg)
	cmd.Dir = dir
	p, err := harness.StartProcess("phigate", cmd, syscall.SIGTERM, filepath.Join(dir, "phigate.log"))
	if err != nil {
		return nil, harness.Endpoint{}, err
	}
	ep := harness.Endpoint{Host: "127.0.0.1", Port: port, User: harness.AgentName, Password: token, DB: harness.DB}
	if err := harness.WaitConnect(ctx, ep, p); err != nil {
		p.Stop()
		return nil, harness.Endpoint{}, err
	}
	return p, ep, nil
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
	return float64(harness.Percentile(lat, 50)) / 1000, float64(harness.Percentile(lat, 99)) / 1000, nil
}
