package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// slipAttempts are what a hostile agent tries in order to run a statement
// an approval rule gates without anyone's approval: spelling, comments,
// hiding it in another statement, running it through something phigate
// may not look into, or reaching it through the database's own objects (a
// view, a rule, a function, a procedure). Each must be refused before it
// reaches the server. args, when set, sends it with the extended protocol.
var slipAttempts = []struct {
	sql  string
	args []any
}{
	{sql: "DELETE FROM notes"},
	{sql: "delete from NOTES"},
	{sql: "DeLeTe\n\tFROM\n notes"},
	{sql: "/* harmless */ DELETE FROM notes"},
	{sql: "DELETE /* x */ FROM notes -- WHERE id = 1"},
	{sql: "DELETE FROM notes /* WHERE id = 1 */"},
	{sql: "DELETE FROM notes WHERE true"},
	{sql: "DELETE FROM notes WHERE 1=1"},
	{sql: "DELETE FROM notes WHERE id = id"},
	{sql: "DELETE FROM notes WHERE id > 0 OR true"},
	{sql: "DELETE FROM notes WHERE NOT false"},
	{sql: "DELETE FROM notes WHERE EXISTS (SELECT 1)"},
	{sql: "DELETE FROM notes WHERE body IS NOT NULL"},
	{sql: "DELETE FROM notes USING canary WHERE canary.id = 1"},
	{sql: "DELETE FROM notes WHERE $1::int IS NOT NULL", args: []any{1}},
	{sql: "UPDATE notes SET body = 'x'"},
	{sql: "UPDATE notes SET body = $1", args: []any{"x"}},
	{sql: "UPDATE notes SET body = 'x' FROM canary"},
	{sql: "UPDATE notes SET body = 'x' WHERE 'a' = 'a'"},
	{sql: "SELECT 1; DELETE FROM notes"},
	{sql: "BEGIN; DELETE FROM notes; COMMIT"},
	{sql: "WITH d AS (DELETE FROM notes RETURNING *) SELECT count(*) FROM d"},
	{sql: "WITH u AS (UPDATE notes SET body = 'x' RETURNING 1) SELECT 1"},
	{sql: "PREPARE slip1 AS DELETE FROM notes; EXECUTE slip1"},
	{sql: "EXPLAIN ANALYZE DELETE FROM notes"},
	{sql: "EXPLAIN (ANALYZE true, COSTS off) UPDATE notes SET body = 'x'"},
	{sql: "DO $$BEGIN DELETE FROM notes; END$$"},
	{sql: "DO $x$ BEGIN EXECUTE 'DELETE FROM ' || 'notes'; END $x$"},
	{sql: "SELECT purge()"},
	{sql: "SELECT public.purge()"},
	{sql: "SELECT * FROM purge()"},
	{sql: "SELECT 1 WHERE purge() > 0"},
	{sql: "CALL purge_p()"},
	{sql: "INSERT INTO trap VALUES (1)"},
	{sql: "INSERT INTO notes_v VALUES (99, 'x')"},
	{sql: "UPDATE notes_v SET body = 'x' WHERE id = 1"},
	{sql: "MERGE INTO notes n USING canary c ON true WHEN MATCHED THEN DELETE"},
	{sql: "TRUNCATE notes"},
	{sql: "TRUNCATE ONLY canary, notes"},
	{sql: `truncate table "notes"`},
	{sql: "COPY patients TO STDOUT"},
	{sql: "COPY (SELECT * FROM patients) TO STDOUT WITH (FORMAT csv)"},
	{sql: "COPY (DELETE FROM notes RETURNING *) TO STDOUT"},
	{sql: "COPY notes TO PROGRAM 'cat > /dev/null'"},
	{sql: "COPY notes FROM '/etc/hostname'"},
	{sql: "SELECT pg_read_file('/etc/hostname')"},
	{sql: "SELECT pg_catalog.pg_read_file('/etc/hostname')"},
	{sql: `select "pg_read_file"('/etc/hostname')`},
	{sql: "SELECT lo_import('/etc/hostname')"},
	{sql: "SELECT pg_ls_dir('.')"},
	{sql: "GRANT ALL ON notes TO PUBLIC"},
	{sql: "REVOKE SELECT ON notes FROM PUBLIC"},
	{sql: "CREATE ROLE evil LOGIN"},
	{sql: "CREATE USER evil2"},
	{sql: "SET ROLE postgres"},
	{sql: "ALTER TABLE notes OWNER TO postgres"},
	{sql: "CREATE TABLE x_new (id int)"},
	{sql: "SELECT * INTO x_copy FROM patients"},
	{sql: "CREATE TABLE x_as AS SELECT * FROM patients"},
	{sql: "ALTER TABLE notes ADD COLUMN z int"},
	{sql: "DROP TABLE canary"},
	{sql: "CREATE VIEW pv AS SELECT * FROM patients"},
	{sql: "CREATE RULE r2 AS ON UPDATE TO notes DO INSTEAD NOTHING"},
	{sql: "INSERT INTO audit_events VALUES (1, 'x')"},
	{sql: "insert into public.audit_events values (1, 'x')"},
	{sql: `INSERT INTO "audit_events" SELECT 1, 'x'`},
	{sql: "INSERT INTO audit_events VALUES ($1, $2)", args: []any{1, "x"}},
	{sql: "WITH i AS (INSERT INTO audit_events VALUES (1, 'x') RETURNING 1) SELECT 1"},
	{sql: "SELECT * FROM patients"},
	{sql: "select * from PATIENTS limit all"},
	{sql: "SELECT * FROM patients LIMIT 1000"},
	{sql: "SELECT * FROM patients LIMIT $1", args: []any{1000}},
	{sql: "SELECT * FROM patients LIMIT (SELECT 1000)"},
	{sql: "SELECT * FROM public.patients p JOIN canary c ON true"},
	{sql: "SELECT string_agg(name, ',') FROM patients"},
	{sql: "SELECT * FROM (SELECT * FROM patients) s"},
	{sql: "SELECT name FROM patients UNION SELECT body FROM notes"},
	{sql: "DECLARE slipcur CURSOR WITH HOLD FOR SELECT * FROM patients"},
	{sql: "SELECT * FROM patients FOR UPDATE"},
	{sql: "WITH d AS (DELETE FROM canary WHERE id = 99 RETURNING 1) SELECT * FROM patients"},
	{sql: "INSERT INTO canary SELECT id FROM patients RETURNING *"},
	{sql: "SELECT name FROM patients WHERE id IN (SELECT id FROM patients) LIMIT 1000000"},
}

// attackApprovals runs slipAttempts as x (every class allowed, every rule
// fail-fast): each must be refused as needing approval, return no row, and
// leave the database as it was.
func attackApprovals(t *testing.T, f *approvalsFixture) {
	if len(slipAttempts) < 50 {
		t.Fatalf("only %d attempts", len(slipAttempts))
	}
	ctx := context.Background()
	x, _ := f.connect(t, 0, "x")
	before := dbState(t, f)
	for _, a := range slipAttempts {
		args := a.args
		if len(args) == 0 {
			// As psql sends it: one Query message, any number of statements.
			args = []any{pgx.QueryExecModeSimpleProtocol}
		}
		rows, err := x.Query(ctx, a.sql, args...)
		n := 0
		if err == nil {
			for rows.Next() {
				n++
			}
			rows.Close()
			err = rows.Err()
		}
		if n > 0 || err == nil || !hasCode(err, "42501") || !strings.Contains(err.Error(), "needs approval") {
			t.Errorf("%q: %d rows, %v; want it refused as needing approval", a.sql, n, err)
		}
		if after := dbState(t, f); after != before {
			t.Fatalf("%q changed the database:\n%s\n%s", a.sql, before, after)
		}
		if x.PgConn().IsClosed() {
			x, _ = f.connect(t, 0, "x")
		}
	}
	// The negatives: bounded statements need nobody.
	for _, sql := range []string{
		"SELECT * FROM patients LIMIT 10",
		"SELECT count(*) FROM patients",
		"UPDATE notes SET body = body WHERE id = 1",
		"DELETE FROM notes WHERE id = 12345",
		"INSERT INTO canary VALUES (4)",
		"DELETE FROM canary WHERE id = 4",
	} {
		if _, err := x.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("%q: %v; want it run", sql, err)
		}
	}
}

// dbState is what the attempts must not change: rows, relations, roles,
// columns and privileges.
func dbState(t *testing.T, f *approvalsFixture) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, "postgres://"+f.db+"_svc:cluster-pw@"+f.pgAddr+"/"+f.db+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var s string
	err = c.QueryRow(ctx, `SELECT concat_ws(' / ',
		(SELECT string_agg(id || ':' || body, ',' ORDER BY id) FROM notes),
		(SELECT count(*) FROM canary), (SELECT count(*) FROM audit_events), (SELECT count(*) FROM patients),
		(SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'),
		(SELECT count(*) FROM pg_roles),
		(SELECT count(*) FROM pg_attribute WHERE attrelid = 'notes'::regclass AND attnum > 0 AND NOT attisdropped),
		(SELECT coalesce(array_to_string(relacl, ','), '') || relowner FROM pg_class WHERE relname = 'notes'),
		(SELECT count(*) FROM pg_rules WHERE schemaname = 'public'))`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
