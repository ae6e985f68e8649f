package chunk

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/phigate/phigate/session/proof"
)

// ErrDecrypt is returned when a payload does not open: wrong auditor key,
// or a header or payload that was changed.
var ErrDecrypt = errors.New("chunk: payload does not open (wrong key or tampered chunk)")

var (
	decOnce sync.Once
	dec     *zstd.Decoder
	decErr  error
)

func decoder() (*zstd.Decoder, error) {
	decOnce.Do(func() {
		dec, decErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(MaxRaw))
	})
	return dec, decErr
}

// Opener decrypts chunk payloads with the auditors' private key. Only the
// auditors' tools hold one; verification never needs it. An Opener caches
// unwrapped data keys and is not safe for concurrent use.
type Opener struct {
	key  *ecdh.PrivateKey
	fp   [FingerprintSize]byte
	keys map[string][]byte // wrapped key + session -> data key
}

// NewOpener returns an Opener for the auditor private key.
func NewOpener(auditor *ecdh.PrivateKey) *Opener {
	o := &Opener{key: auditor, keys: map[string][]byte{}}
	copy(o.fp[:], fingerprint(auditor.PublicKey()))
	return o
}

// Open decodes a sealed chunk, decrypts and decompresses its payload, and
// checks the frames against the header (count, size, chain head). It
// returns the header and the frames, concatenated as the spool had them
// (without the recording magic).
func (o *Opener) Open(b []byte) (Header, []byte, error) {
	c, err := Decode(b)
	if err != nil {
		if c != nil {
			return c.Header, nil, err
		}
		return Header{}, nil, err
	}
	h := c.Header
	if h.AuditorKey != o.fp {
		return h, nil, fmt.Errorf("%w: sealed to auditor key %x", ErrDecrypt, h.AuditorKey)
	}
	id := h.Session + "\x00" + string(h.WrappedKey)
	key, ok := o.keys[id]
	if !ok {
		key, err = proof.UnwrapDataKey(o.key, h.WrappedKey, h.Session)
		if err != nil {
			return h, nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
		}
		o.keys[id] = key
	}
	aead, err := newGCM(key)
	if err != nil {
		return h, nil, err
	}
	compressed, err := aead.Open(nil, nonce(h.Seq), c.Payload, c.AAD)
	if err != nil {
		return h, nil, ErrDecrypt
	}
	d, err := decoder()
	if err != nil {
		return h, nil, fmt.Errorf("chunk: zstd: %w", err)
	}
	frames, err := d.DecodeAll(compressed, make([]byte, 0, h.RawSize))
	if err != nil {
		return h, nil, fmt.Errorf("%w: zstd: %v", ErrFormat, err)
	}
	if len(frames) != int(h.RawSize) {
		return h, nil, fmt.Errorf("%w: %d bytes of frames, header says %d", ErrFormat, len(frames), h.RawSize)
	}
	var n uint32
	var head [HashSize]byte
	for rest := frames; len(rest) > 0; n++ {
		if len(rest) < 4 {
			return h, nil, fmt.Errorf("%w: event %d: short frame", ErrFormat, h.FirstEvent+uint64(n))
		}
		l := int(uint32(rest[0])<<24|uint32(rest[1])<<16|uint32(rest[2])<<8|uint32(rest[3])) + 4 + HashSize
		if l > len(rest) || l < 4+HashSize {
			return h, nil, fmt.Errorf("%w: event %d: frame length", ErrFormat, h.FirstEvent+uint64(n))
		}
		if head, err = checkFrame(rest[:l]); err != nil {
			return h, nil, fmt.Errorf("event %d: %w", h.FirstEvent+uint64(n), err)
		}
		rest = rest[l:]
	}
	if n != h.Events || !bytes.Equal(head[:], h.ChainHead[:]) {
		return h, nil, fmt.Errorf("%w: %d frames ending at %x, header says %d ending at %x", ErrFormat, n, head[:4], h.Events, h.ChainHead[:4])
	}
	return h, frames, nil
}
