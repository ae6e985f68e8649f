package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/bench/harness"
)

// TestBenchmarkEndToEnd runs the benchmark small: a few approvals and
// probes, one short pgbench round, and checks what it writes.
func TestBenchmarkEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and three nodes")
	}
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "README.md"), []byte("# bench/results\n\nfrom bench/pg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"-approvals", "3", "-probes", "3", "-workloads", "select-only", "-rounds", "1",
		"-duration", "1s", "-warmup", "0", "-scale", "1", "-results", out, "-workdir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, resultName+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var r bench.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"roundtrip-p99", "step-use-to-return-p50", "etcd-txn-to-watch-p99",
		"select-only-ruled/plain-tps", "select-only-direct-tps", "fsyncs-per-approval-n2"} {
		if v, ok := r.Values[k]; !ok || v <= 0 {
			t.Errorf("%s: %v (present %v)", k, v, ok)
		}
	}
	// The DELETE may return before the POST's answer does: negative is a
	// measurement, not a fault.
	if _, ok := r.Values["after-answer-p50"]; !ok {
		t.Errorf("after-answer-p50 missing")
	}
	if r.Values["approvals"] != 3 || r.Values["probes"] != 3 {
		t.Errorf("counts: %v approvals, %v probes", r.Values["approvals"], r.Values["probes"])
	}
	readme, err := os.ReadFile(filepath.Join(out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(readme), "# bench/results\n\nfrom bench/pg\n\n"+readmeBegin) || !strings.Contains(string(readme), "`approval.json`") {
		t.Fatalf("README.md:\n%s", readme)
	}
	// A second run replaces its section.
	if err := harness.WriteReadmeSection(out, readmeBegin, readmeEnd, readmeBegin+"\nagain\n"+readmeEnd+"\n"); err != nil {
		t.Fatal(err)
	}
	if readme, _ = os.ReadFile(filepath.Join(out, "README.md")); strings.Count(string(readme), readmeBegin) != 1 || !strings.Contains(string(readme), "again") {
		t.Fatalf("README.md after a second run:\n%s", readme)
	}
}
