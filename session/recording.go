package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/session/benchstage"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

// ErrNotRecorded wraps every failure to make an event durable. Proxies treat
// it as fatal for the command and the session: nothing goes through
// unrecorded.
var ErrNotRecorded = errors.New("recording unavailable")

// Position is where an appended event stands in the node's recording
// order: once the event at a Position is durable, so is every event
// appended before it, in any session. Its value means nothing else; the
// zero Position waits for nothing. It converts to and from uint64 so that
// a proxy can keep the latest one in an atomic.Uint64.
type Position uint64

// Recorder opens recordings on a node's spool.
type Recorder struct {
	spool  *spool.Spool
	nodeID string
	now    func() time.Time
}

// NewRecorder records into sp, stamping events with nodeID.
func NewRecorder(sp *spool.Spool, nodeID string) *Recorder {
	return &Recorder{spool: sp, nodeID: nodeID, now: time.Now}
}

// Start creates the recording of a new session.
func (r *Recorder) Start(id string) (*Recording, error) {
	log, err := r.spool.Create(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return &Recording{rec: r, id: id, log: log, chain: record.NewChain(id)}, nil
}

// Recording is one session's event log. Append and Sync are safe for
// concurrent use by the two directions of a proxy.
type Recording struct {
	rec   *Recorder
	id    string
	log   *spool.Log
	chain *record.Chain

	mu       sync.Mutex
	buf      []byte
	identity string
	resource string
	err      error // first failure; sticky

	last atomic.Uint64 // Position of the last appended frame
}

// ID is the session identifier.
func (r *Recording) ID() string { return r.id }

// SetSubject stamps later events with the identity and resource once they are known.
func (r *Recording) SetSubject(identity, resource string) {
	r.mu.Lock()
	r.identity, r.resource = identity, resource
	r.mu.Unlock()
}

// Append seals ev into the chain and hands it to the spool. It does not
// wait for durability: call Wait (for this event) or Sync (for all) before
// forwarding anything that depends on it. Session, Node, Identity, Resource
// and Time are filled in when empty.
func (r *Recording) Append(ev *record.Event) (Position, error) { return r.append(ev, false) }

// AppendLazy is Append for an event nobody is about to wait for, such as a
// command's result: it is committed with the next group commit instead of
// starting one, so a session pays one fsync per command, not two.
func (r *Recording) AppendLazy(ev *record.Event) (Position, error) { return r.append(ev, true) }

func (r *Recording) append(ev *record.Event, lazy bool) (Position, error) {
	if benchstage.NoRecord() {
		return 0, nil // a benchmark build's stage without recording
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	if ev.Time.IsZero() {
		ev.Time = r.rec.now().UTC()
	}
	ev.Session, ev.Node = r.id, r.rec.nodeID
	if ev.Identity == "" {
		ev.Identity = r.identity
	}
	if ev.Resource == "" {
		ev.Resource = r.resource
	}
	var err error
	r.buf, err = r.chain.Seal(r.buf[:0], ev)
	if err != nil {
		r.err = fmt.Errorf("%w: seal %s: %w", ErrNotRecorded, ev.Kind, err)
		return 0, r.err
	}
	appendFrame := r.log.Append
	if lazy {
		appendFrame = r.log.AppendLazy
	}
	lsn, err := appendFrame(r.buf)
	if err != nil {
		r.err = fmt.Errorf("%w: append %s: %w", ErrNotRecorded, ev.Kind, err)
		return 0, r.err
	}
	r.last.Store(uint64(lsn))
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	// A spool LSN is never zero, so the zero Position stays free to mean
	// "nothing to wait for".
	return Position(lsn), nil
}

// Wait returns once the event at pos (and so every event before it) is
// durable. The zero Position waits for nothing.
func (r *Recording) Wait(ctx context.Context, pos Position) error {
	if pos == 0 {
		return nil
	}
	if err := r.rec.spool.Wait(ctx, spool.LSN(pos)); err != nil {
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return nil
}

// Sync returns once every event appended so far is durable.
func (r *Recording) Sync(ctx context.Context) error {
	return r.Wait(ctx, Position(r.last.Load()))
}

// Close makes the recording durable and closes its file. The caller appends
// the session.end event first.
func (r *Recording) Close(ctx context.Context) error {
	if err := r.log.Close(ctx); err != nil {
		return fmt.Errorf("%w: close: %w", ErrNotRecorded, err)
	}
	return nil
}

// CloseRecovered ends the recording of a session that was open when the
// node stopped without closing it (a crash): it appends session.end with
// reason "recovered", continuing the hash chain from the last durable event.
func (r *Recorder) CloseRecovered(ctx context.Context, id string) error {
	log, err := r.spool.Reopen(id)
	if err != nil {
		return fmt.Errorf("%w: reopen %s: %w", ErrNotRecorded, id, err)
	}
	last, err := log.Last()
	if err != nil {
		log.Close(ctx)
		return fmt.Errorf("%w: read last event of %s: %w", ErrNotRecorded, id, err)
	}
	chain, lastEv, err := record.Resume(id, last)
	if err != nil {
		log.Close(ctx)
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	rec := &Recording{rec: r, id: id, log: log, chain: chain, identity: lastEv.Identity, resource: lastEv.Resource}
	if lastEv.Kind != record.KindSessionEnd {
		end := &record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "recovered"}}
		if _, err := rec.Append(end); err != nil {
			log.Close(ctx)
			return err
		}
	}
	return rec.Close(ctx)
}
