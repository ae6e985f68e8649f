package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// The systems of a run, as named in the results.
const (
	sysDirect     = "direct"      // the client straight to PostgreSQL
	sysPhigateOff = "phigate-off" // phigate recording to its spool (fsync), shipping off
	sysPhigateOn  = "phigate-on"  // phigate recording and shipping to MinIO
)

// readyLimit bounds a node's start (it bootstraps a cluster of its own).
const readyLimit = 2 * time.Minute

// buildBenchBinary builds phigate with the benchmark-only build tag
// (phigate_bench: PHIGATE_BENCH_SHIPPING=off turns shipping off) from the
// module the benchmark runs in, into out.
func buildBenchBinary(ctx context.Context, out string) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	gomod, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return errors.New("not inside the phigate module: run from the repository, or pass -phigate-bench")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "phigate_bench",
		"-ldflags", "-X github.com/phigate/phigate/node/cli.Version=bench", "-o", out, "./node/cmd/phigate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags phigate_bench: %w\n%s", err, harness.Tail(b, 3000))
	}
	return nil
}

// node is one phigate node process, a cluster of its own, with the
// benchmark's policy (harness.PolicySections) and the store.
type node struct {
	name     string // sysPhigateOn or sysPhigateOff
	shipping bool
	dir      string
	pgAddr   string // listen.postgres
	apiAddr  string // listen.api (HTTPS)
	ep       harness.Endpoint
	proc     *harness.Process
	client   *http.Client // trusts the node's development certificate
}

func (n *node) dataDir() string { return filepath.Join(n.dir, "data") }

// certFile is the node's development certificate, which its API presents.
func (n *node) certFile() string { return filepath.Join(n.dataDir(), "tls", "dev-cert.pem") }

// nodeConfig is a node's whole configuration: its own sections, the store,
// the agent's token and the shared policy sections.
// A zero chunkInterval leaves the product default.
func nodeConfig(id, dataDir, pgAddr, apiAddr, storeLocation, tokenHash, upstream, pwFile string, chunkInterval time.Duration) string {
	interval := ""
	if chunkInterval > 0 {
		interval = fmt.Sprintf(", chunk_interval: %s", chunkInterval)
	}
	return fmt.Sprintf(`# written by bench/recording
node: {id: %s, data_dir: %q}
listen: {postgres: %q, cleartext_loopback: true, api: %q}
limits: {drain_timeout: 2s}
store: {location: %q%s}
identities:
  tokens:
    - {name: %s, kind: agent, groups: [bench], token_sha256: %q}
`, id, dataDir, pgAddr, apiAddr, storeLocation, interval, harness.AgentName, tokenHash) + harness.PolicySections(upstream, pwFile)
}

// startNode starts a node; with shipping false, PHIGATE_BENCH_SHIPPING=off
// (bin must be built with -tags phigate_bench, which is checked in its
// log). It returns once /readyz answers 200 and the agent can log in.
func startNode(ctx context.Context, bin, dir, name string, shipping bool, pg *harness.Postgres, st *objectStore, token string, chunkInterval time.Duration) (_ *node, err error) {
	n := &node{name: name, shipping: shipping, dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, p := range []*string{&n.pgAddr, &n.apiAddr} {
		port, err := harness.FreePort()
		if err != nil {
			return nil, err
		}
		*p = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	pwFile := filepath.Join(dir, "upstream.pw")
	if err := os.WriteFile(pwFile, []byte(pg.GatewayPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(token))
	conf := nodeConfig(name, n.dataDir(), n.pgAddr, n.apiAddr, st.location, hex.EncodeToString(sum[:]), pg.Addr(), pwFile, chunkInterval)
	cfgPath := filepath.Join(dir, "phigate.yaml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "node", "--config", cfgPath)
	cmd.Dir = dir
	cmd.Env = append(withoutEnv(os.Environ(), "PHIGATE_BENCH_SHIPPING"), st.credentialsEnv()...)
	if !shipping {
		cmd.Env = append(cmd.Env, "PHIGATE_BENCH_SHIPPING=off")
	}
	logPath := filepath.Join(dir, "phigate.log")
	if n.proc, err = harness.StartProcess(name, cmd, syscall.SIGTERM, logPath); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.proc.Stop()
		}
	}()
	host, port, _ := net.SplitHostPort(n.pgAddr)
	p, _ := strconv.Atoi(port)
	n.ep = harness.Endpoint{Host: host, Port: p, User: harness.AgentName, Password: token, DB: harness.DB}
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := harness.WaitConnect(ctx, n.ep, n.proc); err != nil {
		return nil, err
	}
	// The two legs must differ in shipping only: make sure the binary
	// honoured the variable (a product build ignores it and ships).
	log, _ := os.ReadFile(logPath)
	off := bytes.Contains(log, []byte("recordings are NOT shipped"))
	if off == shipping {
		return nil, fmt.Errorf("%s: shipping is %v, want %v (is %s built with -tags phigate_bench?)", name, !off, shipping, bin)
	}
	if shipping {
		m, err := n.scrape(ctx)
		if err != nil {
			return nil, err
		}
		if m.get(mWaitKey) != 0 {
			return nil, fmt.Errorf("%s: waiting for the auditors' key: nothing would be sealed", name)
		}
	}
	return n, nil
}

// withoutEnv drops the variable name from env.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// http returns a client that trusts the node's development certificate,
// or an error while the node has not made it yet.
func (n *node) http() (*http.Client, error) {
	if n.client != nil {
		return n.client, nil
	}
	pem, err := os.ReadFile(n.certFile())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("dev-cert.pem holds no certificate (yet)")
	}
	n.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		MaxIdleConnsPerHost: 2,
	}}
	return n.client, nil
}

func (n *node) get(ctx context.Context, path string) ([]byte, int, error) {
	c, err := n.http()
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+n.apiAddr+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return b, resp.StatusCode, err
}

// waitReady polls /readyz until 200, the process exits or readyLimit passes.
func (n *node) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyLimit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		b, code, err := n.get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("readyz: %d %s", code, bytes.TrimSpace(b))
		}
		select {
		case <-n.proc.Exited():
			return fmt.Errorf("%s exited: %v\n%s", n.name, err, n.proc.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v\n%s", n.name, err, n.proc.LogTail())
		case <-tick.C:
		}
	}
}

// scrape reads the node's /metrics.
func (n *node) scrape(ctx context.Context) (metrics, error) {
	b, code, err := n.get(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", n.name, err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s metrics: HTTP %d", n.name, code)
	}
	return parseMetrics(bytes.NewReader(b))
}

// drainPoll is how often the drain is checked; the drain time is known to
// this much.
const drainPoll = 50 * time.Millisecond

// drained says whether, since before, sessions more sessions were indexed
// (every chunk and index entry confirmed by the store) and nothing but
// idle remains on the node: no session logged in, and a backlog no larger
// than idle (what the node's own open recordings hold).
func drained(before, now metrics, sessions int, idle float64) bool {
	return delta(before, now, mIndexed) >= float64(sessions) && now.get(mActive) == 0 && now.get(mBacklog) <= idle
}

// waitDrained polls /metrics until drained, and returns how long that took
// from start (the end of the load) and the last scrape.
func (n *node) waitDrained(ctx context.Context, start time.Time, before metrics, sessions int, idle float64, limit time.Duration) (time.Duration, metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		m, err := n.scrape(ctx)
		if err == nil && drained(before, m, sessions, idle) {
			return time.Since(start), m, nil
		}
		select {
		case <-n.proc.Exited():
			return 0, nil, fmt.Errorf("%s exited while draining\n%s", n.name, n.proc.LogTail())
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%.0f of %d sessions indexed, %d sessions active, backlog %.0f bytes (idle %.0f)",
					delta(before, m, mIndexed), sessions, int(m.get(mActive)), m.get(mBacklog), idle)
			}
			return 0, nil, fmt.Errorf("%s: backlog not drained after %v: %v", n.name, limit, err)
		case <-tick.C:
		}
	}
}

// idleBacklog waits until the node has no session and its backlog stops
// changing, and returns that backlog: what the node keeps open of its own
// (its recording of policy events), which no drain removes.
func (n *node) idleBacklog(ctx context.Context, limit time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last float64 = -1
	stable := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := n.scrape(ctx)
		if err == nil && m.get(mActive) == 0 {
			if b := m.get(mBacklog); b == last {
				if stable++; stable >= 5 {
					return b, nil
				}
			} else {
				last, stable = b, 0
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: backlog still changing after %v (last %.0f bytes): %v", n.name, limit, last, err)
		case <-tick.C:
		}
	}
}
