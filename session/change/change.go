package change

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/phigate/phigate/session/protoorder"
)

// Op is the kind of data change a Plan reads around, as recorded
// (record.Change.Op).
type Op string

const (
	OpUpdate   Op = "update"
	OpDelete   Op = "delete"
	OpInsert   Op = "insert" // INSERT ... ON CONFLICT
	OpMerge    Op = "merge"
	OpTruncate Op = "truncate"
	OpCall     Op = "call" // CALL, DO
	// OpOther: a statement that changes rows through something else
	// (EXPLAIN ANALYZE, COPY of a data change, a function).
	OpOther Op = "other"
)

// NotAnalysed is the error for a statement that changes rows in a way
// phigate does not read around. Reason never holds values.
type NotAnalysed struct {
	Op     Op
	Reason string
}

func (e *NotAnalysed) Error() string { return "not analysed: " + e.Reason }

func notAnalysed(op Op, format string, args ...any) error {
	return &NotAnalysed{Op: op, Reason: fmt.Sprintf(format, args...)}
}

// ErrStatement is returned for text that is not exactly one statement the
// parser accepts.
var ErrStatement = errors.New("change: not one statement")

// MaxBound is the largest row bound Analyze accepts: the after read by key
// binds a parameter per key column of every before row, and the protocol
// allows 65535 parameters.
const MaxBound = 10000

// Plan is how to read the rows one statement changes.
type Plan struct {
	Op Op
	// Target names the relation the statement changes, as written
	// (schema.name), for messages.
	Target string
	// Relations are the relations the reads name, the target first, each
	// as a qualified name in the quoted form to_regclass reads. A proxy
	// resolves them in the session first: a name that is a CTE, or no
	// relation at all, resolves to none.
	Relations []string
	// Before is the read to run just before the statement.
	Before string
	// Assigns are the target columns the statement assigns (UPDATE SET,
	// DO UPDATE SET, MERGE ... UPDATE SET): rows cannot be found again by a
	// key the statement changes.
	Assigns []string
	// Params is the highest parameter number ($n) the statement uses.
	Params int
	// NeedsKey: the after read can find the rows only by the key of the
	// before rows (UPDATE); without a key there is no after read.
	NeedsKey bool
	// NoAfter: the statement leaves no rows to read (DELETE).
	NoAfter bool

	version int32
	ref     string               // how the reads refer to the target: its alias or name
	rel     *pg_query.RangeVar   // the target, as written
	with    *pg_query.WithClause // the reads' WITH clause (nil: none)
	match   *pg_query.Node       // the condition the after read shares with the before read (nil: by key only)
	bound   int
	afters  *afterReads // After's answers, by arguments (nil: not kept)
	// A plan made from a template's (template.go): the template's plan,
	// and the constants its parameters stand for.
	tmpl     *Plan
	literals []string
	// A template's plan: its reads split at their parameters.
	splits *splits
}

// afterReads keeps a plan's after reads: writing one deparses it and parses
// it back, milliseconds of CPU, and a plan cached for a prepared statement
// asks for the same few shapes at every execution.
type afterReads struct {
	mu    sync.Mutex
	reads map[string]afterRead
}

type afterRead struct {
	sql string
	err error
}

// maxAfterReads bounds the shapes one plan keeps (row counts vary up to
// the bound).
const maxAfterReads = 64

// Analyze plans the reads around one statement (sql is its whole text).
// It returns (nil, nil) for a statement that changes no rows phigate
// records (reads, plain INSERTs, DDL...), a *NotAnalysed for one it cannot
// read around, and ErrStatement for text that is not exactly one parsable
// statement. bound is the most rows a read records (1..MaxBound).
func Analyze(sql string, bound int) (*Plan, error) {
	if bound < 1 || bound > MaxBound {
		return nil, fmt.Errorf("change: bound %d is outside 1..%d", bound, MaxBound)
	}
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.GetStmts()) != 1 {
		return nil, ErrStatement
	}
	return analyzeNode(tree.GetVersion(), tree.GetStmts()[0].GetStmt(), bound)
}

func analyzeNode(version int32, n *pg_query.Node, bound int) (*Plan, error) {
	a := &analysis{version: version, bound: bound, params: maxParam(n)}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_UpdateStmt:
		return a.update(n, x.UpdateStmt)
	case *pg_query.Node_DeleteStmt:
		return a.delete(n, x.DeleteStmt)
	case *pg_query.Node_InsertStmt:
		if x.InsertStmt.GetOnConflictClause() == nil {
			if op, nested := nestedChange(n); nested {
				return nil, notAnalysed(op, "a data-modifying WITH clause changes rows phigate does not read")
			}
			return nil, nil // new rows only: the command holds them
		}
		return a.upsert(n, x.InsertStmt)
	case *pg_query.Node_MergeStmt:
		return a.merge(n, x.MergeStmt)
	case *pg_query.Node_TruncateStmt:
		return nil, notAnalysed(OpTruncate, "TRUNCATE removes every row of its tables; phigate does not copy whole tables")
	case *pg_query.Node_CallStmt:
		return nil, notAnalysed(OpCall, "a procedure may change any rows; phigate cannot see which")
	case *pg_query.Node_DoStmt:
		return nil, notAnalysed(OpCall, "a DO block may change any rows; phigate cannot see which")
	case *pg_query.Node_ExplainStmt:
		if op, nested := nestedChange(n); nested && explainRuns(x.ExplainStmt) {
			return nil, notAnalysed(op, "EXPLAIN ANALYZE runs the change; phigate reads around the statement itself only")
		}
		return nil, nil
	case *pg_query.Node_SelectStmt, *pg_query.Node_CopyStmt, *pg_query.Node_CreateTableAsStmt:
		// They run what they hold now; other statements that hold a
		// change (PREPARE, CREATE RULE, CREATE FUNCTION) only define it.
		if op, nested := nestedChange(n); nested {
			return nil, notAnalysed(op, "the change is inside a %s; phigate reads around UPDATE, DELETE, INSERT ... ON CONFLICT and MERGE statements only",
				strings.ReplaceAll(nodeKind(n), "_", " "))
		}
	}
	return nil, nil
}

// analysis is one statement being planned.
type analysis struct {
	version int32
	bound   int
	params  int
}

// common checks what every change kind refuses, and reads the target.
func (a *analysis) common(op Op, root *pg_query.Node, rel *pg_query.RangeVar) (*Plan, error) {
	if rel == nil || rel.GetRelname() == "" {
		return nil, notAnalysed(op, "the statement names no target table")
	}
	if nested := nestedChanges(root); nested > 1 {
		return nil, notAnalysed(op, "a data-modifying WITH clause changes rows phigate does not read")
	}
	var why string
	walk(root.ProtoReflect(), func(m protoreflect.Message) bool {
		switch m.Interface().(type) {
		case *pg_query.CurrentOfExpr:
			why = "WHERE CURRENT OF a cursor names the row by the cursor's position, which a read cannot share"
		}
		return why == ""
	})
	if why != "" {
		return nil, notAnalysed(op, "%s", why)
	}
	p := &Plan{Op: op, Target: displayName(rel), Params: a.params, version: a.version, rel: rel, ref: refName(rel), bound: a.bound,
		afters: &afterReads{reads: map[string]afterRead{}}}
	return p, nil
}

func (a *analysis) update(root *pg_query.Node, u *pg_query.UpdateStmt) (*Plan, error) {
	p, err := a.common(OpUpdate, root, u.GetRelation())
	if err != nil {
		return nil, err
	}
	for _, t := range u.GetTargetList() {
		p.Assigns = appendUnique(p.Assigns, t.GetResTarget().GetName())
	}
	p.with = u.GetWithClause()
	p.NeedsKey = true
	return p, p.finish(withFrom(u.GetWhereClause(), u.GetFromClause()), pg_query.LockClauseStrength_LCS_FORNOKEYUPDATE)
}

func (a *analysis) delete(root *pg_query.Node, d *pg_query.DeleteStmt) (*Plan, error) {
	p, err := a.common(OpDelete, root, d.GetRelation())
	if err != nil {
		return nil, err
	}
	p.with = d.GetWithClause()
	p.NoAfter = true
	return p, p.finish(withFrom(d.GetWhereClause(), d.GetUsingClause()), pg_query.LockClauseStrength_LCS_FORUPDATE)
}

func (a *analysis) merge(root *pg_query.Node, m *pg_query.MergeStmt) (*Plan, error) {
	p, err := a.common(OpMerge, root, m.GetRelation())
	if err != nil {
		return nil, err
	}
	lock := pg_query.LockClauseStrength_LCS_NONE
	for _, w := range m.GetMergeWhenClauses() {
		c := w.GetMergeWhenClause()
		if c.GetMatchKind() == pg_query.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE {
			return nil, notAnalysed(OpMerge, "WHEN NOT MATCHED BY SOURCE changes target rows the join does not match")
		}
		switch c.GetCommandType() {
		case pg_query.CmdType_CMD_DELETE:
			lock = pg_query.LockClauseStrength_LCS_FORUPDATE
		case pg_query.CmdType_CMD_UPDATE:
			if lock == pg_query.LockClauseStrength_LCS_NONE {
				lock = pg_query.LockClauseStrength_LCS_FORNOKEYUPDATE
			}
			for _, t := range c.GetTargetList() {
				p.Assigns = appendUnique(p.Assigns, t.GetResTarget().GetName())
			}
		}
	}
	if m.GetSourceRelation() == nil {
		return nil, notAnalysed(OpMerge, "the statement names no source")
	}
	p.with = m.GetWithClause()
	p.match = exists([]*pg_query.Node{m.GetSourceRelation()}, m.GetJoinCondition())
	return p, p.finish(p.match, lock)
}

// upsert plans INSERT ... ON CONFLICT (columns or expressions) DO UPDATE or
// DO NOTHING.
func (a *analysis) upsert(root *pg_query.Node, ins *pg_query.InsertStmt) (*Plan, error) {
	p, err := a.common(OpInsert, root, ins.GetRelation())
	if err != nil {
		return nil, err
	}
	oc := ins.GetOnConflictClause()
	infer := oc.GetInfer()
	switch {
	case infer == nil:
		return nil, notAnalysed(OpInsert, "ON CONFLICT without a conflict target may conflict on any unique index; phigate reads rows by the target's columns")
	case infer.GetConname() != "":
		return nil, notAnalysed(OpInsert, "ON CONFLICT ON CONSTRAINT names the columns only in the catalog; phigate reads rows by the target's columns")
	case ins.GetSelectStmt() == nil:
		return nil, notAnalysed(OpInsert, "DEFAULT VALUES: the conflict columns take their defaults")
	}
	var cols []string
	for _, c := range ins.GetCols() {
		rt := c.GetResTarget()
		if rt == nil || len(rt.GetIndirection()) > 0 {
			return nil, notAnalysed(OpInsert, "an INSERT column with a subscript or field")
		}
		cols = append(cols, rt.GetName())
	}
	if oc.GetAction() == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
		for _, t := range oc.GetTargetList() {
			p.Assigns = appendUnique(p.Assigns, t.GetResTarget().GetName())
		}
	}
	rows := rowsName(root)
	// The conflict target, as pairs of the same expression over the table
	// (its alias) and over the proposed rows.
	var eqs []*pg_query.Node
	var keyCols []string // conflict columns, for the DEFAULT check
	for _, e := range infer.GetIndexElems() {
		ie := e.GetIndexElem()
		if ie == nil || len(ie.GetCollation()) > 0 || len(ie.GetOpclass()) > 0 {
			return nil, notAnalysed(OpInsert, "a conflict target with a collation or operator class")
		}
		var onTable, onRows *pg_query.Node
		if ie.GetName() != "" {
			onTable, onRows = columnRef(p.ref, ie.GetName()), columnRef(rows, ie.GetName())
			keyCols = append(keyCols, ie.GetName())
		} else if ie.GetExpr() != nil {
			names, ok := bareColumns(ie.GetExpr())
			if !ok {
				return nil, notAnalysed(OpInsert, "a conflict target expression phigate cannot follow")
			}
			keyCols = append(keyCols, names...)
			onTable, onRows = qualify(ie.GetExpr(), p.ref), qualify(ie.GetExpr(), rows)
		} else {
			return nil, notAnalysed(OpInsert, "an empty conflict target")
		}
		eqs = append(eqs, opEq(onTable, onRows))
	}
	for _, k := range keyCols {
		if len(cols) > 0 && !contains(cols, k) {
			return nil, notAnalysed(OpInsert, "conflict column %s takes its default, which phigate does not evaluate", quoteIdent(k))
		}
	}
	src, err := proposedRows(ins, cols, keyCols)
	if err != nil {
		return nil, err
	}
	// WITH <the statement's own CTEs>, rows AS (SELECT cols FROM t WHERE
	// false UNION ALL <the proposed rows>): the typed empty branch gives
	// the proposed values the target columns' types, as the INSERT does.
	typed := newSelect()
	if len(cols) == 0 {
		typed.TargetList = []*pg_query.Node{resTarget(starRef(""))}
	}
	for _, c := range cols {
		typed.TargetList = append(typed.TargetList, resTarget(columnRef("", c)))
	}
	bare := proto.Clone(p.rel).(*pg_query.RangeVar)
	bare.Alias = nil
	typed.FromClause = []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: bare}}}
	typed.WhereClause = boolConst(false)
	union := &pg_query.SelectStmt{Op: pg_query.SetOperation_SETOP_UNION, All: true, Larg: typed, Rarg: src,
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT}
	with := &pg_query.WithClause{}
	if w := ins.GetWithClause(); w != nil {
		with = proto.Clone(w).(*pg_query.WithClause)
	}
	with.Ctes = append(with.Ctes, &pg_query.Node{Node: &pg_query.Node_CommonTableExpr{CommonTableExpr: &pg_query.CommonTableExpr{
		Ctename: rows, Ctematerialized: pg_query.CTEMaterialize_CTEMaterializeDefault,
		Ctequery: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: union}},
	}}})
	p.with = with
	rowsRef := &pg_query.Node{Node: &pg_query.Node_RangeVar{RangeVar: rangeVar(rows)}}
	p.match = exists([]*pg_query.Node{rowsRef}, and(eqs...))
	if pred := infer.GetWhereClause(); pred != nil {
		if _, ok := bareColumns(pred); !ok {
			return nil, notAnalysed(OpInsert, "a conflict target predicate phigate cannot follow")
		}
		p.match = and(p.match, qualify(pred, p.ref))
	}
	lock := pg_query.LockClauseStrength_LCS_NONE
	if oc.GetAction() == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
		lock = pg_query.LockClauseStrength_LCS_FORNOKEYUPDATE
	}
	return p, p.finish(p.match, lock)
}

// proposedRows is the INSERT's source as a set operation branch: its
// VALUES with DEFAULT items made NULL (refused in a conflict column), or
// its query.
func proposedRows(ins *pg_query.InsertStmt, cols, keyCols []string) (*pg_query.SelectStmt, error) {
	src := proto.Clone(ins.GetSelectStmt().GetSelectStmt()).(*pg_query.SelectStmt)
	if src == nil {
		return nil, notAnalysed(OpInsert, "an INSERT source phigate cannot follow")
	}
	for _, l := range src.GetValuesLists() {
		items := l.GetList().GetItems()
		for i, it := range items {
			if it.GetSetToDefault() == nil {
				continue
			}
			if len(cols) == 0 || i >= len(cols) || contains(keyCols, cols[i]) {
				return nil, notAnalysed(OpInsert, "a conflict column takes its DEFAULT, which phigate does not evaluate")
			}
			items[i] = nullConst()
		}
	}
	return src, nil
}

// withFrom is an UPDATE's or DELETE's condition as a read of the target
// alone: with a FROM or USING list, EXISTS over it.
func withFrom(where *pg_query.Node, from []*pg_query.Node) *pg_query.Node {
	if len(from) == 0 {
		return where
	}
	return exists(from, where)
}

// finish builds the before read: the target's rows that match, with the
// statement's lock on them, and the bound.
func (p *Plan) finish(match *pg_query.Node, lock pg_query.LockClauseStrength) error {
	sel := p.read(match)
	if lock != pg_query.LockClauseStrength_LCS_NONE {
		sel.LockingClause = []*pg_query.Node{{Node: &pg_query.Node_LockingClause{LockingClause: &pg_query.LockingClause{
			LockedRels: []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: rangeVar(p.ref)}}},
			Strength:   lock, WaitPolicy: pg_query.LockWaitPolicy_LockWaitBlock,
		}}}}
	}
	sql, err := p.deparse(sel)
	if err != nil {
		return err
	}
	p.Before = sql
	p.Relations = []string{qualifiedName(p.rel)} // the target first
	for _, r := range relations(sel) {
		p.Relations = appendUnique(p.Relations, r)
	}
	return nil
}

// read is SELECT ref.* FROM target WHERE match LIMIT bound+1, under the
// plan's WITH clause.
func (p *Plan) read(match *pg_query.Node) *pg_query.SelectStmt {
	sel := newSelect()
	if p.with != nil {
		sel.WithClause = proto.Clone(p.with).(*pg_query.WithClause)
	}
	sel.TargetList = []*pg_query.Node{resTarget(starRef(p.ref))}
	sel.FromClause = []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: proto.Clone(p.rel).(*pg_query.RangeVar)}}}
	if match != nil {
		sel.WhereClause = proto.Clone(match).(*pg_query.Node)
	}
	sel.LimitCount = intConst(int64(p.bound) + 1)
	sel.LimitOption = pg_query.LimitOption_LIMIT_OPTION_COUNT
	return sel
}

// After returns the read to run just after the statement. keys are the
// target's key columns (none: it has no key), rows the number of before
// rows whose key values are bound, row by row, as parameters first,
// first+1, ... (first is one more than the parameters the statement's
// own execution binds). It returns "" when there is nothing to read: a
// DELETE, or an UPDATE of a table without a key (or one that assigns a key
// column, whose rows the old key no longer finds).
func (p *Plan) After(keys []string, rows, first int) (string, error) {
	if p.NoAfter {
		return "", nil
	}
	if p.tmpl != nil {
		return p.afterBound(keys, rows, first)
	}
	if p.afters == nil {
		return p.after(keys, rows, first)
	}
	key := fmt.Sprintf("%d/%d/%q", rows, first, keys)
	p.afters.mu.Lock()
	r, ok := p.afters.reads[key]
	p.afters.mu.Unlock()
	if ok {
		return r.sql, r.err
	}
	sql, err := p.after(keys, rows, first)
	p.afters.mu.Lock()
	if len(p.afters.reads) >= maxAfterReads {
		clear(p.afters.reads)
	}
	p.afters.reads[key] = afterRead{sql, err}
	p.afters.mu.Unlock()
	return sql, err
}

// after is After, written afresh.
func (p *Plan) after(keys []string, rows, first int) (string, error) {
	byKey := len(keys) > 0 && rows > 0
	for _, k := range keys {
		if contains(p.Assigns, k) {
			byKey = false
		}
	}
	if byKey && first-1+rows*len(keys) > 65535 {
		byKey = false
	}
	var match *pg_query.Node
	switch {
	case byKey && p.match != nil:
		match = or(p.match, keyMatch(p.ref, keys, rows, first))
	case byKey:
		match = keyMatch(p.ref, keys, rows, first)
	case p.NeedsKey:
		return "", nil
	case p.match != nil:
		match = p.match
	default:
		return "", nil
	}
	return p.deparse(p.read(match))
}

// deparse writes sel as SQL and checks that the parser reads back exactly
// sel: one SELECT, every node the same (locations aside).
func (p *Plan) deparse(sel *pg_query.SelectStmt) (string, error) {
	node := &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}
	sql, err := pg_query.Deparse(&pg_query.ParseResult{Version: p.version, Stmts: []*pg_query.RawStmt{{Stmt: node}}})
	if err != nil {
		return "", notAnalysed(p.Op, "phigate could not write its read of this statement")
	}
	back, err := pg_query.Parse(sql)
	if err != nil || len(back.GetStmts()) != 1 || back.GetStmts()[0].GetStmt().GetSelectStmt() == nil ||
		!sameTree(node, back.GetStmts()[0].GetStmt()) {
		return "", notAnalysed(p.Op, "phigate could not write its read of this statement exactly")
	}
	return sql, nil
}

// keyMatch is ref.k = ANY(ARRAY[$first, ...]) for one key column, else
// (ref.k1 = $n AND ref.k2 = $n+1) OR ... per row.
func keyMatch(ref string, keys []string, rows, first int) *pg_query.Node {
	if len(keys) == 1 {
		elems := make([]*pg_query.Node, rows)
		for i := range elems {
			elems[i] = paramRef(first + i)
		}
		return &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{Kind: pg_query.A_Expr_Kind_AEXPR_OP_ANY, Name: catalogEq(),
			Lexpr: columnRef(ref, keys[0]), Rexpr: &pg_query.Node{Node: &pg_query.Node_AArrayExpr{AArrayExpr: &pg_query.A_ArrayExpr{Elements: elems}}}}}}
	}
	var alts []*pg_query.Node
	n := first
	for range rows {
		var eqs []*pg_query.Node
		for _, k := range keys {
			eqs = append(eqs, opEq(columnRef(ref, k), paramRef(n)))
			n++
		}
		alts = append(alts, and(eqs...))
	}
	return or(alts...)
}

// explainRuns reports whether EXPLAIN runs its statement: the last ANALYZE
// option wins; one whose value cannot be read counts as running.
func explainRuns(e *pg_query.ExplainStmt) bool {
	runs := false
	for _, o := range e.GetOptions() {
		d := o.GetDefElem()
		if d == nil || d.GetDefname() != "analyze" {
			continue
		}
		runs = true
		arg := d.GetArg()
		switch {
		case arg == nil:
		case arg.GetBoolean() != nil:
			runs = arg.GetBoolean().GetBoolval()
		case arg.GetString_() != nil:
			switch strings.ToLower(arg.GetString_().GetSval()) {
			case "false", "off", "no", "0", "f", "n", "fa", "fal", "fals":
				runs = false
			}
		case arg.GetInteger() != nil:
			runs = arg.GetInteger().GetIval() != 0
		}
	}
	return runs
}

// nestedChange reports whether n holds a data-changing statement below
// its root, and which.
func nestedChange(n *pg_query.Node) (Op, bool) {
	op, found := OpOther, false
	root := stmtOf(n)
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		if found {
			return false
		}
		var o Op
		switch x := m.Interface().(type) {
		case *pg_query.UpdateStmt:
			o = OpUpdate
		case *pg_query.DeleteStmt:
			o = OpDelete
		case *pg_query.InsertStmt:
			o = OpInsert
		case *pg_query.MergeStmt:
			o = OpMerge
		default:
			_ = x
			return true
		}
		if m.Interface() == root {
			return true
		}
		op, found = o, true
		return false
	})
	return op, found
}

// nestedChanges counts the data-changing statements in n, its root
// included.
func nestedChanges(n *pg_query.Node) int {
	count := 0
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch m.Interface().(type) {
		case *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.InsertStmt, *pg_query.MergeStmt:
			count++
		}
		return true
	})
	return count
}

// maxParam is the highest $n in n.
func maxParam(n *pg_query.Node) int {
	max := 0
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		if p, ok := m.Interface().(*pg_query.ParamRef); ok && int(p.GetNumber()) > max {
			max = int(p.GetNumber())
		}
		return true
	})
	return max
}

// relations lists the relations sel names (locking clauses name
// references, not relations), each quoted for to_regclass, the target
// first, without repeats.
func relations(sel *pg_query.SelectStmt) []string {
	var out []string
	walk(sel.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.LockingClause:
			return false
		case *pg_query.RangeVar:
			out = appendUnique(out, qualifiedName(x))
		}
		return true
	})
	return out
}

// rowsName names the CTE of an INSERT's proposed rows: one no name in the
// statement uses, so that it hides no table and no CTE of the statement.
func rowsName(root *pg_query.Node) string {
	used := map[string]bool{}
	walk(root.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.RangeVar:
			used[x.GetRelname()] = true
			if a := x.GetAlias(); a != nil {
				used[a.GetAliasname()] = true
			}
		case *pg_query.CommonTableExpr:
			used[x.GetCtename()] = true
		case *pg_query.Alias:
			used[x.GetAliasname()] = true
		case *pg_query.String:
			used[x.GetSval()] = true
		}
		return true
	})
	name := "phigate_rows"
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("phigate_rows_%d", i)
	}
	return name
}

// bareColumns returns the column names an expression references, and
// false when one is qualified or not a plain name (then it cannot be
// moved onto another relation).
func bareColumns(n *pg_query.Node) ([]string, bool) {
	var names []string
	ok := true
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.ColumnRef:
			f := x.GetFields()
			if len(f) != 1 || f[0].GetString_() == nil {
				ok = false
				return false
			}
			names = appendUnique(names, f[0].GetString_().GetSval())
		case *pg_query.SubLink, *pg_query.SelectStmt:
			ok = false
			return false
		}
		return true
	})
	return names, ok
}

// qualify returns a copy of n with every bare column reference qualified
// by ref.
func qualify(n *pg_query.Node, ref string) *pg_query.Node {
	c := proto.Clone(n).(*pg_query.Node)
	walk(c.ProtoReflect(), func(m protoreflect.Message) bool {
		if x, ok := m.Interface().(*pg_query.ColumnRef); ok && len(x.Fields) == 1 {
			x.Fields = append([]*pg_query.Node{pg_query.MakeStrNode(ref)}, x.Fields...)
		}
		return true
	})
	return c
}

func displayName(rv *pg_query.RangeVar) string {
	if rv.GetSchemaname() != "" {
		return rv.GetSchemaname() + "." + rv.GetRelname()
	}
	return rv.GetRelname()
}

// refName is how a query refers to the relation: its alias, else its name.
func refName(rv *pg_query.RangeVar) string {
	if a := rv.GetAlias(); a != nil && a.GetAliasname() != "" {
		return a.GetAliasname()
	}
	return rv.GetRelname()
}

// qualifiedName is rv's name quoted part by part, as to_regclass reads it.
func qualifiedName(rv *pg_query.RangeVar) string {
	var parts []string
	for _, s := range []string{rv.GetCatalogname(), rv.GetSchemaname(), rv.GetRelname()} {
		if s != "" {
			parts = append(parts, quoteIdent(s))
		}
	}
	return strings.Join(parts, ".")
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func appendUnique(list []string, s string) []string {
	if s == "" || contains(list, s) {
		return list
	}
	return append(list, s)
}

// stmtOf is the message a Node wraps.
func stmtOf(n *pg_query.Node) protoreflect.ProtoMessage {
	m := n.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); fd != nil && fd.Kind() == protoreflect.MessageKind {
		return m.Get(fd).Message().Interface()
	}
	return nil
}

func nodeKind(n *pg_query.Node) string {
	m := n.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); fd != nil {
		return string(fd.Name())
	}
	return "statement"
}

// walk visits every message under m, depth first, while visit returns
// true for it.
func walk(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !visit(m) {
		return
	}
	protoorder.Range(m, func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), visit)
			}
			return true
		}
		walk(v.Message(), visit)
		return true
	})
}
