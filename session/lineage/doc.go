// Package lineage tells, for a SQL statement, which base-table columns each
// of its output columns derives from, so that masking rules, which name base
// columns (public.patients.ssn), reach values that are not bare column
// references: dob + 0, reverse(ssn), ARRAY[ssn], SELECT p FROM patients p,
// row_to_json(p), views that rename columns, SQL functions over masked
// tables, CTEs, set operations.
//
// It reads PostgreSQL's own parse tree (libpg_query through pg_query_go)
// and resolves names as the server's parse analysis does. It is pure: no
// I/O, no logging, no clock; what it needs of the database comes through
// the Catalog interface, whose answers the caller caches. It never panics
// on any input (a slip is recovered into an opaque result).
//
// # What a result says
//
// Every output column is one of:
//
//   - Plain: the value is one base column's value unchanged. A bare column
//     reference, possibly through subqueries, CTEs, views, join USING
//     columns (when both sides have the same type), VALUES lists and set
//     operations whose every branch is plain on the same column; * and t.*
//     expand to plain columns the same way.
//   - Derived: any other expression, a cast included. Its sources are
//     every column referenced anywhere in it: operands, function
//     arguments, CASE conditions as well as results, subscripts, field
//     selections, row and array constructors, XML and JSON constructors,
//     subqueries (every output, every column referenced from outside them,
//     and the tested expression of IN/ANY/ALL), the arguments of window
//     functions and aggregates, and the ORDER BY of ordered-set aggregates
//     (mode() WITHIN GROUP (ORDER BY ssn) returns an ssn). A whole-row
//     reference (p, p.*, row_to_json(p), p::text, (p).ssn) derives from
//     every column of p. count(...) derives from nothing: it tells only
//     how many values are not null, as a WHERE clause would. Constants,
//     parameters and GROUPING() derive from nothing. A built-in function
//     derives from its arguments; a SQL function from its arguments and
//     the outputs of its body's last statement; a function in FROM gives
//     every column all of that (a SQL function's column i its body's
//     output i when the counts match).
//   - Opaque (the whole result): something the analysis cannot follow.
//     Result.Opaque says what, naming the node kind, function or relation,
//     never a data value; the outputs are then meaningless.
//
// A plain output also says which scan of its table it comes from
// (Output.Scan): plain outputs with the same scan are, in every result row,
// columns of one table row. Each reference to a table, view or CTE is a
// scan of its own (a self-join pairs one patient's id with another's date
// of birth); set operations keep a pairing only when every branch pairs
// the same way, and recursive CTEs keep none. Masking uses it to take a
// row's subject (the patient's id) from the row the masked value is of.
//
// # What is opaque by design
//
// Fail closed: whatever is not known to be safe is opaque, never an empty
// lineage.
//
//   - Any parse node kind not handled explicitly ("unsupported: <kind>"),
//     any statement other than those listed below, DO and CALL.
//   - A function, anywhere in the statement (WHERE, FILTER, ORDER BY, a
//     view or SQL function body included, since it could read tables and
//     report them by other means than its value), that the catalog does
//     not know, that has an overload in a language other than sql and not
//     built-in, or whose SQL body cannot be analyzed. The built-ins that
//     run SQL given as text, read a relation by name or return stored data
//     outside any column are listed, with reasons, in opaqueBuiltins
//     (query_to_xml, table_to_xml, cursor_to_xml, ts_stat, lo_get,
//     pg_read_file, pg_stat_get_activity, ...).
//   - An operator outside pg_catalog, or one whose name pg_catalog does not
//     define (builtinOperators); a TABLESAMPLE method other than bernoulli
//     and system.
//   - A relation the catalog does not know (it may be a temporary table the
//     gateway cannot see), one of another kind than table, partitioned
//     table, foreign table, view or materialized view, a view whose
//     definition does not analyze, views and SQL functions that refer to
//     themselves or nest deeper than 16.
//   - A name that does not resolve, or resolves ambiguously: the server
//     would refuse the statement, but the analysis does not guess.
//   - In a SQL function that sets its own search_path, an unqualified
//     relation, and an unqualified function unless pg_catalog is searched
//     first: the catalog resolves names with the session's path.
//   - (x).* of anything but a whole row or a function with known result
//     columns; EXECUTE with a parameter derived from columns (the caller's
//     record of the prepared statement cannot see it); EXPLAIN EXECUTE;
//     more than one statement.
//
// # Statements
//
// SELECT in all forms (VALUES, TABLE, set operations, WITH [RECURSIVE],
// FOR UPDATE, DISTINCT ON, GROUP BY, HAVING, WINDOW, ORDER BY, LIMIT),
// INSERT/UPDATE/DELETE/MERGE ... RETURNING (a returned column also derives
// from what was assigned to it), COPY (query) TO and COPY table [(cols)] TO
// (whatever the destination), DECLARE CURSOR and PREPARE (DefinesCursor,
// DefinesPrepared, with the rows FETCH and EXECUTE will return), FETCH and
// MOVE (Cursor), EXECUTE (Prepared), EXPLAIN (one column "QUERY PLAN"; the
// explained statement is analyzed and its opacity propagates, as the
// planner evaluates immutable functions and ANALYZE runs it), CREATE TABLE
// AS and SELECT INTO (no rows; the query is analyzed and its opacity
// propagates), SHOW (a setting: no sources), and SET, RESET, transaction
// control, LISTEN, UNLISTEN, NOTIFY, DEALLOCATE, DISCARD, CLOSE, LOCK and
// SET CONSTRAINTS (no rows). Definitions (CREATE, ALTER, DROP, GRANT,
// COMMENT, VACUUM, ...; the list is in utility.go) return no rows either,
// provided every function they evaluate can be followed (an index
// expression, a default, a policy); ALTER TABLE that computes a column from
// other columns (ALTER COLUMN ... TYPE ... USING, an added generated column)
// is opaque, as it moves values into a column masking rules may not name.
// Everything else is opaque.
//
// # Out of scope
//
// Inference through WHERE, JOIN ON, GROUP BY, HAVING, ORDER BY, LIMIT or
// the choice of rows in general (SELECT id FROM patients WHERE ssn LIKE
// '1%' tells about ssn) is out of scope by design: lineage follows values,
// not the conditions that select them. Those clauses are still analyzed, so
// that an opaque function or an unknown name in them makes the result
// opaque. Also out of scope, because the parse tree does not show them:
// triggers, rules, column defaults and row-level security policies that a
// statement sets off; user-defined casts and type I/O functions; which
// overload of an unqualified built-in function or operator search_path
// picks (a look-alike in another schema is the caller's check, as sqlclass
// reports the names); the search_path a SQL function or view body was
// created under (the caller resolves names with the session's).
package lineage
