package mask

import (
	"encoding/binary"
	"unicode/utf8"
)

// Proof describes one masked value or span, for the masking proof in the
// recording. It is passed to the sink set with [Plan.SetProofSink] and is
// valid only during that call.
type Proof struct {
	Column   int        // result column index
	Rule     string     // rule name, "classify", "derived:..." (what masks the source), "withhold" or "detect"
	Action   Action     // what was done
	Type     EntityType // detected or classified type; TypeNone for plain column rules
	Detector string     // detector that found the span; "" for column rules
	// Start and End delimit the masked span in the raw value (bytes); a
	// column rule masks the whole value.
	Start, End int
	Raw        []byte // the raw span (aliases the row being masked)
}

const domShift = 's'

func (pl *Plan) prove(i int, c *planCol, start, end int, raw []byte, detector string) {
	if pl.proof == nil {
		return
	}
	p := &pl.pr
	*p = Proof{Column: i, Rule: pl.ruleOf(c), Action: c.action, Type: c.typ, Detector: detector, Start: start, End: end, Raw: raw}
	pl.proof(p)
}

// ruleOf names what masks column c in a Proof.
func (pl *Plan) ruleOf(c *planCol) string {
	switch c.mode {
	case modeRule:
		return pl.rules[c.rule].name
	case modeClass:
		return "classify"
	case modeDerived:
		return c.why
	case modeWithhold:
		return "withhold"
	}
	return "detect"
}

// proveFinding reports a span the detectors found in raw, a value (or a
// decoded part of one) of the column being scanned.
func (pl *Plan) proveFinding(raw []byte, f Finding) {
	if pl.proof == nil || pl.col < 0 || pl.col >= len(pl.cols) {
		return
	}
	p := &pl.pr
	*p = Proof{Column: pl.col, Rule: pl.ruleOf(&pl.cols[pl.col]), Action: pl.textAction, Type: f.Type, Detector: f.Detector,
		Start: f.Start, End: f.End, Raw: raw[f.Start:f.End]}
	pl.proof(p)
}

// proveWhole reports a scanned value made NULL whole because of finding f
// (or, with f.Type TypeNone, because it could not be read).
func (pl *Plan) proveWhole(raw []byte, f Finding) {
	if pl.proof == nil || pl.col < 0 || pl.col >= len(pl.cols) {
		return
	}
	p := &pl.pr
	*p = Proof{Column: pl.col, Rule: pl.ruleOf(&pl.cols[pl.col]), Action: ActionNull, Type: f.Type, Detector: f.Detector,
		Start: 0, End: len(raw), Raw: raw}
	pl.proof(p)
}

// vote counts the last scanned value towards classifying column c; after
// enough agreeing values the column is masked whole.
func (pl *Plan) vote(c *planCol) {
	if c.samples >= classifySamples || pl.scanner == nil || c.kind == kindJSON || c.kind == kindJSONB {
		return
	}
	c.samples++
	if t := pl.lastVote; t != TypeNone {
		c.votes[t]++
		if c.votes[t] >= classifyVotes {
			c.mode, c.typ, c.action = modeClass, t, pl.classActions[t]
		}
	}
}

func (pl *Plan) scan(v []byte) []Finding {
	if pl.scanner == nil {
		det := pl.det
		if det == nil { // a "detect" rule in a profile without a detect section
			det = DefaultDetector()
		}
		if sc, ok := det.pool.Get().(*Scanner); ok {
			pl.scanner = sc
		} else {
			pl.scanner = det.NewScanner()
		}
	}
	return pl.scanner.Scan(v)
}

// appendDetect masks the PHI that the detectors find inside a value that
// can carry text; values of other types pass.
func (pl *Plan) appendDetect(dst []byte, k kind, typmod int32, bin bool, v []byte) ([]byte, bool) {
	switch k {
	case kindText, kindBpchar:
	case kindJSON, kindJSONB:
		return pl.appendDocument(dst, k, ActionDetect, bin, v)
	case kindXML:
		return pl.appendXMLDetect(dst, v)
	case kindBytea:
		return pl.appendByteaDetect(dst, bin, v)
	case kindOther:
		return pl.appendOpaqueDetect(dst, bin, v)
	default:
		return append(dst, v...), true
	}
	found := pl.scan(v)
	pl.lastVote = valueVote(v, found)
	if len(found) == 0 {
		return append(dst, v...), true
	}
	pl.hits++
	for _, f := range found {
		pl.proveFinding(v, f)
	}
	limit := charLimit(k, typmod)
	start := len(dst)
	dst = pl.appendReplaced(dst, v, found, pl.textAction)
	if limit >= 0 && utf8.RuneCount(dst[start:]) > limit {
		dst = appendStarred(dst[:start], v, found)
	}
	if k == kindBpchar && limit > 0 {
		for n := utf8.RuneCount(dst[start:]); n < limit; n++ {
			dst = append(dst, ' ')
		}
	}
	return dst, true
}

// appendReplaced appends v with each finding replaced: "[TYPE]" for redact,
// a keyed look-alike for pseudonym.
func (pl *Plan) appendReplaced(dst, v []byte, found []Finding, a Action) []byte {
	prev := 0
	for _, f := range found {
		dst = append(dst, v[prev:f.Start]...)
		if a == ActionPseudonym {
			dst = pl.appendPseudonymSpan(dst, v[f.Start:f.End], f.Type)
		} else {
			dst = append(dst, '[')
			dst = append(dst, f.Type.String()...)
			dst = append(dst, ']')
		}
		prev = f.End
	}
	return append(dst, v[prev:]...)
}

// appendStarred appends v with every letter and digit inside a finding
// replaced by '*': the same number of characters, for varchar(n).
func appendStarred(dst, v []byte, found []Finding) []byte {
	prev := 0
	for _, f := range found {
		dst = append(dst, v[prev:f.Start]...)
		for i := f.Start; i < f.End; {
			r, n := utf8.DecodeRune(v[i:])
			if isMaskable(r) || r == utf8.RuneError {
				dst = append(dst, '*')
			} else {
				dst = append(dst, v[i:i+n]...)
			}
			i += n
		}
		prev = f.End
	}
	return append(dst, v[prev:]...)
}

// appendPseudonymSpan appends a keyed look-alike of a detected span: names
// become names from the dictionaries, everything else keeps its shape.
func (pl *Plan) appendPseudonymSpan(dst, span []byte, t EntityType) []byte {
	if t == TypeName {
		return pl.appendNamePseudonym(dst, span)
	}
	return pl.appendShaped(dst, span, -1)
}

// appendNamePseudonym replaces each word of a name with a name from the
// dictionaries chosen by the keyed hash of the word, so the same name
// always gets the same pseudonym.
func (pl *Plan) appendNamePseudonym(dst, name []byte) []byte {
	d := loadDict()
	word := 0
	for i := 0; i < len(name); {
		c := name[i]
		if byteClass[c] < bDigit || isDigit(c) {
			dst = append(dst, c)
			i++
			continue
		}
		j := i
		for j < len(name) && byteClass[name[j]] >= bDigit && !isDigit(name[j]) {
			j++
		}
		w := name[i:j]
		if len(w) == 1 { // an initial stays an initial
			h := pl.digest(domText, w)
			dst = append(dst, 'A'+h[0]%26)
		} else {
			list := d.lastList
			if word == 0 && j < len(name) {
				list = d.firstList
			}
			low := pl.low[:]
			n := copy(low, w)
			for k := 0; k < n; k++ {
				low[k] = lowerTab[low[k]]
			}
			h := pl.digest(domText+1, low[:n])
			pick := list[binary.BigEndian.Uint32(h)%uint32(len(list))]
			upperAll := n > 1 && w[0] >= 'A' && w[0] <= 'Z' && w[1] >= 'A' && w[1] <= 'Z'
			for k := 0; k < len(pick); k++ {
				ch := pick[k]
				if k == 0 || upperAll {
					ch = upper(ch)
				}
				dst = append(dst, ch)
			}
		}
		word++
		i = j
	}
	return dst
}

// appendPseudonymText masks a whole text value with a pseudonym.
func (pl *Plan) appendPseudonymText(dst []byte, k kind, typmod int32, v []byte, t EntityType) ([]byte, bool) {
	if t != TypeName || k == kindChar {
		return pl.appendText(dst, k, ActionHash, typmod, v)
	}
	limit := charLimit(k, typmod)
	start := len(dst)
	body := v
	if k == kindBpchar {
		for len(body) > 0 && body[len(body)-1] == ' ' {
			body = body[:len(body)-1]
		}
	}
	dst = pl.appendNamePseudonym(dst, body)
	if limit >= 0 && utf8.RuneCount(dst[start:]) > limit {
		return pl.appendText(dst[:start], k, ActionHash, typmod, v)
	}
	if k == kindBpchar && limit > 0 {
		for n := utf8.RuneCount(dst[start:]); n < limit; n++ {
			dst = append(dst, ' ')
		}
	}
	return dst, true
}
