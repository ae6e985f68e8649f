package mask

import (
	"errors"
	"fmt"
)

// maxJSONDepth bounds nesting so a hostile document cannot exhaust the stack.
const maxJSONDepth = 256

// ErrJSON is returned for a document that is not valid JSON.
var ErrJSON = errors.New("mask: invalid JSON")

// AppendJSON appends doc with its PHI masked, keeping every JSON type: a
// string stays a string, a number a number. Values under keys that name
// PHI ("ssn", "birthDate", "phone") are masked whole with the profile's
// class actions; every other string is scanned by the content detectors.
// Without content detection in the profile the document is copied.
func (pl *Plan) AppendJSON(dst, doc []byte) ([]byte, error) {
	if pl == nil || pl.det == nil {
		return append(dst, doc...), nil
	}
	mark := len(dst)
	out, i, err := pl.jsonValue(dst, doc, skipJSONSpace(doc, 0), TypeNone, 0)
	if err == nil {
		if i = skipJSONSpace(doc, i); i != len(doc) {
			err = fmt.Errorf("%w: trailing data at byte %d", ErrJSON, i)
		}
	}
	if err != nil {
		return dst[:mark], err
	}
	return out, nil
}

// appendJSONDetected masks a json/jsonb column value; invalid JSON becomes NULL.
func (pl *Plan) appendJSONDetected(dst, v []byte) ([]byte, bool) {
	out, err := pl.AppendJSON(dst, v)
	return out, err == nil
}

func skipJSONSpace(doc []byte, i int) int {
	for i < len(doc) && isJSONSpace(doc[i]) {
		i++
	}
	return i
}

func (pl *Plan) jsonValue(dst, doc []byte, i int, class EntityType, depth int) ([]byte, int, error) {
	if i >= len(doc) {
		return dst, i, fmt.Errorf("%w: unexpected end", ErrJSON)
	}
	if depth > maxJSONDepth {
		return dst, i, fmt.Errorf("%w: nested deeper than %d", ErrJSON, maxJSONDepth)
	}
	switch c := doc[i]; {
	case c == '{':
		dst = append(dst, '{')
		i = skipJSONSpace(doc, i+1)
		if i < len(doc) && doc[i] == '}' {
			return append(dst, '}'), i + 1, nil
		}
		for {
			if i >= len(doc) || doc[i] != '"' {
				return dst, i, fmt.Errorf("%w: want a key at byte %d", ErrJSON, i)
			}
			end, ok := jsonStringEnd(doc, i)
			if !ok {
				return dst, i, fmt.Errorf("%w: bad string at byte %d", ErrJSON, i)
			}
			key := doc[i:end]
			dst = append(dst, key...)
			keyClass := class
			if t := pl.jsonKeyClass(key); t != TypeNone {
				keyClass = t
			}
			i = skipJSONSpace(doc, end)
			if i >= len(doc) || doc[i] != ':' {
				return dst, i, fmt.Errorf("%w: want ':' at byte %d", ErrJSON, i)
			}
			dst = append(dst, ':')
			var err error
			if dst, i, err = pl.jsonValue(dst, doc, skipJSONSpace(doc, i+1), keyClass, depth+1); err != nil {
				return dst, i, err
			}
			i = skipJSONSpace(doc, i)
			if i < len(doc) && doc[i] == ',' {
				dst = append(dst, ',')
				i = skipJSONSpace(doc, i+1)
				continue
			}
			if i < len(doc) && doc[i] == '}' {
				return append(dst, '}'), i + 1, nil
			}
			return dst, i, fmt.Errorf("%w: want ',' or '}' at byte %d", ErrJSON, i)
		}
	case c == '[':
		dst = append(dst, '[')
		i = skipJSONSpace(doc, i+1)
		if i < len(doc) && doc[i] == ']' {
			return append(dst, ']'), i + 1, nil
		}
		for {
			var err error
			if dst, i, err = pl.jsonValue(dst, doc, i, class, depth+1); err != nil {
				return dst, i, err
			}
			i = skipJSONSpace(doc, i)
			if i < len(doc) && doc[i] == ',' {
				dst = append(dst, ',')
				i = skipJSONSpace(doc, i+1)
				continue
			}
			if i < len(doc) && doc[i] == ']' {
				return append(dst, ']'), i + 1, nil
			}
			return dst, i, fmt.Errorf("%w: want ',' or ']' at byte %d", ErrJSON, i)
		}
	case c == '"':
		end, ok := jsonStringEnd(doc, i)
		if !ok {
			return dst, i, fmt.Errorf("%w: bad string at byte %d", ErrJSON, i)
		}
		return pl.jsonString(dst, doc[i:end], class), end, nil
	case c == '-' || isDigit(c):
		end, ok := jsonNumberEnd(doc, i)
		if !ok {
			return dst, i, fmt.Errorf("%w: bad number at byte %d", ErrJSON, i)
		}
		return pl.jsonNumber(dst, doc[i:end], class), end, nil
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(doc)-i >= len(lit) && string(doc[i:i+len(lit)]) == lit {
				return append(dst, lit...), i + len(lit), nil
			}
		}
	}
	return dst, i, fmt.Errorf("%w: unexpected byte %q at %d", ErrJSON, doc[i], i)
}

// jsonStringEnd returns the index after the string starting at doc[i]. It
// checks escapes as well as the end, so that a document with a bad escape is
// refused whole rather than redacted string by string.
func jsonStringEnd(doc []byte, i int) (int, bool) {
	for j := i + 1; j < len(doc); j++ {
		switch c := doc[j]; {
		case c == '\\':
			if j+1 >= len(doc) {
				return 0, false
			}
			switch doc[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if _, ok := hex4(doc, j+2); !ok {
					return 0, false
				}
				j += 5
			default:
				return 0, false
			}
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return 0, false
		}
	}
	return 0, false
}

// jsonNumberEnd returns the index after the number starting at doc[i]:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, JSON's grammar, so that
// what jsonNumber passes on is a number.
func jsonNumberEnd(doc []byte, i int) (int, bool) {
	digits := func(j int) int {
		for j < len(doc) && isDigit(doc[j]) {
			j++
		}
		return j
	}
	if i < len(doc) && doc[i] == '-' {
		i++
	}
	switch {
	case i < len(doc) && doc[i] == '0':
		i++
	case i < len(doc) && isDigit(doc[i]):
		i = digits(i)
	default:
		return 0, false
	}
	if i < len(doc) && doc[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(doc) && doc[i]|0x20 == 'e' {
		i++
		if i < len(doc) && (doc[i] == '+' || doc[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func (pl *Plan) jsonKeyClass(key []byte) EntityType {
	var ok bool
	pl.tmp, ok = decodeJSONString(pl.tmp[:0], key)
	if !ok || len(pl.tmp) > 64 {
		return TypeNone
	}
	t := ClassifyColumnName(string(pl.tmp)) // keys are short; this allocates only for them
	if t != TypeNone && pl.det.enabled[t] {
		return t
	}
	return TypeNone
}

// jsonString masks a JSON string (raw, with quotes).
func (pl *Plan) jsonString(dst, raw []byte, class EntityType) []byte {
	var ok bool
	pl.tmp, ok = decodeJSONString(pl.tmp[:0], raw)
	if !ok {
		return append(dst, jsonRedacted...)
	}
	if class != TypeNone {
		pl.hits++
		a := pl.classActions[class]
		saved := pl.curType
		pl.curType = class
		switch a {
		case ActionPseudonym:
			pl.tmp2 = pl.appendPseudonymSpan(pl.tmp2[:0], pl.tmp, class)
		case ActionHash:
			pl.tmp2 = pl.appendShaped(pl.tmp2[:0], pl.tmp, -1)
		case ActionKeepLast4:
			pl.tmp2 = appendKeepLast4(pl.tmp2[:0], pl.tmp)
		case ActionDateShift, ActionGeneralize:
			pl.tmp2, _ = pl.appendDateLikeText(pl.tmp2[:0], kindText, a, -1, pl.tmp)
		default:
			pl.tmp2 = append(append(append(pl.tmp2[:0], '['), class.String()...), ']')
		}
		pl.curType = saved
		return appendJSONString(dst, pl.tmp2)
	}
	found := pl.scan(pl.tmp)
	if len(found) == 0 {
		return append(dst, raw...)
	}
	pl.hits++
	for _, f := range found {
		pl.proveFinding(pl.tmp, f)
	}
	pl.tmp2 = pl.appendReplaced(pl.tmp2[:0], pl.tmp, found, pl.textAction)
	return appendJSONString(dst, pl.tmp2)
}

// jsonNumber masks a number under a PHI key, keeping it a number.
func (pl *Plan) jsonNumber(dst, num []byte, class EntityType) []byte {
	if class == TypeNone {
		return append(dst, num...)
	}
	pl.hits++
	switch pl.classActions[class] {
	case ActionHash, ActionPseudonym:
		// same number of digits, keyed; no leading zero
		var ks keyStream
		ks.init(pl.digest(domInt, num))
		first := true
		for _, c := range num {
			if isDigit(c) {
				d := ks.next() % 10
				if first && len(num) > 1 && d == 0 {
					d = 1
				}
				first = false
				dst = append(dst, '0'+d)
				continue
			}
			dst = append(dst, c)
		}
		return dst
	case ActionGeneralize:
		if x := atoi(num); x >= 0 {
			if class == TypeZip {
				return appendInt(dst, int64(x/100*100))
			}
			if x > 89 {
				return append(dst, "90"...)
			}
		}
		return append(dst, num...)
	}
	return append(dst, '0')
}
