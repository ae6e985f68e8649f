package blob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FS is a Store in a local directory: dir/data/<key> holds an object's
// bytes (read-only files), dir/meta/<key>.json its size, SHA-256 and
// retention, and dir/tmp what is being written. An object appears whole or
// not at all: it is written to dir/tmp, fsynced, hard-linked to its name
// (a link never replaces an existing file, which is what makes it
// write-once) and its directory fsynced.
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
}

var _ Store = (*FS)(nil)

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
	return &FS{dir: dir, now: time.Now}, nil
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

// Put implements Store.
func (s *FS) Put(ctx context.Context, key string, data []byte, opts PutOptions) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := opts.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sum := Sum(data)
	meta := fsMeta{Size: int64(len(data)), SHA256: sum}
	if !opts.RetainUntil.IsZero() {
		meta.RetainUntil, meta.Mode = opts.RetainUntil.UTC(), opts.mode()
	}
	path := s.dataPath(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("blob: fs: put %s: %w", key, err)
	}
	created, err := s.linkNew(path, data)
	if err != nil {
		return fmt.Errorf("blob: fs: put %s: %w", key, err)
	}
	if !created {
		// The key exists: the same content is a success, other content is
		// refused. A meta file lost to a crash between the data link and
		// the meta write is written now.
		held, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("blob: fs: put %s: %w", key, err)
		}
		if Sum(held) != sum {
			return fmt.Errorf("blob: fs: put %s: %w", key, ErrExists)
		}
		if _, err := s.readMeta(key); err == nil {
			return nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob: fs: put %s: %w", key, err)
		}
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("blob: fs: put %s: %w", key, err)
	}
	mpath := s.metaPath(key)
	if err := os.MkdirAll(filepath.Dir(mpath), 0o700); err != nil {
		return fmt.Errorf("blob: fs: put %s: %w", key, err)
	}
	// The meta file may be replaced: the data is ours (just linked, or
	// the same content), and a stale meta file can be left by a Delete
	// that crashed between its two removals.
	if err := s.replaceFile(mpath, mb); err != nil {
		return fmt.Errorf("blob: fs: put %s: meta: %w", key, err)
	}
	// Read back what the file system holds before calling it stored.
	held, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("blob: fs: put %s: read back: %w", key, err)
	}
	if Sum(held) != sum {
		return fmt.Errorf("blob: fs: put %s: read back: %w", key, ErrChecksum)
	}
	return nil
}

// linkNew writes data to a temporary file, fsyncs it, links it to path
// unless path exists (created false, nil error), and fsyncs path's
// directory. The file is read-only.
func (s *FS) linkNew(path string, data []byte) (created bool, err error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Chmod(0o400); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, syncDir(filepath.Dir(path))
}

// replaceFile atomically writes data to path (temporary file, fsync,
// rename, fsync of the directory).
func (s *FS) replaceFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "meta-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
	return syncDir(filepath.Dir(s.dataPath(key)))
}
