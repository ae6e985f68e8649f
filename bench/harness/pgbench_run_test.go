package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// slowLoginProxy forwards TCP connections to port after holding each new
// one for delay, as a loaded proxy that authenticates every session does.
func slowLoginProxy(t *testing.T, port int, delay time.Duration) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				time.Sleep(delay) // the slow login itself, not a wait for something
				u, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunPgbenchSlowConnect runs pgbench where connecting takes longer than
// -T: pgbench, whose -T clock starts before its clients connect, then
// completes no transaction and exits 0 (the "no per-transaction log lines"
// of loaded CI machines). RunPgbench must run it again with a -T that
// leaves time to measure; and a run that fails for good must say why.
func TestRunPgbenchSlowConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("real PostgreSQL and pgbench skipped in -short mode")
	}
	ctx := context.Background()
	pg, err := StartPostgres(ctx, filepath.Join(t.TempDir(), "pg"), 1, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	spec := PgbenchSpec{Workload: "select-only", Mode: "simple", Clients: 4, Jobs: 2, Duration: time.Second}

	run, err := RunPgbench(ctx, pg.Pgbench, pg.Direct, spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if run.Attempts != 1 || run.Duration != time.Second || len(run.Latencies) == 0 {
		t.Errorf("direct: %d attempts, -T %s, %d latencies", run.Attempts, run.Duration, len(run.Latencies))
	}

	// Two clients a thread, 700 ms each: 1.4 s of a 1 s -T.
	slow := pg.Direct
	slow.Port = slowLoginProxy(t, pg.Direct.Port, 700*time.Millisecond)
	run, err = RunPgbench(ctx, pg.Pgbench, slow, spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if run.Attempts != 2 || run.Duration <= 2*time.Second || len(run.Latencies) == 0 || run.TPS <= 0 {
		t.Errorf("slow login: %d attempts, -T %s, %d latencies, tps %v", run.Attempts, run.Duration, len(run.Latencies), run.TPS)
	}

	// A run that cannot work: the error has pgbench's own words and the
	// log files it left.
	wrong := pg.Direct
	wrong.Password = "not-the-password"
	_, err = RunPgbench(ctx, pg.Pgbench, wrong, spec, t.TempDir())
	if err == nil || errors.Is(err, ErrNothingMeasured) || !strings.Contains(err.Error(), "password authentication failed") ||
		!strings.Contains(err.Error(), "log files: ") {
		t.Errorf("wrong password: %v", err)
	}
}
