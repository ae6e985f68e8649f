package pgwire_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
)

// TestMaskingFollowsData covers what the mask attack table does not judge
// by itself: what the server says when a derived value fails (cut, and the
// original sealed for the auditor), masked values that a masked writer may
// not move elsewhere (the database is unchanged), and a name phigate cannot
// tell apart.
func TestMaskingFollowsData(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	// Made before any session, so that no cached catalog answer predates
	// it (the catalog learns of DDL made outside phigate within its ttl).
	if err := g.pg.Exec(ctx, g.db, "CREATE SCHEMA other; CREATE TABLE other.audit (name text); GRANT USAGE ON SCHEMA other TO PUBLIC; GRANT SELECT ON other.audit TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	reader, err := pgx.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)

	// An error that quotes the value it failed on.
	var n int
	err = reader.QueryRow(ctx, "SELECT reverse(name)::int FROM patients WHERE id = 1").Scan(&n)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22P02" {
		t.Fatalf("reverse(name)::int: %v, want 22P02", err)
	}
	if strings.Contains(pe.Message+pe.Detail+pe.Hint+pe.Where, "oneroM") || pe.Detail != "" ||
		!strings.HasPrefix(pe.Message, "invalid input syntax for type integer") {
		t.Fatalf("error = %q (detail %q)", pe.Message, pe.Detail)
	}

	// The same kind of error about a statement that reads nothing masked
	// is the server's, whole.
	err = reader.QueryRow(ctx, "SELECT 'abc'::int").Scan(&n)
	if !errors.As(err, &pe) || pe.Code != "22P02" || !strings.Contains(pe.Message, `"abc"`) {
		t.Fatalf("an error about the agent's own value: %v, want the server's message", err)
	}

	// A writer under the same profile may not copy masked values.
	writer, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	for _, sql := range []string{
		"INSERT INTO audit_log (msg) SELECT reverse(ssn) FROM patients",
		"UPDATE audit_log SET msg = (SELECT name FROM patients LIMIT 1)",
		"WITH w AS (INSERT INTO audit_log (msg) SELECT phone FROM patients RETURNING id) SELECT count(*) FROM w",
		"CREATE TABLE laundered AS SELECT ssn AS x FROM patients",
		"SELECT set_config('application_name', name, false) FROM patients LIMIT 1",
		// A view only this session sees, shadowing patients: phigate's
		// catalog would read patients.id where it hands out SSNs.
		"CREATE TEMP VIEW patients AS SELECT ssn AS id FROM public.patients",
	} {
		if _, err := writer.Exec(ctx, sql); !isSQLState(err, "42501") {
			t.Errorf("%s: %v, want 42501", sql, err)
		}
	}
	if _, err := writer.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ($1)", "constant"); err != nil {
		t.Fatalf("a write of the writer's own value: %v", err)
	}
	su, err := pgx.Connect(ctx, g.pg.DSN(pgtest.Superuser, "", g.db))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var logged int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE msg <> 'constant'").Scan(&logged); err != nil {
		t.Fatal(err)
	}
	var tables int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'laundered'").Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("CREATE TABLE AS ran: %d, %v", tables, err)
	}
	if logged != 0 {
		t.Fatalf("%d rows of masked values were copied into audit_log", logged)
	}

	// A generated column made by someone with the rights to holds SSNs
	// under another name.
	if err := g.pg.Exec(ctx, g.db, "ALTER TABLE patients ADD COLUMN ssn_digits text GENERATED ALWAYS AS (replace(ssn, '-', '')) STORED"); err != nil {
		t.Fatal(err)
	}
	var digits *string
	if err := reader.QueryRow(ctx, "SELECT ssn_digits FROM public.patients WHERE id = 1").Scan(&digits); err != nil {
		t.Fatal(err)
	}
	if digits != nil && strings.Contains(*digits, "6789") {
		t.Fatalf("a generated column over ssn: %q", *digits)
	}

	// A child table (a partition is one too) holds its parent's columns
	// under its own name: the parent's rules apply (name: redact).
	if err := g.pg.Exec(ctx, g.db, "CREATE TABLE patients_archive () INHERITS (patients); "+
		"INSERT INTO patients_archive (id, name, ssn) VALUES (9, 'Zed Quinn', '555-12-3456'); GRANT SELECT ON patients_archive TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := reader.QueryRow(ctx, "SELECT name FROM public.patients_archive WHERE id = 9").Scan(&name); err != nil || name != "[redacted]" {
		t.Fatalf("a child table's inherited column: %q, %v, want the parent's rule (redact)", name, err)
	}

	// A name two schemas hold (other.patients, made at the start): which
	// one the server picks depends on the session's search_path, which
	// phigate does not follow.
	if err := g.pg.Exec(ctx, g.db, "CREATE TABLE public.audit (name text); GRANT SELECT ON public.audit TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Exec(ctx, "SELECT name FROM audit"); !isSQLState(err, "42501") {
		t.Fatalf("an unqualified name in two schemas: %v, want 42501", err)
	}
	if _, err := reader.Exec(ctx, "SELECT name FROM public.audit"); err != nil {
		t.Fatalf("qualified: %v", err)
	}
	reader.Close(ctx)
	writer.Close(ctx)

	// The withheld error text is sealed for the auditor.
	sessions := g.sessions(t, 2)
	var evs []*record.Event
	for _, s := range sessions {
		if s[0].Identity == "reader-bot" {
			evs = s
		}
	}
	if evs == nil {
		t.Fatal("no reader-bot session")
	}
	var key *record.MaskKey
	sealed := ""
	for _, e := range evs {
		switch e.Kind {
		case record.KindMaskKey:
			key = e.Key
		case record.KindMaskProof:
			o, err := proof.NewOpener(g.auditor, key, e.Session)
			if err != nil {
				t.Fatal(err)
			}
			vals, err := o.Open(e.Proof)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				sealed += string(v) + "\n"
			}
		}
	}
	if !strings.Contains(sealed, `invalid input syntax for type integer: "oneroM ecilA"`) {
		t.Fatalf("the original error is not sealed; sealed values:\n%s", sealed)
	}
	rec, _ := os.ReadFile(filepath.Join(g.spoolDir, "sessions", evs[0].Session+".rec"))
	if strings.Contains(string(rec), "oneroM") {
		t.Fatal("the original error text is readable in the recording")
	}
}

// TestMaskedSessionIntrospects: tools' catalog queries (psql's
// meta-commands) are traced like any statement and still work under a
// masking profile.
func TestMaskedSessionIntrospects(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	for _, cmd := range []string{`\dt`, `\d patients`, `\df`, `\dv`, `\dn`, `\l`, `\du`, `\dx`, `\di`,
		"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'patients'",
		"SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"} {
		out, err := psql(t, g.dsn("reader-bot", "require"), "-c", cmd)
		if err != nil {
			t.Errorf("%s: %v\n%s", cmd, err, out)
		}
	}
}
