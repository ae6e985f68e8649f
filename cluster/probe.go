package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// probeKey is where TxnToWatch writes: one key per call, on a lease of its
// own, deleted at the end.
const probeKey = "/phigate/probe/txn-to-watch/"

// ProbeSample is one write of TxnToWatch: the time until the transaction's
// answer reached the writer, and until the watch delivered the write to
// the watcher, both counted from the transaction's start.
type ProbeSample struct {
	Commit time.Duration
	Seen   time.Duration
}

// TxnToWatch measures what the cluster state alone costs a decision that
// one node writes and another waits for, the floor under an approval's
// round trip: n times (after a few writes not counted), a transaction
// through this node's member that compares a key's revision and puts it
// (as a vote does on a request's record), until a watch through watcher's
// member, opened before, delivers the put. Both go through the same
// clients the approvals use. It writes only under /phigate/probe/, on a
// short lease, and removes its key before it returns. For benchmarks; a
// node never calls it.
func (a *Approvals) TxnToWatch(ctx context.Context, watcher *Approvals, n int) ([]ProbeSample, error) {
	const warmup = 5
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	key := probeKey + a.node + "-" + watcher.node + "-" + hex.EncodeToString(b[:])
	lease, err := a.lease.Grant(ctx, leaseTTL(10*time.Minute))
	if err != nil {
		return nil, fmt.Errorf("cluster: probe: grant lease: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.callTimeout)
		_, _ = a.lease.Revoke(cctx, lease.ID) // deletes the key
		cancel()
	}()
	got, err := a.kv.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("cluster: probe: read: %w", err)
	}
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	events := watcher.watcher.Watch(wctx, key, clientv3.WithRev(got.Header.Revision+1), clientv3.WithFilterDelete())
	last := int64(0) // the key's ModRevision: 0 while it does not exist
	out := make([]ProbeSample, 0, n)
	for i := range n + warmup {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
		resp, err := a.kv.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", last)).
			Then(clientv3.OpPut(key, strconv.Itoa(i), clientv3.WithLease(lease.ID))).Commit()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cluster: probe: write %d: %w", i, err)
		}
		commit := time.Since(start)
		if !resp.Succeeded {
			return nil, fmt.Errorf("cluster: probe: write %d: the key changed under the probe", i)
		}
		last = resp.Header.Revision
		timeout := time.NewTimer(a.callTimeout)
	wait:
		for {
			select {
			case wr, ok := <-events:
				if !ok || wr.Err() != nil || wr.Canceled {
					timeout.Stop()
					return nil, fmt.Errorf("cluster: probe: the watch ended: %w", errors.Join(wr.Err(), ctx.Err()))
				}
				for _, ev := range wr.Events {
					if ev.Kv.ModRevision == last {
						break wait
					}
				}
			case <-timeout.C:
				return nil, fmt.Errorf("cluster: probe: write %d not seen by %s's watch within %v", i, watcher.node, a.callTimeout)
			}
		}
		seen := time.Since(start)
		timeout.Stop()
		if i >= warmup {
			out = append(out, ProbeSample{Commit: commit, Seen: seen})
		}
	}
	return out, nil
}
