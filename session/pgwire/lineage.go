package pgwire

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/phigate/phigate/session/lineage"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// Masking follows the data: under a masking profile every statement's
// result columns are traced through the parse tree to the base-table
// columns they derive from (package lineage), with views, materialized
// views and SQL functions read from the database's catalog here. What the
// catalog says is cached per resource like relations are (ttl, and dropped
// after DDL through phigate).

// errAmbiguousRelation: an unqualified name that more than one schema
// holds. Which one the server picks depends on the session's search_path,
// which phigate does not follow, so lineage refuses to guess.
var errAmbiguousRelation = errors.New("the name is in more than one schema; qualify it with its schema")

// errCatalogRead: the catalog could not be read (the statement may be fine).
var errCatalogRead = errors.New("catalog")

// lineageRelationQuery returns a row per column of every relation named $1
// (in schema $2, or in any schema but toast and temporary ones), with the
// topmost table a partition or child table inherits from.
const lineageRelationQuery = `WITH RECURSIVE up(child, parent, depth) AS (
  SELECT i.inhrelid, i.inhparent, 1 FROM pg_catalog.pg_inherits i
  UNION ALL
  SELECT up.child, i.inhparent, up.depth + 1
  FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.parent WHERE up.depth < 32
)
SELECT n.nspname, c.relname, c.relkind::text,
  CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END,
  a.attname, a.atttypid,
  CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
  (a.attinhcount > 0)::text, rn.nspname, r.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN LATERAL (SELECT up.parent FROM up WHERE up.child = c.oid ORDER BY up.depth DESC LIMIT 1) root ON true
LEFT JOIN pg_catalog.pg_class r ON r.oid = root.parent
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relname = $1
  AND CASE WHEN $2 = '' THEN n.nspname !~ '^pg_(toast|temp_)' ELSE n.nspname = $2 END
ORDER BY n.nspname, a.attnum`

const lineageFunctionQuery = `SELECT n.nspname, p.proname, l.lanname,
  p.proretset::text,
  (n.nspname = 'pg_catalog' OR p.provolatile IN ('i', 's') AND l.lanname IN ('c', 'internal') AND EXISTS (
     SELECT 1 FROM pg_catalog.pg_depend d
     WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'))::text,
  CASE WHEN l.lanname = 'sql' AND p.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(p.oid) END,
  COALESCE(
    (SELECT pg_catalog.string_agg(u.name, pg_catalog.chr(31) ORDER BY u.i)
       FROM ROWS FROM (pg_catalog.unnest(p.proargnames), pg_catalog.unnest(p.proargmodes::text[])) WITH ORDINALITY AS u(name, mode, i)
      WHERE u.mode IN ('o', 'b', 't')),
    (SELECT pg_catalog.string_agg(a.attname, pg_catalog.chr(31) ORDER BY a.attnum)
       FROM pg_catalog.pg_type t JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid
      WHERE t.oid = p.prorettype AND t.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped))
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.proname = $1
  AND CASE WHEN $2 = '' THEN n.nspname !~ '^pg_(toast|temp_)' ELSE n.nspname = $2 END`

type relEntry struct {
	rel     *lineage.Relation // nil: none
	err     error
	fetched time.Time
}

type funcEntry struct {
	fns     []*lineage.Function
	fetched time.Time
}

type lineageEntry struct {
	res     *lineage.Result
	fetched time.Time
}

// maxLineages bounds the per-resource cache of analysed statements.
const maxLineages = 4096

// lineageView is one session's access to its resource's catalog for
// package lineage.
type lineageView struct {
	ctx context.Context
	cat *catalog
}

var _ lineage.Catalog = lineageView{}

func (v lineageView) Relation(schema, name string) (*lineage.Relation, error) {
	return v.cat.lineageRelation(v.ctx, schema, name)
}

func (v lineageView) Functions(schema, name string) ([]*lineage.Function, error) {
	return v.cat.lineageFunctions(v.ctx, schema, name)
}

// lineageOf returns the lineage of one statement by its Key (its text, or
// the template it was judged by), analysed once per
// ttl and resource; tree is the statement parsed already, or nil.
func (c *catalog) lineageOf(ctx context.Context, text string, tree *pg_query.Node) (*lineage.Result, error) {
	c.mu.Lock()
	if e, ok := c.lineages[text]; ok && time.Since(e.fetched) <= c.ttl {
		c.mu.Unlock()
		return e.res, nil
	}
	c.mu.Unlock()
	var res *lineage.Result
	var err error
	if tree != nil {
		res, err = lineage.AnalyzeStmt(tree, lineageView{ctx: ctx, cat: c})
	} else {
		res, err = lineage.Analyze(text, lineageView{ctx: ctx, cat: c})
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.lineages) >= maxLineages {
		clear(c.lineages)
	}
	c.lineages[text] = lineageEntry{res: res, fetched: time.Now()}
	c.mu.Unlock()
	return res, nil
}

func (c *catalog) lineageRelation(ctx context.Context, schema, name string) (*lineage.Relation, error) {
	key := schema + "." + name
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.relNames[key]; ok && time.Since(e.fetched) <= c.ttl {
		return e.rel, e.err
	}
	var rels []*lineage.Relation
	err := c.query(ctx, lineageRelationQuery, [][]byte{[]byte(name), []byte(schema)}, []uint32{25, 25}, func() {
		rels = nil
	}, func(v [][]byte) {
		nsp, rel := string(v[0]), string(v[1])
		if n := len(rels); n == 0 || rels[n-1].Schema != nsp || rels[n-1].Name != rel {
			rels = append(rels, &lineage.Relation{Schema: nsp, Name: rel, Kind: relKind(string(v[2])), Definition: string(v[3]),
				RootSchema: string(v[8]), RootName: string(v[9])})
		}
		if v[4] != nil {
			oid, _ := strconv.ParseUint(string(v[5]), 10, 32)
			r := rels[len(rels)-1]
			r.Columns = append(r.Columns, lineage.Column{Name: string(v[4]), TypeOID: uint32(oid), Generated: string(v[6]),
				Inherited: string(v[7]) == "true"})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: look up relation %q: %w", errCatalogRead, name, err)
	}
	e := relEntry{fetched: time.Now()}
	switch {
	case len(rels) == 1:
		e.rel = rels[0]
	case len(rels) > 1:
		// pg_catalog is searched first (phigate keeps it there).
		for _, r := range rels {
			if r.Schema == "pg_catalog" {
				e.rel = r
			}
		}
		if e.rel == nil {
			e.err = fmt.Errorf("relation %q: %w", name, errAmbiguousRelation)
		}
	}
	c.relNames[key] = e
	return e.rel, e.err
}

func relKind(k string) lineage.RelKind {
	switch k {
	case "r":
		return lineage.Table
	case "p":
		return lineage.Partitioned
	case "f":
		return lineage.Foreign
	case "v":
		return lineage.View
	case "m":
		return lineage.MatView
	}
	return lineage.Other
}

func (c *catalog) lineageFunctions(ctx context.Context, schema, name string) ([]*lineage.Function, error) {
	key := schema + "." + name
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.funcNames[key]; ok && time.Since(e.fetched) <= c.ttl {
		return e.fns, nil
	}
	var fns []*lineage.Function
	err := c.query(ctx, lineageFunctionQuery, [][]byte{[]byte(name), []byte(schema)}, []uint32{25, 25}, func() {
		fns = nil
	}, func(v [][]byte) {
		f := &lineage.Function{Schema: string(v[0]), Name: string(v[1]), Language: string(v[2]),
			ReturnsSet: string(v[3]) == "true", Builtin: string(v[4]) == "true", Definition: string(v[5])}
		if len(v[6]) > 0 {
			f.OutColumns = strings.Split(string(v[6]), "\x1f")
		}
		fns = append(fns, f)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: look up function %q: %w", errCatalogRead, name, err)
	}
	c.funcNames[key] = funcEntry{fns: fns, fetched: time.Now()}
	return fns, nil
}

// traceable refuses, under a masking profile, a command with a statement
// whose results phigate cannot trace to their base columns (a function in a
// language other than SQL, dynamic SQL, a relation the gateway cannot see or
// cannot tell apart), or that moves a masked column's values where masking
// cannot follow them (INSERT ... SELECT, UPDATE ... SET, CREATE TABLE AS,
// set_config, pg_notify...): masking that cannot follow the data fails
// closed.
func (c *conn) traceable(ctx context.Context, stmts []sqlclass.Statement, tree *pg_query.ParseResult, rc *record.Command) *pgproto3.ErrorResponse {
	if c.profile() == nil {
		return nil
	}
	for i, s := range stmts {
		var node *pg_query.Node
		if tree != nil && i < len(tree.GetStmts()) {
			node = tree.GetStmts()[i].GetStmt()
		}
		switch s.Class {
		case policy.Read, policy.Tx, policy.Session, policy.Export:
		default:
			c.fe.mayDefine = true
		}
		why := ""
		res, err := c.cat.lineageOf(ctx, s.Key(), node)
		if err == nil && res.Undefined != "" {
			// The catalog's answers may predate the name: read it afresh.
			c.cat.invalidate()
			res, err = c.cat.lineageOf(ctx, s.Key(), node)
		}
		switch {
		case err != nil && isCatalogFailure(err):
			c.log.Error("cannot read the catalog to trace a statement's results", "err", err)
			rc.Decision, rc.Reason = "deny", "the database's catalog could not be read to trace the results for masking"
			return pgError("ERROR", codeSystemError, "phigate cannot read the catalog to trace this statement's results for masking; it was not run")
		case err != nil:
			why = err.Error()
		case res.Undefined != "" && !c.fe.mayDefine:
			// A name the fresh catalog does not have, in a session that
			// made nothing of its own: the server refuses the statement
			// too, with its own code (or 25P02 in a failed transaction), so
			// it goes through. Should it return rows after all, its columns
			// are withheld (rowsLineage).
		case res.Undefined != "":
			// A name only this session may see (a temporary table, view or
			// function): phigate cannot follow it, and answers with the
			// code the server gives for a name that does not exist.
			rc.Decision, rc.Reason = "deny", "masking cannot follow the data: "+res.Opaque
			return pgError("ERROR", res.Undefined, res.Opaque)
		case res.Opaque != "":
			why = res.Opaque
		default:
			why = c.maskedEscape(res.Escapes)
		}
		if why != "" {
			rc.Decision, rc.Reason = "deny", "masking cannot follow the data: "+why
			return pgError("ERROR", codeInsufficientPriv, "permission denied by phigate: this grant's masking profile cannot follow the statement's data: "+why)
		}
	}
	return nil
}

// maskedEscape names the first masked column whose values the statement
// would move out of its result (into a table, a setting, a notification...),
// where masking could not follow them; "" when there is none.
func (c *conn) maskedEscape(escapes []lineage.Col) string {
	for _, e := range escapes {
		if by, masked := c.profile().Masks(mask.SourceCol{Name: e.String(), TypeOID: e.TypeOID}); masked {
			return fmt.Sprintf("it moves values of %s (masked by %s) out of its result, into a table or a function with an effect", e, by)
		}
	}
	return ""
}

// isCatalogFailure tells a catalog that could not be read (the statement
// may be fine) from a statement lineage refuses.
func isCatalogFailure(err error) bool { return errors.Is(err, errCatalogRead) }

// rowsLineage returns the traced outputs of the statement now returning
// rows of cmd; traced is false when the session has no masking profile or
// the statement returns nothing traced (SHOW, EXPLAIN). Rows of a FETCH or
// an EXECUTE are traced through the cursor or prepared statement they name;
// one phigate does not know has outputs that match nothing, so every column
// is withheld.
func (c *conn) rowsLineage(ctx context.Context, cmd *command) (outs []lineage.Output, traced bool, err error) {
	if c.profile() == nil || cmd.index >= len(cmd.stmts) {
		return nil, false, nil
	}
	text := cmd.stmts[cmd.index].Key()
	for range 2 { // a FETCH or EXECUTE names a statement that names nothing
		res, err := c.cat.lineageOf(ctx, text, nil)
		if err != nil {
			return nil, false, err
		}
		if res.Opaque != "" {
			return nil, true, nil
		}
		if res.Cursor == "" && res.Prepared == "" {
			return res.Outputs, len(res.Outputs) > 0 && hasSources(res.Outputs), nil
		}
		c.mu.Lock()
		text = ""
		if p := c.server.portals[res.Cursor]; res.Cursor != "" && p != nil && len(p.stmts) == 1 {
			text = p.stmts[0].Key()
		}
		if s := c.server.stmts[res.Prepared]; res.Prepared != "" && s != nil && len(s.stmts) == 1 {
			text = s.stmts[0].Key()
		}
		c.mu.Unlock()
		if text == "" {
			return nil, true, nil
		}
	}
	return nil, true, nil
}

func hasSources(outs []lineage.Output) bool {
	for _, o := range outs {
		if len(o.Sources) > 0 {
			return true
		}
	}
	return false
}

// statisticsValues are catalog columns that hold copies of table values
// (most common values, histogram bounds, extended statistics): under a
// masking profile whatever derives from them is withheld.
var statisticsValues = map[string]bool{
	"pg_catalog.pg_statistic.stavalues1": true, "pg_catalog.pg_statistic.stavalues2": true,
	"pg_catalog.pg_statistic.stavalues3": true, "pg_catalog.pg_statistic.stavalues4": true,
	"pg_catalog.pg_statistic.stavalues5":       true,
	"pg_catalog.pg_statistic_ext_data.stxdmcv": true, "pg_catalog.pg_statistic_ext_data.stxdexpr": true,
}

// traceColumn sets what masking needs of a traced output column: its base
// column when it is one unchanged, else every base column it derives from.
func traceColumn(col *mask.Column, out lineage.Output) {
	for _, s := range out.Sources {
		if statisticsValues[s.String()] {
			col.Withhold = true
			return
		}
	}
	if out.Plain && len(out.Sources) == 1 {
		col.Source, col.Scan = out.Sources[0].String(), out.Scan
		return
	}
	for _, s := range out.Sources {
		col.Derived = append(col.Derived, mask.SourceCol{Name: s.String(), TypeOID: s.TypeOID})
	}
}
