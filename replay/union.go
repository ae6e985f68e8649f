package replay

import (
	"context"
	"errors"
	"sort"

	"github.com/phigate/phigate/storage"
)

// Union reads several stores as one: a node's spool (sessions still there)
// and the long-term store (sessions shipped and removed from the spool).
// List merges their sessions; a session in several is listed once, as the
// first store that has it lists it, and Open reads it from that store.
type Union []Store

var _ Store = Union(nil)

// List implements Store.
func (u Union) List(ctx context.Context) ([]storage.RecordingInfo, error) {
	seen := map[string]bool{}
	var out []storage.RecordingInfo
	for _, s := range u {
		list, err := s.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range list {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Open implements Store: the session from the first store that has it.
func (u Union) Open(ctx context.Context, sessionID string) (*storage.Stream, error) {
	var notFound error
	for _, s := range u {
		st, err := s.Open(ctx, sessionID)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		notFound = err
	}
	if notFound == nil {
		notFound = storage.ErrNotFound
	}
	return nil, notFound
}
