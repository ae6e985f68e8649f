package chunk

import (
	"bytes"
	"testing"

	"github.com/phigate/phigate/session/record"
)

func TestRoundTrip(t *testing.T) {
	key := auditorKey(t)
	fr, times := frames(t, "s-1", 500)
	sealed := sealSession(t, "s-1", key.PublicKey(), fr, times, 16<<10)
	if len(sealed) < 3 {
		t.Fatalf("%d chunks, want several", len(sealed))
	}
	o := NewOpener(key)
	var all, want []byte
	for _, f := range fr {
		want = append(want, f...)
	}
	want = want[8:] // the recording magic is not stored
	var prev [HashSize]byte
	next := uint64(0)
	for i, s := range sealed {
		h, got, err := o.Open(s.Bytes)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if h.Seq != uint64(i) || h.Prev != prev || h.FirstEvent != next || h.Closing() != (i == len(sealed)-1) {
			t.Fatalf("chunk %d: header %+v", i, h)
		}
		prev, next = s.Sum, h.LastEvent+1
		all = append(all, got...)
	}
	if !bytes.Equal(all, want) {
		t.Fatal("frames differ after the round trip")
	}
	// The opened frames are the recording as the spool had it: the record
	// chain (Prev links included) verifies across chunk boundaries.
	sum, err := record.Verify(bytes.NewReader(append([]byte(record.Magic), all...)), "s-1", false, nil)
	if err != nil || sum.Events != 500 {
		t.Fatalf("record chain after opening: %+v, %v", sum, err)
	}
	other := NewOpener(auditorKey(t))
	if _, _, err := other.Open(sealed[0].Bytes); err == nil {
		t.Fatal("another auditor key opened the payload")
	}
}
