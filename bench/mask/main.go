// Command mask measures phigate's PHI masking throughput in MB/s per core,
// side by side in one run with a copy-only pass over the same bytes (the
// physical floor) and a naive baseline built on Go's regexp package, and
// writes the figures as JSON under bench/results/.
//
//	go run ./bench/mask --results bench/results
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/internal/synth"
	"github.com/phigate/phigate/session/mask"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/mask:", err)
		os.Exit(1)
	}
}

type config struct {
	devset   string
	corpora  []string
	out      string
	patients int
	minTime  time.Duration
}

func run(args []string) error {
	var c config
	fs := flag.NewFlagSet("mask", flag.ContinueOnError)
	fs.StringVar(&c.out, "results", "bench/results", "directory for the JSON results")
	fs.IntVar(&c.patients, "patients", 2000, "synthetic patients to build the rows and notes from")
	fs.DurationVar(&c.minTime, "time", 2*time.Second, "minimum measuring time per system")
	fs.StringVar(&c.devset, "devset", "session/mask/testdata/devset", "hand-written notes for the second free-text corpus")
	fs.Func("corpus", "a labelled corpus (JSON Lines, as shared/eval/score_mask.py reads) to score both detection modes on; repeatable", func(v string) error {
		c.corpora = append(c.corpora, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, p := range c.corpora {
		if err := accuracy(p, c.out, c.minTime); err != nil {
			return err
		}
	}
	// One core: the figures are per core.
	runtime.GOMAXPROCS(1)

	rows, notes := workload(c.patients)
	keys := mask.Keys{Pseudonym: bytes.Repeat([]byte("bench-key-"), 4)}
	hipaa, err := mask.Compile("hipaa", mask.HIPAAProfileConfig(), keys)
	if err != nil {
		return err
	}
	rules, err := mask.Compile("rules", mask.ProfileConfig{Rules: []mask.RuleConfig{
		{Column: "patients.first_name", Action: "hash"}, {Column: "patients.last_name", Action: "hash"},
		{Column: "patients.dob", Action: "null"}, {Column: "patients.ssn", Action: "keep-last-4"},
		{Pattern: "phone|email", Action: "redact"}, {Column: "patients.street", Action: "redact"},
		{Column: "patients.zip", Action: "redact"}, {Column: "patients.member_id", Action: "hash"},
		{Column: "patients.notes", Action: "redact"},
	}}, keys)
	if err != nil {
		return err
	}
	cols := patientColumns()

	// Free text: every note is one value of a text column.
	noteCol := []mask.Column{{Source: "public.encounters.notes", Name: "notes", TypeOID: 25, TypeMod: -1}}
	noteBytes := total(notes)
	textCopy := measure(c.minTime, noteBytes, func(dst []byte) []byte {
		for _, v := range notes {
			dst = append(dst[:0], v...)
		}
		return dst
	})
	scanPlan := hipaa.Plan(noteCol, mask.Params{})
	textScan := measure(c.minTime, noteBytes, func(dst []byte) []byte {
		for _, v := range notes {
			dst, _ = scanPlan.AppendValue(dst[:0], 0, v)
		}
		return dst
	})
	naive := newNaive()
	textNaive := measure(c.minTime, noteBytes, func(dst []byte) []byte {
		for _, v := range notes {
			dst = naive.mask(dst[:0], v)
		}
		return dst
	})

	// Hand-written nursing-style notes (the development set, marks removed):
	// terser, with fewer identifiers per line than the synthetic notes.
	hand, err := handNotes(c.devset)
	if err != nil {
		return err
	}
	handBytes := total(hand)
	handCopy := measure(c.minTime, handBytes, func(dst []byte) []byte {
		for _, v := range hand {
			dst = append(dst[:0], v...)
		}
		return dst
	})
	handScan := measure(c.minTime, handBytes, func(dst []byte) []byte {
		for _, v := range hand {
			dst, _ = scanPlan.AppendValue(dst[:0], 0, v)
		}
		return dst
	})
	handNaive := measure(c.minTime, handBytes, func(dst []byte) []byte {
		for _, v := range hand {
			dst = naive.mask(dst[:0], v)
		}
		return dst
	})

	// Rows: every field of the patients table, notes included.
	rowBytes := 0
	for _, r := range rows {
		rowBytes += total(r)
	}
	rowPass := func(pl *mask.Plan) func([]byte) []byte {
		return func(dst []byte) []byte {
			for _, r := range rows {
				for i, v := range r {
					if pl != nil && pl.Masked(i) {
						dst, _ = pl.AppendValue(dst[:0], i, v)
					} else {
						dst = append(dst[:0], v...)
					}
				}
			}
			return dst
		}
	}
	rowCopy := measure(c.minTime, rowBytes, rowPass(nil))
	rowRules := measure(c.minTime, rowBytes, rowPass(rules.Plan(cols, mask.Params{})))
	rowHIPAA := measure(c.minTime, rowBytes, rowPass(hipaa.Plan(cols, mask.Params{})))
	rowNaive := measure(c.minTime, rowBytes, func(dst []byte) []byte {
		for _, r := range rows {
			for _, v := range r {
				dst = naive.mask(dst[:0], v)
			}
		}
		return dst
	})

	notesNote := fmt.Sprintf("%d synthetic clinical notes (internal/synth, %d patients), %.1f MB, one text value each; GOMAXPROCS=1; MB per CPU-second of the process", len(notes), c.patients, float64(noteBytes)/1e6)
	rowsNote := fmt.Sprintf("%d synthetic patient rows x %d columns incl. a notes column, %.1f MB; GOMAXPROCS=1; MB per CPU-second of the process", len(rows), len(cols), float64(rowBytes)/1e6)
	results := []bench.Result{
		{Name: "mask_free_text", Unit: "MB/s", HigherIsBetter: true, Notes: notesNote, Values: map[string]float64{
			"copy": textCopy.mbps, "phigate": textScan.mbps, "regexp_naive": textNaive.mbps,
			"phigate/copy": textScan.mbps / textCopy.mbps, "phigate/regexp_naive": textScan.mbps / textNaive.mbps,
		}},
		{Name: "mask_free_text_handwritten", Unit: "MB/s", HigherIsBetter: true, Notes: fmt.Sprintf("%d hand-written nursing-style lines (session/mask/testdata/devset, marks removed), %.0f KB, one text value each; GOMAXPROCS=1; MB per CPU-second of the process", len(hand), float64(handBytes)/1e3), Values: map[string]float64{
			"copy": handCopy.mbps, "phigate": handScan.mbps, "regexp_naive": handNaive.mbps,
			"phigate/regexp_naive": handScan.mbps / handNaive.mbps,
		}},
		{Name: "mask_rows", Unit: "MB/s", HigherIsBetter: true, Notes: rowsNote + "; phigate_rules: column rules only, phigate_hipaa: classification + free-text scanning", Values: map[string]float64{
			"copy": rowCopy.mbps, "phigate_rules": rowRules.mbps, "phigate_hipaa": rowHIPAA.mbps, "regexp_naive": rowNaive.mbps,
			"phigate_rules/copy": rowRules.mbps / rowCopy.mbps,
		}},
		{Name: "mask_allocs", Unit: "allocs/value", HigherIsBetter: false, Notes: "heap allocations per masked value after warm-up", Values: map[string]float64{
			"phigate_free_text": textScan.allocs / float64(len(notes)), "phigate_rules": rowRules.allocs / float64(len(rows)*len(cols)),
			"phigate_hipaa": rowHIPAA.allocs / float64(len(rows)*len(cols)), "regexp_naive": textNaive.allocs / float64(len(notes)),
		}},
	}
	for _, r := range results {
		if err := bench.Write(c.out, r); err != nil {
			return err
		}
		printResult(r)
	}
	return nil
}

func printResult(r bench.Result) {
	fmt.Printf("%-16s %-14s", r.Name, r.Unit)
	for _, k := range sortedKeys(r.Values) {
		fmt.Printf("  %s=%.3f", k, r.Values[k])
	}
	fmt.Println()
}

type figure struct {
	mbps   float64
	allocs float64 // per pass
}

// measure runs pass repeatedly for at least min and reports MB per second
// of CPU time used by the process (so the figure is per core even when
// other work shares the machine) and heap allocations per pass (after one
// warm-up pass).
func measure(min time.Duration, bytesPerPass int, pass func([]byte) []byte) figure {
	dst := make([]byte, 0, 1<<16)
	dst = pass(dst)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	n := 0
	c0 := cpuTime()
	start := time.Now()
	for time.Since(start) < min {
		dst = pass(dst)
		n++
	}
	cpu := cpuTime() - c0
	runtime.ReadMemStats(&m1)
	return figure{
		mbps:   float64(bytesPerPass) * float64(n) / cpu.Seconds() / 1e6,
		allocs: float64(m1.Mallocs-m0.Mallocs) / float64(n),
	}
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func total(vs [][]byte) int {
	n := 0
	for _, v := range vs {
		n += len(v)
	}
	return n
}

func patientColumns() []mask.Column {
	names := []string{"id", "mrn", "first_name", "last_name", "dob", "ssn", "phone", "email", "street", "city", "state", "zip", "member_id", "notes"}
	cols := make([]mask.Column, len(names))
	for i, n := range names {
		cols[i] = mask.Column{Source: "public.patients." + n, Name: n, TypeOID: 25, TypeMod: -1}
		if n == "id" {
			cols[i].TypeOID = 20
		}
	}
	return cols
}

// workload builds patient rows (text format values) and their notes.
func workload(patients int) (rows [][][]byte, notes [][]byte) {
	for r := range synth.Records(patients, 1) {
		p := r.Patient
		var note strings.Builder
		for _, e := range r.Encounters {
			notes = append(notes, []byte(e.Notes))
			note.WriteString(e.Notes)
			note.WriteByte(' ')
		}
		rows = append(rows, [][]byte{
			[]byte(fmt.Sprint(p.ID)), []byte(p.MRN), []byte(p.FirstName), []byte(p.LastName),
			[]byte(p.DOB.Format("2006-01-02")), []byte(p.SSN), []byte(p.Phone), []byte(p.Email),
			[]byte(p.Street), []byte(p.City), []byte(p.State), []byte(p.Zip), []byte(p.InsuranceMemberID),
			[]byte(note.String()),
		})
	}
	return rows, notes
}

var markRe = regexp.MustCompile(`\[\[[A-Z_]+:(.*?)\]\]`)

// handNotes reads the hand-written development notes without their marks.
func handNotes(dir string) ([][]byte, error) {
	var out [][]byte
	for _, name := range []string{"handwritten.txt", "handwritten2.txt", "heldout3.txt"} {
		b, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, fmt.Errorf("read hand-written notes (run from the repository root or set -devset): %w", err)
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			out = append(out, markRe.ReplaceAll(line, []byte("$1")))
		}
	}
	return out, nil
}

// naive is the baseline: one regexp per identifier kind, applied in turn,
// as a quick implementation with Go's regexp package would do.
type naive struct{ res []*regexp.Regexp }

func newNaive() *naive {
	pats := []string{
		`\b\d{3}-\d{2}-\d{4}\b`,                             // SSN
		`(\+1[ .-]?)?\(?\b\d{3}\)?[ .-]?\d{3}[ .-]\d{4}\b`,  // phone
		`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`,    // email
		`\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b\d{4}-\d{2}-\d{2}\b`, // numeric dates
		`\b(January|February|March|April|May|June|July|August|September|October|November|December) \d{1,2}(, \d{4})?`,
		`\b(Dr|Mr|Mrs|Ms)\.? [A-Z][a-z]+`, // titled names
		`\b[A-Z][a-z]+ [A-Z][a-z]+\b`,     // capitalized pairs as names
		`\b\d{1,5} [A-Z][a-z]+ (Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Way|Blvd)\b`, // streets
		`\b\d{5}(-\d{4})?\b`, // ZIP
		`\bMRN[#: ]*\d+`,
	}
	n := &naive{}
	for _, p := range pats {
		n.res = append(n.res, regexp.MustCompile(p))
	}
	return n
}

func (n *naive) mask(dst, v []byte) []byte {
	for _, re := range n.res {
		v = re.ReplaceAll(v, []byte("[PHI]"))
	}
	return append(dst, v...)
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}
