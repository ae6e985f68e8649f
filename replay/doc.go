// Package replay shows a recorded session to a person: it verifies the
// recording's hash chain while streaming it and prints the trail, one block
// per event, or the events as recorded (NDJSON). It also lists the sessions
// of a store with their status (closed, open, broken), and opens a
// session's masking proof for an auditor (Unseal; replay/auditlog records
// the act first).
//
// Replay verifies before it shows: an event is printed only after its frame
// and its link to the previous event checked, and the first break ends the
// output with a *record.ChainError that locates it. Replay only reads; it
// never repairs, rewrites or re-chains a recording.
//
// Recorded text (SQL, parameters, messages) came from clients and is
// printed with control characters escaped, so that a recording cannot
// drive the auditor's terminal.
//
// Replay reads through Store, the sessions and event streams of wherever
// recordings are kept: spool.DirStore reads a node's spool directory;
// object storage and the node that owns a session will be stores too.
package replay
