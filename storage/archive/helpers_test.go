package archive_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/miniotest"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

// t0 is the start of the hours the fixtures record in.
var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// newS3 is a store in a fresh bucket of the package's MinIO: with object
// lock and versioning when locked, else plain (deletable, for tampering).
func newS3(t testing.TB, locked bool) *blob.S3 {
	t.Helper()
	srv := miniotest.Shared(t)
	bucket := srv.MakePlainBucket(t)
	if locked {
		bucket = srv.MakeBucket(t)
	}
	ak, sk := srv.RootCredentials()
	s, err := blob.NewS3(blob.S3Config{Endpoint: srv.URL(), Bucket: bucket, Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newFS(t testing.TB) *blob.FS {
	t.Helper()
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// world ships recordings into a store as the shipper does (layout.go):
// chunks and signed manifests per session, an index entry per day, a
// chained digest per node and hour, and the nodes' published keys.
type world struct {
	t       testing.TB
	ctx     context.Context
	store   blob.Store
	put     blob.PutOptions
	auditor *ecdh.PrivateKey
	signers map[string]chunk.Signer
	keys    []archive.PublishedKey
	// sealed: node -> what it sealed, for its digests.
	sealed   map[string][]sealed
	sessions map[string]*shipped
	digests  map[string][]byte // key -> bytes of every digest written
}

type sealed struct {
	at    time.Time
	entry chunk.DigestEntry
}

// shipped is one session as stored.
type shipped struct {
	id        string
	node      string
	recording []byte // record.Magic and every frame: the spool's file
	chunks    []string
	manifests []string
	index     []string
	sealedAt  []time.Time
	entry     *archive.IndexEntry
}

func newWorld(t testing.TB, store blob.Store) *world {
	t.Helper()
	a, err := proof.GenerateAuditorKey()
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, ctx: context.Background(), store: store, auditor: a,
		signers: map[string]chunk.Signer{}, sealed: map[string][]sealed{}, sessions: map[string]*shipped{}, digests: map[string][]byte{}}
}

// node makes node's signing key, valid in [notBefore, notAfter), and
// publishes it (keys/ in the store too).
func (w *world) node(name string, notBefore, notAfter time.Time) {
	w.t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	s := chunk.NewSigner(priv)
	w.signers[name] = s
	k := archive.PublishedKey{ID: s.ID, Node: name, Public: pub, NotBefore: notBefore, NotAfter: notAfter}
	w.keys = append(w.keys, k)
	b, _ := json.Marshal(k)
	w.putObject(archive.KeyKey(k.ID), b)
}

func (w *world) chunkKeys() chunk.Keys {
	w.t.Helper()
	k, err := archive.Keys(w.keys)
	if err != nil {
		w.t.Fatal(err)
	}
	return k
}

func (w *world) putObject(key string, b []byte) {
	w.t.Helper()
	if err := w.store.Put(w.ctx, key, b, w.put); err != nil {
		w.t.Fatalf("put %s: %v", key, err)
	}
}

// record makes the frames of a session of n events, one every step from
// start, and the time of each.
func record_(t testing.TB, id, node string, start time.Time, n int, step time.Duration) ([][]byte, []time.Time) {
	t.Helper()
	c := record.NewChain(id)
	var out [][]byte
	var times []time.Time
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * step)
		ev := &record.Event{Time: at, Node: node, Identity: "agent-7", Resource: "ehr"}
		switch {
		case i == 0:
			ev.Kind, ev.Start = record.KindSessionStart, &record.SessionStart{}
		case i == n-1:
			ev.Kind, ev.End = record.KindSessionEnd, &record.SessionEnd{Reason: "terminate"}
		case i%2 == 1:
			ev.Kind = record.KindCommand
			ev.Command = &record.Command{ID: uint64(i/2 + 1), Protocol: record.ProtocolPostgres, Decision: "allow", Classes: []string{"read"},
				Postgres: &record.PostgresCommand{Flow: record.FlowExtended, Step: record.StepExecute,
					SQL:    "SELECT p.id, p.name, p.birth_date FROM patients p WHERE p.id = $1",
					Params: []record.Param{{Value: fmt.Sprint(100000 + i*7919%50000)}}}}
		default:
			ev.Kind = record.KindResult
			ev.Result = &record.Result{Command: uint64(i / 2), Tag: "SELECT 1", Rows: 1, Bytes: int64(80 + i%97)}
		}
		b, err := c.Seal(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		times = append(times, at)
	}
	return out, times
}

// session records and ships a session of n events held by node, starting
// at start, one event every step, in chunks of at most maxBytes of frames.
func (w *world) session(node string, start time.Time, n int, step time.Duration, maxBytes int) *shipped {
	w.t.Helper()
	id := session.NewID(start)
	frames, times := record_(w.t, id, node, start, n, step)
	s := &shipped{id: id, node: node}
	for _, f := range frames {
		s.recording = append(s.recording, f...)
	}
	b, err := chunk.NewBuilder(chunk.Config{Session: id, Node: node, Auditor: w.auditor.PublicKey(), MaxBytes: maxBytes})
	if err != nil {
		w.t.Fatal(err)
	}
	e := &archive.IndexEntry{Version: 1, Session: id, Node: node, Identity: "agent-7", Kind: "agent", Resource: "ehr",
		Protocol: "postgres", Start: times[0], End: times[n-1], State: archive.StateClosed, Reason: "terminate", Events: uint64(n)}
	ship := func(sc *chunk.Sealed) {
		key := archive.ChunkKey(id, sc.Header.Seq)
		at := sc.Header.LastTime.Add(50 * time.Millisecond)
		_, m, err := chunk.SignManifest(sc, key, at, w.signers[node])
		if err != nil {
			w.t.Fatal(err)
		}
		w.putObject(key, sc.Bytes)
		w.putObject(archive.ManifestKey(id, sc.Header.Seq), m)
		s.chunks = append(s.chunks, key)
		s.manifests = append(s.manifests, archive.ManifestKey(id, sc.Header.Seq))
		s.sealedAt = append(s.sealedAt, at)
		w.sealed[node] = append(w.sealed[node], sealed{at, chunk.DigestEntry{Object: key, Session: id, Seq: sc.Header.Seq, Hash: sc.Sum}})
		e.RawBytes += int64(sc.Header.RawSize)
		e.Stored += int64(len(sc.Bytes))
		e.Chunks = append(e.Chunks, archive.IndexChunk{Seq: sc.Header.Seq, Object: key, SHA256: hex.EncodeToString(sc.Sum[:]), Node: node})
	}
	for i, f := range frames {
		err := b.Add(f, times[i])
		if errors.Is(err, chunk.ErrFull) {
			sc, serr := b.Seal(false)
			if serr != nil {
				w.t.Fatal(serr)
			}
			ship(sc)
			err = b.Add(f, times[i])
		}
		if err != nil {
			w.t.Fatal(err)
		}
	}
	sc, err := b.Seal(true)
	if err != nil {
		w.t.Fatal(err)
	}
	ship(sc)
	entry, _ := json.Marshal(e)
	for _, d := range archive.Days(e.Start, e.End) {
		key := archive.IndexKey(d, id)
		w.putObject(key, entry)
		s.index = append(s.index, key)
	}
	s.entry = e
	w.sessions[id] = s
	return s
}

// digestsFor writes node's chained digests for the hours [from, to),
// listing the chunks it sealed in each.
func (w *world) digestsFor(node string, from, to time.Time) {
	w.t.Helper()
	var prev []byte
	for h := from; h.Before(to); h = h.Add(time.Hour) {
		_, b, err := chunk.BuildDigest(node, h, w.entries(node, h), prev, w.signers[node])
		if err != nil {
			w.t.Fatal(err)
		}
		w.putObject(archive.DigestKey(node, h), b)
		w.digests[archive.DigestKey(node, h)] = b
		prev = b
	}
}

// entries lists what node sealed in the hour starting at h.
func (w *world) entries(node string, h time.Time) []chunk.DigestEntry {
	var out []chunk.DigestEntry
	for _, s := range w.sealed[node] {
		if s.at.Truncate(time.Hour).Equal(h) {
			out = append(out, s.entry)
		}
	}
	return out
}

// replace swaps the object under key for b, as someone with delete rights
// on a store without object lock can.
func (w *world) replace(key string, b []byte) {
	w.t.Helper()
	w.remove(key)
	w.putObject(key, b)
}

func (w *world) remove(key string) {
	w.t.Helper()
	if err := w.store.Delete(w.ctx, key); err != nil {
		w.t.Fatalf("delete %s: %v", key, err)
	}
}

func (w *world) get(key string) []byte {
	w.t.Helper()
	b, err := w.store.Get(w.ctx, key)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// standard is the world most tests use, over the range [t0, t0+5h):
//
//   - n1, a node throughout; n2 joined at t0+2h; n3 left at t0+1h;
//   - session a (n1, t0+10m, several chunks), b (n1, across the hour
//     t0+2h, sealed in two hours), c (n2, t0+3h), d (n3, t0+20m);
//   - digests: n1 from t0-2h to t0+6h, n2 from t0+2h, n3 until t0+1h.
type standard struct {
	*world
	a, b, c, d *shipped
}

func newStandard(t testing.TB, store blob.Store) *standard {
	w := newWorld(t, store)
	w.node("n1", t0.Add(-24*time.Hour), time.Time{})
	w.node("n2", t0.Add(2*time.Hour), time.Time{})
	w.node("n3", t0.Add(-24*time.Hour), t0.Add(time.Hour))
	s := &standard{world: w}
	s.a = w.session("n1", t0.Add(10*time.Minute), 240, 100*time.Millisecond, 4<<10)
	s.b = w.session("n1", t0.Add(2*time.Hour-10*time.Second), 200, 100*time.Millisecond, 4<<10)
	s.c = w.session("n2", t0.Add(3*time.Hour), 60, time.Second, 8<<10)
	s.d = w.session("n3", t0.Add(20*time.Minute), 40, time.Second, 8<<10)
	w.digestsFor("n1", t0.Add(-2*time.Hour), t0.Add(6*time.Hour))
	w.digestsFor("n2", t0.Add(2*time.Hour), t0.Add(6*time.Hour))
	w.digestsFor("n3", t0.Add(-2*time.Hour), t0.Add(time.Hour))
	if len(s.a.chunks) < 4 || s.b.sealedAt[0].Hour() == s.b.sealedAt[len(s.b.sealedAt)-1].Hour() {
		t.Fatalf("fixture: session a has %d chunks; b sealed %v .. %v", len(s.a.chunks), s.b.sealedAt[0], s.b.sealedAt[len(s.b.sealedAt)-1])
	}
	return s
}

// clone is s in a copy of its directory store (blob.FS), for a test that
// tampers with it: copying files is much cheaper than writing every object
// again with its fsyncs. Maps are copied, so that what a test adds does not
// leak into the next.
func (s *standard) clone(t testing.TB) *standard {
	t.Helper()
	src := s.store.(*blob.FS).Dir()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := blob.NewFS(dst)
	if err != nil {
		t.Fatal(err)
	}
	w := *s.world
	w.t, w.store = t, store
	w.signers = maps.Clone(s.signers)
	w.keys = slices.Clone(s.keys)
	w.sealed = maps.Clone(s.sealed)
	w.sessions = maps.Clone(s.sessions)
	w.digests = maps.Clone(s.digests)
	return &standard{world: &w, a: s.a, b: s.b, c: s.c, d: s.d}
}

// opts are the options of a check of the standard range, long after it.
func (s *standard) opts() archive.Options {
	return archive.Options{From: t0, To: t0.Add(5 * time.Hour), Now: t0.Add(7 * time.Hour)}
}

func (w *world) verify(opts archive.Options, keys chunk.Keys) *archive.Report {
	w.t.Helper()
	r, err := archive.Verify(w.ctx, w.store, keys, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func findings(r *archive.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString("  " + f.String() + "\n")
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// header decodes the header of the chunk stored under key.
func header(t testing.TB, w *world, key string) chunk.Header {
	t.Helper()
	c, err := chunk.Decode(w.get(key))
	if c == nil {
		t.Fatal(err)
	}
	return c.Header
}
