package proof

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

// The sealing of raw values under a session's data key: a keyed hash of
// each raw value (so an auditor can check a claimed raw value without
// unsealing) and AES-256-GCM with counter nonces. The constants below are
// part of the recording format: changing any of them leaves every recorded
// session unopenable (TestSealerKnownAnswer holds them).

// dataKeySize is the size of a data key (AES-256).
const dataKeySize = 32

// ErrUnseal is returned by [Opener.Open] when a batch's sealed bytes do not
// open: wrong data key, another session's batch, or tampered bytes.
var ErrUnseal = errors.New("proof: cannot unseal: wrong key or tampered data")

const (
	// sealAAD, a NUL and the session id are the associated data of every
	// sealed blob, so a blob cannot be moved to another session.
	sealAAD = "phigate masked raw value v1"
	// hashKeyLabel derives the raw-value hash key from the data key:
	// HMAC-SHA256(dataKey, hashKeyLabel).
	hashKeyLabel = "phigate raw value hash"
	// nonceSize is AES-GCM's standard nonce: four zero bytes, then the
	// sealer's counter (from 1) as a big-endian uint64.
	nonceSize = 12
)

// newDataKey reads a fresh data key from rand (crypto/rand.Reader).
func newDataKey(rand io.Reader) ([]byte, error) {
	k := make([]byte, dataKeySize)
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("proof: data key: %w", err)
	}
	return k, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != dataKeySize {
		return nil, fmt.Errorf("proof: key is %d bytes, want %d", len(key), dataKeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealer seals raw values under one session's data key. Nonces are a
// counter, so a sealer must be the only one sealing under its data key (a
// Collector makes a fresh key per session); it is not safe for concurrent
// use.
type sealer struct {
	aead    cipher.AEAD
	hashKey [sha256.Size]byte
	mac     hash.Hash // HMAC keyed with hashKey, reused: keying costs two extra SHA-256 blocks
	session string
	counter uint64
	nonce   [nonceSize]byte
	aad     []byte
}

// newSealer returns a sealer for the session's data key.
func newSealer(dataKey []byte, session string) (*sealer, error) {
	g, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	s := &sealer{aead: g, session: session}
	// The raw-value hash key is derived from the data key, so hashes of one
	// session cannot be compared with another's without its key.
	m := hmac.New(sha256.New, dataKey)
	m.Write([]byte(hashKeyLabel))
	m.Sum(s.hashKey[:0])
	s.mac = hmac.New(sha256.New, s.hashKey[:])
	s.aad = []byte(sealAAD + "\x00" + session)
	return s, nil
}

// hashRaw returns the keyed hash (HMAC-SHA256) of a raw value.
func (s *sealer) hashRaw(raw []byte) [sha256.Size]byte {
	s.mac.Reset()
	s.mac.Write(raw)
	var out [sha256.Size]byte
	s.mac.Sum(out[:0])
	return out
}

// seal appends nonce || AES-256-GCM(raw) to dst.
func (s *sealer) seal(dst, raw []byte) []byte {
	s.counter++
	binary.BigEndian.PutUint64(s.nonce[4:], s.counter)
	dst = append(dst, s.nonce[:]...)
	return s.aead.Seal(dst, s.nonce[:], raw, s.aad)
}

// open returns the raw value of a sealed one, or ErrUnseal. Unsealing is
// for auditors; the caller records that it happened.
func (s *sealer) open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < nonceSize+s.aead.Overhead() {
		return nil, ErrUnseal
	}
	out, err := s.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], s.aad)
	if err != nil {
		return nil, ErrUnseal
	}
	return out, nil
}
