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
	"strings"
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
	// ConnectMS is pgbench's "initial connection time": from the start of
	// its -T clock to the moment its clients, all connected, begin; the
	// part of -T that measured nothing.
	ConnectMS float64
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	txRE      = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	avgRE     = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	connectRE = regexp.MustCompile(`(?m)^initial connection time = ([0-9.]+) ms`)
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
	if m := connectRE.FindSubmatch(out); m != nil {
		s.ConnectMS, _ = strconv.ParseFloat(string(m[1]), 64)
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
	// Attempts is how many times pgbench ran: 2 when the first run
	// measured too little for its clients' connecting (see RunPgbench).
	Attempts int
	// Duration is the -T of the run these figures come from: the spec's,
	// or longer on a second attempt.
	Duration time.Duration
}

// ErrNothingMeasured is returned when pgbench ran and exited cleanly but
// completed no transaction, even after a second attempt: its clients
// connected no sooner than -T ran out, or were blocked all along.
var ErrNothingMeasured = errors.New("pgbench completed no transaction")

// RunPgbench runs pgbench against ep with per-transaction logs under logDir
// (removed once read: they are large), and reads its summary and the
// latencies from the logs. pgbench's own vacuum is off (-n): a benchmark
// that needs one does it itself, the same for every system.
//
// pgbench starts its -T clock before its clients connect, one after
// another in each thread (-j), and begins measuring only once every
// client is connected. On a loaded machine, through a proxy that
// authenticates each session, connecting can take most of -T or all of
// it: pgbench then exits 0 having measured nothing ("number of
// transactions actually processed: 0", no tps line, empty logs). So when
// connecting took more than half of -T, or no transaction completed,
// RunPgbench runs pgbench once more with -T lengthened by the time the
// first attempt lost, and reports that second run.
func RunPgbench(ctx context.Context, bin string, ep Endpoint, spec PgbenchSpec, logDir string) (PgbenchRun, error) {
	first, lost, err := runPgbenchOnce(ctx, bin, ep, spec, spec.Duration, logDir)
	switch {
	case err != nil && !errors.Is(err, ErrNothingMeasured):
		return PgbenchRun{}, err
	case err == nil && lost <= spec.Duration/2:
		return first, nil
	}
	// Whole seconds (-T), rounded up, so the second run measures at least
	// what the spec asked for if connecting is no slower than the first time.
	longer := spec.Duration + lost.Truncate(time.Second) + time.Second
	run, _, err := runPgbenchOnce(ctx, bin, ep, spec, longer, logDir)
	if err != nil {
		if ctx.Err() != nil {
			return PgbenchRun{}, err
		}
		return PgbenchRun{}, fmt.Errorf("%w (a first attempt with -T %d spent %s before measuring, and measured %d transactions)",
			err, int(spec.Duration.Seconds()), lost.Round(time.Millisecond), first.Transactions)
	}
	run.Attempts = 2
	return run, nil
}

// runPgbenchOnce is one pgbench process of RunPgbench, with -T d. lost is
// how much of d measured nothing: pgbench's initial connection time, or
// all of the run when it completed no transaction, in which case the
// error is ErrNothingMeasured and run has its summary only.
func runPgbenchOnce(ctx context.Context, bin string, ep Endpoint, spec PgbenchSpec, d time.Duration, logDir string) (run PgbenchRun, lost time.Duration, err error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return PgbenchRun{}, 0, err
	}
	const logPrefix = "tx"
	seconds := max(1, int(d.Round(time.Second).Seconds()))
	removeLogs(logDir, logPrefix) // an earlier run's, in a kept working directory
	args := []string{
		"-h", ep.Host, "-p", strconv.Itoa(ep.Port), "-U", ep.User,
		"-n",
		"-c", strconv.Itoa(spec.Clients), "-j", strconv.Itoa(max(1, min(spec.Jobs, spec.Clients))),
		"-T", strconv.Itoa(seconds),
		"-M", spec.Mode,
		// One file per thread: logPrefix.<pid> and logPrefix.<pid>.<thread>.
		"--log", "--log-prefix=" + filepath.Join(logDir, logPrefix),
	}
	switch spec.Workload {
	case "select-only":
		args = append(args, "-S")
	case "read-write":
		// the default TPC-B-like script
	default:
		return PgbenchRun{}, 0, fmt.Errorf("unknown workload %q", spec.Workload)
	}
	args = append(args, ep.DB)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = logDir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+ep.Password, "PGSSLMODE=disable", "PGAPPNAME=bench")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	if err := pgtest.Spawn(cmd, syscall.SIGKILL); err != nil {
		return PgbenchRun{}, 0, fmt.Errorf("pgbench: %w", err)
	}
	werr := cmd.Wait()
	elapsed := time.Since(started)
	if ctx.Err() != nil {
		return PgbenchRun{}, 0, ctx.Err()
	}
	// Why a run failed, for the log of a CI run that cannot be repeated:
	// how pgbench ended, the log files it left, and the end of its output
	// (stdout and stderr, interleaved).
	explain := func(what error) error {
		status := "exited 0"
		if werr != nil {
			status = werr.Error()
		}
		return fmt.Errorf("pgbench %s -T %d at %s:%d: %w; pgbench %s after %s; log files: %s; its output ends:\n%s",
			spec, seconds, ep.Host, ep.Port, what, status, elapsed.Round(time.Millisecond),
			listLogs(logDir, logPrefix), Tail(out.Bytes(), 2000))
	}
	defer removeLogs(logDir, logPrefix)
	sum, perr := ParseSummary(out.Bytes())
	switch {
	case werr != nil && perr != nil:
		return PgbenchRun{}, 0, explain(perr)
	case werr != nil:
		return PgbenchRun{}, 0, explain(errors.New("pgbench failed"))
	case perr != nil:
		return PgbenchRun{}, 0, explain(perr)
	case sum.Transactions == 0 && sum.TPS == 0:
		return PgbenchRun{Summary: sum}, max(d, elapsed), explain(ErrNothingMeasured)
	}
	run = PgbenchRun{Summary: sum, Attempts: 1, Duration: d}
	names, err := logFiles(logDir, logPrefix)
	if err != nil {
		return PgbenchRun{}, 0, err
	}
	for _, name := range names {
		f := filepath.Join(logDir, name)
		fh, err := os.Open(f)
		if err != nil {
			return PgbenchRun{}, 0, err
		}
		var failed int64
		run.Latencies, failed, err = ReadTxLog(fh, run.Latencies)
		fh.Close()
		if err != nil {
			return PgbenchRun{}, 0, fmt.Errorf("%s: %w", f, err)
		}
		run.LogFailed += failed
	}
	if len(run.Latencies) == 0 {
		return PgbenchRun{}, 0, explain(errors.New("no per-transaction log lines"))
	}
	slices.Sort(run.Latencies)
	return run, time.Duration(sum.ConnectMS * float64(time.Millisecond)), nil
}

// logFiles lists the per-transaction logs pgbench wrote under dir with
// --log-prefix dir/prefix (read as a directory, not a glob: dir may hold
// glob metacharacters).
func logFiles(dir, prefix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+".") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// listLogs names the log files under dir with their sizes, for an error.
func listLogs(dir, prefix string) string {
	names, err := logFiles(dir, prefix)
	if err != nil {
		return err.Error()
	}
	if len(names) == 0 {
		return "none"
	}
	var parts []string
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil {
			parts = append(parts, fmt.Sprintf("%s (%d bytes)", n, fi.Size()))
		}
	}
	return strings.Join(parts, ", ")
}

func removeLogs(dir, prefix string) {
	names, _ := logFiles(dir, prefix)
	for _, n := range names {
		os.Remove(filepath.Join(dir, n))
	}
}
