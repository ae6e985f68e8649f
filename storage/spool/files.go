package spool

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// DefaultMaxOpenFiles is how many session files the spool holds open at
// once when Config leaves MaxOpenFiles zero.
const DefaultMaxOpenFiles = 256

// openFiles is the bounded set of session files the spool holds open: a
// session's file is opened by the applier when it has frames to write and
// stays open while the session keeps being written; at the bound the
// least recently written files are closed, an eighth of the bound at a
// time (evictBatch). An idle session thus costs no
// descriptor, and the spool never holds more than max session files
// however many sessions are live.
//
// A file is never closed holding writes that are not durable: the
// applier fdatasyncs a file before closing it unless a sync since its
// last write already did (Log.synced), so the checkpointer, which syncs
// the files written while a journal segment was current before recycling
// it, can skip a file that is no longer open. Closing first and syncing
// through a new descriptor later would rely on the kernel keeping a
// writeback error for an inode that nobody holds open; it need not.
//
// Only the applier goroutine opens files and puts them in the list, so
// it may read Log.f of the Log it is writing without Log.fmu: nobody
// else changes it while that Log has frames to apply (Log.Close releases
// the file only after its frames are applied). The list is also touched
// by Log.Close and Spool.Close, under mu.
type openFiles struct {
	max int

	mu sync.Mutex
	// The open files, most recently written first; linked through
	// Log.newer and Log.older (guarded by mu).
	newest, oldest *Log
	n              int
}

// touch moves l, whose file is open, to the front.
func (c *openFiles) touch(l *Log) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.listed && c.newest != l {
		c.unlinkLocked(l)
		c.pushLocked(l)
	}
}

func (c *openFiles) push(l *Log) {
	c.mu.Lock()
	c.pushLocked(l)
	c.mu.Unlock()
}

func (c *openFiles) pushLocked(l *Log) {
	l.older, l.newer = c.newest, nil
	if c.newest != nil {
		c.newest.newer = l
	} else {
		c.oldest = l
	}
	c.newest = l
	l.listed = true
	c.n++
}

// remove takes l out of the list, if it is there.
func (c *openFiles) remove(l *Log) {
	c.mu.Lock()
	if l.listed {
		c.unlinkLocked(l)
	}
	c.mu.Unlock()
}

func (c *openFiles) unlinkLocked(l *Log) {
	if l.newer != nil {
		l.newer.older = l.older
	} else {
		c.newest = l.older
	}
	if l.older != nil {
		l.older.newer = l.newer
	} else {
		c.oldest = l.newer
	}
	l.newer, l.older, l.listed = nil, nil, false
	c.n--
}

// takeOldest removes the Logs of the least recently written files from
// the list and appends them to dst: as many as it takes to leave room
// for one more file, and at least a batch of them (evictBatch), or all
// when room is all that is wanted and the list holds fewer. evict closes
// them.
func (c *openFiles) takeOldest(dst []*Log, all bool) []*Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	switch {
	case all:
		k = max(1, c.max/evictBatch)
	case c.n >= c.max:
		k = c.n - c.max + max(1, c.max/evictBatch)
	}
	for ; k > 0 && c.oldest != nil; k-- {
		l := c.oldest
		c.unlinkLocked(l)
		dst = append(dst, l)
	}
	return dst
}

// evictBatch: when the spool needs room for a file it closes an eighth
// of its open files at once, so that their fdatasyncs run together (a
// file system commits concurrent fdatasyncs together) and a storm of new
// sessions does not make the applier wait for one sync per session.
const evictBatch = 8

// fileForWrite returns l's session file, open for writing; the applier
// calls it for every run it writes. If the file is not open it closes the
// least recently written ones beyond the bound (see evict) and opens it.
// When the open fails for want of descriptors (EMFILE, ENFILE) it gives
// up its own open files, a batch at a time, and tries again; it fails only
// when it holds none and still cannot open, and the caller fails the
// spool, as for a failed write.
func (s *Spool) fileForWrite(l *Log) (file, error) {
	if l.f != nil {
		s.files.touch(l)
		return l.f, nil
	}
	s.victims = s.files.takeOldest(s.victims[:0], false)
	if err := s.evict(s.victims); err != nil {
		return nil, err
	}
	for {
		f, err := s.fs.OpenFile(s.sessionPath(l.id), os.O_RDWR, 0)
		if err == nil {
			s.sessionOpens.Add(1)
			l.fmu.Lock()
			l.f = f
			l.fmu.Unlock()
			s.files.push(l)
			return f, nil
		}
		if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
			return nil, err
		}
		s.victims = s.files.takeOldest(s.victims[:0], true)
		if len(s.victims) == 0 {
			return nil, err
		}
		if err := s.evict(s.victims); err != nil {
			return nil, err
		}
	}
}

// evict closes the files of victims, which the caller took out of the
// list, after making what was written to them durable: their fdatasyncs
// run at once. A failed sync fails the spool (see the package
// documentation: after a failed fdatasync nothing written since the last
// good one can be trusted).
func (s *Spool) evict(victims []*Log) error {
	// Sync under the shared lock, so that ReadOpen never waits for it;
	// only the applier writes, so nothing is written meanwhile.
	syncFile := func(l *Log) error {
		l.fmu.RLock()
		defer l.fmu.RUnlock()
		if l.f == nil {
			return nil
		}
		if err := l.syncLocked(); err != nil {
			return fmt.Errorf("sync session %s: %w", l.id, err)
		}
		return nil
	}
	var err error
	if len(victims) == 1 {
		err = syncFile(victims[0])
	} else {
		errs := make([]error, len(victims))
		var wg sync.WaitGroup
		for i, l := range victims {
			if l.dirty() {
				wg.Go(func() { errs[i] = syncFile(l) })
			}
		}
		wg.Wait()
		err = errors.Join(errs...)
	}
	if err != nil {
		s.fail(err)
		return err
	}
	for _, l := range victims {
		l.fmu.Lock()
		var cerr error
		if l.f != nil {
			cerr = l.f.Close()
			l.f = nil
		}
		l.fmu.Unlock()
		if cerr != nil {
			// The data is durable (synced above); only the descriptor's
			// close failed, which loses nothing.
			s.log.Warn("closing a session file failed", "session", l.id, "err", cerr)
		}
	}
	clear(victims)
	return nil
}

// dirty reports whether l's file holds writes no fdatasync covered yet.
func (l *Log) dirty() bool { return l.synced.Load() < l.applied.Load() }

// syncLocked fdatasyncs l's open file unless nothing was written to it
// since the last sync. The caller holds l.fmu (shared or exclusive) and
// l.f is open.
func (l *Log) syncLocked() error {
	written := l.applied.Load()
	if l.synced.Load() >= written {
		return nil
	}
	if err := l.f.Datasync(); err != nil {
		return err
	}
	l.s.sessionSyncs.Add(1)
	for {
		old := l.synced.Load()
		if old >= written || l.synced.CompareAndSwap(old, written) {
			return nil
		}
	}
}

// readAt reads l's session file at off: through its open descriptor when
// the spool holds one, else through a descriptor opened for this read
// only (the file was closed while the session idled). It returns
// ErrNotFound once Log.Close has released the file.
func (l *Log) readAt(p []byte, off int64) (int, error) {
	l.fmu.RLock()
	if l.released {
		l.fmu.RUnlock()
		return 0, fmt.Errorf("%w: %s is not open", ErrNotFound, l.id)
	}
	if l.f != nil {
		defer l.fmu.RUnlock()
		return l.f.ReadAt(p, off)
	}
	l.fmu.RUnlock()
	// Not under the lock: the applier may open the file meanwhile, and
	// must not wait for this open. Whatever was applied is in the page
	// cache, which every descriptor of the file reads.
	f, err := l.s.fs.OpenFile(l.s.sessionPath(l.id), os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(p, off)
}
