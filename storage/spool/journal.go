package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Journal layout.
//
// A segment starts with a 32-byte header:
//
//	"PHIGJNL1" | seq u64 | start LSN u64 | crc32c(previous 24 bytes) u32 | 0 u32
//
// followed by a checkpoint record (the sessions open when the segment was
// started) and then records back to back. Every record is:
//
//	hcrc u32 | dcrc u32 | data length u32 | type u8 | id length u8 | 0 u16 |
//	lsn u64 | offset u64 | id | data
//
// hcrc is the CRC-32C of bytes 4..32+len(id) (so it covers dcrc, the
// lengths, the LSN and the id); dcrc is the CRC-32C of data. A record's LSN
// is the journal position where it starts; recovery requires the LSNs to be
// contiguous, so that stale records left in a recycled segment, zeros of
// preallocated space and a torn write all end the scan.
const (
	segMagic      = "PHIGJNL1"
	segHeaderSize = 32
	recHeaderSize = 32

	recFrame      = 1 // data is a frame for session id at offset
	recClose      = 2 // session id closed cleanly with size offset; no data
	recCheckpoint = 3 // data lists the open sessions; lsn is the segment start; takes no LSN space
	recRemove     = 4 // session id's closed recording was removed (kept elsewhere now); no data

	maxIDLen = 128
	// maxCheckpoint caps a checkpoint record: about a million open sessions.
	maxCheckpoint = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends one journal record to dst. dcrc is data's CRC-32C,
// computed by the caller (outside the spool's lock).
func appendRecord(dst []byte, typ byte, lsn LSN, id string, off int64, data []byte, dcrc uint32) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recHeaderSize)...)
	h := dst[start:]
	binary.BigEndian.PutUint32(h[4:], dcrc)
	binary.BigEndian.PutUint32(h[8:], uint32(len(data)))
	h[12] = typ
	h[13] = byte(len(id))
	binary.BigEndian.PutUint64(h[16:], uint64(lsn))
	binary.BigEndian.PutUint64(h[24:], uint64(off))
	dst = append(dst, id...)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return append(dst, data...)
}

func recordSize(id string, data int) int { return recHeaderSize + len(id) + data }

func appendSegmentHeader(dst []byte, seq uint64, start LSN) []byte {
	dst = append(dst, segMagic...)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(start))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[len(dst)-24:], castagnoli))
	return binary.BigEndian.AppendUint32(dst, 0)
}

// parseSegmentHeader returns the sequence number and start LSN of a segment,
// or ok false for anything else (a spare, a recycled or a torn header).
func parseSegmentHeader(h []byte) (seq uint64, start LSN, ok bool) {
	if len(h) < segHeaderSize || string(h[:8]) != segMagic {
		return 0, 0, false
	}
	if crc32.Checksum(h[:24], castagnoli) != binary.BigEndian.Uint32(h[24:]) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(h[8:]), LSN(binary.BigEndian.Uint64(h[16:])), true
}

// openSession is one entry of a checkpoint: a session whose recording was
// not closed, its size and the offset of its last appended frame.
type openSession struct {
	id   string
	size int64
	last int64
}

func appendCheckpointEntry(dst []byte, s openSession) []byte {
	dst = append(dst, byte(len(s.id)))
	dst = append(dst, s.id...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.size))
	return binary.BigEndian.AppendUint64(dst, uint64(s.last))
}

var errBadCheckpoint = errors.New("malformed checkpoint")

func parseCheckpoint(data []byte, visit func(openSession)) error {
	for len(data) > 0 {
		n := int(data[0])
		if n == 0 || n > maxIDLen || len(data) < 1+n+16 {
			return errBadCheckpoint
		}
		s := openSession{
			id:   string(data[1 : 1+n]),
			size: int64(binary.BigEndian.Uint64(data[1+n:])),
			last: int64(binary.BigEndian.Uint64(data[9+n:])),
		}
		if s.size <= 0 || s.last < 0 || s.last >= s.size {
			return errBadCheckpoint
		}
		visit(s)
		data = data[1+n+16:]
	}
	return nil
}

// jrecord is one decoded journal record. id and data alias the scanner's
// buffers and are valid until the next call to next.
type jrecord struct {
	typ  byte
	lsn  LSN
	off  int64
	id   []byte
	data []byte
	size int // bytes the record takes in the journal
}

// scanner reads the records of one segment. It stops (ok false) at the
// first record that does not check: the end of what was written.
type scanner struct {
	br   *bufio.Reader
	hdr  [recHeaderSize + maxIDLen]byte
	data []byte
	err  error // an I/O error other than the end of the file
}

func newScanner(r io.Reader) *scanner { return &scanner{br: bufio.NewReaderSize(r, 1<<20)} }

func (s *scanner) next() (jrecord, bool) {
	h := s.hdr[:recHeaderSize]
	if !s.read(h) {
		return jrecord{}, false
	}
	dcrc := binary.BigEndian.Uint32(h[4:])
	n := binary.BigEndian.Uint32(h[8:])
	rec := jrecord{typ: h[12], lsn: LSN(binary.BigEndian.Uint64(h[16:])), off: int64(binary.BigEndian.Uint64(h[24:]))}
	idLen := int(h[13])
	switch {
	case idLen > maxIDLen, h[14] != 0, h[15] != 0:
		return jrecord{}, false
	case rec.typ == recFrame && (idLen == 0 || n == 0 || n > MaxAppend || rec.off < 0):
		return jrecord{}, false
	case (rec.typ == recClose || rec.typ == recRemove) && (idLen == 0 || n != 0 || rec.off < 0):
		return jrecord{}, false
	case rec.typ == recCheckpoint && (idLen != 0 || n > maxCheckpoint):
		return jrecord{}, false
	case rec.typ != recFrame && rec.typ != recClose && rec.typ != recCheckpoint && rec.typ != recRemove:
		return jrecord{}, false
	}
	full := s.hdr[:recHeaderSize+idLen]
	if !s.read(full[recHeaderSize:]) {
		return jrecord{}, false
	}
	if crc32.Checksum(full[4:], castagnoli) != binary.BigEndian.Uint32(full) {
		return jrecord{}, false
	}
	// The header checks, so n is what was written: safe to allocate.
	if cap(s.data) < int(n) {
		s.data = make([]byte, n)
	}
	s.data = s.data[:n]
	if !s.read(s.data) || crc32.Checksum(s.data, castagnoli) != dcrc {
		return jrecord{}, false
	}
	rec.id = full[recHeaderSize:]
	rec.data = s.data
	rec.size = recHeaderSize + idLen + int(n)
	return rec, true
}

func (s *scanner) read(p []byte) bool {
	if _, err := io.ReadFull(s.br, p); err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			s.err = fmt.Errorf("read journal: %w", err)
		}
		return false
	}
	return true
}
