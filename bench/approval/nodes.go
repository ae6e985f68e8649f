package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/identity"
)

// The identities of the benchmark. Tokens are random per run.
const (
	rootName      = "root"      // the admin
	requesterName = "requester" // the agent whose DELETE is held (grant "held")
	approverName  = "dba1"      // the approver (group dba)
	plainName     = "plain"     // pgbench, grant without approval rules
	ruledName     = "ruled"     // pgbench, the same grant with rules that match nothing pgbench sends
)

// policy is the cluster's first revision. "plain" and "ruled" differ only
// in ruled's approval rules (fail-fast: a rule that matched a pgbench
// statement would fail the run instead of holding it).
const policy = `
identities:
  tokens:
    - {name: root, kind: human, groups: [admins], token_sha256: %[1]s}
    - {name: requester, kind: agent, groups: [agents], token_sha256: %[2]s}
    - {name: dba1, kind: human, groups: [dba], token_sha256: %[3]s}
    - {name: plain, kind: agent, groups: [plain], token_sha256: %[4]s}
    - {name: ruled, kind: agent, groups: [ruled], token_sha256: %[5]s}
admins: {groups: [admins]}
resources:
  - {name: %[6]s, protocol: postgres, address: %[7]q, database: %[6]s, user: %[8]s, password_file: %[9]q, tls: disable}
grants:
  - name: held
    groups: [agents]
    resources: [%[6]s]
    allow: [read, write]
    approvals:
      - {name: risky, when: [unbounded-write], approvers: [dba], hold: 1m}
  - name: plain
    groups: [plain]
    resources: [%[6]s]
    allow: [all]
  - name: ruled
    groups: [ruled]
    resources: [%[6]s]
    allow: [all]
    approvals:
      - {name: risky, when: [ddl, truncate, unbounded-write, privilege, dangerous-function, unclassified], approvers: [dba], mode: fail-fast}
      - {name: audit, when: [table-write], tables: [%[10]s], approvers: [dba], mode: fail-fast}
`

// nodeConfig is a node's own sections.
const nodeConfig = `
node: {id: %s, data_dir: %q}
listen: {postgres: "127.0.0.1:0", cleartext_loopback: true, api: %q}
limits: {drain_timeout: -1s}
cluster: {peer: %q, client: %q, gossip: %q, api: %q}
`

// benchCluster is three in-process nodes and the tokens to use them.
type benchCluster struct {
	nodes  []*node.Node
	apis   []*http.Client // per node: trusts its development certificate
	tokens map[string]string
	logs   []*os.File
}

func loopbackAddr() (string, error) {
	p, err := harness.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// startCluster starts node 1 (bootstrapping the cluster with the
// benchmark's policy), then nodes 2 and 3 joining it, each with a join
// token from node 1; it returns once all three are voters.
func startCluster(ctx context.Context, dir string, pg *harness.Postgres) (_ *benchCluster, err error) {
	c := &benchCluster{tokens: map[string]string{}}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	for _, who := range []string{rootName, requesterName, approverName, plainName, ruledName} {
		c.tokens[who] = "phg_" + harness.RandomSecret()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(pg.GatewayPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	pol := fmt.Sprintf(policy, identity.HashToken(c.tokens[rootName]), identity.HashToken(c.tokens[requesterName]),
		identity.HashToken(c.tokens[approverName]), identity.HashToken(c.tokens[plainName]), identity.HashToken(c.tokens[ruledName]),
		harness.DB, pg.Addr(), harness.GatewayUser, pwFile, auditTable)
	var join, token string
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		addrs := make([]any, 5)
		for k := range addrs {
			if addrs[k], err = loopbackAddr(); err != nil {
				return nil, err
			}
		}
		text := fmt.Sprintf(nodeConfig, append([]any{id, filepath.Join(dir, id)}, addrs...)...)
		if i == 1 {
			text += pol
		}
		cfg, err := node.ParseConfig([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if join != "" {
			cfg.Cluster.Join = []string{join}
		}
		logFile, err := os.Create(filepath.Join(dir, id+".log"))
		if err != nil {
			return nil, err
		}
		c.logs = append(c.logs, logFile)
		log := slog.New(slog.NewTextHandler(logFile, nil))
		if err := node.Init(cfg, log); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		n, err := node.New(cfg, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		n.SetJoinToken(token)
		start := time.Now()
		if err := n.Start(ctx); err != nil {
			n.Close()
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		c.nodes = append(c.nodes, n)
		api, err := apiClient(filepath.Join(node.DataDir(cfg), "tls", "dev-cert.pem"))
		if err != nil {
			return nil, err
		}
		c.apis = append(c.apis, api)
		logf("%s ready in %v", id, time.Since(start).Round(time.Millisecond))
		if i == 1 {
			join = cfg.Cluster.API
			if token, err = n.JoinToken(ctx, 5*time.Minute); err != nil {
				return nil, err
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := c.nodes[0].Status(ctx)
		voters := 0
		if err == nil && st.Quorum {
			for _, m := range st.Members {
				if m.Role == "voter" {
					voters++
				}
			}
		}
		if voters == 3 {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not three voters after a minute: %+v, %v", st, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apiClient trusts a node's development certificate and keeps its
// connections (an approver's tool would).
func apiClient(certFile string) (*http.Client, error) {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", certFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, MaxIdleConnsPerHost: 2,
	}}, nil
}

// call sends an API request to node i as who and decodes a 200 answer into
// out (nil: dropped).
func (c *benchCluster) call(ctx context.Context, i int, method, path, who string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.nodes[i].APIAddr().String()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.tokens[who])
	resp, err := c.apis[i].Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
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

// endpoint is where who logs in to node i.
func (c *benchCluster) endpoint(i int, who string) harness.Endpoint {
	a := c.nodes[i].PostgresAddr().(*net.TCPAddr)
	return harness.Endpoint{Host: "127.0.0.1", Port: a.Port, User: who, Password: c.tokens[who], DB: harness.DB}
}

// leader is the etcd leader's node id, as node 1 sees it.
func (c *benchCluster) leader(ctx context.Context) string {
	st, err := c.nodes[0].Status(ctx)
	if err != nil || st.Leader == "" {
		return "?"
	}
	return st.Leader
}

// stop closes the nodes, all at once: closed one after the other, the last
// would wait out its calls to a cluster without quorum.
func (c *benchCluster) stop() {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.Close()
		}()
	}
	wg.Wait()
	c.nodes = nil
	for _, f := range c.logs {
		f.Close()
	}
	c.logs = nil
	if err := errors.Join(errs...); err != nil {
		logf("closing the nodes: %v", err)
	}
}
