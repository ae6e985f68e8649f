// Package chunk is the stored form of a session recording: the record
// frames of a session (session/record, bytes as the spool holds them) cut
// into chunks, each zstd-compressed and encrypted with AES-256-GCM under a
// per-session data key sealed to the auditors' public key (session/proof
// HPKE), behind a header in clear; a manifest per sealed chunk and an hourly
// digest per node, both signed with the node's Ed25519 key; and the
// verifiers that check all of it without any private key.
//
// FORMAT.md beside this file gives the byte layout, enough to write an
// independent verifier.
//
// The package is pure: it never touches files, the network or the clock.
// Callers pass times as values and decide when to cut a chunk ([Builder]
// says when a limit is reached). It never logs: payloads are PHI and data
// keys are secrets.
package chunk
