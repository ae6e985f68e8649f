package mask

import "encoding/binary"

// maxArrayDims is PostgreSQL's MAXDIM.
const maxArrayDims = 6

// appendTextArray masks each element of a text-format array such as
// {a,"b c",NULL} or [0:1]={x,y}, keeping its shape.
func (pl *Plan) appendTextArray(dst []byte, k kind, a Action, typmod int32, v []byte) ([]byte, bool) {
	i := 0
	if len(v) > 0 && v[0] == '[' { // dimension decoration, copied as is
		for i < len(v) && v[i] != '=' {
			c := v[i]
			if !(c == '[' || c == ']' || c == ':' || c == '-' || c >= '0' && c <= '9') {
				return dst, false
			}
			i++
		}
		if i == len(v) {
			return dst, false
		}
		i++
		dst = append(dst, v[:i]...)
	}
	depth, started := 0, false
	for i < len(v) {
		c := v[i]
		switch {
		case c == '{':
			if started && depth == 0 {
				return dst, false
			}
			if depth++; depth > maxArrayDims {
				return dst, false
			}
			started = true
			dst = append(dst, c)
			i++
		case c == '}':
			if depth == 0 {
				return dst, false
			}
			depth--
			dst = append(dst, c)
			i++
		case c == ',':
			if depth == 0 {
				return dst, false
			}
			dst = append(dst, c)
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		default:
			if depth == 0 {
				return dst, false
			}
			var quoted bool
			pl.arrIn, i, quoted = scanArrayElem(pl.arrIn[:0], v, i)
			if i < 0 {
				return dst, false
			}
			if !quoted && len(pl.arrIn) == 4 && (pl.arrIn[0]|0x20) == 'n' && (pl.arrIn[1]|0x20) == 'u' &&
				(pl.arrIn[2]|0x20) == 'l' && (pl.arrIn[3]|0x20) == 'l' {
				dst = append(dst, "NULL"...)
				continue
			}
			out, ok := pl.appendScalar(pl.arrOut[:0], k, a, typmod, false, pl.arrIn)
			pl.arrOut = out
			if !ok {
				pl.hits++
				dst = append(dst, "NULL"...)
				continue
			}
			dst = appendArrayElem(dst, out)
		}
	}
	if depth != 0 || !started {
		return dst, false
	}
	return dst, true
}

// scanArrayElem reads one element starting at v[i], unescaping it into dst.
// It returns the index after the element, or -1 if the input is malformed.
func scanArrayElem(dst, v []byte, i int) ([]byte, int, bool) {
	if v[i] == '"' {
		i++
		for i < len(v) {
			switch c := v[i]; c {
			case '"':
				return dst, i + 1, true
			case '\\':
				if i+1 >= len(v) {
					return dst, -1, true
				}
				dst = append(dst, v[i+1])
				i += 2
			default:
				dst = append(dst, c)
				i++
			}
		}
		return dst, -1, true
	}
	for i < len(v) {
		switch c := v[i]; c {
		case ',', '}':
			for len(dst) > 0 && (dst[len(dst)-1] == ' ' || dst[len(dst)-1] == '\t') {
				dst = dst[:len(dst)-1]
			}
			return dst, i, false
		case '{', '"':
			return dst, -1, false
		case '\\':
			if i+1 >= len(v) {
				return dst, -1, false
			}
			dst = append(dst, v[i+1])
			i += 2
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst, -1, false
}

// appendArrayElem appends e as an array element, quoted when it must be.
func appendArrayElem(dst, e []byte) []byte {
	need := len(e) == 0 || len(e) == 4 && (e[0]|0x20) == 'n' && (e[1]|0x20) == 'u' && (e[2]|0x20) == 'l' && (e[3]|0x20) == 'l'
	for _, c := range e {
		switch c {
		case '{', '}', ',', '"', '\\', ' ', '\t', '\n', '\r', '\v', '\f':
			need = true
		}
	}
	if !need {
		return append(dst, e...)
	}
	dst = append(dst, '"')
	for _, c := range e {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// appendBinaryArray masks each element of a binary-format array.
func (pl *Plan) appendBinaryArray(dst []byte, k kind, a Action, typmod int32, v []byte) ([]byte, bool) {
	if len(v) < 12 {
		return dst, false
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	if ndim < 0 || ndim > maxArrayDims || len(v) < 12+8*int(ndim) {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, v[:12+8*int(ndim)]...)
	flags := start + 4
	binary.BigEndian.PutUint32(dst[flags:], 0)
	count := 1
	if ndim == 0 {
		count = 0
	}
	for d := 0; d < int(ndim); d++ {
		n := int32(binary.BigEndian.Uint32(v[12+8*d:]))
		if n < 0 {
			return dst, false
		}
		if count = count * int(n); count > len(v) { // each element takes 4 bytes at least
			return dst, false
		}
	}
	p := 12 + 8*int(ndim)
	hasNull := false
	for e := 0; e < count; e++ {
		if p+4 > len(v) {
			return dst, false
		}
		n := int32(binary.BigEndian.Uint32(v[p:]))
		p += 4
		if n == -1 {
			dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)
			hasNull = true
			continue
		}
		if n < 0 || int(n) > len(v)-p {
			return dst, false
		}
		lenAt := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		out, ok := pl.appendScalar(dst, k, a, typmod, true, v[p:p+int(n)])
		p += int(n)
		if !ok {
			pl.hits++
			dst = binary.BigEndian.AppendUint32(dst[:lenAt], 0xffffffff)
			hasNull = true
			continue
		}
		dst = out
		binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	}
	if p != len(v) {
		return dst, false
	}
	if hasNull {
		binary.BigEndian.PutUint32(dst[flags:], 1)
	}
	return dst, true
}
