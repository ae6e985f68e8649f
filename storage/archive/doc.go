// Package archive is the store side of recordings: where each object of a
// shipped recording lives (layout.go: chunks and manifests per session,
// hourly digests per node, a per-day session index, published node keys),
// and what auditors do with a store: list sessions over a date range from
// the index, verify everything (Verify), and read a session back for replay
// with the auditors' key (a replay.Store).
//
// Writing is storage/ship's business; this package only reads and never
// needs a private key to verify. Opening payloads needs the auditors' X25519
// private key, and the caller records the act first (replay/auditlog).
package archive
