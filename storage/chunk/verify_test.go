package chunk

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fixture is a sealed session with manifests, and the public keys only.
type fixture struct {
	chunks, manifests []Object
	keys              Keys
	signer            Signer
}

func newFixture(t *testing.T, session string) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer := NewSigner(priv)
	f := &fixture{signer: signer, keys: Keys{signer.ID: {Node: "n1", Key: pub, NotBefore: t0.Add(-time.Hour)}}}
	fr, times := frames(t, session, 400)
	for _, s := range sealSession(t, session, auditorKey(t).PublicKey(), fr, times, 12<<10) {
		key := fmt.Sprintf("chunks/%s/%08d", session, s.Header.Seq)
		_, m, err := SignManifest(s, key, s.Header.LastTime, signer)
		if err != nil {
			t.Fatal(err)
		}
		f.chunks = append(f.chunks, Object{Key: key, Bytes: s.Bytes})
		f.manifests = append(f.manifests, Object{Key: key + ".manifest", Bytes: m})
	}
	if len(f.chunks) < 4 {
		t.Fatalf("%d chunks", len(f.chunks))
	}
	return f
}

func clone(objs []Object) []Object {
	out := make([]Object, len(objs))
	for i, o := range objs {
		out[i] = Object{Key: o.Key, Bytes: append([]byte(nil), o.Bytes...)}
	}
	return out
}

func has(fs []Finding, p Problem, seq int64) bool {
	for _, f := range fs {
		if f.Problem == p && f.Seq == seq {
			return true
		}
	}
	return false
}

func TestVerifyIntact(t *testing.T) {
	f := newFixture(t, "s-ok")
	if fs := VerifySession("s-ok", f.chunks, f.manifests, f.keys); len(fs) != 0 {
		t.Fatalf("intact session: %v", fs)
	}
}

func TestVerifyTamper(t *testing.T) {
	f := newFixture(t, "s-t")
	other := newFixture(t, "s-t") // same session id, other data and key
	n := len(f.chunks)
	hdrLen := func(b []byte) int { return 12 + int(b[8])<<24 | int(b[9])<<16 | int(b[10])<<8 | int(b[11]) }
	cases := []struct {
		name   string
		mutate func(c, m []Object) ([]Object, []Object, Keys)
		want   Problem
		seq    int64
	}{
		{"flip payload byte", func(c, m []Object) ([]Object, []Object, Keys) {
			c[1].Bytes[len(c[1].Bytes)-5] ^= 1
			return c, m, f.keys
		}, ProblemPayload, 1},
		{"flip header byte (event time)", func(c, m []Object) ([]Object, []Object, Keys) {
			c[2].Bytes[hdrLen(c[2].Bytes)-HashSize-40] ^= 1
			return c, m, f.keys
		}, ProblemMismatch, 2},
		{"remove chunk", func(c, m []Object) ([]Object, []Object, Keys) {
			return append(c[:1:1], c[2:]...), m, f.keys
		}, ProblemMissing, 1},
		{"remove last chunks (truncate)", func(c, m []Object) ([]Object, []Object, Keys) {
			return c[:n-2], m[:n-2], f.keys
		}, ProblemTruncated, int64(n - 3)},
		{"remove last chunk, keep manifest", func(c, m []Object) ([]Object, []Object, Keys) {
			return c[:n-1], m, f.keys
		}, ProblemMissing, int64(n - 1)},
		{"reorder chunks", func(c, m []Object) ([]Object, []Object, Keys) {
			c[1].Bytes, c[2].Bytes = c[2].Bytes, c[1].Bytes
			return c, m, f.keys
		}, ProblemReordered, 1},
		{"duplicate chunk", func(c, m []Object) ([]Object, []Object, Keys) {
			return append(c, Object{Key: "chunks/s-t/dup", Bytes: c[1].Bytes}), m, f.keys
		}, ProblemDuplicate, 1},
		{"replace chunk", func(c, m []Object) ([]Object, []Object, Keys) {
			c[2].Bytes = other.chunks[2].Bytes
			return c, m, f.keys
		}, ProblemLink, 2},
		{"replace chunk and manifest, signed by an unknown key", func(c, m []Object) ([]Object, []Object, Keys) {
			c[2], m[2] = other.chunks[2], other.manifests[2]
			return c, m, f.keys
		}, ProblemUnknownKey, 2},
		{"bad manifest signature", func(c, m []Object) ([]Object, []Object, Keys) {
			m[1].Bytes[len(m[1].Bytes)-1] ^= 1
			return c, m, f.keys
		}, ProblemSignature, 1},
		{"key outside its validity", func(c, m []Object) ([]Object, []Object, Keys) {
			k := f.keys[f.signer.ID]
			k.NotAfter = t0
			return c, m, Keys{f.signer.ID: k}
		}, ProblemUnknownKey, 0},
		{"no manifest", func(c, m []Object) ([]Object, []Object, Keys) {
			return c, m[1:], f.keys
		}, ProblemNoManifest, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, m, keys := tc.mutate(clone(f.chunks), clone(f.manifests))
			fs := VerifySession("s-t", c, m, keys)
			if !has(fs, tc.want, tc.seq) {
				t.Fatalf("want %s at chunk %d, got:\n%s", tc.want, tc.seq, join(fs))
			}
			for _, x := range fs {
				if x.Session != "s-t" {
					t.Errorf("finding without its session: %v", x)
				}
			}
			t.Logf("%s", join(fs))
		})
	}
}

func join(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func TestVerifyReportsAll(t *testing.T) {
	f := newFixture(t, "s-all")
	c, m := clone(f.chunks), clone(f.manifests)
	c[0].Bytes[len(c[0].Bytes)-3] ^= 1    // payload flip in chunk 0
	c = append(c[:2:2], c[3:len(c)-1]...) // chunk 2 and the closing chunk removed
	fs := VerifySession("s-all", c, m, f.keys)
	for _, w := range []struct {
		p   Problem
		seq int64
	}{{ProblemPayload, 0}, {ProblemMissing, 2}, {ProblemTruncated, int64(len(f.chunks) - 2)}} {
		if !has(fs, w.p, w.seq) {
			t.Errorf("missing %s at %d in:\n%s", w.p, w.seq, join(fs))
		}
	}
	for _, x := range fs {
		if x.Problem == ProblemPayload && x.Event != 0 {
			t.Errorf("payload finding not located at event 0: %v", x)
		}
	}
}

func TestDigests(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	signer := NewSigner(priv)
	keys := Keys{signer.ID: {Node: "n1", Key: pub}}
	f := newFixture(t, "s-d")
	var objs []Object
	var prev []byte
	present := map[string][HashSize]byte{}
	for _, c := range f.chunks {
		present[c.Key] = sha256.Sum256(c.Bytes)
	}
	for h := 0; h < 5; h++ {
		var entries []DigestEntry
		if h == 2 { // the session's chunks were sealed in hour 2; other hours are empty
			for i, c := range f.chunks {
				entries = append(entries, DigestEntry{Object: c.Key, Session: "s-d", Seq: uint64(i), Hash: present[c.Key]})
			}
		}
		_, b, err := BuildDigest("n1", t0.Add(time.Duration(h)*time.Hour+17*time.Minute), entries, prev, signer)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, Object{Key: fmt.Sprintf("digests/n1/%d", h), Bytes: b})
		prev = b
	}
	from, to := t0, t0.Add(5*time.Hour)
	ds, fs := VerifyDigests("n1", objs, keys, from, to)
	if len(fs) != 0 || len(ds) != 5 {
		t.Fatalf("intact chain: %d digests, %v", len(ds), fs)
	}
	if fs := CheckListed(ds, present, true); len(fs) != 0 {
		t.Fatalf("listing: %v", fs)
	}

	// A deleted session: its chunks are gone, the digest still lists them.
	if fs := CheckListed(ds, map[string][HashSize]byte{}, true); !has(fs, ProblemMissing, 0) || len(fs) != len(f.chunks) {
		t.Fatalf("deleted session: %v", join(fs))
	}
	// A deleted digest: a gap, and the next one links to nothing present.
	_, fs = VerifyDigests("n1", append(clone(objs[:2]), objs[3:]...), keys, from, to)
	if !hasHour(fs, ProblemDigestGap, t0.Add(2*time.Hour)) {
		t.Fatalf("deleted digest: %v", join(fs))
	}
	// A forged digest for hour 3, re-signed by the node key but linking to a
	// different hour 2: a fork.
	_, forged, _ := BuildDigest("n1", t0.Add(3*time.Hour), nil, objs[0].Bytes, signer)
	bad := clone(objs)
	bad[3].Bytes = forged
	_, fs = VerifyDigests("n1", bad, keys, from, to)
	if !hasHour(fs, ProblemDigestFork, t0.Add(3*time.Hour)) {
		t.Fatalf("forged digest: %v", join(fs))
	}
	// Two digests for one hour.
	_, fs = VerifyDigests("n1", append(clone(objs), Object{Key: "digests/n1/3b", Bytes: forged}), keys, from, to)
	if !hasHour(fs, ProblemDigestFork, t0.Add(3*time.Hour)) {
		t.Fatalf("two digests: %v", join(fs))
	}
	// A flipped byte and an unknown key.
	bad = clone(objs)
	bad[1].Bytes[20] ^= 1
	_, fs = VerifyDigests("n1", bad, keys, from, to)
	if !hasHour(fs, ProblemSignature, t0.Add(time.Hour)) && !hasHour(fs, ProblemUnknownKey, t0.Add(time.Hour)) && len(fs) == 0 {
		t.Fatalf("flipped digest: %v", join(fs))
	}
	_, fs = VerifyDigests("n1", objs, Keys{}, from, to)
	if !hasHour(fs, ProblemUnknownKey, t0) {
		t.Fatalf("unknown key: %v", join(fs))
	}
}

func hasHour(fs []Finding, p Problem, h time.Time) bool {
	for _, f := range fs {
		if f.Problem == p && f.Hour.Equal(h) {
			return true
		}
	}
	return false
}
