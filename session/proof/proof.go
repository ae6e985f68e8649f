// Package proof keeps the masking proof of a session: for every value phigate
// masked, which rule did it and the raw value, sealed so that only an auditor
// can read it.
//
// Each session gets a random data key. Raw values are sealed under it
// (mask.Sealer: AES-256-GCM); the data key itself is sealed with HPKE (RFC
// 9180, X25519, HKDF-SHA256, AES-256-GCM) to the auditors' public key and
// recorded once per session (a mask.key event). Nodes hold only the public
// key: a compromised node cannot unseal what it recorded. `phigate unseal`
// holds the private key, and records that it was used before it shows
// anything.
//
// The package never logs; raw values and data keys are PHI and secrets.
package proof

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/record"
)

const (
	privatePEM = "PHIGATE AUDITOR PRIVATE KEY"
	publicPEM  = "PHIGATE AUDITOR PUBLIC KEY"
	infoPrefix = "phigate/proof/v1\x00"
)

// GenerateAuditorKey makes a new X25519 auditor key pair.
func GenerateAuditorKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// MarshalPrivate encodes an auditor private key as PEM.
func MarshalPrivate(k *ecdh.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: privatePEM, Bytes: k.Bytes()})
}

// MarshalPublic encodes an auditor public key as PEM.
func MarshalPublic(k *ecdh.PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: publicPEM, Bytes: k.Bytes()})
}

// ParsePrivate decodes MarshalPrivate's output.
func ParsePrivate(b []byte) (*ecdh.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != privatePEM {
		return nil, fmt.Errorf("proof: not a %s PEM block", privatePEM)
	}
	return ecdh.X25519().NewPrivateKey(blk.Bytes)
}

// ParsePublic decodes MarshalPublic's output.
func ParsePublic(b []byte) (*ecdh.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != publicPEM {
		return nil, fmt.Errorf("proof: not a %s PEM block", publicPEM)
	}
	return ecdh.X25519().NewPublicKey(blk.Bytes)
}

// Fingerprint names a public key in recordings: the first 16 bytes of its
// SHA-256, in hex.
func Fingerprint(k *ecdh.PublicKey) string {
	sum := sha256.Sum256(k.Bytes())
	return hex.EncodeToString(sum[:16])
}

func suite(sessionID string) (hpke.KDF, hpke.AEAD, []byte) {
	return hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(infoPrefix + sessionID)
}

// WrapDataKey seals a session's data key to the auditor public key. The
// session id is bound in, so a wrapped key cannot be moved to another
// session's recording.
func WrapDataKey(auditor *ecdh.PublicKey, dataKey []byte, sessionID string) ([]byte, error) {
	pk, err := hpke.NewDHKEMPublicKey(auditor)
	if err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	kdf, aead, info := suite(sessionID)
	return hpke.Seal(pk, kdf, aead, info, dataKey)
}

// ErrWrongKey is returned when a wrapped data key does not open with the
// given private key (another auditor key, another session, or tampering).
var ErrWrongKey = errors.New("proof: data key does not open with this auditor key")

// UnwrapDataKey opens WrapDataKey's output.
func UnwrapDataKey(auditor *ecdh.PrivateKey, wrapped []byte, sessionID string) ([]byte, error) {
	k, err := hpke.NewDHKEMPrivateKey(auditor)
	if err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	kdf, aead, info := suite(sessionID)
	key, err := hpke.Open(k, kdf, aead, info, wrapped)
	if err != nil {
		return nil, ErrWrongKey
	}
	return key, nil
}

// batchSize bounds how many proofs one mask.proof event carries.
const batchSize = 256

// Collector turns mask.Proofs into recorded mask.proof events for one
// session. It is used by one goroutine (the proxy's result path). The first
// proof creates the session's data key and emits its mask.key event.
type Collector struct {
	session string
	auditor *ecdh.PublicKey
	emit    func(*record.Event) error

	sealer  *mask.Sealer
	pending record.MaskProof
	err     error

	// Position of the value being masked, set by the proxy.
	Statement int
	Row       int64
}

// NewCollector collects proofs for sessionID; emit appends an event to the
// session's recording.
func NewCollector(sessionID string, auditor *ecdh.PublicKey, emit func(*record.Event) error) *Collector {
	return &Collector{session: sessionID, auditor: auditor, emit: emit}
}

// Add records one proof of command cmd. Errors are sticky and returned by
// Flush, so that the proxy can fail the session rather than serve unproven.
func (c *Collector) Add(cmd uint64, p *mask.Proof) {
	if c.err != nil {
		return
	}
	if c.sealer == nil {
		if c.err = c.start(); c.err != nil {
			return
		}
	}
	if len(c.pending.Values) > 0 && c.pending.Command != cmd || len(c.pending.Values) >= batchSize {
		if c.err = c.Flush(); c.err != nil {
			return
		}
	}
	c.pending.Command = cmd
	r := c.sealer.Record(p)
	c.pending.Values = append(c.pending.Values, record.ProofValue{
		Statement: c.Statement, Row: c.Row, Column: r.Column, Rule: r.Rule, Action: r.Action,
		Type: r.Type, Detector: r.Detector, Start: r.Start, End: r.End, RawHMAC: r.RawHash, Sealed: r.Sealed,
	})
}

func (c *Collector) start() error {
	dataKey, err := mask.NewDataKey(rand.Reader)
	if err != nil {
		return err
	}
	wrapped, err := WrapDataKey(c.auditor, dataKey, c.session)
	if err != nil {
		return err
	}
	if c.sealer, err = mask.NewSealer(dataKey, c.session); err != nil {
		return err
	}
	clear(dataKey)
	return c.emit(&record.Event{Kind: record.KindMaskKey, Key: &record.MaskKey{Auditor: Fingerprint(c.auditor), Wrapped: wrapped}})
}

// Flush emits the pending proofs.
func (c *Collector) Flush() error {
	if c.err != nil {
		return c.err
	}
	if len(c.pending.Values) == 0 {
		return nil
	}
	batch := c.pending
	c.pending = record.MaskProof{Values: make([]record.ProofValue, 0, batchSize)}
	return c.emit(&record.Event{Kind: record.KindMaskProof, Proof: &batch})
}

// Opener unseals the raw values of one recorded session.
type Opener struct {
	sealer *mask.Sealer
}

// NewOpener unwraps a session's data key (from its mask.key event) with the
// auditor private key.
func NewOpener(auditor *ecdh.PrivateKey, key *record.MaskKey, sessionID string) (*Opener, error) {
	if key.Auditor != Fingerprint(auditor.PublicKey()) {
		return nil, fmt.Errorf("%w: the session was sealed to auditor key %s", ErrWrongKey, key.Auditor)
	}
	dataKey, err := UnwrapDataKey(auditor, key.Wrapped, sessionID)
	if err != nil {
		return nil, err
	}
	s, err := mask.NewSealer(dataKey, sessionID)
	clear(dataKey)
	if err != nil {
		return nil, err
	}
	return &Opener{sealer: s}, nil
}

// Open returns the raw bytes of one proof, checking them against its keyed hash.
func (o *Opener) Open(v *record.ProofValue) ([]byte, error) {
	raw, err := o.sealer.Open(nil, v.Sealed)
	if err != nil {
		return nil, err
	}
	sum := o.sealer.HashRaw(raw)
	if string(sum[:]) != string(v.RawHMAC) {
		return nil, errors.New("proof: raw value does not match its recorded hash")
	}
	return raw, nil
}
