package mask

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestDictionaryTable checks that every listed word is found in the hash
// table under its own flags, in any letter case, and that words not listed
// are not.
func TestDictionaryTable(t *testing.T) {
	d := loadDict()
	for _, c := range []struct {
		file string
		flag wflag
	}{{"data/first_names.txt", fFirst}, {"data/last_names.txt", fLast}, {"data/us_cities.txt", fCity}, {"data/common_words.txt", fCommon}} {
		b, err := dataFS.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		n := 0
		for sc.Scan() {
			w := strings.TrimSpace(strings.ToLower(sc.Text()))
			if w == "" || w[0] == '#' || strings.Contains(w, " ") || len(w) > maxWordLen {
				continue
			}
			n++
			for _, v := range []string{w, strings.ToUpper(w[:1]) + w[1:], strings.ToUpper(w)} {
				if !isASCII(v) && v != w {
					continue // the scanner folds ASCII letters only
				}
				if d.lookup([]byte(v))&c.flag == 0 {
					t.Fatalf("%s: %q not found with its flag", c.file, v)
				}
			}
		}
		if n < 1000 {
			t.Fatalf("%s: only %d words", c.file, n)
		}
	}
	for _, w := range []string{"qzxvbnmw", "Xylophonequartz", "zzzzzzzzzzzzzzzzzzzz", "a1b2c3"} {
		if f := d.lookup([]byte(w)); f != 0 {
			t.Errorf("%q has flags %x", w, f)
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzTokenHash checks that the hash the scanner computes eight bytes at a
// time over a token is the dictionary's wordHash of the token.
func FuzzTokenHash(f *testing.F) {
	for _, s := range []string{"Mary", "O'BRIEN-smith", "abcdefgh", "abcdefghi", "José Ørsted 12ab", "x", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		for i := 0; i < len(text); {
			if byteClass[text[i]] < bDigit {
				i++
				continue
			}
			j := i
			for j < len(text) && byteClass[text[j]] >= bDigit {
				j++
			}
			if got, want := tokenHash(text, i, j), wordHash(text[i:j]); got != want {
				t.Fatalf("tokenHash(%q) = %x, wordHash = %x", text[i:j], got, want)
			}
			i = j
		}
	})
}

// TestNamesWithDiacritics checks that listed names written with diacritics
// are found like their ASCII spelling.
func TestNamesWithDiacritics(t *testing.T) {
	sc := DefaultDetector().NewScanner()
	for _, c := range []struct {
		text  string
		names []string
	}{
		{"José García called about his mother.", []string{"José García"}},
		{"Zoë Müller visited on Monday.", []string{"Zoë Müller"}},
		{"Inés and Renée were at the café.", []string{"Inés", "Renée"}},
	} {
		var got []string
		for _, f := range sc.Scan([]byte(c.text)) {
			if f.Type == TypeName {
				got = append(got, c.text[f.Start:f.End])
			}
		}
		if strings.Join(got, "|") != strings.Join(c.names, "|") {
			t.Errorf("%q: names %q, want %q", c.text, got, c.names)
		}
	}
	var buf [48]byte
	if w, ok := foldLatin([]byte("ÅngströmØre"), &buf); !ok || string(w) != "angstromore" {
		t.Errorf("foldLatin = %q, %v", w, ok)
	}
	if _, ok := foldLatin([]byte("Дмитрий"), &buf); ok {
		t.Error("foldLatin folded Cyrillic")
	}
}

// TestPlacesAndPeopleAfterToFrom checks world cities and the line between a
// place and a person after "to" and "from".
func TestPlacesAndPeopleAfterToFrom(t *testing.T) {
	sc := DefaultDetector().NewScanner()
	for _, c := range []struct{ text, want string }{
		{"She moved to Lagos in 2019 and now lives in Nairobi.", "LOCATION:Lagos LOCATION:Nairobi"},
		{"Flights from Mumbai to Toronto were delayed.", "LOCATION:Mumbai LOCATION:Toronto"},
		{"He was born in Guadalajara, Mexico.", "LOCATION:Guadalajara LOCATION:Mexico"},
		{"Visited family in Sao Paulo last summer.", "LOCATION:Sao Paulo"},
		{"Pt originally from Kyiv, speaks Ukrainian.", "LOCATION:Kyiv"},
		{"Report given to Florence at 1900.", "NAME:Florence"},
		{"Call from Sydney re: meds.", "NAME:Sydney"},
		{"Pt is from Florence, moved here in 1990.", "LOCATION:Florence"},
		{"Bob called from Florida.", "NAME:Bob LOCATION:Florida"},
	} {
		var got []string
		for _, f := range sc.Scan([]byte(c.text)) {
			got = append(got, f.Type.String()+":"+c.text[f.Start:f.End])
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%q: %q, want %q", c.text, strings.Join(got, " "), c.want)
		}
	}
}

// TestPhonesInOtherLayouts checks phone numbers in national layouts other
// than North America's, which count only after a phone word.
func TestPhonesInOtherLayouts(t *testing.T) {
	sc := DefaultDetector().NewScanner()
	for _, c := range []struct{ text, want string }{
		{"Call me on 020 7946 0958 tomorrow.", "PHONE:020 7946 0958"},
		{"My mobile is 07700 900123.", "PHONE:07700 900123"},
		{"Tel. 030 12345678 (front desk)", "PHONE:030 12345678"},
		{"Reach her at 01 23 45 67 89.", "PHONE:01 23 45 67 89"},
		{"You can call 0412 345 678 anytime.", "PHONE:0412 345 678"},
		{"His number is (02) 9876 5432.", "PHONE:(02) 9876 5432"},
		{"Phone: 0044 20 7946 0958", "PHONE:0044 20 7946 0958"},
		{"Fax: 020 7946 0959", "FAX:020 7946 0959"},
		// no phone word: groups of digits stay
		{"Lot 020 7946 0958 expires.", ""},
		{"Creatinine 1.26 mg/dL. Lives at 1492 Elm Street.", "ADDRESS:1492 Elm Street."},
	} {
		var got []string
		for _, f := range sc.Scan([]byte(c.text)) {
			got = append(got, f.Type.String()+":"+c.text[f.Start:f.End])
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%q: %q, want %q", c.text, strings.Join(got, " "), c.want)
		}
	}
}
