package lineage

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// value is the lineage of an output expression: plain when it is a bare
// reference to a plain column, derived otherwise.
func (a *analyzer) value(s *scope, n *pg_query.Node) (lin, error) {
	if cr := n.GetColumnRef(); cr != nil {
		l, it, err := a.columnRef(s, cr)
		if it != nil {
			l = derived(l) // a whole row is a value made of its columns
		}
		return l, err
	}
	if ind := n.GetAIndirection(); ind != nil {
		if l, ok, err := a.rowField(s, ind); ok || err != nil {
			return l, err
		}
	}
	return a.expr(s, n)
}

// rowField resolves (p).col, where p is a whole-row reference, to p's
// column, as PostgreSQL does; ok is false for any other indirection.
func (a *analyzer) rowField(s *scope, ind *pg_query.A_Indirection) (lin, bool, error) {
	cr := ind.GetArg().GetColumnRef()
	is := ind.GetIndirection()
	if cr == nil || len(is) != 1 || is[0].GetString_() == nil {
		return lin{}, false, nil
	}
	_, it, err := a.columnRef(s, cr)
	if err != nil || it == nil {
		return lin{}, false, err
	}
	l, found, err := it.column(is[0].GetString_().GetSval())
	if err != nil {
		return lin{}, false, err
	}
	if !found {
		return lin{}, false, opaquef("column %q not found in data type", is[0].GetString_().GetSval())
	}
	return l, true, nil
}

// check analyzes an expression whose value is no output's (WHERE, ON,
// FILTER, ORDER BY...): only to fail on what is opaque or does not resolve.
func (a *analyzer) check(s *scope, n *pg_query.Node) error {
	_, err := a.expr(s, n)
	return err
}

// exprs is the union of several expressions' lineage.
func (a *analyzer) exprs(s *scope, nodes ...*pg_query.Node) (lin, error) {
	var out lin
	for _, n := range nodes {
		l, err := a.expr(s, n)
		if err != nil {
			return lin{}, err
		}
		out = union(out, l)
	}
	return out, nil
}

// expr is the lineage of an expression: never plain, derived from every
// column referenced anywhere in it. Node kinds not listed are opaque.
func (a *analyzer) expr(s *scope, n *pg_query.Node) (lin, error) {
	if err := a.step(); err != nil {
		return lin{}, err
	}
	switch x := n.GetNode().(type) {
	case nil:
		return lin{}, nil
	case *pg_query.Node_ColumnRef:
		l, _, err := a.columnRef(s, x.ColumnRef)
		return derived(l), err
	case *pg_query.Node_AConst, *pg_query.Node_SqlvalueFunction, *pg_query.Node_SetToDefault,
		*pg_query.Node_CurrentOfExpr, *pg_query.Node_String_, *pg_query.Node_Integer,
		*pg_query.Node_Float, *pg_query.Node_Boolean, *pg_query.Node_BitString:
		return lin{}, nil
	case *pg_query.Node_ParamRef:
		// A bind or EXECUTE parameter is the client's value; a SQL
		// function's parameter is bound to its argument, whose lineage the
		// call adds to the result itself.
		return lin{}, nil
	case *pg_query.Node_AExpr:
		e := x.AExpr
		switch e.GetKind() {
		case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
			pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
			// Named by the keyword; expands to <= and >=.
		default:
			if err := checkOperator(e.GetName()); err != nil {
				return lin{}, err
			}
		}
		return a.exprs(s, e.GetLexpr(), e.GetRexpr())
	case *pg_query.Node_BoolExpr:
		return a.exprs(s, x.BoolExpr.GetArgs()...)
	case *pg_query.Node_TypeCast:
		return a.expr(s, x.TypeCast.GetArg())
	case *pg_query.Node_CollateClause:
		return a.expr(s, x.CollateClause.GetArg())
	case *pg_query.Node_FuncCall:
		return a.funcCall(s, x.FuncCall)
	case *pg_query.Node_AIndirection:
		if l, ok, err := a.rowField(s, x.AIndirection); ok || err != nil {
			return derived(l), err
		}
		// Subscripts, and field selection from a composite value: derived
		// from all of the value.
		return a.exprs(s, append([]*pg_query.Node{x.AIndirection.GetArg()}, x.AIndirection.GetIndirection()...)...)
	case *pg_query.Node_AIndices:
		return a.exprs(s, x.AIndices.GetLidx(), x.AIndices.GetUidx())
	case *pg_query.Node_AStar:
		return lin{}, nil // (x).* inside an expression: x itself is counted
	case *pg_query.Node_AArrayExpr:
		return a.exprs(s, x.AArrayExpr.GetElements()...)
	case *pg_query.Node_RowExpr:
		return a.exprs(s, x.RowExpr.GetArgs()...)
	case *pg_query.Node_List:
		return a.exprs(s, x.List.GetItems()...)
	case *pg_query.Node_SubLink:
		return a.sublink(s, x.SubLink)
	case *pg_query.Node_CaseExpr:
		c := x.CaseExpr
		return a.exprs(s, append([]*pg_query.Node{c.GetArg(), c.GetDefresult()}, c.GetArgs()...)...)
	case *pg_query.Node_CaseWhen:
		// The condition counts: CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END
		// tells ssn's first digit.
		return a.exprs(s, x.CaseWhen.GetExpr(), x.CaseWhen.GetResult())
	case *pg_query.Node_CoalesceExpr:
		return a.exprs(s, x.CoalesceExpr.GetArgs()...)
	case *pg_query.Node_MinMaxExpr:
		return a.exprs(s, x.MinMaxExpr.GetArgs()...)
	case *pg_query.Node_NullTest:
		return a.expr(s, x.NullTest.GetArg())
	case *pg_query.Node_BooleanTest:
		return a.expr(s, x.BooleanTest.GetArg())
	case *pg_query.Node_NamedArgExpr:
		return a.expr(s, x.NamedArgExpr.GetArg())
	case *pg_query.Node_ResTarget: // XMLATTRIBUTES, XMLFOREST items
		return a.expr(s, x.ResTarget.GetVal())
	case *pg_query.Node_XmlExpr:
		return a.exprs(s, append(x.XmlExpr.GetNamedArgs(), x.XmlExpr.GetArgs()...)...)
	case *pg_query.Node_XmlSerialize:
		return a.expr(s, x.XmlSerialize.GetExpr())
	case *pg_query.Node_GroupingFunc:
		// GROUPING(a, b) tells which grouping set a row belongs to, no value.
		_, err := a.exprs(s, x.GroupingFunc.GetArgs()...)
		return lin{}, err
	case *pg_query.Node_SortBy:
		if err := checkOperator(x.SortBy.GetUseOp()); err != nil {
			return lin{}, err
		}
		return a.expr(s, x.SortBy.GetNode())
	case *pg_query.Node_MultiAssignRef: // UPDATE ... SET (a, b) = (SELECT ...)
		return a.expr(s, x.MultiAssignRef.GetSource())
	case *pg_query.Node_JsonValueExpr:
		return a.jsonValue(s, x.JsonValueExpr)
	case *pg_query.Node_JsonKeyValue:
		k, err := a.expr(s, x.JsonKeyValue.GetKey())
		if err != nil {
			return lin{}, err
		}
		v, err := a.jsonValue(s, x.JsonKeyValue.GetValue())
		return union(k, v), err
	case *pg_query.Node_JsonArgument:
		return a.jsonValue(s, x.JsonArgument.GetVal())
	case *pg_query.Node_JsonBehavior:
		return a.expr(s, x.JsonBehavior.GetExpr())
	case *pg_query.Node_JsonIsPredicate:
		return a.expr(s, x.JsonIsPredicate.GetExpr())
	case *pg_query.Node_JsonParseExpr:
		return a.jsonValue(s, x.JsonParseExpr.GetExpr())
	case *pg_query.Node_JsonScalarExpr:
		return a.expr(s, x.JsonScalarExpr.GetExpr())
	case *pg_query.Node_JsonSerializeExpr:
		return a.jsonValue(s, x.JsonSerializeExpr.GetExpr())
	case *pg_query.Node_JsonObjectConstructor:
		return a.exprs(s, x.JsonObjectConstructor.GetExprs()...)
	case *pg_query.Node_JsonArrayConstructor:
		return a.exprs(s, x.JsonArrayConstructor.GetExprs()...)
	case *pg_query.Node_JsonArrayQueryConstructor:
		// JSON_ARRAY(SELECT ...): like ARRAY(SELECT ...).
		sel := x.JsonArrayQueryConstructor.GetQuery().GetSelectStmt()
		if sel == nil {
			return lin{}, unsupported(x.JsonArrayQueryConstructor.GetQuery())
		}
		return a.subquery(s, sel)
	case *pg_query.Node_JsonObjectAgg:
		agg := x.JsonObjectAgg
		if err := a.checkAggConstructor(s, agg.GetConstructor()); err != nil {
			return lin{}, err
		}
		return a.expr(s, &pg_query.Node{Node: &pg_query.Node_JsonKeyValue{JsonKeyValue: agg.GetArg()}})
	case *pg_query.Node_JsonArrayAgg:
		agg := x.JsonArrayAgg
		if err := a.checkAggConstructor(s, agg.GetConstructor()); err != nil {
			return lin{}, err
		}
		return a.jsonValue(s, agg.GetArg())
	case *pg_query.Node_JsonFuncExpr:
		f := x.JsonFuncExpr
		l, err := a.jsonValue(s, f.GetContextItem())
		if err != nil {
			return lin{}, err
		}
		m, err := a.exprs(s, append([]*pg_query.Node{f.GetPathspec(), f.GetOnEmpty().GetExpr(), f.GetOnError().GetExpr()}, f.GetPassing()...)...)
		return union(l, m), err
	}
	return lin{}, unsupported(n)
}

func (a *analyzer) jsonValue(s *scope, v *pg_query.JsonValueExpr) (lin, error) {
	return a.exprs(s, v.GetRawExpr(), v.GetFormattedExpr())
}

// checkAggConstructor checks a JSON aggregate's FILTER, ORDER BY and OVER.
func (a *analyzer) checkAggConstructor(s *scope, c *pg_query.JsonAggConstructor) error {
	if err := a.check(s, c.GetAggFilter()); err != nil {
		return err
	}
	for _, o := range c.GetAggOrder() {
		if err := a.check(s, o); err != nil {
			return err
		}
	}
	return a.checkWindow(s, c.GetOver())
}

// sublink is the lineage of a subquery expression: every output of the
// subquery, every column it references from outside (EXISTS (SELECT 1
// WHERE p.ssn LIKE '1%') tells about p.ssn), and the tested expression of
// IN/ANY/ALL.
func (a *analyzer) sublink(s *scope, sl *pg_query.SubLink) (lin, error) {
	if err := checkOperator(sl.GetOperName()); err != nil {
		return lin{}, err
	}
	sel := sl.GetSubselect().GetSelectStmt()
	if sel == nil {
		return lin{}, unsupported(sl.GetSubselect())
	}
	outer := lin{}
	cols, err := a.selectStmt(&scope{parent: s, collect: &outer}, sel)
	if err != nil {
		return lin{}, err
	}
	if sl.GetSubLinkType() == pg_query.SubLinkType_EXPR_SUBLINK && len(cols) > 0 {
		if a.sublinkNames == nil {
			a.sublinkNames = map[*pg_query.SubLink]string{}
		}
		a.sublinkNames[sl] = cols[0].name
	}
	t, err := a.expr(s, sl.GetTestexpr())
	if err != nil {
		return lin{}, err
	}
	return union(union(wholeRow(cols), outer), t), nil
}

// subquery is the lineage of ARRAY(SELECT ...)-like values.
func (a *analyzer) subquery(s *scope, sel *pg_query.SelectStmt) (lin, error) {
	outer := lin{}
	cols, err := a.selectStmt(&scope{parent: s, collect: &outer}, sel)
	if err != nil {
		return lin{}, err
	}
	return union(wholeRow(cols), outer), nil
}

// builtinOperators are the operator names pg_catalog defines (PostgreSQL
// 15 to 17). An operator is a function call too: one outside pg_catalog
// may run any language, and the parse tree does not say which operator an
// unqualified name picks, so a name pg_catalog does not have is opaque.
// Whether an unqualified built-in name is shadowed by a look-alike in
// another schema is the caller's check (sqlclass reports the names).
var builtinOperators = map[string]bool{}

func init() {
	for _, op := range strings.Fields(`!! !~ !~* !~~ !~~* # ## #- #> #>> % & && &< &<| &> * *< *<= *<> *= *> *>=
		+ - -> ->> -|- / < <-> << <<= <<| <= <> <@ <^ = > >= >> >>= >^ ? ?# ?& ?- ?-| ?| ?|| @ @-@ @> @? @@
		@@@ ^ ^@ | |&> |/ |>> || ||/ ~ ~* ~<=~ ~<~ ~= ~>=~ ~>~ ~~ ~~*`) {
		builtinOperators[op] = true
	}
}

// checkOperator refuses an operator that is not pg_catalog's.
func checkOperator(names []*pg_query.Node) error {
	if len(names) == 0 {
		return nil
	}
	schema, name, ok := qualifiedName(names)
	switch {
	case !ok:
		return opaquef("unsupported: operator name")
	case schema != "" && schema != "pg_catalog":
		return opaquef("operator %s.%s is not a built-in", schema, name)
	case !builtinOperators[name]:
		return opaquef("operator %s is not a built-in", name)
	}
	return nil
}

// qualifiedName splits a parser name list into schema and name; three
// parts (catalog.schema.name) or anything unexpected is not ok.
func qualifiedName(names []*pg_query.Node) (schema, name string, ok bool) {
	parts := make([]string, 0, 2)
	for _, n := range names {
		s := n.GetString_()
		if s == nil {
			return "", "", false
		}
		parts = append(parts, s.GetSval())
	}
	switch len(parts) {
	case 1:
		return "", parts[0], true
	case 2:
		return parts[0], parts[1], true
	}
	return "", strings.Join(parts, "."), false
}

func joinName(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

func funcCallName(fc *pg_query.FuncCall) string {
	var parts []string
	for _, n := range fc.GetFuncname() {
		parts = append(parts, n.GetString_().GetSval())
	}
	return strings.Join(parts, ".")
}

// figureName names an output column the way PostgreSQL's FigureColname
// does.
func (a *analyzer) figureName(n *pg_query.Node) string {
	if name, strength := a.figureNameStrength(n); strength > 0 {
		return name
	}
	return "?column?"
}

// figureNameStrength returns a name and how sure it is: 2 a real name, 1 a
// type name or "case", 0 none.
func (a *analyzer) figureNameStrength(n *pg_query.Node) (string, int) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		name := ""
		for _, f := range x.ColumnRef.GetFields() {
			if s := f.GetString_(); s != nil {
				name = s.GetSval()
			}
		}
		if name != "" {
			return name, 2
		}
	case *pg_query.Node_AIndirection:
		name := ""
		for _, f := range x.AIndirection.GetIndirection() {
			if s := f.GetString_(); s != nil {
				name = s.GetSval()
			}
		}
		if name != "" {
			return name, 2
		}
		return a.figureNameStrength(x.AIndirection.GetArg())
	case *pg_query.Node_FuncCall:
		if f := x.FuncCall.GetFuncname(); len(f) > 0 {
			return f[len(f)-1].GetString_().GetSval(), 2
		}
	case *pg_query.Node_AExpr:
		if x.AExpr.GetKind() == pg_query.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2
		}
	case *pg_query.Node_TypeCast:
		name, strength := a.figureNameStrength(x.TypeCast.GetArg())
		if strength <= 1 {
			if t := x.TypeCast.GetTypeName().GetNames(); len(t) > 0 {
				return t[len(t)-1].GetString_().GetSval(), 1
			}
		}
		return name, strength
	case *pg_query.Node_CollateClause:
		return a.figureNameStrength(x.CollateClause.GetArg())
	case *pg_query.Node_GroupingFunc:
		return "grouping", 2
	case *pg_query.Node_SubLink:
		switch x.SubLink.GetSubLinkType() {
		case pg_query.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2
		case pg_query.SubLinkType_ARRAY_SUBLINK:
			return "array", 2
		case pg_query.SubLinkType_EXPR_SUBLINK:
			if name := a.sublinkNames[x.SubLink]; name != "" {
				return name, 2
			}
		}
	case *pg_query.Node_CaseExpr:
		return "case", 1
	case *pg_query.Node_AArrayExpr:
		return "array", 2
	case *pg_query.Node_RowExpr:
		return "row", 2
	case *pg_query.Node_CoalesceExpr:
		return "coalesce", 2
	case *pg_query.Node_MinMaxExpr:
		if x.MinMaxExpr.GetOp() == pg_query.MinMaxOp_IS_LEAST {
			return "least", 2
		}
		return "greatest", 2
	case *pg_query.Node_SqlvalueFunction:
		if name := sqlValueNames[x.SqlvalueFunction.GetOp()]; name != "" {
			return name, 2
		}
	case *pg_query.Node_XmlExpr:
		if name := xmlExprNames[x.XmlExpr.GetOp()]; name != "" {
			return name, 2
		}
	case *pg_query.Node_XmlSerialize:
		return "xmlserialize", 2
	case *pg_query.Node_JsonParseExpr:
		return "json", 2
	case *pg_query.Node_JsonScalarExpr:
		return "json_scalar", 2
	case *pg_query.Node_JsonSerializeExpr:
		return "json_serialize", 2
	case *pg_query.Node_JsonObjectConstructor:
		return "json_object", 2
	case *pg_query.Node_JsonArrayConstructor, *pg_query.Node_JsonArrayQueryConstructor:
		return "json_array", 2
	case *pg_query.Node_JsonObjectAgg:
		return "json_objectagg", 2
	case *pg_query.Node_JsonArrayAgg:
		return "json_arrayagg", 2
	case *pg_query.Node_JsonFuncExpr:
		switch x.JsonFuncExpr.GetOp() {
		case pg_query.JsonExprOp_JSON_EXISTS_OP:
			return "json_exists", 2
		case pg_query.JsonExprOp_JSON_QUERY_OP:
			return "json_query", 2
		case pg_query.JsonExprOp_JSON_VALUE_OP:
			return "json_value", 2
		}
	}
	return "", 0
}

var sqlValueNames = map[pg_query.SQLValueFunctionOp]string{
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE:        "current_date",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME:        "current_time",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:      "current_time",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP:   "current_timestamp",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME:           "localtime",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME_N:         "localtime",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP:      "localtimestamp",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:    "localtimestamp",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:        "current_role",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER:        "current_user",
	pg_query.SQLValueFunctionOp_SVFOP_USER:                "user",
	pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER:        "session_user",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:     "current_catalog",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:      "current_schema",
}

var xmlExprNames = map[pg_query.XmlExprOp]string{
	pg_query.XmlExprOp_IS_XMLCONCAT:    "xmlconcat",
	pg_query.XmlExprOp_IS_XMLELEMENT:   "xmlelement",
	pg_query.XmlExprOp_IS_XMLFOREST:    "xmlforest",
	pg_query.XmlExprOp_IS_XMLPARSE:     "xmlparse",
	pg_query.XmlExprOp_IS_XMLPI:        "xmlpi",
	pg_query.XmlExprOp_IS_XMLROOT:      "xmlroot",
	pg_query.XmlExprOp_IS_XMLSERIALIZE: "xmlserialize",
}
