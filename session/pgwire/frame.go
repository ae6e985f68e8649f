package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
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
// The returned body aliases the reader's buffer and is valid only until
// the next call to next or shrink.
//
// Buffers on demand: a session mostly waits, and a reader blocked on an
// idle peer holds only its small buffer (readStart bytes). It takes a
// buffer of size bytes from a pool shared by all sessions when a message
// does not fit the small one, or when a read filled the small one while
// a message was still incomplete (a burst: more is waiting). It gives the
// big buffer back as soon as everything read has been handled (in next,
// before reading again, and in shrink), so only sessions in the middle
// of a burst hold one. A message over size is read whole into a buffer
// of its own (large), dropped by shrink when it is over 1 MiB.
//
// Pooled buffers carry other sessions' bytes from before: only buf[r:w],
// bytes this reader read itself, is ever handed out.
type frameReader struct {
	peer string
	rd   io.Reader
	size int // the biggest buffer, the configured size
	max  int
	// buf[r:w] is what has been read and not yet consumed. buf is small,
	// or a pooled buffer of size bytes (big != nil).
	buf   []byte
	r, w  int
	small []byte
	big   *[]byte
	// filled: the last read filled buf to its end.
	filled bool
	// err is a read error not yet returned (it came with data).
	err   error
	large []byte
	// raw is the whole last message (type and length included), for
	// forwarding untouched.
	raw []byte
	// refused is the whole length of a message refused for its size.
	refused int64
}

// readStart is a read buffer's size while its session idles or sends
// small messages: the messages of most round trips (a query, a Bind and
// Execute, a few rows, a command tag) fit in it whole. Measured with
// bench/sessions: 2 x 4 KiB per session instead of 2 x 64 KiB.
const readStart = 4 << 10

// bigBufs holds big buffers between bursts, shared by every reader and
// writer (outBuf); a pooled buffer needs no zeroing, unlike a new one.
var bigBufs sync.Pool // of *[]byte

func newFrameReader(peer string, r io.Reader, size, max int) *frameReader {
	small := make([]byte, min(size, readStart))
	return &frameReader{peer: peer, rd: r, size: size, max: max, buf: small, small: small}
}

// next reads one message. Messages up to the buffer's size are returned
// from the buffer without copying.
func (f *frameReader) next() (typ byte, body []byte, err error) {
	if f.r == f.w {
		f.release()
	}
	if err := f.fill(5); err != nil {
		if errors.Is(err, io.EOF) && f.w > f.r {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, &peerError{f.peer, err}
	}
	hdr := f.buf[f.r : f.r+5]
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
	if total <= f.size {
		if err := f.fill(total); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, &peerError{f.peer, err}
		}
		raw := f.buf[f.r : f.r+total : f.r+total]
		f.r += total
		f.raw = raw
		return typ, raw[5:], nil
	}
	if cap(f.large) < total {
		f.large = make([]byte, total)
	}
	f.large = f.large[:total]
	got := copy(f.large, f.buf[f.r:f.w])
	f.r += got
	if got < total {
		err := f.takeErr()
		if err == nil {
			_, err = io.ReadFull(f.rd, f.large[got:])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, &peerError{f.peer, err}
		}
	}
	f.raw = f.large
	return typ, f.large[5:], nil
}

// fill reads until at least need (at most size) bytes are unread. It
// returns the read error that stopped it, once.
func (f *frameReader) fill(need int) error {
	empty := 0
	for f.w-f.r < need {
		if f.err != nil {
			return f.takeErr()
		}
		if f.w == len(f.buf) || need > len(f.buf)-f.r {
			f.makeRoom(need)
		}
		n, err := f.rd.Read(f.buf[f.w:])
		if n < 0 || n > len(f.buf)-f.w {
			return fmt.Errorf("pgwire: read returned %d", n)
		}
		f.w += n
		f.filled = f.w == len(f.buf)
		f.err = err
		if n > 0 {
			empty = 0
		} else if empty++; err == nil && empty >= 100 {
			return io.ErrNoProgress
		}
	}
	return nil
}

// makeRoom makes room in buf for a message of need bytes starting at r:
// a big buffer when need is over the small one's size or when the small
// one was filled by the last read (a burst), else the unread bytes move
// to the start of buf.
func (f *frameReader) makeRoom(need int) {
	unread := f.buf[f.r:f.w]
	if f.big == nil && f.size > len(f.small) && (need > len(f.small) || f.filled) {
		p, _ := bigBufs.Get().(*[]byte)
		if p == nil || cap(*p) < f.size {
			b := make([]byte, f.size)
			p = &b
		}
		f.big, f.buf = p, (*p)[:f.size]
	}
	f.w = copy(f.buf, unread)
	f.r = 0
}

// release gives a big buffer back once nothing unread is in it (and
// forgets the last message, which it held).
func (f *frameReader) release() {
	if f.r != f.w {
		return
	}
	if f.big != nil {
		bigBufs.Put(f.big)
		f.big, f.buf, f.raw = nil, f.small, nil
	}
	f.r, f.w, f.filled = 0, 0, false
}

func (f *frameReader) takeErr() error {
	err := f.err
	f.err = nil
	return err
}

// peekBody returns what has arrived of the body of a message next refused
// unread (at most the read buffer), for the recording.
func (f *frameReader) peekBody() []byte {
	b := f.buf[f.r:f.w]
	if len(b) <= 5 {
		return nil
	}
	return bytes.Clone(b[5:])
}

// ahead returns what has arrived beyond the last message, without
// consuming it; valid until the next call to next.
func (f *frameReader) ahead() []byte { return f.buf[f.r:f.w] }

// buffered reports whether a read would return without blocking.
func (f *frameReader) buffered() int { return f.w - f.r }

// errAheadFull: readAhead found the buffer full at its biggest.
var errAheadFull = errors.New("read buffer full")

// readAhead reads more of what the peer sends without consuming any of it
// (one read), up to a full buffer of size bytes (then errAheadFull).
// Messages returned before stay valid only if they were copied.
func (f *frameReader) readAhead() error {
	n := f.w - f.r
	if n >= f.size {
		return errAheadFull
	}
	return f.fill(n + 1)
}

// skip reads and drops n bytes: what is buffered first, then the peer's.
func (f *frameReader) skip(n int64) error {
	k := min(n, int64(f.w-f.r))
	f.r += int(k)
	if n -= k; n == 0 {
		return nil
	}
	if err := f.takeErr(); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, f.rd, n)
	return err
}

// shrink gives back the big read buffer when everything read has been
// handled, and drops a large private buffer after a large message, so
// one huge row does not pin memory for the rest of the session.
func (f *frameReader) shrink() {
	f.release()
	if cap(f.large) > 1<<20 {
		f.large = nil
	}
}

// outBuf buffers writes to one peer. Before any bytes leave (explicit flush
// or a full buffer) it calls before, which is where the proxy waits for the
// recording to be durable: no byte reaches a peer ahead of its record.
//
// Like frameReader, it holds a small buffer (outBufStart) while its session
// idles or writes little, and a big one (size bytes, from the pool readers
// share) only while output does not fit the small one; an explicit flush,
// which ends a round trip's output, gives the big one back.
type outBuf struct {
	peer   string
	w      io.Writer
	buf    []byte // callers may append whole messages to buf, then call full
	size   int
	before func() error
	small  []byte
	// big is the pooled buffer taken for this burst, if any: buf's
	// backing array, or (when an appender outgrew it) no one's.
	big *[]byte
}

// outBufStart is an outBuf's small buffer: an idle session holds this
// much, not size.
const outBufStart = 4 << 10

func newOutBuf(peer string, w io.Writer, size int, before func() error) *outBuf {
	small := make([]byte, 0, min(size, outBufStart))
	return &outBuf{peer: peer, w: w, buf: small, small: small, size: size, before: before}
}

func (o *outBuf) write(p []byte) error {
	if len(o.buf)+len(p) > o.size {
		if err := o.send(); err != nil {
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
	if len(o.buf)+len(p) > cap(o.buf) && o.big == nil {
		o.takeBig()
	}
	o.buf = append(o.buf, p...)
	return nil
}

// full sends when callers that append to buf directly have filled it.
func (o *outBuf) full() error {
	if len(o.buf) >= o.size {
		return o.send()
	}
	if o.big == nil && cap(o.buf) > cap(o.small) {
		// An appender outgrew the small buffer: go on in a pooled one
		// rather than let append grow it step by step.
		o.takeBig()
	}
	return nil
}

// takeBig moves buf into a pooled buffer of size bytes.
func (o *outBuf) takeBig() {
	p, _ := bigBufs.Get().(*[]byte)
	if p == nil || cap(*p) < o.size {
		b := make([]byte, o.size)
		p = &b
	}
	o.big = p
	o.buf = append((*p)[:0], o.buf...)
}

// flush sends what is buffered and gives a big buffer back: callers flush
// when a round trip's output is complete.
func (o *outBuf) flush() error {
	err := o.send()
	if len(o.buf) == 0 && o.big != nil {
		bigBufs.Put(o.big)
		o.big, o.buf = nil, o.small[:0]
	}
	return err
}

// send writes what is buffered, once before has returned.
func (o *outBuf) send() error {
	if len(o.buf) == 0 {
		return nil
	}
	if err := o.before(); err != nil {
		return err
	}
	_, err := o.w.Write(o.buf)
	o.buf = o.buf[:0]
	if cap(o.buf) > 4*o.size {
		o.buf = o.small[:0]
		if o.big != nil {
			bigBufs.Put(o.big)
			o.big = nil
		}
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
