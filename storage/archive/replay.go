package archive

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/chunk"
)

// ReplayStore reads sessions back from a store for replay (it has the
// methods of replay.Store): Open decrypts a session's chunks with the
// auditors' private key and streams the recording as the spool had it
// (record.Magic, then every frame), so that replay verifies the record
// chain exactly as it does a spool file.
//
// Decrypting is an auditor's act, recorded before it happens: Open calls
// Record before the first chunk is opened and refuses the session if it
// fails; a ReplayStore without Record refuses every Open.
//
// Open checks the chunk chain as it goes (each chunk's seq, previous-chunk
// hash and first event) and ends the stream with a *record.ChainError at
// the first chunk that is missing or does not open. It does not check
// manifest signatures or digests: that the session is the one the node
// sealed is what Verify (phigate audit verify) establishes.
type ReplayStore struct {
	Archive *Archive
	// Auditor is the auditors' X25519 private key. Required by Open.
	Auditor *ecdh.PrivateKey
	// From and To: List returns the sessions the index lists as running
	// in [From, To). Both zero: List lists sessions/ whole.
	From, To time.Time
	// Record is called with the session id before any of its chunks is
	// decrypted; an error refuses the Open. The done function it returns
	// is called once, when the stream is closed, with the number of events
	// decrypted and the error that ended the stream (nil at a clean end).
	Record func(ctx context.Context, session string) (done func(events int, err error), err error)
}

// ErrNotRecorded is wrapped by Open's error when the decryption could not
// be recorded first (or no Record is set).
var ErrNotRecorded = errors.New("archive: decryption not recorded, so not done")

// List returns the sessions of the range from the index, or every session
// with an object under sessions/ when no range is set.
func (r *ReplayStore) List(ctx context.Context) ([]storage.RecordingInfo, error) {
	if r.From.IsZero() && r.To.IsZero() {
		return r.Archive.AllSessions(ctx)
	}
	entries, err := r.Archive.Sessions(ctx, r.From, r.To)
	if err != nil {
		return nil, err
	}
	out := make([]storage.RecordingInfo, len(entries))
	for i, e := range entries {
		out[i] = storage.RecordingInfo{ID: e.Session, Size: e.Stored}
	}
	return out, nil
}

// Open lists session's chunks, records the decryption (Record), and
// returns the recording as a stream that fetches and opens its chunks in
// seq order, a few ahead. The stream is never live: a session without its
// closing chunk reads as truncated.
func (r *ReplayStore) Open(ctx context.Context, session string) (*storage.Stream, error) {
	l, err := r.Archive.List(ctx, session)
	if err != nil {
		return nil, err
	}
	if len(l.Chunks) == 0 {
		return nil, fmt.Errorf("archive: session %s: %w", session, storage.ErrNotFound)
	}
	if r.Auditor == nil {
		return nil, fmt.Errorf("archive: session %s is in the store, encrypted: no auditor key to open it", session)
	}
	if r.Record == nil {
		return nil, fmt.Errorf("%w: no audit log", ErrNotRecorded)
	}
	done, err := r.Record(ctx, session)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRecorded, err)
	}
	objs := newFetcher(r.Archive.Store, r.Archive.Concurrency).ordered(ctx, l.Chunks)
	next, stop := iter.Pull2(objs)
	return &storage.Stream{ReadCloser: &chunkStream{
		session: session, opener: chunk.NewOpener(r.Auditor), next: next, stop: stop,
		pending: []byte(record.Magic), done: done,
	}}, nil
}

// chunkStream is a session's recording read from its chunks.
type chunkStream struct {
	session string
	opener  *chunk.Opener
	next    func() (chunk.Object, error, bool)
	stop    func()
	done    func(events int, err error)

	pending   []byte // what Read returns next
	seq       uint64 // the seq of the next chunk
	event     uint64 // the event the next chunk must start at
	offset    int64  // bytes of the recording so far
	prev      [chunk.HashSize]byte
	closed    bool // the closing chunk was read
	err       error
	closeOnce bool
}

func (c *chunkStream) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.err = c.advance()
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	c.offset += int64(n)
	return n, nil
}

// advance opens the next chunk, or returns io.EOF after the last one.
func (c *chunkStream) advance() error {
	o, err, ok := c.next()
	if !ok {
		return io.EOF // without the closing chunk, replay reports truncation
	}
	_, keySeq, _, _ := ParseSessionObject(o.Key)
	broken := func(kind error, format string, args ...any) error {
		return &record.ChainError{Index: c.event, Offset: c.offset, Err: kind, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case err != nil:
		return err
	case c.closed:
		return broken(record.ErrCorrupt, "chunk %d (%s) after the closing chunk", keySeq, o.Key)
	case keySeq != c.seq:
		return broken(record.ErrTruncated, "chunk %d is not in the store", c.seq)
	}
	// Only this session's chunks are decrypted: the recorded act names it.
	if h, ok := peekHeader(o.Bytes); ok && (h.Session != c.session || h.Seq != keySeq) {
		return broken(record.ErrCorrupt, "%s holds chunk %d of session %q", o.Key, h.Seq, h.Session)
	}
	h, frames, err := c.opener.Open(o.Bytes)
	switch {
	case err != nil:
		return broken(record.ErrCorrupt, "chunk %d (%s) does not open: %v", keySeq, o.Key, err)
	case h.FirstEvent != c.event:
		return broken(record.ErrCorrupt, "chunk %d starts at event %d", keySeq, h.FirstEvent)
	case keySeq > 0 && h.Prev != c.prev:
		return broken(record.ErrCorrupt, "chunk %d does not link to chunk %d (replaced or reordered)", keySeq, keySeq-1)
	}
	c.prev = sha256Sum(o.Bytes)
	c.seq++
	c.event = h.LastEvent + 1
	c.closed = h.Closing()
	c.pending = frames
	return nil
}

// Close ends the stream and reports the act's outcome once.
func (c *chunkStream) Close() error {
	if c.closeOnce {
		return nil
	}
	c.closeOnce = true
	c.stop()
	if c.done != nil {
		err := c.err
		if err == io.EOF {
			err = nil
		}
		c.done(int(c.event), err)
	}
	return nil
}
