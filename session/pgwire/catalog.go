package pgwire

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

// catalog resolves the table OID and attribute number that a RowDescription
// carries into schema.table.column, which is what masking rules name. It
// keeps one gateway-owned connection per resource, separate from agents'
// sessions, and caches relations for ttl.
type catalog struct {
	res     *resource.Resource
	timeout time.Duration
	ttl     time.Duration

	mu   sync.Mutex // serialises use of conn
	conn *pgconn.PgConn
	rels map[uint32]*relation
	// looks are the database's look-alikes of built-in names; nil until
	// fetched, and again after DDL or ttl.
	looks *lookalikes
	// What lineage asked of the catalog, by "schema.name" ("" schema:
	// unqualified), and the lineage of statements by text (lineage.go).
	relNames  map[string]relEntry
	funcNames map[string]funcEntry
	lineages  map[string]lineageEntry
	// rewrites are the relations the server rewrites writes to (views,
	// foreign tables, tables with rules), and codeRels those where reading
	// or writing may run code that is not a built-in (codeRelationsQuery);
	// nil until fetched, and again after DDL or ttl.
	rewrites, codeRels *relationSet
	// keys are tables' key columns (attnums), by OID, for snapshots.
	keys map[uint32]keyEntry
}

type keyEntry struct {
	attnums []int16 // nil: the table has no key
	fetched time.Time
}

// lookalikes are the functions and operators defined outside pg_catalog
// whose names a statement may use unqualified: search_path resolution can
// pick them over the built-in of the same name. Functions and operators
// that an extension installed and that are declared immutable or stable are
// trusted as built-ins are.
type lookalikes struct {
	funcs, ops map[string]bool
	fetched    time.Time
}

type relation struct {
	schema, table string
	cols          map[int16]string
	fetched       time.Time
}

func newCatalog(r *resource.Resource, timeout, ttl time.Duration) *catalog {
	return &catalog{res: r, timeout: timeout, ttl: ttl, rels: map[uint32]*relation{},
		relNames: map[string]relEntry{}, funcNames: map[string]funcEntry{}, lineages: map[string]lineageEntry{}, keys: map[uint32]keyEntry{}}
}

const relationQuery = `SELECT n.nspname, c.relname, a.attnum, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped`

// keyQuery lists the columns of a table's primary key, else of its first
// unique index whose columns are all plain and NOT NULL, valid, immediate
// and without a predicate: columns that find each row again.
const keyQuery = `SELECT i.indexrelid, k.attnum, a.attnotnull
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
  AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
ORDER BY i.indisprimary DESC, i.indexrelid, k.ord`

// keyOf returns the key columns (attnums) of table oid; nil when it has
// none.
func (c *catalog) keyOf(ctx context.Context, oid uint32) ([]int16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.keys[oid]; ok && time.Since(e.fetched) <= c.ttl {
		return e.attnums, nil
	}
	type col struct {
		index   string
		attnum  int16
		notNull bool
	}
	var cols []col
	err := c.query(ctx, keyQuery, [][]byte{fmt.Appendf(nil, "%d", oid)}, []uint32{26}, func() { cols = nil }, func(v [][]byte) {
		var n int16
		if _, err := fmt.Sscan(string(v[1]), &n); err == nil {
			cols = append(cols, col{index: string(v[0]), attnum: n, notNull: string(v[2]) == "t"})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: key of relation %d: %w", oid, err)
	}
	var key []int16
	for i := 0; i < len(cols); {
		j, ok := i, true
		for ; j < len(cols) && cols[j].index == cols[i].index; j++ {
			ok = ok && cols[j].notNull && cols[j].attnum > 0
		}
		if ok {
			for _, k := range cols[i:j] {
				key = append(key, k.attnum)
			}
			break
		}
		i = j
	}
	c.keys[oid] = keyEntry{attnums: key, fetched: time.Now()}
	return key, nil
}

// relationName returns "schema.table" for relation oid.
func (c *catalog) relationName(ctx context.Context, oid uint32) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rel := c.rels[oid]
	if rel == nil || time.Since(rel.fetched) > c.ttl {
		var err error
		if rel, err = c.fetch(ctx, oid); err != nil {
			return "", err
		}
		c.rels[oid] = rel
	}
	return rel.schema + "." + rel.table, nil
}

// source returns "schema.table.column" for a result column, or "" when the
// column does not come straight from a table column.
func (c *catalog) source(ctx context.Context, oid uint32, attnum int16) (string, error) {
	if oid == 0 || attnum <= 0 {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rel := c.rels[oid]
	if rel == nil || time.Since(rel.fetched) > c.ttl {
		var err error
		if rel, err = c.fetch(ctx, oid); err != nil {
			return "", err
		}
		c.rels[oid] = rel
	}
	col, ok := rel.cols[attnum]
	if !ok {
		return "", nil
	}
	return rel.schema + "." + rel.table + "." + col, nil
}

func (c *catalog) fetch(ctx context.Context, oid uint32) (*relation, error) {
	var rel *relation
	err := c.query(ctx, relationQuery, [][]byte{fmt.Appendf(nil, "%d", oid)}, []uint32{26}, func() {
		rel = &relation{cols: map[int16]string{}, fetched: time.Now()}
	}, func(v [][]byte) {
		rel.schema, rel.table = string(v[0]), string(v[1])
		var n int16
		if _, err := fmt.Sscan(string(v[2]), &n); err == nil {
			rel.cols[n] = string(v[3])
		}
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: look up relation %d: %w", oid, err)
	}
	return rel, nil
}

// query runs sql on the catalog connection (c.mu held), connecting when
// needed and once more if the server restarted under it; start runs before
// each attempt, row for every row.
func (c *catalog) query(ctx context.Context, sql string, args [][]byte, oids []uint32, start func(), row func([][]byte)) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if c.conn == nil || c.conn.IsClosed() {
			up, err := c.connect(ctx)
			if err != nil {
				return fmt.Errorf("connect to %q: %w", c.res.Name, err)
			}
			c.conn = up
		}
		start()
		rr := c.conn.ExecParams(ctx, sql, args, oids, nil, nil)
		for rr.NextRow() {
			row(rr.Values())
		}
		if _, err := rr.Close(); err != nil {
			if c.conn.IsClosed() && attempt == 0 {
				continue // the server restarted under us; reconnect once
			}
			return err
		}
		return nil
	}
}

func (c *catalog) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := connConfig(c.res, policy.LevelRead, c.timeout)
	if err != nil {
		return nil, err
	}
	// An empty search_path: view and function definitions come back with
	// every name qualified, so they resolve the same in any session.
	cfg.RuntimeParams = map[string]string{"application_name": "phigate-catalog", "default_transaction_read_only": "on", "search_path": ""}
	return pgconn.ConnectConfig(ctx, cfg)
}

const lookalikesQuery = `SELECT 'f', p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (p.provolatile = 'v' OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
       WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'))
UNION
SELECT 'o', o.oprname
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
LEFT JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (p.provolatile IS DISTINCT FROM 'i' AND p.provolatile IS DISTINCT FROM 's'
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
       WHERE d.classid = 'pg_catalog.pg_operator'::regclass AND d.objid = o.oid AND d.deptype = 'e'))`

// lookalikesOf returns the database's look-alikes of built-in names,
// fetched at most once per ttl (and again after DDL).
func (c *catalog) lookalikesOf(ctx context.Context) (*lookalikes, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.looks != nil && time.Since(c.looks.fetched) <= c.ttl {
		return c.looks, nil
	}
	var l *lookalikes
	err := c.query(ctx, lookalikesQuery, nil, nil, func() {
		l = &lookalikes{funcs: map[string]bool{}, ops: map[string]bool{}, fetched: time.Now()}
	}, func(v [][]byte) {
		if string(v[0]) == "f" {
			l.funcs[string(v[1])] = true
		} else {
			l.ops[string(v[1])] = true
		}
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: look up functions and operators: %w", err)
	}
	c.looks = l
	return l, nil
}

// relationSet is a set of relations by "schema.name" and by bare name (an
// unqualified name in a statement may resolve to any of them).
type relationSet struct {
	names   map[string]bool
	fetched time.Time
}

const rewrittenQuery = `SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'f') OR c.relhasrules`

// codeRelationsQuery finds the relations where a statement may run code
// that is not a built-in of the server, or reach past the relation: views
// and tables with rules (a view's query may call any function), foreign
// and partitioned tables, tables with triggers (foreign keys included),
// row security policies or inheritance children, columns of a type that
// is not a built-in (its input and output functions, a domain's checks),
// and defaults, generated columns, constraints or index expressions that
// depend on a function that is not a built-in. Built-in functions do not
// show here (PostgreSQL records no dependency on them); the allowlist
// judges those where a statement names them.
const codeRelationsQuery = `SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'f', 'p') OR c.relhasrules OR c.relhastriggers OR c.relrowsecurity OR c.relhassubclass
  OR EXISTS (SELECT FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
    WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
      AND t.oid OPERATOR(pg_catalog.>=) 16384 AND t.typtype OPERATOR(pg_catalog.<>) 'e')
  OR EXISTS (SELECT FROM pg_catalog.pg_depend d
    WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND (
      (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND (d.objid OPERATOR(pg_catalog.=) c.oid
        OR d.objid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid)))
      OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass
        AND d.objid IN (SELECT ad.oid FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid OPERATOR(pg_catalog.=) c.oid))
      OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass
        AND d.objid IN (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid))))`

// rewrittenOf returns the relations whose writes the server rewrites,
// fetched at most once per ttl (and again after DDL).
func (c *catalog) rewrittenOf(ctx context.Context) (map[string]bool, error) {
	return c.relationSetOf(ctx, &c.rewrites, rewrittenQuery, "views and rules")
}

// codeRelationsOf returns the relations where a statement may run code
// that is not a built-in (codeRelationsQuery), fetched at most once per
// ttl (and again after DDL).
func (c *catalog) codeRelationsOf(ctx context.Context) (map[string]bool, error) {
	return c.relationSetOf(ctx, &c.codeRels, codeRelationsQuery, "relations that run code")
}

func (c *catalog) relationSetOf(ctx context.Context, slot **relationSet, query, what string) (map[string]bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *slot != nil && time.Since((*slot).fetched) <= c.ttl {
		return (*slot).names, nil
	}
	var r *relationSet
	err := c.query(ctx, query, nil, nil, func() {
		r = &relationSet{names: map[string]bool{}, fetched: time.Now()}
	}, func(v [][]byte) {
		r.names[string(v[0])+"."+string(v[1])] = true
		r.names[string(v[1])] = true
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: look up %s: %w", what, err)
	}
	*slot = r
	return r.names, nil
}

// invalidate forgets every cached relation and look-alike, after DDL went
// through.
func (c *catalog) invalidate() {
	c.mu.Lock()
	clear(c.rels)
	clear(c.relNames)
	clear(c.funcNames)
	clear(c.lineages)
	clear(c.keys)
	c.looks, c.rewrites, c.codeRels = nil, nil, nil
	c.mu.Unlock()
}

func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeConn()
}

// retarget points the cache at r, a new revision of its resource: what it
// read through the old one's login is dropped, and the next read logs in
// afresh.
func (c *catalog) retarget(r *resource.Resource) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.res == r {
		return
	}
	c.closeConn()
	c.res = r
	c.rels, c.looks, c.rewrites, c.codeRels = map[uint32]*relation{}, nil, nil, nil
	c.relNames, c.funcNames, c.lineages = map[string]relEntry{}, map[string]funcEntry{}, map[string]lineageEntry{}
	c.keys = map[uint32]keyEntry{}
}

func (c *catalog) closeConn() {
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.conn.Close(ctx)
		cancel()
		c.conn = nil
	}
}
