package lineage

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// createsTemporary names what a statement would create that only its own
// session sees (CREATE TEMP TABLE or VIEW, SELECT INTO TEMP, anything in
// pg_temp), or "". The catalog the caller reads cannot see such objects,
// and a temporary relation shadows one of the same name: a session could
// make patients mean a view of its own that hands SSNs out under another
// column's name. Masking cannot follow them, so they are opaque.
func createsTemporary(stmt *pg_query.Node) string {
	if stmt == nil {
		return ""
	}
	switch stmt.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		into := stmt.GetSelectStmt().GetIntoClause()
		if into == nil {
			return ""
		}
		return temporaryRel(into.GetRel())
	case *pg_query.Node_CreateTableAsStmt:
		return temporaryRel(stmt.GetCreateTableAsStmt().GetInto().GetRel())
	}
	if !definitions[nodeKind(stmt)] {
		return ""
	}
	why := ""
	eachMessage(stmt.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.RangeVar:
			why = temporaryRel(x)
		case *pg_query.CreateFunctionStmt:
			why = temporaryName(x.GetFuncname())
		case *pg_query.DefineStmt:
			why = temporaryName(x.GetDefnames())
		case *pg_query.CreateDomainStmt:
			why = temporaryName(x.GetDomainname())
		case *pg_query.CreateEnumStmt:
			why = temporaryName(x.GetTypeName())
		case *pg_query.CreateRangeStmt:
			why = temporaryName(x.GetTypeName())
		}
		return why == ""
	})
	return why
}

func temporaryRel(rv *pg_query.RangeVar) string {
	if rv == nil {
		return ""
	}
	if rv.GetRelpersistence() == "t" || isTempSchema(rv.GetSchemaname()) {
		return "temporary relation " + rv.GetRelname()
	}
	return ""
}

func temporaryName(names []*pg_query.Node) string {
	if len(names) > 1 && isTempSchema(names[0].GetString_().GetSval()) {
		return "temporary object " + names[len(names)-1].GetString_().GetSval()
	}
	return ""
}

// isTempSchema: pg_temp, or a session's own pg_temp_N, in any case.
func isTempSchema(s string) bool {
	return strings.HasPrefix(strings.ToLower(s), "pg_temp")
}
