package archive

import (
	"context"
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// Archive reads a store written in this package's layout. It only reads;
// its zero Concurrency means DefaultConcurrency.
type Archive struct {
	Store blob.Store
	// Concurrency caps the Gets in flight of one call (S3 latency is
	// hidden by fetching ahead). Zero: DefaultConcurrency.
	Concurrency int
}

// Sessions returns the index entries of the sessions that overlap
// [from, to): it lists the index of every UTC day the range touches and
// keeps one entry per session (a session that spans days has an entry on
// each), sorted by start, then id. An index object that does not parse is
// an error; Verify reports such objects as findings instead.
func (a *Archive) Sessions(ctx context.Context, from, to time.Time) ([]*IndexEntry, error) {
	var out []*IndexEntry
	err := a.indexEntries(ctx, from, to, func(key string, e *IndexEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	kept := out[:0]
	for _, e := range out {
		if !seen[e.Session] && overlaps(e, from, to) {
			seen[e.Session] = true
			kept = append(kept, e)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool {
		if !kept[i].Start.Equal(kept[j].Start) {
			return kept[i].Start.Before(kept[j].Start)
		}
		return kept[i].Session < kept[j].Session
	})
	return kept, nil
}

// overlaps says whether e's session was running at some time in [from, to).
func overlaps(e *IndexEntry, from, to time.Time) bool {
	end := e.End
	if end.Before(e.Start) {
		end = e.Start
	}
	return !end.Before(from) && e.Start.Before(to)
}

// indexEntries fetches every index object of the days [from, to) touches
// and calls fn with each, in key order; a malformed object comes with its
// error and a nil entry. An error from fn stops the walk and is returned.
func (a *Archive) indexEntries(ctx context.Context, from, to time.Time, fn func(key string, e *IndexEntry, err error) error) error {
	f := newFetcher(a.Store, a.Concurrency)
	last := to
	if last.After(from) {
		last = to.Add(-time.Nanosecond) // [from, to): a to at midnight does not touch that day
	}
	for _, day := range Days(from, last) {
		list, err := a.Store.List(ctx, IndexDayPrefix(day))
		if err != nil {
			return fmt.Errorf("archive: list index of %s: %w", day.Format(time.DateOnly), err)
		}
		for o, err := range f.ordered(ctx, list) {
			if err != nil {
				return err
			}
			e, perr := parseIndexObject(o)
			if err := fn(o.Key, e, perr); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseIndexObject parses an index object and checks it is where its
// session's entry belongs.
func parseIndexObject(o chunk.Object) (*IndexEntry, error) {
	_, session, ok := ParseIndexKey(o.Key)
	if !ok {
		return nil, fmt.Errorf("archive: %s is not an index key", o.Key)
	}
	e, err := ParseIndexEntry(o.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Key, err)
	}
	if e.Session != session {
		return nil, fmt.Errorf("archive: %s holds the entry of session %q", o.Key, e.Session)
	}
	return e, nil
}

// Listing is what the store holds under a session's prefix, by kind, in
// key order.
type Listing struct {
	Chunks    []blob.Info // sessions/<id>/<seq>.chunk
	Manifests []blob.Info // sessions/<id>/<seq>.manifest
	Other     []blob.Info // anything else under the prefix (not written by phigate)
}

// Empty says the store holds nothing of the session.
func (l *Listing) Empty() bool { return len(l.Chunks)+len(l.Manifests)+len(l.Other) == 0 }

// List lists the objects of session.
func (a *Archive) List(ctx context.Context, session string) (*Listing, error) {
	if err := checkSessionID(session); err != nil {
		return nil, err
	}
	list, err := a.Store.List(ctx, SessionPrefix(session))
	if err != nil {
		return nil, fmt.Errorf("archive: list session %s: %w", session, err)
	}
	l := &Listing{}
	for _, o := range list {
		s, seq, kind, ok := ParseSessionObject(o.Key)
		switch {
		case ok && s == session && kind == "chunk" && ChunkKey(s, seq) == o.Key:
			l.Chunks = append(l.Chunks, o)
		case ok && s == session && kind == "manifest" && ManifestKey(s, seq) == o.Key:
			l.Manifests = append(l.Manifests, o)
		default:
			l.Other = append(l.Other, o)
		}
	}
	return l, nil
}

// checkSessionID refuses ids that would not name one session's prefix
// (ids come from index keys and digests, which a store's writer chose).
func checkSessionID(s string) error {
	if s == "" || strings.Contains(s, "/") {
		return fmt.Errorf("archive: %q is not a session id", s)
	}
	return blob.ValidKey(SessionPrefix(s) + "x")
}

// Chunks lists session's chunks and yields them in seq order, fetched
// ahead with bounded concurrency, holding a few at a time. It fails with
// an error wrapping storage.ErrNotFound when the store holds no chunk of
// the session; a failed fetch is yielded with the object's key.
func (a *Archive) Chunks(ctx context.Context, session string) iter.Seq2[chunk.Object, error] {
	return func(yield func(chunk.Object, error) bool) {
		l, err := a.List(ctx, session)
		if err == nil && len(l.Chunks) == 0 {
			err = fmt.Errorf("archive: session %s: %w", session, storage.ErrNotFound)
		}
		if err != nil {
			yield(chunk.Object{}, err)
			return
		}
		for o, err := range newFetcher(a.Store, a.Concurrency).ordered(ctx, l.Chunks) {
			if !yield(o, err) {
				return
			}
		}
	}
}

// AllSessions lists sessions/ whole and returns every session id that has
// an object, with the bytes stored under it. It reads every key of the
// store's sessions: for large stores prefer Sessions over a date range.
func (a *Archive) AllSessions(ctx context.Context) ([]storage.RecordingInfo, error) {
	list, err := a.Store.List(ctx, SessionsPrefix)
	if err != nil {
		return nil, fmt.Errorf("archive: list sessions: %w", err)
	}
	var out []storage.RecordingInfo
	for _, o := range list {
		s, _, _, ok := ParseSessionObject(o.Key)
		if !ok {
			continue
		}
		if n := len(out); n > 0 && out[n-1].ID == s {
			out[n-1].Size += o.Size
			continue
		}
		out = append(out, storage.RecordingInfo{ID: s, Size: o.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
