package mask

// AppendTagged appends text with every finding replaced by its type in
// brackets ("[NAME]"). findings must be ordered and not overlap, as
// [Scanner.Scan] returns them.
func AppendTagged(dst, text []byte, findings []Finding) []byte {
	prev := 0
	for _, f := range findings {
		if f.Start < prev || f.End > len(text) || f.Start > f.End {
			continue
		}
		dst = append(dst, text[prev:f.Start]...)
		dst = append(dst, '[')
		dst = append(dst, f.Type.String()...)
		dst = append(dst, ']')
		prev = f.End
	}
	return append(dst, text[prev:]...)
}
