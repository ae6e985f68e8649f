package storage

import (
	"errors"
	"io"
)

// ErrNotFound is wrapped by a store's error for a session it holds no
// recording of.
var ErrNotFound = errors.New("storage: no such recording")

// RecordingInfo describes one session's recording in a store.
type RecordingInfo struct {
	ID   string // session id
	Size int64  // bytes stored so far
}

// Stream is one session's recording opened for reading: its bytes exactly
// as written (session/record's file format, header first), which the
// reader verifies itself. Close releases it.
type Stream struct {
	io.ReadCloser
	// Live says a writer may still append to the recording (its node is
	// running and will close or recover the session), so that one which
	// ends without session.end, or inside a frame being written, is not
	// broken. A recording that left its node is never live.
	Live bool
}
