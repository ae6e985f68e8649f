package pgwire

import (
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/sqlclass"
)

// Authenticator resolves the token an agent sends as its password.
type Authenticator interface {
	Authenticate(ctx context.Context, c identity.Credentials) (identity.Identity, error)
}

// Config configures a Server. Zero values are documented per field.
type Config struct {
	// NodeID names this node in logs and recordings. Required.
	NodeID string
	// TLS answers SSLRequest. Nil refuses TLS, and then only loopback clients
	// with AllowCleartextLoopback can log in.
	TLS *tls.Config
	// AllowCleartextLoopback lets clients connecting from a loopback address
	// send their token without TLS. False (the default) requires TLS always.
	AllowCleartextLoopback bool
	// MaxMessageBytes caps the body of one protocol message in either
	// direction. Zero means 64 MiB.
	MaxMessageBytes int
	// ConnectTimeout bounds dialling and logging in to the upstream. Zero
	// means 10 seconds.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the agent's startup, TLS handshake and
	// authentication. Zero means 30 seconds.
	HandshakeTimeout time.Duration
	// CatalogTTL is how long column names resolved from the upstream catalog
	// are trusted. Zero means 30 seconds.
	CatalogTTL time.Duration

	// Auditor is the public key that sessions' data keys are sealed to for
	// the masking proof. Nil: masked values are not proven.
	Auditor *ecdh.PublicKey

	Auth      Authenticator        // required
	Policy    *policy.Policy       // required
	Resources map[string]*Resource // by name, the startup "database"
	Profiles  map[string]*mask.Profile
	Recorder  *session.Recorder // required
	Logger    *slog.Logger      // nil: slog.Default()
}

// Server accepts PostgreSQL clients.
type Server struct {
	cfg     Config
	log     *slog.Logger
	classes *sqlclass.Cache
	keys    *cancelKeys

	catMu    sync.Mutex
	catalogs map[string]*catalog

	wg       sync.WaitGroup
	connMu   sync.Mutex
	conns    map[*conn]struct{}
	shutdown chan struct{}
	closeMu  sync.Once
}

// New validates cfg. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("pgwire: NodeID is required")
	}
	if cfg.Auth == nil || cfg.Policy == nil || cfg.Recorder == nil {
		return nil, errors.New("pgwire: Auth, Policy and Recorder are required")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 64 << 20
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.CatalogTTL <= 0 {
		cfg.CatalogTTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for name, r := range cfg.Resources {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("pgwire: resource %q: %w", name, err)
		}
	}
	return &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		classes:  sqlclass.NewCache(0),
		keys:     newCancelKeys(),
		catalogs: map[string]*catalog{},
		conns:    map[*conn]struct{}{},
		shutdown: make(chan struct{}),
	}, nil
}

// Serve accepts connections on ln until ctx is done, then closes ln, ends
// every session (recording "node shutdown") and returns once all of them
// have finished recording.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(aerr, &ne) && ne.Timeout() {
					continue
				}
				err = fmt.Errorf("pgwire: accept: %w", aerr)
			}
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
		}()
	}
	s.closeMu.Do(func() { close(s.shutdown) })
	s.connMu.Lock()
	for c := range s.conns {
		c.stop("node shutdown")
	}
	s.connMu.Unlock()
	s.wg.Wait()
	s.catMu.Lock()
	for _, cat := range s.catalogs {
		cat.close()
	}
	s.catMu.Unlock()
	return err
}

func (s *Server) track(c *conn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	select {
	case <-s.shutdown:
		return false
	default:
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
}

func (s *Server) catalogFor(r *Resource) *catalog {
	s.catMu.Lock()
	defer s.catMu.Unlock()
	cat := s.catalogs[r.Name]
	if cat == nil {
		cat = newCatalog(r, s.cfg.ConnectTimeout, s.cfg.CatalogTTL)
		s.catalogs[r.Name] = cat
	}
	return cat
}
