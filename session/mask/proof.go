package mask

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Masking proof: for every masked value the recording keeps the detector,
// the rule, the span, a keyed hash of the raw value (so an auditor can
// check a claimed raw value without unsealing) and the raw value sealed
// with AES-256-GCM under a per-session data key. The data key is stored
// wrapped (AES-256-GCM) by the deployment's master key, so only whoever
// holds the master key can unseal. This file has the pure functions; the
// recorder decides where they are stored.

// DataKeySize is the size of master and data keys (AES-256).
const DataKeySize = 32

// ErrUnseal is returned when a sealed value or wrapped key does not open:
// wrong key, wrong session, or tampered bytes.
var ErrUnseal = errors.New("mask: cannot unseal: wrong key or tampered data")

const (
	wrapAAD   = "phigate masking data key v1"
	sealAAD   = "phigate masked raw value v1"
	nonceSize = 12
)

// NewDataKey reads a fresh data key from rand (crypto/rand.Reader).
func NewDataKey(rand io.Reader) ([]byte, error) {
	k := make([]byte, DataKeySize)
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("mask: data key: %w", err)
	}
	return k, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("mask: key is %d bytes, want %d", len(key), DataKeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// WrapKey seals dataKey under master for the session id: nonce || ciphertext.
func WrapKey(master, dataKey []byte, session string, rand io.Reader) ([]byte, error) {
	g, err := newGCM(master)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(dataKey)+g.Overhead())
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, fmt.Errorf("mask: wrap nonce: %w", err)
	}
	return g.Seal(out, out[:nonceSize], dataKey, []byte(wrapAAD+"\x00"+session)), nil
}

// UnwrapKey opens a key sealed by WrapKey.
func UnwrapKey(master, wrapped []byte, session string) ([]byte, error) {
	g, err := newGCM(master)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < nonceSize+g.Overhead() {
		return nil, ErrUnseal
	}
	k, err := g.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], []byte(wrapAAD+"\x00"+session))
	if err != nil || len(k) != DataKeySize {
		return nil, ErrUnseal
	}
	return k, nil
}

// Sealer seals raw values under one session's data key. Nonces are a
// counter, so a Sealer must be the only one using its data key (one per
// session, as the recorder does); it is not safe for concurrent use.
type Sealer struct {
	aead    cipher.AEAD
	hashKey [sha256.Size]byte
	mac     hash.Hash // HMAC keyed with hashKey, reused: keying costs two extra SHA-256 blocks
	session string
	counter uint64
	nonce   [nonceSize]byte
	aad     []byte
}

// NewSealer returns a Sealer for the session's data key.
func NewSealer(dataKey []byte, session string) (*Sealer, error) {
	g, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	s := &Sealer{aead: g, session: session}
	// The raw-value hash key is derived from the data key, so hashes of one
	// session cannot be compared with another's without its key.
	m := hmac.New(sha256.New, dataKey)
	m.Write([]byte("phigate raw value hash"))
	m.Sum(s.hashKey[:0])
	s.mac = hmac.New(sha256.New, s.hashKey[:])
	s.aad = []byte(sealAAD + "\x00" + session)
	return s, nil
}

// HashRaw returns the keyed hash (HMAC-SHA256) of a raw value.
func (s *Sealer) HashRaw(raw []byte) [sha256.Size]byte {
	s.mac.Reset()
	s.mac.Write(raw)
	var out [sha256.Size]byte
	s.mac.Sum(out[:0])
	return out
}

// Seal appends nonce || AES-256-GCM(raw) to dst.
func (s *Sealer) Seal(dst, raw []byte) []byte {
	s.counter++
	binary.BigEndian.PutUint64(s.nonce[4:], s.counter)
	dst = append(dst, s.nonce[:]...)
	return s.aead.Seal(dst, s.nonce[:], raw, s.aad)
}

// Open returns the raw value of a sealed one. Unsealing is for auditors;
// the caller records that it happened.
func (s *Sealer) Open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < nonceSize+s.aead.Overhead() {
		return nil, ErrUnseal
	}
	out, err := s.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], s.aad)
	if err != nil {
		return nil, ErrUnseal
	}
	return out, nil
}

// ProofRecord is the stored form of one [Proof]: what the recording keeps.
type ProofRecord struct {
	Column   int    `json:"column"`
	Rule     string `json:"rule"`
	Action   string `json:"action"`
	Type     string `json:"type,omitempty"`
	Detector string `json:"detector,omitempty"`
	Start    int    `json:"start"`
	End      int    `json:"end"`
	RawHash  []byte `json:"raw_hmac"`
	Sealed   []byte `json:"sealed"`
}

// Record turns a Proof into its stored form, sealing the raw span.
func (s *Sealer) Record(p *Proof) ProofRecord {
	h := s.HashRaw(p.Raw)
	r := ProofRecord{Column: p.Column, Rule: p.Rule, Action: p.Action.String(), Detector: p.Detector,
		Start: p.Start, End: p.End, RawHash: h[:], Sealed: s.Seal(nil, p.Raw)}
	if p.Type != TypeNone {
		r.Type = p.Type.String()
	}
	return r
}
