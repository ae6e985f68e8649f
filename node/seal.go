package node

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Sealer protects the credentials a policy document carries (resources'
// upstream passwords): they are stored sealed in the cluster state and
// opened only in the memory of the nodes that use them. The cluster key
// it holds never enters the cluster state. A KMS can implement it.
type Sealer interface {
	// Seal encrypts plaintext bound to where (the credential's place in
	// the document), so that a sealed value moved elsewhere does not open.
	Seal(plaintext []byte, where string) ([]byte, error)
	// Open reverses Seal for the same where.
	Open(sealed []byte, where string) ([]byte, error)
	// Fingerprint is a short keyed digest of plaintext, so that two
	// revisions can be compared (policy diff) without the value, and
	// without letting anyone guess it offline.
	Fingerprint(plaintext []byte) string
}

// aesSealer is AES-256-GCM with a random 96-bit nonce per value, under a
// key derived from the cluster key (HKDF-SHA256); fingerprints are
// HMAC-SHA256 under a second derived key.
type aesSealer struct {
	aead cipher.AEAD
	mac  []byte
}

const sealVersion = 1

// NewAESSealer seals under key (at least 32 bytes).
func NewAESSealer(key []byte) (Sealer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("node: cluster key is %d bytes, want at least 32", len(key))
	}
	enc, err := hkdf.Key(sha256.New, key, nil, "phigate credential sealing v1", 32)
	if err != nil {
		return nil, err
	}
	mac, err := hkdf.Key(sha256.New, key, nil, "phigate credential fingerprint v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &aesSealer{aead: aead, mac: mac}, nil
}

func (s *aesSealer) Seal(plaintext []byte, where string) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return s.aead.Seal(out, out[1:], plaintext, []byte(where)), nil
}

// errSealed is what every failure to open says: which of them it was
// (wrong key, wrong place, truncated, tampered) would help only an attacker.
var errSealed = errors.New("does not open under this cluster's key (sealed by another cluster, moved from another place, or altered); give the credential again")

func (s *aesSealer) Open(sealed []byte, where string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errSealed
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(where))
	if err != nil {
		return nil, errSealed
	}
	return pt, nil
}

func (s *aesSealer) Fingerprint(plaintext []byte) string {
	m := hmac.New(sha256.New, s.mac)
	m.Write(plaintext)
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// ClusterKeySecret is the name of the cluster-wide secret that, unless a
// node configures its own key (keys.cluster_key_file or
// keys.cluster_key_env), seals credentials. The first node creates it;
// joiners receive it with their certificate.
const ClusterKeySecret = "cluster-key"

// PseudonymKeySecret is the name of the cluster-wide pseudonym key: the
// first node's (keys.pseudonym_key_file, or the one Init made), handed to
// every node that joins, so that masked values join across nodes.
const PseudonymKeySecret = "pseudonym-key"

// clusterKey is the key cfg names (file or environment), or nil when it
// names none (the cluster's own secret is used).
func clusterKey(cfg *Config) ([]byte, error) {
	switch {
	case cfg.Keys.ClusterKeyFile != "" && cfg.Keys.ClusterKeyEnv != "":
		return nil, errors.New("node: keys: set cluster_key_file or cluster_key_env, not both")
	case cfg.Keys.ClusterKeyFile != "":
		b, err := os.ReadFile(cfg.Keys.ClusterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("node: keys.cluster_key_file: %w", err)
		}
		return decodeKey(b, "keys.cluster_key_file")
	case cfg.Keys.ClusterKeyEnv != "":
		v, ok := os.LookupEnv(cfg.Keys.ClusterKeyEnv)
		if !ok {
			return nil, fmt.Errorf("node: keys.cluster_key_env: %s is not set", cfg.Keys.ClusterKeyEnv)
		}
		return decodeKey([]byte(v), "keys.cluster_key_env")
	}
	return nil, nil
}

// decodeKey reads a key written as hex (64 digits or more, as `openssl
// rand -hex 32` prints it) or as raw bytes.
func decodeKey(b []byte, what string) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if k, err := hex.DecodeString(s); err == nil && len(k) >= 32 {
		return k, nil
	}
	if len(b) >= 32 {
		return b, nil
	}
	return nil, fmt.Errorf("node: %s: the key must be at least 32 bytes (or 64 hex digits)", what)
}
