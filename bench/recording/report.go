package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/internal/synth"
)

// The targets of issue 10 (where we are going, not a test).
const (
	targetRecordMBps   = 100.0 // COPY data recorded and shipped per second, per node
	targetStoredFrac   = 0.25  // stored bytes over the traffic recorded
	targetVerifyMBps   = 500.0 // stored chunk bytes verified per second
	targetTPSOnOverOff = 0.95  // pgbench TPS, shipping on over shipping off
)

// report gathers a run's figures, prints them and writes them as JSON.
type report struct {
	cfg                config
	started            time.Time
	elapsed            time.Duration
	loadStart, loadEnd string
	verifyBin          string

	copyBytesPerClient, copyRowsPerClient int64
	copies                                []copyLeg
	put                                   *putResult
	pgbench                               []pgbenchLeg
	verifies                              []verifyRun

	shippedRaw, shippedStored float64 // the on node's totals at the end
	uploadErrors              float64
}

func (r *report) copyLegs(client, system string) []copyLeg {
	var out []copyLeg
	for _, l := range r.copies {
		if l.client == client && l.system == system {
			out = append(out, l)
		}
	}
	return out
}

func (r *report) pgbenchLegs(workload, system string) []pgbenchLeg {
	var out []pgbenchLeg
	for _, l := range r.pgbench {
		if l.workload == workload && l.system == system {
			out = append(out, l)
		}
	}
	return out
}

// mean of f over legs, and whether there was any.
func mean[L any](legs []L, f func(L) float64) (float64, bool) {
	if len(legs) == 0 {
		return 0, false
	}
	var s float64
	for _, l := range legs {
		s += f(l)
	}
	return s / float64(len(legs)), true
}

// sumRatio is Σnum/Σden over legs: a ratio weighted by volume.
func sumRatio[L any](legs []L, num, den func(L) float64) (float64, bool) {
	var n, d float64
	for _, l := range legs {
		n += num(l)
		d += den(l)
	}
	if len(legs) == 0 || d == 0 {
		return 0, false
	}
	return n / d, true
}

// copyFigures is one COPY client's figures on one system, over the rounds.
type copyFigures struct {
	ok                             bool
	mbps, shipped, drain           float64 // means
	events, raw                    float64 // per second of load, means
	storedRaw, storedData, rawData float64
	upload                         float64
	fsyncMS                        float64            // mean fdatasync of the journal
	cpu                            map[string]float64 // CPU s per GB of COPY data, by part
	writes                         map[string]float64 // bytes passed to write calls per byte of COPY data: the node's, minio's
}

func (r *report) copyFigures(client, system string) copyFigures {
	legs := r.copyLegs(client, system)
	f := copyFigures{cpu: map[string]float64{}, writes: map[string]float64{}}
	if f.mbps, f.ok = mean(legs, copyLeg.mbps); !f.ok {
		return f
	}
	f.shipped, _ = mean(legs, copyLeg.shippedMBps)
	f.drain, _ = mean(legs, func(l copyLeg) float64 { return l.drain.Seconds() })
	f.events, _ = mean(legs, copyLeg.eventsPerSec)
	f.raw, _ = mean(legs, copyLeg.rawMBps)
	data := func(l copyLeg) float64 { return float64(l.res.bytes) }
	raw := func(l copyLeg) float64 { return delta(l.m0, l.m2, mRaw) }
	stored := func(l copyLeg) float64 { return delta(l.m0, l.m2, mStored) }
	f.storedRaw, _ = sumRatio(legs, stored, raw)
	f.storedData, _ = sumRatio(legs, stored, data)
	f.rawData, _ = sumRatio(legs, raw, data)
	f.upload, _ = mean(legs, copyLeg.uploadMBps)
	f.fsyncMS, _ = mean(legs, copyLeg.fsyncMS)
	for _, part := range []string{system, partMinio} {
		if system == sysDirect || (part == partMinio && system != sysPhigateOn) {
			continue
		}
		if v, ok := sumRatio(legs, func(l copyLeg) float64 { return float64(l.total.written[part]) }, data); ok {
			f.writes[part] = v
		}
	}
	parts := []string{system, partPostgres, partMinio, partClients, partOthers}
	if client == clientPgx {
		parts[3] = partBench // the pgx clients run in this process
	}
	for _, part := range parts {
		if (system == sysDirect && part == system) || (system != sysPhigateOn && part == partMinio) {
			continue
		}
		cpuOf := func(l copyLeg) float64 {
			if part == partOthers {
				o, _ := l.total.others()
				return o.Seconds()
			}
			return l.total.cpu[part].Seconds()
		}
		if v, ok := sumRatio(legs, cpuOf, func(l copyLeg) float64 { return data(l) / 1e9 }); ok {
			f.cpu[part] = v
		}
	}
	return f
}

// pgbenchFigures is one workload's figures on one system, over the rounds.
type pgbenchFigures struct {
	ok                      bool
	tps, events, raw, drain float64 // means
	storedRaw, eventsPerTx  float64
	fsyncMS, commits        float64            // mean fdatasync of the journal, group commits per second
	cpuPerTx                map[string]float64 // CPU µs per transaction: the node's (by its name) and MinIO's
	tpsRounds               []float64
	failed                  int64
}

func (r *report) pgbenchFigures(workload, system string) pgbenchFigures {
	legs := r.pgbenchLegs(workload, system)
	var f pgbenchFigures
	if f.tps, f.ok = mean(legs, func(l pgbenchLeg) float64 { return l.run.TPS }); !f.ok {
		return f
	}
	f.events, _ = mean(legs, pgbenchLeg.eventsPerSec)
	f.raw, _ = mean(legs, pgbenchLeg.rawMBps)
	f.drain, _ = mean(legs, func(l pgbenchLeg) float64 { return l.drain.Seconds() })
	f.fsyncMS, _ = mean(legs, pgbenchLeg.fsyncMS)
	f.commits, _ = mean(legs, pgbenchLeg.commitsPerSec)
	f.cpuPerTx = map[string]float64{}
	for _, part := range []string{system, partMinio} {
		if system == sysDirect || (part == partMinio && system != sysPhigateOn) {
			continue
		}
		if v, ok := sumRatio(legs, func(l pgbenchLeg) float64 { return l.total.cpu[part].Seconds() * 1e6 }, func(l pgbenchLeg) float64 { return float64(l.run.Transactions) }); ok {
			f.cpuPerTx[part] = v
		}
	}
	f.storedRaw, _ = sumRatio(legs, func(l pgbenchLeg) float64 { return delta(l.m0, l.m2, mStored) }, func(l pgbenchLeg) float64 { return delta(l.m0, l.m2, mRaw) })
	f.eventsPerTx, _ = sumRatio(legs, func(l pgbenchLeg) float64 { return delta(l.m0, l.m2, mFrames) }, func(l pgbenchLeg) float64 { return float64(l.run.Transactions) })
	for _, l := range legs {
		f.tpsRounds = append(f.tpsRounds, l.run.TPS)
		f.failed += l.run.Failed + l.run.LogFailed
	}
	return f
}

// pgbenchOthers is the mean share of the machine's CPU time that the
// workload's runs did not account for: pgbench itself, and other work on
// a shared machine.
func (r *report) pgbenchOthers(workload string) (float64, bool) {
	var all []pgbenchLeg
	for _, l := range r.pgbench {
		if l.workload == workload {
			all = append(all, l)
		}
	}
	return mean(all, func(l pgbenchLeg) float64 {
		o, _ := l.total.others()
		return finite(o.Seconds() / (l.total.wall.Seconds() * float64(runtime.NumCPU())))
	})
}

// copyOthers is the mean share of the machine's CPU time that the COPY
// runs with client did not account for: other work on a shared machine.
func (r *report) copyOthers(client string) (float64, bool) {
	var all []copyLeg
	for _, l := range r.copies {
		if l.client == client {
			all = append(all, l)
		}
	}
	return mean(all, func(l copyLeg) float64 {
		o, _ := l.total.others()
		return finite(o.Seconds() / (l.total.wall.Seconds() * float64(runtime.NumCPU())))
	})
}

// pairedRatios is on/off TPS per round, for the spread.
func (r *report) pairedRatios(workload string) []float64 {
	on, off := r.pgbenchLegs(workload, sysPhigateOn), r.pgbenchLegs(workload, sysPhigateOff)
	var out []float64
	for i := range min(len(on), len(off)) {
		if off[i].run.TPS > 0 {
			out = append(out, on[i].run.TPS/off[i].run.TPS)
		}
	}
	return out
}

func (r *report) verifyRun(kind string) (verifyRun, bool) {
	for _, v := range r.verifies {
		if v.Store == kind {
			return v, true
		}
	}
	return verifyRun{}, false
}

func cell(v float64, ok bool, format string) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// print writes the summary.
func (r *report) print(w io.Writer) {
	cfg := r.cfg
	fmt.Fprintf(w, "\nrecording benchmark: %s/%s, %d CPUs; load average %s at the start, %s at the end; run took %v\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.loadStart, r.loadEnd, r.elapsed.Round(time.Second))
	if len(r.copies) > 0 {
		fmt.Fprintf(w, "\nCOPY FROM STDIN, text format: %d clients at once, each %.1f MB (%d rows) of the synthetic clinic; mean of %d rounds\n\n",
			cfg.copyClients, float64(r.copyBytesPerClient)/1e6, r.copyRowsPerClient, cfg.copyRounds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "client\tsystem\tMB/s\tx direct\tshipped MB/s\tdrain s\tevents/s\tfsync ms\traw MB/s\traw/data\tstored/raw\tstored/data\tphigate CPU s/GB\tpostgres\tminio\tclients\tothers\t")
		for _, client := range cfg.copyWith {
			d := r.copyFigures(client, sysDirect)
			for _, sys := range []string{sysDirect, sysPhigateOff, sysPhigateOn} {
				f := r.copyFigures(client, sys)
				on := sys == sysPhigateOn
				phi, okPhi := f.cpu[sys]
				pg, okPG := f.cpu[partPostgres]
				mi, okMi := f.cpu[partMinio]
				cl, okCl := f.cpu[partClients]
				if client == clientPgx {
					cl, okCl = f.cpu[partBench]
				}
				ot, okOt := f.cpu[partOthers]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", client, sys,
					cell(f.mbps, f.ok, "%.1f"), cell(f.mbps/d.mbps, f.ok && d.ok && d.mbps > 0, "%.2fx"),
					cell(f.shipped, f.ok && on, "%.1f"), cell(f.drain, f.ok && on, "%.2f"),
					cell(f.events, f.ok && sys != sysDirect, "%.0f"), cell(f.fsyncMS, f.ok && sys != sysDirect, "%.2f"), cell(f.raw, f.ok && on, "%.1f"),
					cell(f.rawData, f.ok && on, "%.3f"), cell(f.storedRaw, f.ok && on, "%.3f"), cell(f.storedData, f.ok && on, "%.3f"),
					cell(phi, okPhi, "%.1f"), cell(pg, okPG, "%.1f"), cell(mi, okMi, "%.1f"), cell(cl, okCl, "%.1f"), cell(ot, okOt, "%.1f"))
			}
		}
		tw.Flush()
		for _, client := range cfg.copyWith {
			off, on := r.copyFigures(client, sysPhigateOff), r.copyFigures(client, sysPhigateOn)
			if off.ok && on.ok {
				fmt.Fprintf(w, "  %s: bytes passed to write calls (files and sockets) per byte of COPY data: phigate-off %.2f, phigate-on %.2f, MinIO %.2f\n",
					client, off.writes[sysPhigateOff], on.writes[sysPhigateOn], on.writes[partMinio])
			}
		}
		fmt.Fprintln(w, "  shipped MB/s: COPY data over load and drain (until every session is indexed in the store); CPU: seconds per GB of COPY data over load and drain; clients: psql processes, or this process for pgx; others: the rest of the machine's busy time (other work on a shared machine)")
	}
	if r.put != nil || len(r.copies) > 0 {
		fmt.Fprintf(w, "\nupload to MinIO:")
		if r.put != nil {
			fmt.Fprintf(w, " direct Put of %d x %d KiB random objects, %d at a time (storage/blob, read back): %.1f MB/s;",
				r.put.Objects, r.put.Size>>10, r.put.Concurrency, r.put.MBps())
		}
		for _, client := range cfg.copyWith {
			if f := r.copyFigures(client, sysPhigateOn); f.ok {
				fmt.Fprintf(w, " node during COPY %s: %.1f MB/s stored;", client, f.upload)
			}
		}
		fmt.Fprintln(w)
	}
	for _, v := range r.verifies {
		fmt.Fprintf(w, "verify (%s store): %d sessions, %d chunks, %d digests, %.1f MB stored in %.2f s: %.1f MB/s (command %.2f s; its CPU %.2f s: %.0f MB per CPU second",
			v.Store, v.Sessions, v.Chunks, v.Digests, float64(v.Bytes)/1e6, float64(v.ElapsedMS)/1000, v.MBps(), v.Wall.Seconds(), v.CPU.Seconds(), finite(float64(v.Bytes)/1e6/v.CPU.Seconds()))
		if v.StoreCPU > 0 {
			fmt.Fprintf(w, "; MinIO's CPU %.2f s", v.StoreCPU.Seconds())
		}
		fmt.Fprintln(w, ")")
	}
	if len(r.pgbench) > 0 {
		fmt.Fprintf(w, "\npgbench, simple protocol, %d clients, %s per run; shipping on and off alternate over %d rounds, direct once\n\n", cfg.clients, cfg.duration, cfg.rounds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "workload\tdirect tps\toff tps\ton tps\ton/off\tper round\ton/direct\tevents/s\tevents/tx\tfsync ms off\ton\tcommits/s off\ton\tphigate CPU µs/tx off\ton\tMinIO\traw MB/s\tstored/raw\tdrain s\tothers+pgbench CPU\t")
		for _, wl := range cfg.workloads {
			d, off, on := r.pgbenchFigures(wl, sysDirect), r.pgbenchFigures(wl, sysPhigateOff), r.pgbenchFigures(wl, sysPhigateOn)
			var per []string
			for _, x := range r.pairedRatios(wl) {
				per = append(per, fmt.Sprintf("%.3f", x))
			}
			share, okShare := r.pgbenchOthers(wl)
			offCPU, okOffCPU := off.cpuPerTx[sysPhigateOff]
			onCPU, okOnCPU := on.cpuPerTx[sysPhigateOn]
			minioCPU, okMinioCPU := on.cpuPerTx[partMinio]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", wl,
				cell(d.tps, d.ok, "%.0f"), cell(off.tps, off.ok, "%.0f"), cell(on.tps, on.ok, "%.0f"),
				cell(on.tps/off.tps, on.ok && off.ok && off.tps > 0, "%.3f"), strings.Join(per, " "),
				cell(on.tps/d.tps, on.ok && d.ok && d.tps > 0, "%.2f"),
				cell(on.events, on.ok, "%.0f"), cell(on.eventsPerTx, on.ok, "%.1f"),
				cell(off.fsyncMS, off.ok, "%.2f"), cell(on.fsyncMS, on.ok, "%.2f"), cell(off.commits, off.ok, "%.0f"), cell(on.commits, on.ok, "%.0f"),
				cell(offCPU, okOffCPU, "%.0f"), cell(onCPU, okOnCPU, "%.0f"), cell(minioCPU, okMinioCPU, "%.0f"),
				cell(on.raw, on.ok, "%.2f"),
				cell(on.storedRaw, on.ok, "%.3f"), cell(on.drain, on.ok, "%.2f"), cell(100*share, okShare, "%.0f%%"))
		}
		tw.Flush()
	}
	if r.uploadErrors > 0 {
		fmt.Fprintf(w, "\nthe node counted %.0f failed upload attempts (retried)\n", r.uploadErrors)
	}

	fmt.Fprintf(w, "\ntargets (issue 10):\n")
	if f := r.copyFigures(clientPgx, sysPhigateOn); f.ok {
		fmt.Fprintf(w, "  recorded and shipped >= %.0f MB/s per node: %.1f MB/s with pgx (%.2f of the target), %.1f MB/s while the clients ran: %s\n",
			targetRecordMBps, f.shipped, f.shipped/targetRecordMBps, f.mbps, verdict(f.shipped >= targetRecordMBps))
	}
	if f := r.copyFigures(clientPsql, sysPhigateOn); f.ok {
		fmt.Fprintf(w, "    with psql: %.1f MB/s shipped (%.2f of the target)\n", f.shipped, f.shipped/targetRecordMBps)
	}
	for _, client := range cfg.copyWith {
		if f := r.copyFigures(client, sysPhigateOn); f.ok {
			fmt.Fprintf(w, "  stored <= %.2f of the traffic (COPY %s): %.3f of the COPY data (%.3f of the raw recording): %s\n",
				targetStoredFrac, client, f.storedData, f.storedRaw, verdict(f.storedData <= targetStoredFrac))
		}
	}
	if v, ok := r.verifyRun("s3"); ok {
		fmt.Fprintf(w, "  verify >= %.0f MB/s: %.1f MB/s from MinIO (%.2f of the target): %s", targetVerifyMBps, v.MBps(), v.MBps()/targetVerifyMBps, verdict(v.MBps() >= targetVerifyMBps))
		if f, ok := r.verifyRun("fs"); ok {
			fmt.Fprintf(w, "; %.1f MB/s from a directory", f.MBps())
		}
		fmt.Fprintln(w)
	}
	for _, wl := range cfg.workloads {
		on, off := r.pgbenchFigures(wl, sysPhigateOn), r.pgbenchFigures(wl, sysPhigateOff)
		if on.ok && off.ok && off.tps > 0 {
			x := on.tps / off.tps
			fmt.Fprintf(w, "  pgbench %s TPS shipping on within 5%% of off: on/off %.3f: %s\n", wl, x, verdict(x >= targetTPSOnOverOff))
		}
	}
	fmt.Fprintln(w)
}

// minioWhere says where MinIO's drive was.
func (r *report) minioWhere() string {
	if r.cfg.minioDir == "" {
		return "its drive in the working directory, on the nodes' disk"
	}
	return "its drive in " + r.cfg.minioDir
}

// setup says how the nodes and the store were set up, for notes.
func (r *report) setup() string {
	interval := "store.chunk_interval the default (1s)"
	if r.cfg.chunkEvery > 0 {
		interval = "store.chunk_interval " + r.cfg.chunkEvery.String()
	}
	return "MinIO with " + r.minioWhere() + "; " + interval
}

// fileDoc is one written file and what it holds, for README.md.
type fileDoc struct{ name, doc string }

// write stores one bench.Result per figure and this program's section of
// README.md.
func (r *report) write(dir string) error {
	now := time.Now().UTC()
	// An earlier run's files with other flags would pass for this run's.
	old, _ := filepath.Glob(filepath.Join(dir, "recording-*.json"))
	for _, f := range old {
		os.Remove(f)
	}
	var docs []fileDoc
	put := func(res bench.Result, doc string) error {
		if len(res.Values) == 0 {
			return nil
		}
		for k, v := range res.Values {
			res.Values[k] = finite(v)
		}
		res.Time = now
		docs = append(docs, fileDoc{res.Name + ".json", doc})
		return bench.Write(dir, res)
	}
	cfg := r.cfg
	copyNotes := func(client string) string {
		how := "pgx pgconn.CopyFrom from memory (64 KiB CopyData messages)"
		if client == clientPsql {
			how = "psql \\copy from a file (8 KiB CopyData messages)"
		}
		others := ""
		if share, ok := r.copyOthers(client); ok {
			others = fmt.Sprintf("; work other than this benchmark's used %.0f%% of the machine's CPU on average during these runs", 100*share)
		}
		return fmt.Sprintf("%d clients at once, each COPY FROM STDIN (text) of %.1f MB, %d rows of internal/synth's clinic (patients, encounters with notes, prescriptions; seed %d) into tables of its own, with %s; "+
			"mean of %d rounds, order of the systems rotated; tables truncated and a checkpoint before each; PostgreSQL fsync on; phigate records every CopyData (fsync before forwarding), masking profile on; "+
			"phigate-on ships to MinIO (bucket with object lock), phigate-off is the same binary (-tags phigate_bench) with PHIGATE_BENCH_SHIPPING=off; %s; %d CPUs shared by all",
			cfg.copyClients, float64(r.copyBytesPerClient)/1e6, r.copyRowsPerClient, synth.DefaultSeed, how, cfg.copyRounds, r.setup(), runtime.NumCPU()) + others
	}
	var (
		events     = map[string]float64{}
		raw        = map[string]float64{}
		compress   = map[string]float64{}
		drain      = map[string]float64{}
		upload     = map[string]float64{}
		cpu        = map[string]float64{}
		fsync      = map[string]float64{}
		writes     = map[string]float64{}
		txCPU      = map[string]float64{}
		copyDone   []string
		pgbenchRan []string
	)
	for _, client := range cfg.copyWith {
		d, off, on := r.copyFigures(client, sysDirect), r.copyFigures(client, sysPhigateOff), r.copyFigures(client, sysPhigateOn)
		v := map[string]float64{}
		if d.ok {
			v[sysDirect] = d.mbps
		}
		if off.ok {
			v[sysPhigateOff] = off.mbps
			if d.ok {
				v["phigate-off/direct"] = off.mbps / d.mbps
			}
		}
		if on.ok {
			v[sysPhigateOn] = on.mbps
			v["phigate-on-shipped"] = on.shipped
			v["phigate-on-shipped/target"] = on.shipped / targetRecordMBps
			if d.ok {
				v["phigate-on/direct"] = on.mbps / d.mbps
				v["phigate-on-shipped/direct"] = on.shipped / d.mbps
			}
			if off.ok {
				v["phigate-on/phigate-off"] = on.mbps / off.mbps
			}
			w := "copy-" + client
			copyDone = append(copyDone, w)
			events[w] = on.events
			raw[w] = on.raw
			raw[w+" raw/data"] = on.rawData
			compress[w+" stored/raw"] = on.storedRaw
			compress[w+" stored/data"] = on.storedData
			compress[w+" stored/data/target"] = on.storedData / targetStoredFrac
			drain[w] = on.drain
			upload["node during "+w] = on.upload
		}
		if off.ok {
			events["copy-"+client+" (shipping off)"] = off.events
			fsync["copy-"+client+" "+sysPhigateOff] = off.fsyncMS
			if v, ok := off.writes[sysPhigateOff]; ok {
				writes["copy-"+client+" "+sysPhigateOff] = v
			}
		}
		if on.ok {
			fsync["copy-"+client+" "+sysPhigateOn] = on.fsyncMS
			if v, ok := on.writes[sysPhigateOn]; ok {
				writes["copy-"+client+" "+sysPhigateOn] = v
			}
			if v, ok := on.writes[partMinio]; ok {
				writes["copy-"+client+" "+sysPhigateOn+" minio"] = v
			}
		}
		for _, f := range []struct {
			sys string
			f   copyFigures
		}{{sysDirect, d}, {sysPhigateOff, off}, {sysPhigateOn, on}} {
			for part, x := range f.f.cpu {
				name := part
				if part == f.sys {
					name = "phigate"
				}
				if client == clientPgx && part == partBench {
					name = "pgx clients"
				}
				cpu["copy-"+client+" "+f.sys+" "+name] = x
			}
		}
		if err := put(bench.Result{Name: "recording-throughput-copy-" + client, Unit: "MB/s", HigherIsBetter: true, Values: v,
			Notes: copyNotes(client) + ". MB/s: COPY data (client to server) over the time the clients ran; phigate-on-shipped: over that time and the drain, until the node's backlog was back to idle and every session indexed in the store"},
			"COPY data recorded per second by one node ("+client+"): direct, shipping off, shipping on while the clients ran and until shipped; target 100 MB/s shipped"); err != nil {
			return err
		}
	}
	for _, wl := range cfg.workloads {
		d, off, on := r.pgbenchFigures(wl, sysDirect), r.pgbenchFigures(wl, sysPhigateOff), r.pgbenchFigures(wl, sysPhigateOn)
		v := map[string]float64{}
		if d.ok {
			v[sysDirect] = d.tps
		}
		if off.ok {
			v[sysPhigateOff] = off.tps
		}
		if on.ok {
			v[sysPhigateOn] = on.tps
			if off.ok && off.tps > 0 {
				v["phigate-on/phigate-off"] = on.tps / off.tps
				paired := r.pairedRatios(wl)
				if len(paired) > 0 {
					sorted := append([]float64(nil), paired...)
					sort.Float64s(sorted)
					v["phigate-on/phigate-off min round"] = sorted[0]
					v["phigate-on/phigate-off max round"] = sorted[len(sorted)-1]
				}
			}
			if d.ok && d.tps > 0 {
				v["phigate-on/direct"] = on.tps / d.tps
			}
			w := "pgbench-" + wl
			pgbenchRan = append(pgbenchRan, w)
			events[w] = on.events
			events[w+" events/tx"] = on.eventsPerTx
			raw[w] = on.raw
			compress[w+" stored/raw"] = on.storedRaw
			drain[w] = on.drain
		}
		if off.ok && d.ok && d.tps > 0 {
			v["phigate-off/direct"] = off.tps / d.tps
		}
		if off.ok {
			events[fmt.Sprintf("pgbench-%s (shipping off)", wl)] = off.events
			fsync["pgbench-"+wl+" "+sysPhigateOff] = off.fsyncMS
		}
		if on.ok {
			fsync["pgbench-"+wl+" "+sysPhigateOn] = on.fsyncMS
		}
		for _, f := range []pgbenchFigures{off, on} {
			for part, v := range f.cpuPerTx {
				name := "pgbench-" + wl + " " + part
				if part == partMinio {
					name = "pgbench-" + wl + " " + sysPhigateOn + " minio"
				}
				txCPU[name] = v
			}
		}
		notes := fmt.Sprintf("pgbench %s -M simple -c %d -j %d -T %d -n, scale %d; phigate-on and phigate-off alternate over %d rounds (mean TPS; min/max round: on/off of each pair), direct once before them; "+
			"the same binary (-tags phigate_bench), phigate-off with PHIGATE_BENCH_SHIPPING=off; after each phigate-on run its backlog drains before the next run; recording with fsync and masking profile on; %s",
			map[string]string{"select-only": "-S", "read-write": "(TPC-B-like)"}[wl], cfg.clients, min(cfg.jobs, cfg.clients), int(cfg.duration.Seconds()), cfg.scale, cfg.rounds, r.setup())
		if share, ok := r.pgbenchOthers(wl); ok {
			notes += fmt.Sprintf("; pgbench and work other than this benchmark's used %.0f%% of the machine's %d CPUs on average during these runs", 100*share, runtime.NumCPU())
		}
		if err := put(bench.Result{Name: fmt.Sprintf("recording-pgbench-shipping-%s-c%d-tps", wl, cfg.clients), Unit: "transactions/s", HigherIsBetter: true, Values: v, Notes: notes},
			fmt.Sprintf("pgbench %s TPS, %d clients, simple protocol, shipping on against off (same binary), direct as context; target on/off >= 0.95", wl, cfg.clients)); err != nil {
			return err
		}
	}
	shared := fmt.Sprintf("phigate-on's /metrics, over each run and its drain: workloads %s", strings.Join(append(append([]string{}, copyDone...), pgbenchRan...), ", "))
	if err := put(bench.Result{Name: "recording-events", Unit: "events/s", HigherIsBetter: true, Values: events,
		Notes: shared + "; events: phigate_spool_commit_frames_sum (frames made durable) per second the clients ran; events/tx per pgbench transaction; (shipping off) from phigate-off's"},
		"recording events made durable per second, by workload"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "recording-raw-throughput", Unit: "MB/s", HigherIsBetter: true, Values: raw,
		Notes: shared + "; phigate_ship_raw_bytes_total (recorded frames sealed into chunks) per second the clients ran; raw/data: recorded bytes per byte of COPY data (the events' JSON carries COPY data in base64)"},
		"recorded (raw, before compression) bytes per second with shipping on, by workload"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "recording-compression", Unit: "fraction", Values: compress,
		Notes: shared + "; stored: phigate_ship_stored_bytes_total (chunks: zstd, AES-256-GCM, headers; and their signed manifests); raw: phigate_ship_raw_bytes_total; data: the COPY data sent; target stored/data <= 0.25"},
		"stored size as a fraction of the raw recording and of the COPY data; target 0.25 of the traffic"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "recording-drain", Unit: "s", Values: drain,
		Notes: shared + fmt.Sprintf("; from the clients' end until phigate_ship_sessions_indexed_total counted every session of the run, no session is active and phigate_ship_backlog_bytes is back to idle; polled every %v", drainPoll)},
		"time from the end of a workload until everything it recorded is confirmed by the store"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "recording-pgbench-cpu", Unit: "CPU µs per transaction", Values: txCPU,
		Notes: "user+system CPU time (/proc/PID/stat) of the node, and of MinIO with shipping on, over each pgbench run (and its drain), per transaction, weighted over the rounds: what shipping adds per transaction, less sensitive to the machine's other load than TPS"},
		"CPU time per pgbench transaction of the node with shipping on and off, and of MinIO"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "recording-fsync", Unit: "ms", Values: fsync,
		Notes: "the nodes' /metrics: phigate_spool_fsync_seconds_sum over phigate_spool_commit_frames_count (group commits) during each run: the mean fdatasync of the recording journal, which every recorded command waits for; the shipper's own fsyncs (segments, ledger) and MinIO's writes share the disk with it when shipping is on"},
		"mean fdatasync of the recording journal per group commit, shipping on and off"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "recording-writes", Unit: "bytes written per byte of COPY data", Values: writes,
		Notes: "wchar of /proc/PID/io (bytes passed to write system calls, files and sockets alike) over each COPY run and its drain, per byte of COPY data, weighted over the rounds. The node's: the COPY data forwarded to PostgreSQL (1), the recording written to the journal and again to its session file (each raw/data), and with shipping the sealed segments and the uploads to MinIO; MinIO's (" + r.minioWhere() + "): its drive and its answers. write_bytes is not used: on this kernel (large folios) it counts a whole folio each time an append after an fdatasync dirties it again"},
		"bytes the node and MinIO write (files and sockets) per byte of COPY data"); err != nil {
		return err
	}
	if r.put != nil {
		upload[fmt.Sprintf("direct Put %d KiB x%d", r.put.Size>>10, r.put.Concurrency)] = r.put.MBps()
	}
	if err := put(bench.Result{Name: "recording-upload", Unit: "MB/s", HigherIsBetter: true, Values: upload,
		Notes: "node during copy-*: phigate_ship_stored_bytes_total per second of load and drain (the store confirmed them by the drain's end); direct Put: random objects put into a bucket with object lock through storage/blob (the node's client settings, 6-year GOVERNANCE retention, If-None-Match, read back), as the node's 8 uploaders do, MB/s of object bytes"},
		"upload to MinIO: what the node stored per second during the COPY runs, and a direct Put of 1 MiB objects"); err != nil {
		return err
	}
	verify := map[string]float64{}
	for _, v := range r.verifies {
		verify[v.Store] = v.MBps()
		verify[v.Store+"/target"] = v.MBps() / targetVerifyMBps
		verify[v.Store+" command"] = finite(float64(v.Bytes) / 1e6 / v.Wall.Seconds())
		if v.CPU > 0 {
			verify[v.Store+" per verifier CPU second"] = finite(float64(v.Bytes) / 1e6 / v.CPU.Seconds())
		}
		if v.StoreCPU > 0 {
			verify[v.Store+" per verifier and MinIO CPU second"] = finite(float64(v.Bytes) / 1e6 / (v.CPU + v.StoreCPU).Seconds())
		}
		if r.shippedStored > 0 && v.ElapsedMS > 0 {
			verify[v.Store+" raw-equivalent"] = finite(r.shippedRaw * float64(v.Bytes) / r.shippedStored / 1e6 / (float64(v.ElapsedMS) / 1000))
		}
	}
	if v, ok := r.verifyRun("s3"); ok {
		if err := put(bench.Result{Name: "recording-verify", Unit: "MB/s", HigherIsBetter: true, Values: verify,
			Notes: fmt.Sprintf("phigate audit verify --json (%s) over everything phigate-on shipped in the run (%d sessions, %d chunks, %d manifests, %d digests, %.1f MB of chunks), keys from the node's API; "+
				"MB/s of stored chunk bytes over the report's elapsed time; command: over the command's wall time; per CPU second: over the command's user+system time (and MinIO's while it ran); raw-equivalent: the recorded bytes those chunks hold per second; "+
				"fs: the same objects copied into a directory store; MinIO and the verifier share %d CPUs", filepath.Base(r.verifyBin), v.Sessions, v.Chunks, v.Manifests, v.Digests, float64(v.Bytes)/1e6, runtime.NumCPU())},
			"verification speed of audit verify over the run's recordings, in MinIO and in a directory; target 500 MB/s"); err != nil {
			return err
		}
	}
	if err := put(bench.Result{Name: "recording-cpu", Unit: "CPU s per GB of COPY data", Values: cpu,
		Notes: "user+system CPU time over each COPY run and its drain (/proc/PID/stat: phigate's process, PostgreSQL's postmaster and its children, live and reaped, MinIO's process, this process for pgx clients, the psql processes), per GB of COPY data, weighted over the rounds"},
		"where the CPU goes while recording COPY data: per part and system"); err != nil {
		return err
	}
	return harness.WriteReadmeSection(dir, readmeBegin, readmeEnd, r.readmeSection(docs))
}

// The markers of this program's section in bench/results/README.md, which
// another program (bench/pg) writes.
const (
	readmeBegin = "<!-- bench/recording: begin (written by go run ./bench/recording) -->"
	readmeEnd   = "<!-- bench/recording: end -->"
)

func (r *report) readmeSection(docs []fileDoc) string {
	sort.Slice(docs, func(i, j int) bool { return docs[i].name < docs[j].name })
	var b strings.Builder
	b.WriteString(readmeBegin + "\n")
	b.WriteString(`## Recording and shipping (bench/recording)

` + "`recording-*.json`" + ` come from ` + "`go run ./bench/recording --phigate bin/phigate --results bench/results`" + `
(in ` + "`make bench`" + `): what recording every session and shipping it to object storage
cost, in one run, against a real PostgreSQL (fsync on) and a real MinIO (bucket
with object lock). The systems: ` + "`direct`" + ` (straight to PostgreSQL), ` + "`phigate-off`" + `
(recording to the spool with fsync, shipping turned off: the same binary built
with ` + "`-tags phigate_bench`" + ` and ` + "`PHIGATE_BENCH_SHIPPING=off`" + `) and ` + "`phigate-on`" + `
(recording and shipping to MinIO). The workloads: COPY FROM STDIN of the
synthetic clinic (internal/synth) by several clients at once with pgx (64 KiB
CopyData messages) and psql (8 KiB), whose data phigate records whole, and
pgbench. "Shipped" figures count until the node's backlog has drained: every
session indexed in the store. The nodes' own figures come from their
` + "`/metrics`" + `; CPU time from ` + "`/proc`" + `.

Targets (issue 10): at least 100 MB/s of traffic recorded and shipped per node;
stored recordings at most a quarter of the traffic; verification at least
500 MB/s; pgbench TPS with shipping on within 5% of shipping off.

`)
	fmt.Fprintf(&b, "Last run: %s, %s/%s, %d CPUs, %v; %s.\n\n", r.started.Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.elapsed.Round(time.Second), r.setup())
	b.WriteString("| file | what it measures |\n| --- | --- |\n")
	for _, d := range docs {
		fmt.Fprintf(&b, "| `%s` | %s |\n", d.name, d.doc)
	}
	b.WriteString(readmeEnd + "\n")
	return b.String()
}
