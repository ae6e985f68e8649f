package change

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The nodes phigate adds to a read, each shaped exactly as the parser
// shapes what it reads (deparse checks this on every read it writes).

func newSelect() *pg_query.SelectStmt {
	return &pg_query.SelectStmt{Op: pg_query.SetOperation_SETOP_NONE, LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT}
}

func str(s string) *pg_query.Node { return pg_query.MakeStrNode(s) }

// columnRef is ref.col, or col alone when ref is "".
func columnRef(ref, col string) *pg_query.Node {
	var fields []*pg_query.Node
	if ref != "" {
		fields = append(fields, str(ref))
	}
	fields = append(fields, str(col))
	return &pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: &pg_query.ColumnRef{Fields: fields}}}
}

// starRef is ref.*, or * when ref is "".
func starRef(ref string) *pg_query.Node {
	var fields []*pg_query.Node
	if ref != "" {
		fields = append(fields, str(ref))
	}
	fields = append(fields, &pg_query.Node{Node: &pg_query.Node_AStar{AStar: &pg_query.A_Star{}}})
	return &pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: &pg_query.ColumnRef{Fields: fields}}}
}

func resTarget(val *pg_query.Node) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Val: val}}}
}

// rangeVar is a bare relation name, as a reference (a CTE, a locked alias).
func rangeVar(name string) *pg_query.RangeVar {
	return &pg_query.RangeVar{Relname: name, Inh: true, Relpersistence: "p"}
}

func paramRef(n int) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_ParamRef{ParamRef: &pg_query.ParamRef{Number: int32(n)}}}
}

func intConst(v int64) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Ival{Ival: &pg_query.Integer{Ival: int32(v)}}}}}
}

func boolConst(v bool) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: v}}}}}
}

func nullConst() *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true}}}
}

// catalogEq names pg_catalog's = operator: OPERATOR(pg_catalog.=).
func catalogEq() []*pg_query.Node { return []*pg_query.Node{str("pg_catalog"), str("=")} }

// opEq is l OPERATOR(pg_catalog.=) r.
func opEq(l, r *pg_query.Node) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{Kind: pg_query.A_Expr_Kind_AEXPR_OP, Name: catalogEq(), Lexpr: l, Rexpr: r}}}
}

func boolExpr(op pg_query.BoolExprType, args []*pg_query.Node) *pg_query.Node {
	var flat []*pg_query.Node
	for _, a := range args {
		if a != nil {
			flat = append(flat, a)
		}
	}
	switch len(flat) {
	case 0:
		return nil
	case 1:
		return flat[0]
	}
	return &pg_query.Node{Node: &pg_query.Node_BoolExpr{BoolExpr: &pg_query.BoolExpr{Boolop: op, Args: flat}}}
}

func and(args ...*pg_query.Node) *pg_query.Node {
	return boolExpr(pg_query.BoolExprType_AND_EXPR, args)
}
func or(args ...*pg_query.Node) *pg_query.Node { return boolExpr(pg_query.BoolExprType_OR_EXPR, args) }

// exists is EXISTS (SELECT FROM from WHERE where).
func exists(from []*pg_query.Node, where *pg_query.Node) *pg_query.Node {
	sub := newSelect()
	for _, f := range from {
		sub.FromClause = append(sub.FromClause, proto.Clone(f).(*pg_query.Node))
	}
	if where != nil {
		sub.WhereClause = proto.Clone(where).(*pg_query.Node)
	}
	return &pg_query.Node{Node: &pg_query.Node_SubLink{SubLink: &pg_query.SubLink{SubLinkType: pg_query.SubLinkType_EXISTS_SUBLINK,
		Subselect: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sub}}}}}
}

// sameTree reports whether a and b are the same parse tree but for the
// positions in the text the parser notes.
func sameTree(a, b *pg_query.Node) bool {
	return proto.Equal(stripLocations(a), stripLocations(b))
}

// stripLocations returns a copy of n with every location field zeroed.
func stripLocations(n *pg_query.Node) *pg_query.Node {
	c := proto.Clone(n).(*pg_query.Node)
	walk(c.ProtoReflect(), func(m protoreflect.Message) bool {
		fields := m.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			if fd.Kind() == protoreflect.Int32Kind && !fd.IsList() && (fd.Name() == "location" || fd.Name() == "stmt_location" || fd.Name() == "stmt_len") {
				m.Clear(fd)
			}
		}
		return true
	})
	return c
}
