package mask

import (
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/synth"
)

// synthNotes returns about n bytes of clinical notes from the synthetic clinic.
func synthNotes(n int) []byte {
	var b strings.Builder
	for r := range synth.Records(1<<20, 7) {
		for _, e := range r.Encounters {
			b.WriteString(e.Notes)
			b.WriteByte('\n')
		}
		if b.Len() >= n {
			break
		}
	}
	return []byte(b.String())
}

func BenchmarkScanNotes(b *testing.B) {
	text := synthNotes(1 << 20)
	sc := DefaultDetector().NewScanner()
	sc.Scan(text)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sc.Scan(text)
	}
}

func BenchmarkScanHandwritten(b *testing.B) {
	var buf []byte
	for _, ex := range loadHandwritten(b) {
		buf = append(buf, ex.text...)
		buf = append(buf, '\n')
	}
	text := buf
	for len(text) < 1<<20 {
		text = append(text, buf...)
	}
	sc := DefaultDetector().NewScanner()
	sc.Scan(text)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sc.Scan(text)
	}
}

func BenchmarkTokenize(b *testing.B) {
	text := synthNotes(1 << 20)
	sc := DefaultDetector().NewScanner()
	b.SetBytes(16 << 10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sc.tokenize(text[:16<<10], 0)
	}
}

func BenchmarkAppendValueNotes(b *testing.B) {
	var notes [][]byte
	n := 0
	for r := range synth.Records(1<<20, 7) {
		for _, e := range r.Encounters {
			notes = append(notes, []byte(e.Notes))
			n += len(e.Notes)
		}
		if n >= 1<<20 {
			break
		}
	}
	pl := hipaa(b).Plan([]Column{{Source: "public.encounters.notes", Name: "notes", TypeOID: oidText}}, Params{})
	dst := make([]byte, 0, 1<<16)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, v := range notes {
			dst, _ = pl.AppendValue(dst[:0], 0, v)
		}
	}
}

func BenchmarkAppendValueHandwritten(b *testing.B) {
	var lines [][]byte
	n := 0
	for _, ex := range loadHandwritten(b) {
		lines = append(lines, []byte(ex.text))
		n += len(ex.text)
	}
	pl := hipaa(b).Plan([]Column{{Source: "public.encounters.notes", Name: "notes", TypeOID: oidText}}, Params{})
	dst := make([]byte, 0, 1<<16)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, v := range lines {
			dst, _ = pl.AppendValue(dst[:0], 0, v)
		}
	}
}

// BenchmarkScanNursingNegatives scans nursing-note lines without PHI (the
// common case in a clinical database), one value per line.
func BenchmarkScanNursingNegatives(b *testing.B) {
	var lines [][]byte
	n := 0
	for _, ex := range loadMarked(b, "negatives.txt", "neg") {
		lines = append(lines, []byte(ex.text))
		n += len(ex.text)
	}
	sc := DefaultDetector().NewScanner()
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, v := range lines {
			sc.Scan(v)
		}
	}
}

// BenchmarkSecondLayer masks a row of the outputs the second layer and
// lineage handle: a text array, bytea, xml and a record scanned, and a
// derived text and array redacted.
func BenchmarkSecondLayer(b *testing.B) {
	note := "Seen by Dr. Hanley on 3/14/2005, call (617) 555-0143. No acute events overnight, plan discussed with team."
	cols := []Column{
		{Name: "tags", TypeOID: 1009}, {Name: "doc", TypeOID: oidBytea}, {Name: "x", TypeOID: oidXML},
		{Name: "p", TypeOID: 16390}, {Name: "d", TypeOID: oidText, Derived: []SourceCol{{Name: "public.p.notes", TypeOID: oidText}}},
		{Name: "a", TypeOID: 1009, Derived: []SourceCol{{Name: "public.p.notes", TypeOID: oidText}}},
	}
	row := [][]byte{
		[]byte(`{"` + note + `","` + note + `"}`), []byte(`\x` + hexOf(note)), []byte("<p>" + note + "</p>"),
		[]byte(`(1,"` + note + `")`), []byte(note), []byte(`{"` + note + `"}`),
	}
	n := 0
	for _, v := range row {
		n += len(v)
	}
	pl := hipaa(b).Plan(cols, Params{})
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for c, v := range row {
			dst, _ = pl.AppendValue(dst[:0], c, v)
		}
	}
}
