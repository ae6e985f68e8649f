package archive

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/storage/chunk"
)

// Object keys in a store (see LAYOUT in the package documentation):
//
//	sessions/<session>/<seq:08d>.chunk      a sealed chunk (chunk FORMAT.md §1)
//	sessions/<session>/<seq:08d>.manifest   its signed manifest (§2)
//	digests/<node>/<YYYY>/<MM>/<DD>/<HH>.digest  the node's hourly digest (§3)
//	index/<YYYY-MM-DD>/<session>.json       an index entry per day the session spanned
//	keys/<key id>.json                      a published node key (a copy; see Keys)
const (
	SessionsPrefix = "sessions/"
	DigestsPrefix  = "digests/"
	IndexPrefix    = "index/"
	KeysPrefix     = "keys/"
)

// ChunkKey is the object key of chunk seq of session.
func ChunkKey(session string, seq uint64) string {
	return fmt.Sprintf("%s%s/%08d.chunk", SessionsPrefix, session, seq)
}

// ManifestKey is the object key of the manifest of chunk seq of session.
func ManifestKey(session string, seq uint64) string {
	return fmt.Sprintf("%s%s/%08d.manifest", SessionsPrefix, session, seq)
}

// SessionPrefix is the prefix of every chunk and manifest of session.
func SessionPrefix(session string) string { return SessionsPrefix + session + "/" }

// ParseSessionObject splits a key under sessions/ into its session, seq and
// kind ("chunk" or "manifest").
func ParseSessionObject(key string) (session string, seq uint64, kind string, ok bool) {
	rest, found := strings.CutPrefix(key, SessionsPrefix)
	if !found {
		return "", 0, "", false
	}
	session, file, found := strings.Cut(rest, "/")
	if !found || session == "" || strings.Contains(file, "/") {
		return "", 0, "", false
	}
	num, kind, found := strings.Cut(file, ".")
	if !found || (kind != "chunk" && kind != "manifest") {
		return "", 0, "", false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return "", 0, "", false
	}
	return session, seq, kind, true
}

// DigestKey is the object key of node's digest for the hour starting at hour.
func DigestKey(node string, hour time.Time) string {
	return DigestsPrefix + node + "/" + hour.UTC().Format("2006/01/02/15") + ".digest"
}

// DigestNodePrefix is the prefix of node's digests.
func DigestNodePrefix(node string) string { return DigestsPrefix + node + "/" }

// DigestDayPrefix is the prefix of node's digests of day (UTC).
func DigestDayPrefix(node string, day time.Time) string {
	return DigestsPrefix + node + "/" + day.UTC().Format("2006/01/02") + "/"
}

// ParseDigestKey splits a key under digests/ into its node and hour; ok
// only for the keys DigestKey makes.
func ParseDigestKey(key string) (node string, hour time.Time, ok bool) {
	rest, found := strings.CutPrefix(key, DigestsPrefix)
	// <node>/YYYY/MM/DD/HH.digest: the node is what precedes the last 4 segments.
	const tail = len("2006/01/02/15.digest")
	if !found || len(rest) < tail+2 || rest[len(rest)-tail-1] != '/' {
		return "", time.Time{}, false
	}
	node, stamp := rest[:len(rest)-tail-1], rest[len(rest)-tail:]
	if node == "" || strings.Contains(node, "/") {
		return "", time.Time{}, false
	}
	hour, err := time.Parse("2006/01/02/15.digest", stamp)
	if err != nil || DigestKey(node, hour) != key {
		return "", time.Time{}, false
	}
	return node, hour, true
}

// IndexKey is the object key of session's index entry for day (UTC).
func IndexKey(day time.Time, session string) string {
	return IndexPrefix + day.UTC().Format("2006-01-02") + "/" + session + ".json"
}

// IndexDayPrefix is the prefix of the index entries of day (UTC).
func IndexDayPrefix(day time.Time) string {
	return IndexPrefix + day.UTC().Format("2006-01-02") + "/"
}

// ParseIndexKey splits a key under index/ into its day and session; ok
// only for the keys IndexKey makes.
func ParseIndexKey(key string) (day time.Time, session string, ok bool) {
	rest, found := strings.CutPrefix(key, IndexPrefix)
	if !found {
		return time.Time{}, "", false
	}
	date, file, found := strings.Cut(rest, "/")
	session, found2 := strings.CutSuffix(file, ".json")
	if !found || !found2 || session == "" || strings.Contains(session, "/") {
		return time.Time{}, "", false
	}
	day, err := time.Parse("2006-01-02", date)
	if err != nil || IndexKey(day, session) != key {
		return time.Time{}, "", false
	}
	return day, session, true
}

// KeyKey is the object key of a published node key.
func KeyKey(id string) string { return KeysPrefix + id + ".json" }

// Days returns the UTC days that [from, to] touches, first to last.
func Days(from, to time.Time) []time.Time {
	d := from.UTC().Truncate(24 * time.Hour)
	var out []time.Time
	for ; !d.After(to.UTC()); d = d.Add(24 * time.Hour) {
		out = append(out, d)
	}
	return out
}

// Session states in an index entry.
const (
	StateClosed    = "closed"    // ended with its closing chunk
	StateRecovered = "recovered" // its node stopped uncleanly; closed at recovery
)

// IndexEntry is one session in the store's per-day index: what a date-range
// query needs without reading chunks. It holds no PHI: identity and resource
// names, times, counts and object keys.
type IndexEntry struct {
	Version  int          `json:"version"` // 1
	Session  string       `json:"session"`
	Node     string       `json:"node"`               // the node that held the session
	Identity string       `json:"identity,omitempty"` // empty: refused before authentication
	Kind     string       `json:"kind,omitempty"`     // identity kind: agent | ci | human
	Resource string       `json:"resource,omitempty"`
	Protocol string       `json:"protocol,omitempty"`
	Start    time.Time    `json:"start"`
	End      time.Time    `json:"end"`
	State    string       `json:"state"`  // StateClosed | StateRecovered
	Reason   string       `json:"reason"` // the session.end reason
	Events   uint64       `json:"events"`
	RawBytes int64        `json:"raw_bytes"` // recorded frames before compression
	Stored   int64        `json:"stored_bytes"`
	Chunks   []IndexChunk `json:"chunks"`
}

// IndexChunk is one chunk of an indexed session.
type IndexChunk struct {
	Seq    uint64 `json:"seq"`
	Object string `json:"object"`
	SHA256 string `json:"sha256"` // hex SHA-256 of the chunk object
	Node   string `json:"node"`   // the node that sealed it
}

// MaxIndexEntry caps the size of an index object (about 100 000 chunks).
const MaxIndexEntry = 16 << 20

// ParseIndexEntry decodes an index object.
func ParseIndexEntry(b []byte) (*IndexEntry, error) {
	if len(b) > MaxIndexEntry {
		return nil, fmt.Errorf("archive: index entry of %d bytes (at most %d)", len(b), MaxIndexEntry)
	}
	var e IndexEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("archive: index entry: %w", err)
	}
	if e.Version != 1 || e.Session == "" {
		return nil, errors.New("archive: index entry: unknown version or no session")
	}
	return &e, nil
}

// PublishedKey is a node signing key as the cluster state and the store
// hold it (JSON).
type PublishedKey struct {
	ID        string    `json:"id"` // chunk.KeyID of Public
	Node      string    `json:"node"`
	Public    []byte    `json:"public"` // 32-byte Ed25519 public key (base64 in JSON)
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after,omitzero"` // zero: current
}

// Check says whether k is well formed: its id is its public key's.
func (k PublishedKey) Check() error {
	if len(k.Public) != ed25519.PublicKeySize {
		return errors.New("archive: published key: not an Ed25519 public key")
	}
	if chunk.KeyID(k.Public) != k.ID {
		return fmt.Errorf("archive: published key %q: id does not match its key", k.ID)
	}
	if k.Node == "" {
		return fmt.Errorf("archive: published key %q: no node", k.ID)
	}
	return nil
}

// Keys turns published keys into the verifier's chunk.Keys, skipping (and
// returning an error for) any malformed one.
func Keys(list []PublishedKey) (chunk.Keys, error) {
	out := chunk.Keys{}
	var errs []error
	for _, k := range list {
		if err := k.Check(); err != nil {
			errs = append(errs, err)
			continue
		}
		out[k.ID] = chunk.PublicKey{Node: k.Node, Key: ed25519.PublicKey(k.Public), NotBefore: k.NotBefore, NotAfter: k.NotAfter}
	}
	return out, errors.Join(errs...)
}
