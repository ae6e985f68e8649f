package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Config configures a Member. Zero values are documented per field.
type Config struct {
	// Name names the member (the node id): its etcd member name, its gossip
	// name and the common name of its certificate. Required; unique in the
	// cluster.
	Name string
	// Dir is where the member keeps its data: etcd's write-ahead log and
	// snapshots, and under Dir/pki the cluster CA, this node's certificate
	// and the cluster's secrets. Required; it survives restarts, and a
	// member restarted with it rejoins as itself.
	Dir string
	// PeerAddr is host:port for etcd peer traffic (mutual TLS under the
	// cluster CA), as the other members reach it; etcd also checks that a
	// member's peer connections come from an address its certificate
	// names. Empty means 127.0.0.1:2380. The addresses are fixed when the
	// member is created (bootstrap or join): they are in its certificate
	// and in the cluster's membership.
	PeerAddr string
	// ClientAddr is host:port for etcd clients (mutual TLS: a client needs
	// a certificate of the cluster CA). Empty means 127.0.0.1:2379.
	ClientAddr string
	// APIAddr is host:port of the node-to-node HTTPS API (joins, and what
	// the node registers with Handle), as the other nodes reach it. Empty
	// means 127.0.0.1:7443.
	APIAddr string
	// GossipAddr is ip:port (UDP and TCP) for gossip, as the other nodes
	// reach it; it is bound and advertised as is, so it must be an IP
	// address, not a name or 0.0.0.0. Empty means 127.0.0.1:7946.
	GossipAddr string
	// Join lists node-to-node API addresses (host:port) of members of an
	// existing cluster. With an empty Dir, Start joins that cluster with
	// JoinToken instead of bootstrapping a new one; with a Dir that holds a
	// member, Join is not used.
	Join []string
	// JoinToken is a token from JoinToken on a member of the cluster to
	// join; required with Join and an empty Dir.
	JoinToken string
	// Voters is how many voting members the cluster keeps when it can: 1,
	// 3 or 5. Zero means 3. Further members are learners, promoted when a
	// voter is lost. All members should be given the same value.
	Voters int
	// Secrets are the initial values of named cluster-wide secrets, used
	// only when this node bootstraps a new cluster; a nil value means 32
	// random bytes. Joiners receive the cluster's. GossipSecret is always
	// created (random unless given here).
	Secrets map[string][]byte
	// Meta gives the node's gossip metadata, called whenever gossip needs
	// it (at Start and on UpdateMeta). Nil means empty metadata; the
	// cluster addresses are added by the member itself.
	Meta func() Meta
	// StartTimeout bounds how long Start waits for the member to be ready
	// (for a joiner: admitted and caught up). Zero means 30 seconds.
	StartTimeout time.Duration
	// Logger receives the member's warnings and errors (and gossip's
	// chatter, at debug). Nil: slog.Default().
	Logger *slog.Logger

	// timing shortens every timeout in tests; zero means production
	// values.
	timing timing
}

// timing holds the member's timeouts, shortened by tests.
type timing struct {
	tickMs, electionMs uint
	// reconcileEvery is the period of the voter loop.
	reconcileEvery time.Duration
	// voterGrace is how long a voter is down before a learner replaces it.
	voterGrace time.Duration
	// rejoinEvery is how often gossip retries registered nodes it lacks.
	rejoinEvery time.Duration
	// gossip adjusts memberlist's configuration.
	gossip func(*memberlist.Config)
}

func (c *Config) peerURL() string   { return "https://" + c.PeerAddr }
func (c *Config) clientURL() string { return "https://" + c.ClientAddr }

// withDefaults fills in defaults and checks what cannot be defaulted.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" || c.Dir == "" {
		return c, errors.New("cluster: Name and Dir are required")
	}
	if !validName(c.Name) {
		return c, fmt.Errorf("cluster: name %q: use letters, digits, '-', '_' and '.', at most 63", c.Name)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.PeerAddr, "127.0.0.1:2380")
	def(&c.ClientAddr, "127.0.0.1:2379")
	def(&c.APIAddr, "127.0.0.1:7443")
	def(&c.GossipAddr, "127.0.0.1:7946")
	for what, a := range map[string]string{"PeerAddr": c.PeerAddr, "ClientAddr": c.ClientAddr, "APIAddr": c.APIAddr, "GossipAddr": c.GossipAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("cluster: %s %q: %w", what, a, err)
		}
	}
	if h, _, _ := net.SplitHostPort(c.GossipAddr); net.ParseIP(h) == nil || net.ParseIP(h).IsUnspecified() {
		return c, fmt.Errorf("cluster: GossipAddr %q: gossip binds and advertises one IP address: give IP:port", c.GossipAddr)
	}
	switch c.Voters {
	case 0:
		c.Voters = 3
	case 1, 3, 5:
	default:
		return c, fmt.Errorf("cluster: Voters is %d: use 1, 3 or 5", c.Voters)
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Meta == nil {
		c.Meta = func() Meta { return Meta{} }
	}
	if c.timing.tickMs == 0 {
		c.timing = timing{tickMs: 100, electionMs: 1000, reconcileEvery: time.Second, voterGrace: 15 * time.Second, rejoinEvery: 10 * time.Second}
	}
	return c, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Member is this node's membership in the cluster: its embedded etcd
// member (and a client of it that needs no network), the node-to-node
// HTTPS API, gossip, and the loop that keeps the cluster's voters.
type Member struct {
	cfg    Config
	pki    *pki
	etcd   *embed.Etcd
	client *clientv3.Client
	log    *slog.Logger

	api    *http.Server
	apiMux *http.ServeMux
	peers  *http.Client

	gossip *gossip

	errc    chan error  // one failure, never closed
	leaving atomic.Bool // Leave removed the member: etcd stopping is no failure

	stop     chan struct{} // closed by Close and Leave: background loops end
	loops    sync.WaitGroup
	closeMu  sync.Mutex // serializes Close and Leave
	closed   bool
	closeErr error
}

// Start starts the member and returns once it serves reads and writes:
//   - with a Dir that holds a member (Dir/pki), it restarts as that member;
//   - with an empty Dir and no Join, it bootstraps a new one-member
//     cluster: the cluster CA, this node's certificate and the secrets;
//   - with an empty Dir and Join, it asks a member listed in Join to admit
//     it with JoinToken, saves what it is given, and starts as a learner
//     of that cluster (promoted to voter by the leader when needed).
//
// A refused join leaves Dir without a pki directory, so a later Start
// tries again.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	log := cfg.Logger.With("node", cfg.Name)

	p, err := loadPKI(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: read %s: %w", pkiPath(cfg.Dir), err)
	}
	switch {
	case p != nil:
	case len(cfg.Join) == 0:
		if p, err = bootstrapPKI(&cfg); err != nil {
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		if err := p.save(cfg.Dir); err != nil {
			return nil, fmt.Errorf("cluster: bootstrap: save %s: %w", pkiPath(cfg.Dir), err)
		}
		log.Info("cluster: bootstrapped a new cluster", "ca_sha256", fmt.Sprintf("%x", p.caFingerprint()))
	default:
		if p, err = join(ctx, &cfg, log); err != nil {
			return nil, err
		}
		if err := p.save(cfg.Dir); err != nil {
			return nil, fmt.Errorf("cluster: join: save %s: %w", pkiPath(cfg.Dir), err)
		}
		log.Info("cluster: admitted; starting as a learner")
	}

	m := &Member{cfg: cfg, pki: p, log: log, errc: make(chan error, 1), stop: make(chan struct{})}
	if err := m.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := m.startAPI(); err != nil {
		m.shutdown()
		return nil, err
	}
	m.register(ctx)
	if m.gossip, err = m.startGossip(); err != nil {
		m.shutdown()
		return nil, err
	}
	m.loops.Add(2)
	go m.reconcileLoop()
	go m.rejoinLoop()
	return m, nil
}

// startEtcd starts the embedded etcd member and waits until it is ready.
func (m *Member) startEtcd(ctx context.Context) error {
	cfg, p := &m.cfg, m.pki
	pkiDir := pkiPath(cfg.Dir)
	tls := transport.TLSInfo{
		CertFile:       filepath.Join(pkiDir, nodeCertFile),
		KeyFile:        filepath.Join(pkiDir, nodeKeyFile),
		TrustedCAFile:  filepath.Join(pkiDir, caCertFile),
		ClientCertAuth: true,
	}
	ec := embed.NewConfig()
	ec.Name, ec.Dir = cfg.Name, cfg.Dir
	peer := url.URL{Scheme: "https", Host: cfg.PeerAddr}
	client := url.URL{Scheme: "https", Host: cfg.ClientAddr}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.PeerTLSInfo, ec.ClientTLSInfo = tls, tls
	ec.InitialCluster = p.state.InitialCluster
	ec.ClusterState = embed.ClusterStateFlagExisting
	if p.state.New {
		ec.ClusterState = embed.ClusterStateFlagNew
	}
	ec.InitialClusterToken = "phigate"
	ec.TickMs, ec.ElectionMs = cfg.timing.tickMs, cfg.timing.electionMs
	// Members beyond the voters are learners; etcd's default allows one.
	ec.MaxLearners = 32
	// The embedded member logs through zap; only its problems reach the
	// node's log, as the node's other parts' do.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.AutoCompactionMode, ec.AutoCompactionRetention = "revision", "1000"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("cluster: start member: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("cluster: member failed while starting: %w", err)
	case <-ctx.Done():
		e.Server.HardStop()
		e.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("cluster: member not ready after %v", cfg.StartTimeout)
		}
		return ctx.Err()
	}
	m.etcd, m.client = e, v3client.New(e.Server)
	go func() {
		select {
		case err, ok := <-e.Err():
			if ok && err != nil && !m.leaving.Load() {
				m.fail(fmt.Errorf("cluster: member: %w", err))
			}
		case <-e.Server.StopNotify():
			// Not stopped by Close (m.stop would be closed first) nor by
			// Leave: another member removed this one.
			select {
			case <-m.stop:
			default:
				if !m.leaving.Load() {
					m.fail(ErrRemoved)
				}
			}
		case <-m.stop:
		}
	}()
	return nil
}

// whileUp runs f, which reads etcd's local store, as a task of the etcd
// server, so that the server does not close its store under f. A
// serializable read goes straight to the store, and one on a store
// already closed (etcd stops by itself when removed) crashes the process.
// It returns ErrClosed without running f once the server is stopping.
func (m *Member) whileUp(f func() error) error {
	done := make(chan struct{})
	var err error
	m.etcd.Server.GoAttach(func() {
		defer close(done)
		err = f()
	})
	select {
	case <-done:
		return err
	case <-m.etcd.Server.StopNotify():
		// The server waited for f, if it ran, before it stopped.
		select {
		case <-done:
			return err
		default:
			return ErrClosed
		}
	}
}

// ErrRemoved is delivered on Err when the etcd member stopped by itself:
// another member removed it from the cluster.
var ErrRemoved = errors.New("cluster: the etcd member stopped: removed from the cluster")

// fail reports a background failure on Err, once.
func (m *Member) fail(err error) {
	select {
	case m.errc <- err:
		m.log.Error("cluster: member failed", "err", err)
	default:
	}
}

// Err delivers a failure of the member after Start (of etcd or of the
// node-to-node API); the member serves nothing reliable afterwards. It
// is never closed.
func (m *Member) Err() <-chan error { return m.errc }

// Client is a client of the local member that needs no network.
func (m *Member) Client() *clientv3.Client { return m.client }

// Name is this member's name.
func (m *Member) Name() string { return m.cfg.Name }

// Secret returns the named cluster-wide secret, or nil if the cluster has
// none by that name. The slice is the caller's.
func (m *Member) Secret(name string) []byte {
	s, ok := m.pki.secrets[name]
	if !ok {
		return nil
	}
	return append([]byte(nil), s...)
}

// CAFingerprint is the SHA-256 of the cluster CA certificate (DER), as a
// join token carries it; operators can compare it out of band.
func (m *Member) CAFingerprint() [32]byte { return m.pki.caFingerprint() }

// Close stops the member, keeping its cluster membership (a member
// restarted with the same Dir rejoins): the voter loop, then gossip
// (announcing that the node leaves, for at most a second), then the
// node-to-node API, then etcd. It is idempotent.
func (m *Member) Close() error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if !m.closed {
		m.closed = true
		m.closeErr = m.shutdown()
	}
	return m.closeErr
}

// shutdown stops everything that started, in the order Close documents.
func (m *Member) shutdown() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.loops.Wait()
	var errs []error
	if m.gossip != nil {
		errs = append(errs, m.gossip.close())
	}
	if m.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := m.api.Shutdown(ctx); err != nil {
			m.api.Close()
		}
		cancel()
	}
	if m.client != nil {
		m.client.Close()
	}
	if m.etcd != nil {
		m.etcd.Close()
	}
	return errors.Join(errs...)
}
