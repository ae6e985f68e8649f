package proof

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"

	"github.com/phigate/phigate/session/record"
)

// TestSealer checks that a sealer's sealed values open only with its own
// key and session, untampered, under a fresh nonce each, and that the raw
// hash is keyed by the data key. (It was mask's TestProofAndSealing.)
func TestSealer(t *testing.T) {
	dataKey, err := newDataKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSealer(dataKey, "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	raws := []string{"Hanley", "Hanley", "078-05-1120", ""}
	var sealed [][]byte
	for _, raw := range raws {
		sealed = append(sealed, s.seal(nil, []byte(raw)))
	}
	for i, raw := range raws {
		if got, err := s.open(nil, sealed[i]); err != nil || string(got) != raw {
			t.Errorf("value %d: opened %q, %v; want %q", i, got, err, raw)
		}
		if raw != "" && bytes.Contains(sealed[i], []byte(raw)) {
			t.Errorf("value %d: raw bytes visible in the sealed form", i)
		}
	}
	if string(sealed[0][:nonceSize]) == string(sealed[1][:nonceSize]) || bytes.Equal(sealed[0], sealed[1]) {
		t.Error("two values sealed under one nonce")
	}
	h1, h2 := s.hashRaw([]byte("Hanley")), s.hashRaw([]byte("Hanley"))
	if h1 != h2 || h1 == s.hashRaw([]byte("Hanlez")) {
		t.Error("raw hash is not a deterministic function of the value")
	}

	other, _ := newDataKey(rand.Reader)
	otherKey, _ := newSealer(other, "sess-1")
	otherSession, _ := newSealer(dataKey, "sess-2")
	if _, err := otherKey.open(nil, sealed[0]); err != ErrUnseal {
		t.Errorf("opened with another data key: %v", err)
	}
	if _, err := otherSession.open(nil, sealed[0]); err != ErrUnseal {
		t.Errorf("opened as another session: %v", err)
	}
	// Each session has its own data key, from which the hash key derives.
	if otherKey.hashRaw([]byte("Hanley")) == h1 {
		t.Error("raw hashes of one value match under another data key")
	}
	tampered := append([]byte(nil), sealed[0]...)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.open(nil, tampered); err != ErrUnseal {
		t.Errorf("tampered: %v", err)
	}
	if _, err := s.open(nil, tampered[:nonceSize]); err != ErrUnseal {
		t.Errorf("truncated: %v", err)
	}
	if _, err := newSealer(dataKey[:16], "sess-1"); err == nil {
		t.Error("a 16-byte data key was accepted")
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSealerKnownAnswer pins the recording format: the hash key derivation
// (HMAC-SHA256 of the label under the data key), the HMAC, the counter
// nonces and the associated data. The expected bytes were produced by
// mask.Sealer before the sealing moved here; they must never change, or
// recorded sessions stop opening.
func TestSealerKnownAnswer(t *testing.T) {
	key := make([]byte, dataKeySize)
	for i := range key {
		key[i] = byte(i)
	}
	s, err := newSealer(key, "S-kat")
	if err != nil {
		t.Fatal(err)
	}
	if h := s.hashRaw([]byte("123-45-6789")); hex.EncodeToString(h[:]) != "18282d2fc4f34feff2f69d44e2dc1ac70d4e0ec9e40894a300b981c67a3aa511" {
		t.Errorf("hash = %x", h)
	}
	for i, c := range []struct{ raw, sealed string }{
		{"123-45-6789", "00000000000000000000000124e48cd170c11d28391668925b6517a9d34c2a8ddfe9a8b61a3986"},
		{"Hanley", "00000000000000000000000281104011d13257c83b91a22619d6e4f67b929e42aa8e"},
	} {
		if got := hex.EncodeToString(s.seal(nil, []byte(c.raw))); got != c.sealed {
			t.Errorf("seal %d = %s, want %s", i, got, c.sealed)
		}
		o, _ := newSealer(key, "S-kat")
		if got, err := o.open(nil, unhex(t, c.sealed)); err != nil || string(got) != c.raw {
			t.Errorf("open %d = %q, %v", i, got, err)
		}
	}
}

// TestOpenerKnownAnswer opens a mask.key and two mask.proof events recorded
// by a Collector before the sealing moved from session/mask (auditor key:
// bytes 0x40..0x5f): recordings written then must open now.
func TestOpenerKnownAnswer(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(0x40 + i)
	}
	auditor, err := ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	key := &record.MaskKey{
		Auditor: "67ca2ffd6fe9efab3d76e37c34990a5a",
		Wrapped: unhex(t, "6e47e26f5ba30858b47c91b39e5e8273cdd0012bab78003cb4a33a80a3a60e03aeb3c05a3b55cb9acf0b908346ca8c5008a0d1d2ff4485e7955e5e4131f18d8712fdc163e87d65e7a6c503a29003642c"),
	}
	proofs := []*record.MaskProof{{
		Command: 1,
		Rules: []record.ProofRule{
			{Column: 0, Rule: "column:patients.ssn", Action: "keep-last-4"},
			{Column: 1, Rule: "detect", Action: "redact", Type: "NAME", Detector: "dict"},
		},
		Spans:   [][4]int64{{1, 0, 0, 11}, {2, 1, 8, 14}},
		RawHMAC: unhex(t, "a4e5ea1e324e91d9e3f5029e221763c48694d29e35ecd4eee26edbc59f754d31701a89a763a30ee8e7b7ef681ed0a73421079b62a0a8de0c5a31bf505e7c49bd"),
		Sealed:  unhex(t, "000000000000000000000001931e7940a5f50d717e9b30be6116b242001e917dbc34f15310fe42d738369ca4d8ae5b"),
	}, {
		Command: 2,
		Rules:   []record.ProofRule{{Column: -1, Rule: "server-message", Action: "redact"}},
		Spans:   [][4]int64{{1, 0, 0, 5}},
		RawHMAC: unhex(t, "b1435aa4b82dbc20ec877580151fee28d0982f8084be3127a639276cde296bb1"),
		Sealed:  unhex(t, "000000000000000000000002f67ec323c76f8620418ce018989a6cab7c1b9e095e03"),
	}}
	want := [][]string{{"123-45-6789", "Hanley"}, {"x\x00y\xffz"}}

	o, err := NewOpener(auditor, key, "S-kat")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range proofs {
		raws, err := o.Open(p)
		if err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		got := make([]string, len(raws))
		for j, r := range raws {
			got[j] = string(r)
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("proof %d = %q, want %q", i, got, want[i])
		}
	}
	// Recorded under another session id, the same events do not open.
	if _, err := NewOpener(auditor, key, "S-other"); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another session's key: %v", err)
	}
	bad := *proofs[0]
	bad.Sealed = append([]byte(nil), bad.Sealed...)
	bad.Sealed[len(bad.Sealed)-1] ^= 1
	if _, err := o.Open(&bad); err != ErrUnseal {
		t.Errorf("tampered batch: %v", err)
	}
}
