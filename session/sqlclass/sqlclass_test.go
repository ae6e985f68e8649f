package sqlclass

import (
	"errors"
	"slices"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		sql  string
		want []Class
	}{
		{"", nil},
		{"SELECT 1", []Class{Read}},
		{"select * from patients where id = $1", []Class{Read}},
		{"VALUES (1), (2)", []Class{Read}},
		{"TABLE patients", []Class{Read}},
		{"SHOW search_path", []Class{Read}},
		{"EXPLAIN SELECT * FROM t", []Class{Read}},
		{"EXPLAIN ANALYZE DELETE FROM t", []Class{Write}},
		{"EXPLAIN (ANALYZE false) DELETE FROM t", []Class{Read}},
		{"SELECT * FROM t FOR UPDATE", []Class{Write}},
		{"SELECT * FROM (SELECT * FROM t FOR SHARE) s", []Class{Write}},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", []Class{Write}},
		{"SELECT * INTO newt FROM t", []Class{DDL}},
		{"INSERT INTO t VALUES (1)", []Class{Write}},
		{"UPDATE t SET a = 1", []Class{Write}},
		{"DELETE FROM t", []Class{Write}},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", []Class{Write}},
		{"TRUNCATE t", []Class{Write}},
		{"CREATE TABLE x (a int)", []Class{DDL}},
		{"CREATE INDEX ON x (a)", []Class{DDL}},
		{"CREATE TABLE y AS SELECT 1", []Class{DDL}},
		{"ALTER TABLE x ADD COLUMN b int", []Class{DDL}},
		{"DROP TABLE x", []Class{DDL}},
		{"COMMENT ON TABLE x IS 'y'", []Class{DDL}},
		{"GRANT SELECT ON x TO bob", []Class{Admin}},
		{"CREATE ROLE bob", []Class{Admin}},
		{"DO $$ BEGIN END $$", []Class{Admin}},
		{"CALL p()", []Class{Admin}},
		{"VACUUM x", []Class{Admin}},
		{"BEGIN", []Class{Tx}},
		{"BEGIN READ WRITE", []Class{Write}},
		{"START TRANSACTION READ ONLY", []Class{Tx}},
		{"COMMIT", []Class{Tx}},
		{"ROLLBACK TO SAVEPOINT a", []Class{Tx}},
		{"SET search_path = public", []Class{Session}},
		{"SET ROLE postgres", []Class{Admin}},
		{"SET default_transaction_read_only = off", []Class{Admin}},
		{"SET TRANSACTION READ WRITE", []Class{Write}},
		{"RESET ALL", []Class{Admin}},
		{"DISCARD ALL", []Class{Session}},
		{"LISTEN ch", []Class{Session}},
		{"DECLARE c CURSOR FOR SELECT * FROM t", []Class{Read}},
		{"FETCH 10 FROM c", []Class{Session}},
		{"PREPARE p AS DELETE FROM t", []Class{Write}},
		{"EXECUTE p", []Class{Admin}},
		{"COPY t TO STDOUT", []Class{Export}},
		{"COPY (SELECT 1) TO STDOUT", []Class{Export}},
		{"COPY t FROM STDIN", []Class{Import}},
		{"COPY t TO '/tmp/x'", []Class{Admin}},
		{"COPY t FROM PROGRAM 'id'", []Class{Admin}},
		{"SELECT 1; DELETE FROM t; COMMIT", []Class{Read, Write, Tx}},
		{"SELECT set_config('default_transaction_read_only', 'off', false)", []Class{Admin}},
		{"SELECT pg_catalog.set_config('search_path', 'x', true)", []Class{Admin}},
		{"UPDATE t SET a = pg_terminate_backend(42)", []Class{Admin}},
		{"SELECT * FROM dblink('host=x', 'DELETE FROM t') AS r(a int)", []Class{Admin}},
	}
	for _, tt := range tests {
		stmts, err := Classify(tt.sql)
		if err != nil {
			t.Errorf("Classify(%q): %v", tt.sql, err)
			continue
		}
		var got []Class
		for _, s := range stmts {
			got = append(got, s.Class)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Classify(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}

func TestClassifyCopy(t *testing.T) {
	stmts, err := Classify(`COPY clinic.patients (ssn, "Name") TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')`)
	if err != nil {
		t.Fatal(err)
	}
	c := stmts[0].Copy
	if c == nil || c.Schema != "clinic" || c.Table != "patients" || !slices.Equal(c.Columns, []string{"ssn", "Name"}) ||
		c.Format != "csv" || !c.Header || c.Delimiter != ";" || c.From || !c.Stdio || c.Query {
		t.Fatalf("copy info = %+v", c)
	}
	if want := `SELECT "ssn", "Name" FROM "clinic"."patients"`; c.Describe != want {
		t.Fatalf("describe = %q, want %q", c.Describe, want)
	}
	stmts, err = Classify(`COPY (SELECT 1) TO STDOUT (FORMAT binary)`)
	if err != nil {
		t.Fatal(err)
	}
	if c := stmts[0].Copy; !c.Query || c.Format != "binary" || c.Describe != "SELECT 1" {
		t.Fatalf("copy info = %+v", c)
	}
}

func TestClassifySyntaxError(t *testing.T) {
	_, err := Classify("SELEC 1")
	if !errors.Is(err, ErrSyntax) {
		t.Fatalf("err = %v, want ErrSyntax", err)
	}
}

func TestPrepareExecute(t *testing.T) {
	stmts, err := Classify("PREPARE q (int) AS SELECT $1; EXECUTE q(1)")
	if err != nil {
		t.Fatal(err)
	}
	if stmts[0].Prepare != "q" || stmts[0].Class != Read || stmts[1].Execute != "q" {
		t.Fatalf("got %+v", stmts)
	}
}

func TestCache(t *testing.T) {
	c := NewCache(2)
	for _, q := range []string{"SELECT 1", "DELETE FROM t", "SELECT 1", "BEGIN", "COMMIT", "DELETE FROM t"} {
		want, _ := Classify(q)
		got, err := c.Classify(q)
		if err != nil || len(got) != 1 || got[0].Class != want[0].Class {
			t.Fatalf("cache %q: %v %v", q, got, err)
		}
	}
	if len(c.entries) > 2 {
		t.Fatalf("cache holds %d entries, max 2", len(c.entries))
	}
	if _, err := c.Classify("SELEC"); !errors.Is(err, ErrSyntax) {
		t.Fatalf("cached syntax error lost: %v", err)
	}
}

func TestCacheSharesAcrossConstants(t *testing.T) {
	c := NewCache(16)
	a, err := c.Classify("SELECT * FROM t WHERE id = 1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Classify("SELECT * FROM t WHERE id = 2")
	if err != nil {
		t.Fatal(err)
	}
	if &a[0] != &b[0] {
		t.Fatal("texts differing only in constants did not share a cache entry")
	}
	// A write must never be served a read's entry.
	w, err := c.Classify("DELETE FROM t WHERE id = 2")
	if err != nil || w[0].Class != Write {
		t.Fatalf("delete = %+v %v", w, err)
	}
	// Utility statements never share: SET TRANSACTION READ ONLY and READ
	// WRITE must not meet in one entry.
	ro, _ := c.Classify("SET TRANSACTION READ ONLY")
	rw, _ := c.Classify("SET TRANSACTION READ WRITE")
	if ro[0].Class == rw[0].Class {
		t.Fatalf("read only and read write classed alike: %s", ro[0].Class)
	}
	// COPY entries are per exact text: their describe query depends on it.
	x, _ := c.Classify("COPY (SELECT * FROM t WHERE id = 1) TO STDOUT")
	y, _ := c.Classify("COPY (SELECT * FROM t WHERE id = 2) TO STDOUT")
	if x[0].Copy.Describe == y[0].Copy.Describe {
		t.Fatalf("COPY describe shared across texts: %q", x[0].Copy.Describe)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"SELECT 1", "COPY t TO STDOUT (FORMAT csv)", "WITH x AS (DELETE FROM t) SELECT 1", "\x00", "BEGIN; SET ROLE x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := Classify(sql)
		if err != nil {
			return
		}
		for _, s := range stmts {
			if _, err := ParseClass(string(s.Class)); err != nil {
				t.Fatalf("class %q not a known class", s.Class)
			}
		}
	})
}
