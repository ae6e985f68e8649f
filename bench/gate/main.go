// Command gate is the benchmark check of CI (`make bench-ci`). It reads the
// figures of one or more short bench/pg runs (one directory per run) and
// the committed baseline, bench/gate/baseline.json, which lists ratios of
// phigate to a peer measured in the same run (throughput to PgBouncer's,
// median latency to direct PostgreSQL's) with the limit each must stay
// within: a floor for throughput, a ceiling for latency. The limits sit
// beyond the spread those ratios showed over repeated runs on a loaded
// two-core machine, so that noise passes and a real regression does not;
// the baseline's notes say how they were chosen.
//
// It never judges an absolute time: a slower or busier machine slows the
// peers as well, and a ratio taken within one run cancels most of it.
// Over several runs each ratio is the median, which one disturbed run
// cannot move far.
//
// A figure missing from one run (a pgbench run lost to a moment of
// overload) is judged on the runs that have it, and the report names
// them; a figure found in fewer than -min-rounds runs (2 by default) is
// missing.
//
// It prints a table (figure, each run's ratio, the median, the limit, the
// verdict), writes the same as JSON with -out, and exits 1 when a ratio
// has moved past its limit or a figure is missing (the benchmark broke),
// 2 on a bad command line or baseline, 0 otherwise.
//
//	go run ./bench/gate -baseline bench/gate/baseline.json -out bench/results/ci/gate.json bench/results/ci/round-*
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the program: its exit status for args, the table on stdout.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	baselinePath := fs.String("baseline", "bench/gate/baseline.json", "the committed checks and their limits")
	out := fs.String("out", "", "also write the verdict as JSON to this file")
	minRounds := fs.Int("min-rounds", 2, "how many runs must have a figure for its check to be judged; fewer is a missing figure")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gate [-baseline FILE] [-out FILE] [-min-rounds N] RUN-DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || *minRounds < 1 {
		fs.Usage()
		return 2
	}
	b, err := LoadBaseline(*baselinePath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	rep := Evaluate(b, fs.Args(), *minRounds)
	rep.Time = time.Now().UTC()
	rep.Baseline = *baselinePath
	rep.Print(stdout)
	if *out != "" {
		if err := writeJSON(*out, rep); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if !rep.Pass {
		return 1
	}
	return 0
}

func writeJSON(path string, rep Report) error {
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("gate: encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}
