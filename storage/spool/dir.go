package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/phigate/phigate/storage"
)

// DirStore reads the recordings of the spool directory Dir, for replay. It
// only reads, so it is safe while a node runs the spool, in this process or
// another; a recording is live while a running spool holds the directory.
type DirStore struct {
	Dir string
}

// List returns the recordings in the spool directory, sorted by session id.
func (d DirStore) List(ctx context.Context) ([]storage.RecordingInfo, error) {
	entries, err := os.ReadDir(filepath.Join(d.Dir, "sessions"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: list: %w", err)
	}
	var out []storage.RecordingInfo
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id, ok := strings.CutSuffix(e.Name(), ".rec")
		if !ok || !validID(id) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, storage.RecordingInfo{ID: id, Size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Open opens the recording of sessionID. The last frame of a live session
// may be incomplete.
func (d DirStore) Open(ctx context.Context, sessionID string) (*storage.Stream, error) {
	if !validID(sessionID) {
		return nil, fmt.Errorf("spool: %w: %q", storage.ErrNotFound, sessionID)
	}
	live, err := inUse(d.Dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.Dir, "sessions", sessionID+".rec"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spool: %w: %s", storage.ErrNotFound, sessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &storage.Stream{ReadCloser: f, Live: live}, nil
}
