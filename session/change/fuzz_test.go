package change

import (
	"errors"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FuzzAnalyze holds the reads to what the package doc promises for any
// input: no panic; each read is one SELECT that parses; it changes nothing
// (no data-changing statement inside); it calls no function and no
// operator the statement does not (OPERATOR(pg_catalog.=) aside), and
// names no relation the statement does not (the proposed rows' CTE aside).
func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{
		"UPDATE patients SET name = 'x' WHERE id = 1",
		"UPDATE ONLY public.patients AS p SET notes = u.n FROM upd u WHERE p.id = u.id",
		"DELETE FROM patients p USING visits v WHERE v.pid = p.id AND lower(v.kind) = 'x'",
		"INSERT INTO t AS x (id, email) VALUES ($1, $2) ON CONFLICT (lower(email)) WHERE active DO UPDATE SET email = excluded.email",
		"WITH s AS (SELECT 1 AS id) INSERT INTO t SELECT * FROM s ORDER BY 1 LIMIT 3 ON CONFLICT (id) DO NOTHING",
		"MERGE INTO t USING (SELECT $1::int AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = 1 WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
		`UPDATE "t; DROP TABLE x; --" SET v = 1 WHERE "a""b" = 'it''s; DELETE FROM y'`,
		"WITH d AS (DELETE FROM a RETURNING *) UPDATE t SET v = 1",
		"INSERT INTO t VALUES (1) UNION SELECT 2 ON CONFLICT (id) DO NOTHING",
	} {
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, sql string, keys uint8) {
		p, err := Analyze(sql, 7)
		var na *NotAnalysed
		if p == nil || err != nil {
			if err != nil && !errors.As(err, &na) && !errors.Is(err, ErrStatement) {
				t.Fatalf("%q: unexpected error %v", sql, err)
			}
			return
		}
		orig, err := pg_query.Parse(sql)
		if err != nil {
			t.Fatalf("%q analysed but does not parse: %v", sql, err)
		}
		allowed := namesIn(orig)
		allowed.ops["pg_catalog.="] = true
		names := []string{"id", "k;ey", `x"y`}[:keys%4%3+1]
		after, err := p.After(names, int(keys%5), p.Params+1)
		if err != nil && !errors.As(err, &na) {
			t.Fatalf("%q: After: %v", sql, err)
		}
		for _, read := range []string{p.Before, after} {
			if read == "" {
				continue
			}
			tree, err := pg_query.Parse(read)
			if err != nil || len(tree.GetStmts()) != 1 || tree.GetStmts()[0].GetStmt().GetSelectStmt() == nil {
				t.Fatalf("%q: read %q is not one SELECT (%v)", sql, read, err)
			}
			got := namesIn(tree)
			for _, kinds := range [][2]map[string]bool{{got.funcs, allowed.funcs}, {got.ops, allowed.ops}} {
				for name := range kinds[0] {
					if !kinds[1][name] {
						t.Fatalf("%q: read %q calls %s, which the statement does not", sql, read, name)
					}
				}
			}
			for name := range got.rels {
				if !allowed.rels[name] && name != rowsName(orig.GetStmts()[0].GetStmt()) {
					t.Fatalf("%q: read %q names relation %s, which the statement does not", sql, read, name)
				}
			}
			if got.changes > 0 {
				t.Fatalf("%q: read %q holds a data-changing statement", sql, read)
			}
		}
	})
}

type names struct {
	funcs, ops, rels map[string]bool
	changes          int
}

func namesIn(tree *pg_query.ParseResult) names {
	n := names{funcs: map[string]bool{}, ops: map[string]bool{}, rels: map[string]bool{}}
	join := func(l []*pg_query.Node) string {
		var parts []string
		for _, x := range l {
			parts = append(parts, x.GetString_().GetSval())
		}
		return strings.Join(parts, ".")
	}
	for _, s := range tree.GetStmts() {
		root := stmtOf(s.GetStmt())
		walk(s.GetStmt().ProtoReflect(), func(m protoreflect.Message) bool {
			switch x := m.Interface().(type) {
			case *pg_query.FuncCall:
				n.funcs[join(x.GetFuncname())] = true
			case *pg_query.A_Expr:
				n.ops[join(x.GetName())] = true
			case *pg_query.SubLink:
				if len(x.GetOperName()) > 0 {
					n.ops[join(x.GetOperName())] = true
				}
			case *pg_query.LockingClause:
				return false // names references, not relations
			case *pg_query.RangeVar:
				n.rels[x.GetRelname()] = true
			case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
				if m.Interface() != root {
					n.changes++
				}
			}
			return true
		})
	}
	return n
}
