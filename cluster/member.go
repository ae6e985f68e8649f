package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Config configures a Member. Zero values are documented per field.
type Config struct {
	// Name names the member (the node id). Required.
	Name string
	// Dir is where the member keeps its data (write-ahead log, snapshots).
	// Required; it survives restarts, and a member restarted with it rejoins
	// as itself.
	Dir string
	// PeerAddr is host:port for etcd peer traffic. Empty means
	// 127.0.0.1:2380.
	PeerAddr string
	// ClientAddr is host:port for etcd clients (other nodes' admin tools).
	// Empty means 127.0.0.1:2379.
	ClientAddr string
	// StartTimeout bounds how long Start waits for the member to be ready.
	// Zero means 30 seconds.
	StartTimeout time.Duration
	// Logger receives the member's warnings and errors. Nil: slog.Default().
	Logger *slog.Logger
}

// Member is this node's embedded etcd member, and a client of it that
// needs no network.
type Member struct {
	etcd   *embed.Etcd
	client *clientv3.Client
	log    *slog.Logger

	closeOnce sync.Once
}

// Start starts the member: with no data in Dir it bootstraps a new
// one-member cluster; with data it restarts as the member it was. It
// returns once the member serves reads and writes, or with why it could
// not.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	if cfg.Name == "" || cfg.Dir == "" {
		return nil, errors.New("cluster: Name and Dir are required")
	}
	if cfg.PeerAddr == "" {
		cfg.PeerAddr = "127.0.0.1:2380"
	}
	if cfg.ClientAddr == "" {
		cfg.ClientAddr = "127.0.0.1:2379"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ec := embed.NewConfig()
	ec.Name, ec.Dir = cfg.Name, cfg.Dir
	peer := url.URL{Scheme: "http", Host: cfg.PeerAddr}
	client := url.URL{Scheme: "http", Host: cfg.ClientAddr}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.InitialClusterToken = "phigate-" + cfg.Name
	// The embedded member logs through zap; only its problems reach the
	// node's log, as the node's other parts' do.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.AutoCompactionMode, ec.AutoCompactionRetention = "revision", "1000"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("cluster: start member: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("cluster: member failed while starting: %w", err)
	case <-time.After(cfg.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("cluster: member not ready after %v", cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	m := &Member{etcd: e, client: v3client.New(e.Server), log: cfg.Logger.With("cluster_member", cfg.Name)}
	return m, nil
}

// Err delivers a failure of the member after Start; the member serves
// nothing reliable afterwards.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// Client is a client of the local member that needs no network.
func (m *Member) Client() *clientv3.Client { return m.client }

// Close stops the member; it is idempotent.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		m.client.Close()
		m.etcd.Close()
	})
	return nil
}
