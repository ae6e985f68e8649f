package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/phigate/phigate/bench/harness"
)

// setup is one way of putting -clients pgbench clients on the database.
type setup struct {
	name  string
	parts []harness.Endpoint // one pgbench process per part; clients split evenly
	jobs  int                // pgbench threads per process
}

// setupRun is one setup's figures over the rounds.
type setupRun struct {
	tps    []float64 // summed over the processes, per round
	failed int64
	lat    []int64 // merged, sorted at the end
}

func (r *setupRun) meanTPS() float64 {
	var s float64
	for _, t := range r.tps {
		s += t
	}
	return s / float64(len(r.tps))
}

// pgbenchResult is the pgbench phase's figures, by setup name.
type pgbenchResult struct {
	order []string
	runs  map[string]*setupRun
	notes string
}

// splitClients divides n clients over k processes, the first ones taking
// the remainder: 16 over 3 is 6, 5, 5.
func splitClients(n, k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// measurePgbench runs pgbench select-only in four setups, rounds times,
// the order rotating each round:
//
//	direct           one pgbench -c N -j 2 against PostgreSQL
//	one-node         one pgbench -c N -j 2 against node 1
//	one-node-3procs  three pgbench (-j 1) against node 1
//	three-nodes      three pgbench (-j 1), one against each node
func measurePgbench(ctx context.Context, cfg config, bin string, c *benchCluster, direct harness.Endpoint, logDir string) (*pgbenchResult, error) {
	agent := func(n *gnode) harness.Endpoint { return n.endpoint(harness.AgentName, c.agentToken) }
	n1 := agent(c.nodes[0])
	setups := []setup{
		{name: "direct", parts: []harness.Endpoint{direct}, jobs: 2},
		{name: "one-node", parts: []harness.Endpoint{n1}, jobs: 2},
		{name: "one-node-3procs", parts: []harness.Endpoint{n1, n1, n1}, jobs: 1},
		{name: "three-nodes", parts: []harness.Endpoint{n1, agent(c.nodes[1]), agent(c.nodes[2])}, jobs: 1},
	}
	res := &pgbenchResult{runs: map[string]*setupRun{}}
	for _, s := range setups {
		res.order = append(res.order, s.name)
		res.runs[s.name] = &setupRun{}
	}
	split := splitClients(cfg.clients, 3)
	res.notes = fmt.Sprintf("pgbench -S -M %s -n -T %d, scale %d, %d clients in all, mean of %d rounds (order rotated); "+
		"direct and one-node: one pgbench -c %d -j 2; one-node-3procs: three pgbench -c %v -j 1 all against node 1; "+
		"three-nodes: three pgbench -c %v -j 1, one per node; three phigate nodes (recording, masking profile), PostgreSQL and pgbench share %d CPUs",
		cfg.mode, int(cfg.duration.Seconds()), cfg.scale, cfg.clients, cfg.rounds, cfg.clients, split, split, numCPU())

	if cfg.warmup > 0 {
		warm := []harness.Endpoint{direct}
		for _, n := range c.nodes {
			warm = append(warm, agent(n))
		}
		spec := harness.PgbenchSpec{Workload: "select-only", Mode: cfg.mode, Clients: 4, Jobs: 2, Duration: cfg.warmup}
		for i, ep := range warm {
			if _, err := harness.RunPgbench(ctx, bin, ep, spec, filepath.Join(logDir, "warmup", strconv.Itoa(i))); err != nil {
				return res, fmt.Errorf("warm-up: %w", err)
			}
		}
	}

	var failures []error
	for round := range cfg.rounds {
		for i := range setups {
			s := setups[(i+round)%len(setups)]
			clients := []int{cfg.clients}
			if len(s.parts) > 1 {
				clients = split
			}
			runs := make([]harness.PgbenchRun, len(s.parts))
			errs := make([]error, len(s.parts))
			var wg sync.WaitGroup
			for k, ep := range s.parts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					spec := harness.PgbenchSpec{Workload: "select-only", Mode: cfg.mode, Clients: clients[k], Jobs: s.jobs, Duration: cfg.duration}
					runs[k], errs[k] = harness.RunPgbench(ctx, bin, ep, spec, filepath.Join(logDir, fmt.Sprintf("%s-%d-%d", s.name, round, k)))
				}()
			}
			wg.Wait()
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if err := errors.Join(errs...); err != nil {
				failures = append(failures, fmt.Errorf("%s round %d: %w", s.name, round+1, err))
				logf("FAILED %s round %d: %v", s.name, round+1, err)
				continue
			}
			sr := res.runs[s.name]
			var tps float64
			var per []string
			for _, r := range runs {
				tps += r.TPS
				sr.failed += r.Failed + r.LogFailed
				sr.lat = append(sr.lat, r.Latencies...)
				per = append(per, fmt.Sprintf("%.0f", r.TPS))
			}
			sr.tps = append(sr.tps, tps)
			logf("round %d %-16s tps %8.1f  (%s)", round+1, s.name, tps, strings.Join(per, " + "))
		}
	}
	for _, r := range res.runs {
		slices.Sort(r.lat)
	}
	return res, errors.Join(failures...)
}
