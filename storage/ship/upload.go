package ship

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// Backoff bounds of uploads and index writes.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
	// permanentRetry is how often an object the store refuses for good
	// (another object under its key) is tried again: it is never dropped.
	permanentRetry = time.Minute
)

// put stores one object, retrying until the store confirms it or ctx ends.
// Errors that no retry can cure are logged and retried slowly: an object is
// never given up.
func (s *Shipper) put(ctx context.Context, key string, data []byte, opts blob.PutOptions) error {
	wait := backoffMin
	for attempt := 1; ; attempt++ {
		err := s.cfg.Store.Put(ctx, key, data, opts)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.uploadErrs.Add(1)
		d := wait/2 + rand.N(wait/2+1)
		if !blob.Retryable(err) {
			s.log.Error("the store refuses an object; it stays on the node and is tried again", "object", key, "err", err)
			d = permanentRetry
		} else if attempt == 1 || attempt%20 == 0 {
			s.log.Warn("upload failed; retrying", "object", key, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		wait = min(wait*2, backoffMax)
	}
}

// putAll stores objs, retrying each until the store confirms it or ctx
// ends. A store that batches (blob.Batcher: the directory store) gets them
// all in one PutMany, which makes them durable with one sync per file and
// per directory; what it did not confirm, and every object of a store
// that does not batch (S3, whose puts are durable on return), goes through
// put, Config.Uploaders at a time.
func (s *Shipper) putAll(ctx context.Context, objs []object) error {
	todo := objs
	if b, ok := s.cfg.Store.(blob.Batcher); ok && len(objs) > 0 {
		batch := make([]blob.Object, len(objs))
		for i, o := range objs {
			batch[i] = blob.Object{Key: o.Key, Data: o.Data, Opts: o.Retain}
		}
		todo = nil
		for i, err := range b.PutMany(ctx, batch) {
			if err != nil {
				todo = append(todo, objs[i])
				continue
			}
			s.uploaded.Add(1)
		}
		if len(todo) > 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.uploadErrs.Add(uint64(len(todo)))
		}
	}
	var (
		wg     sync.WaitGroup
		sem    = make(chan struct{}, s.cfg.Uploaders)
		errMu  sync.Mutex
		putErr error
	)
	for i := range todo {
		o := &todo[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.put(ctx, o.Key, o.Data, o.Retain); err != nil {
				errMu.Lock()
				putErr = err
				errMu.Unlock()
				return
			}
			s.uploaded.Add(1)
		}()
	}
	wg.Wait()
	return putErr
}

// uploader ships segments in order: every object of a segment, then the
// index entries of the sessions it closes; then the segment is deleted and
// the spool files of those sessions removed.
func (s *Shipper) uploader(ctx context.Context) error {
	if len(s.cfg.PublishedKey) > 0 {
		var k archive.PublishedKey
		if err := json.Unmarshal(s.cfg.PublishedKey, &k); err == nil {
			if err := s.put(ctx, archive.KeyKey(k.ID), s.cfg.PublishedKey, s.cfg.Retention("")); err != nil {
				return nil // ctx ended
			}
		}
	}
	// Sessions whose closing chunk was uploaded before a restart but whose
	// index entry was not confirmed.
	s.mu.Lock()
	var pending []string
	for id, t := range s.sessions {
		if t.st.Closed && s.closingUploaded(id) {
			pending = append(pending, id)
		}
	}
	s.mu.Unlock()
	sort.Strings(pending)
	if err := s.index(ctx, pending); err != nil {
		return ignoreCancel(err)
	}
	for {
		ticks, _, err := listSegments(s.cfg.Dir)
		if err != nil {
			return err
		}
		s.mu.Lock()
		last := s.tick
		s.mu.Unlock()
		for _, tick := range ticks {
			if tick > last {
				break // written by a tick whose batch is not logged yet
			}
			if err := s.ship(ctx, tick); err != nil {
				return ignoreCancel(err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
	}
}

func ignoreCancel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// closingUploaded: the segment that holds the session's closing chunk is
// gone (uploaded). Called with s.mu held.
func (s *Shipper) closingUploaded(id string) bool {
	cs := s.chunks[id]
	if len(cs) == 0 {
		return true // truncated without chunks: nothing to wait for
	}
	last := cs[len(cs)-1]
	// The segment is gone once uploaded; a cheap check is whether the
	// store was asked already: look for the object in the remaining
	// segments instead of tracking segment numbers per chunk.
	ticks, _, err := listSegments(s.cfg.Dir)
	if err != nil {
		return false
	}
	for _, t := range ticks {
		objs, err := readSegment(segmentPath(s.cfg.Dir, t))
		if err != nil {
			continue
		}
		for _, o := range objs {
			if o.Key == last.Object {
				return false
			}
		}
	}
	return true
}

// ship uploads the objects of one segment, then indexes the sessions it
// closes.
func (s *Shipper) ship(ctx context.Context, tick uint64) error {
	path := segmentPath(s.cfg.Dir, tick)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	objs, err := readSegment(path)
	if err != nil {
		return err
	}
	if err := s.putAll(ctx, objs); err != nil {
		return err
	}
	var closes []string
	for _, o := range objs {
		if o.Closes != "" {
			closes = append(closes, o.Closes)
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	s.segBytes.Add(-fi.Size())
	s.backlog.Add(-fi.Size())
	return s.index(ctx, closes)
}

// index writes the index entries of closed sessions whose chunks are all in
// the store (all of them in one putAll), removes their spool files, and
// forgets them.
func (s *Shipper) index(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var objs []object
	var ready []string
	for _, id := range ids {
		s.mu.Lock()
		t := s.sessions[id]
		var entry *archive.IndexEntry
		var ret blob.PutOptions
		if t != nil {
			entry = s.entryLocked(t)
			ret = blob.PutOptions{RetainUntil: t.st.Retain, Mode: blob.Mode(t.st.Mode)}
		}
		s.mu.Unlock()
		if entry == nil {
			continue
		}
		b, err := json.Marshal(entry)
		if err != nil {
			return err
		}
		for _, day := range archive.Days(entry.Start, entry.End) {
			objs = append(objs, object{Key: archive.IndexKey(day, id), Data: b, Retain: ret})
		}
		ready = append(ready, id)
	}
	if err := s.putAll(ctx, objs); err != nil {
		return err
	}
	// Each removal waits for a commit of the spool's journal: made
	// together (up to 64 at once), they share commits.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, id := range ready {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.cfg.Spool.RemoveFinal(ctx, id); err != nil {
				s.log.Warn("a shipped recording stays in the spool", "session", id, "err", err)
			}
		})
	}
	wg.Wait()
	if err := s.appendBatch(&batch{Indexed: ready}); err != nil {
		return fatal(err)
	}
	s.mu.Lock()
	for _, id := range ready {
		if t := s.sessions[id]; t != nil {
			s.backlog.Add(-t.limit)
		}
		s.forgetLocked(id)
	}
	s.mu.Unlock()
	s.indexed.Add(uint64(len(ready)))
	return nil
}

// entryLocked is a closed session's index entry.
func (s *Shipper) entryLocked(t *tracked) *archive.IndexEntry {
	st := t.st
	state := archive.StateClosed
	switch {
	case st.Truncated:
		state = "truncated"
	case st.Reason == "recovered":
		state = archive.StateRecovered
	}
	holder := st.Holder
	if holder == "" {
		holder = s.cfg.Node
	}
	e := &archive.IndexEntry{Version: 1, Session: st.ID, Node: holder, Identity: st.Identity, Kind: st.Kind,
		Resource: st.Resource, Protocol: st.Protocol, Start: st.Start, End: st.End, State: state, Reason: st.Reason,
		Events: st.NextEvent, RawBytes: st.RawBytes, Stored: st.Stored}
	if e.End.Before(e.Start) {
		e.End = e.Start
	}
	for _, c := range s.chunks[st.ID] {
		e.Chunks = append(e.Chunks, archive.IndexChunk{Seq: c.Seq, Object: c.Object, SHA256: hex.EncodeToString(c.Hash), Node: s.cfg.Node})
	}
	sort.Slice(e.Chunks, func(i, j int) bool { return e.Chunks[i].Seq < e.Chunks[j].Seq })
	return e
}

// anchorer stores the newest chunk of each session outside the node, about
// once a tick.
func (s *Shipper) anchorer(ctx context.Context) {
	if s.cfg.Anchor == nil {
		return
	}
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if len(s.anchors) == 0 {
			s.mu.Unlock()
			continue
		}
		list := make([]Anchor, 0, len(s.anchors))
		for _, a := range s.anchors {
			list = append(list, a)
		}
		s.mu.Unlock()
		sort.Slice(list, func(i, j int) bool { return list[i].Session < list[j].Session })
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.cfg.Anchor(actx, list)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("cannot anchor sealed chunks in the cluster state; retrying", "sessions", len(list), "err", err)
			}
			continue
		}
		s.mu.Lock()
		for _, a := range list {
			if cur, ok := s.anchors[a.Session]; ok && cur.Seq == a.Seq {
				delete(s.anchors, a.Session)
			}
		}
		s.mu.Unlock()
	}
}

// digestsDue writes the digest of every hour that has ended since the last
// one (hours without chunks included). Called with s.mu held.
func (s *Shipper) digestsDue(now time.Time, out *tickOutput) error {
	cur := now.UTC().Truncate(time.Hour)
	return s.digestsUntil(cur, out)
}

// digestsUntil writes digests for the hours before end. Called with s.mu
// held.
func (s *Shipper) digestsUntil(end time.Time, out *tickOutput) error {
	if s.finished {
		return nil
	}
	next := s.start
	if !s.dHour.IsZero() {
		next = s.dHour.Add(time.Hour)
	}
	prev := s.digest
	for h := next; h.Before(end); h = h.Add(time.Hour) {
		entries := append([]chunk.DigestEntry(nil), s.hours[h.Unix()]...)
		// Chunks sealed in this very tick belong to the current hour or
		// later; those of out's hour h are added too.
		for _, c := range out.batch.Chunks {
			if c.Hour.Equal(h) && !hasEntry(entries, c.Session, c.Seq) {
				entries = append(entries, digestEntry(c))
			}
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Object < entries[j].Object })
		_, b, err := chunk.BuildDigest(s.cfg.Node, h, entries, prev, s.cfg.Signer)
		if err != nil {
			return fatal(err)
		}
		out.objs = append(out.objs, object{Key: archive.DigestKey(s.cfg.Node, h), Data: b, Retain: s.cfg.Retention("")})
		prev = b
		out.batch.Digest, out.batch.DigestHour = b, h
	}
	return nil
}

// Finish writes the digests of every hour up to and including the current
// one, after which this shipper (this node's key) writes no more: for a
// node that is leaving for good, or the last run of `phigate recover`. The
// caller has shipped everything first (Drained).
func (s *Shipper) Finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out tickOutput
	if err := s.digestsUntil(s.cfg.Now().UTC().Truncate(time.Hour).Add(time.Hour), &out); err != nil {
		return err
	}
	if err := s.commitLocked(&out); err != nil {
		return err
	}
	s.finished = true
	return nil
}

// Drained says whether everything the spool held is sealed, uploaded and
// indexed (the spool has no session left).
func (s *Shipper) Drained() bool {
	s.mu.Lock()
	n, scanned, anchors := len(s.sessions), s.scanned, len(s.anchors)
	s.mu.Unlock()
	if s.cfg.Anchor == nil {
		anchors = 0
	}
	return scanned && n == 0 && anchors == 0 && s.segBytes.Load() == 0 && len(s.cfg.Spool.OpenSessions()) == 0
}

// maybeCompact rewrites the ledger with the live state alone once it is
// large. Called with s.mu held.
func (s *Shipper) maybeCompact() error {
	s.ledMu.Lock()
	defer s.ledMu.Unlock()
	if s.led.size < compactAt {
		return nil
	}
	b := &batch{Tick: s.tick, Start: s.start, Digest: s.digest, DigestHour: s.dHour}
	for _, t := range s.sessions {
		b.Sessions = append(b.Sessions, t.st)
	}
	seen := map[string]bool{}
	for id, cs := range s.chunks {
		for _, c := range cs {
			seen[fmt.Sprintf("%s/%d", id, c.Seq)] = true
			b.Chunks = append(b.Chunks, c)
		}
	}
	for h, es := range s.hours {
		for _, e := range es {
			if !seen[fmt.Sprintf("%s/%d", e.Session, e.Seq)] {
				b.Chunks = append(b.Chunks, chunkRecord{Session: e.Session, Seq: e.Seq, Object: e.Object,
					Hash: append([]byte(nil), e.Hash[:]...), Hour: time.Unix(h, 0).UTC()})
			}
		}
	}
	if err := s.led.rewrite(b); err != nil {
		return fatal(err)
	}
	return nil
}
