package mask

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Subjects names, per table, the column whose value identifies the person
// a row is about (the patient's id). With it, date-shift moves each
// person's dates by that person's own number of days, derived with the
// pseudonym key from the subject's value: the same in every query,
// session and node that shares the key, so intervals within one person's
// record survive and dates of different people cannot be lined up. It is
// immutable and safe for concurrent use.
type Subjects struct {
	tables []subjectTable
}

// subjectTable is one entry, lower-cased: table in schema (any schema
// when schema is "") names its subject in column.
type subjectTable struct {
	schema, table, column string
}

// NewSubjects compiles a resource's subjects: keys are tables,
// "schema.table" or "table" (any schema; a qualified entry wins over an
// unqualified one), values the column that names the person. Names are
// compared case-insensitively, as masking rules are. An empty map gives
// nil. Every problem is reported, joined.
func NewSubjects(tables map[string]string) (*Subjects, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	s := &Subjects{}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(tables)) {
		col := tables[key]
		parts := strings.Split(key, ".")
		if len(parts) > 2 || slices.ContainsFunc(parts, blank) {
			errs = append(errs, fmt.Errorf("subjects: table %q: want schema.table or table", key))
			continue
		}
		if blank(col) || strings.Contains(col, ".") {
			errs = append(errs, fmt.Errorf("subjects: %s: column %q: want a column name of the table", key, col))
			continue
		}
		t := subjectTable{table: strings.ToLower(parts[len(parts)-1]), column: strings.ToLower(col)}
		if len(parts) == 2 {
			t.schema = strings.ToLower(parts[0])
		}
		if slices.ContainsFunc(s.tables, func(o subjectTable) bool { return o.schema == t.schema && o.table == t.table }) {
			errs = append(errs, fmt.Errorf("subjects: table %q is named twice (names are compared ignoring case)", key))
			continue
		}
		s.tables = append(s.tables, t)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// subjectOf returns the source ("schema.table.column") of the column that
// names the subject of source's table, or "" when the table has none.
func (s *Subjects) subjectOf(source string) string {
	if s == nil {
		return ""
	}
	dot := strings.LastIndexByte(source, '.')
	if dot <= 0 {
		return ""
	}
	rel := source[:dot] // schema.table
	sdot := strings.IndexByte(rel, '.')
	if sdot <= 0 {
		return ""
	}
	schema, table := rel[:sdot], rel[sdot+1:]
	found := -1
	for i, t := range s.tables {
		if !strings.EqualFold(table, t.table) {
			continue
		}
		if t.schema == "" {
			if found < 0 {
				found = i
			}
			continue
		}
		if strings.EqualFold(schema, t.schema) {
			found = i
			break
		}
	}
	if found < 0 {
		return ""
	}
	return rel + "." + s.tables[found].column
}

// rowSubjects is a plan's per-row subject state (see [Plan.BeginRow]).
type rowSubjects struct {
	cols   []int // output columns that carry a subject, ascending
	shifts []int // this row's shift per entry of cols; 0: none (NULL, or not given)
	// use says, per output column, which shift its dates move by:
	// useProfile, useNone, or 1 + an index into cols.
	use []int
	cur int // use of the value being masked
	// buf and raw hold a subject's canonical form while it is hashed.
	buf, raw []byte
}

const (
	useProfile = 0  // the plan-wide shift ([Plan.SetSubject]; the profile's without)
	useNone    = -1 // the table has a subject the row does not carry: no date can be shifted
)

// at notes that the value being masked is column i's.
func (s *rowSubjects) at(i int) {
	if s.use != nil {
		s.cur = s.use[i]
	}
}

// bindSubjects finds, for each column that may shift dates and whose
// table has a subject, the output column carrying that subject from the
// same row: one whose source is the subject column and whose scan is the
// column's own. A subject is found by where a column's values come from,
// never by its name, so SELECT 1 AS id, dob FROM patients names no subject;
// and only within one scan, so FROM patients p, patients q does not shift
// q's dates by p's subject.
func (pl *Plan) bindSubjects(cols []Column, subjects *Subjects) {
	var use []int
	for i, c := range cols {
		pc := &pl.cols[i]
		if c.Source == "" || !pl.mayShift(pc) {
			continue
		}
		want := subjects.subjectOf(c.Source)
		if want == "" {
			continue
		}
		if use == nil {
			use = make([]int, len(cols))
		}
		j := -1
		if c.Scan != 0 {
			j = slices.IndexFunc(cols, func(o Column) bool { return o.Scan == c.Scan && strings.EqualFold(o.Source, want) })
		}
		if j < 0 {
			use[i] = useNone
			if pc.reason == "" && pc.action == ActionDateShift {
				pc.reason = "date-shift per subject: the result has no " + want + " of the same row, so its dates are NULL (select that column to get shifted dates)"
			}
			continue
		}
		k := slices.Index(pl.subj.cols, j)
		if k < 0 {
			pl.subj.cols = append(pl.subj.cols, j)
			k = len(pl.subj.cols) - 1
		}
		use[i] = 1 + k
	}
	if use == nil {
		return
	}
	// Slots in column order, so that SubjectColumns is ascending.
	order := slices.Clone(pl.subj.cols)
	slices.Sort(pl.subj.cols)
	for i, u := range use {
		if u > 0 {
			use[i] = 1 + slices.Index(pl.subj.cols, order[u-1])
		}
	}
	pl.subj.use = use
	pl.subj.shifts = make([]int, len(pl.subj.cols))
}

// mayShift reports whether a value of column c may be date-shifted: the
// column's action is date-shift, or it is scanned and a class of findings
// is date-shifted (a JSON string that is a date, or a column found by its
// values to hold dates).
func (pl *Plan) mayShift(c *planCol) bool {
	if !c.masked || c.mode == modeDerived || c.mode == modeWithhold {
		return false
	}
	if c.action == ActionDateShift {
		return true
	}
	return c.action == ActionDetect && slices.Contains(pl.classActions[:], ActionDateShift)
}

// SubjectColumns lists, ascending, the result columns whose values name
// the person a row is about, for date-shift per subject; nil when no
// column needs them. For each row the proxy calls [Plan.BeginRow], then
// [Plan.SetRowSubject] with the raw value of each of these columns, then
// [Plan.AppendValue] for the row's values. A date that needs a subject the
// row does not give (a NULL, a value of a type and format that cannot be
// read, or no SetRowSubject call) is NULL; in text it is redacted.
func (pl *Plan) SubjectColumns() []int {
	if pl == nil {
		return nil
	}
	return pl.subj.cols
}

// BeginRow starts a row: the subjects of the row before are forgotten.
func (pl *Plan) BeginRow() {
	if pl != nil {
		clear(pl.subj.shifts)
	}
}

// SetRowSubject gives v, the raw value (as received, nil for NULL) of
// column i, one of [Plan.SubjectColumns], for the row being masked. The
// value is read into a canonical form first, so that the same person gets
// the same shift whatever the column's type and format: integers in
// decimal (int4 7 in binary and "7" in text are the same subject, as are
// an int8 7 and a varchar "7"), char(n) without its padding, uuid in
// PostgreSQL's text form, bytea as "\x" and hex; other types by their
// text form (in binary format they give no subject). v is not kept.
func (pl *Plan) SetRowSubject(i int, v []byte) {
	if pl == nil || pl.key == nil {
		return
	}
	k := slices.Index(pl.subj.cols, i)
	if k < 0 {
		return
	}
	pl.subj.shifts[k] = 0
	if v == nil {
		return
	}
	c := &pl.cols[i]
	canon, ok := pl.subj.canonical(c.kind, c.array, c.binary, v)
	if !ok {
		return
	}
	pl.subj.shifts[k] = pl.shiftFor(canon)
}

// shiftFor is the number of days the dates of subject move back:
// 1..shiftDays, from the keyed digest of the subject.
func (pl *Plan) shiftFor(subject []byte) int {
	d := pl.digest(domShift, subject)
	return 1 + int(binary.BigEndian.Uint32(d)%uint32(max(pl.shiftDays, 1)))
}

// canonical returns the subject value v of a column of kind k in the form
// it has in text format, with what compares equal written alike. The
// result may alias v or s.buf.
func (s *rowSubjects) canonical(k kind, array, bin bool, v []byte) ([]byte, bool) {
	if array {
		return nil, false
	}
	switch k {
	case kindInt2, kindInt4, kindInt8, kindOID:
		x, ok := parseInteger(k, bin, v)
		if !ok {
			return nil, false
		}
		s.buf = strconv.AppendInt(s.buf[:0], x, 10)
		return s.buf, true
	case kindText, kindChar:
		return v, true
	case kindBpchar:
		for len(v) > 0 && v[len(v)-1] == ' ' {
			v = v[:len(v)-1]
		}
		return v, true
	case kindUUID:
		var u [16]byte
		if !parseUUID(&u, bin, v) {
			return nil, false
		}
		s.buf = appendUUIDText(s.buf[:0], &u)
		return s.buf, true
	case kindBytea:
		raw := v
		if !bin {
			var ok bool
			if s.raw, ok = decodeByteaText(s.raw[:0], v); !ok {
				return nil, false
			}
			raw = s.raw
		}
		s.buf = appendByteaHex(s.buf[:0], raw)
		return s.buf, true
	}
	if bin {
		return nil, false
	}
	return v, true
}
