package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/internal/freeport"
)

// indexMember is a one-member cluster in dir.
func indexMember(t *testing.T, dir string) *cluster.Member {
	t.Helper()
	m, err := cluster.Start(context.Background(), cluster.Config{Name: "n1", Dir: dir, PeerAddr: freeport.TestAddr(t), ClientAddr: freeport.TestAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// runSessions runs s until the test ends, or until the returned stop is
// called (which waits for Run to return).
func runSessions(t *testing.T, s *cluster.Sessions) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v, want context.Canceled", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitState polls until session id is in state want, and returns it.
func waitState(t *testing.T, s *cluster.Sessions, id string, want cluster.SessionState, within time.Duration) cluster.SessionInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := s.Get(context.Background(), id)
		if err == nil && got.State == want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: %+v, %v; want state %q within %v", id, got, err, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSessionIndexLiveEndedLost: a started session is live with what was
// given; ended, it is ended with its time and reason, and its record is
// kept under a retention lease; a session still live when its node stops
// (Run ends and revokes the lease) is node lost. List filters.
func TestSessionIndexLiveEndedLost(t *testing.T) {
	ctx := context.Background()
	m := indexMember(t, t.TempDir())
	idx := cluster.NewSessions(m.Client(), "node-a", 2*time.Second)
	stop := runSessions(t, idx)
	start := time.Now().UTC().Truncate(time.Millisecond)
	idx.Started(cluster.SessionInfo{ID: "S1", Node: "ignored", Identity: "reader-bot", Resource: "clinic", ClientAddr: "10.0.0.7:51234", Start: start})
	idx.Started(cluster.SessionInfo{ID: "S2", Identity: "writer-ci", Resource: "clinic", Start: start.Add(time.Millisecond)})
	s1 := waitState(t, idx, "S1", cluster.SessionLive, 10*time.Second)
	if s1.Node != "node-a" || s1.Identity != "reader-bot" || s1.Resource != "clinic" || s1.ClientAddr != "10.0.0.7:51234" || !s1.Start.Equal(start) || !s1.End.IsZero() {
		t.Fatalf("live S1 = %+v", s1)
	}
	waitState(t, idx, "S2", cluster.SessionLive, 10*time.Second)

	end := start.Add(3 * time.Second)
	idx.Ended("S1", end, "terminate")
	s1 = waitState(t, idx, "S1", cluster.SessionEnded, 10*time.Second)
	if !s1.End.Equal(end) || s1.EndReason != "terminate" || s1.Identity != "reader-bot" || s1.Node != "node-a" {
		t.Fatalf("ended S1 = %+v", s1)
	}
	// The record is kept for the retention period, then goes.
	resp, err := m.Client().Get(ctx, "/phigate/sessions/S1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("record of S1: %v, %v", resp, err)
	}
	ttl, err := m.Client().TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || time.Duration(ttl.TTL)*time.Second < cluster.SessionRetention {
		t.Fatalf("retention lease TTL %v, %v; want at least %v", ttl, err, cluster.SessionRetention)
	}

	live, err := idx.List(ctx, cluster.SessionFilter{State: cluster.SessionLive})
	if err != nil || len(live) != 1 || live[0].ID != "S2" {
		t.Fatalf("live sessions: %+v, %v", live, err)
	}
	all, err := idx.List(ctx, cluster.SessionFilter{Node: "node-a"})
	if err != nil || len(all) != 2 || all[0].ID != "S1" || all[1].ID != "S2" {
		t.Fatalf("node-a's sessions: %+v, %v", all, err)
	}
	if none, err := idx.List(ctx, cluster.SessionFilter{Identity: "nobody"}); err != nil || len(none) != 0 {
		t.Fatalf("nobody's sessions: %+v, %v", none, err)
	}
	if _, err := idx.Get(ctx, "S9"); !errors.Is(err, cluster.ErrNoSession) {
		t.Fatalf("Get(S9): %v, want ErrNoSession", err)
	}

	// The node stops with S2 still live: S2 is node lost at once, S1 stays
	// ended.
	stop()
	reader := cluster.NewSessions(m.Client(), "node-b", 0)
	waitState(t, reader, "S2", cluster.SessionNodeLost, time.Second)
	waitState(t, reader, "S1", cluster.SessionEnded, time.Second)
}

// severableLease is the member's own lessor until sever is called; then
// keep-alives stop and every lease call fails, as for a node cut off from
// the cluster (crashed, frozen, or its network gone): nothing is revoked,
// and etcd lets the lease expire on its own.
type severableLease struct {
	clientv3.Lease
	severed context.Context
}

var errSevered = errors.New("severed from the cluster")

func (l *severableLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	if l.severed.Err() != nil {
		return nil, errSevered
	}
	return l.Lease.Grant(ctx, ttl)
}

func (l *severableLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	if l.severed.Err() != nil {
		return nil, errSevered
	}
	return l.Lease.Revoke(ctx, id)
}

func (l *severableLease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	if l.severed.Err() != nil {
		return nil, errSevered
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(l.severed, cancel)
	return l.Lease.KeepAlive(ctx, id)
}

// TestSessionIndexNodeCrash: a node that stops renewing its lease without
// revoking it has its live sessions shown as node lost once the lease's
// TTL has passed, and not before.
func TestSessionIndexNodeCrash(t *testing.T) {
	m := indexMember(t, t.TempDir())
	severed, sever := context.WithCancel(context.Background())
	defer sever()
	nc := clientv3.NewCtxClient(context.Background())
	nc.KV, nc.Lease = m.Client().KV, &severableLease{Lease: m.Client().Lease, severed: severed}
	crashed := cluster.NewSessions(nc, "node-c", 2*time.Second)
	runSessions(t, crashed)
	crashed.Started(cluster.SessionInfo{ID: "C1", Identity: "reader-bot", Resource: "clinic", Start: time.Now()})
	reader := cluster.NewSessions(m.Client(), "node-a", 0)
	waitState(t, reader, "C1", cluster.SessionLive, 10*time.Second)
	lost := time.Now()
	sever() // the crash: no more keep-alives, no revoke
	// Still live for about the TTL (2 s; etcd may add up to a second).
	if got, err := reader.Get(context.Background(), "C1"); err != nil || got.State != cluster.SessionLive {
		t.Fatalf("just after the crash: %+v, %v", got, err)
	}
	waitState(t, reader, "C1", cluster.SessionNodeLost, 15*time.Second)
	t.Logf("node lost after %v", time.Since(lost))
}

// TestSessionIndexLeaseLostAndRegained: when the node's lease is lost
// (here revoked behind its back) while the node lives on, Run takes a new
// one and marks its live sessions again; new sessions are indexed too.
func TestSessionIndexLeaseLostAndRegained(t *testing.T) {
	ctx := context.Background()
	m := indexMember(t, t.TempDir())
	idx := cluster.NewSessions(m.Client(), "node-a", 2*time.Second)
	runSessions(t, idx)
	idx.Started(cluster.SessionInfo{ID: "L1", Identity: "reader-bot", Resource: "clinic", Start: time.Now()})
	waitState(t, idx, "L1", cluster.SessionLive, 10*time.Second)
	resp, err := m.Client().Get(ctx, "/phigate/live/node-a/L1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("marker of L1: %v, %v", resp, err)
	}
	old := resp.Kvs[0].Lease
	if _, err := m.Client().Revoke(ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatal(err)
	}
	waitState(t, idx, "L1", cluster.SessionLive, 15*time.Second)
	resp, err = m.Client().Get(ctx, "/phigate/live/node-a/L1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == old || resp.Kvs[0].Lease == 0 {
		t.Fatalf("marker of L1 after the new lease: %v, %v", resp, err)
	}
	idx.Started(cluster.SessionInfo{ID: "L2", Identity: "reader-bot", Resource: "clinic", Start: time.Now()})
	waitState(t, idx, "L2", cluster.SessionLive, 10*time.Second)
}

// TestSessionIndexNeverBlocks: Started and Ended return at once even when
// nothing writes (Run not running, etcd irrelevant); what does not fit in
// the queue is dropped and counted.
func TestSessionIndexNeverBlocks(t *testing.T) {
	m := indexMember(t, t.TempDir())
	idx := cluster.NewSessions(m.Client(), "node-a", 0)
	const n = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			idx.Started(cluster.SessionInfo{ID: fmt.Sprint("B", i)})
			idx.Ended(fmt.Sprint("B", i), time.Now(), "terminate")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Started/Ended blocked with nobody writing")
	}
	if d := idx.Dropped(); d == 0 || d >= 2*n {
		t.Fatalf("dropped %d of %d updates", d, 2*n)
	}
}

// TestNodeNumber: a name gets a number in 1..2047 once and keeps it, also
// after the member restarts; names numbered concurrently get distinct
// numbers.
func TestNodeNumber(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := indexMember(t, dir)
	first, err := cluster.NodeNumber(ctx, m.Client(), "node-a")
	if err != nil || first < 1 || first > cluster.MaxNodeNumber {
		t.Fatalf("NodeNumber(node-a) = %d, %v", first, err)
	}
	if _, err := cluster.NodeNumber(ctx, m.Client(), ""); err == nil {
		t.Fatal("an empty name got a number")
	}

	const names = 24
	got := make([]uint16, names)
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each name asked for twice at once: one number per name.
			var n [2]uint16
			var inner sync.WaitGroup
			for j := range n {
				inner.Add(1)
				go func() {
					defer inner.Done()
					var err error
					if n[j], err = cluster.NodeNumber(ctx, m.Client(), fmt.Sprint("node-", i)); err != nil {
						t.Error(err)
					}
				}()
			}
			inner.Wait()
			if n[0] != n[1] {
				t.Errorf("node-%d got %d and %d", i, n[0], n[1])
			}
			got[i] = n[0]
		}()
	}
	wg.Wait()
	seen := map[uint16]int{first: -1}
	for i, n := range got {
		if n < 1 || n > cluster.MaxNodeNumber {
			t.Fatalf("node-%d got %d", i, n)
		}
		if j, dup := seen[n]; dup {
			t.Fatalf("node-%d and node-%d both got %d", i, j, n)
		}
		seen[n] = i
	}

	m.Close()
	again := indexMember(t, dir)
	if n, err := cluster.NodeNumber(ctx, again.Client(), "node-a"); err != nil || n != first {
		t.Fatalf("after restart node-a = %d, %v; want %d", n, err, first)
	}
	if n, err := cluster.NodeNumber(ctx, again.Client(), "node-7"); err != nil || n != got[7] {
		t.Fatalf("after restart node-7 = %d, %v; want %d", n, err, got[7])
	}
}
