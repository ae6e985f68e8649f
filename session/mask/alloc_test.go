package mask

import (
	"bytes"
	"testing"
)

func TestHIPAARowDoesNotAllocate(t *testing.T) {
	p := hipaa(t)
	names := []string{"id", "mrn", "first_name", "last_name", "dob", "ssn", "phone", "email", "street", "city", "state", "zip", "member_id", "notes"}
	vals := []string{"12", "00458213", "Maria", "Okafor", "1961-03-14", "078-05-1120", "617-555-0143", "maria.okafor@example.com", "12 Oak St", "Boston", "MA", "02114", "XKH482913377", "Seen by Dr. Hanley on 3/14/2005."}
	cols := make([]Column, len(names))
	for i, n := range names {
		cols[i] = Column{Source: "public.patients." + n, Name: n, TypeOID: 25, TypeMod: -1}
	}
	pl := p.Plan(cols, Params{})
	dst := make([]byte, 0, 1024)
	for i := range cols {
		v := []byte(vals[i])
		n := testing.AllocsPerRun(20, func() { dst, _ = pl.AppendValue(dst[:0], i, v) })
		if n != 0 {
			t.Errorf("%s: %.1f allocs", names[i], n)
		}
	}
}

// TestScanDoesNotAllocate scans every development note, in its case and in
// capitals and lower case, and wants no allocation once warm: the detectors
// compare words in place.
func TestScanDoesNotAllocate(t *testing.T) {
	var texts [][]byte
	for _, f := range []string{"handwritten.txt", "handwritten2.txt", "heldout3.txt", "heldout4.txt", "heldout5.txt", "negatives.txt", "negatives2.txt"} {
		for _, ex := range loadMarked(t, f, f) {
			texts = append(texts, []byte(ex.text), bytes.ToUpper([]byte(ex.text)), bytes.ToLower([]byte(ex.text)))
		}
	}
	sc := DefaultDetector().NewScanner()
	for _, v := range texts {
		sc.Scan(v)
	}
	for _, v := range texts {
		if n := testing.AllocsPerRun(5, func() { sc.Scan(v) }); n != 0 {
			t.Errorf("Scan(%q): %.1f allocs", v, n)
		}
	}
}
