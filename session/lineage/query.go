package lineage

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// selectStmt analyzes a SELECT (simple, VALUES or set operation) as a new
// query level under parent and returns its output columns.
func (a *analyzer) selectStmt(parent *scope, st *pg_query.SelectStmt) ([]column, error) {
	if st == nil {
		return nil, opaquef("unsupported: empty query")
	}
	if err := a.step(); err != nil {
		return nil, err
	}
	s := &scope{parent: parent}
	if err := a.with(s, st.GetWithClause()); err != nil {
		return nil, err
	}
	var out []column
	// ORDER BY of a set operation or VALUES sees its output columns only.
	sortScope := s
	switch {
	case st.GetOp() > pg_query.SetOperation_SETOP_NONE:
		l, err := a.selectStmt(s, st.GetLarg())
		if err != nil {
			return nil, err
		}
		r, err := a.selectStmt(s, st.GetRarg())
		if err != nil {
			return nil, err
		}
		if len(l) != len(r) {
			return nil, opaquef("each %s query must have the same number of columns", st.GetOp())
		}
		out = make([]column, len(l))
		pairs := map[[2]int]int{}
		for i := range l {
			out[i] = column{name: l[i].name, lin: mergeBranch(l[i].lin, r[i].lin)}
			// Columns of one scan in each branch are columns of one row
			// in every row of the result: one scan of their own.
			if ls, rs := l[i].lin.scan, r[i].lin.scan; out[i].lin.plain && ls != 0 && rs != 0 && ls != rs {
				k := [2]int{ls, rs}
				if pairs[k] == 0 {
					pairs[k] = a.newScan()
				}
				out[i].lin.scan = pairs[k]
			}
		}
		sortScope = &scope{parent: s, items: []*nsItem{{cols: out, colsVisible: true}}}
	case len(st.GetValuesLists()) > 0:
		var err error
		if out, err = a.values(s, st.GetValuesLists()); err != nil {
			return nil, err
		}
		sortScope = &scope{parent: s, items: []*nsItem{{cols: out, colsVisible: true}}}
	default:
		if err := a.fromClause(s, st.GetFromClause()); err != nil {
			return nil, err
		}
		var err error
		if out, err = a.targetList(s, st.GetTargetList()); err != nil {
			return nil, err
		}
		// What decides which rows appear, and how many, is no lineage of
		// any output; it is still checked for opaque functions and names
		// that do not resolve.
		if err := a.check(s, st.GetWhereClause()); err != nil {
			return nil, err
		}
		for _, g := range st.GetGroupClause() {
			if err := a.checkSortGroup(s, g, out); err != nil {
				return nil, err
			}
		}
		if err := a.check(s, st.GetHavingClause()); err != nil {
			return nil, err
		}
		for _, w := range st.GetWindowClause() {
			if err := a.checkWindow(s, w.GetWindowDef()); err != nil {
				return nil, err
			}
		}
		for _, d := range st.GetDistinctClause() {
			if err := a.checkSortGroup(s, d, out); err != nil {
				return nil, err
			}
		}
	}
	for _, o := range st.GetSortClause() {
		if err := a.checkSortGroup(sortScope, o, out); err != nil {
			return nil, err
		}
	}
	if err := a.check(s, st.GetLimitOffset()); err != nil {
		return nil, err
	}
	if err := a.check(s, st.GetLimitCount()); err != nil {
		return nil, err
	}
	return out, nil
}

// values: column i of a VALUES list is the merge of every row's i-th
// value.
func (a *analyzer) values(s *scope, rows []*pg_query.Node) ([]column, error) {
	var out []column
	for r, row := range rows {
		list := row.GetList()
		if list == nil {
			return nil, unsupported(row)
		}
		items := list.GetItems()
		if r == 0 {
			out = make([]column, len(items))
			for i := range out {
				out[i].name = fmt.Sprintf("column%d", i+1)
			}
		} else if len(items) != len(out) {
			return nil, opaquef("VALUES lists must all be the same length")
		}
		for i, e := range items {
			l, err := a.value(s, e)
			if err != nil {
				return nil, err
			}
			if r == 0 {
				out[i].lin = l
			} else {
				out[i].lin = mergeBranch(out[i].lin, l)
			}
		}
	}
	return out, nil
}

// checkSortGroup checks an ORDER BY, GROUP BY or DISTINCT ON item, which
// may name an output column or give its position.
func (a *analyzer) checkSortGroup(s *scope, n *pg_query.Node, out []column) error {
	switch x := n.GetNode().(type) {
	case nil:
		return nil // plain DISTINCT
	case *pg_query.Node_SortBy:
		if err := checkOperator(x.SortBy.GetUseOp()); err != nil {
			return err
		}
		return a.checkSortGroup(s, x.SortBy.GetNode(), out)
	case *pg_query.Node_GroupingSet:
		for _, c := range x.GroupingSet.GetContent() {
			if err := a.checkSortGroup(s, c, out); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_AConst:
		return nil
	case *pg_query.Node_ColumnRef:
		if names, star, ok := refFields(x.ColumnRef); ok && !star && len(names) == 1 {
			for _, c := range out {
				if c.name == names[0] {
					return nil
				}
			}
		}
	}
	return a.check(s, n)
}

// checkWindow checks a window definition's PARTITION BY, ORDER BY and frame
// offsets: they order rows, they are not the value of any.
func (a *analyzer) checkWindow(s *scope, w *pg_query.WindowDef) error {
	if w == nil {
		return nil
	}
	for _, n := range w.GetPartitionClause() {
		if err := a.check(s, n); err != nil {
			return err
		}
	}
	for _, n := range w.GetOrderClause() {
		if err := a.check(s, n); err != nil {
			return err
		}
	}
	if err := a.check(s, w.GetStartOffset()); err != nil {
		return err
	}
	return a.check(s, w.GetEndOffset())
}

// targetList expands and analyzes a SELECT or RETURNING list.
func (a *analyzer) targetList(s *scope, list []*pg_query.Node) ([]column, error) {
	out := make([]column, 0, len(list))
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			return nil, unsupported(n)
		}
		val := rt.GetVal()
		if cr := val.GetColumnRef(); cr != nil {
			if _, star, ok := refFields(cr); ok && star {
				cols, err := a.expandStar(s, cr)
				if err != nil {
					return nil, err
				}
				out = append(out, cols...)
				continue
			}
		}
		if ind := val.GetAIndirection(); ind != nil {
			if is := ind.GetIndirection(); len(is) > 0 && is[len(is)-1].GetAStar() != nil {
				cols, err := a.expandIndirectionStar(s, ind)
				if err != nil {
					return nil, err
				}
				out = append(out, cols...)
				continue
			}
		}
		l, err := a.value(s, val)
		if err != nil {
			return nil, err
		}
		name := rt.GetName()
		if name == "" {
			name = a.figureName(val)
		}
		out = append(out, column{name: name, lin: l})
	}
	return out, nil
}

// expandStar expands * and t.* in a target list: one column per column,
// each as it is in its FROM item.
func (a *analyzer) expandStar(s *scope, cr *pg_query.ColumnRef) ([]column, error) {
	if len(cr.GetFields()) == 1 {
		var out []column
		n := 0
		for _, it := range s.items {
			if it.colsVisible {
				out = append(out, it.cols...)
				n++
			}
		}
		if n == 0 {
			return nil, opaquef("SELECT * with no tables specified is not valid")
		}
		return out, nil
	}
	_, it, err := a.columnRef(s, cr)
	if err != nil {
		return nil, err
	}
	return it.cols, nil
}

// expandIndirectionStar expands (x).* in a target list. A whole-row
// reference expands to the row's columns as they are; a function call with
// known result columns to columns each derived from the whole call;
// anything else has a row type the analysis cannot see.
func (a *analyzer) expandIndirectionStar(s *scope, ind *pg_query.A_Indirection) ([]column, error) {
	if len(ind.GetIndirection()) != 1 {
		return nil, opaquef("unsupported: (expression).field.* expansion")
	}
	arg := ind.GetArg()
	if cr := arg.GetColumnRef(); cr != nil {
		_, it, err := a.columnRef(s, cr)
		if err != nil {
			return nil, err
		}
		if it == nil {
			return nil, opaquef("unsupported: (column).* expansion of a composite column")
		}
		return it.cols, nil
	}
	if fc := arg.GetFuncCall(); fc != nil {
		l, err := a.funcCall(s, fc)
		if err != nil {
			return nil, err
		}
		schema, name, _ := qualifiedName(fc.GetFuncname())
		if schema, err = funcSchema(s, schema, name); err != nil {
			return nil, err
		}
		fi, err := a.resolveFunc(schema, name)
		if err != nil {
			return nil, err
		}
		if fi.conflict || fi.outCols == nil {
			return nil, opaquef("unsupported: (%s(...)).* expansion: result columns unknown", joinName(schema, name))
		}
		out := make([]column, len(fi.outCols))
		for i, n := range fi.outCols {
			out[i] = column{name: n, lin: l}
		}
		return out, nil
	}
	return nil, opaquef("unsupported: (%s).* expansion", nodeKind(arg))
}
