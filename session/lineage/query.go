package lineage

import (
	"fmt"
	"slices"

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
		for i := range l {
			out[i] = column{name: l[i].name, lin: mergeBranch(l[i].lin, r[i].lin)}
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

// cte is a WITH query as a FROM item sees it.
type cte struct {
	name      string
	aliases   []string
	node      *pg_query.CommonTableExpr
	owner     *scope // the level whose WITH defines it
	index     int
	recursive bool
	state     cteState
	cols      []column
	rows      bool
	err       error
}

type cteState uint8

const (
	cteNew cteState = iota
	cteRunning
	cteDone
)

// with adds a WITH clause's queries to s and analyzes each (also those no
// FROM names: a data-modifying one runs anyway).
func (a *analyzer) with(s *scope, w *pg_query.WithClause) error {
	if w == nil {
		return nil
	}
	for i, n := range w.GetCtes() {
		ce := n.GetCommonTableExpr()
		if ce == nil {
			return unsupported(n)
		}
		s.ctes = append(s.ctes, &cte{name: ce.GetCtename(), aliases: stringList(ce.GetAliascolnames()),
			node: ce, owner: s, index: i, recursive: w.GetRecursive()})
	}
	for _, c := range s.ctes {
		if _, _, err := a.cteColumns(c); err != nil {
			return err
		}
	}
	return nil
}

func findCTE(s *scope, name string) *cte {
	for x := s; x != nil; x = x.parent {
		for _, c := range x.ctes {
			if c.name == name {
				return c
			}
		}
	}
	return nil
}

// cteColumns analyzes a CTE once. The body sees the CTEs before it (all of
// its WITH under RECURSIVE) and the levels around its WITH, not the FROM
// items of the level that defines it.
//
// A recursive CTE is iterated to a fixpoint: its columns start as bottom
// (no value yet), named by the non-recursive term; each round analyzes the
// whole query with the columns of the round before, until nothing changes.
// Lineage only grows from round to round and the set of columns is finite,
// so this ends; a column the recursive term carries through unchanged stays
// plain.
func (a *analyzer) cteColumns(c *cte) ([]column, bool, error) {
	switch c.state {
	case cteDone:
		return c.cols, c.rows, c.err
	case cteRunning:
		if c.cols == nil {
			return nil, false, opaquef("recursive reference to query %q outside its recursive term", c.name)
		}
		return c.cols, true, nil
	}
	c.state = cteRunning
	c.cols, c.rows, c.err = a.runCTE(c)
	if c.err == nil && c.rows {
		c.cols, c.err = a.searchCycleColumns(c)
	}
	c.state = cteDone
	return c.cols, c.rows, c.err
}

func (a *analyzer) runCTE(c *cte) ([]column, bool, error) {
	visible := c.owner.ctes[:c.index:c.index]
	if c.recursive {
		visible = c.owner.ctes
	}
	body := &scope{parent: c.owner.parent, ctes: visible, fn: c.owner.fn}
	what := fmt.Sprintf("WITH query %q", c.name)
	sel := c.node.GetCtequery().GetSelectStmt()
	if !c.recursive || sel == nil || sel.GetOp() != pg_query.SetOperation_SETOP_UNION {
		cols, rows, err := a.query(body, c.node.GetCtequery())
		if err != nil || !rows {
			return nil, rows, err
		}
		cols, err = renamed(cols, c.aliases, what)
		return cols, true, err
	}
	// The non-recursive term names the columns and gives their number.
	seedScope := &scope{parent: body}
	if err := a.with(seedScope, sel.GetWithClause()); err != nil {
		return nil, false, err
	}
	seed, err := a.selectStmt(seedScope, sel.GetLarg())
	if err != nil {
		return nil, false, err
	}
	if seed, err = renamed(seed, c.aliases, what); err != nil {
		return nil, false, err
	}
	cur := make([]column, len(seed))
	for i, col := range seed {
		cur[i] = column{name: col.name, lin: lin{bottom: true}}
	}
	for range 100 {
		c.cols = cur
		out, err := a.selectStmt(body, sel)
		if err != nil {
			return nil, false, err
		}
		if len(out) != len(cur) {
			return nil, false, opaquef("%s: column count changes between terms", what)
		}
		same := true
		next := make([]column, len(out))
		for i := range out {
			next[i] = column{name: cur[i].name, lin: out[i].lin}
			same = same && next[i].lin.equal(cur[i].lin)
		}
		if same {
			return next, true, nil
		}
		cur = next
	}
	return nil, false, opaquef("%s: lineage did not converge", what)
}

// searchCycleColumns adds the columns SEARCH and CYCLE clauses append: the
// ordering column holds the values of the BY columns, the path those of
// the cycle columns, the mark compares them.
func (a *analyzer) searchCycleColumns(c *cte) ([]column, error) {
	cols := c.cols
	pick := func(names []*pg_query.Node) (lin, error) {
		var l lin
		for _, n := range names {
			name := n.GetString_().GetSval()
			i := slices.IndexFunc(c.cols, func(col column) bool { return col.name == name })
			if i < 0 {
				return lin{}, opaquef("WITH query %q: column %q does not exist", c.name, name)
			}
			l = union(l, c.cols[i].lin)
		}
		return l, nil
	}
	if sc := c.node.GetSearchClause(); sc != nil {
		l, err := pick(sc.GetSearchColList())
		if err != nil {
			return nil, err
		}
		cols = append(slices.Clip(cols), column{name: sc.GetSearchSeqColumn(), lin: l})
	}
	if cc := c.node.GetCycleClause(); cc != nil {
		l, err := pick(cc.GetCycleColList())
		if err != nil {
			return nil, err
		}
		cols = append(slices.Clip(cols), column{name: cc.GetCycleMarkColumn(), lin: l}, column{name: cc.GetCyclePathColumn(), lin: l})
	}
	return cols, nil
}

// fromClause adds a FROM list's items to s, in order: a LATERAL item sees
// the ones before it.
func (a *analyzer) fromClause(s *scope, from []*pg_query.Node) error {
	for _, n := range from {
		items, err := a.fromItem(s, n, slices.Clip(s.items))
		if err != nil {
			return err
		}
		s.items = append(s.items, items...)
	}
	return nil
}

// fromItem analyzes one FROM item of level s; visible are the items a
// LATERAL one may see.
func (a *analyzer) fromItem(s *scope, n *pg_query.Node, visible []*nsItem) ([]*nsItem, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_RangeVar:
		it, err := a.rangeVar(s, x.RangeVar, true)
		if err != nil {
			return nil, err
		}
		return []*nsItem{it}, nil
	case *pg_query.Node_RangeSubselect:
		rs := x.RangeSubselect
		sel := rs.GetSubquery().GetSelectStmt()
		if sel == nil {
			return nil, unsupported(rs.GetSubquery())
		}
		cols, err := a.selectStmt(lateralView(s, visible, rs.GetLateral()), sel)
		if err != nil {
			return nil, err
		}
		alias := rs.GetAlias()
		if cols, err = renamed(cols, stringList(alias.GetColnames()), "subquery"); err != nil {
			return nil, err
		}
		return []*nsItem{{name: alias.GetAliasname(), cols: cols, relVisible: alias != nil, colsVisible: true}}, nil
	case *pg_query.Node_RangeFunction:
		it, err := a.rangeFunction(s, x.RangeFunction, visible)
		if err != nil {
			return nil, err
		}
		return []*nsItem{it}, nil
	case *pg_query.Node_JoinExpr:
		return a.join(s, x.JoinExpr, visible)
	case *pg_query.Node_RangeTableFunc:
		it, err := a.xmlTable(lateralView(s, visible, true), x.RangeTableFunc)
		if err != nil {
			return nil, err
		}
		return []*nsItem{it}, nil
	case *pg_query.Node_JsonTable:
		it, err := a.jsonTable(lateralView(s, visible, true), x.JsonTable)
		if err != nil {
			return nil, err
		}
		return []*nsItem{it}, nil
	case *pg_query.Node_RangeTableSample:
		ts := x.RangeTableSample
		rv := ts.GetRelation().GetRangeVar()
		if rv == nil {
			return nil, unsupported(ts.GetRelation())
		}
		// Sampling methods are functions too; only the built-in ones are
		// known to read nothing but the sampled table.
		schema, method, ok := qualifiedName(ts.GetMethod())
		if !ok || (schema != "" && schema != "pg_catalog") || (method != "bernoulli" && method != "system") {
			return nil, opaquef("TABLESAMPLE method %s is not a built-in", joinName(schema, method))
		}
		for _, arg := range ts.GetArgs() {
			if err := a.check(s, arg); err != nil {
				return nil, err
			}
		}
		if err := a.check(s, ts.GetRepeatable()); err != nil {
			return nil, err
		}
		it, err := a.rangeVar(s, rv, true)
		if err != nil {
			return nil, err
		}
		return []*nsItem{it}, nil
	}
	return nil, unsupported(n)
}

// rangeVar resolves a relation name: a CTE (unqualified names only, when
// cteOK), else the catalog's relation.
func (a *analyzer) rangeVar(s *scope, rv *pg_query.RangeVar, cteOK bool) (*nsItem, error) {
	schema, name, alias := rv.GetSchemaname(), rv.GetRelname(), rv.GetAlias()
	it := &nsItem{name: name, relVisible: true, colsVisible: true}
	var c *cte
	if schema == "" && cteOK {
		c = findCTE(s, name)
	}
	if c != nil {
		cols, rows, err := a.cteColumns(c)
		if err != nil {
			return nil, err
		}
		if !rows {
			return nil, opaquef("WITH query %q does not have a RETURNING clause", name)
		}
		it.cols = cols
	} else {
		if fn := s.function(); schema == "" && fn != nil && fn.ownPath {
			return nil, opaquef("unqualified relation %q in a function that sets its own search_path", name)
		}
		e := a.relation(schema, name)
		if e.err != nil {
			return nil, e.err
		}
		it.cols = e.cols
		if alias == nil {
			it.schema = e.schema
		}
	}
	if alias != nil {
		it.name = alias.GetAliasname()
		var err error
		if it.cols, err = renamed(it.cols, stringList(alias.GetColnames()), fmt.Sprintf("table %q", name)); err != nil {
			return nil, err
		}
	}
	return it, nil
}

// relation returns a relation's columns: base columns for tables, the
// definition's lineage for views. Answers are kept for the Analyze call.
func (a *analyzer) relation(schema, name string) relEntry {
	key := [2]string{schema, name}
	if e, ok := a.rels[key]; ok {
		return e
	}
	e := a.loadRelation(schema, name)
	if a.rels == nil {
		a.rels = map[[2]string]relEntry{}
	}
	a.rels[key] = e
	return e
}

func (a *analyzer) loadRelation(schema, name string) relEntry {
	written := joinName(schema, name)
	r, err := a.cat.Relation(schema, name)
	if err != nil {
		return relEntry{err: fmt.Errorf("%w: relation %s: %w", ErrCatalog, written, err)}
	}
	if r == nil {
		// Perhaps a temporary table the gateway's catalog cannot see.
		return relEntry{err: opaquef("relation %q does not exist or is not visible", written)}
	}
	e := relEntry{schema: r.Schema}
	if e.schema == "" {
		e.schema = schema
	}
	if r.Name != "" {
		name = r.Name
	}
	if e.schema == "" {
		return relEntry{err: opaquef("relation %q: the catalog gave no schema", written)}
	}
	switch r.Kind {
	case Table, Partitioned, Foreign:
		e.cols = make([]column, len(r.Columns))
		for i, c := range r.Columns {
			e.cols[i] = column{name: c.Name, lin: plainCol(Col{Schema: e.schema, Table: name, Column: c.Name, TypeOID: c.TypeOID})}
		}
	case View, MatView:
		e.cols, e.err = a.expandView(e.schema, name, r)
	default:
		e.err = opaquef("relation %s.%s is a %s", e.schema, name, r.Kind)
	}
	return e
}

// expandView analyzes a view's definition: its column i is the
// definition's output i, whatever the names.
func (a *analyzer) expandView(schema, name string, r *Relation) ([]column, error) {
	qname := schema + "." + name
	key := "view " + qname
	if err := a.enter(key, qname); err != nil {
		return nil, err
	}
	defer a.leave()
	tree, err := pg_query.Parse(r.Definition)
	if err != nil || len(tree.GetStmts()) != 1 || tree.GetStmts()[0].GetStmt().GetSelectStmt() == nil {
		return nil, opaquef("%s %s: definition is not one SELECT", r.Kind, qname)
	}
	out, err := a.selectStmt(nil, tree.GetStmts()[0].GetStmt().GetSelectStmt())
	if err != nil {
		return nil, within(err, fmt.Sprintf("%s %s", r.Kind, qname))
	}
	if len(out) != len(r.Columns) {
		return nil, opaquef("%s %s: definition has %d columns, the catalog %d", r.Kind, qname, len(out), len(r.Columns))
	}
	cols := make([]column, len(out))
	for i, c := range out {
		if c.lin.bottom {
			return nil, opaquef("%s %s: column %q has no non-recursive source", r.Kind, qname, c.name)
		}
		cols[i] = column{name: r.Columns[i].Name, lin: c.lin}
	}
	return cols, nil
}

// enter pushes a view or function expansion, refusing cycles and depth
// beyond maxDepth.
func (a *analyzer) enter(key, what string) error {
	if slices.Contains(a.expanding, key) {
		return opaquef("%s refers to itself", what)
	}
	if len(a.expanding) >= maxDepth {
		return opaquef("views and functions nested deeper than %d at %s", maxDepth, what)
	}
	a.expanding = append(a.expanding, key)
	return nil
}

func (a *analyzer) leave() { a.expanding = a.expanding[:len(a.expanding)-1] }

// within prefixes an opaque reason with where it arose.
func within(err error, where string) error {
	if op, ok := err.(*opaqueError); ok {
		return &opaqueError{reason: where + ": " + op.reason}
	}
	return err
}

// join analyzes a JoinExpr. USING and NATURAL merge the named columns
// (the left input's value for inner and left joins, the right's for right
// joins, both for full joins); the join's columns are those, then the
// left's others, then the right's.
func (a *analyzer) join(s *scope, j *pg_query.JoinExpr, visible []*nsItem) ([]*nsItem, error) {
	litems, err := a.fromItem(s, j.GetLarg(), visible)
	if err != nil {
		return nil, err
	}
	ritems, err := a.fromItem(s, j.GetRarg(), append(slices.Clip(visible), litems...))
	if err != nil {
		return nil, err
	}
	lcols, rcols := visibleCols(litems), visibleCols(ritems)
	var using []string
	if j.GetIsNatural() {
		for _, c := range lcols {
			if slices.ContainsFunc(rcols, func(r column) bool { return r.name == c.name }) && !slices.Contains(using, c.name) {
				using = append(using, c.name)
			}
		}
	} else {
		using = stringList(j.GetUsingClause())
	}
	usedL, usedR := make([]bool, len(lcols)), make([]bool, len(rcols))
	merged := make([]column, 0, len(using))
	for _, name := range using {
		li, err := uniqueColumn(lcols, name, "left")
		if err != nil {
			return nil, err
		}
		ri, err := uniqueColumn(rcols, name, "right")
		if err != nil {
			return nil, err
		}
		usedL[li], usedR[ri] = true, true
		l, r := lcols[li].lin, rcols[ri].lin
		var m lin
		switch j.GetJointype() {
		case pg_query.JoinType_JOIN_INNER, pg_query.JoinType_JOIN_LEFT:
			m = l
		case pg_query.JoinType_JOIN_RIGHT:
			m = r
		default: // FULL: COALESCE(l, r)
			m = union(l, r)
		}
		if m.plain && !(l.plain && r.plain && l.srcs[0].TypeOID == r.srcs[0].TypeOID) {
			// The other side's type is not known to be the same: the
			// merged value may be coerced to a common type.
			m = union(l, r)
		}
		merged = append(merged, column{name: name, lin: m})
	}
	cols := slices.Clone(merged)
	for i, c := range lcols {
		if !usedL[i] {
			cols = append(cols, c)
		}
	}
	for i, c := range rcols {
		if !usedR[i] {
			cols = append(cols, c)
		}
	}
	both := slices.Concat(litems, ritems)
	if q := j.GetQuals(); q != nil {
		// ON sees the join's two inputs only (and the levels around).
		if err := a.check(&scope{parent: s.parent, ctes: s.ctes, fn: s.fn, items: both}, q); err != nil {
			return nil, err
		}
	}
	if alias := j.GetAlias(); alias != nil {
		if cols, err = renamed(cols, stringList(alias.GetColnames()), "join"); err != nil {
			return nil, err
		}
		return []*nsItem{{name: alias.GetAliasname(), cols: cols, relVisible: true, colsVisible: true}}, nil
	}
	for _, it := range both {
		it.colsVisible = false
	}
	items := append(both, &nsItem{cols: cols, colsVisible: true})
	if ua := j.GetJoinUsingAlias(); ua != nil {
		items = append(items, &nsItem{name: ua.GetAliasname(), cols: merged, relVisible: true})
	}
	return items, nil
}

func visibleCols(items []*nsItem) []column {
	var cols []column
	for _, it := range items {
		if it.colsVisible {
			cols = append(cols, it.cols...)
		}
	}
	return cols
}

func uniqueColumn(cols []column, name, side string) (int, error) {
	idx := -1
	for i, c := range cols {
		if c.name == name {
			if idx >= 0 {
				return 0, opaquef("common column name %q appears more than once in %s table", name, side)
			}
			idx = i
		}
	}
	if idx < 0 {
		return 0, opaquef("column %q specified in USING clause does not exist in %s table", name, side)
	}
	return idx, nil
}

// rangeFunction analyzes a function (or ROWS FROM list) in FROM; functions
// in FROM always see the items before them.
func (a *analyzer) rangeFunction(s *scope, rf *pg_query.RangeFunction, visible []*nsItem) (*nsItem, error) {
	ls := lateralView(s, visible, true)
	nf := len(rf.GetFunctions())
	var cols []column
	var refname string
	for i, item := range rf.GetFunctions() {
		parts := item.GetList().GetItems()
		if len(parts) == 0 {
			return nil, unsupported(item)
		}
		var coldef []*pg_query.Node
		if len(parts) > 1 {
			coldef = parts[1].GetList().GetItems()
		}
		if !rf.GetIsRowsfrom() && len(rf.GetColdeflist()) > 0 {
			coldef = rf.GetColdeflist()
		}
		fcols, name, err := a.fromFunction(ls, parts[0], coldef, nf, rf)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			refname = name
		}
		cols = append(cols, fcols...)
	}
	if rf.GetOrdinality() {
		cols = append(cols, column{name: "ordinality"})
	}
	if alias := rf.GetAlias(); alias != nil {
		refname = alias.GetAliasname()
		var err error
		if cols, err = renamed(cols, stringList(alias.GetColnames()), "function"); err != nil {
			return nil, err
		}
	}
	return &nsItem{name: refname, cols: cols, relVisible: true, colsVisible: true}, nil
}

// fromFunction returns one function's columns in FROM and its name. Every
// column derives from all the arguments; a SQL function's column also from
// its body's matching output (all of them when the counts differ). Names
// come as PostgreSQL gives them: the column definition list, the result
// columns, else for a scalar the alias (alone in FROM) or the function's
// name.
func (a *analyzer) fromFunction(s *scope, fexpr *pg_query.Node, coldef []*pg_query.Node, nf int, rf *pg_query.RangeFunction) ([]column, string, error) {
	alias := rf.GetAlias()
	fc := fexpr.GetFuncCall()
	if fc == nil {
		// FROM coalesce(...), FROM CAST(...), FROM current_date.
		l, err := a.expr(s, fexpr)
		if err != nil {
			return nil, "", err
		}
		name := a.figureName(fexpr)
		col := name
		if nf == 1 && alias != nil {
			col = alias.GetAliasname()
		}
		if len(coldef) > 0 {
			return nil, "", opaquef("a column definition list is only allowed for functions returning record")
		}
		return []column{{name: col, lin: l}}, name, nil
	}
	schema, fname, ok := qualifiedName(fc.GetFuncname())
	if !ok {
		return nil, "", opaquef("unsupported: function name %s", funcCallName(fc))
	}
	schema, err := funcSchema(s, schema, fname)
	if err != nil {
		return nil, "", err
	}
	args, err := a.funcArgs(s, fc)
	if err != nil {
		return nil, "", err
	}
	fi, err := a.resolveFunc(schema, fname)
	if err != nil {
		return nil, "", err
	}
	var names []string
	switch {
	case len(coldef) > 0:
		for _, d := range coldef {
			cd := d.GetColumnDef()
			if cd == nil {
				return nil, "", unsupported(d)
			}
			names = append(names, cd.GetColname())
		}
	case fi.conflict:
		return nil, "", opaquef("overloads of %s disagree on their result columns", joinName(schema, fname))
	case fi.outCols != nil:
		names = fi.outCols
	case fi.builtin && fname == "unnest" && len(fc.GetArgs()) > 1 && !rf.GetIsRowsfrom():
		// unnest(a, b) in FROM is ROWS FROM (unnest(a), unnest(b)).
		for range fc.GetArgs() {
			names = append(names, "unnest")
		}
	case nf == 1 && alias != nil:
		names = []string{alias.GetAliasname()}
	default:
		names = []string{fname}
	}
	cols := make([]column, len(names))
	for i, n := range names {
		l := derived(args)
		for _, body := range fi.bodies {
			if len(body) == len(names) {
				l = union(l, body[i].lin)
			} else {
				l = union(l, wholeRow(body))
			}
		}
		cols[i] = column{name: n, lin: l}
	}
	return cols, fname, nil
}

// xmlTable: every column of XMLTABLE derives from the document, the row
// and column expressions and the namespaces; FOR ORDINALITY from nothing.
func (a *analyzer) xmlTable(s *scope, t *pg_query.RangeTableFunc) (*nsItem, error) {
	var base lin
	exprs := []*pg_query.Node{t.GetDocexpr(), t.GetRowexpr()}
	exprs = append(exprs, t.GetNamespaces()...)
	for _, c := range t.GetColumns() {
		col := c.GetRangeTableFuncCol()
		if col == nil {
			return nil, unsupported(c)
		}
		exprs = append(exprs, col.GetColexpr(), col.GetColdefexpr())
	}
	for _, e := range exprs {
		l, err := a.expr(s, e)
		if err != nil {
			return nil, err
		}
		base = union(base, l)
	}
	var cols []column
	for _, c := range t.GetColumns() {
		col := c.GetRangeTableFuncCol()
		l := base
		if col.GetForOrdinality() {
			l = lin{}
		}
		cols = append(cols, column{name: col.GetColname(), lin: l})
	}
	return aliasedItem("xmltable", cols, t.GetAlias())
}

// jsonTable: every column of JSON_TABLE derives from the context item, the
// PASSING arguments and the columns' ON EMPTY/ON ERROR expressions; FOR
// ORDINALITY from nothing. NESTED columns are flattened.
func (a *analyzer) jsonTable(s *scope, t *pg_query.JsonTable) (*nsItem, error) {
	base, err := a.expr(s, t.GetContextItem().GetRawExpr())
	if err != nil {
		return nil, err
	}
	for _, p := range t.GetPassing() {
		l, err := a.expr(s, p)
		if err != nil {
			return nil, err
		}
		base = union(base, l)
	}
	if b := t.GetOnError(); b != nil {
		l, err := a.expr(s, b.GetExpr())
		if err != nil {
			return nil, err
		}
		base = union(base, l)
	}
	type flat struct {
		name    string
		ordinal bool
	}
	var cols []flat
	var walk func([]*pg_query.Node) error
	walk = func(list []*pg_query.Node) error {
		for _, n := range list {
			c := n.GetJsonTableColumn()
			if c == nil {
				return unsupported(n)
			}
			for _, b := range []*pg_query.JsonBehavior{c.GetOnEmpty(), c.GetOnError()} {
				l, err := a.expr(s, b.GetExpr())
				if err != nil {
					return err
				}
				base = union(base, l)
			}
			switch c.GetColtype() {
			case pg_query.JsonTableColumnType_JTC_NESTED:
				if err := walk(c.GetColumns()); err != nil {
					return err
				}
			case pg_query.JsonTableColumnType_JTC_FOR_ORDINALITY:
				cols = append(cols, flat{name: c.GetName(), ordinal: true})
			default:
				cols = append(cols, flat{name: c.GetName()})
			}
		}
		return nil
	}
	if err := walk(t.GetColumns()); err != nil {
		return nil, err
	}
	out := make([]column, len(cols))
	for i, c := range cols {
		out[i].name = c.name
		if !c.ordinal {
			out[i].lin = base
		}
	}
	return aliasedItem("json_table", out, t.GetAlias())
}

func aliasedItem(name string, cols []column, alias *pg_query.Alias) (*nsItem, error) {
	if alias != nil {
		name = alias.GetAliasname()
		var err error
		if cols, err = renamed(cols, stringList(alias.GetColnames()), name); err != nil {
			return nil, err
		}
	}
	return &nsItem{name: name, cols: cols, relVisible: true, colsVisible: true}, nil
}

// stringList reads a list of String nodes (column names).
func stringList(nodes []*pg_query.Node) []string {
	if len(nodes) == 0 {
		return nil
	}
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.GetString_().GetSval()
	}
	return out
}
