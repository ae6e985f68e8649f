package mask

import (
	"encoding/binary"
	"strings"
	"time"
)

// PostgreSQL dates count days, and timestamps microseconds, from 2000-01-01.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const usPerDay = 86400 * 1000000

// dateOrder returns the field order for text dates under DateStyle:
// 'M' (MDY, the default), 'D' (DMY) or 'Y' (YMD).
func dateOrder(style string) byte {
	s := strings.ToUpper(style)
	switch {
	case strings.Contains(s, "DMY") || strings.Contains(s, "GERMAN") || strings.Contains(s, "EURO"):
		return 'D'
	case strings.Contains(s, "YMD"):
		return 'Y'
	}
	return 'M'
}

// textDate is a date at the start of a text value and how it was written.
type textDate struct {
	y, m, d int
	end     int  // bytes used
	sep     byte // '-', '/' or '.'
	order   byte // 'Y' (year first), 'M' or 'D'
	width   [3]int
}

// parseTextDate reads a date at the start of v: YYYY-MM-DD, MM/DD/YYYY,
// DD.MM.YYYY, MM-DD-YYYY, 2-digit years; order breaks ties.
func parseTextDate(v []byte, order byte) (td textDate, ok bool) {
	var n [3]int
	var w [3]int
	p := 0
	for f := 0; f < 3; f++ {
		start := p
		for p < len(v) && isDigit(v[p]) && p-start < 4 {
			n[f] = n[f]*10 + int(v[p]-'0')
			p++
		}
		w[f] = p - start
		if w[f] == 0 {
			return td, false
		}
		if f < 2 {
			if p >= len(v) || (v[p] != '-' && v[p] != '/' && v[p] != '.') {
				return td, false
			}
			if f == 1 && v[p] != td.sep {
				return td, false
			}
			td.sep = v[p]
			p++
		}
	}
	if p < len(v) && isDigit(v[p]) {
		return td, false
	}
	td.end, td.width = p, w
	switch {
	case w[0] == 4:
		td.order, td.y, td.m, td.d = 'Y', n[0], n[1], n[2]
	case order == 'D' || n[0] > 12:
		td.order, td.d, td.m, td.y = 'D', n[0], n[1], n[2]
	default:
		td.order, td.m, td.d, td.y = 'M', n[0], n[1], n[2]
	}
	if td.order != 'Y' && w[2] == 2 {
		td.y += 1900
		if td.y < 1930 {
			td.y += 100
		}
	}
	if td.m < 1 || td.m > 12 || td.d < 1 || td.d > 31 || td.y < 1 || td.y > 9999 {
		return td, false
	}
	return td, true
}

func appendPadded(dst []byte, n, width int) []byte {
	var b [4]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, b[:width]...)
}

// appendTextDate writes y-m-d in the layout td was read in.
func appendTextDate(dst []byte, td textDate, y, m, d int) []byte {
	yw := td.width[0]
	if td.order != 'Y' {
		yw = td.width[2]
	}
	if yw == 2 {
		y %= 100
	} else {
		yw = 4
	}
	mw, dw := 2, 2
	switch td.order {
	case 'Y':
		mw, dw = max(td.width[1], 1), max(td.width[2], 1)
		if m >= 10 {
			mw = 2
		}
		if d >= 10 {
			dw = 2
		}
		dst = appendPadded(dst, y, yw)
		dst = append(dst, td.sep)
		dst = appendPadded(dst, m, mw)
		dst = append(dst, td.sep)
		return appendPadded(dst, d, dw)
	case 'D':
		dw, mw = td.width[0], td.width[1]
		dw, mw = fitWidth(d, dw), fitWidth(m, mw)
		dst = appendPadded(dst, d, dw)
		dst = append(dst, td.sep)
		dst = appendPadded(dst, m, mw)
	default:
		mw, dw = fitWidth(m, td.width[0]), fitWidth(d, td.width[1])
		dst = appendPadded(dst, m, mw)
		dst = append(dst, td.sep)
		dst = appendPadded(dst, d, dw)
	}
	dst = append(dst, td.sep)
	return appendPadded(dst, y, yw)
}

func fitWidth(n, w int) int {
	if n >= 10 || w > 2 {
		return 2
	}
	return max(w, 1)
}

// shiftDate moves y-m-d back by days.
// Dates that would fall before year 1 move forward instead, so text dates
// need no BC suffix.
func shiftDate(y, m, d, days int) (int, int, int) {
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -days)
	if t.Year() < 1 {
		t = time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
	}
	return t.Year(), int(t.Month()), t.Day()
}

// dateShift returns the number of days dates of the value being masked
// move back: its row's subject's shift, or the plan-wide one for a table
// without a subject column. ok is false when the table has a subject the
// row does not give: then no shift is safe (the plan-wide one would line
// up the dates of different people), and the date is withheld.
func (pl *Plan) dateShift() (days int, ok bool) {
	switch k := pl.subj.cur; {
	case k == useProfile:
		if !pl.shiftSet {
			pl.SetSubject(nil)
		}
		return pl.shift, true
	case k > 0 && pl.subj.shifts[k-1] > 0:
		return pl.subj.shifts[k-1], true
	}
	return 0, false
}

// appendDateLike applies date-shift and generalize. What generalize means
// depends on the type and, for text, on the column's class.
func (pl *Plan) appendDateLike(dst []byte, k kind, a Action, typmod int32, bin bool, v []byte) ([]byte, bool) {
	switch k {
	case kindDate:
		var days int64
		if bin {
			if len(v) != 4 {
				return dst, false
			}
			days = int64(int32(binary.BigEndian.Uint32(v)))
			if days == 0x7fffffff || days == -0x80000000 { // infinity
				return append(dst, v...), true
			}
			t := pgEpoch.AddDate(0, 0, int(days))
			y, m, d, ok := pl.moveDate(a, t.Year(), int(t.Month()), t.Day())
			if !ok {
				return dst, false
			}
			days = int64(time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Sub(pgEpoch).Hours() / 24)
			return binary.BigEndian.AppendUint32(dst, uint32(int32(days))), true
		}
		if string(v) == "infinity" || string(v) == "-infinity" {
			return append(dst, v...), true
		}
		td, ok := parseTextDate(v, dateOrder(pl.params.DateStyle))
		if !ok || td.end != len(v) {
			return dst, false
		}
		y, m, d, ok := pl.moveDate(a, td.y, td.m, td.d)
		if !ok {
			return dst, false
		}
		return appendTextDate(dst, td, y, m, d), true
	case kindTimestamp, kindTimestamptz:
		if bin {
			if len(v) != 8 {
				return dst, false
			}
			us := int64(binary.BigEndian.Uint64(v))
			if us == 1<<63-1 || us == -1<<63 {
				return append(dst, v...), true
			}
			day := us / usPerDay
			rest := us % usPerDay
			if rest < 0 {
				day--
				rest += usPerDay
			}
			t := pgEpoch.AddDate(0, 0, int(day))
			y, m, d, ok := pl.moveDate(a, t.Year(), int(t.Month()), t.Day())
			if !ok {
				return dst, false
			}
			nd := int64(time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Sub(pgEpoch).Hours() / 24)
			if a == ActionGeneralize {
				rest = 0
			}
			return binary.BigEndian.AppendUint64(dst, uint64(nd*usPerDay+rest)), true
		}
		if string(v) == "infinity" || string(v) == "-infinity" {
			return append(dst, v...), true
		}
		td, ok := parseTextDate(v, dateOrder(pl.params.DateStyle))
		if !ok {
			return dst, false
		}
		y, m, d, ok := pl.moveDate(a, td.y, td.m, td.d)
		if !ok {
			return dst, false
		}
		dst = appendTextDate(dst, td, y, m, d)
		rest := v[td.end:]
		if a == ActionGeneralize {
			// 10:30:00.5+02 -> 00:00:00+02
			if len(rest) >= 9 && rest[0] == ' ' && rest[3] == ':' && rest[6] == ':' {
				dst = append(dst, " 00:00:00"...)
				q := 9
				for q < len(rest) && (isDigit(rest[q]) || rest[q] == '.' && q == 9) {
					q++
				}
				return append(dst, rest[q:]...), true
			}
		}
		return append(dst, rest...), true
	case kindInt2, kindInt4, kindInt8:
		if a != ActionGeneralize {
			return dst, false
		}
		x, ok := parseInteger(k, bin, v)
		if !ok {
			return dst, false
		}
		if pl.curType == TypeZip {
			x = x / 100 * 100
		} else if x > 89 {
			x = 90
		}
		if !bin {
			return appendInt(dst, x), true
		}
		switch k {
		case kindInt2:
			return binary.BigEndian.AppendUint16(dst, uint16(x)), true
		case kindInt4:
			return binary.BigEndian.AppendUint32(dst, uint32(x)), true
		}
		return binary.BigEndian.AppendUint64(dst, uint64(x)), true
	case kindText, kindBpchar:
		return pl.appendDateLikeText(dst, k, a, typmod, v)
	}
	return dst, false
}

// moveDate generalizes or shifts y-m-d; ok is false when a shift is due
// and none is safe (dateShift).
func (pl *Plan) moveDate(a Action, y, m, d int) (ny, nm, nd int, ok bool) {
	if a == ActionGeneralize {
		return y, 1, 1, true
	}
	days, ok := pl.dateShift()
	if !ok {
		return 0, 0, 0, false
	}
	ny, nm, nd = shiftDate(y, m, d, days)
	return ny, nm, nd, true
}

// appendDateLikeText generalizes or shifts a text value: dates keep their
// layout, ZIP codes keep three digits, ages over 89 become 90; anything
// else is redacted.
func (pl *Plan) appendDateLikeText(dst []byte, k kind, a Action, typmod int32, v []byte) ([]byte, bool) {
	body := v
	for len(body) > 0 && body[len(body)-1] == ' ' {
		body = body[:len(body)-1]
	}
	start := len(dst)
	if td, ok := parseTextDate(body, dateOrder(pl.params.DateStyle)); ok && td.end == len(body) {
		y, m, d, ok := pl.moveDate(a, td.y, td.m, td.d)
		if !ok {
			return pl.appendText(dst, k, ActionRedact, typmod, v)
		}
		dst = appendTextDate(dst, td, y, m, d)
	} else if a == ActionGeneralize && isZip(body) {
		dst = append(dst, body[:3]...)
		dst = append(dst, "00"...)
		if len(body) == 10 {
			dst = append(dst, "-0000"...)
		}
	} else if a == ActionGeneralize && len(body) > 0 && len(body) <= 3 && atoi(body) >= 0 {
		if atoi(body) > 89 {
			dst = append(dst, "90"...)
		} else {
			dst = append(dst, body...)
		}
	} else {
		return pl.appendText(dst, k, ActionRedact, typmod, v)
	}
	if k == kindBpchar {
		for n := len(dst) - start; n < charLimit(k, typmod); n++ {
			dst = append(dst, ' ')
		}
	}
	return dst, true
}

func isZip(b []byte) bool {
	if len(b) != 5 && len(b) != 10 {
		return false
	}
	for i, c := range b {
		if i == 5 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func appendInt(dst []byte, x int64) []byte {
	if x < 0 {
		dst = append(dst, '-')
		x = -x
	}
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + x%10)
		x /= 10
		if x == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
