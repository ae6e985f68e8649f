package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/phigate/phigate/bench/harness"
)

// The systems of the rule-cost phase.
const (
	sysDirect = "direct" // pgbench straight to PostgreSQL
	sysPlain  = "plain"  // through node 1, grant without approval rules
	sysRuled  = "ruled"  // through node 1, the same grant with rules that match nothing pgbench sends
)

var systems = []string{sysDirect, sysPlain, sysRuled}

// systemRun is one system's figures over the rounds.
type systemRun struct {
	ran    []bool    // per round: whether the run succeeded (the others' figures are 0)
	tps    []float64 // per round
	p50    []int64   // per round, µs
	p99    []int64   // per round, µs
	failed int64
	lat    []int64 // merged over the rounds, sorted at the end, µs
}

// ruleCost is one workload's figures, by system.
type ruleCost struct {
	workload string
	runs     map[string]*systemRun
}

// measureRuleCost runs pgbench workload against the three systems,
// cfg.rounds times, the order rotating each round, after a warm-up of
// each.
func measureRuleCost(ctx context.Context, cfg config, workload string, pg *harness.Postgres, c *benchCluster, logDir string) (*ruleCost, error) {
	eps := map[string]harness.Endpoint{
		sysDirect: pg.Direct,
		sysPlain:  c.endpoint(0, plainName),
		sysRuled:  c.endpoint(0, ruledName),
	}
	res := &ruleCost{workload: workload, runs: map[string]*systemRun{}}
	for _, s := range systems {
		res.runs[s] = &systemRun{ran: make([]bool, cfg.rounds), tps: make([]float64, cfg.rounds),
			p50: make([]int64, cfg.rounds), p99: make([]int64, cfg.rounds)}
	}
	spec := harness.PgbenchSpec{Workload: workload, Mode: cfg.mode, Clients: cfg.clients, Jobs: min(2, cfg.clients), Duration: cfg.duration}
	if cfg.warmup > 0 {
		warm := spec
		warm.Duration = cfg.warmup
		for _, s := range systems {
			if _, err := harness.RunPgbench(ctx, pg.Pgbench, eps[s], warm, filepath.Join(logDir, "warmup-"+s)); err != nil {
				return res, fmt.Errorf("warm-up %s: %w", s, err)
			}
		}
	}
	var failures []error
	for round := range cfg.rounds {
		for i := range systems {
			s := systems[(i+round)%len(systems)]
			run, err := harness.RunPgbench(ctx, pg.Pgbench, eps[s], spec, filepath.Join(logDir, s+"-"+strconv.Itoa(round)))
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if err != nil {
				failures = append(failures, fmt.Errorf("%s round %d: %w", s, round+1, err))
				logf("FAILED %s %s round %d: %v", workload, s, round+1, err)
				continue
			}
			sr := res.runs[s]
			sr.ran[round], sr.tps[round] = true, run.TPS
			sr.p50[round], sr.p99[round] = harness.Percentile(run.Latencies, 50), harness.Percentile(run.Latencies, 99)
			sr.failed += run.Failed + run.LogFailed
			sr.lat = append(sr.lat, run.Latencies...)
			logf("%s round %d %-7s tps %8.1f  p50 %6.3f ms  p99 %6.3f ms", workload, round+1, s, run.TPS,
				float64(sr.p50[round])/1000, float64(sr.p99[round])/1000)
		}
	}
	for _, r := range res.runs {
		slices.Sort(r.lat)
	}
	return res, errors.Join(failures...)
}

// ratios is a/b per round, for the rounds where both ran.
func (rc *ruleCost) ratios(a, b string, of func(*systemRun) []float64) []float64 {
	ra, rb := rc.runs[a], rc.runs[b]
	x, y := of(ra), of(rb)
	var out []float64
	for i := range x {
		if ra.ran[i] && rb.ran[i] && y[i] != 0 {
			out = append(out, x[i]/y[i])
		}
	}
	return out
}

// ranOnly is v's figures of the rounds r ran.
func (r *systemRun) ranOnly(v []float64) []float64 {
	var out []float64
	for i, x := range v {
		if r.ran[i] {
			out = append(out, x)
		}
	}
	return out
}

func tpsOf(r *systemRun) []float64 { return r.tps }
func p50Of(r *systemRun) []float64 { return floats(r.p50) }
func p99Of(r *systemRun) []float64 { return floats(r.p99) }

func floats(v []int64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
