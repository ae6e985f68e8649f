package mask

import (
	"bufio"
	"bytes"
	"embed"
	"math/bits"
	"strings"
	"sync"
)

//go:embed data/*.txt
var dataFS embed.FS

// wflag says what a word is known to be. A word can be several things at
// once ("may" is a month, a first name and a common word).
type wflag uint64

const (
	fFirst      wflag = 1 << iota // first name
	fFirstTop                     // among the 1,200 most frequent first names
	fLast                         // surname
	fLastTop                      // among the 10,000 most frequent surnames
	fCommon                       // ordinary English word
	fCity                         // US city
	fCityStart                    // first word of a multi-word city
	fTitle                        // Dr, Mrs ...
	fNameCtx                      // a name often follows: wife, patient, nurse ...
	fVerbCtx                      // "seen [by]", "spoke [with]" ...
	fNameSuffix                   // Jr, MD, RN after a name
	fMonth
	fMonthAbbr
	fWeekday
	fHoliday
	fDateCtx
	fStreet // street suffix
	fDirection
	fUnit
	fState
	fStateStart // first word of a two-word state
	fStateAbbr
	fCountry
	fLocCtx
	fOrgSuffix
	fPhoneCtx
	fFaxCtx
	fSSNCtx
	fMRNCtx
	fPlanCtx
	fAccountCtx
	fLicenseCtx
	fVehicleCtx
	fDeviceCtx
	fIDCtx
	fAgeCtx
	fZipCtx
	fDose
	fMedStop    // medical eponym, drug or abbreviation: not a name without a title
	fCommonName // a frequent first name that is also an everyday word (Will, Hope)
	fRelation   // a relation word (wife, son) or "name is": a name follows
	fExpiry     // exp, valid thru: a card expiry follows
	fCityTop    // one of the 3,000 US cities with the most ZIP codes
	fPersonVerb // a verb that follows a person: called, visited, states
	fTownPrefix // North, New, Port ...: the first word of many town names
	// fKnown marks the allowlist: English words (SCOWL's large list) and
	// clinical words and abbreviations. Where a name or a place may stand,
	// a word that is not known is taken for one (recall first); a known
	// word needs a name list or context.
	fKnown
	fPlaceKind  // hospital, hosp, rehab: the kind of place after its name
	fStreetType // calle, rua, rue, via: the type of a street before its name

	fLooked // the token's flags have been looked up
)

var keywordCategories = map[string]wflag{
	"title": fTitle, "namectx": fNameCtx, "verbctx": fVerbCtx, "namesuffix": fNameSuffix,
	"month": fMonth, "monthabbr": fMonthAbbr, "weekday": fWeekday, "holiday": fHoliday,
	"datectx": fDateCtx, "street": fStreet, "direction": fDirection, "unit": fUnit,
	"state": fState, "state2": fState, "stateabbr": fStateAbbr, "country": fCountry,
	"locctx": fLocCtx, "orgsuffix": fOrgSuffix, "phonectx": fPhoneCtx, "faxctx": fFaxCtx,
	"ssnctx": fSSNCtx, "mrnctx": fMRNCtx, "planctx": fPlanCtx, "accountctx": fAccountCtx,
	"licensectx": fLicenseCtx, "vehiclectx": fVehicleCtx, "devicectx": fDeviceCtx,
	"idctx": fIDCtx, "agectx": fAgeCtx, "zipctx": fZipCtx, "dosewords": fDose, "medstop": fMedStop, "commonname": fCommonName, "relation": fRelation, "expiry": fExpiry, "personverb": fPersonVerb, "townprefix": fTownPrefix, "placekind": fPlaceKind, "streettype": fStreetType,
}

// triggerFlags are the flags of lower-case words that can start a
// detection; only those words are looked up during the scan (through a
// bit filter), the rest only when a detector asks about a neighbour.
const triggerFlags = fTitle | fNameCtx | fMonth | fMonthAbbr | fNameSuffix | fPlaceKind | fStreetType

// dictionary is the loaded word lists: single words and multi-word phrases
// (cities, states), all lower case.
type dictionary struct {
	// firstList and lastList are the most frequent census names, for
	// pseudonyms.
	firstList, lastList []string
	words               map[string]wflag // while loading; then table
	phrases             map[string]wflag
	// table is the word list as an open-addressing hash table keyed by
	// wordHash, which the tokenizer computes while it reads each word: a
	// slot holds the upper 48 bits of the hash and, in the low 16 bits, an
	// index into combos (the distinct flag sets). 48 bits of hash make a
	// false match about one in 10^14 per look-up of a word not listed.
	table  []uint64
	combos []wflag
	// trigger has a bit per (first letter, second letter, length) of the
	// lower-case words with triggerFlags; other lower-case words are skipped
	// without a lookup.
	trigger bloom
	// triggerLower is trigger plus what starts a detection only in text
	// written in lower case: census first names that are no word ("patty
	// hoeller") and "in"/"of" before a town ("lives in catonsville").
	triggerLower bloom
	keepLower    bloom // keep plus the words of triggerLower
	// keep has a bit for every lower-case word a detector may look at; the
	// tokenizer merges runs of other lower-case words into one token.
	keep bloom
}

// worldCitiesTop is how many of the first world cities (1,000,000 people or
// more, and capitals; see data/world_cities.txt) count as large.
const worldCitiesTop = 913

var (
	dictOnce sync.Once
	dict     *dictionary
)

func loadDict() *dictionary {
	dictOnce.Do(func() {
		d := &dictionary{words: make(map[string]wflag, 140000), phrases: make(map[string]wflag, 8000)}
		d.loadList("data/first_names.txt", fFirst, fFirstTop, 5163) // the census names
		d.loadList("data/last_names.txt", fLast, fLastTop, 10000)
		d.loadList("data/first_names_faker.txt", fFirst, 0, 0)
		d.loadList("data/last_names_faker.txt", fLast, 0, 0)
		d.loadList("data/common_words.txt", fCommon|fKnown, 0, 0)
		d.loadList("data/known_words.txt", fKnown, 0, 0)
		d.loadList("data/clinical_words.txt", fKnown|fCommon|fMedStop, 0, 0)
		d.loadList("data/us_cities.txt", fCity, fCityTop, 3000)
		d.loadList("data/world_cities.txt", fCity, fCityTop, worldCitiesTop)
		d.loadKeywords("data/keywords.txt")
		for w, f := range d.words {
			// census first names that are no word start a name in lower
			// case ("patty hoeller")
			if f&triggerFlags != 0 {
				d.setTrigger([]byte(w))
			}
			if f&fFirstTop != 0 && f&(fKnown|fCommonName) == 0 {
				d.triggerLower.addWord([]byte(w))
			}
		}
		for _, w := range []string{"http", "https", "ftp", "www", "to", "from", "at", "into"} {
			d.setTrigger([]byte(w))
		}
		for _, w := range []string{"in", "of"} {
			d.triggerLower.addWord([]byte(w))
		}
		for w, f := range d.words {
			if f&^(fFirst|fFirstTop|fLast|fLastTop|fCommon|fKnown|fCity|fCityTop|fCityStart|fStateStart|fCommonName) != 0 || f&(fCityStart|fStateStart) != 0 {
				d.setKeep([]byte(w))
			}
		}
		for _, w := range keepWords {
			d.setKeep([]byte(w))
		}
		for w := range tlds {
			d.setKeep([]byte(w))
		}
		for i := range d.triggerLower {
			d.keepLower[i] = d.keep[i] | d.triggerLower[i]
			d.triggerLower[i] |= d.trigger[i]
		}
		d.buildTable()
		d.words = nil // the table has them
		dict = d
	})
	return dict
}

func (d *dictionary) add(w string, f wflag) {
	if i := strings.IndexByte(w, ' '); i > 0 {
		d.phrases[w] |= f
		first := w[:i]
		if f&fCity != 0 {
			d.words[first] |= fCityStart
		}
		if f&fState != 0 {
			d.words[first] |= fStateStart
		}
		return
	}
	d.words[w] |= f
}

func (d *dictionary) loadList(name string, f, top wflag, topN int) {
	b, err := dataFS.ReadFile(name)
	if err != nil {
		panic("mask: embedded " + name + ": " + err.Error()) // build is broken
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		w := strings.TrimSpace(strings.ToLower(sc.Text()))
		if w == "" || w[0] == '#' {
			continue
		}
		g := f
		if n < topN {
			g |= top
			switch f {
			case fFirst:
				d.firstList = append(d.firstList, w)
			case fLast:
				if n < 5000 {
					d.lastList = append(d.lastList, w)
				}
			}
		}
		n++
		d.add(w, g)
	}
}

func (d *dictionary) loadKeywords(name string) {
	b, err := dataFS.ReadFile(name)
	if err != nil {
		panic("mask: embedded " + name + ": " + err.Error())
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		cat, list, ok := strings.Cut(line, ":")
		f, known := keywordCategories[strings.TrimSpace(cat)]
		if !ok || !known {
			panic("mask: " + name + ": bad line " + line)
		}
		var words []string
		if strings.Contains(list, ",") {
			words = strings.Split(list, ",")
		} else {
			words = strings.Fields(list)
		}
		for _, w := range words {
			if w = strings.TrimSpace(strings.ToLower(w)); w != "" {
				d.add(strings.TrimSuffix(w, "."), f)
			}
		}
	}
}

// wordHash is the hash of a word, case-folded (ASCII letters only, as
// the scanner folds them): wyhash-style, one 64x64->128 multiply per eight
// bytes. The tokenizer computes the same value eight bytes at a time while
// it finds the word's end (see hashChunk), so a look-up costs no second
// pass over the word.
func wordHash(w []byte) uint64 {
	n := len(w)
	var h, last uint64
	for first := true; len(w) > 0; first = false {
		var x uint64
		k := min(len(w), 8)
		for j := k - 1; j >= 0; j-- {
			x = x<<8 | uint64(lowerTab[w[j]])
		}
		if !first {
			h = hashChunk(h, last)
		}
		last = x
		w = w[k:]
	}
	return hashEnd(h, last, n)
}

const (
	hashK1 = 0xa0761d6478bd642f
	hashK2 = 0xe7037ed1a0b428db
)

// hashChunk folds a full eight-byte chunk that is not the word's last.
func hashChunk(h, x uint64) uint64 {
	hi, lo := bits.Mul64(h^x^hashK1, hashK2)
	return hi ^ lo
}

// hashEnd folds the last chunk and the length.
func hashEnd(h, last uint64, n int) uint64 {
	hi, lo := bits.Mul64(h^last^hashK1, uint64(n)<<56^hashK2)
	return hi ^ lo
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 32
	}
	return c
}

// shapeHash is a cheap hash of a word's length and first, middle and last
// letters (case-folded), used by the keep and trigger filters; the
// tokenizer computes it for every word, without reading the whole word.
func shapeHash(w []byte) uint32 {
	n := len(w)
	if n == 0 {
		return 0
	}
	// |0x20 folds ASCII letters; it is applied alike when the filters are
	// built and when they are asked, so other bytes do not matter.
	h := uint32(n)*0x9E3779B1 ^ uint32(w[0]|0x20)<<8 ^ uint32(w[n-1]|0x20)<<16 ^ uint32(w[n>>1]|0x20)<<24
	h *= 0x85EBCA6B
	return h ^ h>>15
}

// bloom is a one-hash bit filter over shapeHash (64 Ki bits, 8 KiB: it
// stays in the CPU cache).
type bloom [1 << 16 / 64]uint64

func (b *bloom) add(h uint32)          { b[h>>6&(uint32(len(b))-1)] |= 1 << (h & 63) }
func (b *bloom) has(h uint32) bool     { return b[h>>6&(uint32(len(b))-1)]&(1<<(h&63)) != 0 }
func (b *bloom) addWord(w []byte)      { b.add(shapeHash(w)) }
func (b *bloom) hasWord(w []byte) bool { return b.has(shapeHash(w)) }

func (d *dictionary) setTrigger(w []byte) { d.trigger.addWord(w) }

// keepWords are lower-case words the detectors compare against.
var keepWords = []string{"age", "aged", "and", "box", "by", "code", "ftp", "http", "https", "is", "may", "name",
	"names", "npi", "of", "old", "or", "per", "po", "strength", "the", "to", "version", "ver", "was", "with", "www",
	"year", "years", "yo", "yr", "yrs", "van", "von", "der", "den", "del", "della", "dos", "das", "ter", "ten", "bin", "ibn"}

func (d *dictionary) setKeep(w []byte) { d.keep.addWord(w) }

// maxWordLen: longer words are in no list.
const maxWordLen = 48

// buildTable turns words into table and combos.
func (d *dictionary) buildTable() {
	size := 1
	for size < 2*len(d.words) {
		size <<= 1
	}
	d.table = make([]uint64, size)
	index := map[wflag]uint64{}
	d.combos = d.combos[:0]
	for w, f := range d.words {
		if len(w) > maxWordLen {
			continue
		}
		c, ok := index[f]
		if !ok {
			c = uint64(len(d.combos))
			if c >= 1<<16 {
				panic("mask: more than 65536 distinct word flag sets")
			}
			index[f] = c
			d.combos = append(d.combos, f)
		}
		h := wordHash([]byte(w))
		fp := h&^0xffff | 1<<63
		for k := h; ; k++ {
			slot := &d.table[k&uint64(size-1)]
			if *slot == 0 {
				*slot = fp | c
				break
			}
			if *slot&^0xffff == fp {
				panic("mask: word hash collision in the word lists: " + w)
			}
		}
	}
}

// lookupHash returns the flags of the word whose wordHash is h.
func (d *dictionary) lookupHash(h uint64) wflag {
	fp := h&^0xffff | 1<<63
	mask := uint64(len(d.table) - 1)
	for k := h; ; k++ {
		e := d.table[k&mask]
		if e&^0xffff == fp {
			return d.combos[e&0xffff]
		}
		if e == 0 {
			return 0
		}
	}
}

// lookup returns the flags of w, matched case-insensitively (ASCII).
func (d *dictionary) lookup(w []byte) wflag {
	if len(w) > maxWordLen {
		return 0
	}
	return d.lookupHash(wordHash(w))
}

// lookupPhrase looks up the words of text[start:end] joined by single
// spaces, lower-cased.
func (d *dictionary) lookupPhrase(text []byte, toks []token, from, to int, buf *[48]byte) wflag {
	n := 0
	for i := from; i <= to; i++ {
		t := toks[i]
		if i > from {
			if n == len(buf) {
				return 0
			}
			buf[n] = ' '
			n++
		}
		if n+int(t.end-t.start) > len(buf) {
			return 0
		}
		for _, c := range text[t.start:t.end] {
			buf[n] = lower(c)
			n++
		}
	}
	return d.phrases[string(buf[:n])]
}
