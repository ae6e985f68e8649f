package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// peakRSS reads VmHWM (peak resident set) of pid, in bytes.
func peakRSS(pid int) (int64, error) { return procStatusKB(pid, "VmHWM:") }

// rss reads VmRSS (resident set now) of pid, in bytes.
func rss(pid int) (int64, error) { return procStatusKB(pid, "VmRSS:") }

func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeakRSS resets pid's VmHWM to its current RSS (Linux >= 4.0), so the
// next peakRSS covers only what happens from now on.
func resetPeakRSS(pid int) error {
	err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	if err != nil {
		return errors.Join(errors.New("cannot reset peak RSS"), err)
	}
	return nil
}

// fsyncLatency measures what one durable append costs on dir's file system:
// n writes of 4 KiB, each followed by fsync. Recording makes every command
// wait for (a group of) these, so it is the floor under phigate's latency.
func fsyncLatency(dir string, n int) (p50, p99 float64, err error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]int64, 0, n)
	for range n {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(start).Microseconds())
	}
	slices.Sort(lat)
	return float64(harness.Percentile(lat, 50)) / 1000, float64(harness.Percentile(lat, 99)) / 1000, nil
}
