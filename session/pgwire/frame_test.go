package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its stream in reads of the sizes given, in turn.
type chunkReader struct {
	data   []byte
	chunks []int
	i      int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.chunks) > 0 {
		n = min(n, max(1, c.chunks[c.i%len(c.chunks)]))
		c.i++
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func wireMsg(typ byte, body []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{typ}, uint32(4+len(body))), body...)
}

// A reader holds its small buffer while messages are small, a big one
// only while a message or a burst needs it, and gives it back as soon as
// it has been drained.
func TestFrameReaderBuffers(t *testing.T) {
	const size = 64 << 10
	small := wireMsg('Q', []byte("SELECT 1\x00"))
	mid := wireMsg('d', bytes.Repeat([]byte("m"), 20<<10))
	huge := wireMsg('d', bytes.Repeat([]byte("h"), 100<<10))
	var burst []byte
	for range 200 {
		burst = append(burst, wireMsg('D', bytes.Repeat([]byte("r"), 100))...)
	}
	stream := bytes.Join([][]byte{small, small, mid, small, burst, huge, small}, nil)
	// The peer writes small, small, mid, small and burst, huge, small in
	// separate writes: a read returns at most one write.
	writes := []int{len(small), len(small), len(mid), len(small), len(burst), len(huge), len(small)}
	fr := newFrameReader("upstream", &writeReader{data: stream, writes: writes}, size, 1<<20)
	check := func(what string, wantTyp byte, wantLen int, wantBig bool) {
		t.Helper()
		typ, body, err := fr.next()
		if err != nil || typ != wantTyp || len(body) != wantLen {
			t.Fatalf("%s: next = %q %d bytes, %v; want %q %d", what, typ, len(body), err, wantTyp, wantLen)
		}
		if got := fr.big != nil; got != wantBig {
			t.Fatalf("%s: holds a big buffer: %v, want %v", what, got, wantBig)
		}
		if fr.buffered() == 0 {
			fr.shrink()
			if fr.big != nil {
				t.Fatalf("%s: a drained reader kept its big buffer", what)
			}
		}
	}
	check("small", 'Q', len(small)-5, false)
	check("small again", 'Q', len(small)-5, false)
	check("mid", 'd', len(mid)-5, true)
	check("small after mid", 'Q', len(small)-5, false)
	for i := range 200 {
		typ, body, err := fr.next()
		if err != nil || typ != 'D' || len(body) != 100 {
			t.Fatalf("burst row %d: %q %d %v", i, typ, len(body), err)
		}
		if i == 199 && fr.big == nil {
			t.Fatal("a burst that filled the small buffer did not take a big one")
		}
	}
	fr.shrink()
	check("huge", 'd', len(huge)-5, false)
	check("small after huge", 'Q', len(small)-5, false)
	if _, _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

// writeReader returns each of the peer's writes in reads of at most that
// write, as a socket would when the reader keeps up.
type writeReader struct {
	data   []byte
	writes []int
	left   int
}

func (w *writeReader) Read(p []byte) (int, error) {
	if len(w.data) == 0 {
		return 0, io.EOF
	}
	if w.left == 0 && len(w.writes) > 0 {
		w.left, w.writes = w.writes[0], w.writes[1:]
	}
	if w.left == 0 {
		w.left = len(w.data)
	}
	n := copy(p, w.data[:w.left])
	w.data, w.left = w.data[n:], w.left-n
	return n, nil
}

// An error that arrives with data is returned after the data, once.
func TestFrameReaderErrorAfterData(t *testing.T) {
	msg := wireMsg('Q', []byte("x\x00"))
	fr := newFrameReader("client", &errReader{data: msg, err: errors.New("boom")}, 64<<10, 100)
	if typ, _, err := fr.next(); err != nil || typ != 'Q' {
		t.Fatalf("first: %q %v", typ, err)
	}
	if _, _, err := fr.next(); err == nil || err.Error() != "client: boom" {
		t.Fatalf("second: %v", err)
	}
}

type errReader struct {
	data []byte
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	n := copy(p, e.data)
	e.data = e.data[n:]
	if len(e.data) == 0 {
		return n, e.err
	}
	return n, nil
}

// Whatever the reads' sizes, the reader returns the stream's messages
// whole and in order, and stops at the first that is malformed.
func FuzzFrameReaderReads(f *testing.F) {
	f.Add([]byte{3, 0, 2, 9}, uint16(5000), uint8(7), uint8(2))
	f.Add([]byte{1}, uint16(9000), uint8(0), uint8(0))
	f.Add([]byte{200, 1, 17}, uint16(70), uint8(40), uint8(250))
	f.Fuzz(func(t *testing.T, chunks []byte, bigLen uint16, count, smallLen uint8) {
		var stream []byte
		var want [][]byte
		for i := range int(count%40) + 1 {
			n := int(smallLen) * (i%3 + 1)
			if i%5 == 4 {
				n = int(bigLen)
			}
			m := wireMsg(byte('A'+i%26), bytes.Repeat([]byte{byte(i)}, n))
			stream = append(stream, m...)
			want = append(want, m)
		}
		sizes := make([]int, len(chunks))
		for i, c := range chunks {
			sizes[i] = int(c) * 37
		}
		fr := newFrameReader("client", &chunkReader{data: stream, chunks: sizes}, 8<<10, 40<<10)
		for i, m := range want {
			typ, body, err := fr.next()
			if err != nil || typ != m[0] || !bytes.Equal(body, m[5:]) || !bytes.Equal(fr.raw, m) {
				t.Fatalf("message %d: %q %d bytes %v; want %q %d bytes", i, typ, len(body), err, m[0], len(m)-5)
			}
			if fr.buffered() == 0 {
				fr.shrink()
			}
		}
		if _, _, err := fr.next(); !errors.Is(err, io.EOF) {
			t.Fatalf("end: %v", err)
		}
	})
}

// A writer holds its small buffer between round trips, a big one only
// while a round trip's output needs it, and sends every byte in order.
func TestOutBufBuffers(t *testing.T) {
	const size = 64 << 10
	var sent bytes.Buffer
	befores := 0
	o := newOutBuf("client", &sent, size, func() error { befores++; return nil })
	var want []byte
	put := func(p []byte) {
		t.Helper()
		want = append(want, p...)
		if err := o.write(p); err != nil {
			t.Fatal(err)
		}
	}
	appendDirect := func(p []byte) {
		t.Helper()
		want = append(want, p...)
		o.buf = append(o.buf, p...)
		if err := o.full(); err != nil {
			t.Fatal(err)
		}
	}
	flush := func(what string) {
		t.Helper()
		if err := o.flush(); err != nil {
			t.Fatal(err)
		}
		if o.big != nil || cap(o.buf) != outBufStart || len(o.buf) != 0 {
			t.Fatalf("%s: after a flush the writer holds %d bytes of buffer (big: %v)", what, cap(o.buf), o.big != nil)
		}
		if !bytes.Equal(sent.Bytes(), want) {
			t.Fatalf("%s: sent %d bytes, not the %d written", what, sent.Len(), len(want))
		}
	}
	put([]byte("small reply"))
	flush("small")
	for i := range 100 {
		put(bytes.Repeat([]byte{byte(i)}, 1000))
	}
	if o.big == nil {
		t.Fatal("100 KB of output did not take a big buffer")
	}
	flush("written burst")
	for i := range 100 {
		appendDirect(bytes.Repeat([]byte{byte(i)}, 1500))
	}
	flush("appended burst")
	put(bytes.Repeat([]byte("h"), 3*size)) // over size: written through
	appendDirect(bytes.Repeat([]byte("a"), 5*size))
	flush("huge")
	if befores == 0 {
		t.Fatal("before was never called")
	}
}
