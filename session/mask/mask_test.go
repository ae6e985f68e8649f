package mask

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

var testKeys = Keys{Pseudonym: bytes.Repeat([]byte("k"), 32)}

func mustCompile(t testing.TB, rules ...RuleConfig) *Profile {
	t.Helper()
	p, err := Compile("test", ProfileConfig{Rules: rules}, testKeys)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		rule RuleConfig
		keys Keys
		want string
	}{
		{RuleConfig{Action: "redact"}, testKeys, "rule 1: no column or pattern"},
		{RuleConfig{Column: "a.b", Pattern: "x", Action: "redact"}, testKeys, "not both"},
		{RuleConfig{Column: "ssn", Action: "redact"}, testKeys, `column "ssn"`},
		{RuleConfig{Column: "a.b.c.d", Action: "redact"}, testKeys, "schema.table.column"},
		{RuleConfig{Column: "a..c", Action: "redact"}, testKeys, "schema.table.column"},
		{RuleConfig{Pattern: "(", Action: "redact"}, testKeys, "pattern"},
		{RuleConfig{Name: "ssn", Column: "t.ssn", Action: "scramble"}, testKeys, `rule 1 (ssn): unknown action "scramble"`},
		{RuleConfig{Column: "t.ssn", Action: "hash"}, Keys{Pseudonym: []byte("short")}, "shorter than 32 bytes"},
	} {
		_, err := Compile("p", ProfileConfig{Rules: []RuleConfig{tc.rule}}, tc.keys)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want it to contain %q", tc.rule, err, tc.want)
		}
	}
	if _, err := Compile("p", ProfileConfig{Rules: []RuleConfig{{Column: "t.ssn", Action: "redact"}}}, Keys{}); err != nil {
		t.Errorf("redact needs no key: %v", err)
	}
	if _, err := Compile("p", ProfileConfig{}, Keys{}); err != nil {
		t.Errorf("zero profile: %v", err)
	}
}

func TestMatch(t *testing.T) {
	p := mustCompile(t,
		RuleConfig{Column: "public.patients.ssn", Action: "keep-last-4"},
		RuleConfig{Name: "any-mrn", Column: "patients.mrn", Action: "hash"},
		RuleConfig{Pattern: "^(dob|birth_?date)$", Action: "null"},
		RuleConfig{Pattern: "phone", Action: "redact"},
	)
	cols := []Column{
		{Source: "public.patients.ssn", Name: "ssn", TypeOID: oidText},
		{Source: "other.patients.ssn", Name: "ssn", TypeOID: oidText},
		{Source: "billing.patients.mrn", Name: "m", TypeOID: oidText},
		{Source: "public.patients.DOB", Name: "d", TypeOID: oidDate},
		{Source: "", Name: "birthdate", TypeOID: oidDate},
		{Source: "", Name: "home_phone", TypeOID: oidText},
		{Source: "public.patients.name", Name: "name", TypeOID: oidText},
		{Source: "public.x.ssn", Name: "Phone", TypeOID: oidText},
		{Source: "a.b.patients.mrn", Name: "m", TypeOID: oidText},
	}
	pl := p.Plan(cols, Params{})
	want := []string{"keep-last-4", "", "hash", "null", "null", "redact", "", "redact", ""}
	got := map[int]Applied{}
	for _, a := range pl.Applied() {
		got[a.Index] = a
	}
	for i, w := range want {
		if pl.Masked(i) != (w != "") || got[i].Action != w {
			t.Errorf("column %d (%+v): masked=%v action=%q, want %q", i, cols[i], pl.Masked(i), got[i].Action, w)
		}
	}
	if got[2].Rule != "any-mrn" || got[0].Rule != "column:public.patients.ssn" || got[5].Rule != "pattern:phone" {
		t.Errorf("rule names: %q %q %q", got[2].Rule, got[0].Rule, got[5].Rule)
	}
	if !pl.Active() {
		t.Error("plan not active")
	}
	if pl := p.Plan([]Column{{Source: "public.t.x", Name: "x"}}, Params{}); pl.Active() || pl.Masked(0) {
		t.Error("plan without matches is active")
	}
	var nilProfile *Profile
	npl := nilProfile.Plan(cols, Params{})
	if npl.Active() {
		t.Error("nil profile plan active")
	}
	if out, null := npl.AppendValue(nil, 0, []byte("x")); null || string(out) != "x" {
		t.Errorf("nil profile changed value: %q %v", out, null)
	}
}

// typeCase is a PostgreSQL type with a sample value and what each action
// gives for it ("" = NULL, "*" = some non-NULL value, else the exact text
// format output).
type typeCase struct {
	name   string
	oid    uint32
	typmod int32
	value  any
	redact string
	keep4  string
	hash   string
}

func typeCases() []typeCase {
	ts := time.Date(1961, 3, 14, 10, 30, 0, 0, time.UTC)
	return []typeCase{
		{"text", oidText, -1, "123-45-6789", "[redacted]", "***-**-6789", "*"},
		{"text-unicode", oidText, -1, "Zoë Ångström", "[redacted]", "*** ****tröm", "*"},
		{"varchar(5)", oidVarchar, 9, "ab123", "[reda", "*b123", "*"},
		{"varchar", oidVarchar, -1, "John Smith", "[redacted]", "**** *mith", "*"},
		{"bpchar(12)", oidBpchar, 16, "A1234567    ", "[redacted]  ", "****4567    ", "*"},
		{"bpchar(4)", oidBpchar, 8, "abcd", "[red", "abcd", "*"},
		{"name", oidName, -1, "alice", "[redacted]", "*lice", "*"},
		{"char", oidChar, -1, 'x', "*", "x", "*"},
		{"int2", oidInt2, -1, int16(12345), "0", "2345", "*"},
		{"int4", oidInt4, -1, int32(-123456789), "0", "-6789", "*"},
		{"int8", oidInt8, -1, int64(1234567890123), "0", "123", "*"},
		{"oid", oidOID, -1, uint32(4000000000), "0", "0", "*"},
		{"float4", oidFloat4, -1, float32(1.5), "0", "", ""},
		{"float8", oidFloat8, -1, 98.6, "0", "", ""},
		{"numeric", oidNumeric, -1, 12345.5, "0", "", ""},
		{"bool", oidBool, -1, true, "", "", ""},
		{"bytea", oidBytea, -1, []byte("secret\x00\xff"), `\x`, "", "*"},
		{"json-string", oidJSON, -1, `"555-123-4567"`, `"[redacted]"`, `"***-***-4567"`, "*"},
		{"json-object", oidJSON, -1, `{"a": 1}`, `"[redacted]"`, "", ""},
		{"jsonb-string", oidJSONB, -1, `"Jane \"JJ\" Doe\n"`, `"[redacted]"`, `"**** \"*J\" Doe\n"`, "*"},
		{"jsonb-array", oidJSONB, -1, `[1, "a"]`, `"[redacted]"`, "", ""},
		{"xml", oidXML, -1, "<a>Jane</a>", "[redacted]", "", ""},
		{"date", oidDate, -1, ts, "", "", ""},
		{"time", oidTime, -1, pgtype.Time{Microseconds: 3600e6, Valid: true}, "", "", ""},
		{"timestamp", oidTimestamp, -1, ts, "", "", ""},
		{"timestamptz", oidTimestamptz, -1, ts, "", "", ""},
		{"interval", oidInterval, -1, pgtype.Interval{Days: 3, Valid: true}, "", "", ""},
		{"uuid", oidUUID, -1, [16]byte{0x7d, 0x44, 0x48, 0x40, 15: 0xd2}, "", "", "*"},
		{"inet", oidInet, -1, netip.MustParsePrefix("10.1.2.3/32"), "", "", ""},
		{"cidr", oidCidr, -1, netip.MustParsePrefix("10.1.0.0/16"), "", "", ""},
		{"macaddr", oidMacaddr, -1, "08:00:2b:01:02:03", "", "", ""},
		{"text[]", 1009, -1, []string{"123-45-6789", "a b", "", "NULL"}, `{[redacted],[redacted],[redacted],[redacted]}`, `{***-**-6789,"a b","","NULL"}`, "*"},
		{"text[] with null", 1009, -1, []*string{ptr("Ann Lee"), nil}, `{[redacted],NULL}`, `{"**n Lee",NULL}`, "*"},
		{"varchar(3)[][]", 1015, 7, [][]string{{"abcd", "x"}, {"1234", "zz"}}, `{{[re,[re},{[re,[re}}`, "*", "*"},
		{"int4[]", 1007, -1, []int32{123456, -7}, "{0,0}", "{3456,-7}", "*"},
		{"uuid[]", 2951, -1, [][16]byte{{1}}, "{NULL}", "{NULL}", "*"},
		{"numeric[]", 1231, -1, []float64{1.5, 2}, "{0,0}", "{NULL,NULL}", "{NULL,NULL}"},
		{"date[]", 1182, -1, []time.Time{ts}, "{NULL}", "{NULL}", "{NULL}"},
		{"bpchar(3)[]", 1014, 7, []string{"ab "}, `{[re}`, `{"ab "}`, "*"},
	}
}

func ptr[T any](v T) *T { return &v }

// TestTypePreservation masks a value of every supported type with every
// action in both formats and decodes the result with pgx's type map.
func TestTypePreservation(t *testing.T) {
	m := pgtype.NewMap()
	actions := []string{"redact", "keep-last-4", "hash", "null"}
	for _, tc := range typeCases() {
		for _, action := range actions {
			for _, format := range []int16{pgtype.TextFormatCode, pgtype.BinaryFormatCode} {
				src, err := m.Encode(tc.oid, format, tc.value, nil)
				if err != nil {
					t.Fatalf("%s: encode: %v", tc.name, err)
				}
				// The binary case must feed masking the 6-byte wire form, not
				// the text form under a binary flag.
				if tc.oid == oidMacaddr && format == pgtype.BinaryFormatCode && len(src) != 6 {
					t.Fatalf("%s: binary source is %q, not 6 bytes", tc.name, src)
				}
				p := mustCompile(t, RuleConfig{Column: "t.c", Action: action})
				pl := p.Plan([]Column{{Source: "s.t.c", Name: "c", TypeOID: tc.oid, TypeMod: tc.typmod, Binary: format == 1}}, Params{})
				out, null := pl.AppendValue([]byte("prefix"), 0, src)
				if !bytes.HasPrefix(out, []byte("prefix")) {
					t.Fatalf("%s/%s: dst prefix lost", tc.name, action)
				}
				out = out[len("prefix"):]
				want := map[string]string{"redact": tc.redact, "keep-last-4": tc.keep4, "hash": tc.hash, "null": ""}[action]
				label := tc.name + "/" + action + "/" + map[int16]string{0: "text", 1: "binary"}[format]
				if null {
					if len(out) != 0 {
						t.Errorf("%s: NULL with %d bytes appended", label, len(out))
					}
					if want != "" {
						t.Errorf("%s: got NULL, want %q", label, want)
					}
					continue
				}
				if want == "" {
					t.Errorf("%s: got %q, want NULL", label, out)
					continue
				}
				var decoded any
				if err := m.Scan(tc.oid, format, out, &decoded); err != nil {
					t.Errorf("%s: masked value %q does not decode: %v", label, out, err)
					continue
				}
				if want == "*" {
					continue
				}
				// Compare in text format: re-encode binary output as text.
				// pgx decodes json to Go values and multi-dimensional arrays
				// flat, so those binary outputs are compared as raw bytes or
				// not at all.
				text := out
				switch {
				case tc.oid == oidJSON || tc.oid == oidJSONB:
					if tc.oid == oidJSONB && format == pgtype.BinaryFormatCode {
						if out[0] != 1 {
							t.Errorf("%s: jsonb version byte %d", label, out[0])
						}
						text = out[1:]
					}
				case strings.Contains(tc.name, "[][]") && format == pgtype.BinaryFormatCode:
					continue
				case format == pgtype.BinaryFormatCode:
					text, err = m.Encode(tc.oid, pgtype.TextFormatCode, decoded, nil)
					if err != nil {
						t.Errorf("%s: re-encode %v: %v", label, decoded, err)
						continue
					}
				}
				if string(text) != want {
					t.Errorf("%s: got %q, want %q", label, text, want)
				}
			}
		}
	}
}

// TestHashDeterministic checks that hashing gives the same output for the
// same input in both formats, different outputs for different inputs and
// keys, and keeps the shape of text.
func TestHashDeterministic(t *testing.T) {
	m := pgtype.NewMap()
	p := mustCompile(t, RuleConfig{Pattern: ".", Action: "hash"})
	other, err := Compile("o", ProfileConfig{Rules: []RuleConfig{{Pattern: ".", Action: "hash"}}}, Keys{Pseudonym: bytes.Repeat([]byte("j"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		oid  uint32
		a, b any
	}{
		{oidInt4, int32(42), int32(43)},
		{oidInt8, int64(42), int64(43)},
		{oidInt2, int16(42), int16(43)},
		{oidText, "Jane Doe", "Jane Dow"},
		{oidUUID, [16]byte{1, 2, 3}, [16]byte{1, 2, 4}},
		{oidBytea, []byte("x"), []byte("y")},
	} {
		decode := func(p *Profile, v any, format int16) any {
			src, err := m.Encode(tc.oid, format, v, nil)
			if err != nil {
				t.Fatal(err)
			}
			pl := p.Plan([]Column{{Name: "c", TypeOID: tc.oid, TypeMod: -1, Binary: format == 1}}, Params{})
			out, null := pl.AppendValue(nil, 0, src)
			if null {
				t.Fatalf("oid %d: hash gave NULL", tc.oid)
			}
			var d any
			if err := m.Scan(tc.oid, format, out, &d); err != nil {
				t.Fatalf("oid %d: %v", tc.oid, err)
			}
			s, err := m.Encode(tc.oid, 0, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			return string(s)
		}
		ta, ba := decode(p, tc.a, 0), decode(p, tc.a, 1)
		if ta != ba {
			t.Errorf("oid %d: text %v != binary %v", tc.oid, ta, ba)
		}
		if tb := decode(p, tc.b, 0); tb == ta {
			t.Errorf("oid %d: %v and %v hash alike: %v", tc.oid, tc.a, tc.b, ta)
		}
		if to := decode(other, tc.a, 0); to == ta {
			t.Errorf("oid %d: key does not change hash", tc.oid)
		}
		if orig, _ := m.Encode(tc.oid, 0, tc.a, nil); string(orig) == ta {
			t.Errorf("oid %d: hash kept the value %s", tc.oid, orig)
		}
	}
	pl := p.Plan([]Column{{Name: "c", TypeOID: oidText}, {Name: "d", TypeOID: oidBpchar, TypeMod: 10}, {Name: "e", TypeOID: oidVarchar}}, Params{})
	out, _ := pl.AppendValue(nil, 0, []byte("Jane-Doe 12/3"))
	if len(out) != 13 || out[4] != '-' || out[8] != ' ' || out[11] != '/' {
		t.Errorf("shape lost: %q", out)
	}
	for i, c := range out {
		o := "Jane-Doe 12/3"[i]
		same := (c >= 'A' && c <= 'Z') == (o >= 'A' && o <= 'Z') && (c >= 'a' && c <= 'z') == (o >= 'a' && o <= 'z') && (c >= '0' && c <= '9') == (o >= '0' && o <= '9')
		if !same {
			t.Errorf("char %d: %q -> %q", i, o, c)
		}
	}
	// char(6) and varchar with the same content hash alike (joins across types).
	bp, _ := pl.AppendValue(nil, 1, []byte("AB12  "))
	vc, _ := pl.AppendValue(nil, 2, []byte("AB12"))
	if string(bp) != string(vc)+"  " {
		t.Errorf("char(6) %q vs varchar %q", bp, vc)
	}
}

func TestMalformedBecomesNull(t *testing.T) {
	p := mustCompile(t, RuleConfig{Pattern: ".", Action: "hash"})
	for _, tc := range []struct {
		oid uint32
		bin bool
		v   string
	}{
		{oidInt4, false, "12x"}, {oidInt4, false, "99999999999"}, {oidInt2, true, "\x00"},
		{oidUUID, false, "not-a-uuid"}, {oidBytea, false, `\xZZ`}, {oidJSONB, true, "\x02\"a\""},
		{oidJSON, false, `"unterminated`}, {1009, false, "{a,"}, {1009, false, "a}"}, {1009, true, "\x00\x00\x00\x01"},
		{1007, true, "\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17\x7f\xff\xff\xff\x00\x00\x00\x01"},
	} {
		pl := p.Plan([]Column{{Name: "c", TypeOID: tc.oid, TypeMod: -1, Binary: tc.bin}}, Params{})
		out, null := pl.AppendValue([]byte("keep"), 0, []byte(tc.v))
		if !null || string(out) != "keep" {
			t.Errorf("oid %d %q: got %q null=%v, want NULL", tc.oid, tc.v, out, null)
		}
	}
}

func TestAppendValueNullAndPassThrough(t *testing.T) {
	p := mustCompile(t, RuleConfig{Column: "t.a", Action: "redact"})
	pl := p.Plan([]Column{{Source: "s.t.a", TypeOID: oidText}, {Source: "s.t.b", TypeOID: oidText}}, Params{})
	if out, null := pl.AppendValue(nil, 0, nil); !null || len(out) != 0 {
		t.Error("NULL input did not stay NULL")
	}
	if out, null := pl.AppendValue(nil, 1, []byte("Jane")); null || string(out) != "Jane" {
		t.Error("unmasked column changed")
	}
	if _, null := pl.AppendValue(nil, 7, []byte("Jane")); !null {
		t.Error("out-of-range column was not NULL")
	}
	pl.AppendValue(nil, 0, []byte("Jane"))
	pl.AppendValue(nil, 0, []byte("John"))
	if a := pl.Applied(); len(a) != 1 || a[0].Values != 2 || a[0].Source != "s.t.a" {
		t.Errorf("applied = %+v", a)
	}
}

func TestAppendValueDoesNotAllocate(t *testing.T) {
	p := mustCompile(t,
		RuleConfig{Column: "t.ssn", Action: "keep-last-4"},
		RuleConfig{Column: "t.mrn", Action: "hash"},
		RuleConfig{Column: "t.id", Action: "hash"},
		RuleConfig{Column: "t.tags", Action: "redact"},
		RuleConfig{Column: "t.doc", Action: "hash"},
	)
	cols := []Column{
		{Source: "s.t.ssn", TypeOID: oidText}, {Source: "s.t.mrn", TypeOID: oidVarchar},
		{Source: "s.t.id", TypeOID: oidInt8, Binary: true}, {Source: "s.t.tags", TypeOID: 1009},
		{Source: "s.t.id", TypeOID: oidUUID},
		{Source: "s.t.doc", TypeOID: oidJSONB},
	}
	vals := [][]byte{[]byte("123-45-6789"), []byte("MRN-0012345"), {0, 0, 0, 0, 0, 0, 1, 2}, []byte(`{a,"b c"}`), []byte("7d444840-9dc0-11d1-b245-5ffdce74fad2"), []byte(`"x y"`)}
	pl := p.Plan(cols, Params{})
	dst := make([]byte, 0, 1024)
	for i, v := range vals {
		allocs := testing.AllocsPerRun(100, func() {
			dst, _ = pl.AppendValue(dst[:0], i, v)
		})
		if allocs != 0 {
			t.Errorf("AppendValue on %+v allocates %.1f times per value", cols[i], allocs)
		}
	}
}
