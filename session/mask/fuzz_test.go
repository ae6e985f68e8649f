package mask

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

var fuzzActions = []string{"redact", "keep-last-4", "hash", "null", "pseudonym", "date-shift", "generalize", "detect"}

// FuzzAppendValue feeds arbitrary bytes as values of every type, format and
// action. Masking must never panic, a NULL result appends nothing, and a
// valid input (one pgx decodes) gives a valid output.
func FuzzAppendValue(f *testing.F) {
	m := pgtype.NewMap()
	for _, tc := range typeCases() {
		for _, format := range []int16{0, 1} {
			src, err := m.Encode(tc.oid, format, tc.value, nil)
			if err != nil {
				continue
			}
			f.Add(tc.oid, tc.typmod, uint8(2), format == 1, src)
		}
	}
	profiles := make([]*Profile, len(fuzzActions)+1)
	for i, a := range fuzzActions {
		profiles[i] = mustCompile(f, RuleConfig{Pattern: ".", Action: a})
	}
	profiles[len(fuzzActions)] = hipaa(f) // classification and free-text scanning
	hip := uint8(len(fuzzActions))
	f.Add(uint32(oidText), int32(-1), hip, false, []byte("Seen by Dr. Hanley on 3/14/2005, (617) 555-0143"))
	f.Add(uint32(oidJSONB), int32(-1), hip, true, []byte("\x01{\"name\":\"Ann Lee\",\"n\":[1,\"x\"]}"))
	// The second layer: arrays, bytea, xml, records; and derived outputs
	// (action bit 0x40).
	f.Add(uint32(1009), int32(-1), hip, false, []byte(`{123-45-6789,"Doe, John",NULL,"a\\\"b"}`))
	f.Add(uint32(1009), int32(-1), hip|0x40, true, []byte("\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x19\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x0b123-45-6789"))
	f.Add(uint32(oidBytea), int32(-1), hip, false, []byte(`\x3132332d34352d36373839`))
	f.Add(uint32(oidBytea), int32(-1), hip, false, []byte(`SSN 123-45-6789\000\\`))
	f.Add(uint32(oidXML), int32(-1), hip, false, []byte(`<?xml version="1.0"?><p a='123-45-6789'>Maria Okafor &amp; <![CDATA[078-05-1120]]><!-- Dr. Hanley --></p>`))
	f.Add(uint32(16390), int32(-1), hip, false, []byte(`(1,"Okafor, Maria",078-05-1120)`))
	f.Add(uint32(16390), int32(-1), hip, true, binaryRecordOf(int32(1), "123-45-6789", nil, binaryRecordOf("Maria Okafor")))
	f.Add(uint32(3807), int32(-1), hip|0x40, false, []byte(`{"{\"a\": \"Maria Okafor\"}"}`))
	f.Fuzz(func(t *testing.T, oid uint32, typmod int32, action uint8, bin bool, v []byte) {
		p := profiles[int(action&0x3f)%len(profiles)]
		format := int16(0)
		if bin {
			format = 1
		}
		pl := p.Plan([]Column{
			{Name: "c", TypeOID: oid, TypeMod: typmod, Binary: bin},
			{Name: "dob", TypeOID: oid, TypeMod: typmod, Binary: bin},
			{Name: "d", TypeOID: oid, TypeMod: typmod, Binary: bin, Derived: []SourceCol{{Name: "public.p.ssn", TypeOID: oidText}}},
		}, Params{})
		if action&0x80 != 0 {
			pl.AppendValue(nil, 1, v) // the classified twin column
		}
		col := 0
		if action&0x40 != 0 {
			col = 2
		}
		out, null := pl.AppendValue([]byte("dst"), col, v)
		if string(out[:3]) != "dst" {
			t.Fatalf("dst clobbered: %q", out)
		}
		out = out[3:]
		if null {
			if len(out) != 0 {
				t.Fatalf("NULL with bytes %q", out)
			}
			return
		}
		if k, _ := typeOf(oid); k == kindOther && !bytes.Equal(out, v) {
			t.Fatalf("oid %d: a value of an unknown type was edited: %q -> %q", oid, v, out)
		}
		if k, _ := typeOf(oid); k == kindXML && !bin && wellFormed(v) == nil && wellFormed(out) != nil {
			t.Fatalf("well-formed xml %q masked to %q: %v", v, out, wellFormed(out))
		}
		if _, known := m.TypeForOID(oid); !known {
			return
		}
		var in any
		if err := m.Scan(oid, format, v, &in); err != nil {
			return // invalid input: only "no panic" is promised
		}
		var dec any
		if err := m.Scan(oid, format, out, &dec); err != nil {
			t.Fatalf("oid %d format %d profile %d column %d: input %q decodes, masked %q does not: %v", oid, format, int(action&0x3f)%len(profiles), col, v, out, err)
		}
		if k, arr := typeOf(oid); !arr && k.textLike() {
			if lim := charLimit(k, typmod); lim >= 0 && utf8.RuneCount(v) <= lim && utf8.RuneCount(out) > lim {
				t.Fatalf("%q exceeds %d characters", out, lim)
			}
		}
	})
}

// FuzzScan checks that findings are in bounds, ordered and disjoint, and
// that masking with them never panics.
func FuzzScan(f *testing.F) {
	for _, ex := range loadHandwritten(f) {
		f.Add([]byte(ex.text))
	}
	f.Add([]byte("(617) 555-1234 x12 +44 20 7946 0958 1.2.3.4 ::1 fe80::1%eth0 00:1A:2B:3C:4D:5E"))
	f.Add([]byte("O'Brien, Sean; van der Berg, Leah. 14-Mar-05 March 14th '05 2024-01-05T10:00:00Z"))
	for _, ex := range append(loadMarked(f, "styles6.txt", "styles"), loadMarked(f, "negatives3.txt", "neg3")...) {
		f.Add([]byte(ex.text))
	}
	f.Add([]byte("DR'S X AND ST. Y, TX'D TO Q 2 W. Z RRT 12 rue d 1100-048 L PSC 1 NW1 6XE 0 ST."))
	precise, err := NewDetector(DetectConfig{Mode: ModePrecision})
	if err != nil {
		f.Fatal(err)
	}
	scanners := []*Scanner{DefaultDetector().NewScanner(), precise.NewScanner()}
	f.Fuzz(func(t *testing.T, text []byte) {
		for _, sc := range scanners {
			found := sc.Scan(text)
			prev := 0
			for _, x := range found {
				if x.Start < prev || x.End <= x.Start || x.End > len(text) || x.Type == TypeNone || x.Type >= numTypes {
					t.Fatalf("bad finding %+v (prev end %d, len %d)", x, prev, len(text))
				}
				prev = x.End
			}
			AppendTagged(nil, text, found)
		}
	})
}

// FuzzAppendJSON checks that valid JSON stays valid JSON with the same
// shape of types, and that invalid JSON gives an error, never a panic.
func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte(`{"name": "John Smith", "age": 93, "notes": ["Seen by Dr. Hanley on 3/14/2005", 7, null, true]}`))
	f.Add([]byte(`[{"ssn":"078-05-1120"},{"zip":"02114"},{"dob":"1961-03-14"},{"phone":6175550143}]`))
	f.Add([]byte(`"Call (617) 555-0143"`))
	f.Add([]byte(`{"a":{"b":{"c":"\u00e9\ud83d\ude00 Dr. Smith"}}}`))
	pl := hipaa(f).Plan(nil, Params{})
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := pl.AppendJSON(nil, doc)
		if !json.Valid(doc) {
			if err == nil {
				t.Fatalf("invalid %q masked without error to %q", doc, out)
			}
			return
		}
		if err != nil {
			// Nesting is capped below encoding/json's limit; nothing else
			// that encoding/json accepts may be refused.
			if !strings.Contains(err.Error(), "nested deeper") {
				t.Fatalf("valid %q refused: %v", doc, err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("valid %q masked to invalid %q", doc, out)
		}
		var a, b any
		json.Unmarshal(doc, &a)
		json.Unmarshal(out, &b)
		if kindOf(a) != kindOf(b) {
			t.Fatalf("type changed: %q -> %q", doc, out)
		}
	})
}

func kindOf(v any) string {
	switch x := v.(type) {
	case map[string]any:
		s := "{"
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s += k + ":" + kindOf(x[k]) + ","
		}
		return s + "}"
	case []any:
		s := "["
		for _, e := range x {
			s += kindOf(e) + ","
		}
		return s + "]"
	case string:
		return "s"
	case float64:
		return "n"
	case bool:
		return "b"
	}
	return "null"
}

// FuzzStream checks that splitting text into two reads does not change
// the masked output.
func FuzzStream(f *testing.F) {
	f.Add([]byte("Pt seen by Dr. Hanley on 3/14/2005.\nCall (617) 555-0143\n"), uint16(20))
	f.Add([]byte("no line break at all, Maria Okafor 078-05-1120"), uint16(30))
	det := DefaultDetector()
	one := det.NewScanner()
	f.Fuzz(func(t *testing.T, text []byte, cut uint16) {
		c := int(cut) % (len(text) + 1)
		st := det.NewStream()
		out := st.Append(nil, text[:c])
		out = st.Append(out, text[c:])
		out = st.Flush(out)
		if len(text) < streamHold && bytes.IndexByte(text, '\n') < 0 {
			want := AppendTagged(nil, text, one.Scan(text))
			if !bytes.Equal(out, want) {
				t.Fatalf("split at %d: %q, want %q", c, out, want)
			}
		}
	})
}

// FuzzMaskText checks that free text never panics, comes back unchanged
// when nothing is found, and otherwise comes back with exactly the
// scanner's findings replaced by their tags. A second pass over the output
// is not clean, and is not checked: detection reads context, and a tag is
// context ("Dr. [NAME]" is a title and a name again; in "K[NAME],bAA" the
// tag makes "bAA" the next name of a list).
func FuzzMaskText(f *testing.F) {
	for _, ex := range loadHandwritten(f) {
		f.Add([]byte(ex.text))
	}
	f.Add([]byte("Key (ssn)=(123-45-6789) already exists"))
	f.Add([]byte("123-45-6789,234-56-7890;(617) 555-0143|Maria,Okafor"))
	p := hipaa(f)
	sc := p.det.NewScanner()
	f.Fuzz(func(t *testing.T, text []byte) {
		out, changed := p.MaskText([]byte("x"), text)
		if string(out[:1]) != "x" {
			t.Fatal("dst clobbered")
		}
		out = out[1:]
		if !changed && !bytes.Equal(out, text) {
			t.Fatalf("unchanged text %q came back as %q", text, out)
		}
		found := sc.Scan(text)
		if changed != (len(found) > 0) {
			t.Fatalf("%q: changed %v with %d findings", text, changed, len(found))
		}
		var want []byte
		prev := 0
		for _, x := range found {
			want = append(want, text[prev:x.Start]...)
			want = append(append(append(want, '['), x.Type.String()...), ']')
			prev = x.End
		}
		want = append(want, text[prev:]...)
		if !bytes.Equal(out, want) {
			t.Fatalf("%q masked to %q, want its findings tagged: %q", text, out, want)
		}
	})
}

// FuzzXMLEditable checks that replacing findings where xmlEditable allows
// keeps a well-formed document well-formed.
func FuzzXMLEditable(f *testing.F) {
	f.Add([]byte(`<p a="x">Maria &amp; Okafor<![CDATA[ y ]]><!-- z --></p>`), uint16(3), uint16(9))
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE p [<!ELEMENT p ANY>]><p>a]]&gt;</p>`), uint16(60), uint16(61))
	f.Fuzz(func(t *testing.T, doc []byte, start, end uint16) {
		s, e := int(start), int(end)
		if s >= e || e > len(doc) || wellFormed(doc) != nil {
			return
		}
		found := []Finding{{Start: s, End: e, Type: TypeName}}
		if !xmlEditable(doc, found) {
			return
		}
		out := AppendTagged(nil, doc, found)
		if err := wellFormed(out); err != nil {
			t.Fatalf("%q with [%d,%d) replaced: %q: %v", doc, s, e, out, err)
		}
	})
}
