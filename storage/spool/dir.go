package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SessionFile describes one recording file in a spool directory.
type SessionFile struct {
	ID      string
	Size    int64
	ModTime time.Time
}

// List returns the recording files in the spool directory dir, sorted by
// session id. It only reads, so it is safe while a node runs the spool.
func List(dir string) ([]SessionFile, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "sessions"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: list: %w", err)
	}
	var out []SessionFile
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".rec")
		if !ok || !validID(id) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, SessionFile{ID: id, Size: fi.Size(), ModTime: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// OpenFile opens the recording of sessionID in the spool directory dir for
// reading. It is safe while a node runs the spool; the last frame of a live
// session may then be incomplete.
func OpenFile(dir, sessionID string) (*os.File, error) {
	if !validID(sessionID) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, sessionID)
	}
	f, err := os.Open(filepath.Join(dir, "sessions", sessionID+".rec"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, sessionID)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}
