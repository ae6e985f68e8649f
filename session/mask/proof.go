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

// The pure part of the masking proof: a keyed hash of each raw value (so an
// auditor can check a claimed raw value without unsealing) and AES-256-GCM
// sealing under a per-session data key. Where the key and the sealed bytes
// go is session/proof's: it seals the data key with HPKE to the auditors'
// public key (a mask.key event), so a node cannot unseal what it recorded,
// and seals each batch of raw values as one blob (a mask.proof event).

// DataKeySize is the size of a data key (AES-256).
const DataKeySize = 32

// ErrUnseal is returned when a sealed value does not open: wrong key, wrong
// session, or tampered bytes.
var ErrUnseal = errors.New("mask: cannot unseal: wrong key or tampered data")

const (
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

// Sealer seals raw values under one session's data key. Nonces are a
// counter, so a Sealer must be the only one sealing under its data key
// (session/proof makes a fresh key per session); it is not safe for
// concurrent use.
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
