package sqlclass

import (
	"fmt"
	"reflect"
	"regexp"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/phigate/phigate/session/policy"
)

// A text whose template is known is answered without a parse, with its own
// statement text and the template's classification.
func TestTemplateAnswersNewLiterals(t *testing.T) {
	c := NewCache(0)
	for i, q := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 123456789;",
	} {
		stmts, tree, err := c.ClassifyTree(q)
		if err != nil || len(stmts) != 1 {
			t.Fatalf("%q: %v %v", q, stmts, err)
		}
		own, _ := Classify(q)
		if stmts[0].Text != own[0].Text || stmts[0].Class != policy.Read {
			t.Fatalf("%q: text %q class %s, want %q read", q, stmts[0].Text, stmts[0].Class, own[0].Text)
		}
		if i == 0 && (tree == nil || stmts[0].Template != "") {
			t.Fatalf("first text was not parsed: tree %v template %q", tree != nil, stmts[0].Template)
		}
		if i > 0 && (tree != nil || stmts[0].Template != "SELECT abalance FROM pgbench_accounts WHERE aid = $1;") {
			t.Fatalf("%q: not answered from the template: tree %v template %q", q, tree != nil, stmts[0].Template)
		}
		if stmts[0].Key() != stmts[0].Template && stmts[0].Template != "" {
			t.Fatalf("Key = %q", stmts[0].Key())
		}
	}
}

// The statement text is cut from the text asked about, whatever comments,
// spaces and semicolons surround it and however long its literals are.
func TestTemplateText(t *testing.T) {
	for _, pair := range [][2]string{
		{"  /* c */ SELECT name FROM p WHERE id = 1 ; -- after", "  /* c */ SELECT name FROM p WHERE id = 1234567 ; -- after"},
		{"SELECT name FROM p WHERE id = 'a'", "SELECT name FROM p WHERE id = 'a much longer '' literal; DROP TABLE p'"},
		{"\n\tUPDATE p SET n = n + 1 WHERE id = 2;\n", "\n\tUPDATE p SET n = n + 99 WHERE id = 300000;\n"},
		{"DELETE FROM p WHERE id = 5", "DELETE FROM p WHERE id = -5"},
		{"INSERT INTO p (id, n) VALUES (1, 'x') RETURNING id", "INSERT INTO p (id, n) VALUES (2, E'y\\n') RETURNING id"},
	} {
		c := NewCache(0)
		if _, err := c.Classify(pair[0]); err != nil {
			t.Fatal(err)
		}
		got, err := c.Classify(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		own, _ := Classify(pair[1])
		if got[0].Template == "" {
			t.Fatalf("%q was not answered from the template of %q", pair[1], pair[0])
		}
		if got[0].Text != own[0].Text {
			t.Fatalf("text %q, want %q", got[0].Text, own[0].Text)
		}
	}
}

// Statements whose constants are not only values, and statements whose
// literal changes the answer, are never answered from a template.
func TestTemplateNotUsed(t *testing.T) {
	for _, pair := range [][2]string{
		{"SET search_path = 'a'", "SET search_path = 'b'"},
		{"SET application_name = 'a'", "SET application_name = 'b'"},
		{"COPY p TO STDOUT WITH (DELIMITER ',')", "COPY p TO STDOUT WITH (DELIMITER ';')"},
		{"PREPARE q AS SELECT 1", "PREPARE q AS SELECT 2"},
		{"DECLARE c CURSOR FOR SELECT 1", "DECLARE c CURSOR FOR SELECT 2"},
		{"SELECT * FROM p LIMIT 10", "SELECT * FROM p LIMIT 100000"}, // a bound the template does not have
		{"SELECT 1; SELECT 2", "SELECT 3; SELECT 4"},
		{"DO $$BEGIN PERFORM 1; END$$", "DO $$BEGIN DELETE FROM p; END$$"},
		{"CREATE TABLE t (a int DEFAULT 1)", "CREATE TABLE t (a int DEFAULT 2)"},
	} {
		c := NewCache(0)
		if _, err := c.Classify(pair[0]); err != nil {
			t.Fatal(err)
		}
		got, err := c.Classify(pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Template != "" {
			t.Errorf("%q answered from the template %q", pair[1], got[0].Template)
		}
		own, _ := Classify(pair[1])
		if !reflect.DeepEqual(got, own) {
			t.Errorf("%q: %+v, want %+v", pair[1], got, own)
		}
	}
}

// templateGrants are grants under which a template's answer must never let
// through what the text's own would not.
var templateGrants = []*policy.Grant{
	{Name: "read", Allow: []policy.Class{policy.Read}},
	{Name: "write", Allow: []policy.Class{policy.Read, policy.Write}},
	{Name: "write-named", Allow: []policy.Class{policy.Read, policy.Write}, Functions: []string{"set_config", "nextval"}},
	{Name: "ruled", Allow: []policy.Class{policy.Read, policy.Write, policy.DDL}, Approvals: []policy.ApprovalRule{
		{Name: "bulk", When: []string{string(policy.RiskBulkExport)}, Tables: []string{"patients"}, MaxRows: 100},
		{Name: "unbounded", When: []string{string(policy.RiskUnboundedWrite), string(policy.RiskDangerousFunction)}},
		{Name: "audit", When: []string{string(policy.RiskTableWrite)}, Tables: []string{"audit"}},
	}},
	{Name: "bulk-any", Allow: []policy.Class{policy.Read}, Approvals: []policy.ApprovalRule{
		{Name: "bulk", When: []string{string(policy.RiskBulkExport)}, MaxRows: 10},
	}},
}

// passes reports whether stmts run under g without approval.
func passes(g *policy.Grant, stmts []Statement) bool {
	actions := Actions(nil, stmts)
	if !policy.Command(g, actions).Allowed {
		return false
	}
	r, _ := g.NeedsApproval(actions)
	return r == nil
}

// templateCorpus are statements with literals in many places, some of
// which change what the statement does.
var templateCorpus = []string{
	"SELECT abalance FROM pgbench_accounts WHERE aid = 1",
	"UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 3",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
	"SELECT * FROM patients LIMIT 10",
	"SELECT * FROM patients LIMIT 1000",
	"SELECT * FROM patients LIMIT 0",
	"SELECT * FROM patients LIMIT 5 OFFSET 1",
	"SELECT * FROM patients FETCH FIRST 3 ROWS ONLY",
	"SELECT name FROM patients WHERE id = 1 LIMIT 1",
	"DELETE FROM patients WHERE id = 1",
	"DELETE FROM patients WHERE 1 = 1",
	"DELETE FROM patients WHERE id = 1 OR 1 = 1",
	"DELETE FROM patients WHERE id = 1 OR 2 = 3",
	"DELETE FROM patients WHERE id = 1 AND 1 = 1",
	"UPDATE patients SET name = 'x' WHERE 'a' = 'a'",
	"UPDATE patients SET name = 'x' WHERE id = id",
	"UPDATE patients SET name = 'x' WHERE id IN (1, 2, 3)",
	"UPDATE patients SET name = 'x' WHERE id > 0",
	"UPDATE patients SET name = 'x' WHERE true",
	"UPDATE patients SET name = 'x' WHERE false",
	"DELETE FROM patients WHERE id = 1 OR NULL",
	"DELETE FROM patients WHERE NOT (id <> 1)",
	"INSERT INTO audit VALUES (1, 'x')",
	"INSERT INTO patients SELECT * FROM patients WHERE id = 1 RETURNING *",
	"SELECT set_config('application_name', 'x', false)",
	"SELECT set_config('role', 'postgres', false)",
	"SELECT set_config('transaction_read_only', 'off', true)",
	"SELECT current_setting('role')",
	"SELECT nextval('patients_id_seq')",
	"SELECT setval('patients_id_seq', 1)",
	"SELECT pg_read_file('/etc/passwd')",
	"SELECT pg_read_file('postgresql.conf', 0, 100)",
	"SELECT lo_import('/etc/passwd')",
	"SELECT query_to_xml('DELETE FROM patients', true, true, '')",
	"SELECT dblink_exec('dbname=x', 'DELETE FROM patients')",
	"SELECT pg_terminate_backend(1234)",
	"SELECT pg_sleep(1)",
	"SELECT 'DELETE FROM patients'::text",
	"SELECT name FROM patients WHERE name = 'O''Brien; DELETE FROM patients'",
	"SELECT * FROM patients FOR UPDATE",
	"SELECT * FROM patients WHERE id = 1 FOR UPDATE",
	"WITH d AS (DELETE FROM patients WHERE id = 1 RETURNING *) SELECT * FROM d",
	"WITH d AS (DELETE FROM patients WHERE 1 = 1 RETURNING *) SELECT * FROM d LIMIT 5",
	"SELECT * FROM patients ORDER BY 1 LIMIT 2",
	"SELECT 1::regclass",
	"SELECT 'patients'::regclass",
	"SELECT has_table_privilege('patients', 'SELECT')",
	"SELECT convert_from('\\x41', 'UTF8')",
	"SELECT x FROM generate_series(1, 100000) x",
	"MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN DELETE",
	"MERGE INTO patients p USING (SELECT 1 AS id) s ON 1 = 1 WHEN MATCHED THEN UPDATE SET name = 'x'",
	"SELECT * FROM patients WHERE id = 1 UNION ALL SELECT * FROM patients LIMIT 3",
	"SELECT * FROM patients TABLESAMPLE SYSTEM (10)",
	"SELECT * FROM patients WHERE id = ANY('{1,2}'::int[])",
}

var (
	digitRun  = regexp.MustCompile(`\b[0-9]+\b`)
	stringLit = regexp.MustCompile(`'(?:[^']|'')*'`)
)

// variants are q with its numbers and strings changed, for values that
// often mean something to a classifier.
func variants(q string) []string {
	var out []string
	for _, n := range []string{"0", "1", "2", "10", "100", "101", "99999999", "-1"} {
		out = append(out, digitRun.ReplaceAllString(q, n))
	}
	for _, s := range []string{"''", "'role'", "'application_name'", "'search_path'", "'transaction_read_only'",
		"'off'", "'on'", "'/etc/passwd'", "'DELETE FROM patients'", "'a'' ; DROP TABLE patients; --'", "'patients'", "'pg_authid'"} {
		out = append(out, stringLit.ReplaceAllString(q, s))
	}
	return out
}

// TestTemplateNeverMorePermissive teaches a cache with each statement of the
// corpus and asks it about variants with other literals: whenever the
// answer comes from the template, nothing passes under any grant that would
// not pass under the text's own classification, and the text is the
// text's own.
func TestTemplateNeverMorePermissive(t *testing.T) {
	hits := 0
	for _, teacher := range templateCorpus {
		for _, asked := range append(variants(teacher), teacher) {
			if checkTemplate(t, teacher, asked) {
				hits++
			}
		}
	}
	if hits < len(templateCorpus) {
		t.Fatalf("only %d answers came from templates: the test checks nothing", hits)
	}
	t.Logf("%d answers from templates", hits)
}

// checkTemplate teaches a fresh cache with teacher, asks it about asked,
// and checks the answer; it reports whether the answer came from a
// template.
func checkTemplate(t testing.TB, teacher, asked string) bool {
	c := NewCache(0)
	if _, err := c.Classify(teacher); err != nil {
		return false
	}
	got, err := c.Classify(asked)
	own, ownErr := Classify(asked)
	if len(got) == 0 || got[0].Template == "" {
		if (err == nil) != (ownErr == nil) || !reflect.DeepEqual(got, own) {
			t.Fatalf("%q after %q: %+v %v, want %+v %v", asked, teacher, got, err, own, ownErr)
		}
		return false
	}
	if ownErr != nil {
		// The server refuses it too (a literal that does not fit the
		// grammar where the template's parameter does).
		return true
	}
	if len(own) != 1 || got[0].Text != own[0].Text || got[0].Kind != own[0].Kind {
		t.Fatalf("%q after %q: text %q kind %s, want %q %s", asked, teacher, got[0].Text, got[0].Kind, own[0].Text, own[0].Kind)
	}
	for _, g := range templateGrants {
		if passes(g, got) && !passes(g, own) {
			t.Fatalf("%q after %q: passes grant %s on template %q but not on its own classification\ntemplate: %+v\nown: %+v",
				asked, teacher, g.Name, got[0].Template, got[0], own[0])
		}
	}
	return true
}

// FuzzTemplate checks the same on texts the fuzzer writes, with their
// numbers and strings changed.
func FuzzTemplate(f *testing.F) {
	for _, q := range templateCorpus {
		f.Add(q, uint8(0))
	}
	f.Fuzz(func(t *testing.T, q string, pick uint8) {
		if len(q) > 2000 {
			return
		}
		vs := variants(q)
		asked := vs[int(pick)%len(vs)]
		k1, err1 := pg_query.Normalize(q)
		k2, err2 := pg_query.Normalize(asked)
		if err1 != nil || err2 != nil || k1 != k2 {
			return
		}
		checkTemplate(t, q, asked)
	})
}

// The ring forgets its oldest entries.
func TestTemplateBounded(t *testing.T) {
	c := NewCache(4)
	for i := range 20 {
		q := fmt.Sprintf("SELECT c%d FROM t WHERE id = 1", i)
		if _, err := c.Classify(q); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.tmpl.entries); n > 4 {
		t.Fatalf("%d templates held, max 4", n)
	}
	if n := len(c.exact.entries); n > 4 {
		t.Fatalf("%d texts held, max 4", n)
	}
}

// What a command costs when only its literals change: parsed every time,
// and answered from its template.
func BenchmarkTemplate(b *testing.B) {
	texts := make([]string, 1024)
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", i*7919)
	}
	b.Run("parsed", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := Classify(texts[i%len(texts)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("template", func(b *testing.B) {
		c := NewCache(0)
		i := 0
		for b.Loop() {
			if _, err := c.Classify(texts[i%len(texts)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
