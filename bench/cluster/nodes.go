package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
)

// Roles, identities and the database of the benchmark. Secrets are random
// per run.
const (
	benchDB    = "bench"
	benchUser  = "bench_user" // direct
	svcUser    = "phigate_svc"
	agentName  = "bench-agent" // pgbench's identity through phigate
	probeName  = "probe"       // the identity whose token each revision replaces
	rootName   = "root"        // the admin
	readyLimit = 2 * time.Minute
)

// setupPostgres starts PostgreSQL (fsync on), creates the roles and loads
// pgbench's tables, as bench/pg does.
func setupPostgres(ctx context.Context, dir string, scale int, pgbench string) (*pgtest.Server, endpoint, string, error) {
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

// gnode is one phigate node process and its addresses.
type gnode struct {
	id      string
	dir     string // config, log and data directory
	pgAddr  string // listen.postgres
	apiAddr string // listen.api (HTTPS, operators)
	cluster struct{ peer, client, gossip, api string }
	proc    *process

	mu     sync.Mutex
	client *http.Client // trusts the node's development certificate, once it exists
}

func newGnode(id, dir string) (*gnode, error) {
	n := &gnode{id: id, dir: dir}
	for _, p := range []*string{&n.pgAddr, &n.apiAddr, &n.cluster.peer, &n.cluster.client, &n.cluster.gossip, &n.cluster.api} {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		*p = a
	}
	return n, os.MkdirAll(dir, 0o700)
}

func (n *gnode) dataDir() string { return filepath.Join(n.dir, "data") }

// endpoint is where an identity logs in to this node.
func (n *gnode) endpoint(user, token string) endpoint {
	host, port, _ := net.SplitHostPort(n.pgAddr)
	p, _ := strconv.Atoi(port)
	return endpoint{host: host, port: p, user: user, password: token, db: benchDB}
}

// nodeSections is the part of a node's configuration that is its own.
func (n *gnode) nodeSections() string {
	return fmt.Sprintf(`# written by bench/cluster
node: {id: %s, data_dir: %q}
listen: {postgres: %q, cleartext_loopback: true, api: %q}
limits: {drain_timeout: 2s}
cluster: {peer: %q, client: %q, gossip: %q, api: %q}
`, n.id, n.dataDir(), n.pgAddr, n.apiAddr, n.cluster.peer, n.cluster.client, n.cluster.gossip, n.cluster.api)
}

// start runs `phigate node --config` with conf; join and joinToken make it
// join (the token goes in PHIGATE_JOIN_TOKEN, out of the process list).
func (n *gnode) start(bin, conf, join, joinToken string) error {
	cfgPath := filepath.Join(n.dir, "phigate.yaml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		return err
	}
	args := []string{"node", "--config", cfgPath}
	if join != "" {
		args = append(args, "--join", join)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = n.dir
	cmd.Env = os.Environ()
	if joinToken != "" {
		cmd.Env = append(cmd.Env, "PHIGATE_JOIN_TOKEN="+joinToken)
	}
	p, err := startProcess(n.id, cmd, syscall.SIGTERM, filepath.Join(n.dir, "phigate.log"))
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// http returns a client that trusts the node's development certificate
// (DATA_DIR/tls/dev-cert.pem), or an error while the node has not made it.
func (n *gnode) http() (*http.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		return n.client, nil
	}
	pem, err := os.ReadFile(filepath.Join(n.dataDir(), "tls", "dev-cert.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("dev-cert.pem holds no certificate (yet)")
	}
	n.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		MaxIdleConnsPerHost: 4,
	}}
	return n.client, nil
}

// ready reports whether GET /readyz answers 200.
func (n *gnode) ready(ctx context.Context) (bool, error) {
	c, err := n.http()
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+n.apiAddr+"/readyz", nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("readyz: %s %s", resp.Status, bytes.TrimSpace(b))
	}
	return true, nil
}

// waitReady polls /readyz until 200, the process exits or limit passes.
func (n *gnode) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := n.ready(ctx)
		if ok {
			return nil
		}
		select {
		case <-n.proc.exited:
			return fmt.Errorf("%s exited: %v\n%s", n.id, err, n.proc.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v\n%s", n.id, limit, err, n.proc.logTail())
		case <-tick.C:
		}
	}
}

// admin calls an admin endpoint with token and decodes the JSON answer
// into out (nil: dropped).
func (n *gnode) admin(ctx context.Context, token, method, path string, body []byte, out any) error {
	c, err := n.http()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+n.apiAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// benchCluster is three nodes on loopback and the secrets to use them.
type benchCluster struct {
	bin        string
	dir        string
	nodes      []*gnode
	rootToken  string
	agentToken string
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// bootstrapPolicy is node 1's policy sections, the cluster's first
// revision: the admin, pgbench's identity and the probe, the resource, and
// the grant and masking profile bench/pg uses.
func bootstrapPolicy(rootToken, agentToken, probeToken, upstream, pwFile string) string {
	return fmt.Sprintf(`identities:
  tokens:
    - {name: %s, kind: human, groups: [admins], token_sha256: %q}
    - {name: %s, kind: agent, groups: [bench], token_sha256: %q}
    - {name: %s, kind: agent, groups: [bench], token_sha256: %q}
admins: {groups: [admins]}
resources:
  - name: %s
    protocol: postgres
    address: %q
    database: %s
    user: %s
    password_file: %q
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
`, rootName, sha256Hex(rootToken), agentName, sha256Hex(agentToken), probeName, sha256Hex(probeToken),
		benchDB, upstream, benchDB, svcUser, pwFile, benchDB)
}

// startCluster starts node 1 (bootstrapping the cluster with its policy),
// then nodes 2 and 3 joining it, each with a join token from the admin
// API; it returns once all three answer /readyz.
func startCluster(ctx context.Context, bin, dir string, pg *pgtest.Server, svcPW string) (_ *benchCluster, err error) {
	c := &benchCluster{bin: bin, dir: dir, rootToken: randomSecret(), agentToken: randomSecret()}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(svcPW+"\n"), 0o600); err != nil {
		return nil, err
	}
	for i := 1; i <= 3; i++ {
		n, err := newGnode(fmt.Sprintf("n%d", i), filepath.Join(dir, fmt.Sprintf("n%d", i)))
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	n1 := c.nodes[0]
	start := time.Now()
	conf := n1.nodeSections() + bootstrapPolicy(c.rootToken, c.agentToken, randomSecret(), pg.Addr(), pwFile)
	if err := n1.start(bin, conf, "", ""); err != nil {
		return nil, err
	}
	if err := n1.waitReady(ctx, readyLimit); err != nil {
		return nil, err
	}
	logf("%s ready in %v (bootstrapped the cluster)", n1.id, time.Since(start).Round(time.Millisecond))
	for _, n := range c.nodes[1:] {
		start := time.Now()
		if err := c.join(ctx, n); err != nil {
			return nil, err
		}
		if err := n.waitReady(ctx, readyLimit); err != nil {
			return nil, err
		}
		logf("%s ready in %v (joined)", n.id, time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

// join starts n as a new member, with a fresh join token from node 1. A
// joining node's configuration has no policy sections: the policy is the
// cluster's.
func (c *benchCluster) join(ctx context.Context, n *gnode) error {
	var tok struct {
		Token string `json:"token"`
	}
	if err := c.nodes[0].admin(ctx, c.rootToken, http.MethodPost, "/admin/v1/cluster/join-token?ttl=5m", nil, &tok); err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	return n.start(c.bin, n.nodeSections(), c.nodes[0].cluster.api, tok.Token)
}

// stop stops the nodes, the last started first.
func (c *benchCluster) stop() {
	for i := len(c.nodes) - 1; i >= 0; i-- {
		c.nodes[i].proc.stop()
	}
}
