package chunk

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// ChunkMagic starts every sealed chunk: format name and version.
const ChunkMagic = "PHIGCHK1"

// Version is the header version this package writes and reads.
const Version = 1

// Flags of a chunk header.
const (
	// FlagClosing marks the chunk that ends its session: no chunk of the
	// session follows it.
	FlagClosing uint16 = 1 << 0
)

const (
	// HashSize is the size of every hash in the format (SHA-256).
	HashSize = sha256.Size
	// FingerprintSize is the size of an auditor key fingerprint.
	FingerprintSize = 16
	// MaxRaw caps the frames of one chunk (a record frame may hold up to 64
	// MiB; a chunk holds at least one frame).
	MaxRaw = 80 << 20
	// MaxHeader caps the encoded header.
	MaxHeader = 4096
	tagSize   = 16
	nonceSize = 12
)

// Header is the clear part of a chunk: everything a verifier without the
// auditors' key checks. The GCM additional data is the chunk's bytes up to
// PayloadHash (FORMAT.md).
type Header struct {
	Version        uint16
	Flags          uint16
	Session        string
	Node           string
	Seq            uint64         // 0 for a session's first chunk
	Prev           [HashSize]byte // SHA-256 of the previous chunk's sealed bytes; zero for Seq 0
	FirstEvent     uint64         // record index (Event.Seq) of the first frame
	LastEvent      uint64
	FirstTime      time.Time // times of the first and last events, UTC, nanoseconds
	LastTime       time.Time
	Events         uint32
	RawSize        uint32                // frames before compression
	CompressedSize uint32                // zstd frame; the payload is this plus the 16-byte GCM tag
	AuditorKey     [FingerprintSize]byte // which auditor key the data key is sealed to
	WrappedKey     []byte                // the session data key, HPKE-sealed to the auditor key
	ChainHead      [HashSize]byte        // record-chain hash after LastEvent: the last frame's SHA-256
	PayloadHash    [HashSize]byte        // SHA-256 of the encrypted payload
}

// Closing reports whether the chunk ends its session.
func (h *Header) Closing() bool { return h.Flags&FlagClosing != 0 }

// PayloadSize is the length of the encrypted payload that follows the header.
func (h *Header) PayloadSize() int { return int(h.CompressedSize) + tagSize }

func (h *Header) check() error {
	if err := checkID("session id", h.Session, maxID); err != nil {
		return err
	}
	if err := checkID("node id", h.Node, maxID); err != nil {
		return err
	}
	if len(h.WrappedKey) > maxWrapped {
		return fmt.Errorf("chunk: wrapped key of %d bytes", len(h.WrappedKey))
	}
	return nil
}

// AppendHeader appends the header's encoding (FORMAT.md, "Chunk header").
func (h *Header) AppendHeader(dst []byte) ([]byte, error) {
	if err := h.check(); err != nil {
		return dst, err
	}
	b := appendU16(dst, h.Version)
	b = appendU16(b, h.Flags)
	b = appendStr8(b, h.Session)
	b = appendStr8(b, h.Node)
	b = appendU64(b, h.Seq)
	b = append(b, h.Prev[:]...)
	b = appendU64(b, h.FirstEvent)
	b = appendU64(b, h.LastEvent)
	b = appendU64(b, uint64(h.FirstTime.UnixNano()))
	b = appendU64(b, uint64(h.LastTime.UnixNano()))
	b = appendU32(b, h.Events)
	b = appendU32(b, h.RawSize)
	b = appendU32(b, h.CompressedSize)
	b = append(b, h.AuditorKey[:]...)
	b = appendU16(b, uint16(len(h.WrappedKey)))
	b = append(b, h.WrappedKey...)
	b = append(b, h.ChainHead[:]...)
	b = append(b, h.PayloadHash[:]...)
	return b, nil
}

// DecodeHeader decodes AppendHeader's output (exactly, no trailing bytes).
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	r := reader{b: b}
	h.Version = r.u16("version")
	if r.err == nil && h.Version != Version {
		return h, fmt.Errorf("%w: header version %d", ErrFormat, h.Version)
	}
	h.Flags = r.u16("flags")
	h.Session = r.str8("session id")
	h.Node = r.str8("node id")
	h.Seq = r.u64("seq")
	h.Prev = r.hash("prev")
	h.FirstEvent = r.u64("first event")
	h.LastEvent = r.u64("last event")
	h.FirstTime = time.Unix(0, int64(r.u64("first time"))).UTC()
	h.LastTime = time.Unix(0, int64(r.u64("last time"))).UTC()
	h.Events = r.u32("event count")
	h.RawSize = r.u32("raw size")
	h.CompressedSize = r.u32("compressed size")
	copy(h.AuditorKey[:], r.take(FingerprintSize, "auditor key"))
	h.WrappedKey = r.take(int(r.u16("wrapped key")), "wrapped key")
	h.ChainHead = r.hash("chain head")
	h.PayloadHash = r.hash("payload hash")
	r.end("header")
	if r.err != nil {
		return h, r.err
	}
	if err := h.consistent(); err != nil {
		return h, err
	}
	return h, nil
}

// consistent checks what a header says about itself.
func (h *Header) consistent() error {
	switch {
	case h.Flags&^FlagClosing != 0:
		return fmt.Errorf("%w: unknown flags %#x", ErrFormat, h.Flags)
	case h.Events == 0:
		return fmt.Errorf("%w: chunk of no events", ErrFormat)
	case h.LastEvent < h.FirstEvent || h.LastEvent-h.FirstEvent != uint64(h.Events)-1:
		return fmt.Errorf("%w: events %d..%d do not make %d", ErrFormat, h.FirstEvent, h.LastEvent, h.Events)
	case h.LastTime.Before(h.FirstTime):
		return fmt.Errorf("%w: last event time before first", ErrFormat)
	case h.RawSize > MaxRaw || h.CompressedSize > MaxRaw+MaxRaw/8:
		return fmt.Errorf("%w: sizes %d/%d beyond the cap", ErrFormat, h.RawSize, h.CompressedSize)
	case h.Seq == 0 && h.Prev != [HashSize]byte{}:
		return fmt.Errorf("%w: first chunk with a previous hash", ErrFormat)
	}
	return nil
}

// Chunk is a decoded sealed chunk. Payload and Header.WrappedKey alias the
// decoded bytes.
type Chunk struct {
	Header  Header
	Payload []byte         // AES-256-GCM ciphertext and tag
	AAD     []byte         // the chunk's bytes before PayloadHash
	Sum     [HashSize]byte // SHA-256 of the whole sealed chunk
}

// Decode splits a sealed chunk and checks its structure and payload hash;
// it needs no key. An error wraps ErrFormat, or is a *PayloadError when
// only the payload hash disagrees (the header is then returned).
func Decode(b []byte) (*Chunk, error) { return decode(b, nil, true) }

// decode is Decode with the chunk's SHA-256 given (nil: computed) and the
// payload hash checked only when checkPayload is set.
func decode(b []byte, sum *[HashSize]byte, checkPayload bool) (*Chunk, error) {
	if len(b) < len(ChunkMagic)+4 || string(b[:len(ChunkMagic)]) != ChunkMagic {
		return nil, fmt.Errorf("%w: not a chunk (magic)", ErrFormat)
	}
	n := binary.BigEndian.Uint32(b[len(ChunkMagic):])
	start := len(ChunkMagic) + 4
	if n > MaxHeader || int(n) > len(b)-start || n < HashSize {
		return nil, fmt.Errorf("%w: header length %d", ErrFormat, n)
	}
	end := start + int(n)
	h, err := DecodeHeader(b[start:end])
	if err != nil {
		return nil, err
	}
	c := &Chunk{Header: h, Payload: b[end:], AAD: b[:end-HashSize]}
	if sum != nil {
		c.Sum = *sum
	} else {
		c.Sum = sha256.Sum256(b)
	}
	if len(c.Payload) != h.PayloadSize() {
		return c, fmt.Errorf("%w: payload of %d bytes, header says %d", ErrFormat, len(c.Payload), h.PayloadSize())
	}
	if checkPayload && sha256.Sum256(c.Payload) != h.PayloadHash {
		return c, &PayloadError{}
	}
	return c, nil
}

// PayloadError reports a payload whose SHA-256 is not the header's.
type PayloadError struct{}

func (*PayloadError) Error() string { return "chunk: payload hash mismatch" }

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("chunk: %w", err)
	}
	return cipher.NewGCM(block)
}

// nonce is the GCM nonce of chunk seq: four zero bytes and seq, big-endian.
// A data key belongs to one session and a seq is sealed once per session
// (Builder), so a nonce never repeats under a key.
func nonce(seq uint64) []byte {
	var n [nonceSize]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n[:]
}
