package pgwire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// TestCancelKeyLayout: every key a node issues is positive, non-zero,
// carries the node's number, decodes back to itself, and is unique on the
// node; bodies that phigate never issues do not decode.
func TestCancelKeyLayout(t *testing.T) {
	for _, node := range []uint16{0, 1, 7, MaxNodeNumber} {
		keys := newCancelKeys(node)
		seen := map[uint32]bool{}
		for range 2000 {
			c := &conn{}
			keys.issue(c)
			if c.keyPID == 0 || c.keyPID>>31 != 0 || seen[c.keyPID] {
				t.Fatalf("node %d issued pid %#x (seen before: %v)", node, c.keyPID, seen[c.keyPID])
			}
			seen[c.keyPID] = true
			body := binary.BigEndian.AppendUint32(nil, c.keyPID)
			body = append(body, c.keySecret[:]...)
			k, ok := decodeCancelKey(body)
			if !ok || k.node != node || k.pid != c.keyPID || !bytes.Equal(k.secret, c.keySecret[:]) {
				t.Fatalf("node %d: key %x decodes to %+v, %v", node, body, k, ok)
			}
			if keys.lookup(k) != c {
				t.Fatalf("node %d: the issued key does not find its session", node)
			}
			forged := append([]byte(nil), body...)
			forged[7] ^= 1
			if k, _ := decodeCancelKey(forged); keys.lookup(k) != nil {
				t.Fatalf("node %d: a wrong secret finds a session", node)
			}
		}
	}
	for _, body := range [][]byte{
		nil,
		{0, 0, 0, 1, 0, 0, 0},                   // short
		{0, 0, 0, 1, 0, 0, 0, 0, 0},             // long (a protocol 3.2 secret)
		{0, 0, 0, 0, 1, 2, 3, 4},                // pid zero
		{0x80, 0, 0, 1, 1, 2, 3, 4},             // negative pid
		{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5}, // both
	} {
		if k, ok := decodeCancelKey(body); ok {
			t.Fatalf("%x decoded to %+v", body, k)
		}
	}
	if got := cancelPID(3, 0xfff12345); got != 3<<20|0x12345 {
		t.Fatalf("cancelPID(3, ...) = %#x", got)
	}
}

// FuzzCancelKey: decoding never panics, accepts only 8-byte bodies with a
// positive pid, and its node number and serial give back the pid.
func FuzzCancelKey(f *testing.F) {
	f.Add([]byte{0, 0x70, 0x12, 0x34, 1, 2, 3, 4})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x80, 0, 0, 1, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		k, ok := decodeCancelKey(body)
		if !ok {
			return
		}
		if len(body) != cancelKeyLen || k.pid == 0 || k.pid>>31 != 0 || k.node > MaxNodeNumber || len(k.secret) != 4 {
			t.Fatalf("%x accepted as %+v", body, k)
		}
		if cancelPID(k.node, k.pid) != k.pid || binary.BigEndian.Uint32(body) != k.pid {
			t.Fatalf("%x: node %d does not give back pid %#x", body, k.node, k.pid)
		}
	})
}
