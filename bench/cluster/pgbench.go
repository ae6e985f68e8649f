package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
)

// The pgbench helpers are bench/pg's (a main package, so not importable),
// cut down to what select-only needs.

var (
	tpsRE    = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	failedRE = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
)

// pgbenchRun is one pgbench process's figures.
type pgbenchRun struct {
	tps    float64
	failed int64
	lat    []int64 // per-transaction latencies, µs, from --log
}

// runPgbench runs pgbench -S against ep with clients clients and jobs
// threads, per-transaction logs under logDir.
func runPgbench(ctx context.Context, bin string, ep endpoint, mode string, clients, jobs int, d time.Duration, logDir string) (pgbenchRun, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return pgbenchRun{}, err
	}
	prefix := filepath.Join(logDir, "tx")
	old, _ := filepath.Glob(prefix + ".*")
	for _, f := range old {
		os.Remove(f)
	}
	args := []string{
		"-h", ep.host, "-p", strconv.Itoa(ep.port), "-U", ep.user,
		"-n", "-S", "-M", mode,
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(max(1, min(jobs, clients))),
		"-T", strconv.Itoa(int(d.Round(time.Second).Seconds())),
		"--log", "--log-prefix=" + prefix,
		ep.db,
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = logDir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+ep.password, "PGSSLMODE=disable", "PGAPPNAME=bench")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := pgtest.Spawn(cmd, syscall.SIGKILL); err != nil {
		return pgbenchRun{}, fmt.Errorf("pgbench: %w", err)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return pgbenchRun{}, ctx.Err()
	}
	m := tpsRE.FindSubmatch(out.Bytes())
	if werr != nil || m == nil {
		return pgbenchRun{}, fmt.Errorf("pgbench -c %d at %s:%d: %v\n%s", clients, ep.host, ep.port, werr, tail(out.Bytes(), 2000))
	}
	var r pgbenchRun
	r.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	if f := failedRE.FindSubmatch(out.Bytes()); f != nil {
		r.failed, _ = strconv.ParseInt(string(f[1]), 10, 64)
	}
	files, _ := filepath.Glob(prefix + ".*")
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return r, err
		}
		var failed int64
		r.lat, failed, err = readTxLog(fh, r.lat)
		fh.Close()
		if err != nil {
			return r, fmt.Errorf("%s: %w", f, err)
		}
		r.failed += failed
		os.Remove(f)
	}
	if len(r.lat) == 0 {
		return r, errors.New("pgbench: no per-transaction log lines")
	}
	return r, nil
}

// readTxLog appends the latencies (µs) of a pgbench --log file's successful
// transactions to lat and counts the failed or skipped ones.
func readTxLog(r io.Reader, lat []int64) (_ []int64, failed int64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), 4096)
	for line := 1; sc.Scan(); line++ {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return lat, failed, fmt.Errorf("pgbench log line %d: %d fields, want at least 6", line, len(f))
		}
		switch string(f[2]) {
		case "failed", "skipped":
			failed++
			continue
		}
		us, err := strconv.ParseInt(string(f[2]), 10, 64)
		if err != nil || us < 0 {
			return lat, failed, fmt.Errorf("pgbench log line %d: latency %q", line, f[2])
		}
		lat = append(lat, us)
	}
	return lat, failed, sc.Err()
}

// percentile is the nearest-rank p-th percentile of sorted (0 if empty).
func percentile[T int64 | time.Duration](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// setup is one way of putting -clients pgbench clients on the database.
type setup struct {
	name  string
	parts []endpoint // one pgbench process per part; clients split evenly
	jobs  int        // pgbench threads per process
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
func measurePgbench(ctx context.Context, cfg config, bin string, c *benchCluster, direct endpoint, logDir string) (*pgbenchResult, error) {
	agent := func(n *gnode) endpoint { return n.endpoint(agentName, c.agentToken) }
	n1 := agent(c.nodes[0])
	setups := []setup{
		{name: "direct", parts: []endpoint{direct}, jobs: 2},
		{name: "one-node", parts: []endpoint{n1}, jobs: 2},
		{name: "one-node-3procs", parts: []endpoint{n1, n1, n1}, jobs: 1},
		{name: "three-nodes", parts: []endpoint{n1, agent(c.nodes[1]), agent(c.nodes[2])}, jobs: 1},
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
		warm := []endpoint{direct}
		for _, n := range c.nodes {
			warm = append(warm, agent(n))
		}
		for i, ep := range warm {
			if _, err := runPgbench(ctx, bin, ep, cfg.mode, 4, 2, cfg.warmup, filepath.Join(logDir, "warmup", strconv.Itoa(i))); err != nil {
				return res, fmt.Errorf("warm-up %s:%d: %w", ep.host, ep.port, err)
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
			runs := make([]pgbenchRun, len(s.parts))
			errs := make([]error, len(s.parts))
			var wg sync.WaitGroup
			for k, ep := range s.parts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runs[k], errs[k] = runPgbench(ctx, bin, ep, cfg.mode, clients[k], s.jobs, cfg.duration,
						filepath.Join(logDir, fmt.Sprintf("%s-%d-%d", s.name, round, k)))
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
				tps += r.tps
				sr.failed += r.failed
				sr.lat = append(sr.lat, r.lat...)
				per = append(per, fmt.Sprintf("%.0f", r.tps))
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
