package ship

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLedgerRecords: readRecords never panics, never reads past a bad
// record, and reads back exactly what appendRecord wrote before any
// damage.
func FuzzLedgerRecords(f *testing.F) {
	f.Add([]byte(`{"tick":1}`), []byte{}, 0)
	f.Add([]byte(`{"sessions":[{"id":"a"}]}`), []byte{0xff, 0, 0, 1}, 3)
	f.Fuzz(func(t *testing.T, payload, garbage []byte, cut int) {
		if len(payload) == 0 {
			return
		}
		good := appendRecord(nil, payload)
		data := append(append([]byte(nil), good...), garbage...)
		var got [][]byte
		off, err := readRecords(bytes.NewReader(data), int64(len(data)), func(p []byte) error {
			got = append(got, append([]byte(nil), p...))
			return nil
		})
		if err != nil || off < int64(len(good)) || len(got) == 0 || !bytes.Equal(got[0], payload) {
			t.Fatalf("a whole record did not read back: off %d err %v", off, err)
		}
		if cut > 0 && cut < len(good) {
			got = nil
			off, _ := readRecords(bytes.NewReader(good[:cut]), int64(cut), func(p []byte) error { got = append(got, p); return nil })
			if off != 0 || len(got) != 0 {
				t.Fatalf("a torn record was read (off %d)", off)
			}
		}
	})
}

// FuzzEventMeta: the fast path agrees with a full decode whenever both
// succeed, and nothing panics.
func FuzzEventMeta(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		m, ok := eventMeta(p)
		if !ok {
			return
		}
		if m.kind == "" {
			t.Fatal("a kind-less event was accepted")
		}
		nextFrame(p)
	})
}

// FuzzSegment: a damaged segment is refused whole, never half read.
func FuzzSegment(f *testing.F) {
	f.Add([]byte("chunk bytes"), 5)
	f.Fuzz(func(t *testing.T, data []byte, flip int) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, segmentsDir), 0o700)
		objs := []object{{Key: "sessions/s/00000000.chunk", Data: data}, {Key: "sessions/s/00000000.manifest", Data: []byte("m"), Closes: "s"}}
		if _, err := writeSegment(dir, 1, objs); err != nil {
			t.Fatal(err)
		}
		p := segmentPath(dir, 1)
		back, err := readSegment(p)
		if err != nil || len(back) != 2 || !bytes.Equal(back[0].Data, data) || back[1].Closes != "s" {
			t.Fatalf("segment did not read back: %v", err)
		}
		b, _ := os.ReadFile(p)
		if flip >= 0 && flip < len(b) {
			b[flip] ^= 0x40
			os.WriteFile(p, b, 0o600)
			back, err := readSegment(p)
			if err == nil && len(back) == 2 && bytes.Equal(back[0].Data, data) {
				// A flip inside a JSON value the decoder tolerates
				// (none expected: every record has a CRC).
				t.Fatalf("a flipped byte at %d went unnoticed", flip)
			}
		}
	})
}
