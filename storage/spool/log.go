package spool

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
)

// Log is the recording file of one session, appended through the spool's
// journal. Append is safe for concurrent use, but frames of one Log land in
// the order Append is called, so callers that chain frames (record.Chain)
// serialize Seal and Append.
type Log struct {
	s  *Spool
	id string

	// Guarded by s.mu.
	size    int64 // bytes appended: the offset of the next frame
	last    int64 // offset of the last frame, -1 before the first
	lastLSN LSN   // journal position of the last record for this log
	closing bool  // Close began: no more appends
	// closeLogged: the close record is in the journal, so checkpoints
	// after it must not list the session as open.
	closeLogged bool
	closed      bool

	dirtyEpoch uint64       // owned by the applier: the checkpoint epoch it was last written in
	applied    atomic.Int64 // bytes written to the file
	synced     atomic.Int64 // bytes of the file made durable by an fdatasync (or by recovery)

	// fmu guards f and released: reads and syncs hold it shared (ReadOpen
	// never waits for an fdatasync), opening and closing f exclusive.
	// f is open only while the file is in Spool.files (openFiles says who
	// may touch it when).
	fmu      sync.RWMutex
	f        file // nil while the file is not open
	released bool // Close is done with the file: it is never opened again

	// Guarded by Spool.files.mu.
	newer, older *Log
	listed       bool
}

// ID is the session identifier.
func (l *Log) ID() string { return l.id }

// Append adds frame to the end of the session's recording and returns the
// LSN to Wait for before anything that depends on it leaves the node. It
// copies frame, does not block on I/O and, once the spool's buffers have
// grown to the working size, does not allocate.
func (l *Log) Append(frame []byte) (LSN, error) { return l.append(frame, false) }

// AppendLazy is Append for a frame that nobody is about to wait for (a
// command's result summary): it does not start a group commit of its own
// but rides along with the next one, which some other append starts, or
// which starts by itself after Config.LazyDelay. Waiting for its LSN still
// works and is as safe as for any frame.
func (l *Log) AppendLazy(frame []byte) (LSN, error) { return l.append(frame, true) }

func (l *Log) append(frame []byte, lazy bool) (LSN, error) {
	if len(frame) == 0 || len(frame) > MaxAppend {
		return 0, fmt.Errorf("spool: append of %d bytes (1..%d)", len(frame), MaxAppend)
	}
	dcrc := crc32.Checksum(frame, castagnoli) // outside the lock: the costly part
	s := l.s
	s.mu.Lock()
	if err := s.appendableLocked(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	if l.closing {
		s.mu.Unlock()
		return 0, fmt.Errorf("%w: session %s", ErrClosed, l.id)
	}
	b := s.cur
	start := len(b.data)
	b.data = appendRecord(b.data, recFrame, s.lsn, l.id, l.size, frame, dcrc)
	b.refs = append(b.refs, applyRef{log: l, off: l.size, start: len(b.data) - len(frame), end: len(b.data)})
	s.lsn += LSN(len(b.data) - start)
	l.last = l.size
	l.size += int64(len(frame))
	l.lastLSN = s.lsn
	lsn := s.lsn
	kick := !b.kicked && !lazy
	if kick {
		b.kicked = true
	} else if lazy && !b.kicked && !b.lazy {
		b.lazy = true
		s.lazyTimer.Reset(s.cfg.LazyDelay)
	}
	s.mu.Unlock()
	if kick {
		s.kickSyncer()
	}
	return lsn, nil
}

// Last returns the last frame appended (as one Append passed it), read back
// from the file, or nil if there is none. After Reopen it is what
// record.Resume needs to continue the chain.
func (l *Log) Last() ([]byte, error) {
	l.s.mu.Lock()
	last, size := l.last, l.size
	l.s.mu.Unlock()
	if last < 0 {
		return nil, nil
	}
	buf := make([]byte, size-last)
	if _, err := l.readAt(buf, last); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: session %s", ErrClosed, l.id)
		}
		return nil, fmt.Errorf("spool: read last frame of %s: %w", l.id, err)
	}
	return buf, nil
}

// Close ends the session's recording: it waits until every frame is
// durable and in the file, fdatasyncs the file, and records durably that
// the session closed (so that recovery will not list it). A Log with no
// frame leaves no file. After Close, Append returns ErrClosed. If ctx ends
// first, Close returns its error and may be called again.
func (l *Log) Close(ctx context.Context) error {
	s := l.s
	s.mu.Lock()
	if l.closed {
		s.mu.Unlock()
		return nil
	}
	l.closing = true
	last, size := l.lastLSN, l.size
	s.mu.Unlock()

	if size == 0 {
		l.release()
		err := s.fs.Remove(s.sessionPath(l.id))
		l.forget()
		if err != nil {
			return fmt.Errorf("spool: remove empty session file: %w", err)
		}
		return nil
	}

	if err := s.Wait(ctx, last); err != nil {
		return err
	}
	if err := s.waitApplied(ctx, last); err != nil {
		return err
	}
	// A file the spool closed since its last write was synced before it
	// was closed (openFiles); only an open one may need a sync.
	l.fmu.RLock()
	var err error
	if l.f != nil {
		err = l.syncLocked()
	}
	l.fmu.RUnlock()
	if err != nil {
		err = fmt.Errorf("sync session %s: %w", l.id, err)
		s.fail(err)
		return s.Err()
	}

	s.mu.Lock()
	if err := s.appendableLocked(); err != nil {
		s.mu.Unlock()
		if errors.Is(err, ErrClosed) {
			// Every frame is durable; only the close marker is missing, so
			// the next Open lists the session as recovered.
			return fmt.Errorf("%w: session %s synced, close not recorded", ErrClosed, l.id)
		}
		return err
	}
	b := s.cur
	start := len(b.data)
	b.data = appendRecord(b.data, recClose, s.lsn, l.id, size, nil, crc32.Checksum(nil, castagnoli))
	s.lsn += LSN(len(b.data) - start)
	l.closeLogged = true
	lsn, kick := s.lsn, !b.kicked
	b.kicked = true
	s.mu.Unlock()
	if kick {
		s.kickSyncer()
	}
	if err := s.Wait(ctx, lsn); err != nil {
		return err
	}

	err = l.release()
	l.forget()
	// The recording is final: synced, and its close durable in the
	// journal (even if closing the descriptor failed).
	s.closed.publish(l.id)
	if err != nil {
		return fmt.Errorf("spool: close session %s: %w", l.id, err)
	}
	return nil
}

// release closes the session's file if the spool holds it open, for good:
// neither the applier nor a reader opens it through l again.
func (l *Log) release() error {
	l.s.files.remove(l)
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.released = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func (l *Log) forget() {
	s := l.s
	s.mu.Lock()
	l.closed = true
	if s.logs[l.id] == l {
		delete(s.logs, l.id)
	}
	s.mu.Unlock()
}
