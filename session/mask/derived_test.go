package mask

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Base columns of the attacks: a read grant on patients, with rules on
// some columns and the HIPAA detectors on.
var (
	srcSSN   = SourceCol{Name: "public.patients.ssn", TypeOID: oidText}
	srcDOB   = SourceCol{Name: "public.patients.dob", TypeOID: oidDate}
	srcFirst = SourceCol{Name: "public.patients.first_name", TypeOID: oidText}
	srcNotes = SourceCol{Name: "public.patients.notes", TypeOID: oidText}
	srcID    = SourceCol{Name: "public.patients.id", TypeOID: oidInt8}
	srcMRN   = SourceCol{Name: "public.patients.mrn", TypeOID: oidText}
)

func attackProfile(t testing.TB, detect bool) *Profile {
	t.Helper()
	cfg := ProfileConfig{Rules: []RuleConfig{
		{Name: "ssn-last4", Column: "public.patients.ssn", Action: "keep-last-4"},
		{Name: "dob-null", Column: "patients.dob", Action: "null"},
		{Name: "mrn-hash", Column: "patients.mrn", Action: "hash"},
	}}
	if detect {
		cfg.Detect = &DetectConfig{}
	}
	p, err := Compile("attack", cfg, testKeys)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// maskOne masks value (a Go value pgx encodes) of column c in c's format
// and returns the masked bytes (nil for NULL) and the plan.
func maskOne(t *testing.T, p *Profile, c Column, value any) ([]byte, *Plan) {
	t.Helper()
	m := pgtype.NewMap()
	format := int16(0)
	if c.Binary {
		format = 1
	}
	src, err := m.Encode(c.TypeOID, format, value, nil)
	if err != nil {
		t.Fatalf("encode %v as %d: %v", value, c.TypeOID, err)
	}
	pl := p.Plan([]Column{c}, Params{})
	out, null := pl.AppendValue(nil, 0, src)
	if null {
		return nil, pl
	}
	if out == nil {
		out = []byte{}
	}
	if _, known := m.TypeForOID(c.TypeOID); known {
		var d any
		if err := m.Scan(c.TypeOID, format, out, &d); err != nil {
			t.Errorf("%s: masked %q does not decode as %d/%d: %v", c.Name, out, c.TypeOID, format, err)
		}
	}
	return out, pl
}

// TestDerivedOutputs runs the expressions of the report that got raw PHI
// past the column rules: each output is masked whole, for its own type,
// in both formats.
func TestDerivedOutputs(t *testing.T) {
	ts := time.Date(1961, 3, 14, 0, 0, 0, 0, time.UTC)
	for _, detect := range []bool{false, true} {
		p := attackProfile(t, detect)
		for _, tc := range []struct {
			name    string
			col     Column
			value   any
			want    string // text format; "" = NULL; binary compared after decoding
			wantBin []byte // binary format, when it is not decoded
			rule    string
		}{
			{"substr(ssn,1,4)", Column{TypeOID: oidText, Derived: []SourceCol{srcSSN}}, "123-", "[redacted]", nil, "derived:ssn-last4"},
			{"reverse(ssn)::varchar(4)", Column{TypeOID: oidVarchar, TypeMod: 8, Derived: []SourceCol{srcSSN}}, "9876", "[red", nil, "derived:ssn-last4"},
			{"ssn::char(12)", Column{TypeOID: oidBpchar, TypeMod: 16, Derived: []SourceCol{srcSSN}}, "123-45-6789 ", "[redacted]  ", nil, "derived:ssn-last4"},
			{"dob + 0", Column{TypeOID: oidDate, Derived: []SourceCol{srcDOB}}, ts, "", nil, "derived:dob-null"},
			{"ssn || dob", Column{TypeOID: oidText, Derived: []SourceCol{srcSSN, srcDOB}}, "123-45-6789 1961-03-14", "", nil, "derived:dob-null"},
			{"ARRAY[ssn]", Column{TypeOID: 1009, Derived: []SourceCol{srcSSN}}, []string{"123-45-6789", "078-05-1120"}, "{[redacted],[redacted]}", nil, "derived:ssn-last4"},
			{"array_agg(ssn) 2-D", Column{TypeOID: 1009, Derived: []SourceCol{srcSSN}}, [][]string{{"123-45-6789"}, {"078-05-1120"}}, "{{[redacted]},{[redacted]}}", nil, "derived:ssn-last4"},
			{"string_agg(ssn, ',')", Column{TypeOID: oidText, Derived: []SourceCol{srcSSN}}, "123-45-6789,078-05-1120", "[redacted]", nil, "derived:ssn-last4"},
			{"length(ssn)", Column{TypeOID: oidInt4, Derived: []SourceCol{srcSSN}}, int32(11), "0", nil, "derived:ssn-last4"},
			{"ssn::numeric", Column{TypeOID: oidNumeric, Derived: []SourceCol{srcSSN}}, 123456789, "0", nil, "derived:ssn-last4"},
			{"ssn = 'x'", Column{TypeOID: oidBool, Derived: []SourceCol{srcSSN}}, true, "", nil, "derived:ssn-last4"},
			{"ssn::bytea", Column{TypeOID: oidBytea, Derived: []SourceCol{srcSSN}}, []byte("123-45-6789"), `\x`, []byte{}, "derived:ssn-last4"},
			{"xmlelement(ssn)", Column{TypeOID: oidXML, Derived: []SourceCol{srcSSN}}, "<ssn>123-45-6789</ssn>", "[redacted]", nil, "derived:ssn-last4"},
			{"to_json(ssn)", Column{TypeOID: oidJSON, Derived: []SourceCol{srcSSN}}, `"123-45-6789"`, `"[redacted]"`, nil, "derived:ssn-last4"},
			{"jsonb_build_object", Column{TypeOID: oidJSONB, Derived: []SourceCol{srcSSN}}, `{"ssn": "123-45-6789"}`, `"[redacted]"`, []byte("\x01\"[redacted]\""), "derived:ssn-last4"},
			{"md5(mrn) (hash rule)", Column{TypeOID: oidText, Derived: []SourceCol{srcMRN}}, "00458213", "[redacted]", nil, "derived:mrn-hash"},
			{"SELECT p FROM patients p", Column{TypeOID: 16390, Derived: []SourceCol{srcID, srcSSN, srcFirst}}, nil, "", nil, "derived:ssn-last4"},
		} {
			for _, bin := range []bool{false, true} {
				c := tc.col
				c.Name, c.Binary = "out", bin
				label := tc.name
				if bin {
					label += "/binary"
				}
				var out []byte
				var pl *Plan
				if tc.value == nil { // a type pgx cannot encode: a record
					pl = p.Plan([]Column{c}, Params{})
					raw := []byte("(1,123-45-6789,Maria)")
					if bin {
						raw = binaryRecordOf(int32(1), "123-45-6789", "Maria")
					}
					var null bool
					if out, null = pl.AppendValue(nil, 0, raw); null {
						out = nil
					}
				} else {
					out, pl = maskOne(t, p, c, tc.value)
				}
				if !pl.Masked(0) {
					t.Errorf("%s: not masked", label)
					continue
				}
				switch {
				case tc.want == "":
					if out != nil {
						t.Errorf("%s: got %q, want NULL", label, out)
					}
				case out == nil:
					t.Errorf("%s: NULL, want %q", label, tc.want)
				case bin && tc.wantBin != nil:
					if !bytes.Equal(out, tc.wantBin) {
						t.Errorf("%s: got %q, want %q", label, out, tc.wantBin)
					}
				case bin:
					m := pgtype.NewMap()
					var d any
					if err := m.Scan(c.TypeOID, 1, out, &d); err != nil {
						t.Errorf("%s: %v", label, err)
						continue
					}
					if tc.col.TypeOID == oidJSON {
						d = `"` + d.(string) + `"`
					}
					if strings.HasPrefix(tc.name, "array_agg") {
						d = []any{[]any{"[redacted]"}, []any{"[redacted]"}} // pgx flattens; compare dimensions below
						if dims := int32(binary.BigEndian.Uint32(out)); dims != 2 {
							t.Errorf("%s: %d dimensions, want 2", label, dims)
						}
						continue
					}
					text, err := m.Encode(c.TypeOID, 0, d, nil)
					if err != nil {
						t.Errorf("%s: %v", label, err)
						continue
					}
					if string(text) != tc.want {
						t.Errorf("%s: got %q, want %q", label, text, tc.want)
					}
				default:
					if string(out) != tc.want {
						t.Errorf("%s: got %q, want %q", label, out, tc.want)
					}
				}
				a := pl.Applied()
				if len(a) != 1 || a[0].Rule != tc.rule || a[0].Values != 1 || len(a[0].Derived) != len(tc.col.Derived) || a[0].Derived[0] != tc.col.Derived[0].Name {
					t.Errorf("%s: applied %+v, want rule %q", label, a, tc.rule)
				}
			}
		}
	}
}

// TestDerivedNeverPartial checks that a derived value is not revealed by
// the partial actions of its source: keep-last-4 would show a substring
// whole, and a keyed hash of an expression matches the hash of a guess.
func TestDerivedNeverPartial(t *testing.T) {
	p := attackProfile(t, true)
	pl := p.Plan([]Column{
		{Name: "s", TypeOID: oidText, Derived: []SourceCol{srcMRN}},
		{Name: "guess", TypeOID: oidText},
	}, Params{})
	a, _ := pl.AppendValue(nil, 0, []byte("00458213"))
	b, _ := pl.AppendValue(nil, 0, []byte("99999999"))
	if !bytes.Equal(a, b) || string(a) != "[redacted]" {
		t.Errorf("derived from a hashed column: %q and %q", a, b)
	}
	// Classified and scanned sources count as masked too.
	for _, tc := range []struct {
		src  SourceCol
		rule string
	}{
		{srcFirst, "derived:classify:NAME"},
		{srcNotes, "derived:detect"},
		{SourceCol{Name: "public.patients.ssn_text", TypeOID: oidText}, "derived:detect"},
	} {
		pl := p.Plan([]Column{{Name: "x", TypeOID: oidText, Derived: []SourceCol{srcID, tc.src}}}, Params{})
		out, _ := pl.AppendValue(nil, 0, []byte("airaM"))
		if string(out) != "[redacted]" || pl.Applied()[0].Rule != tc.rule {
			t.Errorf("%s: %q %+v", tc.src.Name, out, pl.Applied())
		}
	}
	// A pattern on the source column's name selects its derived outputs.
	pp := mustCompile(t, RuleConfig{Pattern: "^ssn$", Action: "hash"})
	pl = pp.Plan([]Column{{Name: "x", TypeOID: oidText, Derived: []SourceCol{{Name: "billing.people.ssn", TypeOID: oidText}}}}, Params{})
	if out, _ := pl.AppendValue(nil, 0, []byte("6789")); string(out) != "[redacted]" {
		t.Errorf("pattern on a derived source: %q", out)
	}
	// Sources nothing masks: a rules-only profile leaves the output alone;
	// with detection on, text output is scanned like any other column.
	for _, detect := range []bool{false, true} {
		p := attackProfile(t, detect)
		pl := p.Plan([]Column{{Name: "x", TypeOID: oidText, Derived: []SourceCol{srcID}}, {Name: "n", TypeOID: oidInt8, Derived: []SourceCol{srcID}}}, Params{})
		if pl.Masked(1) {
			t.Error("int8 derived from an unmasked column is masked")
		}
		if pl.Masked(0) != detect {
			t.Errorf("detect=%v: text derived from an unmasked column masked=%v", detect, pl.Masked(0))
		}
		out, _ := pl.AppendValue(nil, 0, []byte("id 078-05-1120"))
		if want := map[bool]string{false: "id 078-05-1120", true: "id [SSN]"}[detect]; string(out) != want {
			t.Errorf("detect=%v: %q, want %q", detect, out, want)
		}
	}
}

func TestWithhold(t *testing.T) {
	for _, p := range []*Profile{attackProfile(t, false), hipaa(t), mustCompile(t)} {
		pl := p.Plan([]Column{{Name: "x", TypeOID: oidInt4, Withhold: true}, {Name: "y", TypeOID: oidText, Source: "public.patients.ssn", Withhold: true}}, Params{})
		var proofs []string
		pl.SetProofSink(func(pr *Proof) { proofs = append(proofs, pr.Rule+":"+string(pr.Raw)) })
		for i := 0; i < 2; i++ {
			if out, null := pl.AppendValue([]byte("k"), i, []byte("42")); !null || string(out) != "k" {
				t.Errorf("withheld column %d: %q null=%v", i, out, null)
			}
			if _, null := pl.AppendValue(nil, i, nil); !null {
				t.Error("NULL stays NULL")
			}
		}
		a := pl.Applied()
		if !pl.Active() || len(a) != 2 || a[0].Rule != "withhold" || a[0].Action != "null" || a[0].Values != 1 || a[0].Reason == "" {
			t.Errorf("applied %+v", a)
		}
		if len(proofs) != 2 || proofs[0] != "withhold:42" {
			t.Errorf("proofs %q", proofs)
		}
	}
}

// binaryRecordOf encodes a record in binary format: int4 and text fields.
func binaryRecordOf(fields ...any) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(fields)))
	for _, f := range fields {
		switch x := f.(type) {
		case int32:
			b = binary.BigEndian.AppendUint32(b, oidInt4)
			b = binary.BigEndian.AppendUint32(b, 4)
			b = binary.BigEndian.AppendUint32(b, uint32(x))
		case string:
			b = binary.BigEndian.AppendUint32(b, oidText)
			b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
			b = append(b, x...)
		case []byte: // a nested record
			b = binary.BigEndian.AppendUint32(b, 2249)
			b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
			b = append(b, x...)
		case nil:
			b = binary.BigEndian.AppendUint32(b, oidText)
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
		}
	}
	return b
}

// TestScanContainers checks the second layer: with the detectors on,
// every output that can carry text is scanned, whatever wraps the text.
func TestScanContainers(t *testing.T) {
	p := hipaa(t)
	m := pgtype.NewMap()
	enc := func(oid uint32, bin bool, v any) []byte {
		format := int16(0)
		if bin {
			format = 1
		}
		b, err := m.Encode(oid, format, v, nil)
		if err != nil {
			t.Fatalf("encode %v: %v", v, err)
		}
		return b
	}
	const (
		ssn  = "123-45-6789"
		note = "Seen by Dr. Hanley on 3/14/2005"
	)
	for _, bin := range []bool{false, true} {
		for _, tc := range []struct {
			name      string
			oid       uint32
			in, clean []byte
			want      any // decoded masked value; nil = NULL
		}{
			{"text[]", 1009, enc(1009, bin, []string{ssn, "Doe, John", "clean", note}), enc(1009, bin, []string{"a b", "", "clean"}),
				[]any{"[SSN]", "[NAME]", "clean", "Seen by Dr. [NAME] on [DATE]"}},
			{"varchar[]", 1015, enc(1015, bin, []string{"call 617-555-0143"}), enc(1015, bin, []string{"call back"}), []any{"call [PHONE]"}},
			{"name[]", 1003, enc(1003, bin, []string{ssn}), enc(1003, bin, []string{"x"}), []any{"[SSN]"}},
			{"jsonb[]", 3807, enc(3807, bin, []any{map[string]any{"note": note}}), enc(3807, bin, []any{map[string]any{"note": "ok"}}),
				[]any{map[string]any{"note": "Seen by Dr. [NAME] on [DATE]"}}},
			{"bytea", oidBytea, enc(oidBytea, bin, []byte("ssn "+ssn+"\x00\xff")), enc(oidBytea, bin, []byte("\x00\x01\xff")), []byte("ssn [SSN]\x00\xff")},
			{"bytea[]", 1001, enc(1001, bin, [][]byte{[]byte(ssn)}), enc(1001, bin, [][]byte{[]byte("x")}), []any{[]byte("[SSN]")}},
			{"xml", oidXML, enc(oidXML, bin, `<p id="`+ssn+`">`+note+`</p>`), enc(oidXML, bin, `<p id="7">fine</p>`), []byte(`<p id="[SSN]">Seen by Dr. [NAME] on [DATE]</p>`)},
			{"xml[]", 143, enc(143, bin, []string{"<a>" + ssn + "</a>"}), enc(143, bin, []string{"<a/>"}), []any{[]byte("<a>[SSN]</a>")}},
		} {
			label := tc.name + map[bool]string{false: "/text", true: "/binary"}[bin]
			pl := p.Plan([]Column{{Name: "v", TypeOID: tc.oid, TypeMod: -1, Binary: bin}}, Params{})
			if !pl.Masked(0) {
				t.Errorf("%s: not scanned", label)
				continue
			}
			out, null := pl.AppendValue(nil, 0, tc.in)
			if null {
				t.Errorf("%s: NULL", label)
				continue
			}
			format := int16(0)
			if bin {
				format = 1
			}
			var d any
			if err := m.Scan(tc.oid, format, out, &d); err != nil {
				t.Errorf("%s: %q does not decode: %v", label, out, err)
				continue
			}
			if !equalish(d, tc.want) {
				t.Errorf("%s: got %#v (%q), want %#v", label, d, out, tc.want)
			}
			if a := pl.Applied(); a[0].Values != 1 || a[0].Scanned != 0 {
				t.Errorf("%s: applied %+v", label, a)
			}
			// A clean value passes unchanged and counts as scanned.
			clean := tc.clean
			if out, null := pl.AppendValue(nil, 0, clean); null || !bytes.Equal(out, clean) {
				t.Errorf("%s: clean %q became %q", label, clean, out)
			}
			if a := pl.Applied(); a[0].Scanned != 1 {
				t.Errorf("%s: clean value not counted as scanned: %+v", label, a)
			}
		}
	}
}

// equalish compares a decoded pgx value with a wanted one, looking through
// the types pgx picks (strings for text, []byte for bytea, maps for json).
func equalish(got, want any) bool {
	switch w := want.(type) {
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !equalish(g[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k := range w {
			if !equalish(g[k], w[k]) {
				return false
			}
		}
		return true
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	}
	return got == want
}

// TestScanBytea covers both text formats of bytea.
func TestScanBytea(t *testing.T) {
	pl := hipaa(t).Plan([]Column{{Name: "b", TypeOID: oidBytea}}, Params{})
	for _, tc := range []struct{ in, want string }{
		{`\x` + hexOf("SSN 123-45-6789\n"), `\x` + hexOf("SSN [SSN]\n")},
		{`SSN 123-45-6789\012\\`, `SSN [SSN]\012\\`},
		{`\x00ff`, `\x00ff`},
	} {
		out, null := pl.AppendValue(nil, 0, []byte(tc.in))
		if null || string(out) != tc.want {
			t.Errorf("%q: got %q null=%v, want %q", tc.in, out, null, tc.want)
		}
	}
	if _, null := pl.AppendValue(nil, 0, []byte(`\xZZ`)); !null {
		t.Error("malformed bytea not NULL")
	}
}

func hexOf(s string) string {
	const h = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(h[s[i]>>4])
		b.WriteByte(h[s[i]&15])
	}
	return b.String()
}

// TestScanXML replaces PHI inside text, attribute values, comments and
// CDATA; anything it cannot replace and keep the document well-formed
// makes the value NULL.
func TestScanXML(t *testing.T) {
	pl := hipaa(t).Plan([]Column{{Name: "x", TypeOID: oidXML}}, Params{})
	for _, tc := range []struct{ in, want string }{
		{`<?xml version="1.0"?><!DOCTYPE p [<!ELEMENT p ANY>]><p a='123-45-6789' b="x">Call 617-555-0143 &amp; <b>Maria Okafor</b></p>`,
			`<?xml version="1.0"?><!DOCTYPE p [<!ELEMENT p ANY>]><p a='[SSN]' b="x">Call [PHONE] &amp; <b>[NAME]</b></p>`},
		{`<!-- ssn 123-45-6789 --><a/>`, `<!-- ssn [SSN] --><a/>`},
		{`<a><![CDATA[ 123-45-6789 < ]]></a>`, `<a><![CDATA[ [SSN] < ]]></a>`},
		{`clean <a>text</a>`, `clean <a>text</a>`},
		{`<p>123-45-6789]]&gt;</p>`, `<p>[SSN]]]&gt;</p>`},
		{`<p>123-45-6789</p>`, `<p>[SSN]</p>`},
		{`<?pi 123-45-6789?><a/>`, ""}, // inside a processing instruction
		{`<Maria.Okafor/>`, ""},        // a tag name
		{`<p>x&#49;23-45-6789</p>`, "<p>x&#49;[ID]</p>"},
	} {
		out, null := pl.AppendValue(nil, 0, []byte(tc.in))
		if tc.want == "" {
			if !null {
				t.Errorf("%q: got %q, want NULL", tc.in, out)
			}
			continue
		}
		if null || string(out) != tc.want {
			t.Errorf("%q: got %q null=%v, want %q", tc.in, out, null, tc.want)
			continue
		}
		if err := wellFormed(out); err != nil && strings.HasPrefix(tc.in, "<") {
			t.Errorf("%q: masked %q is not well-formed: %v", tc.in, out, err)
		}
	}
	// A finding that would cut a reference, or create "]]>", gives NULL.
	for _, found := range [][]Finding{
		{{Start: 5, End: 9, Type: TypeName}},  // "&amp" of "<p>a &amp; b</p>"... cut
		{{Start: 3, End: 6, Type: TypeName}},  // "a &" cuts the reference
		{{Start: 2, End: 4, Type: TypeName}},  // crosses the tag
		{{Start: 9, End: 12, Type: TypeName}}, // past the end of the element text
	} {
		if xmlEditable([]byte("<p>a &amp; b</p>"), found) {
			t.Errorf("%+v: editable", found)
		}
	}
	if !xmlEditable([]byte("<p>a &amp; b</p>"), []Finding{{Start: 3, End: 10}}) {
		t.Error("a finding that holds a whole reference is editable")
	}
	if xmlEditable([]byte("<p>John]></p>"), []Finding{{Start: 3, End: 7}}) {
		t.Error(`"]]>" after a replacement`)
	}
}

// wellFormed parses an XML document or content fragment strictly.
func wellFormed(doc []byte) error {
	d := xml.NewDecoder(io.MultiReader(strings.NewReader("<r>"), bytes.NewReader(trimDecl(doc)), strings.NewReader("</r>")))
	d.Strict = true
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// trimDecl removes an XML declaration and DOCTYPE, which cannot follow <r>.
func trimDecl(doc []byte) []byte {
	if bytes.HasPrefix(doc, []byte("<?xml")) {
		doc = doc[bytes.Index(doc, []byte("?>"))+2:]
	}
	if bytes.HasPrefix(doc, []byte("<!DOCTYPE")) {
		doc = doc[bytes.Index(doc, []byte("]>"))+2:]
	}
	return doc
}

// TestScanOpaque covers types this package does not know: a record in
// text or binary format with PHI becomes NULL, a clean one passes, and
// the recording says how each value was handled.
func TestScanOpaque(t *testing.T) {
	p := hipaa(t)
	const recordOID = 16390
	pl := p.Plan([]Column{{Name: "p", TypeOID: recordOID}, {Name: "q", TypeOID: recordOID, Binary: true}}, Params{})
	for _, v := range []string{`(1,123-45-6789,John)`, `(1,"Okafor, Maria",)`, `(7,"(2,\"Doe, John\")")`, `{"(1,078-05-1120)"}`} {
		if out, null := pl.AppendValue(nil, 0, []byte(v)); !null {
			t.Errorf("record %q passed as %q", v, out)
		}
	}
	if out, null := pl.AppendValue(nil, 0, []byte("(1,42,clean)")); null || string(out) != "(1,42,clean)" {
		t.Errorf("clean record: %q null=%v", out, null)
	}
	for _, v := range [][]byte{
		binaryRecordOf(int32(1), "123-45-6789", "x"),
		binaryRecordOf(int32(0x41414141), "Maria", nil, "Okafor"),
		binaryRecordOf(int32(2), binaryRecordOf("Seen by Dr. Hanley")),
		[]byte("Maria Okafor"), // an enum label or other text, unframed
	} {
		if out, null := pl.AppendValue(nil, 1, v); !null {
			t.Errorf("binary record %q passed as %q", v, out)
		}
	}
	clean := binaryRecordOf(int32(7), "clean", nil)
	if out, null := pl.AppendValue(nil, 1, clean); null || !bytes.Equal(out, clean) {
		t.Errorf("clean binary record: %q null=%v", out, null)
	}
	a := pl.Applied()
	if len(a) != 2 || a[0].Values != 4 || a[0].Scanned != 1 || a[0].Passed != 0 || a[0].Reason == "" ||
		a[1].Values != 4 || a[1].Passed != 1 || a[1].Scanned != 0 || !strings.Contains(a[1].Reason, "binary") {
		t.Errorf("applied %+v", a)
	}
}

// TestScannedArraysAreScanned is the regression test for arrays in scan
// mode, which passed raw while the recording said they were scanned.
func TestScannedArraysAreScanned(t *testing.T) {
	pl := hipaa(t).Plan([]Column{{Source: "public.t.tags", Name: "tags", TypeOID: 1009}}, Params{})
	out, _ := pl.AppendValue(nil, 0, []byte(`{123-45-6789,"Maria Okafor"}`))
	if string(out) != `{[SSN],[NAME]}` {
		t.Errorf("got %q", out)
	}
	if a := pl.Applied(); len(a) != 1 || a[0].Rule != "detect" || a[0].Values != 1 {
		t.Errorf("applied %+v", a)
	}
}

func TestMaskText(t *testing.T) {
	for _, tc := range []struct {
		p    *Profile
		want string
	}{
		{hipaa(t), `duplicate key value violates unique constraint: Key (ssn)=([SSN]) already exists; contact [NAME]`},
		{attackProfile(t, false), `duplicate key value violates unique constraint: Key (ssn)=([SSN]) already exists; contact [NAME]`},
		{mustCompile(t), `duplicate key value violates unique constraint: Key (ssn)=(123-45-6789) already exists; contact Maria Okafor`},
		{nil, `duplicate key value violates unique constraint: Key (ssn)=(123-45-6789) already exists; contact Maria Okafor`},
	} {
		in := []byte(`duplicate key value violates unique constraint: Key (ssn)=(123-45-6789) already exists; contact Maria Okafor`)
		out, changed := tc.p.MaskText([]byte("> "), in)
		if string(out) != "> "+tc.want || changed != (tc.want != string(in)) {
			t.Errorf("got %q changed=%v, want %q", out, changed, tc.want)
		}
	}
	pseudo, err := Compile("p", ProfileConfig{Detect: &DetectConfig{TextAction: "pseudonym"}}, testKeys)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := pseudo.MaskText(nil, []byte("Seen by Dr. Hanley"))
	b, _ := pseudo.MaskText(nil, []byte("Seen by Dr. Hanley"))
	if !bytes.Equal(a, b) || bytes.Contains(a, []byte("Hanley")) || !bytes.HasPrefix(a, []byte("Seen by Dr. ")) {
		t.Errorf("pseudonym: %q %q", a, b)
	}
	p := hipaa(t)
	dst := make([]byte, 0, 256)
	msg := []byte("NOTIFY payload: patient 078-05-1120 moved to bed 4")
	p.MaskText(dst, msg)
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	if n := testing.AllocsPerRun(50, func() { dst, _ = p.MaskText(dst[:0], msg) }); n != 0 {
		t.Errorf("MaskText allocates %.1f times", n)
	}
}

// TestSecondLayerDoesNotAllocate masks arrays, bytea, xml and records in
// scan mode without allocating once warm.
func TestSecondLayerDoesNotAllocate(t *testing.T) {
	p := hipaa(t)
	cols := []Column{
		{Name: "a", TypeOID: 1009}, {Name: "b", TypeOID: 1009, Binary: true}, {Name: "c", TypeOID: oidBytea},
		{Name: "d", TypeOID: oidXML}, {Name: "e", TypeOID: 16390}, {Name: "f", TypeOID: 16390, Binary: true},
		{Name: "g", TypeOID: oidText, Derived: []SourceCol{srcNotes}}, {Name: "h", TypeOID: 1009, Derived: []SourceCol{srcNotes}},
	}
	m := pgtype.NewMap()
	binArr, _ := m.Encode(1009, 1, []string{"123-45-6789", "clean"}, nil)
	vals := [][]byte{
		[]byte(`{123-45-6789,clean}`), binArr, []byte(`\x` + hexOf("SSN 123-45-6789")), []byte(`<a b="123-45-6789">Maria Okafor</a>`),
		[]byte(`(1,clean)`), binaryRecordOf(int32(1), "clean"), []byte("Maria"), []byte(`{a,b}`),
	}
	pl := p.Plan(cols, Params{})
	dst := make([]byte, 0, 1024)
	for i := range cols {
		v := vals[i]
		if n := testing.AllocsPerRun(20, func() { dst, _ = pl.AppendValue(dst[:0], i, v) }); n != 0 {
			t.Errorf("%s: %.1f allocs", cols[i].Name, n)
		}
	}
}
