package auditlog

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

const segment = 64 << 10 // the spool's smallest journal segment

// runSpool opens and runs a spool in dir until the returned stop is called.
func runSpool(t *testing.T, dir string) (*spool.Spool, func()) {
	t.Helper()
	sp, err := spool.Open(spool.Config{Dir: dir, SegmentBytes: segment})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	return sp, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		sp.Close()
	}
}

// recordMasked records, in the spool directory dir, a session whose one
// command masked an SSN, with its proof sealed to the auditor key; it
// returns the session id.
func recordMasked(t *testing.T, dir string, auditor *ecdh.PrivateKey) string {
	t.Helper()
	sp, stop := runSpool(t, dir)
	defer stop()
	ctx := context.Background()
	id := session.NewID(t0())
	rec, err := session.NewRecorder(sp, "node-1").Start(id)
	if err != nil {
		t.Fatal(err)
	}
	rec.SetSubject("reader-bot", "clinic")
	cmd := &record.Command{ID: 1, Protocol: record.ProtocolPostgres, Decision: "allow",
		Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: "SELECT name, ssn FROM patients"}}
	if _, err := rec.Append(&record.Event{Kind: record.KindCommand, Command: cmd}); err != nil {
		t.Fatal(err)
	}
	proofs := proof.NewCollector(id, auditor.PublicKey(), func(ev *record.Event) error {
		_, err := rec.Append(ev)
		return err
	})
	proofs.Row = 1
	proofs.Add(1, &mask.Proof{Column: 1, Rule: "ssn", Action: mask.ActionKeepLast4, Start: 0, End: 11, Raw: []byte("123-45-6789")})
	if err := proofs.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "terminate", Commands: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

// fixture is a node's data: a masked session recorded, and an auditor key.
type fixture struct {
	key        *ecdh.PrivateKey
	recordings replay.Store
	session    string
	auditDir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	key, err := proof.GenerateAuditorKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := recordMasked(t, filepath.Join(dir, "recordings"), key)
	return &fixture{key: key, recordings: spool.DirStore{Dir: filepath.Join(dir, "recordings")}, session: id, auditDir: filepath.Join(dir, "auditlog")}
}

func (f *fixture) request() Request {
	return Request{Session: f.session, Auditor: "alice", Reason: "incident 42", Key: f.key}
}

// durableUnseals recovers a copy of the audit log directory, as a restart
// after a crash right now would, and returns the unseal events it holds:
// what is durable in the journal, not what a page cache shows.
func durableUnseals(t *testing.T, auditDir string) []*record.Unseal {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", auditDir, cp).CombinedOutput(); err != nil {
		t.Fatalf("copy the audit log: %v: %s", err, out)
	}
	_, stop := runSpool(t, cp)
	defer stop()
	store := spool.DirStore{Dir: cp}
	infos, err := store.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*record.Unseal
	for _, info := range infos {
		rd, err := store.Open(context.Background(), info.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, err = record.Verify(rd, info.ID, true, func(ev *record.Event, _ []byte) error {
			if ev.Unseal != nil {
				out = append(out, ev.Unseal)
			}
			return nil
		})
		rd.Close()
		if err != nil {
			t.Fatalf("recovered audit record %s: %v", info.ID, err)
		}
	}
	return out
}

// firstWrite calls check at the first Write, before taking anything.
type firstWrite struct {
	bytes.Buffer
	check func()
}

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.check != nil {
		w.check()
		w.check = nil
	}
	return w.Buffer.Write(p)
}

// TestIntentDurableBeforeOutput: when the first raw value is about to be
// written, the auditor's intent is already durable in the audit log's
// journal; afterwards the log holds intent, outcome and end, verified.
func TestIntentDurableBeforeOutput(t *testing.T) {
	f := newFixture(t)
	audit, err := Open(Config{Dir: f.auditDir, SegmentBytes: segment})
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	w := &firstWrite{check: func() {
		got := durableUnseals(t, f.auditDir)
		if len(got) != 1 || got[0].Done || got[0].Session != f.session || got[0].Reason != "incident 42" || !strings.HasPrefix(got[0].Auditor, "alice") {
			t.Errorf("before the first output the audit log holds %+v, want the intent", got)
		}
	}}
	n, err := audit.Unseal(context.Background(), w, f.recordings, f.request())
	if err != nil || n != 1 {
		t.Fatalf("unseal: %d values, %v", n, err)
	}
	if !strings.Contains(w.String(), "'123-45-6789'") || w.check != nil {
		t.Fatalf("output:\n%s", w.String())
	}
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}

	list, err := replay.List(context.Background(), spool.DirStore{Dir: f.auditDir})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status != replay.StatusClosed || list[0].Reason != "unsealed" || list[0].Identity != "alice" || list[0].Events != 3 {
		t.Fatalf("audit log: %+v", list)
	}
	var trail bytes.Buffer
	if err := replay.PrintSession(context.Background(), &trail, spool.DirStore{Dir: f.auditDir}, list[0].ID, replay.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"unseal · session " + f.session + " · by alice", "· intent", "· 1 values shown", "reason     incident 42"} {
		if !strings.Contains(trail.String(), want) {
			t.Errorf("audit trail lacks %q:\n%s", want, trail.String())
		}
	}
}

// TestFailedUnsealIsRecorded: an unsealing that shows nothing (another
// auditor's key) is recorded as intent and failure.
func TestFailedUnsealIsRecorded(t *testing.T) {
	f := newFixture(t)
	other, err := proof.GenerateAuditorKey()
	if err != nil {
		t.Fatal(err)
	}
	audit, err := Open(Config{Dir: f.auditDir, SegmentBytes: segment})
	if err != nil {
		t.Fatal(err)
	}
	req := f.request()
	req.Key = other
	var out bytes.Buffer
	if n, err := audit.Unseal(context.Background(), &out, f.recordings, req); err == nil || n != 0 || strings.Contains(out.String(), "6789") {
		t.Fatalf("unseal with another key: %d values, %v, output %q", n, err, out.String())
	}
	req.Session = "../../etc/passwd"
	if _, err := audit.Unseal(context.Background(), &out, f.recordings, req); err == nil {
		t.Fatal("unseal of a name that is no session id")
	}
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	list, err := replay.List(context.Background(), spool.DirStore{Dir: f.auditDir})
	if err != nil || len(list) != 1 || list[0].Reason != "unseal failed" || list[0].Status != replay.StatusClosed {
		t.Fatalf("audit log: %+v %v", list, err)
	}
}

// TestReadOnlyAuditLog: on a read-only file system the audit log does not
// open, so there is nothing to unseal through.
func TestReadOnlyAuditLog(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("cannot mount a read-only tmpfs here (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	if audit, err := Open(Config{Dir: mnt, SegmentBytes: segment}); err == nil {
		audit.Close()
		t.Fatal("an audit log opened on a read-only file system")
	}
}

// TestNothingShownWhenIntentCannotBeRecorded: the audit log opened, but its
// disk has no room for another record (no inode left for the file): the
// unsealing is refused and nothing is written.
func TestNothingShownWhenIntentCannotBeRecorded(t *testing.T) {
	f := newFixture(t)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m,nr_inodes=64"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	audit, err := Open(Config{Dir: filepath.Join(mnt, "auditlog"), SegmentBytes: segment})
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	// Take every inode left.
	for i := 0; ; i++ {
		fl, err := os.Create(filepath.Join(mnt, fmt.Sprintf("filler-%d", i)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		fl.Close()
	}
	var out bytes.Buffer
	n, err := audit.Unseal(context.Background(), &out, f.recordings, f.request())
	if !errors.Is(err, session.ErrNotRecorded) || n != 0 || out.Len() != 0 {
		t.Fatalf("unseal with a full audit log: %d values, %v, output %q", n, err, out.String())
	}
}

// TestOpenEndsRecordsCutShort: an unsealing cut short (its process died
// after the intent) is ended as "recovered" by the next Open, its intent
// kept.
func TestOpenEndsRecordsCutShort(t *testing.T) {
	f := newFixture(t)
	sp, stop := runSpool(t, f.auditDir)
	rec, err := session.NewRecorder(sp, "phigate-unseal@test").Start(session.NewID(t0()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(&record.Event{Kind: record.KindUnseal, Unseal: &record.Unseal{Auditor: "bob", Session: f.session, Reason: "r"}}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop() // without closing the record, as a killed process leaves it

	audit, err := Open(Config{Dir: f.auditDir, SegmentBytes: segment})
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	list, err := replay.List(context.Background(), spool.DirStore{Dir: f.auditDir})
	if err != nil || len(list) != 1 || list[0].Status != replay.StatusClosed || list[0].Reason != "recovered" || list[0].Events != 2 {
		t.Fatalf("audit log: %+v %v", list, err)
	}
}

func t0() time.Time { return time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC) }
