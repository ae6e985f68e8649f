package record

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

var (
	// ErrCorrupt classifies a ChainError where the recording was altered or
	// damaged: a bad header, a hash or JSON that does not check, an event
	// removed, reordered, inserted or moved from another session, or an
	// event after session.end.
	ErrCorrupt = errors.New("recording corrupt")
	// ErrTruncated classifies a ChainError where the recording stops early:
	// in the middle of a frame, or without a session.end event.
	ErrTruncated = errors.New("recording truncated")
)

// ChainError locates the first place where a recording does not verify.
// Everything before Index verified. It wraps ErrCorrupt or ErrTruncated.
type ChainError struct {
	Index  uint64 // index (= expected Seq) of the event where the chain breaks
	Offset int64  // byte offset in the file of that event's frame
	Reason string // what does not hold, for a person
	Err    error  // ErrCorrupt or ErrTruncated
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("record: chain broken at event %d (byte %d): %s", e.Index, e.Offset, e.Reason)
}

func (e *ChainError) Unwrap() error { return e.Err }

// Summary describes what a Reader or Verify has verified so far.
type Summary struct {
	Events    uint64    // events verified
	Bytes     int64     // bytes verified, header included
	First     time.Time // time of the first event
	Last      time.Time // time of the last event
	Head      string    // hex SHA-256 of the last payload (the genesis hash when Events is 0)
	Closed    bool      // the last event is session.end
	EndReason string    // SessionEnd.Reason when Closed
}

// Reader streams and verifies the events of one recording. It holds one
// frame in memory at a time, so recordings of any size verify in constant
// memory (bounded by MaxPayload).
type Reader struct {
	br        *bufio.Reader
	session   string
	started   bool
	off       int64
	prev      [HashSize]byte
	payload   []byte
	sum       Summary
	err       error
	hexPrev   [2 * HashSize]byte
	lenBuf    [4]byte
	hashBuf   [HashSize]byte
	headerBuf [HeaderSize]byte
}

// NewReader verifies r as the recording of sessionID.
func NewReader(r io.Reader, sessionID string) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), session: sessionID, prev: Genesis(sessionID)}
	rd.sum.Head = hex.EncodeToString(rd.prev[:])
	return rd
}

// Summary reports what has been verified so far.
func (r *Reader) Summary() Summary { return r.sum }

// Payload is the raw JSON of the event Next last returned, exactly as
// recorded. It is valid until the next call to Next.
func (r *Reader) Payload() []byte { return r.payload }

// Next returns the next verified event. It returns io.EOF when the
// recording ends at a frame boundary (whether or not the session was
// closed: see Summary().Closed), and a *ChainError at the first frame that
// does not verify; after an error every call returns the same error.
func (r *Reader) Next() (*Event, error) {
	if r.err != nil {
		return nil, r.err
	}
	ev, err := r.next()
	if err != nil {
		r.err = err
		r.payload = nil
	}
	return ev, err
}

func (r *Reader) fail(kind error, format string, args ...any) error {
	return &ChainError{Index: r.sum.Events, Offset: r.off, Reason: fmt.Sprintf(format, args...), Err: kind}
}

// readFull reads len(p) bytes; it returns how many it got and whether the
// stream ended first. Errors other than end of input are returned as is.
func (r *Reader) readFull(p []byte) (int, error) {
	n, err := io.ReadFull(r.br, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func (r *Reader) next() (*Event, error) {
	if !r.started {
		n, err := r.readFull(r.headerBuf[:])
		switch {
		case n == 0 && err == io.EOF:
			return nil, io.EOF
		case err != nil && err != io.EOF:
			return nil, fmt.Errorf("record: read header: %w", err)
		case !bytes.HasPrefix([]byte(Magic), r.headerBuf[:n]):
			return nil, r.fail(ErrCorrupt, "bad file header %q, want %q", r.headerBuf[:n], Magic)
		case n < HeaderSize:
			return nil, r.fail(ErrTruncated, "truncated file header (%d of %d bytes)", n, HeaderSize)
		}
		r.started = true
		r.off = int64(HeaderSize)
		r.sum.Bytes = r.off
	}

	n, err := r.readFull(r.lenBuf[:])
	switch {
	case n == 0 && err == io.EOF:
		return nil, io.EOF
	case err != nil && err != io.EOF:
		return nil, fmt.Errorf("record: read frame %d: %w", r.sum.Events, err)
	case n < len(r.lenBuf):
		return nil, r.fail(ErrTruncated, "partial frame: %d of 4 length bytes", n)
	}
	size := binary.BigEndian.Uint32(r.lenBuf[:])
	if size == 0 || size > MaxPayload {
		return nil, r.fail(ErrCorrupt, "frame length %d out of range (1..%d)", size, MaxPayload)
	}
	if cap(r.payload) > 4<<20 {
		r.payload = nil // the previous event was huge; don't hold on to it
	}
	// Grow the buffer as bytes actually arrive, so that a corrupt length
	// near MaxPayload at the end of a short file costs little.
	r.payload = r.payload[:0]
	for uint32(len(r.payload)) < size {
		step := min(int(size)-len(r.payload), 1<<20)
		start := len(r.payload)
		r.payload = append(r.payload, make([]byte, step)...)
		got, err := r.readFull(r.payload[start:])
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("record: read frame %d: %w", r.sum.Events, err)
		}
		if got < step {
			return nil, r.fail(ErrTruncated, "partial frame: %d of %d payload bytes", start+got, size)
		}
	}
	n, err = r.readFull(r.hashBuf[:])
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("record: read frame %d: %w", r.sum.Events, err)
	}
	if n < HashSize {
		return nil, r.fail(ErrTruncated, "partial frame: %d of %d hash bytes", n, HashSize)
	}
	sum := sha256.Sum256(r.payload)
	if sum != r.hashBuf {
		return nil, r.fail(ErrCorrupt, "payload hash mismatch (altered frame)")
	}

	ev := new(Event)
	if err := json.Unmarshal(r.payload, ev); err != nil {
		return nil, r.fail(ErrCorrupt, "invalid event encoding: %v", err)
	}
	switch {
	case r.sum.Closed:
		return nil, r.fail(ErrCorrupt, "event after session.end")
	case ev.Session != r.session:
		return nil, r.fail(ErrCorrupt, "event of session %q in recording of %q", ev.Session, r.session)
	case ev.Seq != r.sum.Events:
		return nil, r.fail(ErrCorrupt, "sequence number %d, want %d (event removed, reordered or inserted)", ev.Seq, r.sum.Events)
	}
	hex.Encode(r.hexPrev[:], r.prev[:])
	if ev.Prev != string(r.hexPrev[:]) {
		return nil, r.fail(ErrCorrupt, "previous-event hash does not match event %d", int64(r.sum.Events)-1)
	}

	r.prev = sum
	r.off += int64(FrameOverhead) + int64(size)
	if r.sum.Events == 0 {
		r.sum.First = ev.Time
	}
	r.sum.Events++
	r.sum.Bytes = r.off
	r.sum.Last = ev.Time
	r.sum.Head = hex.EncodeToString(sum[:])
	if ev.Kind == KindSessionEnd {
		r.sum.Closed = true
		if ev.End != nil {
			r.sum.EndReason = ev.End.Reason
		}
	}
	return ev, nil
}

// Verify streams the recording of sessionID from r, checks every frame and
// the chain, and calls visit (when not nil) with each verified event and its
// raw payload (valid until visit returns). It stops at the first break and
// returns a *ChainError locating it, together with a Summary of what did
// verify; an error from visit or from r is returned as is.
//
// live says the session is known to be still running: then a recording that
// ends without session.end, or with a partial last frame (being written), is
// not an error. Otherwise it is: "truncated after event N: session not
// closed".
func Verify(r io.Reader, sessionID string, live bool, visit func(ev *Event, payload []byte) error) (Summary, error) {
	rd := NewReader(r, sessionID)
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if live && errors.Is(err, ErrTruncated) {
				break
			}
			return rd.Summary(), err
		}
		if visit != nil {
			if err := visit(ev, rd.Payload()); err != nil {
				return rd.Summary(), err
			}
		}
	}
	sum := rd.Summary()
	if !sum.Closed && !live {
		reason := "empty recording: session not closed"
		if sum.Events > 0 {
			reason = fmt.Sprintf("truncated after event %d: session not closed", sum.Events-1)
		}
		return sum, &ChainError{Index: sum.Events, Offset: sum.Bytes, Reason: reason, Err: ErrTruncated}
	}
	return sum, nil
}
