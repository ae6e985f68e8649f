package spool

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// faultFS is the real file system with faults injected on demand: fail is
// asked before every open, write and sync and returns the error to inject.
type faultFS struct {
	osFS
	fail func(op, path string) error
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	if err := f.fail("open", name); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{file: fl, fs: f, path: name}, nil
}

func (f *faultFS) SyncDir(name string) error {
	if err := f.fail("syncdir", name); err != nil {
		return err
	}
	return f.osFS.SyncDir(name)
}

type faultFile struct {
	file
	fs   *faultFS
	path string
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.fail("write", f.path); err != nil {
		return 0, err
	}
	return f.file.WriteAt(p, off)
}

func (f *faultFile) Datasync() error {
	if err := f.fs.fail("sync", f.path); err != nil {
		return err
	}
	return f.file.Datasync()
}

// armedFault injects err into op on files under dir once armed.
func armedFault(dir, op string, err error) (*faultFS, *atomic.Bool) {
	armed := new(atomic.Bool)
	return &faultFS{fail: func(o, path string) error {
		if armed.Load() && o == op && strings.HasPrefix(path, dir) {
			return err
		}
		return nil
	}}, armed
}

func TestFailClosed(t *testing.T) {
	cases := []struct {
		name, sub, op string
		err           error
	}{
		{"journal fdatasync EIO", "journal", "sync", syscall.EIO},
		{"journal write ENOSPC", "journal", "write", syscall.ENOSPC},
		{"session write ENOSPC", "sessions", "write", syscall.ENOSPC},
		{"session fdatasync EIO", "sessions", "sync", syscall.EIO},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fsys, armed := armedFault(filepath.Join(dir, tc.sub), tc.op, tc.err)
			s, err := open(Config{Dir: dir, SegmentBytes: minSegmentBytes}, fsys, zeroFill)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			r := start(t, s)
			ctx := context.Background()
			rec := newRecorder(sessionID(1))
			l, _ := s.Create(rec.id)
			var acked []byte
			for range 3 {
				f := rec.next()
				if err := s.Wait(ctx, mustAppend(t, l, f)); err != nil {
					t.Fatal(err)
				}
				acked = append(acked, f...)
			}

			armed.Store(true)
			// Keep recording until the spool notices; the fault must surface
			// as ErrFailed from Wait, Append or Close, never as success of
			// everything.
			var failure error
			for i := 0; i < 100 && failure == nil; i++ {
				f := rec.next()
				lsn, err := l.Append(f)
				if err == nil {
					err = s.Wait(ctx, lsn)
				}
				if err == nil && tc.sub == "sessions" {
					err = l.Close(ctx) // waits for the session file
				}
				if err == nil {
					acked = append(acked, f...)
				}
				failure = err
			}
			if !errors.Is(failure, ErrFailed) || !errors.Is(failure, tc.err) {
				t.Fatalf("failure %v, want ErrFailed wrapping %v", failure, tc.err)
			}
			if _, err := l.Append(rec.next()); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v", err)
			}
			if _, err := s.Create(sessionID(2)); !errors.Is(err, ErrFailed) {
				t.Fatalf("create after failure: %v", err)
			}
			if err := l.Close(ctx); !errors.Is(err, ErrFailed) {
				t.Fatalf("close after failure: %v", err)
			}
			if err := r.stop(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Run returned %v", err)
			}
			if !errors.Is(s.Err(), ErrFailed) {
				t.Fatalf("Err() = %v", s.Err())
			}
			s.Close()

			// After a restart on a healthy disk, everything that was
			// acknowledged is there.
			s2 := openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes})
			if got := readSession(t, dir, rec.id); !bytes.HasPrefix(got, acked) {
				t.Fatalf("acknowledged frames lost: file %d bytes, acknowledged %d", len(got), len(acked))
			}
			if got := s2.Recovered(); len(got) != 1 {
				t.Fatalf("recovered %v", got)
			}
		})
	}
}

func TestRecoveryFailureFailsOpen(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, Config{Dir: dir})
	r := start(t, s)
	rec := newRecorder(sessionID(1))
	l, _ := s.Create(rec.id)
	if err := s.Wait(context.Background(), mustAppend(t, l, rec.next())); err != nil {
		t.Fatal(err)
	}
	r.stop()
	s.Close()
	fsys, armed := armedFault(filepath.Join(dir, "sessions"), "write", syscall.EIO)
	armed.Store(true)
	if _, err := open(Config{Dir: dir}, fsys, zeroFill); !errors.Is(err, syscall.EIO) {
		t.Fatalf("open with a failing disk: %v", err)
	}
}
