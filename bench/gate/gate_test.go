package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The runs under testdata are bench/pg results in its own format, with
// made-up numbers; testdata/baseline.json puts a floor of 0.10 on the
// throughput ratio and a ceiling of 20 on the median latency ratio.

func rounds(set string, n int) []string {
	var dirs []string
	for i := 1; i <= n; i++ {
		dirs = append(dirs, filepath.Join("testdata", set, "round-"+strconv.Itoa(i)))
	}
	return dirs
}

func testBaseline(t *testing.T) Baseline {
	t.Helper()
	b, err := LoadBaseline("testdata/baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func outcome(t *testing.T, rep Report, figure string) Outcome {
	t.Helper()
	for _, o := range rep.Outcomes {
		if o.Figure == figure {
			return o
		}
	}
	t.Fatalf("no outcome for %s", figure)
	return Outcome{}
}

const (
	tpsFigure = "pgbench-select-only-simple-c16-tps"
	p50Figure = "pgbench-select-only-simple-c16-p50"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestEvaluatePassOnTheMedian(t *testing.T) {
	rep := Evaluate(testBaseline(t), rounds("pass", 3), 2)
	if !rep.Pass {
		t.Fatalf("want pass, got %+v", rep.Outcomes)
	}
	// Round 2's throughput ratio (0.08) is below the floor; the median of
	// 0.15, 0.08 and 0.14 is not.
	tps := outcome(t, rep, tpsFigure)
	if tps.Status != Pass || !near(tps.Now, 0.14) || !near(tps.Rounds[1], 0.08) {
		t.Errorf("throughput: %+v", tps)
	}
	// The latency files have no phigate/pgbouncer key: 4/0.5, 9/0.5, 5/0.5.
	p50 := outcome(t, rep, p50Figure)
	if p50.Status != Pass || !near(p50.Now, 10) || !near(p50.Rounds[1], 18) {
		t.Errorf("latency: %+v", p50)
	}
}

func TestEvaluateRegression(t *testing.T) {
	rep := Evaluate(testBaseline(t), rounds("regressed", 3), 2)
	if rep.Pass {
		t.Fatal("a throughput ratio of 0.07 against a floor of 0.10 passed")
	}
	if o := outcome(t, rep, tpsFigure); o.Status != Regressed || !near(o.Now, 0.07) {
		t.Errorf("throughput: %+v", o)
	}
	if o := outcome(t, rep, p50Figure); o.Status != Pass {
		t.Errorf("latency: %+v", o)
	}

	rep = Evaluate(testBaseline(t), rounds("slower", 1), 1)
	if o := outcome(t, rep, p50Figure); rep.Pass || o.Status != Regressed || !near(o.Now, 24) {
		t.Errorf("a latency ratio of 24 against a ceiling of 20: %+v", o)
	}
}

func TestEvaluateMissingFigure(t *testing.T) {
	rep := Evaluate(testBaseline(t), rounds("missing", 2), 2)
	if rep.Pass {
		t.Fatal("a figure missing from one run passed")
	}
	o := outcome(t, rep, p50Figure)
	if o.Status != Missing || len(o.Problems) != 1 || !strings.Contains(o.Problems[0], "round-2") || !math.IsNaN(o.Rounds[1]) {
		t.Errorf("latency: %+v", o)
	}
	if o := outcome(t, rep, tpsFigure); o.Status != Pass {
		t.Errorf("throughput: %+v", o)
	}
	// A directory with nothing in it (bench/pg failed before writing).
	rep = Evaluate(testBaseline(t), []string{t.TempDir()}, 1)
	for _, o := range rep.Outcomes {
		if o.Status != Missing {
			t.Errorf("%s in an empty directory: %s", o.Figure, o.Status)
		}
	}
}

// TestEvaluateOneBadRound: a round that lost figures (pgbench failed in it)
// leaves the others to judge them, and the report says which rounds were
// used; a regression in the rounds left still fails, and so does a figure
// left in fewer rounds than required.
func TestEvaluateOneBadRound(t *testing.T) {
	// Round 2 has its throughput figure but lost its latency figure.
	partial := t.TempDir()
	raw, err := os.ReadFile(filepath.Join("testdata", "pass", "round-2", tpsFigure+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, tpsFigure+".json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	dirs := rounds("pass", 3)
	dirs[1] = partial
	rep := Evaluate(testBaseline(t), dirs, 2)
	if !rep.Pass {
		t.Fatalf("one round without a latency figure failed the gate: %+v", rep.Outcomes)
	}
	if o := outcome(t, rep, tpsFigure); o.Status != Pass || len(o.Used) != 3 || !near(o.Now, 0.14) {
		t.Errorf("throughput, in every round: %+v", o)
	}
	// The latency ratio over rounds 1 and 3: 8 and 10.
	p50 := outcome(t, rep, p50Figure)
	if p50.Status != Pass || !near(p50.Now, 9) || len(p50.Used) != 2 || p50.Used[0] != dirs[0] || p50.Used[1] != dirs[2] ||
		!math.IsNaN(p50.Rounds[1]) || len(p50.Problems) != 1 || !strings.Contains(p50.Problems[0], partial) {
		t.Errorf("latency, missing from round 2: %+v", p50)
	}
	var out bytes.Buffer
	rep.Print(&out)
	if !strings.Contains(out.String(), "2 of 3 rounds have it: "+dirs[0]+", "+dirs[2]) || !strings.Contains(out.String(), "bench gate: pass") {
		t.Errorf("the report does not say which rounds were used:\n%s", out.String())
	}

	// A round with nothing in it beside two that regressed.
	dirs = rounds("regressed", 2)
	dirs = append(dirs, t.TempDir())
	rep = Evaluate(testBaseline(t), dirs, 2)
	if o := outcome(t, rep, tpsFigure); rep.Pass || o.Status != Regressed || !near(o.Now, 0.065) || len(o.Used) != 2 {
		t.Errorf("a regression beside an empty round: %+v", o)
	}

	// Two empty rounds of three: one left is not enough.
	rep = Evaluate(testBaseline(t), []string{dirs[0], t.TempDir(), t.TempDir()}, 2)
	for _, o := range rep.Outcomes {
		if o.Status != Missing || len(o.Used) != 1 || math.IsNaN(o.Now) {
			t.Errorf("%s in one round of three: %+v", o.Figure, o)
		}
	}
	if rep.Pass {
		t.Error("figures in one round of three passed")
	}
}

func TestEvaluateLimitAgainstDirection(t *testing.T) {
	b := testBaseline(t)
	b.Checks[1].Floor, b.Checks[1].Ceiling = 5, 0 // a floor on a latency
	rep := Evaluate(b, rounds("pass", 3), 2)
	if o := outcome(t, rep, p50Figure); rep.Pass || o.Status == Pass || !strings.Contains(o.Problems[0], "higher_is_better") {
		t.Errorf("a floor on a lower-is-better figure: %+v", o)
	}
}

func TestRunExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		says string
	}{
		{rounds("pass", 3), 0, "bench gate: pass"},
		{rounds("regressed", 3), 1, "REGRESSED"},
		{append([]string{"-min-rounds", "1"}, rounds("slower", 1)...), 1, "REGRESSED"},
		{rounds("slower", 1), 1, "figure(s) missing"}, // one round is not enough by default
		{append([]string{"-min-rounds", "0"}, rounds("pass", 3)...), 2, "usage"},
		{rounds("missing", 2), 1, "figure(s) missing"},
		{nil, 2, "usage"},
		{[]string{"-baseline", "testdata/nonexistent.json", "testdata/pass/round-1"}, 2, "baseline"},
	} {
		var stdout, stderr bytes.Buffer
		args := tc.args
		if len(args) > 0 && args[0] != "-baseline" {
			args = append([]string{"-baseline", "testdata/baseline.json"}, args...)
		}
		got := run(args, &stdout, &stderr)
		if got != tc.want || !strings.Contains(stdout.String()+stderr.String(), tc.says) {
			t.Errorf("gate %v: exit %d, want %d saying %q\n%s%s", tc.args, got, tc.want, tc.says, stdout.String(), stderr.String())
		}
	}
}

func TestRunWritesJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ci", "gate.json")
	var stdout, stderr bytes.Buffer
	args := append([]string{"-baseline", "testdata/baseline.json", "-out", out}, rounds("missing", 2)...)
	if got := run(args, &stdout, &stderr); got != 1 {
		t.Fatalf("exit %d\n%s%s", got, stdout.String(), stderr.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Pass   bool `json:"pass"`
		Checks []struct {
			Figure string     `json:"figure"`
			Status Status     `json:"status"`
			Rounds []*float64 `json:"rounds"`
			Now    *float64   `json:"now"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if rep.Pass || len(rep.Checks) != 2 {
		t.Fatalf("%s", raw)
	}
	p50 := rep.Checks[1]
	if p50.Status != Missing || len(p50.Rounds) != 2 || p50.Rounds[0] == nil || p50.Rounds[1] != nil {
		t.Errorf("the missing round is not null: %s", raw)
	}
}

func TestLoadBaselineRejects(t *testing.T) {
	for name, body := range map[string]string{
		"no checks":        `{"checks": []}`,
		"no limit":         `{"checks": [{"figure": "f", "ratio": "a/b"}]}`,
		"two limits":       `{"checks": [{"figure": "f", "ratio": "a/b", "floor": 1, "ceiling": 2}]}`,
		"no ratio":         `{"checks": [{"figure": "f", "floor": 1}]}`,
		"listed twice":     `{"checks": [{"figure": "f", "ratio": "a/b", "floor": 1}, {"figure": "f", "ratio": "a/b", "floor": 2}]}`,
		"misspelled field": `{"checks": [{"figure": "f", "ratio": "a/b", "flor": 1}]}`,
	} {
		path := filepath.Join(t.TempDir(), "baseline.json")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadBaseline(path); err == nil {
			t.Errorf("%s: accepted %s", name, body)
		}
	}
}

// The committed baseline must load, and name figures bench/pg writes for
// the flags of `make bench-ci`.
func TestCommittedBaseline(t *testing.T) {
	b, err := LoadBaseline("baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.Checks {
		if !strings.HasPrefix(c.Figure, "pgbench-") || !strings.Contains(c.Figure, "-c16-") {
			t.Errorf("%s: not a figure of make bench-ci", c.Figure)
		}
		if c.Typical > 0 && (c.Floor > 0 && c.Typical <= c.Floor || c.Ceiling > 0 && c.Typical >= c.Ceiling) {
			t.Errorf("%s %s: the typical ratio %.3f is already past its limit", c.Figure, c.Ratio, c.Typical)
		}
	}
}
