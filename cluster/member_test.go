package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/internal/freeport"
)

func startMember(t *testing.T, dir string) *cluster.Member {
	t.Helper()
	m, err := cluster.Start(context.Background(), cluster.Config{
		Name: "n1", Dir: dir, PeerAddr: freeport.TestAddr(t), ClientAddr: freeport.TestAddr(t), APIAddr: freeport.TestAddr(t), GossipAddr: freeport.TestAddr(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestMemberRestartsAsItself: a member bootstraps a one-member cluster in
// an empty directory, and restarted on that directory it is the same
// cluster, with what was written.
func TestMemberRestartsAsItself(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := startMember(t, dir)
	pol := cluster.NewPolicies(m.Client())
	if _, err := pol.Get(ctx, 0); !errors.Is(err, cluster.ErrNoPolicy) {
		t.Fatalf("Get on a new cluster: %v, want ErrNoPolicy", err)
	}
	if _, err := pol.Apply(ctx, []byte("grants: []\n"), "alice", 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	again := startMember(t, dir)
	got, err := cluster.NewPolicies(again.Client()).Get(ctx, 0)
	if err != nil || got.Revision != 1 || string(got.Document) != "grants: []\n" || got.AppliedBy != "alice" {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
}

// TestPolicyRevisions: every apply is a new numbered revision with who and
// when; old revisions stay readable; a change based on a stale revision is
// refused; concurrent applies all land, in some order, none lost.
func TestPolicyRevisions(t *testing.T) {
	ctx := context.Background()
	pol := cluster.NewPolicies(startMember(t, t.TempDir()).Client())
	for i := 1; i <= 3; i++ {
		r, err := pol.Apply(ctx, fmt.Appendf(nil, "doc %d", i), fmt.Sprintf("admin-%d", i), uint64(i-1))
		if err != nil || r.Revision != uint64(i) || r.SHA256 == "" || r.AppliedAt.IsZero() {
			t.Fatalf("apply %d: %+v, %v", i, r, err)
		}
	}
	if r, err := pol.Get(ctx, 2); err != nil || string(r.Document) != "doc 2" || r.AppliedBy != "admin-2" {
		t.Fatalf("Get(2) = %+v, %v", r, err)
	}
	if _, err := pol.Get(ctx, 9); !errors.Is(err, cluster.ErrNoPolicy) {
		t.Fatalf("Get(9): %v", err)
	}
	if _, err := pol.Apply(ctx, []byte("stale"), "bob", 2); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("apply on a stale base: %v, want ErrConflict", err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := pol.Apply(ctx, fmt.Appendf(nil, "concurrent %d", i), "c", 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	hist, err := pol.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var revs []uint64
	docs := map[string]bool{}
	for _, h := range hist {
		revs = append(revs, h.Revision)
		if h.Document != nil {
			t.Fatal("History carries documents")
		}
	}
	for r := uint64(4); r <= 11; r++ {
		got, err := pol.Get(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		docs[string(got.Document)] = true
	}
	if !slices.Equal(revs, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}) || len(docs) != 8 {
		t.Fatalf("revisions %v, %d distinct concurrent documents", revs, len(docs))
	}
}

// TestWatchDeliversInOrder: a watcher gets the current revision at once
// and then each new one; an apply error stops it.
func TestWatchDeliversInOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pol := cluster.NewPolicies(startMember(t, t.TempDir()).Client())
	if _, err := pol.Apply(ctx, []byte("first"), "a", 0); err != nil {
		t.Fatal(err)
	}
	got := make(chan cluster.PolicyRevision, 16)
	done := make(chan error, 1)
	go func() {
		done <- pol.Watch(ctx, func(r cluster.PolicyRevision) error {
			got <- r
			if string(r.Document) == "stop" {
				return errors.New("refused")
			}
			return nil
		})
	}()
	want := func(doc string) {
		t.Helper()
		select {
		case r := <-got:
			if string(r.Document) != doc {
				t.Fatalf("delivered %q, want %q", r.Document, doc)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered", doc)
		}
	}
	want("first")
	applied := time.Now()
	if _, err := pol.Apply(ctx, []byte("second"), "a", 0); err != nil {
		t.Fatal(err)
	}
	want("second")
	t.Logf("apply to watcher: %v", time.Since(applied))
	if _, err := pol.Apply(ctx, []byte("stop"), "a", 0); err != nil {
		t.Fatal(err)
	}
	want("stop")
	if err := <-done; err == nil || err.Error() != "refused" {
		t.Fatalf("Watch returned %v, want the apply error", err)
	}
}

// TestStartRefusesBadConfig: what cannot be defaulted is refused before
// anything starts or is written.
func TestStartRefusesBadConfig(t *testing.T) {
	for _, c := range []cluster.Config{
		{Name: "n1"},
		{Dir: t.TempDir()},
		{Name: "n 1", Dir: t.TempDir()},
		{Name: "n1", Dir: t.TempDir(), Voters: 2},
		{Name: "n1", Dir: t.TempDir(), Voters: 7},
		{Name: "n1", Dir: t.TempDir(), PeerAddr: "no-port"},
		{Name: "n1", Dir: t.TempDir(), GossipAddr: "0.0.0.0:7946"},
		{Name: "n1", Dir: t.TempDir(), GossipAddr: "gossip.example:7946"},
		{Name: "n1", Dir: t.TempDir(), Join: []string{"127.0.0.1:1"}, JoinToken: "not-a-token"},
	} {
		if m, err := cluster.Start(context.Background(), c); err == nil {
			m.Close()
			t.Errorf("%+v started", c)
		}
	}
}
