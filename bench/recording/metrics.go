package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The node's metrics this benchmark reads (node/metrics.go).
const (
	mRaw       = "phigate_ship_raw_bytes_total"         // recorded bytes sealed into chunks
	mStored    = "phigate_ship_stored_bytes_total"      // bytes of those chunks and their manifests
	mUploaded  = "phigate_ship_objects_uploaded_total"  // objects the store confirmed
	mUpErrors  = "phigate_ship_upload_errors_total"     // failed attempts (retried)
	mSealed    = "phigate_ship_chunks_sealed_total"     // chunks sealed
	mIndexed   = "phigate_ship_sessions_indexed_total"  // sessions wholly confirmed by the store
	mBacklog   = "phigate_ship_backlog_bytes"           // spool files and segments not yet confirmed
	mFrames    = "phigate_spool_commit_frames_sum"      // recording frames (events) made durable
	mCommits   = "phigate_spool_commit_frames_count"    // group commits (one fdatasync each)
	mFsyncSecs = "phigate_spool_fsync_seconds_sum"      // time in the journal's fdatasync
	mActive    = "phigate_sessions_active"              // sessions logged in
	mCPU       = "process_cpu_seconds_total"            // the node's own CPU time
	mWaitKey   = "phigate_ship_waiting_for_auditor_key" // 1: nothing is sealed
)

// metrics is one scrape of a node's /metrics (Prometheus text format): each
// sample's name, with its labels as written, to its value.
type metrics map[string]float64

// maxMetricsLine caps one line of the exposition; real ones are < 300 bytes.
const maxMetricsLine = 64 << 10

// parseMetrics reads the Prometheus text exposition format: comment lines
// (# HELP, # TYPE) are skipped; a sample is `name[{labels}] value
// [timestamp]`. Label values may hold spaces, braces and escaped quotes.
func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMetricsLine)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		key, rest, err := splitSample(s)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", line, err)
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return nil, fmt.Errorf("metrics line %d: want a value (and a timestamp) after %s", line, key)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: value %q: %w", line, f[0], err)
		}
		m[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// splitSample cuts a sample line after its name and labels.
func splitSample(s string) (key, rest string, err error) {
	i := strings.IndexAny(s, "{ \t")
	if i <= 0 {
		return "", "", errors.New("no value")
	}
	if s[i] != '{' {
		return s[:i], s[i:], nil
	}
	inQuote := false
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case inQuote && c == '\\':
			j++ // an escaped character inside a label value
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return s[:j+1], s[j+1:], nil
		}
	}
	return "", "", errors.New("unterminated labels")
}

// get returns a sample's value, 0 when absent.
func (m metrics) get(key string) float64 { return m[key] }

// delta returns after[key] - before[key].
func delta(before, after metrics, key string) float64 { return after.get(key) - before.get(key) }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux this runs on).
const clockTicks = 100

// procStat is what this benchmark reads from /proc/PID/stat.
type procStat struct {
	ppid, pgrp                   int
	utime, stime, cutime, cstime int64 // clock ticks
}

// parseProcStat reads /proc/PID/stat's text. The command name (field 2)
// is in parentheses and may hold spaces or parentheses itself, so the
// fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("proc stat: %d fields", len(f)+2)
	}
	var st procStat
	var err error
	num := func(n int) int64 {
		v, e := strconv.ParseInt(f[n-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("proc stat field %d: %w", n, e)
		}
		return v
	}
	st.ppid, st.pgrp = int(num(4)), int(num(5))
	st.utime, st.stime, st.cutime, st.cstime = num(14), num(15), num(16), num(17)
	return st, err
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

func ticks(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }

// processCPU is the CPU time (user and system, all threads) pid used.
func processCPU(pid int) (time.Duration, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	return ticks(st.utime + st.stime), nil
}

// familyCPU is the CPU time of pid and its children: the ones alive (or
// exited and not yet reaped) and the ones it reaped. That is a
// PostgreSQL server's whole CPU time: every backend is a child of the
// postmaster (in a session of its own, so not in its process group).
func familyCPU(pid int) (time.Duration, error) {
	self, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	total := self.utime + self.stime + self.cutime + self.cstime
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil || child == pid {
			continue
		}
		st, err := readProcStat(child)
		if err != nil || st.ppid != pid {
			continue // gone since the listing, or not a child
		}
		total += st.utime + st.stime + st.cutime + st.cstime
	}
	return ticks(total), nil
}

// parseProcIO reads wchar from /proc/PID/io's text: the bytes the process
// passed to write system calls, to files and sockets alike. (write_bytes,
// counted when a page is dirtied, counts a whole large folio each time an
// append after an fdatasync dirties it again: on kernels with large folios
// for ext4 it far exceeds what reaches the disk, so it is not used.)
func parseProcIO(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("proc io: no wchar")
}

func processWrites(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	return parseProcIO(b)
}

// finite turns NaN and infinities (a ratio over an empty window) into 0,
// which JSON can carry.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
