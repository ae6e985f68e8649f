package sqlclass

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Redact returns sql as a person may see it outside the protected
// recording (an approval request in the cluster state): deparsed from its
// parse tree, so comments are gone, with every literal replaced by a
// placeholder ($1, $2, ...). Identifiers stay. It returns "" when sql does
// not parse.
func Redact(sql string) string {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return ""
	}
	text, err := pg_query.Deparse(tree)
	if err != nil {
		return ""
	}
	out, err := pg_query.Normalize(text)
	if err != nil {
		return ""
	}
	return out
}

// Setting reads a SET or RESET statement's text: the setting's name (as
// PostgreSQL folds it) and the value it is given. reset is true for
// RESET, SET ... TO DEFAULT and RESET ALL (name "all"). ok is false for
// any other statement, or a value that is not a constant.
func Setting(text string) (name, value string, reset, ok bool) {
	tree, err := pg_query.Parse(text)
	if err != nil || len(tree.GetStmts()) != 1 {
		return "", "", false, false
	}
	s := tree.GetStmts()[0].GetStmt().GetVariableSetStmt()
	if s == nil {
		return "", "", false, false
	}
	name = strings.ToLower(s.GetName())
	switch s.GetKind() {
	case pg_query.VariableSetKind_VAR_SET_VALUE:
		var parts []string
		for _, a := range s.GetArgs() {
			v := constString(a)
			if v == "\x00" {
				return "", "", false, false
			}
			parts = append(parts, v)
		}
		return name, strings.Join(parts, ", "), false, true
	case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
		return name, "", true, true
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		return "all", "", true, true
	}
	return "", "", false, false
}
