package spool

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
)

// Two group commits may be in flight: these tests hold one journal
// fdatasync while the next batch is written and synced, and check what
// waiters, the durable LSN and the session files see.

// hookFS is the real file system with hooks around the writes and syncs of
// journal files (once armed): the tests order and fail the group commits'
// fdatasyncs with it.
type hookFS struct {
	osFS
	journal string
	armed   atomic.Bool
	syncs   atomic.Int64 // journal syncs seen since armed, numbering them from 1
	spool   atomic.Pointer[Spool]
	// before runs before the real fdatasync of a journal file (n numbers
	// the sync); an error is returned instead of syncing. after runs once
	// the sync returned. write runs before a journal write.
	// inUse says whether the file is a segment in use (its header is
	// written), not a spare or a recycled one: a group commit's sync.
	before func(n int64, inUse bool) error
	after  func(n int64, inUse bool, err error)
	write  func(f *hookFile, p []byte, off int64)
}

type hookFile struct {
	file
	fs      *hookFS
	journal bool
	// header: the file's last write at offset 0 was a segment header (it is
	// a journal segment in use, not a spare or a recycled one).
	header atomic.Bool
}

func newHookFS(dir string) *hookFS { return &hookFS{journal: filepath.Join(dir, "journal")} }

func (h *hookFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := h.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &hookFile{file: f, fs: h, journal: strings.HasPrefix(name, h.journal+"/")}, nil
}

func (f *hookFile) WriteAt(p []byte, off int64) (int, error) {
	if f.journal && off == 0 && len(p) >= segHeaderSize {
		f.header.Store(p[0] != 0)
	}
	if f.journal && f.fs.armed.Load() && f.fs.write != nil {
		f.fs.write(f, p, off)
	}
	return f.file.WriteAt(p, off)
}

func (f *hookFile) Datasync() error {
	if !f.journal || !f.fs.armed.Load() {
		return f.file.Datasync()
	}
	n, inUse := f.fs.syncs.Add(1), f.header.Load()
	var err error
	if f.fs.before != nil {
		err = f.fs.before(n, inUse)
	}
	if err == nil {
		err = f.file.Datasync()
	}
	if f.fs.after != nil {
		f.fs.after(n, inUse, err)
	}
	return err
}

// waitSpare returns once the checkpointer prepared the spare segment, so
// that the journal syncs that follow are group commits only.
func waitSpare(t testing.TB, s *Spool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		s.spareMu.Lock()
		ready := s.spare != nil
		s.spareMu.Unlock()
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no spare segment after 30 s")
		}
	}
}

// twoBatches starts a spool on h, acknowledges one frame (and waits until
// it is in the session file), arms h and appends two frames as two
// batches: the second is appended only once the first batch's sync began
// (and is held by h.before).
type twoBatches struct {
	s            *running
	l            *Log
	acked        []byte // the frame acknowledged before
	lsn0         LSN    // its LSN
	lsnA, lsnB   LSN    // the two batches' frames
	waitA, waitB <-chan error
}

func startTwoBatches(t *testing.T, cfg Config, h *hookFS, entered1 <-chan struct{}) *twoBatches {
	t.Helper()
	var (
		s                *running
		l                *Log
		lsn0, lsnA, lsnB LSN
		waitA, waitB     <-chan error
	)
	sp, err := open(cfg, h, zeroFill)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	h.spool.Store(sp)
	s = start(t, sp)
	waitSpare(t, sp)
	rec := newRecorder(sessionID(1))
	l, err = s.Create(rec.id)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	acked := rec.next()
	lsn0 = mustAppend(t, l, acked)
	if err := s.Wait(ctx, lsn0); err != nil {
		t.Fatal(err)
	}
	if err := s.waitApplied(ctx, lsn0); err != nil {
		t.Fatal(err)
	}
	h.armed.Store(true)
	wait := func(lsn LSN) <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- s.Wait(ctx, lsn) }()
		return ch
	}
	lsnA = mustAppend(t, l, rec.next())
	waitA = wait(lsnA)
	select {
	case <-entered1:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch's sync never started")
	}
	lsnB = mustAppend(t, l, rec.next())
	waitB = wait(lsnB)
	return &twoBatches{s: s, l: l, acked: acked, lsn0: lsn0, lsnA: lsnA, lsnB: lsnB, waitA: waitA, waitB: waitB}
}

func result(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: Wait did not return", what)
		return nil
	}
}

// TestCommitsOverlap: while the first batch's fdatasync runs, the second
// batch is written and its fdatasync starts (the first sync is held until
// then, or fails the test after a timeout rather than hanging).
func TestCommitsOverlap(t *testing.T) {
	dir := t.TempDir()
	h := newHookFS(dir)
	entered1, entered2 := make(chan struct{}), make(chan struct{})
	var overlapped atomic.Bool
	h.before = func(n int64, _ bool) error {
		switch n {
		case 1:
			close(entered1)
			select {
			case <-entered2:
				overlapped.Store(true)
			case <-time.After(5 * time.Second):
			}
		case 2:
			close(entered2)
		}
		return nil
	}
	tb := startTwoBatches(t, Config{Dir: dir}, h, entered1)
	s, lsnA, lsnB, waitA, waitB := tb.s, tb.lsnA, tb.lsnB, tb.waitA, tb.waitB
	if err := result(t, waitA, "first batch"); err != nil {
		t.Fatal(err)
	}
	if err := result(t, waitB, "second batch"); err != nil {
		t.Fatal(err)
	}
	if !overlapped.Load() {
		t.Fatal("the second batch's fdatasync did not start while the first one ran")
	}
	if d := LSN(s.durable.Load()); d < lsnB || lsnA >= lsnB {
		t.Fatalf("durable %d, batches end at %d and %d", d, lsnA, lsnB)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSecondSyncFinishesFirst: the second batch's fdatasync returns while
// the first one is still running. Its waiters must not be released, nor
// its end published as durable, until the first batch is durable.
func TestSecondSyncFinishesFirst(t *testing.T) {
	dir := t.TempDir()
	h := newHookFS(dir)
	entered1, synced2 := make(chan struct{}), make(chan struct{})
	var synced1, held atomic.Bool
	var durableEarly atomic.Uint64 // durable LSN seen while the first sync was held
	h.before = func(n int64, _ bool) error {
		if n == 1 {
			close(entered1)
			select {
			case <-synced2:
			case <-time.After(5 * time.Second):
				return nil // no overlap: TestCommitsOverlap reports it
			}
			held.Store(true)
			time.Sleep(50 * time.Millisecond) // room for a wrong publication
			durableEarly.Store(h.spool.Load().durable.Load())
		}
		return nil
	}
	h.after = func(n int64, _ bool, err error) {
		switch n {
		case 1:
			synced1.Store(true)
		case 2:
			close(synced2)
		}
	}
	// Slow publications down: a waiter released before its batch is
	// published would see durable short of its LSN.
	onCommit := func(Commit) {
		if h.armed.Load() {
			time.Sleep(20 * time.Millisecond)
		}
	}
	tb := startTwoBatches(t, Config{Dir: dir, OnCommit: onCommit}, h, entered1)
	s, l, lsn0, lsnA, lsnB, waitA, waitB := tb.s, tb.l, tb.lsn0, tb.lsnA, tb.lsnB, tb.waitA, tb.waitB
	errB := result(t, waitB, "second batch")
	if errB != nil {
		t.Fatal(errB)
	}
	if !synced1.Load() {
		t.Fatal("the second batch's waiter was released before the first batch's sync returned")
	}
	if d := LSN(s.durable.Load()); d < lsnB {
		t.Fatalf("the second batch's waiter was released with durable at %d, short of %d", d, lsnB)
	}
	if err := result(t, waitA, "first batch"); err != nil {
		t.Fatal(err)
	}
	if !held.Load() {
		t.Fatal("the second batch's sync did not finish while the first one was held")
	}
	if d := LSN(durableEarly.Load()); d != lsn0 {
		t.Fatalf("durable was %d while the first batch (%d..%d] was syncing, want %d", d, lsn0, lsnA, lsn0)
	}
	if d := LSN(s.durable.Load()); d < lsnB {
		t.Fatalf("durable %d after both commits, want >= %d", d, lsnB)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestFirstSyncFailsSecondSucceeds: the second batch's fdatasync succeeds
// while the first one's fails. Nothing of either batch may be acknowledged
// or applied, and the durable LSN must stay before the first batch.
func TestFirstSyncFailsSecondSucceeds(t *testing.T) {
	dir := t.TempDir()
	h := newHookFS(dir)
	entered1, synced2 := make(chan struct{}), make(chan struct{})
	var durableEarly atomic.Uint64
	h.before = func(n int64, _ bool) error {
		if n == 1 {
			close(entered1)
			select {
			case <-synced2:
			case <-time.After(5 * time.Second):
			}
			time.Sleep(50 * time.Millisecond) // room for a wrong publication
			durableEarly.Store(h.spool.Load().durable.Load())
			return syscall.EIO
		}
		return nil
	}
	h.after = func(n int64, _ bool, err error) {
		if n == 2 {
			if err != nil {
				t.Errorf("second sync: %v", err)
			}
			close(synced2)
		}
	}
	tb := startTwoBatches(t, Config{Dir: dir}, h, entered1)
	s, l, lsn0, waitA, waitB := tb.s, tb.l, tb.lsn0, tb.waitA, tb.waitB
	for _, w := range []struct {
		ch   <-chan error
		what string
	}{{waitB, "second batch"}, {waitA, "first batch"}} {
		if err := result(t, w.ch, w.what); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("%s: Wait returned %v, want ErrFailed wrapping EIO", w.what, err)
		}
	}
	if d := LSN(durableEarly.Load()); d != lsn0 {
		t.Fatalf("durable was %d before the first sync failed, want %d", d, lsn0)
	}
	if d := LSN(s.durable.Load()); d != lsn0 {
		t.Fatalf("durable %d after the first batch's sync failed, want %d", d, lsn0)
	}
	if err := s.stop(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run returned %v", err)
	}
	// Only the frame acknowledged before reached the session file.
	if got := l.applied.Load(); got != int64(len(tb.acked)) {
		t.Fatalf("session file has %d bytes applied, want the %d acknowledged", got, len(tb.acked))
	}
}

// TestSecondSyncFails: the first batch's sync succeeds, the second's fails
// before it. The second batch is never acknowledged; the first may be (it
// is durable) or may fail with the spool.
func TestSecondSyncFails(t *testing.T) {
	dir := t.TempDir()
	h := newHookFS(dir)
	entered1, failed2 := make(chan struct{}), make(chan struct{})
	h.before = func(n int64, _ bool) error {
		switch n {
		case 1:
			close(entered1)
			select {
			case <-failed2:
			case <-time.After(5 * time.Second):
			}
		case 2:
			defer close(failed2)
			return syscall.EIO
		}
		return nil
	}
	tb := startTwoBatches(t, Config{Dir: dir}, h, entered1)
	s, lsnA, lsnB, waitA, waitB := tb.s, tb.lsnA, tb.lsnB, tb.waitA, tb.waitB
	if err := result(t, waitB, "second batch"); !errors.Is(err, ErrFailed) {
		t.Fatalf("second batch: Wait returned %v, want ErrFailed", err)
	}
	errA := result(t, waitA, "first batch")
	if errA != nil && !errors.Is(errA, ErrFailed) {
		t.Fatalf("first batch: Wait returned %v", errA)
	}
	d := LSN(s.durable.Load())
	if d >= lsnB || (errA == nil && d < lsnA) {
		t.Fatalf("durable %d; first batch ends at %d (Wait: %v), second at %d", d, lsnA, errA, lsnB)
	}
	if err := s.stop(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run returned %v", err)
	}
}

// TestRollWaitsForCommitsInFlight: a segment roll writes the new segment's
// header (and checkpoint, which counts the batches before) only when no
// group commit is syncing; and OnCommit is never called twice at once.
func TestRollWaitsForCommitsInFlight(t *testing.T) {
	dir := t.TempDir()
	h := newHookFS(dir)
	var syncing, onCommit atomic.Int64
	var bad atomic.Value
	h.before = func(_ int64, inUse bool) error {
		if inUse { // a group commit
			syncing.Add(1)
			time.Sleep(500 * time.Microsecond) // widen the window
		}
		return nil
	}
	h.after = func(_ int64, inUse bool, _ error) {
		if inUse {
			syncing.Add(-1)
		}
	}
	h.write = func(f *hookFile, p []byte, off int64) {
		if off == 0 && len(p) > segHeaderSize && string(p[:len(segMagic)]) == segMagic {
			if n := syncing.Load(); n != 0 {
				bad.CompareAndSwap(nil, "a segment header was written while a group commit was syncing")
			}
		}
	}
	cfg := Config{Dir: dir, SegmentBytes: minSegmentBytes, OnCommit: func(Commit) {
		if onCommit.Add(1) != 1 {
			bad.CompareAndSwap(nil, "OnCommit called concurrently")
		}
		time.Sleep(20 * time.Microsecond)
		onCommit.Add(-1)
	}}
	sp, err := open(cfg, h, zeroFill)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	s := start(t, sp)
	h.armed.Store(true)
	ctx := context.Background()
	var wg sync.WaitGroup
	recs := make([]*recorder, 4)
	errs := make(chan error, len(recs))
	for w := range recs {
		recs[w] = newRecorder(sessionID(700 + w))
		wg.Go(func() {
			rec := recs[w]
			l, err := s.Create(rec.id)
			if err != nil {
				errs <- err
				return
			}
			if _, err := l.Append(rec.next()); err != nil {
				errs <- err
				return
			}
			data := make([]byte, 10<<10)
			for range 60 {
				lsn, err := l.Append(rec.seal(&record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: 1, Data: data}}))
				if err == nil {
					err = s.Wait(ctx, lsn)
				}
				if err != nil {
					errs <- err
					return
				}
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
	if msg := bad.Load(); msg != nil {
		t.Fatal(msg)
	}
	if n := s.checkpoints.Load(); n < 10 {
		t.Fatalf("only %d segment rolls: the test did not exercise them", n)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	// Everything is in the session files, also after recovery.
	openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes})
	for _, rec := range recs {
		if got := readSession(t, dir, rec.id); !bytes.Equal(got, rec.file) {
			t.Fatalf("session %s: %d bytes, want %d", rec.id, len(got), len(rec.file))
		}
	}
}
