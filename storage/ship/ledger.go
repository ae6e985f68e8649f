package ship

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/storage/blob"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The shipper's directory holds:
//
//	ledger.log          batches: what was sealed, digested and indexed (see batch)
//	segments/<n>.seg    the objects sealed by tick n, waiting for upload
//
// A tick seals what the spool holds into chunks, writes every object of the
// tick into one segment file and fsyncs it, then appends one batch to the
// ledger and fsyncs that. A batch is one record with one CRC, so a tick
// happened entirely or not at all: at start, a segment whose tick has no
// batch in the ledger is deleted (its frames are still in the spool and are
// sealed again), and the ledger is cut at its first bad record. Two fsyncs
// per tick, whatever the number of sessions.
const (
	ledgerName  = "ledger.log"
	segmentsDir = "segments"
	// maxRecord caps a ledger record or a segment entry, so that a corrupt
	// length never makes the reader allocate more.
	maxRecord = 256 << 20
)

// batch is one ledger record.
type batch struct {
	Tick     uint64         `json:"tick,omitempty"` // the segment written with it; 0: no segment
	Sessions []sessionState `json:"sessions,omitempty"`
	Chunks   []chunkRecord  `json:"chunks,omitempty"`
	// Digest is the node's newest digest object (the previous one of the
	// next), when this batch wrote one or more.
	Digest     []byte    `json:"digest,omitempty"`
	DigestHour time.Time `json:"digest_hour,omitzero"`
	// Indexed: sessions whose index entries the store confirmed; they are
	// forgotten.
	Indexed []string `json:"indexed,omitempty"`
	// Start is set in the first batch of a ledger: the first hour to digest.
	Start time.Time `json:"start,omitzero"`
}

// sessionState is what the shipper knows of one session, as of its last
// sealed chunk.
type sessionState struct {
	ID        string    `json:"id"`
	NextSeq   uint64    `json:"next_seq"`
	Prev      []byte    `json:"prev,omitempty"` // SHA-256 of chunk NextSeq-1
	NextEvent uint64    `json:"next_event"`
	Offset    int64     `json:"offset"` // bytes of the spool file sealed (magic included)
	Head      []byte    `json:"head,omitempty"`
	Closed    bool      `json:"closed,omitempty"`    // the closing chunk is sealed
	Truncated bool      `json:"truncated,omitempty"` // final without a frame left for a closing chunk
	Identity  string    `json:"identity,omitempty"`
	Kind      string    `json:"kind,omitempty"`
	Resource  string    `json:"resource,omitempty"`
	Protocol  string    `json:"protocol,omitempty"`
	Holder    string    `json:"holder,omitempty"` // the node in the session.start event
	Start     time.Time `json:"start,omitzero"`
	End       time.Time `json:"end,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	RawBytes  int64     `json:"raw_bytes,omitempty"`
	Stored    int64     `json:"stored,omitempty"`
	Retain    time.Time `json:"retain,omitzero"`
	Mode      string    `json:"mode,omitempty"`
}

// chunkRecord is one sealed chunk: for the session's index entry and the
// digest of the hour it was sealed in.
type chunkRecord struct {
	Session string    `json:"s"`
	Seq     uint64    `json:"seq"`
	Object  string    `json:"obj"`
	Hash    []byte    `json:"hash"`
	Hour    time.Time `json:"hour"`
}

// ledger is the append-only log of batches.
type ledger struct {
	dir  string
	f    *os.File
	size int64
}

// openLedger reads every good batch of dir's ledger, in order, and cuts the
// file after the last one.
func openLedger(dir string, visit func(*batch) error) (*ledger, error) {
	if err := os.MkdirAll(filepath.Join(dir, segmentsDir), 0o700); err != nil {
		return nil, fmt.Errorf("ship: %w", err)
	}
	path := filepath.Join(dir, ledgerName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ship: open ledger: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ship: ledger: %w", err)
	}
	good, err := readRecords(f, fi.Size(), func(p []byte) error {
		var b batch
		if err := json.Unmarshal(p, &b); err != nil {
			return fmt.Errorf("ship: ledger batch: %w", err)
		}
		return visit(&b)
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("ship: cut ledger: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &ledger{dir: dir, f: f, size: good}, nil
}

// readRecords visits each record (u32 length | payload | u32 CRC-32C of
// the payload) of r, which holds size bytes, and returns the offset after the last good one; a torn
// or corrupt tail ends the reading without an error.
func readRecords(r io.Reader, size int64, visit func([]byte) error) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var off int64
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return off, nil
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > maxRecord || int64(n)+8 > size-off {
			return off, nil // no record is this long, or the file ends first
		}
		p := make([]byte, n+4)
		if _, err := io.ReadFull(br, p); err != nil {
			return off, nil
		}
		if crc32.Checksum(p[:n], castagnoli) != binary.BigEndian.Uint32(p[n:]) {
			return off, nil
		}
		if err := visit(p[:n]); err != nil {
			return off, err
		}
		off += int64(4 + n + 4)
	}
}

func appendRecord(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
}

// append writes b durably.
func (l *ledger) append(b *batch) error {
	p, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if len(p) > maxRecord {
		return fmt.Errorf("ship: ledger batch of %d bytes", len(p))
	}
	rec := appendRecord(nil, p)
	if _, err := l.f.Write(rec); err != nil {
		return fmt.Errorf("ship: ledger: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("ship: ledger sync: %w", err)
	}
	l.size += int64(len(rec))
	return nil
}

// rewrite replaces the ledger with one batch (compaction), atomically.
func (l *ledger) rewrite(b *batch) error {
	p, err := json.Marshal(b)
	if err != nil {
		return err
	}
	rec := appendRecord(nil, p)
	tmp := filepath.Join(l.dir, ledgerName+".tmp")
	if err := writeFileSync(tmp, rec); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, ledgerName)); err != nil {
		return fmt.Errorf("ship: compact ledger: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, ledgerName), os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ship: reopen ledger: %w", err)
	}
	l.f.Close()
	l.f, l.size = f, int64(len(rec))
	return nil
}

func (l *ledger) close() error { return l.f.Close() }

// object is one object waiting in a segment for upload.
type object struct {
	Key    string
	Data   []byte
	Retain blob.PutOptions
	// Closes: the session whose closing chunk this is (its index entry is
	// written once the segment is uploaded).
	Closes string
}

type segmentEntry struct {
	Key    string    `json:"key"`
	Retain time.Time `json:"retain,omitzero"`
	Mode   string    `json:"mode,omitempty"`
	Closes string    `json:"closes,omitempty"`
	// Empty: the object has no bytes, and no record of its bytes follows
	// (a record cannot be empty: zeros would read as records).
	Empty bool `json:"empty,omitempty"`
}

func segmentPath(dir string, tick uint64) string {
	return filepath.Join(dir, segmentsDir, fmt.Sprintf("%016d.seg", tick))
}

// writeSegment writes the objects of a tick durably: per object, a record
// of its metadata (JSON) and a record of its bytes.
func writeSegment(dir string, tick uint64, objs []object) (int64, error) {
	var buf []byte
	for _, o := range objs {
		meta, err := json.Marshal(segmentEntry{Key: o.Key, Retain: o.Retain.RetainUntil, Mode: string(o.Retain.Mode),
			Closes: o.Closes, Empty: len(o.Data) == 0})
		if err != nil {
			return 0, err
		}
		buf = appendRecord(buf, meta)
		if len(o.Data) > 0 {
			buf = appendRecord(buf, o.Data)
		}
	}
	if err := writeFileSync(segmentPath(dir, tick), buf); err != nil {
		return 0, err
	}
	return int64(len(buf)), syncDir(filepath.Join(dir, segmentsDir))
}

// readSegment reads a segment back; a segment that does not read whole is
// an error (it was synced before its batch was logged).
func readSegment(path string) ([]object, error) {
	f, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var objs []object
	var pending *segmentEntry
	good, err := readRecords(f, fi.Size(), func(p []byte) error {
		if pending == nil {
			var e segmentEntry
			if err := json.Unmarshal(p, &e); err != nil {
				return err
			}
			if e.Empty {
				objs = append(objs, object{Key: e.Key, Closes: e.Closes,
					Retain: blob.PutOptions{RetainUntil: e.Retain, Mode: blob.Mode(e.Mode)}})
				return nil
			}
			pending = &e
			return nil
		}
		objs = append(objs, object{Key: pending.Key, Data: append([]byte(nil), p...), Closes: pending.Closes,
			Retain: blob.PutOptions{RetainUntil: pending.Retain, Mode: blob.Mode(pending.Mode)}})
		pending = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ship: segment %s: %w", filepath.Base(path), err)
	}
	if good != fi.Size() || pending != nil {
		return nil, fmt.Errorf("ship: segment %s is damaged at byte %d", filepath.Base(path), good)
	}
	return objs, nil
}

// listSegments returns the ticks of the segments in dir, ascending, and
// their total size.
func listSegments(dir string) ([]uint64, int64, error) {
	entries, err := os.ReadDir(filepath.Join(dir, segmentsDir))
	if err != nil {
		return nil, 0, fmt.Errorf("ship: %w", err)
	}
	var ticks []uint64
	var size int64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
		}
		ticks = append(ticks, n)
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i] < ticks[j] })
	return ticks, size, nil
}

func writeFileSync(path string, data []byte) error {
	f, err := openFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("ship: write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ship: sync %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := openRead(dir)
	if err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("ship: sync %s: %w", dir, err)
	}
	return nil
}
