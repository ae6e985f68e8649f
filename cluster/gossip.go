package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells the others about itself over gossip, besides
// the cluster addresses the member adds.
type Meta struct {
	// Postgres is the address clients use for PostgreSQL.
	Postgres string `json:"pg,omitempty"`
	// API is the operators' HTTPS API address.
	API string `json:"api,omitempty"`
	// Version is the node's software version.
	Version string `json:"v,omitempty"`
	// Sessions is the node's load: its active sessions.
	Sessions int `json:"sessions"`
}

// NodeMeta is a node's gossip metadata: its Meta and its cluster
// addresses. Encoded, it stays under memberlist's 512 bytes.
type NodeMeta struct {
	Meta
	// ID is the node's name.
	ID string `json:"id"`
	// NodeAPI is the node-to-node API address.
	NodeAPI string `json:"napi,omitempty"`
	// PeerURL is the node's etcd peer URL.
	PeerURL string `json:"peer,omitempty"`
}

// Gossip states of a peer. memberlist tells of no suspicion, so a node
// suspected is still alive here until it is declared dead.
const (
	StateAlive = "alive"
	StateDead  = "dead"
	StateLeft  = "left"
)

// Peer is a node as gossip knows it.
type Peer struct {
	Name string `json:"name"`
	// Addr is the node's gossip address.
	Addr string `json:"addr"`
	// State is StateAlive, StateDead or StateLeft.
	State string   `json:"state"`
	Meta  NodeMeta `json:"meta"`
}

// gossip is the member's memberlist, and what it has seen of the others.
// memberlist calls the delegate methods from its own goroutines; mu
// guards peers.
type gossip struct {
	list *memberlist.Memberlist
	meta func() []byte

	mu    sync.Mutex
	peers map[string]Peer
	// leaving holds the nodes that said they leave: memberlist reports
	// a node that left and one that died alike (its Node.State is not
	// kept), so a leaving node says so first, in leaveMsg.
	leaving map[string]bool
}

// leaveMsg + name is what a node sends the others before it leaves
// gossip. Like all gossip it is encrypted and authenticated with the
// gossip key.
const leaveMsg = "phigate-leave:"

// startGossip starts memberlist on GossipAddr and joins the seeds: those
// learned when admitted, the registry's, and the Join addresses' hosts
// are not gossip addresses so they are not used.
func (m *Member) startGossip() (*gossip, error) {
	host, portStr, err := net.SplitHostPort(m.cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address: %w", err)
	}
	g := &gossip{peers: map[string]Peer{}, leaving: map[string]bool{}}
	g.meta = func() []byte {
		nm := NodeMeta{Meta: m.cfg.Meta(), ID: m.cfg.Name, NodeAPI: m.cfg.APIAddr, PeerURL: m.cfg.peerURL()}
		b, _ := json.Marshal(nm)
		if len(b) > memberlist.MetaMaxSize {
			// Drop what is free-form rather than the addresses.
			nm.Version, nm.API, nm.Postgres = "", "", ""
			b, _ = json.Marshal(nm)
		}
		return b
	}
	c := memberlist.DefaultLANConfig()
	c.Name = m.cfg.Name
	c.BindAddr, c.BindPort = host, port
	c.AdvertiseAddr, c.AdvertisePort = host, port
	c.SecretKey = m.pki.secrets[GossipSecret]
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	c.Delegate = (*gossipDelegate)(g)
	c.Events = (*gossipEvents)(g)
	c.Logger = nil
	c.LogOutput = &slogWriter{log: m.log.With("part", "gossip")}
	if m.cfg.timing.gossip != nil {
		m.cfg.timing.gossip(c)
	}
	list, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip: %w", err)
	}
	g.list = list

	seeds := slices.Clone(m.pki.state.GossipSeeds)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if nodes, err := m.nodes(ctx); err == nil {
		for _, n := range nodes {
			if n.Name != m.cfg.Name && n.GossipAddr != "" {
				seeds = append(seeds, n.GossipAddr)
			}
		}
	}
	cancel()
	slices.Sort(seeds)
	seeds = slices.Compact(seeds)
	if len(seeds) > 0 {
		if n, err := list.Join(seeds); err != nil {
			// Gossip converges by itself once any seed answers; a node whose
			// seeds are all down is found when another joins it.
			m.log.Info("cluster: gossip: no seed answered yet", "seeds", seeds, "joined", n, "err", err)
		}
	}
	return g, nil
}

// rejoinLoop asks gossip, every rejoinEvery, to join the registered nodes
// it does not see alive: when the whole cluster restarts, the first node
// up finds no seed, and the others may have joined one another without it.
func (m *Member) rejoinLoop() {
	defer m.loops.Done()
	t := time.NewTicker(m.cfg.timing.rejoinEvery)
	defer t.Stop()
	var busy atomic.Bool
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		nodes, err := m.nodes(ctx)
		cancel()
		if err != nil {
			continue
		}
		var missing []string
		for _, n := range nodes {
			if n.Name != m.cfg.Name && n.GossipAddr != "" && !m.gossip.alive(n.Name) {
				missing = append(missing, n.GossipAddr)
			}
		}
		if len(missing) == 0 || !busy.CompareAndSwap(false, true) {
			continue
		}
		// Join may wait on an unreachable address for memberlist's TCP
		// timeout; Close does not wait for it (Shutdown fails it).
		go func() {
			defer busy.Store(false)
			if n, err := m.gossip.list.Join(missing); err != nil {
				m.log.Debug("cluster: gossip: rejoin", "tried", missing, "joined", n, "err", err)
			}
		}()
	}
}

// close leaves gossip, telling the others for at most a second, and
// stops it.
func (g *gossip) close() error {
	self := g.list.LocalNode().Name
	for _, n := range g.list.Members() {
		if n.Name != self {
			// Best effort, over UDP so that Close never waits on a dead
			// node: a node that misses it sees this one dead.
			_ = g.list.SendBestEffort(n, []byte(leaveMsg+self))
		}
	}
	// A timeout only means the others will notice later.
	_ = g.list.Leave(time.Second)
	return g.list.Shutdown()
}

// Peers lists the nodes gossip knows, this one included, sorted by name:
// their state and metadata. A node gone for long is forgotten.
func (m *Member) Peers() []Peer {
	return m.gossip.snapshot()
}

func (g *gossip) snapshot() []Peer {
	g.mu.Lock()
	out := make([]Peer, 0, len(g.peers))
	for _, p := range g.peers {
		out = append(out, p)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Peer) int { return cmpString(a.Name, b.Name) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// alive tells whether gossip sees the named node alive.
func (g *gossip) alive(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peers[name].State == StateAlive
}

// UpdateMeta re-reads Config.Meta and tells the other nodes.
func (m *Member) UpdateMeta() error {
	if err := m.gossip.list.UpdateNode(time.Second); err != nil {
		return fmt.Errorf("cluster: gossip: update metadata: %w", err)
	}
	return nil
}

// record notes a node's state; up is false when it died or left.
func (g *gossip) record(n *memberlist.Node, up bool) {
	p := Peer{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), State: StateAlive}
	if len(n.Meta) > 0 {
		_ = json.Unmarshal(n.Meta, &p.Meta)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case up:
		delete(g.leaving, n.Name)
	case g.leaving[n.Name]:
		p.State = StateLeft
	default:
		p.State = StateDead
	}
	g.peers[n.Name] = p
}

// left notes that a node said it leaves.
func (g *gossip) left(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leaving[name] = true
	if p, ok := g.peers[name]; ok && p.State == StateDead {
		p.State = StateLeft
		g.peers[name] = p
	}
}

// gossipEvents follows nodes joining, leaving and changing metadata.
// memberlist calls it with the node's state locked, so *n is stable
// during the call.
type gossipEvents gossip

func (e *gossipEvents) NotifyJoin(n *memberlist.Node)   { (*gossip)(e).record(n, true) }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) { (*gossip)(e).record(n, true) }
func (e *gossipEvents) NotifyLeave(n *memberlist.Node)  { (*gossip)(e).record(n, false) }

// gossipDelegate gives memberlist this node's metadata and hears leaving
// nodes; the member broadcasts nothing else over gossip.
type gossipDelegate gossip

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	b := d.meta()
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg(b []byte) {
	if name, ok := bytes.CutPrefix(b, []byte(leaveMsg)); ok {
		(*gossip)(d).left(string(name))
	}
}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// slogWriter turns memberlist's log lines into debug records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Debug(string(bytes.TrimSpace(p)))
	return len(p), nil
}
