package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of the policy document in etcd. Each revision is kept whole under
// its number; current names the one in force. Revisions are never
// rewritten, so history is what was applied.
const (
	policyPrefix  = "/phigate/policy/"
	policyCurrent = policyPrefix + "current"
	policyRevs    = policyPrefix + "rev/"
)

// PolicyRevision is one applied revision of the shared policy document.
type PolicyRevision struct {
	Revision  uint64    `json:"revision"`
	AppliedBy string    `json:"applied_by"`
	AppliedAt time.Time `json:"applied_at"`
	// SHA256 is the hex digest of Document, so that revisions can be
	// compared and quoted without their content.
	SHA256 string `json:"sha256"`
	// Document is the policy as applied (YAML). It names credentials'
	// sources, never their values.
	Document []byte `json:"document,omitempty"`
}

// ErrNoPolicy is returned when no revision has been applied yet, or the
// revision asked for does not exist.
var ErrNoPolicy = errors.New("cluster: no such policy revision")

// ErrConflict is returned by Apply when another revision was applied
// since the one the caller based its change on.
var ErrConflict = errors.New("cluster: the policy changed since the revision this change is based on")

// Policies stores the shared policy document in the cluster, as numbered
// revisions. It does not judge documents: the caller validates one fully
// before applying it, so that a bad document never becomes a revision.
type Policies struct {
	kv      clientv3.KV
	watcher clientv3.Watcher
	now     func() time.Time
}

// NewPolicies reads and writes policies through c.
func NewPolicies(c *clientv3.Client) *Policies {
	return &Policies{kv: c.KV, watcher: c.Watcher, now: time.Now}
}

// Apply stores doc as the next revision, applied by who, if the current
// revision is still base (0: whatever is current). It returns the new
// revision.
func (p *Policies) Apply(ctx context.Context, doc []byte, who string, base uint64) (PolicyRevision, error) {
	for {
		cur, modRev, err := p.current(ctx)
		if err != nil && !errors.Is(err, ErrNoPolicy) {
			return PolicyRevision{}, err
		}
		if base != 0 && cur != base {
			return PolicyRevision{}, fmt.Errorf("%w (based on %d, current %d)", ErrConflict, base, cur)
		}
		sum := sha256.Sum256(doc)
		rev := PolicyRevision{Revision: cur + 1, AppliedBy: who, AppliedAt: p.now().UTC(), SHA256: hex.EncodeToString(sum[:]), Document: doc}
		b, err := json.Marshal(rev)
		if err != nil {
			return PolicyRevision{}, fmt.Errorf("cluster: encode policy: %w", err)
		}
		// Applied only if current is unchanged since it was read: two
		// nodes applying at once get two revisions, one after the other,
		// never one lost.
		txn := p.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(policyCurrent), "=", modRev)).
			Then(clientv3.OpPut(revKey(rev.Revision), string(b)), clientv3.OpPut(policyCurrent, strconv.FormatUint(rev.Revision, 10)))
		resp, err := txn.Commit()
		if err != nil {
			return PolicyRevision{}, fmt.Errorf("cluster: apply policy: %w", err)
		}
		if resp.Succeeded {
			return rev, nil
		}
	}
}

// current is the revision in force and the etcd revision that set it
// (0, 0 with ErrNoPolicy when none).
func (p *Policies) current(ctx context.Context) (uint64, int64, error) {
	resp, err := p.kv.Get(ctx, policyCurrent)
	if err != nil {
		return 0, 0, fmt.Errorf("cluster: read current policy: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, ErrNoPolicy
	}
	n, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("cluster: current policy revision %q: %w", resp.Kvs[0].Value, err)
	}
	return n, resp.Kvs[0].ModRevision, nil
}

// Get returns revision rev, or the current one for 0.
func (p *Policies) Get(ctx context.Context, rev uint64) (PolicyRevision, error) {
	if rev == 0 {
		cur, _, err := p.current(ctx)
		if err != nil {
			return PolicyRevision{}, err
		}
		rev = cur
	}
	resp, err := p.kv.Get(ctx, revKey(rev))
	if err != nil {
		return PolicyRevision{}, fmt.Errorf("cluster: read policy %d: %w", rev, err)
	}
	if len(resp.Kvs) == 0 {
		return PolicyRevision{}, fmt.Errorf("%w: %d", ErrNoPolicy, rev)
	}
	var out PolicyRevision
	if err := json.Unmarshal(resp.Kvs[0].Value, &out); err != nil {
		return PolicyRevision{}, fmt.Errorf("cluster: decode policy %d: %w", rev, err)
	}
	return out, nil
}

// History lists every revision, oldest first, without their documents.
func (p *Policies) History(ctx context.Context) ([]PolicyRevision, error) {
	resp, err := p.kv.Get(ctx, policyRevs, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("cluster: read policy history: %w", err)
	}
	out := make([]PolicyRevision, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r PolicyRevision
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("cluster: decode %s: %w", kv.Key, err)
		}
		r.Document = nil
		out = append(out, r)
	}
	return out, nil
}

// Watch calls apply with the current revision (when there is one), then
// with every revision that becomes current, in order, until ctx ends. It
// returns ctx's error, or why it could not go on; apply's error stops it
// too. A revision that apply refuses is not retried: the caller keeps its
// last good state and says why.
func (p *Policies) Watch(ctx context.Context, apply func(PolicyRevision) error) error {
	var seen uint64
	deliver := func() error {
		rev, err := p.Get(ctx, 0)
		if errors.Is(err, ErrNoPolicy) {
			return nil
		}
		if err != nil {
			return err
		}
		if rev.Revision == seen {
			return nil
		}
		seen = rev.Revision
		return apply(rev)
	}
	resp, err := p.kv.Get(ctx, policyCurrent)
	if err != nil {
		return fmt.Errorf("cluster: read current policy: %w", err)
	}
	if err := deliver(); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range p.watcher.Watch(wctx, policyCurrent, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("cluster: watch policy: %w", err)
		}
		if len(wr.Events) > 0 {
			if err := deliver(); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func revKey(rev uint64) string { return fmt.Sprintf("%s%020d", policyRevs, rev) }
