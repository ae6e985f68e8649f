package mask

import "bytes"

// Layouts of other countries: streets whose type
// comes first and whose number comes last (Calle Mayor 12, Rua Augusta 45,
// Piazza del Duomo 3, Av. Paulista 1578, 18 rue de Rivoli), compound
// street names (Hauptstraße 5, Storgatan 7, Keizersgracht 12), military
// boxes (PSC 1234, Box 5678, APO AE 09876), postcodes before a town
// (28013 Madrid, 1100-048 Lisboa, 114 51 Stockholm) and the UK's and
// Canada's (NW1 6XE, M5X 1A9), and national phone numbers written in
// groups with a trunk prefix (022 2345 6789).

// streetTypes come before a street's name.
var streetTypes = []string{"calle", "carrer", "camino", "avenida", "av", "avda", "rua", "travessa", "largo", "alameda", "praca", "praça",
	"rue", "chemin", "allee", "allée", "impasse", "quai", "via", "viale", "piazza", "piazzale", "corso", "vicolo", "strada", "plaza",
	"paseo", "ulica", "ul", "aleja", "al", "plac", "ulitsa", "prospekt", "utca", "odos", "jalan", "jl", "rambla", "ronda", "cours"}

// streetEndings end compound street names: Hauptstraße, Storgatan,
// Kalvervej, Keizersgracht.
var streetEndings = []string{"straße", "strasse", "str", "gasse", "weg", "platz", "allee", "ring", "damm", "ufer", "gatan", "gata",
	"vägen", "vagen", "veien", "vei", "vej", "gade", "straat", "laan", "plein", "gracht", "kade", "utca", "katu", "tie"}

// intlStreet detects a street of another country's layout that starts at
// token i, and returns the index after it.
func (s *Scanner) intlStreet(i int) int {
	if !s.isWord(i) || s.toks[i].cls&cPlain != 0 {
		return i
	}
	w := s.tokText(i)
	switch {
	case foldIn(w, streetTypes):
		// Calle Mayor 12, Av. Paulista 1578, Piazza del Duomo 3, 18 rue
		// de Rivoli. In text written in one case (AV PACED, VIA FOLEY) the
		// street's name must be words no list knows.
		caseless := s.caseless()
		numFirst := i > 0 && s.toks[i-1].cls == cDigit && s.toks[i].gap == gapSpace && s.tokLen(i-1) <= 4
		abbrev := s.isPunct(i+1, '.') && s.adjacent(i+1) && s.tokLen(i) <= 4 // ul. Długa, av. Paulista
		if !numFirst && !(abbrev && s.lowerWord(i) && !caseless) && (!s.capitalized(i) || s.allCaps(i) && s.tokLen(i) > 1 && !caseless) {
			return i
		}
		j := i + 1
		if s.isPunct(j, '.') && s.adjacent(j) {
			j++
		}
		words := 0
		for ; j < len(s.toks) && words < 5 && s.toks[j].gap != gapNewline; j++ {
			nameish := s.isWord(j) && s.toks[j].cls&(cDigit|cPlain) == 0 && s.tokLen(j) > 1 &&
				(caseless && s.flags(j)&fKnown == 0 && !s.nearKnown(s.tokText(j)) || !caseless && s.capitalized(j))
			if nameish {
				words++
				continue
			}
			if s.lowerWord(j) && isParticle(s.tokText(j)) && s.isWord(j+1) && s.toks[j+1].gap == gapSpace {
				continue // rue de Rivoli, Piazza del Duomo
			}
			if s.isPunct(j, '.') && s.adjacent(j) || s.isPunct(j, '-') || s.isPunct(j, '\'') {
				continue
			}
			break
		}
		if words == 0 || j >= len(s.toks) {
			return i
		}
		if s.isPunct(j, ',') {
			j++
		}
		if numFirst {
			s.emitToks(i-1, j-1, TypeAddress, "address-intl")
			return j
		}
		if j < len(s.toks) && s.toks[j].cls&cDigit != 0 && s.tokLen(j) <= 5 && s.toks[j].gap == gapSpace {
			s.emitToks(i, j, TypeAddress, "address-intl")
			return j + 1
		}
	case hasSuffixFold(w, streetEndings) && len(w) > 5 && (s.capitalized(i) || s.allCaps(i)) && s.flags(i)&fKnown == 0:
		// Hauptstraße 5, Storgatan 7
		j := i + 1
		if s.isPunct(j, '.') && s.adjacent(j) {
			j++
		}
		if j < len(s.toks) && s.toks[j].cls&cDigit != 0 && s.tokLen(j) <= 5 && s.toks[j].gap == gapSpace {
			s.emitToks(i, j, TypeAddress, "address-intl")
			return j + 1
		}
	case s.allCaps(i) && (bytes.EqualFold(w, []byte("PSC")) || bytes.EqualFold(w, []byte("CMR")) || bytes.EqualFold(w, []byte("UNIT"))):
		// PSC 1234, Box 5678, APO AE 09876
		j := i + 1
		if j >= len(s.toks) || s.toks[j].cls&cDigit == 0 {
			return i
		}
		last := j
		for k := j + 1; k < len(s.toks) && k < j+10 && s.toks[k].gap != gapNewline; k++ {
			if s.isPunct(k, ',') || s.isWord(k) && (s.equalFold(k, "box") || s.tokLen(k) == 2 && s.allCaps(k) || s.equalFold(k, "apo") || s.equalFold(k, "fpo") || s.equalFold(k, "dpo")) ||
				s.toks[k].cls&cDigit != 0 {
				if !s.isPunct(k, ',') {
					last = k
				}
				continue
			}
			break
		}
		s.emitToks(i, last, TypeAddress, "address-military")
		return last + 1
	}
	return i
}

// postcodeTown detects a postcode of another country before its town,
// after a comma or an address: "28013 Madrid", "1100-048 Lisboa", "114 51
// Stockholm", "01310-200". Token i is the postcode's first digits.
func (s *Scanner) postcodeTown(i int) int {
	if i == 0 {
		return i
	}
	prevFound := len(s.found) > 0 && s.found[len(s.found)-1].End >= int(s.toks[i-1].start)
	if !s.isPunct(i-1, ',') && !prevFound {
		return i
	}
	n := s.tokLen(i)
	last := i
	switch {
	case n >= 4 && n <= 6:
		if s.isPunct(i+1, '-') && s.adjacent(i+1) && i+2 < len(s.toks) && s.toks[i+2].cls == cDigit && s.tokLen(i+2) <= 4 {
			last = i + 2 // 1100-048, 01310-200
		}
	case n == 2:
		if s.isPunct(i+1, '-') && s.adjacent(i+1) && i+2 < len(s.toks) && s.toks[i+2].cls == cDigit && s.tokLen(i+2) == 3 {
			last = i + 2 // 00-238 (Poland)
		} else {
			return i
		}
	case n == 3:
		if i+1 < len(s.toks) && s.toks[i+1].cls == cDigit && s.tokLen(i+1) == 2 && s.toks[i+1].gap == gapSpace {
			last = i + 1 // 114 51
		} else {
			return i
		}
	default:
		return i
	}
	if n == 4 && last == i {
		if y := atoi(s.tokText(i)); y >= 1900 && y <= 2099 {
			return i // a year
		}
	}
	town := last + 1
	if town < len(s.toks) && s.toks[town].gap == gapSpace && s.isWord(town) && (s.capitalized(town) || s.allCaps(town)) && s.flags(town)&(fMonth|fDose|fWeekday) == 0 {
		s.emitToks(i, last, TypeZip, "postcode")
		end := town
		for end+1 < len(s.toks) && end-town < 2 && s.toks[end+1].gap == gapSpace && s.capitalized(end+1) {
			end++
		}
		s.emitToks(town, end, TypeLocation, "postcode-town")
		return end + 1
	}
	// a postcode without its town only right after an address or a town:
	// "São Paulo - SP, 01310-200, Brazil" (not "low, 56-100," nor "2100, 0500")
	if prevFound && n >= 4 && (s.isPunct(last+1, ',') || s.isPunct(last+1, '.') || last+1 >= len(s.toks)) {
		s.emitToks(i, last, TypeZip, "postcode")
		return last + 1
	}
	return i
}

// auPostcode detects an Australian postcode after its state: "NSW 2000",
// "VIC 3052". Token i is the state.
func (s *Scanner) auPostcode(i int) int {
	if !s.allCaps(i) || !foldIn(s.tokText(i), auStates) {
		return i
	}
	k := i + 1
	if k >= len(s.toks) || s.toks[k].gap != gapSpace || s.toks[k].cls != cDigit || s.tokLen(k) != 4 {
		return i
	}
	s.emitToks(k, k, TypeZip, "postcode-au")
	return k + 1
}

var auStates = []string{"nsw", "vic", "qld", "tas", "act", "nt", "wa", "sa"}

// ukPostcode detects the postcodes of the United Kingdom (NW1 6XE, SW1A
// 1AA) and Canada (M5X 1A9): letters and digits in fixed places, no
// context needed. Token i is the outward part.
func (s *Scanner) ukPostcode(i int) int {
	if i+1 >= len(s.toks) || s.toks[i+1].gap != gapSpace {
		return i
	}
	a, b := s.tokText(i), s.tokText(i+1)
	up := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	if len(a) == 3 && len(b) == 3 && up(a[0]) && isDigit(a[1]) && up(a[2]) && isDigit(b[0]) && up(b[1]) && isDigit(b[2]) {
		s.emitToks(i, i+1, TypeZip, "postcode-ca")
		return i + 2
	}
	// outward: A9, A99, AA9, AA99, A9A, AA9A; inward: 9AA
	if len(b) != 3 || !isDigit(b[0]) || !up(b[1]) || !up(b[2]) || len(a) < 2 || len(a) > 4 || !up(a[0]) {
		return i
	}
	k := 1
	if up(a[1]) {
		k = 2
	}
	if k >= len(a) || !isDigit(a[k]) {
		return i
	}
	for _, c := range a[k+1:] {
		if !isDigit(c) && !up(c) {
			return i
		}
	}
	s.emitToks(i, i+1, TypeZip, "postcode-uk")
	return i + 2
}
