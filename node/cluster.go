package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/record"
)

// ClusterSubdir is where, under the data directory, the node's cluster
// member keeps its data (etcd's log and snapshots, the cluster PKI and
// secrets).
const ClusterSubdir = "cluster"

// The node is a member of a cluster (package cluster) from Start on:
//
//   - the policy in force is the cluster's current policy revision; the
//     node applies each revision as a watch delivers it (applyRevision),
//     so the data path reads only the published snapshot and never waits
//     on the cluster;
//   - the first node of a cluster applies its configuration's policy
//     sections as revision 1 (the bootstrap policy);
//   - ApplyPolicy validates a document fully, seals its credentials under
//     the cluster key and stores it as the next revision, on any node;
//   - watchQuorum checks the quorum every second: a node that has not
//     reached it for longer than cluster.lease publishes a snapshot that
//     refuses everything (57P03), and the current one again once it has.

// defaultLease is how long a node without quorum goes on deciding.
const defaultLease = 30 * time.Second

// policyStartTimeout bounds how long Start waits for the first policy
// revision (from a cluster being joined, or bootstrapped).
const policyStartTimeout = 30 * time.Second

// startCluster starts the node's cluster member: it bootstraps a cluster
// (its configuration's policy as revision 1) or joins one, or restarts as
// the member it was; it then opens the sealer and the pseudonym key the
// cluster holds, and returns once the current policy revision is the
// published snapshot.
func (n *Node) startCluster(ctx context.Context) error {
	cc := n.cfg.Cluster
	key, err := clusterKey(n.cfg)
	if err != nil {
		return err
	}
	if err := freeLoopbackAddrs(&cc.Peer, &cc.Client, &cc.Gossip, &cc.API); err != nil {
		return fmt.Errorf("node: cluster: %w", err)
	}
	token := n.joinToken
	if token == "" && cc.JoinTokenFile != "" {
		b, err := os.ReadFile(cc.JoinTokenFile)
		if err != nil {
			return fmt.Errorf("node: cluster.join_token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	m, err := cluster.Start(ctx, cluster.Config{
		Name: n.id, Dir: filepath.Join(n.dataDir, ClusterSubdir),
		PeerAddr: cc.Peer, ClientAddr: cc.Client, GossipAddr: cc.Gossip, APIAddr: cc.API,
		Join: cc.Join, JoinToken: token, Voters: cc.Voters,
		Secrets: map[string][]byte{ClusterKeySecret: key, PseudonymKeySecret: n.ownPseudonym},
		Meta:    n.gossipMeta,
		Logger:  n.baseLog, // the member names the node itself
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.member = m
	if key == nil {
		if key = m.Secret(ClusterKeySecret); key == nil {
			return errors.New("node: the cluster has no cluster key and keys.cluster_key_file/env are not set")
		}
	}
	if n.sealer, err = NewAESSealer(key); err != nil {
		return err
	}
	k := m.Secret(PseudonymKeySecret)
	switch {
	case n.cfg.Keys.PseudonymKeyFile == "" && k == nil:
		return errors.New("node: the cluster has no pseudonym key and keys.pseudonym_key_file is not set")
	case n.cfg.Keys.PseudonymKeyFile == "":
		n.reloadMu.Lock()
		n.loc.keys.Pseudonym = k
		n.reloadMu.Unlock()
	case k != nil && !bytes.Equal(k, n.loc.keys.Pseudonym):
		n.log.Warn("keys.pseudonym_key_file differs from the cluster's pseudonym key: masked values of this node will not join with other nodes'")
	}
	n.policies = cluster.NewPolicies(m.Client())

	if len(cc.Join) == 0 {
		if err := n.bootstrapPolicy(ctx); err != nil {
			return err
		}
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	n.stopWatch = stopWatch
	first := make(chan struct{})
	n.bgDone.Add(2)
	go func() {
		defer n.bgDone.Done()
		n.watchPolicy(watchCtx, first)
	}()
	go func() {
		defer n.bgDone.Done()
		n.watchQuorum(watchCtx)
	}()
	n.bgDone.Add(1)
	go func() {
		defer n.bgDone.Done()
		select {
		case err := <-m.Err():
			if watchCtx.Err() == nil {
				n.log.Error("cluster member failed; the node must shut down", "err", err)
				n.fail(fmt.Errorf("node: cluster member: %w", err))
			}
		case <-watchCtx.Done():
		}
	}()
	select {
	case <-first:
		n.quorumOK.Store(true) // the revision was read through the quorum
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(policyStartTimeout):
		return fmt.Errorf("node: no policy revision from the cluster after %v", policyStartTimeout)
	}
}

// bootstrapPolicy applies the configuration's policy sections as the
// cluster's first revision, when the cluster has none.
func (n *Node) bootstrapPolicy(ctx context.Context) error {
	if _, err := n.policies.Get(ctx, 0); !errors.Is(err, cluster.ErrNoPolicy) {
		return err // nil: the cluster has its policy
	}
	rev, err := n.ApplyPolicy(ctx, n.bootstrap, "bootstrap (configuration of node "+n.id+")", 0)
	if err != nil {
		return fmt.Errorf("node: bootstrap policy: %w", err)
	}
	n.recMu.Lock()
	n.bootstrapped = &rev
	n.recMu.Unlock()
	n.log.Info("bootstrapped the cluster's policy from the node's configuration", "policy_revision", rev.Revision, "sha256", rev.SHA256)
	return nil
}

// ApplyPolicy validates p fully (every error is reported, joined; nothing
// changes then), seals the passwords it carries in clear under the
// cluster key, and stores it as the cluster's next policy revision,
// applied by who, if the current revision is still base (0: whatever is
// current; cluster.ErrConflict otherwise). p must be resolved
// (Policy.Resolve); it is not changed. Every node enforces the revision
// once its watch delivers it (on this node: before ApplyPolicy returns
// only if the watch was quicker; see WaitPolicy).
func (n *Node) ApplyPolicy(ctx context.Context, p *Policy, who string, base uint64) (cluster.PolicyRevision, error) {
	if n.policies == nil || n.sealer == nil {
		return cluster.PolicyRevision{}, errors.New("node: not started")
	}
	doc, err := n.sealDocument(p)
	if err != nil {
		return cluster.PolicyRevision{}, err
	}
	// Once the node records, a change is recorded before it is stored
	// (who, on which revision, the document's digest), and its outcome
	// after: a change that cannot be recorded is not made.
	sum := sha256.Sum256(doc)
	n.recMu.Lock()
	recorder := n.recorder
	n.recMu.Unlock()
	var intent *session.Recording
	if recorder != nil {
		if intent, err = n.startPolicyRecord(ctx, recorder, who, base, hex.EncodeToString(sum[:])); err != nil {
			return cluster.PolicyRevision{}, fmt.Errorf("node: cannot record the policy change, so it is not made: %w", err)
		}
	}
	rev, err := n.policies.Apply(ctx, doc, who, base)
	if intent != nil {
		if rerr := n.recordPolicy(ctx, who, base, hex.EncodeToString(sum[:]), &rev, intent, err); rerr != nil {
			n.log.Error("cannot record the outcome of a policy change", "err", rerr)
		}
	}
	if err != nil {
		return cluster.PolicyRevision{}, err
	}
	n.log.Info("policy revision stored", "policy_revision", rev.Revision, "applied_by", who, "sha256", rev.SHA256)
	return rev, nil
}

// sealDocument validates p and returns its stored form.
func (n *Node) sealDocument(p *Policy) ([]byte, error) {
	b, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	c, err := ParsePolicy(b) // a copy: p is not changed
	if err != nil {
		return nil, err
	}
	if err := c.unresolved(); err != nil {
		return nil, err
	}
	if err := sealPolicy(c, n.sealer); err != nil {
		return nil, err
	}
	n.reloadMu.Lock()
	loc := n.loc
	n.reloadMu.Unlock()
	if _, _, err := buildSnapshot(c, loc, n.sealer, nil, n.log); err != nil {
		return nil, err
	}
	return c.Marshal()
}

// startPolicyRecord starts a recording of a policy change and makes its
// intent durable.
func (n *Node) startPolicyRecord(ctx context.Context, recorder *session.Recorder, who string, base uint64, sum string) (*session.Recording, error) {
	rec, err := recorder.Start(session.NewID(time.Now()))
	if err != nil {
		return nil, err
	}
	rec.SetSubject(who, "")
	if _, err := rec.Append(&record.Event{Kind: record.KindPolicy, Policy: &record.PolicyChange{Base: base, SHA256: sum, AppliedBy: who}}); err != nil {
		return nil, err
	}
	if err := rec.Sync(ctx); err != nil {
		return nil, err
	}
	return rec, nil
}

// recordPolicy records the outcome of a policy change: the revision
// stored (applyErr nil), or that it was refused. rec is its recording, or
// nil to record the whole change now (revision 1, stored before the
// spool was open).
func (n *Node) recordPolicy(ctx context.Context, who string, base uint64, sum string, rev *cluster.PolicyRevision, rec *session.Recording, applyErr error) error {
	var err error
	if rec == nil {
		n.recMu.Lock()
		recorder := n.recorder
		n.recMu.Unlock()
		if rec, err = recorder.Start(session.NewID(time.Now())); err != nil {
			return err
		}
		rec.SetSubject(who, "")
	}
	reason := "policy stored"
	if applyErr != nil {
		reason = "policy refused: " + applyErr.Error()
	} else if _, err := rec.Append(&record.Event{Kind: record.KindPolicy, Policy: &record.PolicyChange{Revision: rev.Revision, Base: base, SHA256: sum, AppliedBy: who}}); err != nil {
		return err
	}
	if _, err := rec.Append(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: reason}}); err != nil {
		return err
	}
	return rec.Close(ctx)
}

// Policy returns the cluster's policy revision rev (0: the current one)
// in its stored form: passwords sealed.
func (n *Node) Policy(ctx context.Context, rev uint64) (cluster.PolicyRevision, error) {
	if n.policies == nil {
		return cluster.PolicyRevision{}, errors.New("node: not started")
	}
	return n.policies.Get(ctx, rev)
}

// PolicyHistory lists the cluster's policy revisions, oldest first,
// without their documents.
func (n *Node) PolicyHistory(ctx context.Context) ([]cluster.PolicyRevision, error) {
	if n.policies == nil {
		return nil, errors.New("node: not started")
	}
	return n.policies.History(ctx)
}

// WaitPolicy returns once this node enforces policy revision rev or a
// later one, or ctx ends.
func (n *Node) WaitPolicy(ctx context.Context, rev uint64) error {
	for {
		n.policyMu.Lock()
		cur, ch := n.policyRev, n.policyChanged
		n.policyMu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// PolicyRevision is the cluster policy revision this node enforces (0
// before Start has loaded one).
func (n *Node) PolicyRevision() uint64 {
	n.policyMu.Lock()
	defer n.policyMu.Unlock()
	return n.policyRev
}

// watchPolicy applies every policy revision the cluster makes current,
// until ctx ends; first is closed once one was applied. A watch that
// fails (the member lost its leader, a compaction) is started again.
func (n *Node) watchPolicy(ctx context.Context, first chan struct{}) {
	var once bool
	for ctx.Err() == nil {
		err := n.policies.Watch(ctx, func(rev cluster.PolicyRevision) error {
			if err := n.applyRevision(rev); err != nil {
				// The cluster holds only validated documents, so this is a
				// node-local problem (its certificate, say): it keeps the
				// revision it has, and says so.
				n.log.Error("cannot enforce the cluster's policy revision; keeping the current one", "policy_revision", rev.Revision, "current", n.PolicyRevision(), "err", err)
				n.metrics.policyRefused.Inc()
				return nil
			}
			if !once {
				once = true
				close(first)
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Warn("policy watch ended; starting it again", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// applyRevision builds the snapshot of a stored policy revision,
// publishes it and ends the sessions it no longer admits.
func (n *Node) applyRevision(rev cluster.PolicyRevision) error {
	p, err := ParsePolicy(rev.Document)
	if err != nil {
		return err
	}
	n.reloadMu.Lock()
	snap, profiles, err := buildSnapshot(p, n.loc, n.sealer, n.profiles, n.log)
	if err != nil {
		n.reloadMu.Unlock()
		return err
	}
	n.profiles, n.policy = profiles, p
	if why := n.unavailable.Load(); why != nil {
		snap.Unavailable = *why
	}
	stateRev := n.state.Publish(snap)
	n.reloadMu.Unlock()
	n.policyMu.Lock()
	n.policyRev = rev.Revision
	close(n.policyChanged)
	n.policyChanged = make(chan struct{})
	n.policyMu.Unlock()
	n.recheck()
	n.log.Info("policy revision enforced", "policy_revision", rev.Revision, "applied_by", rev.AppliedBy, "applied_at", rev.AppliedAt, "sha256", rev.SHA256, "state_revision", stateRev)
	return nil
}

// recheck ends the sessions the current snapshot no longer admits.
func (n *Node) recheck() {
	n.mu.Lock()
	srv := n.srv
	n.mu.Unlock()
	if srv != nil {
		srv.Recheck()
	}
}

// watchQuorum checks every second that the cluster's quorum answers. When
// it has not for longer than the lease, the node refuses every login and
// command (57P03) until it answers again: without the quorum it cannot
// know of revocations, so it may not go on deciding with what it has.
func (n *Node) watchQuorum(ctx context.Context) {
	lease := n.cfg.Cluster.Lease
	if lease <= 0 {
		lease = defaultLease
	}
	last := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.member.Quorum(qctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		n.quorumOK.Store(err == nil)
		switch {
		case err == nil:
			last = now
			if n.unavailable.Load() != nil {
				n.setUnavailable("")
				n.log.Info("cluster quorum is back: serving again")
			}
		case now.Sub(last) > lease && n.unavailable.Load() == nil:
			why := fmt.Sprintf("no contact with the cluster's quorum for %v (lease %v); refusing until it is back", now.Sub(last).Round(time.Second), lease)
			n.setUnavailable(why)
			n.log.Error("cluster quorum lost for longer than the lease: refusing every login and command", "lease", lease, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// setUnavailable publishes the current snapshot marked unavailable for
// why ("" clears it).
func (n *Node) setUnavailable(why string) {
	n.reloadMu.Lock()
	if why == "" {
		n.unavailable.Store(nil)
	} else {
		n.unavailable.Store(&why)
	}
	n.state.Publish(n.state.Load().WithUnavailable(why))
	n.reloadMu.Unlock()
	n.recheck()
}

// gossipMeta is what the node tells the other nodes of itself.
func (n *Node) gossipMeta() cluster.Meta {
	m := cluster.Meta{Version: Version}
	n.mu.Lock()
	if n.pgAddr != nil {
		m.Postgres = n.pgAddr.String()
	}
	if n.apiAddr != nil {
		m.API = n.apiAddr.String()
	}
	n.mu.Unlock()
	if n.metrics != nil {
		m.Sessions = n.metrics.activeSessions()
	}
	return m
}

// freeLoopbackAddrs sets each empty address to a loopback address whose
// port is free right now, each a different one (all are held open until
// all are chosen).
func freeLoopbackAddrs(addrs ...*string) error {
	for _, a := range addrs {
		if *a != "" {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		*a = ln.Addr().String()
	}
	return nil
}
