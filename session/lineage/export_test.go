package lineage

import pg_query "github.com/pganalyze/pg_query_go/v6"

// Steps is the work Analyze does for sql, in the units maxSteps bounds.
func Steps(sql string, cat Catalog) int {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.GetStmts()) != 1 {
		return 0
	}
	a := newAnalyzer(cat)
	a.statement(tree.GetStmts()[0].GetStmt())
	return a.steps
}

const MaxSteps = maxSteps

// StatementOpaque analyzes a hand-made statement node.
func StatementOpaque(n *pg_query.Node) string {
	_, err := newAnalyzer(nil).statement(n)
	if op, ok := err.(*opaqueError); ok {
		return op.reason
	}
	return ""
}

// ExprOpaque analyzes a hand-made expression node, for node kinds that no
// SQL text produces (the parser's raw trees never hold them).
func ExprOpaque(n *pg_query.Node) string {
	_, err := newAnalyzer(nil).expr(nil, n)
	if op, ok := err.(*opaqueError); ok {
		return op.reason
	}
	return ""
}
