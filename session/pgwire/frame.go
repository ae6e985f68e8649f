package pgwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrMessageTooLarge is returned for a message whose declared length is over
// the configured cap; the session ends with SQLSTATE 08P01.
var ErrMessageTooLarge = errors.New("message too large")

// ErrBadLength is returned for a message whose declared length is impossible.
var ErrBadLength = errors.New("invalid message length")

// peerError is an I/O failure talking to one side of the session.
type peerError struct {
	peer string // "client" or "upstream"
	err  error
}

func (e *peerError) Error() string { return e.peer + ": " + e.err.Error() }
func (e *peerError) Unwrap() error { return e.err }

// frameReader reads typed protocol messages (type byte, int32 length, body).
// The returned body aliases either bufio's buffer or the reader's own buffer
// and is valid only until the next call to next.
type frameReader struct {
	peer string
	r    *bufio.Reader
	max  int
	buf  []byte
	// raw is the whole last message (type and length included), for
	// forwarding untouched.
	raw []byte
	// refused is the whole length of a message refused for its size.
	refused int64
}

func newFrameReader(peer string, r io.Reader, size, max int) *frameReader {
	return &frameReader{peer: peer, r: bufio.NewReaderSize(r, size), max: max}
}

// next reads one message. Small messages are returned straight from bufio's
// buffer without copying.
func (f *frameReader) next() (typ byte, body []byte, err error) {
	hdr, err := f.r.Peek(5)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, &peerError{f.peer, err}
	}
	typ = hdr[0]
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return 0, nil, fmt.Errorf("%w: %d for message type %q", ErrBadLength, n, typ)
	}
	if n-4 > f.max {
		f.refused = int64(n) + 1
		return 0, nil, fmt.Errorf("%w: %d bytes for message type %q (limit %d)", ErrMessageTooLarge, n-4, typ, f.max)
	}
	total := n + 1
	if total <= f.r.Size() {
		raw, err := f.r.Peek(total)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, &peerError{f.peer, err}
		}
		f.raw = raw
		_, _ = f.r.Discard(total)
		return typ, raw[5:], nil
	}
	if cap(f.buf) < total {
		f.buf = make([]byte, total)
	}
	f.buf = f.buf[:total]
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, &peerError{f.peer, err}
	}
	f.raw = f.buf
	return typ, f.buf[5:], nil
}

// peekBody returns what has arrived of the body of a message next refused
// unread (at most the read buffer), for the recording.
func (f *frameReader) peekBody() []byte {
	b, _ := f.r.Peek(f.r.Buffered())
	if len(b) <= 5 {
		return nil
	}
	return bytes.Clone(b[5:])
}

// ahead returns what has arrived beyond the last message, without
// consuming it; valid until the next call to next.
func (f *frameReader) ahead() []byte {
	b, _ := f.r.Peek(f.r.Buffered())
	return b
}

// buffered reports whether a read would return without blocking.
func (f *frameReader) buffered() int { return f.r.Buffered() }

// shrink drops a large private buffer after a large message, so one huge
// row does not pin memory for the rest of the session.
func (f *frameReader) shrink() {
	if cap(f.buf) > 1<<20 {
		f.buf = nil
	}
}

// outBuf buffers writes to one peer. Before any bytes leave (explicit flush
// or a full buffer) it calls before, which is where the proxy waits for the
// recording to be durable: no byte reaches a peer ahead of its record.
type outBuf struct {
	peer   string
	w      io.Writer
	buf    []byte // callers may append whole messages to buf, then call full
	size   int
	before func() error
}

// outBufStart is an outBuf's first capacity: an idle session holds this
// much, not size; appends grow it up to size as output needs.
const outBufStart = 4 << 10

func newOutBuf(peer string, w io.Writer, size int, before func() error) *outBuf {
	return &outBuf{peer: peer, w: w, buf: make([]byte, 0, min(size, outBufStart)), size: size, before: before}
}

func (o *outBuf) write(p []byte) error {
	if len(o.buf)+len(p) > o.size {
		if err := o.flush(); err != nil {
			return err
		}
		if len(p) > o.size {
			if err := o.before(); err != nil {
				return err
			}
			if _, err := o.w.Write(p); err != nil {
				return &peerError{o.peer, err}
			}
			return nil
		}
	}
	o.buf = append(o.buf, p...)
	return nil
}

// full flushes when callers that append to buf directly have filled it.
func (o *outBuf) full() error {
	if len(o.buf) >= o.size {
		return o.flush()
	}
	return nil
}

func (o *outBuf) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	if err := o.before(); err != nil {
		return err
	}
	_, err := o.w.Write(o.buf)
	o.buf = o.buf[:0]
	if cap(o.buf) > 4*o.size {
		o.buf = make([]byte, 0, o.size)
	}
	if err != nil {
		return &peerError{o.peer, err}
	}
	return nil
}

// beginMsg appends a message header with a placeholder length; finishMsg
// fills the length in. Together they build messages in place.
func beginMsg(dst []byte, typ byte) ([]byte, int) {
	start := len(dst)
	return append(dst, typ, 0, 0, 0, 0), start
}

func finishMsg(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// cstring reads a NUL-terminated string from b.
func cstring(b []byte) (s []byte, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}
