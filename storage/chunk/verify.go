package chunk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Problem is the kind of a Finding.
type Problem string

// The problems the verifiers report.
const (
	ProblemMalformed    Problem = "malformed"         // an object does not decode (a flipped byte in a header, a cut object)
	ProblemPayload      Problem = "payload-hash"      // the payload's SHA-256 is not the header's (a flipped byte in the payload)
	ProblemWrongSession Problem = "wrong-session"     // a chunk or manifest of another session
	ProblemDuplicate    Problem = "duplicate"         // two chunks with the same seq
	ProblemReordered    Problem = "reordered"         // chunks out of seq order in the listing
	ProblemMissing      Problem = "missing"           // a seq with no chunk (removed chunk, or deleted session listed in a digest)
	ProblemLink         Problem = "broken-link"       // a chunk's Prev is not the SHA-256 of the chunk before (replaced or reordered)
	ProblemEvents       Problem = "event-gap"         // event indexes do not continue from the chunk before
	ProblemTruncated    Problem = "truncated"         // the session has no closing chunk
	ProblemAfterClose   Problem = "after-close"       // a chunk after the closing chunk
	ProblemNoManifest   Problem = "no-manifest"       // a chunk without a signed manifest
	ProblemMismatch     Problem = "manifest-mismatch" // chunk and its manifest disagree (replaced chunk, moved object)
	ProblemSignature    Problem = "bad-signature"
	ProblemUnknownKey   Problem = "unknown-key" // signed by a key not published, or outside its validity
	ProblemDigestGap    Problem = "digest-gap"  // an hour without a digest, or a digest whose Prev does not link
	ProblemDigestFork   Problem = "digest-fork" // two digests for one hour, or one that links to a digest other than the one present
	ProblemUnlisted     Problem = "unlisted"    // a chunk no digest lists
)

// Finding is one problem and where it is. Seq and Event are -1 where they
// do not apply; Event is the first event of the chunk concerned (an
// encrypted payload cannot be located more finely without the auditors'
// key, and GCM refuses a changed payload whole).
type Finding struct {
	Problem Problem
	Node    string
	Session string
	Seq     int64
	Event   int64
	Hour    time.Time // digests
	Object  string    // object key, when known
	Detail  string
}

func (f Finding) String() string {
	s := string(f.Problem)
	if f.Node != "" {
		s += " node=" + f.Node
	}
	if !f.Hour.IsZero() {
		s += " hour=" + f.Hour.Format(time.RFC3339)
	}
	if f.Session != "" {
		s += " session=" + f.Session
	}
	if f.Seq >= 0 {
		s += fmt.Sprintf(" chunk=%d", f.Seq)
	}
	if f.Event >= 0 {
		s += fmt.Sprintf(" event=%d", f.Event)
	}
	if f.Object != "" {
		s += " object=" + f.Object
	}
	return s + ": " + f.Detail
}

// Object is a stored object: its key and bytes.
type Object struct {
	Key   string
	Bytes []byte
	// Sum is the SHA-256 of Bytes when the caller has it already (a
	// verifier that hashed what it fetched); nil: computed here.
	Sum *[HashSize]byte
}

func signatureProblem(err error) Problem {
	if errors.Is(err, errSignature) {
		return ProblemSignature
	}
	return ProblemUnknownKey
}

// VerifySession checks the chunks of one session, in the order the store
// lists them, and their manifests, with the published node keys only. It
// returns every problem found; none means the session is complete, closed,
// unmodified and signed.
func VerifySession(session string, chunks, manifests []Object, keys Keys) []Finding {
	var out []Finding
	add := func(p Problem, seq int64, event int64, object, format string, args ...any) {
		out = append(out, Finding{Problem: p, Session: session, Seq: seq, Event: event, Object: object, Detail: fmt.Sprintf(format, args...)})
	}

	type entry struct {
		obj string
		c   *Chunk
	}
	var list []entry
	last := int64(-1)
	for _, o := range chunks {
		// The payload's own hash is checked below only for a chunk that its
		// signed manifest does not vouch for: when the chunk's SHA-256 is
		// the one signed, every byte of it, payload included, is what the
		// node sealed, and hashing the payload again would find nothing.
		c, err := decode(o.Bytes, o.Sum, false)
		if c == nil {
			add(ProblemMalformed, -1, -1, o.Key, "%v", err)
			continue
		}
		h := &c.Header
		seq, first := int64(h.Seq), int64(h.FirstEvent)
		if err != nil {
			var pe *PayloadError
			if errors.As(err, &pe) {
				add(ProblemPayload, seq, first, o.Key, "payload of events %d..%d changed", h.FirstEvent, h.LastEvent)
			} else {
				add(ProblemMalformed, seq, first, o.Key, "%v", err)
			}
			// The header still places the chunk: keep checking links.
		}
		if h.Session != session {
			add(ProblemWrongSession, seq, first, o.Key, "chunk of session %q", h.Session)
			continue
		}
		if seq < last {
			add(ProblemReordered, seq, first, o.Key, "listed after chunk %d", last)
		}
		last = seq
		list = append(list, entry{o.Key, c})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].c.Header.Seq < list[j].c.Header.Seq })

	mans := map[uint64][]*Manifest{}
	maxMan := int64(-1)
	for _, o := range manifests {
		m, err := VerifyManifest(o.Bytes, keys)
		if m == nil {
			add(ProblemMalformed, -1, -1, o.Key, "manifest: %v", err)
			continue
		}
		if err != nil {
			add(signatureProblem(err), int64(m.Seq), int64(m.LastEvent), o.Key, "manifest: %v", err)
			continue
		}
		if m.Session != session {
			add(ProblemWrongSession, int64(m.Seq), -1, o.Key, "manifest of session %q", m.Session)
			continue
		}
		mans[m.Seq] = append(mans[m.Seq], m)
		if int64(m.Seq) > maxMan {
			maxMan = int64(m.Seq)
		}
	}

	var prev *Chunk
	closed := false
	next := uint64(0)
	for i, e := range list {
		h := &e.c.Header
		seq, first := int64(h.Seq), int64(h.FirstEvent)
		if i > 0 && h.Seq == list[i-1].c.Header.Seq {
			add(ProblemDuplicate, seq, first, e.obj, "second chunk with seq %d (first under %s)", h.Seq, list[i-1].obj)
			continue
		}
		for ; next < h.Seq; next++ {
			add(ProblemMissing, int64(next), -1, "", "no chunk with seq %d", next)
			prev = nil
		}
		next = h.Seq + 1
		if closed {
			add(ProblemAfterClose, seq, first, e.obj, "chunk after the closing chunk")
		}
		closed = closed || h.Closing()
		switch {
		case h.Seq == 0 && h.FirstEvent != 0:
			add(ProblemEvents, seq, first, e.obj, "first chunk starts at event %d", h.FirstEvent)
		case prev != nil && prev.Sum != h.Prev:
			add(ProblemLink, seq, first, e.obj, "previous-chunk hash %x… is not chunk %d's %x…", h.Prev[:6], prev.Header.Seq, prev.Sum[:6])
		}
		if prev != nil && h.FirstEvent != prev.Header.LastEvent+1 {
			add(ProblemEvents, seq, first, e.obj, "starts at event %d, chunk %d ended at %d", h.FirstEvent, prev.Header.Seq, prev.Header.LastEvent)
		}
		prev = e.c

		ms := mans[h.Seq]
		delete(mans, h.Seq)
		if len(ms) == 0 {
			if sha256.Sum256(e.c.Payload) != h.PayloadHash {
				add(ProblemPayload, seq, first, e.obj, "payload of events %d..%d changed", h.FirstEvent, h.LastEvent)
			}
			add(ProblemNoManifest, seq, first, e.obj, "no signed manifest")
			continue
		}
		for _, m := range ms {
			switch {
			case m.ChunkHash != e.c.Sum:
				if sha256.Sum256(e.c.Payload) != h.PayloadHash {
					add(ProblemPayload, seq, first, e.obj, "payload of events %d..%d changed", h.FirstEvent, h.LastEvent)
				}
				add(ProblemMismatch, seq, first, e.obj, "chunk SHA-256 %x… is not the signed %x… (chunk replaced or changed)", e.c.Sum[:6], m.ChunkHash[:6])
			case m.Object != e.obj && e.obj != "":
				add(ProblemMismatch, seq, first, e.obj, "manifest signs object %q", m.Object)
			case !bytes.Equal(m.ChainHead[:], h.ChainHead[:]) || m.LastEvent != h.LastEvent || m.Closing != h.Closing() || m.Node != h.Node:
				add(ProblemMismatch, seq, first, e.obj, "header and manifest disagree on chain head, last event, closing or node")
			}
		}
	}
	// Manifests whose chunk is gone: removed chunks, including from the end.
	for seq := next; int64(seq) <= maxMan; seq++ {
		if ms := mans[seq]; len(ms) > 0 {
			add(ProblemMissing, int64(seq), -1, ms[0].Object, "signed manifest but no chunk (events up to %d)", ms[0].LastEvent)
		}
	}
	if !closed {
		add(ProblemTruncated, int64(next)-1, -1, "", "no closing chunk after chunk %d", int64(next)-1)
	}
	return out
}

// VerifyDigests checks the digest chain of one node over the hours
// [from, to): one digest per hour, each signed by a published key of the
// node and linked to the one before. digests may be in any order. The first
// digest's link is checked only when the digest before it is given.
func VerifyDigests(node string, digests []Object, keys Keys, from, to time.Time) ([]*Digest, []Finding) {
	var out []Finding
	add := func(p Problem, hour time.Time, object, format string, args ...any) {
		out = append(out, Finding{Problem: p, Node: node, Seq: -1, Event: -1, Hour: hour, Object: object, Detail: fmt.Sprintf(format, args...)})
	}
	type entry struct {
		obj string
		d   *Digest
		raw []byte
	}
	byHour := map[int64][]entry{}
	for _, o := range digests {
		d, err := VerifyDigest(o.Bytes, keys)
		if d == nil {
			add(ProblemMalformed, time.Time{}, o.Key, "digest: %v", err)
			continue
		}
		if err != nil {
			add(signatureProblem(err), d.Hour, o.Key, "%v", err)
			continue
		}
		if d.Node != node {
			add(ProblemMismatch, d.Hour, o.Key, "digest of node %q", d.Node)
			continue
		}
		byHour[d.Hour.Unix()] = append(byHour[d.Hour.Unix()], entry{o.Key, d, o.Bytes})
	}
	from, to = from.UTC().Truncate(time.Hour), to.UTC()
	var good []*Digest
	var prev *entry
	for h := from; h.Before(to); h = h.Add(time.Hour) {
		es := byHour[h.Unix()]
		delete(byHour, h.Unix())
		switch {
		case len(es) == 0:
			add(ProblemDigestGap, h, "", "no digest for this hour")
			prev = nil
			continue
		case len(es) > 1:
			add(ProblemDigestFork, h, es[1].obj, "%d digests for this hour", len(es))
		}
		e := es[0]
		if prev != nil {
			want := sha256Sum(prev.raw)
			if e.d.Prev != want || e.d.PrevSignature != prev.d.Signature {
				add(ProblemDigestFork, h, e.obj, "links to digest %x…, not to the previous hour's %x…", e.d.Prev[:6], want[:6])
			}
		}
		good = append(good, e.d)
		prev = &e
	}
	// Digests left in byHour lie outside [from, to): not asked about.
	return good, out
}

// CheckListed compares what the digests list with the chunks present
// (object key -> SHA-256 of its bytes): a listed chunk that is absent or
// different, and, when unlisted is true, a present chunk no digest lists.
func CheckListed(digests []*Digest, present map[string][HashSize]byte, unlisted bool) []Finding {
	var out []Finding
	listed := map[string]bool{}
	for _, d := range digests {
		for _, e := range d.Entries {
			listed[e.Object] = true
			got, ok := present[e.Object]
			f := Finding{Node: d.Node, Hour: d.Hour, Session: e.Session, Seq: int64(e.Seq), Event: -1, Object: e.Object}
			switch {
			case !ok:
				f.Problem, f.Detail = ProblemMissing, "listed in the digest, not in the store (deleted chunk or session)"
			case got != e.Hash:
				f.Problem, f.Detail = ProblemMismatch, fmt.Sprintf("SHA-256 %x… is not the listed %x…", got[:6], e.Hash[:6])
			default:
				continue
			}
			out = append(out, f)
		}
	}
	if unlisted {
		keys := make([]string, 0, len(present))
		for k := range present {
			if !listed[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, Finding{Problem: ProblemUnlisted, Seq: -1, Event: -1, Object: k, Detail: "no digest lists this chunk"})
		}
	}
	return out
}
