package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// Anchor is a session's newest sealed chunk as the sealing node stored it
// in the cluster state (storage/ship writes them about once a second): a
// copy outside the node and outside the store, so that a chunk rewritten
// on the node before its upload, and re-signed with the node's key, is
// still found out.
type Anchor struct {
	Session   string    `json:"session"`
	Node      string    `json:"node"`
	Seq       uint64    `json:"seq"`
	Chunk     []byte    `json:"chunk"` // SHA-256 of the sealed chunk
	Head      []byte    `json:"head"`  // record-chain head after LastEvent
	LastEvent uint64    `json:"last_event"`
	Closing   bool      `json:"closing,omitempty"`
	SealedAt  time.Time `json:"sealed_at"`
}

// ProblemAnchor: the store's chunk is not the one the cluster state
// anchored when it was sealed (replaced before or after upload).
const ProblemAnchor chunk.Problem = "anchor-mismatch"

// CheckAnchors compares anchors with the chunks in the store. A chunk
// not uploaded yet (its node still ships it) is reported as missing only
// when missingOK is false.
func CheckAnchors(ctx context.Context, store blob.Store, anchors []Anchor, missingOK bool) ([]chunk.Finding, error) {
	var out []chunk.Finding
	for _, a := range anchors {
		key := ChunkKey(a.Session, a.Seq)
		f := chunk.Finding{Node: a.Node, Session: a.Session, Seq: int64(a.Seq), Event: -1, Object: key}
		b, err := store.Get(ctx, key)
		switch {
		case errors.Is(err, blob.ErrNotFound):
			if !missingOK {
				f.Problem, f.Detail = chunk.ProblemMissing, "anchored in the cluster state, absent from the store"
				out = append(out, f)
			}
			continue
		case err != nil:
			return out, err
		}
		sum := sha256Sum(b)
		if !bytes.Equal(sum[:], a.Chunk) {
			f.Problem = ProblemAnchor
			f.Detail = fmt.Sprintf("SHA-256 %x… is not the %x… anchored at %s", sum[:6], a.Chunk[:min(6, len(a.Chunk))], a.SealedAt.UTC().Format(time.RFC3339))
			out = append(out, f)
			continue
		}
		if h, ok := peekHeader(b); ok && (h.LastEvent != a.LastEvent || !bytes.Equal(h.ChainHead[:], a.Head)) {
			f.Problem, f.Event = ProblemAnchor, int64(h.FirstEvent)
			f.Detail = "event range or chain head differs from the anchor"
			out = append(out, f)
		}
	}
	return out, nil
}
