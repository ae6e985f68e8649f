package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// recState is what recovery learns about one session from the journal.
type recState struct {
	size, last int64
	open       bool
	removed    bool // RemoveFinal removed it
}

// recover replays the journal into the session files, syncs them, starts a
// fresh segment whose checkpoint lists the sessions left open, and recycles
// the old segments. It runs in Open, before any goroutine.
func (s *Spool) recover() error {
	entries, err := s.fs.ReadDir(s.journalDir)
	if err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	var segs, blanks []*segment
	defer func() {
		// Whatever recovery did not keep open is closed here.
		for _, sg := range append(segs, blanks...) {
			if sg.f != nil && sg != s.seg && sg != s.spare {
				sg.f.Close()
			}
		}
	}()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wal") {
			continue
		}
		path := filepath.Join(s.journalDir, e.Name())
		f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: recover: %w", err)
		}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return fmt.Errorf("spool: recover: %w", err)
		}
		var h [segHeaderSize]byte
		n, _ := f.ReadAt(h[:], 0)
		sg := &segment{f: f, path: path, pos: size}
		if seq, start, ok := parseSegmentHeader(h[:n]); ok {
			sg.seq, sg.start = seq, start
			segs = append(segs, sg)
		} else {
			blanks = append(blanks, sg)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })

	states := make(map[string]*recState)
	files := make(map[string]file)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	state := func(id string) *recState {
		st := states[id]
		if st == nil {
			st = &recState{last: -1}
			states[id] = st
		}
		return st
	}
	var end LSN
	records := 0
	for i, sg := range segs {
		if i > 0 && sg.start != end {
			return fmt.Errorf("spool: recover: journal damaged: segment %d starts at LSN %d but segment %d ends at %d",
				sg.seq, sg.start, segs[i-1].seq, end)
		}
		end = sg.start
		sc := newScanner(io.NewSectionReader(sg.f, segHeaderSize, max(sg.pos-segHeaderSize, 0)))
		rec, ok := sc.next()
		if !ok || rec.typ != recCheckpoint || rec.lsn != sg.start {
			if sc.err != nil {
				return fmt.Errorf("spool: recover: segment %d: %w", sg.seq, sc.err)
			}
			continue // header written, checkpoint torn: the segment holds nothing durable
		}
		for _, st := range states {
			st.open = false
		}
		if err := parseCheckpoint(rec.data, func(o openSession) {
			st := state(o.id)
			st.open, st.size, st.last = true, o.size, o.last
		}); err != nil {
			return fmt.Errorf("spool: recover: segment %d: %w", sg.seq, err)
		}
		for {
			rec, ok := sc.next()
			if !ok || rec.lsn != end || rec.typ == recCheckpoint {
				break // the end of what was written: zeros, a torn write or a stale record
			}
			id := string(rec.id)
			if !validID(id) {
				return fmt.Errorf("spool: recover: segment %d: record for invalid session id %q", sg.seq, id)
			}
			st := state(id)
			switch rec.typ {
			case recFrame:
				f := files[id]
				if f == nil {
					if f, err = s.fs.OpenFile(s.sessionPath(id), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
						return fmt.Errorf("spool: recover: %w", err)
					}
					files[id] = f
				}
				if _, err := f.WriteAt(rec.data, rec.off); err != nil {
					return fmt.Errorf("spool: recover: write session %s: %w", id, err)
				}
				st.open = true
				st.size = max(st.size, rec.off+int64(len(rec.data)))
				st.last = rec.off
			case recClose:
				st.open = false
			case recRemove:
				// Shipped and removed (RemoveFinal): what the frames
				// above wrote back is taken away again.
				st.open, st.removed = false, true
				if f := files[id]; f != nil {
					f.Close()
					delete(files, id)
				}
				if err := s.fs.Remove(s.sessionPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("spool: recover: %w", err)
				}
			}
			end += LSN(rec.size)
			records++
		}
		if sc.err != nil {
			return fmt.Errorf("spool: recover: segment %d: %w", sg.seq, sc.err)
		}
	}

	// Open sessions end exactly where the journal says: anything beyond was
	// never durable.
	for _, id := range sortedKeys(states) {
		st := states[id]
		if !st.open || st.size == 0 {
			continue
		}
		f := files[id]
		if f == nil {
			if f, err = s.fs.OpenFile(s.sessionPath(id), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
				return fmt.Errorf("spool: recover: open session %s: %w", id, err)
			}
			files[id] = f
		}
		size, err := f.Size()
		if err != nil {
			return fmt.Errorf("spool: recover: %w", err)
		}
		if size > st.size {
			if err := f.Truncate(st.size); err != nil {
				return fmt.Errorf("spool: recover: truncate session %s: %w", id, err)
			}
		} else if size < st.size {
			s.log.Error("session file shorter than its journal: data lost outside the journal", "session", id, "size", size, "want", st.size)
		}
		s.recovered[id] = openSession{id: id, size: st.size, last: st.last}
	}
	for id, f := range files {
		if err := f.Datasync(); err != nil {
			return fmt.Errorf("spool: recover: sync session %s: %w", id, err)
		}
	}
	if err := s.fs.SyncDir(s.sessionsDir); err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	if err := s.removeEmptySessions(states); err != nil {
		return err
	}

	// A fresh segment, checkpointing the open sessions, replaces the old ones.
	s.lsn = end
	s.nextSeq = 1
	if n := len(segs); n > 0 {
		s.nextSeq = segs[n-1].seq + 1
	}
	for _, b := range blanks {
		if b.pos >= s.cfg.SegmentBytes && s.spare == nil {
			s.spare = b
		}
	}
	seg, err := s.takeSpare(s.nextSeq)
	if err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	s.seg = seg
	for _, id := range sortedKeys(s.recovered) {
		s.ckptBuf = appendCheckpointEntry(s.ckptBuf, s.recovered[id])
	}
	if err := s.startSegment(seg, s.nextSeq, s.lsn, s.ckptBuf); err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	s.nextSeq++
	if err := seg.f.Datasync(); err != nil {
		return fmt.Errorf("spool: recover: sync journal: %w", err)
	}
	if err := s.fs.SyncDir(s.journalDir); err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	for _, sg := range segs {
		if err := s.recycle(sg); err != nil {
			return fmt.Errorf("spool: recover: %w", err)
		}
		sg.f = nil // recycle closed it or kept it as the spare
	}
	for _, b := range blanks {
		if b != s.spare && b != s.seg && b.f != nil {
			b.f.Close()
			b.f = nil
			if err := s.fs.Remove(b.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("spool: recover: %w", err)
			}
		}
	}
	if err := s.fs.SyncDir(s.journalDir); err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	s.recoveredIDs = sortedKeys(s.recovered)
	if records > 0 || len(s.recoveredIDs) > 0 {
		s.log.Info("spool recovered", "segments", len(segs), "records", records, "open_sessions", len(s.recoveredIDs))
	}
	return nil
}

// removeEmptySessions deletes session files that hold nothing and that the
// journal does not know: created, but no frame was ever durable.
func (s *Spool) removeEmptySessions(known map[string]*recState) error {
	entries, err := s.fs.ReadDir(s.sessionsDir)
	if err != nil {
		return fmt.Errorf("spool: recover: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".rec")
		if !ok || known[id] != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() != 0 {
			continue
		}
		if err := s.fs.Remove(filepath.Join(s.sessionsDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: recover: %w", err)
		}
	}
	return nil
}
