// Command cluster is phigate's cluster benchmark (issue 9). In one run it
// starts a real PostgreSQL (fsync on) and a cluster of three phigate nodes,
// each a separate `phigate node` process on loopback, and measures:
//
//   - policy propagation: -revisions successive policy revisions applied on
//     node 1 (each replaces the token of the identity "probe"), in two
//     passes. Per revision, the time from sending the apply request until
//     each node is seen to enforce it: by its gauge (GET /metrics shows
//     phigate_policy_revision at or above the revision; the node sets it
//     right after publishing the revision's snapshot), and by the effect
//     (a PostgreSQL login with the new token succeeds). Each node's probe
//     retries every millisecond; the figure is counted to the end of the
//     successful attempt (an upper bound) and the start of the last
//     unsuccessful one (a lower bound). Logins are costly (a refusal is
//     recorded durably, a success opens an upstream SCRAM session), so the
//     login pass is the coarser one; what a login costs is measured too;
//   - join-to-ready: -joins times, a fourth node started with a fresh data
//     directory and `--join` (token in PHIGATE_JOIN_TOKEN), timed from the
//     process start until its /readyz answers 200 and until it accepts a
//     PostgreSQL login; it then leaves the cluster again;
//   - pgbench select-only at -clients clients, side by side in one run:
//     direct to PostgreSQL, one pgbench against one node, three pgbench
//     processes against one node (the same client processes, to separate
//     their cost from the nodes'), and three pgbench processes spread over
//     the three nodes; TPS summed, latency percentiles from the merged
//     per-transaction logs.
//
// It prints the figures and writes one JSON file per figure (bench.Result)
// under -results, named cluster-*.json. Nothing it starts outlives it:
// children are stopped on exit or Ctrl-C, and die with it if it is killed.
//
//	go run ./bench/cluster -phigate ./bin/phigate -results bench/results
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// config is the command line.
type config struct {
	phigate   string
	revisions int
	joins     int
	clients   int
	scale     int
	duration  time.Duration
	warmup    time.Duration
	rounds    int
	mode      string
	out       string
	workdir   string
	keep      bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.StringVar(&c.phigate, "phigate", "./bin/phigate", "phigate binary (built by make build)")
	fs.IntVar(&c.revisions, "revisions", 50, "policy revisions to apply and time")
	fs.IntVar(&c.joins, "joins", 3, "times a fourth node joins (fresh data directory each time)")
	fs.IntVar(&c.clients, "clients", 16, "pgbench clients in all (split over three pgbench processes where spread)")
	fs.IntVar(&c.scale, "scale", 10, "pgbench scale factor (-s)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each pgbench run (-T)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "select-only warm-up per node and direct (0: none)")
	fs.IntVar(&c.rounds, "rounds", 2, "pgbench rounds; the order of the setups rotates between rounds")
	fs.StringVar(&c.mode, "mode", "simple", "pgbench query mode (-M): simple, extended, prepared")
	fs.StringVar(&c.out, "results", "bench/results", "directory for the JSON results")
	fs.StringVar(&c.workdir, "workdir", "", "working directory for the servers, kept (default: a new temp dir, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, recordings)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.revisions < 0, c.joins < 0, c.rounds < 0:
		return c, errors.New("-revisions, -joins and -rounds: 0 or more")
	case c.clients < 3:
		return c, errors.New("-clients: at least 3 (one per node)")
	case c.duration < time.Second:
		return c, errors.New("-duration: at least 1s")
	case c.mode != "simple" && c.mode != "extended" && c.mode != "prepared":
		return c, fmt.Errorf("-mode: unknown mode %q", c.mode)
	}
	return c, nil
}

func main() { harness.Main("bench/cluster", parseFlags, run) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg config) (err error) {
	loadStart := loadavg()
	bin, err := filepath.Abs(cfg.phigate)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("phigate binary: %w (run make build, or pass -phigate)", err)
	}
	work, cleanup, err := harness.WorkDir(cfg.workdir, "phigate-bench-cluster-", cfg.keep, logf)
	if err != nil {
		return err
	}
	defer cleanup()

	pg, err := harness.StartPostgres(ctx, filepath.Join(work, "postgres"), cfg.scale, logf)
	if err != nil {
		return err
	}
	defer pg.Stop()

	c, err := startCluster(ctx, bin, filepath.Join(work, "cluster"), pg)
	if err != nil {
		return err
	}
	defer c.stop()

	rep := &report{cfg: cfg, loadStart: loadStart}
	var failures []error
	fail := func(err error) {
		logf("FAILED: %v", err)
		failures = append(failures, err)
	}

	if cfg.revisions > 0 {
		lc, err := measureLoginCost(ctx, c, pg.Direct, 20)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fail(fmt.Errorf("login cost: %w", err))
		}
		rep.logins = lc
		for _, by := range []string{byGauge, byLogin} {
			logf("policy propagation (%s): %d revisions applied on %s", by, cfg.revisions, c.nodes[0].id)
			p, err := measurePropagation(ctx, c, cfg.revisions, by)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fail(fmt.Errorf("policy propagation (%s): %w", by, err))
			}
			rep.props = append(rep.props, p)
		}
	}

	if cfg.joins > 0 {
		logf("join-to-ready: %d joins of a fourth node", cfg.joins)
		j, err := measureJoins(ctx, c, cfg.joins)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fail(fmt.Errorf("join: %w", err))
		}
		rep.joins = j
	}

	if cfg.rounds > 0 {
		res, err := measurePgbench(ctx, cfg, pg.Pgbench, c, pg.Direct, filepath.Join(work, "logs"))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fail(err)
		}
		rep.pgbench = res
	}

	rep.loadEnd = loadavg()
	rep.print(os.Stdout)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	logf("results written to %s", cfg.out)
	return errors.Join(failures...)
}
