package sqlclass

import "github.com/phigate/phigate/session/policy"

//go:generate go run ./internal/genfuncs

// FunctionClass is the class a call of function schema.name needs beyond the
// statement's own: "" for built-ins known to be free of side effects, Write
// for built-ins whose effect is one a writer may cause, Admin for anything
// else. schema is "" for an unqualified call; any schema but pg_catalog holds
// user or extension code, which may do anything. Names are compared exactly,
// as the parser folded them: a quoted "LOWER" is not lower.
//
// An unqualified name is taken to mean the built-in. The server could pick a
// same-named function from another schema on the search path if one matched
// the argument types better; creating one is DDL.
func FunctionClass(schema, name string) policy.Class {
	if schema != "" && schema != "pg_catalog" {
		return policy.Admin
	}
	if c, ok := functionClasses[name]; ok {
		return c
	}
	return policy.Admin
}

// noClass marks a call that needs no class of its own.
const noClass policy.Class = ""

// functionClasses is the lookup table of FunctionClass: the generated
// stableBuiltins, free, and the hand-reviewed builtinOverrides. The generator
// also leaves out the few stable functions that PostgreSQL does not grant to
// PUBLIC (pg_config, pg_replication_origin_oid): the server deems them
// privileged. Functions a grant names are the caller's to allow.
var functionClasses = func() map[string]policy.Class {
	m := make(map[string]policy.Class, len(stableBuiltins)+len(builtinOverrides))
	for _, name := range stableBuiltins {
		m[name] = noClass
	}
	for name, c := range builtinOverrides {
		m[name] = c
	}
	return m
}()

// builtinOverrides are the pg_catalog functions decided by hand rather than
// by their volatility in pg_proc. The generator (internal/genfuncs) reads the
// keys of this literal and leaves them out of stableBuiltins, so an entry
// here always wins; keep it a map literal with string keys.
var builtinOverrides = map[string]policy.Class{
	// Volatile only because each call may return something new; they change
	// nothing outside their own result, and readers use them.
	"random":          noClass,
	"clock_timestamp": noClass,
	"timeofday":       noClass,
	"gen_random_uuid": noClass,
	// setseed changes only this session's random() sequence, an effect of
	// the same kind as SET, which every grant allows; readers use it for
	// repeatable samples.
	"setseed": noClass,
	// libpq asks this when target_session_attrs is primary or standby.
	"pg_is_in_recovery": noClass,
	// Sizes on disk, volatile because they change; psql's \l+, \dt+ and
	// \db+ call them.
	"pg_database_size":       noClass,
	"pg_tablespace_size":     noClass,
	"pg_relation_size":       noClass,
	"pg_table_size":          noClass,
	"pg_indexes_size":        noClass,
	"pg_total_relation_size": noClass,
	// Catalog reads, volatile because partitions change; psql's \dP uses them.
	"pg_partition_tree":      noClass,
	"pg_partition_ancestors": noClass,

	// Sequences: currval and lastval only read, but are meaningful only
	// after nextval in the same session, so they travel with it.
	"nextval": policy.Write,
	"setval":  policy.Write,
	"currval": policy.Write,
	"lastval": policy.Write,
	// Large objects are data held outside any table, so even reading them
	// escapes the masking of result columns. lo_import and lo_export are
	// not here: they touch server files (Admin).
	"lo_creat":      policy.Write,
	"lo_create":     policy.Write,
	"lo_from_bytea": policy.Write,
	"lo_open":       policy.Write,
	"lo_close":      policy.Write,
	"loread":        policy.Write,
	"lowrite":       policy.Write,
	"lo_get":        policy.Write,
	"lo_put":        policy.Write,
	"lo_lseek":      policy.Write,
	"lo_lseek64":    policy.Write,
	"lo_tell":       policy.Write,
	"lo_tell64":     policy.Write,
	"lo_truncate":   policy.Write,
	"lo_truncate64": policy.Write,
	"lo_unlink":     policy.Write,
	// Advisory locks block other sessions; pg_notify signals them.
	"pg_advisory_lock":                 policy.Write,
	"pg_advisory_lock_shared":          policy.Write,
	"pg_advisory_unlock":               policy.Write,
	"pg_advisory_unlock_shared":        policy.Write,
	"pg_advisory_unlock_all":           policy.Write,
	"pg_advisory_xact_lock":            policy.Write,
	"pg_advisory_xact_lock_shared":     policy.Write,
	"pg_try_advisory_lock":             policy.Write,
	"pg_try_advisory_lock_shared":      policy.Write,
	"pg_try_advisory_xact_lock":        policy.Write,
	"pg_try_advisory_xact_lock_shared": policy.Write,
	"pg_notify":                        policy.Write,
	// Marked stable, yet each call assigns a transaction ID if the
	// transaction has none, even in a read-only transaction: a loop of them
	// burns XIDs towards wraparound. pg_current_xact_id_if_assigned only reads.
	"txid_current":       policy.Write,
	"pg_current_xact_id": policy.Write,

	// They run SQL given as text (query_to_xml*, ts_stat, and ts_rewrite's
	// (tsquery, text) form), fetch from a cursor named by text
	// (cursor_to_xml*), or read every row of a table, schema or database
	// named by their argument (table_, schema_, database_to_xml*). What they
	// run is not the statement the classifier saw, and whole rows leave as
	// one XML value that column masking cannot see into. The table, schema
	// and database forms are marked stable, the others volatile; they are
	// listed all the same so that a later release cannot let them in.
	"query_to_xml":                  policy.Admin,
	"query_to_xmlschema":            policy.Admin,
	"query_to_xml_and_xmlschema":    policy.Admin,
	"cursor_to_xml":                 policy.Admin,
	"cursor_to_xmlschema":           policy.Admin,
	"table_to_xml":                  policy.Admin,
	"table_to_xmlschema":            policy.Admin,
	"table_to_xml_and_xmlschema":    policy.Admin,
	"schema_to_xml":                 policy.Admin,
	"schema_to_xmlschema":           policy.Admin,
	"schema_to_xml_and_xmlschema":   policy.Admin,
	"database_to_xml":               policy.Admin,
	"database_to_xmlschema":         policy.Admin,
	"database_to_xml_and_xmlschema": policy.Admin,
	"ts_stat":                       policy.Admin,
	"ts_rewrite":                    policy.Admin,
	// Language validators, stable, run by CREATE FUNCTION: called directly,
	// fmgr_c_validator loads the function's shared library (running its
	// initialisation code) and fmgr_sql_validator parses its body.
	"fmgr_c_validator":        policy.Admin,
	"fmgr_internal_validator": policy.Admin,
	"fmgr_sql_validator":      policy.Admin,
	// The server files lo_import reads and lo_export writes.
	"lo_import": policy.Admin,
	"lo_export": policy.Admin,
}
