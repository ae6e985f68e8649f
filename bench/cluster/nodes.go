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

	"github.com/phigate/phigate/bench/harness"
)

// The identities of the cluster benchmark besides harness.AgentName
// (pgbench's). Tokens are random per run.
const (
	probeName  = "probe" // the identity whose token each revision replaces
	rootName   = "root"  // the admin
	readyLimit = 2 * time.Minute
)

// gnode is one phigate node process and its addresses.
type gnode struct {
	id      string
	dir     string // config, log and data directory
	pgAddr  string // listen.postgres
	apiAddr string // listen.api (HTTPS, operators)
	cluster struct{ peer, client, gossip, api string }
	proc    *harness.Process

	mu     sync.Mutex
	client *http.Client // trusts the node's development certificate, once it exists
}

func newGnode(id, dir string) (*gnode, error) {
	n := &gnode{id: id, dir: dir}
	for _, p := range []*string{&n.pgAddr, &n.apiAddr, &n.cluster.peer, &n.cluster.client, &n.cluster.gossip, &n.cluster.api} {
		port, err := harness.FreePort()
		if err != nil {
			return nil, err
		}
		*p = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return n, os.MkdirAll(dir, 0o700)
}

func (n *gnode) dataDir() string { return filepath.Join(n.dir, "data") }

// endpoint is where an identity logs in to this node.
func (n *gnode) endpoint(user, token string) harness.Endpoint {
	host, port, _ := net.SplitHostPort(n.pgAddr)
	p, _ := strconv.Atoi(port)
	return harness.Endpoint{Host: host, Port: p, User: user, Password: token, DB: harness.DB}
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
	p, err := harness.StartProcess(n.id, cmd, syscall.SIGTERM, filepath.Join(n.dir, "phigate.log"))
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
		case <-n.proc.Exited():
			return fmt.Errorf("%s exited: %v\n%s", n.id, err, n.proc.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v\n%s", n.id, limit, err, n.proc.LogTail())
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
// revision: the admin, pgbench's identity and the probe, then the
// resource, grant and masking profile bench/pg uses too.
func bootstrapPolicy(rootToken, agentToken, probeToken, upstream, pwFile string) string {
	return fmt.Sprintf(`identities:
  tokens:
    - {name: %s, kind: human, groups: [admins], token_sha256: %q}
    - {name: %s, kind: agent, groups: [bench], token_sha256: %q}
    - {name: %s, kind: agent, groups: [bench], token_sha256: %q}
admins: {groups: [admins]}
`, rootName, sha256Hex(rootToken), harness.AgentName, sha256Hex(agentToken), probeName, sha256Hex(probeToken)) +
		harness.PolicySections(upstream, pwFile)
}

// startCluster starts node 1 (bootstrapping the cluster with its policy),
// then nodes 2 and 3 joining it, each with a join token from the admin
// API; it returns once all three answer /readyz.
func startCluster(ctx context.Context, bin, dir string, pg *harness.Postgres) (_ *benchCluster, err error) {
	c := &benchCluster{bin: bin, dir: dir, rootToken: harness.RandomSecret(), agentToken: harness.RandomSecret()}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(pg.GatewayPassword+"\n"), 0o600); err != nil {
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
	conf := n1.nodeSections() + bootstrapPolicy(c.rootToken, c.agentToken, harness.RandomSecret(), pg.Addr(), pwFile)
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
		c.nodes[i].proc.Stop()
	}
}
