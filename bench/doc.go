// Package bench runs phigate's benchmarks side by side with their peers (direct
// PostgreSQL, PgBouncer, a copy-only pass) in one run and writes the figures as
// JSON under bench/results/.
//
// Speed is measured here and only here: no test in the tree asserts on wall time.
package bench
