package spool

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/phigate/phigate/session/record"
)

// TestFastSegmentRolls: batches larger than a segment roll the journal
// again and again while the checkpointer prepares spares; the segment the
// syncer takes and the spare made meanwhile must never be one file (they
// were, under a shared name, and a later roll failed with ENOENT).
func TestFastSegmentRolls(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir(), SegmentBytes: minSegmentBytes})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			rec := newRecorder(sessionID(900 + w))
			l, err := s.Create(rec.id)
			if err != nil {
				errs <- err
				return
			}
			data := make([]byte, 16<<10)
			for i := 0; i < 200; i++ {
				f := rec.seal(&record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: 1, Data: data}})
				lsn, err := l.Append(f)
				if err == nil {
					err = s.Wait(ctx, lsn)
				}
				if err != nil {
					errs <- fmt.Errorf("append %d: %w", i, err)
					return
				}
			}
			errs <- l.Close(ctx)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.checkpoints.Load() < 50 {
		t.Fatalf("only %d segment rolls: the test did not exercise them", s.checkpoints.Load())
	}
}
