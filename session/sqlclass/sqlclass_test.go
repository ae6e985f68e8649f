package sqlclass

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/policy"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		sql  string
		want []policy.Class
	}{
		{"", nil},
		{"SELECT 1", []policy.Class{policy.Read}},
		{"select * from patients where id = $1", []policy.Class{policy.Read}},
		{"VALUES (1), (2)", []policy.Class{policy.Read}},
		{"TABLE patients", []policy.Class{policy.Read}},
		{"SHOW search_path", []policy.Class{policy.Read}},
		{"EXPLAIN SELECT * FROM t", []policy.Class{policy.Read}},
		{"EXPLAIN ANALYZE DELETE FROM t", []policy.Class{policy.Write}},
		{"EXPLAIN (ANALYZE false) DELETE FROM t", []policy.Class{policy.Read}},
		{"SELECT * FROM t FOR UPDATE", []policy.Class{policy.Write}},
		{"SELECT * FROM (SELECT * FROM t FOR SHARE) s", []policy.Class{policy.Write}},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", []policy.Class{policy.Write}},
		{"SELECT * INTO newt FROM t", []policy.Class{policy.DDL}},
		{"INSERT INTO t VALUES (1)", []policy.Class{policy.Write}},
		{"UPDATE t SET a = 1", []policy.Class{policy.Write}},
		{"DELETE FROM t", []policy.Class{policy.Write}},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", []policy.Class{policy.Write}},
		{"TRUNCATE t", []policy.Class{policy.Write}},
		{"CREATE TABLE x (a int)", []policy.Class{policy.DDL}},
		{"CREATE INDEX ON x (a)", []policy.Class{policy.DDL}},
		{"CREATE TABLE y AS SELECT 1", []policy.Class{policy.DDL}},
		{"ALTER TABLE x ADD COLUMN b int", []policy.Class{policy.DDL}},
		{"DROP TABLE x", []policy.Class{policy.DDL}},
		{"COMMENT ON TABLE x IS 'y'", []policy.Class{policy.DDL}},
		{"GRANT SELECT ON x TO bob", []policy.Class{policy.Admin}},
		{"CREATE ROLE bob", []policy.Class{policy.Admin}},
		{"DO $$ BEGIN END $$", []policy.Class{policy.Admin}},
		{"CALL p()", []policy.Class{policy.Admin}},
		{"VACUUM x", []policy.Class{policy.Admin}},
		{"BEGIN", []policy.Class{policy.Tx}},
		{"BEGIN READ WRITE", []policy.Class{policy.Write}},
		{"START TRANSACTION READ ONLY", []policy.Class{policy.Tx}},
		{"COMMIT", []policy.Class{policy.Tx}},
		{"ROLLBACK TO SAVEPOINT a", []policy.Class{policy.Tx}},
		{"SET search_path = public", []policy.Class{policy.Session}},
		{"SET ROLE postgres", []policy.Class{policy.Admin}},
		{"SET default_transaction_read_only = off", []policy.Class{policy.Admin}},
		{"SET TRANSACTION READ WRITE", []policy.Class{policy.Write}},
		{"RESET ALL", []policy.Class{policy.Session}},
		{"SET transaction_read_only TO DEFAULT", []policy.Class{policy.Admin}},
		{"RESET transaction_read_only", []policy.Class{policy.Admin}},
		{"SET default_transaction_read_only TO DEFAULT", []policy.Class{policy.Session}},
		{"SET local_preload_libraries = 'x'", []policy.Class{policy.Admin}},
		{"COPY (DELETE FROM t RETURNING *) TO STDOUT", []policy.Class{policy.Write}},
		{"COPY (WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d) TO STDOUT", []policy.Class{policy.Write}},
		{"COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", []policy.Class{policy.Write}},
		{"COPY (SELECT 1) TO STDOUT", []policy.Class{policy.Export}},
		{"PREPARE TRANSACTION 'x'", []policy.Class{policy.Admin}},
		{"COMMIT PREPARED 'x'", []policy.Class{policy.Admin}},
		{"SELECT * FROM t ORDER BY a USING OPERATOR(public.<)", []policy.Class{policy.Read, policy.Admin}},
		{"SELECT 1 WHERE 1 OPERATOR(public.=) ANY (SELECT 1)", []policy.Class{policy.Read, policy.Admin}},
		{"DISCARD ALL", []policy.Class{policy.Session}},
		{"LISTEN ch", []policy.Class{policy.Session}},
		{"DECLARE c CURSOR FOR SELECT * FROM t", []policy.Class{policy.Read}},
		{"FETCH 10 FROM c", []policy.Class{policy.Session}},
		{"PREPARE p AS DELETE FROM t", []policy.Class{policy.Write}},
		{"EXECUTE p", []policy.Class{policy.Admin}},
		{"COPY t TO STDOUT", []policy.Class{policy.Export}},
		{"COPY (SELECT 1) TO STDOUT", []policy.Class{policy.Export}},
		{"COPY t FROM STDIN", []policy.Class{policy.Import}},
		{"COPY t TO '/tmp/x'", []policy.Class{policy.Admin}},
		{"COPY t FROM PROGRAM 'id'", []policy.Class{policy.Admin}},
		{"SELECT 1; DELETE FROM t; COMMIT", []policy.Class{policy.Read, policy.Write, policy.Tx}},
		{"SELECT set_config('default_transaction_read_only', 'off', false)", []policy.Class{policy.Read, policy.Admin}},
		{"SELECT pg_catalog.set_config('search_path', 'x', true)", []policy.Class{policy.Read, policy.Admin}},
		{"UPDATE t SET a = pg_terminate_backend(42)", []policy.Class{policy.Write, policy.Admin}},
		{"SELECT * FROM dblink('host=x', 'DELETE FROM t') AS r(a int)", []policy.Class{policy.Read, policy.Admin}},
		{"SELECT query_to_xml('select 1', true, false, '')", []policy.Class{policy.Read, policy.Admin}},
		{"SELECT lo_from_bytea(0, 'x')", []policy.Class{policy.Read, policy.Write}},
		{"SELECT lower(name), now(), count(*) FROM t GROUP BY 1", []policy.Class{policy.Read}},
		{"SELECT public.lower('x')", []policy.Class{policy.Read, policy.Admin}},
		{"SELECT 1 OPERATOR(public.+) 2", []policy.Class{policy.Read, policy.Admin}},
		{"SELECT 1 OPERATOR(pg_catalog.+) 2", []policy.Class{policy.Read}},
		{"SELECT * FROM t TABLESAMPLE bernoulli(10)", []policy.Class{policy.Read}},
		{"SELECT * FROM t TABLESAMPLE system_rows(10)", []policy.Class{policy.Read, policy.Admin}},
		{"NOTIFY ch, 'x'", []policy.Class{policy.Write}},
		{"SET CONSTRAINTS ALL DEFERRED", []policy.Class{policy.Tx}},
		// EXPLAIN runs its statement as PostgreSQL decides: last ANALYZE
		// wins, any boolean spelling, an invalid value counts as running.
		{"EXPLAIN (ANALYZE false, ANALYZE true) UPDATE t SET a = 1", []policy.Class{policy.Write}},
		{"EXPLAIN (ANALYZE true, ANALYZE false) UPDATE t SET a = 1", []policy.Class{policy.Read}},
		{"EXPLAIN (ANALYZE 'TRUE') DELETE FROM t", []policy.Class{policy.Write}},
		{"EXPLAIN (ANALYZE 'on') DELETE FROM t", []policy.Class{policy.Write}},
		{"EXPLAIN (ANALYZE 1) DELETE FROM t", []policy.Class{policy.Write}},
		{"EXPLAIN (ANALYSE) DELETE FROM t", []policy.Class{policy.Write}},
		{"EXPLAIN (ANALYZE 'of') DELETE FROM t", []policy.Class{policy.Read}},
		{"EXPLAIN (ANALYZE 'maybe') DELETE FROM t", []policy.Class{policy.Write}},
		{"EXPLAIN ANALYZE VERBOSE DELETE FROM t", []policy.Class{policy.Write}},
		{"BEGIN TRANSACTION READ ONLY, READ WRITE", []policy.Class{policy.Write}},
		{"SET default_transaction_read_only = on", []policy.Class{policy.Session}},
		{"SET default_transaction_read_only = 'of'", []policy.Class{policy.Admin}},
		{"SET transaction_read_only TO 0", []policy.Class{policy.Admin}},
		{"SET search_path = public, pg_catalog", []policy.Class{policy.Admin}},
		{"SET search_path TO 'public, pg_catalog'", []policy.Class{policy.Admin}},
		{"SET search_path = pg_catalog, public", []policy.Class{policy.Session}},
		{`SET search_path = "PG_CATALOG", public`, []policy.Class{policy.Session}},
	}
	for _, tt := range tests {
		stmts, err := Classify(tt.sql)
		if err != nil {
			t.Errorf("Classify(%q): %v", tt.sql, err)
			continue
		}
		var got []policy.Class
		for _, s := range stmts {
			got = append(got, s.Class)
			for _, c := range s.Calls {
				if !slices.Contains(got, c.Class) {
					got = append(got, c.Class)
				}
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Classify(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}

// The parser agrees with the server only under the lexer settings phigate
// keeps fixed: changing them is refused for every grant.
func TestLexerSettingsRefused(t *testing.T) {
	for sql, refused := range map[string]bool{
		"SET standard_conforming_strings = off":       true,
		"SET standard_conforming_strings TO 'of'":     true,
		"SET LOCAL standard_conforming_strings = 0":   true,
		"SET standard_conforming_strings = on":        false,
		"SET standard_conforming_strings = 'TRUE'":    false,
		"RESET standard_conforming_strings":           false,
		"SET client_encoding = 'SJIS'":                true,
		"SET NAMES 'big5'":                            true,
		"SET client_encoding TO 'GB18030'":            true,
		"SET client_encoding = 'LATIN1'":              true,
		"SET client_encoding = 'UTF8'":                false,
		"SET NAMES 'utf-8'":                           false,
		"SET client_encoding = unicode":               false,
		"SET client_encoding = 'SQL_ASCII'":           false,
		"SET client_encoding TO DEFAULT":              false,
		"PREPARE p AS SELECT 1; SET NAMES 'EUC_JP'":   true,
		"SELECT 1; SET standard_conforming_strings=0": true,
	} {
		stmts, err := Classify(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		got := false
		for _, s := range stmts {
			got = got || s.Refused != ""
		}
		if got != refused {
			t.Errorf("%s: refused = %v, want %v", sql, got, refused)
		}
	}
	if !SafeClientEncoding("UTF8") || SafeClientEncoding("SJIS") || SafeClientEncoding("") {
		t.Fatal("SafeClientEncoding")
	}
}

func TestParseBool(t *testing.T) {
	for in, want := range map[string]int{ // 1 true, 0 false, -1 invalid
		"true": 1, "TRUE": 1, "t": 1, "tr": 1, "truex": -1, "yes": 1, "Y": 1, "on": 1, "ON": 1, "1": 1,
		"false": 0, "F": 0, "no": 0, "n": 0, "off": 0, "of": 0, "OFF": 0, "0": 0,
		"o": -1, "onn": -1, "": -1, "01": -1, "2": -1, " on": -1, "maybe": -1,
	} {
		v, ok := ParseBool(in)
		got := -1
		if ok {
			got = 0
			if v {
				got = 1
			}
		}
		if got != want {
			t.Errorf("ParseBool(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestEffects(t *testing.T) {
	stmts, err := Classify(`PREPARE s AS SELECT 1; DEALLOCATE s; DEALLOCATE ALL; DISCARD ALL; DECLARE c CURSOR WITH HOLD FOR SELECT 2; CLOSE c; CLOSE ALL;
		BEGIN; SAVEPOINT a; RELEASE a; ROLLBACK TO SAVEPOINT a; COMMIT; ROLLBACK AND CHAIN; END; DISCARD PLANS; START TRANSACTION; COMMIT AND CHAIN`)
	if err != nil {
		t.Fatal(err)
	}
	type eff struct {
		e    Effect
		name string
		hold bool
	}
	want := []eff{{EffectPrepare, "s", false}, {EffectDeallocate, "s", false}, {EffectDeallocateAll, "", false}, {EffectDiscardAll, "", false},
		{EffectDeclare, "c", true}, {EffectClose, "c", false}, {EffectCloseAll, "", false}, {EffectBegin, "", false},
		{EffectSavepoint, "a", false}, {EffectRelease, "a", false}, {EffectRollbackTo, "a", false}, {EffectTxEnd, "", false},
		{EffectRollback, "", false}, {EffectTxEnd, "", false}, {EffectNone, "", false}, {EffectBegin, "", false}, {EffectTxEnd, "", false}}
	if len(stmts) != len(want) {
		t.Fatalf("%d statements", len(stmts))
	}
	for i, s := range stmts {
		if got := (eff{s.Effect, s.Name, s.Hold}); got != want[i] {
			t.Errorf("statement %d (%s): %+v, want %+v", i, s.Text, got, want[i])
		}
	}
	for i, s := range stmts {
		if chain := i == 12 || i == 16; s.Chain != chain {
			t.Errorf("statement %d (%s): chain %v", i, s.Text, s.Chain)
		}
	}
	if in := stmts[0].Inner; in == nil || in.Class != policy.Read || in.Kind != "select_stmt" || in.Text != "PREPARE s AS SELECT 1" {
		t.Errorf("prepare inner = %+v", in)
	}
	if in := stmts[4].Inner; in == nil || in.Class != policy.Read {
		t.Errorf("declare inner = %+v", in)
	}
}

// Unqualified built-in calls and operators are reported, so that a proxy
// can check the database for look-alikes that search_path would pick.
func TestResolvedNames(t *testing.T) {
	stmts, err := Classify(`SELECT lower(a), pg_catalog.upper(b), nextval('s') FROM t JOIN u USING (id)
		WHERE a || b LIKE 'x%' AND c BETWEEN 1 AND 2 AND CASE d WHEN 1 THEN true END AND e OPERATOR(pg_catalog.=) 1`)
	if err != nil {
		t.Fatal(err)
	}
	st := stmts[0]
	if !slices.Equal(st.Builtins, []string{"lower"}) {
		t.Errorf("builtins = %q", st.Builtins)
	}
	slices.Sort(st.Operators)
	if want := []string{"<", "<=", "=", ">", ">=", "||", "~~"}; !slices.Equal(st.Operators, want) {
		t.Errorf("operators = %q, want %q", st.Operators, want)
	}
}

func TestStatementText(t *testing.T) {
	stmts, err := Classify("SELECT 1;  DELETE FROM t ; /* c */ SELECT 'a;b'")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range stmts {
		got = append(got, s.Text)
	}
	if want := []string{"SELECT 1", "DELETE FROM t", "/* c */ SELECT 'a;b'"}; !slices.Equal(got, want) {
		t.Fatalf("texts = %q, want %q", got, want)
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
	_, err := Classify("SELECT 1 FRO t")
	var se *SyntaxError
	if !errors.Is(err, ErrSyntax) || !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *SyntaxError", err)
	}
	// What PostgreSQL itself reports: message and character position.
	if se.Message != `syntax error at or near "t"` || se.Position != 14 {
		t.Fatalf("syntax error = %q at %d", se.Message, se.Position)
	}
	if _, err := Classify("SELECT '" + string([]byte{0xff}) + "'"); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("invalid UTF-8: %v", err)
	}
}

func TestPrepareExecute(t *testing.T) {
	stmts, err := Classify("PREPARE q (int) AS SELECT $1; EXECUTE q(1)")
	if err != nil {
		t.Fatal(err)
	}
	if stmts[0].Prepare != "q" || stmts[0].Class != policy.Read || stmts[1].Execute != "q" {
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
	if len(c.exact.entries) > 2 {
		t.Fatalf("cache holds %d entries, max 2", len(c.exact.entries))
	}
	if _, err := c.Classify("SELEC"); !errors.Is(err, ErrSyntax) {
		t.Fatalf("cached syntax error lost: %v", err)
	}
}

// The cache answers only for the exact bytes it parsed: a text that does
// not parse is never answered from an entry of a text that does, however
// alike they normalise.
func TestCacheExactText(t *testing.T) {
	c := NewCache(16)
	if _, err := c.Classify("SELECT 'x'"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"SELECT 'x", "SELECT $1", "SELECT 'x' ;; DELETE", "SELECT 'y' FRO"} {
		want, werr := Classify(bad)
		got, gerr := c.Classify(bad)
		if (werr == nil) != (gerr == nil) || len(want) != len(got) {
			t.Errorf("%q: cached %v %v, parsed %v %v", bad, got, gerr, want, werr)
		}
	}
	a, _ := c.Classify("SELECT * FROM t WHERE id = 1")
	b, _ := c.Classify("SELECT * FROM t WHERE id = 1")
	if &a[0] != &b[0] {
		t.Fatal("the same text was parsed twice")
	}
	ro, _ := c.Classify("SET TRANSACTION READ ONLY")
	rw, _ := c.Classify("SET TRANSACTION READ WRITE")
	if ro[0].Class == rw[0].Class {
		t.Fatalf("read only and read write classed alike: %s", ro[0].Class)
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
			if _, err := policy.ParseClass(string(s.Class)); err != nil {
				t.Fatalf("class %q not a known class", s.Class)
			}
			if !strings.Contains(sql, s.Text) {
				t.Fatalf("statement text %q is not part of the query", s.Text)
			}
			for _, c := range s.Calls {
				if c.Class != policy.Write && c.Class != policy.Admin {
					t.Fatalf("call %q needs class %q", c.Name, c.Class)
				}
			}
		}
	})
}

// FuzzSettingValues: the readers of SET values never panic, and a boolean
// PostgreSQL would read as true is never also read as false.
func FuzzSettingValues(f *testing.F) {
	for _, s := range []string{"on", "of", "public, \"PG_CATALOG\"", `"a""b", c`, ",,", "\"", "UTF-8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// PostgreSQL's parse_bool, written out the long way.
		l := strings.ToLower(s)
		prefix := func(w string) bool { return l != "" && strings.HasPrefix(w, l) }
		wantTrue := prefix("true") || prefix("yes") || l == "on" || l == "1"
		wantFalse := prefix("false") || prefix("no") || l == "off" || l == "of" || l == "0"
		v, ok := ParseBool(s)
		if ok != (wantTrue || wantFalse) || ok && v != wantTrue {
			t.Fatalf("ParseBool(%q) = %v, %v", s, v, ok)
		}
		for _, id := range splitIdentifiers(s) {
			if len(id) > len(s) {
				t.Fatalf("identifier %q longer than %q", id, s)
			}
		}
		_ = SafeClientEncoding(s)
	})
}
