package mask

import (
	"unicode/utf16"
	"unicode/utf8"
)

// jsonRedacted is the redacted form of a json or jsonb value: a JSON string.
const jsonRedacted = `"` + redactMarker + `"`

// appendDocument masks json, jsonb and xml values. A JSON document that is a
// single string keeps being a string; other documents become NULL unless
// the action is redact.
func (pl *Plan) appendDocument(dst []byte, k kind, a Action, bin bool, v []byte) ([]byte, bool) {
	if k == kindJSONB && bin {
		if len(v) == 0 || v[0] != 1 {
			return dst, false
		}
		v = v[1:]
		dst = append(dst, 1)
	}
	if k == kindXML {
		if a != ActionRedact {
			return dst, false
		}
		return append(dst, redactMarker...), true
	}
	if a == ActionRedact {
		return append(dst, jsonRedacted...), true
	}
	if a == ActionDetect {
		return pl.appendJSONDetected(dst, v)
	}
	var ok bool
	pl.tmp, ok = decodeJSONString(pl.tmp[:0], v)
	if !ok {
		return dst, false
	}
	switch a {
	case ActionKeepLast4:
		pl.tmp2 = appendKeepLast4(pl.tmp2[:0], pl.tmp)
	case ActionHash:
		pl.tmp2 = pl.appendShaped(pl.tmp2[:0], pl.tmp, -1)
	case ActionPseudonym:
		pl.tmp2 = pl.appendPseudonymSpan(pl.tmp2[:0], pl.tmp, pl.curType)
	case ActionDateShift, ActionGeneralize:
		var ok bool
		if pl.tmp2, ok = pl.appendDateLikeText(pl.tmp2[:0], kindText, a, -1, pl.tmp); !ok {
			return dst, false
		}
	default:
		return dst, false
	}
	return appendJSONString(dst, pl.tmp2), true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// decodeJSONString decodes v, which must be a JSON string with optional
// surrounding whitespace, appending its UTF-8 content to dst.
func decodeJSONString(dst, v []byte) ([]byte, bool) {
	i := 0
	for i < len(v) && isJSONSpace(v[i]) {
		i++
	}
	if i == len(v) || v[i] != '"' {
		return dst, false
	}
	i++
	for {
		if i >= len(v) {
			return dst, false
		}
		c := v[i]
		switch {
		case c == '"':
			i++
			for i < len(v) && isJSONSpace(v[i]) {
				i++
			}
			return dst, i == len(v)
		case c < 0x20:
			return dst, false
		case c != '\\':
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(v) {
			return dst, false
		}
		e := v[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(v, i)
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(v, i+2); ok && i+1 < len(v) && v[i] == '\\' && v[i+1] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
}

func hex4(v []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(v) {
		return 0, false
	}
	var r rune
	for _, c := range v[i : i+4] {
		h, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(h)
	}
	return r, true
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == 0: // jsonb refuses \u0000
			dst = append(dst, "\uFFFD"...)
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			dst = append(dst, c)
		}
		i++
	}
	return append(dst, '"')
}
