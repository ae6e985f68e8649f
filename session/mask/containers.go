package mask

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// Content detection in values that are not plain text: bytea, xml, and
// types this package does not know (records, composites, enums, extension
// types). Arrays are scanned element by element (array.go), json and jsonb
// string by string (jsonmask.go).

// appendByteaDetect scans the bytes of a bytea value as text and replaces
// what the detectors find, keeping the value's format: raw bytes in binary
// format, hex ("\x...") or escape format in text.
func (pl *Plan) appendByteaDetect(dst []byte, bin bool, v []byte) ([]byte, bool) {
	raw := v
	hex := false
	if !bin {
		var ok bool
		if pl.tmp, ok = decodeByteaText(pl.tmp[:0], v); !ok {
			return dst, false
		}
		raw = pl.tmp
		hex = len(v) >= 2 && v[0] == '\\' && v[1] == 'x'
	}
	found := pl.scan(raw)
	if len(found) == 0 {
		return append(dst, v...), true
	}
	pl.hits++
	for _, f := range found {
		pl.proveFinding(raw, f)
	}
	pl.tmp2 = pl.appendReplaced(pl.tmp2[:0], raw, found, pl.textAction)
	switch {
	case bin:
		return append(dst, pl.tmp2...), true
	case hex:
		return appendByteaHex(dst, pl.tmp2), true
	}
	return appendByteaEscape(dst, pl.tmp2), true
}

// appendByteaHex appends b in bytea's hex output format.
func appendByteaHex(dst, b []byte) []byte {
	dst = append(dst, '\\', 'x')
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// appendByteaEscape appends b in bytea's escape output format.
func appendByteaEscape(dst, b []byte) []byte {
	for _, c := range b {
		switch {
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '\\', '0'+(c>>6), '0'+(c>>3&7), '0'+(c&7))
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendXMLDetect replaces the PHI found in an xml value (text and binary
// formats carry the same text) where the replacement keeps the document
// well-formed: inside character data, attribute values, comments and CDATA
// sections, without cutting an entity or character reference. A value
// with PHI anywhere else (a tag or attribute name, a processing
// instruction, a DOCTYPE) becomes NULL.
func (pl *Plan) appendXMLDetect(dst, v []byte) ([]byte, bool) {
	found := pl.scan(v)
	if len(found) == 0 {
		return append(dst, v...), true
	}
	pl.hits++
	if !xmlEditable(v, found) {
		pl.proveWhole(v, found[0])
		return dst, false
	}
	for _, f := range found {
		pl.proveFinding(v, f)
	}
	return pl.appendReplaced(dst, v, found, pl.textAction), true
}

// xmlCheck walks an XML text and checks findings against the parts of it
// that may be edited.
type xmlCheck struct {
	v     []byte
	found []Finding
	k     int  // next finding to place
	ok    bool // every finding placed so far is editable
}

// region declares v[a:b] editable: character data or an attribute value
// (refs: entity and character references must stay whole; text: "]]>"
// must not appear) or a comment or CDATA section. Every finding that
// starts before b must lie inside it, on character boundaries.
func (x *xmlCheck) region(a, b int, refs, text bool) {
	for x.ok && x.k < len(x.found) && x.found[x.k].Start < b {
		f := x.found[x.k]
		if f.Start < a || f.End > b || !utf8.RuneStart(x.v[f.Start]) || f.End < len(x.v) && !utf8.RuneStart(x.v[f.End]) ||
			refs && (insideRef(x.v, a, f.Start) || insideRef(x.v, a, f.End)) ||
			text && bytes.HasPrefix(x.v[f.End:b], []byte("]>")) {
			x.ok = false
			return
		}
		x.k++
	}
}

// insideRef reports whether position p of v (in a region starting at a)
// lies inside an entity or character reference ("&amp;", "&#233;"), after
// its '&' and up to its ';'.
func insideRef(v []byte, a, p int) bool {
	for j := p - 1; j >= a && j >= p-64; j-- {
		switch v[j] {
		case ';', '<', '>':
			return false
		case '&':
			return true
		}
	}
	return false
}

// xmlEditable reports whether every finding lies in an editable part of
// the XML text v. Text it cannot follow makes it report false.
func xmlEditable(v []byte, found []Finding) bool {
	x := xmlCheck{v: v, found: found, ok: true}
	i := 0
	for i < len(v) && x.ok && x.k < len(found) {
		if v[i] != '<' {
			end := len(v)
			if j := bytes.IndexByte(v[i:], '<'); j >= 0 {
				end = i + j
			}
			x.region(i, end, true, true)
			i = end
			continue
		}
		rest := v[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			j := bytes.Index(rest[4:], []byte("-->"))
			if j < 0 {
				return false
			}
			x.region(i+4, i+4+j, false, false)
			i += 4 + j + 3
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			j := bytes.Index(rest[9:], []byte("]]>"))
			if j < 0 {
				return false
			}
			x.region(i+9, i+9+j, false, true)
			i += 9 + j + 3
		case bytes.HasPrefix(rest, []byte("<?")):
			j := bytes.Index(rest[2:], []byte("?>"))
			if j < 0 {
				return false
			}
			i += 2 + j + 2
		case bytes.HasPrefix(rest, []byte("<!")): // DOCTYPE, with an internal subset in brackets
			depth, q := 0, byte(0)
			j := 2
			for ; j < len(rest); j++ {
				c := rest[j]
				switch {
				case q != 0:
					if c == q {
						q = 0
					}
				case c == '"' || c == '\'':
					q = c
				case c == '[':
					depth++
				case c == ']':
					depth--
				case c == '>' && depth <= 0:
					goto doctypeEnd
				}
			}
			return false
		doctypeEnd:
			i += j + 1
		default: // a start or end tag: only attribute values are editable
			j := 1
			for ; j < len(rest) && rest[j] != '>'; j++ {
				if c := rest[j]; c == '"' || c == '\'' {
					e := bytes.IndexByte(rest[j+1:], c)
					if e < 0 {
						return false
					}
					x.region(i+j+1, i+j+1+e, true, false)
					j += 1 + e
				}
			}
			if j >= len(rest) {
				return false
			}
			i += j + 1
		}
	}
	return x.ok && x.k == len(found)
}

// appendOpaqueDetect handles a value of a type this package does not
// know: it cannot be edited and keep its type, so a value with PHI in it
// becomes NULL. The text format is scanned as it is; the binary format as
// the fields of a binary record or array (each framed by a length, which
// would otherwise sit between the words as garbage), or as raw bytes.
func (pl *Plan) appendOpaqueDetect(dst []byte, bin bool, v []byte) ([]byte, bool) {
	text := v
	if bin {
		pl.tmp = appendBinaryLeaves(pl.tmp[:0], v, 0)
		text = pl.tmp
	}
	found := pl.scan(text)
	if len(found) == 0 {
		return append(dst, v...), true
	}
	pl.hits++
	pl.proveWhole(v, found[0])
	return dst, false
}

// maxLeafDepth bounds the nesting of records and arrays appendBinaryLeaves
// looks into.
const maxLeafDepth = 8

// appendBinaryLeaves appends to dst the fields of v if v is a record in
// binary format (field count, then per field a type OID, a length and the
// bytes), or its elements if v is an array in binary format, recursively,
// each followed by a space; any other value is appended as it is.
func appendBinaryLeaves(dst, v []byte, depth int) []byte {
	if depth < maxLeafDepth {
		if binaryRecord(v) {
			n := int(binary.BigEndian.Uint32(v))
			p := 4
			for range n {
				l := int32(binary.BigEndian.Uint32(v[p+4:]))
				p += 8
				if l > 0 {
					dst = appendBinaryLeaves(dst, v[p:p+int(l)], depth+1)
					p += int(l)
				}
			}
			return dst
		}
		if start, count, ok := binaryArray(v); ok {
			p := start
			for range count {
				l := int32(binary.BigEndian.Uint32(v[p:]))
				p += 4
				if l > 0 {
					dst = appendBinaryLeaves(dst, v[p:p+int(l)], depth+1)
					p += int(l)
				}
			}
			return dst
		}
	}
	dst = append(dst, v...)
	return append(dst, ' ')
}

// binaryRecord reports whether v is framed exactly as a record in binary
// format.
func binaryRecord(v []byte) bool {
	if len(v) < 4 {
		return false
	}
	n := int32(binary.BigEndian.Uint32(v))
	if n < 0 || n > 1664 { // MaxTupleAttributeNumber
		return false
	}
	p := 4
	for range n {
		if len(v)-p < 8 {
			return false
		}
		l := int32(binary.BigEndian.Uint32(v[p+4:]))
		p += 8
		if l < -1 || int(l) > len(v)-p {
			return false
		}
		if l > 0 {
			p += int(l)
		}
	}
	return p == len(v)
}

// binaryArray reports whether v is framed exactly as an array in binary
// format, and where its elements start and how many there are.
func binaryArray(v []byte) (start, count int, ok bool) {
	if len(v) < 12 {
		return 0, 0, false
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	flags := binary.BigEndian.Uint32(v[4:])
	if ndim < 0 || ndim > maxArrayDims || flags > 1 || len(v) < 12+8*int(ndim) {
		return 0, 0, false
	}
	count = 0
	if ndim > 0 {
		count = 1
	}
	for d := 0; d < int(ndim); d++ {
		n := int32(binary.BigEndian.Uint32(v[12+8*d:]))
		if n < 0 {
			return 0, 0, false
		}
		if count *= int(n); count > len(v) {
			return 0, 0, false
		}
	}
	start = 12 + 8*int(ndim)
	p := start
	for range count {
		if len(v)-p < 4 {
			return 0, 0, false
		}
		l := int32(binary.BigEndian.Uint32(v[p:]))
		p += 4
		if l < -1 || int(l) > len(v)-p {
			return 0, 0, false
		}
		if l > 0 {
			p += int(l)
		}
	}
	return start, count, p == len(v)
}
