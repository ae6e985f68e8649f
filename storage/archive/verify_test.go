package archive_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// forEachStore runs f against a blob.FS and a plain (deletable) S3 bucket.
func forEachStore(t *testing.T, f func(t *testing.T, newStore func(t testing.TB) blob.Store)) {
	t.Run("fs", func(t *testing.T) { f(t, func(t testing.TB) blob.Store { return newFS(t) }) })
	t.Run("s3", func(t *testing.T) { f(t, func(t testing.TB) blob.Store { return newS3(t, false) }) })
}

func TestVerifyClean(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(testing.TB) blob.Store) {
		s := newStandard(t, newStore(t))
		var calls, total int
		opts := s.opts()
		opts.Progress = func(done, n int) { calls, total = done, n }
		r := s.verify(opts, s.chunkKeys())
		if !r.OK() {
			t.Fatalf("clean store, findings:\n%s", findings(r))
		}
		var chunks int
		var bytes int64
		for _, x := range []*shipped{s.a, s.b, s.c, s.d} {
			chunks += len(x.chunks)
			bytes += x.entry.Stored
		}
		if r.Sessions != 4 || r.Chunks != chunks || r.Manifests != chunks || r.Bytes != bytes || calls != 4 || total != 4 {
			t.Fatalf("report: %d sessions, %d chunks (want %d), %d manifests, %d bytes (want %d), progress %d/%d",
				r.Sessions, r.Chunks, chunks, r.Manifests, r.Bytes, bytes, calls, total)
		}
		// n2 joined at t0+2h and n3 left at t0+1h: only the hours their
		// keys cover are expected, so neither has gaps.
		want := []archive.NodeReport{{Node: "n1", Keys: 1, Hours: 5, Digests: 5}, {Node: "n2", Keys: 1, Hours: 3, Digests: 3}, {Node: "n3", Keys: 1, Hours: 1, Digests: 1}}
		if !slices.Equal(r.Nodes, want) || r.Digests != 9 {
			t.Fatalf("nodes %+v, %d digests", r.Nodes, r.Digests)
		}
		// The JSON report parses and says ok.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var j struct {
			OK       bool  `json:"ok"`
			Sessions int   `json:"sessions"`
			Findings []any `json:"findings"`
		}
		if err := json.Unmarshal(b, &j); err != nil || !j.OK || j.Sessions != 4 || j.Findings == nil {
			t.Fatalf("json: %v %s", err, b)
		}
	})
}

// TestVerifyLockedBucket: a store with object lock verifies clean, and
// refuses what the tamper tests do on plain stores: deleting and
// overwriting chunks, manifests, digests and index entries.
func TestVerifyLockedBucket(t *testing.T) {
	st := newS3(t, true)
	w := newWorld(t, st)
	w.put = blob.PutOptions{RetainUntil: time.Now().Add(time.Hour), Mode: blob.Compliance}
	w.node("n1", t0.Add(-24*time.Hour), time.Time{})
	a := w.session("n1", t0.Add(10*time.Minute), 120, 100*time.Millisecond, 4<<10)
	w.digestsFor("n1", t0, t0.Add(2*time.Hour))
	r := w.verify(archive.Options{From: t0, To: t0.Add(2 * time.Hour), Now: t0.Add(3 * time.Hour)}, w.chunkKeys())
	if !r.OK() || r.Sessions != 1 {
		t.Fatalf("locked bucket: %d sessions, findings:\n%s", r.Sessions, findings(r))
	}
	for _, key := range []string{a.chunks[1], a.manifests[1], a.index[0], archive.DigestKey("n1", t0)} {
		if err := st.Delete(w.ctx, key); !errors.Is(err, blob.ErrRetained) {
			t.Errorf("delete %s on a locked bucket: %v", key, err)
		}
		if err := st.Put(w.ctx, key, []byte("forged"), blob.PutOptions{}); !errors.Is(err, blob.ErrExists) {
			t.Errorf("overwrite %s on a locked bucket: %v", key, err)
		}
	}
	if r := w.verify(archive.Options{From: t0, To: t0.Add(2 * time.Hour), Now: t0.Add(3 * time.Hour)}, w.chunkKeys()); !r.OK() {
		t.Fatalf("after refused tampering:\n%s", findings(r))
	}
}

// want is a finding a tamper case must produce: its problem and where.
type want struct {
	problem chunk.Problem
	session string // "" for digest findings
	seq     int64  // -2: any
	node    string // "": any
	hour    time.Time
}

func (w want) match(f chunk.Finding) bool {
	return f.Problem == w.problem && f.Session == w.session && (w.seq == -2 || f.Seq == w.seq) &&
		(w.node == "" || f.Node == w.node) && (w.hour.IsZero() || f.Hour.Equal(w.hour))
}

// reseal builds chunk seq of session s again, as an attacker with the
// auditors' public key and a signing key of their own can: same seq,
// events and link to the chunk before, other data key and frames.
func reseal(t testing.TB, w *world, s *shipped, seq uint64) (chunkBytes, manifest []byte) {
	t.Helper()
	orig, err := chunk.Decode(w.get(s.chunks[seq]))
	if err != nil {
		t.Fatal(err)
	}
	h := orig.Header
	frames, times := record_(t, s.id, s.node, h.FirstTime, int(h.LastEvent)+1, 100*time.Millisecond)
	b, err := chunk.NewBuilder(chunk.Config{Session: s.id, Node: s.node, Auditor: w.auditor.PublicKey(),
		NextSeq: seq, Prev: h.Prev, NextEvent: h.FirstEvent, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for i := h.FirstEvent; i <= h.LastEvent; i++ {
		if err := b.Add(frames[i], times[i]); err != nil {
			t.Fatal(err)
		}
	}
	sc, err := b.Seal(h.Closing())
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	_, m, err := chunk.SignManifest(sc, s.chunks[seq], h.LastTime, chunk.NewSigner(priv))
	if err != nil {
		t.Fatal(err)
	}
	return sc.Bytes, m
}

func hdrLen(b []byte) int { return 12 + int(b[8])<<24 | int(b[9])<<16 | int(b[10])<<8 | int(b[11]) }

// onS3 are the tamper cases also run against MinIO: one of each kind of
// store operation (a changed object, removed objects, an added object, a
// replaced digest); every case runs against the directory store. Each case
// builds its own store of about a hundred objects, which costs seconds on
// MinIO.
var onS3 = map[string]bool{
	"flipped payload byte":        true,
	"removed chunk (middle)":      true,
	"deleted session":             true,
	"duplicated chunk":            true,
	"forged digest (unknown key)": true,
	"index entry tampered":        true,
	"truncated session (closing chunk and manifest removed)": true,
}

func TestVerifyTamper(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(testing.TB) blob.Store) {
		s3 := strings.HasSuffix(t.Name(), "/s3")
		var tmpl *standard // the directory store, built once and copied per case
		if !s3 {
			tmpl = newStandard(t, newStore(t))
		}
		cases := []struct {
			name   string
			tamper func(s *standard) (chunk.Keys, []want)
		}{
			{"flipped payload byte", func(s *standard) (chunk.Keys, []want) {
				b := s.get(s.a.chunks[1])
				b[len(b)-5] ^= 1
				s.replace(s.a.chunks[1], b)
				return nil, []want{{chunk.ProblemPayload, s.a.id, 1, "n1", time.Time{}},
					{chunk.ProblemMismatch, s.a.id, 1, "n1", s.a.sealedAt[1].Truncate(time.Hour)}, // the digest's hash
					{archive.ProblemIndex, s.a.id, 1, "", time.Time{}}}
			}},
			{"flipped header byte", func(s *standard) (chunk.Keys, []want) {
				b := s.get(s.a.chunks[2])
				b[hdrLen(b)-chunk.HashSize-40] ^= 1 // in the wrapped key
				s.replace(s.a.chunks[2], b)
				return nil, []want{{chunk.ProblemMismatch, s.a.id, 2, "n1", time.Time{}}}
			}},
			{"removed chunk (middle)", func(s *standard) (chunk.Keys, []want) {
				s.remove(s.a.chunks[1])
				s.remove(s.a.manifests[1])
				return nil, []want{{chunk.ProblemMissing, s.a.id, 1, "", time.Time{}},
					{chunk.ProblemMissing, s.a.id, 1, "n1", s.a.sealedAt[1].Truncate(time.Hour)}, // from the digest
					{archive.ProblemIndex, s.a.id, 1, "", time.Time{}}}
			}},
			{"removed chunk (last, manifest kept)", func(s *standard) (chunk.Keys, []want) {
				n := len(s.a.chunks)
				s.remove(s.a.chunks[n-1])
				return nil, []want{{chunk.ProblemMissing, s.a.id, int64(n - 1), "n1", time.Time{}}}
			}},
			{"truncated session (closing chunk and manifest removed)", func(s *standard) (chunk.Keys, []want) {
				n := len(s.a.chunks)
				s.remove(s.a.chunks[n-1])
				s.remove(s.a.manifests[n-1])
				return nil, []want{{chunk.ProblemTruncated, s.a.id, int64(n - 2), "n1", time.Time{}},
					{chunk.ProblemMissing, s.a.id, int64(n - 1), "n1", s.a.sealedAt[n-1].Truncate(time.Hour)}}
			}},
			{"reordered (two chunks' contents swapped)", func(s *standard) (chunk.Keys, []want) {
				b1, b2 := s.get(s.a.chunks[1]), s.get(s.a.chunks[2])
				s.replace(s.a.chunks[1], b2)
				s.replace(s.a.chunks[2], b1)
				return nil, []want{{chunk.ProblemReordered, s.a.id, 1, "n1", time.Time{}}}
			}},
			{"duplicated chunk", func(s *standard) (chunk.Keys, []want) {
				s.putObject(archive.ChunkKey(s.a.id, uint64(len(s.a.chunks))), s.get(s.a.chunks[1]))
				return nil, []want{{chunk.ProblemDuplicate, s.a.id, 1, "n1", time.Time{}}}
			}},
			{"replaced chunk (re-sealed, signed by another key)", func(s *standard) (chunk.Keys, []want) {
				c, m := reseal(t, s.world, s.a, 2)
				s.replace(s.a.chunks[2], c)
				s.replace(s.a.manifests[2], m)
				return nil, []want{{chunk.ProblemUnknownKey, s.a.id, 2, "n1", time.Time{}},
					{chunk.ProblemLink, s.a.id, 3, "n1", time.Time{}},
					{chunk.ProblemMismatch, s.a.id, 2, "n1", s.a.sealedAt[2].Truncate(time.Hour)}}
			}},
			{"deleted session", func(s *standard) (chunk.Keys, []want) {
				for _, k := range append(append(append([]string{}, s.a.chunks...), s.a.manifests...), s.a.index...) {
					s.remove(k)
				}
				return nil, []want{{archive.ProblemDeleted, s.a.id, -1, "n1", s.a.sealedAt[0].Truncate(time.Hour)}}
			}},
			{"deleted session spanning two digests", func(s *standard) (chunk.Keys, []want) {
				for _, k := range append(append(append([]string{}, s.b.chunks...), s.b.manifests...), s.b.index...) {
					s.remove(k)
				}
				return nil, []want{{archive.ProblemDeleted, s.b.id, -1, "n1", s.b.sealedAt[0].Truncate(time.Hour)}}
			}},
			{"forged digest (unknown key)", func(s *standard) (chunk.Keys, []want) {
				h := t0.Add(time.Hour)
				_, priv, _ := ed25519.GenerateKey(nil)
				_, b, err := chunk.BuildDigest("n1", h, s.entries("n1", h), s.digests[archive.DigestKey("n1", h.Add(-time.Hour))], chunk.NewSigner(priv))
				if err != nil {
					t.Fatal(err)
				}
				s.replace(archive.DigestKey("n1", h), b)
				return nil, []want{{chunk.ProblemUnknownKey, "", -2, "n1", h}, {chunk.ProblemDigestGap, "", -2, "n1", h}}
			}},
			{"missing digest", func(s *standard) (chunk.Keys, []want) {
				h := t0.Add(3 * time.Hour)
				s.remove(archive.DigestKey("n2", h))
				return nil, []want{{chunk.ProblemDigestGap, "", -2, "n2", h}}
			}},
			{"re-signed digest (fork)", func(s *standard) (chunk.Keys, []want) {
				h := t0 // drop session a's first chunk from n1's digest of t0
				entries := s.entries("n1", h)[1:]
				_, b, err := chunk.BuildDigest("n1", h, entries, s.digests[archive.DigestKey("n1", h.Add(-time.Hour))], s.signers["n1"])
				if err != nil {
					t.Fatal(err)
				}
				s.replace(archive.DigestKey("n1", h), b)
				return nil, []want{{chunk.ProblemDigestFork, "", -2, "n1", h.Add(time.Hour)},
					{chunk.ProblemUnlisted, s.a.id, 0, "n1", h}}
			}},
			{"unknown key", func(s *standard) (chunk.Keys, []want) {
				keys := s.chunkKeys()
				delete(keys, s.signers["n1"].ID)
				return keys, []want{{chunk.ProblemUnknownKey, s.a.id, 0, "n1", time.Time{}}, {chunk.ProblemUnknownKey, "", -2, "n1", t0}}
			}},
			{"index entry tampered", func(s *standard) (chunk.Keys, []want) {
				e := *s.a.entry
				e.Chunks = slices.Clone(e.Chunks)
				e.Chunks[1].SHA256 = e.Chunks[2].SHA256
				b, _ := json.Marshal(e)
				s.replace(s.a.index[0], b)
				return nil, []want{{archive.ProblemIndex, s.a.id, 1, "", time.Time{}}}
			}},
			{"index entry removed", func(s *standard) (chunk.Keys, []want) {
				s.remove(s.a.index[0])
				return nil, []want{{archive.ProblemIndex, s.a.id, -1, "", time.Time{}}}
			}},
			{"one of a session's day entries removed", func(s *standard) (chunk.Keys, []want) {
				w := newWorld(t, s.store) // a session across midnight in the same store
				w.signers, w.keys = s.signers, s.keys
				x := w.session("n1", t0.Add(14*time.Hour-5*time.Second), 100, 100*time.Millisecond, 4<<10)
				s.remove(x.index[1])
				return nil, []want{{archive.ProblemIndex, x.id, -1, "", time.Time{}}}
			}},
			{"foreign object under a session", func(s *standard) (chunk.Keys, []want) {
				s.putObject(archive.SessionPrefix(s.c.id)+"notes.txt", []byte("hello"))
				return nil, []want{{chunk.ProblemMalformed, s.c.id, -1, "", time.Time{}}}
			}},
		}
		for _, tc := range cases {
			if s3 && !onS3[tc.name] {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				var s *standard
				if tmpl != nil {
					s = tmpl.clone(t)
				} else {
					s = newStandard(t, newStore(t))
				}
				keys, wants := tc.tamper(s)
				if keys == nil {
					keys = s.chunkKeys()
				}
				opts := s.opts()
				if tc.name == "one of a session's day entries removed" {
					opts.To = t0.Add(16 * time.Hour)
					opts.Now = t0.Add(17 * time.Hour)
				}
				r := s.verify(opts, keys)
				for _, w := range wants {
					if !slices.ContainsFunc(r.Findings, w.match) {
						t.Errorf("want %s session=%q seq=%d node=%q hour=%v, got:\n%s", w.problem, w.session, w.seq, w.node, w.hour, findings(r))
					}
				}
				for _, f := range r.Findings {
					if f.Node == "" && f.Session == "" {
						t.Errorf("finding without a location: %v", f)
					}
				}
				t.Logf("%d findings:\n%s", len(r.Findings), findings(r))
			})
		}
	})
}

// TestVerifyWindows: with windows of one chunk, a session verifies clean
// and breaks are still found where they are.
func TestVerifyWindows(t *testing.T) {
	s := newStandard(t, newFS(t))
	opts := s.opts()
	opts.WindowBytes = 1
	if r := s.verify(opts, s.chunkKeys()); !r.OK() {
		t.Fatalf("windows of one chunk, clean store:\n%s", findings(r))
	}
	b := s.get(s.a.chunks[3])
	b[len(b)-1] ^= 1
	s.replace(s.a.chunks[3], b)
	s.remove(s.a.chunks[6])
	c, m := reseal(t, s.world, s.a, 9)
	s.replace(s.a.chunks[9], c)
	s.replace(s.a.manifests[9], m)
	r := s.verify(opts, s.chunkKeys())
	for _, w := range []want{
		{chunk.ProblemPayload, s.a.id, 3, "n1", time.Time{}},
		{chunk.ProblemMissing, s.a.id, 6, "", time.Time{}},
		{chunk.ProblemUnknownKey, s.a.id, 9, "n1", time.Time{}},
		{chunk.ProblemLink, s.a.id, 10, "n1", time.Time{}},
	} {
		if !slices.ContainsFunc(r.Findings, w.match) {
			t.Errorf("want %s at %d, got:\n%s", w.problem, w.seq, findings(r))
		}
	}
	for _, f := range r.Findings {
		if f.Session == s.a.id && (f.Problem == chunk.ProblemMissing && f.Seq != 6 || f.Problem == chunk.ProblemTruncated) {
			t.Errorf("window artefact: %v", f)
		}
	}
}

// TestVerifyDueRule: the digest of an hour is due DigestGrace after the
// hour ends; before that its absence is no gap and the chunks sealed in
// it are not unlisted.
func TestVerifyDueRule(t *testing.T) {
	w := newWorld(t, newFS(t))
	w.node("n1", t0.Add(-24*time.Hour), time.Time{})
	w.session("n1", t0.Add(10*time.Minute), 60, time.Second, 4<<10)
	late := w.session("n1", t0.Add(2*time.Hour+50*time.Minute), 60, time.Second, 4<<10)
	w.digestsFor("n1", t0, t0.Add(2*time.Hour)) // hours t0, t0+1h; t0+2h not written yet

	opts := archive.Options{From: t0, To: t0.Add(3 * time.Hour), Now: t0.Add(3*time.Hour + 10*time.Minute)}
	if r := w.verify(opts, w.chunkKeys()); !r.OK() || r.Nodes[0].Hours != 2 {
		t.Fatalf("hour t0+2h not due at +3h10m: hours %+v, findings:\n%s", r.Nodes, findings(r))
	}
	opts.Now = t0.Add(3*time.Hour + 20*time.Minute)
	r := w.verify(opts, w.chunkKeys())
	if !slices.ContainsFunc(r.Findings, want{chunk.ProblemDigestGap, "", -2, "n1", t0.Add(2 * time.Hour)}.match) {
		t.Fatalf("hour t0+2h due at +3h20m: want a gap, got:\n%s", findings(r))
	}
	for _, f := range r.Findings {
		if f.Problem == chunk.ProblemUnlisted {
			t.Errorf("a chunk of an hour without its digest is not unlisted: %v", f)
		}
	}
	// Once the digest is written, a chunk it does not list is unlisted.
	_, b, err := chunk.BuildDigest("n1", t0.Add(2*time.Hour), w.entries("n1", t0.Add(2*time.Hour))[1:], w.digests[archive.DigestKey("n1", t0.Add(time.Hour))], w.signers["n1"])
	if err != nil {
		t.Fatal(err)
	}
	w.putObject(archive.DigestKey("n1", t0.Add(2*time.Hour)), b)
	r = w.verify(opts, w.chunkKeys())
	if len(r.Findings) != 1 || !want(want{chunk.ProblemUnlisted, late.id, 0, "n1", t0.Add(2 * time.Hour)}).match(r.Findings[0]) {
		t.Fatalf("want chunk 0 of the late session unlisted, got:\n%s", findings(r))
	}
}

// TestVerifyOpenSession: a session still being recorded (no closing chunk,
// no index entry yet) is open, not truncated.
func TestVerifyOpenSession(t *testing.T) {
	w := newWorld(t, newFS(t))
	w.node("n1", t0.Add(-24*time.Hour), time.Time{})
	s := w.session("n1", t0.Add(10*time.Minute), 100, 100*time.Millisecond, 4<<10)
	n := len(s.chunks)
	// Not shipped yet: the closing chunk, its manifest, the index entry.
	w.remove(s.chunks[n-1])
	w.remove(s.manifests[n-1])
	w.remove(s.index[0])
	w.sealed["n1"] = w.sealed["n1"][:n-1]
	w.digestsFor("n1", t0, t0.Add(time.Hour))
	r := w.verify(archive.Options{From: t0, To: t0.Add(time.Hour), Now: t0.Add(2 * time.Hour)}, w.chunkKeys())
	if !r.OK() || !slices.Equal(r.Open, []string{s.id}) {
		t.Fatalf("open %v, findings:\n%s", r.Open, findings(r))
	}
}

// TestVerifySession: one session alone, placed in time by its manifests.
func TestVerifySession(t *testing.T) {
	s := newStandard(t, newFS(t))
	for _, x := range []*shipped{s.a, s.b, s.c} {
		r := s.verify(archive.Options{Session: x.id, Now: t0.Add(7 * time.Hour)}, s.chunkKeys())
		if !r.OK() || r.Sessions != 1 || r.Chunks != len(x.chunks) {
			t.Fatalf("session %s: %d sessions, %d chunks, findings:\n%s", x.id, r.Sessions, r.Chunks, findings(r))
		}
	}
	b := s.get(s.b.chunks[len(s.b.chunks)-1])
	b[len(b)-1] ^= 1
	s.replace(s.b.chunks[len(s.b.chunks)-1], b)
	r := s.verify(archive.Options{Session: s.b.id, Now: t0.Add(7 * time.Hour)}, s.chunkKeys())
	if !slices.ContainsFunc(r.Findings, want{chunk.ProblemPayload, s.b.id, int64(len(s.b.chunks) - 1), "n1", time.Time{}}.match) {
		t.Fatalf("session b, flipped byte:\n%s", findings(r))
	}
	// Deleted whole: found in the digests of a range given.
	for _, k := range append(append(append([]string{}, s.c.chunks...), s.c.manifests...), s.c.index...) {
		s.remove(k)
	}
	if _, err := archive.Verify(s.ctx, s.store, s.chunkKeys(), archive.Options{Session: s.c.id}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted session without a range: %v", err)
	}
	opts := s.opts()
	opts.Session = s.c.id
	r = s.verify(opts, s.chunkKeys())
	if !slices.ContainsFunc(r.Findings, want{archive.ProblemDeleted, s.c.id, -1, "n2", s.c.sealedAt[0].Truncate(time.Hour)}.match) {
		t.Fatalf("deleted session c in range:\n%s", findings(r))
	}
}

func TestSessions(t *testing.T) {
	s := newStandard(t, newFS(t))
	// A session across midnight has an entry on each day; listed once.
	x := s.session("n1", t0.Add(14*time.Hour-5*time.Second), 100, 100*time.Millisecond, 4<<10)
	if len(x.index) != 2 {
		t.Fatalf("%d index entries", len(x.index))
	}
	a := &archive.Archive{Store: s.store}
	got, err := a.Sessions(context.Background(), t0, t0.Add(15*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.Session)
	}
	wantIDs := []string{s.a.id, s.d.id, s.b.id, s.c.id, x.id} // by start
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("sessions %v, want %v", ids, wantIDs)
	}
	got, err = a.Sessions(context.Background(), t0.Add(2*time.Hour+5*time.Second), t0.Add(3*time.Hour))
	if err != nil || len(got) != 1 || got[0].Session != s.b.id {
		t.Fatalf("sessions running in [2h00m05s, 3h): %v %v", got, err)
	}
	got, err = a.Sessions(context.Background(), t0.Add(14*time.Hour), t0.Add(15*time.Hour))
	if err != nil || len(got) != 1 || got[0].Session != x.id {
		t.Fatalf("sessions of the next day: %v %v", got, err)
	}
}

func TestKeysFromStore(t *testing.T) {
	s := newStandard(t, newFS(t))
	got, err := archive.StoreKeys(context.Background(), s.store)
	if err != nil || len(got) != 3 {
		t.Fatalf("%d keys, %v", len(got), err)
	}
	keys, err := archive.Keys(got)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.verify(s.opts(), keys); !r.OK() {
		t.Fatalf("with the store's keys:\n%s", findings(r))
	}
	b, _ := json.Marshal(s.keys)
	list, err := archive.ParsePublishedKeys(b)
	if err != nil || len(list) != 3 {
		t.Fatalf("parse: %d keys, %v", len(list), err)
	}
	bad := s.keys[0]
	bad.ID = s.keys[1].ID
	b, _ = json.Marshal([]archive.PublishedKey{bad})
	if _, err := archive.ParsePublishedKeys(b); err == nil {
		t.Fatal("a key whose id is another's: accepted")
	}
	// A key object under another key's name is refused.
	s.putObject(archive.KeyKey("00112233445566778899aabbccddeeff"), b[1:len(b)-1])
	if got, err := archive.StoreKeys(context.Background(), s.store); err == nil || len(got) != 3 {
		t.Fatalf("misplaced key: %d keys, %v", len(got), err)
	}
}
