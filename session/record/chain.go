package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrTooLarge is returned by Seal for an event whose JSON encoding exceeds
// MaxPayload. The chain does not advance, so the caller may split the
// content (COPY data, for example) and seal again.
var ErrTooLarge = errors.New("record: event exceeds the maximum payload")

// Chain seals the events of one session into frames: it assigns Seq and
// Prev and keeps the hash of the last payload. A Chain is not safe for
// concurrent use; the caller serializes Seal in the order the frames are
// appended to the recording.
type Chain struct {
	session string
	next    uint64
	prev    [HashSize]byte
	head    string // hex of prev, handed to the next event as Prev
}

// NewChain starts the chain of a new recording. Its first Seal output begins
// with the file header, so that a recording file is exactly the
// concatenation of what Seal returns.
func NewChain(sessionID string) *Chain {
	c := &Chain{session: sessionID}
	c.setPrev(Genesis(sessionID))
	return c
}

func (c *Chain) setPrev(sum [HashSize]byte) {
	c.prev = sum
	var b [2 * HashSize]byte
	hex.Encode(b[:], sum[:])
	c.head = string(b[:]) // the one allocation per event: Prev must be a string
}

// Resume continues the chain of an existing recording from its last frame,
// as found on disk after a crash. last holds exactly one frame, optionally
// preceded by the file header (when it is event 0). Resume checks the frame's
// hash and session, and returns the last event so that the caller can tell
// whether the recording was already closed (Kind == KindSessionEnd).
func Resume(sessionID string, last []byte) (*Chain, *Event, error) {
	if bytes.HasPrefix(last, []byte(Magic)) {
		// A frame never starts with the magic: as a length, "PHIG" is far
		// above MaxPayload.
		last = last[HeaderSize:]
	}
	if len(last) < FrameOverhead {
		return nil, nil, fmt.Errorf("record: resume: short frame (%d bytes)", len(last))
	}
	n := binary.BigEndian.Uint32(last)
	if n > MaxPayload || int(n) != len(last)-FrameOverhead {
		return nil, nil, fmt.Errorf("record: resume: frame length %d does not match %d bytes", n, len(last))
	}
	payload := last[4 : 4+n]
	sum := sha256.Sum256(payload)
	if !bytes.Equal(sum[:], last[4+n:]) {
		return nil, nil, errors.New("record: resume: payload hash mismatch")
	}
	ev := new(Event)
	if err := json.Unmarshal(payload, ev); err != nil {
		return nil, nil, fmt.Errorf("record: resume: decode event: %w", err)
	}
	if ev.Session != sessionID {
		return nil, nil, fmt.Errorf("record: resume: frame belongs to session %q, not %q", ev.Session, sessionID)
	}
	c := &Chain{session: sessionID, next: ev.Seq + 1}
	c.setPrev(sum)
	return c, ev, nil
}

// Next is the sequence number the next sealed event will get.
func (c *Chain) Next() uint64 { return c.next }

// Head is the hex hash the next sealed event will carry as Prev.
func (c *Chain) Head() string { return c.head }

// Seal sets ev.Seq and ev.Prev, encodes ev as JSON and appends its frame to
// dst (preceded by the file header when ev is event 0), returning the
// extended slice. ev.Session must be empty (Seal fills it in) or the chain's
// session. On error dst is returned unchanged and the chain does not
// advance.
func (c *Chain) Seal(dst []byte, ev *Event) ([]byte, error) {
	if ev.Session == "" {
		ev.Session = c.session
	} else if ev.Session != c.session {
		return dst, fmt.Errorf("record: seal: event of session %q in chain of %q", ev.Session, c.session)
	}
	ev.Seq = c.next
	ev.Prev = c.head
	// The payload is encoded in place, after room for its length, so that
	// a frame is built with no copy and no buffer of the chain's own.
	out := dst
	if c.next == 0 {
		out = append(out, Magic...)
	}
	at := len(out)
	out = append(out, 0, 0, 0, 0)
	out, err := ev.AppendJSON(out)
	if err != nil {
		return dst, fmt.Errorf("record: seal %s: %w", ev.Kind, err)
	}
	payload := out[at+4:]
	if len(payload) > MaxPayload {
		return dst, fmt.Errorf("%w: %s event of %d bytes", ErrTooLarge, ev.Kind, len(payload))
	}
	binary.BigEndian.PutUint32(out[at:], uint32(len(payload)))
	sum := sha256.Sum256(payload)
	out = append(out, sum[:]...)
	c.next++
	c.setPrev(sum)
	return out, nil
}
