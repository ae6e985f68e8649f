package mask

import (
	"bytes"
	"strings"
)

// Detectors that start at a word token: names, places, organisations,
// textual dates, URLs; and at punctuation: e-mail addresses, phone numbers
// in parentheses or with a leading '+'.

// keywordFlags mark words that are not names even when a list says so.
const keywordFlags = fNameCtx | fTitle | fMedStop | fMonth | fMonthAbbr | fWeekday | fDose | fDateCtx | fLocCtx |
	fOrgSuffix | fStreet | fUnit | fDirection | fHoliday | fAgeCtx

// ambiguousName are flags that make a name need context: the word is also
// an ordinary word, a clinical term or another kind of keyword.
const ambiguousName = fCommon | fMedStop | fMonth | fMonthAbbr | fWeekday | fStreet | fUnit |
	fState | fStateAbbr | fCountry | fOrgSuffix | fDirection | fTitle | fNameCtx | fDose |
	fHoliday | fNameSuffix | fLocCtx | fDateCtx | fAgeCtx | fIDCtx | fPhoneCtx | fMRNCtx | fPlanCtx

func (s *Scanner) word(i int) int {
	t := &s.toks[i]
	if l := t.end - t.start; (l == 2 || l == 5) && s.det.recall && (s.equalFold(i, "st") || s.equalFold(i, "saint")) {
		if n := s.saintPlace(i); n > i {
			return n
		}
	}
	if s.flags(i)&fStreetType != 0 || t.cls&(cUpper1|cUpper) != 0 && i+1 < len(s.toks) && s.toks[i+1].cls&cDigit != 0 && t.end-t.start > 5 {
		if n := s.intlStreet(i); n > i {
			return n
		}
	}
	if t.end-t.start == 1 && s.isPunct(i+1, '.') && s.adjacent(i+1) {
		if n := s.initialName(i); n > i {
			return n
		}
	}
	if l := t.end - t.start; l >= 3 && l <= 5 && (s.text[t.start]|0x20 == 'h' || s.text[t.start]|0x20 == 'w' || s.text[t.start]|0x20 == 'f') {
		if n := s.url(i); n > i {
			return n
		}
	}
	if t.cls&(cUpper1|cUpper) == 0 { // lower case
		if s.flags(i)&fStreetType != 0 {
			if n := s.intlStreet(i); n > i {
				return n
			}
		}
		if l := t.end - t.start; l == 2 || l == 4 {
			// "transfer to quartermain 2", "sent to gh": places after a
			// verb of moving, in lower case
			if j := i + 1; j < len(s.toks) && s.toks[j].gap == gapSpace && s.toks[j].cls&(cUpper1|cUpper|cDigit) == 0 &&
				(s.equalFold(i, "to") || s.equalFold(i, "from") || s.equalFold(i, "at") || s.equalFold(i, "into")) {
				if n := s.placeAfterMove(j); n > j {
					return n
				}
			}
			if j := i + 1; j < len(s.toks) && s.toks[j].gap == gapSpace && (s.equalFold(i, "in") || s.equalFold(i, "of")) {
				if n := s.residence(j); n > j {
					return n
				}
			}
		}
		if t.cls&cTrig == 0 {
			return i + 1
		}
		f := s.flags(i)
		if f&(fMonth|fMonthAbbr) != 0 {
			if n := s.textDate(i); n > i {
				return n
			}
		}
		if f&fNameSuffix != 0 {
			if n := s.signature(i); n > i {
				return n
			}
		}
		if f&fPlaceKind != 0 {
			if n := s.placeBeforeKind(i); n > i {
				return n
			}
		}
		if f&fFirstTop != 0 {
			if n := s.allCapsName(i); n > i {
				return n
			}
		}
		if f&(fTitle|fNameCtx) != 0 {
			if n := s.lowerNameAfter(i); n > i {
				return n
			}
		}
		return i + 1
	}
	f := s.flags(i)
	if s.det.recall && i > 0 && s.tokLen(i-1) == 2 && (s.equalFold(i-1, "in") || s.equalFold(i-1, "of")) && (s.capitalized(i) || s.allCaps(i)) {
		if n := s.residence(i); n > i {
			return n
		}
	}
	if s.allCaps(i) && s.tokLen(i) <= 5 && i+1 < len(s.toks) && s.tokLen(i+1) == 2 {
		if n := s.placeBeforeED(i); n > i {
			return n
		}
	}
	if s.allCaps(i) && s.tokLen(i) <= 3 && i+1 < len(s.toks) && s.toks[i+1].cls == cDigit {
		if n := s.auPostcode(i); n > i {
			return n
		}
	}
	if s.det.recall && i+1 < len(s.toks) && s.toks[i+1].cls == cDigit && s.tokLen(i+1) == 1 && s.toks[i+1].gap == gapSpace && s.tokLen(i) >= 6 {
		if n := s.ward(i); n > i {
			return n
		}
	}
	if i > 0 && (s.tokLen(i-1) == 2 || s.tokLen(i-1) == 4) && s.allCaps(i) &&
		(s.equalFold(i-1, "at") || s.equalFold(i-1, "to") || s.equalFold(i-1, "from") || s.equalFold(i-1, "into")) {
		if n := s.placeAfterMove(i); n > i {
			return n
		}
	}
	// A word in capitals (BP, NDC, BID) starts nothing unless it is a
	// month, a state, a title, a name context or a frequent first name;
	// placeBeforeState needs a capitalized first word.
	if f&(fMonth|fMonthAbbr|fStateAbbr|fTitle|fNameCtx|fFirstTop|fNameSuffix|fPlaceKind) == 0 && s.allCaps(i) && !s.equalFold(i, "po") {
		return i + 1
	}
	// An ordinary word that happens to be capitalized ("Plan", "Recheck")
	// and does not start a run of capitalized words: nothing to find.
	if f&^(fCommon|fKnown|fLooked) == 0 && f&fCommon != 0 && !s.capitalized(i+1) && !s.allCaps(i+1) && !s.isPunct(i+1, '.') {
		return i + 1
	}
	if f&(fMonth|fMonthAbbr) != 0 {
		if n := s.textDate(i); n > i {
			return n
		}
	}
	if n := s.poBox(i); n > i {
		return n
	}
	if f&fHoliday != 0 && s.capitalized(i) {
		s.emitToks(i, i, TypeDate, "date-holiday")
		return i + 1
	}
	// Monday ... Sunday are not masked: a weekday names no calendar date,
	// Safe Harbor does not list it, and the annotators of real clinical
	// notes do not label it (docs/masking.md).
	if f&fNameSuffix != 0 && (s.allCaps(i) || s.isPunct(i-1, ',')) {
		if n := s.signature(i); n > i {
			return n
		}
	}
	if f&fPlaceKind != 0 && s.allCaps(i) {
		if n := s.placeBeforeKind(i); n > i {
			return n
		}
	}
	if s.allCaps(i) {
		if f&fStateAbbr != 0 && s.tokLen(i) == 2 {
			if n := s.stateAbbr(i); n > i {
				return n
			}
		}
		if f&fTitle != 0 {
			if n := s.nameAfterTitle(i); n > i {
				return n
			}
		}
		if f&fNameCtx != 0 {
			if n := s.lowerNameAfter(i); n > i {
				return n
			}
		}
		if n := s.placeBeforeState(i); n > i {
			return n
		}
		if n := s.allCapsName(i); n > i {
			return n
		}
		// "KAREN RN", "WITH JOHN SMITH MD": in capitals, a first name is a
		// name when a suffix follows.
		if f&fFirst != 0 && f&(keywordFlags|fCommonName|fStateAbbr) == 0 && s.tokLen(i) >= 3 {
			last := i
			if s.allCaps(i+1) && s.toks[i+1].gap == gapSpace && s.flags(i+1)&fLast != 0 && s.flags(i+1)&(keywordFlags|fNameSuffix) == 0 {
				last = i + 1
			}
			if s.suffixAfter(last) {
				s.emitToks(i, last, TypeName, "name-caps")
				return last + 1
			}
		}
		return i + 1
	}
	if f&fTitle != 0 {
		if n := s.nameAfterTitle(i); n > i {
			return n
		}
	}
	if n := s.place(i); n > i {
		return n
	}
	if n := s.name(i); n > i {
		return n
	}
	if f&fNameCtx != 0 {
		if n := s.lowerNameAfter(i); n > i {
			return n
		}
	}
	return i + 1
}

// tokenAt returns the index of the first token that starts at or after
// byte offset off, searching from token i.
func (s *Scanner) tokenAt(i, off int) int {
	for i < len(s.toks) && int(s.toks[i].start) < off {
		i++
	}
	return i
}

// nameScore rates token i as part of a person's name: 2 a name that is
// nothing else, 1 a name that is also a word (or an unknown capitalized
// word), 0 not a name.
func (s *Scanner) nameScore(i int) int {
	if !s.isWord(i) || s.toks[i].cls&cUpper1 == 0 || s.allCaps(i) {
		return 0
	}
	f := s.flags(i)
	if f&(fFirst|fLast) == 0 {
		if f&(ambiguousName|fKnown) != 0 || f&fCity != 0 || hasSuffixFold(s.tokText(i), medicalSuffixes) || !s.det.recall {
			return 0 // precision: a name must be listed
		}
		return 1
	}
	if f&(ambiguousName&^fCommon) != 0 || f&fCommonName != 0 || s.tokLen(i) <= 2 {
		return 1
	}
	if f&fFirstTop != 0 {
		return 2 // census first names that are no everyday word (Maria, Lee)
	}
	if f&fCommon != 0 {
		return 1
	}
	if f&fLastTop != 0 {
		return 2
	}
	return 1
}

// isParticle reports name particles written in lower case: van, de, der.
func isParticle(w []byte) bool {
	switch string(w) {
	case "van", "von", "de", "der", "den", "da", "di", "del", "della", "dos", "das", "du", "la", "le", "ter", "ten", "bin", "ibn", "al", "el", "y",
		"des", "dei", "degli", "delle", "las", "los", "les":
		return true
	}
	return false
}

// inDict reports whether token i is in the name lists.
func (s *Scanner) inDict(i int) bool { return s.isWord(i) && s.flags(i)&(fFirst|fLast) != 0 }

// initial reports whether token i is a single capital letter, optionally
// followed by '.', and returns the index after it.
func (s *Scanner) initial(i int) (int, bool) {
	if !s.isWord(i) || s.tokLen(i) != 1 || s.toks[i].cls&cUpper1 == 0 {
		return i, false
	}
	if s.isPunct(i+1, '.') && s.adjacent(i+1) {
		return i + 2, true
	}
	return i + 1, true
}

// nameRun collects a run of name-like tokens starting at i: capitalized
// words and initials separated by single spaces, joined by '-' or ”'. It
// returns the last token of the run and the best and total scores.
func (s *Scanner) nameRun(i int, title bool) (last, best, names int) {
	last = -1
	j := i
	for k := 0; k < 5 && j < len(s.toks); k++ {
		if k > 0 && s.toks[j].gap == gapNewline {
			break
		}
		// O'Brien, D'Angelo
		// (not I'M, D/C'D, X'S: the part after the apostrophe is a word)
		if s.isWord(j) && s.tokLen(j) == 1 && s.toks[j].cls&cUpper1 != 0 && s.isPunct(j+1, '\'') && s.adjacent(j+1) &&
			s.adjacent(j+2) && (s.capitalized(j+2) || title && k == 0 && s.lowerWord(j+2)) && s.tokLen(j+2) >= 3 && !(s.isPunct(j-1, '/') && s.adjacent(j)) {
			best = 2
			last = j + 2
			j += 3
			continue
		}
		if n, ok := s.initial(j); ok {
			// an initial counts only between or before names
			if nxt := n; nxt < len(s.toks) && s.toks[nxt].gap != gapNewline && s.nameScore(nxt) > 0 {
				last = n - 1
				j = n
				continue
			}
			if k > 0 && best > 0 {
				last = n - 1
			}
			break
		}
		sc := s.nameScore(j)
		if sc == 0 && !(title && k == 0 && s.capitalized(j)) {
			break
		}
		if sc > best {
			best = sc
		}
		if sc > 0 && s.inDict(j) {
			names++
		}
		last = j
		j++
		// van der Berg, de la Cruz
		for p := j; p < len(s.toks) && p < j+2 && s.lowerWord(p) && isParticle(s.tokText(p)) && s.toks[p].gap == gapSpace; p++ {
			if s.capitalized(p+1) && s.toks[p+1].gap == gapSpace {
				last = p + 1
				j = p + 2
				break
			}
		}
		// O'Brien, Smith-Jones
		for j+1 < len(s.toks) && (s.isPunct(j, '\'') || s.isPunct(j, '-')) && s.adjacent(j) && s.adjacent(j+1) && s.capitalized(j+1) {
			last = j + 1
			j += 2
		}
	}
	return last, best, names
}

// nameContextLevel is 2 after a relation ("wife", "name is", "spoke with")
// that vouches even for a name missing from the lists, 1 after a role
// ("patient", "RN"), 0 otherwise.
func (s *Scanner) nameContextLevel(i int) int {
	j := i - 1
	for j >= 0 && (s.isPunct(j, ',') || s.isPunct(j, ':')) {
		j--
	}
	if j >= 1 && s.isPunct(j-1, '\'') && s.equalFold(j, "s") { // pt's wife
		j -= 2
	}
	if !s.isWord(j) {
		return 0
	}
	f := s.flags(j)
	if f&fRelation != 0 {
		return 2
	}
	if f&fNameCtx != 0 {
		return 1
	}
	if (s.equalFold(j, "is") || s.equalFold(j, "was")) && s.isWord(j-1) && (s.equalFold(j-1, "name") || s.equalFold(j-1, "names")) {
		return 2
	}
	if s.equalFold(j, "by") || s.equalFold(j, "with") || s.equalFold(j, "to") || s.equalFold(j, "per") {
		if s.equalFold(j, "per") {
			return 1
		}
		if s.isWord(j-1) && s.flags(j-1)&fVerbCtx != 0 {
			return 2
		}
		return 0
	}
	return 0
}

// suffixAfter reports whether a name suffix (Jr, MD, RN) follows token i.
func (s *Scanner) suffixAfter(i int) bool {
	j := i + 1
	if s.isPunct(j, ',') {
		j++
	}
	if !(s.isWord(j) && s.toks[j].cls&cUpper1 != 0 && s.flags(j)&fNameSuffix != 0) {
		return false
	}
	// "Stage II" is no name: Roman numerals follow a first name only
	if w := s.tokText(j); (w[0] == 'I' || w[0] == 'V') && s.allCaps(j) {
		return s.isWord(i-1) && s.flags(i-1)&fFirst != 0
	}
	return true
}

// name detects a person's name starting at the capitalized token i.
func (s *Scanner) name(i int) int {
	if s.toks[i].cls&cUpper1 == 0 {
		return i
	}
	// "Neuro:" at the start of a line is a heading.
	if s.toks[i].gap == gapNewline && s.isPunct(i+1, ':') {
		return i
	}
	// A lone unlisted word at the start of a sentence ("Recheck in 4
	// weeks", "Tolerating TF"): nothing before it can announce a name and
	// an ordinary lower-case word after it adds nothing, so no rule below
	// can match; this is the commonest capitalized word in notes.
	if j := i + 1; s.flags(i)&(fFirst|fLast) == 0 && s.tokLen(i) > 1 &&
		(i == 0 || s.toks[i-1].cls&cPunct != 0 && !s.isPunct(i-1, ',') && !s.isPunct(i-1, ':') && !s.isPunct(i-1, '&') && !s.isPunct(i-1, '\'')) &&
		s.lowerWord(j) && s.toks[j].gap != gapNone && !s.equalFold(j, "and") && !s.equalFold(j, "or") && !isParticle(s.tokText(j)) {
		return i
	}
	last, best, _ := s.nameRun(i, false)
	if last < 0 {
		return i
	}
	// A keyword is not part of the name: "Son Robert", "Robert Foley".
	// Street words are surnames too ("Deion Hills") unless a number before
	// makes the run a street.
	kw := keywordFlags
	if !(i > 0 && s.toks[i-1].cls&cDigit != 0) {
		kw &^= fStreet | fDirection
	}
	first := i
	for first < last && s.isWord(first) && s.flags(first)&kw != 0 {
		first++
	}
	for last > first && s.isWord(last) && s.flags(last)&kw != 0 {
		last--
	}
	if s.isWord(first) && s.flags(first)&kw != 0 {
		return i
	}
	strong, weak, unknown, common := 0, 0, 0, 0
	for k := first; k <= last; k++ {
		if !s.isWord(k) || s.tokLen(k) == 1 {
			continue
		}
		switch sc := s.nameScore(k); {
		case sc == 2:
			strong++
		case sc == 1 && s.inDict(k) && (s.flags(k)&fKnown == 0 || s.flags(k)&(fFirstTop|fLastTop) != 0):
			weak++
		case sc == 1 && s.inDict(k):
			common++ // a listed name that is also a word: "Given", "Alert"
		case sc == 1:
			unknown++
		}
		if s.flags(k)&fCommon != 0 {
			common++
		}
	}
	ctx := s.nameContextLevel(first)
	if ctx == 0 && first > 0 && s.lowerWord(first-1) {
		// "Please call Brenden", "You can text Jazmyn"
		if s.flags(first-1)&fRelation != 0 {
			ctx = 2
		}
	}
	firstLast := last > first && s.flags(first)&fFirstTop != 0 && s.flags(last)&fLastTop != 0 && last-first <= 2
	// Siddharth Venkataraman: two or three capitalized words the
	// allowlist does not know, in mixed case (recall-first).
	unknownPair := s.det.recall && unknown >= 2 && unknown == last-first+1 && common == 0 && last-first <= 2 && !s.caseless()
	ok := strong >= 1 || firstLast || unknownPair ||
		(ctx == 2 || s.suffixAfter(last)) && weak+unknown >= 1 ||
		ctx == 1 && (weak >= 1 || unknown >= 2) ||
		weak >= 1 && weak+unknown >= 2 && common <= 1 ||
		best == 2
	// "Brionna and Hershel": a name listed with a name.
	if !ok && (weak >= 1 || unknown >= 1 && common == 0) {
		if k := last + 1; (s.equalFold(k, "and") || s.equalFold(k, "or") || s.isPunct(k, '&')) && s.nameScore(k+1) == 2 {
			ok = true
		}
		if k := first - 1; (s.equalFold(k, "and") || s.equalFold(k, "or") || s.isPunct(k, '&')) && len(s.found) > 0 &&
			s.found[len(s.found)-1].Type == TypeName && k > 0 && s.found[len(s.found)-1].End == int(s.toks[k-1].end) {
			ok = true
		}
	}
	// "Bjorn called": a first name from the lists that is no word, and a
	// verb people do.
	if !ok && weak >= 1 && (common == 0 || first == last && s.flags(first)&fFirstTop != 0) && s.flags(first)&fFirst != 0 && s.flags(first)&fCommonName == 0 &&
		s.isWord(last+1) && s.toks[last+1].gap == gapSpace && s.flags(last+1)&fPersonVerb != 0 {
		ok = true
	}
	// "Doe, John": a surname alone, then a first name after a comma, as
	// directories, CSV files and records write them.
	if !ok && first == last && s.flags(first)&fLast != 0 && s.flags(first)&keywordFlags == 0 &&
		(s.flags(first)&fCommon == 0 || s.flags(first)&fLastTop != 0) && s.isPunct(last+1, ',') && s.adjacent(last+1) &&
		s.nameScore(last+2) > 0 && s.flags(last+2)&fFirstTop != 0 && s.toks[last+2].gap != gapNewline {
		ok = true
	}
	if !ok {
		return i
	}
	// Smith, John
	if s.isPunct(last+1, ',') && s.nameScore(last+2) > 0 && s.flags(last+2)&fFirst != 0 && s.toks[last+2].gap != gapNewline && s.flags(last)&fLast != 0 {
		if l2, _, _ := s.nameRun(last+2, false); l2 > last {
			last = l2
		}
	}
	s.emitToks(first, last, TypeName, "name")
	return last + 1
}

// nameAfterTitle detects the name after a title: Dr. Hope, Mrs Jones,
// DR RIZZO, dr. o'halloran, Drs Joseph and Robbinson. In capitals and in
// lower case the title is what says a name follows, so the words after
// it count when they are listed names or unknown words (the allowlist):
// "DR SULLIVAN AWARE" stops at AWARE, "SR WITH OCC" (sinus rhythm) is no
// name at all.
func (s *Scanner) nameAfterTitle(i int) int {
	j := i + 1
	plural := s.equalFold(i, "drs")
	if s.isPunct(j, '\'') && s.adjacent(j) && s.equalFold(j+1, "s") { // DR'S
		j += 2
		plural = true
	}
	if s.isPunct(j, '.') && s.adjacent(j) {
		j++
	}
	if j >= len(s.toks) || s.toks[j].gap == gapNewline {
		return i
	}
	// MR and MS are also mitral regurgitation and mental status, SR sinus
	// rhythm, FR a catheter's size: after them a name must be a listed one
	// that is no word ("MR. Cardiology following", "SR NO VEA").
	weak := foldIn(s.tokText(i), weakTitles) && !(s.capitalized(i) && !s.allCaps(i) && s.capitalized(j) && !s.allCaps(j))
	if weak && !s.initialAt(j) && (!s.inDict(j) || s.flags(j)&(fKnown|keywordFlags) != 0) {
		return i
	}
	if s.allCaps(j) || s.lowerWord(j) || s.mostlyCaps() && s.initialAt(j) {
		last := s.titledName(j)
		if last < j {
			return i
		}
		for (s.equalFold(last+1, "and") || s.isPunct(last+1, '&')) && (plural || s.nameWord(last+2)) {
			l2 := s.titledName(last + 2)
			if l2 < last+2 {
				break
			}
			s.emitToks(j, last, TypeName, "name-title")
			j, last = last+2, l2
		}
		s.emitToks(j, last, TypeName, "name-title")
		return last + 1
	}
	if !s.capitalized(j) {
		return i
	}
	last, _, _ := s.nameRun(j, true)
	if last < j {
		last = j
	}
	// Dr Ferdinand Halfpenny: a surname that is also a word
	if last == j && s.flags(j)&fFirst != 0 && s.capitalized(last+1) && !s.allCaps(last+1) && s.toks[last+1].gap == gapSpace &&
		s.flags(last+1)&(keywordFlags|fNameSuffix) == 0 {
		last++
	}
	s.emitToks(j, last, TypeName, "name-title")
	return last + 1
}

// weakTitles are titles that are also clinical abbreviations.
var weakTitles = []string{"mr", "ms", "sr", "sra", "srta", "fr", "dra", "mx", "rev", "capt"}

// initialAt reports a single letter followed by '.' at token j.
func (s *Scanner) initialAt(j int) bool {
	return s.isWord(j) && s.tokLen(j) == 1 && s.toks[j].cls&cDigit == 0 && s.isPunct(j+1, '.') && s.adjacent(j+1)
}

// nameWord reports whether token k may be part of a name where context
// says one stands: a listed first name or surname that is not a keyword,
// or a word the allowlist does not know.
func (s *Scanner) nameWord(k int) bool {
	if !s.isWord(k) || s.toks[k].cls&cDigit != 0 || s.toks[k].cls&cPlain != 0 || s.tokLen(k) < 2 {
		return false
	}
	return s.nameBytes(s.tokText(k), s.flags(k), s.capitalized(k) && !s.allCaps(k) && !s.mostlyCaps())
}

// nameBytes is nameWord for a word w with flags f; titled says it is
// capitalized in text written in mixed case.
func (s *Scanner) nameBytes(w []byte, f wflag, titled bool) bool {
	if f&(keywordFlags|fNameSuffix|fStateAbbr) != 0 {
		return false
	}
	if f&(fFirst|fLast) != 0 {
		return f&fKnown == 0 || titled
	}
	return f&fKnown == 0 && hasVowel(w) && !hasSuffixFold(w, medicalSuffixes) && !s.nearKnown(w)
}

// hasVowel reports whether w has a vowel (a, e, i, o, u, y): names do,
// abbreviations often do not (RPP, LSC, NGT).
func hasVowel(w []byte) bool {
	for _, c := range w {
		switch c | 0x20 {
		case 'a', 'e', 'i', 'o', 'u', 'y':
			return true
		}
		if c >= 0x80 {
			return true // accented letters
		}
	}
	return false
}

// nearKnown reports whether w, a word the allowlist does not know, is one
// letter added, dropped, swapped or left single away from a known word: a
// misspelling ("visisted", "socaial", "begining", "basess"), not a name.
// Only words in a name's or a place's position are asked, and each costs
// about 3n look-ups.
func (s *Scanner) nearKnown(w []byte) bool {
	n := len(w)
	if n < 5 || n > 24 {
		return false
	}
	var buf [25]byte
	for i := 0; i < n; i++ { // a letter written once that is doubled
		if i+1 < n && lower(w[i+1]) == lower(w[i]) {
			continue // the same word as doubling the next one
		}
		m := copy(buf[:], w[:i+1])
		buf[m] = w[i]
		m++
		m += copy(buf[m:], w[i+1:])
		if s.d.lookup(buf[:m])&fKnown != 0 {
			return true
		}
	}
	for i := range n { // one letter too many
		m := copy(buf[:], w[:i])
		m += copy(buf[m:], w[i+1:])
		if s.d.lookup(buf[:m])&fKnown != 0 {
			return true
		}
	}
	for i := 0; i+1 < n; i++ { // two letters swapped
		copy(buf[:], w)
		buf[i], buf[i+1] = buf[i+1], buf[i]
		if s.d.lookup(buf[:n])&fKnown != 0 {
			return true
		}
	}
	return false
}

// titledName returns the last token of the name that starts at token j
// after a title, or j-1: initials (L. RUUSKA), O'Halloran, Williams-Nuzzo,
// and up to three words.
func (s *Scanner) titledName(j int) int {
	last := j - 1
	for k := j; k < len(s.toks) && k-j < 6; {
		if k > j && s.toks[k].gap != gapSpace && s.toks[k].gap != gapNone {
			break
		}
		if s.initialAt(k) && s.isWord(k+2) && s.toks[k+2].gap == gapSpace {
			k += 2
			continue
		}
		// o'rourke, O'HALLORAN
		if s.isWord(k) && s.tokLen(k) == 1 && s.isPunct(k+1, '\'') && s.adjacent(k+1) && s.adjacent(k+2) && s.isWord(k+2) && s.tokLen(k+2) > 2 {
			last = k + 2
			k += 3
		} else if s.nameWord(k) || k == j && s.isWord(k) && s.tokLen(k) > 1 && s.toks[k].cls&(cDigit|cPlain) == 0 &&
			(s.flags(k)&(fFirst|fLast) != 0 || s.flags(k)&fKnown == 0) && s.flags(k)&(keywordFlags|fNameSuffix) == 0 {
			// the first word after a title is a name even when it is a
			// word too or ends like a disease (dr small, Dr. White,
			// DR. BAKAITIS)
			last = k
			k++
		} else if k == j && s.isWord(k) && s.tokLen(k) == 1 && s.lowerWord(k) && s.isWord(k+1) && s.toks[k+1].gap == gapSpace && s.nameWord(k+1) {
			last = k + 1 // Dr. o rourke
			k += 2
		} else {
			break
		}
		for s.isPunct(k, '-') && s.adjacent(k) && s.adjacent(k+1) && s.isWord(k+1) && s.tokLen(k+1) > 1 {
			last = k + 1 // williams-nuzzo
			k += 2
		}
		if last-j >= 4 || !s.isWord(k) || s.toks[k].gap != gapSpace {
			break
		}
	}
	return last
}

// lowerNameAfter detects a name after a context word, in any case:
// "wife mary", "Pt JOHN", "dtr suzette", "DAUGHTER-KRISSY". After a
// relation (wife, son, daughter) a word the allowlist does not know is
// taken for a name, and so is a listed first name that is also a word
// ("son bill"); after a weaker context (pt, patient) only a listed name
// that is no word.
func (s *Scanner) lowerNameAfter(i int) int {
	if s.flags(i)&fTitle != 0 {
		return s.nameAfterTitle(i)
	}
	// Verbs and form words (call, contact, name, cc) announce a name in
	// mixed case; in one case, words after them are names only when
	// listed.
	relation := s.flags(i)&fRelation != 0 && !foldIn(s.tokText(i), weakRelations)
	if s.equalFold(i, "cc") && i > 0 && s.toks[i-1].cls&cDigit != 0 {
		return i // 400 cc melena
	}
	j := i + 1
	if s.isPunct(j, ',') || s.isPunct(j, ':') || relation && s.isPunct(j, '-') {
		j++
	}
	for relation && s.isPunct(j, '-') && s.adjacent(j) {
		j++ // DAUGHTER--KRISSY
	}
	if j >= len(s.toks) || s.toks[j].gap == gapNewline || !s.isWord(j) || s.toks[j].cls&cUpper1 != 0 && !s.allCaps(j) {
		return i // capitalized names are handled by name()
	}
	if !s.relatedName(j, relation) {
		return i
	}
	last := j
	if k := j + 1; s.isWord(k) && s.toks[k].gap == gapSpace && s.lowerWord(k) == s.lowerWord(j) &&
		(relation && s.nameWord(k) || s.flags(k)&(fFirst|fLast) != 0 && s.flags(k)&(ambiguousName|fKnown) == 0) {
		last = k
	}
	s.emitToks(j, last, TypeName, "name-context")
	return last + 1
}

// relatedName reports whether token j, after a context word, is a name.
func (s *Scanner) relatedName(j int, relation bool) bool {
	f := s.flags(j)
	if s.tokLen(j) <= 2 || f&(keywordFlags|fNameSuffix) != 0 {
		return relation && s.tokLen(j) == 2 && f&(fFirst) != 0 && f&fKnown == 0 // ed, al
	}
	if !relation {
		return f&(fFirst|fLast) != 0 && f&(ambiguousName|fKnown) == 0
	}
	if s.nameWord(j) {
		return true
	}
	// son bill, wife rose: a first name that is also a word, but not one
	// that follows relations as a verb does (son will call)
	return f&fFirstTop != 0 && !foldIn(s.tokText(j), notNameAfterRelation)
}

var weakRelations = []string{"named", "name", "contact", "attn", "attention", "dear", "cc", "call", "text", "email", "page", "ask", "tell", "thank", "thanks"}

var notNameAfterRelation = []string{"will", "may", "can", "said", "says", "is", "was", "and", "or", "in", "at", "to", "her", "his", "him", "just", "given", "call", "called", "calls", "here"}

// signature detects the name before a credential, as clinicians sign
// notes in every case: "DAN A. FORMAN-LYONS, RRT", "q. lander rrt",
// "florencia cooke np", "Bernard Foley CRT". Token c is the credential.
// The words before it count when they are listed names or unknown to
// the allowlist (or initials); a known word ends the name.
func (s *Scanner) signature(c int) int {
	if !foldIn(s.tokText(c), signCredentials) || c == 0 {
		return c
	}
	k := c - 1
	if s.isPunct(k, ',') {
		k--
	}
	start, end := -1, -1
	words := 0
	for k >= 0 && words < 4 {
		t := s.toks[k]
		switch {
		case t.cls&cPlain != 0: // lower-case words merged into one token
			w := s.text[t.start:t.end]
			e := len(w)
			for words < 3 {
				sp := bytes.LastIndexByte(w[:e], ' ') + 1
				word := w[sp:e]
				f := s.d.lookup(word)
				if !s.nameBytes(word, f&^fMedStop, false) && !(f&fMedStop != 0 && f&(fFirst|fLast) != 0) || len(word) < 2 {
					break
				}
				start = int(t.start) + sp
				if end < 0 {
					end = int(t.start) + e
				}
				words++
				if sp == 0 {
					break
				}
				e = sp - 1
			}
			k = -1 // a run is as far back as a signature goes
			continue
		case s.isWord(k) && s.tokLen(k) == 1 && t.cls&cDigit == 0 && (s.isPunct(k+1, '.') && s.adjacent(k+1) || k+1 < c && s.toks[k+1].gap == gapSpace) && words > 0:
			start = int(t.start) // an initial
		case s.isPunct(k, '.') && s.adjacent(k) && s.isWord(k-1) && s.tokLen(k-1) == 1 && words > 0:
			k--
			continue
		case (s.isPunct(k, '-') || s.isPunct(k, '\'')) && s.adjacent(k) && s.adjacent(k+1) && words > 0 && s.isWord(k-1):
			k--
			continue // FORMAN-LYONS, O'BRIEN
		case s.isWord(k) && t.cls&cDigit == 0 && s.tokLen(k) >= 2 && (s.nameWord(k) || s.flags(k)&fMedStop != 0 && s.flags(k)&(fFirst|fLast) != 0 && s.flags(k)&(keywordFlags&^fMedStop) == 0 ||
			words > 0 && s.flags(k)&fFirst != 0 && s.flags(k)&keywordFlags == 0 && !foldIn(s.tokText(k), functionWords)):
			start = int(t.start)
			words++
		default:
			k = -1
			continue
		}
		if end < 0 {
			end = int(t.end)
		}
		if t.gap == gapNewline {
			break
		}
		k--
	}
	if words == 0 {
		return c
	}
	s.emit(start, end, TypeName, "name-signature")
	return c + 1
}

// signCredentials are the credentials clinicians sign with.
var signCredentials = []string{"rn", "rrt", "crt", "np", "lpn", "cna", "msw", "lcsw", "licsw", "rd", "md", "pa-c", "bsn", "msn", "aprn", "crna", "pharmd", "slp", "rnc"}

// initialName detects a name that starts with an initial: "W. MAROTTA",
// "d. renna", "L. Ruuska". Token i is the letter, followed by '.'.
func (s *Scanner) initialName(i int) int {
	if s.adjacent(i) && !(s.isPunct(i-1, '(') || s.isPunct(i-1, '"') || s.isPunct(i-1, '[') || s.isPunct(i-1, '-') && !s.adjacent(i-1)) && !(s.isPunct(i-1, '-') && s.allCaps(i) && s.isWord(i-2)) || s.toks[i].cls&cDigit != 0 {
		return i // the end of e.g., U.S., N/V., d/c'd.
	}
	j := i + 2
	if j >= len(s.toks) || s.toks[j].gap != gapSpace || !s.isWord(j) || s.toks[j].cls&cDigit != 0 {
		return i
	}
	if s.tokLen(j) == 1 && s.isPunct(j+1, '.') { // A. B. Smith
		j += 2
		if j >= len(s.toks) || s.toks[j].gap != gapSpace || !s.isWord(j) {
			return i
		}
	}
	t := s.toks[j]
	w := s.text[t.start:t.end]
	if t.cls&cPlain != 0 {
		if sp := bytes.IndexByte(w, ' '); sp > 0 {
			w = w[:sp]
		}
	}
	f := s.d.lookup(w)
	// Q. LANDER RRT: before a credential an initial and any word that is
	// not a function word is a name.
	signed := t.cls&cPlain == 0 && f&keywordFlags == 0 && !foldIn(w, functionWords) &&
		(s.isWord(j+1) && foldIn(s.tokText(j+1), signCredentials) || s.isPunct(j+1, ',') && s.isWord(j+2) && foldIn(s.tokText(j+2), signCredentials))
	if len(w) < 3 || !s.nameBytes(w, f, false) && !signed {
		// o'brien
		if !(len(w) == 1 && s.isPunct(j+1, '\'') && s.adjacent(j+1) && s.adjacent(j+2) && s.isWord(j+2)) {
			return i
		}
		s.emitToks(i, j+2, TypeName, "name-initial")
		return j + 3
	}
	end := int(t.start) + len(w)
	last := j
	for s.isPunct(last+1, '-') && s.adjacent(last+1) && s.adjacent(last+2) && s.isWord(last+2) && s.toks[last+2].cls&cPlain == 0 {
		last += 2
		end = int(s.toks[last].end)
	}
	s.emit(int(s.toks[i].start), end, TypeName, "name-initial")
	return last + 1
}

// place detects organisations (... Hospital, ... Medical Center), multi-word
// cities and states, and single-word cities in context.
func (s *Scanner) place(i int) int {
	// Most capitalized words stand alone, name no place and follow no
	// place word: then no rule below can match (each needs a longer run, a
	// ", ST" after the word, a listed place or a word before it), and the
	// memos they would set cover no capitalized word.
	if j := i + 1; s.flags(i)&(fCityStart|fStateStart|fTownPrefix|fCity|fState|fCountry) == 0 &&
		(j >= len(s.toks) || s.toks[j].cls&cPunct == 0 && !s.capitalized(j) && !s.allCaps(j) && !s.equalFold(j, "of") && !s.equalFold(j, "the") ||
			s.toks[j].cls&cPunct != 0 && !s.isPunct(j, '.') && !s.isPunct(j, '\'') && !s.isPunct(j, '-') && !s.isPunct(j, ',') && !s.isPunct(j, '&')) &&
		!(s.isWord(i-1) && s.flags(i-1)&fLocCtx != 0) && !s.equalFold(i-1, "by") && !s.equalFold(i-1, "for") && !s.isPunct(i-1, ',') {
		return i
	}
	// Organisation: a run of capitalized words ending in a suffix. A run
	// already walked without a suffix is not walked again from inside.
	j, suffix, lastCap := i, -1, i
	for k := 0; k < 7 && j < len(s.toks) && i >= s.noOrgUntil; k++ {
		if k > 0 && s.toks[j].gap == gapNewline {
			break
		}
		switch {
		case s.capitalized(j) || s.allCaps(j) && k > 0:
			if k > 0 && s.flags(j)&fOrgSuffix != 0 {
				suffix = j
			}
			lastCap = j
			j++
			if s.isPunct(j, '.') && s.adjacent(j) && s.tokLen(j-1) <= 3 && suffix != j-1 { // St. Mary
				j++
			}
			if s.isPunct(j, '\'') && s.adjacent(j) && s.equalFold(j+1, "s") { // Mary's
				j += 2
			}
			if s.isPunct(j, '-') && s.adjacent(j) && s.capitalized(j+1) {
				j++
			}
			continue
		case k > 0 && (s.equalFold(j, "of") || s.equalFold(j, "for") || s.equalFold(j, "the") || s.isPunct(j, '&')) && (s.capitalized(j+1) || s.equalFold(j+1, "the")):
			j++
			continue
		}
		break
	}
	if suffix <= i && j > s.noOrgUntil {
		s.noOrgUntil = j
	}
	if suffix > i && (s.allCaps(suffix) || s.mostlyCaps()) && !s.capsOrg(i, suffix) {
		suffix = -1
	}
	if suffix > i {
		end := suffix
		for end+1 < len(s.toks) && s.capitalized(end+1) && s.toks[end+1].gap == gapSpace && s.flags(end+1)&fOrgSuffix != 0 {
			end++
		}
		// Holy Cross Hospital: the kind of place says nothing of which
		// one, and annotators leave it out.
		if end == suffix && s.flags(end)&fPlaceKind != 0 && end-1 >= i && !s.equalFold(end, "memorial") && !s.equalFold(end, "regional") {
			s.emitToks(i, end-1, TypeLocation, "organisation")
			return end + 1
		}
		s.emitToks(i, end, TypeLocation, "organisation")
		return end + 1
	}
	// An organisation that starts with its kind: Hospice of the North
	// Shore, University of Vermont, Center for Sight.
	if lastCap > i+1 && s.capitalized(i) && s.flags(i)&fOrgSuffix != 0 && (s.equalFold(i+1, "of") || s.equalFold(i+1, "for")) {
		s.emitToks(i, lastCap, TypeLocation, "organisation")
		return lastCap + 1
	}
	// Newton-Wellesley, Wilkes-Barre: towns joined by a hyphen.
	if s.isPunct(i+1, '-') && s.adjacent(i+1) && s.adjacent(i+2) && s.capitalized(i+2) && s.capitalized(i) {
		// both towns, and not both frequent surnames (Wilson-Jackson)
		both := s.flags(i)&fCity != 0 && s.flags(i+2)&fCity != 0 && s.flags(i)&s.flags(i+2)&fLastTop == 0
		if both || s.d.lookup(s.text[s.toks[i].start:s.toks[i+2].end])&fCity != 0 {
			s.emitToks(i, i+2, TypeLocation, "place-dict")
			return i + 3
		}
	}
	// "Clinique des Alpes, Genève": a town after a place and a comma
	// (recall-first): a listed city or a capitalized word no list knows.
	if s.det.recall && s.isPunct(i-1, ',') && i >= 2 && len(s.found) > 0 && s.capitalized(i) && !s.allCaps(i) &&
		(s.found[len(s.found)-1].Type == TypeLocation || s.found[len(s.found)-1].Type == TypeAddress) && s.found[len(s.found)-1].End == int(s.toks[i-2].end) &&
		s.flags(i)&(keywordFlags&^(fCountry|fState)) == 0 && (s.flags(i)&fCity != 0 || s.flags(i)&fKnown == 0 && !s.nearKnown(s.tokText(i))) && s.flags(i)&(fCountry|fState) == 0 {
		s.emitToks(i, i, TypeLocation, "town-after-place")
		return i + 1
	}
	// "Guadalajara, Mexico": a country after a place and a comma (in
	// recall-first mode after any part of an address, or a town read as
	// a name: "Madrid, Spain").
	if s.flags(i)&fCountry != 0 && s.capitalized(i) && s.isPunct(i-1, ',') && i >= 2 && len(s.found) > 0 &&
		(s.found[len(s.found)-1].Type == TypeLocation || s.det.recall) && s.found[len(s.found)-1].End == int(s.toks[i-2].end) {
		s.emitToks(i, i, TypeLocation, "place-dict")
		return i + 1
	}
	// The town after a street address: "17 Prospect Ave, Somerville".
	if s.isPunct(i-1, ',') && i >= 2 && len(s.found) > 0 && s.found[len(s.found)-1].Type == TypeAddress &&
		s.found[len(s.found)-1].End == int(s.toks[i-2].end) && s.capitalized(i) && s.flags(i)&(keywordFlags&^(fStreet|fDirection)) == 0 {
		last := i
		for last+1 < len(s.toks) && last-i < 2 && s.capitalized(last+1) && s.toks[last+1].gap == gapSpace && s.flags(last+1)&keywordFlags == 0 {
			last++
		}
		s.emitToks(i, last, TypeLocation, "town-after-address")
		return last + 1
	}
	// Where a patient goes or comes from: "transferred to Beth Israel",
	// "follow-up at Lahey", "admitted from MGH": the capitalized words
	// after "at", or after "to"/"from" following a verb of moving, name a
	// place (people after those words have a title or a relation first).
	if n := s.placeAfterMove(i); n > i {
		return n
	}
	f := s.flags(i)
	// Multi-word cities and states: New York, Salt Lake City.
	if f&(fCityStart|fStateStart) != 0 {
		for n := 3; n >= 1; n-- {
			last := i + n
			if last >= len(s.toks) {
				continue
			}
			okRun := true
			for k := i + 1; k <= last; k++ {
				if !(s.capitalized(k) || s.equalFold(k, "of")) || s.toks[k].gap != gapSpace {
					okRun = false
					break
				}
			}
			if okRun && s.d.lookupPhrase(s.text, s.toks, i, last, &s.buf)&(fCity|fState) != 0 {
				s.emitToks(i, last, TypeLocation, "place-dict")
				return last + 1
			}
		}
	}
	if f&fTownPrefix != 0 {
		if n := s.town(i, f); n > i {
			return n
		}
	}
	if f&(fCity|fState|fCountry) != 0 {
		ctx := s.isWord(i-1) && s.flags(i-1)&fLocCtx != 0 && s.toks[i].gap == gapSpace
		// "write to Carson", "spoke with Austin": a person, not a place
		if ctx && (s.equalFold(i-1, "to") || s.equalFold(i-1, "with")) && s.isWord(i-2) && s.flags(i-2)&fVerbCtx != 0 && f&fFirst != 0 {
			ctx = false
		}
		// "report given to Florence", "call from Sydney": a frequent first
		// name after "to"/"from" is a person unless the words before say
		// that someone went or lives there
		if ctx && f&fFirstTop != 0 && f&fState == 0 && (s.equalFold(i-1, "to") || s.equalFold(i-1, "from")) && !s.movedBefore(i-1) {
			ctx = false
		}
		// "to Arthur Feil": a first and a last name, not a city
		if ctx && f&fFirst != 0 && s.capitalized(i+1) && s.toks[i+1].gap == gapSpace && s.flags(i+1)&fLast != 0 &&
			s.flags(i+1)&(fCity|fState|fStreet) == 0 {
			ctx = false
		}
		// "Copenhagen and Oslo": a place listed after a place
		if !ctx && (s.equalFold(i-1, "and") || s.equalFold(i-1, "or")) && len(s.found) > 0 {
			last := s.found[len(s.found)-1]
			ctx = last.Type == TypeLocation && i >= 2 && int(s.toks[i-2].end) == last.End
		}
		name := f&(fFirst|fLastTop) != 0
		switch {
		case s.followedByState(i) && f&fCity != 0,
			ctx && f&(fCommon|fMedStop) == 0,
			ctx && f&(fCity|fState) != 0 && s.capitalized(i) && f&(fMedStop|fDose|fUnit) == 0 && s.toks[i].gap == gapSpace &&
				!(f&fCommon != 0 && isDestinationWord(s.tokText(i))), // "from Home": a word, though a town too
			f&(fCityTop|fState) != 0 && !name && f&(fCommon|fMedStop|fMonth|fWeekday|fStreet|fOrgSuffix|fLast|fFirst|fTitle|fNameCtx|fDose|fUnit|fDirection|fLocCtx|fDateCtx|fHoliday|fCountry) == 0 && s.tokLen(i) > 3,
			f&fState != 0 && s.isPunct(i-1, ',') && s.capitalized(i-2):
			s.emitToks(i, i, TypeLocation, "place-dict")
			return i + 1
		}
	}
	if n := s.town(i, f); n > i {
		return n
	}
	if n := s.employer(i); n > i {
		return n
	}
	return s.placeBeforeState(i)
}

// moveVerbs are words after which "to" or "from" leads to a place.
var moveVerbs = []string{"transferred", "transfer", "transferring", "admitted", "admit", "discharged", "discharge",
	"sent", "returned", "returning", "came", "went", "going", "go", "moved", "brought", "transported", "taken",
	"arrived", "readmitted", "referred", "received", "receive", "dc'd", "d/c'd", "d/c", "dc", "back", "home", "rehab",
	"placement", "transfered", "tranferred", "trans", "tx", "txd", "tx'd", "presented", "presents", "flown", "medflighted", "adm",
	"arrive", "arriving", "return", "rtn", "accepted", "go", "goes", "gone", "sending", "transport", "taking", "bring", "bringing", "coming",
	"visit", "visits", "evaluated", "seen", "screened", "arrival", "medflight", "enroute", "come", "admission", "readmission", "flight"}

// residenceWords, with moveVerbs, say that "to"/"from" after them leads to
// a place: "is from Florence", "moved to Sydney".
var residenceWords = []string{"is", "was", "are", "originally", "live", "lives", "lived", "living", "moved", "born",
	"relocated", "visiting", "visited", "trip", "travel", "traveled", "travelled", "flew", "drove", "arrived",
	"came", "comes", "immigrated", "emigrated", "flight", "flights", "way", "route", "drive", "driving", "family",
	"pt", "patient", "he", "she", "they", "who", "recently", "here"}

// movedBefore reports whether the word before token j (a "to" or "from")
// is a verb of moving or living somewhere.
func (s *Scanner) movedBefore(j int) bool {
	k := j - 1
	if !s.isWord(k) {
		return false
	}
	w := s.tokText(k)
	if s.toks[k].cls&cPlain != 0 { // the last word of a merged run
		if sp := bytes.LastIndexByte(w, ' '); sp >= 0 {
			w = w[sp+1:]
		}
	}
	return foldIn(w, moveVerbs) || foldIn(w, residenceWords)
}

// placeAfterMove detects the place after "at", or after "to"/"from"
// following a verb of moving (see place).
func (s *Scanner) placeAfterMove(i int) int {
	j := i - 1
	if !s.isWord(j) || s.toks[i].gap != gapSpace {
		return i
	}
	switch {
	case s.equalFold(j, "at"):
		// "seen at", "appt at", "rehab at": not "looked at", "yelled at"
		if k := j - 1; s.isWord(k) && s.toks[k].cls&cPlain == 0 && foldIn(s.tokText(k), atNotPlace) {
			return i
		}
	case s.equalFold(j, "to") || s.equalFold(j, "from") || s.equalFold(j, "into"):
		k := j - 1
		if s.isPunct(k, '\'') || s.isPunct(k, '/') { // d/c'd to
			return i
		}
		if !s.isWord(k) {
			return i
		}
		w := s.tokText(k)
		// tx'd, d/c'd: the verb is the tokens written together before "to"
		for b := k; b > 0 && b > k-4 && s.adjacent(b) && (s.isPunct(b-1, '\'') || s.isPunct(b-1, '/') || s.isWord(b-1)); b-- {
			w = s.text[s.toks[b-1].start:s.toks[k].end]
		}
		if s.toks[k].cls&cPlain != 0 { // the last word of a merged run
			if sp := bytes.LastIndexByte(w, ' '); sp >= 0 {
				w = w[sp+1:]
			}
		}
		if !foldIn(w, moveVerbs) {
			return i
		}
	default:
		return i
	}
	f := s.flags(i)
	caps := s.allCaps(i) && s.mostlyCaps()
	if s.allCaps(i) && !caps {
		// an acronym (MGH, BIDMC, GH) in text that is not written in capitals
		if n := s.tokLen(i); n < 2 || n > 6 || f&^(fLooked|fFirst|fLast) != 0 || s.toks[i].cls&cDigit != 0 {
			return i
		}
		s.emitToks(i, i, TypeLocation, "place-after-move")
		return i + 1
	}
	if s.caseless() || !s.capitalized(i) && !caps {
		if !s.det.recall {
			return i
		}
		return s.caselessPlace(i)
	}
	// Quartermain 3: a word no list knows, after a verb of moving, and
	// the ward's number
	ward := i+1 < len(s.toks) && s.toks[i+1].cls == cDigit && s.tokLen(i+1) <= 2 && s.toks[i+1].gap == gapSpace
	if s.capitalized(i) && f&(fFirst|fLast|fCity|keywordFlags|fMedStop) == 0 && (f&fKnown == 0 || ward && f&fCommon == 0) && s.tokLen(i) > 2 &&
		!hasSuffixFold(s.tokText(i), serviceSuffixes) && !hasSuffixFold(s.tokText(i), medicalSuffixes) && (f&fKnown != 0 || !s.nearKnown(s.tokText(i))) {
		last := i
		for k := i + 1; k < len(s.toks) && k-i < 4 && s.toks[k].gap == gapSpace; k++ {
			if s.lowerWord(k) && isParticle(s.tokText(k)) && s.isWord(k+1) && s.capitalized(k+1) {
				continue // Clinique des Alpes
			}
			if !s.capitalized(k) || s.allCaps(k) || s.flags(k)&(keywordFlags|fMonth|fWeekday) != 0 {
				break
			}
			last = k
		}
		s.emitToks(i, last, TypeLocation, "place-after-move")
		return last + 1
	}
	// only words that may name a place or nothing else we know
	const placeish = fFirst | fFirstTop | fLast | fLastTop | fCity | fCityTop | fCityStart | fState | fStateStart | fCountry | fTownPrefix | fCommonName | fLooked
	if !s.capitalized(i) && !caps || f&^placeish != 0 || s.isPunct(i+1, '\'') {
		return i
	}
	// A hospital department is no place of a person ("sent to Radiology",
	// "returned from Dialysis"): the first word must be in the name or
	// place lists, or end like a town, and not like a medical service.
	w := s.tokText(i)
	if f&^(fLooked|fCommonName) == 0 && !hasSuffixFold(w, townSuffixes) || hasSuffixFold(w, serviceSuffixes) {
		return i
	}
	last := i
	for s.isPunct(last+1, '-') && s.adjacent(last+1) && s.adjacent(last+2) && (s.capitalized(last+2) || s.allCaps(last+2)) {
		last += 2 // Dana-Farber
	}
	for last+1 < len(s.toks) && last-i < 3 && s.toks[last+1].gap == gapSpace &&
		(s.capitalized(last+1) || s.allCaps(last+1)) && s.flags(last+1)&(fMonth|fWeekday|fTitle|fNameCtx) == 0 &&
		!(caps && s.flags(last+1)&^(placeish|fOrgSuffix) != 0) {
		last++
	}
	s.emitToks(i, last, TypeLocation, "place-after-move")
	return last + 1
}

// saintPlace detects a place named after a saint: "St. Mary's", "ST.
// AGNES", "Saint Joseph Memorial". Token i is St or Saint; after a
// number or a street's name St is a street ("34 St", "Main St").
func (s *Scanner) saintPlace(i int) int {
	if i > 0 && (s.toks[i-1].cls&cDigit != 0 || s.isWord(i-1) && s.toks[i-1].cls&cPlain == 0 && (s.capitalized(i-1) && !s.caseless() || s.allCaps(i-1) && s.flags(i-1)&fKnown == 0) &&
		!foldIn(s.tokText(i-1), functionWords) && !foldIn(s.tokText(i-1), moveVerbs)) {
		return i
	}
	j := i + 1
	if s.isPunct(j, '.') && s.adjacent(j) {
		j++
	}
	if j >= len(s.toks) || s.toks[j].gap != gapSpace || !s.isWord(j) || s.toks[j].cls&(cDigit|cPlain) != 0 || s.tokLen(j) < 2 {
		return i
	}
	f := s.flags(j)
	// ST is also sinus tachycardia ("SR TO ST. HIGH PRESSURES"): the
	// saint's name must be a listed name or a word no list knows.
	if foldIn(s.tokText(j), functionWords) || f&(fMonth|fWeekday|fDose|fNameSuffix|fStreet|keywordFlags) != 0 ||
		!(s.capitalized(j) || s.caseless()) || f&fKnown != 0 && f&fFirstTop == 0 && !(s.isWord(j+1) && s.flags(j+1)&(fPlaceKind|fOrgSuffix) != 0) || f&fKnown == 0 && s.nearKnown(s.tokText(j)) {
		return i
	}
	last := j
	if s.isPunct(last+1, '\'') && s.adjacent(last+1) && s.equalFold(last+2, "s") {
		last += 2 // St. Mary's
	}
	for k := last + 1; k < len(s.toks) && s.toks[k].gap == gapSpace && s.isWord(k) && (s.equalFold(k, "memorial") || s.equalFold(k, "regional")); k++ {
		last = k
	}
	s.emitToks(i, last, TypeLocation, "place-saint")
	return last + 1
}

// residence detects the town where someone lives or comes from, after
// "in" or "of" (recall-first): "lives in catonsville", "LIVES WITH SON
// AND FAMILY IN ROCKVILLE", "daughter Grace of Reisterstown". Token j is the
// word after the preposition: a word the allowlist does not know, or a
// listed town; capitalized in mixed case.
func (s *Scanner) residence(j int) int {
	if !s.det.recall || j < 2 {
		return j
	}
	prep := j - 1
	if s.equalFold(prep, "of") {
		// after a name just found: "Neil Meitz of Towson"
		n := len(s.found)
		if n == 0 || s.found[n-1].Type != TypeName || s.found[n-1].End != int(s.toks[prep-1].end) {
			return j
		}
	} else if !s.livesBefore(prep) {
		return j
	}
	ok := func(k int) bool {
		if !s.isWord(k) || s.toks[k].cls&(cDigit|cPlain) != 0 || s.tokLen(k) < 3 {
			return false
		}
		f := s.flags(k)
		if f&(keywordFlags|fMedStop|fNameSuffix|fStateAbbr|fState|fCountry) != 0 || !s.caseless() && !s.capitalized(k) {
			return false
		}
		if f&fCity != 0 && f&fCommon == 0 {
			return true
		}
		w := s.tokText(k)
		return f&fKnown == 0 && !hasSuffixFold(w, medicalSuffixes) && !s.nearKnown(w)
	}
	if !ok(j) {
		return j
	}
	last := j
	for k := j + 1; k < len(s.toks) && k-j < 3 && s.toks[k].gap == gapSpace && (ok(k) && s.lowerWord(k) == s.lowerWord(j) ||
		!s.caseless() && s.capitalized(k) && !s.allCaps(k) && s.flags(k)&(keywordFlags&^fStreet) == 0); k++ {
		last = k // Daytona Beach
	}
	s.emitToks(j, last, TypeLocation, "place-residence")
	return last + 1
}

// livesBefore reports a word of living somewhere within the six words
// before token prep (an "in"): "LIVES WITH SON AND FAMILY IN".
func (s *Scanner) livesBefore(prep int) bool {
	for k, n := prep-1, 0; k >= 0 && n < 6; k-- {
		if s.toks[k+1].gap == gapNewline || s.isPunct(k, '.') || s.isPunct(k, ';') {
			return false
		}
		if !s.isWord(k) {
			continue
		}
		n++
		w := s.tokText(k)
		if s.toks[k].cls&cPlain != 0 {
			if foldContains(w, livesWords) {
				return true
			}
			continue
		}
		if foldIn(w, livesWords) {
			return true
		}
	}
	return false
}

var determiners = []string{"the", "a", "an", "his", "her", "their", "this", "that", "our", "my", "your"}

var livesWords = []string{"lives", "live", "living", "lived", "resides", "reside", "residing", "resident", "moved", "relocated",
	"nearby", "located", "shelter", "grew", "raised", "vacation", "vacationing", "visiting", "stays", "staying"}

// placeBeforeED detects the hospital named by an acronym before its
// emergency department: "GH EW", "GH ER" (recall-first). Token i is the
// acronym.
func (s *Scanner) placeBeforeED(i int) int {
	k := i + 1
	if !s.det.recall || k >= len(s.toks) || s.toks[k].gap != gapSpace || !s.isWord(k) || s.tokLen(k) != 2 ||
		!(s.equalFold(k, "er") || s.equalFold(k, "ew") || s.equalFold(k, "ed")) {
		return i
	}
	f := s.flags(i)
	if n := s.tokLen(i); n < 2 || n > 5 || f&(fKnown|fMedStop|keywordFlags|fStateAbbr|fNameSuffix) != 0 {
		return i
	}
	s.emitToks(i, i, TypeLocation, "place-ed")
	return i + 1
}

// ward detects a ward named by a word no list knows and its number, in
// any position: "ON QUARTERMAIN 2 WITH", "Per Fenwick 3 RN" (recall-first).
// Token i is the word, the number after it has one digit and no unit
// follows.
func (s *Scanner) ward(i int) int {
	f := s.flags(i)
	w := s.tokText(i)
	if f&(fKnown|fMedStop|keywordFlags|fFirst|fLast|fNameSuffix) != 0 || s.toks[i].cls&cDigit != 0 || hasSuffixFold(w, medicalSuffixes) || hasSuffixFold(w, serviceSuffixes) {
		return i
	}
	if e := int(s.toks[i].end); e >= len(s.text) || s.text[e] != ' ' {
		return i // NSTEMI,2 stents
	}
	if k := i + 2; k < len(s.toks) && s.isWord(k) && s.toks[k].gap <= gapSpace && (s.flags(k)&fDose != 0 || s.isPunct(k, '%')) ||
		k < len(s.toks) && s.adjacent(k) && (s.isPunct(k, '.') || s.isPunct(k, '-') || s.isPunct(k, '/') || s.isPunct(k, ',') || s.toks[k].cls&cLower != 0) {
		return i // LOPRESSOR 2 MG, values 2.5MG, 2-4, 2/3
	}
	if s.nearKnown(w) {
		return i
	}
	s.emitToks(i, i, TypeLocation, "place-ward")
	return i + 1
}

// caselessPlace is placeAfterMove in text written in one case, where
// capitals say nothing: "TRANSFERRED TO QUARTERMAIN 2", "REFERRED TO GH",
// "taken to kernan hosp". The words after the verb of moving count when
// the allowlist does not know them (GH, QUARTERMAIN, KERNAN), or they are
// listed places (a ward's number after them is left, as annotators do).
func (s *Scanner) caselessPlace(i int) int {
	ok := func(k int) bool {
		if !s.isWord(k) || s.toks[k].cls&(cDigit|cPlain) != 0 {
			return false
		}
		f := s.flags(k)
		w := s.tokText(k)
		if f&(keywordFlags|fMedStop|fNameSuffix|fStateAbbr|fPlaceKind|fState) != 0 && (f&fCity == 0 || f&fMedStop != 0) {
			return false
		}
		if f&(fCity|fCountry) != 0 && f&(fKnown|fState) == 0 {
			return true
		}
		return f&fKnown == 0 && len(w) >= 2 && !hasSuffixFold(w, medicalSuffixes) && !hasSuffixFold(w, serviceSuffixes) && !s.nearKnown(w)
	}
	if s.equalFold(i, "the") && i+1 < len(s.toks) && s.toks[i+1].gap == gapSpace && ok(i+1) && s.tokLen(i+1) <= 5 {
		i++ // ADM TO THE GH
	}
	if !ok(i) {
		return i
	}
	last := i
	for k := i + 1; k < len(s.toks) && k-i < 3 && s.toks[k].gap == gapSpace && ok(k); k++ {
		last = k
	}
	s.emitToks(i, last, TypeLocation, "place-after-move")
	return last + 1
}

// medicalSuffixes end medical words that are not in the word lists
// (Telemetry, Hemodialysis, Cholecystectomy): not names.
var medicalSuffixes = []string{"ology", "ysis", "etry", "iatry", "scopy", "graphy", "ectomy", "otomy", "ostomy", "plasty", "itis", "osis", "emia", "algia"}

// isDestinationWord reports everyday places a patient goes to or comes
// from that are also the names of small towns (Home, PA).
func isDestinationWord(w []byte) bool { return foldIn(w, destinationWords) }

var destinationWords = []string{"home", "work", "school", "church", "bed", "floor", "bath", "shower", "dinner", "lunch",
	"breakfast", "surgery", "dialysis"}

// atNotPlace are words after which "at" points at a person or thing, not a
// place: "yelled at", "looked at".
var atNotPlace = []string{"look", "looked", "looking", "looks", "yell", "yelled", "yelling", "yells", "smiled", "smiling",
	"smiles", "stared", "staring", "glared", "laughed", "laughing", "pointed", "pointing", "waved", "waving", "swung",
	"swinging", "swore", "cursing", "cursed", "angry", "mad", "upset", "directed", "aimed", "hit", "lunged", "spat"}

// foldEq reports whether w is v (lower-case ASCII), ignoring ASCII case,
// without allocating.
func foldEq(w []byte, v string) bool {
	if len(w) != len(v) {
		return false
	}
	for i := range w {
		if lowerTab[w[i]] != v[i] {
			return false
		}
	}
	return true
}

func foldIn(w []byte, list []string) bool {
	for _, v := range list {
		if foldEq(w, v) {
			return true
		}
	}
	return false
}

// serviceSuffixes end the names of hospital services and departments.
var serviceSuffixes = []string{"ology", "ysis", "etry", "iatry", "scopy", "ics", "apy", "ery", "ine", "ia"}

// hasSuffixFold reports whether w ends, case-insensitively, with one of
// sufs and has at least two more letters.
func hasSuffixFold(w []byte, sufs []string) bool {
	for _, suf := range sufs {
		if n := len(w) - len(suf); n >= 2 && foldEq(w[n:], suf) {
			return true
		}
	}
	return false
}

// townSuffixes end many town names (Everardofield, Tyreeton, Jaylonburgh).
var townSuffixes = []string{"ville", "ton", "town", "field", "burgh", "burg", "borough", "bury", "port", "mouth", "haven",
	"fort", "berg", "stad", "furt", "chester", "shire", "ford", "side", "view", "land", "dale", "wood", "brook", "stead", "ham", "wick", "worth", "cester"}

// town detects a town missing from the lists after a place word ("in",
// "from", "lives in"): a town prefix and a capitalized word (East Jenna),
// or one capitalized word with a town ending (Everardofield).
func (s *Scanner) town(i int, f wflag) int {
	if !(s.isWord(i-1) && s.flags(i-1)&fLocCtx != 0 && s.toks[i].gap == gapSpace) {
		return i
	}
	if f&fTownPrefix != 0 && s.capitalized(i+1) && s.toks[i+1].gap == gapSpace && s.flags(i+1)&(keywordFlags&^fStreet) == 0 {
		s.emitToks(i, i+1, TypeLocation, "town")
		return i + 2
	}
	last := i
	if s.isPunct(i+1, '-') && s.adjacent(i+1) && s.adjacent(i+2) && s.capitalized(i+2) { // Kub-Gleichnerworth
		last = i + 2
	}
	if f&(fCommon|keywordFlags|fFirst) != 0 && last == i || !s.capitalized(i) || s.tokLen(last) < 6 {
		return i
	}
	w := s.tokText(last)
	for _, suf := range townSuffixes {
		if len(w) > len(suf)+2 && string(w[len(w)-len(suf):]) == suf {
			s.emitToks(i, last, TypeLocation, "town")
			return last + 1
		}
	}
	return i
}

// capsOrg reports whether tokens i..suffix-1, in capitals, may name the
// organisation that suffix ends: capitals say nothing there, so the
// suffix must be a kind of place (not CO, NURSING, HEALTH) and the words
// before it no function or everyday clinical words ("A:TIRED OF BEING IN
// HOSPITAL", "HEMODYNAMICS FICK CO").
func (s *Scanner) capsOrg(i, suffix int) bool {
	if s.flags(suffix)&fPlaceKind == 0 && !s.equalFold(suffix, "memorial") && !s.equalFold(suffix, "regional") {
		return false
	}
	for k := i; k < suffix; k++ {
		if !s.isWord(k) {
			continue
		}
		if s.tokLen(k) < 2 || !s.placeWord(s.tokText(k), s.flags(k)) {
			return false
		}
	}
	return true
}

// placeWord reports whether word w (flags f) may be part of a place's
// name before its kind ("kernan hosp", "UNION HOSPITAL"): anything but
// function words and the words that say which hospital without naming
// it (outside, previous, psych).
func (s *Scanner) placeWord(w []byte, f wflag) bool {
	return len(w) >= 2 && !foldIn(w, functionWords) && !foldIn(w, notPlaceWords) && f&(fNameSuffix|fMonth|fWeekday|fDose|fNameCtx|fTitle) == 0
}

var notPlaceWords = []string{"the", "this", "that", "his", "her", "their", "its", "our", "my", "your", "outside", "previous", "prior",
	"other", "another", "local", "nearby", "different", "same", "current", "new", "old", "home", "psych", "psychiatric", "rehab", "nursing",
	"acute", "chronic", "care", "long", "term", "day", "any", "some", "each", "which", "what", "into", "out", "back", "admitted", "transferred",
	"sent", "went", "go", "going", "return", "returned", "discharged", "d/c", "dc", "left", "leave", "remain", "remains", "stay", "stayed",
	"while", "during", "since", "before", "after", "then", "now", "still", "being", "been", "be", "in-house", "house", "inpatient", "outpatient",
	"level", "floor", "unit", "ward", "bed", "teaching", "referring", "receiving", "accepting", "transferring", "sending", "osh", "area", "city", "county", "state"}

// placeBeforeKind detects the place before a kind of place in text not
// written in mixed case: "taken to kernan hosp", "UNION HOSPITAL",
// "franklin square hosp", "to sacred heart hospital". Token c is the kind
// (hospital, hosp, rehab); the words before it count unless they are
// function words or say which place without naming it.
func (s *Scanner) placeBeforeKind(c int) int {
	if c == 0 || s.capitalized(c) && !s.allCaps(c) && !s.mostlyCaps() {
		return c // mixed case: place() reads the capitals
	}
	// In mixed case, a lower-case word before the kind must be one the
	// allowlist does not know ("the basic hospital", "cardiac rehab");
	// before "rehab", which mostly names a therapy, always.
	strict := !s.caseless() || s.equalFold(c, "rehab") || s.equalFold(c, "rehabilitation") || !s.det.recall
	// "presented to holy cross hospital": after to, from or at, the
	// words before the kind name the place whatever they are
	if strict && s.det.recall && !s.equalFold(c, "rehab") && !s.equalFold(c, "rehabilitation") {
		for k := c - 1; k >= 0 && k >= c-4; k-- {
			if s.isWord(k) && s.toks[k].cls&cPlain == 0 && (s.equalFold(k, "to") || s.equalFold(k, "from") || s.equalFold(k, "at")) {
				strict = k == c-1
				break
			}
			if !s.isWord(k) && !s.isPunct(k, '-') || s.toks[k].cls&cPlain != 0 {
				break
			}
		}
	}
	ok := func(w []byte, f wflag, titled bool) bool {
		return s.placeWord(w, f) && f&fPlaceKind == 0 && (!strict || titled || f&fKnown == 0 && !s.nearKnown(w) || f&(fCity|fTownPrefix) != 0)
	}
	start, end := -1, -1
	words := 0
	for k := c - 1; k >= 0 && words < 3; k-- {
		t := s.toks[k]
		if t.cls&cPlain != 0 {
			w := s.text[t.start:t.end]
			e := len(w)
			for words < 3 {
				sp := bytes.LastIndexByte(w[:e], ' ') + 1
				if !ok(w[sp:e], s.d.lookup(w[sp:e]), false) {
					break
				}
				start = int(t.start) + sp
				if end < 0 {
					end = int(t.start) + e
				}
				words++
				if sp == 0 {
					break
				}
				e = sp - 1
			}
			break
		}
		if s.isPunct(k, '-') && s.adjacent(k) && s.adjacent(k+1) && words > 0 { // kessler-adventist
			continue
		}
		if !s.isWord(k) || t.cls&cDigit != 0 || !ok(s.tokText(k), s.flags(k), s.capitalized(k) && !s.caseless()) {
			break
		}
		start = int(t.start)
		if end < 0 {
			end = int(t.end)
		}
		words++
		if t.gap == gapNewline {
			break
		}
	}
	if words == 0 {
		return c
	}
	// "back to the basic hospital": after a determiner, words the
	// allowlist knows describe the hospital rather than name it.
	if !strict {
		k := s.tokenAt(0, start) - 1
		if k >= 0 && s.isWord(k) && foldIn(s.tokText(k), determiners) {
			for t := s.tokenAt(0, start); t < c; t++ {
				if s.isWord(t) && s.flags(t)&fKnown != 0 {
					return c
				}
			}
		}
	}
	if s.equalFold(c, "memorial") || s.equalFold(c, "regional") {
		end = int(s.toks[c].end) // LAUREL REGIONAL: part of the name
	}
	s.emit(start, end, TypeLocation, "place-kind")
	return c + 1
}

// employer detects the organisation after "works at", "employed by":
// capitalized words joined by ",", "and", "&" or " - ".
func (s *Scanner) employer(i int) int {
	j := i - 1
	if !(s.equalFold(j, "at") || s.equalFold(j, "by") || s.equalFold(j, "for")) || !s.isWord(j-1) {
		return i
	}
	switch w := s.tokText(j - 1); string(w) {
	case "works", "work", "worked", "working", "employed", "employee", "job", "employer", "Works":
	default:
		return i
	}
	last := i
	for k := i + 1; k < len(s.toks) && k <= i+8; {
		if s.toks[k].gap == gapNewline {
			break
		}
		if s.capitalized(k) {
			last = k
			k++
			continue
		}
		if (s.isPunct(k, ',') || s.isPunct(k, '-') || s.isPunct(k, '&') || s.equalFold(k, "and")) && s.capitalized(k+1) {
			k++
			continue
		}
		if s.isPunct(k, ',') && s.equalFold(k+1, "and") && s.capitalized(k+2) {
			k += 2
			continue
		}
		break
	}
	s.emitToks(i, last, TypeLocation, "organisation")
	return last + 1
}

// followedByState reports whether ", ST" or ", State" follows token i.
func (s *Scanner) followedByState(i int) bool {
	if !s.isPunct(i+1, ',') {
		return false
	}
	j := i + 2
	if !s.isWord(j) {
		return false
	}
	f := s.flags(j)
	return f&fStateAbbr != 0 && s.allCaps(j) && s.tokLen(j) == 2 || f&(fState|fStateStart) != 0 && s.capitalized(j)
}

// placeBeforeState detects a town not in the lists by its position:
// capitalized words before ", ST 12345" or ", ST" at a line end.
func (s *Scanner) placeBeforeState(i int) int {
	if i < s.noStateUntil {
		return i
	}
	last := i
	for last+1 < len(s.toks) && last-i < 4 {
		if s.capitalized(last+1) && s.toks[last+1].gap == gapSpace {
			last++
			continue
		}
		if s.isPunct(last+1, '-') && s.adjacent(last+1) && s.adjacent(last+2) && s.capitalized(last+2) {
			last += 2
			continue
		}
		break
	}
	if !s.capitalized(i) || !s.followedByState(last) {
		if last-i < 4 { // the shorter runs inside it end at the same place
			s.noStateUntil = last + 1
		}
		return i
	}
	st := last + 2
	zipNext := st+1 < len(s.toks) && s.toks[st+1].cls&cDigit != 0 && s.toks[st+1].cls&(cUpper|cLower) == 0 && s.tokLen(st+1) == 5
	if st < len(s.toks) && s.capitalized(st) && s.flags(st)&fStateStart != 0 && st+1 < len(s.toks) && s.capitalized(st+1) {
		st++ // North Carolina
	}
	endNext := st+1 >= len(s.toks) || s.toks[st+1].gap == gapNewline || s.isPunct(st+1, '.') || s.isPunct(st+1, ';') || s.isPunct(st+1, ')')
	fullState := s.capitalized(last + 2)
	if !zipNext && !endNext && !fullState && s.flags(i)&fCity == 0 {
		return i
	}
	// Do not swallow a name or street before the town.
	first := i
	for first < last && s.flags(first)&(fStreet|fUnit) != 0 && s.flags(first)&fTownPrefix == 0 {
		first++
	}
	s.emitToks(first, last, TypeLocation, "place-state")
	return last + 1
}

// stateAbbr detects "MA" in "Boston, MA" or "MA 02114".
func (s *Scanner) stateAbbr(i int) int {
	zipNext := i+1 < len(s.toks) && s.toks[i+1].cls&cDigit != 0 && s.toks[i+1].cls&(cUpper|cLower) == 0 &&
		(s.tokLen(i+1) == 5) && s.toks[i+1].gap == gapSpace
	afterComma := s.isPunct(i-1, ',') && (s.capitalized(i-2) || s.allCaps(i-2)) && !s.isPunct(i+1, '\'') && !s.isPunct(i+1, '/') &&
		(s.flags(i-2)&fCity != 0 || s.flags(i-2)&fKnown == 0)
	if zipNext || afterComma {
		s.emitToks(i, i, TypeLocation, "state")
		return i + 1
	}
	return i
}

// textDate detects dates that start with a month: March 14, 2005; Mar. 14th;
// March 2005; March of 2005.
func (s *Scanner) textDate(i int) int {
	f := s.flags(i)
	lowerMonth := !s.capitalized(i) && !s.allCaps(i)
	j := i + 1
	if s.isPunct(j, '.') && s.adjacent(j) && f&fMonthAbbr != 0 {
		j++
	}
	if s.isPunct(j, '-') || s.isPunct(j, '/') {
		j++
	}
	if j >= len(s.toks) || s.toks[j].gap == gapNewline {
		return i
	}
	day := s.dayNumber(j)
	if day {
		last := j
		k := j + 1
		if s.isPunct(k, ',') || s.isPunct(k, '-') || s.isPunct(k, '/') {
			k++
		}
		if s.yearNumber(k) {
			last = k
		} else if lowerMonth || s.equalFold(i, "may") && !s.dayNumber(j) {
			return i
		}
		if lowerMonth && last == j {
			return i
		}
		s.emitToks(i, last, TypeDate, "date-text")
		return last + 1
	}
	if s.equalFold(j, "of") {
		j++
	}
	if s.isPunct(j, ',') {
		j++
	}
	if s.yearNumber(j) && s.tokLen(j) == 4 {
		s.emitToks(i, j, TypeDate, "date-text")
		return j + 1
	}
	// A month written out alone after "since", "in", "until", "by",
	// "from", "last", "next", "of": "since January" (not May, a verb too).
	if f&fMonth != 0 && s.capitalized(i) && !s.equalFold(i, "may") && s.toks[i].gap == gapSpace {
		for _, w := range [...]string{"since", "in", "until", "till", "by", "from", "last", "next", "of", "early", "mid", "late"} {
			if s.equalFold(i-1, w) {
				s.emitToks(i, i, TypeDate, "date-month")
				return i + 1
			}
		}
	}
	return i + 1
}

// dayNumber: 1-31, optionally with st/nd/rd/th.
func (s *Scanner) dayNumber(i int) bool {
	if i >= len(s.toks) || s.toks[i].cls&cDigit == 0 {
		return false
	}
	b := s.tokText(i)
	n, d := 0, 0
	for d < len(b) && b[d] >= '0' && b[d] <= '9' {
		n = n*10 + int(b[d]-'0')
		d++
	}
	if d == 0 || d > 2 || n < 1 || n > 31 {
		return false
	}
	if suf := b[d:]; len(suf) > 0 {
		if len(suf) != 2 {
			return false
		}
		a, b := lower(suf[0]), lower(suf[1])
		if !(a == 's' && b == 't' || a == 'n' && b == 'd' || a == 'r' && b == 'd' || a == 't' && b == 'h') {
			return false
		}
	}
	// "March 3 days" is not a date.
	if s.isWord(i+1) && s.flags(i+1)&fDose != 0 && s.toks[i+1].gap == gapSpace {
		return false
	}
	return true
}

// yearNumber: four digits 1800-2199, two digits, or '05.
func (s *Scanner) yearNumber(i int) bool {
	if i >= len(s.toks) {
		return false
	}
	if s.isPunct(i, '\'') && i+1 < len(s.toks) && s.adjacent(i+1) {
		i++
		return s.toks[i].cls == cDigit && s.tokLen(i) == 2
	}
	if s.toks[i].cls != cDigit {
		return false
	}
	b := s.tokText(i)
	if len(b) == 4 {
		y := atoi(b)
		return y >= 1800 && y <= 2199
	}
	return false
}

func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' || n > 1e8 {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// url detects http(s)://, ftp:// and www. addresses.
func (s *Scanner) url(i int) int {
	scheme := s.equalFold(i, "http") || s.equalFold(i, "https") || s.equalFold(i, "ftp")
	if scheme {
		if !(s.isPunct(i+1, ':') && s.isPunct(i+2, '/') && s.isPunct(i+3, '/') && s.adjacent(i+1)) {
			return i
		}
	} else if !(s.equalFold(i, "www") && s.isPunct(i+1, '.') && s.adjacent(i+1)) {
		return i
	}
	start := int(s.toks[i].start)
	end := start
	for end < len(s.text) {
		c := s.text[end]
		if c <= ' ' || c == '"' || c == '<' || c == '>' || c == '`' || c == '\'' && end > start {
			break
		}
		end++
	}
	for end > start && (s.text[end-1] == '.' || s.text[end-1] == ',' || s.text[end-1] == ';' || s.text[end-1] == ':' ||
		s.text[end-1] == ')' || s.text[end-1] == ']' || s.text[end-1] == '!' || s.text[end-1] == '?') {
		end--
	}
	s.emit(start, end, TypeURL, "url")
	return s.tokenAt(i, end)
}

func isEmailLocal(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isDomain(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-'
}

// punct handles detectors that start at punctuation.
func (s *Scanner) punct(i int) int {
	t := s.toks[i]
	switch s.text[t.start] {
	case '@':
		return s.email(i)
	case '(', '+':
		if i+1 < len(s.toks) && s.toks[i+1].cls == cDigit && s.adjacent(i+1) {
			if end, ok := s.matchPhone(int(t.start)); ok {
				s.emitPhone(i, int(t.start), end)
				return s.tokenAt(i, end)
			}
			// "(02) 9876 5432" after a phone word
			if s.text[t.start] == '(' {
				if end, ok := s.matchGroupedPhone(int(t.start)); ok && s.contextFlags(i)&(fPhoneCtx|fFaxCtx) != 0 {
					s.emitPhone(i, int(t.start), end)
					return s.tokenAt(i, end)
				}
			}
		}
	}
	return i + 1
}

func (s *Scanner) email(i int) int {
	at := int(s.toks[i].start)
	l := at
	for l > 0 && isEmailLocal(s.text[l-1]) {
		l--
	}
	for l < at && s.text[l] == '.' {
		l++
	}
	r := at + 1
	dot := -1
	for r < len(s.text) && isDomain(s.text[r]) {
		if s.text[r] == '.' {
			dot = r
		}
		r++
	}
	for r > at+1 && (s.text[r-1] == '.' || s.text[r-1] == '-') {
		r--
		if dot >= r {
			dot = -1
			for k := at + 1; k < r; k++ {
				if s.text[k] == '.' {
					dot = k
				}
			}
		}
	}
	if l == at || dot < 0 || r-dot < 3 {
		return i + 1
	}
	for k := dot + 1; k < r; k++ {
		if c := s.text[k] | 0x20; c < 'a' || c > 'z' {
			return i + 1
		}
	}
	s.emit(l, r, TypeEmail, "email")
	return s.tokenAt(i, r)
}

// poBox detects "PO Box 123" and "P.O. Box 123".
func (s *Scanner) poBox(i int) int {
	if s.tokLen(i) > 2 || !(s.equalFold(i, "po") || s.equalFold(i, "p")) {
		return i
	}
	j := i + 1
	if s.isPunct(j, '.') {
		j++
	}
	if s.equalFold(j, "o") {
		j++
		if s.isPunct(j, '.') {
			j++
		}
	}
	if !s.equalFold(j, "box") || j+1 >= len(s.toks) || s.toks[j+1].cls&cDigit == 0 {
		return i
	}
	s.emitToks(i, j+1, TypeAddress, "po-box")
	return j + 2
}

// tlds are the top-level domains a bare domain name must end in.
var tlds = map[string]bool{"com": true, "org": true, "net": true, "edu": true, "gov": true, "mil": true, "io": true,
	"info": true, "biz": true, "co": true, "us": true, "uk": true, "ca": true, "de": true, "fr": true, "au": true,
	"me": true, "app": true, "dev": true, "health": true, "ly": true, "nl": true, "se": true, "es": true, "it": true}

// domain detects a bare domain name (smith.com, portal.example-health.org/x)
// at the '.' token i.
func (s *Scanner) domain(i int) int {
	// the TLD is the last label
	j := i
	for j+2 < len(s.toks) && s.isPunct(j+2, '.') && s.adjacent(j+2) && s.adjacent(j+3) && j+3 < len(s.toks) && s.toks[j+3].cls&cPunct == 0 {
		j += 2
	}
	tld := s.tokText(j + 1)
	if len(tld) > 6 || !tlds[string(tld)] || s.alnumAt(int(s.toks[j+1].end)) {
		return i
	}
	if e := int(s.toks[j+1].end); e < len(s.text) && s.text[e] == '@' {
		return i
	}
	// back over the other labels
	k := i - 1
	for k >= 2 && (s.isPunct(k-1, '.') || s.isPunct(k-1, '-')) && s.adjacent(k) && s.adjacent(k-1) && s.toks[k-2].cls&cPunct == 0 {
		k -= 2
	}
	if s.toks[k].cls&cPunct != 0 || k > 0 && s.adjacent(k) && (s.isPunct(k-1, '@') || s.isPunct(k-1, '/') || s.isPunct(k-1, '.')) {
		return i
	}
	start, end := int(s.toks[k].start), int(s.toks[j+1].end)
	if s.toks[k].cls&cPlain != 0 { // "visit smith" merged: the label is the last word
		for start < end && bytes.IndexByte(s.text[start:s.toks[k].end], ' ') >= 0 {
			start += bytes.IndexByte(s.text[start:s.toks[k].end], ' ') + 1
		}
	}
	if end < len(s.text) && s.text[end] == '/' {
		for end < len(s.text) && s.text[end] > ' ' && s.text[end] != '"' && s.text[end] != '<' && s.text[end] != '>' {
			end++
		}
		for end > start && strings.IndexByte(".,;:)]!?", s.text[end-1]) >= 0 {
			end--
		}
	}
	s.emit(start, end, TypeURL, "domain")
	return s.tokenAt(i, end)
}

// allCapsName detects a name written in one case, "MARY O'TOOLE",
// "LEONA LABOWICH", "patty hoeller": a census first name that is no word
// followed by a surname; in text written in one case, where capitals say
// nothing, the surname must be one the allowlist does not know.
func (s *Scanner) allCapsName(i int) int {
	f := s.flags(i)
	// martin carey: in one case, a census first name that is also a word
	// counts before a surname the allowlist does not know.
	knownFirst := f&fKnown != 0 && s.caseless() && s.det.recall
	if f&fFirstTop == 0 || f&(fCommonName|keywordFlags|fStateAbbr) != 0 || f&fKnown != 0 && !knownFirst || s.tokLen(i) < 3 {
		return i
	}
	j := i + 1
	if j < len(s.toks) && s.toks[j].gap == gapSpace && s.flags(j)&fFirst != 0 && s.flags(j)&keywordFlags == 0 && s.caseless() &&
		(s.flags(j)&fKnown == 0 || s.flags(j)&fFirstTop != 0 && s.isWord(j+1) && s.toks[j+1].gap == gapSpace && s.nameWord(j+1)) {
		j++ // KAREN ANN YANULIS
	}
	alone := func() int {
		// DAVID, suzette, helen: in one case, a census first name that is
		// no word is a name on its own (recall-first)
		if !knownFirst && s.caseless() && s.det.recall && f&fCityTop == 0 && s.tokLen(i) >= 4 {
			s.emitToks(i, i, TypeName, "name-caps")
			return i + 1
		}
		return i
	}
	if j >= len(s.toks) || s.toks[j].gap != gapSpace || s.lowerWord(j) != s.lowerWord(i) {
		return alone()
	}
	if knownFirst && !s.nameWord(j) {
		return i
	}
	last := -1
	switch {
	case s.isWord(j) && s.tokLen(j) == 1 && s.isPunct(j+1, '\'') && s.adjacent(j+1) && s.adjacent(j+2) && s.isWord(j+2):
		last = j + 2 // O'TOOLE
	case s.caseless() && s.det.recall:
		if s.nameWord(j) && s.tokLen(j) >= 3 {
			last = j
		}
	case s.allCaps(j) && s.flags(j)&fLast != 0 && s.flags(j)&(keywordFlags|fMedStop) == 0 && s.tokLen(j) >= 3:
		last = j
	}
	if last < 0 {
		return alone()
	}
	for s.isPunct(last+1, '-') && s.adjacent(last+1) && s.adjacent(last+2) && s.isWord(last+2) && s.toks[last+2].cls&cPlain == 0 {
		last += 2
	}
	s.emitToks(i, last, TypeName, "name-caps")
	return last + 1
}

// mostlyCaps reports whether the text being scanned is written in
// capitals, where capitals say nothing about names. It looks at the first
// kilobyte of the chunk.
func (s *Scanner) mostlyCaps() bool {
	if s.caps != 0 {
		return s.caps == 1
	}
	// One table look-up and one add per byte: upper-case letters count in
	// the low half of n, lower-case ones in the high half.
	var n uint64
	for _, c := range s.text[s.from:min(len(s.text), s.from+1024)] {
		n += caseCount[c]
	}
	up, low := n&0xffffffff, n>>32
	s.caps = 2
	if up > low {
		s.caps = 1
	} else if up*33 < low {
		s.caps = 3 // lower case: fewer than one letter in 34 is a capital
	}
	return s.caps == 1
}

// caseCount is 1 for A-Z and 1<<32 for a-z.
var caseCount = func() (t [256]uint64) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1
		t[c+32] = 1 << 32
	}
	return t
}()

// caseless reports whether the text being scanned is written in one
// case, capitals or lower case: then case says nothing about names.
func (s *Scanner) caseless() bool {
	s.mostlyCaps()
	return s.caps != 2
}
