package mask

// Masks reports whether this profile masks a plain column from src, and by
// what: a rule's name, "classify:TYPE" or "detect". The proxy uses it to
// refuse moving a masked column's values where masking cannot follow them
// (into a table, a setting, a notification).
func (p *Profile) Masks(src SourceCol) (by string, masked bool) {
	if p == nil {
		return "", false
	}
	a, why := p.sourceAction(src)
	return why, a != ActionNone
}
