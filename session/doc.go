// Package session holds what every protocol proxy shares about a session:
// its identifier; the node's live state (Snapshot, published whole through
// State) that admits it at login and re-checks it after every change; and
// its Recording, the hash-chained event log that must be durable before
// anything a recorded command produced is forwarded.
//
// The per-protocol proxies live below it (session/pgwire); policy, masking,
// identity and the record format are pure packages beside them. This package
// never logs event contents.
package session
