package cluster_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/internal/freeport"
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
		PeerAddr: freeport.TestAddr(t), ClientAddr: freeport.TestAddr(t), APIAddr: freeport.TestAddr(t), GossipAddr: freeport.TestAddr(t),
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

// TestCluster runs one cluster through its life: bootstrap, joins with a
// token (Voters=3: the joiners become voters, a fourth stays a learner), a
// write on the first read on the third, refused joins, the node-to-node
// API's certificate check, gossip, a restarted member, a stopped voter
// replaced by the learner, Remove and Leave. The steps share the cluster
// because each join after a promotion waits for etcd's five-second health
// interval.
func TestCluster(t *testing.T) {
	tc := t // the cluster's, for members started in subtests
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sessions := atomic.Int64{}
	cfg1 := nodeConfig(t, "n1")
	cfg1.Secrets = map[string][]byte{"seal": []byte("0123456789abcdef0123456789abcdef"), "random": nil}
	cfg1.Meta = func() cluster.Meta {
		return cluster.Meta{Postgres: "127.0.0.1:5432", Version: "test", Sessions: int(sessions.Load())}
	}
	n1 := start(t, cfg1)
	tok := token(t, n1)
	n2 := joinNode(t, "n2", tok, n1)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter"})
	n3 := joinNode(t, "n3", tok, n2, n1)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter", "n3": "voter"})
	wantValue(t, n3, "/test/k", "", func() { put(t, n1, "/test/k", "v1") }, "v1")

	n4 := joinNode(t, "n4", tok, n3)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter", "n3": "voter", "n4": "learner"})
	nodes := []*testNode{n1, n2, n3, n4}
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.cfg.Name+" has quorum", func() error {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return n.m.Quorum(qctx)
		})
	}

	t.Run("secrets", func(t *testing.T) {
		random := n1.m.Secret("random")
		for _, n := range nodes {
			if s := n.m.Secret(cluster.GossipSecret); len(s) != 32 {
				t.Errorf("%s: gossip secret %d bytes", n.cfg.Name, len(s))
			}
			if s := n.m.Secret("seal"); string(s) != "0123456789abcdef0123456789abcdef" {
				t.Errorf("%s: seal secret %q", n.cfg.Name, s)
			}
			if s := n.m.Secret("random"); len(s) != 32 || !bytes.Equal(s, random) {
				t.Errorf("%s: random secret differs", n.cfg.Name)
			}
			if n.m.Secret("nope") != nil {
				t.Errorf("%s: unknown secret not nil", n.cfg.Name)
			}
		}
		fi, err := os.Stat(filepath.Join(n2.cfg.Dir, "pki", "ca.key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("ca.key: %v, %v", fi, err)
		}
	})

	t.Run("refused joins", func(t *testing.T) {
		before := memberCount(t, n1)
		other := start(t, nodeConfig(t, "other"))
		expired, err := n1.m.JoinToken(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fp := n1.m.CAFingerprint()
		forged := "phgjoin1." + base64.RawURLEncoding.EncodeToString(append(fp[:], make([]byte, 32)...))
		time.Sleep(1500 * time.Millisecond) // the expired token's lifetime
		for _, c := range []struct {
			name, token string
			want        error
		}{
			{"unknown secret", forged, cluster.ErrJoinRefused},
			{"expired", expired, cluster.ErrJoinRefused},
			{"another cluster's token", token(t, other), cluster.ErrWrongCluster},
			{"malformed", "phgjoin1.xyz", cluster.ErrBadToken},
		} {
			cfg := nodeConfig(t, "n9")
			cfg.Join, cfg.JoinToken = []string{n1.cfg.APIAddr}, c.token
			m, err := cluster.Start(ctx, cfg)
			if err == nil {
				m.Close()
				t.Fatalf("%s: joined", c.name)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
			if _, err := os.Stat(filepath.Join(cfg.Dir, "pki")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: left %s/pki behind (%v)", c.name, cfg.Dir, err)
			}
		}
		// A name taken by another member is refused too.
		cfg := nodeConfig(t, "n2")
		cfg.Join, cfg.JoinToken = []string{n1.cfg.APIAddr}, tok
		if _, err := cluster.Start(ctx, cfg); !errors.Is(err, cluster.ErrNameTaken) {
			t.Errorf("a taken name: %v", err)
		}
		if after := memberCount(t, n1); after != before {
			t.Errorf("members %d after refused joins, %d before", after, before)
		}
	})

	t.Run("node-to-node API", func(t *testing.T) {
		n1.m.Handle("GET /hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
		url := "https://" + n1.cfg.APIAddr + "/hello"
		resp, err := n2.m.PeerClient().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello n2" {
			t.Fatalf("PeerClient: %s %q", resp.Status, body)
		}
		// No certificate: TLS accepts, the handler refuses.
		anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		if resp, err := anon.Get(url); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("no certificate: %v, %v", resp, err)
		}
		// Another CA's certificate: not sent (the server names the CA it
		// accepts), or refused in the handshake if forced on it.
		other := start(t, nodeConfig(t, "other2"))
		for _, tc := range []*tls.Config{
			{InsecureSkipVerify: true, Certificates: []tls.Certificate{other.m.PeerCertificate()}},
			{InsecureSkipVerify: true, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				c := other.m.PeerCertificate()
				return &c, nil
			}},
		} {
			foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
			if resp, err := foreign.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("another CA's certificate: %s", resp.Status)
				}
			}
		}
		// PeerClient of another cluster does not trust this one.
		if resp, err := other.m.PeerClient().Get(url); err == nil {
			resp.Body.Close()
			t.Fatalf("another cluster's PeerClient: %s", resp.Status)
		}
	})

	t.Run("etcd client listener", func(t *testing.T) {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{n3.m.ClientURL()}, TLS: n3.m.EtcdClientTLS(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if r, err := c.Get(ctx, "/test/k"); err != nil || len(r.Kvs) != 1 {
			t.Fatalf("over mutual TLS: %v, %v", r, err)
		}
		noCert := n3.m.EtcdClientTLS()
		noCert.Certificates = nil
		c2, err := clientv3.New(clientv3.Config{Endpoints: []string{n3.m.ClientURL()}, TLS: noCert, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err == nil {
			defer c2.Close()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := c2.Get(cctx, "/test/k"); err == nil {
				t.Fatal("a client without a certificate read")
			}
		}
	})

	t.Run("gossip", func(t *testing.T) {
		eventually(t, 10*time.Second, "all alive with metadata", func() error {
			for _, n := range nodes {
				peers := n.m.Peers()
				if len(peers) != 4 {
					return fmt.Errorf("%s sees %+v", n.cfg.Name, peers)
				}
				for _, p := range peers {
					if p.State != cluster.StateAlive || p.Meta.ID != p.Name || p.Meta.Postgres != "127.0.0.1:5432" || p.Meta.NodeAPI == "" || p.Meta.PeerURL == "" {
						return fmt.Errorf("%s sees %+v", n.cfg.Name, p)
					}
				}
			}
			return nil
		})
		sessions.Store(7)
		if err := n1.m.UpdateMeta(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "updated metadata", func() error {
			for _, p := range n4.m.Peers() {
				if p.Name == "n1" && p.Meta.Sessions == 7 {
					return nil
				}
			}
			return fmt.Errorf("n4 sees %+v", n4.m.Peers())
		})
		// A memberlist without the key cannot join.
		host, port := splitAddr(t, freeport.TestAddr(t))
		c := memberlist.DefaultLANConfig()
		c.Name, c.BindAddr, c.BindPort, c.AdvertiseAddr, c.AdvertisePort = "intruder", host, port, host, port
		c.LogOutput = io.Discard
		c.TCPTimeout = time.Second
		intruder, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		defer intruder.Shutdown()
		if _, err := intruder.Join([]string{n1.cfg.GossipAddr}); err == nil {
			t.Fatal("a memberlist without the key joined")
		}
		for _, p := range n1.m.Peers() {
			if p.Name == "intruder" {
				t.Fatal("n1 sees the intruder")
			}
		}
	})

	t.Run("restart", func(t *testing.T) {
		n3.m.Close()
		n3 = start(tc, n3.cfg)
		nodes[2] = n3
		wantValue(t, n3, "/test/k", "v1", func() { put(t, n1, "/test/k", "v2") }, "v2")
		// n3 is a voter still. (n4 stays a learner unless the restart
		// took longer than the grace period, as it may on a loaded
		// machine.)
		eventually(t, 20*time.Second, "n3 a voter", func() error {
			st, err := n1.m.Status(ctx)
			if err != nil {
				return err
			}
			for _, ms := range st.Members {
				if ms.Name == "n3" && ms.Role == "voter" {
					return nil
				}
			}
			return fmt.Errorf("%+v", st.Members)
		})
		eventually(t, 10*time.Second, "n3 alive again", func() error { return wantGossip(n1, "n3", cluster.StateAlive) })
	})

	t.Run("voter lost", func(t *testing.T) {
		cluster.Crash(n2.m)
		eventually(t, 15*time.Second, "n2 dead", func() error { return wantGossip(n1, "n2", cluster.StateDead) })
		wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "voter", "n3": "voter", "n4": "voter"})
		st, err := n1.m.Status(ctx)
		if err != nil || !st.Quorum || st.Leader == "" || st.RaftIndex == 0 {
			t.Fatalf("status %+v, %v", st, err)
		}
		if _, err := json.Marshal(st); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("remove and leave", func(t *testing.T) {
		if err := n1.m.Remove(ctx, "n1"); !errors.Is(err, cluster.ErrRemoveSelf) {
			t.Fatalf("Remove(self): %v", err)
		}
		if err := n1.m.Remove(ctx, "nobody"); !errors.Is(err, cluster.ErrNotMember) {
			t.Fatalf("Remove(nobody): %v", err)
		}
		if err := n1.m.Remove(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		wantRoles(t, n3, map[string]string{"n1": "voter", "n3": "voter", "n4": "voter"})
		// The leader leaves: leadership moves first.
		leader := leaderOf(t, n3, nodes)
		if err := leader.m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		var rest []*testNode
		for _, n := range []*testNode{n1, n3, n4} {
			if n != leader {
				rest = append(rest, n)
			}
		}
		want := map[string]string{rest[0].cfg.Name: "voter", rest[1].cfg.Name: "voter"}
		wantRoles(t, rest[0], want)
		eventually(t, 10*time.Second, "the leader left gossip", func() error { return wantGossip(rest[0], leader.cfg.Name, cluster.StateLeft) })
		eventually(t, 10*time.Second, "quorum after the leader left", func() error { return rest[1].m.Quorum(ctx) })
		if err := rest[1].m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rest[0].m.Leave(ctx); !errors.Is(err, cluster.ErrOnlyMember) {
			t.Fatalf("the only member's Leave: %v", err)
		}
		eventually(t, 10*time.Second, "quorum of one", func() error { return rest[0].m.Quorum(ctx) })
	})
}

func put(t *testing.T, n *testNode, k, v string) {
	t.Helper()
	if _, err := n.m.Client().Put(context.Background(), k, v); err != nil {
		t.Fatal(err)
	}
}

// wantValue checks that n reads k as before, runs change, and waits until
// n reads k as after.
func wantValue(t *testing.T, n *testNode, k, before string, change func(), after string) {
	t.Helper()
	get := func() (string, error) {
		r, err := n.m.Client().Get(context.Background(), k)
		if err != nil || len(r.Kvs) == 0 {
			return "", err
		}
		return string(r.Kvs[0].Value), nil
	}
	eventually(t, 10*time.Second, "value before", func() error {
		if v, err := get(); err != nil || v != before {
			return fmt.Errorf("%q, %v", v, err)
		}
		return nil
	})
	change()
	eventually(t, 10*time.Second, "value after", func() error {
		if v, err := get(); err != nil || v != after {
			return fmt.Errorf("%q, %v", v, err)
		}
		return nil
	})
}

func memberCount(t *testing.T, n *testNode) int {
	t.Helper()
	r, err := n.m.Client().MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Members)
}

func wantGossip(n *testNode, name, state string) error {
	for _, p := range n.m.Peers() {
		if p.Name == name && p.State == state {
			return nil
		}
	}
	return fmt.Errorf("%s sees %+v, want %s %s", n.cfg.Name, n.m.Peers(), name, state)
}

func leaderOf(t *testing.T, n *testNode, nodes []*testNode) *testNode {
	t.Helper()
	st, err := n.m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range nodes {
		if c.cfg.Name == st.Leader {
			return c
		}
	}
	t.Fatalf("no leader in %+v", st)
	return nil
}

func splitAddr(t *testing.T, a string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	return h, port
}

// TestWholeClusterRestart: with Voters=1 the joiners stay learners; all
// three members stop and start again at once, each with its Dir: the
// cluster is back with its data, and gossip finds every node again
// (whichever started first had no seed up).
func TestWholeClusterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg1 := nodeConfig(t, "n1")
	cfg1.Voters = 1
	n1 := start(t, cfg1)
	tok := token(t, n1)
	n2 := joinNode(t, "n2", tok, n1)
	n3 := joinNode(t, "n3", tok, n2)
	wantRoles(t, n1, map[string]string{"n1": "voter", "n2": "learner", "n3": "learner"})
	put(t, n1, "/test/k", "before")

	nodes := []*testNode{n1, n2, n3}
	for _, n := range nodes {
		n.m.Close()
	}
	errs := make(chan error, len(nodes))
	for _, n := range slices.Backward(nodes) {
		go func() {
			m, err := cluster.Start(ctx, n.cfg)
			if err == nil {
				n.m = m
				t.Cleanup(func() { m.Close() })
			}
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wantValue(t, n3, "/test/k", "before", func() { put(t, n1, "/test/k", "after") }, "after")
	eventually(t, 15*time.Second, "gossip sees everyone", func() error {
		for _, n := range nodes {
			for _, name := range []string{"n1", "n2", "n3"} {
				if err := wantGossip(n, name, cluster.StateAlive); err != nil {
					return err
				}
			}
		}
		return nil
	})
	wantRoles(t, n2, map[string]string{"n1": "voter", "n2": "learner", "n3": "learner"})

	// A live member removed by another learns it on Err.
	if err := n1.m.Remove(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n3.m.Err():
		if !errors.Is(err, cluster.ErrRemoved) {
			t.Fatalf("n3's Err: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("n3 not told it was removed")
	}
	wantRoles(t, n2, map[string]string{"n1": "voter", "n2": "learner"})
}
