package pgwire_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// syncCounter returns a function that runs sql on conn and reports how many
// times the gateway waited for the recording to be durable before sending
// something upstream meanwhile, and whether phigate refused it (42501).
func syncCounter(t *testing.T, g *gateway, conn *pgx.Conn) func(sql string, mode pgx.QueryExecMode) (uint64, bool) {
	return func(sql string, mode pgx.QueryExecMode) (uint64, bool) {
		t.Helper()
		ctx := context.Background()
		before := g.srv.WriteAheadSyncs()
		rows, err := conn.Query(ctx, sql, mode)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		if err != nil && !isSQLState(err, "42501") {
			t.Fatalf("%s: %v", sql, err)
		}
		return g.srv.WriteAheadSyncs() - before, err != nil
	}
}

// Inside a transaction block, a statement whose effects can only be the
// block's goes to the server while its event is synced: the block commits
// only with a later message that waits for every event. Everything that
// could reach past the block, or end it, still waits.
func TestRunAheadInBlock(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t, gatewayOptions{cleartextLoopback: true})
	if err := g.pg.Exec(ctx, g.db, `SET ROLE phigate_svc;
		CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO audit_log (msg) VALUES (''bumped'') RETURNING 1';
		CREATE VIEW v_bump AS SELECT bump() AS b;
		CREATE FUNCTION abs(int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO audit_log (msg) VALUES (''lookalike'') RETURNING 1';
		CREATE TABLE trig (id int PRIMARY KEY, v int);
		CREATE FUNCTION trig_bump() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN PERFORM bump(); RETURN NEW; END';
		CREATE TRIGGER trig_bump BEFORE UPDATE ON trig FOR EACH ROW EXECUTE FUNCTION trig_bump();
		INSERT INTO trig VALUES (1, 0);
		CREATE TABLE defaulted (id int PRIMARY KEY, v int DEFAULT bump());
		CREATE TABLE checked (id int PRIMARY KEY, v int CHECK (bump() > 0));
		CREATE TABLE secured (id int PRIMARY KEY, v int);
		ALTER TABLE secured ENABLE ROW LEVEL SECURITY;
		ALTER TABLE secured FORCE ROW LEVEL SECURITY;
		CREATE POLICY secured_all ON secured USING (bump() > 0);
		CREATE TABLE parent (id int, v int);
		CREATE TABLE child (w int) INHERITS (parent);`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	run := syncCounter(t, g, conn)
	simple := pgx.QueryExecModeSimpleProtocol
	modes := []pgx.QueryExecMode{simple, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}
	if _, err := conn.Exec(ctx, "INSERT INTO audit_log (id, msg) VALUES (1000, 'x')"); err != nil {
		t.Fatal(err)
	}
	begin := func() {
		t.Helper()
		if n, _ := run("BEGIN", simple); n != 0 {
			t.Fatalf("BEGIN, which changes nothing, waited %d times", n)
		}
	}
	commit := func() {
		t.Helper()
		if n, _ := run("COMMIT", simple); n == 0 {
			t.Fatal("COMMIT went out before every event of its block was durable")
		}
	}

	ahead := []string{
		"SELECT name FROM patients WHERE id = 1",
		"SELECT * FROM patients WHERE id = 1 FOR UPDATE",
		"UPDATE audit_log SET msg = 'y' WHERE id = 1000", // read around
		"INSERT INTO audit_log (msg) VALUES ('in a block')",
		"DELETE FROM audit_log WHERE id = -1",
		"UPDATE patients SET notes = notes WHERE id = 2",
	}
	for _, mode := range modes {
		begin()
		for _, sql := range ahead {
			if n, refused := run(sql, mode); n != 0 || refused {
				t.Errorf("in a block, %q (mode %v) waited %d times (refused %v)", sql, mode, n, refused)
			}
		}
		commit()
	}

	// What must wait even in a block: it can reach past the block (a
	// function with an effect, however it is reached), or end it.
	wait := []string{
		"SELECT bump()",
		"SELECT * FROM v_bump",
		"SELECT abs(-1)",
		"UPDATE trig SET v = v + 1 WHERE id = 1",
		"INSERT INTO defaulted (id) VALUES (1)",
		"INSERT INTO checked VALUES (1, 1)",
		"SELECT * FROM secured",
		"UPDATE parent SET v = 1",
		"SELECT nextval('audit_log_id_seq')",
		"SAVEPOINT s1",
	}
	ran := 0
	for _, mode := range modes {
		for _, sql := range wait {
			if mode != simple && sql == "SAVEPOINT s1" {
				continue
			}
			begin() // one block each: a refusal aborts it
			n, refused := run(sql, mode)
			if n == 0 && !refused {
				t.Errorf("in a block, %q (mode %v) went to the server before its event was durable", sql, mode)
			}
			if !refused {
				ran++
			}
			run("ROLLBACK", simple)
		}
	}
	if ran < 22 { // bump() and abs() are refused under this grant
		t.Fatalf("only %d of the statements that must wait ran: the grant refused the rest, so this checks little", ran)
	}
	// BEGIN with anything else in its Query is no BEGIN alone.
	for _, sql := range []string{"BEGIN; UPDATE audit_log SET msg = 'b' WHERE id = 1000", "UPDATE audit_log SET msg = 'b' WHERE id = 1000; BEGIN"} {
		if n, _ := run(sql, simple); n == 0 {
			t.Errorf("%q went out before its event was durable", sql)
		}
		run("ROLLBACK", simple)
	}
	for _, mode := range modes {
		if n, _ := run("BEGIN", mode); n != 0 {
			t.Errorf("BEGIN (mode %v) waited %d times", mode, n)
		}
		run("ROLLBACK", simple)
	}
	for _, mode := range modes {
		begin()
		// A statement that ends the block, with one after it: the second
		// runs outside any block and must wait too.
		if n, _ := run("SELECT 1; COMMIT", simple); n == 0 {
			t.Error("a Query ending the block went out before its events were durable")
		}
		if n, _ := run("UPDATE audit_log SET msg = 'z' WHERE id = 1000", mode); n == 0 {
			t.Errorf("an UPDATE after the block ended (mode %v) went out before its event was durable", mode)
		}
	}

	// A trigger created in another session's open block: the catalog
	// cannot see it until that block commits, so what it read meanwhile
	// must not outlive the commit.
	other, err := pgx.Connect(ctx, g.dsn("owner-ci", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE later (id int PRIMARY KEY, v int); INSERT INTO later VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "CREATE TRIGGER later_bump BEFORE UPDATE ON later FOR EACH ROW EXECUTE FUNCTION trig_bump()"); err != nil {
		t.Fatal(err)
	}
	third, err := pgx.Connect(ctx, g.dsn("owner-ci", "disable")) // a session that has run no DDL
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close(ctx)
	run3 := syncCounter(t, g, third)
	run3("BEGIN", simple) // the catalog reads what runs code again, without the trigger
	if n, _ := run3("UPDATE audit_log SET msg = 'w' WHERE id = 1000", simple); n != 0 {
		t.Errorf("an UPDATE of a plain table waited %d times", n)
	}
	run3("COMMIT", simple)
	if _, err := other.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	run3("BEGIN", simple)
	if n, _ := run3("UPDATE later SET v = v + 1 WHERE id = 1", simple); n == 0 {
		t.Error("an UPDATE of a table whose trigger committed meanwhile went out before its event was durable")
	}
	run3("COMMIT", simple)

	// A pipeline: COMMIT, then an UPDATE sent before COMMIT's answer. The
	// UPDATE runs outside the block and must wait for its event.
	begin()
	pc := conn.PgConn()
	p := pc.StartPipeline(ctx)
	p.SendQueryParams("COMMIT", nil, nil, nil, nil)
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	before := g.srv.WriteAheadSyncs()
	p.SendQueryParams("UPDATE audit_log SET msg = 'p' WHERE id = 1000", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := p.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			break
		}
		switch rr := r.(type) {
		case *pgconn.ResultReader:
			if _, err := rr.Close(); err != nil {
				t.Fatal(err)
			}
		case *pgconn.PipelineSync:
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if g.srv.WriteAheadSyncs() == before {
		t.Error("an UPDATE pipelined after COMMIT went out before its event was durable")
	}
}
