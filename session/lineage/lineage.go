package lineage

import (
	"cmp"
	"errors"
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Col is a column of a base relation (table, partitioned table, foreign
// table). Views and materialized views are expanded through their
// definitions, so they never appear here.
type Col struct {
	Schema, Table, Column string
	TypeOID               uint32
}

// String returns "schema.table.column", the form masking rules use.
func (c Col) String() string { return c.Schema + "." + c.Table + "." + c.Column }

func compareCol(a, b Col) int {
	if c := cmp.Compare(a.Schema, b.Schema); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Column, b.Column); c != 0 {
		return c
	}
	return cmp.Compare(a.TypeOID, b.TypeOID)
}

// Output is the lineage of one result column.
type Output struct {
	// Name is the column's name as PostgreSQL names it: the alias, the
	// column's name, the function's name, "?column?".
	Name string
	// Plain: the value is Sources[0]'s value unchanged (a bare column
	// reference, possibly through subqueries, CTEs, views, and set
	// operations whose every branch is plain on the same column). False for
	// any expression, a cast included.
	Plain bool
	// Sources are every base column the value derives from, sorted and
	// unique; empty for constants, parameters and count(...).
	Sources []Col
	// Scan numbers, for a Plain output, the scan of Sources[0]'s table its
	// values come from: in each row of the result, two outputs with the
	// same non-zero Scan hold columns of one row of that table (a patient's
	// id and that same patient's date of birth). Each reference to a
	// table, view or CTE is a scan of its own, so in FROM patients p,
	// patients q the outputs p.id and q.dob have different scans. 0: not
	// known to be one scan's (set operations or VALUES whose branches pair
	// columns differently, recursive CTEs, derived outputs).
	Scan int
}

// Result is the lineage of one statement.
type Result struct {
	// Outputs has one entry per result column, in order; nil when the
	// statement returns no rows.
	Outputs []Output
	// Escapes are the base columns whose values the statement moves
	// somewhere other than its result, sorted and unique: into a table
	// (INSERT, UPDATE, MERGE, CREATE TABLE AS, SELECT INTO, also inside
	// CTEs and SQL function bodies) or into a function with an effect
	// beyond its result (pg_notify, set_config, setval, advisory locks,
	// large objects, setseed...). Masking cannot follow a value there: a
	// caller under a masking profile refuses a statement whose escapes it
	// masks.
	Escapes []Col
	// Reads are every base column the statement reads, anywhere (WHERE,
	// JOIN, ORDER BY, inside views and SQL functions too), sorted and
	// unique: what a server message about the statement could quote.
	Reads []Col
	// Opaque is non-empty when lineage cannot be determined, and says why,
	// naming the function, relation or node (never a data value). Outputs
	// are then meaningless: the caller must treat every column as derived
	// from everything.
	Opaque string
	// Undefined is set with Opaque when the reason is a name the statement
	// uses (not one inside a view or function it reaches) that the catalog
	// does not have: the SQLSTATE the server would refuse it with (42703
	// column, 42P01 relation, 42883 function). The caller may read the
	// catalog afresh and try again before refusing with that code.
	Undefined string
	// Cursor is set for FETCH and MOVE: the cursor whose rows they return,
	// which the caller looks up from the DECLARE that defined it (Outputs
	// nil).
	Cursor string
	// Prepared is set for EXECUTE: the SQL-level prepared statement it runs,
	// which the caller looks up from the PREPARE that defined it (Outputs
	// nil).
	Prepared string
	// DefinesCursor is set for DECLARE CURSOR and DefinesPrepared for
	// PREPARE: the name being defined. Outputs (or Opaque) are then those of
	// the rows that FETCH or EXECUTE of that name returns. Both stay set
	// when the result is Opaque, so that the caller can remember the name as
	// opaque.
	DefinesCursor, DefinesPrepared string
}

// RelKind is the kind of a relation as far as lineage is concerned.
type RelKind uint8

// The zero RelKind is Other, so that a catalog that fills in no kind makes
// a reference opaque rather than a base table.
const (
	Other       RelKind = iota // sequences, composite types, indexes: opaque
	Table                      // ordinary table (also a temporary one)
	View                       // expanded through Definition
	MatView                    // expanded through Definition
	Foreign                    // foreign table
	Partitioned                // partitioned table
)

func (k RelKind) String() string {
	switch k {
	case Table:
		return "table"
	case View:
		return "view"
	case MatView:
		return "materialized view"
	case Foreign:
		return "foreign table"
	case Partitioned:
		return "partitioned table"
	}
	return "other relation"
}

// Column is a relation's column as the catalog describes it.
type Column struct {
	Name    string
	TypeOID uint32
	// Generated is a generated column's expression (pg_get_expr of its
	// default): its values derive from the columns the expression names.
	Generated string
	// Inherited marks a column a partition or child table has from its
	// parent: its values are the root table's column (Relation.Root*).
	Inherited bool
}

// Relation is what the catalog knows of a relation.
type Relation struct {
	// Schema is the schema the relation lives in, also when it was asked
	// for unqualified; Col.Schema is taken from it.
	Schema, Name string
	Kind         RelKind
	// Columns in attnum order, dropped columns left out.
	Columns []Column
	// Definition is the SELECT of a view or materialized view, as
	// pg_get_viewdef returns it. pg_get_viewdef qualifies only the names
	// that the reading connection's search_path would not find; unqualified
	// names in it are resolved through this Catalog again, so read it with
	// the search_path the Catalog resolves with, or an empty one (then
	// every name outside pg_catalog comes qualified).
	Definition string
	// RootSchema and RootName name the topmost table a partition or child
	// table inherits from: masking rules name that table's columns, and a
	// partition holds the same values under its own name.
	RootSchema, RootName string
}

// Function is one overload of a function as the catalog describes it.
type Function struct {
	Schema, Name string
	// Builtin marks a function of pg_catalog (or one the caller trusts the
	// same way): its output derives from its arguments and nothing else.
	Builtin bool
	// Language is the function's language: "sql", "plpgsql", "c",
	// "internal", ...
	Language string
	// Definition is, for language sql, pg_get_functiondef's text: a CREATE
	// FUNCTION statement whose body is either AS '...' (names resolved when
	// it runs, with the session's search_path, unless the function sets its
	// own) or a sql_body (BEGIN ATOMIC ... END, RETURN ...: deparsed like a
	// view's definition, so read it as Relation.Definition says).
	Definition string
	ReturnsSet bool
	// OutColumns are the column names of a function returning a row type,
	// TABLE(...) or OUT parameters; nil for a scalar.
	OutColumns []string
}

// Catalog answers what lineage needs of the database. Unqualified names come
// with schema "": the caller resolves them with the session's search_path.
type Catalog interface {
	// Relation returns the relation, or nil, nil when there is none.
	Relation(schema, name string) (*Relation, error)
	// Functions returns every overload the name may resolve to; none when
	// the function is unknown.
	Functions(schema, name string) ([]*Function, error)
}

// ErrCatalog wraps the errors the Catalog returns.
var ErrCatalog = errors.New("lineage: catalog")

// Analyze returns the lineage of every output column of sql, which holds one
// statement (more than one is Opaque, none is an empty Result). The error is
// non-nil only when sql does not parse or the catalog fails (wrapping
// ErrCatalog); everything else that lineage cannot follow is an Opaque
// result.
func Analyze(sql string, cat Catalog) (res *Result, err error) {
	if cat == nil {
		return nil, errors.New("lineage: no catalog")
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("lineage: parse: %w", err)
	}
	switch len(tree.GetStmts()) {
	case 0:
		return &Result{}, nil
	case 1:
	default:
		return &Result{Opaque: "more than one statement"}, nil
	}
	return AnalyzeStmt(tree.GetStmts()[0].GetStmt(), cat)
}

// AnalyzeStmt is Analyze for one statement the caller has parsed already
// (one of pg_query.Parse's RawStmt.Stmt): the parse is most of Analyze's
// cost.
func AnalyzeStmt(stmt *pg_query.Node, cat Catalog) (res *Result, err error) {
	if cat == nil {
		return nil, errors.New("lineage: no catalog")
	}
	defer func() {
		// Analysis of a hostile tree must never take the gateway down; a
		// slip is a statement we cannot vouch for.
		if r := recover(); r != nil {
			res, err = &Result{Opaque: "internal error: analysis failed"}, nil
		}
	}()
	if what := createsTemporary(stmt); what != "" {
		return &Result{Opaque: what + ": an object only the session sees cannot be followed"}, nil
	}
	a := newAnalyzer(cat)
	res, err = a.statement(stmt)
	var op *opaqueError
	switch {
	case err == nil:
		res.Escapes = a.escapes.srcs
		reads := union(a.reads, a.escapes)
		for _, o := range res.Outputs {
			reads = union(reads, lin{srcs: o.Sources})
		}
		res.Reads = reads.srcs
		return res, nil
	case errors.As(err, &op):
		if res == nil {
			res = &Result{}
		}
		res.Outputs, res.Opaque, res.Undefined = nil, op.reason, op.code
		return res, nil
	}
	return nil, err
}

// opaqueError carries the reason analysis gave up; Analyze turns it into
// Result.Opaque. Reasons name nodes, functions and relations, never values.
type opaqueError struct {
	reason string
	// code is the SQLSTATE the server gives for the same statement when
	// the reason is a name the statement itself uses that does not exist.
	code string
}

func (e *opaqueError) Error() string { return e.reason }

func opaquef(format string, args ...any) error {
	return &opaqueError{reason: fmt.Sprintf(format, args...)}
}

// SQLSTATEs of names that do not exist.
const (
	undefinedColumn   = "42703"
	undefinedTable    = "42P01"
	undefinedFunction = "42883"
)

// undefinedf is the reason for a name the statement uses that the catalog
// does not have: the server would refuse the statement with code too, unless
// the catalog's answer is stale or the name is one only the session sees (a
// temporary table).
func undefinedf(code, format string, args ...any) error {
	return &opaqueError{reason: fmt.Sprintf(format, args...), code: code}
}

// unsupported is the reason for a node the analysis does not know.
func unsupported(n *pg_query.Node) error {
	return opaquef("unsupported: %s", nodeKind(n))
}

// nodeKind names a parse node's kind as pg_query's JSON does, e.g.
// "select_stmt", "json_table".
func nodeKind(n *pg_query.Node) string {
	if n == nil {
		return "empty node"
	}
	m := n.ProtoReflect()
	if od := m.Descriptor().Oneofs(); od.Len() > 0 {
		if fd := m.WhichOneof(od.Get(0)); fd != nil {
			return string(fd.Name())
		}
	}
	return "empty node"
}
