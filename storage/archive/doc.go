// Package archive is the store side of recordings: where each object of a
// shipped recording lives (layout.go: chunks and manifests per session,
// hourly digests per node, a per-day session index, published node keys),
// and what auditors do with a store: list sessions over a date range from
// the index (Archive.Sessions), verify everything (Verify), and read a
// session back for replay with the auditors' key (ReplayStore, a
// replay.Store).
//
// Writing is storage/ship's business; this package only reads and never
// needs a private key to verify. Opening payloads needs the auditors' X25519
// private key, and ReplayStore has its caller record the act first
// (replay/auditlog): it refuses to decrypt what was not recorded.
//
// # What Verify expects
//
// Verify reports what does not hold, and only that; three rules keep it
// from reporting what is merely not there yet:
//
//   - The digest of an hour is due Options.DigestGrace (15 minutes) after
//     the hour ends: the shipper writes it at its first tick of the next
//     hour. Before then a missing digest is no gap, and the chunks sealed
//     in that hour (by their manifest's time) are not unlisted.
//   - A node is expected to have digested an hour only if one of its
//     published keys is valid at the hour's start (the instant the digest
//     is signed for): a node that joined later or left earlier has no gaps
//     outside its keys' validity.
//   - A session with neither a closing chunk nor an index entry is still
//     being recorded (the shipper writes the index entry once the closing
//     chunk is stored): it is listed as open, not truncated. Removing a
//     session's end shows in the digests once their hour is due.
//
// Verify reads objects with bounded concurrency and a session's chunks in
// windows of bounded size; only the digests of the range, and a few
// hundred bytes per chunk, are held for the whole run.
package archive
