package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of what the cluster keeps about recordings:
//
//	/phigate/signing/<key id>  a node's published signing key (opaque JSON,
//	                           storage/archive.PublishedKey), kept for ever:
//	                           old recordings verify after a rotation
//	/phigate/anchors/<session> the newest sealed chunk of a session (opaque
//	                           JSON), on a lease of AnchorTTL
const (
	signingPrefix = "/phigate/signing/"
	anchorPrefix  = "/phigate/anchors/"
	// AnchorTTL is how long an anchor stays in the cluster state: long
	// enough for the store's own digests to cover the session many times
	// over, short enough that etcd does not grow with years of sessions.
	AnchorTTL = 7 * 24 * time.Hour
	// maxOpsPerTxn stays under etcd's default --max-txn-ops (128).
	maxOpsPerTxn = 100
)

// Records keeps node signing keys and recording anchors in the cluster.
// Values are opaque to it.
type Records struct {
	c *clientv3.Client

	mu         sync.Mutex
	lease      clientv3.LeaseID
	leaseUntil time.Time
}

// NewRecords reads and writes recording records through c.
func NewRecords(c *clientv3.Client) *Records { return &Records{c: c} }

// ErrKeyExists: a signing key id is published with other content.
var ErrKeyExists = errors.New("cluster: signing key published with other content")

// PublishKey stores a signing key under its id unless it is there already
// with the same value. A different value under the same id is refused:
// published keys are changed only by RetireKey.
func (r *Records) PublishKey(ctx context.Context, id string, value []byte) error {
	if id == "" || strings.Contains(id, "/") {
		return fmt.Errorf("cluster: bad key id %q", id)
	}
	k := signingPrefix + id
	resp, err := r.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("cluster: publish key: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && string(kvs[0].Value) == string(value) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrKeyExists, id)
}

// ReplaceKey swaps a published key's value (its retirement: the same key
// with an end of validity) if it still holds old.
func (r *Records) ReplaceKey(ctx context.Context, id string, old, value []byte) error {
	k := signingPrefix + id
	resp, err := r.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", string(old))).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return fmt.Errorf("cluster: retire key: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cluster: key %s changed meanwhile", id)
	}
	return nil
}

// Keys returns every published signing key, by id.
func (r *Records) Keys(ctx context.Context) (map[string][]byte, error) {
	resp, err := r.c.Get(ctx, signingPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: signing keys: %w", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), signingPrefix)] = kv.Value
	}
	return out, nil
}

// Anchor is one session's newest sealed chunk, as stored.
type Anchor struct {
	Session string
	Value   []byte
}

// PutAnchors stores anchors (the newest per session wins), in
// transactions of at most maxOpsPerTxn, on a lease of AnchorTTL.
func (r *Records) PutAnchors(ctx context.Context, anchors []Anchor) error {
	lease, err := r.anchorLease(ctx)
	if err != nil {
		return err
	}
	for len(anchors) > 0 {
		n := min(len(anchors), maxOpsPerTxn)
		ops := make([]clientv3.Op, 0, n)
		for _, a := range anchors[:n] {
			if a.Session == "" || strings.Contains(a.Session, "/") {
				return fmt.Errorf("cluster: bad session id %q", a.Session)
			}
			ops = append(ops, clientv3.OpPut(anchorPrefix+a.Session, string(a.Value), clientv3.WithLease(lease)))
		}
		if _, err := r.c.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("cluster: anchors: %w", err)
		}
		anchors = anchors[n:]
	}
	return nil
}

// anchorLease is a lease of AnchorTTL, granted anew each day so that an
// anchor lives between AnchorTTL and AnchorTTL plus a day.
func (r *Records) anchorLease(ctx context.Context) (clientv3.LeaseID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != 0 && time.Now().Before(r.leaseUntil) {
		return r.lease, nil
	}
	g, err := r.c.Grant(ctx, int64((AnchorTTL+24*time.Hour)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("cluster: anchor lease: %w", err)
	}
	r.lease, r.leaseUntil = g.ID, time.Now().Add(24*time.Hour)
	return g.ID, nil
}

// Anchors returns the stored anchors of the sessions whose id starts with
// prefix ("" for all), by session.
func (r *Records) Anchors(ctx context.Context, prefix string) (map[string][]byte, error) {
	resp, err := r.c.Get(ctx, anchorPrefix+prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: anchors: %w", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), anchorPrefix)] = kv.Value
	}
	return out, nil
}
