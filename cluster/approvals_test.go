package cluster

// An internal test: it moves the approvals' clock and shortens their
// periods, which are unexported.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/session/approval"
)

var _ approval.Service = (*Approvals)(nil)

// apClock is the approvals' clock in a test: now plus an offset the test
// moves.
type apClock struct{ offset atomic.Int64 }

func (c *apClock) now() time.Time       { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *apClock) move(d time.Duration) { c.offset.Store(int64(d)) }

func apWho(name string, groups ...string) approval.Approver {
	return approval.Approver{Name: name, Groups: groups}
}

func apLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// apCluster starts a three-member cluster (n2 and n3 join n1 and become
// voters) with the short test timeouts.
func apCluster(t *testing.T) []*Member {
	t.Helper()
	ctx := context.Background()
	config := func(name string) Config {
		return Fast(Config{
			Name: name, Dir: filepath.Join(t.TempDir(), name),
			PeerAddr: freeport.TestAddr(t), ClientAddr: freeport.TestAddr(t), APIAddr: freeport.TestAddr(t), GossipAddr: freeport.TestAddr(t),
			StartTimeout: 20 * time.Second, Logger: apLogger(),
		})
	}
	startOne := func(cfg Config) *Member {
		m, err := Start(ctx, cfg)
		if err != nil {
			t.Fatalf("start %s: %v", cfg.Name, err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	c1 := config("n1")
	m1 := startOne(c1)
	tok, err := m1.JoinToken(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	members := []*Member{m1}
	for _, name := range []string{"n2", "n3"} {
		c := config(name)
		c.Join, c.JoinToken = []string{c1.APIAddr}, tok
		members = append(members, startOne(c))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := m1.Status(ctx)
		voters := 0
		for _, ms := range st.Members {
			if ms.Role == "voter" {
				voters++
			}
		}
		if err == nil && voters == 3 && st.Quorum {
			return members
		}
		if time.Now().After(deadline) {
			t.Fatalf("no three voters: %+v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apNew is an Approvals of node on m with the test's clock, a 2-second
// lease and short periods; it is not running.
func apNew(m *Member, node string, clock *apClock) *Approvals {
	a := NewApprovals(m.Client(), node, 2*time.Second, nil)
	a.SetLogger(apLogger())
	a.now, a.sweepEvery, a.callTimeout = clock.now, 100*time.Millisecond, time.Second
	return a
}

// apRun runs a until the test ends or stop is called (which waits for Run
// to return).
func apRun(t *testing.T, a *Approvals) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
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
	// Held requests need the lease: wait for Run to take it.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := a.waitLease(wctx); err != nil {
		t.Fatalf("no node lease: %v", err)
	}
	return stop
}

var apSeq atomic.Int64

// apRequest is a pending request of carol's on resource res, decided by
// the group dba, expiring in an hour.
func apRequest(res string, required int, mode string) *approval.Request {
	now := time.Now()
	n := apSeq.Add(1)
	return &approval.Request{
		ID: fmt.Sprintf("R%05d", n), Identity: "carol", Groups: []string{"dev"}, Resource: res,
		Session: fmt.Sprintf("S%05d", n), Node: "n1", Command: 1, Statement: "DELETE FROM patients WHERE id = $1",
		Fingerprint: approval.Fingerprint("carol", res, "deletes", "DELETE FROM patients WHERE id = 42", nil),
		Grant:       "carol-rw", Rule: "deletes", Approvers: []string{"dba"}, Required: required, Mode: mode,
		MaxWindow: time.Hour, Reason: "ticket 42", Created: now.Add(time.Duration(n) * time.Millisecond), Expires: now.Add(time.Hour),
		State: approval.Pending,
	}
}

func apOpen(t *testing.T, a *Approvals, r *approval.Request, held bool) *approval.Request {
	t.Helper()
	if err := a.Open(context.Background(), r, held); err != nil {
		t.Fatalf("Open(%s): %v", r.ID, err)
	}
	return r
}

func apGet(t *testing.T, a *Approvals, id string) *approval.Request {
	t.Helper()
	r, err := a.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

// apWaitState polls until request id is in state want.
func apWaitState(t *testing.T, a *Approvals, id string, want approval.State, within time.Duration) *approval.Request {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := a.Get(context.Background(), id)
		if err == nil && r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: %+v, %v; want state %q within %v", id, r, err, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apKey returns key's value and lease ("", 0 when it does not exist).
func apKey(t *testing.T, m *Member, key string) (string, clientv3.LeaseID) {
	t.Helper()
	resp, err := m.Client().Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0
	}
	return string(resp.Kvs[0].Value), clientv3.LeaseID(resp.Kvs[0].Lease)
}

// TestApprovals runs the approvals store on a three-member cluster: one
// Approvals per member, each running its sweeps; the steps share the
// cluster and run in order, the last ones crashing members.
func TestApprovals(t *testing.T) {
	ctx := context.Background()
	ms := apCluster(t)
	clock := &apClock{}
	a1, a2, a3 := apNew(ms[0], "n1", clock), apNew(ms[1], "n2", clock), apNew(ms[2], "n3", clock)
	for _, a := range []*Approvals{a1, a2, a3} {
		apRun(t, a)
	}
	alice, bob, dave := apWho("alice", "dba"), apWho("bob", "ops", "dba"), apWho("dave", "dba")

	t.Run("open get list", func(t *testing.T) {
		r1 := apOpen(t, a1, apRequest("list-db", 1, "hold"), true)
		r2 := apOpen(t, a2, apRequest("list-db", 1, "fail-fast"), false)
		other := apRequest("list-db", 1, "hold")
		other.Identity = "erin"
		r3 := apOpen(t, a3, other, false)
		got := apGet(t, a2, r1.ID)
		if got.State != approval.Pending || got.Identity != "carol" || got.Statement != r1.Statement || got.Reason != "ticket 42" ||
			got.Required != 1 || !got.Expires.Equal(r1.Expires) || got.MaxWindow != time.Hour || len(got.Votes) != 0 || got.Decision != nil {
			t.Fatalf("Get = %+v", got)
		}
		// The record and its pending key are on the retention lease; the
		// held marker is on the opening node's lease.
		_, ret := apKey(t, ms[0], approvalReqKey+r1.ID)
		ttl, err := ms[0].Client().TimeToLive(ctx, ret)
		if err != nil || time.Duration(ttl.TTL)*time.Second < ApprovalRetention {
			t.Fatalf("retention lease %v, %v", ttl, err)
		}
		if _, l := apKey(t, ms[0], approvalPendingKey+r1.ID); l != ret {
			t.Errorf("pending key on lease %x, record on %x", l, ret)
		}
		if _, l := apKey(t, ms[0], approvalHeldKey+r1.ID); l == 0 || l == ret {
			t.Errorf("held marker on lease %x", l)
		}
		if _, l := apKey(t, ms[0], approvalHeldKey+r2.ID); l != 0 {
			t.Errorf("a request not held has a held marker")
		}
		ids := func(rs []*approval.Request) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		for _, c := range []struct {
			f    approval.Filter
			want []string
		}{
			{approval.Filter{Resource: "list-db"}, []string{r3.ID, r2.ID, r1.ID}},
			{approval.Filter{Resource: "list-db", Identity: "carol"}, []string{r2.ID, r1.ID}},
			{approval.Filter{Resource: "list-db", Limit: 1}, []string{r3.ID}},
			{approval.Filter{Resource: "list-db", State: approval.Denied}, nil},
			{approval.Filter{Resource: "nowhere"}, nil},
		} {
			got, err := a3.List(ctx, c.f)
			if err != nil || !slices.Equal(ids(got), c.want) {
				t.Errorf("List(%+v) = %v, %v; want %v", c.f, ids(got), err, c.want)
			}
		}
		if _, err := a1.Get(ctx, "R-none"); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("Get(unknown) = %v", err)
		}
		if _, err := a1.Get(ctx, "a/b"); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("Get(a/b) = %v", err)
		}
		if err := a2.Open(ctx, r1, false); err == nil {
			t.Error("an id was filed twice")
		}
		nobody := apRequest("list-db", 0, "hold")
		if err := a2.Open(ctx, nobody, false); err == nil {
			t.Error("a request that needs no approval was filed")
		}
		// Without a node lease (Run not running) a held request is not
		// filed at all.
		idle := apNew(ms[0], "idle", clock)
		r := apRequest("list-db", 1, "hold")
		if err := idle.Open(ctx, r, true); !errors.Is(err, approval.ErrUnavailable) {
			t.Errorf("held Open without a lease: %v", err)
		}
		if _, err := a1.Get(ctx, r.ID); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("a held request filed without a lease: %v", err)
		}
	})

	t.Run("k of n", func(t *testing.T) {
		r := apOpen(t, a1, apRequest("kofn-db", 2, "hold"), true)
		got, err := a2.Vote(ctx, r.ID, alice, true, "looks right", approval.Once, 0)
		if err != nil || got.State != approval.Pending || len(got.Votes) != 1 || got.Votes[0].Node != "n2" || got.Votes[0].Approver != "alice" {
			t.Fatalf("first approval: %+v, %v", got, err)
		}
		if _, err := a3.Vote(ctx, r.ID, alice, true, "again", approval.Once, 0); !errors.Is(err, approval.ErrVoted) {
			t.Errorf("second vote by alice: %v", err)
		}
		if _, err := a3.Vote(ctx, r.ID, apWho("carol", "dba"), true, "mine", approval.Once, 0); !errors.Is(err, approval.ErrSelfApproval) {
			t.Errorf("vote by the requester: %v", err)
		}
		if _, err := a3.Vote(ctx, r.ID, apWho("eve", "dev"), false, "no", "", 0); !errors.Is(err, approval.ErrNotApprover) {
			t.Errorf("vote by a non-approver: %v", err)
		}
		if _, err := a3.Vote(ctx, r.ID, apWho("", "dba"), true, "anonymous", approval.Once, 0); !errors.Is(err, approval.ErrNotApprover) {
			t.Errorf("vote without a name: %v", err)
		}
		if _, err := a3.Vote(ctx, "R-none", bob, true, "?", approval.Once, 0); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("vote on nothing: %v", err)
		}
		got, err = a3.Vote(ctx, r.ID, bob, true, "ok", approval.Once, 0)
		if err != nil || got.State != approval.Approved || got.Decision == nil || !slices.Equal(got.Decision.By, []string{"alice", "bob"}) ||
			got.Decision.Scope != approval.Once || got.Decision.Node != "n3" {
			t.Fatalf("deciding approval: %+v, %v", got, err)
		}
		if stored := apGet(t, a1, r.ID); stored.State != approval.Approved || len(stored.Votes) != 2 {
			t.Fatalf("stored: %+v", stored)
		}
		// Decided: no pending key, no held marker (so no sweep abandons it).
		if v, _ := apKey(t, ms[0], approvalPendingKey+r.ID); v != "" {
			t.Error("a decided request is still pending")
		}
		if _, l := apKey(t, ms[0], approvalHeldKey+r.ID); l != 0 {
			t.Error("a decided request kept its held marker")
		}
		if got, err := a1.Vote(ctx, r.ID, dave, false, "late", "", 0); !errors.Is(err, approval.ErrDecided) || got == nil || got.State != approval.Approved {
			t.Errorf("vote on a decided request: %+v, %v", got, err)
		}
		// The holding session spends it once.
		if ok, err := a1.Use(ctx, r.ID, r.Session); err != nil || !ok {
			t.Fatalf("Use: %v, %v", ok, err)
		}
		if ok, err := a2.Use(ctx, r.ID, r.Session); err != nil || ok {
			t.Fatalf("second Use: %v, %v", ok, err)
		}
		used := apGet(t, a3, r.ID)
		if used.State != approval.Used || used.Decision.UsedSession != r.Session || used.Decision.UsedAt.IsZero() || used.Decision.State != approval.Approved {
			t.Fatalf("used: %+v", used.Decision)
		}
	})

	t.Run("deny decides at once", func(t *testing.T) {
		r := apOpen(t, a1, apRequest("deny-db", 2, "hold"), true)
		got, err := a2.Vote(ctx, r.ID, bob, false, "not today", approval.Window, time.Minute)
		if err != nil || got.State != approval.Denied || !slices.Equal(got.Decision.By, []string{"bob"}) || got.Decision.Reason != "not today" || got.Votes[0].Scope != "" {
			t.Fatalf("denial: %+v, %v", got, err)
		}
		if ok, err := a1.Use(ctx, r.ID, r.Session); err != nil || ok {
			t.Fatalf("Use of a denied request: %v, %v", ok, err)
		}
	})

	t.Run("watch", func(t *testing.T) {
		r := apOpen(t, a1, apRequest("watch-db", 2, "hold"), true)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := a2.Watch(wctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Both votes before the first receive: nothing is missed.
		if _, err := a1.Vote(ctx, r.ID, alice, true, "a", approval.Once, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := a3.Vote(ctx, r.ID, bob, true, "b", approval.Once, 0); err != nil {
			t.Fatal(err)
		}
		var states []string
		timeout := time.After(10 * time.Second)
		for done := false; !done; {
			select {
			case got, ok := <-ch:
				if !ok {
					done = true
					break
				}
				states = append(states, fmt.Sprintf("%s/%d", got.State, len(got.Votes)))
			case <-timeout:
				t.Fatalf("watch: got %v, then nothing", states)
			}
		}
		if want := []string{"pending/0", "pending/1", "approved/2"}; !slices.Equal(states, want) {
			t.Fatalf("watch delivered %v, want %v", states, want)
		}
		// A final request: sent, then the channel closes.
		ch, err = a3.Watch(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := <-ch; got.State != approval.Approved {
			t.Fatalf("watch of a decided request: %+v", got)
		}
		if _, ok := <-ch; ok {
			t.Fatal("the watch of a decided request stays open")
		}
		if _, err := a3.Watch(ctx, "R-none"); !errors.Is(err, approval.ErrNotFound) {
			t.Fatalf("watch of nothing: %v", err)
		}
	})

	t.Run("approve and deny raced", func(t *testing.T) {
		counts := map[approval.State]int{}
		for range 100 {
			r := apOpen(t, a3, apRequest("race-db", 1, "hold"), true)
			var (
				wg       sync.WaitGroup
				go_      = make(chan struct{})
				res      [2]*approval.Request
				errs     [2]error
				voters   = [2]*Approvals{a1, a2}
				approves = [2]bool{true, false}
				who      = [2]approval.Approver{alice, bob}
			)
			for i := range 2 {
				wg.Go(func() {
					<-go_
					res[i], errs[i] = voters[i].Vote(ctx, r.ID, who[i], approves[i], "race", approval.Once, 0)
				})
			}
			close(go_)
			wg.Wait()
			final := apGet(t, a3, r.ID)
			won := -1
			for i := range 2 {
				switch {
				case errs[i] == nil && won == -1:
					won = i
				case errs[i] == nil:
					t.Fatalf("%s: both votes won: %+v", r.ID, final)
				case !errors.Is(errs[i], approval.ErrDecided):
					t.Fatalf("%s: vote %d: %v", r.ID, i, errs[i])
				}
			}
			if won == -1 {
				t.Fatalf("%s: no vote won: %v", r.ID, errs)
			}
			want := approval.Approved
			if !approves[won] {
				want = approval.Denied
			}
			if final.State != want || len(final.Votes) != 1 || final.Votes[0].Approver != who[won].Name ||
				!slices.Equal(final.Decision.By, []string{who[won].Name}) || res[won].State != want || res[1-won].State != want {
				t.Fatalf("%s: %v won, stored %+v", r.ID, who[won].Name, final)
			}
			// Written twice: filed, decided.
			resp, err := ms[0].Client().Get(ctx, approvalReqKey+r.ID)
			if err != nil || resp.Kvs[0].Version != 2 {
				t.Fatalf("%s: record written %d times, %v", r.ID, resp.Kvs[0].Version, err)
			}
			counts[final.State]++
		}
		t.Logf("outcomes: %v", counts)
	})

	t.Run("approvals raced", func(t *testing.T) {
		for range 20 {
			r := apOpen(t, a1, apRequest("race2-db", 2, "hold"), true)
			voters := []*Approvals{a1, a2, a3}
			who := []approval.Approver{alice, bob, dave}
			errs := make([]error, 3)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 3 {
				wg.Go(func() {
					<-start
					_, errs[i] = voters[i].Vote(ctx, r.ID, who[i], true, "yes", approval.Once, 0)
				})
			}
			close(start)
			wg.Wait()
			final := apGet(t, a1, r.ID)
			var won []string
			for i, err := range errs {
				switch {
				case err == nil:
					won = append(won, who[i].Name)
				case !errors.Is(err, approval.ErrDecided):
					t.Fatalf("%s: vote by %s: %v", r.ID, who[i].Name, err)
				}
			}
			slices.Sort(won)
			by := slices.Sorted(slices.Values(final.Decision.By))
			if final.State != approval.Approved || len(won) != 2 || len(final.Votes) != 2 || !slices.Equal(by, won) {
				t.Fatalf("%s: winners %v, stored %+v", r.ID, won, final)
			}
		}
	})

	t.Run("close", func(t *testing.T) {
		r := apOpen(t, a1, apRequest("close-db", 1, "hold"), true)
		got, err := a1.Close(ctx, r.ID, approval.Withdrawn, "the agent cancelled the command")
		if err != nil || got.State != approval.Withdrawn || got.Decision.Node != "n1" || got.Decision.Reason != "the agent cancelled the command" {
			t.Fatalf("Close: %+v, %v", got, err)
		}
		if v, _ := apKey(t, ms[0], approvalPendingKey+r.ID); v != "" {
			t.Error("a withdrawn request is still pending")
		}
		if _, l := apKey(t, ms[0], approvalHeldKey+r.ID); l != 0 {
			t.Error("a withdrawn request kept its held marker")
		}
		// Closed again, or as something else: unchanged, no error.
		if again, err := a2.Close(ctx, r.ID, approval.Expired, "late"); err != nil || again.State != approval.Withdrawn || again.Decision.Reason != got.Decision.Reason {
			t.Fatalf("second Close: %+v, %v", again, err)
		}
		if _, err := a2.Vote(ctx, r.ID, alice, true, "too late", approval.Once, 0); !errors.Is(err, approval.ErrDecided) {
			t.Fatalf("vote on a withdrawn request: %v", err)
		}
		// A request approved before the close stays approved.
		q := apOpen(t, a1, apRequest("close-db", 1, "hold"), true)
		if _, err := a2.Vote(ctx, q.ID, alice, true, "fine", approval.Once, 0); err != nil {
			t.Fatal(err)
		}
		if got, err := a1.Close(ctx, q.ID, approval.Expired, "hold bound"); err != nil || got.State != approval.Approved {
			t.Fatalf("Close of an approved request: %+v, %v", got, err)
		}
		if _, err := a1.Close(ctx, q.ID, approval.Approved, "by fiat"); err == nil {
			t.Fatal("closed as approved")
		}
		if _, err := a1.Close(ctx, "R-none", approval.Withdrawn, "?"); !errors.Is(err, approval.ErrNotFound) {
			t.Fatalf("Close of nothing: %v", err)
		}
	})

	t.Run("fail-fast once", func(t *testing.T) {
		for range 20 {
			r := apOpen(t, a1, apRequest("ff-db", 1, "fail-fast"), false)
			if pre, err := a1.Preapproved(ctx, r); err != nil || pre != nil {
				t.Fatalf("preapproved while pending: %+v, %v", pre, err)
			}
			if _, err := a2.Vote(ctx, r.ID, bob, true, "once", approval.Once, 0); err != nil {
				t.Fatal(err)
			}
			id, lease := apKey(t, ms[0], approvalFPKey+r.Fingerprint)
			if id != r.ID || lease == 0 {
				t.Fatalf("fingerprint key: %q on lease %x", id, lease)
			}
			// The same command again, from two sessions at once.
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				pres  [2]*approval.Request
				errs  [2]error
			)
			for i, a := range []*Approvals{a2, a3} {
				wg.Go(func() {
					again := apRequest("ff-db", 1, "fail-fast")
					again.Session = fmt.Sprintf("%s-retry%d", r.Session, i)
					<-start
					pres[i], errs[i] = a.Preapproved(ctx, again)
				})
			}
			close(start)
			wg.Wait()
			if errs[0] != nil || errs[1] != nil || (pres[0] == nil) == (pres[1] == nil) {
				t.Fatalf("%s: preapproved %+v %+v, %v %v; want exactly one", r.ID, pres[0], pres[1], errs[0], errs[1])
			}
			winner := 0
			if pres[0] == nil {
				winner = 1
			}
			used := apGet(t, a1, r.ID)
			if pres[winner].ID != r.ID || pres[winner].State != approval.Used || used.State != approval.Used ||
				used.Decision.UsedSession != fmt.Sprintf("%s-retry%d", r.Session, winner) {
				t.Fatalf("%s: used %+v, stored %+v", r.ID, pres[winner], used.Decision)
			}
			if id, _ := apKey(t, ms[0], approvalFPKey+r.Fingerprint); id != "" {
				t.Fatalf("%s: the fingerprint key outlived its use", r.ID)
			}
			if pre, err := a1.Preapproved(ctx, r); err != nil || pre != nil {
				t.Fatalf("%s: preapproved after its use: %+v, %v", r.ID, pre, err)
			}
		}
		// Another command, or another identity's: not covered.
		r := apOpen(t, a1, apRequest("ff-db", 1, "fail-fast"), false)
		if _, err := a2.Vote(ctx, r.ID, bob, true, "once", approval.Once, 0); err != nil {
			t.Fatal(err)
		}
		other := apRequest("ff-db", 1, "fail-fast")
		other.Fingerprint = approval.Fingerprint("carol", "ff-db", "deletes", "DELETE FROM patients", nil)
		if pre, err := a3.Preapproved(ctx, other); err != nil || pre != nil {
			t.Fatalf("another command preapproved: %+v, %v", pre, err)
		}
		other = apRequest("ff-db", 1, "fail-fast")
		other.Identity = "mallory"
		if pre, err := a3.Preapproved(ctx, other); err != nil || pre != nil {
			t.Fatalf("another identity preapproved: %+v, %v", pre, err)
		}
	})

	t.Run("window", func(t *testing.T) {
		r := apOpen(t, a1, apRequest("win-db", 1, "hold"), true)
		for _, w := range []time.Duration{0, -time.Second, 2 * time.Hour} {
			if _, err := a2.Vote(ctx, r.ID, alice, true, "long", approval.Window, w); !errors.Is(err, approval.ErrWindow) {
				t.Fatalf("window %v: %v", w, err)
			}
		}
		const window = 1500 * time.Millisecond
		got, err := a2.Vote(ctx, r.ID, alice, true, "for the migration", approval.Window, window)
		if err != nil || got.State != approval.Approved || got.Decision.Scope != approval.Window || got.Decision.Until.IsZero() {
			t.Fatalf("window approval: %+v, %v", got, err)
		}
		if ok, err := a1.Use(ctx, r.ID, r.Session); err != nil || !ok {
			t.Fatalf("Use of a window: %v, %v", ok, err)
		}
		next := apRequest("win-db", 1, "hold") // another statement, same rule
		next.Fingerprint = "another"
		pre, err := a3.Preapproved(ctx, next)
		if err != nil || pre == nil || pre.ID != r.ID || pre.State != approval.Approved {
			t.Fatalf("preapproved in the window: %+v, %v", pre, err)
		}
		otherRule := apRequest("win-db", 1, "hold")
		otherRule.Rule = "drops"
		if pre, err := a3.Preapproved(ctx, otherRule); err != nil || pre != nil {
			t.Fatalf("another rule preapproved: %+v, %v", pre, err)
		}
		// Past Until by the clock (the lease has not ended yet): not covered.
		clock.move(time.Hour)
		pre, err = a3.Preapproved(ctx, next)
		clock.move(0)
		if err != nil || pre != nil {
			t.Fatalf("preapproved after the window by the clock: %+v, %v", pre, err)
		}
		// The window's key ends with its lease.
		deadline := time.Now().Add(10 * time.Second)
		for {
			id, _ := apKey(t, ms[0], approvalWindowKey+approval.WindowKey("carol", "win-db", "carol-rw", "deletes"))
			if id == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the window's key outlived its lease")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if pre, err := a3.Preapproved(ctx, next); err != nil || pre != nil {
			t.Fatalf("preapproved after the window: %+v, %v", pre, err)
		}
		// Many sweeps later, a decided held request is not abandoned.
		if got := apGet(t, a1, r.ID); got.State != approval.Approved {
			t.Fatalf("after the window: %+v", got)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		// A vote past Expires closes the request instead (a node that does
		// not sweep, whose clock is an hour ahead).
		r := apOpen(t, a1, apRequest("exp-db", 1, "hold"), true)
		ahead := &apClock{}
		ahead.move(2 * time.Hour)
		late := apNew(ms[1], "late", ahead)
		got, err := late.Vote(ctx, r.ID, alice, true, "late", approval.Once, 0)
		if !errors.Is(err, approval.ErrDecided) || got == nil || got.State != approval.Expired || got.Decision.Node != "late" || len(got.Votes) != 0 {
			t.Fatalf("vote past Expires: %+v, %v", got, err)
		}
		// The sweeps expire what is past Expires, and only that.
		q := apOpen(t, a2, apRequest("exp-db", 1, "fail-fast"), false)
		keep := apRequest("exp-db", 1, "hold")
		keep.Expires = keep.Expires.Add(2 * time.Hour)
		apOpen(t, a2, keep, true)
		clock.move(90 * time.Minute)
		defer clock.move(0)
		got = apWaitState(t, a3, q.ID, approval.Expired, 5*time.Second)
		if d := got.Decision; d == nil || d.Reason != expiredReason || !slices.Contains([]string{"n1", "n2", "n3"}, d.Node) {
			t.Fatalf("expired: %+v", d)
		}
		if got := apGet(t, a3, keep.ID); got.State != approval.Pending {
			t.Fatalf("a request not yet due: %+v", got)
		}
		clock.move(0)
		if _, err := a1.Close(ctx, keep.ID, approval.Withdrawn, "done"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("abandoned", func(t *testing.T) {
		// A node that stops revokes its lease: what it held is abandoned.
		stopping := apNew(ms[0], "stopping", clock)
		stop := apRun(t, stopping)
		r := apOpen(t, stopping, apRequest("ab-db", 1, "hold"), true)
		stop()
		got := apWaitState(t, a2, r.ID, approval.Abandoned, 5*time.Second)
		if got.Decision.Reason != abandonedReason {
			t.Fatalf("abandoned: %+v", got.Decision)
		}
		// A crashed member's node lease ends by itself; the others' sweeps
		// abandon what it held, and votes are refused. Its requests that
		// were not held stay pending.
		held := apOpen(t, a3, apRequest("ab-db", 2, "hold"), true)
		free := apOpen(t, a3, apRequest("ab-db", 1, "fail-fast"), false)
		if _, err := a1.Vote(ctx, held.ID, alice, true, "one of two", approval.Once, 0); err != nil {
			t.Fatal(err)
		}
		crashed := time.Now()
		Crash(ms[2])
		got = apWaitState(t, a1, held.ID, approval.Abandoned, 15*time.Second)
		t.Logf("abandoned %v after the crash", time.Since(crashed).Round(time.Millisecond))
		if len(got.Votes) != 1 || !slices.Contains([]string{"n1", "n2"}, got.Decision.Node) {
			t.Fatalf("abandoned: %+v", got)
		}
		if _, err := a2.Vote(ctx, held.ID, bob, true, "two of two", approval.Once, 0); !errors.Is(err, approval.ErrDecided) {
			t.Fatalf("vote on an abandoned request: %v", err)
		}
		if got := apGet(t, a2, free.ID); got.State != approval.Pending {
			t.Fatalf("a request not held: %+v", got)
		}
	})

	t.Run("unavailable", func(t *testing.T) {
		// n3 crashed; without n2 too, n1 has no quorum: every call fails
		// closed with ErrUnavailable, within its bound.
		r := apOpen(t, a1, apRequest("un-db", 1, "fail-fast"), false)
		Crash(ms[1])
		began := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 6)
		calls := []func() error{
			func() error { _, err := a1.Get(ctx, r.ID); return err },
			func() error { _, err := a1.Vote(ctx, r.ID, alice, true, "x", approval.Once, 0); return err },
			func() error { return a1.Open(ctx, apRequest("un-db", 1, "hold"), true) },
			func() error { _, err := a1.Preapproved(ctx, r); return err },
			func() error { _, err := a1.List(ctx, approval.Filter{}); return err },
			func() error { _, err := a1.Watch(ctx, r.ID); return err },
		}
		for i, call := range calls {
			wg.Go(func() { errs[i] = call() })
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, approval.ErrUnavailable) {
				t.Errorf("call %d without quorum: %v", i, err)
			}
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("calls without quorum took %v", d)
		}
	})
}
