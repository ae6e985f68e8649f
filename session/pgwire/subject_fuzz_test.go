package pgwire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/sqlclass"
)

// subjectPlan masks (dob date, name text, id int4) of one scan of
// public.patients, whose subject is id: the subject after the date.
func subjectPlan(t testing.TB) *mask.Plan {
	prof, err := mask.Compile("t", mask.ProfileConfig{Rules: []mask.RuleConfig{
		{Column: "patients.dob", Action: "date-shift"},
		{Column: "patients.name", Action: "redact"},
	}}, mask.Keys{Pseudonym: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	subjects, err := mask.NewSubjects(map[string]string{"patients": "id"})
	if err != nil {
		t.Fatal(err)
	}
	return prof.Plan([]mask.Column{
		{Name: "dob", Source: "public.patients.dob", Scan: 1, TypeOID: 1082},
		{Name: "name", Source: "public.patients.name", Scan: 1, TypeOID: 25},
		{Name: "id", Source: "public.patients.id", Scan: 1, TypeOID: 23},
	}, mask.Params{Subjects: subjects})
}

// TestRowSubjects: DataRow and COPY rows take their subject from the
// subject column after the date; the same patient gets the same date in
// both, another patient another one, and no subject gives NULL.
func TestRowSubjects(t *testing.T) {
	plan := subjectPlan(t)
	row := func(id []byte) string {
		out, err := appendMaskedDataRow(nil, dataRow([]byte("1961-03-14"), []byte("Ann"), id), plan)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := splitDataRow(out[5:])
		if err != nil {
			t.Fatal(err)
		}
		if vals[0] == nil {
			return "NULL"
		}
		return string(vals[0])
	}
	d7, d8 := row([]byte("7")), row([]byte("8"))
	if d7 == "NULL" || d7 == "1961-03-14" || d7 == d8 {
		t.Fatalf("patients 7 and 8: %s, %s", d7, d8)
	}
	if got := row(nil); got != "NULL" {
		t.Errorf("NULL subject: %s", got)
	}
	if got := row([]byte("7")); got != d7 {
		t.Errorf("patient 7 again: %s, want %s", got, d7)
	}
	for _, c := range []struct {
		format, row, want string
	}{
		{"text", "1961-03-14\tAnn\t7\n", d7 + "\t[redacted]\t7\n"},
		{"text", "1961-03-14\tAnn\t\\N\n", "\\N\t[redacted]\t\\N\n"},
		{"csv", "1961-03-14,\"A,nn\",\"7\"\r\n", d7 + ",[redacted],\"7\"\r\n"},
		{"csv", "1961-03-14,Ann,8\n", d8 + ",[redacted],8\n"},
		{"csv", "1961-03-14,Ann,\n", ",[redacted],\n"},
	} {
		cp := newCopyPlan(plan, &sqlclass.Copy{Format: c.format})
		out, err := cp.appendRow(nil, []byte(c.row))
		if err != nil || string(out) != c.want {
			t.Errorf("COPY %s %q: %q, %v; want %q", c.format, c.row, out, err, c.want)
		}
	}
}

// FuzzRowSubjects: rows of any bytes, with subjects of any bytes, never
// panic; a date comes out shifted or NULL.
func FuzzRowSubjects(f *testing.F) {
	f.Add(dataRow([]byte("1961-03-14"), []byte("Ann"), []byte("7")), []byte("1961-03-14\tAnn\t7\n"), false)
	f.Add(dataRow([]byte("1961-03-14"), nil, []byte("\xff\x00")), []byte("\"1961-03-14\",,\"7\"\"\"\n"), true)
	f.Add([]byte{0, 3, 0, 0, 0, 1, '1', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 9}, []byte("\\"), false)
	plan := subjectPlan(f)
	f.Fuzz(func(t *testing.T, body, copyRow []byte, csv bool) {
		if out, err := appendMaskedDataRow(nil, body, plan); err == nil {
			if n := binary.BigEndian.Uint32(out[1:5]); int(n) != len(out)-1 {
				t.Fatalf("bad framing: len field %d, message %d", n, len(out))
			}
			vals, err := splitDataRow(out[5:])
			if err != nil {
				t.Fatalf("masked row does not split: %v", err)
			}
			if len(vals) > 0 && vals[0] != nil && string(vals[0]) == "1961-03-14" {
				t.Fatal("a date passed unshifted")
			}
		}
		format := "text"
		if csv {
			format = "csv"
		}
		_, _ = newCopyPlan(plan, &sqlclass.Copy{Format: format}).appendRow(nil, copyRow)
	})
}
