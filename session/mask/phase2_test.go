package mask

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

func hipaa(t testing.TB) *Profile {
	t.Helper()
	p, err := Compile("hipaa", HIPAAProfileConfig(), testKeys)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetectTextColumns(t *testing.T) {
	m := pgtype.NewMap()
	p := hipaa(t)
	cols := []Column{
		{Source: "public.encounters.notes", Name: "notes", TypeOID: oidText},
		{Source: "public.encounters.summary", Name: "summary", TypeOID: oidVarchar, TypeMod: 24 + 4},
		{Source: "public.encounters.code", Name: "code", TypeOID: oidBpchar, TypeMod: 40 + 4, Binary: true},
		{Source: "public.encounters.id", Name: "id", TypeOID: oidInt4},
	}
	pl := p.Plan(cols, Params{})
	if !pl.Masked(0) || !pl.Masked(1) || !pl.Masked(2) || pl.Masked(3) {
		t.Fatalf("masked: %v %v %v %v", pl.Masked(0), pl.Masked(1), pl.Masked(2), pl.Masked(3))
	}
	note := "Seen by Dr. Hanley on 3/14/2005, call (617) 555-0143."
	out, null := pl.AppendValue(nil, 0, []byte(note))
	if null || string(out) != "Seen by Dr. [NAME] on [DATE], call [PHONE]." {
		t.Errorf("notes: %q", out)
	}
	// varchar(24): tags do not fit, stars do.
	v := "Dr. Hanley on 3/14/2005"
	out, _ = pl.AppendValue(nil, 1, []byte(v))
	if utf8.RuneCount(out) > 24 || strings.Contains(string(out), "Hanley") || strings.Contains(string(out), "3/14") {
		t.Errorf("varchar(24): %q", out)
	}
	out, _ = pl.AppendValue(nil, 2, []byte("Mrs. Okafor visited"))
	if utf8.RuneCount(out) != 40 || strings.Contains(string(out), "Okafor") {
		t.Errorf("char(40): %q", out)
	}
	var s string
	if err := m.Scan(oidBpchar, 1, out, &s); err != nil {
		t.Error(err)
	}
	if out, _ := pl.AppendValue(nil, 0, []byte("No acute events. BP 120/80.")); string(out) != "No acute events. BP 120/80." {
		t.Errorf("clean text changed: %q", out)
	}
	if a := pl.Applied(); len(a) != 3 || a[0].Rule != "detect" || a[0].Action != "detect" {
		t.Errorf("applied: %+v", a)
	}
}

func TestClassifyByName(t *testing.T) {
	m := pgtype.NewMap()
	p := hipaa(t)
	dob := time.Date(1961, 3, 14, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		col   Column
		value any
		check func(t *testing.T, decoded any)
	}{
		{Column{Source: "s.patients.dob", Name: "dob", TypeOID: oidDate, Binary: true}, dob, func(t *testing.T, d any) {
			if got := d.(time.Time); !got.Equal(time.Date(1961, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("dob generalized to %v", got)
			}
		}},
		{Column{Source: "s.patients.birth_date", Name: "birth_date", TypeOID: oidDate}, dob, func(t *testing.T, d any) {
			if got := d.(time.Time); got.Year() != 1961 || got.Month() != 1 || got.Day() != 1 {
				t.Errorf("birth_date generalized to %v", got)
			}
		}},
		{Column{Source: "s.encounters.admit_date", Name: "admitted", TypeOID: oidTimestamp, Binary: true}, time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC), func(t *testing.T, d any) {
			if got := d.(time.Time); !got.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("admit_date generalized to %v", got)
			}
		}},
		{Column{Source: "s.patients.zip", Name: "zip", TypeOID: oidVarchar, TypeMod: 14}, "02114", func(t *testing.T, d any) {
			if d.(string) != "02100" {
				t.Errorf("zip: %v", d)
			}
		}},
		{Column{Source: "s.patients.first_name", Name: "first_name", TypeOID: oidText}, "Maria", func(t *testing.T, d any) {
			s := d.(string)
			if s == "Maria" || s == "" || s[0] < 'A' || s[0] > 'Z' {
				t.Errorf("first_name pseudonym: %q", s)
			}
		}},
		{Column{Source: "s.patients.ssn", Name: "ssn", TypeOID: oidText}, "123-45-6789", func(t *testing.T, d any) {
			if d.(string) != "[redacted]" {
				t.Errorf("ssn: %v", d)
			}
		}},
		{Column{Source: "s.patients.age", Name: "age", TypeOID: oidInt4, Binary: true}, int32(93), func(t *testing.T, d any) {
			if d.(int32) != 90 {
				t.Errorf("age: %v", d)
			}
		}},
		{Column{Source: "s.patients.mrn", Name: "mrn", TypeOID: oidText}, "00458213", func(t *testing.T, d any) {
			if s := d.(string); s == "00458213" || len(s) != 8 {
				t.Errorf("mrn hash: %v", s)
			}
		}},
	} {
		format := int16(0)
		if tc.col.Binary {
			format = 1
		}
		src, err := m.Encode(tc.col.TypeOID, format, tc.value, nil)
		if err != nil {
			t.Fatal(err)
		}
		pl := p.Plan([]Column{tc.col}, Params{})
		out, null := pl.AppendValue(nil, 0, src)
		if null {
			t.Errorf("%s: NULL", tc.col.Name)
			continue
		}
		var d any
		if err := m.Scan(tc.col.TypeOID, format, out, &d); err != nil {
			t.Errorf("%s: %q does not decode: %v", tc.col.Name, out, err)
			continue
		}
		tc.check(t, d)
		if a := pl.Applied(); len(a) != 1 || !strings.HasPrefix(a[0].Rule, "classify:") {
			t.Errorf("%s: applied %+v", tc.col.Name, a)
		}
	}
}

func TestClassifyByValues(t *testing.T) {
	p := hipaa(t)
	pl := p.Plan([]Column{{Source: "s.t.contact", Name: "contact", TypeOID: oidText}}, Params{})
	for i := 0; i < classifySamples; i++ {
		pl.AppendValue(nil, 0, []byte("(617) 555-01"+string(rune('1'+i%9))+"3"))
	}
	a := pl.Applied()
	if len(a) != 1 || a[0].Rule != "classify:PHONE" || a[0].Action != "redact" {
		t.Fatalf("applied %+v", a)
	}
	if out, _ := pl.AppendValue(nil, 0, []byte("617 555")); string(out) != "[redacted]" {
		t.Errorf("classified column masked whole: %q", out)
	}
}

func TestDateShift(t *testing.T) {
	m := pgtype.NewMap()
	p := mustCompile(t, RuleConfig{Pattern: "date|ts", Action: "date-shift"})
	day := time.Date(2019, 7, 4, 13, 30, 0, 0, time.UTC)
	var shifts []time.Duration
	for _, c := range []Column{
		{Name: "date", TypeOID: oidDate}, {Name: "date", TypeOID: oidDate, Binary: true},
		{Name: "ts", TypeOID: oidTimestamp}, {Name: "ts", TypeOID: oidTimestamp, Binary: true},
		{Name: "ts", TypeOID: oidTimestamptz}, {Name: "ts", TypeOID: oidTimestamptz, Binary: true},
	} {
		format := int16(0)
		if c.Binary {
			format = 1
		}
		v := any(day)
		if c.TypeOID == oidDate {
			v = time.Date(2019, 7, 4, 0, 0, 0, 0, time.UTC)
		}
		src, err := m.Encode(c.TypeOID, format, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		pl := p.Plan([]Column{c}, Params{DateStyle: "ISO, MDY"})
		pl.SetSubject([]byte("patient-42"))
		out, null := pl.AppendValue(nil, 0, src)
		if null {
			t.Fatalf("%+v: NULL for %q", c, src)
		}
		var d any
		if err := m.Scan(c.TypeOID, format, out, &d); err != nil {
			t.Fatalf("%+v: %q: %v", c, out, err)
		}
		got := d.(time.Time)
		shifts = append(shifts, v.(time.Time).Sub(got.UTC()))
	}
	for _, s := range shifts {
		if s != shifts[0] || s < 24*time.Hour || s > 365*24*time.Hour || s%(24*time.Hour) != 0 {
			t.Errorf("shifts %v: want one whole-day shift of 1..365 days", shifts)
			break
		}
	}
	// another subject, another shift (with overwhelming probability)
	pl := p.Plan([]Column{{Name: "date", TypeOID: oidDate}}, Params{})
	pl.SetSubject([]byte("patient-42"))
	a, _ := pl.AppendValue(nil, 0, []byte("2019-07-04"))
	pl.SetSubject([]byte("patient-43"))
	b, _ := pl.AppendValue(nil, 0, []byte("2019-07-04"))
	if string(a) == string(b) {
		t.Errorf("subjects share a shift: %s", a)
	}
	for _, style := range []string{"SQL, MDY", "SQL, DMY", "German", "Postgres, MDY"} {
		pl := p.Plan([]Column{{Name: "date", TypeOID: oidDate}}, Params{DateStyle: style})
		in := map[string]string{"SQL, MDY": "07/04/2019", "SQL, DMY": "04/07/2019", "German": "04.07.2019", "Postgres, MDY": "07-04-2019"}[style]
		out, null := pl.AppendValue(nil, 0, []byte(in))
		if null || len(out) != len(in) || string(out) == in || out[2] != in[2] {
			t.Errorf("%s: %q -> %q", style, in, out)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	p := hipaa(t)
	pl := p.Plan(nil, Params{})
	doc := `{"name": "John Smith", "age": 93, "zip": 2114, "phone": "617-555-0143", "mobile": "ext. 4471", "room": "ext. 4471", "active": true, "notes": ["Seen by Dr. Hanley on 3/14/2005", 7, null], "nested": {"ssn": "078-05-1120"}}`
	out, err := pl.AppendJSON(nil, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("masked JSON invalid: %s: %v", out, err)
	}
	if s, ok := got["name"].(string); !ok || s == "John Smith" || !strings.Contains(s, " ") {
		t.Errorf("name: %v", got["name"])
	}
	if got["age"].(float64) != 90 || got["zip"].(float64) != 2100 || got["active"] != true {
		t.Errorf("types not kept: %s", out)
	}
	// A key that names a phone number masks its value whole with the PHONE
	// class action (redact: the tag), even where the detectors see no
	// number; the same text under another key passes.
	if got["phone"] != "[PHONE]" || got["mobile"] != "[PHONE]" || got["room"] != "ext. 4471" {
		t.Errorf("phone keys: phone %q, mobile %q, room %q", got["phone"], got["mobile"], got["room"])
	}
	if strings.Contains(string(out), "617-555") || strings.Contains(string(out), "Hanley") || strings.Contains(string(out), "078-05") {
		t.Errorf("PHI left: %s", out)
	}
	notes := got["notes"].([]any)
	if notes[0] != "Seen by Dr. [NAME] on [DATE]" || notes[1].(float64) != 7 || notes[2] != nil {
		t.Errorf("notes: %v", notes)
	}
	for _, bad := range []string{`{"a":}`, `[1,`, `{"a" 1}`, `"x`, `{} x`} {
		if _, err := pl.AppendJSON(nil, []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// jsonb column, binary: version byte kept.
	pl = p.Plan([]Column{{Name: "doc", TypeOID: oidJSONB, Binary: true}}, Params{})
	v, null := pl.AppendValue(nil, 0, append([]byte{1}, `{"email":"a.b@example.com"}`...))
	if null || v[0] != 1 || !json.Valid(v[1:]) || bytes.Contains(v, []byte("a.b@")) {
		t.Errorf("jsonb: %q", v)
	}
}

func TestStreamSplitAnywhere(t *testing.T) {
	det := DefaultDetector()
	text := "Pt seen by Dr. Hanley on 3/14/2005.\nWife called from (617) 555-0143 about SSN 078-05-1120.\nEmail k.obrien77@gmail.com\n"
	want := string(AppendTagged(nil, []byte(text), det.NewScanner().Scan([]byte(text))))
	for cut := 0; cut <= len(text); cut++ {
		st := det.NewStream()
		var out []byte
		out = st.Append(out, []byte(text[:cut]))
		out = st.Append(out, []byte(text[cut:]))
		out = st.Flush(out)
		if string(out) != want {
			t.Fatalf("split at %d:\n got %q\nwant %q", cut, out, want)
		}
	}
	// byte by byte
	st := det.NewStream()
	var out []byte
	for i := 0; i < len(text); i++ {
		out = st.Append(out, []byte{text[i]})
	}
	if out = st.Flush(out); string(out) != want {
		t.Errorf("byte by byte: %q", out)
	}
}

// TestProofSink checks what the proof sink receives for detected spans and
// classified columns. Sealing what it receives is session/proof's (its
// TestSealer).
func TestProofSink(t *testing.T) {
	p := hipaa(t)
	pl := p.Plan([]Column{{Source: "s.e.notes", Name: "notes", TypeOID: oidText}, {Source: "s.p.ssn", Name: "ssn", TypeOID: oidText}}, Params{})
	type kept struct {
		Proof
		raw string
	}
	var proofs []kept
	pl.SetProofSink(func(pr *Proof) {
		// The Proof and its Raw bytes are the sink's only during the call.
		k := kept{Proof: *pr, raw: string(pr.Raw)}
		k.Raw = nil
		proofs = append(proofs, k)
	})
	note := []byte("Seen by Dr. Hanley on 3/14/2005.")
	pl.AppendValue(nil, 0, note)
	pl.AppendValue(nil, 1, []byte("078-05-1120"))
	if len(proofs) != 3 {
		t.Fatalf("proofs: %+v", proofs)
	}
	if pr := proofs[0]; pr.raw != "Hanley" || pr.Type != TypeName || pr.Detector == "" || pr.Column != 0 || string(note[pr.Start:pr.End]) != "Hanley" {
		t.Errorf("proof 0: %+v", pr)
	}
	if pr := proofs[2]; pr.raw != "078-05-1120" || pr.Rule != "classify" || pr.Column != 1 || pr.Start != 0 || pr.End != len(pr.raw) {
		t.Errorf("proof 2: %+v", pr)
	}
	// No sink: scanning free text does not allocate.
	pl.SetProofSink(nil)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(50, func() { dst, _ = pl.AppendValue(dst[:0], 0, note) }); n != 0 {
		t.Errorf("detect column allocates %.1f per value", n)
	}
}

// TestPlanCloseReusesScanner checks that plans for many small result sets
// share scanning buffers instead of allocating them each time.
func TestPlanCloseReusesScanner(t *testing.T) {
	p := hipaa(t)
	cols := []Column{{Source: "s.e.notes", Name: "notes", TypeOID: oidText}}
	note := []byte("Seen by Dr. Hanley on 3/14/2005.")
	run := func() {
		pl := p.Plan(cols, Params{})
		out, _ := pl.AppendValue(nil, 0, note)
		if !bytes.Contains(out, []byte("[NAME]")) {
			t.Fatalf("not masked: %q", out)
		}
		pl.Close()
		pl.Close() // idempotent
	}
	run()
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	// a plan and its column slice, the output, and Applied-free run: a few
	// small allocations, not the scanner's buffers (tens of kilobytes)
	var m0, m1 runtimeMemStats
	readMem(&m0)
	for i := 0; i < 100; i++ {
		run()
	}
	readMem(&m1)
	if per := (m1.TotalAlloc - m0.TotalAlloc) / 100; per > 8<<10 {
		t.Errorf("%d bytes allocated per result set", per)
	}
}
