package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

// report gathers the run's figures, in run order.
type report struct {
	cfg      config
	started  time.Time
	specs    []harness.PgbenchSpec
	runs     map[string]map[string]Measured // spec -> stage -> figures
	sysSpecs []harness.PgbenchSpec
	sys      map[string]map[string]Syscalls
}

func newReport(cfg config) *report {
	return &report{cfg: cfg, started: time.Now(), runs: map[string]map[string]Measured{}, sys: map[string]map[string]Syscalls{}}
}

func key(s harness.PgbenchSpec) string {
	return fmt.Sprintf("%s-%s-c%d", s.Workload, s.Mode, s.Clients)
}

func (r *report) add(spec harness.PgbenchSpec, stage string, m Measured) {
	k := key(spec)
	if r.runs[k] == nil {
		r.runs[k] = map[string]Measured{}
		r.specs = append(r.specs, spec)
	}
	r.runs[k][stage] = m
}

func (r *report) addSyscalls(spec harness.PgbenchSpec, stage string, s Syscalls) {
	k := key(spec)
	if r.sys[k] == nil {
		r.sys[k] = map[string]Syscalls{}
		r.sysSpecs = append(r.sysSpecs, spec)
	}
	r.sys[k][stage] = s
}

// table is the run as markdown: one table per pgbench spec.
func (r *report) table() string {
	var b strings.Builder
	for _, spec := range r.specs {
		runs := r.runs[key(spec)]
		d, okD := runs["direct"]
		pb, okB := runs["pgbouncer"]
		sys := r.sys[key(harness.PgbenchSpec{Workload: spec.Workload, Mode: spec.Mode, Clients: 16})]
		fmt.Fprintf(&b, "\n**%s, %s protocol, %d clients**\n\n", spec.Workload, spec.Mode, spec.Clients)
		b.WriteString("| stage | tps | ×pgbouncer | p50 ms | p99 ms | +p50 vs direct | +p99 vs direct | CPU µs/tx | Δ CPU µs/tx | syscalls/tx (c16) |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		prevCPU := -1.0
		for _, s := range stages {
			m, ok := runs[s.name]
			if !ok {
				continue
			}
			cell := func(ok bool, format string, v float64) string {
				if !ok {
					return "–"
				}
				return fmt.Sprintf(format, v)
			}
			proxy := s.name != "direct"
			delta := ""
			if proxy && s.name != "pgbouncer" {
				if prevCPU >= 0 {
					delta = fmt.Sprintf("%+.1f", m.CPUPerTx-prevCPU)
				}
				prevCPU = m.CPUPerTx
			}
			sc, okS := sys[s.name]
			fmt.Fprintf(&b, "| %s | %.0f | %s | %.3f | %.3f | %s | %s | %s | %s | %s |\n", s.name, m.TPS,
				cell(okB && pb.TPS > 0, "%.2f", m.TPS/pb.TPS), m.P50MS, m.P99MS,
				cell(okD && proxy, "%+.3f", m.P50MS-d.P50MS), cell(okD && proxy, "%+.3f", m.P99MS-d.P99MS),
				cell(proxy, "%.1f", m.CPUPerTx), delta, cell(okS, "%.1f", sc.PerTx))
		}
	}
	if len(r.sysSpecs) > 0 {
		b.WriteString("\n**System calls per transaction by kind** (16 clients, under strace -c -f; the four most frequent)\n\n")
		b.WriteString("| workload | stage | calls/tx | most frequent (per tx) |\n|---|---|---:|---|\n")
		for _, spec := range r.sysSpecs {
			for _, s := range stages {
				if sc, ok := r.sys[key(spec)][s.name]; ok {
					fmt.Fprintf(&b, "| %s %s | %s | %.1f | %s |\n", spec.Workload, spec.Mode, s.name, sc.PerTx, sc.top(4))
				}
			}
		}
	}
	return b.String()
}

func (r *report) print(w io.Writer) { fmt.Fprintln(w, r.table()) }

// write stores one bench.Result per pgbench spec (decompose-<spec>.json),
// one per strace pass, and decompose.md, the tables.
func (r *report) write(dir string) error {
	now := time.Now().UTC()
	old, _ := filepath.Glob(filepath.Join(dir, "decompose-*.json"))
	for _, f := range old {
		os.Remove(f)
	}
	for _, spec := range r.specs {
		v := map[string]float64{}
		runs := r.runs[key(spec)]
		for stage, m := range runs {
			v[stage+".tps"] = m.TPS
			v[stage+".p50_ms"] = m.P50MS
			v[stage+".p99_ms"] = m.P99MS
			if stage != "direct" {
				v[stage+".cpu_us_per_tx"] = m.CPUPerTx
				if d, ok := runs["direct"]; ok {
					v[stage+".added_p50_ms"] = m.P50MS - d.P50MS
					v[stage+".added_p99_ms"] = m.P99MS - d.P99MS
				}
				if pb, ok := runs["pgbouncer"]; ok && pb.TPS > 0 {
					v[stage+"/pgbouncer.tps"] = m.TPS / pb.TPS
				}
			}
		}
		notes := fmt.Sprintf("pgbench %s -M %s -c %d -j %d -T %d -n, scale %d, fsync on. Stages: relay (bytes only), classify (+classification and policy, no recording), nofsync (+recording, no fdatasync), fsync (the product, no masking profile), product (+masking profile), readahead (the product with read_ahead on its grant, off by default), nosnap (the product without change snapshots); relay/classify/nofsync run a phigate_bench build. cpu_us_per_tx: utime+stime of the proxy process from /proc per transaction",
			spec.Workload, spec.Mode, spec.Clients, min(spec.Jobs, spec.Clients), int(spec.Duration.Seconds()), r.cfg.scale)
		if err := bench.Write(dir, bench.Result{Name: "decompose-" + key(spec), Unit: "per key: tps, ms, µs CPU per transaction, ratios", HigherIsBetter: true, Values: v, Notes: notes, Time: now}); err != nil {
			return err
		}
	}
	for _, spec := range r.sysSpecs {
		v := map[string]float64{}
		for stage, sc := range r.sys[key(spec)] {
			v[stage] = sc.PerTx
			for name, n := range sc.ByName {
				v[stage+"."+name] = float64(n) / float64(max(sc.Transactions, 1))
			}
		}
		notes := fmt.Sprintf("pgbench %s -M %s -c 16 -T %d with strace -c -f attached to the proxy process: system calls per transaction (strace slows the run; the counts, not the times, are the figure)",
			spec.Workload, spec.Mode, int(r.cfg.straceDur.Seconds()))
		if err := bench.Write(dir, bench.Result{Name: "decompose-syscalls-" + key(spec), Unit: "system calls per transaction", Values: v, Notes: notes, Time: now}); err != nil {
			return err
		}
	}
	var md strings.Builder
	md.WriteString("# Where phigate's cost per command goes (bench/decompose)\n\n")
	fmt.Fprintf(&md, "Written by `go run ./bench/decompose` (`make bench`). Run: %s, %s/%s, %d CPUs, scale %d, %s per pgbench run, %v.\n",
		r.started.UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.cfg.scale, r.cfg.duration, time.Since(r.started).Round(time.Second))
	md.WriteString("Stages, each adding to the one before: relay (bytes copied after login), classify (+classification and policy, nothing recorded), nofsync (+recording, no fdatasync), fsync (the product without a masking profile), product (+the masking profile), readahead (the product with the grant's read_ahead on: proven reads run while their event syncs; off by default), nosnap (the product without the before and after rows of data changes). The first three are a `phigate_bench` build's stages (session/benchstage), never product modes. docs/performance.md reads these tables.\n")
	md.WriteString(r.table())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "decompose.md"), []byte(md.String()), 0o644)
}
