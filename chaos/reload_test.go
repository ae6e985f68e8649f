package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
)

// TestPolicyApplyCLI drives the real binary: `phigate policy apply` with a
// broken file changes nothing (every error printed, the session goes on);
// with a narrower grant it ends the session that needs a stronger login
// than the grant now gives, and new sessions get the narrower grant.
// SIGHUP with an edited policy section changes nothing and says so.
// `policy history` and `policy diff` show what changed.
func TestPolicyApplyCLI(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, pgtest.Shared(t))
	n := c.startNode(t)
	conn, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (1, 'before apply')"); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(c.dir, "root.token")
	if err := os.WriteFile(tokenFile, []byte(c.tokens["root"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The policy sections of the node's file, with the auditors' key the
	// node has.
	policyOf := func(conf string) string {
		var keep []string
		for line := range strings.Lines(conf) {
			if !strings.HasPrefix(line, "node:") && !strings.HasPrefix(line, "listen:") && !strings.HasPrefix(line, "limits:") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "") + fmt.Sprintf("auditors: {public_key_file: %s}\n", filepath.Join(c.dataDir, "keys", "auditor.pub"))
	}
	phigate := func(args ...string) (string, error) {
		cmd := exec.Command(c.bin, append(args, "--api", fmt.Sprintf("https://127.0.0.1:%d", n.apiPort),
			"--token-file", tokenFile, "--cacert", filepath.Join(c.dataDir, "tls", "dev-cert.pem"))...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	apply := func(policy string) (string, error) {
		f := filepath.Join(c.dir, "policy.yaml")
		if err := os.WriteFile(f, []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
		return phigate("policy", "apply", "-f", f)
	}

	// Two mistakes: both reported, nothing changes.
	broken := strings.Replace(policyOf(string(good)), "resources: [chaos]", "resources: [nowhere]", 1)
	broken = strings.Replace(broken, "tls: disable", "tls: sometimes", 1)
	out, err := apply(broken)
	if err == nil || !strings.Contains(out, `unknown resource "nowhere"`) || !strings.Contains(out, "sometimes") {
		t.Fatalf("apply of a broken policy: %v\n%s", err, out)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (2, 'after a refused apply')"); err != nil {
		t.Fatalf("a refused apply disturbed the session: %v", err)
	}

	// SIGHUP with the grant narrowed in the node's file: only reported.
	if err := os.WriteFile(c.config, []byte(strings.Replace(string(good), "allow: [read, write]", "allow: [read]", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, n, "only the bootstrap policy")
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (3, 'after SIGHUP')"); err != nil {
		t.Fatalf("SIGHUP changed the policy: %v", err)
	}

	out, err = apply(strings.Replace(policyOf(string(good)), "allow: [read, write]", "allow: [read]", 1))
	if err != nil || !strings.Contains(out, "applied revision 2") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (4, 'after the grant narrowed')"); err == nil {
		t.Fatal("the session kept writing after its grant lost write")
	}
	fresh, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	if _, err := fresh.Exec(ctx, "INSERT INTO events VALUES (5, 'new session')"); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("INSERT under the narrowed grant: %v, want 42501", err)
	}
	rows, err := fresh.Query(ctx, "SELECT id FROM events ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || fmt.Sprint(ids) != "[1 2 3]" {
		t.Fatalf("events = %v, %v; want [1 2 3]", ids, err)
	}

	out, err = phigate("policy", "history")
	if err != nil || !strings.Contains(out, "bootstrap (configuration of node chaos-node)") || !strings.Contains(out, "root") {
		t.Fatalf("policy history: %v\n%s", err, out)
	}
	out, err = phigate("policy", "diff", "1", "2")
	if err != nil || !strings.Contains(out, "-  allow:") && !strings.Contains(out, "- read") && !strings.Contains(out, "-      - write") {
		t.Fatalf("policy diff: %v\n%s", err, out)
	}
	if !strings.Contains(out, "write") {
		t.Fatalf("policy diff 1 2 does not show write going:\n%s", out)
	}
	out, err = phigate("policy", "get")
	if err != nil || strings.Contains(out, "chaos-svc-pw") || !strings.Contains(out, "sealed:") {
		t.Fatalf("policy get: %v\n%s", err, out)
	}
	n.stop(t)
}

// waitLog waits until the node's log says want.
func waitLog(t *testing.T, n *nodeProc, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(n.log)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the node's log:\n%s", want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
