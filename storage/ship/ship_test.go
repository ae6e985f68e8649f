package ship_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/miniotest"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
	"github.com/phigate/phigate/storage/ship"
	"github.com/phigate/phigate/storage/spool"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

// rig is a spool, a shipper directory and the keys a node has.
type rig struct {
	t       testing.TB
	dir     string
	sp      *spool.Spool
	spDone  chan error
	stopSp  context.CancelFunc
	auditor *ecdh.PrivateKey
	signer  chunk.Signer
	keys    chunk.Keys
	store   blob.Store
}

func newRig(t testing.TB, store blob.Store) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), store: store}
	var err error
	if r.auditor, err = proof.GenerateAuditorKey(); err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r.signer = chunk.NewSigner(priv)
	r.keys = chunk.Keys{r.signer.ID: {Node: "n1", Key: priv.Public().(ed25519.PublicKey)}}
	if store == nil {
		fs, err := blob.NewFS(filepath.Join(r.dir, "store"))
		if err != nil {
			t.Fatal(err)
		}
		r.store = fs
	}
	r.openSpool()
	t.Cleanup(r.closeSpool)
	return r
}

func (r *rig) openSpool() {
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(r.dir, "recordings"), SegmentBytes: 1 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.sp, r.stopSp, r.spDone = sp, cancel, make(chan error, 1)
	go func() { r.spDone <- sp.Run(ctx) }()
}

func (r *rig) closeSpool() {
	if r.sp == nil {
		return
	}
	r.stopSp()
	<-r.spDone
	r.sp.Close()
	r.sp = nil
}

func (r *rig) config(mod func(*ship.Config)) ship.Config {
	cfg := ship.Config{Node: "n1", Dir: filepath.Join(r.dir, "ship"), Spool: r.sp, Store: r.store, Signer: r.signer,
		Auditor: func() *ecdh.PublicKey { return r.auditor.PublicKey() }, Tick: 20 * time.Millisecond,
		MaxDuration: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

func (r *rig) start(cfg ship.Config) (*ship.Shipper, func() error) {
	r.t.Helper()
	s, err := ship.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	r.t.Cleanup(func() { stop() })
	return s, stop
}

// session records n events through the spool, the way session.Recording
// does, and returns the file's bytes once closed (if close).
type recSession struct {
	id    string
	log   *spool.Log
	chain *record.Chain
	sp    *spool.Spool
	n     int
	bytes []byte // every frame appended: the recording file's content
}

func (r *rig) create(id string) *recSession {
	l, err := r.sp.Create(id)
	if err != nil {
		r.t.Fatal(err)
	}
	return &recSession{id: id, log: l, chain: record.NewChain(id), sp: r.sp}
}

func (s *recSession) add(t testing.TB, ev *record.Event) {
	t.Helper()
	ev.Session, ev.Node = s.id, "n1"
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	f, err := s.chain.Seal(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	s.bytes = append(s.bytes, f...)
	lsn, err := s.log.Append(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sp.Wait(context.Background(), lsn); err != nil {
		t.Fatal(err)
	}
	s.n++
}

// addLazy records ev without waiting for it to be durable (a result
// summary's way; the next add or the close makes it durable).
func (s *recSession) addLazy(t testing.TB, ev *record.Event) {
	t.Helper()
	ev.Session, ev.Node = s.id, "n1"
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	f, err := s.chain.Seal(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	s.bytes = append(s.bytes, f...)
	if _, err := s.log.AppendLazy(f); err != nil {
		t.Fatal(err)
	}
	s.n++
}

func (s *recSession) start(t *testing.T) {
	s.add(t, &record.Event{Kind: record.KindSessionStart, Identity: "agent-7", Resource: "ehr",
		Start: &record.SessionStart{Protocol: "postgres", IdentityKind: "agent", Client: "127.0.0.1:5000"}})
}

func (s *recSession) command(t *testing.T, i int) {
	s.add(t, &record.Event{Kind: record.KindCommand, Identity: "agent-7", Resource: "ehr",
		Command: &record.Command{ID: uint64(i), Protocol: record.ProtocolPostgres, Decision: "allow", Classes: []string{"read"},
			Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: fmt.Sprintf("SELECT name, birth_date FROM patients WHERE id = %d", 1000+i)}}})
	s.add(t, &record.Event{Kind: record.KindResult, Identity: "agent-7", Resource: "ehr",
		Result: &record.Result{Command: uint64(i), Tag: "SELECT 1", Rows: 1, Bytes: 120}})
}

func (s *recSession) end(t *testing.T) []byte {
	t.Helper()
	s.add(t, &record.Event{Kind: record.KindSessionEnd, Identity: "agent-7", Resource: "ehr", End: &record.SessionEnd{Reason: "terminate"}})
	if err := s.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s.bytes
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stored reads a session back from the store: verifies its chunks and
// manifests, opens them with the auditors' key and returns the recording
// file they make.
func (r *rig) stored(id string) []byte {
	r.t.Helper()
	ctx := context.Background()
	infos, err := r.store.List(ctx, archive.SessionPrefix(id))
	if err != nil {
		r.t.Fatal(err)
	}
	var chunks, mans []chunk.Object
	for _, in := range infos {
		b, err := r.store.Get(ctx, in.Key)
		if err != nil {
			r.t.Fatal(err)
		}
		_, _, kind, ok := archive.ParseSessionObject(in.Key)
		if !ok {
			r.t.Fatalf("stray object %s", in.Key)
		}
		if kind == "chunk" {
			chunks = append(chunks, chunk.Object{Key: in.Key, Bytes: b})
		} else {
			mans = append(mans, chunk.Object{Key: in.Key, Bytes: b})
		}
	}
	if fs := chunk.VerifySession(id, chunks, mans, r.keys); len(fs) > 0 {
		r.t.Fatalf("session %s does not verify: %v", id, fs)
	}
	out := []byte(record.Magic)
	op := chunk.NewOpener(r.auditor)
	for _, c := range chunks {
		_, frames, err := op.Open(c.Bytes)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, frames...)
	}
	return out
}

func TestShipsClosedAndLiveSessions(t *testing.T) {
	r := newRig(t, nil)
	// One session closed before the shipper starts (an earlier run's).
	early := r.create("s-early")
	early.start(t)
	early.command(t, 1)
	earlyBytes := early.end(t)

	var anchored sync.Map
	s, stop := r.start(r.config(func(c *ship.Config) {
		c.Anchor = func(_ context.Context, as []ship.Anchor) error {
			for _, a := range as {
				anchored.Store(a.Session, a)
			}
			return nil
		}
	}))
	live := r.create("s-live")
	live.start(t)
	for i := 1; i <= 5; i++ {
		live.command(t, i)
	}
	// A live session's events are sealed and anchored within about
	// MaxDuration, before it ends.
	waitFor(t, "a live session's first chunk anchored", 5*time.Second, func() bool {
		a, ok := anchored.Load("s-live")
		return ok && a.(ship.Anchor).LastEvent >= 10
	})
	if _, err := r.store.Stat(context.Background(), archive.ChunkKey("s-live", 0)); err != nil {
		waitFor(t, "the live chunk uploaded", 5*time.Second, func() bool {
			_, err := r.store.Stat(context.Background(), archive.ChunkKey("s-live", 0))
			return err == nil
		})
	}
	for i := 6; i <= 8; i++ {
		live.command(t, i)
	}
	liveBytes := live.end(t)
	waitFor(t, "everything shipped", 10*time.Second, s.Drained)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	for id, want := range map[string][]byte{"s-early": earlyBytes, "s-live": liveBytes} {
		if got := r.stored(id); !bytes.Equal(got, want) {
			t.Errorf("%s: the store gives back %d bytes, the spool had %d", id, len(got), len(want))
		}
		if _, err := os.Stat(r.sp.SessionFile(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the spool file is still there after shipping (%v)", id, err)
		}
		a, _ := anchored.Load(id)
		if a == nil || !a.(ship.Anchor).Closing {
			t.Errorf("%s: the closing chunk was not anchored: %+v", id, a)
		}
		ents, err := r.store.List(context.Background(), archive.IndexDayPrefix(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range ents {
			if e.Key != archive.IndexKey(time.Now(), id) {
				continue
			}
			b, err := r.store.Get(context.Background(), e.Key)
			if err != nil {
				t.Fatal(err)
			}
			ie, err := archive.ParseIndexEntry(b)
			if err != nil {
				t.Fatal(err)
			}
			if ie.Identity != "agent-7" || ie.Resource != "ehr" || ie.Kind != "agent" || ie.State != archive.StateClosed || ie.Reason != "terminate" || len(ie.Chunks) == 0 {
				t.Errorf("%s: index entry %+v", id, ie)
			}
			found = true
		}
		if !found {
			t.Errorf("%s: no index entry", id)
		}
	}
	if st := s.Stats(); st.Backlog != 0 || st.Sealed == 0 || st.RawBytes == 0 {
		t.Errorf("stats after draining: %+v", st)
	}
}

// flaky is a store that fails (retryably) while down is set, and counts
// what it was asked.
type flaky struct {
	blob.Store
	down atomic.Bool
	puts atomic.Int64
}

type downErr struct{}

func (downErr) Error() string   { return "store down" }
func (downErr) Retryable() bool { return true }

func (f *flaky) Put(ctx context.Context, key string, data []byte, opts blob.PutOptions) error {
	f.puts.Add(1)
	if f.down.Load() {
		return downErr{}
	}
	return f.Store.Put(ctx, key, data, opts)
}

func TestOutageBacklogCapAndDrain(t *testing.T) {
	fs, err := blob.NewFS(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	st := &flaky{Store: fs}
	st.down.Store(true)
	r := newRig(t, st)
	s, stop := r.start(r.config(func(c *ship.Config) { c.Cap = 8 << 10 }))
	var want = map[string][]byte{}
	for i := 0; s.Admit() == nil; i++ {
		if i > 200 {
			t.Fatal("the backlog never reached its cap")
		}
		rs := r.create(fmt.Sprintf("s-%03d", i))
		rs.start(t)
		rs.command(t, 1)
		want[rs.id] = rs.end(t)
		time.Sleep(30 * time.Millisecond) // let a tick count it
	}
	if !errors.Is(s.Admit(), ship.ErrFull) {
		t.Fatalf("Admit = %v at the cap", s.Admit())
	}
	if st.puts.Load() == 0 {
		t.Fatal("nothing was tried while the store was down")
	}
	for id := range want {
		if _, err := os.Stat(r.sp.SessionFile(id)); err != nil {
			t.Fatalf("%s left the spool while the store was down: %v", id, err)
		}
	}
	st.down.Store(false)
	waitFor(t, "the backlog drained", 60*time.Second, s.Drained)
	if err := s.Admit(); err != nil {
		t.Errorf("Admit after draining: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for id, b := range want {
		if got := r.stored(id); !bytes.Equal(got, b) {
			t.Errorf("%s differs after the outage", id)
		}
	}
}

func TestRestartResumesWithoutDuplicates(t *testing.T) {
	fs, err := blob.NewFS(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	st := &flaky{Store: fs}
	st.down.Store(true) // nothing leaves the node before the "crash"
	r := newRig(t, st)
	s1, stop1 := r.start(r.config(nil))
	rs := r.create("s-long")
	rs.start(t)
	for i := 1; i <= 20; i++ {
		rs.command(t, i)
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "chunks sealed", 5*time.Second, func() bool { return s1.Stats().Sealed >= 2 })
	stop1()
	// The session goes on under a new shipper: the same session, later chunks.
	st.down.Store(false)
	s2, stop2 := r.start(r.config(nil))
	for i := 21; i <= 30; i++ {
		rs.command(t, i)
	}
	want := rs.end(t)
	waitFor(t, "everything shipped", 10*time.Second, s2.Drained)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if got := r.stored("s-long"); !bytes.Equal(got, want) {
		t.Fatalf("after a restart the store holds %d bytes, the spool had %d", len(got), len(want))
	}
}

func TestHourlyDigestsIncludingEmptyHours(t *testing.T) {
	r := newRig(t, nil)
	var mu sync.Mutex
	now := time.Date(2026, 11, 30, 9, 59, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s, err := ship.New(r.config(func(c *ship.Config) { c.Now = clock }))
	if err != nil {
		t.Fatal(err)
	}
	rs := r.create("s-1")
	rs.start(t)
	rs.command(t, 1)
	want := rs.end(t)
	// A shipper driven tick by tick: feed-less, so the closed session is
	// found by a fresh scan.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the session shipped", 10*time.Second, s.Drained)
	advance(3 * time.Hour) // 12:59: digests for 9, 10 and 11 are due
	waitFor(t, "three digests", 10*time.Second, func() bool {
		l, _ := r.store.List(context.Background(), archive.DigestNodePrefix("n1"))
		return len(l) == 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l, err := r.store.List(context.Background(), archive.DigestNodePrefix("n1"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []chunk.Object
	for _, in := range l {
		b, err := r.store.Get(context.Background(), in.Key)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, chunk.Object{Key: in.Key, Bytes: b})
	}
	from := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	ds, fs := chunk.VerifyDigests("n1", objs, r.keys, from, from.Add(3*time.Hour))
	if len(fs) > 0 {
		t.Fatalf("digests: %v", fs)
	}
	present := map[string][chunk.HashSize]byte{}
	cl, _ := r.store.List(context.Background(), archive.SessionPrefix("s-1"))
	for _, in := range cl {
		if _, _, kind, _ := archive.ParseSessionObject(in.Key); kind == "chunk" {
			b, _ := r.store.Get(context.Background(), in.Key)
			present[in.Key] = sha256Sum(b)
		}
	}
	for _, d := range ds {
		t.Logf("digest %v: %d entries", d.Hour, len(d.Entries))
	}
	if fs := chunk.CheckListed(ds, present, true); len(fs) > 0 {
		t.Fatalf("listing: %v", fs)
	}
	if len(ds[0].Entries) == 0 || len(ds[1].Entries) != 0 || len(ds[2].Entries) != 0 {
		t.Errorf("entries per hour: %d %d %d", len(ds[0].Entries), len(ds[1].Entries), len(ds[2].Entries))
	}
	if got := r.stored("s-1"); !bytes.Equal(got, want) {
		t.Error("the session does not read back")
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestMinIOOutage ships to a real MinIO bucket with object lock, stops the
// server under load, and starts it again: the backlog grows to its cap
// (new sessions refused), then drains, and every session verifies; the
// objects are locked.
func TestMinIOOutage(t *testing.T) {
	ctx := context.Background()
	srv, err := miniotest.Start(ctx, t.TempDir())
	if err != nil {
		t.Skip(err) // MinIO could not be built or started here
	}
	defer srv.Stop()
	bucket := srv.MakeBucket(t)
	ak, sk := srv.RootCredentials()
	s3, err := blob.NewS3(blob.S3Config{Endpoint: srv.URL(), Bucket: bucket, Credentials: blob.Credentials{AccessKey: ak, SecretKey: sk}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.CheckBucket(ctx); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, s3)
	retain := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	s, stop := r.start(r.config(func(c *ship.Config) {
		c.Cap = 16 << 10
		c.Retention = func(string) blob.PutOptions { return blob.PutOptions{RetainUntil: retain, Mode: blob.Governance} }
	}))
	want := map[string][]byte{}
	record := func(i int) {
		rs := r.create(fmt.Sprintf("m-%03d", i))
		rs.start(t)
		rs.command(t, 1)
		want[rs.id] = rs.end(t)
	}
	for i := 0; i < 5; i++ {
		record(i)
	}
	waitFor(t, "the first sessions shipped", 30*time.Second, s.Drained)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	i := 5
	for ; s.Admit() == nil; i++ {
		if i > 300 {
			t.Fatal("the backlog never reached its cap while the store was down")
		}
		record(i)
		time.Sleep(25 * time.Millisecond)
	}
	if s.Stats().UploadErrors == 0 {
		t.Error("no upload failed while MinIO was stopped")
	}
	for id := range want {
		if id >= "m-005" {
			if _, err := os.Stat(r.sp.SessionFile(id)); err != nil {
				t.Fatalf("%s left the spool while the store was down: %v", id, err)
			}
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := srv.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backlog drained after the outage", 3*time.Minute, s.Drained)
	if err := s.Admit(); err != nil {
		t.Errorf("still refusing after draining: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for id, b := range want {
		if got := r.stored(id); !bytes.Equal(got, b) {
			t.Errorf("%s differs after the outage", id)
		}
	}
	// Locked: neither deleted nor overwritten.
	key := archive.ChunkKey("m-000", 0)
	if err := s3.Delete(ctx, key); !errors.Is(err, blob.ErrRetained) {
		t.Errorf("deleting a locked chunk: %v", err)
	}
	if err := s3.Put(ctx, key, []byte("forged"), blob.PutOptions{}); !errors.Is(err, blob.ErrExists) {
		t.Errorf("overwriting a locked chunk: %v", err)
	}
	info, err := s3.Stat(ctx, key)
	if err != nil || !info.RetainUntil.Equal(retain) || info.Mode != blob.Governance {
		t.Errorf("retention of a chunk: %+v %v", info, err)
	}
}
