package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// Expectation is one line of the expectations file: a test that is known
// and meant to behave differently through phigate, and why.
type Expectation struct {
	Suite  string
	Test   string // a test ID; it covers the test and all its subtests
	Reason string
	Line   int
}

// ParseExpectations reads the expectations file: one entry a line,
// "suites  test-id  reason", fields separated by white space, the reason
// being the rest of the line, suites one name or several joined by commas;
// blank lines and lines starting with # are comments.
func ParseExpectations(r io.Reader) ([]Expectation, error) {
	var out []Expectation
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("expectations line %d: want \"suite test reason\", got %q", n, line)
		}
		if !strings.Contains(f[1], ".") {
			return nil, fmt.Errorf("expectations line %d: %q is not a test ID (package.TestName)", n, f[1])
		}
		reason := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, f[0])), f[1]))
		for _, suite := range strings.Split(f[0], ",") {
			key := suite + " " + f[1]
			if prev, ok := seen[key]; ok {
				return nil, fmt.Errorf("expectations line %d: %s already listed on line %d", n, key, prev)
			}
			seen[key] = n
			out = append(out, Expectation{Suite: suite, Test: f[1], Reason: reason, Line: n})
		}
	}
	return out, sc.Err()
}

// Ancestors returns id's enclosing tests, innermost first, ending with its
// package: "p.T/a/b" -> "p.T/a", "p.T", "p".
func Ancestors(id string) []string {
	var out []string
	for {
		i := strings.LastIndexByte(id, '/')
		dot := strings.IndexByte(id, '.')
		if i < 0 || i < dot {
			break
		}
		id = id[:i]
		out = append(out, id)
	}
	if dot := strings.IndexByte(id, '.'); dot > 0 {
		out = append(out, id[:dot])
	}
	return out
}

// Difference is a test that passed directly and did not pass through phigate.
type Difference struct {
	ID      string
	Phigate *Result
	// Expected is the entry that explains it; nil if none does.
	Expected *Expectation
	// BySubtests: not listed itself, but every subtest of it that differs is,
	// and it reported no failure of its own: it failed because they did.
	BySubtests bool
}

// Comparison is one suite's two legs side by side.
type Comparison struct {
	Suite         string
	Tests         int // distinct tests seen in either leg
	PassedDirect  int
	PassedPhigate int // all tests that passed through phigate
	PassedBoth    int // of those passing directly, how many passed through phigate too
	Differences   []Difference
	Stale         []Expectation // listed, but the test now passes through phigate
	NotCompared   []Expectation // listed, but the test did not pass directly (or did not run)
	// PackageFailures are packages that passed directly and failed through
	// phigate for a reason of their own (TestMain, a panic, a timeout), not
	// only because some of their tests failed.
	PackageFailures []string
	expectedByEntry map[*Expectation]int
}

// Compare checks that every test passing in direct passes in phigate, unless
// exps (this suite's entries) explain it.
func Compare(suite string, direct, phigate Results, exps []Expectation) *Comparison {
	c := &Comparison{Suite: suite, expectedByEntry: map[*Expectation]int{}}
	all := map[string]bool{}
	for _, id := range direct.Tests() {
		all[id] = true
	}
	for _, id := range phigate.Tests() {
		all[id] = true
	}
	c.Tests = len(all)
	c.PassedDirect = direct.Count(Pass)
	c.PassedPhigate = phigate.Count(Pass)

	byTest := map[string]*Expectation{}
	for i := range exps {
		byTest[exps[i].Test] = &exps[i]
	}
	covering := func(id string) *Expectation {
		if e := byTest[id]; e != nil {
			return e
		}
		for _, a := range Ancestors(id) {
			if e := byTest[a]; e != nil {
				return e
			}
		}
		return nil
	}

	differs := map[string]bool{}
	for _, id := range direct.Tests() {
		if direct[id].Outcome != Pass {
			continue
		}
		p := phigate.Get(id)
		if p.Outcome == Pass {
			c.PassedBoth++
			continue
		}
		differs[id] = true
		d := Difference{ID: id, Phigate: p, Expected: covering(id)}
		if d.Expected != nil {
			c.expectedByEntry[d.Expected]++
		}
		c.Differences = append(c.Differences, d)
	}
	// A parent that failed only because of its listed subtests is explained
	// by them. Deepest first, so a chain of parents resolves bottom-up.
	sort.Slice(c.Differences, func(i, j int) bool {
		return strings.Count(c.Differences[i].ID, "/") > strings.Count(c.Differences[j].ID, "/")
	})
	explained := map[string]bool{}
	for i := range c.Differences {
		d := &c.Differences[i]
		if d.Expected != nil {
			explained[d.ID] = true
			continue
		}
		children, allExplained := 0, true
		for other := range differs {
			if strings.HasPrefix(other, d.ID+"/") {
				children++
				if !explained[other] {
					allExplained = false
				}
			}
		}
		if children > 0 && allExplained && !ownFailure(d.Phigate) {
			d.BySubtests = true
			explained[d.ID] = true
		}
	}
	sort.Slice(c.Differences, func(i, j int) bool { return c.Differences[i].ID < c.Differences[j].ID })

	// Packages: one that passed directly but not through phigate is
	// explained by its failing tests only if it said nothing of its own.
	for id, r := range direct {
		if !IsPackage(id) || r.Outcome != Pass {
			continue
		}
		p := phigate.Get(id)
		if p.Outcome == Pass {
			continue
		}
		failing := false
		for t := range differs {
			if strings.HasPrefix(t, id+".") {
				failing = true
				break
			}
		}
		if !failing || (!p.Resumed && packageOwnFailure(p)) {
			c.PackageFailures = append(c.PackageFailures, id)
		}
	}
	sort.Strings(c.PackageFailures)

	for i := range exps {
		e := &exps[i]
		if c.expectedByEntry[e] > 0 {
			continue
		}
		matched, passesBoth := false, false
		for _, id := range direct.Tests() {
			if id != e.Test && !strings.HasPrefix(id, e.Test+"/") {
				continue
			}
			matched = true
			if direct[id].Outcome == Pass && phigate.Get(id).Outcome == Pass {
				passesBoth = true
			}
		}
		if matched && passesBoth {
			c.Stale = append(c.Stale, *e)
		} else {
			c.NotCompared = append(c.NotCompared, *e)
		}
	}
	return c
}

// goFailLine matches what t.Error/t.Fatal/t.Log print: "    file_test.go:12: ...".
var goFailLine = regexp.MustCompile(`^\s*\S+\.go:\d+: `)

// ownFailure reports whether a test printed a failure of its own (as
// opposed to failing because a subtest did). Log lines look the same as
// error lines, so a test that logs is treated as failing on its own: the
// safe side.
func ownFailure(r *Result) bool {
	for _, l := range r.Output {
		if goFailLine.MatchString(l) || strings.Contains(l, "panic:") {
			return true
		}
	}
	return r.Outcome != Fail // skipped, incomplete or missing: not explained by subtests
}

var exitStatusLine = regexp.MustCompile(`^exit status \d+$`)

// packageOwnFailure reports whether a package printed something outside its
// tests (TestMain's complaints, a panic, a timeout) besides its exit status.
func packageOwnFailure(r *Result) bool {
	if r.Outcome != Fail {
		return true
	}
	for _, l := range r.Output {
		if !exitStatusLine.MatchString(strings.TrimSpace(l)) {
			return true
		}
	}
	return false
}

// Unexpected returns the differences no entry explains.
func (c *Comparison) Unexpected() []Difference {
	var out []Difference
	for _, d := range c.Differences {
		if d.Expected == nil && !d.BySubtests {
			out = append(out, d)
		}
	}
	return out
}

// ExpectedCount is how many differences the expectations explain.
func (c *Comparison) ExpectedCount() int { return len(c.Differences) - len(c.Unexpected()) }

// OK reports whether the suite has no unexpected difference (and, if
// strict, no stale entry).
func (c *Comparison) OK(strict bool) bool {
	return len(c.Unexpected()) == 0 && len(c.PackageFailures) == 0 && (!strict || len(c.Stale) == 0)
}
