package mask

import (
	"fmt"
	"strings"
	"testing"
)

// delimiters are what string_agg, array and record output, CSV exports
// and JSON put between values.
var delimiters = []string{",", ";", "|", "/", ":", "(", ")", "[", "]", "{", "}", `"`, "'", "\t", "\n"}

// TestPHINextToDelimiters joins the labelled PHI values of the development
// set with each delimiter and no space, as string_agg(ssn, ',') does, and
// wants every value that is found when they are joined with spaces to be
// found again.
func TestPHINextToDelimiters(t *testing.T) {
	sc := DefaultDetector().NewScanner()
	byType := map[EntityType][]string{}
	for _, l := range loadDevSet(t) {
		for _, g := range l.spans {
			byType[g.Type] = append(byType[g.Type], l.text[g.Start:g.End])
		}
	}
	// Where a delimiter is also part of the values' own syntax the list is
	// ambiguous to a reader too: dates joined by '/' or ':' read as one
	// date or a time ("3/14/2012/10/12"), "Apt 4/44 Elm Street" as a
	// fraction; and between words a slash ("y/o", "DNR/DNI"), an
	// apostrophe ("O'Brien") and a line break (names do not run across
	// lines) keep their meaning.
	skip := map[EntityType]string{TypeDate: "/:", TypeAddress: "/:'\n", TypeName: "/'\n", TypeLocation: "/'\n"}
	for typ, vals := range byType {
		for _, d := range delimiters {
			if strings.Contains(skip[typ], d) {
				continue
			}
			spaced, spacedAt := joinValues(vals, " ")
			joined, joinedAt := joinValues(vals, d)
			inSpaced := append([]Finding(nil), sc.Scan(spaced)...)
			inJoined := sc.Scan(joined)
			for k := range vals {
				if covered(inSpaced, spacedAt[k]) && !covered(inJoined, joinedAt[k]) {
					a := joinedAt[k]
					t.Errorf("%s %q joined by %q: missed in %q", typ, vals[k], d, joined[max(0, a.Start-20):min(len(joined), a.End+20)])
				}
			}
		}
	}
}

func joinValues(vals []string, sep string) ([]byte, []Finding) {
	var b []byte
	at := make([]Finding, len(vals))
	for i, v := range vals {
		if i > 0 {
			b = append(b, sep...)
		}
		at[i] = Finding{Start: len(b), End: len(b) + len(v)}
		b = append(b, v...)
	}
	return b, at
}

func covered(found []Finding, span Finding) bool {
	for _, f := range found {
		if overlaps(f, span) {
			return true
		}
	}
	return false
}

// TestContainerText scans the text forms of aggregates, arrays and
// records: every SSN, phone number, date, e-mail address and name in them
// must be found.
func TestContainerText(t *testing.T) {
	var ssns []string
	for i := 0; i < 40; i++ {
		ssns = append(ssns, fmt.Sprintf("%03d-%02d-%04d", 101+i*13, 10+i, 1000+i*97))
	}
	for _, tc := range []struct {
		text string
		want []string // each must lie inside a finding
	}{
		{strings.Join(ssns, ","), ssns},
		{strings.Join(ssns, ";"), ssns},
		{strings.Join(ssns, "|"), ssns},
		{strings.Join(ssns, "/"), ssns},
		{strings.Join(ssns, ":"), ssns},
		{strings.Join(ssns, "\n"), ssns},
		{"{" + strings.Join(ssns, ",") + "}", ssns},
		{`{123-45-6789,"Doe, John"}`, []string{"123-45-6789", "Doe", "John"}},
		{`(1,123-45-6789,John)`, []string{"123-45-6789", "John"}},
		{`(1,"Okafor, Maria",078-05-1120,617-555-0143,maria.okafor@example.com,1961-03-14)`,
			[]string{"Okafor", "Maria", "078-05-1120", "617-555-0143", "maria.okafor@example.com", "1961-03-14"}},
		{`{"(1,\"Okafor, Maria\",078-05-1120)","(2,\"Smith, John\",123-45-6789)"}`, []string{"Okafor", "Maria", "078-05-1120", "Smith", "John", "123-45-6789"}},
		{"617-555-0143,617-555-0144,(617) 555-0145", []string{"617-555-0143", "617-555-0144", "(617) 555-0145"}},
		{"3/14/2005,3/15/2005;2005-03-14|March 3, 2005", []string{"3/14/2005", "3/15/2005", "2005-03-14", "March 3, 2005"}},
		{"1,123-45-6789", []string{"123-45-6789"}},
		{"00458213,00458214", []string{"00458213", "00458214"}},
		{"Maria,Okafor;Maria Okafor|Okafor, Maria", []string{"Maria", "Okafor"}},
		{"4111 1111 1111 1111/5555555555554444", []string{"4111 1111 1111 1111", "5555555555554444"}},
		{"<ssn>123-45-6789</ssn><name>John Smith</name>", []string{"123-45-6789", "John Smith"}},
	} {
		text := []byte(tc.text)
		found := DefaultDetector().NewScanner().Scan(text)
		for _, w := range tc.want {
			for from := 0; ; {
				i := strings.Index(tc.text[from:], w)
				if i < 0 {
					break
				}
				span := Finding{Start: from + i, End: from + i + len(w)}
				if !covered(found, span) {
					t.Errorf("%q: %q at %d not found (found %q)", tc.text, w, span.Start, AppendTagged(nil, text, found))
				}
				from = span.End
			}
		}
	}
	// Numbers keep their meaning where the separators are theirs.
	for _, text := range []string{"12,000 units", "BP 120/80, HR 72", "at 10:30:00", "1,000,000 and 2,500.50", "ratio 1:10"} {
		if f := DefaultDetector().NewScanner().Scan([]byte(text)); len(f) != 0 {
			t.Errorf("%q: found %q", text, AppendTagged(nil, []byte(text), f))
		}
	}
}
