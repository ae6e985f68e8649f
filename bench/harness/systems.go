package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

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

// PgBouncer is how StartPgBouncer runs PgBouncer.
type PgBouncer struct {
	Bin string // the binary ("pgbouncer": looked up in PATH)
	Dir string // its working directory: configuration, log, pid file
	// MaxClientConn and PoolSize are max_client_conn and default_pool_size
	// (zero: 1000 and 200).
	MaxClientConn int
	PoolSize      int
	// Extra is appended to the [pgbouncer] section (TLS settings, say).
	Extra string
}

// StartPgBouncer runs PgBouncer (session pooling) in front of pg for the
// direct role.
func StartPgBouncer(ctx context.Context, spec PgBouncer, pg *Postgres) (*Process, Endpoint, error) {
	dir := spec.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, Endpoint{}, err
	}
	uid, gid, other, err := pgtest.ServiceUser()
	if err != nil {
		return nil, Endpoint{}, err
	}
	if other {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, Endpoint{}, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, Endpoint{}, err
	}
	maxClients, pool := spec.MaxClientConn, spec.PoolSize
	if maxClients == 0 {
		maxClients = 1000
	}
	if pool == 0 {
		pool = 200
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
max_client_conn = %d
default_pool_size = %d
logfile = %s
pidfile = %s
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = disable
server_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
%s`, DB, pg.Port(), DB, port, filepath.Join(dir, "userlist.txt"), maxClients, pool,
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"), spec.Extra)
	userlist := fmt.Sprintf("%q %q\n", pg.Direct.User, pg.Direct.Password)
	if err := writeForService(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, Endpoint{}, err
	}
	if err := writeForService(filepath.Join(dir, "userlist.txt"), []byte(userlist), 0o600); err != nil {
		return nil, Endpoint{}, err
	}
	bin := spec.Bin
	if bin == "" {
		bin = "pgbouncer"
	}
	if strings.Contains(bin, "/") {
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, Endpoint{}, err
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	if err := pgtest.AsServiceUser(cmd); err != nil {
		return nil, Endpoint{}, err
	}
	// SIGINT is PgBouncer's "safe" shutdown, which waits for clients;
	// SIGTERM ends it at once.
	p, err := StartProcess("pgbouncer", cmd, syscall.SIGTERM, filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, Endpoint{}, err
	}
	ep := Endpoint{Host: "127.0.0.1", Port: port, User: pg.Direct.User, Password: pg.Direct.Password, DB: DB}
	if err := WaitConnect(ctx, ep, p); err != nil {
		p.Stop()
		b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		return nil, Endpoint{}, fmt.Errorf("%w\n%s", err, Tail(b, 2000))
	}
	return p, ep, nil
}

// Phigate is how StartPhigate runs a phigate node.
type Phigate struct {
	Bin string // the binary (make build's bin/phigate)
	Dir string // its working directory: configuration, data, log
	// Unmasked leaves the grant without its masking profile; ReadAhead
	// sets its read_ahead (proven reads run while their event syncs).
	Unmasked, ReadAhead bool
	// NoChangeSnapshots turns off the before and after rows of data
	// changes (recording.disable_change_snapshots), for decomposition.
	NoChangeSnapshots bool
	// Env is added to the node's environment (a phigate_bench build's
	// PHIGATE_BENCH_STAGE, say).
	Env []string
}

// Grant is what the benchmarks' grant has beyond PolicySections' defaults.
type Grant struct {
	Unmasked  bool // no masking profile
	ReadAhead bool // read_ahead: true
}

// PhigateConfig is the node configuration of the benchmarks: recording on
// (the default, fsync) and the policy of PolicySections, with g.
func PhigateConfig(dataDir string, port int, upstream, pwFile, tokenHash string, g Grant) string {
	return fmt.Sprintf(`# written by bench/harness
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
`, dataDir, port, AgentName, tokenHash) + policySections(upstream, pwFile, g)
}

// StartPhigate runs a phigate node in front of pg, its agent's token random.
func StartPhigate(ctx context.Context, spec Phigate, pg *Postgres) (*Process, Endpoint, error) {
	if _, err := os.Stat(spec.Bin); err != nil {
		return nil, Endpoint{}, fmt.Errorf("phigate binary: %w (run make build, or pass -phigate)", err)
	}
	// The node runs in dir; a relative path would be looked up from there.
	bin, err := filepath.Abs(spec.Bin)
	if err != nil {
		return nil, Endpoint{}, err
	}
	dir := spec.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, Endpoint{}, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, Endpoint{}, err
	}
	token := RandomSecret()
	sum := sha256.Sum256([]byte(token))
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(pg.GatewayPassword+"\n"), 0o600); err != nil {
		return nil, Endpoint{}, err
	}
	cfg := filepath.Join(dir, "phigate.yaml")
	conf := PhigateConfig(filepath.Join(dir, "data"), port, pg.Addr(), pwFile, hex.EncodeToString(sum[:]),
		Grant{Unmasked: spec.Unmasked, ReadAhead: spec.ReadAhead})
	if spec.NoChangeSnapshots {
		conf += "recording:\n  disable_change_snapshots: true\n"
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, Endpoint{}, err
	}
	cmd := exec.Command(bin, "node", "--config", cfg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), spec.Env...)
	p, err := StartProcess("phigate", cmd, syscall.SIGTERM, filepath.Join(dir, "phigate.log"))
	if err != nil {
		return nil, Endpoint{}, err
	}
	ep := Endpoint{Host: "127.0.0.1", Port: port, User: AgentName, Password: token, DB: DB}
	if err := WaitConnect(ctx, ep, p); err != nil {
		p.Stop()
		return nil, Endpoint{}, err
	}
	return p, ep, nil
}
