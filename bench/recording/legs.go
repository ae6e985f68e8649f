package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// copyLeg is one COPY run of every client against one system.
type copyLeg struct {
	client string // clientPgx or clientPsql
	system string
	round  int
	res    copyResult
	drain  time.Duration // shipping on: from the load's end until drained
	// before, at the load's end, after the drain (the node's metrics;
	// nil for direct). Without shipping, after is the load's end.
	m0, m1, m2 metrics
	load       usageDelta // while the clients ran
	total      usageDelta // load and drain
}

// endpoint is where the agent reaches the database through system.
func (b *rig) endpoint(system string) (harness.Endpoint, *node) {
	switch system {
	case sysPhigateOn:
		return b.on.ep, b.on
	case sysPhigateOff:
		return b.off.ep, b.off
	}
	return b.pg.Direct, nil
}

// measureCopy runs the COPY workload with client against every system,
// cfg.copyRounds times, the order rotating each round.
func (b *rig) measureCopy(ctx context.Context, w *copyWorkload, client string) ([]copyLeg, error) {
	systems := []string{sysDirect, sysPhigateOff, sysPhigateOn}
	var legs []copyLeg
	var failures []error
	for round := range b.cfg.copyRounds {
		for i := range systems {
			sys := systems[(i+round)%len(systems)]
			leg, err := b.copyLeg(ctx, w, client, sys, round)
			if ctx.Err() != nil {
				return legs, ctx.Err()
			}
			if err != nil {
				failures = append(failures, fmt.Errorf("%s round %d: %w", sys, round+1, err))
				logf("FAILED COPY %s %s round %d: %v", client, sys, round+1, err)
				continue
			}
			legs = append(legs, leg)
			line := fmt.Sprintf("COPY %-4s round %d %-11s %7.1f MB/s (%d MB in %v)", client, round+1, sys,
				leg.mbps(), leg.res.bytes/1e6, leg.res.elapsed.Round(time.Millisecond))
			if sys != sysDirect {
				line += fmt.Sprintf("; %.0f events/s, fsync %.2f ms", leg.eventsPerSec(), leg.fsyncMS())
			}
			if sys == sysPhigateOn {
				line += fmt.Sprintf("; drained %v later: %.1f MB/s shipped; stored/raw %.3f, stored/data %.3f",
					leg.drain.Round(time.Millisecond), leg.shippedMBps(), leg.storedOverRaw(), leg.storedOverData())
			}
			logf("%s; cpu:%s", line, leg.total.cpuSummary())
		}
	}
	return legs, errors.Join(failures...)
}

func (b *rig) copyLeg(ctx context.Context, w *copyWorkload, client, sys string, round int) (copyLeg, error) {
	leg := copyLeg{client: client, system: sys, round: round}
	if err := w.reset(ctx, b.pg); err != nil {
		return leg, err
	}
	ep, n := b.endpoint(sys)
	var err error
	if n != nil {
		if leg.m0, err = n.scrape(ctx); err != nil {
			return leg, err
		}
	}
	stopProfile := b.profile(n, round, fmt.Sprintf("copy-%s-%s", client, sys))
	defer stopProfile()
	u0 := b.parts.sample()
	leg.res, err = w.run(ctx, client, ep, b.psql, filepath.Join(b.work, "copy"))
	end := time.Now()
	u1 := b.parts.sample()
	if err != nil {
		return leg, err
	}
	leg.load = u1.since(u0)
	leg.load.cpu[partClients] = leg.res.clientCPU
	leg.total = leg.load
	if n == nil {
		return leg, nil
	}
	if leg.m1, err = n.scrape(ctx); err != nil {
		return leg, err
	}
	leg.m2 = leg.m1
	if sys == sysPhigateOn {
		leg.drain, leg.m2, err = n.waitDrained(ctx, end, leg.m0, w.clients, b.idle, b.cfg.drainLimit)
		if err != nil {
			return leg, err
		}
		leg.total = b.parts.sample().since(u0)
		leg.total.cpu[partClients] = leg.res.clientCPU
	}
	return leg, nil
}

// The figures of a COPY leg.

// mbps is COPY data per second while the clients ran.
func (l copyLeg) mbps() float64 { return finite(float64(l.res.bytes) / 1e6 / l.res.elapsed.Seconds()) }

// shippedMBps is COPY data per second until the store held all of it.
func (l copyLeg) shippedMBps() float64 {
	return finite(float64(l.res.bytes) / 1e6 / (l.res.elapsed + l.drain).Seconds())
}

func (l copyLeg) eventsPerSec() float64 {
	return finite(delta(l.m0, l.m2, mFrames) / l.res.elapsed.Seconds())
}

// rawMBps is the recorded bytes sealed, per second of load.
func (l copyLeg) rawMBps() float64 {
	return finite(delta(l.m0, l.m2, mRaw) / 1e6 / l.res.elapsed.Seconds())
}

// fsyncMS is the mean time of the journal's fdatasync (one per group
// commit) over the leg.
func (l copyLeg) fsyncMS() float64 {
	return finite(1000 * delta(l.m0, l.m2, mFsyncSecs) / delta(l.m0, l.m2, mCommits))
}

func (l copyLeg) storedOverRaw() float64 {
	return finite(delta(l.m0, l.m2, mStored) / delta(l.m0, l.m2, mRaw))
}

func (l copyLeg) storedOverData() float64 {
	return finite(delta(l.m0, l.m2, mStored) / float64(l.res.bytes))
}

func (l copyLeg) rawOverData() float64 { return finite(delta(l.m0, l.m2, mRaw) / float64(l.res.bytes)) }

// uploadMBps is the stored bytes the store confirmed per second of load
// and drain.
func (l copyLeg) uploadMBps() float64 {
	return finite(delta(l.m0, l.m2, mStored) / 1e6 / (l.res.elapsed + l.drain).Seconds())
}

// cpuPerGB is part's CPU seconds per GB of COPY data, over load and drain.
func (l copyLeg) cpuPerGB(part string) (float64, bool) {
	d, ok := l.total.cpu[part]
	if !ok {
		return 0, false
	}
	return finite(d.Seconds() / (float64(l.res.bytes) / 1e9)), true
}

// pgbenchLeg is one pgbench run against one system.
type pgbenchLeg struct {
	workload string
	system   string
	round    int
	run      harness.PgbenchRun
	elapsed  time.Duration // pgbench's process, start to exit
	drain    time.Duration
	m0, m2   metrics
	total    usageDelta
}

func (l pgbenchLeg) eventsPerSec() float64 {
	return finite(delta(l.m0, l.m2, mFrames) / l.elapsed.Seconds())
}

func (l pgbenchLeg) rawMBps() float64 {
	return finite(delta(l.m0, l.m2, mRaw) / 1e6 / l.elapsed.Seconds())
}

func (l pgbenchLeg) storedOverRaw() float64 {
	return finite(delta(l.m0, l.m2, mStored) / delta(l.m0, l.m2, mRaw))
}

// fsyncMS is the mean time of the journal's fdatasync over the leg.
func (l pgbenchLeg) fsyncMS() float64 {
	return finite(1000 * delta(l.m0, l.m2, mFsyncSecs) / delta(l.m0, l.m2, mCommits))
}

// commitsPerSec is the journal's group commits per second.
func (l pgbenchLeg) commitsPerSec() float64 {
	return finite(delta(l.m0, l.m2, mCommits) / l.elapsed.Seconds())
}

// eventsPerTx is recording events per transaction.
func (l pgbenchLeg) eventsPerTx() float64 {
	return finite(delta(l.m0, l.m2, mFrames) / float64(l.run.Transactions))
}

// measurePgbench runs pgbench, for each workload: direct once, then
// cfg.rounds rounds of shipping on and off, the order alternating. Before
// every read-write run the tables are vacuumed, the history emptied and a
// checkpoint taken; after every run with shipping on the node drains.
func (b *rig) measurePgbench(ctx context.Context) ([]pgbenchLeg, error) {
	cfg := b.cfg
	var legs []pgbenchLeg
	var failures []error
	if cfg.warmup > 0 {
		for _, sys := range []string{sysDirect, sysPhigateOff, sysPhigateOn} {
			spec := harness.PgbenchSpec{Workload: "select-only", Mode: "simple", Clients: 4, Jobs: cfg.jobs, Duration: cfg.warmup}
			if _, err := b.pgbenchLeg(ctx, spec, sys, -1); err != nil {
				return nil, fmt.Errorf("warm-up %s: %w", sys, err)
			}
		}
	}
	for _, wl := range cfg.workloads {
		spec := harness.PgbenchSpec{Workload: wl, Mode: "simple", Clients: cfg.clients, Jobs: cfg.jobs, Duration: cfg.duration}
		order := []string{sysDirect}
		for r := range cfg.rounds {
			if r%2 == 0 {
				order = append(order, sysPhigateOn, sysPhigateOff)
			} else {
				order = append(order, sysPhigateOff, sysPhigateOn)
			}
		}
		rounds := map[string]int{}
		for _, sys := range order {
			round := rounds[sys]
			rounds[sys]++
			leg, err := b.pgbenchLeg(ctx, spec, sys, round)
			if ctx.Err() != nil {
				return legs, ctx.Err()
			}
			if err != nil {
				failures = append(failures, fmt.Errorf("pgbench %s %s round %d: %w", spec, sys, round+1, err))
				logf("FAILED pgbench %s %s round %d: %v", spec, sys, round+1, err)
				continue
			}
			legs = append(legs, leg)
			line := fmt.Sprintf("pgbench %-20s round %d %-11s tps %8.1f (%d tx, %d failed)", spec, round+1, sys,
				leg.run.TPS, leg.run.Transactions, leg.run.Failed+leg.run.LogFailed)
			if sys != sysDirect {
				line += fmt.Sprintf("; %.0f events/s, %.0f group commits/s, fsync %.2f ms", leg.eventsPerSec(), leg.commitsPerSec(), leg.fsyncMS())
			}
			if sys == sysPhigateOn {
				line += fmt.Sprintf(", %.2f MB/s raw, stored/raw %.3f, drained in %v", leg.rawMBps(), leg.storedOverRaw(), leg.drain.Round(time.Millisecond))
			}
			logf("%s; cpu:%s", line, leg.total.cpuSummary())
		}
	}
	return legs, errors.Join(failures...)
}

// pgbenchLeg runs one pgbench; round -1 is a warm-up.
func (b *rig) pgbenchLeg(ctx context.Context, spec harness.PgbenchSpec, sys string, round int) (pgbenchLeg, error) {
	leg := pgbenchLeg{workload: spec.Workload, system: sys, round: round}
	if spec.Workload == "read-write" {
		// The same starting point for every run: pgbench's own pre-run
		// vacuum (disabled with -n), and a checkpoint so that no run
		// inherits another's dirty pages.
		for _, sql := range []string{"VACUUM pgbench_branches, pgbench_tellers", "TRUNCATE pgbench_history", "CHECKPOINT"} {
			if err := b.pg.Exec(ctx, harness.DB, sql); err != nil {
				return leg, err
			}
		}
	}
	ep, n := b.endpoint(sys)
	var err error
	if n != nil {
		if leg.m0, err = n.scrape(ctx); err != nil {
			return leg, err
		}
	}
	u0 := b.parts.sample()
	name := "warmup-" + sys
	if round >= 0 {
		name = spec.Workload + "-" + sys + "-" + strconv.Itoa(round)
	}
	stopProfile := b.profile(n, round, fmt.Sprintf("pgbench-%s-%s", spec.Workload, sys))
	defer stopProfile()
	start := time.Now()
	leg.run, err = harness.RunPgbench(ctx, b.pg.Pgbench, ep, spec, filepath.Join(b.work, "logs", name))
	end := time.Now()
	leg.elapsed = end.Sub(start)
	if err != nil {
		return leg, err
	}
	if n != nil {
		if leg.m2, err = n.scrape(ctx); err != nil {
			return leg, err
		}
	}
	if sys == sysPhigateOn {
		leg.drain, leg.m2, err = n.waitDrained(ctx, end, leg.m0, spec.Clients, b.idle, b.cfg.drainLimit)
		if err != nil {
			return leg, err
		}
	}
	leg.total = b.parts.sample().since(u0)
	return leg, nil
}
