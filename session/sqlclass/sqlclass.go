// Package sqlclass classifies SQL text with PostgreSQL's own parser
// (libpg_query through pg_query_go) into the statement classes that policy
// grants speak of: read, write, ddl, admin, export, import, plus transaction
// control and session statements that every grant allows.
//
// It is pure: no I/O, no logging (SQL text may hold PHI). It classifies what
// a statement is, not what its functions do at run time; grants that allow
// only reads are also enforced upstream with default_transaction_read_only.
// Anything it does not recognise is classed admin, so unknown statements fall
// on the strict side.
package sqlclass

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Class is a statement class as grants name it.
type Class string

const (
	Read    Class = "read"    // SELECT, VALUES, TABLE, SHOW, EXPLAIN without ANALYZE
	Write   Class = "write"   // INSERT, UPDATE, DELETE, MERGE, TRUNCATE, LOCK, SELECT ... FOR UPDATE, writes in CTEs
	DDL     Class = "ddl"     // CREATE, ALTER, DROP, COMMENT, SELECT INTO, CREATE TABLE AS
	Admin   Class = "admin"   // roles, grants, DO, CALL, server-side COPY, SET ROLE, maintenance, anything unknown
	Export  Class = "export"  // COPY ... TO STDOUT
	Import  Class = "import"  // COPY ... FROM STDIN
	Tx      Class = "tx"      // BEGIN, COMMIT, ROLLBACK, SAVEPOINT: always allowed
	Session Class = "session" // SET, RESET, DISCARD, DEALLOCATE, LISTEN, FETCH, CLOSE: always allowed
)

// Classes lists every class a grant may name, in a stable order.
var Classes = []Class{Read, Write, DDL, Admin, Export, Import, Tx, Session}

// ParseClass checks a configured class name.
func ParseClass(s string) (Class, error) {
	for _, c := range Classes {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("sqlclass: unknown statement class %q", s)
}

// AlwaysAllowed reports whether statements of class c pass under every grant
// that admits the session at all.
func (c Class) AlwaysAllowed() bool { return c == Tx || c == Session }

// Statement is one classified statement of a query string.
type Statement struct {
	Class Class
	// Kind is the parser's statement kind, e.g. "select_stmt", "copy_stmt".
	Kind string
	// Copy describes a COPY statement; nil otherwise.
	Copy *Copy
	// Prepare names the SQL-level prepared statement a PREPARE creates; its
	// class is the class of the prepared query.
	Prepare string
	// Execute names the SQL-level prepared statement an EXECUTE runs; Class is
	// then Admin until the caller resolves it with what PREPARE recorded.
	Execute string
}

// Copy is what the proxy needs to know about a COPY statement to mask or
// record its data.
type Copy struct {
	Schema, Table string   // empty for COPY (query)
	Columns       []string // explicit column list, if any
	Query         bool     // COPY (SELECT ...) TO
	From          bool     // COPY ... FROM
	Stdio         bool     // STDIN/STDOUT (not a server file or program)
	Format        string   // text | csv | binary
	Delimiter     string   // "" means the format's default
	Null          string
	Header        bool
	Quote, Escape string
	// Describe is a SELECT whose result columns are the COPY's columns, in
	// order, so that the proxy can learn their source and type by describing
	// it (set for COPY ... TO; empty when it cannot be built).
	Describe string
}

// ErrSyntax wraps parser errors; its message is the parser's, which is the
// same text PostgreSQL would report.
var ErrSyntax = errors.New("syntax error")

// Classify parses sql and classifies each statement in order. An empty query
// yields no statements.
func Classify(sql string) ([]Statement, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrSyntax, strings.TrimPrefix(err.Error(), "error: "))
	}
	out := make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		st := classify(tree.GetVersion(), raw.GetStmt())
		if callsAdminFunction(raw.GetStmt()) {
			st.Class = Admin
		}
		out = append(out, st)
	}
	return out, nil
}

// adminFunctions change the session's settings or identity, reach outside
// the database, or act on other sessions. A statement that calls one is an
// admin act whatever else it is: set_config could otherwise undo the
// read-only upstream session that read grants rely on.
var adminFunctions = map[string]bool{
	"set_config": true, "pg_terminate_backend": true, "pg_cancel_backend": true,
	"pg_reload_conf": true, "pg_rotate_logfile": true, "lo_import": true, "lo_export": true,
	"pg_read_file": true, "pg_read_binary_file": true, "pg_ls_dir": true, "pg_stat_file": true,
	"dblink": true, "dblink_exec": true, "dblink_connect": true, "pg_file_write": true,
}

func callsAdminFunction(n *pg_query.Node) bool {
	found := false
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		fc, ok := m.Interface().(*pg_query.FuncCall)
		if !ok {
			return true
		}
		names := fc.GetFuncname()
		if len(names) > 0 {
			if s := names[len(names)-1].GetString_(); s != nil && adminFunctions[strings.ToLower(s.GetSval())] {
				found = true
				return false
			}
		}
		return true
	})
	return found
}

func classify(version int32, n *pg_query.Node) Statement {
	kind := nodeKind(n)
	st := Statement{Kind: kind, Class: Admin}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		st.Class = selectClass(x.SelectStmt)
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt,
		*pg_query.Node_MergeStmt, *pg_query.Node_TruncateStmt, *pg_query.Node_LockStmt:
		st.Class = Write
	case *pg_query.Node_ExplainStmt:
		st.Class = Read
		if explainAnalyze(x.ExplainStmt) {
			st.Class = classify(version, x.ExplainStmt.GetQuery()).Class
		}
	case *pg_query.Node_CopyStmt:
		st.Copy, st.Class = copyInfo(version, x.CopyStmt)
	case *pg_query.Node_TransactionStmt:
		st.Class = Tx
		if readWriteOption(x.TransactionStmt.GetOptions()) {
			st.Class = Write
		}
	case *pg_query.Node_VariableSetStmt:
		st.Class = setClass(x.VariableSetStmt)
	case *pg_query.Node_VariableShowStmt:
		st.Class = Read
	case *pg_query.Node_DiscardStmt, *pg_query.Node_DeallocateStmt, *pg_query.Node_ListenStmt,
		*pg_query.Node_UnlistenStmt, *pg_query.Node_NotifyStmt, *pg_query.Node_FetchStmt,
		*pg_query.Node_ClosePortalStmt:
		st.Class = Session
	case *pg_query.Node_DeclareCursorStmt:
		st.Class = classify(version, x.DeclareCursorStmt.GetQuery()).Class
	case *pg_query.Node_PrepareStmt:
		st.Prepare = x.PrepareStmt.GetName()
		st.Class = classify(version, x.PrepareStmt.GetQuery()).Class
	case *pg_query.Node_ExecuteStmt:
		st.Execute = x.ExecuteStmt.GetName()
	case *pg_query.Node_CreateTableAsStmt:
		st.Class = DDL
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
		*pg_query.Node_AlterUserMappingStmt, *pg_query.Node_ImportForeignSchemaStmt:
		st.Class = Admin
	default:
		if strings.HasPrefix(kind, "create_") || strings.HasPrefix(kind, "alter_") ||
			strings.HasPrefix(kind, "drop_") || kind == "comment_stmt" || kind == "rename_stmt" ||
			kind == "index_stmt" || kind == "view_stmt" || kind == "rule_stmt" || kind == "define_stmt" ||
			kind == "composite_type_stmt" || kind == "refresh_mat_view_stmt" {
			st.Class = DDL
		}
	}
	return st
}

// selectClass is Read unless the SELECT writes: INTO, row locks, or a
// data-modifying statement anywhere inside (a CTE, a subquery).
func selectClass(s *pg_query.SelectStmt) Class {
	if s.GetIntoClause() != nil {
		return DDL
	}
	class := Read
	if len(s.GetLockingClause()) > 0 {
		class = Write
	}
	walk(s.ProtoReflect(), func(m protoreflect.Message) bool {
		switch m.Interface().(type) {
		case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
			class = Write
			return false
		case *pg_query.SelectStmt:
			if len(m.Interface().(*pg_query.SelectStmt).GetLockingClause()) > 0 {
				class = Write
			}
		}
		return true
	})
	return class
}

// walk visits every message under m, depth first, until visit returns false.
func walk(m protoreflect.Message, visit func(protoreflect.Message) bool) bool {
	if !visit(m) {
		return false
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && ok; i++ {
				ok = walk(l.Get(i).Message(), visit)
			}
			return ok
		}
		ok = walk(v.Message(), visit)
		return ok
	})
	return ok
}

func nodeKind(n *pg_query.Node) string {
	if n == nil {
		return ""
	}
	m := n.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); fd != nil {
		return string(fd.Name())
	}
	return ""
}

func explainAnalyze(e *pg_query.ExplainStmt) bool {
	for _, o := range e.GetOptions() {
		if d := o.GetDefElem(); d != nil && d.GetDefname() == "analyze" {
			v := defString(d)
			return v == "" || v == "true" || v == "on" || v == "1"
		}
	}
	return false
}

// readWriteOption reports BEGIN/START/SET TRANSACTION ... READ WRITE.
func readWriteOption(opts []*pg_query.Node) bool {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && d.GetDefname() == "transaction_read_only" {
			if c := d.GetArg().GetAConst(); c != nil && c.GetIval() != nil && c.GetIval().GetIval() == 0 {
				return true
			}
		}
	}
	return false
}

// guardedSettings are settings that would widen what a session may do or
// whose identity it acts as; changing them is an admin act.
var guardedSettings = map[string]bool{
	"role":                          true,
	"session_authorization":         true,
	"default_transaction_read_only": true,
	"transaction_read_only":         true,
	"session_replication_role":      true,
	"row_security":                  true,
}

func setClass(s *pg_query.VariableSetStmt) Class {
	name := strings.ToLower(s.GetName())
	if s.GetKind() == pg_query.VariableSetKind_VAR_SET_MULTI {
		// SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION ...
		if readWriteOption(s.GetArgs()) {
			return Write
		}
		return Session
	}
	if s.GetKind() == pg_query.VariableSetKind_VAR_RESET_ALL || guardedSettings[name] {
		return Admin
	}
	return Session
}

func copyInfo(version int32, c *pg_query.CopyStmt) (*Copy, Class) {
	info := &Copy{From: c.GetIsFrom(), Format: "text", Query: c.GetQuery() != nil}
	info.Stdio = c.GetFilename() == "" && !c.GetIsProgram()
	if rv := c.GetRelation(); rv != nil {
		info.Schema, info.Table = rv.GetSchemaname(), rv.GetRelname()
	}
	for _, a := range c.GetAttlist() {
		if s := a.GetString_(); s != nil {
			info.Columns = append(info.Columns, s.GetSval())
		}
	}
	for _, o := range c.GetOptions() {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		v := defString(d)
		switch d.GetDefname() {
		case "format":
			info.Format = strings.ToLower(v)
		case "delimiter":
			info.Delimiter = v
		case "null":
			info.Null = v
		case "header":
			info.Header = v == "" || v == "true" || v == "on" || v == "1" || v == "match"
		case "quote":
			info.Quote = v
		case "escape":
			info.Escape = v
		}
	}
	if !info.From {
		info.Describe = copyDescribe(version, c, info)
	}
	switch {
	case !info.Stdio:
		return info, Admin // server-side files and programs
	case info.From:
		return info, Import
	default:
		return info, Export
	}
}

// copyDescribe builds the SELECT that yields the same columns as COPY TO.
func copyDescribe(version int32, c *pg_query.CopyStmt, info *Copy) string {
	if q := c.GetQuery(); q != nil {
		sql, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: q}}})
		if err != nil {
			return ""
		}
		return sql
	}
	cols := "*"
	if len(info.Columns) > 0 {
		quoted := make([]string, len(info.Columns))
		for i, col := range info.Columns {
			quoted[i] = quoteIdent(col)
		}
		cols = strings.Join(quoted, ", ")
	}
	rel := quoteIdent(info.Table)
	if info.Schema != "" {
		rel = quoteIdent(info.Schema) + "." + rel
	}
	return "SELECT " + cols + " FROM " + rel
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// defString renders a DefElem argument the way PostgreSQL's defGetString would.
func defString(d *pg_query.DefElem) string {
	arg := d.GetArg()
	if arg == nil {
		return ""
	}
	if s := arg.GetString_(); s != nil {
		return s.GetSval()
	}
	if c := arg.GetAConst(); c != nil {
		switch {
		case c.GetSval() != nil:
			return c.GetSval().GetSval()
		case c.GetIval() != nil:
			return fmt.Sprint(c.GetIval().GetIval())
		case c.GetBoolval() != nil:
			return fmt.Sprint(c.GetBoolval().GetBoolval())
		}
	}
	if b := arg.GetBoolean(); b != nil {
		return fmt.Sprint(b.GetBoolval())
	}
	if i := arg.GetInteger(); i != nil {
		return fmt.Sprint(i.GetIval())
	}
	return ""
}

// Cache memoises Classify for repeated query texts (prepared statements,
// ORMs, pgbench). It is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]cached
	order   []string // insertion ring for eviction
	next    int
}

type cached struct {
	stmts []Statement
	err   error
}

// maxCachedSQL bounds the size of one cached text, so that a few huge
// statements cannot pin memory.
const maxCachedSQL = 8 << 10

// NewCache holds up to n query texts (n <= 0 means 4096).
func NewCache(n int) *Cache {
	if n <= 0 {
		n = 4096
	}
	return &Cache{max: n, entries: make(map[string]cached, n), order: make([]string, n)}
}

// Classify is Classify with memoisation. Texts that differ only in their
// constants share an entry (keyed by pg_query's normalised text, which costs
// a fraction of a parse), so ad-hoc queries with literals hit the cache too.
// The returned slice is shared: callers must not modify it.
func (c *Cache) Classify(sql string) ([]Statement, error) {
	if sql == "" || len(sql) > maxCachedSQL {
		return Classify(sql)
	}
	if e, ok := c.lookup(sql); ok {
		return e.stmts, e.err
	}
	norm, nerr := pg_query.Normalize(sql)
	if nerr == nil && norm != sql {
		if e, ok := c.lookup(norm); ok {
			c.store(sql, e)
			return e.stmts, e.err
		}
	}
	stmts, err := Classify(sql)
	e := cached{stmts, err}
	c.store(sql, e)
	if nerr == nil && norm != sql && err == nil && constantsAreData(stmts) {
		c.store(norm, e)
	}
	return stmts, err
}

// constantsAreData reports whether every statement is plain DML, whose
// class depends on its shape and never on the value of a constant, so that
// texts differing only in constants may share a cache entry. Utility
// statements (SET, COPY, EXPLAIN options, transaction modes) can turn on a
// constant and are cached by exact text only.
func constantsAreData(stmts []Statement) bool {
	for _, s := range stmts {
		switch s.Kind {
		case "select_stmt", "insert_stmt", "update_stmt", "delete_stmt", "merge_stmt":
		default:
			return false
		}
	}
	return true
}

func (c *Cache) lookup(key string) (cached, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	return e, ok
}

func (c *Cache) store(key string, e cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	if old := c.order[c.next]; old != "" {
		delete(c.entries, old)
	}
	c.order[c.next] = key
	c.next = (c.next + 1) % c.max
	c.entries[key] = e
}
