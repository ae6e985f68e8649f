// Package bench runs phigate's benchmarks side by side with their peers (direct
// PostgreSQL, PgBouncer, a copy-only pass) in one run and writes the figures as
// JSON under bench/results/.
//
// Speed is measured here and only here: no test in the tree asserts on wall time.
//
// # Programs
//
//   - bench/pg: pgbench and result streaming through phigate, PgBouncer and
//     direct (pgbench-*.json, stream-*.json, phigate-peak-rss.json,
//     disk-fsync.json).
//   - bench/mask: the masking code alone (mask_*.json).
//   - bench/cluster: a three-node cluster, each node its own process (issue
//     9): policy propagation from an apply on one node until every node
//     enforces it, seen by the nodes' phigate_policy_revision gauge and by a
//     login with the token the revision brings
//     (cluster-policy-propagation*.json, with cluster-login-cost.json for
//     what a login costs); a fourth node's join until /readyz answers 200
//     and it accepts a login (cluster-join-to-ready.json); pgbench
//     select-only spread over the three nodes against one node and direct
//     (cluster-pgbench-*.json). Targets: propagation p99 under 1 s (aim:
//     50 ms), join-to-ready under 5 s. Three nodes, PostgreSQL and pgbench
//     on one small machine do not scale out: the spread figure says what the
//     cluster costs, not what more machines would give.
//   - bench/recording: recording and shipping (issue 10): COPY and pgbench
//     through a node with shipping to MinIO on and off (a benchmark build,
//     -tags phigate_bench) against direct PostgreSQL, compression, drain
//     time, CPU per part, upload and `phigate audit verify` speed
//     (recording-*.json).
//   - bench/approval: just-in-time approvals on three nodes (in its own
//     process, so that it can probe the cluster state through the nodes'
//     etcd clients): the round trip from an approver's POST on one node
//     until the agent's held command returns on another, cut into its
//     steps, beside the cluster state's own transaction-to-watch time
//     between the same members; and pgbench through a grant without
//     approval rules against the same grant with rules that match nothing
//     it sends, and direct (approval.json). Target: round trip p99 under
//     10 ms.
//   - bench/sessions: many sessions on one node (issue 13): TLS sessions
//     held in steps up to 10,000 (most idle, some running SELECT 1) through
//     phigate (upstream through a PgBouncer pool, and straight to
//     PostgreSQL) and PgBouncer: RSS, memory and goroutines per session,
//     open files and what stopped each; storms of new TLS sessions (up to
//     1,000/s: achieved rate, errors, login latency, accept queue, CPU per
//     session); and, from a node built with bench/sessions/nodeprof, a
//     session's heap by part and a storm's CPU profile (sessions-*.json;
//     analysis in docs/sessions.md). Targets: 10,000 sessions within 2 GiB,
//     1,000 new TLS sessions/s without errors.
//   - bench/gate: not a benchmark but CI's check of one (`make bench-ci`):
//     it reads short bench/pg runs (bench/results/ci/round-N) and fails
//     when the median over the rounds of a ratio of phigate to a peer of
//     the same run (throughput to PgBouncer's, p50 to direct's) leaves the
//     band in bench/gate/baseline.json, or a figure is missing; it never
//     judges an absolute time.
//
// What bench/pg and bench/cluster share (children that never outlive the
// run, PostgreSQL loaded with pgbench's tables, pgbench runs and their
// output, the shared part of phigate's policy) is in bench/harness.
package bench
