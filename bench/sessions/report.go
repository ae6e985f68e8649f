package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

// report gathers a run's figures, prints them and writes them.
type report struct {
	cfg     config
	started time.Time
	elapsed time.Duration
	limits  limits
	// loadStart and loadEnd are /proc/loadavg's 1, 5 and 15 minute load.
	loadStart, loadEnd string
	legs               map[string]*leg
	profile            *profileResult
}

// legsInOrder are the legs that ran, in the order of -systems.
func (r *report) legsInOrder() []*leg {
	var out []*leg
	for _, name := range r.cfg.systems {
		if l := r.legs[name]; l != nil {
			out = append(out, l)
		}
	}
	return out
}

// full is the last step l held in full (nil: none).
func (l *leg) full() *step {
	for i := len(l.steps) - 1; i >= 0; i-- {
		if s := &l.steps[i]; s.held >= s.want {
			return s
		}
	}
	return nil
}

// most is the most sessions l held at once.
func (l *leg) most() int {
	n := 0
	for _, s := range l.steps {
		n = max(n, s.held)
	}
	return n
}

// rows are l's steps, and the churn step last, each with its label.
func (l *leg) rows() ([]*step, []string) {
	var steps []*step
	var labels []string
	for i := range l.steps {
		steps = append(steps, &l.steps[i])
		labels = append(labels, l.system)
	}
	if l.churn != nil {
		steps = append(steps, l.churn)
		labels = append(labels, l.system+" again")
	}
	return steps, labels
}

// goMemory is s's Go heap in use and goroutine stacks above the
// baseline, per session (phigate).
func (l *leg) goMemory(s *step) (float64, bool) {
	if s.use.metrics == nil || l.baseline.metrics == nil {
		return 0, false
	}
	d := s.use.metrics[mHeapInuse] + s.use.metrics[mStack] - l.baseline.metrics[mHeapInuse] - l.baseline.metrics[mStack]
	return d / float64(max(s.held, 1)), true
}

// logins are every login of l's steps.
func (l *leg) logins() []time.Duration {
	var all []time.Duration
	for _, s := range l.steps {
		all = append(all, s.open.login...)
	}
	return all
}

// perSession is s's RSS above the leg's baseline, per session held.
func (l *leg) perSession(s *step) float64 {
	return float64(s.use.rss-l.baseline.rss) / float64(max(s.held, 1))
}

// goroutines is s's goroutines above the baseline, per session (phigate).
func (l *leg) goroutines(s *step) (float64, bool) {
	if s.use.metrics == nil || l.baseline.metrics == nil {
		return 0, false
	}
	return (s.use.metrics[mGoroutines] - l.baseline.metrics[mGoroutines]) / float64(max(s.held, 1)), true
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nbench/sessions, %s; %s\n\n", r.limits, r.setup())
	fmt.Fprintf(w, "%-20s %8s %10s %12s %11s %7s %12s %12s %12s\n", "system", "sessions", "RSS MiB", "KiB/session", "goroutines", "fds", "login p50", "login p99", "active p99")
	for _, l := range r.legsInOrder() {
		steps, labels := l.rows()
		for i, s := range steps {
			if s.use.rss == 0 {
				fmt.Fprintf(w, "%-20s %8d (lost: the process exited)\n", labels[i], s.held)
				continue
			}
			g := "-"
			if v, ok := l.goroutines(s); ok {
				g = fmt.Sprintf("%.2f", v)
			}
			fmt.Fprintf(w, "%-20s %8d %10.1f %12.1f %11s %7d %9.1f ms %9.1f ms %9.1f ms\n", labels[i], s.held, float64(s.use.rss)/(1<<20),
				l.perSession(s)/1024, g, s.use.fds, pct(s.open.login, 50), pct(s.open.login, 99), pct(s.active, 99))
		}
		if l.stopped != "" {
			fmt.Fprintf(w, "%-15s stopped: %s\n", l.system, l.stopped)
		}
	}
	fmt.Fprintf(w, "\n%-15s %12s %10s %7s %12s %12s %12s %14s\n", "storm", "sessions/s", "offered", "errors", "login p50", "login p99", "accept max", "CPU ms/session")
	for _, l := range r.legsInOrder() {
		for _, s := range l.storms {
			cpu := "-"
			if s.ok > 0 {
				cpu = fmt.Sprintf("%.2f", msPer(s.cpu.node+s.cpu.pool+s.cpu.postgres, s.ok))
			}
			fmt.Fprintf(w, "%-15s %12.1f %10.0f %7d %9.1f ms %9.1f ms %12d %14s\n", l.system, s.achieved(), s.rate, s.errors,
				pct(s.login, 50), pct(s.login, 99), s.maxQueue, cpu)
		}
	}
	if p := r.profile; p != nil {
		fmt.Fprintf(w, "\nphigate, per session (%d held, heap profile): RSS %.1f KiB, %.2f goroutines\n", p.sessions, p.rss/1024, p.goroutines)
		for _, name := range p.partNames() {
			fmt.Fprintf(w, "  %-32s %8.1f KiB\n", name, p.perSession[name]/1024)
		}
		if p.cpuParts != nil {
			fmt.Fprintf(w, "phigate's CPU in a storm of %.0f/s (%.0f/s achieved, %d errors): %s\n", p.storm.rate, p.storm.achieved(), p.storm.errors, p.cpuSplit())
		}
	}
	fmt.Fprintln(w)
}

// setup says how the run was made, for notes.
func (r *report) setup() string {
	return fmt.Sprintf("%d CPUs, %s, load average %s at the start and %s at the end (the machine is shared); sessions over TLS (ECDSA P-256), %d active (SELECT 1 every %s), each step held %s; pgbouncer: session pooling, default_pool_size %d; phigate's upstream: a PgBouncer with the same pool, transaction pooling; phigate with recording (fsync) and a masking profile",
		runtime.NumCPU(), memTotal(), r.loadStart, r.loadEnd, r.cfg.active, r.cfg.activeEvery, r.cfg.hold, r.cfg.pool)
}

// loadavg is /proc/loadavg's three load averages, or "?".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// memTotal is the machine's memory, from /proc/meminfo.
func memTotal() string {
	if kb := rollupKB("/proc/meminfo", "MemTotal:"); kb > 0 {
		return fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<30))
	}
	return "? RAM"
}

func msPer(d time.Duration, n int) float64 {
	return float64(d.Microseconds()) / 1000 / float64(max(n, 1))
}

// fileDoc is one result file and what it measures, for README.md.
type fileDoc struct{ name, doc string }

func (r *report) write(dir string) error {
	var docs []fileDoc
	put := func(res bench.Result, doc string) error {
		if len(res.Values) == 0 {
			return nil
		}
		res.Time = r.started.UTC()
		docs = append(docs, fileDoc{res.Name + ".json", doc})
		return bench.Write(dir, res)
	}
	legs := r.legsInOrder()
	setup := r.setup()

	held := map[string]float64{}
	var stops []string
	for _, l := range legs {
		held[l.system] = float64(l.most())
		if l.stopped != "" {
			stops = append(stops, l.system+": "+l.stopped)
		}
	}
	if err := put(bench.Result{Name: "sessions-held", Unit: "sessions", HigherIsBetter: true, Values: held,
		Notes: fmt.Sprintf("the most sessions held at once, opening steps of %v (phigate-direct up to %d); %s; limits: %s; stopped: %s",
			r.cfg.steps, r.cfg.directMax, setup, r.limits, orNone(stops))},
		"the most concurrent sessions each system held (target: 10,000), and what stopped it"); err != nil {
		return err
	}
	for _, want := range r.cfg.steps {
		v := map[string]float64{}
		for _, l := range legs {
			steps, labels := l.rows()
			for i, s := range steps {
				if s.want == want && s.held == want && s.use.rss > 0 {
					v[labels[i]] = float64(s.use.rss) / (1 << 20)
					if s.use.poolRSS > 0 {
						v[labels[i]+" upstream pool"] = float64(s.use.poolRSS) / (1 << 20)
					}
					if s.use.pgBackends > 0 {
						v[labels[i]+" postgres backends"] = float64(s.use.pgPSS) / (1 << 20)
					}
				}
			}
		}
		if err := put(bench.Result{Name: fmt.Sprintf("sessions-rss-%d", want), Unit: "MiB", Values: v,
			Notes: fmt.Sprintf("VmRSS of the system's process with %d sessions held (after %s); again: the same after the idle sessions were closed and opened anew (freed memory reused); the upstream pool's VmRSS and PostgreSQL's backends' PSS beside it; %s", want, r.cfg.hold, setup)},
			fmt.Sprintf("resident memory holding %d sessions (target: 10,000 within 2 GiB)", want)); err != nil {
			return err
		}
	}
	per, gor := map[string]float64{}, map[string]float64{}
	var perNotes []string
	for _, l := range legs {
		s := l.full()
		if s == nil {
			continue
		}
		per[l.system] = l.perSession(s) / 1024
		perNotes = append(perNotes, fmt.Sprintf("%s at %d", l.system, s.held))
		if g, ok := l.goroutines(s); ok {
			gor[l.system] = g
		}
		if m, ok := l.goMemory(s); ok {
			per[l.system+" go heap+stacks"] = m / 1024
		}
		if c := l.churn; c != nil {
			per[l.system+" again"] = l.perSession(c) / 1024
		}
		if s.use.pgBackends > 0 {
			per[l.system+" postgres backend"] = float64(s.use.pgPSS) / float64(s.use.pgBackends) / 1024
		}
	}
	if p, b := per[sysPhigate], per[sysPgBouncer]; p > 0 && b > 0 {
		per["phigate/pgbouncer"] = p / b
	}
	if err := put(bench.Result{Name: "sessions-memory-per-session", Unit: "KiB", Values: per,
		Notes: fmt.Sprintf("(VmRSS with the sessions - VmRSS before any) / sessions, at the largest step held in full (%s); again: the same after that step's idle sessions were closed and opened anew (freed memory reused, so resident); go heap+stacks: phigate's go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes growth per session (what the runtime holds for them, resident or not yet); postgres backend: PSS per backend of the gateway's role (phigate-direct); %s",
			strings.Join(perNotes, ", "), setup)},
		"memory per session: RSS growth over the sessions held"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: "sessions-goroutines-per-session", Unit: "goroutines", Values: gor,
		Notes: "phigate's go_goroutines (/metrics) with the sessions held less before any, per session, at the largest step held in full"},
		"goroutines per phigate session"); err != nil {
		return err
	}
	for _, p := range []float64{50, 99} {
		v := map[string]float64{}
		for _, l := range legs {
			if lg := l.logins(); len(lg) > 0 {
				v[l.system] = pct(lg, p)
			}
		}
		if err := put(bench.Result{Name: fmt.Sprintf("sessions-login-p%.0f", p), Unit: "ms", Values: v,
			Notes: fmt.Sprintf("TLS login (dial to ReadyForQuery, pgconn) of every session opened in the hold steps, %d at a time; %s", r.cfg.concurrency, setup)},
			fmt.Sprintf("login latency p%.0f while opening the held sessions", p)); err != nil {
			return err
		}
	}
	active := map[string]float64{}
	for _, l := range legs {
		if s := l.full(); s != nil && len(s.active) > 0 {
			active[l.system] = pct(s.active, 99)
			active[l.system+" p50"] = pct(s.active, 50)
		}
	}
	if err := put(bench.Result{Name: "sessions-active-p99", Unit: "ms", Values: active,
		Notes: fmt.Sprintf("SELECT 1 of the %d active sessions (each every %s) while the largest step held in full was held; p99, and p50 beside it", r.cfg.active, r.cfg.activeEvery)},
		"query latency of the active sessions among the idle ones"); err != nil {
		return err
	}
	if err := r.writeStorm(put, legs, setup); err != nil {
		return err
	}
	if p := r.profile; p != nil {
		v := map[string]float64{"RSS": p.rss / 1024}
		for name, b := range p.perSession {
			v[name] = b / 1024
		}
		if err := put(bench.Result{Name: "sessions-phigate-memory-split", Unit: "KiB per session", Values: v,
			Notes: fmt.Sprintf("phigate (upstream pool) holding %d sessions, against the same node before them: the live heap by allocation stack (nodeprof heap profile, after two GCs; a record goes to the first part one of its functions belongs to: pgwire.newFrameReader and its pooled buffers, pgwire.newOutBuf and its pooled buffers, crypto/tls, pgx, session/spool/record, pgwire, other), go_memstats_stack_inuse_bytes for goroutine stacks, and what RSS grew beyond them (heap not yet returned, fragmentation); %.2f goroutines per session", p.sessions, p.goroutines)},
			"what one phigate session holds, by part (heap profile)"); err != nil {
			return err
		}
		if p.cpuParts != nil {
			if err := put(bench.Result{Name: "sessions-phigate-storm-cpu-split", Unit: "% of the node's CPU", Values: p.cpuParts,
				Notes: fmt.Sprintf("CPU profile (net/http/pprof in the nodeprof build) of phigate (upstream pool) during a storm of %d sessions/s for %s: cumulative share of the samples under each function (%s)", r.cfg.stormRate(), r.cfg.stormDuration, cpuFuncs())},
				"where phigate's CPU goes when it takes a storm of TLS sessions"); err != nil {
				return err
			}
		}
	}
	return harness.WriteReadmeSection(dir, readmeBegin, readmeEnd, r.readmeSection(docs))
}

func (r *report) writeStorm(put func(bench.Result, string) error, legs []*leg, setup string) error {
	for i, rate := range r.cfg.stormRates {
		if err := r.writeStormAt(put, legs, i, rate, setup); err != nil {
			return err
		}
	}
	return nil
}

// writeStormAt writes the figures of the storms of one rate, the i-th.
func (r *report) writeStormAt(put func(bench.Result, string) error, legs []*leg, i, rateWant int, setup string) error {
	rate, errs, queue, cpu := map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	login := map[float64]map[string]float64{50: {}, 99: {}}
	var details []string
	for _, l := range legs {
		if i >= len(l.storms) {
			continue
		}
		s := l.storms[i]
		rate[l.system] = s.achieved()
		errs[l.system] = float64(s.errors)
		queue[l.system] = float64(s.maxQueue)
		if s.ok > 0 {
			for p, v := range login {
				v[l.system] = pct(s.login, p)
			}
		}
		for part, d := range map[string]time.Duration{"": s.cpu.node, " upstream pool": s.cpu.pool, " postgres": s.cpu.postgres, " client": s.cpu.client} {
			if d > 0 && s.ok > 0 {
				cpu[l.system+part] = msPer(d, s.ok)
			}
		}
		d := fmt.Sprintf("%s: %d of %d sessions in %s, %d started late (>10 ms: the client fell behind), at most %d in flight, accept queue at most %d of %d over %d samples, ListenOverflows +%d, ListenDrops +%d, at most %d open files",
			l.system, s.ok, s.attempted, s.elapsed.Round(time.Millisecond), s.late, s.inFlightMax, s.maxQueue, s.backlog, s.samples, s.overflows, s.drops, s.fdsMax)
		if len(s.first) > 0 {
			d += "; errors: " + strings.Join(s.first, "; ")
		}
		if l.restart != "" {
			d += "; " + l.restart
		}
		details = append(details, d)
	}
	if len(rate) == 0 {
		return nil
	}
	rate["offered"] = float64(rateWant)
	name := fmt.Sprintf("sessions-storm-%d", rateWant)
	what := fmt.Sprintf("connection storm of %d/s", rateWant)
	notes := fmt.Sprintf("new TLS sessions at %d/s for %s, open loop (each on its own schedule), each: dial, TLS, login, SELECT 1, Terminate (30 s timeout); %s; %s",
		rateWant, r.cfg.stormDuration, strings.Join(details, "; "), setup)
	if err := put(bench.Result{Name: name + "-rate", Unit: "sessions/s", HigherIsBetter: true, Values: rate,
		Notes: notes + "; achieved: sessions completed over the time from the first start to the last end"},
		what+": completed TLS sessions per second against the offered rate (target: 1,000/s, no errors)"); err != nil {
		return err
	}
	for _, p := range []float64{50, 99} {
		if err := put(bench.Result{Name: fmt.Sprintf("%s-login-p%.0f", name, p), Unit: "ms", Values: login[p], Notes: notes + "; login: dial to ReadyForQuery"},
			fmt.Sprintf("%s: login latency p%.0f", what, p)); err != nil {
			return err
		}
	}
	if err := put(bench.Result{Name: name + "-errors", Unit: "sessions", Values: errs, Notes: notes},
		what+": sessions that failed"); err != nil {
		return err
	}
	if err := put(bench.Result{Name: name + "-accept-queue", Unit: "connections", Values: queue,
		Notes: notes + fmt.Sprintf("; the listener's accept queue read with sock_diag every 2 ms (both listen with backlog %d, net.core.somaxconn)", r.limits.somaxconn)},
		what+": the longest accept queue seen (bounded: below the backlog)"); err != nil {
		return err
	}
	return put(bench.Result{Name: name + "-cpu", Unit: "CPU ms per session", Values: cpu,
		Notes: notes + "; user+system CPU (/proc/PID/stat) over the storm, per completed session: the system's process, phigate's upstream PgBouncer, PostgreSQL (postmaster with the backends it reaped), and this benchmark's clients (TLS and, for PgBouncer, SCRAM)"},
		what+": CPU per completed session, by process")
}

func cpuFuncs() string {
	var s []string
	for _, c := range cpuParts {
		s = append(s, c.name+": "+c.fn)
	}
	return strings.Join(s, "; ")
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// The markers of this program's section in bench/results/README.md,
// which other programs write too.
const (
	readmeBegin = "<!-- bench/sessions: begin (written by go run ./bench/sessions) -->"
	readmeEnd   = "<!-- bench/sessions: end -->"
)

func (r *report) readmeSection(docs []fileDoc) string {
	sort.Slice(docs, func(i, j int) bool { return docs[i].name < docs[j].name })
	var b strings.Builder
	b.WriteString(readmeBegin + "\n")
	b.WriteString(`## Many sessions (bench/sessions)

` + "`sessions-*.json`" + ` come from ` + "`go run ./bench/sessions --phigate bin/phigate --results bench/results`" + `
(in ` + "`make bench`" + `): how many concurrent TLS sessions one node holds, what each
costs, and a storm of new TLS sessions, side by side with PgBouncer (session
pooling) in front of the same PostgreSQL with the same upstream pool. The
systems: ` + "`phigate`" + ` (its resource is a PgBouncer with the same default_pool_size,
pooling transactions: phigate opens one upstream session per client session,
and in session pooling the pool ran out), ` + "`phigate-direct`" + ` (its
resource is PostgreSQL itself, one backend per session, up to ` + "`--direct-max`" + `) and
` + "`pgbouncer`" + `. Analysis: [docs/sessions.md](../../docs/sessions.md).

Targets (issue 13): 10,000 sessions within 2 GiB RSS; 1,000 new TLS sessions per
second with no errors and a bounded accept queue.

`)
	fmt.Fprintf(&b, "Last run: %s, %s/%s, %v; %s.\n\nLimits: %s.\n\n", r.started.UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, r.elapsed.Round(time.Second), r.setup(), r.limits)
	b.WriteString("| system | sessions | RSS MiB | KiB/session | goroutines/session | open files | login p50 ms | login p99 ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, l := range r.legsInOrder() {
		steps, labels := l.rows()
		for i, s := range steps {
			if s.use.rss == 0 {
				fmt.Fprintf(&b, "| %s | %d | lost: the process exited | | | | %.1f | %.1f |\n", labels[i], s.held, pct(s.open.login, 50), pct(s.open.login, 99))
				continue
			}
			g := "-"
			if v, ok := l.goroutines(s); ok {
				g = fmt.Sprintf("%.2f", v)
			}
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.1f | %s | %d | %.1f | %.1f |\n", labels[i], s.held, float64(s.use.rss)/(1<<20), l.perSession(s)/1024, g, s.use.fds, pct(s.open.login, 50), pct(s.open.login, 99))
		}
	}
	for _, l := range r.legsInOrder() {
		if l.stopped != "" {
			fmt.Fprintf(&b, "\n%s stopped: %s\n", l.system, mdEscape(l.stopped))
		}
	}
	b.WriteString("\n| file | what it measures |\n| --- | --- |\n")
	for _, d := range docs {
		fmt.Fprintf(&b, "| `%s` | %s |\n", d.name, d.doc)
	}
	b.WriteString(readmeEnd + "\n")
	return b.String()
}

// mdEscape keeps an error message from breaking the Markdown around it.
func mdEscape(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }
