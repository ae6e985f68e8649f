package ship

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/phigate/phigate/session/record"
)

// frameMeta is what the shipper reads of an event: its time and kind. The
// rest of the payload (PHI) is opaque to it.
type frameMeta struct {
	time time.Time
	kind record.Kind
}

// eventMeta reads the time and kind of an event payload. record.Chain
// writes every event as {"seq":N,"prev":"…","time":"…","kind":"…",…}, so
// the fast path finds both near the start; anything else is decoded in full.
func eventMeta(p []byte) (frameMeta, bool) {
	head := p
	if len(head) > 256 {
		head = head[:256]
	}
	if m, ok := fastMeta(head); ok {
		return m, true
	}
	var ev struct {
		Time time.Time   `json:"time"`
		Kind record.Kind `json:"kind"`
	}
	if err := json.Unmarshal(p, &ev); err != nil || ev.Kind == "" {
		return frameMeta{}, false
	}
	return frameMeta{time: ev.Time, kind: ev.Kind}, true
}

func fastMeta(head []byte) (frameMeta, bool) {
	ts, ok := stringField(head, `,"time":"`)
	if !ok {
		return frameMeta{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return frameMeta{}, false
	}
	kind, ok := stringField(head, `,"kind":"`)
	if !ok {
		return frameMeta{}, false
	}
	return frameMeta{time: t, kind: record.Kind(kind)}, true
}

// stringField returns the value of the first `key"value"` in b, when it
// has no escapes.
func stringField(b []byte, key string) ([]byte, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return nil, false
	}
	return rest[:j], true
}

// nextFrame returns the length of the whole frame at the start of b, or 0
// when b does not hold one whole frame yet. bad is true for a length no
// frame can have.
func nextFrame(b []byte) (n int, bad bool) {
	if len(b) < 4 {
		return 0, false
	}
	l := binary.BigEndian.Uint32(b)
	if l == 0 || l > record.MaxPayload {
		return 0, true
	}
	n = int(l) + record.FrameOverhead
	if len(b) < n {
		return 0, false
	}
	return n, false
}

// framePayload is the JSON event of a whole frame.
func framePayload(f []byte) []byte { return f[4 : len(f)-record.HashSize] }
