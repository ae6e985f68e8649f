package spool

import (
	"bytes"
	"hash/crc32"
	"testing"
)

func sampleJournal() []byte {
	var b []byte
	ckpt := appendCheckpointEntry(nil, openSession{id: sessionID(1), size: 900, last: 600})
	b = appendRecord(b, recCheckpoint, 100, "", 0, ckpt, crc32.Checksum(ckpt, castagnoli))
	frame := []byte("PHIGREC1\x00\x00\x00\x02{}0123456789012345678901234567890123456789")
	b = appendRecord(b, recFrame, 100, sessionID(2), 0, frame, crc32.Checksum(frame, castagnoli))
	b = appendRecord(b, recClose, 100+LSN(recordSize(sessionID(2), len(frame))), sessionID(2), int64(len(frame)), nil, crc32.Checksum(nil, castagnoli))
	return b
}

func TestJournalRoundTrip(t *testing.T) {
	data := sampleJournal()
	sc := newScanner(bytes.NewReader(append(data, make([]byte, 100)...)))
	var types []byte
	for {
		rec, ok := sc.next()
		if !ok {
			break
		}
		types = append(types, rec.typ)
	}
	if !bytes.Equal(types, []byte{recCheckpoint, recFrame, recClose}) || sc.err != nil {
		t.Fatalf("scanned %v (%v)", types, sc.err)
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x10
		sc := newScanner(bytes.NewReader(bad))
		n := 0
		for {
			if _, ok := sc.next(); !ok {
				break
			}
			n++
		}
		if n == 3 {
			t.Fatalf("flipped byte %d of the journal went unnoticed", i)
		}
	}
	hdr := appendSegmentHeader(nil, 7, 12345)
	if seq, start, ok := parseSegmentHeader(hdr); !ok || seq != 7 || start != 12345 {
		t.Fatalf("segment header round trip: %d %d %v", seq, start, ok)
	}
	hdr[20] ^= 1
	if _, _, ok := parseSegmentHeader(hdr); ok {
		t.Fatal("corrupt segment header accepted")
	}
}

// FuzzJournalScan: the recovery scanner takes arbitrary bytes without
// panicking, and whatever it accepts is exactly what appendRecord writes.
func FuzzJournalScan(f *testing.F) {
	data := sampleJournal()
	f.Add(data)
	f.Add(data[:len(data)-5])
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := newScanner(bytes.NewReader(data))
		pos := 0
		for {
			rec, ok := sc.next()
			if !ok {
				break
			}
			if pos+rec.size > len(data) {
				t.Fatalf("record of %d bytes at %d past the end (%d)", rec.size, pos, len(data))
			}
			again := appendRecord(nil, rec.typ, rec.lsn, string(rec.id), rec.off, rec.data, crc32.Checksum(rec.data, castagnoli))
			if !bytes.Equal(again, data[pos:pos+rec.size]) {
				t.Fatalf("accepted a record that does not re-encode identically at %d", pos)
			}
			if rec.typ == recCheckpoint {
				_ = parseCheckpoint(rec.data, func(openSession) {})
			}
			pos += rec.size
		}
	})
}

// FuzzCheckpoint: checkpoint data never panics the parser, and what it
// accepts re-encodes to the same bytes.
func FuzzCheckpoint(f *testing.F) {
	f.Add(appendCheckpointEntry(appendCheckpointEntry(nil, openSession{id: "a", size: 10, last: 0}), openSession{id: sessionID(3), size: 1 << 40, last: 1<<40 - 300}))
	f.Add([]byte{0})
	f.Add([]byte{200, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var again []byte
		if err := parseCheckpoint(data, func(s openSession) { again = appendCheckpointEntry(again, s) }); err != nil {
			return
		}
		if !bytes.Equal(again, data) {
			t.Fatal("accepted checkpoint does not re-encode identically")
		}
	})
}
