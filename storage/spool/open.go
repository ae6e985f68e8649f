package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
)

// OpenSession is a session whose recording is still being written: the
// first Applied bytes of its file (SessionFile) hold whole frames, every
// one durable in the journal.
type OpenSession struct {
	ID      string
	Applied int64
}

// OpenSessions lists, sorted, the sessions being recorded now and those a
// crash left open that are not closed yet (Recovered), with how much of
// each one's file can be read. It is what a shipper reads of sessions that
// are not final, to seal their chunks as they grow.
func (s *Spool) OpenSessions() []OpenSession {
	out := s.AppendOpenSessions(nil)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AppendOpenSessions appends what OpenSessions lists to dst, in no
// particular order: for a caller that asks every tick and keeps its slice
// (no allocation, no sort).
func (s *Spool) AppendOpenSessions(dst []OpenSession) []OpenSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst = slices.Grow(dst, len(s.logs)+len(s.recovered))
	for id, l := range s.logs {
		dst = append(dst, OpenSession{ID: id, Applied: l.applied.Load()})
	}
	for id, st := range s.recovered {
		dst = append(dst, OpenSession{ID: id, Applied: st.size})
	}
	return dst
}

// ReadOpen reads the file of a session being recorded in this run (made
// by Create or Reopen, not closed yet) at off. While the spool holds the
// file open (it was written recently, see Config.MaxOpenFiles) the read is
// one pread through the spool's descriptor, so that a reader of live
// sessions needs no descriptor of its own; otherwise the file is opened
// for this read and closed again. An error opening it (EMFILE, ENFILE)
// is returned wrapped, for the caller to try again later. The first
// Applied bytes (OpenSessions) hold whole durable frames; read no further.
// It returns ErrNotFound for every other session (closed, recovered and
// not reopened, unknown), whose file is read through SessionFile. It never
// waits for a commit or for a sync of the file.
func (s *Spool) ReadOpen(id string, p []byte, off int64) (int, error) {
	s.mu.Lock()
	l := s.logs[id]
	s.mu.Unlock()
	if l == nil {
		return 0, fmt.Errorf("%w: %s is not open", ErrNotFound, id)
	}
	n, err := l.readAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, ErrNotFound) {
		return n, fmt.Errorf("spool: read %s: %w", id, err)
	}
	return n, err
}

// SessionFile is the path of a session's recording file, for reading.
func (s *Spool) SessionFile(id string) string { return s.sessionPath(id) }

// Dir is the spool directory.
func (s *Spool) Dir() string { return s.cfg.Dir }

// RemoveFinal deletes the file of a final recording (ClosedSessions) once
// it is kept elsewhere: the shipper calls it after the store confirmed the
// recording's last chunk. The removal is journaled first and made durable,
// so that recovery, which writes the journal's frames back into their
// files, does not bring the recording back. It refuses a session that is
// open, or recovered and not closed yet, and is a no-op for a session
// whose file is gone.
func (s *Spool) RemoveFinal(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("spool: invalid session id %q", id)
	}
	s.mu.Lock()
	_, open := s.logs[id]
	_, recovered := s.recovered[id]
	if open || recovered {
		s.mu.Unlock()
		return fmt.Errorf("spool: remove %s: the recording is not final", id)
	}
	f, err := s.fs.OpenFile(s.sessionPath(id), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		s.mu.Unlock()
		return nil
	}
	if err == nil {
		f.Close()
	}
	if err := s.appendableLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	b := s.cur
	start := len(b.data)
	b.data = appendRecord(b.data, recRemove, s.lsn, id, 0, nil, crc32.Checksum(nil, castagnoli))
	s.lsn += LSN(len(b.data) - start)
	lsn, kick := s.lsn, !b.kicked
	b.kicked = true
	s.mu.Unlock()
	if kick {
		s.kickSyncer()
	}
	if err := s.Wait(ctx, lsn); err != nil {
		return err
	}
	if err := s.fs.Remove(s.sessionPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	return nil
}
