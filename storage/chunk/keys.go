package chunk

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// SignatureSize is the size of an Ed25519 signature.
const SignatureSize = ed25519.SignatureSize

// KeyID names a node signing key in manifests and digests: the hex of the
// first 16 bytes of the SHA-256 of the 32-byte public key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:16])
}

// Signer is a node's signing key. The private key stays on the node.
type Signer struct {
	ID  string // KeyID of the public key
	Key ed25519.PrivateKey
}

// NewSigner returns the Signer of a private key.
func NewSigner(k ed25519.PrivateKey) Signer {
	return Signer{ID: KeyID(k.Public().(ed25519.PublicKey)), Key: k}
}

// PublicKey is a published node key and the period it signs for.
type PublicKey struct {
	Node      string // the node the key belongs to
	Key       ed25519.PublicKey
	NotBefore time.Time // zero: no lower bound
	NotAfter  time.Time // zero: no upper bound (still current)
}

// Keys is the verifier's view of the published keys: key id -> key, with
// history, so that old recordings verify after a rotation.
type Keys map[string]PublicKey

var (
	errUnknownKey = errors.New("unknown key")
	errKeyPeriod  = errors.New("key not valid at that time")
	errSignature  = errors.New("bad signature")
)

// verify checks sig over msg by key id, signed by node at time at.
func (k Keys) verify(id, node string, at time.Time, msg, sig []byte) error {
	pk, ok := k[id]
	if !ok || len(pk.Key) != ed25519.PublicKeySize || KeyID(pk.Key) != id {
		return errUnknownKey
	}
	if pk.Node != "" && pk.Node != node {
		return fmt.Errorf("%w: key of node %q used by %q", errUnknownKey, pk.Node, node)
	}
	if (!pk.NotBefore.IsZero() && at.Before(pk.NotBefore)) || (!pk.NotAfter.IsZero() && !at.Before(pk.NotAfter)) {
		return errKeyPeriod
	}
	if !ed25519.Verify(pk.Key, msg, sig) {
		return errSignature
	}
	return nil
}
