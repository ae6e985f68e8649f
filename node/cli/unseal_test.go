package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

// recordMaskedSession records, under the data directory data, a session
// whose one command masked an SSN, with its proof sealed to auditorPub.
func recordMaskedSession(t *testing.T, data string, auditorPub []byte) string {
	t.Helper()
	pub, err := proof.ParsePublic(auditorPub)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(data, node.RecordingsSubdir)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		sp.Close()
	}()
	id := session.NewID(time.Now())
	rec, err := session.NewRecorder(sp, "node-1").Start(id)
	if err != nil {
		t.Fatal(err)
	}
	cmd := &record.Command{ID: 1, Protocol: record.ProtocolPostgres, Decision: "allow",
		Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: "SELECT ssn FROM patients"}}
	if _, err := rec.Append(&record.Event{Kind: record.KindCommand, Command: cmd}); err != nil {
		t.Fatal(err)
	}
	proofs := proof.NewCollector(id, pub, func(ev *record.Event) error { _, err := rec.Append(ev); return err })
	proofs.Add(1, &mask.Proof{Rule: "ssn", Action: mask.ActionKeepLast4, End: 11, Raw: []byte("123-45-6789")})
	if err := proofs.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "terminate"}}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return id
}

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), code
}

// TestUnsealAndAuditLog: `phigate unseal` shows the raw value and records
// the act, which `phigate replay --audit-log` lists and prints; with the
// audit log's directory unwritable it shows nothing.
func TestUnsealAndAuditLog(t *testing.T) {
	data := t.TempDir()
	keys := filepath.Join(data, "keys")
	if out, code := run(t, "keys", "auditor", "--out", keys); code != 0 {
		t.Fatalf("keys auditor: %s", out)
	}
	pub, err := os.ReadFile(filepath.Join(keys, "auditor.pub"))
	if err != nil {
		t.Fatal(err)
	}
	id := recordMaskedSession(t, data, pub)
	unseal := []string{"unseal", "--data-dir", data, "--key", filepath.Join(keys, "auditor.key"), "--auditor", "alice", "--reason", "incident 42", id}

	out, code := run(t, unseal...)
	if code != 0 || !strings.Contains(out, "'123-45-6789'") {
		t.Fatalf("unseal: exit %d\n%s", code, out)
	}
	out, code = run(t, "replay", "--data-dir", data, "--audit-log", "--list", "--json")
	var entry replay.SessionInfo
	if code != 0 || json.Unmarshal([]byte(out), &entry) != nil || entry.Status != replay.StatusClosed || entry.Identity != "alice" || entry.Events != 3 {
		t.Fatalf("replay --audit-log --list: exit %d\n%s", code, out)
	}
	out, code = run(t, "replay", "--data-dir", data, "--audit-log", entry.ID)
	if code != 0 || !strings.Contains(out, "unseal · session "+id+" · by alice") || !strings.Contains(out, "1 values shown") {
		t.Fatalf("replay --audit-log: exit %d\n%s", code, out)
	}
	out, code = run(t, "replay", "--data-dir", data, id)
	if code != 0 || !strings.Contains(out, "sql        SELECT ssn FROM patients") {
		t.Fatalf("replay: exit %d\n%s", code, out)
	}

	// An audit log that cannot be written: a file where its directory
	// should be (root writes through read-only modes).
	other := t.TempDir()
	if err := os.Symlink(filepath.Join(data, node.RecordingsSubdir), filepath.Join(other, node.RecordingsSubdir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, node.AuditLogSubdir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	unseal[2] = other
	if out, code := run(t, unseal...); code == 0 || strings.Contains(out, "6789") {
		t.Fatalf("unseal without an audit log: exit %d\n%s", code, out)
	}
}
