package lineage

import (
	"fmt"
	"slices"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// cte is a WITH query as a FROM item sees it.
type cte struct {
	name      string
	aliases   []string
	node      *pg_query.CommonTableExpr
	owner     *scope // the level whose WITH defines it
	index     int
	recursive bool
	state     cteState
	cols      []column
	rows      bool
	err       error
}

type cteState uint8

const (
	cteNew cteState = iota
	cteRunning
	cteDone
)

// with adds a WITH clause's queries to s and analyzes each (also those no
// FROM names: a data-modifying one runs anyway).
func (a *analyzer) with(s *scope, w *pg_query.WithClause) error {
	if w == nil {
		return nil
	}
	for i, n := range w.GetCtes() {
		ce := n.GetCommonTableExpr()
		if ce == nil {
			return unsupported(n)
		}
		s.ctes = append(s.ctes, &cte{name: ce.GetCtename(), aliases: stringList(ce.GetAliascolnames()),
			node: ce, owner: s, index: i, recursive: w.GetRecursive()})
	}
	for _, c := range s.ctes {
		if _, _, err := a.cteColumns(c); err != nil {
			return err
		}
	}
	return nil
}

func findCTE(s *scope, name string) *cte {
	for x := s; x != nil; x = x.parent {
		for _, c := range x.ctes {
			if c.name == name {
				return c
			}
		}
	}
	return nil
}

// cteColumns analyzes a CTE once. The body sees the CTEs before it (all of
// its WITH under RECURSIVE) and the levels around its WITH, not the FROM
// items of the level that defines it.
//
// A recursive CTE is iterated to a fixpoint: its columns start as bottom
// (no value yet), named by the non-recursive term; each round analyzes the
// whole query with the columns of the round before, until nothing changes.
// Lineage only grows from round to round and the set of columns is finite,
// so this ends; a column the recursive term carries through unchanged stays
// plain.
func (a *analyzer) cteColumns(c *cte) ([]column, bool, error) {
	switch c.state {
	case cteDone:
		return c.cols, c.rows, c.err
	case cteRunning:
		if c.cols == nil {
			return nil, false, opaquef("recursive reference to query %q outside its recursive term", c.name)
		}
		return c.cols, true, nil
	}
	c.state = cteRunning
	c.cols, c.rows, c.err = a.runCTE(c)
	if c.err == nil && c.rows {
		c.cols, c.err = a.searchCycleColumns(c)
	}
	c.state = cteDone
	return c.cols, c.rows, c.err
}

func (a *analyzer) runCTE(c *cte) ([]column, bool, error) {
	visible := c.owner.ctes[:c.index:c.index]
	if c.recursive {
		visible = c.owner.ctes
	}
	body := &scope{parent: c.owner.parent, ctes: visible, fn: c.owner.fn}
	what := fmt.Sprintf("WITH query %q", c.name)
	sel := c.node.GetCtequery().GetSelectStmt()
	if !c.recursive || sel == nil || sel.GetOp() != pg_query.SetOperation_SETOP_UNION {
		cols, rows, err := a.query(body, c.node.GetCtequery())
		if err != nil || !rows {
			return nil, rows, err
		}
		cols, err = renamed(cols, c.aliases, what)
		return cols, true, err
	}
	// The non-recursive term names the columns and gives their number.
	seedScope := &scope{parent: body}
	if err := a.with(seedScope, sel.GetWithClause()); err != nil {
		return nil, false, err
	}
	seed, err := a.selectStmt(seedScope, sel.GetLarg())
	if err != nil {
		return nil, false, err
	}
	if seed, err = renamed(seed, c.aliases, what); err != nil {
		return nil, false, err
	}
	cur := make([]column, len(seed))
	for i, col := range seed {
		cur[i] = column{name: col.name, lin: lin{bottom: true}}
	}
	for range 100 {
		c.cols = cur
		out, err := a.selectStmt(body, sel)
		if err != nil {
			return nil, false, err
		}
		if len(out) != len(cur) {
			return nil, false, opaquef("%s: column count changes between terms", what)
		}
		same := true
		next := make([]column, len(out))
		for i := range out {
			// A round's rows may pair a column of one row with one of
			// another (the recursive term joins r with a table): no
			// column of a recursive CTE is one scan's.
			next[i] = column{name: cur[i].name, lin: noScan(out[i].lin)}
			same = same && next[i].lin.equal(cur[i].lin)
		}
		if same {
			return next, true, nil
		}
		cur = next
	}
	return nil, false, opaquef("%s: lineage did not converge", what)
}

// searchCycleColumns adds the columns SEARCH and CYCLE clauses append: the
// ordering column holds the values of the BY columns, the path those of
// the cycle columns, the mark compares them.
func (a *analyzer) searchCycleColumns(c *cte) ([]column, error) {
	cols := c.cols
	pick := func(names []*pg_query.Node) (lin, error) {
		var l lin
		for _, n := range names {
			name := n.GetString_().GetSval()
			i := slices.IndexFunc(c.cols, func(col column) bool { return col.name == name })
			if i < 0 {
				return lin{}, undefinedf(undefinedColumn, "WITH query %q: column %q does not exist", c.name, name)
			}
			l = union(l, c.cols[i].lin)
		}
		return l, nil
	}
	if sc := c.node.GetSearchClause(); sc != nil {
		l, err := pick(sc.GetSearchColList())
		if err != nil {
			return nil, err
		}
		cols = append(slices.Clip(cols), column{name: sc.GetSearchSeqColumn(), lin: l})
	}
	if cc := c.node.GetCycleClause(); cc != nil {
		l, err := pick(cc.GetCycleColList())
		if err != nil {
			return nil, err
		}
		cols = append(slices.Clip(cols), column{name: cc.GetCycleMarkColumn(), lin: l}, column{name: cc.GetCyclePathColumn(), lin: l})
	}
	return cols, nil
}
