package lineage

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// scope is one query level's namespace, as PostgreSQL's ParseState holds
// it: the FROM items visible to the level, the CTEs it may name, and a link
// to the enclosing level for correlated references.
//
// Besides real query levels there are two kinds of link in the chain: views
// of a level that show only part of it (the FROM items a LATERAL item or a
// CTE body may see), and sublink boundaries, which collect every reference
// that resolves above them (see collect).
type scope struct {
	parent *scope
	items  []*nsItem
	ctes   []*cte
	// fn is set on the root scope of a SQL function's body.
	fn *fnScope
	// collect, on a sublink boundary, gathers the lineage of every column
	// the subquery references from outside it: EXISTS (SELECT ... WHERE
	// p.ssn LIKE '1%') derives from p.ssn.
	collect *lin
}

// nsItem is a FROM item as the namespace sees it.
type nsItem struct {
	// name is the reference name: the alias, else the relation's, CTE's or
	// function's name; "" when it has none (an unaliased join).
	name string
	// schema is set for an unaliased relation, which schema.table.column
	// can name.
	schema string
	cols   []column
	// relVisible: name can qualify columns and make whole-row references;
	// colsVisible: unqualified column names and * see its columns. An
	// unaliased join shows its own columns while its inputs stay
	// reachable by name only.
	relVisible, colsVisible bool
}

// fnScope is what a SQL function's body may name besides tables: its
// parameters, by name or qualified with the function's name.
type fnScope struct {
	name   string
	params map[string]bool
	// ownPath: the function sets its own search_path, which the catalog
	// (resolving with the session's) cannot follow. Unqualified relations
	// are then opaque, and unqualified functions are pg_catalog's when
	// catalogFirst (pg_catalog not listed, or listed first), else opaque.
	ownPath, catalogFirst bool
}

// funcSchema is the schema to ask the catalog for a function named with
// schema (possibly "") from scope s.
func funcSchema(s *scope, schema, name string) (string, error) {
	fn := s.function()
	if schema != "" || fn == nil || !fn.ownPath {
		return schema, nil
	}
	if !fn.catalogFirst {
		return "", opaquef("unqualified function %s in a function that sets its own search_path", name)
	}
	return "pg_catalog", nil
}

// lateralView is the scope a FROM item of s is analyzed in: the enclosing
// levels, s's CTEs and, for a LATERAL item, the FROM items before it.
func lateralView(s *scope, visible []*nsItem, lateral bool) *scope {
	v := &scope{parent: s.parent, ctes: s.ctes, fn: s.fn}
	if lateral {
		v.items = visible
	}
	return v
}

// noteOuter adds l to the collectors of the sublink boundaries between
// from (where a reference was made) and at (where it resolved).
func noteOuter(from, at *scope, l lin) {
	for x := from; x != nil && x != at; x = x.parent {
		if x.collect != nil {
			*x.collect = union(*x.collect, l)
		}
	}
}

// findColumn looks name up among the columns visible at this level alone.
func (s *scope) findColumn(name string) (lin, bool, error) {
	var found lin
	n := 0
	for _, it := range s.items {
		if !it.colsVisible {
			continue
		}
		for _, c := range it.cols {
			if c.name == name {
				found = c.lin
				n++
			}
		}
	}
	if n > 1 {
		return lin{}, false, opaquef("column reference %q is ambiguous", name)
	}
	return found, n == 1, nil
}

// findItem looks a relation name up at this level alone.
func (s *scope) findItem(schema, name string) (*nsItem, error) {
	var found *nsItem
	for _, it := range s.items {
		if !it.relVisible || it.name != name || (schema != "" && it.schema != schema) {
			continue
		}
		if found != nil {
			return nil, opaquef("table reference %q is ambiguous", name)
		}
		found = it
	}
	return found, nil
}

// lookupItem finds a relation name at the innermost level that has it.
func lookupItem(s *scope, schema, name string) (*nsItem, *scope, error) {
	for x := s; x != nil; x = x.parent {
		it, err := x.findItem(schema, name)
		if err != nil || it != nil {
			return it, x, err
		}
	}
	return nil, nil, nil
}

// column looks a column up in one item.
func (it *nsItem) column(name string) (lin, bool, error) {
	var found lin
	n := 0
	for _, c := range it.cols {
		if c.name == name {
			found = c.lin
			n++
		}
	}
	if n > 1 {
		return lin{}, false, opaquef("column reference %q is ambiguous", name)
	}
	return found, n == 1, nil
}

// function returns the SQL function body s belongs to, if any.
func (s *scope) function() *fnScope {
	for x := s; x != nil; x = x.parent {
		if x.fn != nil {
			return x.fn
		}
	}
	return nil
}

// refFields splits a ColumnRef into its names and whether it ends in *.
func refFields(cr *pg_query.ColumnRef) (names []string, star bool, ok bool) {
	f := cr.GetFields()
	for i, n := range f {
		switch {
		case n.GetString_() != nil:
			names = append(names, n.GetString_().GetSval())
		case n.GetAStar() != nil && i == len(f)-1:
			star = true
		default:
			return nil, false, false
		}
	}
	return names, star, len(names) > 0 || star
}

// columnRef resolves a column reference as PostgreSQL's transformColumnRef
// does. It returns the referenced item when the reference is to a whole row
// (p, p.*), so that callers can expand it.
func (a *analyzer) columnRef(s *scope, cr *pg_query.ColumnRef) (lin, *nsItem, error) {
	l, it, err := a.resolveColumnRef(s, cr)
	if err == nil {
		a.reads = union(a.reads, l)
		if it != nil {
			a.reads = union(a.reads, wholeRow(it.cols))
		}
	}
	return l, it, err
}

func (a *analyzer) resolveColumnRef(s *scope, cr *pg_query.ColumnRef) (lin, *nsItem, error) {
	names, star, ok := refFields(cr)
	if !ok {
		return lin{}, nil, opaquef("unsupported: column reference form")
	}
	written := strings.Join(names, ".")
	if star {
		// t.*, s.t.*, c.s.t.*; a bare * is only meaningful in a target
		// list (expanded there) or count(*) (not a ColumnRef).
		var schema, rel string
		switch len(names) {
		case 1:
			rel = names[0]
		case 2:
			schema, rel = names[0], names[1]
		case 3:
			schema, rel = names[1], names[2]
		default:
			return lin{}, nil, opaquef("unsupported: * in this position")
		}
		it, at, err := lookupItem(s, schema, rel)
		if err != nil {
			return lin{}, nil, err
		}
		if it == nil {
			return lin{}, nil, opaquef("missing FROM-clause entry for %q", written)
		}
		l := wholeRow(it.cols)
		noteOuter(s, at, l)
		return l, it, nil
	}
	switch len(names) {
	case 1:
		name := names[0]
		// A column at any level first, then a relation's whole row, then
		// a function parameter: PostgreSQL's order.
		for x := s; x != nil; x = x.parent {
			l, found, err := x.findColumn(name)
			if err != nil {
				return lin{}, nil, err
			}
			if found {
				noteOuter(s, x, l)
				return l, nil, nil
			}
		}
		it, at, err := lookupItem(s, "", name)
		if err != nil {
			return lin{}, nil, err
		}
		if it != nil {
			l := wholeRow(it.cols)
			noteOuter(s, at, l)
			return l, it, nil
		}
		if fn := s.function(); fn != nil && fn.params[name] {
			return lin{}, nil, nil
		}
	case 2:
		it, at, err := lookupItem(s, "", names[0])
		if err != nil {
			return lin{}, nil, err
		}
		if it != nil {
			l, found, err := it.column(names[1])
			if err != nil {
				return lin{}, nil, err
			}
			if !found {
				// p.f is f(p) when p has no column f.
				schema, err := funcSchema(s, "", names[1])
				if err != nil {
					return lin{}, nil, err
				}
				l, err = a.call(schema, names[1], wholeRow(it.cols))
				if err != nil {
					return lin{}, nil, err
				}
			}
			noteOuter(s, at, l)
			return l, nil, nil
		}
		if fn := s.function(); fn != nil && (fn.name == names[0] && fn.params[names[1]] || fn.params[names[0]]) {
			return lin{}, nil, nil // f.param, or param.field
		}
	case 3, 4:
		schema, rel, col := names[len(names)-3], names[len(names)-2], names[len(names)-1]
		it, at, err := lookupItem(s, schema, rel)
		if err != nil {
			return lin{}, nil, err
		}
		if it != nil {
			l, found, err := it.column(col)
			if err != nil {
				return lin{}, nil, err
			}
			if !found {
				return lin{}, nil, undefinedf(undefinedColumn, "column %q does not exist", written)
			}
			noteOuter(s, at, l)
			return l, nil, nil
		}
		if fn := s.function(); len(names) == 3 && fn != nil && fn.name == names[0] && fn.params[names[1]] {
			return lin{}, nil, nil // f.param.field
		}
	}
	return lin{}, nil, undefinedf(undefinedColumn, "column %q does not exist", written)
}
