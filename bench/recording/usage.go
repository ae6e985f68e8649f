package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/internal/pgtest"
)

// The parts of the machine whose CPU time a leg accounts for.
const (
	partPostgres = "postgres" // the postmaster and its children (the backends)
	partMinio    = "minio"
	partBench    = "bench" // this process: the pgx clients, scrapes
	partClients  = "psql"  // the psql processes of a leg
	// partOthers is the machine's busy CPU time that none of the parts
	// above used: other work on a shared machine, which a figure taken
	// beside it must own up to.
	partOthers = "others"
)

// parts are the processes whose CPU time is sampled.
type parts struct {
	nodes    []*node
	pgPID    int // the postmaster
	minioPID int // 0: not found
}

// usage is what the parts have used so far.
type usage struct {
	at      time.Time
	cpu     map[string]time.Duration // by part, and by node name
	written map[string]int64         // by node name, and minio: bytes passed to write calls
	// busy is the whole machine's busy CPU time, when /proc/stat was read.
	busy     time.Duration
	haveBusy bool
}

func (p parts) sample() usage {
	u := usage{at: time.Now(), cpu: map[string]time.Duration{}, written: map[string]int64{}}
	for _, n := range p.nodes {
		if d, err := processCPU(n.proc.PID()); err == nil {
			u.cpu[n.name] = d
		}
		if w, err := processWrites(n.proc.PID()); err == nil {
			u.written[n.name] = w
		}
	}
	if d, err := familyCPU(p.pgPID); err == nil {
		u.cpu[partPostgres] = d
	}
	if p.minioPID > 0 {
		if d, err := processCPU(p.minioPID); err == nil {
			u.cpu[partMinio] = d
		}
		if w, err := processWrites(p.minioPID); err == nil {
			u.written[partMinio] = w
		}
	}
	if d, err := processCPU(os.Getpid()); err == nil {
		u.cpu[partBench] = d
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if busy, err := parseProcStatBusy(b); err == nil {
			u.busy, u.haveBusy = busy, true
		}
	}
	return u
}

// parseProcStatBusy reads the machine's busy CPU time (all CPUs: user,
// nice, system, irq, softirq, steal; guest time is inside user) from
// /proc/stat's first line.
func parseProcStatBusy(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %.40q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return ticks(busy), nil
}

// usageDelta is what the parts used between two samples.
type usageDelta struct {
	wall     time.Duration
	cpu      map[string]time.Duration
	written  map[string]int64
	busy     time.Duration // the machine's
	haveBusy bool
}

// others is the machine's busy CPU time that no part accounts for: other
// work on a shared machine (and processes of the leg not counted as a
// part, such as pgbench).
func (d usageDelta) others() (time.Duration, bool) {
	if !d.haveBusy {
		return 0, false
	}
	o := d.busy
	for k, v := range d.cpu {
		if k != partOthers {
			o -= v
		}
	}
	return max(o, 0), true
}

func (u usage) since(before usage) usageDelta {
	d := usageDelta{wall: u.at.Sub(before.at), cpu: map[string]time.Duration{}, written: map[string]int64{}}
	for k, v := range u.cpu {
		if b, ok := before.cpu[k]; ok {
			d.cpu[k] = v - b
		}
	}
	if u.haveBusy && before.haveBusy {
		d.busy, d.haveBusy = u.busy-before.busy, true
	}
	for k, v := range u.written {
		if b, ok := before.written[k]; ok {
			d.written[k] = v - b
		}
	}
	return d
}

// findProcess returns the pid of the process whose command line holds arg
// (one NUL-separated argument, exactly), or 0.
func findProcess(arg string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(b, []byte{0}) {
			if string(a) == arg {
				return pid
			}
		}
	}
	return 0
}

// cpuSummary is a leg's CPU time as a line for the log.
func (d usageDelta) cpuSummary() string {
	s := ""
	for _, k := range []string{sysPhigateOn, sysPhigateOff, partPostgres, partMinio, partBench, partClients} {
		if v, ok := d.cpu[k]; ok && v > 0 {
			s += fmt.Sprintf(" %s %.1fs", k, v.Seconds())
		}
	}
	if o, ok := d.others(); ok {
		s += fmt.Sprintf(" %s %.1fs (of %.1fs available)", partOthers, o.Seconds(), d.wall.Seconds()*float64(runtime.NumCPU()))
	}
	return s
}

// startPerf runs `perf record -g` on pid, writing path, until the
// returned stop is called: where a leg's CPU time goes, for -perf.
func startPerf(pid int, path string) (stop func() error, err error) {
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := pgtest.Spawn(cmd, syscall.SIGINT); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return func() error {
		_ = cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = nil // perf exits non-zero when interrupted
		}
		if err != nil {
			return fmt.Errorf("perf record: %w\n%s", err, harness.Tail(out.Bytes(), 1000))
		}
		return nil
	}, nil
}
