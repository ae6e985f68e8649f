package node_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/identity"
)

// clusterFixture is nodes' configurations in front of one PostgreSQL:
// agents a, b and c may read the clinic resource when the policy names
// them; root administers.
type clusterFixture struct {
	dir, pgAddr, pw, db string
	tokens              map[string]string
}

// newClusterFixture makes a database and its login of its own (db) in
// the shared PostgreSQL, and tokens named after it.
func newClusterFixture(t *testing.T, db string) *clusterFixture {
	t.Helper()
	ctx := context.Background()
	pg := pgtest.Shared(t)
	if err := pg.AddUser(ctx, pgtest.User{Name: db + "_svc", Password: "cluster-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, db, db+"_svc"); err != nil {
		t.Fatal(err)
	}
	f := &clusterFixture{dir: t.TempDir(), pgAddr: pg.Addr(), db: db, tokens: map[string]string{}}
	for _, who := range []string{"root", "a", "b", "c"} {
		f.tokens[who] = "phg_" + db + "_" + who
	}
	f.pw = filepath.Join(f.dir, "svc.pw")
	if err := os.WriteFile(f.pw, []byte("cluster-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

const clusterNodeConfig = `
node: {id: %s, data_dir: %s}
listen: {postgres: "127.0.0.1:0", cleartext_loopback: true, api: %q}
limits: {drain_timeout: -1s}
cluster: {peer: %q, client: %q, gossip: %q, api: %q, lease: 2s}
`

const clusterPolicy = `
identities: {tokens: [%s]}
resources: [{name: clinic, address: %q, database: %s, user: %s_svc, password_file: %s, tls: disable}]
grants: [{name: agents, groups: [agents], resources: [clinic], allow: [%s], functions: [pg_sleep]}]
admins: {groups: [admins]}
`

func (f *clusterFixture) token(name, group string) string {
	return fmt.Sprintf("{name: %s, kind: agent, groups: [%s], token_sha256: %s}", name, group, identity.HashToken(f.tokens[name]))
}

// policy is the policy with the named agents' tokens (and root's).
func (f *clusterFixture) policy(allow string, agents ...string) string {
	toks := []string{f.token("root", "admins")}
	for _, a := range agents {
		toks = append(toks, f.token(a, "agents"))
	}
	return fmt.Sprintf(clusterPolicy, strings.Join(toks, ", "), f.pgAddr, f.db, f.db, f.pw, allow)
}

type testNode struct {
	*node.Node
	cfg     *node.Config
	cluster string // its node-to-node API address
	stop    func()
}

// config is node id's configuration with the bootstrap policy.
func (f *clusterFixture) config(t *testing.T, id string) *node.Config {
	t.Helper()
	ports := []any{id, filepath.Join(f.dir, id), freeport.TestAddr(t), freeport.TestAddr(t), freeport.TestAddr(t), freeport.TestAddr(t), freeport.TestAddr(t)}
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(clusterNodeConfig, ports...) + f.policy("read", "a", "b")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs a node with cfg (joining with token, if any) until stop or
// the test's end.
func startTestNode(t *testing.T, cfg *node.Config, token string) (*testNode, error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test_node", cfg.Node.ID)
	}
	if err := node.Init(cfg, log); err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	n.SetJoinToken(token)
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		return nil, err
	}
	tn := &testNode{Node: n, cfg: cfg, cluster: cfg.Cluster.API}
	var stopped bool
	tn.stop = func() {
		if !stopped {
			stopped = true
			if err := n.Close(); err != nil {
				t.Errorf("close %s: %v", cfg.Node.ID, err)
			}
		}
	}
	t.Cleanup(tn.stop)
	return tn, nil
}

func (n *testNode) dsn(who, token string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=clinic sslmode=disable connect_timeout=5",
		n.PostgresAddr().(*net.TCPAddr).Port, who, token)
}

// TestThreeNodes drives an in-process cluster of three nodes in front of
// a real PostgreSQL: nodes 2 and 3 join node 1 with a token, and one
// without a valid token is refused; a policy applied on node 1 is
// enforced on node 3 within a second; a revoked token ends a session open
// on node 2 at its next command; a cancel sent to the wrong node cancels;
// the session index knows every node's sessions; the admin API refuses
// non-admins. With two voters stopped the survivor fails closed after its
// lease (57P03, for logins and for an open session) and serves again once
// they are back.
func TestThreeNodes(t *testing.T) {
	ctx := context.Background()
	f := newClusterFixture(t, "node_cluster")

	n1, err := startTestNode(t, f.config(t, "n1"), "")
	if err != nil {
		t.Fatal(err)
	}
	token, err := n1.JoinToken(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A node without a valid token is refused and changes nothing.
	bad := f.config(t, "intruder")
	bad.Cluster.Join = []string{n1.cluster}
	forged := token[:len(token)-4] + "AAAA"
	if _, err := startTestNode(t, bad, forged); err == nil {
		t.Fatal("a node with a forged join token joined")
	}
	var nodes []*testNode
	for _, id := range []string{"n2", "n3"} {
		cfg := f.config(t, id)
		cfg.Cluster.Join = []string{n1.cluster}
		n, err := startTestNode(t, cfg, token)
		if err != nil {
			t.Fatalf("%s joins: %v", id, err)
		}
		nodes = append(nodes, n)
	}
	n2, n3 := nodes[0], nodes[1]
	waitFor(t, 30*time.Second, "three voters, no intruder", func() bool {
		st, err := n1.Status(ctx)
		if err != nil || len(st.Members) != 3 {
			return false
		}
		for _, m := range st.Members {
			if m.Role != "voter" || m.Name == "intruder" {
				return false
			}
		}
		return true
	})

	// Agent b's session on node 2, agent a's on node 1.
	b2, err := pgx.Connect(ctx, n2.dsn("b", f.tokens["b"]))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close(ctx)
	a1, err := pgx.Connect(ctx, n1.dsn("a", f.tokens["a"]))
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close(ctx)

	// Applied on node 1: c added, b removed. Node 3 enforces it within a
	// second; b's open session on node 2 ends at its next command.
	next, err := node.ParsePolicy([]byte(f.policy("read", "a", "c")))
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Resolve(); err != nil {
		t.Fatal(err)
	}
	cur, err := n1.Policy(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	curPolicy, _ := node.ParsePolicy(cur.Document)
	next.Auditors = curPolicy.Auditors
	start := time.Now()
	rev, err := n1.ApplyPolicy(ctx, next, "test-admin", cur.Revision)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	err = n3.WaitPolicy(wctx, rev.Revision)
	cancel()
	if err != nil {
		t.Fatalf("node 3 does not enforce revision %d a second after it was applied on node 1", rev.Revision)
	}
	t.Logf("apply on node 1 -> enforced on node 3: %v", time.Since(start))
	c3, err := pgx.Connect(ctx, n3.dsn("c", f.tokens["c"]))
	if err != nil {
		t.Fatalf("the token added on node 1 does not log in on node 3: %v", err)
	}
	c3.Close(ctx)
	if err := n2.WaitPolicy(ctx, rev.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Exec(ctx, "SELECT 1"); !hasCode(err, "42501") {
		t.Fatalf("b's session on node 2 after its token was revoked on node 1: %v, want 42501", err)
	}
	if _, err := pgx.Connect(ctx, n3.dsn("b", f.tokens["b"])); !hasCode(err, "28P01") {
		t.Fatalf("b's token on node 3 after its revocation: %v, want 28P01", err)
	}
	// A stale base is refused: the change made meanwhile is not overwritten.
	if _, err := n2.ApplyPolicy(ctx, next, "test-admin", cur.Revision); err == nil {
		t.Fatal("an apply based on a stale revision was accepted")
	}

	// A cancel sent to node 2 for a's query on node 1.
	errc := make(chan error, 1)
	go func() {
		_, err := a1.Exec(ctx, "SELECT pg_sleep(30)")
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	sendCancel(t, n2.PostgresAddr().String(), a1.PgConn().PID(), a1.PgConn().SecretKey())
	select {
	case err := <-errc:
		if !hasCode(err, "57014") {
			t.Fatalf("the query cancelled through node 2: %v, want 57014", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancel sent to node 2 did not cancel the query on node 1")
	}

	// The admin API: sessions across the cluster, for admins only.
	api := "https://" + n3.APIAddr().String()
	if code, _ := apiGet(t, api+"/admin/v1/sessions", f.tokens["a"]); code != http.StatusForbidden {
		t.Fatalf("an agent asked the admin API: %d, want 403", code)
	}
	if code, _ := apiGet(t, api+"/admin/v1/sessions", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	waitFor(t, 10*time.Second, "the session index holds sessions of nodes 1 and 2", func() bool {
		code, body := apiGet(t, api+"/admin/v1/sessions", f.tokens["root"])
		return code == http.StatusOK && strings.Contains(body, `"node": "n1"`) && strings.Contains(body, `"node": "n2"`)
	})
	if code, body := apiGet(t, api+"/admin/v1/policy", f.tokens["root"]); code != http.StatusOK || strings.Contains(body, "cluster-pw") || !strings.Contains(body, "sealed") {
		t.Fatalf("policy through the API: %d\n%s", code, body)
	}

	if code, body := apiGet(t, api+"/admin/v1/cluster/snapshot", f.tokens["root"]); code != http.StatusOK || len(body) < 4096 || strings.Contains(body, "cluster-pw") {
		t.Fatalf("cluster snapshot: %d, %d bytes", code, len(body))
	}

	// Quorum lost: nodes 2 and 3 stop. Node 1 serves on for its lease (2
	// s), then refuses logins and ends a's session with 57P03.
	n2.stop()
	n3.stop()
	waitFor(t, 15*time.Second, "node 1 refuses logins without quorum", func() bool {
		_, err := pgx.Connect(ctx, n1.dsn("a", f.tokens["a"]))
		return hasCode(err, "57P03")
	})
	if _, err := a1.Exec(ctx, "SELECT 1"); !hasCode(err, "57P03") {
		t.Fatalf("an open session without quorum after the lease: %v, want 57P03", err)
	}
	// Back: nodes 2 and 3 restart on their data directories and rejoin
	// by themselves; node 1 serves again.
	for _, n := range []*testNode{n2, n3} {
		if _, err := startTestNode(t, n.cfg, ""); err != nil {
			t.Fatalf("restart %s: %v", n.cfg.Node.ID, err)
		}
	}
	waitFor(t, 30*time.Second, "node 1 serves again once the quorum is back", func() bool {
		c, err := pgx.Connect(ctx, n1.dsn("a", f.tokens["a"]))
		if err != nil {
			return false
		}
		c.Close(ctx)
		return true
	})
}

func hasCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: not %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sendCancel writes a CancelRequest for (pid, secret) to addr, as libpq
// does on a new connection.
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 12, 16)
	binary.BigEndian.PutUint32(b[0:], uint32(12+len(secret)))
	binary.BigEndian.PutUint32(b[4:], 80877102)
	binary.BigEndian.PutUint32(b[8:], pid)
	b = append(b, secret...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Read(make([]byte, 1)) // the node closes it, answering nothing
}

func apiGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
