package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phigate/phigate/bench"
)

// Baseline is the committed file of checks (bench/gate/baseline.json).
type Baseline struct {
	// Notes says how the limits were chosen: the runs they come from and
	// the margin, so that the next person can redo it.
	Notes string `json:"notes"`
	// Run is the bench/pg command line the limits were measured with; a
	// run with other flags is not comparable (the gate prints it).
	Run    string  `json:"run"`
	Checks []Check `json:"checks"`
}

// Check is one ratio that must not regress. Exactly one of Floor and
// Ceiling is set: a floor for a figure where higher is better
// (throughput), a ceiling where lower is better (latency).
type Check struct {
	// Figure names the result file, <Figure>.json in each run's directory.
	Figure string `json:"figure"`
	// Ratio is a key of the result's values, "a/b": phigate's figure over
	// a peer's from the same run. When the result lacks the key it is
	// computed from values a and b.
	Ratio   string  `json:"ratio"`
	Floor   float64 `json:"floor,omitempty"`
	Ceiling float64 `json:"ceiling,omitempty"`
	// Typical is the median of the calibration runs, and Measured each
	// calibration run's ratio: for the table and for whoever moves a limit.
	Typical  float64   `json:"typical,omitempty"`
	Measured []float64 `json:"measured,omitempty"`
}

func (c Check) limit() string {
	if c.Floor > 0 {
		return fmt.Sprintf(">= %.3f", c.Floor)
	}
	return fmt.Sprintf("<= %.3f", c.Ceiling)
}

// LoadBaseline reads and validates a baseline file.
func LoadBaseline(path string) (Baseline, error) {
	var b Baseline
	raw, err := os.ReadFile(path)
	if err != nil {
		return b, fmt.Errorf("gate: baseline: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("gate: baseline %s: %w", path, err)
	}
	if len(b.Checks) == 0 {
		return b, fmt.Errorf("gate: baseline %s: no checks", path)
	}
	seen := map[string]bool{}
	for i, c := range b.Checks {
		id := c.Figure + " " + c.Ratio
		switch {
		case c.Figure == "" || c.Ratio == "":
			return b, fmt.Errorf("gate: baseline %s: check %d: figure and ratio are required", path, i+1)
		case (c.Floor > 0) == (c.Ceiling > 0):
			return b, fmt.Errorf("gate: baseline %s: %s: exactly one of floor and ceiling, above 0", path, id)
		case seen[id]:
			return b, fmt.Errorf("gate: baseline %s: %s listed twice", path, id)
		}
		seen[id] = true
	}
	return b, nil
}

// Status is a check's verdict.
type Status string

const (
	Pass      Status = "ok"
	Regressed Status = "REGRESSED"
	Missing   Status = "MISSING"
)

// Outcome is one check against the runs.
type Outcome struct {
	Check
	// Rounds is the ratio in each run directory, in the order given; NaN
	// where it is missing (JSON: null).
	Rounds []float64 `json:"-"`
	// Used names the run directories the ratio was found in, those Now is
	// taken over.
	Used []string `json:"used"`
	// Now is the median of the rounds that have the ratio: one run
	// disturbed by the machine moves it less than it moves a mean.
	Now    float64 `json:"-"`
	Status Status  `json:"status"`
	// Problems says why a figure is missing, per run.
	Problems []string `json:"problems,omitempty"`
}

// MarshalJSON writes NaN as null, which encoding/json refuses to write.
func (o Outcome) MarshalJSON() ([]byte, error) {
	type plain Outcome
	rounds := make([]*float64, len(o.Rounds))
	for i := range o.Rounds {
		if !math.IsNaN(o.Rounds[i]) {
			rounds[i] = &o.Rounds[i]
		}
	}
	var now *float64
	if !math.IsNaN(o.Now) {
		now = &o.Now
	}
	return json.Marshal(struct {
		plain
		Rounds []*float64 `json:"rounds"`
		Now    *float64   `json:"now"`
	}{plain(o), rounds, now})
}

// Report is the gate's verdict over a set of runs.
type Report struct {
	Time     time.Time `json:"time"`
	Baseline string    `json:"baseline"`
	Run      string    `json:"run"`
	Dirs     []string  `json:"dirs"`
	// MinRounds is how many runs must have a figure for its check to be
	// judged.
	MinRounds int       `json:"min_rounds"`
	Outcomes  []Outcome `json:"checks"`
	Pass      bool      `json:"pass"`
}

// Evaluate checks every ratio of b in the runs under dirs (one directory
// of bench/pg results per run), on the median over the runs that have it.
// A run that lost a figure (a pgbench run that failed on a machine
// overloaded for a moment) leaves the others to judge it; but a figure
// found in fewer than minRounds runs makes its check Missing: the
// benchmark broke, and a median of one run is not one to trust. Either
// way the report names the runs used and says why the others are missing.
func Evaluate(b Baseline, dirs []string, minRounds int) Report {
	minRounds = max(minRounds, 1)
	rep := Report{Run: b.Run, Dirs: dirs, MinRounds: minRounds, Pass: true}
	for _, c := range b.Checks {
		o := Outcome{Check: c, Status: Pass, Now: math.NaN()}
		var got []float64
		for _, dir := range dirs {
			v, err := readRatio(dir, c)
			if err != nil {
				o.Problems = append(o.Problems, err.Error())
				v = math.NaN()
			} else {
				got = append(got, v)
				o.Used = append(o.Used, dir)
			}
			o.Rounds = append(o.Rounds, v)
		}
		if len(got) > 0 {
			o.Now = median(got)
		}
		switch {
		case len(got) < minRounds:
			o.Status = Missing
		case (c.Floor > 0 && o.Now < c.Floor) || (c.Ceiling > 0 && o.Now > c.Ceiling):
			o.Status = Regressed
		}
		if o.Status != Pass {
			rep.Pass = false
		}
		rep.Outcomes = append(rep.Outcomes, o)
	}
	return rep
}

// readRatio reads c's ratio from dir/<figure>.json, computing a/b from the
// values a and b when the result has no such key.
func readRatio(dir string, c Check) (float64, error) {
	path := filepath.Join(dir, c.Figure+".json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%s: no such figure", path)
	}
	if err != nil {
		return 0, err
	}
	var r bench.Result
	if err := json.Unmarshal(raw, &r); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	// A floor on a lower-is-better figure would pass a regression.
	if (c.Floor > 0 && !r.HigherIsBetter) || (c.Ceiling > 0 && r.HigherIsBetter) {
		return 0, fmt.Errorf("%s: the baseline's %s does not suit a figure whose higher_is_better is %v", path, c.limit(), r.HigherIsBetter)
	}
	v, ok := r.Values[c.Ratio]
	if !ok {
		a, b, isRatio := strings.Cut(c.Ratio, "/")
		x, okA := r.Values[a]
		y, okB := r.Values[b]
		if !isRatio || !okA || !okB || y == 0 {
			return 0, fmt.Errorf("%s: no %q, and no values to compute it from", path, c.Ratio)
		}
		v = x / y
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, fmt.Errorf("%s: %s is %v", path, c.Ratio, v)
	}
	return v, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Print writes the table: one row per check, every run's ratio, the
// median, the limit, and the verdict; then the checks judged on fewer
// runs than given, and which; then what went missing, and why.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "bench gate: %d round(s), each check judged on the median of the rounds that have its figure, at least %d; ratios of phigate to a peer measured in the same round, never an absolute time\n",
		len(r.Dirs), r.MinRounds)
	if r.Run != "" {
		fmt.Fprintf(w, "limits measured with: %s\n", r.Run)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tratio\tper round\tnow (median)\tlimit\ttypical\tresult")
	for _, o := range r.Outcomes {
		per := make([]string, len(o.Rounds))
		for i, v := range o.Rounds {
			per[i] = fmtRatio(v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Figure, o.Ratio, strings.Join(per, " "),
			fmtRatio(o.Now), o.limit(), fmtRatio(o.Typical), o.Status)
	}
	tw.Flush()
	for _, o := range r.Outcomes {
		if len(o.Used) < len(r.Dirs) {
			used := "none"
			if len(o.Used) > 0 {
				used = strings.Join(o.Used, ", ")
			}
			fmt.Fprintf(w, "%s %s %s: %d of %d rounds have it: %s\n", o.Status, o.Figure, o.Ratio, len(o.Used), len(r.Dirs), used)
		}
		for _, p := range o.Problems {
			fmt.Fprintf(w, "%s %s %s: %s\n", o.Status, o.Figure, o.Ratio, p)
		}
	}
	fmt.Fprintln(w)
	switch n := r.count(Regressed); {
	case r.Pass:
		fmt.Fprintln(w, "bench gate: pass")
	case n > 0:
		fmt.Fprintf(w, "bench gate: FAIL: %d ratio(s) regressed beyond the noise band, %d figure(s) missing\n", n, r.count(Missing))
	default:
		fmt.Fprintf(w, "bench gate: FAIL: %d figure(s) missing from more than %d round(s): the benchmark did not produce them\n",
			r.count(Missing), len(r.Dirs)-r.MinRounds)
	}
}

func (r Report) count(s Status) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Status == s {
			n++
		}
	}
	return n
}

func fmtRatio(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}
