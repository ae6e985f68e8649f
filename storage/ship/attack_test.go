package ship

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
	"github.com/phigate/phigate/storage/spool"
)

type gate struct {
	blob.Store
	mu   sync.Mutex
	open bool
}

type closedErr struct{}

func (closedErr) Error() string   { return "gate closed" }
func (closedErr) Retryable() bool { return true }

func (g *gate) Put(ctx context.Context, key string, data []byte, opts blob.PutOptions) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if !open {
		return closedErr{}
	}
	return g.Store.Put(ctx, key, data, opts)
}

// TestRewriteBeforeUploadIsCaughtByTheAnchor is the attack of someone who
// owns the node's disk, keys included: a chunk waiting for upload is
// replaced by one re-sealed and re-signed with the node's own key, with the
// session's events edited. The store's own checks pass (the forgery is
// consistent and signed), but the anchor the cluster state took when the
// chunk was sealed does not match, and says where.
func TestRewriteBeforeUploadIsCaughtByTheAnchor(t *testing.T) {
	dir := t.TempDir()
	fs, err := blob.NewFS(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Store: fs}
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(dir, "recordings"), SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	spDone := make(chan error, 1)
	go func() { spDone <- sp.Run(ctx) }()
	defer func() { cancel(); <-spDone; sp.Close() }()
	auditor, _ := proof.GenerateAuditorKey()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := chunk.NewSigner(priv)
	var mu sync.Mutex
	var anchors []archive.Anchor
	s, err := New(Config{Node: "n1", Dir: filepath.Join(dir, "ship"), Spool: sp, Store: g, Signer: signer,
		Auditor: func() *ecdh.PublicKey { return auditor.PublicKey() }, Tick: 20 * time.Millisecond,
		Anchor: func(_ context.Context, as []Anchor) error {
			mu.Lock()
			anchors = append(anchors, as...)
			mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	// One closed session, sealed but held on the node.
	const id = "victim"
	l, _ := sp.Create(id)
	c := record.NewChain(id)
	t0 := time.Now()
	events := func(sql string) []*record.Event {
		evs := []*record.Event{
			{Kind: record.KindSessionStart, Start: &record.SessionStart{Protocol: "postgres"}},
			{Kind: record.KindCommand, Command: &record.Command{ID: 1, Protocol: record.ProtocolPostgres, Decision: "allow", Postgres: &record.PostgresCommand{Flow: record.FlowSimple, SQL: sql}}},
			{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: "terminate"}},
		}
		for i, ev := range evs {
			ev.Session, ev.Node, ev.Time = id, "n1", t0.Add(time.Duration(i)*time.Millisecond)
		}
		return evs
	}
	for _, ev := range events("DELETE FROM patients") {
		f, _ := c.Seal(nil, ev)
		lsn, _ := l.Append(f)
		sp.Wait(context.Background(), lsn)
	}
	l.Close(context.Background())
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(anchors)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing anchored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done

	// The attacker: the innocent command becomes another, re-chained,
	// re-sealed, re-signed, and written back into the waiting segment.
	c2 := record.NewChain(id)
	var forged [][]byte
	for _, ev := range events("SELECT 1") {
		nf, _ := c2.Seal(nil, ev)
		forged = append(forged, nf)
	}
	b, _ := chunk.NewBuilder(chunk.Config{Session: id, Node: "n1", Auditor: auditor.PublicKey()})
	for _, f := range forged {
		b.Add(f, time.Now())
	}
	sealed, _ := b.Seal(true)
	key := archive.ChunkKey(id, 0)
	_, man, _ := chunk.SignManifest(sealed, key, time.Now(), signer)
	ticks, _, _ := listSegments(s.cfg.Dir)
	rewrote := false
	for _, tick := range ticks {
		objs, err := readSegment(segmentPath(s.cfg.Dir, tick))
		if err != nil {
			t.Fatal(err)
		}
		for i := range objs {
			switch objs[i].Key {
			case key:
				objs[i].Data, rewrote = sealed.Bytes, true
			case archive.ManifestKey(id, 0):
				objs[i].Data = man
			}
		}
		if _, err := writeSegment(s.cfg.Dir, tick, objs); err != nil {
			t.Fatal(err)
		}
	}
	if !rewrote {
		t.Fatal("the chunk was not waiting in a segment")
	}

	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
	s2, err := New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop = context.WithCancel(context.Background())
	go func() { done <- s2.Run(runCtx) }()
	for !s2.Drained() {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done

	// The store alone is fooled: the forgery is whole and signed.
	cb, _ := fs.Get(context.Background(), key)
	mb, _ := fs.Get(context.Background(), archive.ManifestKey(id, 0))
	keys := chunk.Keys{signer.ID: {Node: "n1", Key: priv.Public().(ed25519.PublicKey)}}
	if fsd := chunk.VerifySession(id, []chunk.Object{{Key: key, Bytes: cb}}, []chunk.Object{{Key: archive.ManifestKey(id, 0), Bytes: mb}}, keys); len(fsd) != 0 {
		t.Fatalf("expected the forgery to pass the store's own checks, got %v", fsd)
	}
	// The anchor is not.
	mu.Lock()
	defer mu.Unlock()
	findings, err := archive.CheckAnchors(context.Background(), fs, anchors, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) == 0 || findings[0].Problem != archive.ProblemAnchor || findings[0].Session != id || findings[0].Seq != 0 {
		t.Fatalf("the rewrite was not located by the anchor: %v", findings)
	}
	if errors.Is(err, blob.ErrNotFound) {
		t.Fatal(err)
	}
}
