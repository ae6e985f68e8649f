package pgwire_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// This file is the eye of the masking attack table (mask_attack_test.go):
// the forms a seeded PHI value can take once a query has transformed it
// (phiNeedles), and a search of everything one client received, message by
// message and reassembled across rows and columns (findPHI). It looks at
// bytes only; what a message says about them does not matter.

// phiSeed is one raw PHI value of clinicSchema that the hipaa profile masks
// for reader-bot, with the numbers a query can compute from it.
type phiSeed struct {
	what  string
	raw   string
	forms []string    // other text forms of the same value (the server's DateStyles)
	nums  []phiNumber // the value as numbers
}

// phiNumber is a number derived from a seed (its digits as an integer, a
// birth date as YYYYMMDD or in days since an epoch, ...).
type phiNumber struct {
	form       string
	v          int64
	binaryOnly bool // its decimal text is too short to tell from chance
}

// mask seeds are the PHI values of clinicSchema (see fixturePHI). Cara
// Singh's and Dee Park's rows hold only their names; Dee Park's note holds a
// name, a phone number and a date that content detection must find.
var maskSeeds = func() []phiSeed {
	var out []phiSeed
	for _, s := range []string{"123-45-6789", "987-65-4321"} {
		out = append(out, phiSeed{what: "SSN", raw: s, nums: []phiNumber{{form: "digits as an integer", v: digitsInt(s)}}})
	}
	for _, n := range []string{"Alice Moreno", "Bob Tran", "Cara Singh", "Dee Park"} {
		out = append(out, phiSeed{what: "name", raw: n})
	}
	for _, d := range []time.Time{time.Date(1961, 3, 14, 0, 0, 0, 0, time.UTC), time.Date(1975, 11, 2, 0, 0, 0, 0, time.UTC)} {
		days := func(since time.Time) int64 { return int64(d.Sub(since).Hours() / 24) }
		out = append(out, phiSeed{
			what: "dob", raw: d.Format("2006-01-02"),
			// ISO, Postgres/SQL/German DateStyles with MDY and DMY order,
			// and a timestamp in the Postgres style.
			forms: []string{d.Format("01-02-2006"), d.Format("02-01-2006"), d.Format("02.01.2006"), d.Format("01/02/2006"),
				d.Format("02/01/2006"), d.Format("Jan 02 15:04:05 2006")},
			nums: []phiNumber{
				{form: "YYYYMMDD", v: int64(d.Year()*10000 + int(d.Month())*100 + d.Day())},
				{form: "epoch seconds", v: d.Unix()},
				{form: "days since 1970", v: days(time.Unix(0, 0).UTC())},
				{form: "days since 2000 (binary date)", v: days(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))},
				{form: "days since 1900", v: days(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC))},
				{form: "microseconds since 2000 (binary timestamp)", v: d.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds(), binaryOnly: true},
			},
		})
	}
	for _, p := range []string{"+1 415 555 0134", "+1 212 555 0188"} {
		out = append(out, phiSeed{what: "phone", raw: p, nums: []phiNumber{{form: "digits as an integer", v: digitsInt(p)}}})
	}
	for _, m := range []int64{4400123, 4400456} {
		out = append(out, phiSeed{what: "MRN", raw: strconv.FormatInt(m, 10), nums: []phiNumber{{form: "integer", v: m}}})
	}
	out = append(out,
		phiSeed{what: "note name", raw: "Maria Lopez"},
		phiSeed{what: "note phone", raw: "415-555-0198", nums: []phiNumber{{form: "digits as an integer", v: digitsInt("415-555-0198")}}},
		phiSeed{what: "note date", raw: "3/14/2023"},
	)
	return out
}()

func digitsInt(s string) int64 {
	v, _ := strconv.ParseInt(digitsOf(s), 10, 64)
	return v
}

func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// matchMode says how a needle is looked for in one received value.
type matchMode int

const (
	matchBytes   matchMode = iota // anywhere, as these bytes
	matchNumber                   // decimal text with no digit right before or after it
	matchDigits                   // in the digits of one value, its other characters dropped
	matchLetters                  // in the lower-cased letters of one value, its other characters dropped
	matchBase64                   // in one value with its line breaks dropped (encode wraps base64 at 76)
)

// needle is one form of a seed that must never reach the client.
type needle struct {
	seed string // "SSN 123-45-6789"
	form string // "reversed", "base64", "binary int4 of days since 1970", ...
	b    []byte
	mode matchMode
}

// Lengths below which a projection or a decimal number would match by
// chance (in a hash, a row count, another number).
const (
	minProjected = 8 // digits or letters of a value, for matchDigits and matchLetters
	minWord      = 5 // a word of a name
	minHex       = 7 // a number in hex (to_hex)
)

// phiNeedles returns every form of every seed that must not reach the
// client: as stored and in the server's other text forms; reversed, upper
// and lower case; its digits and its letters (separators, case and
// spacing dropped); each word of a name; digits spelled as the letters A-J
// (translate); the hex and base64 of its bytes (base64 at each of the three
// alignments it can have inside a longer value); its characters' codes
// joined as a query would join them; and its numbers in decimal, hex and
// the binary forms of int4, int8, float8 and numeric. Splits of a value one
// character per row or column are not needles: findPHI reassembles them.
// md5 and other hashes of a value are not the value and are not here.
func phiNeedles(seeds []phiSeed) []needle {
	var out []needle
	for _, s := range seeds {
		seed := s.what + " " + s.raw
		seen := map[string]bool{}
		add := func(form string, mode matchMode, b []byte) {
			k := fmt.Sprintf("%d/%x", mode, b)
			if len(b) == 0 || seen[k] {
				return
			}
			seen[k] = true
			out = append(out, needle{seed: seed, form: form, b: b, mode: mode})
		}
		for i, f := range append([]string{s.raw}, s.forms...) {
			as := "raw"
			if i > 0 {
				as = "as " + strconv.Quote(f)
			}
			add(as, matchBytes, []byte(f))
			add("reversed", matchBytes, []byte(reverseString(f)))
			add("upper case", matchBytes, []byte(strings.ToUpper(f)))
			add("lower case", matchBytes, []byte(strings.ToLower(f)))
			add("hex", matchBytes, []byte(hex.EncodeToString([]byte(f))))
			add("upper-case hex", matchBytes, []byte(strings.ToUpper(hex.EncodeToString([]byte(f)))))
			for _, b := range base64Needles([]byte(f)) {
				add("base64", matchBase64, b)
			}
			codes := make([]string, 0, len(f))
			for _, c := range []byte(f) {
				codes = append(codes, strconv.Itoa(int(c)))
			}
			for _, sep := range []string{",", ", ", " ", "\n", "|", ""} {
				add(fmt.Sprintf("character codes joined by %q", sep), matchBytes, []byte(strings.Join(codes, sep)))
			}
			if d := digitsOf(f); d != "" {
				add("digits as letters A-J", matchBytes, []byte(strings.Map(func(r rune) rune {
					if r >= '0' && r <= '9' {
						return 'A' + r - '0'
					}
					return r
				}, f)))
				if len(d) >= minProjected {
					add("digits", matchDigits, []byte(d))
					add("digits reversed", matchDigits, []byte(reverseString(d)))
				} else {
					add("digits", matchNumber, []byte(d))
				}
			}
			if l := lettersOf(f); len(l) >= minProjected {
				add("letters", matchLetters, []byte(l))
				add("letters reversed", matchLetters, []byte(reverseString(l)))
			}
			for _, w := range strings.Fields(f) {
				if len(lettersOf(w)) == len(w) && len(w) >= minWord {
					add("word", matchBytes, []byte(w))
					add("word in lower case", matchBytes, []byte(strings.ToLower(w)))
					add("word in upper case", matchBytes, []byte(strings.ToUpper(w)))
				}
			}
		}
		for _, n := range s.nums {
			if !n.binaryOnly {
				add(n.form+" in decimal", matchNumber, []byte(strconv.FormatInt(n.v, 10)))
				if h := strconv.FormatInt(n.v, 16); n.v > 0 && len(h) >= minHex {
					add(n.form+" in hex", matchBytes, []byte(h))
				}
			}
			if n.v >= math.MinInt32 && n.v <= math.MaxInt32 {
				add(n.form+" as binary int4", matchBytes, binary.BigEndian.AppendUint32(nil, uint32(int32(n.v))))
			}
			add(n.form+" as binary int8", matchBytes, binary.BigEndian.AppendUint64(nil, uint64(n.v)))
			add(n.form+" as binary float8", matchBytes, binary.BigEndian.AppendUint64(nil, math.Float64bits(float64(n.v))))
			if d := numericDigits(n.v); len(d) >= 4 {
				add(n.form+" as binary numeric", matchBytes, d)
			}
		}
	}
	return out
}

// base64Needles returns the part of base64(v) that does not depend on what
// comes before or after v, for each of the three alignments v can have.
func base64Needles(v []byte) [][]byte {
	var out [][]byte
	for k := range 3 {
		enc := base64.RawStdEncoding.EncodeToString(append(make([]byte, k), v...))
		from := (8*k + 5) / 6          // first character made of v's bits only
		to := 8 * (k + len(v)) / 6     // characters wholly within v
		if to-from >= minProjected-2 { // long enough to mean something
			out = append(out, []byte(enc[from:to]))
		}
	}
	return out
}

// numericDigits returns the digit words of v in PostgreSQL's binary
// numeric (base 10000, most significant first, trailing zero words
// dropped); the header around them (weight, sign, scale) varies with the
// expression that produced the number.
func numericDigits(v int64) []byte {
	if v < 0 {
		v = -v
	}
	var words []uint16
	for ; v > 0; v /= 10000 {
		words = append(words, uint16(v%10000))
	}
	slices.Reverse(words)
	for len(words) > 0 && words[len(words)-1] == 0 {
		words = words[:len(words)-1]
	}
	var out []byte
	for _, w := range words {
		out = binary.BigEndian.AppendUint16(out, w)
	}
	return out
}

func reverseString(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

func lettersOf(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, s)
}

// maskNeedles is every needle of the fixture.
var maskNeedles = phiNeedles(maskSeeds)

// haystack is one value a client received, or a reassembly of several.
type haystack struct {
	where string
	b     []byte
	// joined: a reassembly of several values, in which a short decimal
	// number may be made of the ends of two (matchNumber skips it).
	joined bool
}

// phiLeak is one needle found in one haystack.
type phiLeak struct {
	n     needle
	where string
}

func (l phiLeak) String() string { return fmt.Sprintf("%s as %s in %s", l.n.seed, l.n.form, l.where) }

// findPHI returns the needles found in what each client received (one
// stream per connection), one leak per seed and form.
func findPHI(streams [][]byte, needles []needle) []phiLeak {
	var hs []haystack
	for _, s := range streams {
		hs = append(hs, haystacks(wireMessages(s))...)
	}
	var out []phiLeak
	found := map[string]bool{}
	for _, h := range hs {
		var digits, letters, unwrapped []byte
		for _, n := range needles {
			if found[n.seed+"/"+n.form] {
				continue
			}
			var hit bool
			switch n.mode {
			case matchBytes:
				hit = bytes.Contains(h.b, n.b)
			case matchNumber:
				hit = !h.joined && containsNumber(h.b, n.b)
			case matchDigits:
				if digits == nil {
					digits = []byte(digitsOf(string(h.b)))
				}
				hit = bytes.Contains(digits, n.b)
			case matchLetters:
				if letters == nil {
					letters = []byte(lettersOf(strings.ToValidUTF8(string(h.b), "")))
				}
				hit = bytes.Contains(letters, n.b)
			case matchBase64:
				if unwrapped == nil {
					unwrapped = []byte(lineBreaks.Replace(string(h.b)))
				}
				hit = bytes.Contains(unwrapped, n.b)
			}
			if hit {
				found[n.seed+"/"+n.form] = true
				out = append(out, phiLeak{n: n, where: h.where})
			}
		}
	}
	return out
}

// lineBreaks removes the line breaks of base64 text, and their escapes in
// COPY's text format.
var lineBreaks = strings.NewReplacer(`\n`, "", "\n", "", "\r", "")

func containsNumber(h, n []byte) bool {
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for off := 0; ; {
		i := bytes.Index(h[off:], n)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(n)
		if (i == 0 || !isDigit(h[i-1])) && (end == len(h) || !isDigit(h[end])) {
			return true
		}
		off = i + 1
	}
}

// wireMsg is one backend message as received.
type wireMsg struct {
	typ  byte
	body []byte
}

// wireMessages splits what one client received into messages (the
// gateway's connections here carry no TLS, and nobody asked for it, so the
// stream is messages from its first byte). A truncated last message is kept
// as it is: bytes received are bytes received.
func wireMessages(b []byte) []wireMsg {
	var out []wireMsg
	for len(b) > 0 {
		if len(b) < 5 {
			return append(out, wireMsg{typ: '?', body: b})
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || 1+n > len(b) {
			return append(out, wireMsg{typ: '?', body: b})
		}
		out = append(out, wireMsg{typ: b[0], body: b[5 : 1+n]})
		b = b[1+n:]
	}
	return out
}

var wireNames = map[byte]string{
	'D': "DataRow", 'd': "CopyData", 'A': "NotificationResponse", 'S': "ParameterStatus", 'E': "ErrorResponse",
	'N': "NoticeResponse", 'V': "FunctionCallResponse", 'T': "RowDescription", '?': "a truncated message",
}

func wireName(t byte) string {
	if n, ok := wireNames[t]; ok {
		return n
	}
	return fmt.Sprintf("message %q", t)
}

// haystacks turns a client's messages into the values to search: each
// field of each row, notification, parameter, error field and function
// result, and reassemblies of result sets and COPY output (see reassemble).
// Messages that carry no data (authentication, keys, tags, readiness,
// protocol acknowledgements) and the error fields that name the server's
// source (file, line, routine) or a position are left out.
func haystacks(msgs []wireMsg) []haystack {
	var out []haystack
	var rows [][][]byte // the current result set
	var copying bool
	var copyBinary bool
	var copied []byte
	flush := func() {
		if len(rows) > 0 {
			out = append(out, reassemble("result set", rows)...)
			rows = nil
		}
	}
	for _, m := range msgs {
		if m.typ != 'D' {
			flush()
		}
		name := wireName(m.typ)
		switch m.typ {
		case 'D':
			fields := dataRowFields(m.body)
			rows = append(rows, fields)
			for _, f := range fields {
				out = append(out, haystack{where: name, b: f})
			}
		case 'H':
			copying, copied = true, nil
			copyBinary = len(m.body) > 0 && m.body[0] == 1
		case 'd':
			out = append(out, haystack{where: name, b: m.body})
			if copying {
				copied = append(copied, m.body...)
			}
		case 'c':
			if copying {
				out = append(out, copyRows(copied, copyBinary)...)
			}
			copying = false
		case 'A':
			if len(m.body) > 4 {
				for _, s := range bytes.Split(m.body[4:], []byte{0}) {
					out = append(out, haystack{where: name, b: s})
				}
			}
		case 'S':
			out = append(out, haystack{where: name, b: m.body})
		case 'E', 'N':
			for _, f := range bytes.Split(m.body, []byte{0}) {
				if len(f) == 0 || bytes.IndexByte([]byte("FLRPp"), f[0]) >= 0 {
					continue
				}
				out = append(out, haystack{where: fmt.Sprintf("%s field %q", name, f[0]), b: f[1:]})
			}
		case 'V':
			out = append(out, haystack{where: name, b: m.body})
		case 'R', 'K', 'Z', 'C', 'I', '1', '2', '3', 'n', 's', 't', 'T', 'G', 'W', 'v':
		default:
			out = append(out, haystack{where: name, b: m.body})
		}
	}
	flush()
	if copying {
		out = append(out, copyRows(copied, copyBinary)...)
	}
	return out
}

func dataRowFields(b []byte) [][]byte {
	if len(b) < 2 {
		return [][]byte{b}
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	var out [][]byte
	for range n {
		if len(b) < 4 {
			break
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < 0 {
			out = append(out, nil)
			continue
		}
		if int(l) > len(b) {
			out = append(out, b)
			break
		}
		out = append(out, b[:l])
		b = b[l:]
	}
	return out
}

// copyRows reassembles COPY output: text and csv rows (lines split at tabs
// and at commas), or binary tuples.
func copyRows(data []byte, binaryFormat bool) []haystack {
	if binaryFormat {
		return reassemble("binary COPY", binaryCopyTuples(data))
	}
	var out []haystack
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	for _, sep := range []string{"\t", ","} {
		var rows [][][]byte
		for _, l := range lines {
			rows = append(rows, bytes.Split(l, []byte(sep)))
		}
		out = append(out, reassemble(fmt.Sprintf("COPY rows split at %q", sep), rows)...)
	}
	return out
}

func binaryCopyTuples(b []byte) [][][]byte {
	const sig = "PGCOPY\n\xff\r\n\x00"
	if !bytes.HasPrefix(b, []byte(sig)) || len(b) < len(sig)+8 {
		return nil
	}
	b = b[len(sig)+4:]
	ext := int(binary.BigEndian.Uint32(b))
	if len(b) < 4+ext {
		return nil
	}
	b = b[4+ext:]
	var rows [][][]byte
	for len(b) >= 2 {
		n := int16(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n < 0 {
			break
		}
		var row [][]byte
		for range n {
			if len(b) < 4 {
				return append(rows, row)
			}
			l := int32(binary.BigEndian.Uint32(b))
			b = b[4:]
			if l < 0 {
				row = append(row, nil)
				continue
			}
			if int(l) > len(b) {
				return append(rows, append(row, b))
			}
			row = append(row, b[:l])
			b = b[l:]
		}
		rows = append(rows, row)
	}
	return rows
}

// reassemble joins the values of a result set in the orders a split value
// can be read back in: down each column, along each row, and the whole set
// row by row and column by column; each both as received and with every
// value read as a character code where it is one (49 -> "1"; a binary
// integer 0-9 -> its digit).
//
// A column that counts (1, 2, 3, ... or down by one) is left out: it is a
// row number (generate_series, a recursive CTE's step), and read down the
// column 1..9 would be the digits of the fixture's SSN 123-45-6789, whose
// digits count up (987-65-4321's count down). The price: one SSN's digits
// split one per row with nothing else in the column are not seen; with
// both SSNs in the column, or the dashes, or character codes, they are.
func reassemble(what string, rows [][][]byte) []haystack {
	rows = withoutCounters(rows)
	width := 0
	for _, r := range rows {
		width = max(width, len(r))
	}
	var out []haystack
	join := func(where string, vals [][]byte) {
		var raw, dec []byte
		for _, v := range vals {
			raw = append(raw, v...)
			dec = append(dec, asChar(v)...)
		}
		out = append(out, haystack{what + " " + where, raw, true}, haystack{what + " " + where + ", read as character codes", dec, true})
	}
	var all, byCol [][]byte
	for c := range width {
		var col [][]byte
		for _, r := range rows {
			if c < len(r) {
				col = append(col, r[c])
			}
		}
		byCol = append(byCol, col...)
		if len(rows) > 1 {
			join(fmt.Sprintf("down column %d", c+1), col)
		}
	}
	for i, r := range rows {
		all = append(all, r...)
		if width > 1 {
			join(fmt.Sprintf("along row %d", i+1), r)
		}
	}
	if len(rows) > 1 && width > 1 {
		join("row by row", all)
		join("column by column", byCol)
	}
	return out
}

// withoutCounters drops the columns of rows whose values count up or down
// by one over at least three rows.
func withoutCounters(rows [][][]byte) [][][]byte {
	if len(rows) < 3 {
		return rows
	}
	var counters []int
	for c := 0; ; c++ {
		var prev, step int64
		counts, inAll := true, true
		for i, r := range rows {
			if c >= len(r) {
				inAll = false
				break
			}
			v, ok := asInt(r[c])
			if !ok || (i >= 2 && v-prev != step) || (i == 1 && v-prev != 1 && v-prev != -1) {
				counts = false
			}
			step, prev = v-prev, v
		}
		if !inAll {
			break
		}
		if counts {
			counters = append(counters, c)
		}
	}
	if len(counters) == 0 {
		return rows
	}
	out := make([][][]byte, len(rows))
	for i, r := range rows {
		for c, v := range r {
			if !slices.Contains(counters, c) {
				out[i] = append(out[i], v)
			}
		}
	}
	return out
}

// asInt reads v as an integer in decimal text or binary int2, int4 or
// int8.
func asInt(v []byte) (int64, bool) {
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, true
	}
	if len(v) == 0 || (v[0] != 0 && v[0] != 0xff) { // not a small binary integer
		return 0, false
	}
	switch len(v) {
	case 2:
		return int64(int16(binary.BigEndian.Uint16(v))), true
	case 4:
		return int64(int32(binary.BigEndian.Uint32(v))), true
	case 8:
		return int64(binary.BigEndian.Uint64(v)), true
	}
	return 0, false
}

// asChar reads v as one character code where it is one: decimal text of a
// printable code, or a binary integer (leading zero byte) of a printable
// code or a digit.
func asChar(v []byte) []byte {
	if len(v) == 2 || len(v) == 4 || len(v) == 8 {
		if v[0] == 0 {
			var n int64
			switch len(v) {
			case 2:
				n = int64(int16(binary.BigEndian.Uint16(v)))
			case 4:
				n = int64(int32(binary.BigEndian.Uint32(v)))
			default:
				n = int64(binary.BigEndian.Uint64(v))
			}
			switch {
			case n >= 0 && n <= 9:
				return []byte{byte('0' + n)}
			case n >= 32 && n <= 126:
				return []byte{byte(n)}
			}
			return v
		}
	}
	if len(v) >= 2 && len(v) <= 3 {
		if n, err := strconv.Atoi(string(v)); err == nil && n >= 32 && n <= 126 {
			return []byte{byte(n)}
		}
	}
	return v
}

// TestMaskAttacksNeedles tests the eye of the table: the forms phiNeedles
// makes, that findPHI finds each transformation a query can make of a
// value in every message type, and that it finds nothing in masked output.
func TestMaskAttacksNeedles(t *testing.T) {
	forms := map[string]bool{}
	for _, n := range maskNeedles {
		forms[n.seed+" / "+n.form+" / "+string(n.b)] = true
	}
	for _, want := range []string{
		"SSN 123-45-6789 / reversed / 9876-54-321",
		"SSN 123-45-6789 / digits / 123456789",
		"SSN 123-45-6789 / digits as letters A-J / BCD-EF-GHIJ",
		"SSN 123-45-6789 / hex / 3132332d34352d36373839",
		"SSN 123-45-6789 / character codes joined by \",\" / 49,50,51,45,52,53,45,54,55,56,57",
		"SSN 123-45-6789 / digits as an integer in hex / 75bcd15",
		"name Alice Moreno / upper case / ALICE MORENO",
		"name Alice Moreno / letters reversed / oneromecila",
		"name Alice Moreno / word in lower case / moreno",
		"dob 1961-03-14 / digits / 19610314",
		"dob 1961-03-14 / YYYYMMDD in decimal / 19610314",
		"dob 1961-03-14 / epoch seconds in decimal / -277776000",
		"dob 1961-03-14 / days since 1970 in decimal / -3215",
		"dob 1961-03-14 / days since 2000 (binary date) in decimal / -14172",
		"dob 1961-03-14 / days since 1900 in decimal / 22352",
		"dob 1975-11-02 / days since 1970 in decimal / 2131",
		"phone +1 415 555 0134 / digits / 14155550134",
		"note date 3/14/2023 / digits / 3142023",
	} {
		if !forms[want] {
			t.Errorf("phiNeedles makes no needle %q", want)
		}
	}

	tm := pgtype.NewMap()
	encode := func(oid uint32, v any) []byte {
		b, err := tm.Encode(oid, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wire := func(msgs ...pgproto3.BackendMessage) []byte {
		var out []byte
		for _, m := range msgs {
			var err error
			if out, err = m.Encode(out); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	row := func(vals ...[]byte) *pgproto3.DataRow { return &pgproto3.DataRow{Values: vals} }
	rowsOf := func(vals ...[]byte) []pgproto3.BackendMessage {
		var out []pgproto3.BackendMessage
		for _, v := range vals {
			out = append(out, row([]byte("1"), v))
		}
		return append(out, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	}
	chars := func(s string, f func(c byte) []byte) [][]byte {
		var out [][]byte
		for _, c := range []byte(s) {
			out = append(out, f(c))
		}
		return out
	}
	int4 := func(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	dob := time.Date(1961, 3, 14, 0, 0, 0, 0, time.UTC)
	b64 := func(prefix, v string) []byte {
		enc := base64.StdEncoding.EncodeToString([]byte(prefix + v + "|tail"))
		return []byte(enc[:10] + "\n" + enc[10:]) // encode() wraps its lines
	}
	binaryCopy := func(fields ...[]byte) []byte {
		out := append([]byte("PGCOPY\n\xff\r\n\x00"), make([]byte, 8)...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(fields)))
		for _, f := range fields {
			out = append(binary.BigEndian.AppendUint32(out, uint32(len(f))), f...)
		}
		return binary.BigEndian.AppendUint16(out, 0xffff)
	}
	ssn := "123-45-6789"
	for _, tc := range []struct {
		name string
		msgs []pgproto3.BackendMessage
		seed string
	}{
		{"reversed", []pgproto3.BackendMessage{row([]byte("9876-54-321"))}, "SSN 123-45-6789"},
		{"one character per row", rowsOf(chars(ssn, func(c byte) []byte { return []byte{c} })...), "SSN 123-45-6789"},
		{"one character per column", []pgproto3.BackendMessage{row(chars("Cara Singh", func(c byte) []byte { return []byte{c} })...)}, "name Cara Singh"},
		{"codes per column, text", []pgproto3.BackendMessage{row(chars(ssn, func(c byte) []byte { return []byte(strconv.Itoa(int(c))) })...)}, "SSN 123-45-6789"},
		{"codes per column, binary int4", []pgproto3.BackendMessage{row(chars(ssn, func(c byte) []byte { return int4(int(c)) })...)}, "SSN 123-45-6789"},
		{"digits per row, binary int4", rowsOf(chars("123456789987654321", func(c byte) []byte { return int4(int(c - '0')) })...), "SSN 987-65-4321"},
		{"binary date", []pgproto3.BackendMessage{row(encode(pgtype.DateOID, dob))}, "dob 1961-03-14"},
		{"binary timestamp", []pgproto3.BackendMessage{row(encode(pgtype.TimestampOID, dob))}, "dob 1961-03-14"},
		{"binary numeric YYYYMMDD", []pgproto3.BackendMessage{row(encode(pgtype.NumericOID, pgtype.Numeric{Int: big.NewInt(19610314), Valid: true}))}, "dob 1961-03-14"},
		{"binary numeric epoch with scale", []pgproto3.BackendMessage{row(encode(pgtype.NumericOID, pgtype.Numeric{Int: big.NewInt(-277776000000000), Exp: -6, Valid: true}))}, "dob 1961-03-14"},
		{"binary float8 epoch", []pgproto3.BackendMessage{row(encode(pgtype.Float8OID, float64(dob.Unix())))}, "dob 1961-03-14"},
		{"binary int8 SSN digits", []pgproto3.BackendMessage{row(encode(pgtype.Int8OID, int64(987654321)))}, "SSN 987-65-4321"},
		{"binary interval days since 1900", []pgproto3.BackendMessage{row(encode(pgtype.IntervalOID, pgtype.Interval{Days: 22352, Valid: true}))}, "dob 1961-03-14"},
		{"text epoch", []pgproto3.BackendMessage{row([]byte("-277776000.000000"))}, "dob 1961-03-14"},
		{"text interval", []pgproto3.BackendMessage{row([]byte("27698 days"))}, "dob 1975-11-02"},
		{"base64 at offset 0", []pgproto3.BackendMessage{row(b64("", "Alice Moreno"))}, "name Alice Moreno"},
		{"base64 at offset 1", []pgproto3.BackendMessage{row(b64("(", "Alice Moreno"))}, "name Alice Moreno"},
		{"base64 at offset 2", []pgproto3.BackendMessage{row(b64("(1", "Alice Moreno"))}, "name Alice Moreno"},
		{"upper-case hex", []pgproto3.BackendMessage{row([]byte(strings.ToUpper(hex.EncodeToString([]byte("Bob Tran")))))}, "name Bob Tran"},
		{"digits as letters", []pgproto3.BackendMessage{row([]byte("BCD-EF-GHIJ"))}, "SSN 123-45-6789"},
		{"digits with other separators", []pgproto3.BackendMessage{row([]byte("Called 415.555.0198 today"))}, "note phone 415-555-0198"},
		{"tsvector", []pgproto3.BackendMessage{row([]byte("'alice':1 'moreno':2"))}, "name Alice Moreno"},
		{"error message", []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22P02",
			Message: `invalid input syntax for type integer: "oneroM ecilA"`}}, "name Alice Moreno"},
		{"notice detail", []pgproto3.BackendMessage{&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "value", Detail: "Maria Lopez"}}, "note name Maria Lopez"},
		{"notification payload", []pgproto3.BackendMessage{&pgproto3.NotificationResponse{PID: 7, Channel: "x", Payload: ssn + "Alice Moreno"}}, "SSN 123-45-6789"},
		{"parameter status", []pgproto3.BackendMessage{&pgproto3.ParameterStatus{Name: "application_name", Value: "987-65-4321"}}, "SSN 987-65-4321"},
		{"function call response", []pgproto3.BackendMessage{&pgproto3.FunctionCallResponse{Result: []byte(ssn)}}, "SSN 123-45-6789"},
		{"COPY text, one character per row", append([]pgproto3.BackendMessage{&pgproto3.CopyOutResponse{}},
			&pgproto3.CopyData{Data: []byte("1\n2\n3\n-\n4\n5\n-\n6\n")}, &pgproto3.CopyData{Data: []byte("7\n8\n9\n")}, &pgproto3.CopyDone{}), "SSN 123-45-6789"},
		{"COPY binary", []pgproto3.BackendMessage{&pgproto3.CopyOutResponse{OverallFormat: 1},
			&pgproto3.CopyData{Data: binaryCopy(int4(1), encode(pgtype.Int4OID, int32(19751102)))}, &pgproto3.CopyDone{}}, "dob 1975-11-02"},
	} {
		leaks := findPHI([][]byte{wire(tc.msgs...)}, maskNeedles)
		found := false
		for _, l := range leaks {
			found = found || l.n.seed == tc.seed
		}
		if !found {
			t.Errorf("%s: %s not found (found %v)", tc.name, tc.seed, leaks)
		}
	}

	// What masked output looks like, and numbers that are not PHI where
	// they stand (a row count, an error's source line and position, digits
	// of separate rows): nothing may be found there.
	masked := wire(
		&pgproto3.BackendKeyData{ProcessID: 2131, SecretKey: []byte{0, 0, 0x55, 0x30}},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15.4"},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("c1")}, {Name: []byte("c2")}}},
		row([]byte("1"), []byte("[redacted]"), []byte("***-**-6789"), nil, []byte("+* *** *** 0134"), []byte("-5829102384756120934"), []byte("Seen for follow-up.")),
		row([]byte("4"), []byte("[redacted]"), nil, nil, nil, nil, []byte("Called daughter [redacted] at ***-***-0198 on [redacted] about her BP 120/80.")),
		row([]byte("2"), []byte(`{"ssn": "***-**-4321", "dob": null, "md5": "`+fmt.Sprintf("%x", md5.Sum([]byte(ssn)))+`"}`)),
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2131")},
		row([]byte("2")), row([]byte("1")), row([]byte("3")), row([]byte("1")),
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 4")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22P02", Message: `invalid input syntax for type integer: "***-**-6789"`,
			File: "numutils.c", Line: 2131, Routine: "pg_strtoint32", Position: 22352},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	// A row number beside masked characters (generate_series, a recursive
	// CTE's step), in text and in binary: 1..9 read down is not an SSN.
	for _, num := range []func(int) []byte{func(g int) []byte { return []byte(strconv.Itoa(g)) }, int4} {
		var rows []pgproto3.BackendMessage
		for g := 1; g <= 12; g++ {
			rows = append(rows, row(num(g), []byte("*")))
		}
		masked = append(masked, wire(append(rows, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 12")})...)...)
	}
	if leaks := findPHI([][]byte{masked}, maskNeedles); len(leaks) > 0 {
		t.Errorf("found PHI in masked output: %v", leaks)
	}
}
