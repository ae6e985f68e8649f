package ship

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/spool"
)

func openTestSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(t.TempDir(), "recordings")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// TestReaderKeptOpenAcrossReads: a file of the shipper's own is opened
// once and read across ticks, sees what is appended to it, is still read
// once removed, and is closed when dropped or least recently used.
func TestReaderKeptOpenAcrossReads(t *testing.T) {
	sp := openTestSpool(t)
	r := newReaders(2)
	defer r.closeAll()
	path := sp.SessionFile("a")
	if err := os.WriteFile(path, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if n, err := r.readAt(sp, "a", true, buf[:5], 0); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(" world"))
	f.Close()
	if n, err := r.readAt(sp, "a", true, buf, 5); err != nil || string(buf[:n]) != " world" {
		t.Fatalf("appended: read %q %v", buf[:n], err)
	}
	if r.opens != 1 {
		t.Fatalf("%d opens for two reads", r.opens)
	}
	// Removed while open: what the spool wrote is still there to read.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if n, err := r.readAt(sp, "a", true, buf[:5], 0); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("after removal: read %q %v", buf[:n], err)
	}
	r.drop("a")
	if _, err := r.readAt(sp, "a", true, buf, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a removed file, once dropped: %v", err)
	}
	// Bounded: the least recently used file is closed.
	for _, id := range []string{"b", "c", "d"} {
		if err := os.WriteFile(sp.SessionFile(id), []byte(id), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := r.readAt(sp, id, true, buf[:1], 0); err != nil {
			t.Fatal(err)
		}
	}
	if r.lru.Len() != 2 || r.byID["b"] != nil || r.byID["c"] == nil || r.byID["d"] == nil {
		t.Fatalf("open: %v", r.byID)
	}
}

// TestLiveSessionsTakeNoDescriptor: live sessions are read through the
// spool's own descriptors: ticks that seal and upload their chunks leave
// the process with the descriptors it had, and open none of their own.
func TestLiveSessionsTakeNoDescriptor(t *testing.T) {
	r := newTickRig(t, 50)
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(es)
	}
	before := fds()
	sealed := r.s.sealed.Load()
	for range 10 {
		r.commands(t, 2)
		r.settle(t)
		r.step(t)
	}
	if r.s.sealed.Load() < sealed+100 {
		t.Fatalf("%d chunks sealed in 2 s of 50 sessions", r.s.sealed.Load()-sealed)
	}
	if after := fds(); after != before {
		t.Errorf("descriptors: %d before the ticks, %d after", before, after)
	}
	if r.s.files.opens != 0 {
		t.Errorf("the shipper opened %d session files of its own", r.s.files.opens)
	}
}

// TestFinalFileRemovedWhileRead: a final recording longer than a tick reads
// is read through one file of the shipper's own across ticks; removed
// meanwhile, it is read to its end all the same, sealed whole, and its file
// closed.
func TestFinalFileRemovedWhileRead(t *testing.T) {
	r := newTickRig(t, 0)
	const id = "big"
	l, err := r.sp.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	c := record.NewChain(id)
	add := func(ev *record.Event) {
		ev.Session, ev.Node, ev.Time = id, "n1", r.clock
		f, err := c.Seal(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.AppendLazy(f); err != nil {
			t.Fatal(err)
		}
	}
	add(&record.Event{Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "postgres"}})
	row := bytes.Repeat([]byte("1042\tMateo Williams\t1978-05-31\n"), 2048)
	for i := 0; i*len(row) < maxReadPerTick+(2<<20); i++ {
		add(&record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: 1, Offset: int64(i * len(row)), Data: row}})
	}
	add(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "terminate"}})
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(r.sp.SessionFile(id))
	if err != nil {
		t.Fatal(err)
	}
	feed, err := r.sp.ClosedSessions()
	if err != nil || len(feed) != 1 {
		t.Fatalf("closed sessions %v %v", feed, err)
	}
	r.s.mu.Lock()
	r.s.trackLocked(id).final = true
	r.s.mu.Unlock()

	r.step(t)
	tr := r.s.sessions[id]
	if tr.read >= fi.Size() || r.s.files.lru.Len() != 1 {
		t.Fatalf("after one tick: read %d of %d, %d files open", tr.read, fi.Size(), r.s.files.lru.Len())
	}
	if err := os.Remove(r.sp.SessionFile(id)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.step(t)
	}
	if r.s.files.lru.Len() != 0 || r.s.files.opens != 1 {
		t.Errorf("files open %d, opened %d", r.s.files.lru.Len(), r.s.files.opens)
	}
	if _, left := r.s.sessions[id]; left {
		t.Fatalf("the session was not shipped and indexed: %+v", r.s.sessions[id].st)
	}
	if _, err := r.s.cfg.Store.Stat(context.Background(), archive.ChunkKey(id, 0)); err != nil {
		t.Fatalf("the first chunk: %v", err)
	}
	if r.s.rawIn.Load() != uint64(fi.Size()-int64(record.HeaderSize)) {
		t.Errorf("sealed %d bytes of frames, the file held %d", r.s.rawIn.Load(), fi.Size()-int64(record.HeaderSize))
	}
}

// failingStore is a directory store whose syncs fail while broken: PutMany
// and Put confirm nothing.
type failingStore struct {
	*blob.FS
	broken atomic.Bool
	tried  atomic.Int64
}

type syncErr struct{}

func (syncErr) Error() string   { return "fdatasync: input/output error" }
func (syncErr) Retryable() bool { return true }

func (f *failingStore) PutMany(ctx context.Context, objs []blob.Object) []error {
	f.tried.Add(int64(len(objs)))
	if !f.broken.Load() {
		return f.FS.PutMany(ctx, objs)
	}
	errs := make([]error, len(objs))
	for i := range errs {
		errs[i] = syncErr{}
	}
	return errs
}

func (f *failingStore) Put(ctx context.Context, key string, data []byte, opts blob.PutOptions) error {
	return f.PutMany(ctx, []blob.Object{{Key: key, Data: data, Opts: opts}})[0]
}

// TestFailedSyncShipsNothing: while the store cannot make a batch durable,
// nothing counts as uploaded: the segment stays, no index entry is written,
// the spool file stays and the ledger forgets nothing; once it can, all of
// it ships.
func TestFailedSyncShipsNothing(t *testing.T) {
	r := newTickRig(t, 0)
	st := &failingStore{FS: r.s.cfg.Store.(*blob.FS)}
	st.broken.Store(true)
	r.s.cfg.Store = st
	const id = "s1"
	l, err := r.sp.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	c := record.NewChain(id)
	for _, ev := range []*record.Event{
		{Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "postgres"}},
		{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "terminate"}},
	} {
		ev.Session, ev.Node, ev.Time = id, "n1", r.clock
		f, _ := c.Seal(nil, ev)
		if _, err := l.Append(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.s.mu.Lock()
	r.s.trackLocked(id).final = true
	r.s.mu.Unlock()
	r.clock = r.clock.Add(DefaultTick)
	if err := r.s.Tick(); err != nil {
		t.Fatal(err)
	}
	if r.s.sealed.Load() == 0 {
		t.Fatal("nothing sealed")
	}
	ticks, _, _ := listSegments(r.s.cfg.Dir)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = r.s.ship(ctx, ticks[len(ticks)-1])
	cancel()
	if err == nil || st.tried.Load() < 2 {
		t.Fatalf("ship with failing syncs: %v, %d tried", err, st.tried.Load())
	}
	if left, _, _ := listSegments(r.s.cfg.Dir); len(left) != len(ticks) {
		t.Fatal("a segment was deleted before its objects were durable in the store")
	}
	if r.s.uploaded.Load() != 0 || r.s.indexed.Load() != 0 {
		t.Fatalf("uploaded %d, indexed %d", r.s.uploaded.Load(), r.s.indexed.Load())
	}
	if _, err := os.Stat(r.sp.SessionFile(id)); err != nil {
		t.Fatalf("the spool file went: %v", err)
	}
	if infos, _ := st.FS.List(context.Background(), "index/"); len(infos) != 0 {
		t.Fatalf("index entries: %v", infos)
	}
	led, _ := os.ReadFile(filepath.Join(r.s.cfg.Dir, ledgerName))
	if strings.Contains(string(led), `"indexed"`) {
		t.Fatal("the ledger says a session was indexed")
	}

	st.broken.Store(false)
	r.step(t)
	if _, left := r.s.sessions[id]; left || r.s.indexed.Load() != 1 {
		t.Fatalf("not shipped once the store healed (indexed %d)", r.s.indexed.Load())
	}
	if _, err := os.Stat(r.sp.SessionFile(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the spool file stayed: %v", err)
	}
}
