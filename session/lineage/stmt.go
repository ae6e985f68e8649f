package lineage

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// maxDepth bounds how deep views and SQL functions may nest in each other.
const maxDepth = 16

// maxSteps bounds the work of one Analyze call, counted in query levels and
// expression nodes analyzed. Recursive CTEs are analyzed once per round of
// their fixpoint, so nesting them multiplies the work: without a bound a
// few kilobytes of SQL would keep a core busy for hours (FuzzAnalyze found
// it). At the bound an Analyze call takes some 15ms; a typical statement
// takes a few hundred steps.
const maxSteps = 50_000

// analyzer holds one Analyze call's state: catalog answers and expansions
// are remembered for the call, so that a view named ten times is read and
// analyzed once.
type analyzer struct {
	cat    Catalog
	rels   map[[2]string]relEntry
	funcs  map[[2]string]*funcInfo
	bodies map[*Function]bodyEntry
	// expanding lists the views and functions being expanded, innermost
	// last: a cycle guard and the depth bound.
	expanding []string
	// sublinkNames holds an EXPR sublink's first output name, which names
	// the column it is the value of.
	sublinkNames map[*pg_query.SubLink]string
	steps        int
	// escapes is what the statement moves out of its result (Result.Escapes);
	// effects counts writes and calls with effects, so that a SQL
	// function's body can be seen to have some.
	escapes lin
	effects int
	// reads is every base column a reference resolved to (Result.Reads).
	reads lin
	// scans is the last scan number given (lin.scan).
	scans int
}

// newScan numbers a scan of a base table.
func (a *analyzer) newScan() int {
	a.scans++
	return a.scans
}

// escapeAll notes that every column of a query's result is stored.
func (a *analyzer) escapeAll(cols []column) {
	a.effects++
	for _, c := range cols {
		a.escapes = union(a.escapes, c.lin)
	}
}

// escape notes that l's value leaves the statement's result: written to a
// table or passed to a function with an effect.
func (a *analyzer) escape(l lin) {
	a.effects++
	a.escapes = union(a.escapes, l)
}

// step counts one unit of work against maxSteps.
func (a *analyzer) step() error {
	a.steps++
	if a.steps > maxSteps {
		return errTooComplex
	}
	return nil
}

var errTooComplex = &opaqueError{reason: "statement too complex to analyze"}

type relEntry struct {
	schema string
	cols   []column
	err    error
}

type bodyEntry struct {
	cols    []column
	err     error
	effects bool // the body writes or calls a function with an effect
}

func newAnalyzer(cat Catalog) *analyzer {
	return &analyzer{cat: cat}
}

// statement analyzes one top-level statement.
func (a *analyzer) statement(n *pg_query.Node) (*Result, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		if x.SelectStmt.GetIntoClause() != nil {
			// SELECT INTO creates a table and returns no rows; what it runs
			// must still be followed, and what it stores escapes.
			cols, err := a.selectStmt(nil, x.SelectStmt)
			if err != nil {
				return nil, err
			}
			a.escapeAll(cols)
			return &Result{}, nil
		}
		cols, err := a.selectStmt(nil, x.SelectStmt)
		return rowsResult(cols, true, err)
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		cols, rows, err := a.query(nil, n)
		return rowsResult(cols, rows, err)
	case *pg_query.Node_CopyStmt:
		cols, rows, err := a.copyStmt(x.CopyStmt)
		return rowsResult(cols, rows, err)
	case *pg_query.Node_DeclareCursorStmt:
		cols, rows, err := a.query(nil, x.DeclareCursorStmt.GetQuery())
		res, err := rowsResult(cols, rows, err)
		if res == nil {
			res = &Result{}
		}
		res.DefinesCursor = x.DeclareCursorStmt.GetPortalname()
		return res, err
	case *pg_query.Node_PrepareStmt:
		cols, rows, err := a.query(nil, x.PrepareStmt.GetQuery())
		res, err := rowsResult(cols, rows, err)
		if res == nil {
			res = &Result{}
		}
		res.DefinesPrepared = x.PrepareStmt.GetName()
		return res, err
	case *pg_query.Node_ExecuteStmt:
		// The parameters flow into the prepared statement's outputs, where
		// the caller's record of it cannot see them: a parameter that
		// carries a column is opaque.
		for _, p := range x.ExecuteStmt.GetParams() {
			l, err := a.expr(nil, p)
			if err != nil {
				return nil, err
			}
			if len(l.srcs) > 0 {
				return nil, opaquef("EXECUTE %s: a parameter derives from table columns", x.ExecuteStmt.GetName())
			}
		}
		return &Result{Prepared: x.ExecuteStmt.GetName()}, nil
	case *pg_query.Node_FetchStmt:
		return &Result{Cursor: x.FetchStmt.GetPortalname()}, nil
	case *pg_query.Node_ExplainStmt:
		// Without ANALYZE nothing runs but the planner, which still
		// evaluates immutable functions on constants: an opaque inner
		// statement makes EXPLAIN opaque too.
		q := x.ExplainStmt.GetQuery()
		if q.GetExecuteStmt() != nil {
			return nil, opaquef("EXPLAIN EXECUTE: the prepared statement is not visible here")
		}
		if _, err := a.statement(q); err != nil {
			return nil, err
		}
		return &Result{Outputs: []Output{{Name: "QUERY PLAN"}}}, nil
	case *pg_query.Node_CreateTableAsStmt:
		q := x.CreateTableAsStmt.GetQuery()
		if q.GetExecuteStmt() != nil {
			return nil, opaquef("CREATE TABLE AS EXECUTE: the prepared statement is not visible here")
		}
		cols, _, err := a.query(nil, q)
		if err != nil {
			return nil, err
		}
		a.escapeAll(cols)
		return &Result{}, nil
	case *pg_query.Node_CallStmt:
		return nil, opaquef("CALL %s: a procedure's effects are not followed", funcCallName(x.CallStmt.GetFunccall()))
	case *pg_query.Node_DoStmt:
		return nil, opaquef("DO: an anonymous code block is not followed")
	case *pg_query.Node_VariableShowStmt:
		if x.VariableShowStmt.GetName() == "all" {
			return &Result{Outputs: []Output{{Name: "name"}, {Name: "setting"}, {Name: "description"}}}, nil
		}
		return &Result{Outputs: []Output{{Name: x.VariableShowStmt.GetName()}}}, nil
	case *pg_query.Node_VariableSetStmt, *pg_query.Node_TransactionStmt, *pg_query.Node_ListenStmt,
		*pg_query.Node_UnlistenStmt, *pg_query.Node_NotifyStmt, *pg_query.Node_DeallocateStmt,
		*pg_query.Node_DiscardStmt, *pg_query.Node_ClosePortalStmt, *pg_query.Node_LockStmt,
		*pg_query.Node_ConstraintsSetStmt:
		// No rows and no expressions of the caller's.
		return &Result{}, nil
	}
	return a.utility(n)
}

// rowsResult turns a query's columns into a Result.
func rowsResult(cols []column, rows bool, err error) (*Result, error) {
	if err != nil {
		return nil, err
	}
	if !rows {
		return &Result{}, nil
	}
	out := make([]Output, len(cols))
	for i, c := range cols {
		if c.lin.bottom {
			return nil, opaquef("recursive query: column %q has no non-recursive source", c.name)
		}
		out[i] = Output{Name: c.name, Plain: c.lin.plain, Sources: c.lin.srcs}
		if c.lin.plain {
			out[i].Scan = c.lin.scan
		}
	}
	return &Result{Outputs: out}, nil
}

// query analyzes a statement that may return rows in a query's place: a
// CTE's body, a cursor's or prepared statement's query, a function body's
// statement. rows is false for a data-modifying statement without
// RETURNING.
func (a *analyzer) query(parent *scope, n *pg_query.Node) ([]column, bool, error) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		if x.SelectStmt.GetIntoClause() != nil {
			return nil, false, opaquef("SELECT ... INTO is not allowed here")
		}
		cols, err := a.selectStmt(parent, x.SelectStmt)
		return cols, true, err
	case *pg_query.Node_InsertStmt:
		return a.insertStmt(parent, x.InsertStmt)
	case *pg_query.Node_UpdateStmt:
		return a.updateStmt(parent, x.UpdateStmt)
	case *pg_query.Node_DeleteStmt:
		return a.deleteStmt(parent, x.DeleteStmt)
	case *pg_query.Node_MergeStmt:
		return a.mergeStmt(parent, x.MergeStmt)
	}
	return nil, false, unsupported(n)
}

// copyStmt: COPY (query) TO returns the query's rows; COPY table [(cols)]
// TO returns those columns; COPY ... FROM returns none but may run a WHERE.
func (a *analyzer) copyStmt(st *pg_query.CopyStmt) ([]column, bool, error) {
	if q := st.GetQuery(); q != nil {
		return a.query(nil, q)
	}
	rv := st.GetRelation()
	if rv == nil {
		return nil, false, opaquef("COPY without a relation or query")
	}
	s := &scope{}
	it, err := a.rangeVar(s, rv, false)
	if err != nil {
		return nil, false, err
	}
	s.items = []*nsItem{it}
	if st.GetIsFrom() {
		if _, err := a.expr(s, st.GetWhereClause()); err != nil {
			return nil, false, err
		}
		return nil, false, nil
	}
	if len(st.GetAttlist()) == 0 {
		return it.cols, true, nil
	}
	cols := make([]column, 0, len(st.GetAttlist()))
	for _, n := range st.GetAttlist() {
		name := n.GetString_().GetSval()
		l, found, err := it.column(name)
		if err != nil {
			return nil, false, err
		}
		if !found {
			return nil, false, undefinedf(undefinedColumn, "column %q of relation %q does not exist", name, rv.GetRelname())
		}
		cols = append(cols, column{name: name, lin: l})
	}
	return cols, true, nil
}

// withTarget sets up a data-modifying statement's level: its WITH, then its
// target relation as the first FROM item.
func (a *analyzer) withTarget(parent *scope, w *pg_query.WithClause, rv *pg_query.RangeVar) (*scope, *nsItem, error) {
	s := &scope{parent: parent}
	if err := a.with(s, w); err != nil {
		return nil, nil, err
	}
	if rv == nil {
		return nil, nil, opaquef("data-modifying statement without a target")
	}
	it, err := a.rangeVar(s, rv, false)
	if err != nil {
		return nil, nil, err
	}
	s.items = []*nsItem{it}
	return s, it, nil
}

// assignTarget returns the index of the target column a SET or INSERT
// column list names, after checking the subscripts it may carry.
func (a *analyzer) assignTarget(s *scope, it *nsItem, rt *pg_query.ResTarget) (int, error) {
	for _, ind := range rt.GetIndirection() {
		if _, err := a.expr(s, ind); err != nil {
			return 0, err
		}
	}
	idx := -1
	for i, c := range it.cols {
		if c.name == rt.GetName() {
			if idx >= 0 {
				return 0, opaquef("column reference %q is ambiguous", rt.GetName())
			}
			idx = i
		}
	}
	if idx < 0 {
		return 0, undefinedf(undefinedColumn, "column %q of relation %q does not exist", rt.GetName(), it.name)
	}
	return idx, nil
}

// returning analyzes a RETURNING list; rows is false without one.
func (a *analyzer) returning(s *scope, list []*pg_query.Node) ([]column, bool, error) {
	if len(list) == 0 {
		return nil, false, nil
	}
	cols, err := a.targetList(s, list)
	return cols, true, err
}

// insertStmt: RETURNING sees the target's columns, each also derived from
// what was inserted into it.
func (a *analyzer) insertStmt(parent *scope, st *pg_query.InsertStmt) ([]column, bool, error) {
	s, target, err := a.withTarget(parent, st.GetWithClause(), st.GetRelation())
	if err != nil {
		return nil, false, err
	}
	s.items = nil // the source does not see the target
	var src []lin
	if sel := st.GetSelectStmt().GetSelectStmt(); sel != nil {
		cols, err := a.selectStmt(s, sel)
		for _, c := range cols {
			src = append(src, c.lin)
		}
		if err != nil {
			return nil, false, err
		}
	} else if st.GetSelectStmt() != nil {
		return nil, false, unsupported(st.GetSelectStmt())
	}
	newCols := append([]column(nil), target.cols...)
	targets := make([]int, 0, len(src))
	if len(st.GetCols()) > 0 {
		for _, n := range st.GetCols() {
			rt := n.GetResTarget()
			if rt == nil {
				return nil, false, unsupported(n)
			}
			idx, err := a.assignTarget(s, target, rt)
			if err != nil {
				return nil, false, err
			}
			targets = append(targets, idx)
		}
	} else {
		for i := range min(len(src), len(newCols)) {
			targets = append(targets, i)
		}
	}
	if len(src) > len(targets) {
		return nil, false, opaquef("INSERT has more expressions than target columns")
	}
	for i, l := range src {
		a.escape(l)
		a.wrote(target, targets[i])
		newCols[targets[i]].lin = addSources(newCols[targets[i]].lin, l)
	}
	a.effects++
	s.items = []*nsItem{target}
	if oc := st.GetOnConflictClause(); oc != nil {
		excluded := &nsItem{name: "excluded", cols: append([]column(nil), newCols...), relVisible: true}
		s.items = []*nsItem{target, excluded}
		if inf := oc.GetInfer(); inf != nil {
			for _, e := range inf.GetIndexElems() {
				if err := a.check(s, e.GetIndexElem().GetExpr()); err != nil {
					return nil, false, err
				}
			}
			if err := a.check(s, inf.GetWhereClause()); err != nil {
				return nil, false, err
			}
		}
		for _, n := range oc.GetTargetList() {
			if err := a.assign(s, target, newCols, n); err != nil {
				return nil, false, err
			}
		}
		if err := a.check(s, oc.GetWhereClause()); err != nil {
			return nil, false, err
		}
	}
	s.items = []*nsItem{{name: target.name, schema: target.schema, cols: newCols, relVisible: true, colsVisible: true}}
	return a.returning(s, st.GetReturningList())
}

// assign follows one SET item (col = expr, col[i] = expr, (a, b) = ...)
// into newCols.
func (a *analyzer) assign(s *scope, target *nsItem, newCols []column, n *pg_query.Node) error {
	rt := n.GetResTarget()
	if rt == nil {
		return unsupported(n)
	}
	idx, err := a.assignTarget(s, target, rt)
	if err != nil {
		return err
	}
	l, err := a.expr(s, rt.GetVal())
	if err != nil {
		return err
	}
	a.escape(l)
	a.wrote(target, idx)
	newCols[idx].lin = addSources(newCols[idx].lin, l)
	return nil
}

// wrote notes that the statement writes column idx of target: a constraint
// it violates may quote another row's value of it (an exclusion
// constraint's "conflicts with existing key"), so it counts as read.
func (a *analyzer) wrote(target *nsItem, idx int) {
	a.reads = union(a.reads, target.cols[idx].lin)
}

func (a *analyzer) updateStmt(parent *scope, st *pg_query.UpdateStmt) ([]column, bool, error) {
	s, target, err := a.withTarget(parent, st.GetWithClause(), st.GetRelation())
	if err != nil {
		return nil, false, err
	}
	if err := a.fromClause(s, st.GetFromClause()); err != nil {
		return nil, false, err
	}
	newCols := append([]column(nil), target.cols...)
	for _, n := range st.GetTargetList() {
		if err := a.assign(s, target, newCols, n); err != nil {
			return nil, false, err
		}
	}
	if err := a.check(s, st.GetWhereClause()); err != nil {
		return nil, false, err
	}
	s.items[0] = &nsItem{name: target.name, schema: target.schema, cols: newCols, relVisible: true, colsVisible: true}
	return a.returning(s, st.GetReturningList())
}

func (a *analyzer) deleteStmt(parent *scope, st *pg_query.DeleteStmt) ([]column, bool, error) {
	a.effects++
	s, _, err := a.withTarget(parent, st.GetWithClause(), st.GetRelation())
	if err != nil {
		return nil, false, err
	}
	if err := a.fromClause(s, st.GetUsingClause()); err != nil {
		return nil, false, err
	}
	if err := a.check(s, st.GetWhereClause()); err != nil {
		return nil, false, err
	}
	return a.returning(s, st.GetReturningList())
}

func (a *analyzer) mergeStmt(parent *scope, st *pg_query.MergeStmt) ([]column, bool, error) {
	s, target, err := a.withTarget(parent, st.GetWithClause(), st.GetRelation())
	if err != nil {
		return nil, false, err
	}
	if err := a.fromClause(s, []*pg_query.Node{st.GetSourceRelation()}); err != nil {
		return nil, false, err
	}
	if err := a.check(s, st.GetJoinCondition()); err != nil {
		return nil, false, err
	}
	newCols := append([]column(nil), target.cols...)
	for _, n := range st.GetMergeWhenClauses() {
		w := n.GetMergeWhenClause()
		if w == nil {
			return nil, false, unsupported(n)
		}
		if err := a.check(s, w.GetCondition()); err != nil {
			return nil, false, err
		}
		switch w.GetCommandType() {
		case pg_query.CmdType_CMD_UPDATE:
			for _, t := range w.GetTargetList() {
				if err := a.assign(s, target, newCols, t); err != nil {
					return nil, false, err
				}
			}
		case pg_query.CmdType_CMD_INSERT:
			var idx []int
			for _, t := range w.GetTargetList() {
				rt := t.GetResTarget()
				if rt == nil {
					return nil, false, unsupported(t)
				}
				i, err := a.assignTarget(s, target, rt)
				if err != nil {
					return nil, false, err
				}
				idx = append(idx, i)
			}
			if len(idx) == 0 {
				for i := range min(len(w.GetValues()), len(newCols)) {
					idx = append(idx, i)
				}
			}
			if len(w.GetValues()) > len(idx) {
				return nil, false, opaquef("MERGE INSERT has more expressions than target columns")
			}
			for i, v := range w.GetValues() {
				l, err := a.expr(s, v)
				if err != nil {
					return nil, false, err
				}
				a.escape(l)
				a.wrote(target, idx[i])
				newCols[idx[i]].lin = addSources(newCols[idx[i]].lin, l)
			}
		case pg_query.CmdType_CMD_DELETE, pg_query.CmdType_CMD_NOTHING:
		default:
			return nil, false, opaquef("unsupported: MERGE action %s", w.GetCommandType())
		}
	}
	s.items[0] = &nsItem{name: target.name, schema: target.schema, cols: newCols, relVisible: true, colsVisible: true}
	return a.returning(s, st.GetReturningList())
}
