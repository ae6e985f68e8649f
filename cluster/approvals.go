package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/phigate/phigate/session/approval"
)

// Keys of the approval requests in etcd.
//
//	/phigate/approvals/req/<id>          the request, JSON approval.Request
//	/phigate/approvals/pending/<id>      while it is pending: its expiry and
//	                                     whether it is held (JSON pendingMark)
//	/phigate/approvals/held/<id>         while a held request is pending, on
//	                                     the holding node's lease
//	/phigate/approvals/fp/<fingerprint>  the id of an approved one-time
//	                                     fail-fast request, until it is used or
//	                                     its TTL ends (a lease of its own)
//	/phigate/approvals/window/<key>      the id of the latest time-boxed grant
//	                                     for approval.WindowKey(identity,
//	                                     resource, grant, rule), on a lease that
//	                                     ends at its Until
//
// The record and its pending key are attached to a retention lease, as
// session records are (ApprovalRetention): the evidence of who asked, who
// decided and why lives in the recordings (the session's approval steps,
// each vote's own recording), so the cluster state keeps requests only as
// long as approvers and replay may want to look them up, and etcd does not
// grow without bound.
//
// Every change to a request after it is filed is one transaction that
// compares the record's ModRevision with the one it read, so that of two
// nodes changing it at once exactly one wins and the other reads again; a
// vote on a held request also requires its held marker. A decision (or a
// close) deletes the pending key and the held marker with the write that
// leaves pending, so the sweeps, which look only at pending requests, never
// see a decided one as abandoned.
const (
	approvalsKey       = "/phigate/approvals/"
	approvalReqKey     = approvalsKey + "req/"
	approvalPendingKey = approvalsKey + "pending/"
	approvalHeldKey    = approvalsKey + "held/"
	approvalFPKey      = approvalsKey + "fp/"
	approvalWindowKey  = approvalsKey + "window/"
)

// ApprovalRetention is how long a request's record is kept after its last
// change (plus up to an hour: records share hourly retention leases).
const ApprovalRetention = 30 * 24 * time.Hour

const (
	// approvalCallTimeout bounds each etcd call.
	approvalCallTimeout = 3 * time.Second
	// approvalSweepEvery is how often Run looks for expired and abandoned
	// requests besides watching held markers.
	approvalSweepEvery = 2 * time.Second
	// maxApprovalBytes caps a request's record (etcd refuses requests over
	// 1.5 MiB). A statement is never cut to fit: an approver must see all
	// of what they approve.
	maxApprovalBytes = 512 << 10
	// modeFailFast is policy.ModeFailFast, as approval.Request.Mode has it.
	modeFailFast = "fail-fast"
)

// pendingMark is the value of a pending key: what the sweeps need without
// reading the record.
type pendingMark struct {
	Expires time.Time `json:"expires"`
	Held    bool      `json:"held,omitempty"`
}

// Approvals is the cluster's store of approval requests, as this node
// sees it: the approval.Service the proxies use, and what the approvers'
// API needs (Get, List, Vote). Run keeps the node's lease, to which held
// requests are tied, and sweeps expired and abandoned requests; every node
// may run it. Statements, reasons and tokens are never logged.
type Approvals struct {
	kv        clientv3.KV
	lease     clientv3.Lease
	watcher   clientv3.Watcher
	node      string
	ttl       time.Duration
	available func() bool
	log       *slog.Logger

	// now, callTimeout and sweepEvery are set once, before use (tests
	// move the clock and shorten the periods).
	now         func() time.Time
	callTimeout time.Duration
	sweepEvery  time.Duration

	mu sync.Mutex // guards what follows
	// nodeLease is the lease held markers are put on (0: none now), kept
	// alive by Run; leaseChanged is closed and replaced when it changes.
	nodeLease    clientv3.LeaseID
	leaseChanged chan struct{}
	// retention is the lease records are put on, granted at
	// retentionGranted and shared for retentionBucket.
	retention        clientv3.LeaseID
	retentionGranted time.Time
	// watched is what Watch last delivered of each request it follows,
	// with its revision: Use tries that first, without reading it again.
	watched map[string]*stored
}

// NewApprovals is the store of approval requests through c, on the node
// called node. lease is the TTL of the node's lease, after which the held
// requests of a node that stopped renewing it are abandoned; zero means 30
// seconds. available reports whether the cluster's quorum is reachable
// (nil: always). It starts nothing: Run keeps the lease and sweeps.
func NewApprovals(c *clientv3.Client, node string, lease time.Duration, available func() bool) *Approvals {
	if lease <= 0 {
		lease = 30 * time.Second
	}
	return &Approvals{
		kv: c.KV, lease: c.Lease, watcher: c.Watcher, node: node, ttl: lease, available: available,
		log: slog.Default().With("node", node, "part", "approvals"),
		now: time.Now, callTimeout: approvalCallTimeout, sweepEvery: approvalSweepEvery,
		leaseChanged: make(chan struct{}), watched: map[string]*stored{},
	}
}

// SetLogger makes a log through l (the node's logger). Call it before Run.
func (a *Approvals) SetLogger(l *slog.Logger) { a.log = l.With("part", "approvals") }

// Available reports whether the cluster state is reachable now.
func (a *Approvals) Available() bool { return a.available == nil || a.available() }

// unavailable wraps an etcd failure: nothing is known to have been done,
// and the caller fails closed. (A write that timed out may still have been
// applied; every write is a compare-and-swap, so a retry cannot apply it
// twice.)
func unavailable(what string, err error) error {
	return fmt.Errorf("cluster: approvals: %s: %w (%w)", what, approval.ErrUnavailable, err)
}

func validApprovalID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/\x00")
}

func notFound(id string) error { return fmt.Errorf("%w: %q", approval.ErrNotFound, id) }

// leaseTTL is d in whole seconds, rounded up, at least one.
func leaseTTL(d time.Duration) int64 { return max(1, int64((d+time.Second-1)/time.Second)) }

// Run holds this node's lease (granting a new one when it is lost: the
// held requests under the old one are then abandoned) and sweeps: a
// pending request past its Expires becomes expired, and a pending held
// request whose held marker is gone (its node's lease ended) becomes
// abandoned. It watches held markers for deletions and scans the pending
// requests at start and every few seconds. It returns ctx's error once ctx
// ends, after revoking the lease: the requests still held here are then
// abandoned, so stop it after the sessions. Call it once.
func (a *Approvals) Run(ctx context.Context) error {
	var (
		keepAlive <-chan *clientv3.LeaseKeepAliveResponse
		stopKA    context.CancelFunc
		held      clientv3.WatchChan
		stopWatch context.CancelFunc
		retry     <-chan time.Time
		backoff   = 100 * time.Millisecond
	)
	fail := func(what string, err error) {
		a.log.Warn("approvals: "+what+"; retrying", "err", err, "in", backoff)
		retry = time.After(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	dropLease := func() {
		if stopKA != nil {
			stopKA()
		}
		keepAlive, stopKA = nil, nil
		a.setLease(0)
	}
	defer func() {
		if stopWatch != nil {
			stopWatch()
		}
	}()
	tick := time.NewTicker(a.sweepEvery)
	defer tick.Stop()
	for ctx.Err() == nil {
		if retry == nil && keepAlive == nil {
			ka, stop, err := a.grantNodeLease(ctx)
			if err != nil {
				fail("cannot take the node's lease", err)
			} else {
				keepAlive, stopKA = ka, stop
			}
		}
		if retry == nil && held == nil {
			rev, err := a.sweep(ctx)
			if err != nil {
				fail("cannot sweep", err)
			} else {
				// From the revision the scan read: no deletion is missed.
				wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
				held, stopWatch = a.watcher.Watch(wctx, approvalHeldKey, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithRev(rev+1)), cancel
			}
		}
		if retry == nil && keepAlive != nil && held != nil {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-retry:
			retry = nil
		case _, ok := <-keepAlive:
			if !ok && ctx.Err() == nil {
				a.log.Warn("approvals: the node's lease was lost; its held requests are abandoned; taking another")
				dropLease()
			}
		case wr, ok := <-held:
			if !ok || wr.Err() != nil || wr.Canceled {
				// No leader, compacted, or the client closed: scan again
				// and watch from there.
				stopWatch()
				held, stopWatch = nil, nil
				if ctx.Err() == nil {
					fail("the watch of held requests ended", wr.Err())
				}
				continue
			}
			for _, ev := range wr.Events {
				if ev.Type != mvccpb.DELETE {
					continue
				}
				id := strings.TrimPrefix(string(ev.Kv.Key), approvalHeldKey)
				if err := a.abandon(ctx, id); err != nil && ctx.Err() == nil {
					a.log.Warn("approvals: cannot mark a request abandoned; the next sweep will", "request", id, "err", err)
				}
			}
		case <-tick.C:
			if held != nil {
				if _, err := a.sweep(ctx); err != nil && ctx.Err() == nil {
					a.log.Warn("approvals: cannot sweep", "err", err)
				}
			}
		}
	}
	if stopKA != nil {
		stopKA()
	}
	a.mu.Lock()
	l := a.nodeLease
	a.mu.Unlock()
	a.setLease(0)
	if l != 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := a.lease.Revoke(rctx, l); err != nil {
			a.log.Warn("approvals: cannot revoke the node's lease; its held requests are abandoned when it expires", "err", err)
		}
	}
	return ctx.Err()
}

// grantNodeLease takes a new node lease and keeps it alive until ctx ends
// or stop is called.
func (a *Approvals) grantNodeLease(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, context.CancelFunc, error) {
	gctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	resp, err := a.lease.Grant(gctx, leaseTTL(a.ttl))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: approvals: grant node lease: %w", err)
	}
	kctx, stop := context.WithCancel(ctx)
	ka, err := a.lease.KeepAlive(kctx, resp.ID)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("cluster: approvals: keep node lease alive: %w", err)
	}
	a.setLease(resp.ID)
	return ka, stop, nil
}

func (a *Approvals) setLease(id clientv3.LeaseID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nodeLease == id {
		return
	}
	a.nodeLease = id
	close(a.leaseChanged)
	a.leaseChanged = make(chan struct{})
}

// waitLease returns the node's lease, waiting for Run to take one (Open may
// come before Run's first grant, or while it replaces a lost lease).
func (a *Approvals) waitLease(ctx context.Context) (clientv3.LeaseID, error) {
	for {
		a.mu.Lock()
		l, changed := a.nodeLease, a.leaseChanged
		a.mu.Unlock()
		if l != 0 {
			return l, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, unavailable("no node lease for a held request", ctx.Err())
		}
	}
}

// retentionLease is the lease this hour's records are put on.
func (a *Approvals) retentionLease(ctx context.Context) (clientv3.LeaseID, error) {
	a.mu.Lock()
	l, at := a.retention, a.retentionGranted
	a.mu.Unlock()
	now := time.Now()
	if l != 0 && now.Sub(at) < retentionBucket {
		return l, nil
	}
	resp, err := a.lease.Grant(ctx, leaseTTL(ApprovalRetention+retentionBucket))
	if err != nil {
		return 0, unavailable("grant retention lease", err)
	}
	a.mu.Lock()
	a.retention, a.retentionGranted = resp.ID, now
	a.mu.Unlock()
	return resp.ID, nil
}

func (a *Approvals) dropRetention() {
	a.mu.Lock()
	a.retention = 0
	a.mu.Unlock()
}

// stored is a request as read, with what the transactions compare.
type stored struct {
	req     *approval.Request
	rev     int64        // the record's ModRevision
	pending *pendingMark // nil: not pending
	held    int64        // the held marker's CreateRevision; 0: none
	header  int64        // the revision read at
}

// read reads request id, its pending key and its held marker at one
// revision.
func (a *Approvals) read(ctx context.Context, id string) (*stored, error) {
	if !validApprovalID(id) {
		return nil, notFound(id)
	}
	cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	resp, err := a.kv.Txn(cctx).Then(
		clientv3.OpGet(approvalReqKey+id),
		clientv3.OpGet(approvalPendingKey+id),
		clientv3.OpGet(approvalHeldKey+id, clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, unavailable("read request "+id, err)
	}
	recs := resp.Responses[0].GetResponseRange().Kvs
	if len(recs) == 0 {
		return nil, notFound(id)
	}
	s := &stored{req: new(approval.Request), rev: recs[0].ModRevision, header: resp.Header.Revision}
	if err := json.Unmarshal(recs[0].Value, s.req); err != nil {
		return nil, fmt.Errorf("cluster: approvals: decode request %s: %w", id, err)
	}
	if p := resp.Responses[1].GetResponseRange().Kvs; len(p) > 0 {
		s.pending = new(pendingMark)
		if err := json.Unmarshal(p[0].Value, s.pending); err != nil {
			return nil, fmt.Errorf("cluster: approvals: decode pending mark of %s: %w", id, err)
		}
	}
	if h := resp.Responses[2].GetResponseRange().Kvs; len(h) > 0 {
		s.held = h[0].CreateRevision
	}
	return s, nil
}

// commit runs a transaction whose operations build makes with this hour's
// retention lease, once more if a lease it used was gone (etcd lost the
// retention lease, or the node's lease ended: build then asks for it again).
func (a *Approvals) commit(ctx context.Context, what string, cmps []clientv3.Cmp, build func(ctx context.Context, retention clientv3.LeaseID) ([]clientv3.Op, error)) (bool, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
		ok, err := func() (bool, error) {
			ret, err := a.retentionLease(cctx)
			if err != nil {
				return false, err
			}
			ops, err := build(cctx, ret)
			if err != nil {
				return false, err
			}
			resp, err := a.kv.Txn(cctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return false, err
			}
			return resp.Succeeded, nil
		}()
		cancel()
		switch {
		case err == nil:
			return ok, nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt < 2:
			a.dropRetention()
		case errors.Is(err, approval.ErrUnavailable):
			return false, err
		default:
			return false, unavailable(what, err)
		}
	}
}

// encode is r's record, refused when it is too large.
func encode(r *approval.Request) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("cluster: approvals: encode request %s: %w", r.ID, err)
	}
	if len(b) > maxApprovalBytes {
		return "", fmt.Errorf("cluster: approvals: request %s is %d bytes encoded, more than %d", r.ID, len(b), maxApprovalBytes)
	}
	return string(b), nil
}

func putRecord(id, rec string, retention clientv3.LeaseID) clientv3.Op {
	return clientv3.OpPut(approvalReqKey+id, rec, clientv3.WithLease(retention))
}

// clone copies what Cast and the transitions change.
func clone(r *approval.Request) *approval.Request {
	c := *r
	c.Votes = slices.Clone(r.Votes)
	if r.Decision != nil {
		d := *r.Decision
		d.By = slices.Clone(r.Decision.By)
		c.Decision = &d
	}
	return &c
}

// Open files r as pending (its ID, Created and Expires set by the caller;
// its State, votes and decision are ignored). A held request gets a marker
// on this node's lease, in the same transaction: never without a lease.
// Filing an id that exists fails.
func (a *Approvals) Open(ctx context.Context, r *approval.Request, held bool) error {
	switch {
	case !validApprovalID(r.ID):
		return fmt.Errorf("cluster: approvals: open: bad request id %q", r.ID)
	case r.Required < 1 || len(r.Approvers) == 0 || r.Expires.IsZero():
		// Never a request anyone, or nobody, could approve, or that never ends.
		return fmt.Errorf("cluster: approvals: open %s: needs approvers, Required >= 1 and Expires", r.ID)
	}
	rec := clone(r)
	rec.State, rec.Votes, rec.Decision = approval.Pending, nil, nil
	mark, err := json.Marshal(pendingMark{Expires: rec.Expires, Held: held})
	if err != nil {
		return fmt.Errorf("cluster: approvals: encode pending mark: %w", err)
	}
	val, err := encode(rec)
	if err != nil {
		return err
	}
	key := approvalReqKey + rec.ID
	ok, err := a.commit(ctx, "open request "+rec.ID, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		func(ctx context.Context, ret clientv3.LeaseID) ([]clientv3.Op, error) {
			ops := []clientv3.Op{putRecord(rec.ID, val, ret), clientv3.OpPut(approvalPendingKey+rec.ID, string(mark), clientv3.WithLease(ret))}
			if held {
				l, err := a.waitLease(ctx)
				if err != nil {
					return nil, err
				}
				ops = append(ops, clientv3.OpPut(approvalHeldKey+rec.ID, "", clientv3.WithLease(l)))
			}
			return ops, nil
		})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("cluster: approvals: request %s exists already", rec.ID)
	}
	return nil
}

// Get returns request id, or approval.ErrNotFound.
func (a *Approvals) Get(ctx context.Context, id string) (*approval.Request, error) {
	s, err := a.read(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.req, nil
}

// List returns the requests that f selects, newest first (by Created,
// then id).
func (a *Approvals) List(ctx context.Context, f approval.Filter) ([]*approval.Request, error) {
	cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	resp, err := a.kv.Get(cctx, approvalReqKey, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list requests", err)
	}
	var out []*approval.Request
	for _, kv := range resp.Kvs {
		r := new(approval.Request)
		if err := json.Unmarshal(kv.Value, r); err != nil {
			return nil, fmt.Errorf("cluster: approvals: decode %s: %w", kv.Key, err)
		}
		if (f.State == "" || f.State == r.State) && (f.Identity == "" || f.Identity == r.Identity) && (f.Resource == "" || f.Resource == r.Resource) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(x, y *approval.Request) int {
		return cmp.Or(y.Created.Compare(x.Created), strings.Compare(y.ID, x.ID))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Vote casts who's vote on request id: an approval (scope Once, or Window
// for window, at most the request's MaxWindow) or a denial (scope and
// window ignored). It returns the request with the vote, decided when the
// vote was decisive. A request past its Expires, or held by a node whose
// lease ended, is closed (expired, abandoned) instead and returned with
// approval.ErrDecided, as is one decided already.
func (a *Approvals) Vote(ctx context.Context, id string, who approval.Approver, approve bool, reason string, scope approval.Scope, window time.Duration) (*approval.Request, error) {
	switch {
	case who.Name == "":
		return nil, fmt.Errorf("cluster: approvals: a vote without a name: %w", approval.ErrNotApprover)
	case !approve:
		scope, window = "", 0
	case scope == "":
		scope = approval.Once
	case scope != approval.Once && scope != approval.Window:
		return nil, fmt.Errorf("cluster: approvals: unknown scope %q", scope)
	}
	for {
		s, err := a.read(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := approval.CheckVoter(s.req, who); err != nil {
			if errors.Is(err, approval.ErrDecided) {
				return s.req, err
			}
			return nil, err
		}
		now := a.now()
		if now.After(s.req.Expires) {
			r, err := a.settle(ctx, id, approval.Expired, expiredReason, isExpired(now))
			if err != nil {
				return nil, err
			}
			if r.State == approval.Pending {
				continue // changed meanwhile
			}
			return r, approval.ErrDecided
		}
		if s.pending != nil && s.pending.Held && s.held == 0 {
			r, err := a.settle(ctx, id, approval.Abandoned, abandonedReason, isAbandoned)
			if err != nil {
				return nil, err
			}
			if r.State == approval.Pending {
				continue
			}
			return r, approval.ErrDecided
		}
		v := approval.Vote{Approver: who.Name, Approve: approve, Reason: reason, At: now, Node: a.node, Scope: scope}
		if scope == approval.Window {
			if window <= 0 || window > s.req.MaxWindow {
				return nil, fmt.Errorf("cluster: approvals: a window of %v on request %s (at most %v): %w", window, id, s.req.MaxWindow, approval.ErrWindow)
			}
			v.Until = now.Add(window)
		}
		r := clone(s.req)
		decided := approval.Cast(r, v)
		val, err := encode(r)
		if err != nil {
			return nil, err
		}
		key := approvalReqKey + id
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", s.rev)}
		if s.held != 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(approvalHeldKey+id), "=", s.held))
		}
		var granted []clientv3.LeaseID // revoked if the vote loses
		ok, err := a.commit(ctx, "vote on request "+id, cmps, func(ctx context.Context, ret clientv3.LeaseID) ([]clientv3.Op, error) {
			ops := []clientv3.Op{putRecord(id, val, ret)}
			if !decided {
				return ops, nil
			}
			ops = append(ops, clientv3.OpDelete(approvalPendingKey+id), clientv3.OpDelete(approvalHeldKey+id))
			if r.State != approval.Approved {
				return ops, nil
			}
			grant := func(key string, until time.Time) error {
				l, err := a.lease.Grant(ctx, leaseTTL(until.Sub(now)))
				if err != nil {
					return err
				}
				granted = append(granted, l.ID)
				ops = append(ops, clientv3.OpPut(key, id, clientv3.WithLease(l.ID)))
				return nil
			}
			switch {
			case r.Decision.Scope == approval.Window:
				err = grant(approvalWindowKey+approval.WindowKey(r.Identity, r.Resource, r.Grant, r.Rule), r.Decision.Until)
			case r.Mode == modeFailFast && r.Fingerprint != "":
				err = grant(approvalFPKey+r.Fingerprint, r.Expires)
			}
			return ops, err
		})
		if err == nil && ok {
			return r, nil
		}
		a.revoke(ctx, granted)
		if err != nil {
			return nil, err
		}
		// Changed meanwhile (another vote, a close, the holder's lease
		// ended): read again.
	}
}

// revoke ends leases granted for a transaction that did not commit; they
// would end by themselves.
func (a *Approvals) revoke(ctx context.Context, ids []clientv3.LeaseID) {
	for _, l := range ids {
		cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
		_, _ = a.lease.Revoke(cctx, l)
		cancel()
	}
}

const (
	expiredReason   = "nobody decided before the request expired"
	abandonedReason = "the node holding the command lost the cluster (its lease ended) while it waited"
)

func isExpired(now time.Time) func(*stored) bool {
	return func(s *stored) bool { return now.After(s.req.Expires) }
}

func isAbandoned(s *stored) bool { return s.pending != nil && s.pending.Held && s.held == 0 }

// settle moves request id from pending to state, with a decision by this
// node, if it is pending and cond holds; it returns the request as it now
// is (unchanged when it was not pending, or cond did not hold).
func (a *Approvals) settle(ctx context.Context, id string, state approval.State, reason string, cond func(*stored) bool) (*approval.Request, error) {
	for {
		s, err := a.read(ctx, id)
		if err != nil {
			return nil, err
		}
		if s.req.State != approval.Pending || !cond(s) {
			return s.req, nil
		}
		r := clone(s.req)
		r.State = state
		r.Decision = &approval.Decision{State: state, Reason: reason, At: a.now(), Node: a.node}
		val, err := encode(r)
		if err != nil {
			return nil, err
		}
		key := approvalReqKey + id
		ok, err := a.commit(ctx, "close request "+id, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", s.rev)},
			func(ctx context.Context, ret clientv3.LeaseID) ([]clientv3.Op, error) {
				return []clientv3.Op{putRecord(id, val, ret), clientv3.OpDelete(approvalPendingKey + id), clientv3.OpDelete(approvalHeldKey + id)}, nil
			})
		if err != nil {
			return nil, err
		}
		if ok {
			a.log.Info("approval request closed", "request", id, "state", string(state))
			return r, nil
		}
	}
}

// Close ends pending request id as state (expired, withdrawn or
// abandoned) with reason; it returns the request as it now is, unchanged
// (and no error) if it was decided meanwhile.
func (a *Approvals) Close(ctx context.Context, id string, state approval.State, reason string) (*approval.Request, error) {
	switch state {
	case approval.Expired, approval.Withdrawn, approval.Abandoned:
	default:
		return nil, fmt.Errorf("cluster: approvals: a request is not closed as %q", state)
	}
	return a.settle(ctx, id, state, reason, func(*stored) bool { return true })
}

// abandon marks request id abandoned if it is pending, held, and its held
// marker is gone.
func (a *Approvals) abandon(ctx context.Context, id string) error {
	_, err := a.settle(ctx, id, approval.Abandoned, abandonedReason, isAbandoned)
	if errors.Is(err, approval.ErrNotFound) {
		return nil // gone with its retention lease
	}
	return err
}

// sweep closes the pending requests that are past their Expires, or held
// and without their held marker. It returns the revision it read at.
func (a *Approvals) sweep(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	resp, err := a.kv.Txn(cctx).Then(
		clientv3.OpGet(approvalPendingKey, clientv3.WithPrefix()),
		clientv3.OpGet(approvalHeldKey, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	cancel()
	if err != nil {
		return 0, unavailable("read pending requests", err)
	}
	held := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		held[strings.TrimPrefix(string(kv.Key), approvalHeldKey)] = true
	}
	now := a.now()
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		id := strings.TrimPrefix(string(kv.Key), approvalPendingKey)
		var m pendingMark
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			a.log.Warn("approvals: a pending mark that does not decode", "request", id, "err", err)
			continue
		}
		switch {
		case now.After(m.Expires):
			_, err = a.settle(ctx, id, approval.Expired, expiredReason, isExpired(now))
		case m.Held && !held[id]:
			err = a.abandon(ctx, id)
		default:
			continue
		}
		if err != nil && !errors.Is(err, approval.ErrNotFound) {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			a.log.Warn("approvals: cannot close a request; the next sweep will", "request", id, "err", err)
		}
	}
	return resp.Header.Revision, nil
}

// Watch sends request id as it is now, then each change to it, until it is
// final (approved counts as final) or ctx ends; the channel closes then,
// or when the cluster state cannot be read (no leader for longer than a
// call's bound): the caller treats a closed channel before a final state
// as lost.
func (a *Approvals) Watch(ctx context.Context, id string) (<-chan *approval.Request, error) {
	s, err := a.read(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan *approval.Request, 1)
	go a.follow(ctx, id, s, out)
	return out, nil
}

func (a *Approvals) follow(ctx context.Context, id string, s *stored, out chan<- *approval.Request) {
	defer close(out)
	seen, from := s.rev, s.header+1
	var last *stored
	defer func() {
		// An approved request is kept until Use takes it; any other will
		// not be used.
		if last != nil && last.req.State != approval.Approved {
			a.forget(id)
		}
	}()
	send := func(r *approval.Request) bool {
		last = &stored{req: r, rev: seen}
		a.mu.Lock()
		if len(a.watched) >= maxWatched {
			clear(a.watched) // approvals never used (their sessions ended): Use reads again
		}
		a.watched[id] = last
		a.mu.Unlock()
		select {
		case out <- r:
			return r.State == approval.Pending
		case <-ctx.Done():
			return false
		}
	}
	if !send(s.req) {
		return
	}
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range a.watcher.Watch(wctx, approvalReqKey+id, clientv3.WithRev(from)) {
			if wr.Err() != nil || wr.Canceled {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					cancel()
					return // its retention ended
				}
				r := new(approval.Request)
				if err := json.Unmarshal(ev.Kv.Value, r); err != nil {
					a.log.Warn("approvals: a request that does not decode", "request", id, "err", err)
					cancel()
					return
				}
				seen, from = ev.Kv.ModRevision, ev.Kv.ModRevision+1
				if !send(r) {
					cancel()
					return
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		// The watch broke (a leader change, compaction): read again and
		// watch on from there.
		s, err := a.read(ctx, id)
		if err != nil {
			a.log.Warn("approvals: lost the watch of a request", "request", id, "err", err)
			return
		}
		if s.rev != seen {
			seen = s.rev
			if !send(s.req) {
				return
			}
		}
		from = s.header + 1
	}
}

// Use marks approved one-time request id used by session's command,
// exactly once: of callers racing, one gets true. An approved time-boxed
// grant is used without change while its window is open. A used request
// keeps its Decision (state approved) with UsedAt and UsedSession set.
// false: not approved, used already, or its window closed.
func (a *Approvals) Use(ctx context.Context, id, session string) (bool, error) {
	r, err := a.use(ctx, id, session)
	return r != nil, err
}

// maxWatched bounds what Approvals keeps of watched requests.
const maxWatched = 4096

// forget drops what Watch delivered of request id.
func (a *Approvals) forget(id string) {
	a.mu.Lock()
	delete(a.watched, id)
	a.mu.Unlock()
}

// use is Use, returning the request as used (nil: not usable). A request
// this node watched is tried first as the watch delivered it (one
// transaction that compares its revision); a stale one is read again.
func (a *Approvals) use(ctx context.Context, id, session string) (*approval.Request, error) {
	a.mu.Lock()
	s := a.watched[id]
	delete(a.watched, id)
	a.mu.Unlock()
	for {
		if s == nil {
			var err error
			if s, err = a.read(ctx, id); err != nil {
				return nil, err
			}
		}
		now := a.now()
		d := s.req.Decision
		switch {
		case s.req.State != approval.Approved || d == nil:
			return nil, nil
		case d.Scope == approval.Window:
			if d.Until.After(now) {
				return s.req, nil
			}
			return nil, nil
		}
		r := clone(s.req)
		r.State = approval.Used
		r.Decision.UsedAt, r.Decision.UsedSession = now, session
		val, err := encode(r)
		if err != nil {
			return nil, err
		}
		key := approvalReqKey + id
		fp := approvalFPKey + r.Fingerprint
		ok, err := a.commit(ctx, "use request "+id, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", s.rev)},
			func(ctx context.Context, ret clientv3.LeaseID) ([]clientv3.Op, error) {
				// The fingerprint's key goes if it still names this request.
				del := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(fp), "=", id)}, []clientv3.Op{clientv3.OpDelete(fp)}, nil)
				return []clientv3.Op{putRecord(id, val, ret), del}, nil
			})
		if err != nil {
			return nil, err
		}
		if ok {
			return r, nil
		}
		s = nil // changed since: read it again
	}
}

// Preapproved returns what lets r's command run without a new request: the
// open time-boxed grant for r's identity, resource, grant and rule, or else
// the approved, unexpired fail-fast request with r's fingerprint, which it
// marks used by r.Session (then it is returned as used). nil, nil: none.
func (a *Approvals) Preapproved(ctx context.Context, r *approval.Request) (*approval.Request, error) {
	wkey := approvalWindowKey + approval.WindowKey(r.Identity, r.Resource, r.Grant, r.Rule)
	ops := []clientv3.Op{clientv3.OpGet(wkey)}
	if r.Fingerprint != "" {
		ops = append(ops, clientv3.OpGet(approvalFPKey+r.Fingerprint))
	}
	cctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	resp, err := a.kv.Txn(cctx).Then(ops...).Commit()
	cancel()
	if err != nil {
		return nil, unavailable("look for an approval", err)
	}
	idOf := func(i int) string {
		if i >= len(resp.Responses) {
			return ""
		}
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			return string(kvs[0].Value)
		}
		return ""
	}
	same := func(q *approval.Request) bool {
		return q.Identity == r.Identity && q.Resource == r.Resource && q.Grant == r.Grant && q.Rule == r.Rule
	}
	if id := idOf(0); id != "" {
		q, err := a.Get(ctx, id)
		if err != nil && !errors.Is(err, approval.ErrNotFound) {
			return nil, err
		}
		if err == nil && same(q) && q.State == approval.Approved && q.Decision != nil &&
			q.Decision.Scope == approval.Window && q.Decision.Until.After(a.now()) {
			return q, nil
		}
	}
	if id := idOf(1); id != "" {
		q, err := a.Get(ctx, id)
		if err != nil && !errors.Is(err, approval.ErrNotFound) {
			return nil, err
		}
		if err == nil && same(q) && q.Fingerprint == r.Fingerprint && q.State == approval.Approved && !a.now().After(q.Expires) {
			return a.use(ctx, id, r.Session)
		}
	}
	return nil, nil
}
