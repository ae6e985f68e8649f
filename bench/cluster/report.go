package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

func numCPU() int { return runtime.NumCPU() }

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

// report gathers a run's figures, prints them and writes them as JSON.
type report struct {
	cfg     config
	props   []*propagation
	logins  *loginCost
	joins   []joinRun
	pgbench *pgbenchResult
	// loadStart and loadEnd are the load averages when the run started
	// and ended.
	loadStart, loadEnd string
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\ncluster benchmark: three phigate nodes on loopback, %d CPUs; load average %s at the start, %s at the end\n", numCPU(), r.loadStart, r.loadEnd)
	if lc := r.logins; lc != nil && len(lc.ok) > 0 {
		fmt.Fprintf(w, "\nlogin cost, idle cluster, one at a time (p50 / max):\n")
		for _, k := range lc.figures() {
			s := sorted(k.d)
			fmt.Fprintf(w, "  %-22s %7.1f ms / %7.1f ms\n", k.name, msf(median(s)), msf(s[len(s)-1]))
		}
	}
	for _, p := range r.props {
		if p == nil || len(p.all) == 0 {
			continue
		}
		all, lower, apply := sorted(p.all), sorted(p.allLower), sorted(p.apply)
		fmt.Fprintf(w, "\npolicy propagation (%s), %d revisions applied on n1, apply sent -> %s:\n", p.by, len(p.all), seenBy[p.by])
		line := func(label string, s []time.Duration) {
			fmt.Fprintf(w, "  %-14s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", label, msf(harness.Percentile(s, 50)), msf(harness.Percentile(s, 99)), msf(s[len(s)-1]))
		}
		line("all nodes", all)
		line("(lower bound)", lower)
		for k, d := range p.perNode {
			line(fmt.Sprintf("n%d", k+1), sorted(d))
		}
		line("apply answer", apply)
		if a := sorted(p.failedAttempts); len(a) > 0 {
			fmt.Fprintf(w, "  an unsuccessful probe attempt took p50 %.2f ms (%d attempts); the probe retries every %v\n", msf(harness.Percentile(a, 50)), len(a), probeGap)
		}
	}
	if len(r.joins) > 0 {
		both, ready, login := r.joinSorted()
		fmt.Fprintf(w, "\njoin-to-ready, %d joins of a fourth node (fresh data dir): median %.0f ms, max %.0f ms (readyz median %.0f ms, login median %.0f ms)\n",
			len(r.joins), msf(median(both)), msf(both[len(both)-1]), msf(median(ready)), msf(median(login)))
	}
	if pb := r.pgbench; pb != nil {
		fmt.Fprintf(w, "\npgbench select-only, %d clients: %s\n", r.cfg.clients, pb.notes)
		for _, name := range pb.order {
			sr := pb.runs[name]
			if len(sr.tps) == 0 {
				fmt.Fprintf(w, "  %-16s -\n", name)
				continue
			}
			fmt.Fprintf(w, "  %-16s tps %8.1f  p50 %6.3f ms  p99 %6.3f ms  rounds %v  failed %d\n", name, sr.meanTPS(),
				float64(harness.Percentile(sr.lat, 50))/1000, float64(harness.Percentile(sr.lat, 99))/1000, sr.tps, sr.failed)
		}
		for _, k := range pgbenchRatios {
			if v, ok := r.ratio(k[0], k[1]); ok {
				fmt.Fprintf(w, "  %s/%s = %.2fx\n", k[0], k[1], v)
			}
		}
	}
	fmt.Fprintln(w)
}

// median is the lower median (nearest rank 50) of sorted.
func median(s []time.Duration) time.Duration { return harness.Percentile(s, 50) }

func (r *report) joinSorted() (both, ready, login []time.Duration) {
	for _, j := range r.joins {
		both, ready, login = append(both, j.both()), append(ready, j.ready), append(login, j.login)
	}
	return sorted(both), sorted(ready), sorted(login)
}

type namedDurations struct {
	name string
	d    []time.Duration
}

func (lc *loginCost) figures() []namedDurations {
	return []namedDurations{
		{"ok", lc.ok}, {"ok-to-ask", lc.toAsk}, {"ok-to-authok", lc.toAuthOK}, {"ok-to-ready", lc.toReady},
		{"refused", lc.refused}, {"direct", lc.direct},
	}
}

// seenBy says what a propagation pass waits for.
var seenBy = map[string]string{
	byGauge: "phigate_policy_revision in /metrics",
	byLogin: "a login with the new token succeeds",
}

var pgbenchRatios = [][2]string{
	{"three-nodes", "one-node"},
	{"three-nodes", "direct"},
	{"one-node", "direct"},
	{"three-nodes", "one-node-3procs"},
}

func (r *report) ratio(a, b string) (float64, bool) {
	ra, rb := r.pgbench.runs[a], r.pgbench.runs[b]
	if ra == nil || rb == nil || len(ra.tps) == 0 || len(rb.tps) == 0 || rb.meanTPS() == 0 {
		return 0, false
	}
	return ra.meanTPS() / rb.meanTPS(), true
}

// write stores one bench.Result per figure as dir/cluster-*.json.
func (r *report) write(dir string) error {
	// Files of an earlier run with other flags would be mistaken for this
	// run's; remove ours only (the directory is shared).
	old, _ := filepath.Glob(filepath.Join(dir, "cluster-*.json"))
	for _, f := range old {
		os.Remove(f)
	}
	now := time.Now().UTC()
	put := func(res bench.Result) error {
		if len(res.Values) == 0 {
			return nil
		}
		res.Time = now
		res.Notes += fmt.Sprintf(". Load average (1, 5, 15 min) at the start of the run %s, at its end %s", r.loadStart, r.loadEnd)
		return bench.Write(dir, res)
	}
	for _, p := range r.props {
		if p == nil || len(p.all) == 0 {
			continue
		}
		v := map[string]float64{"revisions": float64(len(p.all))}
		add := func(prefix string, d []time.Duration) {
			s := sorted(d)
			v[prefix+"p50"] = msf(harness.Percentile(s, 50))
			v[prefix+"p99"] = msf(harness.Percentile(s, 99))
			v[prefix+"max"] = msf(s[len(s)-1])
		}
		add("", p.all)
		add("lower-bound-", p.allLower)
		for k, d := range p.perNode {
			add(fmt.Sprintf("n%d-", k+1), d)
		}
		add("apply-answer-", p.apply)
		if a := sorted(p.failedAttempts); len(a) > 0 {
			v["failed-attempt-p50"] = msf(harness.Percentile(a, 50))
		}
		name, how := "cluster-policy-propagation", "GET /metrics on each node shows phigate_policy_revision at or above the revision "+
			"(the node sets it right after publishing the revision's snapshot, which every new login and command reads)"
		if p.by == byLogin {
			name, how = "cluster-policy-propagation-login", "a PostgreSQL login with the new token succeeds on each node: the effect itself, "+
				"but each attempt is costly (a refused login is recorded durably; a successful one opens an upstream session and its recording), see cluster-login-cost"
		}
		if err := put(bench.Result{Name: name, Unit: "ms", Values: v,
			Notes: fmt.Sprintf("%d successive policy revisions applied on n1 (POST /admin/v1/policy, each replacing the token of the identity %q, as an operator's policy get/edit/apply would); "+
				"per revision, the time from sending the apply until %s. Each node's probe tries every %v; p50/p99/max are over the revisions, of the slowest of n1, n2, n3, "+
				"counted to the end of the successful attempt (an upper bound); lower-bound- counts to the start of that node's last unsuccessful attempt; nX-: per node. "+
				"apply-answer- is the apply's round trip (n1 answers once it enforces the revision itself). Three nodes, PostgreSQL and the probes on one machine, %d CPUs, loopback",
				len(p.all), probeName, how, probeGap, numCPU())}); err != nil {
			return err
		}
	}
	if lc := r.logins; lc != nil && len(lc.ok) > 0 {
		v := map[string]float64{}
		for _, k := range lc.figures() {
			s := sorted(k.d)
			v[k.name+"-p50"], v[k.name+"-max"] = msf(median(s)), msf(s[len(s)-1])
		}
		if err := put(bench.Result{Name: "cluster-login-cost", Unit: "ms", Values: v,
			Notes: fmt.Sprintf("context for cluster-policy-propagation-login, not a comparison: %d PostgreSQL logins through n1 of the idle three-node cluster, "+
				"one at a time, over loopback without TLS: ok- with a valid token (upstream SCRAM login, session recorded), spoken by hand to time its phases: "+
				"ok-to-ask- TCP connect and startup until the node asks for the token, ok-to-authok- the token until AuthenticationOk, ok-to-ready- from there to ReadyForQuery; "+
				"refused- with a wrong token (pgconn; the refusal is recorded before it is sent); direct- a pgconn SCRAM login straight to PostgreSQL, the baseline", len(lc.ok))}); err != nil {
			return err
		}
	}
	if len(r.joins) > 0 {
		both, ready, login := r.joinSorted()
		v := map[string]float64{
			"median":         msf(median(both)),
			"max":            msf(both[len(both)-1]),
			"readyz-median":  msf(median(ready)),
			"readyz-max":     msf(ready[len(ready)-1]),
			"login-median":   msf(median(login)),
			"login-max":      msf(login[len(login)-1]),
			"joins":          float64(len(r.joins)),
			"leave-failures": 0,
		}
		for i, j := range r.joins {
			v[fmt.Sprintf("join%d", i+1)] = msf(j.both())
			if j.leaveFailed {
				v["leave-failures"]++
			}
		}
		if err := put(bench.Result{Name: "cluster-join-to-ready", Unit: "ms", Values: v,
			Notes: fmt.Sprintf("%d times: a fourth node with a fresh data directory started with phigate node --join (n1's cluster API) and a fresh join token "+
				"into a running three-node cluster left alone for %v before (etcd defers a member change within 5 s of the last one; the pause is not counted, a deferral that happens all the same is); from the process start until its /readyz answers 200 (readyz-) and until a PostgreSQL login "+
				"through it succeeds (login-), both tried every %v; median/max/joinN: when both hold. The node then leaves (POST /admin/v1/cluster/leave; leave-failures counts those that did not answer 200 within 30 s, after which the node was stopped and removed through n1). %d CPUs, loopback",
				len(r.joins), joinSettle, joinPoll, numCPU())}); err != nil {
			return err
		}
	}
	if pb := r.pgbench; pb != nil {
		tps, p50, p99 := map[string]float64{}, map[string]float64{}, map[string]float64{}
		for name, sr := range pb.runs {
			if len(sr.tps) == 0 {
				continue
			}
			tps[name] = sr.meanTPS()
			p50[name] = float64(harness.Percentile(sr.lat, 50)) / 1000
			p99[name] = float64(harness.Percentile(sr.lat, 99)) / 1000
		}
		for _, k := range pgbenchRatios {
			if v, ok := r.ratio(k[0], k[1]); ok {
				tps[k[0]+"/"+k[1]] = v
			}
		}
		base := fmt.Sprintf("cluster-pgbench-select-only-%s-c%d", r.cfg.mode, r.cfg.clients)
		for _, res := range []bench.Result{
			{Name: base + "-tps", Unit: "transactions/s", HigherIsBetter: true, Values: tps, Notes: pb.notes},
			{Name: base + "-p50", Unit: "ms", Values: p50, Notes: "median transaction latency from the merged --log files; " + pb.notes},
			{Name: base + "-p99", Unit: "ms", Values: p99, Notes: "99th percentile transaction latency from the merged --log files; " + pb.notes},
		} {
			if err := put(res); err != nil {
				return err
			}
		}
	}
	return nil
}
