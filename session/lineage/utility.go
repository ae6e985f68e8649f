package lineage

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/phigate/phigate/session/protoorder"
)

// definitions are the statements that define, change or drop objects,
// privileges and settings, or maintain storage, without evaluating an
// expression of the caller's over table rows: they return no rows and move
// no data between columns. What they define is followed when it is used (a
// view or SQL function through the catalog; a function in another
// language is opaque wherever it is called).
var definitions = map[string]bool{
	"alter_collation_stmt": true, "alter_database_refresh_coll_stmt": true, "alter_database_set_stmt": true,
	"alter_database_stmt": true, "alter_default_privileges_stmt": true, "alter_domain_stmt": true,
	"alter_enum_stmt": true, "alter_event_trig_stmt": true, "alter_extension_contents_stmt": true,
	"alter_extension_stmt": true, "alter_fdw_stmt": true, "alter_foreign_server_stmt": true,
	"alter_function_stmt": true, "alter_object_depends_stmt": true, "alter_object_schema_stmt": true,
	"alter_op_family_stmt": true, "alter_operator_stmt": true, "alter_owner_stmt": true,
	"alter_policy_stmt": true, "alter_publication_stmt": true, "alter_role_set_stmt": true,
	"alter_role_stmt": true, "alter_seq_stmt": true, "alter_stats_stmt": true,
	"alter_subscription_stmt": true, "alter_system_stmt": true, "alter_table_move_all_stmt": true,
	"alter_table_space_options_stmt": true, "alter_tsconfiguration_stmt": true,
	"alter_tsdictionary_stmt": true, "alter_type_stmt": true, "alter_user_mapping_stmt": true,
	"check_point_stmt": true, "cluster_stmt": true, "comment_stmt": true, "composite_type_stmt": true,
	"create_am_stmt": true, "create_cast_stmt": true, "create_conversion_stmt": true,
	"create_domain_stmt": true, "create_enum_stmt": true, "create_event_trig_stmt": true,
	"create_extension_stmt": true, "create_fdw_stmt": true, "create_foreign_server_stmt": true,
	"create_foreign_table_stmt": true, "create_function_stmt": true, "create_op_class_stmt": true,
	"create_op_family_stmt": true, "create_plang_stmt": true, "create_policy_stmt": true,
	"create_publication_stmt": true, "create_range_stmt": true, "create_role_stmt": true,
	"create_schema_stmt": true, "create_seq_stmt": true, "create_stats_stmt": true, "create_stmt": true,
	"create_subscription_stmt": true, "create_table_space_stmt": true, "create_transform_stmt": true,
	"create_trig_stmt": true, "create_user_mapping_stmt": true, "createdb_stmt": true,
	"define_stmt": true, "drop_owned_stmt": true, "drop_role_stmt": true, "drop_stmt": true,
	"drop_subscription_stmt": true, "drop_table_space_stmt": true, "drop_user_mapping_stmt": true,
	"dropdb_stmt": true, "grant_role_stmt": true, "grant_stmt": true, "import_foreign_schema_stmt": true,
	"index_stmt": true, "load_stmt": true, "reassign_owned_stmt": true, "refresh_mat_view_stmt": true,
	"reindex_stmt": true, "rename_stmt": true, "rule_stmt": true, "sec_label_stmt": true,
	"truncate_stmt": true, "vacuum_stmt": true, "view_stmt": true,
}

// definedNotRun are definitions whose expressions run later, as part of
// statements that are followed then (a view's query, a function's body, a
// trigger's function when it fires on a write).
var definedNotRun = map[string]bool{
	"create_function_stmt": true, "view_stmt": true, "rule_stmt": true,
	"create_trig_stmt": true, "create_event_trig_stmt": true,
}

// utility is the lineage of a statement that is not a query: nothing for a
// definition, opaque for anything else. ALTER TABLE is a definition unless
// a subcommand computes from the table's columns (ALTER COLUMN ... TYPE
// ... USING, a generated column added): that moves values into a column
// that masking rules may not name. A definition that evaluates functions
// now or on every later read (index expressions, check constraints,
// row-level security policies) must call only functions that can be
// followed: one in another language could pass values on as it runs.
func (a *analyzer) utility(n *pg_query.Node) (*Result, error) {
	kind := nodeKind(n)
	if at := n.GetAlterTableStmt(); at != nil {
		for _, c := range at.GetCmds() {
			if d := c.GetAlterTableCmd().GetDef(); d != nil && refersToColumns(d) {
				return nil, opaquef("ALTER TABLE %s computes a column from other columns", at.GetRelation().GetRelname())
			}
		}
	} else if !definitions[kind] {
		return nil, unsupported(n)
	}
	if definedNotRun[kind] {
		return &Result{}, nil
	}
	var err error
	eachFuncCall(n.ProtoReflect(), func(fc *pg_query.FuncCall) bool {
		schema, name := "", ""
		switch names := fc.GetFuncname(); len(names) {
		case 1:
			name = names[0].GetString_().GetSval()
		case 2:
			schema, name = names[0].GetString_().GetSval(), names[1].GetString_().GetSval()
		default:
			err = opaquef("%s calls %s, which phigate cannot follow", kind, funcCallName(fc))
			return false
		}
		_, err = a.resolveFunc(schema, name)
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return &Result{}, nil
}

// eachFuncCall calls f for every function call in m until f returns false.
func eachFuncCall(m protoreflect.Message, f func(*pg_query.FuncCall) bool) {
	eachMessage(m, func(x protoreflect.Message) bool {
		if fc, ok := x.Interface().(*pg_query.FuncCall); ok {
			return f(fc)
		}
		return true
	})
}

// eachMessage calls f for m and every message under it, depth first, until
// f returns false; it reports whether the walk went to the end.
func eachMessage(m protoreflect.Message, f func(protoreflect.Message) bool) bool {
	if !f(m) {
		return false
	}
	more := true
	protoorder.Range(m, func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && more; i++ {
				more = eachMessage(l.Get(i).Message(), f)
			}
		case fd.Message() != nil && !fd.IsMap():
			more = eachMessage(v.Message(), f)
		}
		return more
	})
	return more
}

// refersToColumns reports whether a column reference occurs anywhere in n.
func refersToColumns(n *pg_query.Node) bool {
	return containsColumnRef(n.ProtoReflect())
}

func containsColumnRef(m protoreflect.Message) bool {
	found := false
	eachMessage(m, func(x protoreflect.Message) bool {
		_, found = x.Interface().(*pg_query.ColumnRef)
		return !found
	})
	return found
}
