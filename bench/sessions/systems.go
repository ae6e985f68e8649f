package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/internal/pgtest"
)

// certs is the TLS certificate both systems show their clients: the
// self-signed ECDSA P-256 certificate for 127.0.0.1 that pgtest makes for
// PostgreSQL (Options.SSL), copied where PgBouncer (the service user) and
// phigate read it.
type certs struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

// startPostgres starts PostgreSQL (fsync on, TLS on for the certificate)
// with the benchmarks' roles and database and maxConns connections.
func startPostgres(ctx context.Context, dir string, maxConns int) (*harness.Postgres, error) {
	directPW, gatewayPW := harness.RandomSecret(), harness.RandomSecret()
	harness.Logf("PostgreSQL with max_connections %d", maxConns)
	srv, err := pgtest.Start(ctx, dir, pgtest.Options{
		SSL: true,
		Users: []pgtest.User{
			{Name: harness.DirectUser, Password: directPW},
			{Name: harness.GatewayUser, Password: gatewayPW},
		},
		Settings: map[string]string{
			"max_connections": strconv.Itoa(maxConns),
			"shared_buffers":  "128MB",
		},
	})
	if err != nil {
		return nil, err
	}
	for _, sql := range []string{
		"CREATE DATABASE " + harness.DB + " OWNER " + harness.DirectUser,
		"GRANT " + harness.DirectUser + " TO " + harness.GatewayUser,
	} {
		if err := srv.Exec(ctx, "postgres", sql); err != nil {
			srv.Stop()
			return nil, err
		}
	}
	return &harness.Postgres{Server: srv, GatewayPassword: gatewayPW,
		Direct: harness.Endpoint{Host: "127.0.0.1", Port: srv.Port(), User: harness.DirectUser, Password: directPW, DB: harness.DB}}, nil
}

// copyCert copies PostgreSQL's certificate and key into dir.
func copyCert(pg *harness.Postgres, dir string) (*certs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &certs{certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key"), pool: x509.NewCertPool()}
	for src, dst := range map[string]string{pg.CertFile(): c.certFile, filepath.Join(pg.DataDir(), "server.key"): c.keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := writeForService(dst, b, 0o600); err != nil {
			return nil, err
		}
	}
	pem, _ := os.ReadFile(c.certFile)
	if !c.pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + c.certFile)
	}
	return c, nil
}

// scramVerifier is role's password as PostgreSQL stores it (a SCRAM-SHA-256
// verifier): what a PgBouncer auth_file holds in production, so that it
// checks a login without deriving the key itself each time.
func scramVerifier(ctx context.Context, pg *harness.Postgres, role string) (string, error) {
	c, err := pgconn.Connect(ctx, pg.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		return "", err
	}
	defer c.Close(context.WithoutCancel(ctx))
	res := c.ExecParams(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", [][]byte{[]byte(role)}, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 || !strings.HasPrefix(string(res.Rows[0][0]), "SCRAM-SHA-256$") {
		return "", fmt.Errorf("no SCRAM verifier for %s", role)
	}
	return string(res.Rows[0][0]), nil
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

// node is a system the benchmark measures, or phigate's upstream pool.
type node struct {
	name  string
	proc  *harness.Process
	ep    harness.Endpoint // where the clients log in, over TLS
	port  int              // the listener the clients reach
	api   string           // phigate: host:port of its HTTPS API (/metrics)
	httpc *http.Client
	pool  *node // phigate: its upstream PgBouncer (nil: PostgreSQL itself)
	// logFile is PgBouncer's log ("": the process's output is its log).
	logFile string
	// idleBackends is how many backends of the gateway's role PostgreSQL
	// had before the sessions (phigate-direct: the catalog's own).
	idleBackends int
}

// stop stops the node and its pool; safe on nil.
func (n *node) stop() {
	if n == nil {
		return
	}
	n.proc.Stop()
	n.pool.stop()
}

// alive reports whether the node's process, and its pool's, still run.
func (n *node) alive() bool {
	select {
	case <-n.proc.Exited():
		return false
	default:
		return n.pool == nil || n.pool.alive()
	}
}

// logTail is the end of n's log.
func (n *node) logTail() string {
	if n.logFile == "" {
		return n.proc.LogTail()
	}
	b, _ := os.ReadFile(n.logFile)
	return string(harness.Tail(b, 3000))
}

// pgbouncerSpec is one PgBouncer: the role it logs in as and with what
// verifier, and whether its clients must use TLS.
type pgbouncerSpec struct {
	dir        string
	role       string
	verifier   string
	password   string // the role's password, for the clients
	pool       int
	maxClients int
	tls        *certs // nil: clients without TLS (phigate's upstream)
	// transaction selects transaction pooling (false: session pooling).
	transaction bool
}

// startPgBouncer runs PgBouncer in session pooling in front of pg.
func startPgBouncer(ctx context.Context, bin string, spec pgbouncerSpec, pg *harness.Postgres) (*node, error) {
	dir := spec.dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	uid, gid, other, err := pgtest.ServiceUser()
	if err != nil {
		return nil, err
	}
	if other {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	mode := "session"
	if spec.transaction {
		mode = "transaction"
	}
	clientTLS := "client_tls_sslmode = disable\n"
	if spec.tls != nil {
		clientTLS = fmt.Sprintf("client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n", spec.tls.certFile, spec.tls.keyFile)
	}
	// listen_backlog as Go's listeners get it (somaxconn), so that the
	// storm meets the same accept queue bound on both systems.
	ini := fmt.Sprintf(`[databases]
%s = host=127.0.0.1 port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
listen_backlog = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = %s
max_client_conn = %d
default_pool_size = %d
logfile = %s
pidfile = %s
ignore_startup_parameters = extra_float_digits
%sserver_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
`, harness.DB, pg.Port(), harness.DB, port, somaxconn(), filepath.Join(dir, "userlist.txt"), mode, spec.maxClients, spec.pool,
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"), clientTLS)
	if err := writeForService(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, err
	}
	if err := writeForService(filepath.Join(dir, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n", spec.role, spec.verifier)), 0o600); err != nil {
		return nil, err
	}
	if strings.Contains(bin, "/") {
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	if err := pgtest.AsServiceUser(cmd); err != nil {
		return nil, err
	}
	// SIGTERM ends PgBouncer at once (SIGINT waits for the clients).
	p, err := harness.StartProcess("pgbouncer", cmd, syscall.SIGTERM, filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	n := &node{name: sysPgBouncer, proc: p, port: port, logFile: filepath.Join(dir, "pgbouncer.log"),
		ep: harness.Endpoint{Host: "127.0.0.1", Port: port, User: spec.role, Password: spec.password, DB: harness.DB}}
	if err := waitLogin(ctx, n, spec.tls != nil); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w\n%s", err, n.logTail())
	}
	return n, nil
}

// phigateConfig is the node's configuration: TLS required from every
// client (the certificate given), the API for /metrics, recording on (the
// default, fsync), the agent's token, and the policy of bench/pg (a
// masking profile) with upstream as the resource's address.
func phigateConfig(dir, pgAddr, apiAddr, tokenHash, upstream, pwFile string, c *certs) string {
	return fmt.Sprintf(`# written by bench/sessions
node: {id: sessions-1, data_dir: %q}
listen: {postgres: %q, api: %q}
tls: {cert_file: %q, key_file: %q}
limits: {drain_timeout: 1s}
identities:
  tokens:
    - {name: %s, kind: agent, groups: [bench], token_sha256: %q}
`, filepath.Join(dir, "data"), pgAddr, apiAddr, c.certFile, c.keyFile, harness.AgentName, tokenHash) + harness.PolicySections(upstream, pwFile)
}

// startPhigate runs a phigate node whose resource is at upstream (a
// PgBouncer's or PostgreSQL's address), with env added to its environment.
func startPhigate(ctx context.Context, bin, dir, upstream string, pg *harness.Postgres, c *certs, env []string) (*node, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("phigate binary: %w (run make build, or pass -phigate)", err)
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var addrs [2]string
	for i := range addrs {
		port, err := harness.FreePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	token := harness.RandomSecret()
	sum := sha256.Sum256([]byte(token))
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(pg.GatewayPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "phigate.yaml")
	if err := os.WriteFile(cfgPath, []byte(phigateConfig(dir, addrs[0], addrs[1], hex.EncodeToString(sum[:]), upstream, pwFile, c)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "node", "--config", cfgPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p, err := harness.StartProcess("phigate", cmd, syscall.SIGTERM, filepath.Join(dir, "phigate.log"))
	if err != nil {
		return nil, err
	}
	_, portStr, _ := net.SplitHostPort(addrs[0])
	port, _ := strconv.Atoi(portStr)
	n := &node{name: sysPhigate, proc: p, port: port, api: addrs[1],
		ep:    harness.Endpoint{Host: "127.0.0.1", Port: port, User: harness.AgentName, Password: token, DB: harness.DB},
		httpc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}}}}
	if err := waitLogin(ctx, n, true); err != nil {
		p.Stop()
		return nil, err
	}
	return n, nil
}

// waitLogin polls until n accepts a real session, its process exits or a
// minute passes.
func waitLogin(ctx context.Context, n *node, useTLS bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t, err := newTarget(n.ep, useTLS, 5*time.Second)
	if err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, _, err := t.connect(ctx)
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case <-n.proc.Exited():
			return fmt.Errorf("%s exited: %v\n%s", n.proc.Name(), err, n.proc.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v\n%s", n.proc.Name(), err, n.proc.LogTail())
		case <-tick.C:
		}
	}
}
