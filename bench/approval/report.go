package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

// resultName is the file the run writes under -results (.json).
const resultName = "approval"

// loadavg is /proc/loadavg's three load averages, or "?": the machine may
// be shared, and a figure taken under load must say so.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// report gathers a run's figures, prints them and writes them.
type report struct {
	cfg                    config
	started                time.Time
	elapsed                time.Duration
	loadStart, loadEnd     string
	leader                 string
	rt                     *roundTrips
	probeCommit, probeSeen []time.Duration
	pgbench                []*ruleCost
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func pct(d []time.Duration, p float64) float64 { return msf(harness.Percentile(sorted(d), p)) }

func maxOf(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	return msf(slices.Max(d))
}

// spread is the mean, the smallest, the largest and the standard deviation
// of v.
func spread(v []float64) (mean, lo, hi, sd float64) {
	if len(v) == 0 {
		return 0, 0, 0, 0
	}
	lo, hi = slices.Min(v), slices.Max(v)
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	if len(v) > 1 {
		sd = math.Sqrt(sd / float64(len(v)-1))
	}
	return mean, lo, hi, sd
}

// column picks one time of each round trip.
func (rt *roundTrips) column(f func(roundTrip) time.Duration) []time.Duration {
	out := make([]time.Duration, len(rt.all))
	for i, r := range rt.all {
		out[i] = f(r)
	}
	return out
}

// decisionToReturn is from the decision being written on n2 (the vote's
// transaction next) to the agent's DELETE returning on n1.
func decisionToReturn(r roundTrip) time.Duration { return r.toApproved + r.toUse + r.toReturn }

// resumed estimates when the held command was forwarded: the decision to
// its return, less the median of the same DELETE run unheld through n1.
func (rt *roundTrips) resumed() []time.Duration {
	run := time.Duration(pct(rt.bounded, 50) * float64(time.Millisecond))
	out := rt.column(decisionToReturn)
	for i := range out {
		out[i] -= run
	}
	return out
}

// steps are the round trip's parts, in order, with what each holds.
var steps = []struct {
	key, label string
	of         func(roundTrip) time.Duration
}{
	{"step-to-vote", "POST -> vote read done (HTTP, auth, vote recorded, read)", func(r roundTrip) time.Duration { return r.toVote }},
	{"step-vote-to-seen", "-> vote txn, approved seen by a watch on n1", func(r roundTrip) time.Duration { return r.toApproved }},
	{"step-seen-to-use", "-> session woken, Use's read done", func(r roundTrip) time.Duration { return r.toUse }},
	{"step-use-to-return", "-> Use txn, decision recorded, DELETE run, returned", func(r roundTrip) time.Duration { return r.toReturn }},
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\napproval benchmark: three in-process phigate nodes on loopback, %d CPUs, etcd leader %s; load average %s at the start, %s at the end\n",
		runtime.NumCPU(), r.leader, r.loadStart, r.loadEnd)
	if rt := r.rt; rt != nil && len(rt.all) > 0 {
		fmt.Fprintf(w, "\napproval round trip, %d approvals: DELETE held on n1, approved through n2 %v after the notice (ms)\n", len(rt.all), r.cfg.approverDelay)
		fmt.Fprintf(w, "  %-58s %7s %7s %7s %7s\n", "", "p50", "p90", "p99", "max")
		row := func(label string, d []time.Duration) {
			fmt.Fprintf(w, "  %-58s %7.2f %7.2f %7.2f %7.2f\n", label, pct(d, 50), pct(d, 90), pct(d, 99), maxOf(d))
		}
		row("POST sent -> DELETE returned", rt.column(func(r roundTrip) time.Duration { return r.postToReturn }))
		row("POST answered -> DELETE returned", rt.column(func(r roundTrip) time.Duration { return r.respToReturn }))
		row("POST sent -> POST answered", rt.column(func(r roundTrip) time.Duration { return r.postToResp }))
		row("decision written on n2 -> DELETE returned on n1", rt.column(decisionToReturn))
		row("decision written on n2 -> resumed on n1 (less unheld DELETE)", rt.resumed())
		fmt.Fprintln(w, "  steps:")
		for _, s := range steps {
			row("  "+s.label, rt.column(s.of))
		}
		fmt.Fprintln(w, "  context:")
		if len(r.probeSeen) > 0 {
			row("  etcd txn through n2 -> seen by a watch on n1", r.probeSeen)
			row("  etcd txn through n2 -> its answer", r.probeCommit)
		}
		row("  the DELETE bounded (no rule) through n1", rt.bounded)
		row("  the DELETE direct", rt.direct)
		row("  disk: 4 KiB write + fdatasync, before and after", rt.disk)
		for i := range rt.fsyncCount {
			fmt.Fprintf(w, "    n%d journal fdatasync: %.1f per approval, mean %.2f ms\n", i+1, rt.fsyncCount[i], msf(rt.fsyncMean[i]))
		}
	}
	for _, pb := range r.pgbench {
		fmt.Fprintf(w, "\napproval rules on commands they do not match: pgbench %s -M %s, %d clients, %d rounds x %v, through n1\n",
			pb.workload, r.cfg.mode, r.cfg.clients, r.cfg.rounds, r.cfg.duration)
		for _, s := range systems {
			sr := pb.runs[s]
			tps, _, _, _ := spread(sr.ranOnly(sr.tps))
			fmt.Fprintf(w, "  %-7s tps %8.1f  p50 %6.3f ms  p99 %6.3f ms  failed %d\n", s, tps,
				float64(harness.Percentile(sr.lat, 50))/1000, float64(harness.Percentile(sr.lat, 99))/1000, sr.failed)
		}
		for _, k := range [][3]string{{sysRuled, sysPlain, "tps"}, {sysRuled, sysPlain, "p50"}, {sysRuled, sysPlain, "p99"}, {sysPlain, sysDirect, "tps"}} {
			mean, lo, hi, sd := spread(pb.ratios(k[0], k[1], figureOf[k[2]]))
			fmt.Fprintf(w, "  %s/%s %-3s %.3f  (rounds %.3f..%.3f, sd %.3f)\n", k[0], k[1], k[2], mean, lo, hi, sd)
		}
	}
	fmt.Fprintln(w)
}

var figureOf = map[string]func(*systemRun) []float64{"tps": tpsOf, "p50": p50Of, "p99": p99Of}

// write stores the run as dir/approval.json and its section of README.md.
func (r *report) write(dir string) error {
	v := map[string]float64{}
	var notes []string
	put4 := func(prefix string, d []time.Duration) {
		v[prefix+"-p50"], v[prefix+"-p90"], v[prefix+"-p99"], v[prefix+"-max"] = pct(d, 50), pct(d, 90), pct(d, 99), maxOf(d)
	}
	put2 := func(prefix string, d []time.Duration) {
		v[prefix+"-p50"], v[prefix+"-p99"] = pct(d, 50), pct(d, 99)
	}
	if rt := r.rt; rt != nil && len(rt.all) > 0 {
		v["approvals"] = float64(len(rt.all))
		put4("roundtrip", rt.column(func(r roundTrip) time.Duration { return r.postToReturn }))
		put4("after-answer", rt.column(func(r roundTrip) time.Duration { return r.respToReturn }))
		put2("post-answer", rt.column(func(r roundTrip) time.Duration { return r.postToResp }))
		put4("decision-to-return", rt.column(decisionToReturn))
		put4("decision-to-resume", rt.resumed())
		for _, s := range steps {
			put2(s.key, rt.column(s.of))
		}
		put2("delete-bounded-through-n1", rt.bounded)
		put2("delete-direct", rt.direct)
		put2("disk-fdatasync", rt.disk)
		for i := range rt.fsyncCount {
			v[fmt.Sprintf("fsyncs-per-approval-n%d", i+1)] = rt.fsyncCount[i]
			v[fmt.Sprintf("fsync-mean-n%d", i+1)] = msf(rt.fsyncMean[i])
		}
		notes = append(notes, fmt.Sprintf("Approval round trip (ms): %d times after 5 not counted, an agent's DELETE FROM %s (one row; pgx, simple protocol) through n1 under a grant whose rule "+
			"{when: [unbounded-write], approvers: [dba], mode: hold} holds it; %v after the agent's notice names the request, the approver's POST /v1/approvals/{id}/approve "+
			"(HTTPS, kept-alive connection) through n2. roundtrip-: POST sent -> the agent's DELETE returned (target p99 < 10 ms); after-answer-: POST answered -> DELETE returned "+
			"(negative: the DELETE returned first); post-answer-: the POST's own round trip. decision-to-return-: the vote's transaction about to be written on n2 -> DELETE returned on n1; "+
			"decision-to-resume-: the same less the median of the DELETE unheld through n1 (delete-bounded-through-n1-p50): when the held command went on. step-*: the round trip cut by the request's own times and a watch through n1's member: "+
			"step-to-vote: POST sent -> the vote's read done (Votes[0].At); step-vote-to-seen: -> the decision seen by the watch on n1; step-seen-to-use: -> the session's Use read done "+
			"(Decision.UsedAt); step-use-to-return: -> DELETE returned. delete-bounded-through-n1: the same DELETE with WHERE id = 1 (no rule) through n1; delete-direct: on PostgreSQL. disk-fdatasync-: 4 KiB write + fdatasync in the working directory, 100 times before and 100 after the round trips. "+
			"fsyncs-per-approval-nX and fsync-mean-nX: the node's recording journal fdatasyncs during the round trips (its /metrics), per approval, and their mean in ms. etcd leader %s",
			len(rt.all), heldTable, r.cfg.approverDelay, r.leader))
	}
	if len(r.probeSeen) > 0 {
		put4("etcd-txn-to-watch", r.probeSeen)
		put2("etcd-txn-answer", r.probeCommit)
		v["probes"] = float64(len(r.probeSeen))
		notes = append(notes, fmt.Sprintf("etcd-txn-to-watch- (ms): %d times after 5 not counted, a transaction through n2's member (compare a key's ModRevision, put it), "+
			"until a watch through n1's member, opened before, delivers the put (cluster.Approvals.TxnToWatch, the clients the approvals use); etcd-txn-answer-: until the transaction's answer",
			len(r.probeSeen)))
	}
	for _, pb := range r.pgbench {
		w := pb.workload
		for _, s := range systems {
			sr := pb.runs[s]
			tps, lo, hi, _ := spread(sr.ranOnly(sr.tps))
			v[w+"-"+s+"-tps"], v[w+"-"+s+"-tps-min"], v[w+"-"+s+"-tps-max"] = tps, lo, hi
			v[w+"-"+s+"-p50"] = float64(harness.Percentile(sr.lat, 50)) / 1000
			v[w+"-"+s+"-p99"] = float64(harness.Percentile(sr.lat, 99)) / 1000
		}
		for _, k := range [][3]string{{sysRuled, sysPlain, "tps"}, {sysRuled, sysPlain, "p50"}, {sysRuled, sysPlain, "p99"}, {sysPlain, sysDirect, "tps"}, {sysRuled, sysDirect, "tps"}} {
			mean, lo, hi, sd := spread(pb.ratios(k[0], k[1], figureOf[k[2]]))
			key := fmt.Sprintf("%s-%s/%s-%s", w, k[0], k[1], k[2])
			v[key], v[key+"-min"], v[key+"-max"], v[key+"-sd"] = mean, lo, hi, sd
		}
	}
	if len(r.pgbench) > 0 {
		notes = append(notes, fmt.Sprintf("Rule cost: pgbench -M %s -n -c %d -j %d -T %d, scale %d, %d rounds (order of direct, plain, ruled rotated each round) after a %v warm-up of each; "+
			"plain: through n1 as an identity whose grant allows all with no approval rules; ruled: the same grant with the rules "+
			"{when: [ddl, truncate, unbounded-write, privilege, dangerous-function, unclassified]} and {when: [table-write], tables: [%s]} (fail-fast: a match would fail the run); "+
			"direct: PostgreSQL. <workload>-<system>-tps: mean TPS over the rounds (-min, -max); -p50/-p99: latency in ms from the merged per-transaction logs; "+
			"<a>/<b>-tps, -p50, -p99: the mean of the per-round ratios, with -min, -max and -sd over the rounds",
			r.cfg.mode, r.cfg.clients, min(2, r.cfg.clients), int(r.cfg.duration.Seconds()), r.cfg.scale, r.cfg.rounds, r.cfg.warmup, auditTable))
	}
	if len(v) == 0 {
		return nil
	}
	notes = append(notes, fmt.Sprintf("Three phigate nodes in the benchmark's process (recording with fsync, shipping to a directory), PostgreSQL (fsync on) and the clients on one machine, %d CPUs, loopback. "+
		"Load average (1, 5, 15 min) at the start of the run %s, at its end %s", runtime.NumCPU(), r.loadStart, r.loadEnd))
	if err := bench.Write(dir, bench.Result{Name: resultName, Unit: "ms (tps: transactions/s; x/y: ratios; counts as named)", Values: v,
		Notes: strings.Join(notes, ". "), Time: time.Now().UTC()}); err != nil {
		return err
	}
	return harness.WriteReadmeSection(dir, readmeBegin, readmeEnd, r.readmeSection())
}

// The markers of this program's section in bench/results/README.md, which
// another program (bench/pg) writes.
const (
	readmeBegin = "<!-- bench/approval: begin (written by go run ./bench/approval) -->"
	readmeEnd   = "<!-- bench/approval: end -->"
)

func (r *report) readmeSection() string {
	var b strings.Builder
	b.WriteString(readmeBegin + "\n")
	b.WriteString(`## Just-in-time approvals (bench/approval)

` + "`approval.json`" + ` comes from ` + "`go run ./bench/approval --results bench/results`" + ` (in
` + "`make bench`" + `): on one cluster of three nodes (in the benchmark's process, so that
the cluster-state probe can use the nodes' own etcd clients), the time from an
approver's POST through node 2 until the agent's held command returns on node 1
(` + "`roundtrip-*`" + `, cut into steps: ` + "`step-*`" + `), the cluster state's own transaction-to-watch
time between the same two members (` + "`etcd-txn-to-watch-*`" + `), and what approval
rules cost commands that need no approval: pgbench through node 1 under a grant
without rules (` + "`plain`" + `), the same grant with rules that match nothing pgbench sends
(` + "`ruled`" + `), and direct, the order rotating between rounds. Its ` + "`notes`" + ` say exactly what ran.

Target: round trip p99 under 10 ms; ruled/plain TPS at 1.

`)
	fmt.Fprintf(&b, "Last run: %s, %s/%s, %d CPUs, %v.\n", r.started.UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.elapsed.Round(time.Second))
	b.WriteString(readmeEnd + "\n")
	return b.String()
}
