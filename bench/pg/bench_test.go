package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

// shortConfig is a benchmark small enough for a test: every code path, a
// second per run. The phigate leg is included when a built binary is there.
func shortConfig(t *testing.T) config {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end benchmark run skipped in -short mode")
	}
	c, err := parseFlags([]string{
		"-scale", "1", "-duration", "1s", "-warmup", "0", "-clients", "1,4", "-modes", "simple",
		"-stream", "1MiB,4MiB", "-stream-reps", "1", "-systems", "direct,pgbouncer",
		"-results", t.TempDir(), "-workdir", filepath.Join(t.TempDir(), "work"),
	})
	if err != nil {
		t.Fatal(err)
	}
	// PgBouncer is installed by `make bench-deps`; without it the run still
	// exercises every code path with the other systems.
	if _, err := exec.LookPath(c.pgbouncer); err != nil {
		t.Logf("no %s on PATH: measuring without PgBouncer", c.pgbouncer)
		c.systems = []string{"direct"}
	}
	if _, err := os.Stat("../../bin/phigate"); err == nil {
		c.phigate = "../../bin/phigate"
		c.systems = append(c.systems, "phigate")
	}
	return c
}

func TestBenchmarkEndToEnd(t *testing.T) {
	cfg := shortConfig(t)
	// Another program's section, which the README's new top must keep.
	other := "<!-- bench/other: begin (written by go run ./bench/other) -->\nkept\n<!-- bench/other: end -->\n"
	if err := os.WriteFile(filepath.Join(cfg.out, "README.md"), []byte("# old top\n\n"+other), 0o644); err != nil {
		t.Fatal(err)
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
	if !strings.HasSuffix(string(readme), "\n\n"+other) || strings.Contains(string(readme), "old top") ||
		!strings.Contains(string(readme), "`ci/` (not committed) is written by `make bench-ci`") {
		t.Errorf("README.md lost another program's section, kept the old top or lost the ci/ sentence:\n%s", readme)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.out, "*.json"))
	// 2 workloads x 2 client counts x (tps, p50, p99) + 2 stream sizes (+ RSS with phigate)
	want := 2*2*3 + 2 + 1 // and disk-fsync
	if len(cfg.systems) == 3 {
		want++
	}
	if len(files) != want {
		t.Fatalf("%d result files, want %d: %v", len(files), want, files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r bench.Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Name+".json" != filepath.Base(f) || r.Unit == "" || r.Time.IsZero() {
			t.Errorf("%s: bad result %+v", f, r)
		}
		if !strings.Contains(string(readme), "`"+filepath.Base(f)+"`") {
			t.Errorf("README.md does not explain %s", filepath.Base(f))
		}
		if r.Name == "phigate-peak-rss" || r.Name == "disk-fsync" {
			continue
		}
		for _, s := range cfg.systems {
			if v, ok := r.Values[s]; !ok || v <= 0 {
				t.Errorf("%s: %s = %v", r.Name, s, v)
			}
		}
		if strings.HasSuffix(r.Name, "-tps") != r.HigherIsBetter && !strings.HasSuffix(r.Name, "-throughput") {
			t.Errorf("%s: higher_is_better = %v", r.Name, r.HigherIsBetter)
		}
	}
}

// TestInterruptLeavesNothingRunning cancels a run (as Ctrl-C does) in the
// middle of its pgbench runs.
func TestInterruptLeavesNothingRunning(t *testing.T) {
	cfg := shortConfig(t)
	cfg.duration = 30 * time.Second // cut short by the cancel
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()
	logs := filepath.Join(cfg.workdir, "logs")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(logs); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before its pgbench runs: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("no pgbench run started within two minutes")
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run returned %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("run did not return within two minutes of the interrupt")
	}
	if left := harness.ProcessesUnder(cfg.workdir); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
}
