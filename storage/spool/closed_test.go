package spool

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// recordSession records a short session and closes it.
func recordSession(t testing.TB, s *Spool, id string) error {
	rec := newRecorder(id)
	l, err := s.Create(id)
	if err != nil {
		return err
	}
	for range 3 {
		if _, err := l.Append(rec.next()); err != nil {
			return err
		}
	}
	if _, err := l.Append(rec.end("terminate")); err != nil {
		return err
	}
	return l.Close(context.Background())
}

// collect takes from feed until it has reported n sessions, failing after
// a deadline or on a rescan.
func collect(t *testing.T, feed *ClosedFeed, n int) []string {
	t.Helper()
	var got []string
	deadline := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case <-feed.Ready():
		case <-deadline:
			t.Fatalf("feed reported %d of %d sessions: %v", len(got), n, got)
		}
		ids, rescan := feed.Take()
		if rescan {
			t.Fatal("feed asked for a rescan")
		}
		got = append(got, ids...)
	}
	return got
}

// TestClosedFeedConcurrentCloses: sessions closing at the same time on many
// goroutines are each reported once, while the consumer takes them; a
// session still open, and one that closed empty (no file), are not.
func TestClosedFeedConcurrentCloses(t *testing.T) {
	dir := t.TempDir()
	s := start(t, openSpool(t, Config{Dir: dir, SegmentBytes: minSegmentBytes}))
	feed := s.WatchClosed()
	defer feed.Stop()

	open := newRecorder(sessionID(999))
	lo, err := s.Create(open.id)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, lo, open.next())
	empty, err := s.Create(sessionID(998))
	if err != nil {
		t.Fatal(err)
	}

	const n = 48
	var want []string
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := sessionID(i)
		want = append(want, id)
		wg.Go(func() { errs <- recordSession(t, s.Spool, id) })
	}
	if err := empty.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := collect(t, feed, n)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("feed reported %v, want each of %v once", got, want)
	}
	if ids, rescan := feed.Take(); len(ids) != 0 || rescan {
		t.Fatalf("feed reported more: %v (rescan %v)", ids, rescan)
	}
	// What the feed reported is what a consumer starting now would find.
	final, err := s.ClosedSessions()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(final, want) {
		t.Fatalf("ClosedSessions %v, want %v", final, want)
	}
	for _, id := range final {
		verifyFile(t, dir, id, false)
	}
}

// TestClosedFeedAbsentConsumer: nobody takes from the feed while sessions
// close. Closing never waits for it; once the feed has more than it keeps,
// it asks for a rescan, which lists every one of them.
func TestClosedFeedAbsentConsumer(t *testing.T) {
	s := start(t, openSpool(t, Config{Dir: t.TempDir(), SegmentBytes: minSegmentBytes}))
	small := s.watchClosed(4)
	defer small.Stop()
	unread := s.WatchClosed() // never read: it must not hold anyone up
	defer unread.Stop()

	var want []string
	for i := range 10 {
		id := sessionID(i)
		if err := recordSession(t, s.Spool, id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	ids, rescan := small.Take()
	if !rescan || ids != nil {
		t.Fatalf("an overflowing feed returned %v (rescan %v), want a rescan", ids, rescan)
	}
	final, err := s.ClosedSessions()
	if err != nil || !slices.Equal(final, want) {
		t.Fatalf("rescan found %v (%v), want %v", final, err, want)
	}
	// After the rescan the feed reports again.
	if err := recordSession(t, s.Spool, sessionID(10)); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, small, 1); got[0] != sessionID(10) {
		t.Fatalf("after the rescan the feed reported %v", got)
	}
	if ids, rescan := unread.Take(); len(ids) != 11 || rescan {
		t.Fatalf("the unread feed kept %d sessions (rescan %v), want 11", len(ids), rescan)
	}

	// A stopped feed is told nothing more.
	unread.Stop()
	if err := recordSession(t, s.Spool, sessionID(11)); err != nil {
		t.Fatal(err)
	}
	if ids, _ := unread.Take(); len(ids) != 0 {
		t.Fatalf("a stopped feed was told %v", ids)
	}
}

// TestClosedFeedRecoveredSessions: after a restart, what closed before it
// is listed by ClosedSessions, what a crash left open is not, until the
// node closes it; then the feed reports it.
func TestClosedFeedRecoveredSessions(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: minSegmentBytes}
	s := start(t, openSpool(t, cfg))
	if err := recordSession(t, s.Spool, sessionID(1)); err != nil {
		t.Fatal(err)
	}
	// Session 2 is left open; session 3 recorded its end but never closed.
	var left []string
	for i, end := range map[int]bool{2: false, 3: true} {
		rec := newRecorder(sessionID(i))
		l, err := s.Create(rec.id)
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, l, rec.next())
		lsn := mustAppend(t, l, rec.next())
		if end {
			lsn = mustAppend(t, l, rec.end("terminate"))
		}
		if err := s.Wait(context.Background(), lsn); err != nil {
			t.Fatal(err)
		}
		left = append(left, rec.id)
	}
	sort.Strings(left)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := openSpool(t, cfg)
	if got := s2.Recovered(); !slices.Equal(got, left) {
		t.Fatalf("recovered %v, want %v", got, left)
	}
	feed := s2.WatchClosed()
	defer feed.Stop()
	final, err := s2.ClosedSessions()
	if err != nil || !slices.Equal(final, []string{sessionID(1)}) {
		t.Fatalf("closed before the restart: %v (%v)", final, err)
	}
	r := start(t, s2)
	for _, id := range left {
		endRecovered(t, r, id)
	}
	got := collect(t, feed, len(left))
	sort.Strings(got)
	if !slices.Equal(got, left) {
		t.Fatalf("feed reported %v, want the recovered %v", got, left)
	}
	if final, err = s2.ClosedSessions(); err != nil || len(final) != 3 {
		t.Fatalf("after recovery: %v (%v)", final, err)
	}
	for _, id := range final {
		verifyFile(t, dir, id, false)
	}
}

func ExampleClosedFeed() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	sp, _ := Open(Config{Dir: dir, SegmentBytes: minSegmentBytes})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()

	// The consumer starts its feed first, then lists what closed before.
	feed := sp.WatchClosed()
	defer feed.Stop()
	ship := func(ids []string) {
		for _, id := range ids {
			fmt.Println("ship", id) // idempotent: a session may come twice
		}
	}
	final, _ := sp.ClosedSessions()
	ship(final)

	l, _ := sp.Create("01JDZ3Y6W5K8Q2M4N7P9R00001")
	frame := newRecorder(l.ID()).next()
	l.Append(frame)
	l.Close(ctx)

	<-feed.Ready()
	ids, rescan := feed.Take()
	if rescan {
		ids, _ = sp.ClosedSessions()
	}
	ship(ids)
	cancel()
	<-done
	sp.Close()
	// Output: ship 01JDZ3Y6W5K8Q2M4N7P9R00001
}
