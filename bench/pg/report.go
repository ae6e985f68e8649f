package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

// report gathers a run's figures, prints them and writes them as JSON.
type report struct {
	cfg     config
	keys    []harness.PgbenchSpec     // in run order
	pgbench map[string]map[string]Run // spec key -> system -> run
	streams []string                  // size labels in run order
	stream  map[string]map[string]StreamRun
	rss     map[string]float64 // phase -> phigate peak RSS, MiB

	fsyncP50, fsyncP99 float64 // 4 KiB write+fsync in the working directory, ms
}

func specKey(s harness.PgbenchSpec) string {
	return fmt.Sprintf("pgbench-%s-%s-c%d", s.Workload, s.Mode, s.Clients)
}

func (r *report) addPgbench(spec harness.PgbenchSpec, system string, run Run) {
	k := specKey(spec)
	if r.pgbench[k] == nil {
		r.pgbench[k] = map[string]Run{}
		r.keys = append(r.keys, spec)
	}
	r.pgbench[k][system] = run
}

func (r *report) addStream(label, system string, run StreamRun) {
	if r.stream[label] == nil {
		r.stream[label] = map[string]StreamRun{}
		r.streams = append(r.streams, label)
	}
	r.stream[label][system] = run
}

func ratio(a, b float64, okA, okB bool) (float64, bool) {
	if !okA || !okB || b == 0 {
		return 0, false
	}
	return a / b, true
}

func cell(v float64, ok bool, format string) string {
	if !ok || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// print writes the side-by-side tables.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\npgbench: scale %d, %s per run, -j %d, fsync on; phigate records every command (fsync) and masks pgbench_accounts.filler\n",
		r.cfg.scale, r.cfg.duration, r.cfg.jobs)
	if r.fsyncP50 > 0 {
		fmt.Fprintf(w, "disk: one 4 KiB write+fsync takes %.3f ms (p50), %.3f ms (p99)\n", r.fsyncP50, r.fsyncP99)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "throughput (tps)\t\tclients\tdirect\tpgbouncer\tphigate\tphigate/direct\tphigate/pgbouncer\t")
	for _, spec := range r.keys {
		runs := r.pgbench[specKey(spec)]
		d, okD := runs["direct"]
		b, okB := runs["pgbouncer"]
		p, okP := runs["phigate"]
		rd, okRD := ratio(p.TPS, d.TPS, okP, okD)
		rb, okRB := ratio(p.TPS, b.TPS, okP, okB)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			spec.Workload, spec.Mode, spec.Clients,
			cell(d.TPS, okD, "%.0f"), cell(b.TPS, okB, "%.0f"), cell(p.TPS, okP, "%.0f"),
			cell(rd, okRD, "%.2fx"), cell(rb, okRB, "%.2fx"))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\t\tclients\tp50 direct\tpgbouncer\tphigate\tp99 direct\tpgbouncer\tphigate\tadded p50\tadded p99\t")
	for _, spec := range r.keys {
		runs := r.pgbench[specKey(spec)]
		d, okD := runs["direct"]
		b, okB := runs["pgbouncer"]
		p, okP := runs["phigate"]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			spec.Workload, spec.Mode, spec.Clients,
			cell(d.P50MS, okD, "%.3f"), cell(b.P50MS, okB, "%.3f"), cell(p.P50MS, okP, "%.3f"),
			cell(d.P99MS, okD, "%.3f"), cell(b.P99MS, okB, "%.3f"), cell(p.P99MS, okP, "%.3f"),
			cell(p.P50MS-d.P50MS, okP && okD, "%+.3f"), cell(p.P99MS-d.P99MS, okP && okD, "%+.3f"))
	}
	tw.Flush()
	if len(r.streams) == 0 {
		return
	}
	fmt.Fprintf(w, "\nresult streaming: one SELECT, text format, read and discarded by a pgx client (median of %d)\n\n", r.cfg.streamReps)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "result\tdirect MB/s\tpgbouncer MB/s\tphigate MB/s\tphigate/direct\tmasked+proof MB/s\tmasked/direct\tphigate peak RSS MiB\t")
	for _, label := range r.streams {
		runs := r.stream[label]
		d, okD := runs["direct"]
		b, okB := runs["pgbouncer"]
		p, okP := runs["phigate"]
		m, okM := runs["phigate-masked"]
		rd, okRD := ratio(p.MBps(), d.MBps(), okP, okD)
		md, okMD := ratio(m.MBps(), d.MBps(), okM, okD)
		rss, okRSS := r.rss["stream-"+label]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", label,
			cell(d.MBps(), okD, "%.0f"), cell(b.MBps(), okB, "%.0f"), cell(p.MBps(), okP, "%.0f"),
			cell(rd, okRD, "%.2fx"), cell(m.MBps(), okM, "%.0f"), cell(md, okMD, "%.2fx"), cell(rss, okRSS, "%.1f"))
	}
	tw.Flush()
	if v, ok := r.rss["pgbench"]; ok {
		fmt.Fprintf(w, "\nphigate peak RSS over all pgbench runs: %.1f MiB\n", v)
	}
	fmt.Fprintln(w)
}

// fileDoc is one written file and what it holds, for README.md.
type fileDoc struct{ name, doc string }

// write stores one bench.Result per figure and a README.md describing them.
func (r *report) write(dir string) error {
	now := time.Now().UTC()
	// Files of an earlier run with other flags would be mistaken for this
	// run's; remove ours (only ours: other benchmarks share the directory).
	for _, pattern := range []string{"pgbench-*.json", "stream-*.json", "phigate-peak-rss.json", "disk-fsync.json"} {
		old, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range old {
			os.Remove(f)
		}
	}
	var docs []fileDoc
	put := func(res bench.Result, doc string) error {
		if len(res.Values) == 0 {
			return nil
		}
		res.Time = now
		docs = append(docs, fileDoc{res.Name + ".json", doc})
		return bench.Write(dir, res)
	}
	systems := []string{"direct", "pgbouncer", "phigate"}
	for _, spec := range r.keys {
		runs := r.pgbench[specKey(spec)]
		notes := fmt.Sprintf("pgbench %s -M %s -c %d -j %d -T %d -n, scale %d; fsync on; phigate with recording and masking",
			map[string]string{"select-only": "-S", "read-write": "(TPC-B-like)"}[spec.Workload],
			spec.Mode, spec.Clients, min(spec.Jobs, spec.Clients), int(spec.Duration.Seconds()), r.cfg.scale)
		tps := map[string]float64{}
		p50 := map[string]float64{}
		p99 := map[string]float64{}
		for _, s := range systems {
			if run, ok := runs[s]; ok {
				tps[s], p50[s], p99[s] = run.TPS, run.P50MS, run.P99MS
			}
		}
		for _, peer := range []string{"direct", "pgbouncer"} {
			if p, ok := tps["phigate"]; ok && tps[peer] > 0 {
				tps["phigate/"+peer] = p / tps[peer]
			}
			for _, lat := range []map[string]float64{p50, p99} {
				p, okP := lat["phigate"]
				q, okQ := lat[peer]
				if okP && okQ {
					lat["phigate-"+peer] = p - q
					if q > 0 {
						lat["phigate/"+peer] = p / q
					}
				}
			}
		}
		k := specKey(spec)
		what := fmt.Sprintf("%s, %s protocol, %d clients", spec.Workload, spec.Mode, spec.Clients)
		if err := put(bench.Result{Name: k + "-tps", Unit: "transactions/s", HigherIsBetter: true, Values: tps, Notes: notes},
			"throughput, "+what+"; ratios phigate/direct and phigate/pgbouncer"); err != nil {
			return err
		}
		if err := put(bench.Result{Name: k + "-p50", Unit: "ms", Values: p50, Notes: notes},
			"median transaction latency, "+what+"; phigate-direct and phigate-pgbouncer are phigate's added latency in ms"); err != nil {
			return err
		}
		if err := put(bench.Result{Name: k + "-p99", Unit: "ms", Values: p99, Notes: notes},
			"99th percentile transaction latency, "+what+"; phigate-direct is the added latency in ms"); err != nil {
			return err
		}
	}
	for _, label := range r.streams {
		runs := r.stream[label]
		v := map[string]float64{}
		for _, s := range systems {
			if run, ok := runs[s]; ok {
				v[s] = run.MBps()
			}
		}
		if run, ok := runs["phigate-masked"]; ok {
			v["phigate-masked"] = run.MBps()
		}
		for _, sys := range []string{"phigate", "phigate-masked"} {
			if p, ok := v[sys]; ok && v["direct"] > 0 {
				v[sys+"/direct"] = p / v["direct"]
			}
		}
		q, rows := streamQuery(mustSize(label), false)
		notes := fmt.Sprintf("%s, %d rows, text format, read with pgconn and discarded: %s; phigate-masked: the same with the 7-character id column named masked_id, which the profile redacts (masking proof recorded)", label, rows, q)
		if err := put(bench.Result{Name: "stream-" + label + "-throughput", Unit: "MB/s", HigherIsBetter: true, Values: v, Notes: notes},
			"throughput of one SELECT returning "+label+" of column data; ratio phigate/direct"); err != nil {
			return err
		}
	}
	if len(r.rss) > 0 {
		v := map[string]float64{}
		for k, x := range r.rss {
			v[k] = x
		}
		if n := len(r.streams); n >= 2 {
			small, large := r.rss["stream-"+r.streams[0]], r.rss["stream-"+r.streams[n-1]]
			if small > 0 && large > 0 {
				v["stream-"+r.streams[n-1]+"/stream-"+r.streams[0]] = large / small
			}
		}
		if err := put(bench.Result{Name: "phigate-peak-rss", Unit: "MiB", Values: v,
			Notes: "VmHWM of the phigate process: pgbench is the peak over all pgbench runs; the streams run on a freshly started node, its peak reset (clear_refs 5) before each size; before-stream-X is VmRSS right after that reset"},
			"phigate's peak resident memory: over the pgbench runs, and during each streamed result (a ratio near 1 means memory does not grow with result size)"); err != nil {
			return err
		}
	}
	if r.fsyncP50 > 0 {
		if err := put(bench.Result{Name: "disk-fsync", Unit: "ms", Values: map[string]float64{"p50": r.fsyncP50, "p99": r.fsyncP99},
			Notes: "500 x (write 4 KiB + fsync) to one file in the benchmark's working directory"},
			"context, not a comparison: what one durable write costs on this machine's disk, the floor under a recorded command's latency"); err != nil {
			return err
		}
	}
	return writeReadme(dir, r.cfg, docs)
}

func mustSize(label string) int64 {
	n, err := ParseSize(label)
	if err != nil {
		panic(err) // labels were parsed by parseFlags
	}
	return n
}

// writeReadme writes the top of dir/README.md, above the sections the
// other programs write (harness.WriteReadmeTop keeps those).
func writeReadme(dir string, cfg config, docs []fileDoc) error {
	sort.Slice(docs, func(i, j int) bool { return docs[i].name < docs[j].name })
	var b strings.Builder
	b.WriteString(`# bench/results

Written by ` + "`make bench`" + ` (the program in bench/pg). Every file is one figure
from one run, measured side by side on the same machine and the same
PostgreSQL (fsync on):

- ` + "`direct`" + `: pgbench or the client connects straight to PostgreSQL;
- ` + "`pgbouncer`" + `: through PgBouncer, session pooling;
- ` + "`phigate`" + `: through phigate, with command recording (fsync, durable before the
  response is forwarded) and a masking profile (pgbench_accounts.filler redacted).

Each file has ` + "`name`, `unit`, `higher_is_better`" + ` and ` + "`values`" + `, a map from
system to number. Ratios are values too: ` + "`phigate/direct`" + ` is phigate's figure
divided by direct's; ` + "`phigate-direct`" + ` (latency files) is phigate's added latency
in ms. ` + "`notes`" + ` says exactly what ran.

Latency percentiles come from pgbench's per-transaction logs (` + "`--log`" + `), not from
its summary, which only has the average. The systems are interleaved (the order
rotates between rounds) so that drift in machine load hits them alike.

Targets (issue 2, where we are going, not a test): phigate TPS at least
PgBouncer's at 16 clients; added latency p50 < 0.3 ms and p99 < 1 ms;
streaming at least 0.7x direct with a peak RSS that does not grow with the
result size.

Two other programs of ` + "`make bench`" + ` write here too, and their files are not in
the table below: ` + "`mask_*.json`" + ` (bench/mask: masking throughput beside memmove
and a naive regexp; with ` + "`--corpus`" + `, the precision and recall of both detection
modes on a labelled corpus, ` + "`mask_accuracy_<corpus>.json`" + `, and the throughput on its
notes) and ` + "`cluster-*.json`" + ` (bench/cluster: policy propagation to every node,
join-to-ready, pgbench over three nodes against one and direct). Their
` + "`notes`" + ` say exactly what ran. The sections after the table are other
programs' own, each rewritten by its program; bench/pg rewrites only this top.

` + "`ci/`" + ` (not committed) is written by ` + "`make bench-ci`" + `: its short runs
(` + "`go run ./bench/pg -rounds N`" + `, one directory per round, ` + "`ci/round-1`" + ` to
` + "`ci/round-N`" + `, each on servers started afresh) and ` + "`gate.json`" + `, bench/gate's
verdict on them.

`)
	fmt.Fprintf(&b, "Last run: %s, %s/%s, %d CPUs; scale %d, %s per pgbench run, clients %v, modes %v.\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		cfg.scale, cfg.duration, cfg.clients, cfg.modes)
	b.WriteString("| file | what it measures |\n| --- | --- |\n")
	for _, d := range docs {
		fmt.Fprintf(&b, "| `%s` | %s |\n", d.name, d.doc)
	}
	return harness.WriteReadmeTop(dir, b.String())
}
