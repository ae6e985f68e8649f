package lineage

import (
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/phigate/phigate/session/sqlclass"
)

// opaqueBuiltins are built-in functions whose value does not derive from
// their arguments: they run SQL given as text, read a relation, cursor,
// schema or database named by an argument, or return stored data that no
// column holds. A call to one is opaque whatever its arguments. The list is
// matched for unqualified and pg_catalog-qualified names.
var opaqueBuiltins = map[string]string{
	// SQL given as text.
	"query_to_xml":               "runs the SQL text it is given",
	"query_to_xml_and_xmlschema": "runs the SQL text it is given",
	"query_to_xmlschema":         "runs the SQL text it is given",
	"ts_stat":                    "runs the SQL text it is given",
	"ts_rewrite":                 "runs the SQL text it is given (two-argument form)",
	// A relation, cursor, schema or database by name.
	"table_to_xml":                  "reads the relation it is given by name",
	"table_to_xml_and_xmlschema":    "reads the relation it is given by name",
	"table_to_xmlschema":            "reads the relation it is given by name",
	"cursor_to_xml":                 "reads the cursor it is given by name",
	"cursor_to_xmlschema":           "reads the cursor it is given by name",
	"schema_to_xml":                 "reads every table of the schema it is given",
	"schema_to_xml_and_xmlschema":   "reads every table of the schema it is given",
	"schema_to_xmlschema":           "reads every table of the schema it is given",
	"database_to_xml":               "reads every table of the database",
	"database_to_xml_and_xmlschema": "reads every table of the database",
	"database_to_xmlschema":         "reads every table of the database",
	// Stored data outside any column a masking rule can name.
	"lo_get":                              "returns a large object's contents",
	"loread":                              "returns a large object's contents",
	"pg_read_file":                        "returns a server file's contents (table files included)",
	"pg_read_binary_file":                 "returns a server file's contents (table files included)",
	"pg_logical_slot_get_changes":         "returns decoded row changes of any table",
	"pg_logical_slot_peek_changes":        "returns decoded row changes of any table",
	"pg_logical_slot_get_binary_changes":  "returns decoded row changes of any table",
	"pg_logical_slot_peek_binary_changes": "returns decoded row changes of any table",
	"pg_stat_get_activity":                "returns other sessions' query text, literals included",
	"pg_stat_get_backend_activity":        "returns another session's query text, literals included",
}

// funcInfo is what lineage knows of a function name: its overloads, taken
// together (the parse tree does not say which one a call picks).
type funcInfo struct {
	builtin bool // every overload is built-in
	// outCols are the result columns the overloads agree on; conflict is
	// set when they do not agree.
	outCols  []string
	conflict bool
	// bodies are the outputs of the last statement of each SQL overload;
	// effects is set when one of them writes or calls a function with an
	// effect (its arguments may be what it passes on).
	bodies  [][]column
	effects bool
	err     error
}

// hasEffect reports whether calling function f, a built-in, can have an
// effect beyond its result through which an argument's value could be read
// back (a notification, a setting, a sequence, a lock, a large object):
// what in pg_catalog needs a class of its own (sqlclass.FunctionClass), and
// setseed, which readers may call but whose seed random() gives back.
// Functions the catalog trusts as built-ins outside pg_catalog are
// immutable or stable.
func hasEffect(f *Function) bool {
	return f.Schema == "pg_catalog" && (sqlclass.FunctionClass(f.Schema, f.Name) != "" || f.Name == "setseed")
}

// funcCall is the lineage of a function call in an expression.
func (a *analyzer) funcCall(s *scope, fc *pg_query.FuncCall) (lin, error) {
	schema, name, ok := qualifiedName(fc.GetFuncname())
	if !ok {
		return lin{}, opaquef("unsupported: function name %s", funcCallName(fc))
	}
	var err error
	if schema, err = funcSchema(s, schema, name); err != nil {
		return lin{}, err
	}
	args, err := a.funcArgs(s, fc)
	if err != nil {
		return lin{}, err
	}
	return a.call(schema, name, args)
}

// funcArgs is the union of a call's arguments. An aggregate's FILTER and
// ORDER BY and a window's OVER only choose and order rows, but are checked;
// the ORDER BY of an ordered-set aggregate (mode() WITHIN GROUP (ORDER BY
// ssn)) is its input and counts.
func (a *analyzer) funcArgs(s *scope, fc *pg_query.FuncCall) (lin, error) {
	args, err := a.exprs(s, fc.GetArgs()...)
	if err != nil {
		return lin{}, err
	}
	for _, o := range fc.GetAggOrder() {
		l, err := a.expr(s, o)
		if err != nil {
			return lin{}, err
		}
		if fc.GetAggWithinGroup() {
			args = union(args, l)
		}
	}
	if err := a.check(s, fc.GetAggFilter()); err != nil {
		return lin{}, err
	}
	return args, a.checkWindow(s, fc.GetOver())
}

// call is the value of calling a function with arguments of lineage args:
// derived from the arguments and, for a SQL function, from its body's
// outputs. count(...) tells only how many values are not null, like a
// WHERE clause, and derives from nothing.
func (a *analyzer) call(schema, name string, args lin) (lin, error) {
	fi, err := a.resolveFunc(schema, name)
	if err != nil {
		return lin{}, err
	}
	if fi.builtin && name == "count" && (schema == "" || schema == "pg_catalog") {
		return lin{}, nil
	}
	if fi.effects {
		a.escape(args)
	}
	out := derived(args)
	for _, b := range fi.bodies {
		out = union(out, wholeRow(b))
	}
	return out, nil
}

// resolveFunc looks a function name up once per Analyze call. Every
// overload must be followed: a built-in one derives from its arguments, a
// SQL one from its body too, any other language is opaque.
func (a *analyzer) resolveFunc(schema, name string) (*funcInfo, error) {
	key := [2]string{schema, name}
	if fi, ok := a.funcs[key]; ok {
		return fi, fi.err
	}
	fi, err := a.loadFunc(schema, name)
	if err != nil {
		if _, ok := err.(*opaqueError); !ok {
			return nil, err // the catalog's: not remembered
		}
		fi = &funcInfo{err: err}
	}
	if a.funcs == nil {
		a.funcs = map[[2]string]*funcInfo{}
	}
	a.funcs[key] = fi
	return fi, fi.err
}

func (a *analyzer) loadFunc(schema, name string) (*funcInfo, error) {
	written := joinName(schema, name)
	if why, ok := opaqueBuiltins[name]; ok && (schema == "" || schema == "pg_catalog") {
		return nil, opaquef("function %s %s", written, why)
	}
	fns, err := a.cat.Functions(schema, name)
	if err != nil {
		return nil, fmt.Errorf("%w: function %s: %w", ErrCatalog, written, err)
	}
	if len(fns) == 0 {
		return nil, undefinedf(undefinedFunction, "function %s does not exist or is not visible", written)
	}
	fi := &funcInfo{builtin: true, outCols: fns[0].OutColumns}
	for _, f := range fns {
		if f == nil {
			return nil, opaquef("function %s: the catalog gave an empty overload", written)
		}
		if !slices.Equal(f.OutColumns, fi.outCols) {
			fi.conflict = true
		}
		if f.Builtin {
			fi.effects = fi.effects || hasEffect(f)
			continue
		}
		fi.builtin = false
		if f.Language != "sql" {
			lang := f.Language
			if lang == "" {
				lang = "an unknown language"
			}
			return nil, opaquef("function %s.%s is written in %s", f.Schema, f.Name, lang)
		}
		body, effects, err := a.sqlBody(f)
		if err != nil {
			return nil, err
		}
		fi.bodies = append(fi.bodies, body)
		fi.effects = fi.effects || effects
	}
	return fi, nil
}

// sqlBody analyzes a SQL function's body once per Analyze call and returns
// the outputs of its last statement (nil when it returns no rows).
//
// The body is analyzed with its parameters bound to no lineage at all, and
// every call adds the lineage of all its arguments to the result instead:
// a parameter's contribution to the body's outputs is a subset of its
// argument's, so the union is the same, and the body is analyzed once
// however many calls there are.
func (a *analyzer) sqlBody(f *Function) (cols []column, effects bool, err error) {
	if e, ok := a.bodies[f]; ok {
		return e.cols, e.effects, e.err
	}
	qname := f.Schema + "." + f.Name
	if err := a.enter("function "+qname+"\x00"+f.Definition, "function "+qname); err != nil {
		return nil, false, err
	}
	before := a.effects
	cols, err = a.analyzeBody(f)
	effects = a.effects > before
	a.leave()
	if err != nil {
		if _, ok := err.(*opaqueError); !ok {
			return nil, false, err
		}
		err = within(err, "function "+qname)
	}
	if a.bodies == nil {
		a.bodies = map[*Function]bodyEntry{}
	}
	a.bodies[f] = bodyEntry{cols: cols, effects: effects, err: err}
	return cols, effects, err
}

func (a *analyzer) analyzeBody(f *Function) ([]column, error) {
	tree, err := pg_query.Parse(f.Definition)
	if err != nil || len(tree.GetStmts()) != 1 {
		return nil, opaquef("definition is not one statement")
	}
	cf := tree.GetStmts()[0].GetStmt().GetCreateFunctionStmt()
	if cf == nil {
		return nil, opaquef("definition is not CREATE FUNCTION")
	}
	fs := &fnScope{name: f.Name, params: map[string]bool{}}
	fs.ownPath, fs.catalogFirst = ownSearchPath(cf.GetOptions())
	if _, name, ok := qualifiedName(cf.GetFuncname()); ok {
		fs.name = name
	}
	for _, p := range cf.GetParameters() {
		fp := p.GetFunctionParameter()
		if fp == nil {
			return nil, unsupported(p)
		}
		switch fp.GetMode() {
		case pg_query.FunctionParameterMode_FUNC_PARAM_OUT, pg_query.FunctionParameterMode_FUNC_PARAM_TABLE:
		default:
			if fp.GetName() != "" {
				fs.params[fp.GetName()] = true
			}
		}
	}
	var stmts []*pg_query.Node
	if b := cf.GetSqlBody(); b != nil {
		switch {
		case b.GetReturnStmt() != nil:
			stmts = []*pg_query.Node{b}
		case b.GetList() != nil: // BEGIN ATOMIC: a list holding the list of statements
			for _, item := range b.GetList().GetItems() {
				if l := item.GetList(); l != nil {
					stmts = append(stmts, l.GetItems()...)
				} else if item.GetNode() != nil {
					stmts = append(stmts, item)
				}
			}
		default:
			return nil, unsupported(b)
		}
	} else {
		text, ok := bodyText(cf.GetOptions())
		if !ok {
			return nil, opaquef("no AS body")
		}
		t, err := pg_query.Parse(text)
		if err != nil {
			return nil, opaquef("body does not parse")
		}
		for _, r := range t.GetStmts() {
			stmts = append(stmts, r.GetStmt())
		}
	}
	root := &scope{fn: fs}
	var last []column
	for _, st := range stmts {
		if rs := st.GetReturnStmt(); rs != nil {
			l, err := a.value(root, rs.GetReturnval())
			if err != nil {
				return nil, err
			}
			last = []column{{name: fs.name, lin: l}}
			continue
		}
		cols, rows, err := a.query(root, st)
		if err != nil {
			return nil, err
		}
		last = nil
		if rows {
			last = cols
		}
	}
	for _, c := range last {
		if c.lin.bottom {
			return nil, opaquef("column %q has no non-recursive source", c.name)
		}
	}
	return last, nil
}

// ownSearchPath reports whether CREATE FUNCTION's options set search_path
// (pg_get_functiondef prints SET search_path TO 'a', 'b'), and then whether
// pg_catalog is searched first, as it is when the path does not list it.
func ownSearchPath(options []*pg_query.Node) (set, catalogFirst bool) {
	for _, o := range options {
		d := o.GetDefElem()
		vs := d.GetArg().GetVariableSetStmt()
		if d == nil || d.GetDefname() != "set" || vs == nil || vs.GetName() != "search_path" {
			continue
		}
		var path []string
		for _, a := range vs.GetArgs() {
			for _, p := range strings.Split(a.GetAConst().GetSval().GetSval(), ",") {
				if p = strings.Trim(strings.TrimSpace(p), `"`); p != "" {
					path = append(path, p)
				}
			}
		}
		i := slices.Index(path, "pg_catalog")
		return true, i <= 0
	}
	return false, true
}

// bodyText finds the AS '...' body among CREATE FUNCTION's options; a C
// function's AS 'file', 'symbol' is not one.
func bodyText(options []*pg_query.Node) (string, bool) {
	for _, o := range options {
		d := o.GetDefElem()
		if d == nil || d.GetDefname() != "as" {
			continue
		}
		items := d.GetArg().GetList().GetItems()
		if len(items) != 1 || items[0].GetString_() == nil {
			return "", false
		}
		return items[0].GetString_().GetSval(), true
	}
	return "", false
}
