package spool

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/phigate/phigate/session/record"
)

// TestDiskFull fills a real 1 MiB tmpfs: the spool must fail closed with
// ErrFailed (wrapping ENOSPC), and every acknowledged event must be
// recoverable from what it left on disk.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	dir := filepath.Join(mnt, "spool")
	s, err := Open(Config{Dir: dir, SegmentBytes: minSegmentBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := start(t, s)
	ctx := context.Background()

	acked := make(map[string]uint64)
	var failure error
	blob := make([]byte, 6<<10)
	for i := 0; failure == nil && i < 64; i++ {
		rec := newRecorder(sessionID(i))
		l, err := s.Create(rec.id)
		if err != nil {
			failure = err
			break
		}
		for j := 0; j < 8 && failure == nil; j++ {
			var frame []byte
			if j == 0 {
				frame = rec.next()
			} else {
				frame = rec.seal(&record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: 1, Data: blob}})
			}
			lsn, err := l.Append(frame)
			if err == nil {
				err = s.Wait(ctx, lsn)
			}
			if err != nil {
				failure = err
				break
			}
			acked[rec.id] = uint64(j + 1)
		}
	}
	if failure == nil {
		t.Fatal("recorded 3 MiB on a 1 MiB file system without an error")
	}
	if !errors.Is(failure, ErrFailed) || !errors.Is(failure, syscall.ENOSPC) {
		t.Fatalf("failure %v, want ErrFailed wrapping ENOSPC", failure)
	}
	if err := r.stop(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Run returned %v", err)
	}
	s.Close()

	// Recover a copy on a disk with room: nothing acknowledged is missing.
	cp := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", cp).CombinedOutput(); err != nil {
		t.Fatalf("copy spool: %v: %s", err, out)
	}
	os.Remove(filepath.Join(cp, "LOCK"))
	s2 := openSpool(t, Config{Dir: cp, SegmentBytes: minSegmentBytes})
	for id, n := range acked {
		if sum := verifyFile(t, cp, id, true); sum.Events < n {
			t.Fatalf("session %s: %d events recovered, %d acknowledged", id, sum.Events, n)
		}
	}
	t.Logf("%d sessions acknowledged before the disk filled (%v); %d recovered", len(acked), failure, len(s2.Recovered()))
}
