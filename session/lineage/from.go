package lineage

import (
	"fmt"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

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
	it.cols = a.rescan(it.cols)
	if alias != nil {
		it.name = alias.GetAliasname()
		var err error
		if it.cols, err = renamed(it.cols, stringList(alias.GetColnames()), fmt.Sprintf("table %q", name)); err != nil {
			return nil, err
		}
	}
	return it, nil
}

// rescan renumbers the scans behind cols, for one reference to the
// relation, view or CTE they are the columns of: two references are two
// scans, whose rows are not the same (FROM patients p, patients q pairs
// p.id with every q.dob), while the answers for the relation or CTE are
// analyzed once and shared.
func (a *analyzer) rescan(cols []column) []column {
	out := slices.Clone(cols)
	var from, to []int
	for i := range out {
		s := out[i].lin.scan
		if s == 0 {
			continue
		}
		k := slices.Index(from, s)
		if k < 0 {
			from, to = append(from, s), append(to, a.newScan())
			k = len(from) - 1
		}
		out[i].lin.scan = to[k]
	}
	return out
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
		return relEntry{err: undefinedf(undefinedTable, "relation %q does not exist or is not visible", written)}
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
		scan := a.newScan() // renumbered by each reference (rescan)
		for i, c := range r.Columns {
			col := Col{Schema: e.schema, Table: name, Column: c.Name, TypeOID: c.TypeOID}
			if c.Inherited && r.RootName != "" && r.RootSchema != "" {
				col.Schema, col.Table = r.RootSchema, r.RootName
			}
			e.cols[i] = column{name: c.Name, lin: plainCol(col, scan)}
		}
		e.err = generatedColumns(e.cols, r)
	case View, MatView:
		e.cols, e.err = a.expandView(e.schema, name, r)
	default:
		e.err = opaquef("relation %s.%s is a %s", e.schema, name, r.Kind)
	}
	return e
}

// generatedColumns makes each generated column of r derived from itself and
// the columns its expression names: `ssn_digits text GENERATED ALWAYS AS
// (replace(ssn, '-', ”)) STORED` holds SSNs under another name. A
// generation expression may name only plain columns of its own table.
func generatedColumns(cols []column, r *Relation) error {
	for i, c := range r.Columns {
		if c.Generated == "" {
			continue
		}
		tree, err := pg_query.Parse("SELECT " + c.Generated)
		if err != nil || len(tree.GetStmts()) != 1 {
			return opaquef("generated column %s.%s.%s: expression does not parse", r.Schema, r.Name, c.Name)
		}
		l := derived(cols[i].lin)
		var bad string
		eachMessage(tree.GetStmts()[0].ProtoReflect(), func(m protoreflect.Message) bool {
			cr, ok := m.Interface().(*pg_query.ColumnRef)
			if !ok {
				return true
			}
			name := ""
			if f := cr.GetFields(); len(f) == 1 {
				name = f[0].GetString_().GetSval()
			}
			j := slices.IndexFunc(r.Columns, func(o Column) bool { return o.Name == name })
			if j < 0 {
				bad = name
				return false
			}
			l = union(l, cols[j].lin)
			return true
		})
		if bad != "" {
			return opaquef("generated column %s.%s.%s: expression names a column phigate cannot find", r.Schema, r.Name, c.Name)
		}
		cols[i].lin = l
	}
	return nil
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
		return 0, undefinedf(undefinedColumn, "column %q specified in USING clause does not exist in %s table", name, side)
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
