package record

import "crypto/sha256"

// Magic is the header of every recording file: format name and version.
const Magic = "PHIGREC1"

const (
	// HeaderSize is the length of Magic at the start of a recording file.
	HeaderSize = len(Magic)
	// MaxPayload caps the payload of one frame, so that a corrupt length
	// field can never make a reader allocate more than this.
	MaxPayload = 64 << 20
	// HashSize is the length of the SHA-256 that ends every frame.
	HashSize = sha256.Size
	// FrameOverhead is what a frame adds to its payload: length and hash.
	FrameOverhead = 4 + HashSize
	// MaxFrame is the longest a single Seal output can be: the file header
	// (only before event 0) plus a frame with a payload of MaxPayload.
	MaxFrame = HeaderSize + FrameOverhead + MaxPayload
)

// genesisPrefix binds the chain of a session to its id: event 0's Prev is
// SHA-256(genesisPrefix + sessionID).
const genesisPrefix = "phigate/record/v1\x00"

// Genesis is the hash event 0 of sessionID links to.
func Genesis(sessionID string) [HashSize]byte {
	return sha256.Sum256([]byte(genesisPrefix + sessionID))
}
