package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/bench/harness"
)

// target is where the benchmark's clients log in: pgx's pgconn (the
// startup, TLS with sslmode=require, SCRAM or a cleartext token, whatever
// the system asks for), with no runtime parameters of its own.
type target struct{ cfg *pgconn.Config }

func newTarget(ep harness.Endpoint, useTLS bool, timeout time.Duration) (*target, error) {
	mode := "disable"
	if useTLS {
		mode = "require"
	}
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)), User: url.UserPassword(ep.User, ep.Password),
		Path: "/" + ep.DB, RawQuery: fmt.Sprintf("sslmode=%s&connect_timeout=%d", mode, max(1, int(timeout.Seconds())))}
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		return nil, err
	}
	return &target{cfg: cfg}, nil
}

// connect logs in and returns the session and how long the login took
// (from the dial to ReadyForQuery).
func (t *target) connect(ctx context.Context) (*pgconn.PgConn, time.Duration, error) {
	start := time.Now()
	c, err := pgconn.ConnectConfig(ctx, t.cfg.Copy())
	return c, time.Since(start), err
}

// selectOne runs SELECT 1 on c and returns how long it took.
func selectOne(ctx context.Context, c *pgconn.PgConn) (time.Duration, error) {
	start := time.Now()
	_, err := c.Exec(ctx, "SELECT 1").ReadAll()
	return time.Since(start), err
}

// errorLog keeps a count of errors and the first few distinct messages.
type errorLog struct {
	mu    sync.Mutex
	count int
	first []string
}

func (e *errorLog) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count++
	if msg := err.Error(); len(e.first) < 5 && !slices.Contains(e.first, msg) {
		e.first = append(e.first, msg)
	}
}

func (e *errorLog) snapshot() (int, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count, slices.Clone(e.first)
}

// held is the sessions a leg keeps open. Sessions are only added (open)
// and all closed at the end (closeAll).
type held struct {
	t     *target
	conns []*pgconn.PgConn
}

// openResult is what opening a step's sessions gave.
type openResult struct {
	opened  int
	login   []time.Duration // successful logins
	elapsed time.Duration
	errors  int
	first   []string
}

// open logs in until h holds n sessions, concurrency at a time. After the
// first failed login no new one is started (the system has reached a limit
// or broken): the result says how many it opened and why it stopped.
func (h *held) open(ctx context.Context, n, concurrency int) openResult {
	want := n - len(h.conns)
	if want <= 0 {
		return openResult{}
	}
	var (
		mu     sync.Mutex
		next   atomic.Int64
		failed atomic.Bool
		errs   errorLog
		wg     sync.WaitGroup
		res    = openResult{login: make([]time.Duration, 0, want)}
	)
	start := time.Now()
	for range min(concurrency, want) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(want) && !failed.Load() && ctx.Err() == nil {
				c, d, err := h.t.connect(ctx)
				if err != nil {
					failed.Store(true)
					errs.add(err)
					continue
				}
				mu.Lock()
				h.conns = append(h.conns, c)
				res.login = append(res.login, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.opened = len(res.login)
	res.errors, res.first = errs.snapshot()
	return res
}

// closeAll ends every session (Terminate), concurrency at a time.
func (h *held) closeAll(concurrency int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(h.conns)); i = next.Add(1) - 1 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = h.conns[i].Close(ctx)
				cancel()
			}
		}()
	}
	wg.Wait()
	h.conns = nil
}

// activity runs SELECT 1 on the active sessions, each every interval
// (their starts spread over the interval), until stopped. Each session
// has one query in flight at most.
type activity struct {
	stop func()
	done chan struct{}

	mu    sync.Mutex
	lat   []time.Duration
	errs  errorLog
	conns []*pgconn.PgConn
}

func startActivity(conns []*pgconn.PgConn, every time.Duration) *activity {
	ctx, cancel := context.WithCancel(context.Background())
	a := &activity{stop: cancel, done: make(chan struct{}), conns: conns}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			offset := every * time.Duration(i) / time.Duration(len(conns))
			t := time.NewTimer(offset)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
				d, err := selectOne(qctx, c)
				qcancel()
				if ctx.Err() != nil {
					return
				}
				a.mu.Lock()
				if err != nil {
					a.errs.add(err)
				} else {
					a.lat = append(a.lat, d)
				}
				a.mu.Unlock()
				if err != nil {
					return // the session is gone; the count says so
				}
				t.Reset(every)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(a.done)
	}()
	return a
}

// take returns the latencies since the last take, and the errors so far.
func (a *activity) take() ([]time.Duration, int, []string) {
	a.mu.Lock()
	lat := a.lat
	a.lat = nil
	a.mu.Unlock()
	n, first := a.errs.snapshot()
	return lat, n, first
}

// end stops the queries and waits for them.
func (a *activity) end() {
	if a == nil {
		return
	}
	a.stop()
	<-a.done
}

// pct is the p-th percentile of d in milliseconds (d is sorted here).
func pct(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(harness.Percentile(d, p).Microseconds()) / 1000
}

// errTooFew is returned when a leg could not hold its first step.
var errTooFew = errors.New("could not hold the first step")
