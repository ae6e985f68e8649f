package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
)

// maxVoters caps the voting members whatever Voters says: more voters
// only slow every write.
const maxVoters = 5

var (
	// ErrOnlyMember is returned by Leave on the cluster's only member.
	ErrOnlyMember = errors.New("cluster: this is the only member: there is no cluster to leave")
	// ErrNotMember is returned by Remove for a name that is no member.
	ErrNotMember = errors.New("cluster: no member by that name")
	// ErrRemoveSelf is returned by Remove for this node's own name.
	ErrRemoveSelf = errors.New("cluster: a node does not remove itself: use Leave")
	// ErrClosed is returned by operations on a closed member.
	ErrClosed = errors.New("cluster: member closed")
)

// reconcileLoop runs on every node; only the leader acts: it promotes
// learners while the cluster has fewer healthy voters than it should. A
// voter counts as lost only once it has been down for the grace period
// (timing.voterGrace), so that a restart does not cost a promotion.
func (m *Member) reconcileLoop() {
	defer m.loops.Done()
	t := time.NewTicker(m.cfg.timing.reconcileEvery)
	defer t.Stop()
	downSince := map[types.ID]time.Time{} // owned by this goroutine
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		members := m.etcd.Server.Cluster().Members()
		seen := map[types.ID]bool{}
		for _, mem := range members {
			seen[mem.ID] = true
			if m.healthy(mem) {
				delete(downSince, mem.ID)
			} else if _, ok := downSince[mem.ID]; !ok {
				downSince[mem.ID] = now
			}
		}
		for id := range downSince {
			if !seen[id] {
				delete(downSince, id)
			}
		}
		if m.etcd.Server.Leader() != m.etcd.Server.MemberID() {
			continue
		}
		counts := func(mem *membership.Member) bool {
			since, down := downSince[mem.ID]
			return !down || now.Sub(since) < m.cfg.timing.voterGrace
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.timing.reconcileEvery*3)
		m.promote(ctx, members, counts)
		cancel()
	}
}

// healthy tells whether a member is up: gossip sees it alive (the leader
// itself always is).
func (m *Member) healthy(mem *membership.Member) bool {
	return mem.ID == m.etcd.Server.MemberID() || (mem.Name != "" && m.gossip.alive(mem.Name))
}

// promote promotes one healthy learner when the voters that count (see
// reconcileLoop) are fewer than Voters and all voters fewer than
// maxVoters. A learner not caught up yet is refused by etcd; the next
// round tries again.
func (m *Member) promote(ctx context.Context, members []*membership.Member, counts func(*membership.Member) bool) {
	voters, counted := 0, 0
	var learners []*membership.Member
	for _, mem := range members {
		switch {
		case mem.IsLearner:
			if m.healthy(mem) {
				learners = append(learners, mem)
			}
		default:
			voters++
			if counts(mem) {
				counted++
			}
		}
	}
	if counted >= m.cfg.Voters || voters >= maxVoters || len(learners) == 0 {
		return
	}
	// By name, for a stable choice.
	slices.SortFunc(learners, func(a, b *membership.Member) int { return strings.Compare(a.Name, b.Name) })
	for _, l := range learners {
		if _, err := m.client.MemberPromote(ctx, uint64(l.ID)); err != nil {
			m.log.Debug("cluster: learner not promoted yet", "member", l.Name, "err", err)
			continue
		}
		m.log.Info("cluster: promoted a learner to voter", "member", l.Name, "voters", voters+1)
		return
	}
}

// Leave takes this node out of the cluster for good and stops the member
// (as Close does; Close afterwards does nothing). If the node leads, it
// hands leadership to another voter first; if it is the last voter, it
// promotes a learner first. It refuses on the only member. etcd refuses
// changes that could cost quorum, such as removing a voter while another
// has been connected for less than five seconds: Leave tries again until
// ctx ends.
func (m *Member) Leave(ctx context.Context) error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	me := m.etcd.Server.MemberID()
	members := m.etcd.Server.Cluster().Members()
	if len(members) == 1 {
		return ErrOnlyMember
	}
	var voters []*membership.Member
	var learners []*membership.Member
	for _, mem := range members {
		if mem.ID == me {
			continue
		}
		if mem.IsLearner {
			learners = append(learners, mem)
		} else {
			voters = append(voters, mem)
		}
	}
	if !m.etcd.Server.IsLearner() && len(voters) == 0 {
		// Someone must keep the cluster: promote a learner, waiting for
		// it to catch up.
		if err := m.promoteAny(ctx, learners); err != nil {
			return fmt.Errorf("cluster: leave: promote a learner to take over: %w", err)
		}
		voters = learners[:1]
	}
	if m.etcd.Server.Leader() == me {
		slices.SortFunc(voters, func(a, b *membership.Member) int {
			ha, hb := m.healthy(a), m.healthy(b)
			switch {
			case ha && !hb:
				return -1
			case hb && !ha:
				return 1
			}
			return 0
		})
		err := m.retry(ctx, "move leader", func() error {
			var err error
			for _, v := range voters {
				if err = m.etcd.Server.MoveLeader(ctx, uint64(me), uint64(v.ID)); err == nil {
					break
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("cluster: leave: hand leadership over: %w", err)
		}
	}
	if _, err := m.client.Delete(ctx, nodesPrefix+m.cfg.Name); err != nil {
		return fmt.Errorf("cluster: leave: remove this node from the registry: %w", err)
	}
	// etcd stops itself once its member is removed; that is no failure,
	// but a stop before the removal was asked for is.
	if m.stopped() {
		return errors.New("cluster: leave: the etcd member has stopped; it cannot remove itself")
	}
	m.leaving.Store(true)
	err := m.retry(ctx, "remove self", func() error {
		// Bounded per attempt: once the removal is applied, etcd stops
		// this member and the in-process call may never answer.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := m.client.MemberRemove(actx, uint64(me))
		if err != nil && (!m.etcd.Server.IsMemberExist(me) || m.stopped()) {
			// Removed: etcd stopped before it answered, having applied
			// the removal, or told by a peer that it was removed before
			// it applied it (then its own member list still has it).
			return nil
		}
		return err
	})
	if err != nil {
		m.leaving.Store(false)
		return fmt.Errorf("cluster: leave: remove this member: %w", err)
	}
	m.closed = true
	m.closeErr = m.shutdown()
	m.log.Info("cluster: left the cluster")
	return m.closeErr
}

// stopped reports whether the etcd server has stopped.
func (m *Member) stopped() bool {
	select {
	case <-m.etcd.Server.StopNotify():
		return true
	default:
		return false
	}
}

// retry calls f until it succeeds or ctx ends. etcd refuses a membership
// change that could cost quorum while a voter has been connected for less
// than five seconds (etcdserver.HealthInterval): such refusals pass.
func (m *Member) retry(ctx context.Context, what string, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		m.log.Debug("cluster: etcd refused; trying again", "op", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-m.etcd.Server.StopNotify():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// promoteAny promotes one of learners, retrying until one is caught up
// or ctx ends.
func (m *Member) promoteAny(ctx context.Context, learners []*membership.Member) error {
	if len(learners) == 0 {
		return errors.New("no learner")
	}
	for {
		var last error
		for i, l := range learners {
			if _, err := m.client.MemberPromote(ctx, uint64(l.ID)); err != nil {
				last = err
				continue
			}
			learners[0], learners[i] = learners[i], learners[0]
			learners[0].IsLearner = false
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Remove takes the named member (usually a dead one) out of the cluster
// and the node registry, trying again until ctx ends while etcd refuses
// (see Leave). A node removes others only: to take this node
// out, use Leave.
func (m *Member) Remove(ctx context.Context, name string) error {
	if name == m.cfg.Name {
		return ErrRemoveSelf
	}
	var target *membership.Member
	nodes, _ := m.nodes(ctx)
	for _, mem := range m.etcd.Server.Cluster().Members() {
		if mem.Name == name || (mem.Name == "" && slices.Contains(mem.PeerURLs, nodes[name].PeerURL)) {
			target = mem
		}
	}
	if target == nil {
		if _, ok := nodes[name]; !ok {
			return fmt.Errorf("%w: %q", ErrNotMember, name)
		}
	} else if err := m.retry(ctx, "remove "+name, func() error {
		_, err := m.client.MemberRemove(ctx, uint64(target.ID))
		return err
	}); err != nil {
		return fmt.Errorf("cluster: remove %s: %w", name, err)
	}
	if _, err := m.client.Delete(ctx, nodesPrefix+name); err != nil {
		return fmt.Errorf("cluster: remove %s from the registry: %w", name, err)
	}
	m.log.Info("cluster: removed a member", "member", name)
	return nil
}

// Status is the cluster as this node sees it.
type Status struct {
	// Self is this node's name; Leader the leader's ("" when none is
	// known).
	Self   string `json:"self"`
	Leader string `json:"leader"`
	// Quorum is whether a linearizable read succeeded just now.
	Quorum      bool   `json:"quorum"`
	QuorumError string `json:"quorum_error,omitempty"`
	// RaftTerm and RaftIndex (committed) are this member's.
	RaftTerm  uint64         `json:"raft_term"`
	RaftIndex uint64         `json:"raft_index"`
	Members   []MemberStatus `json:"members"`
}

// MemberStatus is one etcd member.
type MemberStatus struct {
	Name string `json:"name"`
	// ID is the etcd member id, in hex.
	ID      string `json:"id"`
	Role    string `json:"role"` // "voter" or "learner"
	Leader  bool   `json:"leader"`
	PeerURL string `json:"peer_url"`
	// Gossip is the node's gossip state: StateAlive, StateDead, StateLeft,
	// or "" when gossip has not seen it.
	Gossip string    `json:"gossip"`
	Meta   *NodeMeta `json:"meta,omitempty"`
}

// Status reports the members, the leader and whether there is quorum
// (checked with a read bounded by ctx and at most two seconds). It
// answers without quorum, from what this member knows.
func (m *Member) Status(ctx context.Context) (Status, error) {
	s := m.etcd.Server
	st := Status{Self: m.cfg.Name, RaftTerm: s.Term(), RaftIndex: s.CommittedIndex()}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := m.Quorum(qctx)
	cancel()
	st.Quorum = err == nil
	if err != nil {
		st.QuorumError = err.Error()
	}
	peers := map[string]Peer{}
	for _, p := range m.Peers() {
		peers[p.Name] = p
	}
	nodes, _ := m.nodes(ctx)
	lead := s.Leader()
	for _, mem := range s.Cluster().Members() {
		ms := MemberStatus{Name: mem.Name, ID: types.ID(mem.ID).String(), Role: "voter", Leader: mem.ID == lead}
		if mem.IsLearner {
			ms.Role = "learner"
		}
		if len(mem.PeerURLs) > 0 {
			ms.PeerURL = mem.PeerURLs[0]
		}
		if ms.Name == "" {
			for _, n := range nodes {
				if n.PeerURL == ms.PeerURL {
					ms.Name = n.Name
				}
			}
		}
		if p, ok := peers[ms.Name]; ok {
			ms.Gossip = p.State
			meta := p.Meta
			ms.Meta = &meta
		}
		if ms.Leader {
			st.Leader = ms.Name
		}
		st.Members = append(st.Members, ms)
	}
	slices.SortFunc(st.Members, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

// quorumKey is read to prove quorum; it need not exist.
const quorumKey = "/phigate/quorum"

// Quorum returns nil when a linearizable read succeeds within ctx: the
// cluster has a leader that a majority of voters follows, and this member
// reaches it. The node calls it every second to fail closed after a
// lease without quorum.
func (m *Member) Quorum(ctx context.Context) error {
	if _, err := m.client.Get(ctx, quorumKey); err != nil {
		return fmt.Errorf("cluster: no quorum: %w", err)
	}
	return nil
}
