package blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FS is a Store in a local directory: dir/data/<key> holds an object's
// bytes (read-only files), dir/meta/<key>.json its size, SHA-256 and
// retention, and dir/tmp what is being written. An object appears whole or
// not at all: it is written to dir/tmp, fdatasynced, hard-linked to its
// name (a link never replaces an existing file, which is what makes it
// write-once) and its directory fsynced. PutMany does this for many objects
// with one fsync per directory.
//
// A key cannot name an object and also be a directory of other keys ("a"
// and "a/b"): the second Put fails.
//
// Retention is enforced by this API (Delete), not by the file system: anyone
// with write access to dir can remove files. Use S3 with object lock where
// that matters.
type FS struct {
	dir string
	now func() time.Time

	tmpPrefix string        // names this FS's temporary files apart from other processes'
	tmpSeq    atomic.Uint64 // and from each other
	// syncFault, when set (tests), is asked before each fdatasync and
	// directory fsync; an error makes that sync fail.
	syncFault func(path string) error
}

var _ Batcher = (*FS)(nil)

// NewFS opens (creating it if needed) a store in dir.
func NewFS(dir string) (*FS, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: fs: %w", err)
	}
	for _, sub := range []string{"data", "meta", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("blob: fs: %w", err)
		}
	}
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("blob: fs: %w", err)
	}
	return &FS{dir: dir, now: time.Now, tmpPrefix: hex.EncodeToString(r[:]) + "-"}, nil
}

// Dir returns the store's directory.
func (s *FS) Dir() string { return s.dir }

type fsMeta struct {
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	RetainUntil time.Time `json:"retain_until,omitzero"`
	Mode        Mode      `json:"mode,omitempty"`
}

func (s *FS) dataPath(key string) string {
	return filepath.Join(s.dir, "data", filepath.FromSlash(key))
}
func (s *FS) metaPath(key string) string {
	return filepath.Join(s.dir, "meta", filepath.FromSlash(key)+".json")
}

// Put implements Store: a PutMany of one object.
func (s *FS) Put(ctx context.Context, key string, data []byte, opts PutOptions) error {
	return s.PutMany(ctx, []Object{{Key: key, Data: data, Opts: opts}})[0]
}

// putState is one object of a PutMany on its way.
type putState struct {
	Object
	sum     string
	meta    fsMeta
	path    string // the data file
	tmp     string // the temporary data file, until its name is removed
	fd      int    // tmp's descriptor, -1 once closed
	exists  bool   // the key held a file already
	created bool   // linked by this batch
	err     error
}

// PutMany implements Batcher. Each object goes Put's way (it appears whole
// or not at all, and never replaces another), step by step over the whole
// batch:
//
//  1. its bytes into a temporary file, created read-only;
//  2. each temporary file fdatasynced;
//  3. each linked to its name (a link never replaces a file: write-once);
//  4. each directory that got a link or a new subdirectory fsynced, once;
//  5. the meta files written to temporary files, fdatasynced, renamed into
//     place, and their directories fsynced, once each;
//  6. each object read back through its file and its SHA-256 compared.
//
// An object is confirmed only when every step it went through succeeded.
// Keys that held a file already take Put's path for them, after the rest:
// the same content is a success once it is durable, other content
// ErrExists.
func (s *FS) PutMany(ctx context.Context, objs []Object) []error {
	errs := make([]error, len(objs))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	ps := make([]putState, len(objs))
	defer func() {
		for i := range ps {
			ps[i].release()
		}
	}()
	dirs := newDirBatch(s)
	for i, o := range objs {
		p := &ps[i]
		p.Object, p.fd = o, -1
		if err := ValidKey(o.Key); err != nil {
			p.err = err
			continue
		}
		if err := o.Opts.validate(); err != nil {
			p.err = err
			continue
		}
		p.sum = Sum(o.Data)
		p.meta = fsMeta{Size: int64(len(o.Data)), SHA256: p.sum}
		if !o.Opts.RetainUntil.IsZero() {
			p.meta.RetainUntil, p.meta.Mode = o.Opts.RetainUntil.UTC(), o.Opts.mode()
		}
		p.path = s.dataPath(o.Key)
		if err := dirs.mkdirAll(filepath.Dir(p.path)); err != nil {
			p.fail("", err)
			continue
		}
		var err error
		if p.tmp, p.fd, err = s.createTemp("put-", 0o400); err == nil {
			err = writeAll(p.fd, p.tmp, o.Data)
		}
		p.fail("", err)
	}
	syncErrs := make([]error, len(ps))
	concurrently(len(ps), func(i int) {
		if p := &ps[i]; p.err == nil {
			syncErrs[i] = s.datasync(p.fd, p.tmp)
		}
	})
	for i := range ps {
		ps[i].fail("", syncErrs[i])
	}
	for i := range ps {
		p := &ps[i]
		if p.err != nil {
			continue
		}
		switch err := link(p.tmp, p.path); {
		case errors.Is(err, fs.ErrExist):
			p.exists = true
		case err != nil:
			p.fail("", err)
		default:
			p.created = true
			dirs.touch(filepath.Dir(p.path), p)
		}
	}
	dirs.sync("")
	var fresh []*putState
	for i := range ps {
		if p := &ps[i]; p.err == nil && p.created {
			fresh = append(fresh, p)
		}
	}
	s.writeMetas(fresh)
	for _, p := range fresh {
		if p.err == nil {
			// The file linked: its size is what was written, which
			// fdatasync made durable; its bytes are read back.
			p.fail("read back: ", readBack(p.fd, p.tmp, p.meta.Size, p.sum))
		}
	}
	for i := range ps {
		if p := &ps[i]; p.err == nil && p.exists {
			p.fail("", s.putExisting(p))
		}
	}
	for i := range ps {
		errs[i] = ps[i].err
	}
	return errs
}

// fail records err as the object's error unless it has one already; nil
// changes nothing.
func (p *putState) fail(what string, err error) {
	if err == nil || p.err != nil {
		return
	}
	p.err = fmt.Errorf("blob: fs: put %s: %s%w", p.Key, what, err)
}

// release closes the temporary data file and removes its name (an object
// linked keeps its own).
func (p *putState) release() {
	if p.fd >= 0 {
		syscall.Close(p.fd)
		p.fd = -1
	}
	if p.tmp != "" {
		syscall.Unlink(p.tmp)
		p.tmp = ""
	}
}

// putExisting is Put for a key that holds a file: the same content is a
// success, other content is refused. The file may be the link of an
// earlier attempt whose syncs failed, so it is made durable again before
// it counts; a meta file lost to a crash between the data link and the
// meta write is written now.
func (s *FS) putExisting(p *putState) error {
	fd, err := openFile(p.path, syscall.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: p.path, Err: err}
	}
	if st.Size != p.meta.Size {
		return ErrExists
	}
	if err := readBack(fd, p.path, st.Size, p.sum); errors.Is(err, ErrChecksum) {
		return ErrExists
	} else if err != nil {
		return err
	}
	if err := s.datasync(fd, p.path); err != nil {
		return err
	}
	if err := s.syncDir(filepath.Dir(p.path)); err != nil {
		return err
	}
	if _, err := s.readMeta(p.Key); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	q := &putState{Object: p.Object, meta: p.meta, fd: -1}
	s.writeMetas([]*putState{q})
	return errors.Unwrap(q.err) // p.fail wraps it again
}

// writeMetas writes the meta files of ps (a temporary file each,
// fdatasynced, renamed into place, then one fsync per directory). A meta
// file may be replaced: the data is ours (just linked, or the same
// content), and a stale meta file can be left by a Delete that crashed
// between its two removals.
func (s *FS) writeMetas(ps []*putState) {
	tmps := make([]string, len(ps))
	fds := make([]int, len(ps))
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		for _, tmp := range tmps {
			if tmp != "" {
				syscall.Unlink(tmp)
			}
		}
	}()
	dirs := newDirBatch(s)
	for i, p := range ps {
		mb, err := json.Marshal(p.meta)
		if err == nil {
			err = dirs.mkdirAll(filepath.Dir(s.metaPath(p.Key)))
		}
		if err == nil {
			tmps[i], fds[i], err = s.createTemp("meta-", 0o600)
		}
		if err == nil {
			err = writeAll(fds[i], tmps[i], mb)
		}
		p.fail("meta: ", err)
	}
	syncErrs := make([]error, len(ps))
	concurrently(len(ps), func(i int) {
		if ps[i].err == nil {
			syncErrs[i] = s.datasync(fds[i], tmps[i])
		}
	})
	for i, p := range ps {
		p.fail("meta: ", syncErrs[i])
		if fds[i] >= 0 {
			syscall.Close(fds[i])
		}
	}
	for i, p := range ps {
		if p.err != nil {
			continue
		}
		path := s.metaPath(p.Key)
		if err := rename(tmps[i], path); err != nil {
			p.fail("meta: ", err)
			continue
		}
		tmps[i] = ""
		dirs.touch(filepath.Dir(path), p)
	}
	dirs.sync("meta: ")
}

// dirBatch is the directories a batch changed: each is fsynced once, and a
// failure fails every object whose name depends on it.
type dirBatch struct {
	s       *FS
	made    map[string]bool // known to exist (made or found) in this batch
	parents map[string]string
	objs    map[string][]*putState // directory -> objects whose names it holds
	order   []string
}

func newDirBatch(s *FS) *dirBatch {
	return &dirBatch{s: s, made: map[string]bool{}, parents: map[string]string{}, objs: map[string][]*putState{}}
}

// mkdirAll makes dir and its missing parents (once per batch), and
// remembers which directories it created: their parents get a new entry
// that must be made durable too.
func (b *dirBatch) mkdirAll(dir string) error {
	if b.made[dir] {
		return nil
	}
	var st syscall.Stat_t
	err := syscall.Stat(dir, &st)
	switch {
	case err == nil:
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
	case err == syscall.ENOENT:
		parent := filepath.Dir(dir)
		if parent == dir {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
		}
		if err := b.mkdirAll(parent); err != nil {
			return err
		}
		if err := syscall.Mkdir(dir, 0o700); err != nil && err != syscall.EEXIST {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
		}
		b.parents[dir] = parent
	default:
		return &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	b.made[dir] = true
	return nil
}

// touch says that p's name is in dir: dir, and every parent that got a
// directory made by this batch on the way to it, is synced before p counts.
func (b *dirBatch) touch(dir string, p *putState) {
	for {
		if _, ok := b.objs[dir]; !ok {
			b.order = append(b.order, dir)
		}
		b.objs[dir] = append(b.objs[dir], p)
		parent, made := b.parents[dir]
		if !made {
			return
		}
		dir = parent
	}
}

// sync fsyncs each directory touched, once.
func (b *dirBatch) sync(what string) {
	errs := make([]error, len(b.order))
	concurrently(len(b.order), func(i int) { errs[i] = b.s.syncDir(b.order[i]) })
	for i, err := range errs {
		if err != nil {
			for _, p := range b.objs[b.order[i]] {
				p.fail(what, err)
			}
		}
	}
}

// syncWidth is how many syncs a batch has in flight: syncs that wait
// together are made durable by one commit of the file system's journal
// (ext4 and XFS group them), where one after another each waits for its
// own.
const syncWidth = 16

// concurrently calls f(0) to f(n-1), syncWidth at a time, and returns when
// every call has.
func concurrently(n int, f func(i int)) {
	if n <= 1 {
		if n == 1 {
			f(0)
		}
		return
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(n, syncWidth) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// Files are opened with open(2) and used through their descriptors:
// os.OpenFile also tries to add every regular file to the network poller
// (four fcntl and an epoll_ctl that fails, on each open), which was most
// of the system calls a small object cost.

func openFile(path string, flag int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
		if err == nil {
			return fd, nil
		}
		if err != syscall.EINTR {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// createTemp creates a new file in the store's tmp directory, read-write
// whatever perm says (open(2) gives the creator the access it asks for).
func (s *FS) createTemp(prefix string, perm uint32) (string, int, error) {
	for {
		path := filepath.Join(s.dir, "tmp", prefix+s.tmpPrefix+strconv.FormatUint(s.tmpSeq.Add(1), 36))
		fd, err := openFile(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue // left by an earlier process
		}
		return path, fd, err
	}
}

func writeAll(fd int, path string, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "write", Path: path, Err: err}
		}
		b = b[n:]
	}
	return nil
}

// datasync is fdatasync(2): the data and what is needed to read it back.
func (s *FS) datasync(fd int, path string) error {
	if s.syncFault != nil {
		if err := s.syncFault(path); err != nil {
			return &fs.PathError{Op: "fdatasync", Path: path, Err: err}
		}
	}
	for {
		err := syscall.Fdatasync(fd)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "fdatasync", Path: path, Err: err}
		}
		return nil
	}
}

// syncDir makes dir's entries durable.
func (s *FS) syncDir(dir string) error {
	if s.syncFault != nil {
		if err := s.syncFault(dir); err != nil {
			return &fs.PathError{Op: "fsync", Path: dir, Err: err}
		}
	}
	fd, err := openFile(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	for {
		err := syscall.Fsync(fd)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "fsync", Path: dir, Err: err}
		}
		return nil
	}
}

// readBack reads the file behind fd, which holds size bytes, and compares
// its SHA-256 with sum (ErrChecksum if they differ, or if the file is
// shorter).
func readBack(fd int, path string, size int64, sum string) error {
	h := sha256.New()
	buf := make([]byte, min(size, 64<<10))
	var off int64
	for off < size {
		n, err := syscall.Pread(fd, buf[:min(int64(len(buf)), size-off)], off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return ErrChecksum // shorter than written
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		return ErrChecksum
	}
	return nil
}

func link(oldpath, newpath string) error {
	if err := syscall.Link(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "link", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

func rename(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

func (s *FS) readMeta(key string) (fsMeta, error) {
	var m fsMeta
	b, err := os.ReadFile(s.metaPath(key))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("meta of %s: %w", key, err)
	}
	return m, nil
}

// Get implements Store.
func (s *FS) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.dataPath(key))
	if err != nil {
		return nil, s.notFound("get", key, err)
	}
	return b, nil
}

func (s *FS) notFound(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: fs: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("blob: fs: %s %s: %w", op, key, err)
}

// Stat implements Store. An object whose meta file was lost (a crash
// between the two links) is described from its data, without retention.
func (s *FS) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.dataPath(key))
	if err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = fs.ErrNotExist
		}
		return Info{}, s.notFound("stat", key, err)
	}
	info := Info{Key: key, Size: fi.Size()}
	m, err := s.readMeta(key)
	switch {
	case err == nil:
		info.SHA256, info.RetainUntil, info.Mode = m.SHA256, m.RetainUntil, m.Mode
	case errors.Is(err, fs.ErrNotExist):
	default:
		return Info{}, fmt.Errorf("blob: fs: stat %s: %w", key, err)
	}
	return info, nil
}

// List implements Store.
func (s *FS) List(ctx context.Context, prefix string) ([]Info, error) {
	root := filepath.Join(s.dir, "data")
	var out []Info
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip directories that cannot hold a key with the prefix.
			if p != root && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) || !d.Type().IsRegular() {
			return nil
		}
		info, err := s.Stat(ctx, key)
		if err != nil {
			return err
		}
		out = append(out, info)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: fs: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store: it refuses an object under retention, or whose
// retention is unknown (its meta file is missing).
func (s *FS) Delete(ctx context.Context, key string) error {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return err
	}
	if info.SHA256 == "" {
		return fmt.Errorf("blob: fs: delete %s: retention unknown: %w", key, ErrRetained)
	}
	if s.now().Before(info.RetainUntil) {
		return fmt.Errorf("blob: fs: delete %s: until %s (%s): %w", key,
			info.RetainUntil.Format(time.RFC3339), info.Mode, ErrRetained)
	}
	if err := os.Remove(s.dataPath(key)); err != nil {
		return s.notFound("delete", key, err)
	}
	if err := os.Remove(s.metaPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: fs: delete %s: %w", key, err)
	}
	return s.syncDir(filepath.Dir(s.dataPath(key)))
}
