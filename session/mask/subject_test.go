package mask

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// subjectProfile shifts the dates of patients and encounters, and of
// anything content detection classifies as a date.
func subjectProfile(t testing.TB, keys Keys) *Profile {
	t.Helper()
	p, err := Compile("subjects", ProfileConfig{Rules: []RuleConfig{
		{Column: "patients.dob", Action: "date-shift"},
		{Column: "patients.dob_text", Action: "date-shift"},
		{Column: "encounters.admitted", Action: "date-shift"},
		{Column: "labs.drawn", Action: "date-shift"},
	}, Detect: &DetectConfig{ClassActions: map[string]string{"DATE": "date-shift"}}}, keys)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testSubjects(t testing.TB) *Subjects {
	t.Helper()
	s, err := NewSubjects(map[string]string{"public.patients": "id", "encounters": "Patient_ID"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	dobCol = Column{Name: "dob", Source: "public.patients.dob", Scan: 1, TypeOID: oidDate}
	idCol  = Column{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: oidInt4}
)

// shiftOf masks 2019-07-04 in a date column and returns how many days it
// moved back, or -1 for NULL.
func shiftOf(t testing.TB, pl *Plan, col int, bin bool) int {
	t.Helper()
	in := []byte("2019-07-04")
	if bin {
		in = binary.BigEndian.AppendUint32(nil, uint32(int32(7124))) // 2019-07-04
	}
	out, null := pl.AppendValue(nil, col, in)
	if null {
		return -1
	}
	var got time.Time
	if bin {
		got = pgEpoch.AddDate(0, 0, int(int32(binary.BigEndian.Uint32(out))))
	} else {
		var err error
		if got, err = time.Parse("2006-01-02", string(out)); err != nil {
			t.Fatalf("masked date %q: %v", out, err)
		}
	}
	return int(time.Date(2019, 7, 4, 0, 0, 0, 0, time.UTC).Sub(got).Hours() / 24)
}

// rowShift masks one row of cols with raw values vals (nil NULL) as the
// proxy does and returns the shift of column col.
func rowShift(t testing.TB, pl *Plan, col int, vals ...[]byte) int {
	t.Helper()
	pl.BeginRow()
	for _, j := range pl.SubjectColumns() {
		pl.SetRowSubject(j, vals[j])
	}
	return shiftOf(t, pl, col, pl.cols[col].binary)
}

func TestNewSubjects(t *testing.T) {
	if s, err := NewSubjects(nil); s != nil || err != nil {
		t.Fatalf("empty: %v %v", s, err)
	}
	_, err := NewSubjects(map[string]string{
		"a.b.c": "id", ".patients": "id", "patients": "", "visits": "a.b", "Labs": "id", "labs": "pid", "public.x": " ",
	})
	if err == nil {
		t.Fatal("bad subjects accepted")
	}
	for _, want := range []string{`table "a.b.c"`, `table ".patients"`, `patients: column ""`, `visits: column "a.b"`, `named twice`, `public.x: column " "`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	s := testSubjects(t)
	for src, want := range map[string]string{
		"public.patients.dob":    "public.patients.id",
		"PUBLIC.Patients.dob":    "PUBLIC.Patients.id",
		"other.patients.dob":     "",
		"public.encounters.at":   "public.encounters.patient_id",
		"archive.encounters.at":  "archive.encounters.patient_id",
		"public.patients_x.dob":  "",
		"patients.dob":           "",
		"":                       "",
		"public.encounterss.dob": "",
	} {
		if got := s.subjectOf(src); got != want {
			t.Errorf("subjectOf(%q) = %q, want %q", src, got, want)
		}
	}
	// A qualified entry wins over an unqualified one.
	s2, err := NewSubjects(map[string]string{"patients": "mrn", "clinic.patients": "id"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.subjectOf("clinic.patients.dob"); got != "clinic.patients.id" {
		t.Errorf("qualified: %q", got)
	}
	if got := s2.subjectOf("public.patients.dob"); got != "public.patients.mrn" {
		t.Errorf("unqualified: %q", got)
	}
}

func TestDateShiftPerSubject(t *testing.T) {
	p := subjectProfile(t, testKeys)
	params := Params{Subjects: testSubjects(t)}
	id := func(n int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

	// The subject column after the date, and before it.
	after := p.Plan([]Column{dobCol, idCol}, params)
	before := p.Plan([]Column{{Name: "pid", Source: "public.patients.id", Scan: 4, TypeOID: oidInt4}, {Name: "d", Source: "public.patients.dob", Scan: 4, TypeOID: oidDate}}, params)
	if got := after.SubjectColumns(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("SubjectColumns = %v", got)
	}
	s7 := rowShift(t, after, 0, nil, []byte("7"))
	if s7 < 1 || s7 > 365 {
		t.Fatalf("shift %d, want 1..365", s7)
	}
	if got := rowShift(t, before, 1, []byte("7"), nil); got != s7 {
		t.Errorf("subject before the date: shift %d, want %d", got, s7)
	}
	// Another plan, another profile compiled with the same key (another
	// session, another node): the same shift.
	other := subjectProfile(t, Keys{Pseudonym: bytes.Clone(testKeys.Pseudonym)}).Plan([]Column{dobCol, idCol}, params)
	if got := rowShift(t, other, 0, nil, []byte("7")); got != s7 {
		t.Errorf("another profile with the same key: shift %d, want %d", got, s7)
	}
	// Another key, another shift (with overwhelming probability).
	rekeyed := subjectProfile(t, Keys{Pseudonym: bytes.Repeat([]byte("j"), 32)}).Plan([]Column{dobCol, idCol}, params)
	if got := rowShift(t, rekeyed, 0, nil, []byte("7")); got == s7 {
		t.Errorf("another key gives the same shift %d", got)
	}
	// Rows of one result: each its own subject's shift.
	seen := map[int]bool{}
	for n := range 200 {
		s := rowShift(t, after, 0, nil, []byte(strconv.Itoa(n*7919)))
		if s < 1 || s > 365 {
			t.Fatalf("shift %d, want 1..365", s)
		}
		seen[s] = true
	}
	if len(seen) < 100 {
		t.Errorf("200 subjects share %d shifts", len(seen))
	}
	if got := rowShift(t, after, 0, nil, []byte("7")); got != s7 {
		t.Errorf("patient 7 again: %d, want %d", got, s7)
	}
	// SetSubject takes the same canonical form.
	plain := p.Plan([]Column{{Name: "d", TypeOID: oidDate, Source: "public.other.d"}, {Name: "x", Source: "public.patients.dob", TypeOID: oidDate}}, Params{})
	plain.SetSubject([]byte("7"))
	if got := shiftOf(t, plain, 1, false); got != s7 {
		t.Errorf("SetSubject(7): %d, want %d", got, s7)
	}

	// The same subject in every type and format that can hold it.
	m := pgtype.NewMap()
	enc := func(oid uint32, bin bool, v any) []byte {
		format := int16(0)
		if bin {
			format = 1
		}
		b, err := m.Encode(oid, format, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		oid uint32
		bin bool
		v   []byte
	}{
		{oidInt4, true, id(7)}, {oidInt4, false, []byte("7")}, {oidInt4, false, []byte("+07")},
		{oidInt2, true, enc(oidInt2, true, int16(7))}, {oidInt8, true, enc(oidInt8, true, int64(7))},
		{oidInt8, false, []byte("7")}, {oidText, true, []byte("7")}, {oidVarchar, false, []byte("7")},
		{oidBpchar, false, []byte("7    ")}, {oidBpchar, true, []byte("7 ")}, {oidNumeric, false, []byte("7")},
		{oidOID, true, id(7)},
	} {
		pl := p.Plan([]Column{{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: c.oid, Binary: c.bin}, dobCol}, params)
		if got := rowShift(t, pl, 1, c.v, nil); got != s7 {
			t.Errorf("subject 7 as oid %d binary=%v (%q): shift %d, want %d", c.oid, c.bin, c.v, got, s7)
		}
	}
	u := "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
	uText := p.Plan([]Column{{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: oidText}, dobCol}, params)
	su := rowShift(t, uText, 1, []byte(strings.ToLower(u)), nil)
	for _, c := range []struct {
		bin bool
		v   []byte
	}{{true, uuidBytes(t, u)}, {false, []byte(u)}, {false, []byte("{" + u + "}")}} {
		pl := p.Plan([]Column{{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: oidUUID, Binary: c.bin}, dobCol}, params)
		if got := rowShift(t, pl, 1, c.v, nil); got != su {
			t.Errorf("uuid subject binary=%v %q: shift %d, want %d", c.bin, c.v, got, su)
		}
	}
	for _, c := range []struct {
		bin bool
		v   []byte
	}{{true, []byte{0xde, 0xad}}, {false, []byte(`\xDEAD`)}, {false, []byte(`\336\255`)}} {
		pl := p.Plan([]Column{{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: oidBytea, Binary: c.bin}, dobCol}, params)
		if got, want := rowShift(t, pl, 1, c.v, nil), rowShift(t, uText, 1, []byte(`\xdead`), nil); got != want {
			t.Errorf("bytea subject binary=%v %q: shift %d, want %d", c.bin, c.v, got, want)
		}
	}
	// Binary dates shift as text dates do.
	binDob := dobCol
	binDob.Binary = true
	pb := p.Plan([]Column{idCol, binDob}, params)
	if got := rowShift(t, pb, 1, []byte("7"), nil); got != s7 {
		t.Errorf("binary date: %d, want %d", got, s7)
	}
}

func uuidBytes(t testing.TB, u string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(u, "-", ""))
	if err != nil || len(b) != 16 {
		t.Fatalf("uuid %q: %v", u, err)
	}
	return b
}

// TestDateShiftPerSubjectJoin: two tables in one result, each date by its
// own table's subject, from its own scan.
func TestDateShiftPerSubjectJoin(t *testing.T) {
	p := subjectProfile(t, testKeys)
	params := Params{Subjects: testSubjects(t)}
	cols := []Column{
		{Name: "admitted", Source: "public.encounters.admitted", Scan: 2, TypeOID: oidDate},
		dobCol,
		{Name: "patient_id", Source: "public.encounters.patient_id", Scan: 2, TypeOID: oidInt8, Binary: true},
		idCol,
		{Name: "drawn", Source: "public.labs.drawn", Scan: 3, TypeOID: oidDate}, // no subject configured
	}
	pl := p.Plan(cols, params)
	if got := pl.SubjectColumns(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("SubjectColumns = %v, want [2 3]", got)
	}
	ref := p.Plan([]Column{dobCol, idCol}, params)
	s1, s2 := rowShift(t, ref, 0, nil, []byte("1")), rowShift(t, ref, 0, nil, []byte("2"))
	if s1 == s2 {
		t.Fatalf("subjects 1 and 2 share shift %d", s1)
	}
	row := [][]byte{nil, nil, binary.BigEndian.AppendUint64(nil, 2), []byte("1"), nil}
	if got := rowShift(t, pl, 0, row...); got != s2 {
		t.Errorf("encounter of patient 2: shift %d, want %d", got, s2)
	}
	if got := rowShift(t, pl, 1, row...); got != s1 {
		t.Errorf("patient 1: shift %d, want %d", got, s1)
	}
	// A table without a subject keeps the profile-wide shift.
	wide := p.Plan([]Column{{Name: "drawn", Source: "public.labs.drawn", TypeOID: oidDate}}, Params{})
	if got, want := rowShift(t, pl, 4, row...), shiftOf(t, wide, 0, false); got != want {
		t.Errorf("table without a subject: shift %d, want the profile-wide %d", got, want)
	}
}

// TestDateShiftPerSubjectFailsClosed: a date whose subject the row does not
// give is NULL (redacted in text), never shifted by the profile-wide shift.
func TestDateShiftPerSubjectFailsClosed(t *testing.T) {
	p := subjectProfile(t, testKeys)
	params := Params{Subjects: testSubjects(t)}
	for name, cols := range map[string][]Column{
		"no subject column": {dobCol},
		// SELECT 1 AS id, dob FROM patients: a name is no source.
		"alias": {{Name: "id", TypeOID: oidInt4}, dobCol},
		// FROM patients p, patients q: p.id is not q's subject.
		"another scan":  {{Name: "id", Source: "public.patients.id", Scan: 2, TypeOID: oidInt4}, dobCol},
		"scan unknown":  {{Name: "id", Source: "public.patients.id", TypeOID: oidInt4}, {Name: "dob", Source: "public.patients.dob", TypeOID: oidDate}},
		"other table":   {{Name: "id", Source: "public.encounters.patient_id", Scan: 1, TypeOID: oidInt4}, dobCol},
		"other column":  {{Name: "id", Source: "public.patients.mrn", Scan: 1, TypeOID: oidInt4}, dobCol},
		"other schema":  {{Name: "id", Source: "archive.patients.id", Scan: 1, TypeOID: oidInt4}, dobCol},
		"derived":       {{Name: "id", Derived: []SourceCol{{Name: "public.patients.id", TypeOID: oidInt4}}, TypeOID: oidInt4}, dobCol},
		"binary number": {{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: oidNumeric, Binary: true}, dobCol},
	} {
		pl := p.Plan(cols, params)
		vals := make([][]byte, len(cols))
		vals[0] = []byte("7")
		if got := rowShift(t, pl, len(cols)-1, vals...); got != -1 {
			t.Errorf("%s: date shifted by %d, want NULL", name, got)
		}
		if name == "no subject column" {
			a := pl.Applied()
			if len(a) != 1 || !strings.Contains(a[0].Reason, "public.patients.id") {
				t.Errorf("Applied = %+v: want a reason naming the subject column", a)
			}
		}
	}
	pl := p.Plan([]Column{idCol, dobCol}, params)
	if got := rowShift(t, pl, 1, nil, nil); got != -1 {
		t.Errorf("NULL subject: shift %d, want NULL", got)
	}
	if got := rowShift(t, pl, 1, []byte("x7"), nil); got != -1 {
		t.Errorf("int4 subject that is no integer: shift %d, want NULL", got)
	}
	// Without BeginRow and SetRowSubject; and a row after one that had its
	// subject: nothing carries over.
	if got := shiftOf(t, p.Plan([]Column{idCol, dobCol}, params), 1, false); got != -1 {
		t.Errorf("no subject given: shift %d, want NULL", got)
	}
	if rowShift(t, pl, 1, []byte("7"), nil) < 1 {
		t.Fatal("subject 7: NULL")
	}
	pl.BeginRow()
	if got := shiftOf(t, pl, 1, false); got != -1 {
		t.Errorf("the next row without its subject: shift %d, want NULL", got)
	}
	// A date in a text column: redacted, as redact does for text.
	textDob := Column{Name: "dob_text", Source: "public.patients.dob_text", Scan: 1, TypeOID: oidVarchar}
	pt := p.Plan([]Column{textDob}, params)
	if out, null := pt.AppendValue(nil, 0, []byte("2019-07-04")); null || string(out) != "[redacted]" {
		t.Errorf("text date without its subject = %q, %v", out, null)
	}
	pt = p.Plan([]Column{textDob, idCol}, params)
	pt.BeginRow()
	pt.SetRowSubject(1, []byte("7"))
	if out, _ := pt.AppendValue(nil, 0, []byte("2019-07-04")); string(out) == "2019-07-04" || string(out) == "[redacted]" {
		t.Errorf("text date with its subject = %q", out)
	}
}

// TestDateShiftPerSubjectInText: dates that content detection shifts
// inside a value (a JSON string under a date key) take the row's subject.
func TestDateShiftPerSubjectInText(t *testing.T) {
	p := subjectProfile(t, testKeys)
	params := Params{Subjects: testSubjects(t)}
	doc := Column{Name: "chart", Source: "public.patients.chart", Scan: 1, TypeOID: oidJSONB}
	in := []byte(`{"dob": "2019-07-04"}`) // a key named like a date column: the string is a DATE
	mask := func(pl *Plan, col int, subject []byte) string {
		pl.BeginRow()
		for _, j := range pl.SubjectColumns() {
			pl.SetRowSubject(j, subject)
		}
		out, null := pl.AppendValue(nil, col, in)
		if null {
			return "NULL"
		}
		return string(out)
	}
	with := p.Plan([]Column{doc, idCol}, params)
	a := mask(with, 0, []byte("7"))
	if a == string(in) || strings.Contains(a, "2019-07-04") || strings.Contains(a, "redacted") {
		t.Fatalf("JSON date with its subject: %s", a)
	}
	if b := mask(p.Plan([]Column{idCol, doc}, params), 1, []byte("7")); b != a {
		t.Errorf("same subject, other column order: %s, want %s", b, a)
	}
	if b := mask(with, 0, []byte("8")); b == a {
		t.Errorf("subjects 7 and 8 give the same %s", a)
	}
	if c := mask(p.Plan([]Column{doc}, params), 0, nil); strings.Contains(c, "2019") || c == "NULL" {
		t.Errorf("JSON date without its subject: %s", c)
	}
}

// TestDateShiftPerSubjectDoesNotAllocate: a warm plan masks a row with its
// subjects without allocating.
func TestDateShiftPerSubjectDoesNotAllocate(t *testing.T) {
	p := subjectProfile(t, testKeys)
	params := Params{Subjects: testSubjects(t)}
	cols := []Column{
		dobCol,
		{Name: "admitted", Source: "public.encounters.admitted", Scan: 2, TypeOID: oidTimestamp, Binary: true},
		{Name: "patient_id", Source: "public.encounters.patient_id", Scan: 2, TypeOID: oidUUID, Binary: true},
		idCol,
	}
	pl := p.Plan(cols, params)
	row := [][]byte{[]byte("1961-03-14"), binary.BigEndian.AppendUint64(nil, 1<<40), bytes.Repeat([]byte{7}, 16), []byte("12345")}
	dst := make([]byte, 0, 256)
	maskRow := func() {
		pl.BeginRow()
		for _, j := range pl.SubjectColumns() {
			pl.SetRowSubject(j, row[j])
		}
		dst = dst[:0]
		for i, v := range row {
			dst, _ = pl.AppendValue(dst, i, v)
		}
	}
	maskRow()
	if n := testing.AllocsPerRun(50, maskRow); n != 0 {
		t.Errorf("%.1f allocs per row", n)
	}
}

// FuzzSubject: subject values of any bytes, in any type and format, never
// panic; the date is shifted by 1..date_shift_days or NULL.
func FuzzSubject(f *testing.F) {
	p := subjectProfile(f, testKeys)
	params := Params{Subjects: testSubjects(f)}
	for _, oid := range []uint32{oidInt2, oidInt4, oidInt8, oidOID, oidText, oidBpchar, oidUUID, oidBytea, oidNumeric, oidDate, 1007, 999999} {
		f.Add(oid, false, []byte("7"))
		f.Add(oid, true, []byte{0, 0, 0, 7})
	}
	f.Add(uint32(oidBytea), false, []byte(`\x0`))
	f.Add(uint32(oidBytea), false, []byte(`\4`))
	f.Add(uint32(oidUUID), false, []byte("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))
	f.Add(uint32(oidInt8), false, []byte("-9223372036854775808"))
	f.Fuzz(func(t *testing.T, oid uint32, bin bool, subject []byte) {
		pl := p.Plan([]Column{{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: oid, Binary: bin}, dobCol}, params)
		if s := rowShift(t, pl, 1, subject, nil); s != -1 && (s < 1 || s > 365) {
			t.Fatalf("shift %d", s)
		}
	})
}
