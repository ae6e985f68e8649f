package mask

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// EntityType is a kind of PHI that the detectors find in text.
type EntityType uint8

// Entity types, named as in the `phigate mask` output.
const (
	TypeNone EntityType = iota
	TypeName
	TypeAddress
	TypeLocation
	TypeZip
	TypeDate
	TypeAge
	TypePhone
	TypeFax
	TypeEmail
	TypeSSN
	TypeMRN
	TypeHealthPlanID
	TypeAccount
	TypeCreditCard
	TypeLicense
	TypeVehicleID
	TypeDeviceID
	TypeURL
	TypeIP
	TypeID
	numTypes
)

var typeNames = [numTypes]string{
	"", "NAME", "ADDRESS", "LOCATION", "ZIP", "DATE", "AGE", "PHONE", "FAX", "EMAIL", "SSN",
	"MRN", "HEALTH_PLAN_ID", "ACCOUNT", "CREDIT_CARD", "LICENSE", "VEHICLE_ID", "DEVICE_ID",
	"URL", "IP", "ID",
}

func (t EntityType) String() string {
	if t < numTypes {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseEntityType returns the type called name (NAME, DATE, ...).
func ParseEntityType(name string) (EntityType, error) {
	for t := TypeName; t < numTypes; t++ {
		if strings.EqualFold(typeNames[t], name) {
			return t, nil
		}
	}
	return TypeNone, fmt.Errorf("mask: unknown entity type %q", name)
}

// AllTypes lists every entity type.
func AllTypes() []EntityType {
	out := make([]EntityType, 0, numTypes-1)
	for t := TypeName; t < numTypes; t++ {
		out = append(out, t)
	}
	return out
}

// Finding is one piece of PHI found in text.
type Finding struct {
	Start, End int // byte offsets into the scanned text, End exclusive
	Type       EntityType
	// Detector names the rule that found it ("name-dict", "phone-nanp",
	// "ssn", ...), for the masking proof.
	Detector string
}

// DetectConfig says what the content detectors look for. The zero value
// detects every type with the default rules.
type DetectConfig struct {
	// Types limits detection to these types (NAME, DATE, ...). Default: all.
	Types []string `yaml:"types"`
	// Mode trades recall for precision in free text: "recall-first" (the
	// default) masks a word the allowlist does not know wherever a name or
	// a place may stand (after a verb of moving, before "hospital"), a
	// slash pair that may be a date unless a measurement names it, month
	// and two-digit year, and weekdays; "precision" masks those only with
	// a listed name or place or a date word. See docs/masking.md for the
	// measured figures of each.
	Mode string `yaml:"mode"`
	// BareYear treats a year standing alone ("in 2019") as a date. Default
	// false: HIPAA Safe Harbor lets years stay.
	BareYear bool `yaml:"bare_year"`
	// MRNFormats, HealthPlanFormats and AccountFormats are shapes of
	// identifiers that are masked even without a context word: '9' is any
	// digit, 'A' any letter, '*' any letter or digit, anything else stands
	// for itself ("AA-999999"). Without a format these identifiers are found
	// only after a context word (MRN, member ID, account ...).
	MRNFormats        []string `yaml:"mrn_formats"`
	HealthPlanFormats []string `yaml:"health_plan_formats"`
	AccountFormats    []string `yaml:"account_formats"`

	// The settings below apply when the detector is part of a masking
	// profile (ProfileConfig.Detect).

	// ScanText scans every column that can carry text (text, varchar,
	// char(n), name, json, jsonb, xml, bytea, arrays of these, and types
	// phigate does not know) that no lineage, rule or classification
	// covers, value by value. Default true.
	ScanText *bool `yaml:"scan_text"`
	// Classify classifies columns from their name and first values, and
	// masks a classified column whole with ClassActions. Default true.
	Classify *bool `yaml:"classify"`
	// TextAction replaces PHI found inside free text: redact (default:
	// "[NAME]", or stars where the tag would not fit varchar(n)) or
	// pseudonym (keyed look-alike values).
	TextAction string `yaml:"text_action"`
	// ClassActions overrides, per type (NAME, DATE, ...), the action for a
	// classified column. Defaults: names and e-mail pseudonym; dates, ZIP
	// codes and ages generalize; MRN, plan, account and other IDs hash;
	// the rest redact.
	ClassActions map[string]string `yaml:"class_actions"`
	// DateShiftDays is the largest shift of the date-shift action. Default 365.
	DateShiftDays int `yaml:"date_shift_days"`
}

// The detection modes (DetectConfig.Mode).
const (
	ModeRecallFirst = "recall-first"
	ModePrecision   = "precision"
)

// Detector is a compiled content detector. It is immutable and safe for
// concurrent use; scanning goes through a per-goroutine [Scanner].
type Detector struct {
	pool     sync.Pool // idle *Scanner, for plans (see Plan.Close)
	d        *dictionary
	enabled  [numTypes]bool
	bareYear bool
	recall   bool // Mode recall-first
	formats  []idFormat
}

type idFormat struct {
	shape string
	typ   EntityType
}

// NewDetector compiles cfg.
func NewDetector(cfg DetectConfig) (*Detector, error) {
	det := &Detector{d: loadDict(), bareYear: cfg.BareYear}
	switch cfg.Mode {
	case "", ModeRecallFirst:
		det.recall = true
	case ModePrecision:
	default:
		return nil, fmt.Errorf("mask: detect mode %q: want %s or %s", cfg.Mode, ModeRecallFirst, ModePrecision)
	}
	if len(cfg.Types) == 0 {
		for t := TypeName; t < numTypes; t++ {
			det.enabled[t] = true
		}
	}
	for _, n := range cfg.Types {
		t, err := ParseEntityType(n)
		if err != nil {
			return nil, err
		}
		det.enabled[t] = true
	}
	for _, f := range []struct {
		shapes []string
		typ    EntityType
	}{{cfg.MRNFormats, TypeMRN}, {cfg.HealthPlanFormats, TypeHealthPlanID}, {cfg.AccountFormats, TypeAccount}} {
		for _, s := range f.shapes {
			if len(s) < 4 || len(s) > 40 {
				return nil, fmt.Errorf("mask: %s format %q: want 4 to 40 characters", f.typ, s)
			}
			if !strings.ContainsAny(s, "9*") {
				return nil, fmt.Errorf("mask: %s format %q has no digit ('9') or '*'", f.typ, s)
			}
			det.formats = append(det.formats, idFormat{s, f.typ})
		}
	}
	return det, nil
}

var defaultDetector = sync.OnceValue(func() *Detector {
	d, err := NewDetector(DetectConfig{})
	if err != nil {
		panic(err) // the zero config is valid
	}
	return d
})

// DefaultDetector returns the detector of the default HIPAA profile.
func DefaultDetector() *Detector { return defaultDetector() }

// Scanner finds PHI in text. It keeps scratch buffers between calls, so a
// Scanner is used by one goroutine at a time; after warming up, scanning
// does not allocate.
type Scanner struct {
	det   *Detector
	d     *dictionary
	text  []byte
	toks  []token
	fl    []wflag // dictionary flags of toks, valid when fLooked is set
	found []Finding
	buf   [48]byte
	cache *[cacheSize]cacheEntry // recent dictionary lookups
	caps  uint8                  // 0 unknown, 1 the chunk is mostly capitals, 2 it is not
	from  int                    // where the chunk being scanned starts in text
	// noOrgUntil: the capitalized run before this token has no
	// organisation suffix (see place).
	noOrgUntil   int
	noStateUntil int // likewise for placeBeforeState
}

// cacheSize entries of recent lookups: clinical text repeats its
// capitalized words (Pt, BP, the patient's name) and the dictionary is
// much larger than the CPU caches.
const cacheSize = 2048

type cacheEntry struct {
	h     uint64 // wordHash of the word (0: empty; a word hash is 0 once in 2^64)
	flags wflag
}

// NewScanner returns a Scanner using det.
func (det *Detector) NewScanner() *Scanner {
	return &Scanner{det: det, d: det.d}
}

// token is a run of letters and digits, or one punctuation byte. Keep it
// at four fields or fewer: the compiler keeps such structs in registers,
// and a fifth field (a byte for the punctuation, tried) made the scan 11%
// slower.
type token struct {
	start, end int32
	cls        uint8
	gap        uint8 // what separates it from the previous token
}

// Token classes (bits of token.cls).
const (
	cUpper1 uint8 = 1 << iota // first character is upper case
	cUpper                    // some upper-case letter
	cLower                    // some lower-case letter
	cDigit                    // some digit
	cHigh                     // some non-ASCII byte
	cPunct                    // a punctuation byte
	cPlain                    // a run of ordinary lower-case words, merged
	cTrig                     // a lower-case word that may be a trigger word
)

// Gaps between tokens.
const (
	gapNone    = 0
	gapSpace   = 1
	gapNewline = 2
)

// isFieldSeparator reports the bytes that only ever separate fields and
// words: brackets and braces of arrays, records and JSON, double quotes,
// the backslash of escaped quotes, and pipes. No detector reads
// them as part of a piece of PHI or of its context, so the tokenizer takes
// them for spaces: "{123-45-6789,\"Doe, John\"}" and "a|b" then tokenize
// as "123-45-6789, Doe, John" and "a b" do. (As punctuation tokens they
// glued their neighbours together: a context word before one no longer
// announced the value after it, and a word after one looked like the
// continuation of a compound.) Commas, colons, slashes, parentheses and
// apostrophes carry meaning inside numbers, dates, times, phone numbers and
// names, and a semicolon ends the clause a context word speaks for; where
// they separate fields instead, the tokenizer (commas between words) and
// the number boundaries (see boundaryBefore) tell.
func isFieldSeparator(c byte) bool {
	switch c {
	case '|', '[', ']', '{', '}', '"', '\\':
		return true
	}
	return false
}

// wordSeparator marks the punctuation that separates fields when it
// stands between two words with no space around it (see separatesWords):
// 1 between any two words, 2 only between words of letters.
var wordSeparator = [256]uint8{',': 1, ';': 1, '(': 2, ')': 2, ':': 2}

// separatesWords reports whether the punctuation byte text[i], with a
// letter or digit on both sides, separates two fields: "Okafor,Maria",
// "MRN;00458213", "Ferrante(Ojukwu" (prose puts a space after a comma, a
// semicolon or a parenthesis). Between digits a comma or semicolon may
// join a number (see boundaryBefore); a colon or parenthesis next to a
// digit belongs to a time or a phone number.
func separatesWords(text []byte, i int) bool {
	a, b := byteClass[text[i-1]], byteClass[text[i+1]]
	if a < bDigit {
		return false
	}
	if wordSeparator[text[i]] == 1 {
		return a != bDigit || b != bDigit
	}
	return a > bDigit && b > bDigit
}

// Byte classes for the tokenizer.
const (
	bSpace = iota
	bNewline
	bPunct
	bDigit // alphanumeric classes from here on
	bUpper
	bLower
	bHigh
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c == '\n' || c == '\r' || c == '\f' || c == '\v':
			t[c] = bNewline
		case c == ' ' || c == '\t' || isFieldSeparator(byte(c)):
			t[c] = bSpace
		case '0' <= c && c <= '9':
			t[c] = bDigit
		case 'A' <= c && c <= 'Z':
			t[c] = bUpper
		case 'a' <= c && c <= 'z':
			t[c] = bLower
		case c >= 0x80:
			t[c] = bHigh
		default:
			t[c] = bPunct
		}
	}
	return
}()

// alnumBits gives the class bit of letters and digits and 0 for the rest.
var alnumBits = func() (t [256]uint8) {
	bits := [...]uint8{bDigit: cDigit, bUpper: cUpper, bLower: cLower, bHigh: cHigh}
	for c := 0; c < 256; c++ {
		if k := byteClass[c]; k >= bDigit {
			t[c] = bits[k]
		}
	}
	return
}()

var lowerTab = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		t[c] = lower(byte(c))
	}
	return
}()

// highs has the high bit of each of eight bytes.
const highs = 0x8080808080808080

// load8 returns the eight bytes at text[i:] as a little-endian word,
// zero-padded past the end (zero ends a word).
func load8(text []byte, i int) uint64 {
	if i+8 <= len(text) {
		return binary.LittleEndian.Uint64(text[i:])
	}
	var x uint64
	for j := len(text) - 1; j >= i; j-- {
		x = x<<8 | uint64(text[j])
	}
	return x
}

// tokenHash returns wordHash(text[start:end]) for a run of letters and
// digits, eight bytes at a time: in such a run every ASCII byte but an
// upper-case letter already has bit 5 set, so setting it folds the case.
func tokenHash(text []byte, start, end int) uint64 {
	var h uint64
	n := end - start
	for end-start > 8 {
		x := binary.LittleEndian.Uint64(text[start:])
		h = hashChunk(h, x|(^x&highs)>>2)
		start += 8
	}
	x := load8(text, start)
	keep := ^uint64(0) >> (64 - 8*uint(end-start))
	return hashEnd(h, (x|(^x&highs)>>2)&keep, n)
}

// tokenize splits text[from:] into tokens: runs of letters and digits, and
// single punctuation bytes. Runs of ordinary lower-case words are merged
// into one token. (Reading words eight bytes at a time, SWAR, measured
// slower here: most words are short, and the byte loop predicts well.)
func (s *Scanner) tokenize(text []byte, from int) {
	toks := s.toks[:0]
	gap := uint8(gapNewline)
	n := len(text)
	d := s.d
	// keepN words after a kept word stay tokens of their own (not merged
	// into a plain run): one after most kept words, two after a trigger
	// word (a title, "wife", a month), and then (hold) punctuation between
	// does not end the count: "dr. lindqvist", "wife, mary smith".
	keepN, hold := 0, false
	// In text written in lower case, first names and "in"/"of" start
	// detections too (see dictionary.triggerLower).
	trigger, keep := &d.trigger, &d.keep
	if s.caps == 3 {
		trigger, keep = &d.triggerLower, &d.keepLower
	}
	for i := from; i < n; {
		c := text[i]
		k := byteClass[c]
		switch k {
		case bSpace:
			if gap < gapSpace {
				gap = gapSpace
			}
			i++
			continue
		case bNewline:
			gap = gapNewline
			i++
			continue
		case bPunct:
			if i+1 < n && byteClass[text[i+1]] >= bDigit && wordSeparator[c] != 0 && i > from && separatesWords(text, i) {
				if gap < gapSpace {
					gap = gapSpace
				}
				i++
				continue
			}
			toks = append(toks, token{start: int32(i), end: int32(i + 1), cls: cPunct, gap: gap})
			gap = gapNone
			if !hold {
				keepN = 0
			}
			i++
			continue
		}
		start := i
		var cls uint8
		if k == bUpper {
			cls = cUpper1
		} else if k == bHigh {
			if r, _ := utf8.DecodeRune(text[i:]); unicode.IsUpper(r) {
				cls = cUpper1
			}
		}
		for i < n {
			m := alnumBits[text[i]]
			if m == 0 {
				break
			}
			cls |= m
			i++
		}
		h := shapeHash(text[start:i])
		if cls == cLower {
			if i-start <= 2 || keep.has(h) || i < n && text[i] == ':' {
				keepN, hold = 1, false
				if trigger.has(h) {
					cls |= cTrig
					keepN, hold = 2, true
				}
			} else if keepN == 0 {
				// an ordinary word: merge it into the plain run before it
				if l := len(toks) - 1; l >= 0 && toks[l].cls == cLower|cPlain && gap == gapSpace {
					toks[l].end = int32(i)
				} else {
					toks = append(toks, token{start: int32(start), end: int32(i), cls: cLower | cPlain, gap: gap})
				}
				gap = gapNone
				continue
			} else {
				keepN--
				hold = hold && keepN > 0
			}
		} else if cls&cUpper1 != 0 && trigger.has(h) {
			keepN, hold = 2, true
		} else {
			keepN, hold = int(cls&cUpper1), false // cUpper1 is 1
		}
		toks = append(toks, token{start: int32(start), end: int32(i), cls: cls, gap: gap})
		gap = gapNone
	}
	s.toks = toks
}

// scanChunk is how much text is tokenized at a time: small enough for the
// tokens to stay in cache. Long texts are cut at a line break (or a space).
const scanChunk = 16 << 10

// Scan returns the PHI found in text, ordered by position and not
// overlapping. The result is valid until the next call.
func (s *Scanner) Scan(text []byte) []Finding {
	s.found = s.found[:0]
	for off := 0; off < len(text); {
		end := len(text)
		if end-off > scanChunk+scanChunk/2 {
			end = cutPoint(text, off+scanChunk)
		}
		s.scanPart(text[:end], off)
		off = end
	}
	s.resolve()
	s.text = nil
	return s.found
}

// cutPoint returns a place near p to split text: after a line break, else
// after a space, else p.
func cutPoint(text []byte, p int) int {
	limit := min(len(text), p+scanChunk/2)
	for q := p; q < limit; q++ {
		if text[q] == '\n' {
			return q + 1
		}
	}
	for q := p; q < limit; q++ {
		if text[q] == ' ' {
			return q + 1
		}
	}
	return p
}

// scanPart scans text[from:], with text[:from] already scanned.
func (s *Scanner) scanPart(text []byte, from int) {
	s.text = text
	s.from = from
	s.caps = 0
	s.noOrgUntil, s.noStateUntil = 0, 0
	s.mostlyCaps() // the tokenizer asks whether the text is in lower case
	s.tokenize(text, from)
	toks := s.toks
	if cap(s.fl) < len(toks) {
		s.fl = make([]wflag, len(toks), cap(toks))
	}
	s.fl = s.fl[:len(toks)]
	clear(s.fl)
	for i := 0; i < len(toks); {
		t := &toks[i]
		var next int
		switch {
		case t.cls&cPlain != 0:
			i++
			continue
		case t.cls == cLower: // most words: skip unless a trigger
			if t.end-t.start == 1 && i+1 < len(toks) && text[t.end] == '.' {
				next = s.word(i) // an initial: "per b. sandoval"
				break
			}
			if t.end < int32(len(text)) && text[t.end] == ':' && t.end-t.start <= 4 {
				// caee:5acb::1 starts with letters
				if end, ok := s.matchIPv6(int(t.start)); ok {
					s.emit(int(t.start), end, TypeIP, "ipv6")
					next = s.tokenAt(i, end)
					break
				}
			}
			i++
			continue
		case t.cls == cLower|cTrig:
			next = s.word(i)
		case t.cls&cPunct != 0:
			c := text[t.start]
			if c == '.' && i > 0 && i+1 < len(toks) && toks[i+1].gap == gapNone && t.gap == gapNone && toks[i+1].cls&^cTrig == cLower {
				if n := s.domain(i); n > i {
					next = n
					break
				}
			}
			if c != '@' && c != '(' && c != '+' {
				i++
				continue
			}
			next = s.punct(i)
		case t.cls&cDigit != 0 && t.cls&(cUpper|cLower|cHigh) == 0:
			next = s.number(i)
		case t.cls&cDigit != 0:
			next = s.alnum(i)
		default:
			next = s.word(i)
		}
		if next <= i {
			next = i + 1
		}
		i = next
	}
}

// emit records a finding over bytes [start, end).
func (s *Scanner) emit(start, end int, t EntityType, detector string) {
	if !s.det.enabled[t] || end <= start {
		return
	}
	s.found = append(s.found, Finding{Start: start, End: end, Type: t, Detector: detector})
}

// emitToks records a finding over tokens from..to inclusive.
func (s *Scanner) emitToks(from, to int, t EntityType, detector string) {
	s.emit(int(s.toks[from].start), int(s.toks[to].end), t, detector)
}

// resolve sorts the findings and removes overlaps, keeping the longer span.
func (s *Scanner) resolve() {
	f := s.found
	if len(f) < 2 {
		return
	}
	if !slices.IsSortedFunc(f, cmpFinding) {
		slices.SortStableFunc(f, cmpFinding)
	}
	out := f[:1]
	for _, x := range f[1:] {
		last := &out[len(out)-1]
		if x.Start >= last.End {
			out = append(out, x)
			continue
		}
		if x.End-x.Start > last.End-last.Start {
			*last = x
		}
	}
	s.found = out
}

func cmpFinding(a, b Finding) int {
	if a.Start != b.Start {
		return a.Start - b.Start
	}
	return b.End - a.End
}

// flags returns the dictionary flags of token i, looking them up once.
// Detectors ask about a token's neighbours again and again (about one call
// per token): the cached case is small enough to be inlined.
func (s *Scanner) flags(i int) wflag {
	if f := s.fl[i]; f&fLooked != 0 {
		return f
	}
	return s.lookFlags(i)
}

func (s *Scanner) lookFlags(i int) wflag {
	var f wflag
	if t := s.toks[i]; t.cls&(cPunct|cPlain) == 0 && t.end-t.start <= maxWordLen {
		f = s.lookup(tokenHash(s.text, int(t.start), int(t.end)))
		// José, Müller, Peña: the name and place lists are in ASCII, so a
		// word with diacritics is looked up without them as well.
		if t.cls&cHigh != 0 && f&(fFirst|fLast|fCity) == 0 {
			if w, ok := foldLatin(s.text[t.start:t.end], &s.buf); ok {
				f |= s.d.lookup(w) & (fFirst | fFirstTop | fLast | fLastTop | fCity | fCityTop)
			}
		}
	}
	f |= fLooked
	s.fl[i] = f
	return f
}

// latinBase maps U+00C0..U+017F to the ASCII letter they are written on
// ('_' for the few that have none).
const latinBase = "aaaaaaaceeeeiiiidnooooo_ouuuuytsaaaaaaaceeeeiiiidnooooo_ouuuuytyaaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii__jjkkkllllllllllnnnnnnnnnoooooooorrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs"

// foldLatin writes w in lower-case ASCII without diacritics into buf; it
// fails on letters outside Latin-1 and Latin Extended-A.
func foldLatin(w []byte, buf *[48]byte) ([]byte, bool) {
	n := 0
	for k := 0; k < len(w); {
		c := w[k]
		if c < utf8.RuneSelf {
			if n == len(buf) {
				return nil, false
			}
			buf[n] = lowerTab[c]
			n++
			k++
			continue
		}
		r, size := utf8.DecodeRune(w[k:])
		if r < 0xC0 || r > 0x17F || latinBase[r-0xC0] == '_' || n == len(buf) {
			return nil, false
		}
		buf[n] = latinBase[r-0xC0]
		n++
		k += size
	}
	return buf[:n], true
}

// lookup returns the flags of the word with hash h through the cache: a
// cache hit is one compare, a miss one probe of the 2 MB table.
func (s *Scanner) lookup(h uint64) wflag {
	if s.cache == nil {
		s.cache = new([cacheSize]cacheEntry)
	}
	e := &s.cache[h>>20&(cacheSize-1)]
	if e.h == h {
		return e.flags
	}
	f := s.d.lookupHash(h)
	e.h, e.flags = h, f
	return f
}

func (s *Scanner) tokText(i int) []byte { t := s.toks[i]; return s.text[t.start:t.end] }

func (s *Scanner) tokLen(i int) int { t := s.toks[i]; return int(t.end - t.start) }

// isPunct reports whether token i is the punctuation byte c.
func (s *Scanner) isPunct(i int, c byte) bool {
	return uint(i) < uint(len(s.toks)) && s.toks[i].cls&cPunct != 0 && s.text[s.toks[i].start] == c
}

func (s *Scanner) isWord(i int) bool {
	return uint(i) < uint(len(s.toks)) && s.toks[i].cls&(cPunct|cDigit) == 0
}

// capitalized: first letter upper case, rest not all upper case (or one letter).
func (s *Scanner) capitalized(i int) bool {
	if !s.isWord(i) {
		return false
	}
	t := s.toks[i]
	if t.cls&cUpper1 == 0 {
		return false
	}
	return t.cls&cLower != 0 || t.end-t.start == 1 || t.cls&cHigh != 0
}

func (s *Scanner) allCaps(i int) bool {
	if !s.isWord(i) {
		return false
	}
	t := s.toks[i]
	return t.cls&cUpper != 0 && t.cls&cLower == 0 && t.cls&cHigh == 0 && t.end-t.start > 1
}

func (s *Scanner) lowerWord(i int) bool {
	return s.isWord(i) && s.toks[i].cls&cUpper == 0 && s.toks[i].cls&cUpper1 == 0
}

// equalFold reports whether token i is word w (lower case ASCII).
func (s *Scanner) equalFold(i int, w string) bool {
	if uint(i) >= uint(len(s.toks)) {
		return false
	}
	t := s.toks[i]
	if int(t.end-t.start) != len(w) {
		return false
	}
	b := s.text[t.start:t.end]
	for j := range b {
		if lowerTab[b[j]] != w[j] {
			return false
		}
	}
	return true
}

// adjacent reports whether tokens i-1 and i touch (no space between).
func (s *Scanner) adjacent(i int) bool {
	return i > 0 && i < len(s.toks) && s.toks[i].gap == gapNone
}
