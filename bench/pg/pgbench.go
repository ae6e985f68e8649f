package main

import (
	"context"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// Run is one pgbench run against one system.
type Run struct {
	harness.Summary
	P50MS, P99MS float64 // from the per-transaction logs
	Samples      int
	LogFailed    int64
	Attempts     int           // pgbench processes run (harness.PgbenchRun)
	Duration     time.Duration // -T of the run measured
}

// runPgbench runs pgbench against ep (harness.RunPgbench) and keeps the
// percentiles of its latencies.
func runPgbench(ctx context.Context, bin string, ep harness.Endpoint, spec harness.PgbenchSpec, logDir string) (Run, error) {
	r, err := harness.RunPgbench(ctx, bin, ep, spec, logDir)
	if err != nil {
		return Run{}, err
	}
	return Run{
		Summary:   r.Summary,
		P50MS:     float64(harness.Percentile(r.Latencies, 50)) / 1000,
		P99MS:     float64(harness.Percentile(r.Latencies, 99)) / 1000,
		Samples:   len(r.Latencies),
		LogFailed: r.LogFailed,
		Attempts:  r.Attempts,
		Duration:  r.Duration,
	}, nil
}
