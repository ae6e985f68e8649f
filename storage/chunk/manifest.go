package chunk

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"
)

// ManifestMagic starts every manifest.
const ManifestMagic = "PHIGMAN1"

// manifestContext prefixes the manifest's signing input.
const manifestContext = "phigate/manifest/v1\x00"

// Manifest is a node's signed statement that it sealed a chunk: which, its
// hash, and the record chain's head after the chunk's last event. It is
// what anchors a session's chain outside the node.
type Manifest struct {
	Node      string
	KeyID     string // the signing key (KeyID)
	Session   string
	Object    string // the chunk's object key in the store
	Seq       uint64
	ChunkHash [HashSize]byte // SHA-256 of the sealed chunk
	ChainHead [HashSize]byte // record-chain hash after LastEvent
	LastEvent uint64
	Closing   bool
	SealedAt  time.Time
	Signature [SignatureSize]byte
}

func (m *Manifest) appendBody(b []byte) ([]byte, error) {
	for _, f := range []struct {
		what string
		s    string
		max  int
	}{{"node id", m.Node, maxID}, {"key id", m.KeyID, maxID}, {"session id", m.Session, maxID}, {"object key", m.Object, maxObject}} {
		if err := checkID(f.what, f.s, f.max); err != nil {
			return b, err
		}
	}
	b = appendU16(b, Version)
	b = appendStr8(b, m.Node)
	b = appendStr8(b, m.KeyID)
	b = appendStr8(b, m.Session)
	b = appendStr16(b, m.Object)
	b = appendU64(b, m.Seq)
	b = append(b, m.ChunkHash[:]...)
	b = append(b, m.ChainHead[:]...)
	b = appendU64(b, m.LastEvent)
	closing := byte(0)
	if m.Closing {
		closing = 1
	}
	b = append(b, closing)
	b = appendU64(b, uint64(m.SealedAt.UnixNano()))
	return b, nil
}

// SignManifest makes and signs the manifest of a sealed chunk stored under
// object, at time at, and returns it with its encoding.
func SignManifest(s *Sealed, object string, at time.Time, signer Signer) (*Manifest, []byte, error) {
	m := &Manifest{Node: s.Header.Node, KeyID: signer.ID, Session: s.Header.Session, Object: object,
		Seq: s.Header.Seq, ChunkHash: s.Sum, ChainHead: s.Header.ChainHead, LastEvent: s.Header.LastEvent,
		Closing: s.Header.Closing(), SealedAt: at.UTC()}
	out := append([]byte(ManifestMagic), 0, 0, 0, 0)
	out, err := m.appendBody(out)
	if err != nil {
		return nil, nil, err
	}
	body := out[len(ManifestMagic)+4:]
	binary.BigEndian.PutUint32(out[len(ManifestMagic):], uint32(len(body)))
	copy(m.Signature[:], ed25519.Sign(signer.Key, signingInput(manifestContext, body)))
	return m, append(out, m.Signature[:]...), nil
}

func signingInput(context string, body []byte) []byte {
	return append([]byte(context), body...)
}

// framed splits magic | u32 length | body | signature.
func framed(b []byte, magic string, max int) (body []byte, sig [SignatureSize]byte, err error) {
	if len(b) < len(magic)+4+SignatureSize || string(b[:len(magic)]) != magic {
		return nil, sig, fmt.Errorf("%w: not a %s object", ErrFormat, magic)
	}
	n := binary.BigEndian.Uint32(b[len(magic):])
	rest := b[len(magic)+4:]
	if uint64(n) > uint64(max) || int(n) != len(rest)-SignatureSize {
		return nil, sig, fmt.Errorf("%w: body length %d in %d bytes", ErrFormat, n, len(b))
	}
	copy(sig[:], rest[n:])
	return rest[:n], sig, nil
}

// DecodeManifest decodes a manifest; it does not check the signature
// (VerifyManifest does).
func DecodeManifest(b []byte) (*Manifest, error) {
	body, sig, err := framed(b, ManifestMagic, 4096)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Signature: sig}
	r := reader{b: body}
	if v := r.u16("version"); r.err == nil && v != Version {
		return nil, fmt.Errorf("%w: manifest version %d", ErrFormat, v)
	}
	m.Node = r.str8("node id")
	m.KeyID = r.str8("key id")
	m.Session = r.str8("session id")
	m.Object = r.str16("object key", maxObject)
	m.Seq = r.u64("seq")
	m.ChunkHash = r.hash("chunk hash")
	m.ChainHead = r.hash("chain head")
	m.LastEvent = r.u64("last event")
	switch r.u8("closing") {
	case 0:
	case 1:
		m.Closing = true
	default:
		r.fail("closing")
	}
	m.SealedAt = time.Unix(0, int64(r.u64("sealed at"))).UTC()
	r.end("manifest")
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// VerifyManifest checks a manifest's signature with the published keys.
func VerifyManifest(b []byte, keys Keys) (*Manifest, error) {
	m, err := DecodeManifest(b)
	if err != nil {
		return nil, err
	}
	body, _, _ := framed(b, ManifestMagic, 4096)
	if err := keys.verify(m.KeyID, m.Node, m.SealedAt, signingInput(manifestContext, body), m.Signature[:]); err != nil {
		return m, fmt.Errorf("chunk: manifest of %s seq %d: %w", m.Session, m.Seq, err)
	}
	return m, nil
}
