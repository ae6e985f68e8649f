// Package depcheck holds the import rules of phigate's layout as code, so
// that `go test ./...` fails when a change breaks one:
//
//   - only cluster/ depends on etcd or memberlist, besides node, node/cli
//     and node/cmd/..., which wire it in;
//   - the pure packages ([Pure]) reach no network (net, net/..., crypto/tls,
//     imported by the package or by any non-standard package it depends on;
//     net/netip is fine: its address values open nothing),
//     no file system (os, io/fs, io/ioutil, path/filepath, imported by the
//     package or by any package of this module it depends on; embed is
//     fine) and no clock (no call or reference to time.Now, time.Sleep,
//     timers or tickers in their non-test files; time.Time and
//     time.Duration values are fine);
//   - production code depends on nothing under bench/, chaos/, examples/ or
//     internal/, which hold benchmarks, fault scenarios, demos, test
//     helpers and tools.
//
// The checks work on an import graph ([Graph], as `go list -deps -json`
// describes it) and on source files ([CheckSource]); the package's test
// builds the graph of this module and reports each violation with the chain
// of imports that leads to it.
//
// It exists for tests only: production code must never import it (the last
// rule above says so), and it never changes the files it reads.
package depcheck
