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
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	grants    []policy.Grant
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

	if n.grants, err = buildGrants(cfg); err != nil {
		return nil, err
	}
	if n.policy, err = policy.New(n.grants, resourceNames, profileNames); err != nil {
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

// buildResource turns a resource's configuration into a validated
// pgwire.Resource, reading the passwords it names.
func buildResource(rc ResourceConfig) (*pgwire.Resource, error) {
	if rc.Name == "" {
		return nil, errors.New("name is required")
	}
	if rc.Protocol != "" && rc.Protocol != "postgres" {
		return nil, fmt.Errorf("protocol %q is not supported (postgres is)", rc.Protocol)
	}
	pw, err := loadPassword(rc.PasswordFile, rc.PasswordEnv)
	if err != nil {
		return nil, err
	}
	r := &pgwire.Resource{
		Name: rc.Name, Address: rc.Address, Database: rc.Database, User: rc.User,
		Password: pw, TLS: rc.TLS, CAFile: rc.CAFile, ServerName: rc.ServerName,
	}
	for _, name := range slices.Sorted(maps.Keys(rc.Roles)) {
		level, err := pgwire.ParseAccessLevel(name)
		if err != nil {
			return nil, fmt.Errorf("roles: %w", err)
		}
		role := rc.Roles[name]
		pw, err := loadPassword(role.PasswordFile, role.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("roles: %s: %w", name, err)
		}
		if r.Roles == nil {
			r.Roles = map[pgwire.AccessLevel]pgwire.Credential{}
		}
		r.Roles[level] = pgwire.Credential{User: role.User, Password: pw}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// loadPassword reads a password from a file (its trailing newline removed)
// or an environment variable; neither is no password.
func loadPassword(file, env string) (pgwire.Secret, error) {
	switch {
	case file != "" && env != "":
		return pgwire.Secret{}, errors.New("set password_file or password_env, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return pgwire.Secret{}, fmt.Errorf("password_file: %w", err)
		}
		return pgwire.NewSecret(strings.TrimRight(string(b), "\r\n")), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return pgwire.Secret{}, fmt.Errorf("password_env: %s is not set", env)
		}
		return pgwire.NewSecret(v), nil
	}
	return pgwire.Secret{}, nil
}

// buildGrants turns the grants' configuration into policy grants (which
// policy.New then checks against resources and profiles).
func buildGrants(cfg *Config) ([]policy.Grant, error) {
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
		var err error
		if g.Allow, err = policy.ParseAllow(gc.Allow); err != nil {
			return nil, fmt.Errorf("node: grant %q: %w", gc.Name, err)
		}
		for _, f := range gc.Functions {
			name := strings.ToLower(f)
			if !functionName.MatchString(name) {
				return nil, fmt.Errorf("node: grant %q: functions: %q is not a function name (schema.name, or name for pg_catalog; no arguments or quotes)", gc.Name, f)
			}
			if !slices.Contains(g.Functions, name) {
				g.Functions = append(g.Functions, name)
			}
		}
		grants = append(grants, g)
	}
	return grants, nil
}

// functionName is an unquoted, optionally schema-qualified function name.
var functionName = regexp.MustCompile(`^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?$`)

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

// Run serves until ctx ends. Once listening, it also checks in the
// background, for at most a minute, what each resource's upstream roles can
// really do, and logs a warning for every role stronger than the grants
// that log in with it (see CheckResource). Shutdown order: stop accepting;
// end every session (each records session.end); stop the role check if it
// still runs; flush and stop the spool.
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
	// The role check runs beside serving, bounded, so that an unreachable
	// database delays nothing; it warns about roles stronger than their grants.
	checkCtx, stopCheck := context.WithTimeout(ctx, roleCheckTimeout)
	defer stopCheck()
	checkDone := make(chan struct{})
	go func() {
		defer close(checkDone)
		n.warnStrongRoles(checkCtx)
	}()

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
	stopCheck()
	<-checkDone
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
