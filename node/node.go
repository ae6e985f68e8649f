// Package node wires one phigate node together: configuration, identity,
// policy, masking profiles, the recording spool and the protocol listeners.
// It is the only place where the parts meet; each part knows nothing of the
// others beyond the small interfaces it declares.
//
// New validates a configuration, loads the secrets it names and prepares the
// data directory (creating a development TLS certificate and a pseudonym key
// on first start when none is configured); it starts nothing. Run serves
// until its context ends and returns only after every session has recorded
// its end and the spool has flushed.
package node

import (
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/storage/spool"
)

// Node is one gateway node.
type Node struct {
	cfg       *Config
	id        string
	dataDir   string
	log       *slog.Logger
	auth      *identity.StaticTokens
	policy    *policy.Policy
	resources map[string]*pgwire.Resource
	profiles  map[string]*mask.Profile
	tls       *tls.Config
	auditor   *ecdh.PublicKey

	ready  chan struct{}
	pgAddr net.Addr
}

// New validates cfg and prepares the node. It starts no goroutine and
// opens no listener.
func New(cfg *Config, logger *slog.Logger) (*Node, error) {
	if logger == nil {
		logger = slog.Default()
	}
	n := &Node{cfg: cfg, ready: make(chan struct{}), id: cfg.Node.ID, dataDir: cfg.Node.DataDir}
	if n.id == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node: id not set and no host name: %w", err)
		}
		n.id = host
	}
	n.dataDir = DataDir(cfg)
	n.log = logger.With("node", n.id)
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}

	var tokens []identity.StaticToken
	for _, t := range cfg.Identities.Tokens {
		tokens = append(tokens, identity.StaticToken{
			Identity: identity.Identity{Name: t.Name, Kind: identity.Kind(t.Kind), Groups: t.Groups},
			SHA256:   t.TokenSHA256,
		})
	}
	var err error
	if n.auth, err = identity.NewStaticTokens(tokens); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	n.resources = map[string]*pgwire.Resource{}
	var resourceNames []string
	for i, rc := range cfg.Resources {
		r, err := buildResource(rc)
		if err != nil {
			return nil, fmt.Errorf("node: resource %d (%q): %w", i, rc.Name, err)
		}
		if n.resources[r.Name] != nil {
			return nil, fmt.Errorf("node: resource %q defined twice", r.Name)
		}
		n.resources[r.Name] = r
		resourceNames = append(resourceNames, r.Name)
	}

	keys, err := n.loadKeys()
	if err != nil {
		return nil, err
	}
	n.profiles = map[string]*mask.Profile{}
	var profileNames []string
	for name, pc := range cfg.Masking.Profiles {
		p, err := mask.Compile(name, pc, keys)
		if err != nil {
			return nil, fmt.Errorf("node: masking profile %q: %w", name, err)
		}
		n.profiles[name] = p
		profileNames = append(profileNames, name)
	}

	var grants []policy.Grant
	for _, gc := range cfg.Grants {
		g := policy.Grant{Name: gc.Name, Identities: gc.Identities, Groups: gc.Groups, Resources: gc.Resources, Masking: gc.Masking}
		for _, k := range gc.Kinds {
			kind, err := identity.ParseKind(k)
			if err != nil {
				return nil, fmt.Errorf("node: grant %q: %w", gc.Name, err)
			}
			g.Kinds = append(g.Kinds, kind)
		}
		if g.Allow, err = policy.ParseAllow(gc.Allow); err != nil {
			return nil, fmt.Errorf("node: grant %q: %w", gc.Name, err)
		}
		grants = append(grants, g)
	}
	if n.policy, err = policy.New(grants, resourceNames, profileNames); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	if n.tls, err = n.loadTLS(); err != nil {
		return nil, err
	}
	if n.auditor, err = n.loadAuditorKey(); err != nil {
		return nil, err
	}
	return n, nil
}

func buildResource(rc ResourceConfig) (*pgwire.Resource, error) {
	if rc.Name == "" {
		return nil, errors.New("name is required")
	}
	if rc.Protocol != "" && rc.Protocol != "postgres" {
		return nil, fmt.Errorf("protocol %q is not supported (postgres is)", rc.Protocol)
	}
	var pw string
	switch {
	case rc.PasswordFile != "" && rc.PasswordEnv != "":
		return nil, errors.New("set password_file or password_env, not both")
	case rc.PasswordFile != "":
		b, err := os.ReadFile(rc.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	case rc.PasswordEnv != "":
		v, ok := os.LookupEnv(rc.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("password_env: %s is not set", rc.PasswordEnv)
		}
		pw = v
	}
	return &pgwire.Resource{
		Name: rc.Name, Address: rc.Address, Database: rc.Database, User: rc.User,
		Password: pgwire.NewSecret(pw), TLS: rc.TLS, CAFile: rc.CAFile, ServerName: rc.ServerName,
	}, nil
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

// PostgresAddr is the bound PostgreSQL listener address, valid after Ready.
func (n *Node) PostgresAddr() net.Addr { return n.pgAddr }

// Run serves until ctx ends. Shutdown order: stop accepting; end every
// session (each records session.end); flush and stop the spool.
func (n *Node) Run(ctx context.Context) error {
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(n.dataDir, RecordingsSubdir), Logger: n.log})
	if err != nil {
		return fmt.Errorf("node: open spool: %w", err)
	}
	// The spool outlives ctx: sessions still record their ends after it.
	spoolCtx, stopSpool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSpool()
	spoolDone := make(chan error, 1)
	go func() { spoolDone <- sp.Run(spoolCtx) }()
	stopRecording := func(runErr error) error {
		stopSpool()
		if err := <-spoolDone; err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("node: spool: %w", err))
		}
		if err := sp.Close(); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("node: close spool: %w", err))
		}
		return runErr
	}

	recorder := session.NewRecorder(sp, n.id)
	if err := n.closeRecovered(ctx, sp, recorder); err != nil {
		return stopRecording(err)
	}
	addr := n.cfg.Listen.Postgres
	if addr == "" {
		addr = ":6432"
	}
	srv, err := pgwire.New(pgwire.Config{
		NodeID:                 n.id,
		TLS:                    n.tls,
		AllowCleartextLoopback: n.cfg.Listen.CleartextLoopback,
		MaxMessageBytes:        n.cfg.Limits.MaxMessageBytes,
		Auth:                   n.auth,
		Policy:                 n.policy,
		Resources:              n.resources,
		Profiles:               n.profiles,
		Auditor:                n.auditor,
		Recorder:               recorder,
		Logger:                 n.log,
	})
	if err != nil {
		return stopRecording(fmt.Errorf("node: %w", err))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return stopRecording(fmt.Errorf("node: listen postgres: %w", err))
	}
	n.pgAddr = ln.Addr()
	n.log.Info("node ready", "postgres", ln.Addr().String(), "data_dir", n.dataDir)
	close(n.ready)

	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(serveCtx, ln) }()
	var runErr error
	select {
	case runErr = <-serveErr:
	case err := <-spoolDone:
		// Nothing can be made durable any more, so nothing may be served.
		n.log.Error("recording spool stopped; shutting the node down", "err", err)
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		spoolDone <- err // for stopRecording
		stopServe()
		runErr = <-serveErr
	}
	runErr = stopRecording(runErr)
	n.log.Info("node stopped")
	return runErr
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
