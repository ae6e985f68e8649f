package main

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the whole run's outcome.
type report struct {
	Phigate  string
	Postgres string
	Run      string
	Suites   []*suiteReport
	Elapsed  time.Duration
}

// OK reports whether no suite has an unexpected difference.
func (r *report) OK(strict bool) bool {
	for _, s := range r.Suites {
		if !s.Comparison.OK(strict) || len(s.Crashes) > 0 {
			return false
		}
	}
	return true
}

// File is the summary kept under --results: the table, the expected
// differences by entry and the unexpected ones by name, no test output.
func (r *report) File() string { return r.render(false, false) }

// String is what is printed: the summary, with the last output lines of
// each unexpected difference (and, if verbose, every expected difference
// by name with its output).
func (r *report) String(verbose bool) string { return r.render(true, verbose) }

func (r *report) render(output, verbose bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Client test suites, directly and through phigate (make test-clients)\n")
	fmt.Fprintf(&b, "%s; PostgreSQL %s; %s on %s/%s, %d CPUs; go test -p 1\n",
		r.Phigate, r.Postgres, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if r.Run != "" {
		fmt.Fprintf(&b, "partial run: -run %q\n", r.Run)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "suite\ttests\tpassed directly\tof those, through phigate\texpected differences\tunexpected\tflaky\tstale entries\tdirect\tphigate")
	for _, s := range r.Suites {
		unexpected := len(s.Unexpected()) + len(s.PackageFailures)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Tests, s.PassedDirect, s.PassedBoth,
			s.ExpectedCount(), unexpected, len(s.Flaky), len(s.Stale),
			s.Legs[Direct].Round(time.Second), s.Legs[Phigate].Round(time.Second))
	}
	tw.Flush()
	fmt.Fprintf(&b, "\ntotal %s\n", r.Elapsed.Round(time.Second))

	for _, s := range r.Suites {
		fmt.Fprintf(&b, "\n== %s: %s@%s (%s)\n", s.Name, s.Module, s.Version, strings.Join(s.Packages, " "))
		if len(s.ExtraEnv) > 0 {
			fmt.Fprintf(&b, "   with %s\n", strings.Join(s.ExtraEnv, " "))
		}
		if s.HostsNote != "" {
			fmt.Fprintf(&b, "   note: %s\n", s.HostsNote)
		}
		if s.NotRun != "" {
			fmt.Fprintf(&b, "   not run in either leg (the suite's CI has them, this machine has not): %s\n", s.NotRun)
		}
		// Expected differences, by the entry that explains them.
		type group struct {
			e   *Expectation
			ids []string
		}
		groups := map[string]*group{}
		var bySub []string
		for _, d := range s.Differences {
			switch {
			case d.Expected != nil:
				g := groups[d.Expected.Test]
				if g == nil {
					g = &group{e: d.Expected}
					groups[d.Expected.Test] = g
				}
				g.ids = append(g.ids, d.ID+" ("+string(d.Phigate.Outcome)+")")
			case d.BySubtests:
				bySub = append(bySub, d.ID)
			}
		}
		if len(groups) > 0 || len(bySub) > 0 {
			fmt.Fprintf(&b, "expected differences (%d):\n", s.ExpectedCount())
			keys := make([]string, 0, len(groups))
			for k := range groups {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				g := groups[k]
				n := ""
				if len(g.ids) > 1 {
					n = fmt.Sprintf(" (%d tests)", len(g.ids))
				}
				fmt.Fprintf(&b, "  %s%s: %s\n", g.e.Test, n, g.e.Reason)
				if !verbose {
					continue
				}
				for _, id := range g.ids {
					fmt.Fprintf(&b, "      %s\n", id)
				}
				if output {
					for _, d := range s.Differences {
						if d.Expected == g.e {
							writeOutput(&b, s.redact, d)
						}
					}
				}
			}
			if len(bySub) > 0 {
				fmt.Fprintf(&b, "  failed only because listed subtests did: %s\n", strings.Join(bySub, ", "))
			}
		}
		if u := s.Unexpected(); len(u) > 0 || len(s.PackageFailures) > 0 {
			fmt.Fprintf(&b, "UNEXPECTED differences (%d): passed directly, not through phigate:\n", len(u)+len(s.PackageFailures))
			// By top-level test, with the output of its first difference
			// that said something.
			var tops []string
			byTop := map[string][]Difference{}
			for _, d := range u {
				top := topLevel([]Difference{d})[0]
				if byTop[top] == nil {
					tops = append(tops, top)
				}
				byTop[top] = append(byTop[top], d)
			}
			for i, top := range tops {
				if !output && i == maxListed {
					fmt.Fprintf(&b, "  ... and %d more top-level tests\n", len(tops)-maxListed)
					break
				}
				ds := byTop[top]
				outcome := string(ds[0].Phigate.Outcome)
				if ds[0].ID != top {
					outcome = "subtests"
				}
				var subs []string
				for _, d := range ds {
					if d.ID != top {
						subs = append(subs, strings.TrimPrefix(d.ID, top))
					}
				}
				more := ""
				switch {
				case len(subs) > 0 && len(subs) <= 3:
					more = " (" + strings.Join(subs, ", ") + ")"
				case len(subs) > 3:
					more = fmt.Sprintf(" (%d subtests)", len(subs))
				}
				fmt.Fprintf(&b, "  %s: %s%s\n", top, outcome, more)
				if output {
					for _, d := range ds {
						if len(d.Phigate.Output) > 0 {
							if d.ID != top {
								fmt.Fprintf(&b, "      %s:\n", d.ID)
							}
							writeOutput(&b, s.redact, d)
							break
						}
					}
				}
			}
			for _, p := range s.PackageFailures {
				fmt.Fprintf(&b, "  package %s failed through phigate beyond its tests\n", p)
			}
		}
		if len(s.Flaky) > 0 {
			fmt.Fprintf(&b, "flaky: failed through phigate, then passed on a retry: %s\n", strings.Join(s.Flaky, ", "))
		}
		for _, c := range s.Crashes {
			fmt.Fprintf(&b, "THE PHIGATE NODE CRASHED (restarted; tests after it may have failed for that):\n")
			for _, l := range strings.Split(c, "\n") {
				fmt.Fprintf(&b, "    %s\n", s.redact(l))
			}
		}
		for _, e := range s.Stale {
			fmt.Fprintf(&b, "stale entry (line %d): %s now passes through phigate\n", e.Line, e.Test)
		}
		for _, e := range s.NotCompared {
			fmt.Fprintf(&b, "entry not compared (line %d): %s did not pass directly in this run\n", e.Line, e.Test)
		}
	}
	return b.String()
}

// maxListed caps the top-level tests with unexpected differences the
// summary file names per suite: a broken build should not make it huge.
const maxListed = 40

func writeOutput(b *strings.Builder, redact func(string) string, d Difference) {
	lines := d.Phigate.Output
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	for _, l := range lines {
		fmt.Fprintf(b, "        | %s\n", redact(l))
	}
}
