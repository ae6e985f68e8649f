package sqlclass

import (
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/protoorder"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Risks for approval rules (policy.Risk). What each node of a statement
// contributes is gathered during scan's single walk (riskScan.visit); what
// depends on the statement as a whole (its class, a kind sqlclass does not
// know, wrappers that run nothing, the row bound) is settled by assess.
// Everything errs towards marking: a false mark costs a person a click, a
// missing one lets a command past its rule.

// riskScan is what the walk finds for risks: the risks of the nodes it
// met, the relations written and read, and whether something packs many
// rows into one value (Rows cannot bound it then).
type riskScan struct {
	risks         []policy.Risk
	writes, reads []string
	packs         bool
}

func (r *riskScan) mark(k policy.Risk) {
	if !slices.Contains(r.risks, k) {
		r.risks = append(r.risks, k)
	}
}

func addRel(list []string, rv *pg_query.RangeVar) []string {
	if rv == nil {
		return list
	}
	// A catalog name can only be the current database: dropped, so that
	// "db.audit.events" is audit.events to the rules.
	name := joinName(rv.GetSchemaname(), rv.GetRelname())
	if !slices.Contains(list, name) {
		list = append(list, name)
	}
	return list
}

// visit notes what one node of the tree contributes.
func (r *riskScan) visit(m any) {
	switch x := m.(type) {
	case *pg_query.SelectStmt:
		r.reads = fromRels(r.reads, x.GetFromClause())
	case *pg_query.WithClause:
		// A recursive CTE can fold a whole table into one row.
		r.packs = r.packs || x.GetRecursive()
	case *pg_query.InsertStmt:
		r.writes = addRel(r.writes, x.GetRelation())
	case *pg_query.DeleteStmt:
		r.writes = addRel(r.writes, x.GetRelation())
		r.reads = fromRels(r.reads, x.GetUsingClause())
		if !targetOf(x.GetRelation(), x.GetWithClause(), x.GetUsingClause()).restricts(x.GetWhereClause()) {
			r.mark(policy.RiskUnboundedWrite)
		}
	case *pg_query.UpdateStmt:
		r.writes = addRel(r.writes, x.GetRelation())
		r.reads = fromRels(r.reads, x.GetFromClause())
		if !targetOf(x.GetRelation(), x.GetWithClause(), x.GetFromClause()).restricts(x.GetWhereClause()) {
			r.mark(policy.RiskUnboundedWrite)
		}
	case *pg_query.MergeStmt:
		r.writes = addRel(r.writes, x.GetRelation())
		src := x.GetSourceRelation()
		r.reads = fromRels(r.reads, []*pg_query.Node{src})
		if !mergeBounded(x) {
			r.mark(policy.RiskUnboundedWrite)
		}
	case *pg_query.TruncateStmt:
		r.mark(policy.RiskTruncate)
		for _, n := range x.GetRelations() {
			r.writes = addRel(r.writes, n.GetRangeVar())
		}
	case *pg_query.CopyStmt:
		if x.GetFilename() != "" || x.GetIsProgram() {
			r.mark(policy.RiskDangerousFunction)
		}
		if x.GetIsFrom() {
			r.writes = addRel(r.writes, x.GetRelation())
		} else {
			r.reads = addRel(r.reads, x.GetRelation())
		}
	case *pg_query.FuncCall:
		_, name, _ := qualifiedName(x.GetFuncname())
		if dangerousFunction(name) {
			r.mark(policy.RiskDangerousFunction)
		}
		if packingAggregate(name) {
			r.packs = true
		}
	case *pg_query.JsonArrayAgg, *pg_query.JsonObjectAgg, *pg_query.JsonArrayQueryConstructor:
		r.packs = true
	case *pg_query.SubLink:
		r.packs = r.packs || x.GetSubLinkType() == pg_query.SubLinkType_ARRAY_SUBLINK

	case *pg_query.GrantStmt, *pg_query.GrantRoleStmt, *pg_query.CreateRoleStmt, *pg_query.AlterRoleStmt,
		*pg_query.AlterRoleSetStmt, *pg_query.DropRoleStmt, *pg_query.AlterDefaultPrivilegesStmt,
		*pg_query.AlterOwnerStmt, *pg_query.ReassignOwnedStmt, *pg_query.CreatePolicyStmt,
		*pg_query.AlterPolicyStmt, *pg_query.SecLabelStmt:
		r.mark(policy.RiskPrivilege)
	case *pg_query.DropOwnedStmt:
		r.mark(policy.RiskPrivilege)
		r.mark(policy.RiskDDL) // it drops the role's objects too
	case *pg_query.DropStmt:
		if x.GetRemoveType() == pg_query.ObjectType_OBJECT_POLICY {
			r.mark(policy.RiskPrivilege)
		}
	case *pg_query.RenameStmt:
		if x.GetRenameType() == pg_query.ObjectType_OBJECT_ROLE {
			r.mark(policy.RiskPrivilege)
		}
	case *pg_query.AlterTableStmt:
		for _, c := range x.GetCmds() {
			switch c.GetAlterTableCmd().GetSubtype() {
			case pg_query.AlterTableType_AT_EnableRowSecurity, pg_query.AlterTableType_AT_DisableRowSecurity,
				pg_query.AlterTableType_AT_ForceRowSecurity, pg_query.AlterTableType_AT_NoForceRowSecurity,
				pg_query.AlterTableType_AT_ChangeOwner:
				r.mark(policy.RiskPrivilege)
			}
		}
	case *pg_query.CreateFunctionStmt:
		if securityDefiner(x.GetOptions()) {
			r.mark(policy.RiskPrivilege)
		}
	case *pg_query.AlterFunctionStmt:
		if securityDefiner(x.GetActions()) {
			r.mark(policy.RiskPrivilege)
		}
	case *pg_query.VariableSetStmt:
		switch name := strings.ToLower(x.GetName()); {
		case guardedSettings[name]:
			r.mark(policy.RiskPrivilege)
		case name == "local_preload_libraries" || name == "session_preload_libraries":
			r.mark(policy.RiskUnclassified)
		case name == "search_path":
			// pg_catalog searched later: unqualified built-ins may resolve
			// to anyone's functions in the statements that follow.
			if c, _ := setClass(x); c == policy.Admin {
				r.mark(policy.RiskUnclassified)
			}
		}

	case *pg_query.CreateExtensionStmt:
		r.mark(policy.RiskDDL)
		if dangerousExtensions[x.GetExtname()] {
			r.mark(policy.RiskDangerousFunction)
		}
	case *pg_query.AlterExtensionStmt, *pg_query.AlterExtensionContentsStmt, *pg_query.DropSubscriptionStmt,
		*pg_query.DropTableSpaceStmt, *pg_query.AlterTableSpaceOptionsStmt, *pg_query.CreatedbStmt,
		*pg_query.DropdbStmt, *pg_query.AlterDatabaseStmt, *pg_query.AlterDatabaseSetStmt,
		*pg_query.AlterDatabaseRefreshCollStmt:
		r.mark(policy.RiskDDL)
	case *pg_query.CreateFdwStmt, *pg_query.AlterFdwStmt, *pg_query.CreateForeignServerStmt,
		*pg_query.AlterForeignServerStmt, *pg_query.CreateUserMappingStmt, *pg_query.AlterUserMappingStmt,
		*pg_query.DropUserMappingStmt, *pg_query.ImportForeignSchemaStmt, *pg_query.CreateSubscriptionStmt,
		*pg_query.AlterSubscriptionStmt, *pg_query.CreateTableSpaceStmt:
		// Other servers, or a directory of the server's file system.
		r.mark(policy.RiskDDL)
		r.mark(policy.RiskDangerousFunction)

	case *pg_query.DoStmt, *pg_query.CallStmt, *pg_query.LoadStmt, *pg_query.AlterSystemStmt:
		r.mark(policy.RiskUnclassified)
	case *pg_query.TransactionStmt:
		switch x.GetKind() {
		case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE, pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
			pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			// Two-phase commit settles a transaction by name, any
			// session's: its effects are not in this statement.
			r.mark(policy.RiskUnclassified)
		}
	}
}

// knownAdmin reports whether classify classes n admin knowingly, its risks
// (possibly none) being those visit gives it. Any other admin statement is
// one sqlclass does not know: unclassified.
func knownAdmin(n *pg_query.Node) bool {
	switch n.GetNode().(type) {
	case *pg_query.Node_GrantStmt, *pg_query.Node_GrantRoleStmt, *pg_query.Node_CreateRoleStmt,
		*pg_query.Node_AlterRoleStmt, *pg_query.Node_AlterRoleSetStmt, *pg_query.Node_DropRoleStmt,
		*pg_query.Node_AlterSystemStmt, *pg_query.Node_DoStmt, *pg_query.Node_CallStmt,
		*pg_query.Node_VacuumStmt, *pg_query.Node_ClusterStmt, *pg_query.Node_ReindexStmt,
		*pg_query.Node_CheckPointStmt, *pg_query.Node_LoadStmt, *pg_query.Node_AlterOwnerStmt,
		*pg_query.Node_ReassignOwnedStmt, *pg_query.Node_DropOwnedStmt, *pg_query.Node_CreatedbStmt,
		*pg_query.Node_DropdbStmt, *pg_query.Node_AlterDatabaseStmt, *pg_query.Node_AlterDatabaseSetStmt,
		*pg_query.Node_CreateSubscriptionStmt, *pg_query.Node_AlterSubscriptionStmt,
		*pg_query.Node_DropSubscriptionStmt, *pg_query.Node_CreateTableSpaceStmt,
		*pg_query.Node_DropTableSpaceStmt, *pg_query.Node_AlterDefaultPrivilegesStmt,
		*pg_query.Node_SecLabelStmt, *pg_query.Node_CreateExtensionStmt,
		*pg_query.Node_AlterExtensionStmt, *pg_query.Node_CreateFdwStmt,
		*pg_query.Node_CreateForeignServerStmt, *pg_query.Node_CreateUserMappingStmt,
		*pg_query.Node_AlterUserMappingStmt, *pg_query.Node_ImportForeignSchemaStmt,
		// Admin for what they are given; their risks come from visit.
		*pg_query.Node_VariableSetStmt, *pg_query.Node_CopyStmt, *pg_query.Node_TransactionStmt,
		// Resolved by the proxy to the prepared statement's risks.
		*pg_query.Node_ExecuteStmt:
		return true
	}
	return false
}

// assess sets st's risks, relations and row bound from what the walk of
// its tree n found.
func assess(st *Statement, n *pg_query.Node, rs *riskScan, calls bool) {
	// dst takes the risks; kind is the statement whose class dst has;
	// q is the query whose rows it returns.
	dst, kind, q := st, n, n
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ExplainStmt:
		if !explainRuns(x.ExplainStmt) {
			return // it runs nothing
		}
		kind = x.ExplainStmt.GetQuery()
		q = kind
	case *pg_query.Node_PrepareStmt:
		// Preparing runs nothing: the risks are the prepared statement's,
		// which each EXECUTE of it takes.
		dst, kind = st.Inner, x.PrepareStmt.GetQuery()
		q = kind
	case *pg_query.Node_DeclareCursorStmt:
		kind = x.DeclareCursorStmt.GetQuery()
		q = kind
	case *pg_query.Node_CopyStmt:
		if cq := x.CopyStmt.GetQuery(); cq != nil {
			q = cq
		}
	}
	if dst == nil {
		return
	}
	risks := slices.Clone(rs.risks)
	if dst.Class == policy.DDL && !slices.Contains(risks, policy.RiskDDL) {
		risks = append(risks, policy.RiskDDL)
	}
	if dst.Class == policy.Admin && !knownAdmin(kind) && !slices.Contains(risks, policy.RiskUnclassified) {
		risks = append(risks, policy.RiskUnclassified)
	}
	dst.Risks, dst.Writes, dst.Reads = risks, rs.writes, rs.reads
	dst.Rows = rowBound(q.GetSelectStmt(), rs.packs || calls)
	if st.Inner != nil && dst == st {
		st.Inner.Risks, st.Inner.Writes, st.Inner.Reads, st.Inner.Rows = dst.Risks, dst.Writes, dst.Reads, dst.Rows
	}
}

// rowBound is the most rows SELECT s returns: its constant LIMIT (or FETCH
// FIRST), 1 for a list of count() aggregates without GROUP BY, else 0 (not
// bounded). unbounded is set when something in the statement can put a
// whole table in one row (array_agg, string_agg, ARRAY(subquery), a
// recursive CTE, a function outside the allowlist): a row bound then
// bounds nothing.
func rowBound(s *pg_query.SelectStmt, unbounded bool) int64 {
	if s == nil || unbounded {
		return 0
	}
	if countsOnly(s) {
		return 1
	}
	if s.GetLimitOption() == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return 0
	}
	c := s.GetLimitCount().GetAConst()
	switch {
	case c == nil || c.GetIsnull():
		return 0 // none, LIMIT ALL, LIMIT NULL, or an expression
	case c.GetIval() != nil:
		return max(int64(c.GetIval().GetIval()), 0)
	case c.GetFval() != nil:
		if v, err := strconv.ParseInt(c.GetFval().GetFval(), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	return 0
}

// countsOnly reports a SELECT whose every output is a count() aggregate
// (not a window) with no GROUP BY: exactly one row.
func countsOnly(s *pg_query.SelectStmt) bool {
	if s.GetOp() != pg_query.SetOperation_SETOP_NONE || len(s.GetGroupClause()) > 0 || len(s.GetTargetList()) == 0 {
		return false
	}
	for _, t := range s.GetTargetList() {
		f := t.GetResTarget().GetVal().GetFuncCall()
		if f == nil || f.GetOver() != nil {
			return false
		}
		if schema, name, ok := qualifiedName(f.GetFuncname()); !ok || name != "count" || (schema != "" && schema != "pg_catalog") {
			return false
		}
	}
	return true
}

// fromRels appends the relations named in a FROM list (joins included;
// sub-selects are SelectStmts of their own, which the walk visits).
func fromRels(list []string, from []*pg_query.Node) []string {
	for _, n := range from {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_RangeVar:
			list = addRel(list, x.RangeVar)
		case *pg_query.Node_JoinExpr:
			list = fromRels(list, []*pg_query.Node{x.JoinExpr.GetLarg(), x.JoinExpr.GetRarg()})
		case *pg_query.Node_RangeTableSample:
			list = fromRels(list, []*pg_query.Node{x.RangeTableSample.GetRelation()})
		}
	}
	return list
}

// dangerousFunction reports a function that reaches outside the database:
// server files, other servers. Judged by name in any schema: a look-alike
// elsewhere is user code, no better.
func dangerousFunction(name string) bool {
	switch name {
	case "pg_stat_file", "pg_logdir_ls", "lo_import", "lo_export":
		return true
	}
	for _, p := range dangerousPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// dangerousPrefixes: pg_read_file and pg_read_binary_file; pg_ls_dir and
// the pg_ls_*dir family; adminpack's pg_file_write, _rename, _unlink,
// _sync; dblink and every dblink_*; postgres_fdw's connection functions.
var dangerousPrefixes = []string{"pg_read_", "pg_ls_", "pg_file_", "dblink", "postgres_fdw_"}

// dangerousExtensions reach other servers, the server's files, or run
// untrusted languages.
var dangerousExtensions = map[string]bool{
	"dblink": true, "adminpack": true, "file_fdw": true, "postgres_fdw": true,
	"plperlu": true, "plpythonu": true, "plpython2u": true, "plpython3u": true, "pltclu": true,
}

// packingAggregate reports an aggregate that gathers its rows into one
// value (array_agg, string_agg, json_agg, jsonb_object_agg_strict,
// xmlagg, range_agg, ...).
func packingAggregate(name string) bool {
	return strings.HasSuffix(name, "agg") || strings.Contains(name, "_agg_")
}

// securityDefiner reports SECURITY DEFINER among a function's options.
func securityDefiner(opts []*pg_query.Node) bool {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && d.GetDefname() == "security" {
			if v, ok := defBool(d); !ok || v {
				return true
			}
		}
	}
	return false
}

// target is the relation a DELETE, UPDATE or MERGE writes, as its WHERE
// (or ON) can name its columns.
type target struct {
	// rels are the names under which the target's table can be read
	// elsewhere in the statement: its own, and those of CTEs reading it.
	rels []string
	// qual qualifies its columns: the alias, else the relation name.
	qual string
	// bare: an unqualified column is the target's (no other relation is
	// in scope that could own it).
	bare bool
	// self: the statement reads the target's table again (USING t t2,
	// FROM t, a MERGE source of t): a condition joining the two copies
	// is true of every row.
	self bool
}

func targetOf(rv *pg_query.RangeVar, with *pg_query.WithClause, others []*pg_query.Node) target {
	t := target{rels: []string{rv.GetRelname()}, qual: rv.GetRelname(), bare: len(others) == 0}
	if a := rv.GetAlias().GetAliasname(); a != "" {
		t.qual = a
	}
	// A CTE may read the table, or a CTE that does (WITH c AS (SELECT *
	// FROM t) DELETE FROM t USING c ...): each pass finds one more link.
	ctes := with.GetCtes()
	for range ctes {
		grew := false
		for _, n := range ctes {
			c := n.GetCommonTableExpr()
			if name := c.GetCtename(); !slices.Contains(t.rels, name) && mentionsRel(c.GetCtequery().ProtoReflect(), t.rels) {
				t.rels, grew = append(t.rels, name), true
			}
		}
		if !grew {
			break
		}
	}
	for _, n := range others {
		t.self = t.self || mentionsRel(n.ProtoReflect(), t.rels)
	}
	return t
}

// restricts reports whether a WHERE clause restricts the rows written by
// the target's own columns.
func (t target) restricts(where *pg_query.Node) bool {
	return where != nil && !t.self && t.bounded(where, false)
}

// mergeBounded: each UPDATE or DELETE action of a MERGE writes rows
// restricted by the target's columns, in the ON condition or the
// action's own condition. An action on rows NOT MATCHED BY SOURCE is
// restricted only by its own condition.
func mergeBounded(x *pg_query.MergeStmt) bool {
	t := targetOf(x.GetRelation(), x.GetWithClause(), []*pg_query.Node{x.GetSourceRelation()})
	on := t.restricts(x.GetJoinCondition())
	for _, n := range x.GetMergeWhenClauses() {
		w := n.GetMergeWhenClause()
		switch w.GetCommandType() {
		case pg_query.CmdType_CMD_UPDATE, pg_query.CmdType_CMD_DELETE:
		default:
			continue
		}
		bySource := w.GetMatchKind() == pg_query.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE
		if (bySource || !on) && !t.restricts(w.GetCondition()) {
			return false
		}
	}
	return true
}

// bounded is the conservative test of a condition: true only when it
// must restrict the target's rows by their own columns. AND needs one
// restricting argument, OR all, and the other way round under NOT (neg):
// NOT (id = 5 AND false) holds for every row. A comparison needs a
// target column on one side and not the same columns on both (id = id,
// id = id + 0). Constants, parameters, NULL tests, CASE, subqueries that
// do not correlate with the target restrict nothing.
func (t target) bounded(n *pg_query.Node, neg bool) bool {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_BoolExpr:
		args := x.BoolExpr.GetArgs()
		restricts := func(a *pg_query.Node) bool { return t.bounded(a, neg) }
		loose := func(a *pg_query.Node) bool { return !t.bounded(a, neg) }
		switch x.BoolExpr.GetBoolop() {
		case pg_query.BoolExprType_AND_EXPR:
			if neg {
				return len(args) > 0 && !slices.ContainsFunc(args, loose)
			}
			return slices.ContainsFunc(args, restricts)
		case pg_query.BoolExprType_OR_EXPR:
			if neg {
				return slices.ContainsFunc(args, restricts)
			}
			return len(args) > 0 && !slices.ContainsFunc(args, loose)
		case pg_query.BoolExprType_NOT_EXPR:
			return len(args) == 1 && t.bounded(args[0], !neg)
		}
		return false
	case *pg_query.Node_CurrentOfExpr:
		return !neg
	case *pg_query.Node_TypeCast:
		return t.bounded(x.TypeCast.GetArg(), neg)
	case *pg_query.Node_ColumnRef:
		return len(t.columns(n)) > 0 // a boolean column
	case *pg_query.Node_BooleanTest:
		switch x.BooleanTest.GetBooltesttype() {
		case pg_query.BoolTestType_IS_TRUE, pg_query.BoolTestType_IS_NOT_FALSE:
			return t.bounded(x.BooleanTest.GetArg(), neg)
		case pg_query.BoolTestType_IS_FALSE, pg_query.BoolTestType_IS_NOT_TRUE:
			return t.bounded(x.BooleanTest.GetArg(), !neg)
		}
		return false // IS [NOT] UNKNOWN: a NULL test
	case *pg_query.Node_AExpr:
		if mentionsRel(n.ProtoReflect(), t.rels) {
			return false // id = ANY(ARRAY(SELECT id FROM t)): every row
		}
		return t.compares(t.columns(x.AExpr.GetLexpr()), t.columns(x.AExpr.GetRexpr()))
	case *pg_query.Node_FuncCall:
		if mentionsRel(n.ProtoReflect(), t.rels) {
			return false
		}
		// starts_with(name, 'a'): one argument names the target;
		// texteq(name, name) compares a row with itself.
		var cols [][]string
		for _, a := range x.FuncCall.GetArgs() {
			if c := t.columns(a); len(c) > 0 {
				cols = append(cols, c)
			}
		}
		return len(cols) == 1
	case *pg_query.Node_SubLink:
		s := x.SubLink
		if mentionsRel(s.GetSubselect().ProtoReflect(), t.rels) {
			return false // id IN (SELECT id FROM t): every row
		}
		switch s.GetSubLinkType() {
		case pg_query.SubLinkType_EXISTS_SUBLINK:
			return t.correlated(s.GetSubselect().GetSelectStmt(), neg)
		case pg_query.SubLinkType_ANY_SUBLINK, pg_query.SubLinkType_ALL_SUBLINK, pg_query.SubLinkType_ROWCOMPARE_SUBLINK:
			return len(t.columns(s.GetTestexpr())) > 0
		}
	}
	return false
}

// compares judges a comparison by the target columns on each side.
func (t target) compares(l, r []string) bool {
	switch {
	case len(l) == 0 && len(r) == 0:
		return false
	case len(l) > 0 && len(r) > 0:
		return !slices.Equal(l, r)
	}
	return true
}

// correlated reports whether EXISTS (s) restricts the target: its WHERE
// is bounded by target columns qualified by the target's name, which no
// relation of s's own FROM hides (neg: under NOT).
func (t target) correlated(s *pg_query.SelectStmt, neg bool) bool {
	if s == nil || s.GetOp() != pg_query.SetOperation_SETOP_NONE || definesName(s.GetFromClause(), t.qual) {
		return false
	}
	inner := t
	inner.bare = false // an unqualified column may be the subquery's own
	return s.GetWhereClause() != nil && inner.bounded(s.GetWhereClause(), neg)
}

// columns lists, sorted, the target columns an expression names outside
// any subquery ("*" for a whole row).
func (t target) columns(n *pg_query.Node) []string {
	if n == nil {
		return nil
	}
	var cols []string
	walkExpr(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.SelectStmt:
			return false
		case *pg_query.ColumnRef:
			if c := t.column(x); c != "" && !slices.Contains(cols, c) {
				cols = append(cols, c)
			}
			return false
		}
		return true
	})
	slices.Sort(cols)
	return cols
}

// column is the target column a reference names, or "".
func (t target) column(c *pg_query.ColumnRef) string {
	f := c.GetFields()
	name := func(n *pg_query.Node) string {
		if n.GetAStar() != nil {
			return "*"
		}
		return n.GetString_().GetSval()
	}
	switch {
	case len(f) == 1 && t.bare:
		return name(f[0])
	case len(f) == 2 && f[0].GetString_().GetSval() == t.qual:
		return name(f[1])
	}
	return ""
}

// definesName reports whether a FROM list brings a relation named name
// into scope.
func definesName(from []*pg_query.Node, name string) bool {
	for _, n := range from {
		switch x := n.GetNode().(type) {
		case *pg_query.Node_RangeVar:
			if a := x.RangeVar.GetAlias().GetAliasname(); a == name || a == "" && x.RangeVar.GetRelname() == name {
				return true
			}
		case *pg_query.Node_JoinExpr:
			j := x.JoinExpr
			if j.GetAlias().GetAliasname() == name || definesName([]*pg_query.Node{j.GetLarg(), j.GetRarg()}, name) {
				return true
			}
		case *pg_query.Node_RangeTableSample:
			if definesName([]*pg_query.Node{x.RangeTableSample.GetRelation()}, name) {
				return true
			}
		case *pg_query.Node_RangeSubselect:
			if x.RangeSubselect.GetAlias().GetAliasname() == name {
				return true
			}
		case *pg_query.Node_RangeFunction:
			if x.RangeFunction.GetAlias().GetAliasname() == name {
				return true
			}
		default:
			return true // XMLTABLE, JSON_TABLE, ...: assume it hides the name
		}
	}
	return false
}

// mentionsRel reports whether a relation named one of rels appears
// anywhere under m.
func mentionsRel(m protoreflect.Message, rels []string) bool {
	found := false
	walkExpr(m, func(m protoreflect.Message) bool {
		if rv, ok := m.Interface().(*pg_query.RangeVar); ok && slices.Contains(rels, rv.GetRelname()) {
			found = true
		}
		return !found
	})
	return found
}

// walkExpr visits every message under m, depth first, descending below a
// message only when visit returns true.
func walkExpr(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !m.IsValid() || !visit(m) {
		return
	}
	protoorder.Range(m, func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkExpr(l.Get(i).Message(), visit)
			}
			return true
		}
		walkExpr(v.Message(), visit)
		return true
	})
}
