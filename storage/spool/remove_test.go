package spool

import (
	"context"
	"os"
	"testing"
)

// TestRemoveFinalSurvivesRecovery: a shipped recording removed with
// RemoveFinal stays removed when the next Open replays the journal that
// still holds its frames; a file deleted behind the spool's back is
// written back (which is why the removal must be journaled).
func TestRemoveFinalSurvivesRecovery(t *testing.T) {
	dir := t.TempDir()
	run := func(f func(s *Spool)) {
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		f(s)
		cancel()
		<-done
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	record := func(s *Spool, id string) {
		l, err := s.Create(id)
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder(id)
		for i := 0; i < 5; i++ {
			lsn, err := l.Append(rec.next())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Wait(context.Background(), lsn); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	run(func(s *Spool) {
		record(s, "shipped")
		record(s, "deleted")
		if err := s.RemoveFinal(context.Background(), "shipped"); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveFinal(context.Background(), "shipped"); err != nil {
			t.Fatalf("a second RemoveFinal: %v", err)
		}
		os.Remove(s.SessionFile("deleted"))
	})
	run(func(s *Spool) {
		if _, err := os.Stat(s.SessionFile("shipped")); !os.IsNotExist(err) {
			t.Errorf("recovery brought a removed recording back (%v)", err)
		}
		if _, err := os.Stat(s.SessionFile("deleted")); err != nil {
			t.Errorf("the control: a file deleted without RemoveFinal is not written back: %v", err)
		}
		ids, err := s.ClosedSessions()
		if err != nil || len(ids) != 1 || ids[0] != "deleted" {
			t.Errorf("closed sessions after recovery: %v %v", ids, err)
		}
	})
}
