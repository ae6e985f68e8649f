// Command pg is phigate's PostgreSQL benchmark. In one run, side by side, it
// measures a real PostgreSQL (fsync on) reached (a) directly, (b) through
// PgBouncer in session pooling, and (c) through phigate with recording and a
// masking profile on:
//
//   - pgbench select-only and the TPC-B-like read-write mix, at 1, 16 and 64
//     clients, simple and prepared protocol, the systems interleaved so that
//     load drift hits them alike; TPS from pgbench, p50/p99 latency from its
//     per-transaction logs;
//   - result streaming: a SELECT of 256 MiB and of 1 GiB read by a pgx client,
//     throughput per system and phigate's peak RSS for each size.
//
// It prints a table and writes one JSON file per figure (bench.Result) and
// the top of a README.md under -out; with -rounds N it does all of it N
// times, each round on servers started afresh, into -out/round-1 to
// -out/round-N (what `make bench-ci` hands to bench/gate). Nothing it
// starts outlives it: children are stopped in order on exit or Ctrl-C, and
// die with it if it is killed.
//
//	go run ./bench/pg -phigate ./bin/phigate
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// config is the command line.
type config struct {
	phigate    string
	pgbouncer  string
	scale      int
	duration   time.Duration
	warmup     time.Duration
	clients    []int
	jobs       int
	modes      []string
	workloads  []string
	systems    []string
	stream     []int64
	streamStr  []string
	streamReps int
	out        string
	workdir    string
	keep       bool
	rounds     int
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("pg", flag.ContinueOnError)
	fs.StringVar(&c.phigate, "phigate", "./bin/phigate", "phigate binary (built by make build)")
	fs.StringVar(&c.pgbouncer, "pgbouncer", "pgbouncer", "PgBouncer binary")
	fs.IntVar(&c.scale, "scale", 10, "pgbench scale factor (-s): 100,000 accounts per unit")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each pgbench run (-T)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "select-only warm-up per system before measuring (0: none)")
	clients := fs.String("clients", "1,16,64", "pgbench client counts")
	fs.IntVar(&c.jobs, "jobs", 2, "pgbench threads (-j), at most the client count")
	modes := fs.String("modes", "simple,prepared", "pgbench query modes (-M): simple, extended, prepared")
	workloads := fs.String("workloads", "select-only,read-write", "pgbench workloads")
	systems := fs.String("systems", "direct,pgbouncer,phigate", "systems to measure")
	stream := fs.String("stream", "256MiB,1GiB", "result sizes for the streaming benchmark (empty: skip)")
	fs.IntVar(&c.streamReps, "stream-reps", 3, "reads per system and size; the median is reported")
	fs.StringVar(&c.out, "results", "bench/results", "directory for the JSON results and README.md")
	fs.StringVar(&c.out, "out", "bench/results", "same as -results")
	fs.StringVar(&c.workdir, "workdir", "", "working directory for the servers, kept (default: a new temp dir, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, recordings)")
	fs.IntVar(&c.rounds, "rounds", 1, "complete runs, each on servers started afresh; more than 1 writes each into -results/round-N (make bench-ci, for bench/gate)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range harness.SplitList(*clients) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c, fmt.Errorf("-clients: bad count %q", s)
		}
		c.clients = append(c.clients, n)
	}
	c.modes = harness.SplitList(*modes)
	for _, m := range c.modes {
		if m != "simple" && m != "extended" && m != "prepared" {
			return c, fmt.Errorf("-modes: unknown mode %q", m)
		}
	}
	c.workloads = harness.SplitList(*workloads)
	for _, w := range c.workloads {
		if w != "select-only" && w != "read-write" {
			return c, fmt.Errorf("-workloads: unknown workload %q", w)
		}
	}
	c.systems = harness.SplitList(*systems)
	for _, s := range c.systems {
		if s != "direct" && s != "pgbouncer" && s != "phigate" {
			return c, fmt.Errorf("-systems: unknown system %q", s)
		}
	}
	for _, s := range harness.SplitList(*stream) {
		n, err := ParseSize(s)
		if err != nil {
			return c, fmt.Errorf("-stream: %w", err)
		}
		c.stream = append(c.stream, n)
		c.streamStr = append(c.streamStr, s)
	}
	if c.streamReps < 1 {
		return c, errors.New("-stream-reps: at least 1")
	}
	if c.duration < time.Second {
		return c, errors.New("-duration: at least 1s")
	}
	if c.rounds < 1 {
		return c, errors.New("-rounds: at least 1")
	}
	return c, nil
}

func main() { harness.Main("bench/pg", parseFlags, runRounds) }

// runRounds runs the whole benchmark cfg.rounds times, each round on
// servers of its own started afresh, its results in -results/round-N
// (-results itself for a single round). A round that fails does not stop
// the next: bench/gate, reading the rounds, decides whether enough of
// them hold each figure.
func runRounds(ctx context.Context, cfg config) error {
	if cfg.rounds == 1 {
		return run(ctx, cfg)
	}
	var failed []error
	for i := 1; i <= cfg.rounds; i++ {
		rc := cfg
		rc.out = filepath.Join(cfg.out, "round-"+strconv.Itoa(i))
		if cfg.workdir != "" {
			rc.workdir = filepath.Join(cfg.workdir, "round-"+strconv.Itoa(i))
		}
		harness.Logf("round %d of %d, results in %s", i, cfg.rounds, rc.out)
		if err := run(ctx, rc); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			harness.Logf("round %d of %d FAILED: %v", i, cfg.rounds, err)
			failed = append(failed, fmt.Errorf("round %d: %w", i, err))
		}
	}
	return errors.Join(failed...)
}

// system is one way of reaching the database.
type system struct {
	name string
	ep   harness.Endpoint
}

func run(ctx context.Context, cfg config) (err error) {
	work, cleanup, err := harness.WorkDir(cfg.workdir, "phigate-bench-", cfg.keep, harness.Logf)
	if err != nil {
		return err
	}
	defer cleanup()
	runs := len(cfg.workloads) * len(cfg.modes) * len(cfg.clients) * len(cfg.systems)
	harness.Logf("%d pgbench runs of %s each, about %s in all", runs, cfg.duration,
		(time.Duration(runs)*(cfg.duration+2*time.Second) + time.Duration(len(cfg.systems))*cfg.warmup).Round(time.Second))

	rep := &report{cfg: cfg, pgbench: map[string]map[string]Run{}, stream: map[string]map[string]StreamRun{}, rss: map[string]float64{}}
	if p50, p99, err := fsyncLatency(work, 500); err == nil {
		rep.fsyncP50, rep.fsyncP99 = p50, p99
		harness.Logf("disk: 4 KiB write+fsync p50 %.3f ms, p99 %.3f ms", p50, p99)
	} else {
		harness.Logf("disk: fsync probe failed: %v", err)
	}

	pg, err := harness.StartPostgres(ctx, filepath.Join(work, "postgres"), cfg.scale, harness.Logf)
	if err != nil {
		return err
	}
	defer pg.Stop()

	var systems []system
	var phigate *harness.Process
	for _, name := range cfg.systems {
		switch name {
		case "direct":
			systems = append(systems, system{"direct", pg.Direct})
		case "pgbouncer":
			p, ep, err := harness.StartPgBouncer(ctx, harness.PgBouncer{Bin: cfg.pgbouncer, Dir: filepath.Join(work, "pgbouncer")}, pg)
			if err != nil {
				return fmt.Errorf("pgbouncer: %w", err)
			}
			defer p.Stop()
			systems = append(systems, system{"pgbouncer", ep})
		case "phigate":
			p, ep, err := harness.StartPhigate(ctx, harness.Phigate{Bin: cfg.phigate, Dir: filepath.Join(work, "phigate")}, pg)
			if err != nil {
				return fmt.Errorf("phigate: %w", err)
			}
			defer func() { phigate.Stop() }() // the streaming phase replaces it
			phigate = p
			systems = append(systems, system{"phigate", ep})
		}
	}

	var failures []error
	fail := func(err error) {
		harness.Logf("FAILED: %v", err)
		failures = append(failures, err)
	}

	if cfg.warmup > 0 {
		for _, s := range systems {
			harness.Logf("warm-up %s", s.name)
			spec := harness.PgbenchSpec{Workload: "select-only", Mode: "simple", Clients: 4, Jobs: cfg.jobs, Duration: cfg.warmup}
			if _, err := runPgbench(ctx, pg.Pgbench, s.ep, spec, filepath.Join(work, "logs", "warmup-"+s.name)); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fail(fmt.Errorf("warm-up %s: %w", s.name, err))
			}
		}
	}

	round := 0
	for _, w := range cfg.workloads {
		for _, m := range cfg.modes {
			for _, c := range cfg.clients {
				spec := harness.PgbenchSpec{Workload: w, Mode: m, Clients: c, Jobs: cfg.jobs, Duration: cfg.duration}
				for _, s := range rotate(systems, round) {
					if w == "read-write" {
						// The same starting point for every system: pgbench's
						// own pre-run vacuum (disabled with -n), and a
						// checkpoint so none inherits another's dirty pages.
						for _, sql := range []string{"VACUUM pgbench_branches, pgbench_tellers", "TRUNCATE pgbench_history", "CHECKPOINT"} {
							if err := pg.Exec(ctx, harness.DB, sql); err != nil {
								return err
							}
						}
					}
					r, err := runPgbench(ctx, pg.Pgbench, s.ep, spec, filepath.Join(work, "logs", spec.Workload+"-"+spec.Mode+"-"+strconv.Itoa(c)+"-"+s.name))
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if err != nil {
						fail(fmt.Errorf("%s %s: %w", spec, s.name, err))
						continue
					}
					again := ""
					if r.Attempts > 1 {
						again = fmt.Sprintf(", second attempt with -T %d: the first lost over half its -T to connecting", int(r.Duration.Seconds()))
					}
					harness.Logf("%-28s %-9s tps %9.1f  p50 %7.3f ms  p99 %7.3f ms  (%d tx, %d failed%s)",
						spec, s.name, r.TPS, r.P50MS, r.P99MS, r.Samples, r.Failed+r.LogFailed, again)
					rep.addPgbench(spec, s.name, r)
				}
				round++
			}
		}
	}
	if phigate != nil {
		if hwm, err := peakRSS(phigate.PID()); err == nil {
			rep.rss["pgbench"] = float64(hwm) / (1 << 20)
		}
		// A Go process keeps the heap it grew (64 pgbench clients' worth)
		// resident for a while, which would hide what streaming needs. A
		// fresh node shows the memory of the streams alone.
		if len(cfg.stream) > 0 {
			phigate.Stop()
			p, ep, err := harness.StartPhigate(ctx, harness.Phigate{Bin: cfg.phigate, Dir: filepath.Join(work, "phigate-stream")}, pg)
			if err != nil {
				phigate = nil
				return fmt.Errorf("phigate for streaming: %w", err)
			}
			phigate = p
			for i := range systems {
				if systems[i].name == "phigate" {
					systems[i].ep = ep
				}
			}
		}
	}

	for i, size := range cfg.stream {
		label := cfg.streamStr[i]
		for _, s := range rotate(systems, i) {
			if s.name == "phigate" {
				if err := resetPeakRSS(phigate.PID()); err != nil {
					fail(err)
				}
				if now, err := rss(phigate.PID()); err == nil {
					rep.rss["before-stream-"+label] = float64(now) / (1 << 20)
				}
			}
			variants := []string{s.name}
			if s.name == "phigate" {
				variants = append(variants, "phigate-masked")
			}
			measured := true
			for _, name := range variants {
				var reps []StreamRun
				for range cfg.streamReps {
					r, err := streamOnce(ctx, s.ep, size, name == "phigate-masked")
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if err != nil {
						fail(fmt.Errorf("stream %s %s: %w", label, name, err))
						break
					}
					reps = append(reps, r)
				}
				if len(reps) < cfg.streamReps {
					measured = false
					continue
				}
				slices.SortFunc(reps, func(a, b StreamRun) int { return cmp.Compare(a.Elapsed, b.Elapsed) })
				r := reps[len(reps)/2]
				harness.Logf("stream %-8s %-14s %8.1f MB/s  (%d MB in %s)", label, name, r.MBps(), r.Bytes/1e6, r.Elapsed.Round(time.Millisecond))
				rep.addStream(label, name, r)
			}
			if s.name == "phigate" && measured {
				hwm, err := peakRSS(phigate.PID())
				if err != nil {
					fail(err)
					continue
				}
				rep.rss["stream-"+label] = float64(hwm) / (1 << 20)
				harness.Logf("phigate peak RSS during the %s stream: %.1f MiB", label, float64(hwm)/(1<<20))
			}
		}
	}

	rep.print(os.Stdout)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	harness.Logf("results written to %s", cfg.out)
	return errors.Join(failures...)
}

// rotate returns s starting at position k mod len(s), so that across rounds
// every system runs first, second and last alike.
func rotate(s []system, k int) []system {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(append([]system{}, s[k:]...), s[:k]...)
}
