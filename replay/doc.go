// Package replay shows a recorded session to a person: it verifies the
// recording's hash chain while streaming it and prints the trail, one block
// per event, or the events as recorded (NDJSON). It also lists the sessions
// of a spool directory with their status (closed, open, broken).
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
// Today replay reads the local spool directory; finding a session through
// the cluster and streaming it from object storage or from the node that
// owns it will sit beside these functions.
package replay
