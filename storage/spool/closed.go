package spool

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// maxClosedPending caps the sessions a ClosedFeed remembers between two
// Takes; beyond it the feed forgets them and asks for a rescan.
const maxClosedPending = 4096

// ClosedFeed tells one consumer, such as the uploader that ships
// recordings to object storage, which sessions' recordings became final:
// closed, every frame durable and in the session file, the close durable
// in the journal. It never blocks the spool: a closing session adds its id
// to the feed's list and signals Ready without waiting for anyone, and a
// consumer that falls more than maxClosedPending sessions behind is told to
// rescan (ClosedSessions) instead of being sent them. Nothing is lost
// either way, but a session may be reported more than once (see the
// package documentation), so consuming must be idempotent.
type ClosedFeed struct {
	s     *Spool
	ready chan struct{} // holds one pending wake-up at most
	max   int

	mu     sync.Mutex
	ids    []string
	rescan bool
}

// closedFeeds is the spool's list of feeds to tell.
type closedFeeds struct {
	mu    sync.Mutex
	feeds map[*ClosedFeed]struct{}
}

// WatchClosed starts a feed of the sessions whose recordings become final
// from now on. Sessions that were final before it started are found with
// ClosedSessions, called after WatchClosed so that nothing falls between
// the two. Stop the feed when done.
func (s *Spool) WatchClosed() *ClosedFeed { return s.watchClosed(maxClosedPending) }

func (s *Spool) watchClosed(max int) *ClosedFeed {
	f := &ClosedFeed{s: s, ready: make(chan struct{}, 1), max: max}
	s.closed.mu.Lock()
	if s.closed.feeds == nil {
		s.closed.feeds = make(map[*ClosedFeed]struct{})
	}
	s.closed.feeds[f] = struct{}{}
	s.closed.mu.Unlock()
	return f
}

// publish tells every feed that the recording of id is final.
func (c *closedFeeds) publish(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for f := range c.feeds {
		f.add(id)
	}
}

func (f *ClosedFeed) add(id string) {
	f.mu.Lock()
	switch {
	case f.rescan: // a rescan will find it
	case len(f.ids) >= f.max:
		f.ids, f.rescan = nil, true
	default:
		f.ids = append(f.ids, id)
	}
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Ready receives a value when Take has something to return. Wake-ups
// coalesce: after one, Take returns everything that arrived since the
// previous Take (possibly nothing, if that Take already returned it).
func (f *ClosedFeed) Ready() <-chan struct{} { return f.ready }

// Take returns the sessions whose recordings became final since the last
// Take, in the order they closed. When rescan is true the feed fell too
// far behind and dropped them: the consumer calls ClosedSessions, which
// lists every final recording, them included.
func (f *ClosedFeed) Take() (ids []string, rescan bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids, rescan = f.ids, f.rescan
	f.ids, f.rescan = nil, false
	return ids, rescan
}

// Stop ends the feed: it is told nothing more. Stop is idempotent.
func (f *ClosedFeed) Stop() {
	f.s.closed.mu.Lock()
	delete(f.s.closed.feeds, f)
	f.s.closed.mu.Unlock()
}

// ClosedSessions lists, sorted, the sessions of the spool directory whose
// recordings are final: closed in this run or in an earlier one. Sessions
// still open, and sessions left open by a crash that Recovered lists and
// that are not closed yet, are not final; each is reported by every
// ClosedFeed when it closes.
func (s *Spool) ClosedSessions() ([]string, error) {
	entries, err := s.fs.ReadDir(s.sessionsDir)
	if err != nil {
		return nil, fmt.Errorf("spool: list closed sessions: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".rec")
		if !ok || !validID(id) || !e.Type().IsRegular() {
			continue
		}
		// A file is empty from its session's Create until its first frame
		// reaches it; a Log that closes empty removes it. Skipping empty
		// files keeps a session whose Create has made its file but not yet
		// registered it from passing for closed.
		if fi, err := e.Info(); err != nil || fi.Size() == 0 {
			continue
		}
		ids = append(ids, id)
	}
	// The open sessions are read after the directory, so that a session
	// created in between cannot pass for closed; one that closes in
	// between is listed, and reported by the feeds too.
	s.mu.Lock()
	out := ids[:0]
	for _, id := range ids {
		_, open := s.logs[id]
		_, recovered := s.recovered[id]
		if !open && !recovered {
			out = append(out, id)
		}
	}
	s.mu.Unlock()
	sort.Strings(out)
	return out, nil
}
