package change

import (
	"errors"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"strings"
	"testing"
)

func TestAnalyzeReads(t *testing.T) {
	for _, tc := range []struct {
		sql       string
		op        Op
		before    string
		after     string // with keys id, 2 rows, first param Params+1
		relations string
		assigns   string
	}{
		{sql: "UPDATE patients SET name = 'x' WHERE id = 1", op: OpUpdate,
			before:    "SELECT patients.* FROM patients WHERE id = 1 LIMIT 101 FOR NO KEY UPDATE OF patients",
			after:     "SELECT patients.* FROM patients WHERE patients.id OPERATOR(pg_catalog.=) ANY(ARRAY[$1, $2]) LIMIT 101",
			relations: `"patients"`, assigns: "name"},
		{sql: "UPDATE ONLY public.patients AS p SET notes = u.n FROM upd u WHERE p.id = u.id AND u.n <> ''", op: OpUpdate,
			before:    "SELECT p.* FROM ONLY public.patients p WHERE EXISTS (SELECT FROM upd u WHERE p.id = u.id AND u.n <> '') LIMIT 101 FOR NO KEY UPDATE OF p",
			after:     "SELECT p.* FROM ONLY public.patients p WHERE p.id OPERATOR(pg_catalog.=) ANY(ARRAY[$1, $2]) LIMIT 101",
			relations: `"public"."patients","upd"`, assigns: "notes"},
		{sql: "WITH x AS (SELECT 1 AS id) UPDATE t SET v = $2 WHERE id IN (SELECT id FROM x) AND w = $1", op: OpUpdate,
			before:    "WITH x AS (SELECT 1 AS id) SELECT t.* FROM t WHERE id IN (SELECT id FROM x) AND w = $1 LIMIT 101 FOR NO KEY UPDATE OF t",
			after:     "WITH x AS (SELECT 1 AS id) SELECT t.* FROM t WHERE t.id OPERATOR(pg_catalog.=) ANY(ARRAY[$3, $4]) LIMIT 101",
			relations: `"t","x"`, assigns: "v"},
		{sql: "DELETE FROM patients WHERE dob < '1970-01-01'", op: OpDelete,
			before:    "SELECT patients.* FROM patients WHERE dob < '1970-01-01' LIMIT 101 FOR UPDATE OF patients",
			relations: `"patients"`},
		{sql: "DELETE FROM patients p USING visits v WHERE v.pid = p.id", op: OpDelete,
			before:    "SELECT p.* FROM patients p WHERE EXISTS (SELECT FROM visits v WHERE v.pid = p.id) LIMIT 101 FOR UPDATE OF p",
			relations: `"patients","visits"`},
		{sql: "DELETE FROM patients", op: OpDelete,
			before: "SELECT patients.* FROM patients LIMIT 101 FOR UPDATE OF patients", relations: `"patients"`},
		{sql: "INSERT INTO patients (id, name) VALUES (1, 'a'), (2, DEFAULT) ON CONFLICT (id) DO UPDATE SET name = excluded.name", op: OpInsert,
			before:    "WITH phigate_rows AS (SELECT id, name FROM patients WHERE false UNION ALL VALUES (1, 'a'), (2, NULL)) SELECT patients.* FROM patients WHERE EXISTS (SELECT FROM phigate_rows WHERE patients.id OPERATOR(pg_catalog.=) phigate_rows.id) LIMIT 101 FOR NO KEY UPDATE OF patients",
			after:     "WITH phigate_rows AS (SELECT id, name FROM patients WHERE false UNION ALL VALUES (1, 'a'), (2, NULL)) SELECT patients.* FROM patients WHERE EXISTS (SELECT FROM phigate_rows WHERE patients.id OPERATOR(pg_catalog.=) phigate_rows.id) OR patients.id OPERATOR(pg_catalog.=) ANY(ARRAY[$1, $2]) LIMIT 101",
			relations: `"patients","phigate_rows"`, assigns: "name"},
		{sql: "INSERT INTO t AS x SELECT * FROM src ON CONFLICT (lower(email)) WHERE active DO NOTHING", op: OpInsert,
			before:    "WITH phigate_rows AS (SELECT * FROM t WHERE false UNION ALL SELECT * FROM src) SELECT x.* FROM t x WHERE EXISTS (SELECT FROM phigate_rows WHERE lower(x.email) OPERATOR(pg_catalog.=) lower(phigate_rows.email)) AND x.active LIMIT 101",
			after:     "WITH phigate_rows AS (SELECT * FROM t WHERE false UNION ALL SELECT * FROM src) SELECT x.* FROM t x WHERE (EXISTS (SELECT FROM phigate_rows WHERE lower(x.email) OPERATOR(pg_catalog.=) lower(phigate_rows.email)) AND x.active) OR x.id OPERATOR(pg_catalog.=) ANY(ARRAY[$1, $2]) LIMIT 101",
			relations: `"t","phigate_rows","src"`},
		{sql: "MERGE INTO accounts a USING (SELECT $1::int AS id, $2::numeric AS amt) s ON a.id = s.id WHEN MATCHED AND s.amt = 0 THEN DELETE WHEN MATCHED THEN UPDATE SET bal = a.bal + s.amt WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.amt)", op: OpMerge,
			before:    "SELECT a.* FROM accounts a WHERE EXISTS (SELECT FROM (SELECT $1::int AS id, $2::numeric AS amt) s WHERE a.id = s.id) LIMIT 101 FOR UPDATE OF a",
			after:     "SELECT a.* FROM accounts a WHERE EXISTS (SELECT FROM (SELECT $1::int AS id, $2::numeric AS amt) s WHERE a.id = s.id) OR a.id OPERATOR(pg_catalog.=) ANY(ARRAY[$3, $4]) LIMIT 101",
			relations: `"accounts"`, assigns: "bal"},
		{sql: "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", op: OpMerge,
			before:    "SELECT t.* FROM t WHERE EXISTS (SELECT FROM s WHERE t.id = s.id) LIMIT 101",
			after:     "SELECT t.* FROM t WHERE EXISTS (SELECT FROM s WHERE t.id = s.id) OR t.id OPERATOR(pg_catalog.=) ANY(ARRAY[$1, $2]) LIMIT 101",
			relations: `"t","s"`},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			p, err := Analyze(tc.sql, 100)
			if err != nil {
				t.Fatal(err)
			}
			if p.Op != tc.op || p.Before != tc.before {
				t.Errorf("op %s before:\n got %s\nwant %s", p.Op, p.Before, tc.before)
			}
			after, err := p.After([]string{"id"}, 2, p.Params+1)
			if err != nil || after != tc.after {
				t.Errorf("after (%v):\n got %s\nwant %s", err, after, tc.after)
			}
			if got := strings.Join(p.Relations, ","); got != tc.relations {
				t.Errorf("relations %s, want %s", got, tc.relations)
			}
			if got := strings.Join(p.Assigns, ","); got != tc.assigns {
				t.Errorf("assigns %s, want %s", got, tc.assigns)
			}
		})
	}
}

func TestAnalyzeNotAnalysed(t *testing.T) {
	for sql, want := range map[string]string{
		"WITH d AS (DELETE FROM a RETURNING *) UPDATE t SET v = 1":                   "data-modifying WITH",
		"WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d":                      "inside a select stmt",
		"WITH d AS (DELETE FROM a RETURNING *) INSERT INTO t SELECT * FROM d":        "data-modifying WITH",
		"UPDATE t SET v = 1 WHERE CURRENT OF c":                                      "CURRENT OF",
		"DELETE FROM t WHERE CURRENT OF c":                                           "CURRENT OF",
		"INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING":                            "without a conflict target",
		"INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING":       "ON CONSTRAINT",
		"INSERT INTO t DEFAULT VALUES ON CONFLICT (id) DO NOTHING":                   "DEFAULT VALUES",
		"INSERT INTO t (id, v) VALUES (DEFAULT, 1) ON CONFLICT (id) DO NOTHING":      "DEFAULT",
		"INSERT INTO t (v) VALUES (1) ON CONFLICT (id) DO NOTHING":                   "takes its default",
		"INSERT INTO t (id) VALUES (1) ON CONFLICT (id COLLATE \"C\") DO NOTHING":    "collation",
		"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE": "BY SOURCE",
		"EXPLAIN ANALYZE UPDATE t SET v = 1":                                         "EXPLAIN ANALYZE",
		"COPY (DELETE FROM t RETURNING *) TO STDOUT":                                 "copy stmt",
		"TRUNCATE t":                        "TRUNCATE",
		"CALL p()":                          "procedure",
		"DO $$ BEGIN DELETE FROM t; END $$": "DO block",
	} {
		_, err := Analyze(sql, 100)
		var na *NotAnalysed
		if !errors.As(err, &na) || !strings.Contains(na.Reason, want) {
			t.Errorf("%s: %v, want not analysed (%s)", sql, err, want)
		}
	}
}

func TestAnalyzeNothingToRead(t *testing.T) {
	for _, sql := range []string{
		"SELECT * FROM t", "INSERT INTO t VALUES (1)", "INSERT INTO t SELECT * FROM u", "CREATE TABLE x (a int)",
		"EXPLAIN UPDATE t SET v = 1", "EXPLAIN (ANALYZE false) UPDATE t SET v = 1", "SELECT * FROM t FOR UPDATE", "BEGIN",
		"PREPARE p AS UPDATE t SET v = 1", "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM u; END",
	} {
		p, err := Analyze(sql, 100)
		if p != nil || err != nil {
			t.Errorf("%s: %+v, %v; want nothing", sql, p, err)
		}
	}
	for _, sql := range []string{"", "SELECT 1; SELECT 2", "UPDATE"} {
		if _, err := Analyze(sql, 100); !errors.Is(err, ErrStatement) {
			t.Errorf("%q: %v, want ErrStatement", sql, err)
		}
	}
}

// Identifiers and literals that carry SQL of their own stay identifiers
// and literals in the reads: the deparser quotes them, and the read parses
// back to the same tree.
func TestAnalyzeHostileNames(t *testing.T) {
	for _, sql := range []string{
		`UPDATE "t; DROP TABLE x; --" SET v = 1 WHERE "a""b" = 'it''s; DELETE FROM y'`,
		`UPDATE t AS "x */ DELETE FROM y /*" SET v = $$; DROP TABLE z; $$ WHERE id = 1`,
		`DELETE FROM "Pa tients" WHERE note = E'\'; SELECT 1; --'`,
		`INSERT INTO "s;x"."t" ("i;d") VALUES ($q$;$q$) ON CONFLICT ("i;d") DO UPDATE SET "i;d" = 'x'`,
		`MERGE INTO t USING "s--" s ON t.id = s.id /* ; */ WHEN MATCHED THEN DELETE`,
	} {
		p, err := Analyze(sql, 10)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		after, err := p.After([]string{"k;ey"}, 1, p.Params+1)
		if err != nil {
			t.Fatal(err)
		}
		for _, read := range []string{p.Before, after} {
			if read == "" {
				continue
			}
			if stmts, err := pg_query.SplitWithScanner(read, true); err != nil || len(stmts) != 1 {
				t.Errorf("%s: read %s is %d statements (%v)", sql, read, len(stmts), err)
			}
		}
		t.Log(p.Before)
	}
}

func TestAfterByKey(t *testing.T) {
	p, err := Analyze("UPDATE t SET id = id + 1 WHERE v = 1", 5)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := p.After([]string{"id"}, 3, 1); after != "" {
		t.Errorf("an UPDATE of the key has an after read by key: %s", after)
	}
	if after, _ := p.After(nil, 3, 1); after != "" {
		t.Errorf("an UPDATE of a table without a key has an after read: %s", after)
	}
	after, err := p.After([]string{"a", "b"}, 2, 4)
	if err != nil || after != "SELECT t.* FROM t WHERE (t.a OPERATOR(pg_catalog.=) $4 AND t.b OPERATOR(pg_catalog.=) $5) OR (t.a OPERATOR(pg_catalog.=) $6 AND t.b OPERATOR(pg_catalog.=) $7) LIMIT 6" {
		t.Errorf("%v: %s", err, after)
	}
	d, _ := Analyze("DELETE FROM t", 5)
	if after, _ := d.After([]string{"id"}, 3, 1); after != "" || !d.NoAfter {
		t.Errorf("a DELETE has an after read: %s", after)
	}
}
