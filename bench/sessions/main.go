// Command sessions is phigate's many-sessions benchmark (issue 13): how many
// concurrent client sessions one node holds, what each costs in memory and
// goroutines, and how a node takes a storm of new TLS sessions, side by
// side with PgBouncer (session pooling) holding the same clients in front
// of the same PostgreSQL:
//
//   - hold: for each step of -sessions (1,000, 2,000, 5,000, 10,000), TLS
//     sessions are opened (-open-concurrency at a time) and kept open,
//     -active of them running SELECT 1 every -active-every while the rest
//     idle; after -hold the process's VmRSS, open files and threads are
//     read from /proc, and for phigate its /metrics (goroutines, goroutine
//     stacks, heap). After the step -churn-at, its idle sessions are
//     closed and opened again and it is measured again: a fresh process
//     has not yet touched all the memory it gave the sessions, a process
//     that reuses freed memory has. A system that fails a login stops
//     there: the sessions it held, the error, and whether it exited are
//     reported.
//   - storm: for each -storm-rate, new TLS sessions at that rate for
//     -storm-duration (open loop: each on its own schedule, not after the
//     one before), each logging in, running SELECT 1 and closing; achieved
//     rate, errors, login latency, CPU per session by process, and the
//     listener's accept queue sampled every 2 ms (sock_diag) with the
//     kernel's ListenOverflows and ListenDrops. A system whose hold stopped
//     at a limit is started afresh for its storms.
//   - profile (phigate): the node built again with bench/sessions/nodeprof
//     added by go build -overlay (the tree is not changed), whose heap
//     profile at -profile-sessions sessions, less the one before them, says
//     which allocations each session holds; and a CPU profile of a storm at
//     the largest rate.
//
// The systems: phigate (its resource's address is a PgBouncer with
// default_pool_size -pool: phigate opens one upstream session per client
// session, and this is how it gets an upstream pool of the same size as
// PgBouncer's; that PgBouncer pools transactions, see startSystem);
// phigate-direct (its resource is PostgreSQL itself, one backend per
// session, up to -direct-max sessions); pgbouncer (session pooling,
// default_pool_size -pool, max_client_conn raised to the largest step plus
// the storm). Both take TLS from the clients with the same self-signed
// ECDSA P-256 certificate; PgBouncer authenticates with SCRAM-SHA-256
// against PostgreSQL's own verifier, phigate with the agent's token
// (SHA-256) and then logs in upstream with SCRAM.
//
// The program raises its RLIMIT_NOFILE to the hard limit (the children
// inherit it) and reports the limits that bound the test: open files
// (and whether the hard limit could be raised), somaxconn, the ephemeral
// port range.
//
// It prints a table and writes sessions-*.json (bench.Result) and its
// section of README.md under -results. Nothing it starts outlives it.
//
//	go run ./bench/sessions --phigate ./bin/phigate --results bench/results
package main

import (
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

// The systems, as named in the results.
const (
	sysPhigate       = "phigate"        // phigate, upstream through a PgBouncer pool
	sysPhigateDirect = "phigate-direct" // phigate, upstream PostgreSQL itself
	sysPgBouncer     = "pgbouncer"      // PgBouncer, session pooling
)

// config is the command line.
type config struct {
	phigate   string
	pgbouncer string
	out       string
	workdir   string
	keep      bool
	systems   []string

	steps       []int
	directMax   int
	pool        int
	active      int
	activeEvery time.Duration
	hold        time.Duration
	concurrency int

	stormRates    []int // ascending
	stormDuration time.Duration

	churnAt         int
	profile         bool
	profileSessions int
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.StringVar(&c.phigate, "phigate", "./bin/phigate", "phigate binary (make build)")
	fs.StringVar(&c.pgbouncer, "pgbouncer", "pgbouncer", "PgBouncer binary")
	fs.StringVar(&c.out, "results", "bench/results", "directory for the JSON results and README.md")
	fs.StringVar(&c.workdir, "workdir", "", "working directory for the servers, kept (default: a new temp dir, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, recordings, profiles)")
	systems := fs.String("systems", "phigate,phigate-direct,pgbouncer", "systems to measure")
	steps := fs.String("sessions", "1000,2000,5000,10000", "numbers of sessions held at once, in steps")
	fs.IntVar(&c.directMax, "direct-max", 2000, "phigate-direct: the most sessions (PostgreSQL backends) to open")
	fs.IntVar(&c.pool, "pool", 200, "PgBouncer's default_pool_size, for pgbouncer and for phigate's upstream")
	fs.IntVar(&c.active, "active", 100, "sessions that run SELECT 1 while the others idle")
	fs.DurationVar(&c.activeEvery, "active-every", time.Second, "how often each active session runs SELECT 1")
	fs.DurationVar(&c.hold, "hold", 10*time.Second, "how long each step's sessions are held before the measurement")
	fs.IntVar(&c.concurrency, "open-concurrency", 32, "logins in flight while opening a step's sessions")
	stormRates := fs.String("storm-rate", "100,1000", "new TLS sessions per second in the storms, one storm per rate (empty: no storm)")
	fs.DurationVar(&c.stormDuration, "storm-duration", 10*time.Second, "length of the storm")
	fs.IntVar(&c.churnAt, "churn-at", 5000, "after the largest step up to this one, close its idle sessions, open them again and measure again (0: never)")
	fs.BoolVar(&c.profile, "profile", true, "profile phigate's heap per session and its CPU in a storm (builds the node with bench/sessions/nodeprof)")
	fs.IntVar(&c.profileSessions, "profile-sessions", 2000, "sessions held for the heap profile")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.systems = harness.SplitList(*systems)
	for _, s := range c.systems {
		if s != sysPhigate && s != sysPhigateDirect && s != sysPgBouncer {
			return c, fmt.Errorf("-systems: unknown system %q", s)
		}
	}
	var err error
	if c.steps, err = positives(*steps); err != nil {
		return c, fmt.Errorf("-sessions: %w", err)
	}
	if c.stormRates, err = positives(*stormRates); err != nil {
		return c, fmt.Errorf("-storm-rate: %w", err)
	}
	switch {
	case len(c.steps) == 0:
		return c, errors.New("-sessions: at least one step")
	case c.pool < 1, c.concurrency < 1:
		return c, errors.New("-pool and -open-concurrency: at least 1")
	case c.active < 0, c.directMax < 0, c.churnAt < 0, c.profileSessions < 1:
		return c, errors.New("-active, -direct-max, -churn-at: not negative; -profile-sessions: at least 1")
	case c.activeEvery <= 0:
		return c, errors.New("-active-every: positive")
	case len(c.stormRates) > 0 && c.stormDuration < 100*time.Millisecond:
		return c, errors.New("-storm-duration: at least 100ms")
	}
	return c, nil
}

// positives reads a comma-separated list of positive numbers, sorted and
// without repeats.
func positives(list string) ([]int, error) {
	var out []int
	for _, s := range harness.SplitList(list) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", s)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func main() { harness.Main("bench/sessions", parseFlags, run) }

func (c config) has(system string) bool { return slices.Contains(c.systems, system) }

// maxSessions is the most sessions a system may be asked to hold at once:
// the largest step, and for phigate-direct no more than -direct-max.
func (c config) maxSessions(system string) int {
	n := c.steps[len(c.steps)-1]
	if system == sysPhigateDirect {
		n = min(n, c.directMax)
	}
	return n
}

// churnStep is the step after which a system's sessions churn: the
// largest it runs up to -churn-at (0: none).
func (c config) churnStep(system string) int {
	n := 0
	for _, s := range c.steps {
		if s <= c.churnAt && s <= c.maxSessions(system) {
			n = s
		}
	}
	return n
}

// stormInFlight is a generous bound on the storm's sessions open at once,
// for the pools' max_client_conn and PostgreSQL's max_connections.
func (c config) stormInFlight() int { return c.stormRate() * 2 }

// stormRate is the largest storm's rate, the target's (0: no storm).
func (c config) stormRate() int {
	if len(c.stormRates) == 0 {
		return 0
	}
	return c.stormRates[len(c.stormRates)-1]
}

func run(ctx context.Context, cfg config) error {
	started := time.Now()
	limits, err := raiseLimits()
	if err != nil {
		return err
	}
	harness.Logf("limits: %s", limits)
	work, cleanup, err := harness.WorkDir(cfg.workdir, "phigate-sessions-", cfg.keep, harness.Logf)
	if err != nil {
		return err
	}
	defer cleanup()
	pg, err := startPostgres(ctx, filepath.Join(work, "postgres"), cfg.postgresConnections())
	if err != nil {
		return err
	}
	defer pg.Stop()
	cert, err := copyCert(pg, filepath.Join(work, "tls"))
	if err != nil {
		return err
	}

	rep := &report{cfg: cfg, started: started, limits: limits, legs: map[string]*leg{}, loadStart: loadavg()}
	var failures []error
	for _, name := range cfg.systems {
		l, err := runLeg(ctx, cfg, work, name, pg, cert)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l != nil {
			rep.legs[name] = l
		}
		if err != nil {
			harness.Logf("FAILED: %s: %v", name, err)
			failures = append(failures, fmt.Errorf("%s: %w", name, err))
		}
	}
	if cfg.profile && cfg.has(sysPhigate) {
		p, err := runProfile(ctx, cfg, work, pg, cert)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.profile = p
		if err != nil {
			harness.Logf("FAILED: profile: %v", err)
			failures = append(failures, fmt.Errorf("profile: %w", err))
		}
	}
	rep.elapsed, rep.loadEnd = time.Since(started), loadavg()
	rep.print(os.Stdout)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	harness.Logf("results written to %s", cfg.out)
	return errors.Join(failures...)
}

// postgresConnections is PostgreSQL's max_connections: phigate-direct's
// sessions or two pools at once, the storm's, and room for the harness.
func (c config) postgresConnections() int {
	n := 2 * c.pool
	if c.has(sysPhigateDirect) {
		n = max(n, c.maxSessions(sysPhigateDirect)+c.stormInFlight())
	}
	return n + 50
}
