package chunk

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/phigate/phigate/session/proof"
)

// TestFormatIndependent opens a chunk and checks a manifest and a digest
// following FORMAT.md only, with none of this package's decoders: the
// document is enough to write a verifier.
func TestFormatIndependent(t *testing.T) {
	key := auditorKey(t)
	fr, times := frames(t, "s-doc", 50)
	sealed := sealSession(t, "s-doc", key.PublicKey(), fr, times, 1<<20)
	c := sealed[0].Bytes

	if string(c[:8]) != "PHIGCHK1" {
		t.Fatal("magic")
	}
	hlen := int(binary.BigEndian.Uint32(c[8:12]))
	h := c[12 : 12+hlen]
	p := 4 // version, flags
	session := string(h[p+1 : p+1+int(h[p])])
	p += 1 + int(h[p])
	p += 1 + int(h[p]) // node
	seq := binary.BigEndian.Uint64(h[p:])
	p += 8 + 32 + 8 + 8 + 8 + 8 + 4 // seq, prev, events, times, count
	rawSize := binary.BigEndian.Uint32(h[p:])
	compressed := binary.BigEndian.Uint32(h[p+4:])
	p += 8 + 16
	wl := int(binary.BigEndian.Uint16(h[p:]))
	wrapped := h[p+2 : p+2+wl]
	p += 2 + wl + 32
	payloadHash := h[p : p+32]
	payload := c[12+hlen:]
	if len(payload) != int(compressed)+16 || !bytes.Equal(payloadHash, sumOf(payload)) {
		t.Fatal("payload length or hash")
	}
	if sum := sha256.Sum256(c); sum != sealed[0].Sum {
		t.Fatal("chunk hash")
	}
	dk, err := proof.UnwrapDataKey(key, wrapped, session)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(dk)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint64(nonce[4:], seq)
	z, err := gcm.Open(nil, nonce, payload, c[:12+hlen-32])
	if err != nil {
		t.Fatal(err)
	}
	d, _ := zstd.NewReader(nil)
	raw, err := d.DecodeAll(z, nil)
	if err != nil || len(raw) != int(rawSize) {
		t.Fatal("decompress", err)
	}
	var want []byte
	for _, f := range fr {
		want = append(want, f...)
	}
	if !bytes.Equal(raw, want[8:]) {
		t.Fatal("frames")
	}

	pub, priv, _ := ed25519.GenerateKey(nil)
	signer := NewSigner(priv)
	_, m, _ := SignManifest(sealed[0], "k", t0, signer)
	if !ed25519.Verify(pub, append([]byte("phigate/manifest/v1\x00"), m[12:len(m)-64]...), m[len(m)-64:]) {
		t.Fatal("manifest signing input")
	}
	_, dg, _ := BuildDigest("n1", t0, nil, nil, signer)
	if !ed25519.Verify(pub, append([]byte("phigate/digest/v1\x00"), dg[12:len(dg)-64]...), dg[len(dg)-64:]) {
		t.Fatal("digest signing input")
	}
}

func sumOf(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestBuilderLimits(t *testing.T) {
	fr, times := frames(t, "s-b", 20)
	b, err := NewBuilder(Config{Session: "s-b", Node: "n1", Auditor: auditorKey(t).PublicKey(), MaxBytes: 1000, MaxDuration: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if b.Due(t0.Add(time.Hour)) {
		t.Fatal("empty builder due")
	}
	if err := b.Add(fr[0], times[0]); err != nil {
		t.Fatal(err)
	}
	if b.Due(times[0].Add(4*time.Millisecond)) || !b.Due(times[0].Add(5*time.Millisecond)) {
		t.Fatal("duration limit")
	}
	var full bool
	for i := 1; i < len(fr) && !full; i++ {
		err := b.Add(fr[i], times[i])
		full = errors.Is(err, ErrFull)
		if err != nil && !full {
			t.Fatal(err)
		}
	}
	if !full || b.PendingBytes() > 1000 {
		t.Fatalf("byte limit: full=%v pending=%d", full, b.PendingBytes())
	}
	bad := append([]byte(nil), fr[3]...)
	bad[10] ^= 1
	if err := b.Add(bad, t0); !errors.Is(err, ErrFormat) {
		t.Fatalf("corrupt frame accepted: %v", err)
	}
	if _, err := b.Seal(true); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(fr[5], t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("add after close: %v", err)
	}
	if _, err := b.Seal(false); !errors.Is(err, ErrClosed) {
		t.Fatalf("seal after close: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	c, m, d := seedObjects(t)
	if _, err := DecodeDigest(hugeCount(d)); !errors.Is(err, ErrFormat) {
		t.Fatalf("huge entry count: %v", err)
	}
	for _, i := range []int{0, 5, 11} {
		if _, err := Decode(c[:i]); !errors.Is(err, ErrFormat) {
			t.Fatalf("short chunk: %v", err)
		}
	}
	if _, err := DecodeManifest(m[:len(m)-1]); !errors.Is(err, ErrFormat) {
		t.Fatalf("short manifest: %v", err)
	}
}
