// Package harness is what the benchmark programs (bench/pg, bench/cluster,
// bench/sessions, ...) share: children that never outlive the benchmark
// ([Process]), a real PostgreSQL loaded with pgbench's tables
// ([StartPostgres]), pgbench runs read from their summary and their
// per-transaction logs ([RunPgbench]), the start of a program: signals,
// working directory, progress log and list flags ([Main], [WorkDir],
// [Logf], [SplitList]), the check that a run left no process behind
// ([ProcessesUnder]), and its own part of a README.md that several
// programs write ([WriteReadmeSection], [WriteReadmeTop]).
//
// It measures and decides nothing itself: what a benchmark runs, in what
// order, and what it reports stay in its program, and results are written
// with bench.Write. Production code never imports it (internal/depcheck).
package harness
