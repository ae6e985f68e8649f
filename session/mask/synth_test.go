package mask

import (
	"sort"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/synth"
)

// TestSynthNotesRecall checks the detectors against notes written by
// another generator (internal/synth): every identifier of the patient that
// appears in a note must be inside a finding.
func TestSynthNotesRecall(t *testing.T) {
	sc := DefaultDetector().NewScanner()
	type count struct{ hit, total int }
	per := map[string]*count{}
	var misses []string
	n := 0
	for r := range synth.Records(300, 11) {
		p := r.Patient
		fields := map[string]string{
			"first": p.FirstName, "last": p.LastName, "mrn": p.MRN, "ssn": p.SSN, "email": p.Email,
			"street": p.Street, "city": p.City, "zip": p.Zip, "member": p.InsuranceMemberID,
			"dob": p.DOB.Format("January 2, 2006"), "dob-iso": p.DOB.Format("2006-01-02"),
		}
		for _, e := range r.Encounters {
			n++
			text := []byte(e.Notes)
			found := sc.Scan(text)
			for name, v := range fields {
				if v == "" {
					continue
				}
				for off := 0; ; {
					k := strings.Index(e.Notes[off:], v)
					if k < 0 {
						break
					}
					start, end := off+k, off+k+len(v)
					off = end
					// a name inside a word ("Wei" in "Weight") is not the name
					if (name == "first" || name == "last") && (start > 0 && isLetter(e.Notes[start-1]) || end < len(e.Notes) && isLetter(e.Notes[end])) {
						continue
					}
					c := per[name]
					if c == nil {
						c = &count{}
						per[name] = c
					}
					c.total++
					covered := false
					for _, f := range found {
						if f.Start <= start && f.End >= end || f.Start < end && start < f.End && name == "street" {
							covered = true
						}
					}
					if covered {
						c.hit++
					} else if len(misses) < 40 {
						misses = append(misses, name+" "+v+" in: "+e.Notes)
					}
				}
			}
		}
	}
	names := make([]string, 0, len(per))
	for k := range per {
		names = append(names, k)
	}
	sort.Strings(names)
	hit, total := 0, 0
	for _, k := range names {
		c := per[k]
		hit += c.hit
		total += c.total
		t.Logf("%-8s %5d/%5d  recall %.3f", k, c.hit, c.total, float64(c.hit)/float64(c.total))
	}
	for _, m := range misses {
		t.Log("miss", m)
	}
	rec := float64(hit) / float64(total)
	t.Logf("notes %d, identifiers %d, recall %.3f", n, total, rec)
	if rec < 0.95 {
		t.Errorf("recall %.3f on synthetic notes, want >= 0.95", rec)
	}
}
