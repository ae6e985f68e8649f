package cli

import (
	"context"
	"crypto/ecdh"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/miniotest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/ship"
	"github.com/phigate/phigate/storage/spool"
)

// shippedNode is a node's data directory whose recorded sessions the
// shipper (storage/ship, as the node runs it) moved to its default store,
// data/store, with their digests up to this hour (as a leaving node
// writes them), and the published key in keysFile.
type shippedNode struct {
	data, store, keysFile string
	ids                   []string
	// spoolJSON is `replay --json` of each session before it was shipped.
	spoolJSON map[string]string
}

func newShippedNode(t *testing.T) *shippedNode {
	t.Helper()
	n := &shippedNode{data: t.TempDir(), spoolJSON: map[string]string{}}
	keys := filepath.Join(n.data, "keys")
	if out, code := run(t, "keys", "auditor", "--out", keys); code != 0 {
		t.Fatalf("keys auditor: %s", out)
	}
	pubPEM, err := os.ReadFile(filepath.Join(keys, "auditor.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := proof.ParsePublic(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		id := recordMaskedSession(t, n.data, pubPEM)
		n.ids = append(n.ids, id)
		out, code := run(t, "replay", "--data-dir", n.data, "--json", id)
		if code != 0 {
			t.Fatalf("replay from the spool: %s", out)
		}
		n.spoolJSON[id] = out
	}

	sp, err := spool.Open(spool.Config{Dir: filepath.Join(n.data, node.RecordingsSubdir)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	spDone := make(chan error, 1)
	go func() { spDone <- sp.Run(ctx) }()
	defer func() {
		cancel()
		<-spDone
		sp.Close()
	}()
	n.store = filepath.Join(n.data, node.StoreSubdir)
	st, err := blob.NewFS(n.store)
	if err != nil {
		t.Fatal(err)
	}
	signer, published, err := node.SigningKey(n.data, "node-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ship.New(ship.Config{Node: "node-1", Dir: filepath.Join(n.data, "ship"), Spool: sp, Store: st, Signer: signer,
		Auditor: func() *ecdh.PublicKey { return pub }, PublishedKey: published, Tick: 20 * time.Millisecond, MaxDuration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	shipCtx, stopShip := context.WithCancel(ctx)
	shipDone := make(chan error, 1)
	go func() { shipDone <- s.Run(shipCtx) }()
	waitUntil(t, "the sessions shipped", s.Drained)
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the last digest shipped", s.Drained)
	stopShip()
	if err := <-shipDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	n.keysFile = filepath.Join(n.data, "published-keys.json")
	if err := os.WriteFile(n.keysFile, []byte("["+string(published)+"]"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range n.ids {
		if _, err := os.Stat(filepath.Join(n.data, node.RecordingsSubdir, id+".rec")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("session %s still in the spool after shipping (%v)", id, err)
		}
	}
	return n
}

// TestMain stops the package's MinIO, if a test started one.
func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// chunkFile is the file of a session's chunk in a directory store.
func (n *shippedNode) chunkFile(id string, seq uint64) string {
	return filepath.Join(n.store, "data", filepath.FromSlash(archive.ChunkKey(id, seq)))
}

func TestAuditVerify(t *testing.T) {
	n := newShippedNode(t)
	store := "file://" + n.store

	out, code := run(t, "audit", "verify", "--store", store, "--keys", n.keysFile)
	if code != 0 || !strings.Contains(out, "result     OK") || !strings.Contains(out, "sessions   2 verified") || !strings.Contains(out, "(pinned)") {
		t.Fatalf("clean store: exit %d\n%s", code, out)
	}
	t.Logf("%s", out)

	out, code = run(t, "audit", "verify", "--store", store, "--keys", n.keysFile, "--json")
	var rep struct {
		Store  string `json:"store"`
		Keys   struct{ Source string }
		Report struct {
			OK       bool  `json:"ok"`
			Sessions int   `json:"sessions"`
			Chunks   int   `json:"chunks"`
			Bytes    int64 `json:"bytes"`
			Digests  int   `json:"digests"`
		} `json:"report"`
	}
	if code != 0 || json.Unmarshal([]byte(strings.TrimSuffix(out, "\n")), &rep) != nil || !rep.Report.OK || rep.Report.Sessions != 2 ||
		rep.Report.Chunks < 2 || rep.Report.Bytes == 0 || rep.Report.Digests == 0 || rep.Keys.Source != "file" {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}

	// The node's configuration names the store (its default, data/store);
	// the keys come from the store itself, with the warning.
	cfg := filepath.Join(t.TempDir(), "phigate.yaml")
	if err := os.WriteFile(cfg, []byte("node:\n  data_dir: "+n.data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, "audit", "verify", "--config", cfg, "--from", time.Now().UTC().Format(time.DateOnly))
	if code != 0 || !strings.Contains(out, "NOT pinned") || !strings.Contains(out, "only as trustworthy as the store") {
		t.Fatalf("--config, keys from the store: exit %d\n%s", code, out)
	}

	// The cluster's API serves the keys (GET /v1/keys, no token).
	keys, err := os.ReadFile(n.keysFile)
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/keys" || r.Method != http.MethodGet || r.Header.Get("Authorization") != "" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		w.Write(keys)
	}))
	defer api.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, "audit", "verify", "--store", store, "--api", api.URL, "--cacert", ca)
	if code != 0 || !strings.Contains(out, "from api "+api.URL+"/v1/keys (pinned)") {
		t.Fatalf("--api: exit %d\n%s", code, out)
	}
	if out, code := run(t, "audit", "verify", "--store", store, "--api", api.URL); code != 2 {
		t.Fatalf("--api without its CA: exit %d\n%s", code, out)
	}

	// A flipped byte in a chunk: exit 1, located.
	f := n.chunkFile(n.ids[0], 0)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, "audit", "verify", "--store", store, "--keys", n.keysFile)
	if code != 1 || !strings.Contains(out, "payload-hash node=node-1 session="+n.ids[0]+" chunk=0 event=0") || !strings.Contains(out, "result     FAILED") {
		t.Fatalf("tampered store: exit %d\n%s", code, out)
	}
	if out, code := run(t, "audit", "verify", "--store", store, "--keys", n.keysFile, "--session", n.ids[1]); code != 0 {
		t.Fatalf("--session of the intact one: exit %d\n%s", code, out)
	}
	if out, code := run(t, "audit", "verify", "--store", store, "--keys", n.keysFile, "--session", n.ids[0]); code != 1 {
		t.Fatalf("--session of the tampered one: exit %d\n%s", code, out)
	}

	// What cannot be checked is exit 2.
	for _, args := range [][]string{
		{"audit", "verify", "--store", "file://" + filepath.Join(t.TempDir(), "typo"), "--keys", n.keysFile},
		{"audit", "verify", "--store", store, "--keys", n.keysFile, "--from", "yesterday"},
		{"audit", "verify", "--store", store, "--keys", filepath.Join(t.TempDir(), "none.json")},
		{"audit", "verify", "--store", store, "--keys", n.keysFile, "--no-such-flag"},
		{"audit", "verify", "--keys", n.keysFile},
		{"audit", "verfy"},
	} {
		if out, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, out)
		}
	}
}

// TestAuditVerifyS3: the same recordings copied to a MinIO bucket verify
// through an s3:// location, credentials from the environment.
func TestAuditVerifyS3(t *testing.T) {
	n := newShippedNode(t)
	srv := miniotest.Shared(t)
	bucket := srv.MakeBucket(t)
	ak, sk := srv.RootCredentials()
	s3, err := blob.NewS3(blob.S3Config{Endpoint: srv.URL(), Bucket: bucket, Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := blob.NewFS(n.store)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	objs, err := fs.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		b, err := fs.Get(ctx, o.Key)
		if err == nil {
			err = s3.Put(ctx, o.Key, b, blob.PutOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PHIGATE_S3_ACCESS_KEY", ak)
	t.Setenv("PHIGATE_S3_SECRET_KEY", sk)
	loc := "s3://" + bucket + "?endpoint=" + srv.URL()
	out, code := run(t, "audit", "verify", "--store", loc, "--keys", n.keysFile)
	if code != 0 || !strings.Contains(out, "sessions   2 verified") {
		t.Fatalf("s3: exit %d\n%s", code, out)
	}
	out, code = run(t, "replay", "--data-dir", n.data, "--store", loc, "--json", n.ids[0])
	if code != 0 || out != n.spoolJSON[n.ids[0]] {
		t.Fatalf("replay from s3: exit %d\n%s", code, out)
	}
	t.Setenv("PHIGATE_S3_SECRET_KEY", "wrong")
	if out, code := run(t, "audit", "verify", "--store", loc, "--keys", n.keysFile); code != 2 || strings.Contains(out, sk) {
		t.Fatalf("s3, wrong credentials: exit %d\n%s", code, out)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-30":                time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		"2026-11-30T10:00:00Z":      time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC),
		"2026-11-30T11:30:00+01:00": time.Date(2026, 11, 30, 10, 30, 0, 0, time.UTC),
	} {
		if got, err := parseTime("from", in); err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := parseTime("from", "30/11/2026"); err == nil {
		t.Error("30/11/2026 accepted")
	}
}

// TestReplayFromStore: a session shipped off the spool is replayed from
// the store, exactly as it replayed from the spool, and the decryption is
// in the audit log; without an audit log nothing is decrypted.
func TestReplayFromStore(t *testing.T) {
	n := newShippedNode(t)
	id := n.ids[0]

	out, code := run(t, "replay", "--data-dir", n.data, "--json", id)
	if code != 0 || out != n.spoolJSON[id] {
		t.Fatalf("replay --json from the store: exit %d\n%s\nfrom the spool it was:\n%s", code, out, n.spoolJSON[id])
	}
	out, code = run(t, "replay", "--data-dir", n.data, "--auditor", "alice", "--reason", "incident 42", id)
	if code != 0 || !strings.Contains(out, "sql        SELECT ssn FROM patients") {
		t.Fatalf("replay from the store: exit %d\n%s", code, out)
	}
	out, code = run(t, "replay", "--data-dir", n.data, "--audit-log", "--list", "--json")
	var acts []replay.SessionInfo
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var a replay.SessionInfo
		if json.Unmarshal([]byte(line), &a) != nil {
			t.Fatalf("audit log list: exit %d\n%s", code, out)
		}
		acts = append(acts, a)
	}
	if code != 0 || len(acts) != 2 || acts[1].Identity != "alice" || acts[1].Status != replay.StatusClosed {
		t.Fatalf("audit log: exit %d\n%s", code, out)
	}
	out, code = run(t, "replay", "--data-dir", n.data, "--audit-log", acts[1].ID)
	if code != 0 || !strings.Contains(out, "unseal · session "+id+" · by alice") || !strings.Contains(out, "decrypt for replay, from file://"+n.store+": incident 42") {
		t.Fatalf("the recorded decryption: exit %d\n%s", code, out)
	}

	// --list: the store's index, beside the spool.
	out, code = run(t, "replay", "--data-dir", n.data, "--list")
	if code != 0 || !strings.Contains(out, n.ids[0]) || !strings.Contains(out, n.ids[1]) || !strings.Contains(out, "neither decrypted nor verified") {
		t.Fatalf("replay --list: exit %d\n%s", code, out)
	}
	// --store alone, with the key named.
	out, code = run(t, "replay", "--data-dir", n.data, "--store", "file://"+n.store, "--auditor-key", filepath.Join(n.data, "keys", "auditor.key"), "--json", n.ids[1])
	if code != 0 || out != n.spoolJSON[n.ids[1]] {
		t.Fatalf("replay --store: exit %d\n%s", code, out)
	}

	// An audit log that cannot be written (a file where its directory
	// should be): nothing is decrypted.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, node.AuditLogSubdir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = run(t, "replay", "--data-dir", other, "--store", "file://"+n.store, "--auditor-key", filepath.Join(n.data, "keys", "auditor.key"), id)
	if code == 0 || strings.Contains(out, "SELECT") || !strings.Contains(out, "not recorded") {
		t.Fatalf("replay without an audit log: exit %d\n%s", code, out)
	}
	// No key: said plainly.
	if out, code := run(t, "replay", "--data-dir", other, "--store", "file://"+n.store, id); code == 0 || !strings.Contains(out, "auditor key") {
		t.Fatalf("replay without a key: exit %d\n%s", code, out)
	}
	// A changed chunk in the store: a broken chain, exit 2, located.
	f := n.chunkFile(id, 0)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, "replay", "--data-dir", n.data, id); code != 2 || !strings.Contains(out, "chain broken at event 0: chunk 0") {
		t.Fatalf("changed in the store: exit %d\n%s", code, out)
	}
}
