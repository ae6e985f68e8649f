package archive_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/storage/archive"
)

// FuzzParseIndexEntry: any bytes parse or fail, never panic; what parses
// has a session and version 1, and encodes to what parses the same.
func FuzzParseIndexEntry(f *testing.F) {
	e := archive.IndexEntry{Version: 1, Session: "01M8NYXK608X36ZD9T5EXDAR3D", Node: "n1", Identity: "agent-7", Kind: "agent",
		Resource: "ehr", Protocol: "postgres", Start: t0, End: t0.Add(time.Minute), State: archive.StateClosed, Reason: "terminate",
		Events: 240, RawBytes: 80000, Stored: 21000, Chunks: []archive.IndexChunk{{Seq: 0, Object: archive.ChunkKey("01M8NYXK608X36ZD9T5EXDAR3D", 0),
			SHA256: strings.Repeat("ab", 32), Node: "n1"}}}
	b, _ := json.Marshal(e)
	f.Add(b)
	f.Add([]byte(`{"version":1,"session":"s"}`))
	f.Add([]byte(`{"version":2,"session":"s"}`))
	f.Add([]byte(`{"version":1,"session":"s","chunks":[{"seq":-1}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := archive.ParseIndexEntry(b)
		if err != nil {
			return
		}
		if e.Version != 1 || e.Session == "" {
			t.Fatalf("accepted %+v", e)
		}
		again, err := json.Marshal(e)
		if err != nil {
			return // times outside RFC 3339's years do not encode
		}
		e2, err := archive.ParseIndexEntry(again)
		if err != nil || e2.Session != e.Session || len(e2.Chunks) != len(e.Chunks) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseSessionObject: a key parses or not, never panics; what parses
// names one session and a chunk or manifest, and the canonical key of
// what it names parses to the same.
func FuzzParseSessionObject(f *testing.F) {
	for _, k := range []string{
		archive.ChunkKey("01M8NYXK608X36ZD9T5EXDAR3D", 0), archive.ManifestKey("s", 12345678), "sessions/s/1.chunk",
		"sessions/s/00000001.chunk.bak", "sessions//00000001.chunk", "sessions/s/x/00000001.chunk", "sessions/s/-1.manifest",
		"sessions/s/18446744073709551616.chunk", "index/2026-11-30/s.json", archive.DigestKey("n1", t0),
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if s, seq, kind, ok := archive.ParseSessionObject(key); ok {
			if s == "" || strings.Contains(s, "/") || (kind != "chunk" && kind != "manifest") {
				t.Fatalf("%q: session %q kind %q", key, s, kind)
			}
			canon := archive.ChunkKey(s, seq)
			if kind == "manifest" {
				canon = archive.ManifestKey(s, seq)
			}
			if s2, seq2, kind2, ok := archive.ParseSessionObject(canon); !ok || s2 != s || seq2 != seq || kind2 != kind {
				t.Fatalf("%q: canonical %q parses to %q %d %q %v", key, canon, s2, seq2, kind2, ok)
			}
		}
		if day, s, ok := archive.ParseIndexKey(key); ok && archive.IndexKey(day, s) != key {
			t.Fatalf("index key %q: %s %q", key, day, s)
		}
		if node, hour, ok := archive.ParseDigestKey(key); ok && archive.DigestKey(node, hour) != key {
			t.Fatalf("digest key %q: %q %s", key, node, hour)
		}
	})
}
