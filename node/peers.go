package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/session/pgwire"
)

// What nodes do for each other, over the node-to-node API (mutual TLS
// under the cluster CA; package cluster serves it): a CancelRequest that
// reached the wrong node is passed to the node whose number its key
// carries (pgwire's cancel key layout), which checks it as its own.

// The cluster numbers nodes in the range cancel keys carry.
const _ = uint(cluster.MaxNodeNumber-pgwire.MaxNodeNumber) + uint(pgwire.MaxNodeNumber-cluster.MaxNodeNumber)

// cancelPath is the node-to-node endpoint of forwarded cancel requests.
const cancelPath = "/node/v1/cancel"

// peerRoutes registers the node-to-node endpoints; srv serves them.
func (n *Node) peerRoutes(srv *pgwire.Server) {
	n.member.Handle("POST "+cancelPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64))
		key, derr := hex.DecodeString(string(bytes.TrimSpace(body)))
		if err != nil || derr != nil {
			http.Error(w, "bad key", http.StatusBadRequest)
			return
		}
		from := "?"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			from = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		// Like PostgreSQL, the answer says nothing of whether it matched.
		srv.Cancel(r.Context(), key, from)
		w.WriteHeader(http.StatusNoContent)
	}))
}

// peerNames caches node numbers' names (a number is never given to
// another node).
type peerNames struct {
	mu    sync.Mutex
	names map[uint16]string
}

// forwardCancel is pgwire's Config.ForwardCancel: it sends key to the
// node numbered num, found by gossip. A number no node has, or a node
// that is not alive, drops it (logged).
func (n *Node) forwardCancel(ctx context.Context, num uint16, key []byte) {
	name, err := n.peerName(ctx, num)
	if err != nil {
		n.log.Info("cancel request for an unknown node number dropped", "node_number", num)
		return
	}
	var addr string
	for _, p := range n.member.Peers() {
		if p.Name == name && p.State == cluster.StateAlive {
			addr = p.Meta.NodeAPI
		}
	}
	if addr == "" {
		n.log.Warn("cancel request for a node that is not alive dropped", "to", name)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+cancelPath, bytes.NewReader([]byte(hex.EncodeToString(key))))
	if err != nil {
		return
	}
	resp, err := n.member.PeerClient().Do(req)
	if err != nil {
		n.log.Warn("cannot forward a cancel request", "to", name, "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		n.log.Warn("forwarded cancel request refused", "to", name, "status", resp.StatusCode)
	}
}

func (n *Node) peerName(ctx context.Context, num uint16) (string, error) {
	n.peers.mu.Lock()
	name, ok := n.peers.names[num]
	n.peers.mu.Unlock()
	if ok {
		return name, nil
	}
	name, err := cluster.NodeName(ctx, n.member.Client(), num)
	if err != nil {
		return "", err
	}
	n.peers.mu.Lock()
	if n.peers.names == nil {
		n.peers.names = map[uint16]string{}
	}
	n.peers.names[num] = name
	n.peers.mu.Unlock()
	return name, nil
}

// sessionIndex adapts the cluster's session index to pgwire's.
type sessionIndex struct{ s *cluster.Sessions }

func (x sessionIndex) Started(id, who, res, client string, at time.Time) {
	x.s.Started(cluster.SessionInfo{ID: id, Identity: who, Resource: res, ClientAddr: client, Start: at})
}

func (x sessionIndex) Ended(id string, at time.Time, class string) { x.s.Ended(id, at, class) }

// startIndex starts writing this node's sessions to the cluster's index.
func (n *Node) startIndex() (*cluster.Sessions, error) {
	lease := n.cfg.Cluster.Lease
	if lease <= 0 {
		lease = defaultLease
	}
	idx := cluster.NewSessions(n.member.Client(), n.id, lease)
	idx.SetLogger(n.log)
	ctx, stop := context.WithCancel(context.Background())
	n.stopIndex, n.indexDone = stop, make(chan struct{})
	go func() {
		defer close(n.indexDone)
		if err := idx.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("session index stopped", "err", err)
		}
	}()
	return idx, nil
}

// drainTimeout is how long Drain waits, by default, for sessions to end
// by themselves.
const drainTimeout = 30 * time.Second

// Drain stops accepting agents (the API's /readyz answers 503 "draining"
// from now, and gossip carries it) and waits until every open session has
// ended by itself, or ctx ends. Close then ends the rest, each recorded.
// SIGTERM drains for limits.drain_timeout before closing.
func (n *Node) Drain(ctx context.Context) error {
	n.mu.Lock()
	n.draining = true
	srv := n.srv
	n.mu.Unlock()
	// Refuse new logins before telling the cluster: the gossip update can
	// wait a second for its acknowledgements.
	if srv != nil {
		srv.StopAccepting()
	}
	if n.member != nil {
		_ = n.member.UpdateMeta()
	}
	if srv == nil {
		return nil
	}
	n.log.Info("draining: no new sessions; waiting for open ones to end", "sessions", n.metrics.activeSessions())
	if err := srv.Drain(ctx); err != nil {
		return fmt.Errorf("node: drain: %w", err)
	}
	return nil
}
