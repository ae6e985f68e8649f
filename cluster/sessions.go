package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of the node numbers and the session index in etcd.
//
// A node name's number is kept both ways, written in one transaction, so
// that neither a name nor a number is ever given twice. A session has a
// record (JSON, SessionInfo) under its id, and while it runs a marker
// under its node's name, attached to the node's lease: the marker goes
// when the session ends, or when the node's lease expires because the
// node stopped renewing it (it crashed or lost the cluster).
const (
	nodeNumByName = "/phigate/nodenum/name/"
	nodeNumByNum  = "/phigate/nodenum/num/"
	sessionsKey   = "/phigate/sessions/"
	liveKey       = "/phigate/live/"
)

// MaxNodeNumber is the largest node number NodeNumber assigns (numbers fit
// in the 11 bits that cancel keys give them).
const MaxNodeNumber = 2047

// ErrNoNodeNumber is returned by NodeNumber when every number is taken.
var ErrNoNodeNumber = errors.New("cluster: every node number is taken")

// NodeNumber is the number of the node called name, 1..MaxNodeNumber,
// assigned on first use and the same ever after (across restarts and
// from any member). Nodes that ask at once for different names never get
// the same number. Numbers are never reused, even for a node that has
// left: 2047 names are a cluster's lifetime supply.
func NodeNumber(ctx context.Context, c *clientv3.Client, name string) (uint16, error) {
	if name == "" {
		return 0, errors.New("cluster: node number: empty node name")
	}
	nameKey := nodeNumByName + name
	for {
		resp, err := c.KV.Get(ctx, nameKey)
		if err != nil {
			return 0, fmt.Errorf("cluster: read node number: %w", err)
		}
		if len(resp.Kvs) > 0 {
			return parseNodeNumber(resp.Kvs[0].Value)
		}
		taken, err := c.KV.Get(ctx, nodeNumByNum, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return 0, fmt.Errorf("cluster: read node numbers: %w", err)
		}
		used := make(map[string]bool, len(taken.Kvs))
		for _, kv := range taken.Kvs {
			used[strings.TrimPrefix(string(kv.Key), nodeNumByNum)] = true
		}
		n := 0
		for i := 1; i <= MaxNodeNumber; i++ {
			if !used[nodeNumString(i)] {
				n = i
				break
			}
		}
		if n == 0 {
			return 0, ErrNoNodeNumber
		}
		// Both keys must be new: a number taken meanwhile, or this name
		// numbered meanwhile by another caller, sends us round again.
		numKey := nodeNumByNum + nodeNumString(n)
		tr, err := c.KV.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(nameKey), "=", 0), clientv3.Compare(clientv3.CreateRevision(numKey), "=", 0)).
			Then(clientv3.OpPut(nameKey, strconv.Itoa(n)), clientv3.OpPut(numKey, name)).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("cluster: assign node number: %w", err)
		}
		if tr.Succeeded {
			return uint16(n), nil
		}
	}
}

// nodeNumString is n zero-padded, so that keys sort by number.
func nodeNumString(n int) string { return fmt.Sprintf("%04d", n) }

func parseNodeNumber(b []byte) (uint16, error) {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 1 || n > MaxNodeNumber {
		return 0, fmt.Errorf("cluster: stored node number %q is not 1..%d", b, MaxNodeNumber)
	}
	return uint16(n), nil
}

// SessionState is what the index knows of a session now.
type SessionState string

const (
	// SessionLive: its node holds it and keeps its lease.
	SessionLive SessionState = "live"
	// SessionEnded: its node recorded its end.
	SessionEnded SessionState = "ended"
	// SessionNodeLost: it did not end, and its node's lease expired: the
	// node crashed, or lost the cluster for longer than its lease, or its
	// end was dropped (Sessions.Dropped). Its recording says how it ended,
	// if it did.
	SessionNodeLost SessionState = "node lost"
)

// SessionInfo is a session as the index has it. It never holds SQL,
// values, tokens or secrets: only who, where, when and how it ended,
// coarsely (the recording has the rest).
type SessionInfo struct {
	ID         string    `json:"id"`
	Node       string    `json:"node"`     // the node that holds (held) it
	Identity   string    `json:"identity"` // the identity's name
	Resource   string    `json:"resource"`
	ClientAddr string    `json:"client_addr,omitempty"` // host:port the agent connected from
	Start      time.Time `json:"start"`
	End        time.Time `json:"end,omitzero"`
	// EndReason is a coarse class (pgwire's End constants), never an
	// error text, which may quote SQL or values.
	EndReason string `json:"end_reason,omitempty"`
	// State is computed by List and Get, not stored.
	State SessionState `json:"-"`
}

// SessionFilter selects sessions in List; empty fields select all.
type SessionFilter struct {
	Node     string
	Identity string
	Resource string
	State    SessionState
}

func (f SessionFilter) match(s SessionInfo) bool {
	return (f.Node == "" || f.Node == s.Node) &&
		(f.Identity == "" || f.Identity == s.Identity) &&
		(f.Resource == "" || f.Resource == s.Resource) &&
		(f.State == "" || f.State == s.State)
}

// ErrNoSession is returned by Get for a session the index does not have.
var ErrNoSession = errors.New("cluster: no such session")

// Retention of session records: each record is attached to a retention
// lease of SessionRetention plus up to retentionBucket, granted per node
// and shared by the records written in the same retentionBucket, so that
// a busy node holds a few hundred leases, not one per session. A record
// is rewritten (and re-attached) at its session's end, so it goes
// SessionRetention to SessionRetention+retentionBucket after that end, or
// after the start of a session whose node was lost. A session that lasts
// longer than SessionRetention loses its record while it runs (sessions
// are bounded by their credential, hours at most). etcd renews every
// lease to its full TTL when its leader changes, so retention is a
// minimum. Recordings are kept by storage/, independently.
const (
	SessionRetention = 30 * 24 * time.Hour
	retentionBucket  = time.Hour
)

// sessionQueue is how many index updates may wait for etcd. Beyond it
// they are dropped (and counted): the data path never waits on etcd.
const sessionQueue = 4096

// Sessions is this node's writer of the session index, and a reader of the
// whole cluster's. Started and Ended are called on the data path; they
// only enqueue, and Run writes in the background, in order.
type Sessions struct {
	kv    clientv3.KV
	lease clientv3.Lease
	node  string
	ttl   time.Duration
	log   *slog.Logger
	now   func() time.Time

	updates chan sessionUpdate
	dropped atomic.Uint64
}

// sessionUpdate is a start (info.End zero) or an end.
type sessionUpdate struct {
	info SessionInfo
	end  bool
}

// NewSessions indexes the sessions of the node called node through c.
// lease is the TTL of the node's lease, after which a node that stopped
// renewing it (crashed) has its live sessions shown as node lost; zero
// means 30 seconds. It starts nothing: Run does the writing.
func NewSessions(c *clientv3.Client, node string, lease time.Duration) *Sessions {
	if lease <= 0 {
		lease = 30 * time.Second
	}
	return &Sessions{
		kv: c.KV, lease: c.Lease, node: node, ttl: lease,
		log: slog.Default().With("node", node, "part", "session index"),
		now: time.Now, updates: make(chan sessionUpdate, sessionQueue),
	}
}

// SetLogger makes s log through l (the node's logger). Call it before Run.
func (s *Sessions) SetLogger(l *slog.Logger) { s.log = l.With("part", "session index") }

// Started queues the start of info.ID on this node (info.Node is set to
// it; a zero Start is now). It never blocks: when the queue is full the update is dropped and
// counted (Dropped); the session then does not appear in the index.
func (s *Sessions) Started(info SessionInfo) {
	info.Node, info.End, info.EndReason, info.State = s.node, time.Time{}, "", ""
	if info.Start.IsZero() {
		info.Start = s.now()
	}
	s.enqueue(sessionUpdate{info: info})
}

// Ended queues the end of session id at at, with reason, a coarse class
// (never an error text). It never blocks; a dropped end leaves the session
// live until this node's lease ends, then node lost.
func (s *Sessions) Ended(id string, at time.Time, reason string) {
	if at.IsZero() {
		at = s.now() // a zero end would read as not ended
	}
	s.enqueue(sessionUpdate{info: SessionInfo{ID: id, End: at, EndReason: reason}, end: true})
}

func (s *Sessions) enqueue(u sessionUpdate) {
	select {
	case s.updates <- u:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is how many updates were dropped because the queue was full.
func (s *Sessions) Dropped() uint64 { return s.dropped.Load() }

// Run holds this node's lease (granting a new one if it is lost, and
// marking again the sessions still live here) and writes queued updates,
// in order, retrying each until it is written. It returns ctx's error
// once ctx ends, after writing what was queued (for up to 5 seconds) and
// revoking the lease: sessions still live here are then node lost. Stop
// it after the sessions have ended (pgwire.Server.Shutdown), so that
// their ends are written. Call it once.
func (s *Sessions) Run(ctx context.Context) error {
	w := &indexWriter{s: s, live: map[string]SessionInfo{}}
	defer w.stopKeepAlive()
	var (
		pending *sessionUpdate
		retry   <-chan time.Time
		backoff = 100 * time.Millisecond
	)
	fail := func(err error) {
		s.log.Warn("cannot write the session index; retrying", "err", err, "in", backoff)
		retry = time.After(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	for {
		if retry == nil && w.nodeLease == 0 {
			if err := w.grant(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				fail(err)
			}
		}
		if retry == nil && pending != nil && w.nodeLease != 0 {
			if err := w.write(ctx, *pending); err != nil {
				if ctx.Err() != nil {
					break
				}
				fail(err)
			} else {
				pending, backoff = nil, 100*time.Millisecond
			}
		}
		var updates <-chan sessionUpdate
		if pending == nil {
			updates = s.updates
		}
		select {
		case <-ctx.Done():
		case <-retry:
			retry = nil
			continue
		case _, ok := <-w.keepAlive:
			if !ok && ctx.Err() != nil {
				break // KeepAlive ends with ctx: the lease is still ours to revoke
			}
			if !ok {
				s.log.Warn("the node's lease was lost; granting another", "lease", int64(w.nodeLease))
				w.stopKeepAlive()
			}
			continue
		case u := <-updates:
			pending = &u
			continue
		}
		break
	}
	// Write what is queued, without retrying, then end the lease.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if pending != nil {
		_ = w.write(dctx, *pending)
	}
	for done := false; !done && dctx.Err() == nil; {
		select {
		case u := <-s.updates:
			_ = w.write(dctx, u)
		default:
			done = true
		}
	}
	if w.nodeLease != 0 {
		if _, err := s.lease.Revoke(dctx, w.nodeLease); err != nil {
			s.log.Warn("cannot revoke the node's lease; its sessions will show as node lost when it expires", "err", err)
		}
	}
	return ctx.Err()
}

// indexWriter is Run's state; only Run's goroutine touches it.
type indexWriter struct {
	s *Sessions
	// live is what this node has written as started and not ended, to
	// mark again under a new lease and to complete records at their end.
	live map[string]SessionInfo

	nodeLease     clientv3.LeaseID // 0: none
	keepAlive     <-chan *clientv3.LeaseKeepAliveResponse
	keepAliveStop context.CancelFunc

	retention        clientv3.LeaseID // 0: none
	retentionGranted time.Time
}

func (w *indexWriter) stopKeepAlive() {
	if w.keepAliveStop != nil {
		w.keepAliveStop()
	}
	w.keepAliveStop, w.keepAlive, w.nodeLease = nil, nil, 0
}

// grant takes a new node lease, keeps it alive, and marks the sessions
// still live here under it.
func (w *indexWriter) grant(ctx context.Context) error {
	s := w.s
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.lease.Grant(gctx, int64((s.ttl+time.Second-1)/time.Second))
	if err != nil {
		return fmt.Errorf("cluster: grant node lease: %w", err)
	}
	kctx, stop := context.WithCancel(ctx)
	ka, err := s.lease.KeepAlive(kctx, resp.ID)
	if err != nil {
		stop()
		return fmt.Errorf("cluster: keep node lease alive: %w", err)
	}
	w.nodeLease, w.keepAlive, w.keepAliveStop = resp.ID, ka, stop
	var ops []clientv3.Op
	for id := range w.live {
		ops = append(ops, clientv3.OpPut(w.marker(id), "", clientv3.WithLease(resp.ID)))
	}
	for len(ops) > 0 {
		n := min(len(ops), 64) // etcd's default cap is 128 operations a transaction
		if _, err := s.kv.Txn(gctx).Then(ops[:n]...).Commit(); err != nil {
			w.stopKeepAlive()
			return fmt.Errorf("cluster: mark live sessions: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

func (w *indexWriter) marker(id string) string { return liveKey + w.s.node + "/" + id }

// retentionLease is the lease this bucket's records are attached to.
func (w *indexWriter) retentionLease(ctx context.Context) (clientv3.LeaseID, error) {
	now := w.s.now()
	if w.retention != 0 && now.Sub(w.retentionGranted) < retentionBucket {
		return w.retention, nil
	}
	resp, err := w.s.lease.Grant(ctx, int64((SessionRetention+retentionBucket)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("cluster: grant retention lease: %w", err)
	}
	w.retention, w.retentionGranted = resp.ID, now
	return resp.ID, nil
}

// write writes one update: a start puts the record and the marker, an end
// rewrites the record with its end and deletes the marker, in one
// transaction each.
func (w *indexWriter) write(ctx context.Context, u sessionUpdate) error {
	if !u.end && w.nodeLease == 0 {
		// Never a marker without a lease: it would outlive a crash.
		return errors.New("cluster: no node lease to mark a live session with")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ret, err := w.retentionLease(ctx)
	if err != nil {
		return err
	}
	info := u.info
	if u.end {
		if start, ok := w.live[info.ID]; ok {
			start.End, start.EndReason = info.End, info.EndReason
			info = start
		} else {
			// Its start was dropped, or was before a restart: record the
			// end alone.
			info.Node = w.s.node
		}
	}
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("cluster: encode session %s: %w", info.ID, err)
	}
	ops := []clientv3.Op{clientv3.OpPut(sessionsKey+info.ID, string(b), clientv3.WithLease(ret))}
	if u.end {
		ops = append(ops, clientv3.OpDelete(w.marker(info.ID)))
	} else {
		ops = append(ops, clientv3.OpPut(w.marker(info.ID), "", clientv3.WithLease(w.nodeLease)))
	}
	if _, err := w.s.kv.Txn(ctx).Then(ops...).Commit(); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The retention lease or the node's went; take new ones.
			w.retention = 0
			if !u.end {
				w.stopKeepAlive()
			}
		}
		return fmt.Errorf("cluster: write session %s: %w", info.ID, err)
	}
	if u.end {
		delete(w.live, info.ID)
	} else {
		w.live[info.ID] = info
	}
	return nil
}

// List returns the sessions that match f, in id order (which is start
// order), with their State. It reads the records and the markers at one
// revision, so a session is never seen between the two writes of its end.
func (s *Sessions) List(ctx context.Context, f SessionFilter) ([]SessionInfo, error) {
	return s.list(ctx, sessionsKey, f)
}

// Get returns session id with its State, or ErrNoSession.
func (s *Sessions) Get(ctx context.Context, id string) (SessionInfo, error) {
	if id == "" || strings.Contains(id, "/") {
		return SessionInfo{}, fmt.Errorf("%w: %q", ErrNoSession, id)
	}
	out, err := s.list(ctx, sessionsKey+id, SessionFilter{})
	if err != nil {
		return SessionInfo{}, err
	}
	for _, si := range out {
		if si.ID == id {
			return si, nil
		}
	}
	return SessionInfo{}, fmt.Errorf("%w: %s", ErrNoSession, id)
}

func (s *Sessions) list(ctx context.Context, prefix string, f SessionFilter) ([]SessionInfo, error) {
	resp, err := s.kv.Txn(ctx).Then(
		clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
		clientv3.OpGet(liveKey, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("cluster: read sessions: %w", err)
	}
	records, markers := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
	live := make(map[string]bool, len(markers.Kvs))
	for _, kv := range markers.Kvs {
		k := string(kv.Key)
		live[k[strings.LastIndexByte(k, '/')+1:]] = true
	}
	var out []SessionInfo
	for _, kv := range records.Kvs {
		var si SessionInfo
		if err := json.Unmarshal(kv.Value, &si); err != nil {
			return nil, fmt.Errorf("cluster: decode %s: %w", kv.Key, err)
		}
		switch {
		case !si.End.IsZero():
			si.State = SessionEnded
		case live[si.ID]:
			si.State = SessionLive
		default:
			si.State = SessionNodeLost
		}
		if f.match(si) {
			out = append(out, si)
		}
	}
	return out, nil
}
