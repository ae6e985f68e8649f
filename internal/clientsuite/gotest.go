package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Outcome is how one test (or one package) ended in one leg.
type Outcome string

const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip"
	// Incomplete: the test started but never reported an end (its package
	// panicked, timed out or was killed).
	Incomplete Outcome = "incomplete"
	// Missing: the test did not run in this leg at all.
	Missing Outcome = "missing"
)

// maxOutputLines bounds the output kept per test: enough to see why a test
// failed, not a log archive (the raw JSON stays in the work directory).
const maxOutputLines = 40

// Result is one test's end in one leg.
type Result struct {
	Outcome Outcome
	Elapsed time.Duration
	// Output holds the test's last output lines (framing lines excluded).
	Output []string
	// Resumed marks a package whose test binary died and whose unfinished
	// tests were run again one by one: its own result and output then
	// mix several processes and say nothing beyond its tests' results.
	Resumed bool
}

// Results maps a test ID to its result. IDs are "<package>.<Test>[/sub...]",
// where <package> is the import path relative to the suite's module (the
// module's root package has the suite's root name); a package's own result
// (TestMain, build failure) has the bare package name as its ID.
type Results map[string]*Result

// testEvent is one line of `go test -json` (cmd/test2json).
type testEvent struct {
	Action     string
	Package    string
	ImportPath string // build-output / build-fail events
	Test       string
	Elapsed    float64
	Output     string
}

// ParseTestJSON reads `go test -json` output. module is the suite's module
// path and root the name its root package gets in test IDs.
func ParseTestJSON(r io.Reader, module, root string) (Results, error) {
	res := Results{}
	started := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue // go command chatter that is not an event
		}
		var ev testEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			continue
		}
		pkg := ev.Package
		if pkg == "" {
			pkg = ev.ImportPath
		}
		if pkg == "" {
			continue
		}
		// A test binary's package is "pkg [pkg.test]" in build events.
		if i := strings.IndexByte(pkg, ' '); i > 0 {
			pkg = pkg[:i]
		}
		id := PackageName(pkg, module, root)
		if ev.Test != "" {
			id += "." + normalizeTestName(ev.Test)
		}
		r := res[id]
		if r == nil {
			r = &Result{Outcome: Missing}
			res[id] = r
		}
		switch ev.Action {
		case "run":
			// A test run again (resumed, retried) starts afresh.
			started[id] = true
			r.Output = nil
		case "pass", "fail", "skip":
			r.Outcome = Outcome(ev.Action)
			r.Elapsed = time.Duration(ev.Elapsed * float64(time.Second))
		case "build-fail":
			r.Outcome = Fail
		case "output", "build-output":
			if !framingLine(ev.Output) {
				r.Output = append(r.Output, strings.TrimRight(ev.Output, "\n"))
				if len(r.Output) > maxOutputLines {
					r.Output = r.Output[len(r.Output)-maxOutputLines:]
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read go test -json: %w", err)
	}
	for id, r := range res {
		if r.Outcome == Missing && started[id] {
			r.Outcome = Incomplete
		}
		if r.Outcome == Missing && len(r.Output) > 0 && !strings.Contains(id, ".") {
			// A package that printed something and never ended (go test
			// killed or failed before the binary ran).
			r.Outcome = Incomplete
		}
	}
	return res, nil
}

// tempDirName matches a t.TempDir path inside a subtest name (pgx names
// some subtests after the service file they wrote there): its random part
// differs from run to run.
var tempDirName = regexp.MustCompile(`(/[^/]*?)\d{6,10}/(\d{3})/`)

// normalizeTestName makes a test's name the same in both legs.
func normalizeTestName(name string) string {
	return tempDirName.ReplaceAllString(name, "${1}*/${2}/")
}

// PackageName is the short name of import path pkg inside module.
func PackageName(pkg, module, root string) string {
	if pkg == module {
		return root
	}
	if rel, ok := strings.CutPrefix(pkg, module+"/"); ok {
		return rel
	}
	return path.Base(pkg)
}

// framingLine reports whether a line is the test framework's own
// bookkeeping rather than something the test said.
func framingLine(s string) bool {
	t := strings.TrimSpace(s)
	if t == "" {
		return true
	}
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- SKIP", "--- FAIL", "PASS", "FAIL", "ok  ", "?   "} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// IsPackage reports whether id names a package result rather than a test.
func IsPackage(id string) bool { return !strings.Contains(id, ".") }

// Tests returns the IDs of tests (not packages), sorted.
func (rs Results) Tests() []string {
	var ids []string
	for id := range rs {
		if !IsPackage(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Count returns how many tests (not packages) ended with o.
func (rs Results) Count(o Outcome) int {
	n := 0
	for id, r := range rs {
		if !IsPackage(id) && r.Outcome == o {
			n++
		}
	}
	return n
}

// Get returns the result for id, Missing if the leg never mentioned it.
func (rs Results) Get(id string) *Result {
	if r := rs[id]; r != nil {
		return r
	}
	return &Result{Outcome: Missing}
}
