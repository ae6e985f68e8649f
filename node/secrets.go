package node

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/proof"
)

// loadKeys reads the pseudonym key, creating a random one in the data
// directory on first start when none is configured.
func (n *Node) loadKeys() (mask.Keys, error) {
	path := n.cfg.Keys.PseudonymKeyFile
	if path == "" {
		path = filepath.Join(n.dataDir, "keys", "pseudonym.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return mask.Keys{}, err
			}
			if err := writeSecretFile(path, key); err != nil {
				return mask.Keys{}, fmt.Errorf("node: create pseudonym key: %w", err)
			}
			n.log.Info("created a pseudonym key; copy it to every node of this deployment", "path", path)
		}
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return mask.Keys{}, fmt.Errorf("node: pseudonym key: %w", err)
	}
	if len(key) < mask.MinKeyLen {
		return mask.Keys{}, fmt.Errorf("node: pseudonym key %s is %d bytes, want at least %d", path, len(key), mask.MinKeyLen)
	}
	return mask.Keys{Pseudonym: key}, nil
}

// loadAuditorKey reads the auditors' public key, creating a development
// key pair in the data directory on first start when none is configured.
func (n *Node) loadAuditorKey() (*ecdh.PublicKey, error) {
	path := n.cfg.Keys.AuditorPublicKeyFile
	switch path {
	case "none":
		n.log.Warn("masking proof is off (keys.auditor_public_key_file: none)")
		return nil, nil
	case "":
		path = filepath.Join(n.dataDir, "keys", "auditor.pub")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			priv, err := proof.GenerateAuditorKey()
			if err != nil {
				return nil, err
			}
			if err := writeSecretFile(filepath.Join(n.dataDir, "keys", "auditor.key"), proof.MarshalPrivate(priv)); err != nil {
				return nil, fmt.Errorf("node: create auditor key: %w", err)
			}
			if err := writeSecretFile(path, proof.MarshalPublic(priv.PublicKey())); err != nil {
				return nil, fmt.Errorf("node: create auditor key: %w", err)
			}
			n.log.Warn("created a development auditor key pair: give auditor.key to your auditors and delete it from the node",
				"public", path)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: auditor public key: %w", err)
	}
	pub, err := proof.ParsePublic(b)
	if err != nil {
		return nil, fmt.Errorf("node: auditor public key %s: %w", path, err)
	}
	return pub, nil
}

// loadTLS loads the configured certificate, or a development certificate
// kept in the data directory (created on first start).
func (n *Node) loadTLS() (*tls.Config, error) {
	certFile, keyFile := n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("node: tls: set both cert_file and key_file, or neither")
	}
	if certFile == "" {
		certFile = filepath.Join(n.dataDir, "tls", "dev-cert.pem")
		keyFile = filepath.Join(n.dataDir, "tls", "dev-key.pem")
		if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
			if err := writeDevCert(certFile, keyFile, n.id); err != nil {
				return nil, fmt.Errorf("node: create development certificate: %w", err)
			}
			n.log.Warn("no TLS certificate configured: created a self-signed development certificate", "cert", certFile)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("node: tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func writeDevCert(certFile, keyFile, host string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "phigate development certificate", Organization: []string{"phigate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost", host},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeSecretFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeSecretFile creates path (and its directory) readable by the owner only.
func writeSecretFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
