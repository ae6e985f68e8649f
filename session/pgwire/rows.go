package pgwire

import (
	"encoding/binary"
	"errors"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/sqlclass"
)

var errMalformedRow = errors.New("malformed row from upstream")

// appendMaskedDataRow appends to dst a DataRow message equal to body with
// the plan's masked columns rewritten. Untouched columns are copied as they
// are; nothing is allocated when dst has room.
func appendMaskedDataRow(dst, body []byte, plan *mask.Plan) ([]byte, error) {
	if len(body) < 2 {
		return dst, errMalformedRow
	}
	n := int(binary.BigEndian.Uint16(body))
	if subj := plan.SubjectColumns(); len(subj) > 0 {
		setRowSubjects(plan, subj, body[2:], n)
	}
	dst, start := beginMsg(dst, 'D')
	dst = append(dst, body[:2]...)
	p := body[2:]
	for i := 0; i < n; i++ {
		if len(p) < 4 {
			return dst[:start], errMalformedRow
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		var v []byte
		if l >= 0 {
			if int(l) > len(p) {
				return dst[:start], errMalformedRow
			}
			v, p = p[:l], p[l:]
		} else if l != -1 {
			return dst[:start], errMalformedRow
		}
		if !plan.Masked(i) {
			dst = binary.BigEndian.AppendUint32(dst, uint32(l))
			dst = append(dst, v...)
			continue
		}
		lenAt := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		out, null := plan.AppendValue(dst, i, v)
		if null {
			dst = binary.BigEndian.AppendUint32(dst[:lenAt], 0xffffffff)
			continue
		}
		dst = out
		binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	}
	if len(p) != 0 {
		return dst[:start], errMalformedRow
	}
	return finishMsg(dst, start), nil
}

// setRowSubjects starts a row of plan: the raw values of its subject
// columns (ascending), read from the n fields of a DataRow body, decide
// how its dates shift. Before the masking pass, since a subject column may
// come after the dates it decides; a malformed row gives no subject and
// fails in that pass.
func setRowSubjects(plan *mask.Plan, subj []int, p []byte, n int) {
	plan.BeginRow()
	k := 0
	for i := 0; i < n && k < len(subj) && len(p) >= 4; i++ {
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		var v []byte
		if l >= 0 {
			if int(l) > len(p) {
				return
			}
			v, p = p[:l], p[l:]
		}
		if i == subj[k] {
			plan.SetRowSubject(i, v)
			k++
		}
	}
}

// copyPlan masks the rows of a COPY ... TO STDOUT in text or CSV format.
type copyPlan struct {
	plan    *mask.Plan
	csv     bool
	delim   byte
	null    []byte
	quote   byte
	escape  byte
	header  bool // the first row is a header and passes untouched
	scratch []byte
}

func newCopyPlan(plan *mask.Plan, c *sqlclass.Copy) *copyPlan {
	cp := &copyPlan{plan: plan, csv: c.Format == "csv", header: c.Header && c.Format == "csv"}
	if cp.csv {
		cp.delim, cp.quote, cp.escape = ',', '"', '"'
		if c.Quote != "" {
			cp.quote = c.Quote[0]
		}
		if c.Escape != "" {
			cp.escape = c.Escape[0]
		} else {
			cp.escape = cp.quote
		}
		cp.null = []byte(c.Null)
	} else {
		cp.delim = '\t'
		cp.null = []byte(`\N`)
		if c.Null != "" {
			cp.null = []byte(c.Null)
		}
	}
	if c.Delimiter != "" {
		cp.delim = c.Delimiter[0]
	}
	return cp
}

// appendRow appends the masked form of one COPY row (one CopyData body) to dst.
func (cp *copyPlan) appendRow(dst, row []byte) ([]byte, error) {
	if cp.header {
		cp.header = false
		return append(dst, row...), nil
	}
	eol := row[len(row):]
	switch {
	case len(row) >= 2 && row[len(row)-2] == '\r' && row[len(row)-1] == '\n':
		row, eol = row[:len(row)-2], row[len(row)-2:]
	case len(row) >= 1 && row[len(row)-1] == '\n':
		row, eol = row[:len(row)-1], row[len(row)-1:]
	}
	if subj := cp.plan.SubjectColumns(); len(subj) > 0 {
		cp.setRowSubjects(subj, row)
	}
	col := 0
	for {
		var field []byte
		var quoted bool
		var err error
		field, quoted, row, err = cp.nextField(row)
		if err != nil {
			return dst, err
		}
		if col > 0 {
			dst = append(dst, cp.delim)
		}
		if !cp.plan.Masked(col) {
			dst = append(dst, field...)
		} else {
			dst = cp.maskField(dst, col, field, quoted)
		}
		col++
		if row == nil {
			break
		}
	}
	return append(dst, eol...), nil
}

// setRowSubjects starts a row: the decoded values of its subject columns
// (ascending) decide how its dates shift (see setRowSubjects for DataRow).
func (cp *copyPlan) setRowSubjects(subj []int, row []byte) {
	cp.plan.BeginRow()
	k := 0
	for col := 0; k < len(subj); col++ {
		field, quoted, rest, err := cp.nextField(row)
		if err != nil {
			return
		}
		if col == subj[k] {
			var v []byte // NULL
			if quoted || string(field) != string(cp.null) {
				if v = cp.decode(field, quoted); v == nil {
					v = []byte{}
				}
			}
			cp.plan.SetRowSubject(col, v)
			k++
		}
		if rest == nil {
			return
		}
		row = rest
	}
}

// nextField splits off one raw (still escaped) field; rest is nil after the
// last field.
func (cp *copyPlan) nextField(row []byte) (field []byte, quoted bool, rest []byte, err error) {
	if !cp.csv {
		for i := 0; i < len(row); i++ {
			switch row[i] {
			case '\\':
				i++
			case cp.delim:
				return row[:i], false, row[i+1:], nil
			}
		}
		return row, false, nil, nil
	}
	if len(row) > 0 && row[0] == cp.quote {
		for i := 1; i < len(row); i++ {
			switch {
			case row[i] == cp.escape && cp.escape != cp.quote && i+1 < len(row):
				i++
			case row[i] == cp.quote:
				if cp.escape == cp.quote && i+1 < len(row) && row[i+1] == cp.quote {
					i++
					continue
				}
				end := i + 1
				if end == len(row) {
					return row, true, nil, nil
				}
				if row[end] != cp.delim {
					return nil, false, nil, errMalformedRow
				}
				return row[:end], true, row[end+1:], nil
			}
		}
		return nil, false, nil, errMalformedRow
	}
	for i := 0; i < len(row); i++ {
		if row[i] == cp.delim {
			return row[:i], false, row[i+1:], nil
		}
	}
	return row, false, nil, nil
}

// maskField decodes one field, masks the value and encodes the result.
func (cp *copyPlan) maskField(dst []byte, col int, field []byte, quoted bool) []byte {
	var v []byte
	isNull := !quoted && string(field) == string(cp.null)
	if !isNull {
		v = cp.decode(field, quoted)
	}
	start := len(dst)
	out, null := cp.plan.AppendValue(dst, col, v)
	if null {
		return append(dst[:start], cp.null...)
	}
	// Encode the masked value in place: copy it aside, then escape it back.
	cp.scratch = append(cp.scratch[:0], out[start:]...)
	return cp.encode(out[:start], cp.scratch)
}

func (cp *copyPlan) decode(field []byte, quoted bool) []byte {
	buf := cp.scratch[:0]
	if cp.csv {
		if !quoted {
			return append(buf, field...)
		}
		field = field[1 : len(field)-1]
		for i := 0; i < len(field); i++ {
			if (field[i] == cp.escape || field[i] == cp.quote) && i+1 < len(field) {
				i++
			}
			buf = append(buf, field[i])
		}
		cp.scratch = buf
		return buf
	}
	for i := 0; i < len(field); i++ {
		c := field[i]
		if c != '\\' || i+1 == len(field) {
			buf = append(buf, c)
			continue
		}
		i++
		switch field[i] {
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'v':
			buf = append(buf, '\v')
		default:
			buf = append(buf, field[i])
		}
	}
	cp.scratch = buf
	return buf
}

func (cp *copyPlan) encode(dst, v []byte) []byte {
	if cp.csv {
		needQuote := len(v) == 0 && len(cp.null) == 0
		for _, c := range v {
			if c == cp.delim || c == cp.quote || c == '\n' || c == '\r' || c == cp.escape {
				needQuote = true
				break
			}
		}
		if !needQuote && string(v) != string(cp.null) {
			return append(dst, v...)
		}
		dst = append(dst, cp.quote)
		for _, c := range v {
			if c == cp.quote || c == cp.escape {
				dst = append(dst, cp.escape)
			}
			dst = append(dst, c)
		}
		return append(dst, cp.quote)
	}
	for _, c := range v {
		switch c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c == cp.delim {
				dst = append(dst, '\\')
			}
			dst = append(dst, c)
		}
	}
	return dst
}
