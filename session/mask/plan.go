package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"strings"
)

// Column is a result column as the proxy sees it in a RowDescription, after
// resolving the table OID, with the statement's lineage.
type Column struct {
	// Source is "schema.table.column" when the column comes straight from a
	// table column, else "".
	Source string
	// Scan, with Source, numbers the scan of Source's table the values come
	// from: columns with the same non-zero Scan hold, in each row, columns
	// of one table row (lineage.Output.Scan). Date-shift per subject takes
	// a row's subject only from a column of the date's own scan. 0: not
	// known to be one scan's.
	Scan int
	// Derived lists the base columns a computed output (an expression, an
	// aggregate, a cast, a whole-row reference) derives from, when Source
	// is "". If a plain column from any of them would be masked in any way
	// (a rule, a class, content scanning), the output is masked whole:
	// NULL if any of those would be NULL, else redacted for the output's
	// type. Partial reveals (keep-last-4, hash, pseudonym, generalize,
	// date-shift, scanning) are never applied to a derived value: a
	// substring or a reversal defeats them, and a keyed hash of an
	// expression can be compared with the hash of a guess.
	Derived []SourceCol
	// Withhold makes every value of the column NULL: for outputs whose
	// lineage the proxy could not determine.
	Withhold bool
	// Name is the output name (may be an alias).
	Name    string
	TypeOID uint32
	TypeMod int32
	// Binary is true for format code 1.
	Binary bool
}

// SourceCol is a base-table column that a derived output is computed from.
type SourceCol struct {
	Name    string // "schema.table.column"
	TypeOID uint32 // the base column's type: decides whether a plain column from it is scanned
}

// Params are what a plan takes from the session besides the profile.
type Params struct {
	// DateStyle is the session's DateStyle, e.g. "ISO, MDY" (the default
	// when empty).
	DateStyle string
	// Subjects are the resource's subject columns: date-shift of a table
	// that has one moves each row's dates by its subject's shift (see
	// [Plan.SubjectColumns]). Nil: one plan-wide shift.
	Subjects *Subjects
}

// Applied records how a column of a result set was masked.
type Applied struct {
	Index  int    // column index in the RowDescription
	Column string // output name
	Source string // "schema.table.column" or ""
	// Derived lists the base columns of a derived output ([Column.Derived]).
	Derived []string
	// Rule is the rule's name, "classify:TYPE", "detect" (content
	// scanning), "derived:" followed by one of those for the source that
	// decided a derived output's masking, or "withhold".
	Rule   string
	Action string
	// Values counts non-NULL values masked so far: replaced, or made NULL.
	Values int64
	// Scanned counts non-NULL values the detectors read and found nothing
	// in, passed unchanged.
	Scanned int64
	// Passed counts non-NULL values passed unchanged that the detectors
	// could not fully read; Reason says why.
	Passed int64
	// Reason explains how values of a type phigate does not know are
	// handled, or why a column is withheld.
	Reason string
}

// Plan masks the values of one result set. It is computed once per
// RowDescription and used by one goroutine at a time.
type Plan struct {
	cols   []planCol
	active bool
	params Params
	key    []byte
	rules  []rule

	// Content detection, copied from the profile.
	det          *Detector
	scanner      *Scanner // made on first use
	textAction   Action
	classActions [numTypes]Action
	shiftDays    int
	shift        int  // days dates move back, for the plan-wide subject
	shiftSet     bool // shift is computed
	subj         rowSubjects
	proof        func(*Proof)
	pr           Proof
	lastVote     EntityType // what the last scanned value looked like
	curType      EntityType // class of the column being masked

	mac hash.Hash // HMAC-SHA256 with key, made on first use
	dom [1]byte
	sum [sha256.Size]byte
	u16 [16]byte // digest input that must not escape per call
	low [48]byte // a lower-cased word, digest input

	// Scratch buffers reused across values so the hot path does not allocate.
	tmp, tmp2     []byte // scalar decode and transform
	arrIn, arrOut []byte // one array element, before and after masking
	col           int    // column being scanned, for proofs; -1 outside AppendValue
	hits          int    // changes the detectors made to the value being scanned
}

// Column modes.
const (
	modeRule     = iota + 1 // a configured rule
	modeClass               // classified from its name or values
	modeScan                // free text, scanned value by value
	modeDerived             // computed from masked base columns: masked whole
	modeWithhold            // lineage unknown: every value NULL
)

// classifySamples is how many values of a scanned column are looked at to
// classify it; classifyVotes of them must agree.
const (
	classifySamples = 16
	classifyVotes   = 12
)

type planCol struct {
	mode    uint8
	typ     EntityType // classified type
	samples uint8
	votes   [numTypes]uint8
	masked  bool
	kind    kind
	array   bool
	binary  bool
	typmod  int32
	action  Action
	rule    int
	name    string
	source  string
	derived []string // base columns of a derived output
	why     string   // modeDerived: "derived:" and what masks the deciding source
	reason  string   // Applied.Reason
	values  int64    // non-NULL values masked
	scanned int64    // non-NULL values scanned, nothing found
	passed  int64    // non-NULL values passed, not fully read
}

// Plan returns the masking plan for a result set with columns cols. A nil
// Profile gives a plan that masks nothing.
func (p *Profile) Plan(cols []Column, params Params) *Plan {
	pl := &Plan{cols: make([]planCol, len(cols)), params: params, col: -1}
	if p == nil {
		return pl
	}
	pl.key, pl.rules = p.key, p.rules
	pl.det, pl.textAction, pl.classActions, pl.shiftDays = p.det, p.textAction, p.classActions, p.shiftDays
	for i, c := range cols {
		pc := &pl.cols[i]
		pc.rule = -1
		pc.kind, pc.array = typeOf(c.TypeOID)
		pc.binary = c.Binary
		pc.typmod = c.TypeMod
		pc.name, pc.source = c.Name, c.Source
		if c.Withhold {
			pc.masked, pc.mode, pc.action = true, modeWithhold, ActionNull
			pc.reason = "lineage unknown: every value withheld"
			pl.active = true
			continue
		}
		if c.Source == "" && len(c.Derived) > 0 {
			pc.derived = make([]string, len(c.Derived))
			for k, d := range c.Derived {
				pc.derived[k] = d.Name
			}
			if a, why := p.derivedAction(c.Derived); a != ActionNone {
				pc.masked, pc.mode, pc.action, pc.why = true, modeDerived, a, why
				pl.active = true
				continue
			}
		}
		if r := p.match(c); r >= 0 {
			pc.masked, pc.mode, pc.rule, pc.action = true, modeRule, r, p.rules[r].action
			pl.active = true
			continue
		}
		if p.det == nil {
			continue
		}
		if p.classify {
			t := ClassifyColumnName(sourceColumn(c.Source))
			if t == TypeNone {
				t = ClassifyColumnName(c.Name)
			}
			if t != TypeNone && p.det.enabled[t] {
				pc.masked, pc.mode, pc.typ, pc.action = true, modeClass, t, p.classActions[t]
				pl.active = true
				continue
			}
		}
		if p.scanText && scannable(pc.kind) {
			pc.masked, pc.mode, pc.action = true, modeScan, ActionDetect
			pl.active = true
		}
		if pc.mode == modeScan && pc.kind == kindOther {
			if pc.binary {
				pc.reason = "binary format of a type phigate cannot read: its bytes (each field of a record or array) are scanned as text; a value with PHI in it becomes NULL"
			} else {
				pc.reason = "type phigate does not know: its text form is scanned; a value with PHI in it becomes NULL"
			}
		}
	}
	if params.Subjects != nil {
		pl.bindSubjects(cols, params.Subjects)
	}
	return pl
}

// scannable reports the kinds of value that can carry free text and are
// scanned when the profile scans text: text, varchar, char(n), name, json,
// jsonb, xml, bytea, arrays of those (k is then the element's kind), and
// every type this package does not know (records, composites, enums,
// extension types), whose text form is scanned.
func scannable(k kind) bool {
	switch k {
	case kindText, kindBpchar, kindJSON, kindJSONB, kindXML, kindBytea, kindOther:
		return true
	}
	return false
}

// sourceAction says what a plain column from src would get: its action and
// what decides it (the rule's name, "classify:TYPE" or "detect"), or
// ActionNone.
func (p *Profile) sourceAction(src SourceCol) (Action, string) {
	if r := p.match(Column{Source: src.Name}); r >= 0 {
		return p.rules[r].action, p.rules[r].name
	}
	if p.det == nil {
		return ActionNone, ""
	}
	if p.classify {
		if t := ClassifyColumnName(sourceColumn(src.Name)); t != TypeNone && p.det.enabled[t] {
			return p.classActions[t], "classify:" + t.String()
		}
	}
	if k, _ := typeOf(src.TypeOID); p.scanText && scannable(k) {
		return ActionDetect, "detect"
	}
	return ActionNone, ""
}

// derivedAction returns the action for an output derived from srcs: null
// if a plain column from any of them would be NULL, redact if one would be
// masked in any other way, else ActionNone; and "derived:" with what masks
// the source that decided.
func (p *Profile) derivedAction(srcs []SourceCol) (Action, string) {
	a, why := ActionNone, ""
	for _, src := range srcs {
		sa, sw := p.sourceAction(src)
		switch {
		case sa == ActionNull:
			return ActionNull, "derived:" + sw
		case sa != ActionNone && a == ActionNone:
			a, why = ActionRedact, "derived:"+sw
		}
	}
	return a, why
}

func sourceColumn(src string) string {
	if i := strings.LastIndexByte(src, '.'); i >= 0 {
		return src[i+1:]
	}
	return src
}

// SetSubject names the person every value of the plan belongs to (in the
// canonical form [Plan.SetRowSubject] describes: "7" for patient 7), so
// that date-shift moves all of that person's dates by the same number of
// days. Without it, dates move by one profile-wide shift. Columns of a
// table with a subject column ([Params.Subjects]) ignore it: they take
// each row's own subject.
func (pl *Plan) SetSubject(subject []byte) {
	if pl == nil || pl.key == nil {
		return
	}
	pl.shift = pl.shiftFor(subject)
	pl.shiftSet = true
}

// SetProofSink asks for a [Proof] of every value (or span of free text)
// that is masked. The Proof and its Raw bytes are valid only during the
// call. With no sink (the default) nothing is collected and nothing is
// allocated.
func (pl *Plan) SetProofSink(fn func(*Proof)) {
	if pl != nil {
		pl.proof = fn
	}
}

// Active reports whether any column is masked; when false the proxy may
// forward rows untouched.
func (pl *Plan) Active() bool { return pl != nil && pl.active }

// Masked reports whether column i needs [Plan.AppendValue].
func (pl *Plan) Masked(i int) bool {
	return pl != nil && i >= 0 && i < len(pl.cols) && pl.cols[i].masked
}

// AppendValue appends the masked form of value v of column i to dst. null
// reports that the masked value is SQL NULL (then nothing is appended).
// v == nil means the input is NULL. A column that is not masked is copied.
// Input that is not a valid value of the column's type becomes NULL.
func (pl *Plan) AppendValue(dst []byte, i int, v []byte) (out []byte, null bool) {
	if pl == nil {
		if v == nil {
			return dst, true
		}
		return append(dst, v...), false
	}
	if i < 0 || i >= len(pl.cols) {
		return dst, true
	}
	c := &pl.cols[i]
	if !c.masked {
		if v == nil {
			return dst, true
		}
		return append(dst, v...), false
	}
	if v == nil {
		return dst, true
	}
	pl.subj.at(i)
	if c.action == ActionDetect {
		return pl.appendScanned(dst, i, c, v)
	}
	c.values++
	if c.action == ActionNull {
		pl.prove(i, c, 0, len(v), v, "")
		return dst, true
	}
	mark := len(dst)
	var ok bool
	pl.prove(i, c, 0, len(v), v, "")
	pl.curType = c.typ
	if c.array {
		if c.binary {
			out, ok = pl.appendBinaryArray(dst, c.kind, c.action, c.typmod, v)
		} else {
			out, ok = pl.appendTextArray(dst, c.kind, c.action, c.typmod, v)
		}
	} else {
		out, ok = pl.appendScalar(dst, c.kind, c.action, c.typmod, c.binary, v)
	}
	if !ok {
		return dst[:mark], true
	}
	return out, false
}

// appendScanned masks the PHI the detectors find inside value v of column
// i (scanned text, or a "detect" rule) and counts what happened to it.
func (pl *Plan) appendScanned(dst []byte, i int, c *planCol, v []byte) ([]byte, bool) {
	mark := len(dst)
	pl.col, pl.hits = i, 0
	var out []byte
	var ok bool
	switch {
	case c.array && c.binary:
		out, ok = pl.appendBinaryArray(dst, c.kind, ActionDetect, c.typmod, v)
	case c.array:
		out, ok = pl.appendTextArray(dst, c.kind, ActionDetect, c.typmod, v)
	default:
		out, ok = pl.appendScalar(dst, c.kind, ActionDetect, c.typmod, c.binary, v)
	}
	pl.col = -1
	switch {
	case !ok:
		c.values++
		return dst[:mark], true
	case pl.hits > 0:
		c.values++
	case c.kind == kindOther && c.binary:
		c.passed++
	default:
		c.scanned++
	}
	if c.mode == modeScan && !c.array && (c.kind == kindText || c.kind == kindBpchar) {
		pl.vote(c)
	}
	return out, false
}

// Close gives the plan's scanning buffers back for other plans to use. The
// proxy calls it when the result set is done; a closed plan still works
// (it takes buffers again). Without Close the buffers are garbage
// collected with the plan.
func (pl *Plan) Close() {
	if pl == nil || pl.scanner == nil {
		return
	}
	pl.scanner.det.pool.Put(pl.scanner)
	pl.scanner = nil
}

// Applied lists, for the recording, every masked column: which rule and
// action masked it, and how many values were masked, scanned and found
// clean, or passed unread so far.
func (pl *Plan) Applied() []Applied {
	if pl == nil {
		return nil
	}
	var out []Applied
	for i := range pl.cols {
		c := &pl.cols[i]
		if !c.masked {
			continue
		}
		a := Applied{Index: i, Column: c.name, Source: c.source, Derived: c.derived, Action: c.action.String(),
			Values: c.values, Scanned: c.scanned, Passed: c.passed, Reason: c.reason}
		switch c.mode {
		case modeRule:
			a.Rule = pl.rules[c.rule].name
		case modeClass:
			a.Rule = "classify:" + c.typ.String()
		case modeDerived:
			a.Rule = c.why
		case modeWithhold:
			a.Rule = "withhold"
		default:
			a.Rule = "detect"
		}
		out = append(out, a)
	}
	return out
}

// digest returns HMAC-SHA256(key, domain || data). The result aliases
// pl.sum and is valid until the next call.
func (pl *Plan) digest(domain byte, data []byte) []byte {
	if pl.mac == nil {
		pl.mac = hmac.New(sha256.New, pl.key)
	}
	pl.mac.Reset()
	pl.dom[0] = domain
	pl.mac.Write(pl.dom[:])
	pl.mac.Write(data)
	return pl.mac.Sum(pl.sum[:0])
}

// keyStream expands a digest into as many pseudo-random bytes as needed.
type keyStream struct {
	blk [sha256.Size]byte
	n   int
}

func (ks *keyStream) init(d []byte) { copy(ks.blk[:], d); ks.n = 0 }

func (ks *keyStream) next() byte {
	if ks.n == len(ks.blk) {
		ks.blk = sha256.Sum256(ks.blk[:])
		ks.n = 0
	}
	b := ks.blk[ks.n]
	ks.n++
	return b
}
