package lineage

import "slices"

// lin is the lineage of one value while the analysis runs. Values are
// immutable: srcs is shared between lins and never changed in place.
type lin struct {
	srcs  []Col // sorted, unique
	plain bool  // the value is srcs[0] unchanged
	// scan numbers, for a plain value, the scan of a base table whose row
	// it comes from: two plain values with the same scan are columns of
	// one row. 0: not known to be one scan's (a set operation or VALUES
	// over different scans, a recursive CTE).
	scan int
	// bottom is the value of a recursive CTE's column before the first
	// iteration: nothing yet. It is the identity of mergeBranch, so that a
	// column the recursive term carries through unchanged stays plain.
	bottom bool
}

func plainCol(c Col, scan int) lin { return lin{srcs: []Col{c}, plain: true, scan: scan} }

// derived is l's value passed through an expression: the same sources,
// never plain.
func derived(l lin) lin { return lin{srcs: l.srcs} }

// union is a value computed from both a and b.
func union(a, b lin) lin {
	switch {
	case len(b.srcs) == 0:
		return lin{srcs: a.srcs}
	case len(a.srcs) == 0:
		return lin{srcs: b.srcs}
	}
	return lin{srcs: mergeCols(a.srcs, b.srcs)}
}

// addSources is l, unless extra brings sources of its own: then a value
// derived from both (the column of an INSERT or UPDATE ... RETURNING that
// was assigned from an expression).
func addSources(l, extra lin) lin {
	if len(extra.srcs) == 0 {
		return l
	}
	return union(l, extra)
}

// mergeBranch is the column of a set operation (or VALUES, or a recursive
// CTE's iterations) whose rows come from a or b: plain only when both are
// plain on the same column, and of one scan only when both are of it.
func mergeBranch(a, b lin) lin {
	switch {
	case a.bottom:
		return b
	case b.bottom:
		return a
	case a.plain && b.plain && a.srcs[0] == b.srcs[0]:
		if a.scan != b.scan {
			a.scan = 0
		}
		return a
	}
	return union(a, b)
}

// equal compares lineage, not scan numbers (which a recursive CTE's
// rounds draw afresh).
func (l lin) equal(m lin) bool {
	return l.plain == m.plain && l.bottom == m.bottom && slices.Equal(l.srcs, m.srcs)
}

// noScan is l as of no one scan.
func noScan(l lin) lin {
	l.scan = 0
	return l
}

// mergeCols merges two sorted, unique slices into a new one.
func mergeCols(a, b []Col) []Col {
	out := make([]Col, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareCol(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// column is a named column of a relation, subquery, CTE or result.
type column struct {
	name string
	lin  lin
}

// wholeRow is the lineage of a whole-row value made of cols.
func wholeRow(cols []column) lin {
	var l lin
	for _, c := range cols {
		l = union(l, c.lin)
	}
	return l
}

// renamed applies an alias's column names to the first columns; more names
// than columns is an error the server would raise too.
func renamed(cols []column, names []string, what string) ([]column, error) {
	if len(names) == 0 {
		return cols, nil
	}
	if len(names) > len(cols) {
		return nil, opaquef("%s has %d columns available but %d columns specified", what, len(cols), len(names))
	}
	out := slices.Clone(cols)
	for i, n := range names {
		out[i].name = n
	}
	return out, nil
}
