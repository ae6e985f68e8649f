package harness

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
func Percentile[T ~int64](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// PgbenchSpec is what one pgbench process runs.
type PgbenchSpec struct {
	Workload string // "select-only" (-S) or "read-write" (the TPC-B-like default)
	Mode     string // -M: "simple", "extended" or "prepared"
	Clients  int    // -c
	Jobs     int    // -j, at most Clients
	Duration time.Duration
}

func (s PgbenchSpec) String() string {
	return fmt.Sprintf("%s/%s/c%d", s.Workload, s.Mode, s.Clients)
}

// PgbenchRun is one pgbench process's figures.
type PgbenchRun struct {
	Summary
	Latencies []int64 // of the successful transactions, µs, from --log, sorted
	LogFailed int64   // transactions the logs show failed or skipped
}

// RunPgbench runs pgbench against ep with per-transaction logs under logDir
// (removed once read: they are large), and reads its summary and the
// latencies from the logs. pgbench's own vacuum is off (-n): a benchmark
// that needs one does it itself, the same for every system.
func RunPgbench(ctx context.Context, bin string, ep Endpoint, spec PgbenchSpec, logDir string) (PgbenchRun, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return PgbenchRun{}, err
	}
	prefix := filepath.Join(logDir, "tx")
	old, _ := filepath.Glob(prefix + ".*") // an earlier run's, in a kept working directory
	for _, f := range old {
		os.Remove(f)
	}
	args := []string{
		"-h", ep.Host, "-p", strconv.Itoa(ep.Port), "-U", ep.User,
		"-n",
		"-c", strconv.Itoa(spec.Clients), "-j", strconv.Itoa(max(1, min(spec.Jobs, spec.Clients))),
		"-T", strconv.Itoa(int(spec.Duration.Round(time.Second).Seconds())),
		"-M", spec.Mode,
		"--log", "--log-prefix=" + prefix,
	}
	switch spec.Workload {
	case "select-only":
		args = append(args, "-S")
	case "read-write":
		// the default TPC-B-like script
	default:
		return PgbenchRun{}, fmt.Errorf("unknown workload %q", spec.Workload)
	}
	args = append(args, ep.DB)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = logDir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+ep.Password, "PGSSLMODE=disable", "PGAPPNAME=bench")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := pgtest.Spawn(cmd, syscall.SIGKILL); err != nil {
		return PgbenchRun{}, fmt.Errorf("pgbench: %w", err)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return PgbenchRun{}, ctx.Err()
	}
	sum, perr := ParseSummary(out.Bytes())
	if werr != nil || perr != nil {
		return PgbenchRun{}, fmt.Errorf("pgbench %s at %s:%d: %v %v\n%s", spec, ep.Host, ep.Port, werr, perr, Tail(out.Bytes(), 2000))
	}
	run := PgbenchRun{Summary: sum}
	files, _ := filepath.Glob(prefix + ".*")
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return PgbenchRun{}, err
		}
		var failed int64
		run.Latencies, failed, err = ReadTxLog(fh, run.Latencies)
		fh.Close()
		if err != nil {
			return PgbenchRun{}, fmt.Errorf("%s: %w", f, err)
		}
		run.LogFailed += failed
		os.Remove(f)
	}
	if len(run.Latencies) == 0 {
		return PgbenchRun{}, fmt.Errorf("pgbench %s at %s:%d: no per-transaction log lines", spec, ep.Host, ep.Port)
	}
	slices.Sort(run.Latencies)
	return run, nil
}
