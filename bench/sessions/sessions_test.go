package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/bench/sessions/nodeprof"
)

// TestSessionsEndToEnd runs the benchmark at a tiny scale: every phase
// (steps, churn, storm) on every system there is a binary for, without
// the profile (it builds the node again; TestHeapByPart and
// TestParseTopCum cover its reading).
func TestSessionsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end benchmark run skipped in -short mode")
	}
	cfg, err := parseFlags([]string{
		"-sessions", "20,50", "-direct-max", "20", "-active", "5", "-active-every", "200ms", "-hold", "500ms",
		"-storm-rate", "50", "-storm-duration", "1s", "-churn-at", "50", "-profile=false", "-open-concurrency", "8",
		"-results", t.TempDir(), "-workdir", filepath.Join(t.TempDir(), "work"),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.systems = nil
	// PgBouncer is installed by `make bench-deps`, phigate built by `make
	// build`; the run measures what there is.
	if _, err := exec.LookPath(cfg.pgbouncer); err == nil {
		cfg.systems = append(cfg.systems, sysPgBouncer)
		if _, err := os.Stat("../../bin/phigate"); err == nil {
			cfg.phigate = "../../bin/phigate"
			cfg.systems = append(cfg.systems, sysPhigate, sysPhigateDirect)
		}
	} else if _, err := os.Stat("../../bin/phigate"); err == nil {
		cfg.phigate = "../../bin/phigate"
		cfg.systems = append(cfg.systems, sysPhigateDirect)
	}
	if len(cfg.systems) == 0 {
		t.Skip("neither pgbouncer on PATH nor ../../bin/phigate: nothing to measure")
	}
	if err := run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if left := harness.ProcessesUnder(cfg.workdir); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
	readme, err := os.ReadFile(filepath.Join(cfg.out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.out, "*.json"))
	names := map[string]bench.Result{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r bench.Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Name+".json" != filepath.Base(f) || r.Unit == "" || r.Time.IsZero() || len(r.Values) == 0 {
			t.Errorf("%s: bad result %+v", f, r)
		}
		if !strings.Contains(string(readme), "`"+filepath.Base(f)+"`") {
			t.Errorf("README.md does not explain %s", filepath.Base(f))
		}
		names[r.Name] = r
	}
	for _, s := range cfg.systems {
		if v := names["sessions-held"].Values[s]; v != float64(cfg.maxSessions(s)) {
			t.Errorf("%s held %v sessions, want %d", s, v, cfg.maxSessions(s))
		}
		if v := names["sessions-storm-50-errors"].Values[s]; v != 0 {
			t.Errorf("%s: %v storm errors: %s", s, v, names["sessions-storm-50-errors"].Notes)
		}
		if v := names["sessions-storm-50-rate"].Values[s]; v <= 0 {
			t.Errorf("%s: storm rate %v", s, v)
		}
		if v, ok := names["sessions-memory-per-session"].Values[s+" again"]; !ok || v <= 0 {
			t.Errorf("%s: no memory per session after the churn (%v)", s, v)
		}
	}
	for _, s := range []string{sysPhigate, sysPhigateDirect} {
		if !cfg.has(s) {
			continue
		}
		if g := names["sessions-goroutines-per-session"].Values[s]; g < 1 {
			t.Errorf("%s: %v goroutines per session", s, g)
		}
	}
}

func TestHeapByPart(t *testing.T) {
	recs := []nodeprof.Record{
		{Bytes: 65536, Stack: []string{"bufio.NewReaderSize", "github.com/phigate/phigate/session/pgwire.newFrameReader", "github.com/phigate/phigate/session/pgwire.(*conn).relay"}},
		{Bytes: 65536, Stack: []string{"github.com/phigate/phigate/session/pgwire.newOutBuf", "github.com/phigate/phigate/session/pgwire.(*conn).relay"}},
		{Bytes: 1000, Stack: []string{"crypto/tls.(*Conn).readRecord", "github.com/phigate/phigate/session/pgwire.(*Server).negotiate"}},
		{Bytes: 300, Stack: []string{"github.com/jackc/pgx/v5/pgconn.connectOne", "github.com/phigate/phigate/session/pgwire.dialUpstream"}},
		{Bytes: 200, Stack: []string{"github.com/phigate/phigate/storage/spool.(*Spool).Create", "github.com/phigate/phigate/session/pgwire.(*conn).startRecording"}},
		{Bytes: 100, Stack: []string{"github.com/phigate/phigate/session/pgwire.(*Server).serveConn"}},
		{Bytes: 10, Stack: []string{"runtime.malg"}},
	}
	got := heapByPart(recs)
	for part, want := range map[string]float64{
		"read buffers (frameReader)": 65536, "write buffers (outBuf)": 65536, "TLS (crypto/tls)": 1000, "upstream login (pgconn)": 300,
		"recording (session, spool)": 200, "other proxy state (pgwire)": 100, "other heap": 10,
	} {
		if got[part] != want {
			t.Errorf("%s = %v, want %v", part, got[part], want)
		}
	}
	// The profile of this test process itself reads and sorts. At Go's
	// default rate (one sample per 512 KiB) it may hold nothing: sample
	// everything, and keep something alive.
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 4096)
	}
	parts := heapByPart(nodeprof.Heap())
	runtime.KeepAlive(live)
	if len(parts) == 0 {
		t.Error("no live heap in this process")
	}
}

func TestParseTopCum(t *testing.T) {
	out := []byte(`File: phigate
Type: cpu
Showing nodes accounting for 560ms, 100% of 560ms total
      flat  flat%   sum%        cum   cum%
         0     0%     0%      280ms 50.00%  github.com/phigate/phigate/session/pgwire.(*Server).serveConn
         0     0% 41.07%       90ms 16.07%  crypto/tls.(*Conn).HandshakeContext (inline)
         0     0% 41.07%       90ms 16.07%  crypto/tls.(*Conn).serverHandshake
         0     0% 41.07%       70ms 12.50%  crypto/pbkdf2.Key[go.shape.interface { BlockSize int; Reset; Size int }]
`)
	cum := parseTopCum(out)
	if cum["crypto/tls.(*Conn).serverHandshake"] != 16.07 || cum["github.com/phigate/phigate/session/pgwire.(*Server).serveConn"] != 50 {
		t.Fatalf("parseTopCum = %v", cum)
	}
	if cum["crypto/pbkdf2.Key[go.shape.interface"] != 12.5 {
		t.Fatalf("generic function: %v", cum)
	}
}

func TestParseListenDrops(t *testing.T) {
	in := []byte("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\nIpExt: InNoRoutes\nIpExt: 0\n")
	if o, d := parseListenDrops(in); o != 7 || d != 9 {
		t.Fatalf("parseListenDrops = %d, %d", o, d)
	}
}

func TestGauges(t *testing.T) {
	g, err := gauges(strings.NewReader("# HELP go_goroutines x\ngo_goroutines 42\nphigate_commands_total{class=\"read\"} 3\ngo_memstats_stack_inuse_bytes 1.5e+06 1700000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g[mGoroutines] != 42 || g[mStack] != 1.5e6 || len(g) != 2 {
		t.Fatalf("gauges = %v", g)
	}
}
