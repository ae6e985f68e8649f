package chunk

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// seedObjects returns a valid chunk, manifest and digest, made with fixed
// keys so that the committed seeds are stable in shape.
func seedObjects(t testing.TB) (chunk, manifest, digest []byte) {
	fr, times := frames(t, "s-seed", 6)
	sealed := sealSession(t, "s-seed", auditorKey(t).PublicKey(), fr, times, 1<<20)
	signer := NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	_, m, err := SignManifest(sealed[0], "chunks/s-seed/00000000", t0, signer)
	if err != nil {
		t.Fatal(err)
	}
	entries := []DigestEntry{{Object: "chunks/s-seed/00000000", Session: "s-seed", Hash: sealed[0].Sum}}
	_, d1, err := BuildDigest("n1", t0, nil, nil, signer)
	if err != nil {
		t.Fatal(err)
	}
	_, d2, err := BuildDigest("n1", t0.Add(3600e9), entries, d1, signer)
	if err != nil {
		t.Fatal(err)
	}
	return sealed[0].Bytes, m, d2
}

// TestWriteFuzzSeeds rewrites the committed seeds under testdata/fuzz when
// PHIGATE_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PHIGATE_WRITE_SEEDS") == "" {
		t.Skip("set PHIGATE_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	c, m, d := seedObjects(t)
	hdr := c[12 : 12+int(c[11])|int(c[10])<<8]
	for name, b := range map[string][]byte{
		"FuzzDecodeHeader/valid": hdr, "FuzzDecodeHeader/short": hdr[:20],
		"FuzzDecode/valid": c, "FuzzDecode/truncated": c[:len(c)-1],
		"FuzzDecodeManifest/valid": m, "FuzzDecodeManifest/empty": nil,
		"FuzzDecodeDigest/valid": d, "FuzzDecodeDigest/huge-count": hugeCount(d),
	} {
		p := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hugeCount sets a digest's entry count to 2^32-1.
func hugeCount(d []byte) []byte {
	b := append([]byte(nil), d...)
	// magic 8, len 4, version 2, node str8 ("n1": 3), key id str8 (33), hour 8, prev 32, prev sig 64
	at := 12 + 2 + 3 + 33 + 8 + 32 + 64
	copy(b[at:], []byte{0xff, 0xff, 0xff, 0xff})
	return b
}

func FuzzDecodeHeader(f *testing.F) {
	c, _, _ := seedObjects(f)
	f.Add(c[12 : 12+int(c[11])|int(c[10])<<8])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if err != nil {
			return
		}
		out, err := h.AppendHeader(nil)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	c, _, _ := seedObjects(f)
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Decode(b)
		_ = VerifySession("s-seed", []Object{{Key: "k", Bytes: b}}, nil, Keys{})
	})
}

func FuzzDecodeManifest(f *testing.F) {
	_, m, _ := seedObjects(f)
	f.Add(m)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		out := append([]byte(ManifestMagic), 0, 0, 0, 0)
		out, err = m.appendBody(out)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Signature[:]...)
		if !bytes.Equal(out[12:], b[12:]) {
			t.Fatal("re-encoding differs")
		}
	})
}

func FuzzDecodeDigest(f *testing.F) {
	_, _, d := seedObjects(f)
	f.Add(d)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDigest(b)
		if err != nil {
			return
		}
		out := append([]byte(DigestMagic), 0, 0, 0, 0)
		out, err = d.appendBody(out)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Signature[:]...)
		if !bytes.Equal(out[12:], b[12:]) {
			t.Fatal("re-encoding differs")
		}
	})
}
