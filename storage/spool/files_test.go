package spool

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// The spool holds at most Config.MaxOpenFiles session files open: these
// tests count the process's descriptors on real files, and check that a
// session written after its file was closed gets every frame, in order,
// once.

// sessionFDs counts this process's descriptors open on files under
// dir/sessions (/proc/self/fd).
func sessionFDs(t testing.TB, dir string) int {
	t.Helper()
	real, err := filepath.EvalSymlinks(filepath.Join(dir, "sessions"))
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the descriptor ReadDir itself used, closed by now
		}
		if strings.HasPrefix(target, real+"/") {
			n++
		}
	}
	return n
}

// waitAll waits until lsn is durable and applied to the session files.
func waitAll(t testing.TB, s *running, lsn LSN) {
	t.Helper()
	ctx := context.Background()
	if err := s.Wait(ctx, lsn); err != nil {
		t.Fatal(err)
	}
	if err := s.waitApplied(ctx, lsn); err != nil {
		t.Fatal(err)
	}
}

// TestSessionFilesBounded: a thousand live sessions, each written to,
// hold at most DefaultMaxOpenFiles session files open, idle or not; the
// descriptors a session costs are its sockets, not its recording.
func TestSessionFilesBounded(t *testing.T) {
	const sessions = 1000
	dir := t.TempDir()
	s := start(t, openSpool(t, Config{Dir: dir, SegmentBytes: 4 << 20}))
	if n := sessionFDs(t, dir); n != 0 {
		t.Fatalf("%d session files open before any session", n)
	}
	recs := make([]*recorder, sessions)
	logs := make([]*Log, sessions)
	for i := range recs {
		recs[i] = newRecorder(sessionID(i))
		l, err := s.Create(recs[i].id)
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = l
	}
	if n := sessionFDs(t, dir); n != 0 {
		t.Fatalf("%d session files open after %d Creates, want none before a frame is written", n, sessions)
	}
	most := 0
	for round := range 3 {
		var lsn LSN
		for i, l := range logs {
			lsn = mustAppend(t, l, recs[i].next())
			if i%100 == 99 {
				most = max(most, sessionFDs(t, dir))
			}
		}
		waitAll(t, s, lsn)
		n := sessionFDs(t, dir)
		most = max(most, n)
		t.Logf("round %d: %d live sessions, %d session files open, %d opened so far", round, sessions, n, s.sessionOpens.Load())
	}
	if most > DefaultMaxOpenFiles {
		t.Fatalf("%d session files open at once, want at most %d", most, DefaultMaxOpenFiles)
	}
	if most == 0 {
		t.Fatal("no session file was ever open: the count does not see them")
	}
	// A session whose file the spool closed is read all the same.
	buf := make([]byte, len(recs[0].file))
	if n, err := s.ReadOpen(recs[0].id, buf, 0); err != nil || !bytes.Equal(buf[:n], recs[0].file) {
		t.Fatalf("ReadOpen of an idle session: %d bytes, %v", n, err)
	}
	ctx := context.Background()
	for i, l := range logs {
		mustAppend(t, l, recs[i].end("terminate"))
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := sessionFDs(t, dir); n != 0 {
		t.Fatalf("%d session files open after every session closed", n)
	}
	for _, r := range recs {
		if got := readSession(t, dir, r.id); !bytes.Equal(got, r.file) {
			t.Fatalf("session %s: file of %d bytes differs from the %d appended", r.id, len(got), len(r.file))
		}
	}
}

// TestEvictedSessionsKeepOrder: with one or two files open at most, many
// sessions appending at once (their files closed and opened again all
// the time, across segment rolls) end up with exactly their frames, in
// order; Last and ReadOpen read closed files; a restart recovers nothing
// and changes nothing.
func TestEvictedSessionsKeepOrder(t *testing.T) {
	for _, maxOpen := range []int{1, 2} {
		t.Run(map[int]string{1: "one file", 2: "two files"}[maxOpen], func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir, SegmentBytes: minSegmentBytes, MaxOpenFiles: maxOpen}
			fsys := &dirtyCloseFS{}
			sp, err := open(cfg, fsys, zeroFill)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sp.Close() })
			s := start(t, sp)
			const writers, perWriter, events = 8, 3, 60
			var wg sync.WaitGroup
			var mu sync.Mutex
			var recs []*recorder
			errc := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					ctx := context.Background()
					for k := range perWriter {
						rec := newRecorder(sessionID(w*100 + k))
						l, err := s.Create(rec.id)
						if err != nil {
							errc <- err
							return
						}
						for i := range events {
							frame := rec.next()
							lsn, err := l.Append(frame)
							if err == nil && rng.IntN(3) == 0 {
								err = s.Wait(ctx, lsn) // some frames ride in one batch, some alone
							}
							if err == nil && i == events/2 {
								// Last reads the file, closed or not.
								if err = s.Wait(ctx, lsn); err == nil {
									err = s.waitApplied(ctx, lsn)
								}
								if last, lerr := l.Last(); err == nil && (lerr != nil || !bytes.Equal(last, frame)) {
									err = errors.Join(errors.New("Last is not the last frame"), lerr)
								}
							}
							if err != nil {
								errc <- err
								return
							}
						}
						if _, err := l.Append(rec.end("terminate")); err != nil {
							errc <- err
							return
						}
						if err := l.Close(ctx); err != nil {
							errc <- err
							return
						}
						mu.Lock()
						recs = append(recs, rec)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			if n := sessionFDs(t, dir); n != 0 {
				t.Fatalf("%d session files open after every session closed", n)
			}
			if s.checkpoints.Load() == 0 {
				t.Error("no segment roll: the checkpointer never met a closed file")
			}
			t.Logf("%d sessions, %d session file opens, %d session syncs, %d checkpoints",
				len(recs), s.sessionOpens.Load(), s.sessionSyncs.Load(), s.checkpoints.Load())
			if s.sessionOpens.Load() <= uint64(len(recs)) {
				t.Errorf("%d opens for %d sessions: files were never closed and opened again", s.sessionOpens.Load(), len(recs))
			}
			check := func() {
				for _, r := range recs {
					if got := readSession(t, dir, r.id); !bytes.Equal(got, r.file) {
						t.Fatalf("session %s: file of %d bytes differs from the %d appended", r.id, len(got), len(r.file))
					}
					if sum := verifyFile(t, dir, r.id, false); !sum.Closed {
						t.Fatalf("session %s not closed: %+v", r.id, sum)
					}
				}
			}
			check()
			if n := fsys.dirtyCloses.Load(); n > 0 {
				t.Fatalf("%d session files closed holding writes no fdatasync of theirs covered", n)
			}
			if err := s.stop(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s2 := openSpool(t, cfg)
			if got := s2.Recovered(); len(got) != 0 {
				t.Fatalf("recovered %v after a clean stop", got)
			}
			check()
		})
	}
}

// TestReadOpenClosedFile: ReadOpen of a live session whose file the spool
// closed opens it for the read; when that open fails for want of
// descriptors, the error says so (the shipper tries again next tick).
func TestReadOpenClosedFile(t *testing.T) {
	dir := t.TempDir()
	var emfile atomic.Bool
	fsys := &faultFS{fail: func(op, path string) error {
		if op == "open" && emfile.Load() {
			return syscall.EMFILE
		}
		return nil
	}}
	sp, err := open(Config{Dir: dir, MaxOpenFiles: 1}, fsys, zeroFill)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	s := start(t, sp)
	a, b := newRecorder(sessionID(1)), newRecorder(sessionID(2))
	la, _ := s.Create(a.id)
	lb, _ := s.Create(b.id)
	mustAppend(t, la, a.next())
	waitAll(t, s, mustAppend(t, lb, b.next())) // b's file displaces a's
	la.fmu.RLock()
	lb.fmu.RLock()
	aOpen, bOpen := la.f != nil, lb.f != nil
	lb.fmu.RUnlock()
	la.fmu.RUnlock()
	if aOpen || !bOpen {
		t.Fatalf("open files: a %v, b %v; want only b's", aOpen, bOpen)
	}
	buf := make([]byte, len(a.file))
	if n, err := s.ReadOpen(a.id, buf, 0); err != nil || !bytes.Equal(buf[:n], a.file) {
		t.Fatalf("ReadOpen of a closed file: %d bytes, %v", n, err)
	}
	emfile.Store(true)
	if _, err := s.ReadOpen(a.id, buf, 0); !errors.Is(err, syscall.EMFILE) || errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadOpen out of descriptors: %v, want EMFILE", err)
	}
	if n, err := s.ReadOpen(b.id, buf[:len(b.file)], 0); err != nil || !bytes.Equal(buf[:n], b.file) {
		t.Fatalf("ReadOpen of an open file out of descriptors: %d bytes, %v", n, err)
	}
	emfile.Store(false)
	if err := s.Err(); err != nil {
		t.Fatalf("a reader's failed open failed the spool: %v", err)
	}
}

// TestOpenOutOfDescriptors: when the applier cannot open a session file
// for EMFILE, it closes files of its own and tries again; holding none,
// it fails the spool as a failed write does, and everything acknowledged
// is recovered after a restart.
func TestOpenOutOfDescriptors(t *testing.T) {
	dir := t.TempDir()
	sessions := filepath.Join(dir, "sessions")
	var emfiles atomic.Int64 // opens of session files to fail, -1: all
	fsys := &faultFS{fail: func(op, path string) error {
		if op != "open" || !strings.HasPrefix(path, sessions) {
			return nil
		}
		if emfiles.Load() < 0 || emfiles.Add(-1) >= 0 {
			return syscall.EMFILE
		}
		emfiles.Store(0)
		return nil
	}}
	cfg := Config{Dir: dir, MaxOpenFiles: 4}
	sp, err := open(cfg, fsys, zeroFill)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	s := start(t, sp)
	recs := make([]*recorder, 4)
	logs := make([]*Log, 4)
	for i := range recs {
		recs[i] = newRecorder(sessionID(i))
		if logs[i], err = s.Create(recs[i].id); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		waitAll(t, s, mustAppend(t, logs[i], recs[i].next()))
	}
	// Two opens fail: the applier gives up two files of its own.
	emfiles.Store(2)
	waitAll(t, s, mustAppend(t, logs[3], recs[3].next()))
	if err := s.Err(); err != nil {
		t.Fatalf("EMFILE with files to give up failed the spool: %v", err)
	}
	if n := sessionFDs(t, dir); n != 2 {
		t.Errorf("%d session files open, want 2 (one left of the three, and the new one)", n)
	}

	// Every open fails: the spool fails closed, like a failed write.
	emfiles.Store(-1)
	var failure error
	for i := 0; failure == nil && i < 100; i++ {
		for j := range logs {
			lsn, err := logs[j].Append(recs[j].next())
			if err == nil {
				err = s.Wait(context.Background(), lsn)
			}
			if err == nil {
				err = s.waitApplied(context.Background(), lsn)
			}
			if err != nil {
				failure = err
				break
			}
		}
	}
	if !errors.Is(failure, ErrFailed) || !errors.Is(failure, syscall.EMFILE) {
		t.Fatalf("failure %v, want ErrFailed wrapping EMFILE", failure)
	}
	if _, err := logs[0].Append(recs[0].next()); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after failure: %v", err)
	}
	if err := s.stop(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run returned %v", err)
	}
	s.Close()
	emfiles.Store(0)

	// What each session wrote was durable in the journal: recovery puts
	// it in the files, whatever the applier could not.
	s2 := openSpool(t, cfg)
	if got := s2.Recovered(); len(got) != len(recs) {
		t.Fatalf("recovered %v", got)
	}
	for _, r := range recs {
		got := readSession(t, dir, r.id)
		if !bytes.HasPrefix(r.file, got) || len(got) == 0 {
			t.Fatalf("session %s: file of %d bytes is not a prefix of the %d appended", r.id, len(got), len(r.file))
		}
	}
}

// TestEvictionSyncFails: the applier fdatasyncs a file before closing it
// to make room for another; if that fails, the spool fails (the frames
// may not be on disk), and the checkpointer does not recycle a segment on
// the strength of it.
func TestEvictionSyncFails(t *testing.T) {
	dir := t.TempDir()
	fsys, armed := armedFault(filepath.Join(dir, "sessions"), "sync", syscall.EIO)
	cfg := Config{Dir: dir, SegmentBytes: minSegmentBytes, MaxOpenFiles: 1}
	sp, err := open(cfg, fsys, zeroFill)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	s := start(t, sp)
	a, b := newRecorder(sessionID(1)), newRecorder(sessionID(2))
	la, _ := s.Create(a.id)
	lb, _ := s.Create(b.id)
	var acked int
	waitAll(t, s, mustAppend(t, la, a.next()))
	acked = len(a.file)
	armed.Store(true)
	// b's first frame needs a's file closed, after a sync that fails.
	lsn := mustAppend(t, lb, b.next())
	if err := s.Wait(context.Background(), lsn); err != nil {
		t.Fatal(err) // durable in the journal: the commit does not depend on the session files
	}
	if err := s.waitApplied(context.Background(), lsn); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("applied after a failed sync: %v", err)
	}
	if _, err := la.Append(a.next()); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after failure: %v", err)
	}
	if err := la.Close(context.Background()); !errors.Is(err, ErrFailed) {
		t.Fatalf("close after failure: %v", err)
	}
	if s.checkpoints.Load() != 0 {
		t.Fatalf("%d checkpoints", s.checkpoints.Load())
	}
	s.stop()
	s.Close()
	armed.Store(false)
	openSpool(t, cfg)
	if got := readSession(t, dir, a.id); !bytes.HasPrefix(got, a.file[:acked]) {
		t.Fatalf("acknowledged frames of %s lost", a.id)
	}
	if got := readSession(t, dir, b.id); !bytes.Equal(got, b.file) {
		t.Fatalf("session %s: %d bytes, want the %d acknowledged", b.id, len(got), len(b.file))
	}
}

// dirtyCloseFS counts descriptors closed after a write that no fdatasync
// through them covered: the spool must never close a session file so, or
// a writeback error could go unseen (see openFiles).
type dirtyCloseFS struct {
	osFS
	dirtyCloses atomic.Int64
}

type dirtyCloseFile struct {
	file
	fs    *dirtyCloseFS
	mu    sync.Mutex
	dirty bool
}

func (d *dirtyCloseFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := d.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &dirtyCloseFile{file: f, fs: d}, nil
}

func (f *dirtyCloseFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.dirty = true
	f.mu.Unlock()
	return f.file.WriteAt(p, off)
}

func (f *dirtyCloseFile) Datasync() error {
	f.mu.Lock()
	dirty := f.dirty
	f.dirty = false
	f.mu.Unlock()
	err := f.file.Datasync()
	if err != nil && dirty {
		f.mu.Lock()
		f.dirty = true
		f.mu.Unlock()
	}
	return err
}

func (f *dirtyCloseFile) Close() error {
	f.mu.Lock()
	if f.dirty {
		f.fs.dirtyCloses.Add(1)
	}
	f.mu.Unlock()
	return f.file.Close()
}
