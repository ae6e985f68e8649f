package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/record"
)

// TestNewStartsAndWritesNothing: New only reads; what a first start needs
// in the data directory is Init's to make, and New says so when it is
// missing.
func TestNewStartsAndWritesNothing(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg, err := node.ParseConfig([]byte("node: {data_dir: " + data + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "node.Init") {
		t.Fatalf("New without Init: %v, want an error naming Init", err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("New created the data directory (%v)", err)
	}
	if err := node.Init(cfg, nil); err != nil {
		t.Fatal(err)
	}
	before := listFiles(t, data)
	n, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after := listFiles(t, data); after != before {
		t.Fatalf("New wrote to the data directory:\nbefore %s\nafter  %s", before, after)
	}
	// Init again keeps what exists (the keys would otherwise change).
	key, _ := os.ReadFile(filepath.Join(data, "keys", "pseudonym.key"))
	if err := node.Init(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(data, "keys", "pseudonym.key")); !bytes.Equal(key, again) {
		t.Fatal("a second Init replaced the pseudonym key")
	}
	// Close before Start, and twice, is fine; a closed node does not start.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func listFiles(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%d:%d ", strings.TrimPrefix(path, dir), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// reloadFixture is a node's configuration in front of a real PostgreSQL,
// with one agent identity, bot, whose grant reads the clinic resource.
type reloadFixture struct {
	dir, pw, pgAddr, token string
}

const reloadConfig = `
node: {id: reload-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0"}
identities: {tokens: [%s]}
resources: [{name: clinic, address: %q, database: node_reload, user: reload_svc, password_file: %s, tls: disable}]
grants: [{name: bots, groups: [bots], resources: [%s], allow: [read]}]
`

func (f *reloadFixture) config(t *testing.T, tokens, grantResource string) *node.Config {
	t.Helper()
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(reloadConfig, filepath.Join(f.dir, "data"), tokens, f.pgAddr, f.pw, grantResource)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (f *reloadFixture) botToken() string {
	return fmt.Sprintf("{name: bot, kind: agent, groups: [bots], token_sha256: %s}", identity.HashToken(f.token))
}

// applyPolicy applies cfg's policy sections to n's cluster as a test
// admin would (`phigate policy apply`: resolved where the files are) and
// waits until n enforces the new revision.
func applyPolicy(t *testing.T, n *node.Node, cfg *node.Config) (uint64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := cfg.Policy
	if err := p.Resolve(); err != nil {
		return 0, err
	}
	if p.Auditors.PublicKey == "" {
		// As an admin does: the auditors' key stays what it is.
		cur, err := n.Policy(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		curPolicy, err := node.ParsePolicy(cur.Document)
		if err != nil {
			t.Fatal(err)
		}
		p.Auditors = curPolicy.Auditors
	}
	rev, err := n.ApplyPolicy(ctx, &p, "test-admin", 0)
	if err != nil {
		return 0, err
	}
	if err := n.WaitPolicy(ctx, rev.Revision); err != nil {
		t.Fatalf("policy revision %d not enforced: %v", rev.Revision, err)
	}
	return rev.Revision, nil
}

// TestApplyPolicy: a policy that does not validate changes nothing and
// says every reason; one that removes an identity ends its live session
// at once, recorded, and the node keeps serving. The password is stored
// sealed. A reload of the node's file applies only its certificate and
// says the policy sections are the bootstrap policy. Restarted, the node
// enforces the cluster's revision, not its file's. Close stops
// everything, once.
func TestApplyPolicy(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Shared(t)
	if err := pg.AddUser(ctx, pgtest.User{Name: "reload_svc", Password: "reload-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "node_reload", "reload_svc"); err != nil {
		t.Fatal(err)
	}
	f := &reloadFixture{dir: t.TempDir(), pgAddr: pg.Addr(), token: "phg_reload_test_token"}
	f.pw = filepath.Join(f.dir, "svc.pw")
	if err := os.WriteFile(f.pw, []byte("reload-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.config(t, f.botToken(), "clinic")
	var logs syncBuffer
	n, err := initAndNew(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(ctx); !errors.Is(err, node.ErrStarted) {
		t.Fatalf("a second Start: %v, want ErrStarted", err)
	}
	if err := n.Run(ctx); !errors.Is(err, node.ErrStarted) {
		t.Fatalf("Run on a started node: %v, want ErrStarted", err)
	}
	if n.PolicyRevision() != 1 {
		t.Fatalf("policy revision after bootstrap: %d, want 1", n.PolicyRevision())
	}
	port := n.PostgresAddr().(*net.TCPAddr).Port
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=bot password=%s dbname=clinic sslmode=require", port, f.token)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rev := n.Revision()

	// A grant naming a resource that does not exist, and a resource with
	// a bad TLS mode: refused whole, with both reasons.
	bad := f.config(t, "", "nowhere")
	bad.Resources = append(bad.Resources, node.ResourceConfig{Name: "other", Address: "127.0.0.1:1", Database: "d", User: "x", TLS: "sometimes"})
	if _, err := applyPolicy(t, n, bad); err == nil || !strings.Contains(err.Error(), "sometimes") || !strings.Contains(err.Error(), `unknown resource "nowhere"`) {
		t.Fatalf("apply of a bad policy: %v", err)
	}
	if n.Revision() != rev || n.PolicyRevision() != 1 {
		t.Fatal("a refused policy changed the revision")
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a refused policy disturbed a session: %v", err)
	}

	// The bot's token gone: its session ends now.
	next := f.config(t, "", "clinic")
	if _, err := applyPolicy(t, n, next); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if err == nil || (errors.As(err, &pe) && pe.Code != "42501") {
		t.Fatalf("the revoked session: %v, want 42501", err)
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("the removed token still logs in: %v", err)
	}

	// The node's file: the certificate reloads; the rest is reported.
	edited := f.config(t, f.botToken(), "nowhere") // a grant edited in the file
	edited.Listen.Postgres = "127.0.0.1:1"
	if _, err := n.Reload(edited); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"need a restart", "only the bootstrap policy"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the reload did not say %q:\n%s", want, logs.String())
		}
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("a reload of the file brought the revoked token back")
	}
	if strings.Contains(logs.String(), "reload-pw") {
		t.Fatal("the password reached the log")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	reasons := endReasons(t, filepath.Join(f.dir, "data"))
	if !strings.Contains(strings.Join(reasons, "\n"), "identity is no longer accepted") {
		t.Fatalf("no session ended for the revoked identity: %q", reasons)
	}
	// Both revisions are in the node's recordings, who stored them and
	// their digest; the refused policy changed nothing, so it is not.
	var policies []string
	for _, s := range recordedEvents(t, filepath.Join(f.dir, "data")) {
		for _, ev := range s {
			if ev.Policy != nil && ev.Policy.Revision != 0 {
				policies = append(policies, fmt.Sprintf("%d by %s", ev.Policy.Revision, ev.Policy.AppliedBy))
				if len(ev.Policy.SHA256) != 64 {
					t.Fatalf("policy event without a digest: %+v", ev.Policy)
				}
			}
		}
	}
	if got := strings.Join(policies, ", "); got != "1 by bootstrap (configuration of node reload-node), 2 by test-admin" {
		t.Fatalf("recorded policy changes: %s", got)
	}
	select {
	case err := <-n.Err():
		t.Fatalf("Err after a clean run: %v", err)
	case <-time.After(10 * time.Millisecond):
	}

	// Restarted with the file that still has the token: the cluster's
	// revision 2 is in force, not the file.
	again, err := initAndNew(t, f.config(t, f.botToken(), "clinic"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.PolicyRevision() != 2 {
		t.Fatalf("after a restart the node enforces policy revision %d, want 2", again.PolicyRevision())
	}
	dsn = fmt.Sprintf("host=127.0.0.1 port=%d user=bot password=%s dbname=clinic sslmode=require", again.PostgresAddr().(*net.TCPAddr).Port, f.token)
	if _, err := pgx.Connect(ctx, dsn); err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("the revoked token logs in after a restart: %v", err)
	}
	doc, err := again.Policy(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc.Document), "reload-pw") || !strings.Contains(string(doc.Document), "sealed:") {
		t.Fatalf("the stored policy does not hold the password sealed:\n%s", doc.Document)
	}
}

// recordedEvents returns every recording's events, verified, oldest
// recording first.
func recordedEvents(t *testing.T, data string) [][]*record.Event {
	t.Helper()
	ctx := context.Background()
	store := recordingStore(t, data)
	sessions, err := replay.List(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]*record.Event
	for _, s := range sessions {
		var buf bytes.Buffer
		if err := replay.PrintSession(ctx, &buf, store, s.ID, replay.Options{JSON: true}); err != nil {
			t.Fatal(err)
		}
		var evs []*record.Event
		for line := range strings.Lines(buf.String()) {
			var ev record.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			evs = append(evs, &ev)
		}
		out = append(out, evs)
	}
	return out
}

// endReasons lists the end reason of every recording in a data directory.
func endReasons(t *testing.T, data string) []string {
	t.Helper()
	sessions, err := replay.List(context.Background(), recordingStore(t, data))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range sessions {
		if s.Status != replay.StatusClosed {
			t.Fatalf("recording %s is %s", s.ID, s.Status)
		}
		out = append(out, s.Reason)
	}
	return out
}
