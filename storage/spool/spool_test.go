package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
)

// sessionID returns a distinct valid session id (the ULID shape phigate uses).
func sessionID(i int) string { return fmt.Sprintf("01JDZ3Y6W5K8Q2M4N7P9R%05d", i) }

var t0 = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

// recorder produces the real frames of one session's recording.
type recorder struct {
	id    string
	chain *record.Chain
	n     int
	file  []byte // everything sealed so far: what the session file must hold
}

func newRecorder(id string) *recorder { return &recorder{id: id, chain: record.NewChain(id)} }

func (r *recorder) next() []byte {
	var ev *record.Event
	switch {
	case r.n == 0:
		ev = &record.Event{Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "postgres", Client: "127.0.0.1:5000"}}
	case r.n%2 == 1:
		ev = &record.Event{Kind: record.KindCommand, Command: &record.Command{ID: uint64(r.n), Protocol: record.ProtocolPostgres, Decision: "allow",
			Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: fmt.Sprintf("SELECT name, dob, ssn FROM patients WHERE id = %d AND note LIKE '%%follow-up%%'", r.n)}}}
	default:
		ev = &record.Event{Kind: record.KindResult, Result: &record.Result{Command: uint64(r.n - 1), Tag: "SELECT 1", Rows: 1, Bytes: 210, DurationUS: 300}}
	}
	return r.seal(ev)
}

func (r *recorder) end(reason string) []byte {
	return r.seal(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: reason}})
}

func (r *recorder) seal(ev *record.Event) []byte {
	ev.Time = t0.Add(time.Duration(r.n) * time.Millisecond)
	ev.Node = "n1"
	frame, err := r.chain.Seal(nil, ev)
	if err != nil {
		panic(err)
	}
	r.n++
	r.file = append(r.file, frame...)
	return frame
}

// running is a spool with its Run goroutine.
type running struct {
	*Spool
	cancel context.CancelFunc
	done   chan error
}

func openSpool(t testing.TB, cfg Config) *Spool {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func start(t testing.TB, s *Spool) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Spool: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels Run and returns what it returned (once; later calls return nil).
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

func mustAppend(t testing.TB, l *Log, frame []byte) LSN {
	t.Helper()
	lsn, err := l.Append(frame)
	if err != nil {
		t.Fatalf("append to %s: %v", l.ID(), err)
	}
	return lsn
}

func readSession(t testing.TB, dir, id string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "sessions", id+".rec"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verifyFile(t testing.TB, dir, id string, live bool) record.Summary {
	t.Helper()
	f, err := DirStore{Dir: dir}.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := record.Verify(f, id, live, nil)
	if err != nil {
		t.Fatalf("verify %s: %v", id, err)
	}
	return sum
}

func TestMaxAppendFitsARecordFrame(t *testing.T) {
	if MaxAppend < record.MaxFrame {
		t.Fatalf("MaxAppend %d < record.MaxFrame %d", MaxAppend, record.MaxFrame)
	}
}

func TestAppendWaitClose(t *testing.T) {
	dir := t.TempDir()
	s := start(t, openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes}))
	ctx := context.Background()
	rec := newRecorder(sessionID(1))
	l, err := s.Create(rec.id)
	if err != nil {
		t.Fatal(err)
	}
	var prev LSN
	for i := 0; i < 5; i++ {
		lsn := mustAppend(t, l, rec.next())
		if lsn <= prev {
			t.Fatalf("LSN %d after %d: not increasing", lsn, prev)
		}
		prev = lsn
		if err := s.Wait(ctx, lsn); err != nil {
			t.Fatal(err)
		}
	}
	// A reader of the directory sees the open session as live, with every
	// frame that reached the file (wait for the journal to reach it:
	// opening before that would read a prefix).
	if err := s.waitApplied(ctx, prev); err != nil {
		t.Fatal(err)
	}
	rd, err := DirStore{Dir: dir}.Open(ctx, rec.id)
	if err != nil {
		t.Fatal(err)
	}
	if !rd.Live {
		t.Error("open session not reported live")
	}
	if sum, err := record.Verify(rd, rec.id, true, nil); err != nil || sum.Events != 5 || sum.Closed {
		t.Errorf("live read: %+v %v", sum, err)
	}
	rd.Close()

	mustAppend(t, l, rec.end("terminate"))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if got := readSession(t, dir, rec.id); !bytes.Equal(got, rec.file) {
		t.Fatalf("session file differs from what was appended (%d vs %d bytes)", len(got), len(rec.file))
	}
	if sum := verifyFile(t, dir, rec.id, false); sum.Events != 6 || !sum.Closed {
		t.Fatalf("summary %+v", sum)
	}
	if s.commits.Load() == 0 || s.sessionSyncs.Load() == 0 {
		t.Errorf("%d commits, %d session syncs", s.commits.Load(), s.sessionSyncs.Load())
	}

	// A clean restart recovers nothing.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes})
	if got := s2.Recovered(); len(got) != 0 {
		t.Fatalf("recovered %v after a clean close", got)
	}
	if _, err := s2.Create(rec.id); !errors.Is(err, ErrExists) {
		t.Fatalf("create over an existing recording: %v", err)
	}
}

func TestCreateAndCloseEdges(t *testing.T) {
	dir := t.TempDir()
	s := start(t, openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes}))
	for _, id := range []string{"", ".hidden", "../x", "a/b", strings.Repeat("a", 129), "with space"} {
		if _, err := s.Create(id); err == nil {
			t.Errorf("Create(%q) accepted", id)
		}
	}
	l, err := s.Create(sessionID(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(sessionID(1)); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
	// A session that never recorded anything leaves no file.
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sessions", sessionID(1)+".rec")); !os.IsNotExist(err) {
		t.Errorf("empty session left a file: %v", err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	l2, _ := s.Create(sessionID(2))
	if _, err := l2.Append(nil); err == nil {
		t.Error("empty append accepted")
	}
	if _, err := l2.Append(make([]byte, MaxAppend+1)); err == nil {
		t.Error("oversized append accepted")
	}
	if _, err := s.Reopen(sessionID(2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("reopen of a live session: %v", err)
	}
	if err := s.Wait(context.Background(), LSN(1<<60)); err == nil {
		t.Error("wait for an LSN never appended succeeded")
	}
}

func TestLockAndInUse(t *testing.T) {
	dir := t.TempDir()
	if used, err := inUse(dir); used || err != nil {
		t.Fatalf("inUse on an empty dir: %v %v", used, err)
	}
	s := openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes})
	if used, err := inUse(dir); !used || err != nil {
		t.Fatalf("inUse while open: %v %v", used, err)
	}
	if _, err := Open(Config{Dir: dir, SegmentBytes: minSegmentBytes}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	s.Close()
	if used, err := inUse(dir); used || err != nil {
		t.Fatalf("inUse after Close: %v %v", used, err)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := Open(Config{}); err == nil {
		t.Error("Open without Dir")
	}
	if _, err := Open(Config{Dir: t.TempDir(), SegmentBytes: 100}); err == nil {
		t.Error("Open with a tiny segment")
	}
}

// TestConcurrentSessions: many sessions append and wait at once; every
// session file ends up byte-identical to what its session appended, and
// group commit served several appends per fdatasync.
func TestConcurrentSessions(t *testing.T) {
	dir := t.TempDir()
	s := start(t, openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes}))
	const sessions, events = 32, 60
	recs := make([]*recorder, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range recs {
		recs[i] = newRecorder(sessionID(i))
		wg.Go(func() {
			rec := recs[i]
			l, err := s.Create(rec.id)
			if err != nil {
				errs <- err
				return
			}
			ctx := context.Background()
			for range events {
				lsn, err := l.Append(rec.next())
				if err == nil {
					err = s.Wait(ctx, lsn)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			if _, err := l.Append(rec.end("terminate")); err != nil {
				errs <- err
				return
			}
			errs <- l.Close(ctx)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range recs {
		if got := readSession(t, dir, rec.id); !bytes.Equal(got, rec.file) {
			t.Fatalf("session %s: file differs from what was appended", rec.id)
		}
		verifyFile(t, dir, rec.id, false)
	}
	if s.checkpoints.Load() == 0 {
		t.Error("no segment was recycled")
	}
	t.Logf("%d appends in %d group commits, %d checkpoints", sessions*(events+1), s.commits.Load(), s.checkpoints.Load())
	// Recycling is asynchronous (the checkpointer): stop the spool so that
	// it has caught up before counting.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	journal, _ := os.ReadDir(filepath.Join(dir, "journal"))
	if len(journal) > 3 {
		t.Errorf("journal holds %d files, want at most 3 (current, previous, spare)", len(journal))
	}
}

// TestRecoveryRebuildsFromJournal: a session left open whose file is lost
// entirely (as if its page cache never reached the disk) is rebuilt from
// the journal, listed as recovered, and can be resumed and closed.
func TestRecoveryRebuildsFromJournal(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, Config{Dir: dir})
	r := start(t, s)
	ctx := context.Background()
	closed, open := newRecorder(sessionID(1)), newRecorder(sessionID(2))
	lc, _ := s.Create(closed.id)
	lo, _ := s.Create(open.id)
	for range 10 {
		mustAppend(t, lc, closed.next())
		if err := s.Wait(ctx, mustAppend(t, lo, open.next())); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, lc, closed.end("terminate"))
	if err := lc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, id := range []string{closed.id, open.id} {
		if err := os.Remove(filepath.Join(dir, "sessions", id+".rec")); err != nil {
			t.Fatal(err)
		}
	}

	s2 := openSpool(t, Config{Dir: dir})
	if got := s2.Recovered(); len(got) != 1 || got[0] != open.id {
		t.Fatalf("recovered %v, want [%s]", got, open.id)
	}
	for _, rec := range []*recorder{closed, open} {
		if got := readSession(t, dir, rec.id); !bytes.Equal(got, rec.file) {
			t.Fatalf("%s not rebuilt from the journal (%d of %d bytes)", rec.id, len(got), len(rec.file))
		}
	}
	endRecovered(t, start(t, s2), open.id)
	if sum := verifyFile(t, dir, open.id, false); sum.EndReason != "recovered" || sum.Events != 11 {
		t.Fatalf("after recovery: %+v", sum)
	}
	// Closing made it final: the next Open recovers nothing.
	s2.Close()
	if got := openSpool(t, Config{Dir: dir}).Recovered(); len(got) != 0 {
		t.Fatalf("recovered %v after the recovered session was closed", got)
	}
}

// endRecovered does what the node does for each recovered session.
func endRecovered(t testing.TB, s *running, id string) {
	t.Helper()
	l, err := s.Reopen(id)
	if err != nil {
		t.Fatal(err)
	}
	last, err := l.Last()
	if err != nil {
		t.Fatal(err)
	}
	chain, ev, err := record.Resume(id, last)
	if err != nil {
		t.Fatalf("resume %s: %v", id, err)
	}
	if ev.Kind != record.KindSessionEnd {
		frame, err := chain.Seal(nil, &record.Event{Time: t0, Kind: record.KindSessionEnd, Node: "n1", End: &record.SessionEnd{Reason: "recovered"}})
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, l, frame)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// journalSegments returns the segment files that hold a valid header, in order.
func journalSegments(t testing.TB, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(dir, "journal"))
	type seg struct {
		path string
		seq  uint64
	}
	var segs []seg
	for _, e := range entries {
		p := filepath.Join(dir, "journal", e.Name())
		b, _ := os.ReadFile(p)
		if seq, _, ok := parseSegmentHeader(b); ok {
			segs = append(segs, seg{p, seq})
		}
	}
	var out []string
	for len(segs) > 0 {
		min := 0
		for i := range segs {
			if segs[i].seq < segs[min].seq {
				min = i
			}
		}
		out = append(out, segs[min].path)
		segs = append(segs[:min], segs[min+1:]...)
	}
	return out
}

// recordEnds returns the file offsets where each record of a segment ends.
func recordEnds(t testing.TB, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := newScanner(io.NewSectionReader(f, segHeaderSize, 1<<40))
	pos := int64(segHeaderSize)
	var ends []int64
	for {
		rec, ok := sc.next()
		if !ok {
			return ends
		}
		pos += int64(rec.size)
		ends = append(ends, pos)
	}
}

// TestTornJournalTail: a record cut short or garbled at the end of the
// journal (a write that did not complete before power loss) ends recovery
// there; everything before it is recovered, and the open session's file is
// cut back to what the journal vouches for.
func TestTornJournalTail(t *testing.T) {
	for _, damage := range []string{"zeroed", "garbled", "half"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, Config{Dir: dir})
			r := start(t, s)
			rec := newRecorder(sessionID(1))
			l, _ := s.Create(rec.id)
			var frames [][]byte
			for range 8 {
				f := rec.next()
				frames = append(frames, f)
				if err := s.Wait(context.Background(), mustAppend(t, l, f)); err != nil {
					t.Fatal(err)
				}
			}
			r.stop()
			s.Close()

			segs := journalSegments(t, dir)
			path := segs[len(segs)-1]
			ends := recordEnds(t, path)
			if len(ends) != 9 { // checkpoint + 8 frames
				t.Fatalf("journal holds %d records", len(ends))
			}
			lastStart, lastEnd := ends[7], ends[8]
			j, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "zeroed":
				_, err = j.WriteAt(make([]byte, lastEnd-lastStart), lastStart)
			case "garbled":
				_, err = j.WriteAt([]byte("not a record at all"), lastStart+40)
			case "half":
				_, err = j.WriteAt(make([]byte, (lastEnd-lastStart)/2), lastStart+(lastEnd-lastStart)/2)
			}
			j.Close()
			if err != nil {
				t.Fatal(err)
			}

			s2 := openSpool(t, Config{Dir: dir})
			if got := s2.Recovered(); len(got) != 1 {
				t.Fatalf("recovered %v", got)
			}
			want := bytes.Join(frames[:7], nil)
			if got := readSession(t, dir, rec.id); !bytes.Equal(got, want) {
				t.Fatalf("session file holds %d bytes, want the %d of the first 7 frames", len(got), len(want))
			}
			if sum := verifyFile(t, dir, rec.id, true); sum.Events != 7 {
				t.Fatalf("recovered %d events", sum.Events)
			}
		})
	}
}

// TestRecoveryAcrossSegments: sessions spanning many rolled and recycled
// segments (the spare holds stale records of an earlier life) recover
// exactly, including a session that was idle since several checkpoints.
func TestRecoveryAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: minSegmentBytes}
	s := openSpool(t, cfg)
	r := start(t, s)
	ctx := context.Background()
	idle, busy, done := newRecorder(sessionID(1)), newRecorder(sessionID(2)), newRecorder(sessionID(3))
	li, _ := s.Create(idle.id)
	lb, _ := s.Create(busy.id)
	ld, _ := s.Create(done.id)
	mustAppend(t, li, idle.next())
	mustAppend(t, li, idle.next())
	for i := 0; i < 2000; i++ {
		lsn := mustAppend(t, lb, busy.next())
		if i%100 == 0 {
			mustAppend(t, ld, done.next())
		}
		if i%10 == 0 {
			if err := s.Wait(ctx, lsn); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustAppend(t, ld, done.end("terminate"))
	if err := ld.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := s.checkpoints.Load(); n < 3 {
		t.Fatalf("only %d checkpoints: the test needs several rolls", n)
	}
	s.Close()

	s2 := openSpool(t, cfg)
	if got := s2.Recovered(); len(got) != 2 || got[0] != idle.id || got[1] != busy.id {
		t.Fatalf("recovered %v", got)
	}
	for _, rec := range []*recorder{idle, busy, done} {
		if got := readSession(t, dir, rec.id); !bytes.Equal(got, rec.file) {
			t.Fatalf("%s: %d bytes, want %d", rec.id, len(got), len(rec.file))
		}
	}
	r2 := start(t, s2)
	endRecovered(t, r2, idle.id)
	endRecovered(t, r2, busy.id)
	verifyFile(t, dir, idle.id, false)
	verifyFile(t, dir, busy.id, false)
}

func TestReopenWhenLastFrameIsEnd(t *testing.T) {
	// session.end was appended but Close never completed: recovery lists
	// the session, and the caller sees it is already closed.
	dir := t.TempDir()
	s := openSpool(t, Config{Dir: dir})
	r := start(t, s)
	rec := newRecorder(sessionID(1))
	l, _ := s.Create(rec.id)
	mustAppend(t, l, rec.next())
	if err := s.Wait(context.Background(), mustAppend(t, l, rec.end("terminate"))); err != nil {
		t.Fatal(err)
	}
	r.stop()
	s.Close()
	s2 := openSpool(t, Config{Dir: dir})
	r2 := start(t, s2)
	endRecovered(t, r2, rec.id)
	if got := readSession(t, dir, rec.id); !bytes.Equal(got, rec.file) {
		t.Fatal("a closed recording was changed by recovery")
	}
}

func TestRunStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes})
	rec := newRecorder(sessionID(1))
	l, _ := s.Create(rec.id)
	// Appended before Run starts: made durable once it runs.
	lsn := mustAppend(t, l, rec.next())
	r := start(t, s)
	if err := s.Wait(context.Background(), lsn); err != nil {
		t.Fatal(err)
	}
	lsn = mustAppend(t, l, rec.next())
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// Run flushed on its way out.
	if err := s.Wait(context.Background(), lsn); err != nil {
		t.Fatalf("append before stop not durable: %v", err)
	}
	if _, err := l.Append([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Run returned: %v", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("second Run accepted")
	}
	// Run released the directory: a restart in the same process can open it.
	s2, err := Open(Config{Dir: dir, SegmentBytes: minSegmentBytes})
	if err != nil {
		t.Fatalf("reopen after Run returned: %v", err)
	}
	if got := s2.Recovered(); len(got) != 1 || got[0] != rec.id {
		t.Fatalf("recovered %v", got)
	}
	s2.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWithoutRunReleasesWaiters(t *testing.T) {
	s := openSpool(t, Config{Dir: t.TempDir(), SegmentBytes: minSegmentBytes})
	l, _ := s.Create(sessionID(1))
	lsn := mustAppend(t, l, newRecorder(sessionID(1)).next())
	waited := make(chan error)
	go func() { waited <- s.Wait(context.Background(), lsn) }()
	s.Close()
	if err := <-waited; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait after Close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx, lsn); err == nil {
		t.Fatal("wait for data that can never be durable succeeded")
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	s := start(t, openSpool(t, Config{Dir: t.TempDir(), SegmentBytes: minSegmentBytes}))
	l, _ := s.Create(sessionID(1))
	frame := newRecorder(sessionID(1)).next()
	ctx := context.Background()
	// Warm up: let the batch buffers grow to the working size.
	for range 100 {
		if err := s.Wait(ctx, mustAppend(t, l, frame)); err != nil {
			t.Fatal(err)
		}
	}
	var lsn LSN
	// AllocsPerRun counts every goroutine, the syncer's per-batch commit
	// channel included; per Append the average must still be zero.
	allocs := testing.AllocsPerRun(1000, func() { lsn, _ = l.Append(frame) })
	if allocs != 0 {
		t.Errorf("Append allocates %.1f times per call", allocs)
	}
	if err := s.Wait(ctx, lsn); err != nil {
		t.Fatal(err)
	}
}

// TestAppendLazyRidesAlong: a lazy frame does not start a commit of its own;
// it is made durable by the next ordinary append's commit, or by the lazy
// timer when none comes.
func TestAppendLazyRidesAlong(t *testing.T) {
	s := openSpool(t, Config{Dir: t.TempDir(), LazyDelay: time.Hour})
	r := start(t, s)
	defer r.stop()
	rec := newRecorder(sessionID(1))
	l, err := s.Create(rec.id)
	if err != nil {
		t.Fatal(err)
	}
	first := mustAppend(t, l, rec.next())
	if err := s.Wait(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	commits := s.commits.Load()
	lazy, err := l.AppendLazy(rec.next())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // give a wrongly eager syncer the chance to commit
	if got := s.commits.Load(); got != commits {
		t.Fatalf("commits went from %d to %d after a lazy append", commits, got)
	}
	next := mustAppend(t, l, rec.next())
	if err := s.Wait(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(context.Background(), lazy); err != nil {
		t.Fatal(err)
	}
	if got := s.commits.Load(); got != commits+1 {
		t.Fatalf("want one commit for the lazy and the ordinary frame, got %d", got-commits)
	}
	// Waiting for a lazy frame commits it at once.
	lazy, err = l.AppendLazy(rec.next())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Wait(ctx, lazy); err != nil {
		t.Fatal(err)
	}
}

func TestAppendLazyTimer(t *testing.T) {
	s := openSpool(t, Config{Dir: t.TempDir(), LazyDelay: 5 * time.Millisecond})
	r := start(t, s)
	defer r.stop()
	rec := newRecorder(sessionID(2))
	l, err := s.Create(rec.id)
	if err != nil {
		t.Fatal(err)
	}
	lsn, err := l.AppendLazy(rec.next())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Wait(ctx, lsn); err != nil {
		t.Fatalf("lazy frame never committed: %v", err)
	}
}

// A session whose close record is in the journal is not open in any later
// checkpoint: closes racing segment rolls must not come back as recovered.
func TestClosedSessionsStayClosedAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: minSegmentBytes}
	s := openSpool(t, cfg)
	r := start(t, s)
	ctx := context.Background()
	busy := newRecorder(sessionID(1))
	lb, _ := s.Create(busy.id)
	stop := make(chan struct{})
	rolled := make(chan error, 1)
	go func() { // keeps the journal rolling
		for {
			select {
			case <-stop:
				rolled <- nil
				return
			default:
			}
			lsn, err := lb.Append(busy.next())
			if err == nil {
				err = s.Wait(ctx, lsn)
			}
			if err != nil {
				rolled <- err
				return
			}
		}
	}()
	var closed []string
	for i := 0; i < 200; i++ {
		rec := newRecorder(sessionID(100 + i))
		l, err := s.Create(rec.id)
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, l, rec.next())
		mustAppend(t, l, rec.end("terminate"))
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		closed = append(closed, rec.id)
	}
	close(stop)
	if err := <-rolled; err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := s.checkpoints.Load(); n < 3 {
		t.Fatalf("only %d checkpoints: the test needs several rolls", n)
	}
	s.Close()
	s2 := openSpool(t, cfg)
	for _, id := range s2.Recovered() {
		if id != busy.id {
			t.Fatalf("closed session %s listed as recovered", id)
		}
	}
}

// Frames of sessions interleaved in a batch reach each session's file as
// one write of that session's frames, in order, at the first one's offset.
func TestGatherRunsGroupsBySession(t *testing.T) {
	a, b := &Log{id: "a"}, &Log{id: "b"}
	data := []byte("hdr|a1|hdr|b1|hdr|a22|hdr|b22|hdr|a333")
	ref := func(l *Log, off int64, frame string) applyRef {
		i := bytes.Index(data, []byte(frame))
		return applyRef{log: l, off: off, start: i, end: i + len(frame)}
	}
	bt := &batch{data: data, refs: []applyRef{
		ref(a, 100, "a1"), ref(b, 7, "b1"), ref(a, 102, "a22"), ref(b, 9, "b22"), ref(a, 105, "a333"),
	}}
	at := map[*Log]int{}
	runs := gatherRuns(nil, at, bt)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	for _, want := range []applyRun{{a, 100, []byte("a1a22a333")}, {b, 7, []byte("b1b22")}} {
		r := runs[at[want.log]]
		if r.log != want.log || r.off != want.off || !bytes.Equal(r.data, want.data) {
			t.Fatalf("run of %s: off %d %q, want off %d %q", want.log.id, r.off, r.data, want.off, want.data)
		}
	}
	// A gap (never made by the spool) starts a run of its own, after.
	clear(at)
	bt.refs = []applyRef{ref(a, 100, "a1"), ref(a, 200, "a22")}
	runs = gatherRuns(runs[:0], at, bt)
	if len(runs) != 2 || runs[0].off != 100 || runs[1].off != 200 || string(runs[1].data) != "a22" {
		t.Fatalf("gap: %+v", runs)
	}
}
