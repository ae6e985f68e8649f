package chunk

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("chunk: malformed")

// Caps on variable-length fields, so that a corrupt length can never make a
// decoder allocate much.
const (
	maxID      = 255     // session id, node id, key id
	maxObject  = 1024    // object key
	maxWrapped = 1024    // sealed data key
	maxEntries = 1 << 20 // digest entries
)

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendStr8 appends a string with a one-byte length; the caller checked
// its length.
func appendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func appendStr16(b []byte, s string) []byte { return append(appendU16(b, uint16(len(s))), s...) }

// reader decodes big-endian fields; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: short or bad %s", ErrFormat, what)
	}
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(what string) byte {
	b := r.take(1, what)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16(what string) uint16 {
	b := r.take(2, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) u32(what string) uint32 {
	b := r.take(4, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64(what string) uint64 {
	b := r.take(8, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) hash(what string) (h [32]byte) {
	copy(h[:], r.take(32, what))
	return h
}

func (r *reader) str8(what string) string { return string(r.take(int(r.u8(what)), what)) }

func (r *reader) str16(what string, max int) string {
	n := int(r.u16(what))
	if n > max {
		r.fail(what)
		return ""
	}
	return string(r.take(n, what))
}

func (r *reader) end(what string) {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes after %s", ErrFormat, len(r.b), what)
	}
}

func checkID(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("chunk: %s of %d bytes (at most %d)", what, len(s), max)
	}
	return nil
}

func sha256Sum(b []byte) [HashSize]byte { return sha256.Sum256(b) }
