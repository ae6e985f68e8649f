package ship

import (
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
	"github.com/phigate/phigate/storage/spool"
)

// Defaults of Config.
const (
	DefaultTick      = 200 * time.Millisecond
	DefaultUploaders = 8
	// compactAt: the ledger is rewritten with the live state alone when
	// it grows past this.
	compactAt = 64 << 20
	// maxReadPerTick bounds what one session's file contributes to a tick.
	maxReadPerTick = 8 << 20
)

// ErrFull is what Admit returns while the backlog is at its cap.
var ErrFull = errors.New("ship: recording backlog full: the store has not confirmed older recordings")

// Anchor is the newest sealed chunk of a session, for the cluster state.
type Anchor = archive.Anchor

// Config configures a Shipper.
type Config struct {
	Node   string       // the node sealing (chunk headers, manifests, digests)
	Dir    string       // the shipper's own directory (ledger, segments)
	Spool  *spool.Spool // where the recordings are
	Store  blob.Store
	Signer chunk.Signer
	// Auditor returns the auditors' public key that new sessions' data
	// keys are sealed to; nil holds sealing back (the recordings wait in
	// the spool, which then fills).
	Auditor func() *ecdh.PublicKey
	// Anchor stores the newest chunk of sessions outside the node (the
	// cluster state). Optional; failures are retried with newer anchors.
	Anchor func(context.Context, []Anchor) error
	// Retention says how long the objects of a session on resource are
	// kept (digests: resource ""). Nil: no retention of their own.
	Retention func(resource string) blob.PutOptions
	// PublishedKey is the JSON of the node's archive.PublishedKey, copied
	// to the store under keys/ (verifiers may read keys from there).
	PublishedKey []byte

	MaxBytes    int           // chunk.Config.MaxBytes
	MaxDuration time.Duration // chunk.Config.MaxDuration
	Tick        time.Duration // how often the spool is read; zero: DefaultTick
	// Cap is the most bytes the recordings not yet confirmed by the store
	// may take on the node (spool files and segments); beyond it Admit
	// refuses new sessions. Zero: no cap.
	Cap       int64
	Uploaders int
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now
}

// Shipper seals a spool's recordings into chunks and ships them.
type Shipper struct {
	cfg Config
	log *slog.Logger
	led *ledger

	mu       sync.Mutex
	sessions map[string]*tracked
	chunks   map[string][]chunkRecord      // per session not yet indexed
	hours    map[int64][]chunk.DigestEntry // undigested
	start    time.Time                     // first hour to digest
	digest   []byte                        // the newest digest object
	dHour    time.Time                     // its hour
	tick     uint64
	anchors  map[string]Anchor // not yet stored
	finished bool              // Finish wrote the last digest
	scanned  bool              // Run found the spool's sessions

	ledMu    sync.Mutex // serializes ledger appends
	segBytes atomic.Int64
	backlog  atomic.Int64
	kick     chan struct{}
	feed     *spool.ClosedFeed
	noKey    atomic.Bool
	readBuf  []byte   // what a tick reads a session file into (under mu): the builder copies frames out
	files    *readers // session files the shipper holds open (under mu)
	order    []string // the ids of sessions, sorted; nil when sessions changed (under mu)
	open     []spool.OpenSession

	// counters
	sealed, uploaded, uploadErrs, indexed atomic.Uint64
	rawIn, storedOut                      atomic.Uint64
}

// tracked is one session of the spool being shipped.
type tracked struct {
	st    sessionState  // as of the last durable tick
	work  *sessionState // st with what was read since (nil: st)
	b     *chunk.Builder
	read  int64 // bytes of the file added to b (>= st.Offset)
	limit int64 // bytes of the file that hold whole durable frames
	final bool  // the recording is closed: everything up to limit, then a closing chunk
	sized bool  // final, and limit is the file's size (a final file does not grow)
	// unreadSince: the tick that saw frames beyond read while the builder
	// held none (zero: none seen, or read since); see readNow.
	unreadSince time.Time
	gone        bool // the file is missing
}

// New opens the shipper's directory: its ledger says what was sealed
// before, and segments a crash left without their ledger batch are
// deleted (their frames are still in the spool).
func New(cfg Config) (*Shipper, error) {
	if cfg.Node == "" || cfg.Dir == "" || cfg.Spool == nil || cfg.Store == nil || cfg.Signer.Key == nil || cfg.Auditor == nil {
		return nil, errors.New("ship: config needs node, dir, spool, store, signer and auditor")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Uploaders <= 0 {
		cfg.Uploaders = DefaultUploaders
	}
	if cfg.Retention == nil {
		cfg.Retention = func(string) blob.PutOptions { return blob.PutOptions{} }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Shipper{cfg: cfg, log: log.With("component", "ship"),
		sessions: map[string]*tracked{}, chunks: map[string][]chunkRecord{}, hours: map[int64][]chunk.DigestEntry{},
		anchors: map[string]Anchor{}, kick: make(chan struct{}, 1), files: newReaders(maxReaders)}
	led, err := openLedger(cfg.Dir, s.load)
	if err != nil {
		return nil, err
	}
	s.led = led
	for h := range s.hours {
		if !s.dHour.IsZero() && !time.Unix(h, 0).After(s.dHour) {
			delete(s.hours, h)
		}
	}
	ticks, _, err := listSegments(cfg.Dir)
	if err != nil {
		led.close()
		return nil, err
	}
	var size int64
	for _, t := range ticks {
		p := segmentPath(cfg.Dir, t)
		if t > s.tick {
			s.log.Warn("deleting a segment sealed by a tick the ledger does not record (its frames are sealed again)", "segment", t)
			if err := os.Remove(p); err != nil {
				led.close()
				return nil, fmt.Errorf("ship: %w", err)
			}
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			size += fi.Size()
		}
	}
	s.segBytes.Store(size)
	if s.start.IsZero() {
		s.start = cfg.Now().UTC().Truncate(time.Hour)
		if err := s.appendBatch(&batch{Start: s.start}); err != nil {
			led.close()
			return nil, err
		}
	}
	return s, nil
}

// load applies one ledger batch at New.
func (s *Shipper) load(b *batch) error {
	if b.Tick > s.tick {
		s.tick = b.Tick
	}
	if !b.Start.IsZero() {
		s.start = b.Start
	}
	for _, st := range b.Sessions {
		t := s.sessions[st.ID]
		if t == nil {
			t = &tracked{}
			s.sessions[st.ID] = t
		}
		t.st, t.read = st, st.Offset
	}
	for _, c := range b.Chunks {
		if _, live := s.sessions[c.Session]; live && !hasChunk(s.chunks[c.Session], c.Seq) {
			s.chunks[c.Session] = append(s.chunks[c.Session], c)
		}
		h := c.Hour.Unix()
		if !hasEntry(s.hours[h], c.Session, c.Seq) {
			s.hours[h] = append(s.hours[h], digestEntry(c))
		}
	}
	if b.Digest != nil {
		s.digest, s.dHour = b.Digest, b.DigestHour
		for h := range s.hours {
			if !time.Unix(h, 0).After(b.DigestHour) {
				delete(s.hours, h)
			}
		}
	}
	for _, id := range b.Indexed {
		s.forgetLocked(id)
	}
	return nil
}

func hasChunk(cs []chunkRecord, seq uint64) bool {
	for _, c := range cs {
		if c.Seq == seq {
			return true
		}
	}
	return false
}

func hasEntry(es []chunk.DigestEntry, session string, seq uint64) bool {
	for _, e := range es {
		if e.Session == session && e.Seq == seq {
			return true
		}
	}
	return false
}

func digestEntry(c chunkRecord) chunk.DigestEntry {
	e := chunk.DigestEntry{Object: c.Object, Session: c.Session, Seq: c.Seq}
	copy(e.Hash[:], c.Hash)
	return e
}

func (s *Shipper) appendBatch(b *batch) error {
	s.ledMu.Lock()
	defer s.ledMu.Unlock()
	return s.led.append(b)
}

// SetSigner makes the shipper sign with another key from its next tick on
// (a key rotation; the caller publishes the new key first and retires the
// old one after).
//
// The digests of the hours that have ended are written first, with the key
// that signed their chunks: the new key, published as valid from the
// current hour, never signs for an hour before it.
func (s *Shipper) SetSigner(k chunk.Signer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out tickOutput
	if err := s.digestsDue(s.cfg.Now(), &out); err != nil {
		return err
	}
	if err := s.commitLocked(&out); err != nil {
		return err
	}
	s.cfg.Signer = k
	return nil
}

// Admit says whether the node may start a new session: ErrFull while the
// recordings waiting for the store take the cap or more.
func (s *Shipper) Admit() error {
	if s.cfg.Cap > 0 && s.backlog.Load() >= s.cfg.Cap {
		return ErrFull
	}
	return nil
}

// Stats is what the shipper has done, for metrics and tests.
type Stats struct {
	Sealed, Uploaded, UploadErrors, Indexed uint64
	RawBytes, StoredBytes                   uint64 // frames sealed, and their chunks' size
	Backlog                                 int64  // bytes waiting on the node: spool files and segments
	Segments                                int64  // bytes of segments
	Sessions                                int    // sessions not yet indexed in the store
	WaitingForKey                           bool   // no auditors' key: nothing is sealed
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	return Stats{Sealed: s.sealed.Load(), Uploaded: s.uploaded.Load(), UploadErrors: s.uploadErrs.Load(),
		Indexed: s.indexed.Load(), RawBytes: s.rawIn.Load(), StoredBytes: s.storedOut.Load(),
		Backlog: s.backlog.Load(), Segments: s.segBytes.Load(), Sessions: n, WaitingForKey: s.noKey.Load()}
}

// Run seals and ships until ctx ends. It returns an error only when the
// shipper's own directory fails (the recordings stay in the spool); store
// outages are retried for ever.
func (s *Shipper) Run(ctx context.Context) error {
	s.feed = s.cfg.Spool.WatchClosed()
	defer s.feed.Stop()
	defer func() {
		s.mu.Lock()
		s.files.closeAll()
		s.mu.Unlock()
	}()
	if err := s.scan(); err != nil {
		return err
	}
	upDone := make(chan error, 1)
	upCtx, stopUp := context.WithCancel(ctx)
	defer func() { stopUp(); <-upDone }()
	go func() { upDone <- s.uploader(upCtx) }()
	anDone := make(chan struct{})
	go func() { defer close(anDone); s.anchorer(upCtx) }()
	defer func() { stopUp(); <-anDone }()

	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		if err := s.Tick(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-upDone:
			upDone <- err
			if err != nil {
				return err
			}
			return nil
		case <-t.C:
		case <-s.feed.Ready():
		}
	}
}

// scan finds the spool's sessions at start: final ones (closed in an
// earlier run) and open ones.
func (s *Shipper) scan() error {
	closed, err := s.cfg.Spool.ClosedSessions()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range closed {
		s.trackLocked(id).final = true
	}
	s.scanned = true
	// A session the ledger knows whose file is gone was removed after its
	// index was written but before the ledger said so, or lost.
	for id, t := range s.sessions {
		if !t.final && !t.st.Closed {
			if _, err := os.Stat(s.cfg.Spool.SessionFile(id)); errors.Is(err, os.ErrNotExist) {
				t.gone = true
			}
		}
	}
	return nil
}

func (s *Shipper) trackLocked(id string) *tracked {
	t := s.sessions[id]
	if t == nil {
		t = &tracked{st: sessionState{ID: id}}
		s.sessions[id] = t
		s.order = nil
	}
	return t
}

// forgetLocked drops a session the store holds whole.
func (s *Shipper) forgetLocked(id string) {
	delete(s.sessions, id)
	delete(s.chunks, id)
	s.files.drop(id)
	s.order = nil
}

// orderLocked is the ids of the sessions, sorted (so that a tick's
// objects come in a stable order), kept from tick to tick while no
// session comes or goes.
func (s *Shipper) orderLocked() []string {
	if s.order == nil {
		s.order = make([]string, 0, len(s.sessions))
		for id := range s.sessions {
			s.order = append(s.order, id)
		}
		sort.Strings(s.order)
	}
	return s.order
}

// Tick reads what the spool gained since the last tick, seals the chunks
// that are due, writes the hours' digests that are due, and makes all of it
// durable (one segment, one ledger batch). Run calls it; tests may too.
func (s *Shipper) Tick() error {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.feed != nil {
		ids, rescan := s.feed.Take()
		if rescan {
			all, err := s.cfg.Spool.ClosedSessions()
			if err != nil {
				return err
			}
			ids = all
		}
		for _, id := range ids {
			s.trackLocked(id).final = true
		}
	}
	var backlog int64
	// How far each live session's file holds durable frames comes from the
	// spool's memory: an idle session costs no system call.
	s.open = s.cfg.Spool.AppendOpenSessions(s.open[:0])
	for _, o := range s.open {
		t := s.trackLocked(o.ID)
		t.limit = o.Applied
	}
	var out tickOutput
	for _, id := range s.orderLocked() {
		t := s.sessions[id]
		if t.final && !t.sized && !t.st.Closed && !t.gone {
			fi, err := os.Stat(s.cfg.Spool.SessionFile(id))
			switch {
			case err == nil:
				t.limit, t.sized = fi.Size(), true
			case errors.Is(err, os.ErrNotExist):
				t.gone = true
			default:
				return fmt.Errorf("ship: %w", err)
			}
		}
		backlog += t.limit
		if t.st.Closed || t.gone {
			s.files.drop(id)
			continue
		}
		if err := s.advance(t, now, &out); err != nil {
			if isFatal(err) {
				return err
			}
			s.log.Error("cannot seal a session's recording; it stays in the spool", "session", id, "err", err)
			t.gone = true
		}
	}
	if err := s.digestsDue(now, &out); err != nil {
		return err
	}
	s.backlog.Store(backlog + s.segBytes.Load())
	if out.empty() {
		return s.maybeCompact()
	}
	if err := s.commitLocked(&out); err != nil {
		return err
	}
	return s.maybeCompact()
}

// commitLocked makes what a tick produced durable (its segment, then its
// ledger batch) and applies it to the shipper's state. Called with s.mu
// held.
func (s *Shipper) commitLocked(out *tickOutput) error {
	if out.empty() {
		return nil
	}
	s.tick++
	b := &out.batch
	if len(out.objs) > 0 {
		b.Tick = s.tick
		n, err := writeSegment(s.cfg.Dir, s.tick, out.objs)
		if err != nil {
			return fatal(err)
		}
		s.segBytes.Add(n)
		s.backlog.Add(n)
	}
	if err := s.appendBatch(b); err != nil {
		return fatal(err)
	}
	for _, st := range b.Sessions {
		if t := s.sessions[st.ID]; t != nil {
			t.st = st
		}
	}
	for _, c := range b.Chunks {
		s.chunks[c.Session] = append(s.chunks[c.Session], c)
		s.hours[c.Hour.Unix()] = append(s.hours[c.Hour.Unix()], digestEntry(c))
	}
	if b.Digest != nil {
		s.digest, s.dHour = b.Digest, b.DigestHour
		for h := range s.hours {
			if !time.Unix(h, 0).After(b.DigestHour) {
				delete(s.hours, h)
			}
		}
	}
	for _, a := range out.anchors {
		s.anchors[a.Session] = a
	}
	s.sealed.Add(uint64(len(b.Chunks)))
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

func fatal(err error) error { return fatalError{err} }

func isFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}

// tickOutput is what one tick made.
type tickOutput struct {
	objs    []object
	batch   batch
	anchors []Anchor
}

func (o *tickOutput) empty() bool {
	return len(o.objs) == 0 && len(o.batch.Sessions) == 0 && o.batch.Digest == nil
}

// advance reads t's new frames into its builder and seals what is due.
// The session's state in t.st changes only through out (applied once the
// tick is durable); the builder itself moves on, which is why a failure to
// make the tick durable is fatal.
func (s *Shipper) advance(t *tracked, now time.Time, out *tickOutput) error {
	if t.work == nil {
		w := t.st
		t.work = &w
	}
	st := t.work
	sealedAny := false
	seal := func(closing bool) error {
		sealed, err := t.b.Seal(closing)
		if err != nil {
			return err
		}
		st.Offset = t.read
		key := archive.ChunkKey(st.ID, sealed.Header.Seq)
		_, man, err := chunk.SignManifest(sealed, key, now, s.cfg.Signer)
		if err != nil {
			return err
		}
		if st.Retain.IsZero() && st.Mode == "" {
			r := s.cfg.Retention(st.Resource)
			st.Retain, st.Mode = r.RetainUntil, string(r.Mode)
		}
		ret := blob.PutOptions{RetainUntil: st.Retain, Mode: blob.Mode(st.Mode)}
		mobj := object{Key: archive.ManifestKey(st.ID, sealed.Header.Seq), Data: man, Retain: ret}
		if closing {
			mobj.Closes = st.ID
		}
		out.objs = append(out.objs, object{Key: key, Data: sealed.Bytes, Retain: ret}, mobj)
		out.batch.Chunks = append(out.batch.Chunks, chunkRecord{Session: st.ID, Seq: sealed.Header.Seq, Object: key,
			Hash: append([]byte(nil), sealed.Sum[:]...), Hour: now.UTC().Truncate(time.Hour)})
		st.NextSeq = sealed.Header.Seq + 1
		st.Prev = append([]byte(nil), sealed.Sum[:]...)
		st.NextEvent = sealed.Header.LastEvent + 1
		st.Head = append([]byte(nil), sealed.Header.ChainHead[:]...)
		st.RawBytes += int64(sealed.Header.RawSize)
		st.Stored += int64(len(sealed.Bytes) + len(man))
		st.Closed = closing
		s.rawIn.Add(uint64(sealed.Header.RawSize))
		s.storedOut.Add(uint64(len(sealed.Bytes) + len(man)))
		out.anchors = append(out.anchors, Anchor{Session: st.ID, Node: s.cfg.Node, Seq: sealed.Header.Seq,
			Chunk: append([]byte(nil), sealed.Sum[:]...), Head: append([]byte(nil), sealed.Header.ChainHead[:]...),
			LastEvent: sealed.Header.LastEvent, Closing: closing, SealedAt: now})
		sealedAny = true
		return nil
	}

	if t.read < t.limit && s.readNow(t, now) {
		if t.b == nil {
			key := s.cfg.Auditor()
			if key == nil {
				if !s.noKey.Swap(true) {
					s.log.Error("no auditors' public key in the policy: recordings are not sealed or shipped and wait in the spool")
				}
				return nil
			}
			s.noKey.Store(false)
			var prev [chunk.HashSize]byte
			copy(prev[:], st.Prev)
			b, err := chunk.NewBuilder(chunk.Config{Session: st.ID, Node: s.cfg.Node, Auditor: key,
				MaxBytes: s.cfg.MaxBytes, MaxDuration: s.cfg.MaxDuration,
				NextSeq: st.NextSeq, Prev: prev, NextEvent: st.NextEvent})
			if err != nil {
				return err
			}
			t.b = b
		}
		if err := s.read(t, st, seal); err != nil {
			return err
		}
		t.unreadSince = time.Time{}
	}
	switch {
	case t.b == nil:
	case t.final && t.read >= t.limit:
		if t.b.Pending() > 0 {
			if err := seal(true); err != nil {
				return err
			}
		} else {
			// Final, but everything was sealed already: no frame is left
			// for a closing chunk. The session's recording ended without
			// session.end (a recording from before it was always written).
			st.Closed, st.Truncated = true, true
			sealedAny = true
		}
	case t.b.Due(now):
		if err := seal(false); err != nil {
			return err
		}
	}
	if sealedAny {
		if st.Closed {
			t.b = nil
			s.files.drop(st.ID)
		}
		out.batch.Sessions = append(out.batch.Sessions, *st)
	}
	return nil
}

// readNow says whether a tick reads t's new frames, which it does only
// when a chunk may be due: frames wait in the spool file (page cache)
// rather than in the builder, and a live session costs one read per chunk
// instead of one per tick. Final recordings are read at once; so is a
// chunk's worth of frames. A builder holding frames is read when it is due
// (and then sealed). An empty builder is read once MaxDuration less one
// tick has passed since unread frames were first seen: their first event
// is no older than the tick before, so the chunk is sealed no later than
// if it had been read every tick.
func (s *Shipper) readNow(t *tracked, now time.Time) bool {
	maxBytes, maxDur := int64(s.cfg.MaxBytes), s.cfg.MaxDuration
	if maxBytes <= 0 {
		maxBytes = chunk.DefaultMaxBytes
	}
	if maxDur <= 0 {
		maxDur = chunk.DefaultMaxDuration
	}
	switch {
	case t.final, t.limit-t.read >= maxBytes:
		return true
	case t.b != nil && t.b.Pending() > 0:
		return t.b.Due(now)
	case t.unreadSince.IsZero():
		t.unreadSince = now
		return maxDur <= s.cfg.Tick
	}
	return now.Sub(t.unreadSince) >= maxDur-s.cfg.Tick
}

// read adds the whole frames of t's file between t.read and t.limit to its
// builder, sealing full chunks on the way. A session.end frame of a session
// that is not final yet is held back, so that it goes into the closing chunk.
func (s *Shipper) read(t *tracked, st *sessionState, seal func(bool) error) error {
	budget := int64(maxReadPerTick)
	for t.read < t.limit && budget > 0 {
		want := min(t.limit-t.read, max(budget, 64<<10))
		if int64(cap(s.readBuf)) < want {
			s.readBuf = make([]byte, want)
		}
		buf := s.readBuf[:want]
		n, err := s.files.readAt(s.cfg.Spool, st.ID, t.final, buf, t.read)
		if errors.Is(err, os.ErrNotExist) {
			t.gone = true
			return nil
		}
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			// Out of descriptors (sessions hold them) for a file of the
			// shipper's own: read it next tick.
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fatal(fmt.Errorf("ship: read %s: %w", st.ID, err))
		}
		buf = buf[:n]
		if t.read == 0 {
			if len(buf) < record.HeaderSize {
				return nil
			}
			if string(buf[:record.HeaderSize]) != record.Magic {
				return fmt.Errorf("ship: %s is not a recording", st.ID)
			}
			buf = buf[record.HeaderSize:]
			t.read = int64(record.HeaderSize)
		}
		progress := false
		for {
			fl, bad := nextFrame(buf)
			if bad {
				return fmt.Errorf("ship: %s: a frame length no frame has, at byte %d", st.ID, t.read)
			}
			if fl == 0 {
				break
			}
			frame := buf[:fl]
			meta, ok := eventMeta(framePayload(frame))
			if !ok {
				return fmt.Errorf("ship: %s: event at byte %d does not decode", st.ID, t.read)
			}
			if meta.kind == record.KindSessionEnd && !t.final {
				return nil
			}
			s.noteEvent(st, frame, meta)
			err := t.b.Add(frame, meta.time)
			if errors.Is(err, chunk.ErrFull) {
				if err := seal(false); err != nil {
					return err
				}
				err = t.b.Add(frame, meta.time)
			}
			if err != nil {
				return err
			}
			t.read += int64(fl)
			budget -= int64(fl)
			buf = buf[fl:]
			progress = true
		}
		if !progress {
			// The next frame is longer than what was read: read it whole.
			if len(buf) < 4 {
				return nil
			}
			need := int64(binary.BigEndian.Uint32(buf)) + record.FrameOverhead
			if need <= int64(len(buf)) || t.read+need > t.limit {
				return nil // not durable whole yet
			}
			budget = need
		}
	}
	return nil
}

// noteEvent takes what the index needs from the session's first and last
// events. Only these two are decoded whole.
func (s *Shipper) noteEvent(st *sessionState, frame []byte, meta frameMeta) {
	if st.Start.IsZero() || meta.time.Before(st.Start) {
		st.Start = meta.time.UTC()
	}
	if meta.time.After(st.End) {
		st.End = meta.time.UTC()
	}
	if meta.kind != record.KindSessionStart && meta.kind != record.KindSessionEnd {
		return
	}
	var ev record.Event
	if err := json.Unmarshal(framePayload(frame), &ev); err != nil {
		return
	}
	if st.Identity == "" {
		st.Identity, st.Resource, st.Holder = ev.Identity, ev.Resource, ev.Node
	}
	switch {
	case ev.Start != nil:
		st.Kind, st.Protocol = ev.Start.IdentityKind, ev.Start.Protocol
	case ev.End != nil:
		st.Reason = ev.End.Reason
	}
}
