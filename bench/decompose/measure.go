package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// Measured is one pgbench run through one stage.
type Measured struct {
	TPS          float64
	P50MS, P99MS float64
	Transactions int64
	// CPUPerTx is the proxy process's CPU time (user+system) per
	// transaction, µs; zero for direct.
	CPUPerTx float64
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux
// everywhere that matters; getconf CLK_TCK confirms it when present).
var clockTick = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n <= 0 {
		return 100
	}
	return float64(n)
}()

// cpuTime is pid's user+system CPU time so far, its threads included.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(float64(ut+st) / clockTick * float64(time.Second)), nil
}

func measure(ctx context.Context, pg *harness.Postgres, s *stage, spec harness.PgbenchSpec, logDir string) (Measured, error) {
	var before time.Duration
	if s.proc != nil {
		var err error
		if before, err = cpuTime(s.proc.PID()); err != nil {
			return Measured{}, err
		}
	}
	r, err := harness.RunPgbench(ctx, pg.Pgbench, s.ep, spec, logDir)
	if err != nil {
		return Measured{}, err
	}
	m := Measured{
		TPS:          r.TPS,
		P50MS:        float64(harness.Percentile(r.Latencies, 50)) / 1000,
		P99MS:        float64(harness.Percentile(r.Latencies, 99)) / 1000,
		Transactions: r.Transactions,
	}
	if s.proc != nil && r.Transactions > 0 {
		after, err := cpuTime(s.proc.PID())
		if err != nil {
			return Measured{}, err
		}
		m.CPUPerTx = float64((after - before).Microseconds()) / float64(r.Transactions)
	}
	return m, nil
}

// Syscalls is one pgbench run's system calls in the proxy process.
type Syscalls struct {
	PerTx        float64
	Transactions int64
	ByName       map[string]int64
}

// top names the n most frequent calls with their count per transaction.
func (s Syscalls) top(n int) string {
	names := make([]string, 0, len(s.ByName))
	for k := range s.ByName {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return int(s.ByName[b] - s.ByName[a]) })
	var parts []string
	for _, k := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(s.ByName[k])/float64(max(s.Transactions, 1))))
	}
	return strings.Join(parts, ", ")
}

// countSyscalls runs pgbench with strace -c -f attached to the proxy (every
// thread), and counts its system calls per transaction.
func countSyscalls(ctx context.Context, pg *harness.Postgres, s *stage, spec harness.PgbenchSpec, logDir string) (Syscalls, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return Syscalls{}, err
	}
	out := filepath.Join(logDir, "strace.txt")
	cmd := exec.Command("strace", "-c", "-f", "-o", out, "-p", strconv.Itoa(s.proc.PID()))
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		return Syscalls{}, err
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		return cmd.Wait()
	}
	defer stop()
	time.Sleep(500 * time.Millisecond) // attached to every thread
	r, err := harness.RunPgbench(ctx, pg.Pgbench, s.ep, spec, logDir)
	if err != nil {
		return Syscalls{}, err
	}
	_ = stop()
	by, err := readStraceSummary(out)
	if err != nil {
		return Syscalls{}, err
	}
	var total int64
	for _, n := range by {
		total += n
	}
	sc := Syscalls{Transactions: r.Transactions, ByName: by}
	if r.Transactions > 0 {
		sc.PerTx = float64(total) / float64(r.Transactions)
	}
	return sc, nil
}

// readStraceSummary reads strace -c's table: calls per system call.
func readStraceSummary(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	by := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// % time  seconds  usecs/call  calls  [errors]  syscall
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[len(fields)-1] == "total" || fields[len(fields)-1] == "syscall" {
			continue
		}
		if _, err := strconv.ParseFloat(fields[0], 64); err != nil {
			continue
		}
		calls, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			continue
		}
		by[fields[len(fields)-1]] = calls
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(by) == 0 {
		return nil, fmt.Errorf("no system calls in %s", path)
	}
	return by, nil
}
