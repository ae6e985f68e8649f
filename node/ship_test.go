package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
)

// TestRecordingsShipToTheStore runs agents through a node with the default
// store (a directory): their sessions are sealed, signed, anchored in the
// cluster state, shipped and indexed, the spool lets go of them, and the
// store verifies whole with the keys the cluster published and the
// anchors it holds; replay reads them back from the store.
func TestRecordingsShipToTheStore(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Shared(t)
	db := fmt.Sprintf("ship_clinic_%d", time.Now().UnixNano()%1e9)
	if err := pg.AddUser(ctx, pgtest.User{Name: db, Password: "ship-svc-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, db, db); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "svc.pw")
	if err := os.WriteFile(pw, []byte("ship-svc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "phg_ship_test_token"
	data := filepath.Join(dir, "data")
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(`
node: {id: ship-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0", cleartext_loopback: true}
store: {chunk_interval: 200ms, retention: 2d}
identities: {tokens: [{name: bot, kind: agent, groups: [bots], token_sha256: %s}]}
resources: [{name: clinic, address: %q, database: %s, user: %s, password_file: %s, tls: disable, retention: 3d}]
grants: [{name: bots, groups: [bots], resources: [clinic], allow: [read, write, ddl]}]
`, data, identity.HashToken(token), pg.Addr(), db, db, pw)))
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
	defer func() { stop(); <-done }()
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	port := n.PostgresAddr().(*net.TCPAddr).Port
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=bot password=%s dbname=clinic sslmode=disable", port, token)
	var ids []string
	for i := 0; i < 3; i++ {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS notes (id int, body text)"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO notes VALUES ($1, $2)", i, fmt.Sprintf("marker-%d", i)); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
	fs, err := blob.NewFS(filepath.Join(data, node.StoreSubdir))
	if err != nil {
		t.Fatal(err)
	}
	var entries []*archive.IndexEntry
	waitUntil(t, "three agent sessions indexed in the store", 30*time.Second, func() bool {
		all, err := (&archive.Archive{Store: fs}).Sessions(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		entries = entries[:0]
		for _, e := range all {
			if e.Resource == "clinic" {
				entries = append(entries, e)
			}
		}
		return len(entries) == 3
	})
	published, err := n.PublishedKeys(ctx)
	if err != nil || len(published) != 1 || published[0].Node != "ship-node" {
		t.Fatalf("published keys: %+v %v", published, err)
	}
	keys, err := archive.Keys(published)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		ids = append(ids, e.Session)
		if e.Identity != "bot" || e.Kind != "agent" || e.State != archive.StateClosed || e.Node != "ship-node" {
			t.Errorf("index entry %+v", e)
		}
		waitUntil(t, "the spool to let go of a shipped session", 10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(data, node.RecordingsSubdir, "sessions", e.Session+".rec"))
			return os.IsNotExist(err)
		})
		info, err := fs.Stat(ctx, archive.ChunkKey(e.Session, 0))
		if err != nil {
			t.Fatal(err)
		}
		// The resource's retention (3d), not the store's (2d).
		if d := time.Until(info.RetainUntil); d < 71*time.Hour || d > 73*time.Hour {
			t.Errorf("%s: retained until %v", e.Session, info.RetainUntil)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("agent sessions in the index: %v", ids)
	}
	report, err := archive.Verify(ctx, fs, keys, archive.Options{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() || report.Sessions < 3 {
		t.Fatalf("the store does not verify: %d sessions, %v", report.Sessions, report.Findings)
	}
	var anchors []archive.Anchor
	waitUntil(t, "the sessions' closing chunks anchored", 10*time.Second, func() bool {
		anchors, err = n.Anchors(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		closing := map[string]bool{}
		for _, a := range anchors {
			closing[a.Session] = a.Closing
		}
		return closing[ids[0]] && closing[ids[1]] && closing[ids[2]]
	})
	findings, err := archive.CheckAnchors(ctx, fs, anchors, false)
	if err != nil || len(findings) != 0 || len(anchors) < 3 {
		t.Fatalf("anchors (%d): %v %v", len(anchors), findings, err)
	}
	// Replay reads them from the store, decrypted with the auditors' key.
	store := recordingStore(t, data)
	for i, id := range ids {
		var buf bytes.Buffer
		if err := replay.PrintSession(ctx, &buf, store, id, replay.Options{}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "INSERT INTO notes") {
			t.Errorf("session %d from the store:\n%s", i, buf.String())
		}
	}

	// A key rotation: the old key is retired, not forgotten, so that what
	// it signed still verifies beside what the new one signs.
	newKey, err := n.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO notes VALUES (9, 'after rotation')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	waitUntil(t, "the session after the rotation indexed", 30*time.Second, func() bool {
		all, _ := (&archive.Archive{Store: fs}).Sessions(ctx, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		count := 0
		for _, e := range all {
			if e.Resource == "clinic" {
				count++
			}
		}
		return count == 4
	})
	published, err = n.PublishedKeys(ctx)
	if err != nil || len(published) != 2 {
		t.Fatalf("published keys after a rotation: %+v %v", published, err)
	}
	for _, k := range published {
		if (k.ID == newKey.ID) != k.NotAfter.IsZero() {
			t.Errorf("key %s: not_after %v (the new key is %s)", k.ID, k.NotAfter, newKey.ID)
		}
	}
	if keys, err = archive.Keys(published); err != nil {
		t.Fatal(err)
	}
	report, err = archive.Verify(ctx, fs, keys, archive.Options{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
	if err != nil || !report.OK() {
		t.Fatalf("after a key rotation the store does not verify: %v %v", err, report.Findings)
	}
	// The old key alone no longer vouches for what was signed after it.
	var oldOnly []archive.PublishedKey
	for _, k := range published {
		if k.ID != newKey.ID {
			oldOnly = append(oldOnly, k)
		}
	}
	oldKeys, _ := archive.Keys(oldOnly)
	report, err = archive.Verify(ctx, fs, oldKeys, archive.Options{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
	if err != nil || report.OK() {
		t.Fatalf("the retired key alone verified the new session: %v", err)
	}
}

func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBacklogCapRefusesNewSessions: a node whose store cannot be reached
// keeps its recordings and, past store.backlog_bytes, refuses new sessions
// (57P03, recorded) and reports not ready, instead of dropping anything.
func TestBacklogCapRefusesNewSessions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	creds := filepath.Join(dir, "s3.credentials")
	if err := os.WriteFile(creds, []byte("access_key = test\nsecret_key = testtesttest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := "phg_backlog_test_token"
	data := filepath.Join(dir, "data")
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(`
node: {id: backlog-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0", cleartext_loopback: true}
store: {location: "s3://nowhere?endpoint=http://127.0.0.1:1", credentials_file: %s, allow_unlocked: true, backlog_bytes: 1}
identities: {tokens: [{name: bot, kind: agent, groups: [bots], token_sha256: %s}]}
resources: [{name: clinic, address: "127.0.0.1:1", database: x, user: x, tls: disable}]
grants: [{name: bots, groups: [bots], resources: [clinic], allow: [read]}]
`, data, creds, identity.HashToken(token))))
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
	defer func() { stop(); <-done }()
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	// The bootstrap policy's own recording is already more than a byte.
	waitUntil(t, "the backlog past its cap", 10*time.Second, func() bool { return n.ShipStats().Backlog > 1 })
	port := n.PostgresAddr().(*net.TCPAddr).Port
	_, err = pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=bot password=%s dbname=clinic sslmode=disable", port, token))
	if !isCode(err, "57P03") || !strings.Contains(err.Error(), "not accepting new sessions") {
		t.Fatalf("a new session at the backlog cap: %v", err)
	}
	if why := n.NotReady(); !strings.Contains(why, "backlog") {
		t.Fatalf("readiness at the backlog cap: %q", why)
	}
	if st := n.ShipStats(); st.UploadErrors == 0 || st.Indexed != 0 {
		t.Fatalf("stats: %+v", st)
	}
	// Nothing was dropped: the refusal is recorded beside the rest, in the spool.
	reasons := endReasons(t, data)
	if !slices.Contains(reasons, "refused") {
		t.Fatalf("recorded ends: %v", reasons)
	}
}
