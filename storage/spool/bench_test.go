package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppendWait measures what the proxy pays per recorded event: one
// Append and one Wait for durability, from 1, 16 and 64 sessions at once.
// It compares the journal with group commit ("journal", and its segment
// preallocation variants) against the naive design, one write and one
// fdatasync of the session's own file per event ("naive").
//
//	go test ./storage/spool -run '^$' -bench AppendWait -benchtime 3s
func BenchmarkAppendWait(b *testing.B) {
	frame := newRecorder(sessionID(0)).next() // a real command event, ~360 bytes
	for _, sessions := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("journal/sessions=%d", sessions), func(b *testing.B) { benchJournal(b, sessions, frame, zeroFill) })
		b.Run(fmt.Sprintf("journal-slow-sync/sessions=%d", sessions), func(b *testing.B) { benchJournalFS(b, sessions, frame, zeroFill, slowSyncFS{}) })
		b.Run(fmt.Sprintf("journal-fallocate-only/sessions=%d", sessions), func(b *testing.B) { benchJournal(b, sessions, frame, fallocateOnly) })
		b.Run(fmt.Sprintf("journal-no-prealloc/sessions=%d", sessions), func(b *testing.B) { benchJournal(b, sessions, frame, growing) })
		b.Run(fmt.Sprintf("naive/sessions=%d", sessions), func(b *testing.B) { benchNaive(b, sessions, frame) })
	}
}

// parallel runs b.N operations spread over n goroutines and reports
// ops/s and the latency of one operation (p50, p99).
func parallel(b *testing.B, n int, op func(worker int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	lat := make([][]time.Duration, n)
	for w := range lat {
		lat[w] = make([]time.Duration, 0, b.N/n+1)
	}
	b.ResetTimer()
	start := time.Now()
	for w := range n {
		count := b.N / n
		if w < b.N%n {
			count++
		}
		wg.Go(func() {
			for range count {
				t := time.Now()
				if err := op(w); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// slowSyncFS adds a millisecond to every fdatasync, as a disk (or network
// volume) whose syncs are latency-bound would: syncs that overlap overlap
// their added latency too. It shows what committing batches concurrently
// buys when the sync's latency, not this machine's CPU, is the limit.
type slowSyncFS struct{ osFS }

type slowSyncFile struct{ file }

func (f slowSyncFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	fl, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{fl}, nil
}

func (f slowSyncFile) Datasync() error {
	time.Sleep(time.Millisecond)
	return f.file.Datasync()
}

func benchJournal(b *testing.B, sessions int, frame []byte, prealloc preallocation) {
	benchJournalFS(b, sessions, frame, prealloc, osFS{})
}

func benchJournalFS(b *testing.B, sessions int, frame []byte, prealloc preallocation, fsys fileSystem) {
	dir := b.TempDir()
	s, err := open(Config{Dir: dir}, fsys, prealloc)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := start(b, s)
	// Don't time the background preparation of the spare segment.
	for deadline := time.Now().Add(time.Minute); ; {
		s.spareMu.Lock()
		ready := s.spare != nil
		s.spareMu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no spare segment after a minute")
		}
		time.Sleep(time.Millisecond)
	}
	logs := make([]*Log, sessions)
	for i := range logs {
		if logs[i], err = s.Create(sessionID(i)); err != nil {
			b.Fatal(err)
		}
	}
	commits, syncs := s.commits.Load(), s.sessionSyncs.Load()
	ctx := context.Background()
	parallel(b, sessions, func(w int) error {
		lsn, err := logs[w].Append(frame)
		if err == nil {
			err = s.Wait(ctx, lsn)
		}
		return err
	})
	commits, syncs = s.commits.Load()-commits, s.sessionSyncs.Load()-syncs
	b.ReportMetric(float64(commits+syncs)/float64(b.N), "fsyncs/op")
	b.ReportMetric(float64(b.N)/float64(commits), "appends/commit")
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
}

func benchNaive(b *testing.B, sessions int, frame []byte) {
	dir := b.TempDir()
	files := make([]file, sessions)
	for i := range files {
		f, err := osFS{}.OpenFile(filepath.Join(dir, sessionID(i)+".rec"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	offsets := make([]int64, sessions)
	parallel(b, sessions, func(w int) error {
		if _, err := files[w].WriteAt(frame, offsets[w]); err != nil {
			return err
		}
		offsets[w] += int64(len(frame))
		return files[w].Datasync()
	})
	b.ReportMetric(1, "fsyncs/op")
}
