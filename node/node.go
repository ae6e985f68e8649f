// Package node wires one phigate node together: configuration, the live
// state (identities, resources, grants, masking profiles, keys), the
// recording spool and the protocol listeners. It is the only place where the
// parts meet; each part knows nothing of the others beyond the small
// interfaces it declares.
//
// The lifecycle follows etcd's embed package: Init prepares a data
// directory (certificates and keys on first start); New validates a
// configuration and builds the first state snapshot, and starts nothing;
// Start opens the spool, closes recordings a crash left open, listens and
// serves; Ready is closed once agents can connect; Err reports a failure in
// the background after which the node must be closed; Reload swaps the
// state for one built from a new configuration, ending sessions it no
// longer admits; Close stops everything in a documented order and may be
// called any number of times. Run does Start, waits, and Close.
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/benchstage"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/storage/ship"
	"github.com/phigate/phigate/storage/spool"
)

// Node is one gateway node.
type Node struct {
	cfg     *Config // as started: node, listen, limits and log cannot change live
	id      string
	dataDir string
	log     *slog.Logger
	baseLog *slog.Logger // log without the node's name
	state   *session.State

	// bootstrap is the configuration's policy, resolved: the cluster's
	// first revision if this node creates the cluster.
	bootstrap    *Policy
	ownPseudonym []byte // the node's own pseudonym key (the cluster's first); nil: none
	joinToken    string

	reloadMu    sync.Mutex
	profiles    map[string]compiledProfile // of the current snapshot; under reloadMu
	loc         local                      // under reloadMu
	policy      *Policy                    // the revision enforced; under reloadMu
	unavailable atomic.Pointer[string]     // why the node refuses everything (no quorum); nil: it does not
	quorumOK    atomic.Bool                // the last quorum check succeeded

	recMu        sync.Mutex
	bootstrapped *cluster.PolicyRevision // revision 1, stored by this node before its spool opened

	policyMu      sync.Mutex
	policyRev     uint64        // the cluster policy revision enforced
	policyChanged chan struct{} // closed and replaced when policyRev changes

	// Set by Start before the listeners open.
	recorder  *session.Recorder // the recordings spool's (policy changes are recorded there too)
	member    *cluster.Member
	index     *cluster.Sessions
	stopIndex context.CancelFunc
	indexDone chan struct{}

	approvals     *cluster.Approvals
	stopApprovals context.CancelFunc
	approvalsDone chan struct{}
	peers         peerNames
	policies      *cluster.Policies
	sealer        Sealer
	stopWatch     context.CancelFunc

	ready chan struct{}
	errc  chan error // background failures, buffered

	metrics *metrics // made by New: reloads count before Start

	mu       sync.Mutex // guards started, closed, failed, pgAddr, api and apiAddr
	started  bool
	closed   bool
	draining bool
	failed   bool // a background failure was reported (Err)
	pgAddr   net.Addr
	api      *http.Server // nil: listen.api is empty
	apiAddr  net.Addr

	// Set by Start before it returns, read by Close after.
	records  *cluster.Records // signing keys and anchors
	rotateMu sync.Mutex       // one signing key rotation at a time
	shipper  *ship.Shipper
	stopShip context.CancelFunc
	shipDone chan error
	sp       *spool.Spool
	srv      *pgwire.Server
	// stopSpool ends the spool's run; spoolDone yields its result once.
	stopSpool context.CancelFunc
	spoolDone chan error
	stopCheck context.CancelFunc
	bgDone    sync.WaitGroup // the role check, the listeners and the spool watcher

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg: the node's own settings and its policy sections
// (the bootstrap policy, which becomes the cluster's first revision if
// this node creates the cluster), reading the passwords, keys and
// certificates they name (Init makes the ones the data directory
// provides). It writes nothing and starts nothing: agents are served
// only once Start has the cluster's current policy.
func New(cfg *Config, logger *slog.Logger) (*Node, error) {
	if logger == nil {
		logger = slog.Default()
	}
	n := &Node{cfg: cfg, id: nodeID(cfg), dataDir: DataDir(cfg), ready: make(chan struct{}), errc: make(chan error, 4), policyChanged: make(chan struct{})}
	if n.id == "" {
		return nil, errors.New("node: id not set and no host name")
	}
	n.baseLog, n.log = logger, logger.With("node", n.id)
	if err := checkCluster(cfg.Cluster); err != nil {
		return nil, err
	}
	if err := checkStoreConfig(cfg.Store); err != nil {
		return nil, err
	}
	if cfg.Limits.MaxSessions < 0 {
		return nil, fmt.Errorf("node: limits.max_sessions %d: want 0 (from the open-file limit) or more", cfg.Limits.MaxSessions)
	}
	if r := cfg.Recording.ChangeSnapshotRows; r < 0 || r > 10000 {
		return nil, fmt.Errorf("node: recording.change_snapshot_rows %d: want 0 (100) up to 10000", r)
	}
	if _, err := clusterKey(cfg); err != nil {
		return nil, err
	}
	keys, err := loadKeys(cfg)
	if err != nil {
		return nil, err
	}
	// Until the cluster gives the node its pseudonym key (a joiner has
	// none of its own), the bootstrap policy is validated with a
	// throwaway one; it decides nothing before Start has the cluster's.
	pseudonym := keys.Pseudonym
	if pseudonym == nil {
		pseudonym = make([]byte, 32)
		if _, err := rand.Read(pseudonym); err != nil {
			return nil, err
		}
	}
	if n.loc, err = loadLocal(cfg, pseudonym); err != nil {
		return nil, err
	}
	n.loc.accepting = n.accepting
	n.ownPseudonym = keys.Pseudonym
	if n.bootstrap, err = bootstrapPolicy(cfg); err != nil {
		return nil, err
	}
	snap, profiles, err := buildSnapshot(n.bootstrap, n.loc, nil, nil, n.log)
	if err != nil {
		return nil, err
	}
	if snap.Auditor == nil && !joins(cfg) {
		n.log.Warn("masking proof is off in the bootstrap policy (auditors.public_key: none)")
	}
	n.profiles = profiles
	n.state = session.NewState(snap)
	n.metrics = newMetrics(n.state, n)
	return n, nil
}

// SetJoinToken gives the token to join the cluster with (`phigate node
// --join-token`), instead of cluster.join_token_file. Call it before Start.
func (n *Node) SetJoinToken(t string) { n.joinToken = t }

// bootstrapPolicy is cfg's policy sections, resolved, with the auditors'
// key from keys.auditor_public_key_file when they name none.
func bootstrapPolicy(cfg *Config) (*Policy, error) {
	b, err := cfg.Policy.Marshal()
	if err != nil {
		return nil, err
	}
	p, err := ParsePolicy(b) // a copy: resolving must not change cfg
	if err != nil {
		return nil, err
	}
	if p.Auditors.PublicKey == "" && p.Auditors.PublicKeyFile == "" {
		switch path := cfg.Keys.AuditorPublicKeyFile; {
		case path == "none", path == "" && joins(cfg):
			// A joiner's policy is the cluster's.
			p.Auditors.PublicKey = "none"
		case path == "":
			path = filepath.Join(DataDir(cfg), "keys", "auditor.pub")
			if err := madeByInit(path); err != nil {
				return nil, fmt.Errorf("node: auditor public key: %w", err)
			}
			p.Auditors.PublicKeyFile = path
		default:
			p.Auditors.PublicKeyFile = path
		}
	}
	if err := p.Resolve(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return p, nil
}

// checkCluster checks the cluster section's values.
func checkCluster(c ClusterConfig) error {
	switch c.Voters {
	case 0, 1, 3, 5:
	default:
		return fmt.Errorf("node: cluster.voters is %d: 1, 3 or 5", c.Voters)
	}
	if c.Lease < 0 {
		return errors.New("node: cluster.lease is negative")
	}
	for _, a := range []string{c.Peer, c.Client, c.Gossip, c.API} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("node: cluster: %q is not host:port", a)
		}
	}
	if c.Gossip != "" {
		if host, _, _ := net.SplitHostPort(c.Gossip); net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
			return fmt.Errorf("node: cluster.gossip: %q must be an IP address and port that the other nodes reach (not a name, not 0.0.0.0)", c.Gossip)
		}
	}
	return nil
}

// Version is the node's software version, told to the other nodes (set
// at build time, or by the CLI).
var Version = "dev"

// nodeID is the configured id, else the host name ("" when there is none).
func nodeID(cfg *Config) string {
	if cfg.Node.ID != "" {
		return cfg.Node.ID
	}
	host, _ := os.Hostname()
	return host
}

// RecordingsSubdir is where, under the data directory, the spool lives.
const RecordingsSubdir = "recordings"

// AuditLogSubdir is where, under the data directory, auditors' own acts
// (unsealing raw values) are recorded, in a spool of its own.
const AuditLogSubdir = "auditlog"

// DataDir is cfg's data directory, with its default applied.
func DataDir(cfg *Config) string {
	if cfg.Node.DataDir == "" {
		return "phigate-data"
	}
	return cfg.Node.DataDir
}

// ID is the node's name.
func (n *Node) ID() string { return n.id }

// Ready is closed once the listeners accept connections.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Err delivers a failure that happened in the background after Start (the
// spool stopped, a listener failed); the API's /readyz answers 503 from then. The node serves nothing safely after
// one: close it.
func (n *Node) Err() <-chan error { return n.errc }

// PostgresAddr is the bound PostgreSQL listener address, valid after Ready.
func (n *Node) PostgresAddr() net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pgAddr
}

// Revision is the revision of the state snapshot sessions are decided with.
func (n *Node) Revision() uint64 { return n.state.Load().Revision }

// ErrStarted is returned by Start (and Run) on a node that was started or
// closed before.
var ErrStarted = errors.New("node: already started or closed")

// Start opens the recording spool, ends the recordings a crash left open,
// and serves agents and, when listen.api is set, the HTTPS API; it returns once they can connect (Ready is closed), or
// with the error that prevented it, after undoing what it had started.
// Once listening, it also checks in the background, for at most a minute,
// what each resource's upstream roles can really do, and logs a warning
// for every role stronger than the grants that log in with it (see
// CheckResource). A node starts once; Close it when done, whatever Start
// returned.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		return ErrStarted
	}
	n.started = true
	n.mu.Unlock()
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	if benchstage.Name != "" {
		n.log.Warn("BENCHMARK BUILD: part of the data path is switched off; never a product mode", "stage", benchstage.Name)
	}
	if err := n.startCluster(ctx); err != nil {
		return err
	}
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(n.dataDir, RecordingsSubdir), Logger: n.log, OnCommit: n.metrics.commit})
	if err != nil {
		return fmt.Errorf("node: open spool: %w", err)
	}
	n.sp = sp
	// The spool outlives the listeners: sessions record their ends after
	// the node stops accepting.
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	n.stopSpool, n.spoolDone = stopSpool, make(chan error, 1)
	spoolErr := make(chan error, 1)
	go func() {
		err := sp.Run(spoolCtx)
		spoolErr <- err
		n.spoolDone <- err
	}()
	n.bgDone.Add(1)
	go func() {
		defer n.bgDone.Done()
		select {
		case err := <-spoolErr:
			if spoolCtx.Err() == nil {
				// Nothing can be made durable any more, so nothing may be served.
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				n.log.Error("recording spool stopped; the node must shut down", "err", err)
				n.fail(fmt.Errorf("node: spool: %w", err))
			}
		case <-spoolCtx.Done():
		}
	}()

	recorder := session.NewRecorder(sp, n.id)
	if err := n.closeRecovered(ctx, sp, recorder); err != nil {
		return err
	}
	n.recMu.Lock()
	n.recorder = recorder
	bootstrapped := n.bootstrapped
	n.recMu.Unlock()
	if bootstrapped != nil {
		// Stored before the spool was open: recorded now.
		if err := n.recordPolicy(ctx, bootstrapped.AppliedBy, 0, bootstrapped.SHA256, bootstrapped, nil, nil); err != nil {
			return err
		}
	}
	if err := n.startShipper(ctx); err != nil {
		return err
	}
	num, err := cluster.NodeNumber(ctx, n.member.Client(), n.id)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.index, err = n.startIndex(); err != nil {
		return err
	}
	n.approvals = n.startApprovals()
	srv, err := pgwire.New(pgwire.Config{
		NodeID:                 n.id,
		NodeNumber:             num,
		ForwardCancel:          n.forwardCancel,
		State:                  n.state,
		AllowCleartextLoopback: n.cfg.Listen.CleartextLoopback,
		MaxMessageBytes:        n.cfg.Limits.MaxMessageBytes,
		MaxSessions:            n.sessionCap(),
		Recorder:               recorder,
		Observer:               n.metrics,
		Index:                  sessionIndex{n.index},
		Approvals:              n.approvals,
		DisableChangeSnapshots: n.cfg.Recording.DisableChangeSnapshots,
		ChangeSnapshotRows:     n.cfg.Recording.ChangeSnapshotRows,
		Logger:                 n.baseLog, // pgwire names the node itself
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.peerRoutes(srv)
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	addr := n.cfg.Listen.Postgres
	if addr == "" {
		addr = ":6432"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: listen postgres: %w", err)
	}
	n.mu.Lock()
	n.pgAddr = ln.Addr()
	n.mu.Unlock()
	n.bgDone.Add(1)
	go func() {
		defer n.bgDone.Done()
		if err := srv.Serve(ln); !errors.Is(err, pgwire.ErrServerClosed) {
			n.log.Error("postgres listener failed", "err", err)
			n.fail(fmt.Errorf("node: postgres listener: %w", err))
		}
	}()
	if err := n.startAPI(); err != nil {
		return err
	}
	if err := n.member.UpdateMeta(); err != nil {
		n.log.Warn("cannot tell gossip this node's addresses", "err", err)
	}
	n.log.Info("node ready", "postgres", ln.Addr().String(), "api", n.cfg.Listen.API, "data_dir", n.dataDir, "revision", n.Revision())
	close(n.ready)

	// The role check runs beside serving, bounded, so that an unreachable
	// database delays nothing; it warns about roles stronger than their grants.
	checkCtx, stopCheck := context.WithTimeout(context.Background(), roleCheckTimeout)
	n.stopCheck = stopCheck
	n.bgDone.Add(1)
	go func() {
		defer n.bgDone.Done()
		n.warnStrongRoles(checkCtx, n.state.Load())
	}()
	return nil
}

func (n *Node) fail(err error) {
	n.mu.Lock()
	n.failed = true
	n.mu.Unlock()
	select {
	case n.errc <- err:
	default:
	}
}

// Run starts the node and serves until ctx ends or the node fails in the
// background, then closes it. When ctx ends it drains first (Drain, for at
// most limits.drain_timeout). It returns after every session has recorded
// its end and the spool has flushed: nil when ctx ended it.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(ctx); err != nil {
		if errors.Is(err, ErrStarted) {
			return err // someone else runs it: not ours to close
		}
		return errors.Join(err, n.Close())
	}
	var runErr error
	select {
	case <-ctx.Done():
		// Asked to stop: let open sessions finish, for a while.
		d := n.cfg.Limits.DrainTimeout
		if d == 0 {
			d = drainTimeout
		}
		dctx, cancel := context.WithTimeout(context.Background(), d)
		if err := n.Drain(dctx); err != nil {
			n.log.Warn("drain timeout: ending the sessions still open", "timeout", d)
		}
		cancel()
	case runErr = <-n.errc:
	}
	return errors.Join(runErr, n.Close())
}

// Reload applies what can change live of the node's own configuration:
// the certificate agents and the API see. The policy sections of the
// file were the bootstrap policy only; the policy in force is the
// cluster's (`phigate policy apply`), so a change to them is reported and
// ignored, as are the sections only a restart can change (node, listen,
// limits, log, cluster, keys). An invalid cfg changes nothing: the error
// says why. It returns the new state revision.
func (n *Node) Reload(cfg *Config) (uint64, error) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	t, err := loadTLS(cfg)
	n.metrics.reload(err == nil)
	if err != nil {
		return 0, err
	}
	if ignored := restartOnly(n.cfg, cfg); len(ignored) > 0 {
		n.log.Warn("reload: these sections changed but need a restart; running with the old ones", "sections", strings.Join(ignored, ", "))
	}
	if !reflect.DeepEqual(n.cfg.Policy, cfg.Policy) {
		n.log.Warn("reload: the policy sections of the configuration changed, but they are only the bootstrap policy: apply the change with `phigate policy apply -f FILE`", "policy_revision", n.PolicyRevision())
	}
	n.loc.tls = t
	next := *n.state.Load()
	next.TLS = t
	rev := n.state.Publish(&next)
	n.log.Info("configuration reloaded", "state_revision", rev)
	return rev, nil
}

// Close stops the node and returns once everything it started has
// stopped. Order: from the start, the API's /readyz answers 503; stop
// accepting on every agent listener; end every session (each records
// session.end, "node shutdown"; at most shutdownTimeout is waited for);
// stop the role check; flush and stop the spool; last, stop the API (so
// that health checks see the node drain). It is idempotent: later calls
// return the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(n.shutdown)
	return n.closeErr
}

// shutdownTimeout bounds how long Close waits for sessions to record their end.
const shutdownTimeout = 30 * time.Second

func (n *Node) shutdown() {
	n.mu.Lock()
	n.closed = true
	started, srv := n.started, n.srv
	n.mu.Unlock()
	var errs []error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: %w", err))
		}
		cancel()
	}
	if n.stopCheck != nil {
		n.stopCheck()
	}
	if n.stopIndex != nil {
		// After the sessions: their ends are written first.
		n.stopIndex()
		<-n.indexDone
	}
	if n.stopApprovals != nil {
		// After the sessions: their held requests are closed first.
		n.stopApprovals()
		<-n.approvalsDone
	}
	if n.stopWatch != nil {
		n.stopWatch()
	}
	if err := n.stopShipper(); err != nil {
		errs = append(errs, err)
	}
	if n.sp != nil {
		n.stopSpool()
		if err := <-n.spoolDone; err != nil {
			errs = append(errs, fmt.Errorf("node: spool: %w", err))
		}
		if err := n.sp.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: close spool: %w", err))
		}
	}
	if err := n.stopAPI(); err != nil {
		errs = append(errs, err)
	}
	n.bgDone.Wait()
	if n.member != nil {
		// Last: the other nodes learn from gossip that this one left.
		if err := n.member.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: cluster member: %w", err))
		}
	}
	n.closeErr = errors.Join(errs...)
	if started {
		n.log.Info("node stopped")
	}
}

// closeRecovered ends the recordings that a crash left open, so that every
// recording on disk either ends with session.end or belongs to a live session.
func (n *Node) closeRecovered(ctx context.Context, sp *spool.Spool, rec *session.Recorder) error {
	for _, id := range sp.Recovered() {
		if err := rec.CloseRecovered(ctx, id); err != nil {
			return fmt.Errorf("node: close recovered session %s: %w", id, err)
		}
		n.log.Warn("closed a recording left open by an unclean stop", "session", id)
	}
	return nil
}
