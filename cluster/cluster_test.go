package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phigate/phigate/cluster"
)

// testNode is a member in a test: its config (for restarts) and the
// running member.
type testNode struct {
	cfg cluster.Config
	m   *cluster.Member
}

// nodeConfig gives a member named name fresh loopback ports and a
// directory, with the short test timeouts.
func nodeConfig(t *testing.T, name string) cluster.Config {
	t.Helper()
	lvl := slog.LevelWarn
	if os.Getenv("CLUSTER_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return cluster.Fast(cluster.Config{
		Name: name, Dir: filepath.Join(t.TempDir(), name),
		PeerAddr: freeAddr(t), ClientAddr: freeAddr(t), APIAddr: freeAddr(t), GossipAddr: freeAddr(t),
		StartTimeout: 20 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})),
		Meta:         func() cluster.Meta { return cluster.Meta{Postgres: "127.0.0.1:5432", Version: "test"} },
	})
}

func start(t *testing.T, cfg cluster.Config) *testNode {
	t.Helper()
	m, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { m.Close() })
	return &testNode{cfg: cfg, m: m}
}

// joinNode starts a member named name that joins via the members given.
func joinNode(t *testing.T, name, token string, via ...*testNode) *testNode {
	t.Helper()
	cfg := nodeConfig(t, name)
	cfg.JoinToken = token
	for _, v := range via {
		cfg.Join = append(cfg.Join, v.cfg.APIAddr)
	}
	return start(t, cfg)
}

func token(t *testing.T, n *testNode) string {
	t.Helper()
	tok, err := n.m.JoinToken(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roles waits until the member's view has the wanted role per name.
func wantRoles(t *testing.T, n *testNode, want map[string]string) {
	t.Helper()
	eventually(t, 20*time.Second, "roles", func() error {
		st, err := n.m.Status(context.Background())
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, ms := range st.Members {
			got[ms.Name] = ms.Role
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("roles %v, want %v", got, want)
		}
		return nil
	})
}

// TestJoinWithToken: a bootstrapped member admits two nodes with one
// token; both become voters (Voters=3), a fourth stays a learner, a write
// on the first is read on the third.
func TestJoinWithToken(t *testing.T) {
	ctx := context.Background()
	n1 := start(t, nodeConfig(t, "n1"))
	tok := token(t, n1)
	n2 := joinNode(t, "n2", tok, n1)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter"})
	n3 := joinNode(t, "n3", tok, n2, n1)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter", "n3": "voter"})

	if _, err := n1.m.Client().Put(ctx, "/test/k", "v1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "write on n1 read on n3", func() error {
		r, err := n3.m.Client().Get(ctx, "/test/k")
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v1" {
			return fmt.Errorf("got %v", r.Kvs)
		}
		return nil
	})

	n4 := joinNode(t, "n4", tok, n3)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter", "n3": "voter", "n4": "learner"})
	for _, n := range []*testNode{n1, n2, n3, n4} {
		if s := n.m.Secret(cluster.GossipSecret); len(s) != 32 {
			t.Fatalf("%s: gossip secret %d bytes", n.cfg.Name, len(s))
		}
	}
	time.Sleep(time.Second)
	st, _ := n4.m.Status(ctx)
	if st.Members[3].Role != "learner" {
		t.Fatalf("n4 promoted: %+v", st)
	}
}
