package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/internal/synth"
)

// A scrape of a node's /metrics as promhttp writes it (abridged).
const scrape = `# HELP phigate_ship_raw_bytes_total Recorded bytes sealed into chunks.
# TYPE phigate_ship_raw_bytes_total counter
phigate_ship_raw_bytes_total 1.23456789e+08
# HELP phigate_ship_stored_bytes_total Bytes of the chunks and manifests those made.
# TYPE phigate_ship_stored_bytes_total counter
phigate_ship_stored_bytes_total 2.5e+07
phigate_ship_backlog_bytes 0
phigate_ship_sessions_indexed_total 17
phigate_sessions_active 0
phigate_spool_commit_frames_bucket{le="1"} 3
phigate_spool_commit_frames_bucket{le="+Inf"} 40
phigate_spool_commit_frames_sum 1234
phigate_spool_commit_frames_count 40
phigate_commands_total{class="read",decision="allow"} 12
phigate_weird{path="a b}c",q="say \"hi\" }"} 7 1700000000000
go_gc_duration_seconds{quantile="0.5"} NaN
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{
		mRaw:     123456789,
		mStored:  25e6,
		mBacklog: 0,
		mIndexed: 17,
		mFrames:  1234,
		mCommits: 40,
		`phigate_spool_commit_frames_bucket{le="+Inf"}`:         40,
		`phigate_commands_total{class="read",decision="allow"}`: 12,
		`phigate_weird{path="a b}c",q="say \"hi\" }"}`:          7,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if v := m[`go_gc_duration_seconds{quantile="0.5"}`]; v == v {
		t.Errorf("NaN sample read as %v", v)
	}
	if m.get("absent") != 0 {
		t.Error("an absent sample is not 0")
	}
	for _, bad := range []string{
		"phigate_x{le=\"1\" 3\n", // unterminated labels
		"phigate_x\n",            // no value
		"phigate_x 1 2 3\n",      // too many fields
		"phigate_x one\n",        // not a number
		"{le=\"1\"} 3\n",         // no name
	} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMetrics(%q) accepted it", bad)
		}
	}
}

func TestDrained(t *testing.T) {
	before := metrics{mIndexed: 10, mBacklog: 0, mActive: 0}
	for _, tc := range []struct {
		name string
		now  metrics
		want bool
	}{
		{"every session indexed, backlog idle", metrics{mIndexed: 14, mBacklog: 100, mActive: 0}, true},
		{"one session not indexed yet", metrics{mIndexed: 13, mBacklog: 100, mActive: 0}, false},
		{"backlog above idle", metrics{mIndexed: 14, mBacklog: 101, mActive: 0}, false},
		{"a session still logged in", metrics{mIndexed: 14, mBacklog: 0, mActive: 1}, false},
	} {
		if got := drained(before, tc.now, 4, 100); got != tc.want {
			t.Errorf("%s: drained = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, as a thread may have.
	line := "4242 (my (odd) proc) S 1 4240 4240 0 -1 4194560 1000 0 0 0 250 75 12 3 20 0 9 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 1 || st.pgrp != 4240 || st.utime != 250 || st.stime != 75 || st.cutime != 12 || st.cstime != 3 {
		t.Fatalf("got %+v", st)
	}
	if _, err := parseProcStat([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a short line was accepted")
	}
	if ticks(250+75) != 3250*time.Millisecond {
		t.Errorf("ticks(325) = %v", ticks(325))
	}
	// This process's own line parses, and its family's.
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := familyCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestParseProcStatBusy(t *testing.T) {
	b := []byte("cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 3 0\n")
	busy, err := parseProcStatBusy(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := ticks(100 + 5 + 50 + 1 + 2 + 3); busy != want {
		t.Fatalf("busy = %v, want %v", busy, want)
	}
	if _, err := parseProcStatBusy([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a file without the cpu line was accepted")
	}
}

func TestOthers(t *testing.T) {
	d := usageDelta{cpu: map[string]time.Duration{sysPhigateOn: 3 * time.Second, partPostgres: 2 * time.Second}, busy: 6 * time.Second, haveBusy: true}
	if o, ok := d.others(); !ok || o != time.Second {
		t.Fatalf("others = %v %v, want 1s", o, ok)
	}
	d.cpu[partClients] = 2 * time.Second // counted after the sample: never below 0
	if o, _ := d.others(); o != 0 {
		t.Fatalf("others = %v, want 0", o)
	}
}

func TestParseProcIO(t *testing.T) {
	n, err := parseProcIO([]byte("rchar: 1\nwchar: 2048\nread_bytes: 3\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n"))
	if err != nil || n != 2048 {
		t.Fatalf("got %d, %v", n, err)
	}
}

func TestParseCopyScript(t *testing.T) {
	var buf bytes.Buffer
	if err := synth.WriteData(&buf, 20, synth.DefaultSeed); err != nil {
		t.Fatal(err)
	}
	tables, err := parseCopyScript(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var total int
	for _, tb := range tables {
		names = append(names, tb.name)
		if len(tb.data) == 0 || tb.data[len(tb.data)-1] != '\n' || bytes.Contains(tb.data, []byte("\n\\.\n")) {
			t.Errorf("%s: data is not whole lines without the end marker", tb.name)
		}
		if !strings.HasPrefix(tb.columns, "id, ") {
			t.Errorf("%s: columns %q", tb.name, tb.columns)
		}
		total += len(tb.data)
	}
	if !slices.Equal(names, []string{"patients", "encounters", "prescriptions"}) {
		t.Fatalf("tables %v", names)
	}
	// What was cut out is the whole script but the COPY lines and markers.
	if want := buf.Len(); total >= want || total < want*9/10 {
		t.Errorf("%d bytes of rows from a script of %d", total, want)
	}
	if bytesPerPatient*20 < total/4 || bytesPerPatient*20 > total*4 {
		t.Errorf("bytesPerPatient %d is far from %d", bytesPerPatient, total/20)
	}

	for _, bad := range []string{
		"",
		"SELECT 1;\n",
		"COPY public.t (id) FROM stdin;\n1\n",    // no end marker
		"COPY public.t (id) FROM stdin;\n1\\.\n", // a marker that is not a line of its own
	} {
		if _, err := parseCopyScript([]byte(bad)); err == nil {
			t.Errorf("parseCopyScript(%q) accepted it", bad)
		}
	}
	got, err := parseCopyScript([]byte("COPY public.t (id) FROM stdin;\n\\.\nCOPY public.u (id, x) FROM stdin;\n1\ta\\\\.\n\\.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0].data) != 0 || string(got[1].data) != "1\ta\\\\.\n" {
		t.Fatalf("got %+v", got)
	}
}

func TestParseVerifyJSON(t *testing.T) {
	out := `{"store": "s3://recordings?endpoint=x", "keys": {"source": "api"},
	  "report": {"ok": true, "sessions": 49, "chunks": 161, "manifests": 161, "bytes": 9600000, "digests": 0,
	  "elapsed_ms": 1200, "counts": {}, "findings": []}}`
	v, err := parseVerifyJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.Sessions != 49 || v.Chunks != 161 || v.Bytes != 9600000 || v.Findings != 0 {
		t.Fatalf("got %+v", v)
	}
	if got := v.MBps(); got != 8 {
		t.Fatalf("MBps = %v, want 8", got)
	}
	bad := strings.Replace(out, `"findings": []`, `"findings": [{"problem": "bad-signature", "detail": "x"}]`, 1)
	bad = strings.Replace(bad, `"ok": true`, `"ok": false`, 1)
	if v, err := parseVerifyJSON([]byte(bad)); err != nil || v.OK || v.Findings != 1 {
		t.Fatalf("findings: %+v, %v", v, err)
	}
	if _, err := parseVerifyJSON([]byte(`{"store": "x"}`)); err == nil {
		t.Error("output without a report accepted")
	}
	if (verifyRun{}).MBps() != 0 {
		t.Error("an empty run has a speed")
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-copy-with", "psql", "-workloads", "read-write", "-rounds", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.copyWith, []string{"psql"}) || !slices.Equal(c.workloads, []string{"read-write"}) || c.rounds != 2 || c.copyClients != 4 {
		t.Fatalf("got %+v", c)
	}
	for _, bad := range [][]string{
		{"-copy-with", "jdbc"},
		{"-workloads", "tpch"},
		{"-duration", "10ms"},
		{"-copy-clients", "0"},
		{"stray"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted it", bad)
		}
	}
}

// legs makes a report of hand-made legs: the figures, the printout and the
// files come from the code the benchmark uses.
func testReport(t *testing.T) *report {
	t.Helper()
	cfg, err := parseFlags([]string{"-rounds", "2", "-copy-rounds", "1"})
	if err != nil {
		t.Fatal(err)
	}
	copyLegOf := func(client, sys string, data int64, elapsed, drain time.Duration, m0, m2 metrics, phigateCPU time.Duration) copyLeg {
		total := usageDelta{wall: elapsed + drain, cpu: map[string]time.Duration{partPostgres: time.Second, partBench: time.Second / 10}, busy: 10 * time.Second, haveBusy: true}
		if sys != sysDirect {
			total.cpu[sys] = phigateCPU
		}
		return copyLeg{client: client, system: sys, res: copyResult{bytes: data, elapsed: elapsed}, drain: drain, m0: m0, m1: m2, m2: m2, load: total, total: total}
	}
	none := metrics{}
	r := &report{cfg: cfg, started: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), elapsed: 9 * time.Minute,
		copyBytesPerClient: 50e6, copyRowsPerClient: 180000, shippedRaw: 300e6, shippedStored: 60e6}
	r.copies = []copyLeg{
		copyLegOf(clientPgx, sysDirect, 200e6, 2*time.Second, 0, none, none, 0),
		copyLegOf(clientPgx, sysPhigateOff, 200e6, 4*time.Second, 0, metrics{mFrames: 0}, metrics{mFrames: 4000}, 3*time.Second),
		copyLegOf(clientPgx, sysPhigateOn, 200e6, 4*time.Second, time.Second,
			metrics{mFrames: 100, mRaw: 1e6, mStored: 1e5}, metrics{mFrames: 4100, mRaw: 268e6, mStored: 51e6}, 6*time.Second),
	}
	r.put = &putResult{Objects: 256, Size: 1 << 20, Concurrency: 8, Elapsed: 2 * time.Second}
	pg := func(wl, sys string, tps float64, frames float64) pgbenchLeg {
		l := pgbenchLeg{workload: wl, system: sys, elapsed: 15 * time.Second, m0: metrics{}, m2: metrics{mFrames: frames, mRaw: frames * 200, mStored: frames * 50},
			total: usageDelta{wall: 15 * time.Second, cpu: map[string]time.Duration{}, busy: 15 * time.Second, haveBusy: true}}
		l.run.TPS, l.run.Transactions = tps, int64(tps*15)
		return l
	}
	r.pgbench = []pgbenchLeg{
		pg("select-only", sysDirect, 10000, 0),
		pg("select-only", sysPhigateOn, 3000, 90000), pg("select-only", sysPhigateOff, 3100, 90000),
		pg("select-only", sysPhigateOff, 3050, 90000), pg("select-only", sysPhigateOn, 3000, 90000),
		pg("read-write", sysDirect, 1400, 0),
		pg("read-write", sysPhigateOn, 400, 140000), pg("read-write", sysPhigateOff, 440, 150000),
	}
	r.verifies = []verifyRun{
		{Store: "s3", Wall: 2 * time.Second, ElapsedMS: 1500, Sessions: 80, Chunks: 300, Bytes: 60e6, OK: true},
		{Store: "fs", Wall: time.Second, ElapsedMS: 500, Sessions: 80, Chunks: 300, Bytes: 60e6, OK: true},
	}
	return r
}

func TestFigures(t *testing.T) {
	r := testReport(t)
	on := r.copyFigures(clientPgx, sysPhigateOn)
	if !on.ok || on.mbps != 50 || on.shipped != 40 || on.drain != 1 || on.events != 1000 {
		t.Fatalf("copy figures %+v", on)
	}
	if on.storedRaw != (51e6-1e5)/(267e6) || on.storedData != (51e6-1e5)/200e6 || on.rawData != 267e6/200e6 {
		t.Fatalf("ratios %+v", on)
	}
	if on.cpu[sysPhigateOn] != 30 || on.cpu[partPostgres] != 5 {
		t.Fatalf("cpu per GB %v", on.cpu)
	}
	// busy 10s - phigate 6s - postgres 1s - bench 0.1s
	if got := on.cpu[partOthers]; got < 14.49 || got > 14.51 {
		t.Fatalf("others per GB %v, want 14.5", got)
	}
	if d := r.copyFigures(clientPgx, sysDirect); !d.ok || d.mbps != 100 {
		t.Fatalf("direct %+v", d)
	}
	if f := r.copyFigures(clientPsql, sysPhigateOn); f.ok {
		t.Fatal("figures for a client that did not run")
	}
	s := r.pgbenchFigures("select-only", sysPhigateOn)
	if !s.ok || s.tps != 3000 || s.events != 6000 || len(s.tpsRounds) != 2 {
		t.Fatalf("pgbench figures %+v", s)
	}
	if got := r.pairedRatios("select-only"); !slices.Equal(got, []float64{3000.0 / 3100, 3000.0 / 3050}) {
		t.Fatalf("paired ratios %v", got)
	}
}

func TestWriteAndPrint(t *testing.T) {
	r := testReport(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# bench/results\n\nfrom bench/pg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "recording-old.json")
	if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("an earlier run's file was left")
	}
	read := func(name string) bench.Result {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var res bench.Result
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		if res.Name != name || res.Unit == "" || res.Notes == "" || res.Time.IsZero() {
			t.Fatalf("%s: %+v", name, res)
		}
		return res
	}
	tp := read("recording-throughput-copy-pgx")
	if !tp.HigherIsBetter || tp.Values[sysDirect] != 100 || tp.Values["phigate-on/direct"] != 0.5 || tp.Values["phigate-on-shipped/target"] != 0.4 {
		t.Fatalf("throughput %v", tp.Values)
	}
	if _, err := os.Stat(filepath.Join(dir, "recording-throughput-copy-psql.json")); err == nil {
		t.Error("a file for psql, which did not run")
	}
	ps := read("recording-pgbench-shipping-select-only-c16-tps")
	if ps.Values["phigate-on/phigate-off"] != 3000.0/3075 || ps.Values["phigate-on/phigate-off min round"] != 3000.0/3100 {
		t.Fatalf("pgbench %v", ps.Values)
	}
	if v := read("recording-verify").Values; v["s3"] != 40 || v["fs"] != 120 || v["s3/target"] != 0.08 || v["s3 raw-equivalent"] != 200 {
		t.Fatalf("verify %v", v)
	}
	if c := read("recording-compression"); c.HigherIsBetter || c.Values["copy-pgx stored/data"] == 0 {
		t.Fatalf("compression %+v", c)
	}
	for _, name := range []string{"recording-events", "recording-raw-throughput", "recording-drain", "recording-upload", "recording-cpu"} {
		read(name)
	}

	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(readme, []byte("# bench/results\n\nfrom bench/pg\n\n"+readmeBegin)) || !bytes.Contains(readme, []byte("`recording-verify.json`")) {
		t.Fatalf("README.md:\n%s", readme)
	}
	// A second run replaces its section, and keeps the rest.
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	if bytes.Count(again, []byte(readmeBegin)) != 1 || !bytes.HasPrefix(again, []byte("# bench/results\n\nfrom bench/pg\n")) {
		t.Fatalf("README.md after a second run:\n%s", again)
	}

	var out bytes.Buffer
	r.print(&out)
	for _, want := range []string{
		"recorded and shipped >= 100 MB/s per node: 40.0 MB/s with pgx (0.40 of the target)",
		"verify >= 500 MB/s: 40.0 MB/s from MinIO (0.08 of the target): NOT met; 120.0 MB/s from a directory",
		"pgbench select-only TPS shipping on within 5% of off: on/off 0.976: met",
		"pgbench read-write TPS shipping on within 5% of off: on/off 0.909: NOT met",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
