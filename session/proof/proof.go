// Package proof keeps the masking proof of a session: for every value phigate
// masked, which rule did it and the raw value, sealed so that only an auditor
// can read it.
//
// session/mask only describes what it masked: a [mask.Proof] per masked
// value or span, handed to the sink set with mask.Plan.SetProofSink. All of
// the proof's cryptography is here. Each session gets a random data key.
// Raw values are sealed under it (seal.go: AES-256-GCM with counter nonces,
// the session id in the associated data) and each gets a keyed hash
// (HMAC-SHA256 under a key derived from the data key), so a claimed raw
// value can be checked without unsealing. The data key itself is sealed with HPKE (RFC 9180,
// X25519, HKDF-SHA256, AES-256-GCM) to the auditors' public key and recorded
// once per session (a mask.key event). A [Collector] turns Proofs into
// those events; an [Opener] reads them back. Nodes hold only the public
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
	"encoding/binary"
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

// A mask.proof event is flushed at batchSpans values or batchRaw bytes of
// raw data, whichever comes first.
const (
	batchSpans = 1024
	batchRaw   = 64 << 10
)

// Collector turns mask.Proofs into recorded mask.proof events for one
// session. It is used by one goroutine (the proxy's result path). The first
// proof creates the session's data key and emits its mask.key event. A
// batch's raw values are sealed together, one AES-GCM operation per event.
type Collector struct {
	session string
	auditor *ecdh.PublicKey
	emit    func(*record.Event) error

	sealer  *sealer
	pending record.MaskProof
	raw     []byte // length-prefixed raw spans of the pending batch
	rules   map[record.ProofRule]int
	err     error

	// Position of the value being masked, set by the proxy: the statement
	// of the command, the change phase (record.ChangeBefore or ChangeAfter
	// for the rows of a change event; empty for the statement's result)
	// and the row, from 1.
	Statement int
	Phase     string
	Row       int64
}

// NewCollector collects proofs for sessionID; emit appends an event to the
// session's recording (and must not keep the event after it returns).
func NewCollector(sessionID string, auditor *ecdh.PublicKey, emit func(*record.Event) error) *Collector {
	return &Collector{session: sessionID, auditor: auditor, emit: emit, rules: map[record.ProofRule]int{}}
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
	if len(c.pending.Spans) > 0 && (c.pending.Command != cmd || c.pending.Statement != c.Statement || c.pending.Phase != c.Phase ||
		len(c.pending.Spans) >= batchSpans || len(c.raw) >= batchRaw) {
		if c.err = c.Flush(); c.err != nil {
			return
		}
	}
	c.pending.Command, c.pending.Statement, c.pending.Phase = cmd, c.Statement, c.Phase
	rule := record.ProofRule{Column: p.Column, Rule: p.Rule, Action: p.Action.String(), Detector: p.Detector}
	if p.Type != mask.TypeNone {
		rule.Type = p.Type.String()
	}
	idx, ok := c.rules[rule]
	if !ok {
		idx = len(c.pending.Rules)
		c.rules[rule] = idx
		c.pending.Rules = append(c.pending.Rules, rule)
	}
	c.pending.Spans = append(c.pending.Spans, [4]int64{c.Row, int64(idx), int64(p.Start), int64(p.End)})
	h := c.sealer.hashRaw(p.Raw)
	c.pending.RawHMAC = append(c.pending.RawHMAC, h[:]...)
	c.raw = binary.AppendUvarint(c.raw, uint64(len(p.Raw)))
	c.raw = append(c.raw, p.Raw...)
}

func (c *Collector) start() error {
	dataKey, err := newDataKey(rand.Reader)
	if err != nil {
		return err
	}
	wrapped, err := WrapDataKey(c.auditor, dataKey, c.session)
	if err != nil {
		return err
	}
	if c.sealer, err = newSealer(dataKey, c.session); err != nil {
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
	if len(c.pending.Spans) == 0 {
		return nil
	}
	c.pending.Sealed = c.sealer.seal(c.pending.Sealed[:0], c.raw)
	err := c.emit(&record.Event{Kind: record.KindMaskProof, Proof: &c.pending})
	// The event was encoded by emit: reuse the buffers.
	clear(c.raw)
	c.raw = c.raw[:0]
	c.pending.Rules, c.pending.Spans, c.pending.RawHMAC = c.pending.Rules[:0], c.pending.Spans[:0], c.pending.RawHMAC[:0]
	clear(c.rules)
	if err != nil {
		c.err = err
	}
	return err
}

// Opener unseals the raw values of one recorded session.
type Opener struct {
	sealer *sealer
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
	s, err := newSealer(dataKey, sessionID)
	clear(dataKey)
	if err != nil {
		return nil, err
	}
	return &Opener{sealer: s}, nil
}

// Open returns the raw bytes of every span of a mask.proof event, in span
// order, each checked against its keyed hash. Sealed bytes that do not open
// under the session's data key give [ErrUnseal].
func (o *Opener) Open(p *record.MaskProof) ([][]byte, error) {
	blob, err := o.sealer.open(nil, p.Sealed)
	if err != nil {
		return nil, err
	}
	if len(p.RawHMAC) != len(p.Spans)*32 {
		return nil, errors.New("proof: hash count does not match span count")
	}
	raws := make([][]byte, len(p.Spans))
	for i := range raws {
		n, k := binary.Uvarint(blob)
		if k <= 0 || n > uint64(len(blob)-k) {
			return nil, errors.New("proof: sealed data is malformed")
		}
		raws[i], blob = blob[k:k+int(n)], blob[k+int(n):]
		sum := o.sealer.hashRaw(raws[i])
		if string(sum[:]) != string(p.RawHMAC[32*i:32*i+32]) {
			return nil, fmt.Errorf("proof: span %d does not match its recorded hash", i)
		}
	}
	if len(blob) != 0 {
		return nil, errors.New("proof: sealed data has bytes past its spans")
	}
	return raws, nil
}
