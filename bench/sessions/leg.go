package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// usage is what a system's process holds at one moment.
type usage struct {
	rss, hwm int64 // VmRSS, VmHWM
	fds      int
	threads  int
	// metrics are phigate's /metrics (nil for PgBouncer).
	metrics map[string]float64
	// poolRSS is phigate's upstream PgBouncer's VmRSS (0: none).
	poolRSS int64
	// pgBackends and pgPSS are PostgreSQL's backends of the gateway's role
	// and their proportional set size (phigate-direct).
	pgBackends int
	pgPSS      int64
}

// step is one step of a leg: the sessions it asked for, how opening them
// went and what the system held after -hold.
type step struct {
	want        int
	held        int
	open        openResult
	use         usage
	active      []time.Duration // SELECT 1 latencies of the active sessions
	activeErrs  int
	activeFirst []string
}

// leg is one system's run: the hold steps and the storm.
type leg struct {
	system   string
	upstream string // what the system logs in to
	baseline usage  // before any session
	steps    []step
	stopped  string // why the leg held fewer sessions than its last step ("": it did not)
	// lost: the system exited after its last step's failure, with every
	// session it held; that step has no measurement.
	lost bool
	// churn is the last step again after its idle sessions were closed
	// and opened anew: memory that freed sessions leave is reused (and
	// now resident), as on a node that has run a while.
	churn   *step
	storms  []*stormResult // one per rate, ascending
	restart string         // why a fresh process took the storms ("": the one of the hold did)
}

// last is the last step measured (nil: none).
func (l *leg) last() *step {
	if len(l.steps) == 0 {
		return nil
	}
	return &l.steps[len(l.steps)-1]
}

// startSystem starts one of the measured systems; for phigate also its
// upstream pool.
func startSystem(ctx context.Context, cfg config, dir, name string, pg *harness.Postgres, c *certs, env []string) (*node, string, error) {
	maxClients := cfg.maxSessions(name) + cfg.stormInFlight() + 100
	switch name {
	case sysPgBouncer:
		v, err := scramVerifier(ctx, pg, harness.DirectUser)
		if err != nil {
			return nil, "", err
		}
		n, err := startPgBouncer(ctx, cfg.pgbouncer, pgbouncerSpec{dir: filepath.Join(dir, "pgbouncer"), role: harness.DirectUser, verifier: v,
			password: pg.Direct.Password, pool: cfg.pool, maxClients: maxClients, tls: c}, pg)
		return n, fmt.Sprintf("PostgreSQL, default_pool_size %d", cfg.pool), err
	case sysPhigate:
		v, err := scramVerifier(ctx, pg, harness.GatewayUser)
		if err != nil {
			return nil, "", err
		}
		// Transaction pooling: in session pooling an upstream session keeps
		// a server from its first message to its end, and phigate's login
		// may send one (pgconn's SyncConn pings when its background reader
		// ran during the login), so the pool ran out long before the
		// clients did (docs/sessions.md).
		pool, err := startPgBouncer(ctx, cfg.pgbouncer, pgbouncerSpec{dir: filepath.Join(dir, "pool"), role: harness.GatewayUser, verifier: v,
			password: pg.GatewayPassword, pool: cfg.pool, maxClients: maxClients, transaction: true}, pg)
		if err != nil {
			return nil, "", fmt.Errorf("upstream pool: %w", err)
		}
		n, err := startPhigate(ctx, cfg.phigate, filepath.Join(dir, "phigate"), net.JoinHostPort("127.0.0.1", strconv.Itoa(pool.port)), pg, c, env)
		if err != nil {
			pool.stop()
			return nil, "", err
		}
		n.pool = pool
		return n, fmt.Sprintf("PgBouncer (transaction pooling, default_pool_size %d) in front of PostgreSQL", cfg.pool), nil
	default:
		n, err := startPhigate(ctx, cfg.phigate, filepath.Join(dir, "phigate-direct"), pg.Addr(), pg, c, env)
		if n != nil {
			n.name = sysPhigateDirect
		}
		return n, "PostgreSQL itself, one backend per session", err
	}
}

// runLeg measures one system: its hold steps, then the storm. A system
// that breaks during the hold is started again for the storm.
func runLeg(ctx context.Context, cfg config, work, name string, pg *harness.Postgres, c *certs) (*leg, error) {
	dir := filepath.Join(work, name)
	harness.Logf("%s: starting", name)
	n, upstream, err := startSystem(ctx, cfg, dir, name, pg, c, nil)
	if err != nil {
		return nil, err
	}
	defer func() { n.stop() }()
	l := &leg{system: name, upstream: upstream}
	if err := hold(ctx, cfg, n, l, pg); err != nil {
		return l, err
	}
	if len(cfg.stormRates) == 0 {
		return l, nil
	}
	if l.stopped != "" {
		// At a limit or broken: the storms get a fresh one.
		why := "the hold stopped at a limit"
		if !n.alive() {
			why = n.exitNote()
		}
		l.restart = "a fresh " + name + " took the storms (" + why + ")"
		harness.Logf("%s: %s", name, l.restart)
		n.stop()
		if n, _, err = startSystem(ctx, cfg, filepath.Join(work, name+"-storm"), name, pg, c, nil); err != nil {
			return l, err
		}
	}
	for _, rate := range cfg.stormRates {
		if !n.alive() {
			return l, fmt.Errorf("before the storm of %d/s: %s", rate, n.exitNote())
		}
		s, err := runStorm(ctx, n, pg, float64(rate), cfg.stormDuration, nil)
		if err != nil {
			return l, err
		}
		l.storms = append(l.storms, s)
		s.log(name)
	}
	return l, nil
}

// hold opens the leg's steps one after the other and measures each; it
// stops at the first step a login fails in.
func hold(ctx context.Context, cfg config, n *node, l *leg, pg *harness.Postgres) error {
	t, err := newTarget(n.ep, true, 30*time.Second)
	if err != nil {
		return err
	}
	l.baseline = measure(ctx, n, pg)
	n.idleBackends = l.baseline.pgBackends
	h := &held{t: t}
	var act *activity
	defer func() {
		act.end()
		h.closeAll(cfg.concurrency)
		n.waitSessions(ctx, 0)
		n.waitBackends(ctx, pg, 0)
	}()
	for _, want := range cfg.steps {
		if want > cfg.maxSessions(l.system) {
			break
		}
		before := len(h.conns)
		o := h.open(ctx, want, cfg.concurrency)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if act == nil && len(h.conns) > 0 {
			act = startActivity(h.conns[:min(cfg.active, len(h.conns))], cfg.activeEvery)
		}
		if o.errors > 0 {
			l.stopped = fmt.Sprintf("%d sessions held; the next login failed: %s", len(h.conns), strings.Join(o.first, "; "))
			if n.exits(15 * time.Second) {
				l.stopped += "; then " + n.exitNote()
				l.lost = true
			}
			harness.Logf("%s: step %d: %s", l.system, want, l.stopped)
		}
		if !l.lost && !sleep(ctx, cfg.hold) {
			return ctx.Err()
		}
		s := step{want: want, held: len(h.conns), open: o}
		if !l.lost {
			s.use = measure(ctx, n, pg)
		}
		if act != nil {
			s.active, s.activeErrs, s.activeFirst = act.take()
		}
		l.steps = append(l.steps, s)
		if l.lost {
			break
		}
		harness.Logf("%-14s %6d sessions (+%d in %s, login p50 %.1f ms p99 %.1f ms): RSS %s (%s/session), %d fds, %s; active SELECT 1 p99 %.1f ms, %d errors",
			l.system, s.held, s.held-before, o.elapsed.Round(time.Millisecond), pct(o.login, 50), pct(o.login, 99),
			mib(s.use.rss), kib(perSession(s.use.rss-l.baseline.rss, s.held)), s.use.fds, s.use.goRuntime(l.baseline, s.held),
			pct(s.active, 99), s.activeErrs)
		if l.stopped != "" {
			break
		}
		if want == cfg.churnStep(l.system) {
			if err := churn(ctx, cfg, n, l, pg, h, act); err != nil {
				return err
			}
		}
	}
	if len(l.steps) == 0 || l.steps[0].held == 0 {
		return fmt.Errorf("%w: %s", errTooFew, l.stopped)
	}
	return nil
}

// churn closes the idle sessions of the last step, waits until the
// system has let them go, opens as many again and measures.
func churn(ctx context.Context, cfg config, n *node, l *leg, pg *harness.Postgres, h *held, act *activity) error {
	last := l.last()
	keep := min(cfg.active, len(h.conns))
	idle := &held{t: h.t, conns: h.conns[keep:]}
	closed := len(idle.conns)
	h.conns = h.conns[:keep:keep]
	idle.closeAll(cfg.concurrency)
	n.waitSessions(ctx, keep)
	n.waitBackends(ctx, pg, keep)
	o := h.open(ctx, last.want, cfg.concurrency)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !sleep(ctx, cfg.hold) {
		return ctx.Err()
	}
	s := &step{want: last.want, held: len(h.conns), open: o, use: measure(ctx, n, pg)}
	if act != nil {
		s.active, s.activeErrs, s.activeFirst = act.take()
	}
	l.churn = s
	harness.Logf("%-14s %6d sessions again after closing %d: RSS %s (%s/session), %s", l.system, s.held, closed, mib(s.use.rss),
		kib(perSession(s.use.rss-l.baseline.rss, s.held)), s.use.goRuntime(l.baseline, s.held))
	if o.errors > 0 {
		return fmt.Errorf("reopening: %s", strings.Join(o.first, "; "))
	}
	return nil
}

// measure reads what n's process holds now.
func measure(ctx context.Context, n *node, pg *harness.Postgres) usage {
	pid := n.proc.PID()
	u := usage{rss: statusKB(pid, "VmRSS:"), hwm: statusKB(pid, "VmHWM:"), fds: openFiles(pid)}
	if s, ok := statusField(pid, "Threads:"); ok {
		u.threads, _ = strconv.Atoi(s)
	}
	if n.api != "" && n.alive() {
		if m, err := n.scrape(ctx); err == nil {
			u.metrics = m
		} else {
			harness.Logf("%s: %v", n.name, err)
		}
	}
	if n.pool != nil {
		u.poolRSS = statusKB(n.pool.proc.PID(), "VmRSS:")
	}
	if n.name == sysPhigateDirect {
		u.pgBackends, u.pgPSS = backends(pg.PID(), harness.GatewayUser)
	}
	return u
}

// goRuntime describes phigate's goroutines and memory per session against
// the baseline ("" for PgBouncer).
func (u usage) goRuntime(base usage, sessions int) string {
	if u.metrics == nil || base.metrics == nil {
		return fmt.Sprintf("%d threads", u.threads)
	}
	d := func(k string) float64 { return u.metrics[k] - base.metrics[k] }
	return fmt.Sprintf("%.2f goroutines/session, stacks %s/session, heap in use %s/session",
		d(mGoroutines)/float64(max(sessions, 1)), kib(perSession(int64(d(mStack)), sessions)), kib(perSession(int64(d(mHeapInuse)), sessions)))
}

// waitSessions waits, up to two minutes, until phigate counts no more
// than want sessions (each records its end first); a no-op for PgBouncer.
func (n *node) waitSessions(ctx context.Context, want int) {
	if n.api == "" {
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && n.alive() {
		m, err := n.scrape(ctx)
		if err == nil && m[mActive] <= float64(want) {
			return
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// waitBackends waits, up to a minute, until PostgreSQL has no more than
// n.idleBackends+sessions backends of the gateway's role (phigate-direct's
// ended sessions have exited and been reaped: their CPU time is the
// postmaster's, and the next phase starts without them); a no-op for the
// other systems, whose pools keep their server connections.
func (n *node) waitBackends(ctx context.Context, pg *harness.Postgres, sessions int) {
	if n.name != sysPhigateDirect {
		return
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if b, _ := backends(pg.PID(), harness.GatewayUser); b <= n.idleBackends+sessions {
			return
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func perSession(bytes int64, sessions int) int64 { return bytes / int64(max(sessions, 1)) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }

// exits reports whether n's process or its pool exits within d.
func (n *node) exits(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for n.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	return true
}

// exitNote says which of n's processes exited, with the end of its log.
func (n *node) exitNote() string {
	select {
	case <-n.proc.Exited():
		return n.proc.Name() + " exited: " + lastLines(n.logTail(), 3)
	default:
	}
	if n.pool != nil {
		return "its upstream pool exited: " + lastLines(n.pool.logTail(), 2)
	}
	return "still running"
}

// lastLines is the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], " | ")
}
