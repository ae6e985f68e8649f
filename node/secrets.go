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
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/proof"
)

// Init prepares cfg's data directory for a node's first start: the
// directory itself, and what cfg leaves to it: a development TLS
// certificate, a pseudonym key, and a development auditor key pair. It keeps
// whatever exists, so it is safe to run before every start (`phigate node`
// does). New only reads what Init made.
func Init(cfg *Config, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	dir := DataDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	if cfg.TLS.CertFile == "" && cfg.TLS.KeyFile == "" {
		certFile, keyFile := devCertFiles(dir)
		if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
			if err := writeDevCert(certFile, keyFile, nodeID(cfg)); err != nil {
				return fmt.Errorf("node: create development certificate: %w", err)
			}
			logger.Warn("no TLS certificate configured: created a self-signed development certificate", "cert", certFile)
		}
	}
	// A joining node gets the cluster's pseudonym key and policy (with
	// the auditors' key): it needs neither of its own.
	if cfg.Keys.PseudonymKeyFile == "" && !joins(cfg) {
		path := filepath.Join(dir, "keys", "pseudonym.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			if err := writeSecretFile(path, key); err != nil {
				return fmt.Errorf("node: create pseudonym key: %w", err)
			}
			logger.Info("created a pseudonym key: if this node creates the cluster, every node that joins receives it", "path", path)
		}
	}
	if cfg.Keys.AuditorPublicKeyFile == "" && !joins(cfg) {
		path := filepath.Join(dir, "keys", "auditor.pub")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			priv, err := proof.GenerateAuditorKey()
			if err != nil {
				return err
			}
			if err := writeSecretFile(filepath.Join(dir, "keys", "auditor.key"), proof.MarshalPrivate(priv)); err != nil {
				return fmt.Errorf("node: create auditor key: %w", err)
			}
			if err := writeSecretFile(path, proof.MarshalPublic(priv.PublicKey())); err != nil {
				return fmt.Errorf("node: create auditor key: %w", err)
			}
			logger.Warn("created a development auditor key pair: give auditor.key to your auditors and delete it from the node",
				"public", path)
		}
	}
	return nil
}

// madeByInit explains a file of the data directory that Init makes but
// that is missing.
func madeByInit(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist: prepare the data directory first (node.Init; `phigate node` does it)", path)
	}
	return nil
}

func devCertFiles(dataDir string) (cert, key string) {
	return filepath.Join(dataDir, "tls", "dev-cert.pem"), filepath.Join(dataDir, "tls", "dev-key.pem")
}

// loadKeys reads the pseudonym key: the configured file, else the one
// Init made in the data directory for a node that may bootstrap a
// cluster (the cluster's first pseudonym key). Nil for a node that
// joins: the cluster gives it its key.
func loadKeys(cfg *Config) (mask.Keys, error) {
	path := cfg.Keys.PseudonymKeyFile
	if path == "" {
		path = filepath.Join(DataDir(cfg), "keys", "pseudonym.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && joins(cfg) {
			return mask.Keys{}, nil
		}
		if err := madeByInit(path); err != nil {
			return mask.Keys{}, fmt.Errorf("node: pseudonym key: %w", err)
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

// joins reports whether cfg's node joins a cluster rather than bootstrap
// one: it has join addresses (a restarted member never bootstraps either).
func joins(cfg *Config) bool { return len(cfg.Cluster.Join) > 0 }

// loadAuditorKey reads the auditors' public key (Init creates a
// development pair when none is configured); "none" turns the proof off.
func loadAuditorKey(cfg *Config) (*ecdh.PublicKey, error) {
	path := cfg.Keys.AuditorPublicKeyFile
	switch path {
	case "none":
		return nil, nil
	case "":
		path = filepath.Join(DataDir(cfg), "keys", "auditor.pub")
		if err := madeByInit(path); err != nil {
			return nil, fmt.Errorf("node: auditor public key: %w", err)
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

// loadTLS loads the configured certificate, or the development one Init
// made in the data directory.
func loadTLS(cfg *Config) (*tls.Config, error) {
	certFile, keyFile := cfg.TLS.CertFile, cfg.TLS.KeyFile
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("node: tls: set both cert_file and key_file, or neither")
	}
	if certFile == "" {
		certFile, keyFile = devCertFiles(DataDir(cfg))
		if err := madeByInit(certFile); err != nil {
			return nil, fmt.Errorf("node: tls: %w", err)
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
