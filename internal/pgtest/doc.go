// Package pgtest starts real, throwaway PostgreSQL servers for tests, the demo
// and the benchmarks: initdb into a directory, a postmaster on 127.0.0.1 and a
// private unix socket, roles that authenticate with SCRAM-SHA-256, md5 or a
// cleartext password exactly as pg_hba.conf says, and optionally TLS with a
// freshly generated self-signed certificate.
//
// A server never outlives the process that started it: the postmaster runs in
// its own process group with a parent-death signal (SIGINT, PostgreSQL's fast
// shutdown), so a test binary that panics or is killed takes its servers with
// it. Stop shuts a server down and makes sure no process of its group is left.
//
// When the caller is root, initdb and postgres (which refuse to run as root)
// run as the "postgres" OS user; the data directory is handed to that user and
// the directories above it are made traversable (o+x).
//
// pgtest is test and benchmark scaffolding. It must never be imported by the
// gateway itself, and it never logs passwords: they are written only to the
// server, over its unix socket, as SQL.
package pgtest
