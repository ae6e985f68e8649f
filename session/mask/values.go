package mask

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// redactMarker replaces redacted text.
const redactMarker = "[redacted]"

// Hash domains keep digests of different kinds of value apart.
const (
	domText  = 't'
	domInt   = 'i'
	domOID   = 'o'
	domUUID  = 'u'
	domBytes = 'b'
)

// appendScalar appends the masked form of the non-NULL scalar v. ok is false
// when the masked value is NULL (the input was invalid, or the action gives
// NULL for this type); dst may then hold garbage past its original length.
func (pl *Plan) appendScalar(dst []byte, k kind, a Action, typmod int32, bin bool, v []byte) ([]byte, bool) {
	switch a {
	case ActionNull, ActionNone:
		return dst, false
	case ActionDetect:
		return pl.appendDetect(dst, k, typmod, bin, v)
	case ActionDateShift, ActionGeneralize:
		if k == kindJSON || k == kindJSONB {
			break
		}
		return pl.appendDateLike(dst, k, a, typmod, bin, v)
	case ActionPseudonym:
		switch k {
		case kindText, kindBpchar, kindChar:
			return pl.appendPseudonymText(dst, k, typmod, v, pl.curType)
		case kindJSON, kindJSONB:
		default:
			a = ActionHash
		}
	}
	switch k {
	case kindText, kindBpchar:
		return pl.appendText(dst, k, a, typmod, v)
	case kindChar:
		if len(v) > 1 {
			return dst, false
		}
		switch a {
		case ActionRedact:
			return append(dst, '*'), true
		case ActionKeepLast4:
			return append(dst, v...), true
		case ActionHash:
			if len(v) == 0 {
				return dst, true
			}
			return pl.appendShaped(dst, v, -1), true
		}
	case kindInt2, kindInt4, kindInt8, kindOID:
		return pl.appendInteger(dst, k, a, bin, v)
	case kindFloat4, kindFloat8, kindNumeric, kindMoney:
		if a != ActionRedact || !validNumber(k, bin, v) {
			return dst, false
		}
		return appendZero(dst, k, bin), true
	case kindBytea:
		return pl.appendBytea(dst, a, bin, v)
	case kindJSON, kindJSONB, kindXML:
		return pl.appendDocument(dst, k, a, bin, v)
	case kindUUID:
		if a != ActionHash {
			return dst, false
		}
		u := &pl.u16
		if !parseUUID(u, bin, v) {
			return dst, false
		}
		d := pl.digest(domUUID, u[:])
		copy(u[:], d)
		u[6] = u[6]&0x0f | 0x80 // version 8: custom
		u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
		if bin {
			return append(dst, u[:]...), true
		}
		return appendUUIDText(dst, u), true
	}
	return dst, false
}

// appendText masks text, varchar(n), name and char(n) values, which look the
// same in text and binary format.
func (pl *Plan) appendText(dst []byte, k kind, a Action, typmod int32, v []byte) ([]byte, bool) {
	limit := charLimit(k, typmod)
	switch a {
	case ActionRedact:
		n := len(redactMarker)
		if limit >= 0 && limit < n {
			n = limit
		}
		dst = append(dst, redactMarker[:n]...)
		if k == kindBpchar {
			for ; n < limit; n++ {
				dst = append(dst, ' ')
			}
		}
		return dst, true
	case ActionKeepLast4:
		return appendKeepLast4(dst, v), true
	case ActionHash:
		body := v
		if k == kindBpchar {
			// char(n) ignores trailing spaces: hash what compares equal.
			for len(body) > 0 && body[len(body)-1] == ' ' {
				body = body[:len(body)-1]
			}
		}
		start := len(dst)
		dst = pl.appendShaped(dst, body, -1)
		if k == kindBpchar && limit > 0 {
			for n := utf8.RuneCount(dst[start:]); n < limit; n++ {
				dst = append(dst, ' ')
			}
		}
		return dst, true
	}
	return dst, false
}

// isMaskable reports whether r is a letter or digit, which masking replaces.
func isMaskable(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r|0x20 && r|0x20 <= 'z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// appendKeepLast4 replaces every letter and digit of s but the last four
// with '*', keeping separators. Invalid UTF-8 bytes are always replaced.
func appendKeepLast4(dst, s []byte) []byte {
	total := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 || isMaskable(r) {
			total++
		}
		i += n
	}
	seen := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			seen++
			dst = append(dst, '*')
		case isMaskable(r):
			seen++
			if seen > total-4 {
				dst = append(dst, s[i:i+n]...)
			} else {
				dst = append(dst, '*')
			}
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// appendShaped appends a keyed pseudonym of s with the same shape: letters
// become letters of the same case, digits become digits, everything else is
// kept. Invalid UTF-8 bytes become letters. The output has as many
// characters as s. If seed >= 0 it is mixed into the digest domain.
func (pl *Plan) appendShaped(dst, s []byte, seed int) []byte {
	dom := byte(domText)
	if seed >= 0 {
		dom += byte(seed)
	}
	var ks keyStream
	ks.init(pl.digest(dom, s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case 'a' <= c && c <= 'z':
				c = 'a' + ks.next()%26
			case 'A' <= c && c <= 'Z':
				c = 'A' + ks.next()%26
			case '0' <= c && c <= '9':
				c = '0' + ks.next()%10
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, 'a'+ks.next()%26)
		case unicode.IsUpper(r):
			dst = append(dst, 'A'+ks.next()%26)
		case unicode.IsLetter(r):
			dst = append(dst, 'a'+ks.next()%26)
		case unicode.IsDigit(r):
			dst = append(dst, '0'+ks.next()%10)
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// appendInteger masks int2, int4, int8 and oid values.
func (pl *Plan) appendInteger(dst []byte, k kind, a Action, bin bool, v []byte) ([]byte, bool) {
	x, ok := parseInteger(k, bin, v)
	if !ok {
		return dst, false
	}
	switch a {
	case ActionRedact:
		x = 0
	case ActionKeepLast4:
		x %= 10000
	case ActionHash:
		b := &pl.u16
		if k == kindOID {
			binary.BigEndian.PutUint32(b[:4], uint32(x))
			d := pl.digest(domOID, b[:4])
			x = int64(binary.BigEndian.Uint32(d))
		} else {
			binary.BigEndian.PutUint64(b[:8], uint64(x))
			d := pl.digest(domInt, b[:8])
			switch k {
			case kindInt2:
				x = int64(binary.BigEndian.Uint16(d) & 0x7fff)
			case kindInt4:
				x = int64(binary.BigEndian.Uint32(d) & 0x7fffffff)
			default:
				x = int64(binary.BigEndian.Uint64(d) & math.MaxInt64)
			}
		}
	default:
		return dst, false
	}
	if !bin {
		return strconv.AppendInt(dst, x, 10), true
	}
	switch k {
	case kindInt2:
		return binary.BigEndian.AppendUint16(dst, uint16(x)), true
	case kindInt4, kindOID:
		return binary.BigEndian.AppendUint32(dst, uint32(x)), true
	}
	return binary.BigEndian.AppendUint64(dst, uint64(x)), true
}

// parseInteger decodes an integer of kind k; oid values are unsigned.
func parseInteger(k kind, bin bool, v []byte) (int64, bool) {
	if bin {
		switch {
		case k == kindInt2 && len(v) == 2:
			return int64(int16(binary.BigEndian.Uint16(v))), true
		case k == kindInt4 && len(v) == 4:
			return int64(int32(binary.BigEndian.Uint32(v))), true
		case k == kindOID && len(v) == 4:
			return int64(binary.BigEndian.Uint32(v)), true
		case k == kindInt8 && len(v) == 8:
			return int64(binary.BigEndian.Uint64(v)), true
		}
		return 0, false
	}
	if len(v) == 0 || len(v) > 20 {
		return 0, false
	}
	neg := false
	s := v
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var u uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	var lo, hi int64
	switch k {
	case kindInt2:
		lo, hi = math.MinInt16, math.MaxInt16
	case kindInt4:
		lo, hi = math.MinInt32, math.MaxInt32
	case kindOID:
		lo, hi = math.MinInt32, math.MaxUint32 // oidin accepts negative int4 spellings
	default:
		lo, hi = math.MinInt64, math.MaxInt64
	}
	if neg {
		if u > uint64(-(lo+1))+1 {
			return 0, false
		}
		x := -int64(u-1) - 1
		if k == kindOID {
			x = int64(uint32(int32(x)))
		}
		return x, true
	}
	if u > uint64(hi) {
		return 0, false
	}
	return int64(u), true
}

// validNumber checks the framing of float, numeric and money values, so a
// garbage input is not turned into a plausible zero.
func validNumber(k kind, bin bool, v []byte) bool {
	if bin {
		switch k {
		case kindFloat4:
			return len(v) == 4
		case kindFloat8, kindMoney:
			return len(v) == 8
		case kindNumeric:
			if len(v) < 8 {
				return false
			}
			n := int(binary.BigEndian.Uint16(v))
			return len(v) == 8+2*n
		}
		return false
	}
	return len(v) > 0
}

func appendZero(dst []byte, k kind, bin bool) []byte {
	if !bin {
		if k == kindMoney {
			return append(dst, "0.00"...)
		}
		return append(dst, '0')
	}
	switch k {
	case kindFloat4:
		return append(dst, 0, 0, 0, 0)
	case kindNumeric: // ndigits, weight, sign, dscale
		return append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
}

const hexDigits = "0123456789abcdef"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func parseUUID(u *[16]byte, bin bool, v []byte) bool {
	if bin {
		if len(v) != 16 {
			return false
		}
		copy(u[:], v)
		return true
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '-' || c == '{' || c == '}' {
			continue
		}
		h, ok := unhex(c)
		if !ok || n == 32 {
			return false
		}
		if n%2 == 0 {
			u[n/2] = h << 4
		} else {
			u[n/2] |= h
		}
		n++
	}
	return n == 32
}

func appendUUIDText(dst []byte, u *[16]byte) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}

// appendBytea masks bytea values: redact gives an empty value, hash the
// 32-byte keyed digest of the bytes.
func (pl *Plan) appendBytea(dst []byte, a Action, bin bool, v []byte) ([]byte, bool) {
	raw := v
	if !bin {
		var ok bool
		pl.tmp, ok = decodeByteaText(pl.tmp[:0], v)
		if !ok {
			return dst, false
		}
		raw = pl.tmp
	}
	var out []byte
	switch a {
	case ActionRedact:
	case ActionHash:
		out = pl.digest(domBytes, raw)
	default:
		return dst, false
	}
	if bin {
		return append(dst, out...), true
	}
	dst = append(dst, '\\', 'x')
	for _, b := range out {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst, true
}

// decodeByteaText decodes bytea's hex ("\x...") and escape output formats.
func decodeByteaText(dst, v []byte) ([]byte, bool) {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		s := v[2:]
		for i := 0; i < len(s); {
			if s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r' {
				i++
				continue
			}
			if i+1 >= len(s) {
				return dst, false
			}
			hi, ok1 := unhex(s[i])
			lo, ok2 := unhex(s[i+1])
			if !ok1 || !ok2 {
				return dst, false
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		}
		return dst, true
	}
	for i := 0; i < len(v); {
		if v[i] != '\\' {
			dst = append(dst, v[i])
			i++
			continue
		}
		if i+1 < len(v) && v[i+1] == '\\' {
			dst = append(dst, '\\')
			i += 2
			continue
		}
		if i+3 < len(v) && isOct(v[i+1]) && isOct(v[i+2]) && isOct(v[i+3]) && v[i+1] <= '3' {
			dst = append(dst, (v[i+1]-'0')<<6|(v[i+2]-'0')<<3|(v[i+3]-'0'))
			i += 4
			continue
		}
		return dst, false
	}
	return dst, true
}

func isOct(c byte) bool { return '0' <= c && c <= '7' }
