package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/identity"
)

// fleet is several `phigate node` processes forming one cluster on
// loopback, in front of one PostgreSQL.
type fleet struct {
	t      *testing.T
	dir    string
	policy string // the bootstrap policy sections
	tokens map[string]string
	nodes  map[string]*member
}

// member is one node process and what it listens on.
type member struct {
	id, config, dataDir, log string
	pg, api, nodeAPI         int
	cmd                      *exec.Cmd
	done                     chan error
}

func newFleet(t *testing.T, pg *pgtest.Server) *fleet {
	t.Helper()
	ctx := context.Background()
	f := &fleet{t: t, dir: t.TempDir(), nodes: map[string]*member{},
		tokens: map[string]string{"writer": "phg_fleet_writer", "root": "phg_fleet_root"}}
	if err := pg.AddUser(ctx, pgtest.User{Name: "fleet_svc", Password: "fleet-svc-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "fleet", "fleet_svc"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "fleet", "SET ROLE fleet_svc; CREATE TABLE events (id int PRIMARY KEY, node text)"); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(f.dir, "svc.pw")
	if err := os.WriteFile(pw, []byte("fleet-svc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.policy = fmt.Sprintf(`identities: {tokens: [{name: writer, kind: ci, groups: [writers], token_sha256: %s}, {name: root, kind: human, groups: [admins], token_sha256: %s}]}
resources: [{name: fleet, address: %q, database: fleet, user: fleet_svc, password_file: %s, tls: disable}]
grants: [{name: writers, groups: [writers], resources: [fleet], allow: [read, write], functions: [pg_sleep]}]
admins: {groups: [admins]}
`, identity.HashToken(f.tokens["writer"]), identity.HashToken(f.tokens["root"]), pg.Addr(), pw)
	if err := os.WriteFile(filepath.Join(f.dir, "root.token"), []byte(f.tokens["root"]), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	out, err := freeport.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// add writes node id's configuration (fresh ports, lease 3 s, drain 3 s).
func (f *fleet) add(id string) *member {
	p := freePorts(f.t, 6)
	m := &member{id: id, dataDir: filepath.Join(f.dir, id), pg: p[0], api: p[1], nodeAPI: p[2],
		config: filepath.Join(f.dir, id+".yaml"), log: filepath.Join(f.dir, id+".log")}
	conf := fmt.Sprintf(`node: {id: %s, data_dir: %s}
listen: {postgres: "127.0.0.1:%d", cleartext_loopback: true, api: "127.0.0.1:%d"}
limits: {drain_timeout: 3s}
cluster: {api: "127.0.0.1:%d", peer: "127.0.0.1:%d", client: "127.0.0.1:%d", gossip: "127.0.0.1:%d", lease: 3s}
`, id, m.dataDir, p[0], p[1], p[2], p[3], p[4], p[5]) + f.policy
	if err := os.WriteFile(m.config, []byte(conf), 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.nodes[id] = m
	return m
}

// start runs the node (with join arguments, if any) and waits until it
// is ready, or returns its exit error.
func (f *fleet) start(m *member, args ...string) error {
	f.t.Helper()
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	m.cmd = exec.Command(phigateBin, append([]string{"node", "--config", m.config}, args...)...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := pgtest.Spawn(m.cmd, syscall.SIGTERM); err != nil {
		f.t.Fatal(err)
	}
	m.done = make(chan error, 1)
	cmd := m.cmd
	go func() { m.done <- cmd.Wait(); logf.Close() }()
	f.t.Cleanup(func() { pgtest.KillGroup(cmd.Process.Pid) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.pg)); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-m.done:
			return fmt.Errorf("%s exited: %v", m.id, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s not ready:\n%s", m.id, readFile(m.log))
		}
	}
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

// admin runs an admin verb against node m's API.
func (f *fleet) admin(m *member, args ...string) (string, error) {
	cmd := exec.Command(phigateBin, append(args, "--api", fmt.Sprintf("https://127.0.0.1:%d", m.api),
		"--token-file", filepath.Join(f.dir, "root.token"), "--cacert", filepath.Join(m.dataDir, "tls", "dev-cert.pem"))...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type statusView struct {
	Quorum  bool `json:"quorum"`
	Members []struct {
		Name, Role, Gossip string
	} `json:"members"`
}

func (f *fleet) status(m *member) (statusView, error) {
	out, err := f.admin(m, "cluster", "status", "--json")
	var st statusView
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	return st, err
}

// roles is "name=role ..." of the members, sorted as status lists them.
func (st statusView) roles() string {
	var s []string
	for _, m := range st.Members {
		s = append(s, m.Name+"="+m.Role)
	}
	return strings.Join(s, " ")
}

func (f *fleet) eventually(d time.Duration, what string, ok func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, m := range f.nodes {
				fmt.Fprintf(&logs, "== %s\n%s\n", m.id, tail(readFile(m.log), 30))
			}
			f.t.Fatalf("after %v: not %s\n%s", d, what, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (f *fleet) dsn(m *member) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=writer password=%s dbname=fleet sslmode=disable connect_timeout=5", m.pg, f.tokens["writer"])
}

// TestClusterOfProcesses runs `phigate node` processes on loopback:
// node 1 bootstraps; a node with a bad token is refused (and logged);
// nodes 2, 3 and 4 join with a token from `phigate cluster join-token`
// (2 and 3 become voters, 4 stays a learner); node 3 is killed with
// SIGKILL and the cluster keeps serving and applying policies, node 4 is
// promoted, and `phigate cluster remove` removes node 3; node 2 drains on
// SIGTERM (its open session finishes its work, new logins are refused,
// then the session is ended) and, restarted, rejoins by itself.
func TestClusterOfProcesses(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, pgtest.Shared(t))
	n1 := f.add("n1")
	if err := f.start(n1); err != nil {
		t.Fatalf("%v\n%s", err, readFile(n1.log))
	}
	token, err := f.admin(n1, "cluster", "join-token", "--ttl", "10m")
	if err != nil {
		t.Fatalf("join-token: %v\n%s", err, token)
	}
	token = strings.TrimSpace(token)
	join := fmt.Sprintf("127.0.0.1:%d", n1.nodeAPI)

	bad := f.add("bad")
	forged := token[:len(token)-4] + "AAAA" // the right CA, a wrong secret
	if forged == token {
		forged = token[:len(token)-4] + "BAAA"
	}
	if err := f.start(bad, "--join", join, "--join-token", forged); err == nil {
		t.Fatal("a node with a forged token joined")
	}
	delete(f.nodes, "bad")
	if !strings.Contains(readFile(n1.log), "join refused") {
		t.Fatalf("node 1 did not log the refused join:\n%s", tail(readFile(n1.log), 20))
	}

	for _, id := range []string{"n2", "n3", "n4"} {
		m := f.add(id)
		if err := f.start(m, "--join", join, "--join-token", token); err != nil {
			t.Fatalf("%v\n%s", err, readFile(m.log))
		}
	}
	n2, n3, n4 := f.nodes["n2"], f.nodes["n3"], f.nodes["n4"]
	f.eventually(60*time.Second, "n1..n3 voters and n4 a learner", func() bool {
		st, err := f.status(n4)
		return err == nil && st.roles() == "n1=voter n2=voter n3=voter n4=learner"
	})

	// Agents on every node; writes through each.
	for i, m := range []*member{n1, n2, n3, n4} {
		conn, err := pgx.Connect(ctx, f.dsn(m))
		if err != nil {
			t.Fatalf("%s: %v", m.id, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO events VALUES ($1, $2)", i+1, m.id); err != nil {
			t.Fatalf("%s: %v", m.id, err)
		}
		conn.Close(ctx)
	}

	// A voter killed: the cluster serves on, applies a policy, promotes
	// the learner; the dead node is removed.
	pgtest.KillGroup(n3.cmd.Process.Pid)
	<-n3.done
	delete(f.nodes, "n3")
	policyFile := filepath.Join(f.dir, "next.yaml")
	narrowed := strings.Replace(f.policy, "allow: [read, write]", "allow: [read]", 1) +
		fmt.Sprintf("auditors: {public_key_file: %s}\n", filepath.Join(n1.dataDir, "keys", "auditor.pub"))
	if err := os.WriteFile(policyFile, []byte(narrowed), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := f.admin(n2, "policy", "apply", "-f", policyFile); err != nil {
		t.Fatalf("apply with a voter dead: %v\n%s", err, out)
	}
	f.eventually(10*time.Second, "the narrowed grant enforced on node 4", func() bool {
		conn, err := pgx.Connect(ctx, f.dsn(n4))
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "INSERT INTO events VALUES (99, 'n4')")
		return err != nil && strings.Contains(err.Error(), "42501")
	})
	f.eventually(60*time.Second, "node 4 promoted", func() bool {
		st, err := f.status(n1)
		return err == nil && strings.Contains(st.roles(), "n4=voter")
	})
	if out, err := f.admin(n1, "cluster", "remove", "n3"); err != nil {
		t.Fatalf("cluster remove: %v\n%s", err, out)
	}
	f.eventually(10*time.Second, "n3 gone from the members", func() bool {
		st, err := f.status(n2)
		return err == nil && st.roles() == "n1=voter n2=voter n4=voter"
	})

	// Node 2 drains on SIGTERM: its open session goes on, new logins are
	// refused; after the drain timeout the session is ended, recorded.
	open, err := pgx.Connect(ctx, f.dsn(n2))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	if err := n2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The node logs "draining" once its listeners are closed.
	f.eventually(10*time.Second, "node 2 draining", func() bool {
		return strings.Contains(readFile(n2.log), "draining")
	})
	if _, err := open.Exec(ctx, "SELECT count(*) FROM events"); err != nil {
		t.Fatalf("a session during the drain: %v", err)
	}
	if c, err := pgx.Connect(ctx, f.dsn(n2)); err == nil {
		c.Close(ctx)
		t.Fatal("a draining node accepted a new session")
	}
	select {
	case err := <-n2.done:
		if err != nil {
			t.Fatalf("node 2 exit after SIGTERM: %v\n%s", err, tail(readFile(n2.log), 20))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node 2 did not stop after its drain timeout")
	}
	if _, err := open.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("the session outlived the drain")
	}
	if !strings.Contains(readFile(n2.log), "draining") {
		t.Fatal("node 2 did not say it was draining")
	}

	// Restarted on its data directory, node 2 rejoins by itself.
	if err := f.start(n2); err != nil {
		t.Fatalf("%v\n%s", err, tail(readFile(n2.log), 30))
	}
	f.eventually(30*time.Second, "node 2 back as a voter", func() bool {
		st, err := f.status(n1)
		if err != nil || !st.Quorum {
			return false
		}
		for _, m := range st.Members {
			if m.Name == "n2" && m.Role == "voter" && m.Gossip == "alive" {
				return true
			}
		}
		return false
	})
	conn, err := pgx.Connect(ctx, f.dsn(n2))
	if err != nil {
		t.Fatalf("node 2 after its restart: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != 4 {
		t.Fatalf("events through the restarted node: %d, %v; want 4", n, err)
	}
	conn.Close(ctx)
}
