package pgwire_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/record"
)

// rawPHI are fixture values that must never reach a reader-bot client.
var rawPHI = []string{"123-45-6789", "987-65-4321", "Alice Moreno", "Bob Tran", "1961-03-14", "4400123", "415-555-0198"}

// wire is a protocol-level client of the gateway: messages are sent as
// given, answers read until a number of ReadyForQuery.
type wire struct {
	t    *testing.T
	conn *pgconn.PgConn
	fe   *pgproto3.Frontend
	rows [][]byte // every DataRow value received
	errs []string // SQLSTATEs received
}

func dialWire(t *testing.T, g *gateway, identity string) *wire {
	t.Helper()
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, g.dsn(identity, "require"))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &wire{t: t, conn: conn, fe: conn.Frontend()}
}

func (w *wire) send(msgs ...pgproto3.FrontendMessage) {
	w.t.Helper()
	for _, m := range msgs {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		w.t.Fatal(err)
	}
}

// until reads answers until n ReadyForQuery have arrived.
func (w *wire) until(n int) {
	w.t.Helper()
	_ = w.conn.Conn().SetReadDeadline(time.Now().Add(15 * time.Second))
	for n > 0 {
		msg, err := w.fe.Receive()
		if err != nil {
			w.t.Fatalf("receive: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			for _, v := range m.Values {
				w.rows = append(w.rows, bytes.Clone(v))
			}
		case *pgproto3.ErrorResponse:
			w.errs = append(w.errs, m.Code)
		case *pgproto3.ReadyForQuery:
			n--
		}
	}
}

func (w *wire) query(sql string) {
	w.t.Helper()
	w.send(&pgproto3.Query{String: sql})
	w.until(1)
}

// noRawPHI fails if any fixture PHI value reached the client.
func (w *wire) noRawPHI() {
	w.t.Helper()
	for _, v := range w.rows {
		for _, phi := range rawPHI {
			if bytes.Contains(v, []byte(phi)) {
				w.t.Fatalf("raw PHI %q reached the client", phi)
			}
		}
	}
}

// executed returns the SQL recorded for every extended-protocol execute.
func executed(evs []*record.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == record.KindCommand && e.Command.Postgres.Step == record.StepExecute {
			out = append(out, e.Command.Postgres.SQL)
		}
	}
	return out
}

const phiQuery = "SELECT name, ssn, dob, phone, mrn, notes FROM patients ORDER BY id"

// The attack: a portal rebound under a savepoint. The server
// refuses the second Bind, so p still runs the PHI query: phigate must
// record that query and mask its rows.
func TestPortalRebindUnderSavepoint(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		name := "step by step"
		if pipelined {
			name = "pipelined"
		}
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{})
			w := dialWire(t, g, "reader-bot")
			steps := [][]pgproto3.FrontendMessage{
				{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Parse{Name: "s1", Query: phiQuery}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s1"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "SAVEPOINT a"}},
				{&pgproto3.Parse{Name: "s2", Query: "SELECT 1 AS x"}, &pgproto3.Describe{ObjectType: 'S', Name: "s2"},
					&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s2"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "ROLLBACK TO SAVEPOINT a"}},
				{&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "COMMIT"}},
			}
			if pipelined {
				var all []pgproto3.FrontendMessage
				for _, s := range steps {
					all = append(all, s...)
				}
				w.send(all...)
				w.until(len(steps))
			} else {
				for _, s := range steps {
					w.send(s...)
					w.until(1)
				}
			}
			if len(w.rows) < 4*6 {
				t.Fatalf("got %d values, want the 4 rows of the PHI query", len(w.rows))
			}
			w.noRawPHI()
			if !strings.Contains(strings.Join(w.errs, ","), "42P03") { // duplicate_cursor
				t.Fatalf("errors = %v, want the server's refusal of the second Bind", w.errs)
			}
			w.conn.Close(context.Background())
			if got := executed(only(t, g.sessions(t, 1))); len(got) != 1 || got[0] != phiQuery {
				t.Fatalf("recorded executes = %q, want the PHI query", got)
			}
		})
	}
}

// DEALLOCATE of another name leaves the statement; DEALLOCATE of its own
// name removes it, and a Bind to it is refused as the server would.
func TestDeallocateTracksNames(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	w := dialWire(t, g, "reader-bot")
	w.send(&pgproto3.Parse{Name: "s", Query: phiQuery}, &pgproto3.Sync{})
	w.until(1)
	w.query("DEALLOCATE nosuch")
	w.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	w.until(1)
	w.query("DEALLOCATE s")
	w.send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	w.until(1)
	w.noRawPHI()
	if len(w.rows) != 4*6 {
		t.Fatalf("values = %d, want one run of the PHI query", len(w.rows))
	}
	if want := "26000,26000"; strings.Join(w.errs, ",") != want { // DEALLOCATE nosuch, then the Bind
		t.Fatalf("errors = %v, want %s", w.errs, want)
	}
	w.conn.Close(context.Background())
	if got := executed(only(t, g.sessions(t, 1))); len(got) != 1 || got[0] != phiQuery {
		t.Fatalf("recorded executes = %q", got)
	}
}

// SQL-level PREPARE and DECLARE share the protocol's namespaces: a Bind of
// a PREPAREd name and an Execute of a cursor by name run what they name,
// recorded and masked.
func TestSQLObjectsThroughTheProtocol(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	w := dialWire(t, g, "reader-bot")
	w.query("PREPARE q AS SELECT ssn, name FROM patients")
	w.send(&pgproto3.Bind{PreparedStatement: "q"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	w.until(1)
	w.query("BEGIN")
	w.query("DECLARE c CURSOR FOR SELECT dob, mrn, phone FROM patients")
	w.send(&pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
	w.until(1)
	w.query("COMMIT")
	w.query("DECLARE h CURSOR WITH HOLD FOR SELECT notes, name FROM patients")
	w.send(&pgproto3.Execute{Portal: "h"}, &pgproto3.Sync{})
	w.until(1)
	w.query("ROLLBACK") // outside a block: a warning, nothing ends
	w.send(&pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{})
	w.until(1)
	w.noRawPHI()
	if len(w.rows) != 4*2+4*3+4*2 {
		t.Fatalf("values = %d, want 28", len(w.rows))
	}
	if len(w.errs) != 1 || w.errs[0] != "34000" { // c ended with its transaction
		t.Fatalf("errors = %v, want the refusal of the ended cursor", w.errs)
	}
	w.conn.Close(context.Background())
	got := executed(only(t, g.sessions(t, 1)))
	want := []string{"PREPARE q AS SELECT ssn, name FROM patients", "DECLARE c CURSOR FOR SELECT dob, mrn, phone FROM patients",
		"DECLARE h CURSOR WITH HOLD FOR SELECT notes, name FROM patients", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("recorded executes = %q\nwant %q", got, want)
	}
}

// A Parse that phigate refuses is recorded, and the rest of its batch is
// not forwarded (the server would skip it); the next batch runs.
func TestRefusedParseSkipsItsBatch(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	w := dialWire(t, g, "reader-bot")
	w.send(&pgproto3.Parse{Name: "d", Query: "DELETE FROM patients"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	w.until(2)
	if strings.Join(w.errs, ",") != "42501" || len(w.rows) != 1 || string(w.rows[0]) != "1" {
		t.Fatalf("errors %v, rows %q", w.errs, w.rows)
	}
	w.conn.Close(context.Background())
	var parses []string
	for _, e := range only(t, g.sessions(t, 1)) {
		if e.Kind == record.KindCommand && e.Command.Postgres.Step == record.StepParse {
			parses = append(parses, e.Command.Decision+" "+e.Command.Postgres.SQL)
		}
	}
	if strings.Join(parses, "|") != "deny DELETE FROM patients|allow SELECT 1" {
		t.Fatalf("recorded parses = %q", parses)
	}
	var n int
	if err := g.pg.Exec(context.Background(), g.db, "DO $$BEGIN IF (SELECT count(*) FROM patients) <> 4 THEN RAISE 'rows deleted'; END IF; END$$"); err != nil {
		t.Fatalf("patients changed: %v (%d)", err, n)
	}
}

// Startup parameters reach the upstream when the grant allows the SET they
// amount to; the rest is refused with PostgreSQL's own errors.
func TestStartupParameters(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	show := func(t *testing.T, identity, extra, setting string) (string, error) {
		t.Helper()
		conn, err := pgconn.Connect(ctx, g.dsn(identity, "require")+" "+extra)
		if err != nil {
			return "", err
		}
		defer conn.Close(ctx)
		res, err := conn.Exec(ctx, "SHOW "+setting).ReadAll()
		if err != nil {
			return "", err
		}
		return string(res[0].Rows[0][0]), nil
	}
	for _, tt := range []struct {
		identity, extra, setting, want, code string
	}{
		{"writer-ci", "", "default_transaction_read_only", "off", ""},
		{"writer-ci", "options='-c default_transaction_read_only=on'", "default_transaction_read_only", "on", ""},
		{"reader-bot", "options='-c default_transaction_read_only=off'", "", "", "42501"},
		{"writer-ci", "options='-c search_path=pg_catalog,public -c statement_timeout=1234'", "statement_timeout", "1234ms", ""},
		{"writer-ci", "options='--search-path=public'", "search_path", "public", ""},
		{"writer-ci", "options='-c search_path=public,pg_catalog'", "", "", "42501"},
		{"writer-ci", "options='-F'", "", "", "42501"},
		{"writer-ci", "options='-c no_such_setting=1'", "", "", "42704"},
		{"writer-ci", "application_name=x client_encoding=SJIS", "", "", "0A000"},
		{"writer-ci", "options='-c standard_conforming_strings=off'", "", "", "0A000"},
		{"writer-ci", "options='-c role=postgres'", "", "", "42501"},
		{"writer-ci", "options='-c statement_timeout=banana'", "", "", "22023"},
		// A parameter of its own overrides the same one in options, as in
		// PostgreSQL.
		{"writer-ci", "options='-c statement_timeout=5 -c statement_timeout=7' statement_timeout=9", "statement_timeout", "9ms", ""},
		{"writer-ci", "options='-c statement_timeout=5 -c statement_timeout=7'", "statement_timeout", "7ms", ""},
	} {
		got, err := show(t, tt.identity, tt.extra, tt.setting)
		if tt.code != "" {
			if !isSQLState(err, tt.code) {
				t.Errorf("%s %s: %v, want %s", tt.identity, tt.extra, err, tt.code)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s %s: SHOW %s = %q, %v; want %q", tt.identity, tt.extra, tt.setting, got, err, tt.want)
		}
	}
}

// phigate's syntax errors read as PostgreSQL's, with the position.
func TestSyntaxErrorPosition(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT 1 FRO patients").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42601" || pe.Message != `syntax error at or near "patients"` || pe.Position != 14 {
		t.Fatalf("err = %#v", err)
	}
}

// A statement refused for its size is recorded as refused, with its start,
// and the session closes recorded.
func TestOversizedStatementRecorded(t *testing.T) {
	g := startGateway(t, gatewayOptions{cleartextLoopback: true, maxMessageBytes: 10 << 20})
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, g.dsn("reader-bot", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	sql := "SELECT '" + strings.Repeat("x", 11<<20) + "'"
	_, err = conn.Exec(ctx, sql).ReadAll()
	if !isSQLState(err, "08P01") {
		t.Fatalf("11 MiB statement: %v, want 08P01", err)
	}
	conn.Close(ctx)
	evs := only(t, g.sessions(t, 1))
	var refused *record.Command
	for _, e := range evs {
		if e.Kind == record.KindCommand {
			refused = e.Command
		}
	}
	if refused == nil || refused.Decision != "deny" || !strings.HasPrefix(refused.Text(), "SELECT 'xxx") || !strings.Contains(refused.Reason, "too large") {
		t.Fatalf("refused command = %+v", refused)
	}
	if evs[len(evs)-1].Kind != record.KindSessionEnd {
		t.Fatalf("last event %s", evs[len(evs)-1].Kind)
	}
}

// Cancels racing their session's end: none may bring the node down, none is
// sent unrecorded, and every recording ends.
func TestCancelRacesSessionEnd(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	bystander, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close(ctx)
	const n = 30
	for i := 0; i < n; i++ {
		conn, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for j := 0; j < 5; j++ {
				_ = conn.CancelRequest(ctx)
			}
		}()
		conn.Close(ctx)
		<-done
	}
	if _, err := bystander.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	bystander.Close(ctx)
	for id, evs := range g.sessions(t, n+1) {
		ended := false
		for _, e := range evs {
			if ended {
				t.Fatalf("session %s: %s after session.end", id, e.Kind)
			}
			ended = e.Kind == record.KindSessionEnd
		}
	}
}

// RESET ALL and DISCARD ALL go back to the session's start values, so a
// read-only session stays read-only.
func TestResetKeepsReadOnly(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	w := dialWire(t, g, "reader-bot")
	w.query("RESET ALL")
	w.query("DISCARD ALL")
	w.query("SET default_transaction_read_only TO DEFAULT")
	w.query("RESET default_transaction_read_only")
	w.query("SHOW default_transaction_read_only")
	if len(w.errs) != 0 || len(w.rows) != 1 || string(w.rows[0]) != "on" {
		t.Fatalf("errors %v, rows %q", w.errs, w.rows)
	}
}

// COPY (DELETE ... RETURNING) TO STDOUT is a write: refused to a reader
// with export, run for a writer, its rows masked as any COPY's.
func TestCopyOfAWrite(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	const copyDelete = "COPY (DELETE FROM patients WHERE id = 1 RETURNING id, ssn) TO STDOUT"
	out, err := psql(t, g.dsn("reader-bot", "require"), "-c", copyDelete)
	if err == nil || !strings.Contains(out, "42501") && !strings.Contains(out, "does not allow write") {
		t.Fatalf("reader: %v %s", err, out)
	}
	out, err = psql(t, g.dsn("writer-ci", "require"), "-c", copyDelete)
	if err != nil || out != "1\t***-**-6789\n" {
		t.Fatalf("writer: %v %q", err, out)
	}
}

// A function or operator someone defines outside pg_catalog under a
// built-in's name can be what search_path resolves an unqualified call to:
// such calls need admin. Functions of extensions declared immutable or
// stable count as built-ins.
func TestLookalikesOfBuiltins(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	if err := g.pg.Exec(ctx, g.db, "CREATE EXTENSION pg_trgm"); err != nil { // defines % for text, stable
		t.Fatal(err)
	}
	w := dialWire(t, g, "reader-bot")
	w.query("SELECT 5 % 2, lower('X')")
	if len(w.errs) != 0 {
		t.Fatalf("built-ins refused: %v", w.errs)
	}
	writer, err := pgconn.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	if _, err := writer.Exec(ctx, `CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql VOLATILE AS $$SELECT 'x'$$;
		CREATE FUNCTION public.eq(varchar, varchar) RETURNS bool LANGUAGE sql AS $$SELECT true$$;
		CREATE OPERATOR public.= (leftarg = varchar, rightarg = varchar, function = public.eq)`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ sql, code string }{
		{"SELECT lower(phone) FROM patients", "42501"},
		{"SELECT pg_catalog.lower(phone) FROM patients", ""},
		{"SELECT id FROM patients WHERE phone = '1'", "42501"},
		{"SELECT id FROM patients WHERE id OPERATOR(pg_catalog.=) 1", ""},
		{"SELECT CASE phone WHEN '1' THEN 1 END FROM patients", "42501"},
	} {
		w.errs = nil
		w.query(tt.sql)
		if got := strings.Join(w.errs, ","); got != tt.code {
			t.Errorf("%s: errors %q, want %q", tt.sql, got, tt.code)
		}
	}
}

// Empty queries (clients' pings) are one answer for no statement.
func TestEmptyQueries(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	w := dialWire(t, g, "reader-bot")
	for _, q := range []string{"", ";", "-- ping", "/* x */ ;;"} {
		w.query(q)
		w.send(&pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		w.until(1)
	}
	w.query("SELECT 1")
	if len(w.errs) != 0 || len(w.rows) != 1 {
		t.Fatalf("errors %v, rows %q", w.errs, w.rows)
	}
}
