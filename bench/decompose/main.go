// Command decompose says where phigate's cost per command goes. In one run,
// side by side on the same PostgreSQL, it measures pgbench through:
//
//	direct     PostgreSQL itself
//	pgbouncer  PgBouncer, session pooling (the peer)
//	relay      phigate, bytes copied both ways after login
//	classify   + every message classified and judged, nothing recorded
//	nofsync    + every command recorded, the spool never syncing
//	fsync      + fsync: the product, its grant without a masking profile
//	product    + the masking profile: the product as bench/pg measures it
//	readahead  the product with read_ahead on its grant (proven reads run
//	           while their event syncs; off by default)
//	nosnap     the product without the before and after rows of data
//	           changes (recording.disable_change_snapshots)
//
// relay, classify and nofsync need a phigate_bench build (make
// bench-build: bin/phigate-bench; the stage is its PHIGATE_BENCH_STAGE);
// fsync and product run the product binary. For each it reports TPS, p50
// and p99 latency and what phigate adds to direct, CPU time of the proxy
// process per transaction (utime+stime from /proc, PgBouncer's too), and,
// in a separate short pass under strace -c -f (which slows everything, so
// it only counts), system calls per transaction by kind.
//
//	go run ./bench/decompose -phigate bin/phigate -phigate-bench bin/phigate-bench
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// stages in the order of what they add.
var stages = []stage{
	{name: "direct"},
	{name: "pgbouncer"},
	{name: "relay", env: "relay", bench: true, unmasked: true},
	{name: "classify", env: "classify", bench: true, unmasked: true},
	{name: "nofsync", env: "nofsync", bench: true, unmasked: true},
	{name: "fsync", unmasked: true},
	{name: "product"},
	{name: "readahead", readAhead: true},
	{name: "nosnap", noSnapshots: true},
}

// stage is one way of reaching the database.
type stage struct {
	name     string
	env      string // PHIGATE_BENCH_STAGE
	bench    bool   // needs the phigate_bench build
	unmasked bool
	// readAhead: the grant's read_ahead.
	readAhead bool
	// noSnapshots: recording.disable_change_snapshots.
	noSnapshots bool
	ep          harness.Endpoint
	proc        *harness.Process // nil: direct (PostgreSQL's own processes are not ours to count)
}

type config struct {
	phigate, phigateBench, pgbouncer string
	scale                            int
	duration, straceDur              time.Duration
	clients                          []int
	modes, workloads, only           []string
	strace                           bool
	out, workdir                     string
	keep                             bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("decompose", flag.ContinueOnError)
	fs.StringVar(&c.phigate, "phigate", "./bin/phigate", "the product binary (make build)")
	fs.StringVar(&c.phigateBench, "phigate-bench", "./bin/phigate-bench", "the phigate_bench build (make bench-build)")
	fs.StringVar(&c.pgbouncer, "pgbouncer", "pgbouncer", "PgBouncer binary")
	fs.IntVar(&c.scale, "scale", 10, "pgbench scale factor")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each pgbench run")
	fs.DurationVar(&c.straceDur, "strace-duration", 4*time.Second, "length of each pgbench run under strace")
	fs.BoolVar(&c.strace, "strace", true, "count system calls per transaction with strace -c -f (skipped when strace is missing)")
	clients := fs.String("clients", "1,16", "pgbench client counts")
	modes := fs.String("modes", "simple,prepared", "pgbench query modes")
	workloads := fs.String("workloads", "select-only,read-write", "pgbench workloads")
	only := fs.String("stages", "", "measure only these stages (default: all)")
	fs.StringVar(&c.out, "results", "bench/results", "directory for decompose-*.json and decompose.md")
	fs.StringVar(&c.workdir, "workdir", "", "working directory, kept (default: a temp dir, removed)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range split(*clients) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c, fmt.Errorf("-clients: bad count %q", s)
		}
		c.clients = append(c.clients, n)
	}
	c.modes, c.workloads, c.only = split(*modes), split(*workloads), split(*only)
	for _, s := range c.only {
		if !hasStage(s) {
			return c, fmt.Errorf("-stages: unknown stage %q", s)
		}
	}
	if c.duration < time.Second || c.straceDur < time.Second {
		return c, errors.New("-duration and -strace-duration: at least 1s")
	}
	return c, nil
}

func hasStage(name string) bool {
	for _, s := range stages {
		if s.name == name {
			return true
		}
	}
	return false
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() { harness.Main("bench/decompose", parseFlags, run) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg config) error {
	work, cleanup, err := harness.WorkDir(cfg.workdir, "phigate-decompose-", cfg.keep, logf)
	if err != nil {
		return err
	}
	defer cleanup()
	pg, err := harness.StartPostgres(ctx, filepath.Join(work, "postgres"), cfg.scale, logf)
	if err != nil {
		return err
	}
	defer pg.Stop()

	var active []*stage
	for i := range stages {
		s := &stages[i]
		if len(cfg.only) > 0 && !contains(cfg.only, s.name) {
			continue
		}
		switch s.name {
		case "direct":
			s.ep = pg.Direct
		case "pgbouncer":
			p, ep, err := harness.StartPgBouncer(ctx, harness.PgBouncer{Bin: cfg.pgbouncer, Dir: filepath.Join(work, "pgbouncer")}, pg)
			if err != nil {
				return fmt.Errorf("pgbouncer: %w", err)
			}
			defer p.Stop()
			s.ep, s.proc = ep, p
		default:
			spec := harness.Phigate{Bin: cfg.phigate, Dir: filepath.Join(work, s.name), Unmasked: s.unmasked, ReadAhead: s.readAhead, NoChangeSnapshots: s.noSnapshots}
			if s.bench {
				spec.Bin = cfg.phigateBench
				spec.Env = []string{"PHIGATE_BENCH_STAGE=" + s.env}
			}
			p, ep, err := harness.StartPhigate(ctx, spec, pg)
			if err != nil {
				return fmt.Errorf("phigate (%s): %w", s.name, err)
			}
			defer p.Stop()
			if log, _ := os.ReadFile(filepath.Join(spec.Dir, "phigate.log")); s.bench && !strings.Contains(string(log), "BENCHMARK BUILD") {
				return fmt.Errorf("phigate (%s): %s is not a phigate_bench build (make bench-build)", s.name, spec.Bin)
			}
			s.ep, s.proc = ep, p
		}
		active = append(active, s)
	}

	rep := newReport(cfg)
	for _, s := range active {
		logf("warm-up %s", s.name)
		spec := harness.PgbenchSpec{Workload: "select-only", Mode: "simple", Clients: 4, Jobs: 2, Duration: 2 * time.Second}
		if _, err := harness.RunPgbench(ctx, pg.Pgbench, s.ep, spec, filepath.Join(work, "logs", "warmup-"+s.name)); err != nil {
			return fmt.Errorf("warm-up %s: %w", s.name, err)
		}
	}
	round := 0
	for _, w := range cfg.workloads {
		for _, m := range cfg.modes {
			for _, c := range cfg.clients {
				spec := harness.PgbenchSpec{Workload: w, Mode: m, Clients: c, Jobs: 2, Duration: cfg.duration}
				for _, s := range rotate(active, round) {
					if err := resetTables(ctx, pg, w); err != nil {
						return err
					}
					m, err := measure(ctx, pg, s, spec, filepath.Join(work, "logs", fmt.Sprintf("%s-%s-%d-%s", w, m, c, s.name)))
					if err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						return fmt.Errorf("%s %s: %w", spec, s.name, err)
					}
					logf("%-26s %-9s tps %8.0f  p50 %6.3f  p99 %6.3f ms  cpu %6.1f µs/tx", spec, s.name, m.TPS, m.P50MS, m.P99MS, m.CPUPerTx)
					rep.add(spec, s.name, m)
				}
				round++
			}
		}
	}
	if cfg.strace {
		if _, err := exec.LookPath("strace"); err != nil {
			logf("strace not found: system calls not counted")
		} else {
			for _, w := range cfg.workloads {
				for _, m := range cfg.modes {
					spec := harness.PgbenchSpec{Workload: w, Mode: m, Clients: 16, Jobs: 2, Duration: cfg.straceDur}
					for _, s := range active {
						if s.proc == nil {
							continue
						}
						if err := resetTables(ctx, pg, w); err != nil {
							return err
						}
						sc, err := countSyscalls(ctx, pg, s, spec, filepath.Join(work, "logs", "strace-"+w+"-"+m+"-"+s.name))
						if err != nil {
							if ctx.Err() != nil {
								return ctx.Err()
							}
							return fmt.Errorf("strace %s %s: %w", spec, s.name, err)
						}
						logf("strace %-19s %-9s %6.1f syscalls/tx (%s)", spec, s.name, sc.PerTx, sc.top(4))
						rep.addSyscalls(spec, s.name, sc)
					}
				}
			}
		}
	}
	rep.print(os.Stdout)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	logf("results written to %s", cfg.out)
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// resetTables gives every system of a read-write round the same start, as
// bench/pg does.
func resetTables(ctx context.Context, pg *harness.Postgres, workload string) error {
	if workload != "read-write" {
		return nil
	}
	for _, sql := range []string{"VACUUM pgbench_branches, pgbench_tellers", "TRUNCATE pgbench_history", "CHECKPOINT"} {
		if err := pg.Exec(ctx, harness.DB, sql); err != nil {
			return err
		}
	}
	return nil
}

// rotate returns s starting at position k mod len(s), so that across rounds
// every stage runs first, second and last alike.
func rotate(s []*stage, k int) []*stage {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(append([]*stage{}, s[k:]...), s[:k]...)
}
