package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The files under Dir/pki. All are written 0600 in a 0700 directory, and
// the directory appears whole (written aside, then renamed), so a start
// that finds it knows the node was bootstrapped or admitted.
const (
	pkiDir       = "pki"
	caCertFile   = "ca.crt"
	caKeyFile    = "ca.key"
	nodeCertFile = "node.crt"
	nodeKeyFile  = "node.key"
	secretsFile  = "secrets.json"
	// stateFile holds how etcd is to be started the first time (the
	// initial cluster and whether it is new) and the gossip seeds learned
	// when the node was admitted.
	stateFile = "cluster.json"
)

// GossipSecret names the cluster-wide secret that keys gossip encryption.
// It is created at bootstrap like any other secret, and Secret returns it.
const GossipSecret = "gossip"

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	nodeValidity = 365 * 24 * time.Hour
	secretLen    = 32
)

// pki is what makes a node a member of its cluster: the cluster CA (its
// key too, so that any member can admit a joiner), this node's
// certificate, and the named cluster-wide secrets.
type pki struct {
	caCert   *x509.Certificate
	caPEM    []byte
	caKeyPEM []byte
	caKey    *ecdsa.PrivateKey
	nodeCert tls.Certificate // leaf then CA, so peers can build the chain
	nodePEM  []byte
	nodeKey  []byte // PEM
	secrets  map[string][]byte
	state    startState
}

// startState is how the node's etcd member starts when it has no data
// yet, and where gossip looks for the others.
type startState struct {
	InitialCluster string   `json:"initial_cluster"`
	New            bool     `json:"new"`
	GossipSeeds    []string `json:"gossip_seeds,omitempty"`
}

// caFingerprint is the SHA-256 of the CA certificate's DER, the value a
// join token pins.
func (p *pki) caFingerprint() [32]byte { return sha256.Sum256(p.caCert.Raw) }

func (p *pki) caPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return pool
}

// nodeSANs are the names a node's certificate is valid for: the hosts of
// its addresses, and the loopback names.
func nodeSANs(addrs ...string) (ips []net.IP, dns []string) {
	hosts := []string{"127.0.0.1", "localhost"}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			h = a
		}
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if h != "" && !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	return ips, dns
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newCA creates the cluster CA: ECDSA P-256, valid ten years.
func newCA(clusterName string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "phigate cluster CA " + clusterName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// signNode issues a node certificate (server and client use) for name,
// valid about a year, naming the hosts of addrs.
func signNode(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, pub any, addrs ...string) ([]byte, error) {
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	ips, dns := nodeSANs(addrs...)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func newNodeKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// bootstrapPKI creates everything the first node of a cluster needs.
func bootstrapPKI(cfg *Config) (*pki, error) {
	ca, caKey, err := newCA(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("create the cluster CA: %w", err)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	key, keyPEM, err := newNodeKey()
	if err != nil {
		return nil, err
	}
	certPEM, err := signNode(ca, caKey, cfg.Name, &key.PublicKey, cfg.PeerAddr, cfg.ClientAddr, cfg.APIAddr, cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("sign the node certificate: %w", err)
	}
	secrets := map[string][]byte{}
	for name, v := range cfg.Secrets {
		if v == nil {
			if v, err = randomBytes(secretLen); err != nil {
				return nil, err
			}
		}
		secrets[name] = slices.Clone(v)
	}
	if g, ok := secrets[GossipSecret]; !ok {
		if secrets[GossipSecret], err = randomBytes(secretLen); err != nil {
			return nil, err
		}
	} else if len(g) != 16 && len(g) != 24 && len(g) != 32 {
		return nil, fmt.Errorf("secret %q (the gossip key) must be 16, 24 or 32 bytes, not %d", GossipSecret, len(g))
	}
	return assemblePKI(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
		certPEM, keyPEM, secrets,
		startState{InitialCluster: cfg.Name + "=" + cfg.peerURL(), New: true},
	)
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// assemblePKI parses and checks the parts: the node certificate must be
// signed by the CA and match its key.
func assemblePKI(caPEM, caKeyPEM, certPEM, keyPEM []byte, secrets map[string][]byte, st startState) (*pki, error) {
	p := &pki{caPEM: caPEM, caKeyPEM: caKeyPEM, nodePEM: certPEM, nodeKey: keyPEM, secrets: secrets, state: st}
	b, _ := pem.Decode(caPEM)
	if b == nil {
		return nil, errors.New("CA certificate: no PEM block")
	}
	var err error
	if p.caCert, err = x509.ParseCertificate(b.Bytes); err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if b, _ = pem.Decode(caKeyPEM); b == nil {
		return nil, errors.New("CA key: no PEM block")
	}
	if p.caKey, err = x509.ParseECPrivateKey(b.Bytes); err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if p.nodeCert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	leaf := p.nodeCert.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.caPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("node certificate is not the cluster CA's: %w", err)
	}
	p.nodeCert.Certificate = append(p.nodeCert.Certificate, p.caCert.Raw)
	if len(secrets[GossipSecret]) == 0 {
		return nil, fmt.Errorf("no %q secret", GossipSecret)
	}
	return p, nil
}

func pkiPath(dir string) string { return filepath.Join(dir, pkiDir) }

// loadPKI reads Dir/pki; it returns (nil, nil) when there is none.
func loadPKI(dir string) (*pki, error) {
	d := pkiPath(dir)
	if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(d, name)) }
	var parts [4][]byte
	for i, name := range []string{caCertFile, caKeyFile, nodeCertFile, nodeKeyFile} {
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		parts[i] = b
	}
	var secrets map[string][]byte
	var st startState
	for name, v := range map[string]any{secretsFile: &secrets, stateFile: &st} {
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return assemblePKI(parts[0], parts[1], parts[2], parts[3], secrets, st)
}

// save writes the PKI to Dir/pki all at once: into a fresh directory
// beside it, renamed into place last.
func (p *pki) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".pki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	secrets, err := json.Marshal(p.secrets)
	if err != nil {
		return err
	}
	st, err := json.Marshal(p.state)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{
		caCertFile: p.caPEM, caKeyFile: p.caKeyPEM, nodeCertFile: p.nodePEM, nodeKeyFile: p.nodeKey,
		secretsFile: secrets, stateFile: st,
	} {
		if err := writeFileSync(filepath.Join(tmp, name), b); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	if err := os.Rename(tmp, pkiPath(dir)); err != nil {
		return err
	}
	return syncDir(dir)
}

func writeFileSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
