package mask

import (
	"bufio"
	"bytes"
	"embed"
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
	"idctx": fIDCtx, "agectx": fAgeCtx, "zipctx": fZipCtx, "dosewords": fDose, "medstop": fMedStop, "commonname": fCommonName, "relation": fRelation, "expiry": fExpiry, "personverb": fPersonVerb, "townprefix": fTownPrefix,
}

// triggerFlags are the flags of lower-case words that can start a
// detection; only those words are looked up during the scan (through a
// bit filter), the rest only when a detector asks about a neighbour.
const triggerFlags = fTitle | fNameCtx | fMonth | fMonthAbbr

// dictionary is the loaded word lists: single words and multi-word phrases
// (cities, states), all lower case.
type dictionary struct {
	// firstList and lastList are the most frequent census names, for
	// pseudonyms.
	firstList, lastList []string
	words               map[string]wflag
	phrases             map[string]wflag
	// trigger has a bit per (first letter, second letter, length) of the
	// lower-case words with triggerFlags; other lower-case words are skipped
	// without a lookup.
	trigger bloom
	// keep has a bit for every lower-case word a detector may look at; the
	// tokenizer merges runs of other lower-case words into one token.
	keep bloom
}

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
		d.loadList("data/common_words.txt", fCommon, 0, 0)
		d.loadList("data/us_cities.txt", fCity, fCityTop, 3000)
		d.loadKeywords("data/keywords.txt")
		for w, f := range d.words {
			if f&triggerFlags != 0 {
				d.setTrigger([]byte(w))
			}
		}
		for _, w := range []string{"http", "https", "ftp", "www"} {
			d.setTrigger([]byte(w))
		}
		for w, f := range d.words {
			if f&^(fFirst|fFirstTop|fLast|fLastTop|fCommon|fCity|fCityTop|fCityStart|fStateStart|fCommonName) != 0 || f&(fCityStart|fStateStart) != 0 {
				d.setKeep([]byte(w))
			}
		}
		for _, w := range keepWords {
			d.setKeep([]byte(w))
		}
		for w := range tlds {
			d.setKeep([]byte(w))
		}
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

// shapeHash is a cheap hash of a word's length and first, second and last
// letters (case-folded), used by the trigger filter; the tokenizer computes
// it once per word instead of hashing every byte.
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

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 32
	}
	return c
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

// maybeTrigger reports whether the lower-case word w may have triggerFlags.
func (d *dictionary) maybeTrigger(w []byte) bool { return d.trigger.hasWord(w) }

// lookup returns the flags of w, matched case-insensitively. buf is scratch
// for lower-casing (words longer than it are not in the lists).
func (d *dictionary) lookup(w []byte, buf *[48]byte) wflag {
	if len(w) > len(buf) {
		return 0
	}
	for i, c := range w {
		buf[i] = lower(c)
	}
	return d.words[string(buf[:len(w)])]
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
