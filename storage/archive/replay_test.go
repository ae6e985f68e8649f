package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
)

var _ replay.Store = (*archive.ReplayStore)(nil)

// acts records what a ReplayStore's Record hook saw.
type acts struct {
	begun  []string
	events []int
	errs   []error
	refuse error
}

func (a *acts) record(_ context.Context, s string) (func(int, error), error) {
	if a.refuse != nil {
		return nil, a.refuse
	}
	a.begun = append(a.begun, s)
	return func(n int, err error) { a.events, a.errs = append(a.events, n), append(a.errs, err) }, nil
}

func replayStore(w *world, a *acts) *archive.ReplayStore {
	return &archive.ReplayStore{Archive: &archive.Archive{Store: w.store, Concurrency: 4}, Auditor: w.auditor, Record: a.record}
}

// TestReplayRoundTrip: a session read back from the store is its
// recording as the spool wrote it, byte for byte, and the decryption was
// recorded before and after.
func TestReplayRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(testing.TB) blob.Store) {
		s := newStandard(t, newStore(t))
		a := &acts{}
		rs := replayStore(s.world, a)
		for _, x := range []*shipped{s.a, s.b, s.c} {
			st, err := rs.Open(s.ctx, x.id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(st)
			if err != nil {
				t.Fatal(err)
			}
			if st.Live {
				t.Error("a stored session read as live")
			}
			st.Close()
			st.Close()
			if !bytes.Equal(got, x.recording) {
				t.Fatalf("session %s: %d bytes back, recorded %d", x.id, len(got), len(x.recording))
			}
		}
		if len(a.begun) != 3 || a.events[0] != int(s.a.entry.Events) || a.errs[0] != nil || len(a.events) != 3 {
			t.Fatalf("acts: %+v", a)
		}
		// replay prints it, verifying the record chain as it goes.
		var out bytes.Buffer
		if err := replay.PrintSession(s.ctx, &out, rs, s.a.id, replay.Options{JSON: true}); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), "\n"); n != int(s.a.entry.Events) {
			t.Fatalf("%d events printed, want %d", n, s.a.entry.Events)
		}
	})
}

func TestReplayRefusedUnrecorded(t *testing.T) {
	s := newStandard(t, newFS(t))
	a := &acts{refuse: errors.New("audit log full")}
	if _, err := replayStore(s.world, a).Open(s.ctx, s.a.id); !errors.Is(err, archive.ErrNotRecorded) {
		t.Fatalf("refused record: %v", err)
	}
	rs := replayStore(s.world, a)
	rs.Record = nil
	if _, err := rs.Open(s.ctx, s.a.id); !errors.Is(err, archive.ErrNotRecorded) {
		t.Fatalf("no Record: %v", err)
	}
	a = &acts{}
	if _, err := replayStore(s.world, a).Open(s.ctx, "01M8NYXK600000000000000000"); !errors.Is(err, storage.ErrNotFound) || len(a.begun) != 0 {
		t.Fatalf("unknown session: %v, acts %v", err, a.begun)
	}
}

// TestReplayBroken: replay locates a missing, truncated or changed chunk
// as a chain break at the chunk's first event.
func TestReplayBroken(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(s *standard) (uint64, string)
		kind   error
	}{
		{"missing chunk", func(s *standard) (uint64, string) {
			s.remove(s.a.chunks[2])
			return firstEvent(t, s, 2), "chunk 2 is not in the store"
		}, record.ErrTruncated},
		{"no closing chunk", func(s *standard) (uint64, string) {
			n := len(s.a.chunks)
			s.remove(s.a.chunks[n-1])
			return firstEvent(t, s, n-1), "session not closed"
		}, record.ErrTruncated},
		{"changed payload", func(s *standard) (uint64, string) {
			b := s.get(s.a.chunks[3])
			b[len(b)-3] ^= 1
			s.replace(s.a.chunks[3], b)
			return firstEvent(t, s, 3), "chunk 3"
		}, record.ErrCorrupt},
		{"re-sealed chunk", func(s *standard) (uint64, string) {
			// Forged frames: the record chain breaks at the chunk's first
			// event, before the chunk chain would at the next chunk.
			c, _ := reseal(t, s.world, s.a, 3)
			s.replace(s.a.chunks[3], c)
			return firstEvent(t, s, 3), "previous-event hash"
		}, record.ErrCorrupt},
		{"chunk moved from another session", func(s *standard) (uint64, string) {
			s.replace(s.a.chunks[3], s.get(s.b.chunks[3]))
			return firstEvent(t, s, 3), "holds chunk 3 of session"
		}, record.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStandard(t, newFS(t))
			at, reason := tc.tamper(s)
			a := &acts{}
			err := replay.PrintSession(s.ctx, io.Discard, replayStore(s.world, a), s.a.id, replay.Options{})
			var ce *record.ChainError
			if !errors.As(err, &ce) || !errors.Is(err, tc.kind) || ce.Index != at || !strings.Contains(ce.Reason, reason) {
				t.Fatalf("want a break at event %d (%q), got %v", at, reason, err)
			}
			if len(a.begun) != 1 || len(a.events) != 1 {
				t.Fatalf("acts %+v", a)
			}
		})
	}
}

// firstEvent is the first event of chunk seq of session a, as shipped.
func firstEvent(t *testing.T, s *standard, seq int) uint64 {
	t.Helper()
	e := s.a.entry
	var n uint64
	// Count the events of the chunks before seq from their headers.
	for i := 0; i < seq; i++ {
		h := header(t, s.world, e.Chunks[i].Object)
		n = h.LastEvent + 1
	}
	return n
}

func TestReplayList(t *testing.T) {
	s := newStandard(t, newFS(t))
	rs := replayStore(s.world, &acts{})
	all, err := rs.List(s.ctx)
	if err != nil || len(all) != 4 {
		t.Fatalf("all: %v %v", all, err)
	}
	rs.From, rs.To = t0.Add(3*time.Hour), t0.Add(4*time.Hour)
	got, err := rs.List(s.ctx)
	if err != nil || len(got) != 1 || got[0].ID != s.c.id || got[0].Size != s.c.entry.Stored {
		t.Fatalf("[3h, 4h): %v %v", got, err)
	}
}
