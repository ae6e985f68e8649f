package blob_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/phigate/phigate/storage/blob"
)

// syncLog records the syncs an FS makes, and fails those fail says to.
type syncLog struct {
	mu    sync.Mutex
	files int
	dirs  map[string]int
	fail  func(path string) bool
}

func watchSyncs(s *blob.FS) *syncLog {
	l := &syncLog{dirs: map[string]int{}}
	blob.SetSyncFault(s, func(path string) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			rel, _ := filepath.Rel(s.Dir(), path)
			l.dirs[filepath.ToSlash(rel)]++
		} else {
			l.files++
		}
		if l.fail != nil && l.fail(path) {
			return syscall.EIO
		}
		return nil
	})
	return l
}

// TestFSPutManySyncsEachDirectoryOnce: a batch of many objects in a few
// directories costs one fdatasync per file (data and meta) and one fsync per
// directory touched, however many objects each holds; every object is then
// confirmed as a Put confirms it.
func TestFSPutManySyncsEachDirectoryOnce(t *testing.T) {
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "sessions/old/1", []byte("held"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	l := watchSyncs(s)
	var objs []blob.Object
	for _, sess := range []string{"a", "b", "c"} {
		for _, seq := range []string{"1.chunk", "1.manifest", "2.chunk", "2.manifest"} {
			objs = append(objs, blob.Object{Key: "sessions/" + sess + "/" + seq, Data: []byte(sess + seq)})
		}
	}
	errs := s.PutMany(ctx, objs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", objs[i].Key, err)
		}
		got, err := s.Get(ctx, objs[i].Key)
		if err != nil || !bytes.Equal(got, objs[i].Data) {
			t.Fatalf("get %s: %q %v", objs[i].Key, got, err)
		}
		if info, err := s.Stat(ctx, objs[i].Key); err != nil || info.SHA256 != blob.Sum(objs[i].Data) {
			t.Fatalf("stat %s: %+v %v", objs[i].Key, info, err)
		}
	}
	if l.files != 2*len(objs) {
		t.Errorf("%d file syncs for %d objects, want one per data and meta file", l.files, len(objs))
	}
	// data/sessions/{a,b,c} and meta/sessions/{a,b,c} got links, and
	// data/sessions and meta/sessions got new directories.
	want := map[string]int{"data/sessions": 1, "meta/sessions": 1}
	for _, sess := range []string{"a", "b", "c"} {
		want["data/sessions/"+sess], want["meta/sessions/"+sess] = 1, 1
	}
	if len(l.dirs) != len(want) {
		t.Errorf("directories synced: %v, want %v", l.dirs, want)
	}
	for d, n := range want {
		if l.dirs[d] != n {
			t.Errorf("directory %s synced %d times, want %d (all: %v)", d, l.dirs[d], n, l.dirs)
		}
	}
	// Write-once holds within a batch and against what the store holds.
	errs = s.PutMany(ctx, []blob.Object{
		{Key: "sessions/old/1", Data: []byte("held")},   // same content: success
		{Key: "sessions/old/1", Data: []byte("other")},  // refused
		{Key: "sessions/new/1", Data: []byte("first")},  // stored
		{Key: "sessions/new/1", Data: []byte("second")}, // refused: the first is there
		{Key: "sessions//bad", Data: []byte("x")},       // invalid
		{Key: "sessions/new/2", Data: nil},              // empty is an object too
	})
	for i, want := range []error{nil, blob.ErrExists, nil, blob.ErrExists, blob.ErrInvalidKey, nil} {
		if (want == nil) != (errs[i] == nil) || (want != nil && !errors.Is(errs[i], want)) {
			t.Errorf("object %d: %v, want %v", i, errs[i], want)
		}
	}
	if got, _ := s.Get(ctx, "sessions/new/1"); string(got) != "first" {
		t.Errorf("sessions/new/1 holds %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestFSPutManySyncFailure: an object whose file or directory did not sync
// is not confirmed, and the others are; a file that did not sync is never
// linked, and a retry of a linked object whose directory did not sync
// syncs it again before it counts.
func TestFSPutManySyncFailure(t *testing.T) {
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := watchSyncs(s)
	var failing string
	l.fail = func(path string) bool { return failing != "" && strings.HasSuffix(path, failing) }
	objs := []blob.Object{
		{Key: "s/a/1", Data: []byte("a1")},
		{Key: "s/b/1", Data: []byte("b1")},
		{Key: "s/b/2", Data: []byte("b2")},
	}
	if err := s.Put(ctx, "s/a/0", []byte("a0"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	failing = "data/s/b"
	errs := s.PutMany(ctx, objs)
	if errs[0] != nil || errs[1] == nil || errs[2] == nil || !errors.Is(errs[1], syscall.EIO) {
		t.Fatalf("errors %v", errs)
	}
	failing = ""
	before := l.dirs["data/s/b"]
	if err := s.Put(ctx, "s/b/1", []byte("b1"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if l.dirs["data/s/b"] != before+1 {
		t.Error("a retry of an object linked but not synced was confirmed without a directory sync")
	}
	if info, err := s.Stat(ctx, "s/b/1"); err != nil || info.SHA256 != blob.Sum([]byte("b1")) {
		t.Fatalf("after retry: %+v %v", info, err)
	}

	// The data file's own fdatasync fails: the object is not linked.
	l.fail = func(path string) bool { return strings.Contains(filepath.Base(path), "put-") }
	errs = s.PutMany(ctx, []blob.Object{{Key: "s/c/1", Data: []byte("c1")}})
	if errs[0] == nil {
		t.Fatal("an object whose file did not sync was confirmed")
	}
	if _, err := s.Stat(ctx, "s/c/1"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("an object whose file did not sync was linked: %v", err)
	}
	l.fail = nil
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}
