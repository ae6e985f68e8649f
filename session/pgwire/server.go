package pgwire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/approval"
	"github.com/phigate/phigate/session/change"
	"github.com/phigate/phigate/session/resource"
	"github.com/phigate/phigate/session/sqlclass"
)

// Config configures a Server. Zero values are documented per field.
type Config struct {
	// NodeID names this node in logs and recordings. Required.
	NodeID string
	// NodeNumber is this node's number in the cluster, unique among its
	// nodes, 0..MaxNodeNumber. It is part of every cancel key the node
	// hands out (see cancel.go), so that a CancelRequest that reaches
	// another node can be forwarded here. Zero is a valid number (a node
	// alone).
	NodeNumber uint16
	// ForwardCancel passes a CancelRequest key carrying another node's
	// number (node) to that node, whose Server.Cancel checks and serves it.
	// It is called on the cancelling connection's goroutine with a context
	// that ends within a few seconds; it must not outlive it. key is the
	// request's body (pid, secret), valid only during the call: pass it on
	// as is, never log or keep it. Nil: such requests are dropped.
	ForwardCancel func(ctx context.Context, node uint16, key []byte)
	// State is the node's live state: identities, resources, grants,
	// masking profiles, keys and the listener's TLS. Each session reads the
	// current snapshot at login and before each command. Required.
	State *session.State
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
	// Observer is told of sessions, commands and masked values (the
	// node's metrics). Nil: nobody is.
	Observer Observer
	// Index is told of each session's start and end (the cluster's
	// session index). Nil: nobody is.
	Index SessionIndex
	// DisableChangeSnapshots turns off the before and after rows of data
	// changes (record.Change events, snapshot.go). False (the default):
	// every UPDATE, DELETE, INSERT ... ON CONFLICT and MERGE is recorded
	// with the rows it touched, or with the reason it could not be.
	DisableChangeSnapshots bool
	// ChangeSnapshotRows bounds the rows each before or after snapshot
	// records; the statement's command tag still gives the true count.
	// Zero means 100; at most change.MaxBound.
	ChangeSnapshotRows int

	// MaxSessions caps the sessions the server holds at once, counted
	// from the agent's startup message to the session's end. A
	// connection beyond it is refused with 53300 (too_many_connections),
	// as PostgreSQL refuses one over max_connections: before its token
	// is read, nothing recorded, no upstream dialled. Cancel requests
	// are served regardless. Zero: no cap (a node sets one from its
	// open-file limit, see node.Config's limits.max_sessions).
	MaxSessions int

	// Approvals files and decides approval requests for commands that a
	// grant's approval rules gate (the cluster's, in a node). Nil: such
	// commands are refused.
	Approvals approval.Service

	Recorder *session.Recorder // required
	Logger   *slog.Logger      // nil: slog.Default()
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pgwire: server closed")

// Server accepts PostgreSQL clients on any number of listeners. Its
// lifecycle is net/http's: Serve per listener, Shutdown to drain them all.
type Server struct {
	cfg     Config
	log     *slog.Logger
	classes *sqlclass.Cache
	changes *change.Cache // nil: no change snapshots
	keys    *cancelKeys
	// unknownCancel limits how often cancels with unknown keys are logged.
	unknownCancel logLimiter
	// acceptErrs and overCap limit how often failed accepts and
	// connections refused over MaxSessions are logged.
	acceptErrs, overCap logLimiter
	// sessions counts the sessions MaxSessions caps.
	sessions atomic.Int64
	// writeAheadSyncs counts the waits for a recording to be durable
	// before bytes went to an upstream (WriteAheadSyncs).
	writeAheadSyncs atomic.Uint64

	// base is the context sessions run under; ended by Shutdown, so that
	// every wait of every session returns.
	base     context.Context
	stopBase context.CancelFunc

	catMu    sync.Mutex
	catalogs map[string]*catalog

	wg        sync.WaitGroup // sessions
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	draining  bool
}

// New validates cfg. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("pgwire: NodeID is required")
	}
	if cfg.State == nil || cfg.Recorder == nil {
		return nil, errors.New("pgwire: State and Recorder are required")
	}
	if cfg.NodeNumber > MaxNodeNumber {
		return nil, fmt.Errorf("pgwire: NodeNumber %d is over %d", cfg.NodeNumber, MaxNodeNumber)
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
	if cfg.MaxSessions < 0 {
		return nil, fmt.Errorf("pgwire: MaxSessions %d is negative", cfg.MaxSessions)
	}
	if cfg.ChangeSnapshotRows == 0 {
		cfg.ChangeSnapshotRows = 100
	}
	if cfg.ChangeSnapshotRows < 0 || cfg.ChangeSnapshotRows > change.MaxBound {
		return nil, fmt.Errorf("pgwire: ChangeSnapshotRows %d is outside 1..%d", cfg.ChangeSnapshotRows, change.MaxBound)
	}
	var changes *change.Cache
	if !cfg.DisableChangeSnapshots {
		changes = change.NewCache(cfg.ChangeSnapshotRows, 0)
	}
	base, stop := context.WithCancel(context.Background())
	return &Server{
		changes:   changes,
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.NodeID),
		classes:   sqlclass.NewCache(0),
		keys:      newCancelKeys(cfg.NodeNumber),
		base:      base,
		stopBase:  stop,
		catalogs:  map[string]*catalog{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}, nil
}

// Serve accepts connections on ln and serves each in its own goroutine,
// until ln fails or the server shuts down; it then closes ln. After
// Shutdown or Close it returns ErrServerClosed. Sessions outlive the Serve
// call that accepted them: Shutdown ends them. Serve may be called for
// several listeners at once.
//
// An accept that fails for want of resources (out of file descriptors,
// buffers or memory: EMFILE, ENFILE, ENOBUFS, ENOMEM) or because the
// client gave up (ECONNABORTED) does not end Serve: it waits, from 5 ms
// doubling to 1 s as net/http does, and accepts again, logging at most a
// few lines a second. Meanwhile the kernel's accept queue holds new
// connections; sessions already open go on.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration // after a temporary accept error
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if !temporaryAcceptError(err) {
				return fmt.Errorf("pgwire: accept: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.acceptErrs.log(s.log, "pgwire: accept failed; retrying", "err", err, "retry_in", delay,
				"sessions", s.sessions.Load())
			select {
			case <-time.After(delay):
			case <-s.base.Done():
			}
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(s.base, c)
		}()
	}
}

// codeTooManyConnections is PostgreSQL's too_many_connections, for a
// connection over Config.MaxSessions.
const codeTooManyConnections = "53300"

// temporaryAcceptError reports whether an accept failed for a reason
// that passes: resources that sessions ending give back, or a client
// that left before it was accepted.
func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// admit takes one of MaxSessions' places, if one is free; leave gives it
// back.
func (s *Server) admit() bool {
	n := s.sessions.Add(1)
	if max := s.cfg.MaxSessions; max > 0 && n > int64(max) {
		s.sessions.Add(-1)
		return false
	}
	return true
}

func (s *Server) leave() { s.sessions.Add(-1) }

// Sessions is how many sessions the server holds (those MaxSessions
// counts).
func (s *Server) Sessions() int { return int(s.sessions.Load()) }

// WriteAheadSyncs is how many times a session waited for its recording to
// be durable before it sent a command to the upstream: the commands of
// write-ahead sessions, less the proven reads of read_ahead grants.
func (s *Server) WriteAheadSyncs() uint64 { return s.writeAheadSyncs.Load() }

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.draining
}

// Shutdown stops every listener, ends every session (each records
// session.end with reason "node shutdown", and its agent is told 57P01)
// and waits until all of them have finished recording, or ctx ends.
// Further Serve calls return ErrServerClosed. It is safe to call more
// than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.stop("node shutdown")
	}
	s.mu.Unlock()
	s.stopBase()
	if err := s.waitSessions(ctx); err != nil {
		return fmt.Errorf("pgwire: shutdown: sessions still ending: %w", err)
	}
	s.catMu.Lock()
	for name, cat := range s.catalogs {
		cat.close()
		delete(s.catalogs, name)
	}
	s.catMu.Unlock()
	return nil
}

// StopAccepting closes every listener (Serve returns ErrServerClosed);
// open sessions go on. Drain starts with it.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
}

// Drain stops every listener (Serve returns ErrServerClosed) and waits
// until every session has ended by itself, or ctx ends (its error is
// returned then). Sessions go on meanwhile; Shutdown ends those left.
func (s *Server) Drain(ctx context.Context) error {
	s.StopAccepting()
	if err := s.waitSessions(ctx); err != nil {
		return fmt.Errorf("pgwire: drain: sessions still open: %w", err)
	}
	return nil
}

// waitSessions returns once every session has ended, or with ctx's error.
func (s *Server) waitSessions(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Recheck re-checks every live session against the current snapshot and
// ends, recorded, those it no longer admits (session.Snapshot.Readmit says
// when). Sessions that go on adopt the new grant at their next command.
// Call it after publishing a new snapshot; it does not wait for the
// sessions it ends.
func (s *Server) Recheck() {
	snap := s.cfg.State.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.admitted.Resource == nil {
			continue // still logging in: it reads the snapshot after this one
		}
		if _, err := snap.Readmit(c.admitted); err != nil {
			c.revoke(err)
		}
	}
}

// register adds a session to those Shutdown and Recheck reach, unless the
// server is shutting down.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// admitted records what c was admitted with, for Recheck.
func (s *Server) admitted(c *conn, a session.Admission) {
	s.mu.Lock()
	c.admitted = a
	s.mu.Unlock()
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// catalogFor is the catalog cache of r's name, retargeted when r is a new
// revision of the resource.
func (s *Server) catalogFor(r *resource.Resource) *catalog {
	s.catMu.Lock()
	defer s.catMu.Unlock()
	cat := s.catalogs[r.Name]
	if cat == nil {
		cat = newCatalog(r, s.cfg.ConnectTimeout, s.cfg.CatalogTTL)
		s.catalogs[r.Name] = cat
	}
	cat.retarget(r)
	return cat
}
