package pgwire_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/session/record"
)

// Under a grant with read_ahead, proven reads go to the server without
// waiting for their event to be durable (their output still waits); every
// statement that could change anything still waits, however it is
// dressed as a read. Without read_ahead every command waits.
func TestReadAhead(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t, gatewayOptions{readAhead: true, cleartextLoopback: true})
	// A view whose column is a function with an effect: a SELECT of it
	// writes.
	if err := g.pg.Exec(ctx, g.db, `SET ROLE phigate_svc;
		CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO audit_log (msg) VALUES (''bumped'') RETURNING 1';
		CREATE VIEW v_bump AS SELECT bump() AS b;
		CREATE FUNCTION abs(int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO audit_log (msg) VALUES (''lookalike'') RETURNING 1';`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	simple := pgx.QueryExecModeSimpleProtocol
	// run returns how many times sql waited for durability before going
	// to the server, and whether phigate refused it (then it never went).
	run := func(sql string, mode pgx.QueryExecMode) (uint64, bool) {
		t.Helper()
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
	for _, sql := range []string{
		"SELECT name FROM patients WHERE id = 1",
		"SELECT count(*) FROM patients",
		"SELECT p.name, a.msg FROM patients p LEFT JOIN audit_log a ON a.id = p.id",
	} {
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeExec} {
			if n, refused := run(sql, mode); n != 0 || refused {
				t.Errorf("proven read %q (mode %v) waited %d times (refused %v)", sql, mode, n, refused)
			}
		}
	}
	ran := 0
	for _, sql := range []string{
		"SELECT * FROM v_bump", // a view calling a function that writes
		"SELECT bump()",        // the function itself
		"SELECT abs(-1)",       // a look-alike of an allowlisted built-in
		"SELECT * FROM patients WHERE id = 1 FOR UPDATE", // row locks
		"SELECT nextval('audit_log_id_seq')",
		"SELECT set_config('application_name', 'x', false)",
		"WITH d AS (DELETE FROM audit_log WHERE id = -1 RETURNING *) SELECT * FROM d",
		"INSERT INTO audit_log (msg) VALUES ('plain write')",
		"SELECT name FROM patients WHERE id = 1; DELETE FROM audit_log WHERE id = -1",
	} {
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeExec} {
			if mode != simple && sql == "SELECT name FROM patients WHERE id = 1; DELETE FROM audit_log WHERE id = -1" {
				continue // one statement per Parse
			}
			n, refused := run(sql, mode)
			if n == 0 && !refused {
				t.Errorf("%q (mode %v) went to the server before its event was durable", sql, mode)
			}
			if !refused {
				ran++
			}
		}
	}
	if ran < 10 {
		t.Fatalf("only %d of the statements that must wait ran: the grant refused the rest, so this checks little", ran)
	}
	// A write read around (before and after rows) runs in phigate's own
	// transaction block, whose COMMIT waits for every event.
	if _, err := conn.Exec(ctx, "INSERT INTO audit_log (id, msg) VALUES (1000, 'x')"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeExec} {
		if n, refused := run("UPDATE audit_log SET msg = 'y' WHERE id = 1000", mode); n < 1 || refused {
			t.Errorf("an UPDATE read around (mode %v) waited %d times, refused %v; want phigate's COMMIT to wait", mode, n, refused)
		}
	}
	// Once the session may have made objects the catalog cannot see, no
	// read is proven.
	if n, _ := run("CREATE TEMP VIEW tv AS SELECT 1 AS b", simple); n == 0 {
		t.Error("DDL went out before its event was durable")
	}
	if n, _ := run("SELECT * FROM tv", simple); n == 0 {
		t.Error("a read of a temporary view went out before its event was durable")
	}
	if n, _ := run("SELECT name FROM patients WHERE id = 2", simple); n == 0 {
		t.Error("a read after DDL went out before its event was durable")
	}
	conn.Close(ctx)

	// The sessions' start events say how their commands were made durable.
	reader, err := pgx.Connect(ctx, g.dsn("reader-bot", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	reader.Close(ctx)
	got := map[string]string{}
	for _, evs := range g.sessions(t, 2) {
		if len(evs) > 0 && evs[0].Start != nil {
			got[evs[0].Start.Grant] = evs[0].Start.Durability
		}
	}
	if got["owners"] != record.DurabilityReadAhead || got["readers"] != record.DurabilityOutput {
		t.Fatalf("durability in the start events: %v", got)
	}
}

// Without read_ahead, reads wait like every other command, and the start
// event says so.
func TestWriteAheadByDefault(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t, gatewayOptions{cleartextLoopback: true})
	conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		before := g.srv.WriteAheadSyncs()
		if _, err := conn.Exec(ctx, "SELECT name FROM patients WHERE id = 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if g.srv.WriteAheadSyncs() == before {
			t.Fatal("a read went out before its event was durable without read_ahead")
		}
	}
	// A write read around runs in phigate's own transaction block, whose
	// COMMIT waits for every event (TestRunAheadInBlock,
	// TestSnapshotRecordingFailureFailsClosed).
	if _, err := conn.Exec(ctx, "INSERT INTO audit_log (id, msg) VALUES (1000, 'x')"); err != nil {
		t.Fatal(err)
	}
	before := g.srv.WriteAheadSyncs()
	if _, err := conn.Exec(ctx, "UPDATE audit_log SET msg = 'y' WHERE id = 1000", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if n := g.srv.WriteAheadSyncs() - before; n < 1 {
		t.Fatalf("an UPDATE read around waited %d times; want everything durable before phigate's COMMIT", n)
	}
	conn.Close(ctx)
	evs := only(t, g.sessions(t, 1))
	if evs[0].Start == nil || evs[0].Start.Durability != record.DurabilityCommand {
		t.Fatalf("start event: %+v", evs[0].Start)
	}
}
