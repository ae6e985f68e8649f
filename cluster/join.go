package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A join token is "phgjoin1." followed by the unpadded base64url of the
// cluster CA certificate's SHA-256 (32 bytes) and a random secret (32
// bytes). The joiner trusts only a server whose certificate chains to that
// CA; the member trusts the joiner who knows the secret. The cluster
// keeps only SHA-256(secret), under joinPrefix, on a lease of the token's
// lifetime: it expires on every member at once, by itself. A token admits
// any number of nodes until it expires.
const (
	tokenPrefix     = "phgjoin1."
	joinPrefix      = "/phigate/join/"
	defaultTokenTTL = 30 * time.Minute
)

var (
	// ErrJoinRefused is returned by Start when the cluster refused the
	// join token (unknown, expired or mistyped).
	ErrJoinRefused = errors.New("cluster: the join token was refused (unknown or expired)")
	// ErrNameTaken is returned by Start when another member has the name.
	ErrNameTaken = errors.New("cluster: another member has this name")
	// ErrBadToken is returned by Start when JoinToken is not a join token.
	ErrBadToken = errors.New("cluster: malformed join token")
)

// JoinToken creates a token that lets a node join the cluster for ttl
// (30 minutes when ttl <= 0). The token is a credential: hand it to the
// joining node only.
func (m *Member) JoinToken(ctx context.Context, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = defaultTokenTTL
	}
	secret, err := randomBytes(secretLen)
	if err != nil {
		return "", err
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	lease, err := m.client.Grant(ctx, secs)
	if err != nil {
		return "", fmt.Errorf("cluster: join token: %w", err)
	}
	sum := sha256.Sum256(secret)
	rec, _ := json.Marshal(joinRecord{Hash: sum[:], By: m.cfg.Name, Expires: time.Now().Add(ttl)})
	if _, err := m.client.Put(ctx, joinPrefix+hex.EncodeToString(sum[:]), string(rec), clientv3.WithLease(lease.ID)); err != nil {
		return "", fmt.Errorf("cluster: join token: %w", err)
	}
	fp := m.pki.caFingerprint()
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(slices.Concat(fp[:], secret)), nil
}

// joinRecord is what the cluster keeps of a token.
type joinRecord struct {
	Hash    []byte    `json:"sha256"`
	By      string    `json:"by"`
	Expires time.Time `json:"expires"`
}

func parseToken(tok string) (caSum, secret []byte, err error) {
	body, ok := strings.CutPrefix(strings.TrimSpace(tok), tokenPrefix)
	if !ok {
		return nil, nil, ErrBadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) != 32+secretLen {
		return nil, nil, ErrBadToken
	}
	return raw[:32], raw[32:], nil
}

// joinRequest is what a joiner posts to JoinPath.
type joinRequest struct {
	Name       string `json:"name"`
	CSR        []byte `json:"csr"` // DER
	PeerURL    string `json:"peer_url"`
	ClientURL  string `json:"client_url"`
	APIAddr    string `json:"api_addr"`
	GossipAddr string `json:"gossip_addr"`
	Secret     []byte `json:"secret"`
}

// joinAnswer is what an admitted joiner gets back.
type joinAnswer struct {
	CACert         []byte            `json:"ca_cert"` // PEM
	CAKey          []byte            `json:"ca_key"`  // PEM; every member can admit joiners
	NodeCert       []byte            `json:"node_cert"`
	Secrets        map[string][]byte `json:"secrets"`
	InitialCluster string            `json:"initial_cluster"`
	GossipSeeds    []string          `json:"gossip_seeds"`
}

// nodeRecord is a node in the registry (nodesPrefix + name): how to
// reach it. It is written when the node is admitted and at each start.
type nodeRecord struct {
	Name       string `json:"name"`
	PeerURL    string `json:"peer_url"`
	ClientURL  string `json:"client_url,omitempty"`
	APIAddr    string `json:"api_addr"`
	GossipAddr string `json:"gossip_addr"`
}

const nodesPrefix = "/phigate/nodes/"

// nodes reads the registry (a serializable read: it answers without
// quorum).
func (m *Member) nodes(ctx context.Context) (map[string]nodeRecord, error) {
	var resp *clientv3.GetResponse
	err := m.whileUp(func() (err error) {
		resp, err = m.client.Get(ctx, nodesPrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
		return err
	})
	if err != nil {
		return nil, err
	}
	out := map[string]nodeRecord{}
	for _, kv := range resp.Kvs {
		var n nodeRecord
		if json.Unmarshal(kv.Value, &n) == nil && n.Name != "" {
			out[n.Name] = n
		}
	}
	return out, nil
}

func (m *Member) self() nodeRecord {
	return nodeRecord{Name: m.cfg.Name, PeerURL: m.cfg.peerURL(), ClientURL: m.cfg.clientURL(), APIAddr: m.cfg.APIAddr, GossipAddr: m.cfg.GossipAddr}
}

// register records this node's addresses in the registry, if they
// changed. A learner or a member without quorum may fail to: it logs
// and goes on, the registry being a help for gossip seeds only.
func (m *Member) register(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	me := m.self()
	if nodes, err := m.nodes(ctx); err == nil && nodes[me.Name] == me {
		return
	}
	b, _ := json.Marshal(me)
	if _, err := m.client.Put(ctx, nodesPrefix+me.Name, string(b)); err != nil {
		m.log.Warn("cluster: could not record this node's addresses", "err", err)
	}
}

// serveJoin admits a joiner who knows a live token's secret: it adds it
// as an etcd learner, signs its certificate and tells it the cluster.
func (m *Member) serveJoin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	refuse := func(code int, reason string, attrs ...any) {
		attrs = append([]any{"remote", r.RemoteAddr, "reason", reason}, attrs...)
		if code == http.StatusServiceUnavailable {
			// Not now (no quorum, or a voter added too recently): the
			// joiner asks again.
			m.log.Info("cluster: join deferred", attrs...)
		} else {
			m.log.Warn("cluster: join refused", attrs...)
		}
		http.Error(w, reason, code)
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		refuse(http.StatusBadRequest, "malformed join request")
		return
	}
	if len(req.Secret) != secretLen {
		refuse(http.StatusForbidden, "malformed join token")
		return
	}
	sum := sha256.Sum256(req.Secret)
	resp, err := m.client.Get(ctx, joinPrefix+hex.EncodeToString(sum[:]))
	if err != nil {
		refuse(http.StatusServiceUnavailable, "cannot check the token: "+err.Error())
		return
	}
	var rec joinRecord
	if len(resp.Kvs) != 1 || json.Unmarshal(resp.Kvs[0].Value, &rec) != nil ||
		subtle.ConstantTimeCompare(rec.Hash, sum[:]) != 1 || time.Now().After(rec.Expires) {
		refuse(http.StatusForbidden, "unknown or expired join token")
		return
	}
	log := m.log.With("remote", r.RemoteAddr, "joiner", req.Name)
	if !validName(req.Name) {
		refuse(http.StatusBadRequest, "invalid node name", "joiner", req.Name)
		return
	}
	peer, err := url.Parse(req.PeerURL)
	if err != nil || peer.Scheme != "https" || peer.Host == "" || peer.Path != "" {
		refuse(http.StatusBadRequest, "invalid peer URL", "joiner", req.Name)
		return
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil {
		refuse(http.StatusBadRequest, "invalid certificate request", "joiner", req.Name)
		return
	}

	nodes, err := m.nodes(ctx)
	if err != nil {
		refuse(http.StatusServiceUnavailable, "cannot read the node registry: "+err.Error())
		return
	}
	members, err := m.client.MemberList(ctx)
	if err != nil {
		refuse(http.StatusServiceUnavailable, "cannot list members: "+err.Error())
		return
	}
	// A name is taken when a member or the registry has it with another
	// peer URL; the same name and peer URL is a retry of a join that got
	// as far as adding the learner.
	retry := false
	if n, ok := nodes[req.Name]; ok && n.PeerURL != req.PeerURL {
		refuse(http.StatusConflict, "the name is taken by another member", "joiner", req.Name)
		return
	}
	for _, mem := range members.Members {
		has := slices.Contains(mem.PeerURLs, req.PeerURL)
		switch {
		case mem.Name == req.Name && !has:
			refuse(http.StatusConflict, "the name is taken by another member", "joiner", req.Name)
			return
		case has && mem.Name != "" && mem.Name != req.Name:
			refuse(http.StatusConflict, "the peer URL is another member's", "joiner", req.Name)
			return
		case has:
			retry = true
		}
	}
	rec2 := nodeRecord{Name: req.Name, PeerURL: req.PeerURL, ClientURL: req.ClientURL, APIAddr: req.APIAddr, GossipAddr: req.GossipAddr}
	b, _ := json.Marshal(rec2)
	if _, err := m.client.Put(ctx, nodesPrefix+req.Name, string(b)); err != nil {
		refuse(http.StatusServiceUnavailable, "cannot record the node: "+err.Error())
		return
	}
	nodes[req.Name] = rec2
	if !retry {
		added, err := m.client.MemberAddAsLearner(ctx, []string{req.PeerURL})
		if err != nil {
			refuse(http.StatusServiceUnavailable, "cannot add the member: "+err.Error(), "joiner", req.Name)
			return
		}
		members.Members = added.Members
		log.Info("cluster: admitted a node as a learner", "member_id", fmt.Sprintf("%x", added.Member.ID))
	}
	peerURLName := map[string]string{}
	for _, n := range nodes {
		peerURLName[n.PeerURL] = n.Name
	}
	var initial []string
	for _, mem := range members.Members {
		for _, u := range mem.PeerURLs {
			name := mem.Name
			if name == "" {
				// Admitted but not started yet.
				if name = peerURLName[u]; name == "" {
					name = fmt.Sprintf("unstarted-%x", mem.ID)
				}
			}
			initial = append(initial, name+"="+u)
		}
	}
	slices.Sort(initial)
	var seeds []string
	for _, n := range nodes {
		if n.Name != req.Name && n.GossipAddr != "" {
			seeds = append(seeds, n.GossipAddr)
		}
	}
	slices.Sort(seeds)

	certPEM, err := signNode(m.pki.caCert, m.pki.caKey, req.Name, csr.PublicKey, peer.Host, hostOfURL(req.ClientURL), req.APIAddr, req.GossipAddr)
	if err != nil {
		refuse(http.StatusInternalServerError, "cannot sign the certificate: "+err.Error(), "joiner", req.Name)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(joinAnswer{
		CACert: m.pki.caPEM, CAKey: m.pki.caKeyPEM, NodeCert: certPEM, Secrets: m.pki.secrets,
		InitialCluster: strings.Join(initial, ","), GossipSeeds: seeds,
	})
}

func hostOfURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Host
}

// join asks the members in cfg.Join, in turn, to admit this node, and
// returns what it needs to start (not yet saved).
func join(ctx context.Context, cfg *Config, log *slog.Logger) (*pki, error) {
	caSum, secret, err := parseToken(cfg.JoinToken)
	if err != nil {
		return nil, err
	}
	key, keyPEM, err := newNodeKey()
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(joinRequest{
		Name: cfg.Name, CSR: csr, PeerURL: cfg.peerURL(), ClientURL: cfg.clientURL(),
		APIAddr: cfg.APIAddr, GossipAddr: cfg.GossipAddr, Secret: secret,
	})
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS13,
			// The chain is checked against the CA the token pins, in
			// verifyPinned, and nothing else is trusted.
			InsecureSkipVerify:    true,
			VerifyPeerCertificate: verifyPinned(caSum),
		},
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	defer client.CloseIdleConnections()

	// A member refuses to add one more while it has not been connected
	// to its voters for a few seconds (after a promotion, say), or while
	// it has no quorum: that is worth waiting for, until ctx ends; a
	// refused token, a taken name or another cluster's CA is not.
	var last error
	for {
		for _, addr := range cfg.Join {
			ans, err := askToJoin(ctx, client, addr, body)
			if err == nil {
				p, err := assemblePKI(ans.CACert, ans.CAKey, ans.NodeCert, keyPEM, ans.Secrets,
					startState{InitialCluster: ans.InitialCluster, GossipSeeds: ans.GossipSeeds})
				if err != nil {
					return nil, fmt.Errorf("cluster: join via %s: the answer: %w", addr, err)
				}
				if got := p.caFingerprint(); !bytes.Equal(got[:], caSum) {
					return nil, fmt.Errorf("cluster: join via %s: the answer names another CA than the token", addr)
				}
				return p, nil
			}
			if errors.Is(err, ErrJoinRefused) || errors.Is(err, ErrNameTaken) || errors.Is(err, ErrWrongCluster) {
				return nil, err
			}
			log.Debug("cluster: join attempt failed", "via", addr, "err", err)
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: join: no member admitted this node in time; last: %w", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func askToJoin(ctx context.Context, client *http.Client, addr string, body []byte) (*joinAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+JoinPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cluster: join via %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("cluster: join via %s: %w", addr, err)
	}
	reason := strings.TrimSpace(string(b))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusForbidden:
		return nil, fmt.Errorf("%w (%s said: %s)", ErrJoinRefused, addr, reason)
	case http.StatusConflict:
		return nil, fmt.Errorf("%w (%s said: %s)", ErrNameTaken, addr, reason)
	default:
		return nil, fmt.Errorf("cluster: join via %s: %s: %s", addr, resp.Status, reason)
	}
	var ans joinAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("cluster: join via %s: the answer: %w", addr, err)
	}
	return &ans, nil
}

// ErrWrongCluster is returned by Start when the member asked to admit
// this node is not of the cluster the join token names: its certificate
// does not chain to the token's CA.
var ErrWrongCluster = errors.New("cluster: the server's certificate is not signed by the CA the join token names")

// verifyPinned accepts a server whose chain leads to the certificate
// (among those it presented) whose SHA-256 is caSum.
func verifyPinned(caSum []byte) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		var ca *x509.Certificate
		var certs []*x509.Certificate
		for _, der := range raw {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return err
			}
			certs = append(certs, c)
			if s := sha256.Sum256(der); bytes.Equal(s[:], caSum) {
				ca = c
			}
		}
		if ca == nil || len(certs) == 0 || !ca.IsCA {
			return ErrWrongCluster
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("%w: %v", ErrWrongCluster, err)
		}
		return nil
	}
}
