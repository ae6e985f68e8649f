package cluster

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestTxnToWatch: writes through one member are timed until another
// member's watch sees them, and the probe leaves nothing behind.
func TestTxnToWatch(t *testing.T) {
	ctx := context.Background()
	ms := apCluster(t)
	clock := &apClock{}
	writer, watcher := apNew(ms[1], "n2", clock), apNew(ms[0], "n1", clock)
	samples, err := writer.TxnToWatch(ctx, watcher, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 20 {
		t.Fatalf("%d samples, want 20", len(samples))
	}
	for i, s := range samples {
		if s.Commit <= 0 || s.Seen < s.Commit {
			t.Fatalf("sample %d: %+v", i, s)
		}
	}
	resp, err := ms[2].Client().Get(ctx, probeKey, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d probe keys left", resp.Count)
	}
}
