// Package record is the recording format of a phigate session: the Event
// type, the hash chain that links events, and the frame format of a
// per-session recording file, with a streaming verifier that locates the
// first break.
//
// A recording file is a fixed 8-byte header ("PHIGREC1": magic and format
// version) followed by frames:
//
//	uint32 big-endian payload length | payload | SHA-256(payload) (32 bytes)
//
// The payload is the JSON encoding of one Event, written by Event.AppendJSON
// without reflection: byte for byte what encoding/json writes for it with
// HTML escaping off, so any JSON reader (Verify uses encoding/json) decodes
// it. Every event carries its sequence number (0, 1, 2, ...) and the hex
// SHA-256 of the previous event's payload; event 0 carries the hash of a
// genesis string bound to the session id, so an event cannot be moved into
// another session's recording. A flipped byte, a removed, reordered or
// appended event and a truncated file are all detected by Verify, which
// reports the index of the first event that does not hold.
//
// A Command holds what every protocol shares (number, classes, decision)
// and a body per protocol (Postgres today), so that an HTTP, Kubernetes or
// SSH proxy records its commands in the same chain. Recordings written
// before the bodies existed decode into the same shape (legacy.go); their
// bytes, which the chain covers, are never rewritten.
//
// A Change carries the rows a data-changing statement touched, read before
// and after it, and a ChangeOutcome how their transaction ended; the raw
// values of masked ones are in MaskProof events of the change's Phase.
//
// The package is pure format code: it never opens files, never reads the
// clock (callers stamp Event.Time), and never logs event contents, which hold
// PHI. Durability is storage/spool's job; presenting a recording to a person
// is replay's.
package record
