package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// The node-to-node API: HTTPS with this node's certificate, TLS 1.3 only.
// A client certificate is asked for but not required at the TLS level, so
// that a joiner (who has none yet) can reach JoinPath; everything else is
// served only to callers whose certificate the cluster CA signed (checked
// by requirePeer, around every handler given to Handle).

// JoinPath is where a member admits joiners.
const JoinPath = "/cluster/v1/join"

func (m *Member) apiTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.pki.nodeCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    m.pki.caPool(),
	}
}

// startAPI listens on APIAddr and serves the node-to-node API in the
// background; a failure to serve is reported on Err.
func (m *Member) startAPI() error {
	ln, err := net.Listen("tcp", m.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("cluster: node-to-node API: %w", err)
	}
	m.apiMux = http.NewServeMux()
	m.apiMux.Handle("POST "+JoinPath, http.HandlerFunc(m.serveJoin))
	m.api = &http.Server{
		Handler:           m.apiMux,
		TLSConfig:         m.apiTLS(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	m.peers = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{m.pki.nodeCert},
				RootCAs:      m.pki.caPool(),
			},
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	go func() {
		if err := m.api.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			m.fail(fmt.Errorf("cluster: node-to-node API: %w", err))
		}
	}()
	return nil
}

// Handle registers h for pattern (as http.ServeMux does) on the
// node-to-node API; it is reached only by callers presenting a
// certificate signed by the cluster CA (other nodes, with PeerClient).
// Call it after Start, before the handler is needed: until then the
// pattern answers 404. Patterns under /cluster/ are the member's own; a
// pattern that conflicts with one registered panics, as with ServeMux.
func (m *Member) Handle(pattern string, h http.Handler) {
	m.apiMux.Handle(pattern, requirePeer(h))
}

// requirePeer serves h only to a caller whose certificate chains to the
// cluster CA (the TLS layer verified any certificate given; here one must
// have been given).
func requirePeer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "a cluster node certificate is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// PeerClient is an HTTP client for other nodes' node-to-node APIs: it
// presents this node's certificate and trusts only the cluster CA (and
// checks that the server's certificate names the address dialled).
func (m *Member) PeerClient() *http.Client { return m.peers }

// PeerCertificate is this node's certificate (leaf, then the cluster CA),
// for clients of the etcd client listener and other mutual-TLS uses.
func (m *Member) PeerCertificate() tls.Certificate { return m.pki.nodeCert }

// EtcdClientTLS is a TLS configuration for clients of this member's etcd
// client listener (https://ClientAddr), which requires a certificate of
// the cluster CA: it presents this node's and trusts only the cluster CA.
func (m *Member) EtcdClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{m.pki.nodeCert},
		RootCAs:      m.pki.caPool(),
	}
}

// ClientURL is the URL of this member's etcd client listener.
func (m *Member) ClientURL() string { return m.cfg.clientURL() }
