package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/bench/harness"
)

// stormResult is one storm: sessions started on a fixed schedule, each
// logging in over TLS, running SELECT 1 and closing.
type stormResult struct {
	rate      float64 // offered, sessions per second
	duration  time.Duration
	attempted int
	ok        int
	errors    int
	first     []string
	login     []time.Duration // dial to ReadyForQuery, successful sessions
	query     []time.Duration // SELECT 1
	session   []time.Duration // dial to closed
	late      int             // sessions started more than 10 ms after their time (the client fell behind)
	elapsed   time.Duration   // first start to last end

	maxQueue, backlog int   // the listener's accept queue: largest length sampled, and its bound
	samples           int   // accept queue samples taken
	overflows, drops  int64 // TcpExt ListenOverflows, ListenDrops during the storm (whole machine)
	cpu               cpuUse
	inFlightMax       int64 // sessions open at once in the client, at most
	fdsMax            int   // the system's open files, the most sampled
}

// log prints the storm's summary.
func (s *stormResult) log(system string) {
	cpu := "-"
	if s.ok > 0 {
		cpu = fmt.Sprintf("%.2f", msPer(s.cpu.node, s.ok))
	}
	harness.Logf("%-14s storm of %.0f/s: %d/%d sessions in %s, %.0f/s, %d errors, login p50 %.1f ms p99 %.1f ms, accept queue max %d (backlog %d), ListenOverflows +%d, CPU %s ms/session",
		system, s.rate, s.ok, s.attempted, s.elapsed.Round(time.Millisecond), s.achieved(), s.errors, pct(s.login, 50), pct(s.login, 99),
		s.maxQueue, s.backlog, s.overflows, cpu)
}

// achieved is the rate of sessions that completed, over the storm's
// elapsed time.
func (s *stormResult) achieved() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok) / s.elapsed.Seconds()
}

// cpuUse is CPU time over the storm, by part.
type cpuUse struct {
	node, pool, postgres, client time.Duration
}

// runStorm starts rate new TLS sessions per second for d against n, and
// samples n's listener meanwhile. during, when not nil, runs in its own
// goroutine from the storm's start (the profile takes a CPU profile).
func runStorm(ctx context.Context, n *node, pg *harness.Postgres, rate float64, d time.Duration, during func(context.Context)) (*stormResult, error) {
	t, err := newTarget(n.ep, true, 30*time.Second)
	if err != nil {
		return nil, err
	}
	q, err := newAcceptQueue(n.port)
	if err != nil {
		return nil, err
	}
	defer q.close()
	s := &stormResult{rate: rate, duration: d, attempted: int(rate * d.Seconds())}
	var (
		mu       sync.Mutex
		errs     errorLog
		wg       sync.WaitGroup
		inFlight atomic.Int64
	)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if queued, backlog, found, err := q.read(); err == nil && found {
				s.samples++
				s.maxQueue, s.backlog = max(s.maxQueue, queued), backlog
			}
			if i%50 == 0 { // every 100 ms: /proc/PID/fd costs more
				s.fdsMax = max(s.fdsMax, openFiles(n.proc.PID()))
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	cpu0 := s.cpuNow(n, pg)
	over0, drops0 := listenDrops()
	if during != nil {
		go during(ctx)
	}
	start := time.Now()
	var lastEnd atomic.Int64
	for i := range s.attempted {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if w := time.Until(at); w > 0 && !sleep(ctx, w) {
			break
		}
		if time.Since(at) > 10*time.Millisecond {
			s.late++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := inFlight.Add(1)
			mu.Lock()
			s.inFlightMax = max(s.inFlightMax, cur)
			mu.Unlock()
			defer inFlight.Add(-1)
			begin := time.Now()
			c, login, err := t.connect(ctx)
			if err != nil {
				errs.add(fmt.Errorf("login: %w", err))
				return
			}
			qd, err := selectOne(ctx, c)
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			cerr := c.Close(cctx)
			cancel()
			if err == nil {
				err = cerr
			}
			end := time.Now()
			lastEnd.Store(end.UnixNano())
			if err != nil {
				errs.add(fmt.Errorf("query: %w", err))
				return
			}
			mu.Lock()
			s.ok++
			s.login = append(s.login, login)
			s.query = append(s.query, qd)
			s.session = append(s.session, end.Sub(begin))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		stopSampling()
		<-sampled
		return nil, ctx.Err()
	}
	if e := lastEnd.Load(); e > 0 {
		s.elapsed = time.Unix(0, e).Sub(start)
	}
	n.waitSessions(ctx, 0)
	n.waitBackends(ctx, pg, 0)
	stopSampling()
	<-sampled
	over1, drops1 := listenDrops()
	s.overflows, s.drops = over1-over0, drops1-drops0
	s.cpu = s.cpuNow(n, pg).minus(cpu0)
	s.errors, s.first = errs.snapshot()
	return s, nil
}

// cpuNow reads the CPU time used so far by the system, its pool,
// PostgreSQL (the postmaster and the backends it has reaped: a storm's
// sessions have all ended before the second reading) and this process.
func (s *stormResult) cpuNow(n *node, pg *harness.Postgres) cpuUse {
	u := cpuUse{node: procCPU(n.proc.PID(), false), postgres: procCPU(pg.PID(), true), client: procCPU(os.Getpid(), false)}
	if n.pool != nil {
		u.pool = procCPU(n.pool.proc.PID(), false)
	}
	return u
}

func (u cpuUse) minus(v cpuUse) cpuUse {
	return cpuUse{node: u.node - v.node, pool: u.pool - v.pool, postgres: u.postgres - v.postgres, client: u.client - v.client}
}

// procCPU is pid's user and system CPU time from /proc/PID/stat, with
// its reaped children's when children is set.
func procCPU(pid int, children bool) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')' comes field 3 of stat(5) (state): field k is f[k-3];
	// utime and stime are fields 14 and 15, cutime and cstime 16 and 17.
	end := 13
	if children {
		end = 15
	}
	if len(f) < end {
		return 0
	}
	var ticks int64
	for _, s := range f[11:end] {
		v, _ := strconv.ParseInt(s, 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / time.Duration(clockTicks())
}

// clockTicks is sysconf(_SC_CLK_TCK): USER_HZ, 100 on Linux.
func clockTicks() int64 { return 100 }
