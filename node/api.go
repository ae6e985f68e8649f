package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The node's HTTPS API (listen.api): /healthz, /readyz and /metrics. It
// presents the agents' certificate, read from the current state snapshot
// at each handshake, so a reloaded certificate applies at once. Responses
// carry no PHI, token or credential: health is a fixed word, readiness a
// fixed reason, metrics counts with labels from fixed sets.

// apiShutdownTimeout bounds how long Close waits for API requests in flight.
const apiShutdownTimeout = 5 * time.Second

// startAPI listens on listen.api and serves the API in the background; it
// does nothing when listen.api is empty.
func (n *Node) startAPI() error {
	addr := n.cfg.Listen.API
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: listen api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := n.notReady(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/keys", n.keysHandler)
	n.adminRoutes(mux)
	n.approvalRoutes(mux)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: n.apiCertificate},
		// Failed handshakes (probes, scanners) are not the operator's news.
		ErrorLog: slog.NewLogLogger(n.log.With("listener", "api").Handler(), slog.LevelDebug),
	}
	n.mu.Lock()
	n.api, n.apiAddr = srv, ln.Addr()
	n.mu.Unlock()
	n.bgDone.Add(1)
	go func() {
		defer n.bgDone.Done()
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api listener failed", "err", err)
			n.fail(fmt.Errorf("node: api listener: %w", err))
		}
	}()
	return nil
}

// apiCertificate is the certificate of the current state snapshot.
func (n *Node) apiCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cfg := n.state.Load().TLS
	switch {
	case cfg == nil:
		return nil, errors.New("node: no TLS certificate in the state")
	case cfg.GetCertificate != nil:
		return cfg.GetCertificate(hello)
	case len(cfg.Certificates) == 0:
		return nil, errors.New("node: no TLS certificate in the state")
	}
	return &cfg.Certificates[0], nil
}

// notReady says in one line why the node should get no traffic, or ""
// when it should: it is started and not closing, no background failure
// (the spool or a listener) was reported, and a state snapshot is loaded.
func (n *Node) notReady() string {
	n.mu.Lock()
	started, closed, failed := n.started, n.closed, n.failed
	n.mu.Unlock()
	n.mu.Lock()
	draining := n.draining
	n.mu.Unlock()
	switch {
	case closed:
		return "shutting down"
	case draining:
		return "draining: not accepting new sessions"
	case !started:
		return "not started"
	case failed:
		return "a background failure was reported (the recording spool or a listener); see the node's log"
	case n.state.Load() == nil:
		return "no state snapshot loaded"
	case n.state.Load().Unavailable != "":
		return "refusing everything: " + n.state.Load().Unavailable
	case n.PolicyRevision() == 0:
		return "no policy revision from the cluster yet"
	case !n.quorumOK.Load():
		return "no contact with the cluster's quorum (serving on the last policy until the lease ends)"
	case n.shipper != nil && n.shipper.Admit() != nil:
		return "refusing new sessions: the recordings waiting for the store reached store.backlog_bytes"
	}
	select {
	case <-n.ready:
		return ""
	default:
		return "starting"
	}
}

// stopAPI shuts the API down, waiting a bounded time for requests in flight.
func (n *Node) stopAPI() error {
	n.mu.Lock()
	srv := n.api
	n.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("node: api: %w", err)
	}
	return nil
}

// APIAddr is the bound API listener address, valid after Ready; nil when
// listen.api is empty.
func (n *Node) APIAddr() net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.apiAddr
}
