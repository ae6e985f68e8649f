// Package sqlclass classifies SQL text with PostgreSQL's own parser
// (libpg_query through pg_query_go) into the statement classes that policy
// grants speak of: read, write, ddl, admin, export, import, plus transaction
// control and session statements that every grant allows.
//
// It is pure: no I/O, no logging (SQL text may hold PHI). What it allows is
// what it knows to be safe: a function call is free only for built-ins on an
// allowlist of side-effect-free functions (FunctionClass); any other call
// needs a class of its own (Statement.Calls). Anything it does not recognise
// is classed admin, so unknown statements fall on the strict side.
//
// For approval rules it also marks each statement's risks (a write without
// a restricting WHERE, TRUNCATE, schema and privilege changes, reaching
// outside the database, code it cannot see), the relations it writes and
// reads, and the most rows it returns (risk.go).
//
// It parses as PostgreSQL does only under the lexer settings phigate keeps
// fixed for every session: standard_conforming_strings on and a client
// encoding whose multi-byte characters never contain ASCII bytes (UTF8,
// SQL_ASCII). A statement that would change them is marked Refused, for every
// grant: with backslashes read differently, or a trailing byte of a
// multi-byte character read as a quote, the server would see statements this
// parser does not.
package sqlclass

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/protoorder"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Statement is one classified statement of a query string.
type Statement struct {
	Class policy.Class
	// Kind is the parser's statement kind, e.g. "select_stmt", "copy_stmt".
	Kind string
	// Text is the statement's own text within the query string.
	Text string
	// Copy describes a COPY statement; nil otherwise.
	Copy *Copy
	// Prepare names the prepared statement a PREPARE creates; its class is
	// the class of the prepared query.
	Prepare string
	// Execute names the prepared statement an EXECUTE (or EXPLAIN ANALYZE
	// EXECUTE) runs; Class is then Admin until the caller resolves it with
	// what it knows of that statement.
	Execute string
	// Calls are the functions the statement calls that are not on the
	// allowlist of side-effect-free built-ins, each with the class it needs.
	Calls []policy.Call
	// Builtins and Operators are the allowlisted functions and the
	// operators the statement names without a schema. The server resolves
	// them through search_path, and picks a same-named function or operator
	// of another schema when its argument types fit better: a proxy must
	// check the database for such look-alikes (sqlclass cannot: it is pure).
	Builtins  []string
	Operators []string
	// Refused, when set, says why no grant may run the statement.
	Refused string
	// Effect is what the statement does to the session's named objects
	// (prepared statements, portals, savepoints) once the server completes
	// it; Name is the object's name and Hold marks a WITH HOLD cursor.
	Effect Effect
	Name   string
	Hold   bool
	// Chain marks COMMIT AND CHAIN and ROLLBACK AND CHAIN: a new
	// transaction starts as the old one ends.
	Chain bool
	// Inner is the query a PREPARE prepares or a DECLARE opens a cursor
	// for: what later runs under that name.
	Inner *Statement
	// Risks are what approval rules may gate beyond the class (risk.go);
	// Writes and Reads the relations whose rows the statement writes and
	// reads, as written ("schema.name" or "name"); Rows the most rows it
	// returns (0: no bound phigate can read). A PREPARE and an EXPLAIN
	// without ANALYZE run nothing and have none of them; a PREPARE's Inner
	// has them.
	Risks         []policy.Risk
	Writes, Reads []string
	Rows          int64
	// Template is set when the statement was classified through its
	// template (Cache): its text with the literals as parameters, which is
	// what was parsed and judged. Analyses that, like classification, hold
	// for every value of a parameter may key on it (Key).
	Template string
}

// Key is the text the statement was judged by: its Template when it has
// one, else its Text.
func (s *Statement) Key() string {
	if s.Template != "" {
		return s.Template
	}
	return s.Text
}

// Action is the statement as policy judges it: its class, the calls inside
// it that need a class of their own, why no grant may run it, and what
// approval rules judge (risks, relations, row bound).
func (s *Statement) Action() policy.Action {
	return policy.Action{Class: s.Class, Calls: s.Calls, Refused: s.Refused,
		Risks: s.Risks, Writes: s.Writes, Reads: s.Reads, Rows: s.Rows}
}

// Actions appends the actions of stmts to dst, for policy.Command.
func Actions(dst []policy.Action, stmts []Statement) []policy.Action {
	for i := range stmts {
		dst = append(dst, stmts[i].Action())
	}
	return dst
}

// Effect is a statement's effect on the session's named server objects.
type Effect uint8

const (
	EffectNone          Effect = iota
	EffectPrepare              // PREPARE Name: a prepared statement
	EffectDeallocate           // DEALLOCATE Name
	EffectDeallocateAll        // DEALLOCATE ALL
	EffectDiscardAll           // DISCARD ALL: every prepared statement and portal
	EffectDeclare              // DECLARE Name CURSOR: a portal (Hold: WITH HOLD)
	EffectClose                // CLOSE Name
	EffectCloseAll             // CLOSE ALL
	EffectTxEnd                // COMMIT, END, PREPARE TRANSACTION (with or without AND CHAIN): a rollback if the transaction failed
	EffectRollback             // ROLLBACK, ABORT (with or without AND CHAIN)
	EffectSavepoint            // SAVEPOINT Name
	EffectRelease              // RELEASE Name
	EffectRollbackTo           // ROLLBACK TO Name
	EffectBegin                // BEGIN, START TRANSACTION: a transaction block
)

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

// ErrSyntax is matched (errors.Is) by every *SyntaxError.
var ErrSyntax = errors.New("syntax error")

// SyntaxError is a statement PostgreSQL's parser rejects, reported as the
// server would: its message, and the position (in characters, from 1; 0 when
// unknown) where the parser stopped.
type SyntaxError struct {
	Message  string
	Position int
}

func (e *SyntaxError) Error() string        { return e.Message }
func (e *SyntaxError) Is(target error) bool { return target == ErrSyntax }

// ErrInvalidUTF8 is returned for query text that is not valid UTF-8: the
// server would refuse it (22021), and the recording could not hold it
// verbatim.
var ErrInvalidUTF8 = errors.New(`invalid byte sequence for encoding "UTF8"`)

// Classify parses sql and classifies each statement in order. An empty query
// yields no statements.
func Classify(sql string) ([]Statement, error) {
	stmts, _, err := classifyTree(sql)
	return stmts, err
}

// classifyTree is Classify, also returning the parse tree.
func classifyTree(sql string) ([]Statement, *pg_query.ParseResult, error) {
	if !utf8.ValidString(sql) {
		return nil, nil, ErrInvalidUTF8
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		se := &SyntaxError{Message: strings.TrimPrefix(err.Error(), "error: ")}
		var pe *parser.Error
		if errors.As(err, &pe) {
			se.Message, se.Position = pe.Message, pe.Cursorpos
		}
		return nil, nil, se
	}
	out := make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		sc := scan(raw.GetStmt())
		st := classify(tree.GetVersion(), raw.GetStmt(), sc.dml)
		st.Text = stmtText(sql, raw)
		st.Calls, st.Builtins, st.Operators = sc.calls, sc.builtins, sc.operators
		assess(&st, raw.GetStmt(), &sc.risk, len(sc.calls) > 0)
		if st.Inner != nil {
			st.Inner.Text, st.Inner.Calls, st.Inner.Builtins, st.Inner.Operators = st.Text, st.Calls, st.Builtins, st.Operators
		}
		out = append(out, st)
	}
	return out, tree, nil
}

// stmtText cuts one statement out of the query string (a length of zero
// means "to the end").
func stmtText(sql string, raw *pg_query.RawStmt) string {
	start, n := int(raw.GetStmtLocation()), int(raw.GetStmtLen())
	if start < 0 || start > len(sql) {
		return sql
	}
	if n <= 0 || start+n > len(sql) {
		return strings.TrimSpace(sql[start:])
	}
	return strings.TrimSpace(sql[start : start+n])
}

// scanned is what one walk over a statement finds.
type scanned struct {
	calls     []policy.Call
	builtins  []string
	operators []string
	// dml: a data-modifying statement or a row lock appears somewhere
	// (without one, no SELECT in the statement can write).
	dml bool
	// risk is what the walk found for approval rules (risk.go).
	risk riskScan
}

// scan walks a statement once: the function calls (and explicitly
// qualified operators) that are not on the allowlist, with the class each
// needs; the unqualified allowlisted calls and operators; whether
// anything in it writes; and what approval rules judge (riskScan).
func scan(n *pg_query.Node) scanned {
	var sc scanned
	addCall := func(c policy.Call) {
		if !slices.Contains(sc.calls, c) {
			sc.calls = append(sc.calls, c)
		}
	}
	op := func(names []*pg_query.Node) {
		if len(names) == 0 {
			return
		}
		schema, name, ok := qualifiedName(names)
		switch {
		case !ok || (schema != "" && schema != "pg_catalog"):
			// OPERATOR(schema.op) reaches a function chosen by whoever
			// made the operator.
			addCall(policy.Call{Name: "OPERATOR(" + joinName(schema, name) + ")", Class: policy.Admin})
		case schema == "" && !slices.Contains(sc.operators, name):
			sc.operators = append(sc.operators, name)
		}
	}
	walk(n.ProtoReflect(), func(m protoreflect.Message) bool {
		v := m.Interface()
		sc.risk.visit(v)
		switch x := v.(type) {
		case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
			sc.dml = true
		case *pg_query.SelectStmt:
			sc.dml = sc.dml || len(x.GetLockingClause()) > 0
		case *pg_query.FuncCall:
			schema, name, ok := qualifiedName(x.GetFuncname())
			if !ok {
				addCall(policy.Call{Name: "?", Class: policy.Admin})
				break
			}
			if cl := FunctionClass(schema, name); cl != "" {
				addCall(policy.Call{Name: joinName(schema, name), Class: cl})
			} else if schema == "" && !slices.Contains(sc.builtins, name) {
				sc.builtins = append(sc.builtins, name)
			}
		case *pg_query.A_Expr:
			switch x.GetKind() {
			case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
				pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
				// Expanded into comparisons, resolved by name.
				for _, o := range []string{"<=", ">=", "<", ">"} {
					op([]*pg_query.Node{pg_query.MakeStrNode(o)})
				}
			default:
				op(x.GetName())
			}
		case *pg_query.CaseExpr:
			if x.GetArg() != nil { // CASE x WHEN y compares with =
				op([]*pg_query.Node{pg_query.MakeStrNode("=")})
			}
		case *pg_query.JoinExpr:
			if x.GetIsNatural() || len(x.GetUsingClause()) > 0 {
				op([]*pg_query.Node{pg_query.MakeStrNode("=")})
			}
		case *pg_query.SubLink:
			op(x.GetOperName())
		case *pg_query.SortBy:
			op(x.GetUseOp())
		case *pg_query.RangeTableSample:
			// TABLESAMPLE methods are functions too; bernoulli and system
			// are the built-in ones.
			schema, name, ok := qualifiedName(x.GetMethod())
			if !ok || (schema != "" && schema != "pg_catalog") || (name != "bernoulli" && name != "system") {
				addCall(policy.Call{Name: "TABLESAMPLE " + joinName(schema, name), Class: policy.Admin})
			}
		}
		return true
	})
	return sc
}

// qualifiedName splits a parser name list into schema and name. A list of
// three (catalog.schema.name) or anything unexpected is not ok.
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

// classify classes one statement; dml is false when scan found no
// data-modifying statement or row lock anywhere in it.
func classify(version int32, n *pg_query.Node, dml bool) Statement {
	kind := nodeKind(n)
	st := Statement{Kind: kind, Class: policy.Admin}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		st.Class = selectClass(x.SelectStmt, dml)
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt,
		*pg_query.Node_MergeStmt, *pg_query.Node_TruncateStmt, *pg_query.Node_LockStmt:
		st.Class = policy.Write
	case *pg_query.Node_ExplainStmt:
		st.Class = policy.Read
		if explainRuns(x.ExplainStmt) {
			inner := classify(version, x.ExplainStmt.GetQuery(), dml)
			st.Class, st.Execute, st.Refused = inner.Class, inner.Execute, inner.Refused
		}
	case *pg_query.Node_CopyStmt:
		st.Copy, st.Class = copyInfo(version, x.CopyStmt)
		if q := x.CopyStmt.GetQuery(); q != nil && st.Class == policy.Export {
			// COPY (DELETE ... RETURNING *) TO STDOUT writes.
			if inner := classify(version, q, dml); inner.Class != policy.Read {
				st.Class = inner.Class
			}
		}
	case *pg_query.Node_TransactionStmt:
		st.Class = policy.Tx
		switch x.TransactionStmt.GetKind() {
		case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE, pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
			pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			// Two-phase commit outlives the session and acts on
			// transactions by name, any session's.
			st.Class = policy.Admin
		}
		if readWriteOption(x.TransactionStmt.GetOptions()) {
			st.Class = policy.Write
		}
		st.Effect, st.Name = txEffect(x.TransactionStmt)
		st.Chain = x.TransactionStmt.GetChain()
	case *pg_query.Node_VariableSetStmt:
		st.Class, st.Refused = setClass(x.VariableSetStmt)
	case *pg_query.Node_ConstraintsSetStmt:
		st.Class = policy.Tx
	case *pg_query.Node_VariableShowStmt:
		st.Class = policy.Read
	case *pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt, *pg_query.Node_FetchStmt:
		st.Class = policy.Session
	case *pg_query.Node_NotifyStmt:
		// A message to other sessions: the same as pg_notify, a write.
		st.Class = policy.Write
	case *pg_query.Node_DiscardStmt:
		st.Class = policy.Session
		if x.DiscardStmt.GetTarget() == pg_query.DiscardMode_DISCARD_ALL {
			st.Effect = EffectDiscardAll
		}
	case *pg_query.Node_DeallocateStmt:
		st.Class, st.Effect, st.Name = policy.Session, EffectDeallocate, x.DeallocateStmt.GetName()
		if x.DeallocateStmt.GetIsall() || st.Name == "" {
			st.Effect = EffectDeallocateAll
		}
	case *pg_query.Node_ClosePortalStmt:
		st.Class, st.Effect, st.Name = policy.Session, EffectClose, x.ClosePortalStmt.GetPortalname()
		if st.Name == "" {
			st.Effect = EffectCloseAll
		}
	case *pg_query.Node_DeclareCursorStmt:
		inner := classify(version, x.DeclareCursorStmt.GetQuery(), dml)
		st.Class, st.Refused, st.Inner = inner.Class, inner.Refused, &inner
		st.Effect, st.Name = EffectDeclare, x.DeclareCursorStmt.GetPortalname()
		st.Hold = x.DeclareCursorStmt.GetOptions()&cursorOptHold != 0
	case *pg_query.Node_PrepareStmt:
		inner := classify(version, x.PrepareStmt.GetQuery(), dml)
		st.Class, st.Refused, st.Inner = inner.Class, inner.Refused, &inner
		st.Prepare, st.Effect, st.Name = x.PrepareStmt.GetName(), EffectPrepare, x.PrepareStmt.GetName()
	case *pg_query.Node_ExecuteStmt:
		st.Execute = x.ExecuteStmt.GetName()
	case *pg_query.Node_CreateTableAsStmt:
		st.Class = policy.DDL
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
		st.Class = policy.Admin
	default:
		if strings.HasPrefix(kind, "create_") || strings.HasPrefix(kind, "alter_") ||
			strings.HasPrefix(kind, "drop_") || kind == "comment_stmt" || kind == "rename_stmt" ||
			kind == "index_stmt" || kind == "view_stmt" || kind == "rule_stmt" || kind == "define_stmt" ||
			kind == "composite_type_stmt" || kind == "refresh_mat_view_stmt" {
			st.Class = policy.DDL
		}
	}
	return st
}

// selectClass is Read unless the SELECT writes: INTO, row locks, or a
// data-modifying statement anywhere inside (a CTE, a subquery).
func selectClass(s *pg_query.SelectStmt, dml bool) policy.Class {
	if s.GetIntoClause() != nil {
		return policy.DDL
	}
	if !dml {
		return policy.Read
	}
	class := policy.Read
	if len(s.GetLockingClause()) > 0 {
		class = policy.Write
	}
	walk(s.ProtoReflect(), func(m protoreflect.Message) bool {
		switch m.Interface().(type) {
		case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
			class = policy.Write
			return false
		case *pg_query.SelectStmt:
			if len(m.Interface().(*pg_query.SelectStmt).GetLockingClause()) > 0 {
				class = policy.Write
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
	protoorder.Range(m, func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
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

// cursorOptHold is CURSOR_OPT_HOLD from PostgreSQL's parsenodes.h.
const cursorOptHold = 0x0020

// explainRuns reports whether EXPLAIN runs its statement, decided as
// PostgreSQL decides it: the last ANALYZE option wins, and its value is a
// boolean in any spelling PostgreSQL accepts. A value PostgreSQL would
// reject counts as running: the server then refuses the whole statement.
func explainRuns(e *pg_query.ExplainStmt) bool {
	runs := false
	for _, o := range e.GetOptions() {
		if d := o.GetDefElem(); d != nil && d.GetDefname() == "analyze" {
			v, ok := defBool(d)
			runs = !ok || v
		}
	}
	return runs
}

func txEffect(t *pg_query.TransactionStmt) (Effect, string) {
	switch t.GetKind() {
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT, pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		return EffectTxEnd, ""
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		return EffectRollback, ""
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return EffectSavepoint, t.GetSavepointName()
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		return EffectRelease, t.GetSavepointName()
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return EffectRollbackTo, t.GetSavepointName()
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		return EffectBegin, ""
	}
	return EffectNone, ""
}

// readWriteOption reports BEGIN/START/SET TRANSACTION ... READ WRITE (or a
// transaction_read_only option PostgreSQL would read as false).
func readWriteOption(opts []*pg_query.Node) bool {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && d.GetDefname() == "transaction_read_only" {
			if v, ok := defBool(d); !ok || !v {
				return true
			}
		}
	}
	return false
}

// guardedSettings would widen what a session may do or change whose
// identity it acts as: changing them is an admin act.
var guardedSettings = map[string]bool{
	"role":                     true,
	"session_authorization":    true,
	"session_replication_role": true,
	"row_security":             true,
}

// Why phigate refuses changes to the settings its parser depends on.
const (
	refuseConformingStrings = "phigate requires standard_conforming_strings = on: with it off the server reads backslashes in string literals differently from phigate's parser"
	refuseClientEncoding    = "phigate requires client_encoding UTF8 (or SQL_ASCII): in other client encodings a byte of a multi-byte character can read as a quote or a backslash"
)

func setClass(s *pg_query.VariableSetStmt) (policy.Class, string) {
	name := strings.ToLower(s.GetName())
	switch s.GetKind() {
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION ...
		if readWriteOption(s.GetArgs()) {
			return policy.Write, ""
		}
		return policy.Session, ""
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		// Back to the session's start values, which phigate checked.
		return policy.Session, ""
	case pg_query.VariableSetKind_VAR_SET_VALUE:
	case pg_query.VariableSetKind_VAR_SET_CURRENT:
		// SET x FROM CURRENT copies the current value: harmless except
		// where it would take a value phigate never saw.
		return policy.Session, ""
	default: // SET x TO DEFAULT, RESET x: back to the session's start value
		// transaction_read_only has no start value of the session's: its
		// default is read-write, whatever default_transaction_read_only says.
		if guardedSettings[name] || name == "transaction_read_only" {
			return policy.Admin, ""
		}
		return policy.Session, ""
	}
	args := s.GetArgs()
	switch name {
	case "standard_conforming_strings":
		if v, ok := settingBool(args); !ok || !v {
			return policy.Session, refuseConformingStrings
		}
	case "client_encoding":
		if len(args) != 1 || !SafeClientEncoding(constString(args[0])) {
			return policy.Session, refuseClientEncoding
		}
	case "default_transaction_read_only", "transaction_read_only":
		// Read-only is always allowed; off widens what a session may do.
		if v, ok := settingBool(args); !ok || !v {
			return policy.Admin, ""
		}
	case "local_preload_libraries":
		// Loads code into the session's server process.
		return policy.Admin, ""
	case "search_path":
		// Built-in functions are judged by name: they must resolve to
		// pg_catalog, which is searched first unless the path names it later.
		if !pgCatalogFirst(args) {
			return policy.Admin, ""
		}
	}
	if guardedSettings[name] {
		return policy.Admin, ""
	}
	return policy.Session, ""
}

// SafeClientEncoding reports whether a client_encoding value is one phigate
// parses exactly as the server does: UTF8 or SQL_ASCII, in any spelling
// PostgreSQL accepts (case and punctuation are ignored, "unicode" is UTF8).
func SafeClientEncoding(v string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(v) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	switch b.String() {
	case "utf8", "unicode", "sqlascii":
		return true
	}
	return false
}

// settingBool reads a boolean setting's value as PostgreSQL's parse_bool does.
func settingBool(args []*pg_query.Node) (v, ok bool) {
	if len(args) != 1 {
		return false, false
	}
	if c := args[0].GetAConst(); c != nil && c.GetIval() != nil {
		return intBool(c.GetIval().GetIval())
	}
	return ParseBool(constString(args[0]))
}

// intBool is PostgreSQL's reading of an integer as a boolean: 0 or 1 only.
func intBool(i int32) (v, ok bool) {
	switch i {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

// pgCatalogFirst reports whether a search_path value leaves pg_catalog
// searched first: not named, or named first.
func pgCatalogFirst(args []*pg_query.Node) bool {
	var parts []string
	for _, a := range args {
		parts = append(parts, constString(a))
	}
	for i, schema := range splitIdentifiers(strings.Join(parts, ",")) {
		if schema == "pg_catalog" {
			return i == 0
		}
	}
	return true
}

// splitIdentifiers splits a list setting the way PostgreSQL's
// SplitIdentifierString does: commas between items, surrounding whitespace
// dropped, double-quoted items kept as written ("" is a quote), others
// folded to lower case.
func splitIdentifiers(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var item strings.Builder
		if i < len(s) && s[i] == '"' {
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						item.WriteByte('"')
						i++
						continue
					}
					i++
					break
				}
				item.WriteByte(s[i])
			}
		} else {
			for i < len(s) && s[i] != ',' && !isSpace(s[i]) {
				b := s[i]
				if b >= 'A' && b <= 'Z' { // as downcase_identifier: ASCII only
					b += 'a' - 'A'
				}
				item.WriteByte(b)
				i++
			}
		}
		out = append(out, item.String())
		for i < len(s) && s[i] != ',' {
			i++
		}
		i++ // the comma
	}
	return out
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// constString renders a SET argument as PostgreSQL's flatten_set_variable_args
// would for one item: a string or identifier as written, numbers as digits.
func constString(n *pg_query.Node) string {
	if c := n.GetAConst(); c != nil {
		switch {
		case c.GetSval() != nil:
			return c.GetSval().GetSval()
		case c.GetIval() != nil:
			return fmt.Sprint(c.GetIval().GetIval())
		case c.GetFval() != nil:
			return c.GetFval().GetFval()
		case c.GetBoolval() != nil:
			return fmt.Sprint(c.GetBoolval().GetBoolval())
		}
	}
	if s := n.GetString_(); s != nil {
		return s.GetSval()
	}
	return "\x00" // not a constant: matches no safe value
}

// ParseBool is PostgreSQL's parse_bool: true, false, yes, no (and their
// unique prefixes), on, off, 1, 0, in any case.
func ParseBool(s string) (v, ok bool) {
	if s == "" {
		return false, false
	}
	prefixOf := func(word string, min int) bool {
		return len(s) >= min && len(s) <= len(word) && strings.EqualFold(s, word[:len(s)])
	}
	switch s[0] {
	case 't', 'T':
		return true, prefixOf("true", 1)
	case 'f', 'F':
		return false, prefixOf("false", 1)
	case 'y', 'Y':
		return true, prefixOf("yes", 1)
	case 'n', 'N':
		return false, prefixOf("no", 1)
	case 'o', 'O':
		if prefixOf("on", 2) {
			return true, true
		}
		return false, prefixOf("off", 2)
	case '1':
		return true, len(s) == 1
	case '0':
		return false, len(s) == 1
	}
	return false, false
}

// defBool reads a DefElem's value as PostgreSQL's defGetBoolean does: no
// value is true, integers 0 and 1, else parse_bool of the text.
func defBool(d *pg_query.DefElem) (v, ok bool) {
	arg := d.GetArg()
	if arg == nil {
		return true, true
	}
	if i := arg.GetInteger(); i != nil {
		return intBool(i.GetIval())
	}
	if c := arg.GetAConst(); c != nil && c.GetIval() != nil {
		return intBool(c.GetIval().GetIval())
	}
	if b := arg.GetBoolean(); b != nil {
		return b.GetBoolval(), true
	}
	return ParseBool(defString(d))
}

func copyInfo(version int32, c *pg_query.CopyStmt) (*Copy, policy.Class) {
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
		return info, policy.Admin // server-side files and programs
	case info.From:
		return info, policy.Import
	default:
		return info, policy.Export
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
// ORMs, pgbench), by their exact text and by their template (template.go).
// It is safe for concurrent use.
type Cache struct {
	exact *ring[cached]
	tmpl  *ring[*template] // nil: a template that cannot stand for its texts
}

type cached struct {
	stmts []Statement
	err   error
}

// maxCachedSQL bounds the size of one cached text, so that a few huge
// statements cannot pin memory.
const maxCachedSQL = 8 << 10

// NewCache holds up to n query texts and n templates (n <= 0 means 4096).
func NewCache(n int) *Cache {
	if n <= 0 {
		n = 4096
	}
	return &Cache{exact: newRing[cached](n), tmpl: newRing[*template](n)}
}

// Classify is Classify with memoisation. The returned slice is shared:
// callers must not modify it.
func (c *Cache) Classify(sql string) ([]Statement, error) {
	stmts, _, err := c.ClassifyTree(sql)
	return stmts, err
}

// ClassifyTree is Classify, also returning the parse tree when it parsed sql
// now (nil when the answer came from the cache): its i-th statement is the
// i-th Statement, for a caller with more to read from it than classes
// (package lineage), so that it does not parse the same text again. Trees
// are not cached: they are many times the size of their text.
//
// An answer from the exact text is always the one a full parse of the same
// bytes gives (the lexer settings it depends on are fixed for every
// session, see the package doc). An answer from the template has Template
// set and is the template's: at least as strict as the text's own (see
// template.go); a caller that would refuse or hold the statement on it asks
// ClassifyTree (the package function) for the text's own answer.
func (c *Cache) ClassifyTree(sql string) ([]Statement, *pg_query.ParseResult, error) {
	if sql == "" || len(sql) > maxCachedSQL {
		return classifyTree(sql)
	}
	if e, ok := c.exact.get(sql); ok {
		return e.stmts, nil, e.err
	}
	if !utf8.ValidString(sql) {
		return classifyTree(sql)
	}
	key, err := pg_query.Normalize(sql)
	if err != nil {
		key = ""
	}
	if key != "" {
		if stmts, ok := c.applyTemplate(key, sql); ok {
			return stmts, nil, nil
		}
	}
	stmts, tree, err := classifyTree(sql)
	if key != "" && err == nil {
		c.learnTemplate(key, sql, stmts, tree)
	}
	c.exact.put(sql, cached{stmts, err})
	return stmts, tree, err
}

// ClassifyTree is Classify, also returning the parse tree (see
// Cache.ClassifyTree); it never answers from a cache.
func ClassifyTree(sql string) ([]Statement, *pg_query.ParseResult, error) {
	return classifyTree(sql)
}

// ring is a map of at most max entries that forgets the oldest first. It
// is safe for concurrent use.
type ring[V any] struct {
	mu      sync.Mutex
	entries map[string]V
	order   []string // insertion ring for eviction
	next    int
}

func newRing[V any](n int) *ring[V] {
	return &ring[V]{entries: make(map[string]V, n), order: make([]string, n)}
}

func (r *ring[V]) get(key string) (V, bool) {
	r.mu.Lock()
	v, ok := r.entries[key]
	r.mu.Unlock()
	return v, ok
}

// put adds key unless it is there already.
func (r *ring[V]) put(key string, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[key]; ok {
		return
	}
	if old := r.order[r.next]; old != "" {
		delete(r.entries, old)
	}
	r.order[r.next] = key
	r.next = (r.next + 1) % len(r.order)
	r.entries[key] = v
}
