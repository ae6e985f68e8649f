// Package benchstage switches parts of the data path off for the
// benchmark's cost decomposition (bench/pg -decompose), and only in a
// binary built with the phigate_bench build tag: plain relay, then
// classification without recording, then recording without fsync. In the
// product build (no tag) every switch is a false constant, the compiler
// drops the branches, and there is no way to turn them on: none of them is
// a product mode.
//
// In a phigate_bench build the stage is read once from the
// PHIGATE_BENCH_STAGE environment variable:
//
//	relay     after login, bytes are copied both ways: no classification,
//	          no policy, no recording, no masking
//	classify  every message is classified and judged, nothing is recorded
//	nofsync   everything is recorded, but the spool never calls fdatasync
//	(empty)   the product
package benchstage
