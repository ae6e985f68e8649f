package mask

import (
	"bytes"

	"github.com/nyaruka/phonenumbers"
)

// Detectors that start at a token holding digits.

func (s *Scanner) digitRun(p int) int {
	n := 0
	for p+n < len(s.text) && isDigit(s.text[p+n]) {
		n++
	}
	return n
}

// alnumAt reports whether the byte at p is a letter or digit (or a
// non-ASCII byte, which may be part of a word).
func (s *Scanner) alnumAt(p int) bool {
	return p >= 0 && p < len(s.text) && byteClass[s.text[p]] >= bDigit
}

// boundaryAfter: the match ending at p is not followed by more of a number.
// A '/' or ':' after a number of several groups (123-45-6789/..., a phone
// number, a card) separates it from what follows, as in lists that
// string_agg or a CSV export make; after a single group or a date it
// continues it (120/80, 3/14/2005, 10:30).
func (s *Scanner) boundaryAfter(p int) bool {
	if p >= len(s.text) {
		return true
	}
	c := s.text[p]
	if byteClass[c] >= bDigit {
		return false
	}
	if p+1 < len(s.text) && isDigit(s.text[p+1]) {
		switch c {
		case '.', '-':
			return false
		case '/', ':':
			return s.separatesAfter(p)
		}
	}
	return true
}

// boundaryBefore: the token at p does not continue a number before it.
// Separators between digits join numbers only where the two sides make
// one: '.' and '-' always (1.5, 617-555-0143), ',' as a thousands
// separator (12,000 but not 6789,234-56-7890 nor 1,123-45-6789), '/' and
// ':' as boundaryAfter says.
func (s *Scanner) boundaryBefore(p int) bool {
	if p == 0 {
		return true
	}
	c := s.text[p-1]
	if byteClass[c] >= bDigit {
		return false
	}
	if p < 2 || !isDigit(s.text[p-2]) {
		return true
	}
	switch c {
	case '.', '-':
		return false
	case ',':
		return !s.thousandsGroup(p)
	case '/', ':':
		return s.separatesAfter(p - 1)
	}
	return true
}

// separatesAfter reports whether the '/' or ':' at sep ends the number
// before it rather than joining it to the digits after it: the digits
// before it are the last group of a number written in groups
// (123-45-6789, 617 555 0143, 617.555.0143), or the digits on either side
// are too many for a date, a time or a ratio.
func (s *Scanner) separatesAfter(sep int) bool {
	b := sep
	for b > 0 && isDigit(s.text[b-1]) {
		b--
	}
	if sep-b > 4 || s.digitRun(sep+1) > 4 {
		return true
	}
	if b < 2 || b == sep || !isDigit(s.text[b-2]) {
		return false
	}
	c := s.text[b-1]
	return c == '-' || c == ' ' || c == '.'
}

// thousandsGroup reports whether the digits at p, after a comma, are a
// thousands group of the number before the comma: one to three digits
// before it that are not the tail of another number, exactly three after
// it, and nothing after those that makes them the start of an identifier
// or a date.
func (s *Scanner) thousandsGroup(p int) bool {
	b := p - 1
	for b > 0 && isDigit(s.text[b-1]) {
		b--
	}
	if n := p - 1 - b; n < 1 || n > 3 {
		return false
	}
	if b >= 2 && isDigit(s.text[b-2]) && s.text[b-1] != ',' {
		return false // 555-0143,... : the tail of a grouped number
	}
	if s.digitRun(p) != 3 {
		return false
	}
	q := p + 3
	if q+1 < len(s.text) && isDigit(s.text[q+1]) {
		switch s.text[q] {
		case '-', '/', ':':
			return false
		}
	}
	return true
}

// number handles a token of digits.
func (s *Scanner) number(i int) int {
	t := s.toks[i]
	p := int(t.start)
	if !s.boundaryBefore(p) {
		// the tail of a number already passed (1.5, 1,000, 120/80)
		return s.skipNumber(i)
	}
	nd := int(t.end - t.start)
	// What follows the digits decides which structural matchers can apply:
	// most numbers in clinical text (vitals, doses) end at a space.
	var after, after2 byte = ' ', ' '
	if e := int(t.end); e < len(s.text) {
		after = s.text[e]
		if e+1 < len(s.text) {
			after2 = s.text[e+1]
		}
	}
	if (after == ' ' || after == '\n' || after == ',' || after == ')' || after == ';' || after == '\t') && !(nd == 4 && after == ' ' && isDigit(after2)) &&
		!(nd == 3 && after == ' ' && isDigit(after2)) && !(nd == 1 && after == ' ') && nd < 10 {
		goto simple
	}

	// Each matcher below is tried only when the digits and the byte after
	// them fit its first group: the token is all digits, so the first
	// group of every layout is exactly nd digits long.
	if nd == 8 && after == '-' || nd >= 32 {
		if end, ok := s.matchUUIDorHex(p); ok {
			return s.tokenAt(i, end)
		}
	}
	if after == '/' || after == '-' || after == '.' {
		if end, ok, emit := s.matchDate(i, p); ok {
			if emit {
				s.emit(p, end, TypeDate, "date-numeric")
			}
			return s.tokenAt(i, end)
		}
	}
	if nd == 3 && (after == '-' || after == ' ') {
		if end, ok := s.matchSSN(p, (after == ' ' || p+6 < len(s.text) && s.text[p+6] == ' ') && s.contextFlags(i)&fSSNCtx != 0); ok {
			s.emit(p, end, TypeSSN, "ssn")
			return s.tokenAt(i, end)
		}
	}
	if nd <= 3 && after == '.' {
		if end, ok := s.matchIPv4(p); ok {
			if !s.versionBefore(i) {
				s.emit(p, end, TypeIP, "ipv4")
			}
			return s.tokenAt(i, end)
		}
	}
	if nd == 2 && (after == ':' || after == '-') {
		if end, ok := s.matchMAC(p); ok {
			s.emit(p, end, TypeDeviceID, "mac")
			return s.tokenAt(i, end)
		}
	}
	if nd <= 4 && after == ':' {
		if end, ok := s.matchIPv6(p); ok {
			s.emit(p, end, TypeIP, "ipv6")
			return s.tokenAt(i, end)
		}
	}
	if nd >= 13 || nd >= 4 && (after == ' ' || after == '-') && isDigit(after2) {
		if end, ok := s.matchCard(p); ok {
			s.emit(p, end, TypeCreditCard, "credit-card")
			return s.tokenAt(i, end)
		}
	}
	if nd == 3 || nd == 10 || nd == 1 && s.text[p] == '1' {
		if end, ok := s.matchPhone(p); ok {
			s.emitPhone(i, p, end)
			return s.tokenAt(i, end)
		}
	}
simple:
	// Numbers in other countries' layouts (020 7946 0958, 0412 345 678,
	// 01 23 45 67 89) and local ones (555 0134) after a phone word.
	if nd <= 8 && (after == ' ' || after == '-' || after == '.') && isDigit(after2) {
		if end, ok := s.matchGroupedPhone(p); ok && (s.contextFlags(i)&(fPhoneCtx|fFaxCtx) != 0 || s.det.recall && s.trunkNumber(p, end) && !(s.isWord(i-1) && foldIn(s.tokText(i-1), notPhoneBefore))) {
			s.emitPhone(i, p, end)
			return s.tokenAt(i, end)
		}
	}
	// Times and decimals: 10:30, 98.6 are not PHI.
	if t.end < int32(len(s.text)) {
		if c := s.text[t.end]; (c == ':' || c == '.' || c == ',') && int(t.end)+1 < len(s.text) && isDigit(s.text[t.end+1]) {
			if c == ':' && !s.separatesAfter(int(t.end)) || c != ':' && nd <= 3 {
				return s.skipNumber(i)
			}
		}
	}
	// A short number followed by an ordinary lower-case word ("40 mg",
	// "2 weeks") starts nothing: no age over 89, no month, no street.
	if nd <= 3 && i+1 < len(s.toks) && s.toks[i+1].gap == gapSpace {
		if nt := s.toks[i+1]; nt.cls&cPlain != 0 || nt.cls&^cTrig == cLower && s.flags(i+1)&(fMonth|fMonthAbbr|fAgeCtx|fDirection|fStreet) == 0 {
			if nd < 2 || atoi(s.tokText(i)) < 90 {
				return i + 1
			}
		}
	}
	if n := s.age(i, nd); n > i {
		return n
	}
	if n := s.dayMonth(i); n > i {
		return n
	}
	if nd <= 6 {
		if n := s.address(i); n > i {
			return n
		}
	}
	if nd >= 2 && nd <= 6 {
		if n := s.postcodeTown(i); n > i {
			return n
		}
	}
	if nd == 5 {
		if n := s.zip(i); n > i {
			return n
		}
	}
	if nd == 4 && s.det.bareYear {
		if y := atoi(s.tokText(i)); y >= 1900 && y <= 2099 && s.boundaryAfter(int(t.end)) {
			s.emitToks(i, i, TypeDate, "date-year")
			return i + 1
		}
	}
	return s.identifier(i)
}

// skipNumber returns the index after the number compound at i.
func (s *Scanner) skipNumber(i int) int {
	j := i + 1
	for j+1 < len(s.toks) && s.toks[j].cls&cPunct != 0 && s.adjacent(j) && s.adjacent(j+1) && s.toks[j+1].cls&cDigit != 0 {
		c := s.text[s.toks[j].start]
		if c != '.' && c != ',' && c != '/' && c != ':' && c != '-' || s.boundaryBefore(int(s.toks[j+1].start)) {
			break
		}
		j += 2
	}
	return j
}

// versionBefore reports "v1.2.3.4" or "version 1.2.3.4".
func (s *Scanner) versionBefore(i int) bool {
	p := int(s.toks[i].start)
	if p > 0 && (s.text[p-1] == 'v' || s.text[p-1] == 'V') {
		return true
	}
	return s.isWord(i-1) && (s.equalFold(i-1, "version") || s.equalFold(i-1, "ver") || s.equalFold(i-1, "v"))
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

// matchUUIDorHex matches a UUID or a long hex string (a hash), which are
// not PHI; the caller skips them.
func (s *Scanner) matchUUIDorHex(p int) (int, bool) {
	groups := [5]int{8, 4, 4, 4, 12}
	q := p
	for g, n := range groups {
		for k := 0; k < n; k++ {
			if q >= len(s.text) || !isHex(s.text[q]) {
				goto hex
			}
			q++
		}
		if g < 4 {
			if q >= len(s.text) || s.text[q] != '-' {
				goto hex
			}
			q++
		}
	}
	if !s.alnumAt(q) {
		return q, true
	}
hex:
	q = p
	letters := 0
	for q < len(s.text) && isHex(s.text[q]) {
		if !isDigit(s.text[q]) {
			letters++
		}
		q++
	}
	// a hash: a hex digest's length, or long with letters spread through it
	// (an IBAN or an ID has only a few letters)
	if n := q - p; !s.alnumAt(q) && (n == 32 || n == 40 || n == 56 || n == 64 || n == 96 || n == 128 || n >= 16 && letters*5 >= n) {
		return q, true
	}
	return p, false
}

// matchDate matches numeric dates at p. emit is false for log timestamps
// (2024-01-05T10:00:00Z), which are consumed but left alone.
func (s *Scanner) matchDate(i, p int) (end int, ok, emit bool) {
	d1 := s.digitRun(p)
	q := p + d1
	if q+1 >= len(s.text) {
		return 0, false, false
	}
	sep := s.text[q]
	if sep != '/' && sep != '-' && sep != '.' {
		return 0, false, false
	}
	d2 := s.digitRun(q + 1)
	if d2 < 1 || d2 > 2 {
		if d1 <= 2 && d2 == 4 && sep == '/' { // 03/2005
			m, y := atoi(s.text[p:q]), atoi(s.text[q+1:q+5])
			if m >= 1 && m <= 12 && y >= 1900 && y <= 2099 && s.boundaryAfter(q+5) {
				return q + 5, true, !s.expiryBefore(i)
			}
		}
		return 0, false, false
	}
	a := atoi(s.text[p:q])
	b := atoi(s.text[q+1 : q+1+d2])
	r := q + 1 + d2
	if d1 == 4 { // YYYY-MM-DD
		if r >= len(s.text) || s.text[r] != sep {
			return 0, false, false
		}
		d3 := s.digitRun(r + 1)
		if d3 < 1 || d3 > 2 {
			return 0, false, false
		}
		c := atoi(s.text[r+1 : r+1+d3])
		end = r + 1 + d3
		if a < 1800 || a > 2199 || b < 1 || b > 12 || c < 1 || c > 31 || s.alnumAt(end) && !(s.text[end] == 'T' && end+1 < len(s.text) && isDigit(s.text[end+1])) {
			return 0, false, false
		}
		if te, ts := s.timestampTail(end); ts {
			// A timestamp in prose dates an event of a person; in
			// precision mode machine timestamps are left alone.
			return te, true, s.det.recall
		}
		return end, true, true
	}
	if d1 > 2 {
		return 0, false, false
	}
	if r < len(s.text) && s.text[r] == sep {
		d3 := s.digitRun(r + 1)
		if d3 == 2 || d3 == 4 {
			end = r + 1 + d3
			y := atoi(s.text[r+1 : end])
			if !s.boundaryAfter(end) || sep == '.' && d3 != 4 || end < len(s.text) && (s.text[end] == '%' || s.text[end] == '/') {
				return 0, false, false
			}
			if d3 == 4 && (y < 1800 || y > 2199) {
				return 0, false, false
			}
			if (a >= 1 && a <= 12 && b >= 1 && b <= 31) || (a >= 1 && a <= 31 && b >= 1 && b <= 12) {
				return end, true, true
			}
		}
		return 0, false, false
	}
	// Month and two-digit year, as histories write them: "AVR 8/88",
	// "s/p PTCA 12/82". A second number above 31 is no day.
	if sep == '/' && d2 == 2 && b > 31 && a >= 1 && a <= 12 && s.boundaryAfter(r) && !(r < len(s.text) && s.text[r] == '%') {
		if s.expiryBefore(i) || s.partialDateExcluded(i, a, b, r) {
			return r, true, false
		}
		return r, true, true
	}
	// Partial date M/D (M-D only after a date word: "on 3-14"); not a
	// link of a chain of values (ABG 84/41/7.54/10/36).
	if sep == '.' || !s.boundaryAfter(r) || a < 1 || a > 12 || b < 1 || b > 31 || p > 0 && s.text[p-1] == '/' {
		return 0, false, false
	}
	if sep == '-' && !(s.isWord(i-1) && s.toks[i].gap == gapSpace && s.flags(i-1)&fDateCtx != 0) {
		return 0, false, false
	}
	if s.expiryBefore(i) {
		return r, true, false
	}
	if s.partialDateExcluded(i, a, b, r) {
		return r, true, false
	}
	return r, true, true
}

// expiryBefore reports "exp 03/25", "valid thru 03/2027": card expiry
// dates are not dates of a person.
func (s *Scanner) expiryBefore(i int) bool {
	for j := i - 1; j >= 0 && j >= i-3; j-- {
		if s.isWord(j) {
			return s.flags(j)&fExpiry != 0
		}
	}
	return false
}

// timestampTail matches the time part of a machine timestamp after a date:
// T10:00:00, " 10:00:00.123", with optional zone.
func (s *Scanner) timestampTail(p int) (int, bool) {
	if p >= len(s.text) || (s.text[p] != 'T' && s.text[p] != ' ') {
		return p, false
	}
	q := p + 1
	for part := 0; part < 3; part++ {
		if s.digitRun(q) != 2 {
			return p, false
		}
		q += 2
		if part < 2 {
			if q >= len(s.text) || s.text[q] != ':' {
				return p, false
			}
			q++
		}
	}
	if q < len(s.text) && (s.text[q] == '.' || s.text[q] == ',') {
		q++
		q += s.digitRun(q)
	}
	if q < len(s.text) && s.text[q] == 'Z' {
		q++
	} else if q+5 < len(s.text)+0 && (s.text[q] == '+' || s.text[q] == '-') && s.digitRun(q+1) >= 2 {
		q++
		q += s.digitRun(q)
		if q < len(s.text) && s.text[q] == ':' {
			q++
			q += s.digitRun(q)
		}
	}
	return q, true
}

// partialDateExcluded reports M/D forms that are something else: pain
// scores (3/10), strength (5/5), fractions (1/2 tab), doses.
func (s *Scanner) partialDateExcluded(i, a, b, end int) bool {
	// BP 120/80, PS 10/5, CPAP 5/5, crackles 1/3 up: settings, vitals
	// and findings after the word that names them, or before a unit or
	// the next setting (10/5/40%), whatever date word comes before.
	// Other abbreviations are tests, places and events, and a partial
	// date after them is a date ("ECHO 3/11", "GH 7/23", "LBM 11/4").
	if j := i - 1; j >= 0 && s.isWord(j) && s.toks[j].cls&cPlain == 0 && foldIn(s.tokText(j), measureWords) {
		return true
	}
	if end < len(s.text) && s.text[end] == '/' || end+1 < len(s.text) && s.text[end] == '%' {
		return true
	}
	// PSV increased to 10/5, cpap/ps (10/5): a ventilator setting a few
	// words after its name; 5/5 is a setting or a strength.
	if a == b && a <= 5 {
		return true
	}
	for j, n := i-1, 0; j >= 0 && n < 4 && s.toks[j+1].gap != gapNewline; j-- {
		if !s.isWord(j) {
			continue
		}
		n++
		if s.toks[j].cls&cPlain == 0 && s.flags(j)&fDateCtx != 0 {
			break // (PLACED 8/14) after MECH VENT VIA TRACH
		}
		if s.toks[j].cls&cPlain == 0 && foldIn(s.tokText(j), ventWords) {
			return true
		}
	}
	j := s.tokenAt(i, end)
	if j < len(s.toks) && s.isWord(j) && s.flags(j)&fDose != 0 {
		return true
	}
	if j < len(s.toks) && (s.isPunct(j, '%') || s.isWord(j) && foldIn(s.tokText(j), measureAfter)) {
		return true
	}
	if s.dateContext(i) {
		return false
	}
	// 8/2 - 8/10, 8/9 or 8/10: the second end of a range of dates
	if n := len(s.found); n > 0 && s.found[n-1].Type == TypeDate && int(s.toks[i].start)-s.found[n-1].End <= 5 {
		return false
	}
	if b == 10 && s.det.recall && !s.painNear(i, end) {
		return false // "OR 6/10": a date unless pain is rated
	}
	if b == 10 || a == b && a <= 5 {
		return true
	}
	if (a == 1 && b <= 4) || (a == 2 && b == 3) || (a == 3 && b == 4) {
		return true
	}
	return false
}

// painNear reports a word of pain or rating within three words before
// token i or two after the value ending at end: "pain 5/10", "5/10 pain",
// "rates it 6/10".
func (s *Scanner) painNear(i, end int) bool {
	for j, n := i-1, 0; j >= 0 && n < 3; j-- {
		if !s.isWord(j) {
			continue
		}
		n++
		w := s.tokText(j)
		if s.toks[j].cls&cPlain != 0 {
			if foldContains(w, painWords) {
				return true
			}
			continue
		}
		if foldIn(w, painWords) {
			return true
		}
	}
	for j, n := s.tokenAt(i, end), 0; j < len(s.toks) && n < 2; j++ {
		if !s.isWord(j) {
			continue
		}
		n++
		if foldIn(s.tokText(j), painWords) || s.toks[j].cls&cPlain != 0 && foldContains(s.tokText(j), painWords) {
			return true
		}
	}
	return false
}

var painWords = []string{"pain", "cp", "angina", "painful", "discomfort", "ha", "headache", "rates", "rated", "rating", "scale", "score", "sore",
	"ache", "aching", "cramping", "cramps", "intensity", "level", "pain:", "incisional", "chest", "abd", "back"}

// foldContains reports whether one of the space-separated words of w is in
// list.
func foldContains(w []byte, list []string) bool {
	for len(w) > 0 {
		sp := bytes.IndexByte(w, ' ')
		if sp < 0 {
			return foldIn(w, list)
		}
		if foldIn(w[:sp], list) {
			return true
		}
		w = w[sp+1:]
	}
	return false
}

// measureWords name a value written as two numbers with a slash.
var measureWords = []string{"bp", "nbp", "abp", "sbp", "map", "pap", "pa", "pas", "cvp", "pcwp", "wedge", "ps", "psv", "cpap", "bipap",
	"peep", "ac", "simv", "imv", "vent", "flowby", "fio2", "o2", "rr", "vt", "tv", "hr", "ci", "co", "svr", "ratio", "crackles", "rales",
	"rhonchi", "wheezes", "strength", "motor", "pain", "gcs", "score", "scale", "x", "rate", "settings", "setting", "ventilation", "pressures",
	"sats", "sat", "abg", "vbg", "gases"}

// ventWords name ventilator modes and settings.
var ventWords = []string{"ps", "psv", "cpap", "bipap", "peep", "vent", "settings", "simv", "imv", "ac", "fio2"}

// measureAfter follow a value written as two numbers with a slash.
var measureAfter = []string{"strength", "of", "up", "peep", "ns", "hrs", "hr", "hour", "hours", "tab", "tabs", "pain", "scale",
	"sem", "hsm", "murmur", "sm", "cp"}

// dateContext reports a date-announcing word shortly before token i.
func (s *Scanner) dateContext(i int) bool { return s.dateContextN(i, 3) }

// dateContextN looks at up to words words before token i.
func (s *Scanner) dateContextN(i, words int) bool {
	for j, n := i-1, 0; j >= 0 && n < words; j-- {
		if s.toks[j].cls&cPunct != 0 {
			continue
		}
		n++
		if s.isWord(j) && s.flags(j)&(fDateCtx|fWeekday) != 0 {
			return true
		}
		if s.toks[j+1].gap == gapNewline {
			break
		}
	}
	return false
}

// matchSSN matches ddd-dd-dddd (and ddd dd dddd when spaced is allowed).
func (s *Scanner) matchSSN(p int, spaced bool) (int, bool) {
	var d [9]byte
	q, n := p, 0
	for g, l := range [3]int{3, 2, 4} {
		if s.digitRun(q) != l {
			return 0, false
		}
		n += copy(d[n:], s.text[q:q+l])
		q += l
		if g < 2 {
			if q >= len(s.text) || !(s.text[q] == '-' || spaced && s.text[q] == ' ') {
				return 0, false
			}
			q++
		}
	}
	if !s.boundaryAfter(q) || !validSSN(d[:]) {
		return 0, false
	}
	return q, true
}

func (s *Scanner) matchIPv4(p int) (int, bool) {
	q := p
	for part := 0; part < 4; part++ {
		n := s.digitRun(q)
		if n < 1 || n > 3 || atoi(s.text[q:q+n]) > 255 {
			return 0, false
		}
		q += n
		if part < 3 {
			if q >= len(s.text) || s.text[q] != '.' {
				return 0, false
			}
			q++
		}
	}
	if s.alnumAt(q) || q+1 < len(s.text) && s.text[q] == '.' && isDigit(s.text[q+1]) {
		return 0, false
	}
	return q, true
}

// matchMAC matches 00:1A:2B:3C:4D:5E or 00-1A-2B-3C-4D-5E.
func (s *Scanner) matchMAC(p int) (int, bool) {
	if p+17 > len(s.text) {
		return 0, false
	}
	sep := s.text[p+2]
	if sep != ':' && sep != '-' {
		return 0, false
	}
	for k := 0; k < 6; k++ {
		q := p + 3*k
		if !isHex(s.text[q]) || !isHex(s.text[q+1]) || k < 5 && s.text[q+2] != sep {
			return 0, false
		}
	}
	if s.alnumAt(p + 17) {
		return 0, false
	}
	return p + 17, true
}

// matchIPv6 matches IPv6 addresses with at least two colons and hex groups.
func (s *Scanner) matchIPv6(p int) (int, bool) {
	q, colons, groups, dbl := p, 0, 0, false
	for q < len(s.text) {
		n := 0
		for q+n < len(s.text) && isHex(s.text[q+n]) && n < 5 {
			n++
		}
		if n > 4 {
			return 0, false
		}
		if n > 0 {
			groups++
		}
		q += n
		if q < len(s.text) && s.text[q] == ':' {
			if q+1 < len(s.text) && s.text[q+1] == ':' {
				if dbl {
					return 0, false
				}
				dbl = true
				colons++
				q++
			}
			colons++
			q++
			continue
		}
		break
	}
	if s.alnumAt(q) || q > p && s.text[q-1] == ':' && !(q >= 2 && s.text[q-2] == ':') {
		return 0, false
	}
	if !(colons == 7 && groups == 8 || dbl && colons >= 2 && groups >= 2) {
		return 0, false
	}
	return q, true
}

// matchCard matches payment card numbers: 13-19 digits, contiguous or in
// groups separated by single spaces or dashes; issuer prefix and Luhn.
func (s *Scanner) matchCard(p int) (int, bool) {
	var d [19]byte
	n, q, groups := 0, p, 0
	var sep byte
	for {
		g := s.digitRun(q)
		if g == 0 || n+g > 19 {
			return 0, false
		}
		n += copy(d[n:], s.text[q:q+g])
		q += g
		groups++
		if q+1 < len(s.text) && (s.text[q] == ' ' || s.text[q] == '-') && isDigit(s.text[q+1]) && (sep == 0 || s.text[q] == sep) && g >= 4 {
			sep = s.text[q]
			q++
			continue
		}
		break
	}
	if n < 13 || !s.boundaryAfter(q) || groups > 1 && groups < 3 && n != 15 || !validCard(d[:n]) {
		return 0, false
	}
	return q, true
}

// matchPhone matches North American numbers ((617) 555-1234, 617-555-1234,
// 617.555.1234, +1 617 555 1234, 1-800-555-1234, with x123 extensions) and
// international numbers with a leading '+', validated with libphonenumber.
func (s *Scanner) matchPhone(p int) (int, bool) {
	if s.text[p] == '+' && !(p+1 < len(s.text) && s.text[p+1] == '1' && !isDigit(s.text[min(p+2, len(s.text)-1)])) {
		return s.matchIntlPhone(p)
	}
	var d [10]byte
	q := p
	if s.text[q] == '+' {
		q += 2
		if q < len(s.text) && (s.text[q] == ' ' || s.text[q] == '-' || s.text[q] == '.') {
			q++
		}
	} else if s.text[q] == '1' && q+1 < len(s.text) && (s.text[q+1] == '-' || s.text[q+1] == ' ' || s.text[q+1] == '.' || s.text[q+1] == '(') {
		q++
		if s.text[q] != '(' {
			q++
		}
	} else if q+4 < len(s.text) && string(s.text[q:q+3]) == "001" && (s.text[q+3] == '-' || s.text[q+3] == ' ' || s.text[q+3] == '.') && isDigit(s.text[q+4]) {
		q += 4 // 001-541-754-3010: international prefix from the US
	}
	seps := 0
	if q < len(s.text) && s.text[q] == '(' {
		if s.digitRun(q+1) != 3 || q+4 >= len(s.text) || s.text[q+4] != ')' {
			return 0, false
		}
		copy(d[:3], s.text[q+1:q+4])
		q += 5
		if q < len(s.text) && (s.text[q] == ' ' || s.text[q] == '-') {
			q++
		}
		seps++
	} else {
		if s.digitRun(q) == 10 {
			copy(d[:], s.text[q:q+10])
			q += 10
			goto done
		}
		if s.digitRun(q) != 3 {
			return 0, false
		}
		copy(d[:3], s.text[q:q+3])
		q += 3
		if q < len(s.text) && (s.text[q] == '-' || s.text[q] == '.' || s.text[q] == ' ' || s.text[q] == '/') {
			q++
			seps++
		}
	}
	if s.digitRun(q) != 3 {
		return 0, false
	}
	copy(d[3:6], s.text[q:q+3])
	q += 3
	if q < len(s.text) && (s.text[q] == '-' || s.text[q] == '.' || s.text[q] == ' ') {
		q++
		seps++
	}
	if s.digitRun(q) != 4 {
		return 0, false
	}
	copy(d[6:], s.text[q:q+4])
	q += 4
	if seps == 0 {
		return 0, false
	}
	if !s.boundaryAfter(q) && !(q < len(s.text) && s.text[q]|0x20 == 'x' && q+1 < len(s.text) && isDigit(s.text[q+1])) {
		return 0, false
	}
	goto ext // a number laid out as a phone number is one, whatever its digits
done:
	if !s.boundaryAfter(q) || !validNANP(d[:]) {
		return 0, false
	}
ext:
	// extension
	r := q
	for r < len(s.text) && s.text[r] == ' ' {
		r++
	}
	if r > q+1 {
		r = q + 1
	}
	if r < len(s.text) {
		c := s.text[r] | 0x20
		x := r
		if c == 'x' {
			x = r + 1
		} else if c == 'e' && r+2 < len(s.text) && s.text[r+1]|0x20 == 'x' && s.text[r+2]|0x20 == 't' {
			x = r + 3
			for x < len(s.text) && (s.text[x] == '.' || s.text[x] == ' ' || s.text[x] == ':') {
				x++
			}
		}
		if x > r {
			if n := s.digitRun(x); n >= 1 && n <= 6 && !s.alnumAt(x+n) {
				q = x + n
			}
		}
	}
	return q, true
}

// matchGroupedPhone matches 7 to 15 digits in two or more groups of 1 to
// 8, written with one kind of separator (space, '-' or '.'), optionally
// starting with an area code in parentheses: a phone number in any national
// layout. The caller requires a phone word before it.
func (s *Scanner) matchGroupedPhone(p int) (int, bool) {
	q, digits, groups := p, 0, 0
	if q < len(s.text) && s.text[q] == '(' {
		n := s.digitRun(q + 1)
		if n < 1 || n > 5 || q+1+n >= len(s.text) || s.text[q+1+n] != ')' {
			return 0, false
		}
		digits, groups = n, 1
		q += n + 2
		if q < len(s.text) && s.text[q] == ' ' {
			q++
		}
	}
	var sep byte
	for {
		n := s.digitRun(q)
		if n < 1 || n > 8 {
			return 0, false
		}
		digits += n
		groups++
		q += n
		if q+1 < len(s.text) && isDigit(s.text[q+1]) && (s.text[q] == ' ' || s.text[q] == '-' || s.text[q] == '.') && (sep == 0 || s.text[q] == sep) {
			sep = s.text[q]
			q++
			continue
		}
		break
	}
	if groups < 2 || digits < 7 || digits > 15 || !s.boundaryAfter(q) {
		return 0, false
	}
	return q, true
}

// matchIntlPhone matches +CC numbers and validates them.
func (s *Scanner) matchIntlPhone(p int) (int, bool) {
	q := p + 1
	digits, end := 0, q
	for q < len(s.text) && digits <= 15 {
		c := s.text[q]
		if isDigit(c) {
			digits++
			q++
			end = q
			continue
		}
		if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') && q+1 < len(s.text) && (isDigit(s.text[q+1]) || s.text[q+1] == '(') {
			q++
			continue
		}
		break
	}
	if digits < 8 || digits > 15 || s.alnumAt(end) {
		return 0, false
	}
	// The country calling code must be one libphonenumber knows, and the
	// national number as long as such numbers are (4 to 14 digits).
	var d [16]byte
	n := 0
	for k := p + 1; k < end && n < len(d); k++ {
		if isDigit(s.text[k]) {
			d[n] = s.text[k]
			n++
		}
	}
	calling := phonenumbers.GetSupportedCallingCodes()
	for l := 1; l <= 3 && l < n; l++ {
		if cc := atoi(d[:l]); calling[cc] && n-l >= 4 && n-l <= 14 {
			if cc == 1 && n-l != 10 {
				continue
			}
			return end, true
		}
	}
	return 0, false
}

// emitPhone records a phone or, after a fax context word, a fax number.
func (s *Scanner) emitPhone(i, start, end int) {
	typ := TypePhone
	if f := s.contextFlags(i); f&fFaxCtx != 0 && f&fPhoneCtx == 0 || s.faxJustBefore(i) {
		typ = TypeFax
	}
	s.emit(start, end, typ, "phone")
}

func (s *Scanner) faxJustBefore(i int) bool {
	for j := i - 1; j >= 0 && j >= i-3; j-- {
		if s.isWord(j) {
			return s.flags(j)&fFaxCtx != 0
		}
	}
	return false
}

// identifierCtx are the flags of words that announce a number.
const identifierCtx = fPhoneCtx | fFaxCtx | fSSNCtx | fMRNCtx | fPlanCtx | fAccountCtx | fLicenseCtx | fVehicleCtx | fDeviceCtx | fIDCtx | fZipCtx

// contextFlags returns the flags of up to three words before token i on
// the same line.
func (s *Scanner) contextFlags(i int) wflag {
	var f wflag
	for j, n := i-1, 0; j >= 0 && n < 3; j-- {
		if s.toks[j+1].gap == gapNewline {
			break
		}
		if s.toks[j].cls&cPunct != 0 {
			if c := s.text[s.toks[j].start]; c == '.' && s.toks[j+1].gap != gapNone || c == ';' || c == ')' {
				// "Tel. 030 ...", "Acct. 12345": the period of an
				// abbreviated context word ends no sentence
				if c == '.' && s.adjacent(j) && (s.capitalized(j-1) || s.allCaps(j-1)) && s.tokLen(j-1) <= 4 && !s.isPunct(j-2, '/') &&
					s.flags(j-1)&identifierCtx != 0 {
					continue
				}
				break
			}
			continue
		}
		if s.toks[j].cls&cDigit != 0 {
			break
		}
		n++
		f |= s.flags(j)
	}
	return f
}

// measuredBefore reports a measurement word (SVR, TV, voiding, glucose @)
// or a clinical abbreviation within the two words before token i.
func (s *Scanner) measuredBefore(i int) bool {
	for j, n := i-1, 0; j >= 0 && n < 2; j-- {
		if s.isPunct(j, '@') {
			return true
		}
		if !s.isWord(j) {
			continue
		}
		n++
		w := s.tokText(j)
		if s.toks[j].cls&cPlain != 0 {
			if sp := bytes.LastIndexByte(w, ' '); sp >= 0 {
				w = w[sp+1:]
			}
		}
		if len(w) < 2 {
			continue
		}
		if foldIn(w, measureWords) || s.toks[j].cls&cPlain == 0 && s.flags(j)&(fMedStop|fDose) != 0 && s.flags(j)&(identifierCtx|fPhoneCtx) == 0 {
			return true
		}
	}
	return false
}

// trunkNumber reports a national number written in groups separated by
// spaces with its trunk prefix 0, 9 to 12 digits: 022 2345 6789, 0412 345
// 678, 020 7946 0958 (not codes with hyphens: NDC 0093-7180-56).
func (s *Scanner) trunkNumber(start, end int) bool {
	if s.text[start] != '0' {
		return false
	}
	n := 0
	for _, c := range s.text[start:end] {
		switch {
		case isDigit(c):
			n++
		case c != ' ':
			return false
		}
	}
	return n >= 9 && n <= 12
}

// notPhoneBefore name numbers that are no phone: "Lot 020 7946 0958".
var notPhoneBefore = []string{"ndc", "lot", "batch", "serial", "model", "ref", "reference", "order", "invoice", "code", "id", "no", "part", "catalog", "sku", "version"}

// pagerBefore reports a pager word just before token i ("Pager: #",
// "PG", "pgr").
func (s *Scanner) pagerBefore(i int) bool {
	for j := i - 1; j >= 0 && j >= i-3; j-- {
		if s.isPunct(j, ':') || s.isPunct(j, '#') {
			continue
		}
		return s.isWord(j) && (s.equalFold(j, "pager") || s.equalFold(j, "pgr") || s.equalFold(j, "pg") || s.equalFold(j, "beeper") || s.equalFold(j, "pager#"))
	}
	return false
}

// age detects ages over 89: "92 yo", "aged 95", "93-year-old".
func (s *Scanner) age(i, nd int) int {
	if nd < 2 || nd > 3 {
		return i
	}
	v := atoi(s.tokText(i))
	if v < 90 || v > 125 {
		return i
	}
	j := i + 1
	if s.isPunct(j, '-') && s.adjacent(j) {
		j++
	}
	after := s.isWord(j) && s.flags(j)&fAgeCtx != 0 && !s.equalFold(j, "age")
	if !after && s.isWord(j) && (s.equalFold(j, "yo") || s.equalFold(j, "yrs") || s.equalFold(j, "y")) {
		after = true
	}
	before := false
	for k := i - 1; k >= 0 && k >= i-2; k-- {
		if s.isWord(k) {
			before = s.equalFold(k, "age") || s.equalFold(k, "aged")
			break
		}
	}
	if !after && !before {
		return i
	}
	if after && (s.equalFold(j, "years") || s.equalFold(j, "year") || s.equalFold(j, "yrs") || s.equalFold(j, "yr")) && !before {
		// "92 years" needs "old" or "of age" after it
		k := j + 1
		if s.isPunct(k, '-') {
			k++
		}
		if !(s.equalFold(k, "old") || s.equalFold(k, "of") && s.equalFold(k+1, "age")) {
			return i
		}
	}
	s.emitToks(i, i, TypeAge, "age")
	return i + 1
}

// dayMonth detects "14 March 2005", "14-Mar-05", "14th of March".
func (s *Scanner) dayMonth(i int) int {
	if !s.dayNumber(i) {
		return i
	}
	j := i + 1
	if s.isPunct(j, '-') || s.isPunct(j, '/') || s.isPunct(j, '.') && s.adjacent(j) {
		j++
	} else if s.equalFold(j, "of") {
		j++
	}
	if !s.isWord(j) || s.flags(j)&(fMonth|fMonthAbbr) == 0 || s.toks[j].gap == gapNewline {
		return i
	}
	if s.equalFold(j, "may") && !s.capitalized(j) && !s.allCaps(j) {
		return i
	}
	last := j
	k := j + 1
	if s.isPunct(k, '.') && s.adjacent(k) {
		k++
	}
	if s.isPunct(k, '-') || s.isPunct(k, ',') || s.isPunct(k, '/') {
		k++
	}
	if s.yearNumber(k) || k < len(s.toks) && s.toks[k].cls == cDigit && s.tokLen(k) == 2 && s.adjacent(k) {
		last = k
		if s.isPunct(k, '\'') {
			last = k + 1
		}
	}
	s.emitToks(i, last, TypeDate, "date-text")
	return last + 1
}

// address detects street addresses: 12 Main St, 1600 N. Pennsylvania Avenue
// NW, 42 Oak Hill Road Apt 3B.
func (s *Scanner) address(i int) int {
	j := i + 1
	if j < len(s.toks) && s.isWord(j) && s.adjacent(j) && s.tokLen(j) == 1 { // 12B
		j++
	}
	if j >= len(s.toks) || s.toks[j].gap == gapNewline {
		return i
	}
	if s.isWord(j) && s.flags(j)&fDirection != 0 && s.toks[j].cls&cUpper1 != 0 {
		// a direction, unless it is the street's name ("431 South Avenue")
		k := j + 1
		if s.isPunct(k, '.') && s.adjacent(k) {
			k++
		}
		if !(s.isWord(k) && s.flags(k)&fStreet != 0 && !(s.isWord(k+1) && s.flags(k+1)&fStreet != 0 && s.capitalized(k+1))) {
			j = k
		}
	}
	suffix := -1
	// In text written in capitals, capitals say nothing: a street is then
	// a number of two digits or more and words that are not function
	// words ("3 WAY FOLEY IN PLACE", "MAP>60 AS WELL AS").
	caps := s.mostlyCaps()
	if caps && (s.tokLen(i) < 2 || s.toks[i].cls != cDigit) {
		return i
	}
	for k := 0; k < 4 && j < len(s.toks); k++ {
		if s.toks[j].gap == gapNewline {
			break
		}
		if s.isWord(j) && (foldIn(s.tokText(j), functionWords) || s.flags(j)&fDose != 0 || caps && s.flags(j)&fMedStop != 0) {
			break // 10 MG VIA NGT, 15 SEC RUN
		}
		w := s.isWord(j) && (s.capitalized(j) || s.allCaps(j) || s.lowerWord(j) && k > 0) ||
			s.toks[j].cls&cDigit != 0 && s.toks[j].cls&cLower != 0 // 5th
		if !w {
			break
		}
		if k > 0 && s.isWord(j) && s.flags(j)&fStreet != 0 {
			suffix = j
			// "Main Street North"
			if s.isWord(j+1) && s.flags(j+1)&fDirection != 0 && s.toks[j+1].cls&cUpper1 != 0 && s.toks[j+1].gap == gapSpace {
				suffix = j + 1
			}
			if !(s.isWord(j+1) && s.flags(j+1)&fStreet != 0 && s.capitalized(j+1)) {
				break
			}
		}
		if k == 0 && s.equalFold(j, "broadway") {
			suffix = j
			break
		}
		j++
		// Adams-Monahan Ford
		if s.isPunct(j, '-') && s.adjacent(j) && s.adjacent(j+1) && s.capitalized(j+1) {
			j++
		}
	}
	if suffix < 0 {
		return i
	}
	last := suffix
	if s.isPunct(last+1, '.') && s.adjacent(last+1) {
		last++
	}
	// unit: Apt 3, Suite 200, #12
	k := last + 1
	if s.isPunct(k, ',') {
		k++
	}
	if s.isWord(k) && s.flags(k)&fUnit != 0 && s.toks[k].gap != gapNewline {
		k++
		if s.isPunct(k, '.') {
			k++
		}
		if s.isPunct(k, '#') {
			k++
		}
		if k < len(s.toks) && s.toks[k].cls&cDigit != 0 || s.isWord(k) && s.tokLen(k) <= 2 {
			last = k
		}
	} else if s.isPunct(k, '#') && k+1 < len(s.toks) && s.toks[k+1].cls&cDigit != 0 {
		last = k + 1
	}
	s.emitToks(i, last, TypeAddress, "address")
	return last + 1
}

// functionWords never name a street or a person.
var functionWords = []string{"in", "as", "at", "to", "of", "and", "or", "with", "on", "for", "the", "is", "was", "by", "per", "from", "a", "an", "no", "not"}

// maxDigitRun returns the length of the longest run of digits in b.
func maxDigitRun(b []byte) int {
	best, run := 0, 0
	for _, c := range b {
		if isDigit(c) {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

// zip detects a five-digit ZIP code (with optional +4) after a state or a
// ZIP context word.
func (s *Scanner) zip(i int) int {
	j := i - 1
	if s.isPunct(j, ',') {
		j--
	}
	ok := false
	if s.isWord(j) {
		f := s.flags(j)
		ok = f&fStateAbbr != 0 && s.allCaps(j) || f&fState != 0 && s.capitalized(j) || f&fZipCtx != 0
		if !ok && j >= 1 {
			// "New York 10001", "zip code 02114"
			ok = s.equalFold(j, "code") && s.isWord(j-1) && s.flags(j-1)&fZipCtx != 0 ||
				s.capitalized(j) && s.capitalized(j-1) && s.d.lookupPhrase(s.text, s.toks, j-1, j, &s.buf)&fState != 0
		}
	} else if s.isPunct(j, ':') || s.isPunct(j, '#') {
		ok = s.contextFlags(i)&fZipCtx != 0
	}
	if !ok {
		return i
	}
	last := i
	if s.isPunct(i+1, '-') && s.adjacent(i+1) && i+2 < len(s.toks) && s.toks[i+2].cls == cDigit && s.tokLen(i+2) == 4 {
		last = i + 2
	}
	s.emitToks(i, last, TypeZip, "zip")
	return last + 1
}

// compound returns the last token of the identifier that starts at i:
// letters and digits joined by '-', '/' or '.', without spaces.
func (s *Scanner) compound(i int) int {
	j := i
	for j+2 < len(s.toks) && s.adjacent(j+1) && s.adjacent(j+2) && s.toks[j+2].cls&cPunct == 0 {
		c := s.text[s.toks[j+1].start]
		if c != '-' && c != '/' && c != '.' || c == '/' && s.separatesAfter(int(s.toks[j+1].start)) {
			break
		}
		j += 2
	}
	return j
}

// identifier handles numbers and alphanumeric identifiers that no
// structural matcher claimed: context words decide their type.
func (s *Scanner) identifier(i int) int {
	last := s.compound(i)
	digits, chars := 0, 0
	for k := i; k <= last; k++ {
		if s.toks[k].cls&cPunct != 0 {
			continue
		}
		for _, c := range s.tokText(k) {
			chars++
			if isDigit(c) {
				digits++
			}
		}
	}
	start, end := int(s.toks[i].start), int(s.toks[last].end)
	slashes := 0
	for k := i + 1; k < last; k += 2 {
		if s.isPunct(k, '/') {
			slashes++
		}
	}
	// 0700-1900: a span of clock times
	if last == i+2 && s.isPunct(i+1, '-') && s.tokLen(i) == 4 && s.tokLen(last) == 4 && s.toks[last].cls == cDigit &&
		atoi(s.tokText(i)) <= 2400 && atoi(s.tokText(last)) <= 2400 && atoi(s.tokText(i))%100 < 60 && atoi(s.tokText(last))%100 < 60 {
		return last + 1
	}
	if typ, ok := s.formatType(start, end); ok {
		s.emit(start, end, typ, "id-format")
		return last + 1
	}
	if digits < 4 && !(digits >= 3 && chars >= 6) {
		return last + 1
	}
	// Pager 83554, PG 33445, pgr #54321: hospital pagers have 4 to 6 digits.
	if digits == chars && digits <= 6 && last == i && s.pagerBefore(i) {
		s.emit(start, end, TypePhone, "pager")
		return last + 1
	}
	// "after 1800", "at 0230": a clock time.
	if last == i && digits == 4 && chars == 4 && atoi(s.tokText(i))/100 <= 23 && atoi(s.tokText(i))%100 <= 59 {
		for _, w := range [...]string{"at", "after", "before", "by", "until", "till", "since", "from", "to", "around"} {
			if s.equalFold(i-1, w) {
				return last + 1
			}
		}
		if s.isPunct(i-1, '@') {
			return last + 1
		}
	}
	// National Drug Codes name a product: "(NDC 00173-0736-01)".
	if k := i - 1; s.isPunct(k, ':') || s.isPunct(k, '#') {
		if s.equalFold(k-1, "ndc") {
			return last + 1
		}
	} else if s.equalFold(k, "ndc") {
		return last + 1
	}
	// Doses and measurements: "1000 mg".
	if s.isWord(last+1) && s.flags(last+1)&fDose != 0 && s.toks[last+1].gap <= gapSpace && digits <= 5 {
		return last + 1
	}
	var d [32]byte
	n := 0
	for k := i; k <= last && n < len(d); k++ {
		if s.toks[k].cls&cPunct == 0 {
			n += copy(d[n:], s.tokText(k))
		}
	}
	id := d[:n]
	f := s.contextFlags(i)
	typ, det := TypeNone, ""
	switch {
	case f&fSSNCtx != 0 && digits == 9 && chars == 9 && validSSN(id):
		typ, det = TypeSSN, "ssn-context"
	case f&fVehicleCtx != 0:
		typ, det = TypeVehicleID, "vehicle-context"
	case f&fDeviceCtx != 0:
		typ, det = TypeDeviceID, "device-context"
	case f&fMRNCtx != 0 && f&(fPhoneCtx|fFaxCtx) == 0:
		typ, det = TypeMRN, "mrn-context"
	case f&fPlanCtx != 0:
		typ, det = TypeHealthPlanID, "plan-context"
	case f&fAccountCtx != 0:
		typ, det = TypeAccount, "account-context"
	case f&fLicenseCtx != 0:
		typ, det = TypeLicense, "license-context"
	case f&fFaxCtx != 0 && digits >= 7:
		typ, det = TypeFax, "fax-context"
	case f&fPhoneCtx != 0 && digits == chars && (digits == 7 || digits == 10 || digits == 11) && id[0] != '0':
		typ, det = TypePhone, "phone-context"
	case f&fZipCtx != 0 && digits == 5:
		typ, det = TypeZip, "zip-context"
	case f&fIDCtx != 0:
		typ, det = TypeID, "id-context"
	}
	if typ == TypeNone {
		switch {
		case digits == chars && digits == 10 && validNPI(id) && s.isWord(i-1) && s.equalFold(i-1, "npi"):
			typ, det = TypeID, "npi"
		case digits == chars && digits == 10 && validNANP(id) && last == i:
			typ, det = TypePhone, "phone-nanp"
		case digits == 7 && chars == 7 && last == i+2 && s.isPunct(i+1, '-') && s.tokLen(i) == 3 && id[0] >= '2':
			typ, det = TypePhone, "phone-local"
		case digits == chars && digits == 15 && luhn(id):
			typ, det = TypeDeviceID, "imei"
		case validDEA(id):
			typ, det = TypeLicense, "dea"
		case validMBI(id):
			typ, det = TypeHealthPlanID, "mbi"
		case validVIN(id):
			typ, det = TypeVehicleID, "vin"
		case validIBAN(id):
			typ, det = TypeAccount, "iban"
		case digits >= 7 && digits == chars && slashes == 0:
			typ, det = TypeID, "long-number"
		case digits >= 6 && chars > digits && chars-digits <= 3 && chars <= 20 && slashes == 0:
			typ, det = TypeID, "alnum-id"
		}
	}
	if typ == TypeNone {
		return last + 1
	}
	// 169-33-7.38-20, 150-250cc, 700x12x1, BP 91-94/50: clinical values
	// and ranges are runs of at most three digits; identifiers have a
	// longer run somewhere.
	if (det == "id-context" || det == "long-number" || det == "alnum-id") && maxDigitRun(s.text[start:end]) <= 3 {
		return last + 1
	}
	// SVR 954-1183, TV 900-1000, BP 116-1456/50, glucose @ 0600-281: a
	// range or a timed value after the measurement it belongs to.
	if (det == "id-context" || det == "long-number" || det == "alnum-id" || det == "phone-local") && s.isPunct(i+1, '-') && s.measuredBefore(i) {
		return last + 1
	}
	if typ == TypeID && (s.isWord(i-1) && s.equalFold(i-1, "npi")) {
		det = "npi"
	}
	s.emit(start, end, typ, det)
	return last + 1
}

// formatType matches text[start:end] against the configured shapes.
func (s *Scanner) formatType(start, end int) (EntityType, bool) {
	for _, f := range s.det.formats {
		if len(f.shape) != end-start {
			continue
		}
		ok := true
		for k := 0; k < len(f.shape) && ok; k++ {
			c := s.text[start+k]
			switch f.shape[k] {
			case '9':
				ok = isDigit(c)
			case 'A':
				ok = isLetter(c)
			case '*':
				ok = isDigit(c) || isLetter(c)
			default:
				ok = c == f.shape[k]
			}
		}
		if ok {
			return f.typ, true
		}
	}
	return TypeNone, false
}

// alnum handles tokens mixing letters and digits: ordinals, doses,
// identifiers.
func (s *Scanner) alnum(i int) int {
	t := s.toks[i]
	p := int(t.start)
	if l := t.end - t.start; l >= 2 && l <= 4 && 'A' <= s.text[p] && s.text[p] <= 'Z' {
		if n := s.ukPostcode(i); n > i {
			return n
		}
	}
	if end, ok := s.matchUUIDorHex(p); ok {
		return s.tokenAt(i, end)
	}
	if end, ok := s.matchMAC(p); ok {
		s.emit(p, end, TypeDeviceID, "mac")
		return s.tokenAt(i, end)
	}
	if end, ok := s.matchIPv6(p); ok {
		s.emit(p, end, TypeIP, "ipv6")
		return s.tokenAt(i, end)
	}
	b := s.tokText(i)
	lead := 0
	for lead < len(b) && isDigit(b[lead]) {
		lead++
	}
	if lead > 0 && lead <= 2 {
		if n := s.dayMonth(i); n > i {
			return n
		}
	}
	if lead > 0 && lead < len(b) && isLetter(b[lead]) {
		// 10mg, 5th, 2x, q4h: a number with a unit or suffix
		if len(b)-lead == 1 && lead <= 5 {
			if n := s.address(i); n > i {
				return n
			}
		}
		if v := atoi(b[:lead]); v >= 90 && v <= 125 && lead <= 3 {
			switch string(b[lead:]) {
			case "yo", "YO", "y", "yr", "yrs", "Y", "YR":
				s.emit(p, p+lead, TypeAge, "age")
				return i + 1
			case "F", "M": // "93F admitted", "Pt 91M" (not a temperature)
				if !(s.equalFold(i-1, "t") || s.equalFold(i-1, "temp") || s.equalFold(i-1, "tmax") || s.equalFold(i-1, "temperature")) {
					s.emit(p, p+lead, TypeAge, "age")
					return i + 1
				}
			}
		}
		allLetters := true
		for _, c := range b[lead:] {
			if !isLetter(c) {
				allLetters = false
				break
			}
		}
		if allLetters && lead <= 4 {
			return i + 1
		}
	}
	// IBAN written in groups: GB82 WEST 1234 5698 7654 32
	if len(b) == 4 && isLetter(b[0]) && isLetter(b[1]) && isDigit(b[2]) && isDigit(b[3]) {
		if end, ok := s.matchGroupedIBAN(p); ok {
			s.emit(p, end, TypeAccount, "iban")
			return s.tokenAt(i, end)
		}
	}
	return s.identifier(i)
}

func (s *Scanner) matchGroupedIBAN(p int) (int, bool) {
	var d [34]byte
	n, q, best := 0, p, -1
	for q < len(s.text) && n < 34 {
		c := s.text[q]
		if isDigit(c) || isLetter(c) {
			d[n] = c
			n++
			q++
			// an IBAN may end after any group: keep the longest valid one
			if (q >= len(s.text) || !s.alnumAt(q)) && validIBAN(d[:n]) {
				best = q
			}
			continue
		}
		if c == ' ' && q+1 < len(s.text) && (isDigit(s.text[q+1]) || isLetter(s.text[q+1])) && (q-p)%5 == 4 {
			q++
			continue
		}
		break
	}
	if best < 0 {
		return 0, false
	}
	return best, true
}
