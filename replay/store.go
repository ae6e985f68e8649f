package replay

import (
	"context"

	"github.com/phigate/phigate/storage"
)

// Store is where replay reads recordings from: sessions and their event
// streams, whatever holds them (a node's spool directory today, through
// spool.DirStore; object storage and the node that owns a session later).
// Replay verifies every stream itself, so a store need not be trusted.
type Store interface {
	// List returns the sessions the store holds a recording of, sorted by
	// id (creation order for phigate's ids).
	List(ctx context.Context) ([]storage.RecordingInfo, error)
	// Open returns the recording of sessionID as written, and whether a
	// writer may still append to it. The error wraps storage.ErrNotFound
	// for a session the store does not hold.
	Open(ctx context.Context, sessionID string) (*storage.Stream, error)
}
