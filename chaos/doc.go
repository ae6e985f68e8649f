// Package chaos holds fault scenarios run against real phigate processes, each
// with the invariants that must still hold afterwards: no response forwarded
// without a durable record, every recording verifies, other sessions keep
// being served.
//
// It never runs as part of a node; it drives nodes from the outside.
package chaos
