// Command approval is phigate's just-in-time approval benchmark. In one run
// it starts a real PostgreSQL (fsync on) and a cluster of three phigate
// nodes, and measures on that one cluster:
//
//   - the approval round trip: -approvals times, an agent's DELETE without
//     a WHERE, held on node 1 by a rule `when: [unbounded-write]`; an
//     approver's POST /v1/approvals/{id}/approve through node 2, sent
//     -approver-delay after the agent was told (the notice); the time from
//     sending the POST until the agent's DELETE returns, and from the POST's
//     answer until it returns. Each round trip is cut into its steps by the
//     request's own times (the vote's, the use's) and by a watch of the
//     request on node 1 (approved seen, used seen);
//   - for comparison, the cluster state alone: -probes transactions through
//     node 2's member (a compare on a key's revision and a put, as a vote
//     is) until a watch through node 1's member delivers the put;
//   - what approval rules cost commands that need none: pgbench (-clients
//     clients, -duration per run, -rounds rounds, the order rotating)
//     through node 1 as an identity whose grant has no rules, as one whose
//     otherwise equal grant has rules that match nothing pgbench sends, and
//     direct to PostgreSQL; TPS and latency, and the ratio ruled/plain per
//     round with its spread.
//
// The nodes run in this process, not as `phigate node` processes as in
// bench/cluster: the cluster-state probe goes through the nodes' own etcd
// clients (in-process clients of their members, the ones the approvals
// use), which only a node in this process can lend, and bench/ may not
// import cluster/ or etcd (internal/depcheck): it calls the probe as a
// method of the *cluster.Approvals that node.Node.Approvals returns.
//
// It prints a short table and writes bench/results/approval.json (one
// bench.Result) and its section of README.md under -results. A working
// directory that is kept (-keep, -workdir) also holds roundtrips.csv, each
// round trip's times by request id, to be joined with the agent's session
// recording on node 1 (phigate replay --json), whose approval, change and
// result events carry their own times, when a step needs a closer look.
//
//	go run ./bench/approval -results bench/results
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/bench/harness"
)

// config is the command line.
type config struct {
	approvals     int
	approverDelay time.Duration
	probes        int
	workloads     []string
	clients       int
	scale         int
	duration      time.Duration
	warmup        time.Duration
	rounds        int
	mode          string
	out           string
	workdir       string
	keep          bool
}

func parseFlags(args []string) (config, error) {
	var c config
	var workloads string
	fs := flag.NewFlagSet("approval", flag.ContinueOnError)
	fs.IntVar(&c.approvals, "approvals", 200, "approval round trips to time")
	fs.DurationVar(&c.approverDelay, "approver-delay", 50*time.Millisecond, "how long after the agent's notice the approver sends the approval")
	fs.IntVar(&c.probes, "probes", 200, "cluster-state transactions to time (txn on node 2 -> watch on node 1)")
	fs.StringVar(&workloads, "workloads", "read-write,select-only", "pgbench workloads, comma-separated (empty: no pgbench)")
	fs.IntVar(&c.clients, "clients", 4, "pgbench clients")
	fs.IntVar(&c.scale, "scale", 10, "pgbench scale factor (-s)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each pgbench run (-T)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "pgbench warm-up per system and workload (0: none)")
	fs.IntVar(&c.rounds, "rounds", 5, "pgbench rounds; the order of the systems rotates between rounds")
	fs.StringVar(&c.mode, "mode", "simple", "pgbench query mode (-M): simple, extended, prepared")
	fs.StringVar(&c.out, "results", "bench/results", "directory for approval.json and README.md")
	fs.StringVar(&c.workdir, "workdir", "", "working directory for the servers, kept (default: a new temp dir, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory (logs, recordings)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, w := range strings.Split(workloads, ",") {
		switch w = strings.TrimSpace(w); w {
		case "":
		case "read-write", "select-only":
			c.workloads = append(c.workloads, w)
		default:
			return c, fmt.Errorf("-workloads: unknown workload %q", w)
		}
	}
	switch {
	case c.approvals < 1, c.probes < 1:
		return c, errors.New("-approvals and -probes: at least 1")
	case c.rounds < 1, c.clients < 1:
		return c, errors.New("-rounds and -clients: at least 1")
	case c.duration < time.Second:
		return c, errors.New("-duration: at least 1s")
	case c.mode != "simple" && c.mode != "extended" && c.mode != "prepared":
		return c, fmt.Errorf("-mode: unknown mode %q", c.mode)
	}
	return c, nil
}

func main() { harness.Main("bench/approval", parseFlags, run) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// The tables the approval phase writes, beside pgbench's: heldTable is
// what the agent's held DELETE empties; auditTable is what the ruled
// grant's table-write rule names (pgbench never writes it).
const (
	heldTable  = "approval_t"
	auditTable = "approval_audit"
)

func run(ctx context.Context, cfg config) (err error) {
	started := time.Now()
	rep := &report{cfg: cfg, loadStart: loadavg(), started: started}
	work, cleanup, err := harness.WorkDir(cfg.workdir, "phigate-bench-approval-", cfg.keep, logf)
	if err != nil {
		return err
	}
	defer cleanup()

	pg, err := harness.StartPostgres(ctx, filepath.Join(work, "postgres"), cfg.scale, logf)
	if err != nil {
		return err
	}
	defer pg.Stop()
	if err := directExec(ctx, pg.Direct, fmt.Sprintf("CREATE TABLE %s (id int); CREATE TABLE %s (id int, what text)", heldTable, auditTable)); err != nil {
		return err
	}

	c, err := startCluster(ctx, filepath.Join(work, "cluster"), pg)
	if err != nil {
		return err
	}
	defer c.stop()
	rep.leader = c.leader(ctx)
	logf("etcd leader: %s", rep.leader)

	var failures []error
	fail := func(err error) {
		logf("FAILED: %v", err)
		failures = append(failures, err)
	}

	logf("approval round trip: %d approvals, held on n1, approved through n2", cfg.approvals)
	rt, err := measureRoundTrips(ctx, cfg, c, pg.Direct, work)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		fail(fmt.Errorf("round trip: %w", err))
	}
	rep.rt = rt

	logf("cluster state: %d transactions through n2, watched on n1", cfg.probes)
	probe, err := c.nodes[1].Approvals().TxnToWatch(ctx, c.nodes[0].Approvals(), cfg.probes)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		fail(fmt.Errorf("txn-to-watch: %w", err))
	}
	for _, s := range probe {
		rep.probeCommit = append(rep.probeCommit, s.Commit)
		rep.probeSeen = append(rep.probeSeen, s.Seen)
	}

	for _, w := range cfg.workloads {
		res, err := measureRuleCost(ctx, cfg, w, pg, c, filepath.Join(work, "logs"))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fail(fmt.Errorf("pgbench %s: %w", w, err))
		}
		rep.pgbench = append(rep.pgbench, res)
	}

	rep.loadEnd = loadavg()
	rep.elapsed = time.Since(started)
	rep.print(os.Stdout)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	logf("results written to %s", filepath.Join(cfg.out, resultName+".json"))
	return errors.Join(failures...)
}

// directExec runs sql straight on PostgreSQL as the benchmark's direct role.
func directExec(ctx context.Context, ep harness.Endpoint, sql string) error {
	conn, err := pgx.Connect(ctx, ep.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
