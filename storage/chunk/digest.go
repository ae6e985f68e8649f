package chunk

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DigestMagic starts every digest.
const DigestMagic = "PHIGDIG1"

const digestContext = "phigate/digest/v1\x00"

// maxDigestBody caps a digest's body (about a million entries).
const maxDigestBody = 512 << 20

// DigestEntry is one chunk a node sealed in the digest's hour.
type DigestEntry struct {
	Object  string // object key of the chunk
	Session string
	Seq     uint64
	Hash    [HashSize]byte // SHA-256 of the sealed chunk
}

// Digest is a node's signed list of the chunks it sealed in one hour,
// linked to its previous digest (CloudTrail-style): a deleted chunk, a
// deleted session or a deleted digest shows as a gap.
type Digest struct {
	Node          string
	KeyID         string
	Hour          time.Time           // start of the hour, UTC
	Prev          [HashSize]byte      // SHA-256 of the previous digest; zero for the node's first
	PrevSignature [SignatureSize]byte // its signature; zero for the first
	Entries       []DigestEntry
	Signature     [SignatureSize]byte
}

// BuildDigest makes and signs the digest of node for hour (truncated to the
// hour, UTC) listing entries; prev is the encoding of the node's previous
// digest, nil for its first. It returns the digest and its encoding.
func BuildDigest(node string, hour time.Time, entries []DigestEntry, prev []byte, signer Signer) (*Digest, []byte, error) {
	d := &Digest{Node: node, KeyID: signer.ID, Hour: hour.UTC().Truncate(time.Hour), Entries: entries}
	if prev != nil {
		p, err := DecodeDigest(prev)
		if err != nil {
			return nil, nil, fmt.Errorf("chunk: previous digest: %w", err)
		}
		if !p.Hour.Before(d.Hour) {
			return nil, nil, errors.New("chunk: previous digest is not of an earlier hour")
		}
		d.Prev = sha256.Sum256(prev)
		d.PrevSignature = p.Signature
	}
	out := append([]byte(DigestMagic), 0, 0, 0, 0)
	out, err := d.appendBody(out)
	if err != nil {
		return nil, nil, err
	}
	body := out[len(DigestMagic)+4:]
	binary.BigEndian.PutUint32(out[len(DigestMagic):], uint32(len(body)))
	copy(d.Signature[:], ed25519.Sign(signer.Key, signingInput(digestContext, body)))
	return d, append(out, d.Signature[:]...), nil
}

func (d *Digest) appendBody(b []byte) ([]byte, error) {
	if err := checkID("node id", d.Node, maxID); err != nil {
		return b, err
	}
	if err := checkID("key id", d.KeyID, maxID); err != nil {
		return b, err
	}
	if len(d.Entries) > maxEntries {
		return b, fmt.Errorf("chunk: digest of %d entries", len(d.Entries))
	}
	b = appendU16(b, Version)
	b = appendStr8(b, d.Node)
	b = appendStr8(b, d.KeyID)
	b = appendU64(b, uint64(d.Hour.Unix()))
	b = append(b, d.Prev[:]...)
	b = append(b, d.PrevSignature[:]...)
	b = appendU32(b, uint32(len(d.Entries)))
	for _, e := range d.Entries {
		if err := checkID("object key", e.Object, maxObject); err != nil {
			return b, err
		}
		if err := checkID("session id", e.Session, maxID); err != nil {
			return b, err
		}
		b = appendStr16(b, e.Object)
		b = appendStr8(b, e.Session)
		b = appendU64(b, e.Seq)
		b = append(b, e.Hash[:]...)
	}
	return b, nil
}

// DecodeDigest decodes a digest; it does not check the signature.
func DecodeDigest(b []byte) (*Digest, error) {
	body, sig, err := framed(b, DigestMagic, maxDigestBody)
	if err != nil {
		return nil, err
	}
	d := &Digest{Signature: sig}
	r := reader{b: body}
	if v := r.u16("version"); r.err == nil && v != Version {
		return nil, fmt.Errorf("%w: digest version %d", ErrFormat, v)
	}
	d.Node = r.str8("node id")
	d.KeyID = r.str8("key id")
	d.Hour = time.Unix(int64(r.u64("hour")), 0).UTC()
	d.Prev = r.hash("prev")
	copy(d.PrevSignature[:], r.take(SignatureSize, "prev signature"))
	n := r.u32("entry count")
	// Each entry takes at least 43 bytes: a cap from the body length.
	if r.err == nil && (n > maxEntries || uint64(n)*43 > uint64(len(r.b))) {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", ErrFormat, n, len(r.b))
	}
	d.Entries = make([]DigestEntry, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		var e DigestEntry
		e.Object = r.str16("entry object", maxObject)
		e.Session = r.str8("entry session")
		e.Seq = r.u64("entry seq")
		e.Hash = r.hash("entry hash")
		d.Entries = append(d.Entries, e)
	}
	r.end("digest")
	if r.err != nil {
		return nil, r.err
	}
	if d.Hour.Truncate(time.Hour) != d.Hour {
		return nil, fmt.Errorf("%w: digest hour %s not on the hour", ErrFormat, d.Hour)
	}
	return d, nil
}

// VerifyDigest checks a digest's signature with the published keys.
func VerifyDigest(b []byte, keys Keys) (*Digest, error) {
	d, err := DecodeDigest(b)
	if err != nil {
		return nil, err
	}
	body, _, _ := framed(b, DigestMagic, maxDigestBody)
	if err := keys.verify(d.KeyID, d.Node, d.Hour, signingInput(digestContext, body), d.Signature[:]); err != nil {
		return d, fmt.Errorf("chunk: digest of %s at %s: %w", d.Node, d.Hour.Format(time.RFC3339), err)
	}
	return d, nil
}
