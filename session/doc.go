// Package session holds what every protocol proxy shares about a session:
// its identifier and its Recording, the hash-chained event log that must be
// durable before anything a recorded command produced is forwarded.
//
// The per-protocol proxies live below it (session/pgwire); policy, masking,
// identity and the record format are pure packages beside them. This package
// never logs event contents.
package session
