package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/node/cli"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/storage/spool"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestExampleConfigParses(t *testing.T) {
	cfg, err := node.LoadConfig("../examples/phigate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Resources) == 0 || len(cfg.Grants) == 0 || len(cfg.Masking.Profiles["hipaa"].Rules) == 0 {
		t.Fatalf("example config lost sections: %+v", cfg)
	}
}

func TestConfigRejectsUnknownFields(t *testing.T) {
	_, err := node.ParseConfig([]byte("grants:\n  - name: g\n    alow: [read]\n"))
	if err == nil || !strings.Contains(err.Error(), "alow") {
		t.Fatalf("typo accepted: %v", err)
	}
	if _, err := node.ParseConfig(nil); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"bad grant class":   {"resources: [{name: r, address: 'h:1', database: d, user: u}]\ngrants: [{name: g, groups: [a], resources: [r], allow: [everything]}]", "unknown statement class"},
		"unknown resource":  {"grants: [{name: g, groups: [a], resources: [nope], allow: [read]}]", "unknown resource"},
		"bad token hash":    {"identities: {tokens: [{name: a, kind: agent, token_sha256: xyz}]}", "64 hex digits"},
		"missing password":  {"resources: [{name: r, address: 'h:1', database: d, user: u, password_env: PHIGATE_TEST_UNSET_VAR}]", "not set"},
		"bad masking rule":  {"masking: {profiles: {p: {rules: [{column: a.b, action: explode}]}}}", "explode"},
		"bad protocol":      {"resources: [{name: r, protocol: mysql, address: 'h:1', database: d, user: u}]", "not supported"},
		"half a TLS config": {"tls: {cert_file: /x.pem}", "both"},
		"gossip by name":    {"cluster: {gossip: 'node-1.internal:7946'}", "cluster.gossip"},
		"gossip on any":     {"cluster: {gossip: '0.0.0.0:7946'}", "cluster.gossip"},
		"four voters":       {"cluster: {voters: 4}", "1, 3 or 5"},
		"bad auditor key":   {"auditors: {public_key: 'not a key'}", "auditors.public_key"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := node.ParseConfig([]byte(tc.yaml + "\nnode: {data_dir: " + dir + "}\n"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = initAndNew(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNodeServesAndShutsDown runs a whole node against a real PostgreSQL:
// an agent queries through it, then the node stops while the agent is still
// connected. The agent is told (57P01) and its recording ends cleanly.
func TestNodeServesAndShutsDown(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Shared(t)
	if err := pg.AddUser(ctx, pgtest.User{Name: "node_svc", Password: "node-svc-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "node_clinic", "node_svc"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "node_clinic", "SET ROLE node_svc; CREATE TABLE patients (id int, ssn text); INSERT INTO patients VALUES (1, '123-45-6789')"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "svc.pw")
	if err := os.WriteFile(pw, []byte("node-svc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "phg_node_test_token"
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(`
node: {id: test-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0"}
limits: {drain_timeout: -1s} # stopped: end the open session at once
identities: {tokens: [{name: bot, kind: agent, groups: [bots], token_sha256: %s}]}
resources: [{name: clinic, address: %q, database: node_clinic, user: node_svc, password_file: %s, tls: disable}]
grants: [{name: bots-read, groups: [bots], resources: [clinic], allow: [read], masking: p}]
masking: {profiles: {p: {rules: [{column: patients.ssn, action: keep-last-4}]}}}
`, filepath.Join(dir, "data"), identity.HashToken(token), pg.Addr(), pw)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := initAndNew(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	// The development certificate was created: TLS works without config.
	port := n.PostgresAddr().(*net.TCPAddr).Port
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=bot password=%s dbname=clinic sslmode=require", port, token))
	if err != nil {
		t.Fatal(err)
	}
	var ssn string
	if err := conn.QueryRow(ctx, "SELECT ssn FROM patients").Scan(&ssn); err != nil || ssn != "***-**-6789" {
		t.Fatalf("ssn = %q, %v", ssn, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("session still served after shutdown")
	}
	all, err := replay.List(ctx, recordingStore(t, filepath.Join(dir, "data")))
	if err != nil {
		t.Fatal(err)
	}
	var sessions []replay.SessionInfo
	for _, s := range all {
		if s.Resource != "" { // not the recording of the bootstrap policy
			sessions = append(sessions, s)
		}
	}
	if len(sessions) != 1 || sessions[0].Status != replay.StatusClosed || sessions[0].Reason != "node shutdown" || sessions[0].Identity != "bot" {
		t.Fatalf("sessions = %+v", sessions)
	}

	// The masking proof opens with the auditor key the node created on
	// first start, and unsealing is recorded in the audit log first.
	data := filepath.Join(dir, "data")
	var out, errOut strings.Builder
	code := cli.Main(ctx, []string{"unseal", "--data-dir", data, "--key", filepath.Join(data, "keys", "auditor.key"),
		"--auditor", "alice", "--reason", "incident 42", sessions[0].ID}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "'123-45-6789'") {
		t.Fatalf("unseal exit %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	audit, err := replay.List(ctx, spool.DirStore{Dir: filepath.Join(data, node.AuditLogSubdir)})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 1 || audit[0].Status != replay.StatusClosed || audit[0].Identity != "alice" || audit[0].Events != 3 {
		t.Fatalf("audit log = %+v", audit)
	}
	// Another key opens nothing.
	other := filepath.Join(dir, "other")
	if code := cli.Main(ctx, []string{"keys", "auditor", "--out", other}, io.Discard, io.Discard); code != 0 {
		t.Fatal("keys auditor failed")
	}
	out.Reset()
	code = cli.Main(ctx, []string{"unseal", "--data-dir", data, "--key", filepath.Join(other, "auditor.key"),
		"--auditor", "mallory", "--reason", "curious", sessions[0].ID}, &out, io.Discard)
	if code == 0 || strings.Contains(out.String(), "123-45-6789") {
		t.Fatalf("unseal with another key: exit %d, %s", code, out.String())
	}
}

// initAndNew prepares cfg's data directory as `phigate node` does, then
// builds the node.
func initAndNew(t *testing.T, cfg *node.Config, log *slog.Logger) (*node.Node, error) {
	t.Helper()
	if err := node.Init(cfg, log); err != nil {
		t.Fatal(err)
	}
	return node.New(cfg, log)
}
