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
	"syscall"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
)

// Summary is what pgbench prints at the end of a run.
type Summary struct {
	TPS          float64 // without initial connection time
	Transactions int64   // processed
	Failed       int64   // failed transactions (pgbench 15+)
	LatencyAvgMS float64
}

var (
	tpsRE    = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	txRE     = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRE = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	avgRE    = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// ErrNoTPS is returned for pgbench output without a tps line.
var ErrNoTPS = errors.New("pgbench output has no tps line")

// ParseSummary reads pgbench's report. A missing tps line is an error (the
// run did not complete); the other lines are optional.
func ParseSummary(out []byte) (Summary, error) {
	var s Summary
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		// A run that completed no transaction (every client blocked for the
		// whole duration) reports no tps: that is a measurement of 0, not a
		// failure of the run.
		if tx := txRE.FindSubmatch(out); tx != nil && string(tx[1]) == "0" {
			if f := failedRE.FindSubmatch(out); f != nil {
				s.Failed, _ = strconv.ParseInt(string(f[1]), 10, 64)
			}
			return s, nil
		}
		return s, ErrNoTPS
	}
	var err error
	if s.TPS, err = strconv.ParseFloat(string(m[1]), 64); err != nil || math.IsInf(s.TPS, 0) {
		return s, fmt.Errorf("pgbench tps %q: bad number", m[1])
	}
	if m := txRE.FindSubmatch(out); m != nil {
		s.Transactions, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := failedRE.FindSubmatch(out); m != nil {
		s.Failed, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := avgRE.FindSubmatch(out); m != nil {
		s.LatencyAvgMS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return s, nil
}

// maxLogLine caps one line of a per-transaction log; real lines are < 100
// bytes.
const maxLogLine = 4096

// ReadTxLog appends the latencies (microseconds) of the successful
// transactions in a pgbench per-transaction log (--log) to lat, and returns
// how many transactions failed or were skipped. Each line is
//
//	client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]
//
// where time is the latency in microseconds, or "failed" / "skipped".
func ReadTxLog(r io.Reader, lat []int64) (_ []int64, failed int64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLogLine)
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
			return lat, failed, fmt.Errorf("pgbench log line %d: latency %q is not a count of microseconds", line, f[2])
		}
		lat = append(lat, us)
	}
	if err := sc.Err(); err != nil {
		return lat, failed, fmt.Errorf("pgbench log: %w", err)
	}
	return lat, failed, nil
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 for an empty slice.
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Run is one pgbench run against one system.
type Run struct {
	Summary
	P50MS, P99MS float64
	Samples      int
	LogFailed    int64
}

// endpoint is where a client connects and as whom.
type endpoint struct {
	host     string
	port     int
	user     string
	password string
	db       string
}

type pgbenchSpec struct {
	workload string // "select-only" or "read-write"
	mode     string // "simple" or "prepared"
	clients  int
	jobs     int
	duration time.Duration
}

func (s pgbenchSpec) String() string {
	return fmt.Sprintf("%s/%s/c%d", s.workload, s.mode, s.clients)
}

// runPgbench runs pgbench against ep with per-transaction logs under
// logDir, and computes latency percentiles from them.
func runPgbench(ctx context.Context, bin string, ep endpoint, spec pgbenchSpec, logDir string) (Run, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return Run{}, err
	}
	prefix := filepath.Join(logDir, "tx")
	jobs := max(1, min(spec.jobs, spec.clients))
	args := []string{
		"-h", ep.host, "-p", strconv.Itoa(ep.port), "-U", ep.user,
		"-n", // we vacuum directly before the runs, the same for every system
		"-c", strconv.Itoa(spec.clients), "-j", strconv.Itoa(jobs),
		"-T", strconv.Itoa(int(spec.duration.Round(time.Second).Seconds())),
		"-M", spec.mode,
		"--log", "--log-prefix=" + prefix,
	}
	switch spec.workload {
	case "select-only":
		args = append(args, "-S")
	case "read-write":
		// the default TPC-B-like script
	default:
		return Run{}, fmt.Errorf("unknown workload %q", spec.workload)
	}
	args = append(args, ep.db)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = logDir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+ep.password, "PGSSLMODE=disable", "PGAPPNAME=bench")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := pgtest.Spawn(cmd, syscall.SIGKILL); err != nil {
		return Run{}, fmt.Errorf("pgbench: %w", err)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return Run{}, ctx.Err()
	}
	sum, perr := ParseSummary(out.Bytes())
	if werr != nil || perr != nil {
		return Run{}, fmt.Errorf("pgbench %s: %v %v\n%s", spec, werr, perr, tail(out.Bytes(), 2000))
	}
	run := Run{Summary: sum}
	files, _ := filepath.Glob(prefix + ".*")
	var lat []int64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return Run{}, err
		}
		var failed int64
		lat, failed, err = ReadTxLog(fh, lat)
		fh.Close()
		if err != nil {
			return Run{}, fmt.Errorf("%s: %w", f, err)
		}
		run.LogFailed += failed
		os.Remove(f) // the logs are large; the percentiles are what we keep
	}
	if len(lat) == 0 {
		return Run{}, fmt.Errorf("pgbench %s: no per-transaction log lines", spec)
	}
	slices.Sort(lat)
	run.Samples = len(lat)
	run.P50MS = float64(Percentile(lat, 50)) / 1000
	run.P99MS = float64(Percentile(lat, 99)) / 1000
	return run, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
