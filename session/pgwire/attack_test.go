package pgwire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/internal/pgtest"
)

// attackCase is one hostile move by an agent holding only reader-bot's token
// (grant "readers": read and export, hipaa masking). Every case gets the
// arena's invariants (see finish in attack_harness_test.go): the database
// is unchanged, no advisory lock is left, the attacker's sessions are still
// read-only, the bystander (writer-ci) is undisturbed and got no
// notification, a fresh session still works and is masked, every session's
// recording verifies and ends, the server ran nothing the recording does not
// hold as run, no write reached the read-only upstream wall, no raw PHI
// reached the attacker, and COPY data it sent is recorded. A new case is one
// entry.
type attackCase struct {
	name  string
	class string // the weakness it probes, for the report
	// setup prepares the database as its owner or superuser would have,
	// before the baseline is taken.
	setup func(t *testing.T, a *arena)
	// victim makes the bystander run a query blocked on a harness lock
	// during the attack, so that a cancel of it shows.
	victim bool
	// attack is what the agent does. What it is told does not matter.
	attack func(t *testing.T, a *arena)
	// check holds the case's own invariants beyond the defaults.
	check []invariant
	opts  gatewayOptions
	// readOnlyWallOK: the case expects the read-only upstream session, not
	// phigate's classification, to stop a write (phigate cannot see what a
	// view's functions do; the upstream session is read-only for that).
	readOnlyWallOK bool
	// isolate runs the case in a child test process: it may crash the node,
	// and a crash must be reported as this case's failure, not end the suite.
	isolate bool
}

// attackWorkers is how many cases run at once: a case mostly waits (on
// fsyncs of the spool and the server, and on its clients).
const attackWorkers = 6

func TestAttacks(t *testing.T) {
	child := os.Getenv("PHIGATE_ATTACK_CHILD") != ""
	useAttackLogPrefix(t)
	cases := make(chan attackCase)
	pristine := make(chan arenaDB, len(attackCases))
	var wg sync.WaitGroup
	for range attackWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tc := range cases {
				t.Run(tc.name, func(t *testing.T) { runAttack(t, tc, child, pristine) })
			}
		}()
	}
	for _, tc := range attackCases {
		cases <- tc
	}
	close(cases)
	wg.Wait()
}

func runAttack(t *testing.T, tc attackCase, child bool, pristine chan arenaDB) {
	if tc.isolate && !child {
		runIsolated(t, tc.name)
		return
	}
	var reuse *arenaDB
	select {
	case d := <-pristine:
		reuse = &d
	default:
	}
	var a *arena
	// Registered first, so it runs after the gateway has stopped.
	t.Cleanup(func() {
		if !t.Failed() && tc.setup == nil && a != nil {
			pristine <- arenaDB{db: a.db, role: a.role}
		}
	})
	a = newArena(t, tc.opts, reuse)
	a.wallOK = tc.readOnlyWallOK
	if tc.setup != nil {
		tc.setup(t, a)
	}
	a.begin()
	if tc.victim {
		a.holdVictim()
	}
	tc.attack(t, a)
	a.finish(tc.check)
}

// useAttackLogPrefix adds the database to the shared server's log lines
// for the duration of the test (see attackLogPrefix).
func useAttackLogPrefix(t *testing.T) {
	pg := pgtest.Shared(t)
	ctx := context.Background()
	set := func(sql string) {
		if err := pg.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
		if err := pg.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	set("ALTER SYSTEM SET log_line_prefix = '" + attackLogPrefix + "'")
	t.Cleanup(func() { set("ALTER SYSTEM RESET log_line_prefix") })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgx.Connect(ctx, pg.DSN(pgtest.Superuser, "", "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var v string
		err = c.QueryRow(ctx, "SHOW log_line_prefix").Scan(&v)
		c.Close(ctx)
		if err == nil && v == attackLogPrefix {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log_line_prefix stays %q", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runIsolated runs one case in a child process of this test binary.
func runIsolated(t *testing.T, name string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttacks$/^"+regexp.QuoteMeta(name)+"$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), "PHIGATE_ATTACK_CHILD=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	text := string(out)
	if i := strings.Index(text, "panic: "); i >= 0 {
		end := min(len(text), i+600)
		t.Errorf("the node crashed (a panic ended every session of the process) after %v:\n%s", time.Since(start).Round(time.Millisecond), text[i:end])
		return
	}
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "attack") && strings.Contains(l, ".go:") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	t.Errorf("isolated case failed (%v):\n%s", err, strings.Join(lines, "\n"))
}

var attackCases = []attackCase{
	// ---- Lexer disagreement: standard_conforming_strings off ----
	{name: "scs_off_hidden_update", class: "lexer", attack: hiddenAttack("UPDATE patients SET notes = 'pwned' WHERE id = 3")},
	{name: "scs_off_hidden_do_block", class: "lexer", attack: hiddenAttack("DO $d$ BEGIN INSERT INTO audit_log (msg) VALUES ('from DO'); END $d$")},
	{name: "scs_off_hidden_create_view", class: "lexer", attack: hiddenAttack("CREATE VIEW leak AS SELECT * FROM patients")},
	{name: "scs_off_hidden_alter_role_set", class: "lexer", attack: hiddenAttack("ALTER ROLE CURRENT_USER SET statement_timeout = 1")},
	{name: "scs_off_hidden_alter_role_password", class: "lexer", attack: hiddenAttack("ALTER ROLE CURRENT_USER PASSWORD 'pwned'")},
	{name: "scs_off_comment_instead_of_dollar", class: "lexer", attack: sqlAttack(
		"SET standard_conforming_strings = off",
		`SELECT 'a\' /* ' ; SET default_transaction_read_only = off ; -- */`,
		`SELECT 'a\' /* ' ; DELETE FROM audit_log ; -- */`)},
	{name: "scs_off_nested_comment", class: "lexer", attack: sqlAttack(
		"SET standard_conforming_strings = off",
		`SELECT 'a\' /* /* */ ' ; SET default_transaction_read_only = off ; -- */`,
		`SELECT 'a\' /* /* */ ' ; INSERT INTO audit_log (msg) VALUES ('nested') ; -- */`)},
	{name: "scs_off_tagged_dollar_quote", class: "lexer", attack: sqlAttack(
		"SET standard_conforming_strings = off",
		`SELECT 'a\' , $t$ ' ; SET default_transaction_read_only = off ; -- $t$`,
		`SELECT 'a\' , $t$ ' ; UPDATE patients SET phone = NULL ; -- $t$`)},
	{name: "scs_off_spelled_of", class: "lexer", attack: sqlAttack(
		"SET standard_conforming_strings TO 'of'",
		hideSCS("SET default_transaction_read_only = off"), hideSCS("DELETE FROM audit_log"))},
	{name: "scs_off_set_local_in_transaction", class: "lexer", attack: sqlAttack(
		"BEGIN", "SET LOCAL standard_conforming_strings = off",
		`SET application_name = 'a\' , $$ ' ; SET transaction_read_only = off ; UPDATE patients SET notes = 'local' ; -- $$`,
		"COMMIT")},
	{name: "scs_off_hidden_function_extended", class: "lexer", attack: func(t *testing.T, a *arena) {
		c := a.mustAttacker(nil)
		runSimple(c, "SET standard_conforming_strings = off")
		runExtended(c, `SELECT 'a\' , $$ ' , pg_advisory_lock(13) -- $$`)
	}},
	{name: "scs_off_via_psql", class: "lexer", attack: func(t *testing.T, a *arena) {
		out, _ := psql(t, a.g.dsn("reader-bot", "disable"),
			"-c", "SET standard_conforming_strings = off",
			"-c", hideSCS("SET default_transaction_read_only = off"),
			"-c", hideSCS("INSERT INTO audit_log (msg) VALUES ('psql')"))
		a.mu.Lock()
		a.seen.WriteString(out)
		a.mu.Unlock()
	}},
	{name: "scs_off_startup_param", class: "lexer", attack: func(t *testing.T, a *arena) {
		if c, err := a.attacker(map[string]string{"standard_conforming_strings": "off"}); err == nil {
			runSimple(c, hideSCS("SET default_transaction_read_only = off"), hideSCS("DELETE FROM audit_log"))
		}
	}},
	{name: "scs_off_startup_options", class: "lexer", attack: func(t *testing.T, a *arena) {
		if c, err := a.attacker(map[string]string{"options": "-c standard_conforming_strings=off"}); err == nil {
			runSimple(c, hideSCS("SET default_transaction_read_only = off"), hideSCS("DELETE FROM audit_log"))
		}
	}},

	// ---- Lexer disagreement: client encodings in which a byte swallows a backslash ----
	{name: "sjis_set_client_encoding", class: "encoding", attack: mbAttack(nil, "SET client_encoding = 'SJIS'", 0x95, "UPDATE patients SET notes = $q$sjis$q$ WHERE id = 3")},
	{name: "sjis_alias_set_names", class: "encoding", attack: mbAttack(nil, "SET NAMES 'Shift_JIS'", 0x95, "DELETE FROM audit_log")},
	{name: "big5_set_names", class: "encoding", attack: mbAttack(nil, "SET NAMES 'BIG5'", 0xA4, "DELETE FROM audit_log")},
	{name: "gbk_startup_param", class: "encoding", attack: mbAttack(map[string]string{"client_encoding": "GBK"}, "", 0x95, "INSERT INTO audit_log (msg) VALUES ($q$gbk$q$)")},
	{name: "gb18030_set_to", class: "encoding", attack: mbAttack(nil, "SET client_encoding TO 'gb18030'", 0x95, "UPDATE patients SET dob = NULL")},
	{name: "sjis_startup_options", class: "encoding", attack: mbAttack(map[string]string{"options": "-c client_encoding=SJIS"}, "", 0x95, "DELETE FROM audit_log")},
	{name: "uhc_has_no_backslash_trail_byte", class: "encoding", attack: mbAttack(nil, "SET client_encoding = 'UHC'", 0x95, "DELETE FROM audit_log")},
	{name: "sjis_set_local", class: "encoding", attack: func(t *testing.T, a *arena) {
		primeCache(t, a)
		runSimple(a.mustAttacker(nil), "BEGIN", "SET LOCAL client_encoding = 'SJIS'", hideMB(0x95, "SELECT pg_advisory_lock(41)"), "COMMIT")
	}},

	// ---- The classification cache ----
	{name: "cache_answers_unparsable_by_normalised_text", class: "cache", attack: sqlAttack(
		"SELECT 'x'", "SET client_encoding = 'SJIS'", hideMB(0x95, "SELECT lo_create(4242999)"))},
	{name: "cache_unprimed_unparsable_is_refused", class: "cache", attack: sqlAttack(
		"SET client_encoding = 'SJIS'", hideMB(0x95, "SELECT lo_create(4242998)"))},
	{name: "cache_answers_parse_message", class: "cache", attack: func(t *testing.T, a *arena) {
		primeCache(t, a)
		r, err := a.raw("reader-bot", map[string]string{"client_encoding": "SJIS"})
		if err != nil {
			return // refused at startup: nothing ran
		}
		r.run(nil, mParse("", "SELECT E'\x95\\' , pg_advisory_lock(42) -- '"), mBind("", ""), mExecute(""), mSync())
		r.terminate()
	}},
	{name: "invalid_utf8_under_utf8", class: "cache", attack: sqlAttack("SELECT 'x'", "SELECT '\xff' ; DELETE FROM audit_log")},

	// ---- SQL run from strings ----
	{name: "query_to_xml_set_config", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('select set_config(''default_transaction_read_only'', ''off'', false)', true, false, '')`)},
	{name: "query_to_xml_dollar_quoted_set_config", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml($q$select set_config('default_transaction_read_only', 'off', false)$q$, true, false, '')`)},
	{name: "query_to_xml_terminate_victim", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('select pg_terminate_backend(pid) from pg_stat_activity where application_name = ''victim'' and datname = current_database()', true, false, '')`)},
	{name: "query_to_xml_cancel_victim", class: "sql in strings", victim: true, attack: sqlAttack(
		`SELECT query_to_xml('select pg_cancel_backend(pid) from pg_stat_activity where application_name = ''victim'' and datname = current_database()', true, false, '')`)},
	{name: "query_to_xml_large_object", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('select lo_from_bytea(0, ''x'')', true, false, '')`)},
	{name: "query_to_xml_advisory_lock", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('select pg_advisory_lock(5)', true, false, '')`)},
	{name: "query_to_xml_computed_text", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('sel' || 'ect pg_advisory_lock(' || 6 || ')', true, false, '')`)},
	{name: "query_to_xml_notify", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('select pg_notify(''` + notifyChannel + `'', ''x'')', true, false, '')`)},
	{name: "query_to_xml_and_xmlschema_lo_create", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml_and_xmlschema('select lo_create(0)', true, false, '')`)},
	{name: "ts_stat_set_config", class: "sql in strings", attack: sqlAttack(
		`SELECT * FROM ts_stat('select set_config(''default_transaction_read_only'', ''off'', false)::tsvector')`)},
	{name: "ts_rewrite_advisory_lock", class: "sql in strings", attack: sqlAttack(
		`SELECT ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''b''::tsquery from (select pg_advisory_lock(7)) s')`)},
	{name: "cursor_to_xml_runs_the_cursor", class: "sql in strings", attack: sqlAttack(
		"BEGIN", "DECLARE c CURSOR FOR SELECT lo_from_bytea(0, 'x')", "SELECT cursor_to_xml('c', 10, false, false, '')", "COMMIT")},
	{name: "query_to_xml_reads_phi_unmasked", class: "sql in strings", attack: sqlAttack(
		`SELECT query_to_xml('select * from patients', true, false, '')`)},
	{name: "table_to_xml_reads_phi_unmasked", class: "sql in strings", attack: sqlAttack(
		`SELECT table_to_xml('patients', true, false, '')`)},
	{name: "schema_to_xml_reads_phi_unmasked", class: "sql in strings", attack: sqlAttack(
		`SELECT schema_to_xml('public', true, false, '')`)},
	{name: "database_to_xml_reads_phi_unmasked", class: "sql in strings", attack: sqlAttack(
		`SELECT database_to_xml(true, false, '')`)},

	// ---- EXPLAIN options as PostgreSQL reads them ----
	{name: "explain_analyze_false_then_true", class: "explain", attack: sqlAttack(
		"EXPLAIN (ANALYZE false, ANALYZE true) UPDATE patients SET notes = 'pwned' WHERE id = 3")},
	{name: "explain_analyze_string_TRUE", class: "explain", attack: sqlAttack("EXPLAIN (ANALYZE 'TRUE') DELETE FROM audit_log")},
	{name: "explain_analyze_string_mixed_case", class: "explain", attack: sqlAttack(
		"EXPLAIN (ANALYZE 'On', COSTS off) INSERT INTO audit_log (msg) VALUES ('x')")},
	{name: "explain_analyse_spelling", class: "explain", attack: sqlAttack("EXPLAIN (ANALYSE) DELETE FROM audit_log")},
	{name: "explain_analyze_integer", class: "explain", attack: sqlAttack("EXPLAIN (ANALYZE 1) DELETE FROM audit_log")},
	{name: "explain_analyze_identifier_true", class: "explain", attack: sqlAttack(`EXPLAIN (ANALYZE "true") DELETE FROM audit_log`)},
	{name: "explain_analyze_bare_last", class: "explain", attack: sqlAttack(
		"EXPLAIN (ANALYZE false, ANALYZE) CREATE TABLE leak AS SELECT * FROM patients")},
	{name: "explain_analyze_off_on_writable_cte", class: "explain", attack: sqlAttack(
		"EXPLAIN (ANALYZE off, ANALYZE on) WITH d AS (DELETE FROM audit_log RETURNING *) SELECT * FROM d")},
	{name: "explain_analyze_select_for_update", class: "explain", attack: sqlAttack(
		"EXPLAIN (ANALYZE 'tRuE') SELECT * FROM patients FOR UPDATE")},
	{name: "explain_analyze_function", class: "explain", attack: sqlAttack("EXPLAIN (ANALYZE 'TRUE') SELECT lo_from_bytea(0, 'x')")},
	{name: "explain_analyze_execute_prepared", class: "explain", attack: sqlAttack(
		"PREPARE q AS SELECT lo_create(0)", "EXPLAIN (ANALYZE 'TRUE') EXECUTE q")},
	{name: "explain_analyze_extended_protocol", class: "explain", attack: extAttack(
		"EXPLAIN (ANALYZE false, ANALYZE true) DELETE FROM audit_log")},

	// ---- Functions with effects ----
	{name: "fn_lo_from_bytea", class: "functions", attack: sqlAttack("SELECT lo_from_bytea(0, 'x')")},
	{name: "fn_lo_create", class: "functions", attack: sqlAttack("SELECT lo_create(0)")},
	{name: "fn_lo_unlink_existing", class: "functions", attack: sqlAttack(fmt.Sprintf("SELECT lo_unlink(%d)", existingLO))},
	{name: "fn_lo_put_existing", class: "functions", attack: sqlAttack(fmt.Sprintf("SELECT lo_put(%d, 0, 'pwned')", existingLO))},
	{name: "fn_advisory_lock_session", class: "functions", attack: sqlAttack("SELECT pg_advisory_lock(1)")},
	{name: "fn_advisory_xact_lock_open_tx", class: "functions", attack: sqlAttack("BEGIN", "SELECT pg_advisory_xact_lock(2)")},
	{name: "fn_try_advisory_lock_shared_in_values", class: "functions", attack: sqlAttack("VALUES (pg_try_advisory_lock_shared(3))")},
	{name: "fn_advisory_lock_per_row", class: "functions", attack: sqlAttack("SELECT count(*) FROM patients WHERE pg_try_advisory_lock(id)")},
	{name: "fn_advisory_lock_in_from", class: "functions", attack: sqlAttack("SELECT * FROM pg_advisory_lock(22)")},
	{name: "fn_advisory_lock_in_cte", class: "functions", attack: sqlAttack("WITH x AS (SELECT pg_advisory_lock(21)) SELECT * FROM x")},
	{name: "fn_pg_notify", class: "functions", attack: sqlAttack("SELECT pg_notify('" + notifyChannel + "', 'x')")},
	{name: "fn_pg_notify_extended_params", class: "functions", attack: extAttack("SELECT pg_notify($1, $2)", notifyChannel, "x")},
	{name: "notify_statement", class: "functions", attack: sqlAttack("NOTIFY " + notifyChannel + ", 'x'")},
	{name: "fn_nextval", class: "functions", attack: sqlAttack("SELECT nextval('audit_log_id_seq')")},
	{name: "fn_setval", class: "functions", attack: sqlAttack("SELECT setval('audit_log_id_seq', 1000)")},
	{name: "fn_cancel_backend_direct", class: "functions", victim: true, attack: sqlAttack(
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim' AND datname = current_database()")},
	{name: "fn_terminate_backend_direct", class: "functions", attack: sqlAttack(
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim' AND datname = current_database()")},
	{name: "fn_read_file_ls_dir_lo_import", class: "functions", attack: sqlAttack(
		"SELECT pg_read_file('PG_VERSION')", "SELECT pg_ls_dir('.')", "SELECT lo_import('/etc/hostname')")},
	{name: "fn_dblink_exec", class: "functions",
		setup: func(t *testing.T, a *arena) { a.suExec("CREATE EXTENSION IF NOT EXISTS dblink") },
		attack: func(t *testing.T, a *arena) {
			host, port, _ := net.SplitHostPort(a.g.pg.Addr())
			runSimple(a.mustAttacker(nil), fmt.Sprintf("SELECT dblink_exec('host=%s port=%s dbname=%s user=postgres', 'DELETE FROM audit_log')", host, port, a.db))
		}},
	{name: "fn_in_copy_to_stdout", class: "functions", attack: func(t *testing.T, a *arena) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = a.mustAttacker(nil).PgConn().CopyTo(ctx, &bytes.Buffer{}, "COPY (SELECT lo_from_bytea(0, 'x')) TO STDOUT")
	}},
	{name: "fn_in_cursor_fetch", class: "functions", attack: sqlAttack(
		"BEGIN", "DECLARE c CURSOR FOR SELECT lo_create(0)", "FETCH ALL FROM c", "COMMIT")},
	{name: "fn_in_prepare_execute", class: "functions", attack: sqlAttack("PREPARE q AS SELECT lo_create(0)", "EXECUTE q")},
	{name: "fn_fastpath_function_call", class: "functions", attack: func(t *testing.T, a *arena) {
		var oid uint32
		if err := a.su.QueryRow(a.ctx, "SELECT 'lo_creat'::regproc::oid").Scan(&oid); err != nil {
			t.Fatal(err)
		}
		r := a.mustRaw(nil)
		r.run(nil, &pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{binary.BigEndian.AppendUint32(nil, 0x20000)}, ResultFormatCode: 1}, mSync())
		r.terminate()
	}},
	{name: "fn_shadowed_by_exact_type_match", class: "functions",
		setup:  ownerSetup("CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT pg_advisory_lock(2222); SELECT 'x'::text $f$"),
		attack: sqlAttack("SELECT lower(phone) FROM patients")},
	{name: "fn_shadowed_by_search_path", class: "functions",
		setup:  ownerSetup("CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT pg_advisory_lock(2223); SELECT 'x'::text $f$"),
		attack: sqlAttack("SET search_path = public, pg_catalog", "SELECT lower('X')")},
	{name: "fn_shadowed_by_startup_search_path", class: "functions",
		setup: ownerSetup("CREATE FUNCTION public.upper(text) RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT pg_advisory_lock(2224); SELECT 'x'::text $f$"),
		attack: func(t *testing.T, a *arena) {
			if c, err := a.attacker(map[string]string{"search_path": "public, pg_catalog"}); err == nil {
				runSimple(c, "SELECT upper('x')")
			}
		}},
	{name: "view_hides_writing_function", class: "functions", readOnlyWallOK: true,
		setup: ownerSetup(`CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS $f$ UPDATE audit_log SET msg = 'bumped'; SELECT 1 $f$;
			CREATE VIEW v_bump AS SELECT bump() AS n`),
		attack: sqlAttack("SELECT * FROM v_bump")},

	// ---- Writes in read shapes ----
	{name: "writable_cte", class: "write shapes", attack: sqlAttack("WITH d AS (DELETE FROM audit_log RETURNING *) SELECT * FROM d")},
	{name: "select_for_update_in_subquery", class: "write shapes", attack: sqlAttack(
		"BEGIN", "SELECT * FROM (SELECT id FROM patients FOR UPDATE) s")},
	{name: "select_into", class: "write shapes", attack: sqlAttack("SELECT * INTO leak FROM patients")},
	{name: "create_table_as", class: "write shapes", attack: sqlAttack("CREATE TABLE leak AS SELECT * FROM patients")},
	{name: "declare_with_hold_for_update", class: "write shapes", attack: sqlAttack(
		"DECLARE c CURSOR WITH HOLD FOR SELECT * FROM patients FOR UPDATE")},
	{name: "merge_and_lock", class: "write shapes", attack: sqlAttack(
		"MERGE INTO audit_log t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE", "BEGIN", "LOCK TABLE patients")},

	// ---- Ways to change the session's settings ----
	{name: "set_read_only_off_spellings", class: "settings", attack: sqlAttack(
		"SET default_transaction_read_only = off", "SET SESSION default_transaction_read_only TO 'of'",
		"SET default_transaction_read_only TO DEFAULT", "RESET default_transaction_read_only",
		"SET default_transaction_read_only FROM CURRENT", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
		"RESET ALL", "DISCARD ALL", "INSERT INTO audit_log (msg) VALUES ('after')")},
	{name: "set_transaction_read_write", class: "settings", attack: sqlAttack(
		"BEGIN", "SET LOCAL transaction_read_only = off", "INSERT INTO audit_log (msg) VALUES ('tx')", "COMMIT",
		"BEGIN READ WRITE", "INSERT INTO audit_log (msg) VALUES ('rw')", "COMMIT",
		"START TRANSACTION READ ONLY, READ WRITE", "INSERT INTO audit_log (msg) VALUES ('last wins')", "COMMIT")},
	{name: "set_config_spellings", class: "settings", attack: sqlAttack(
		"SELECT set_config('default_transaction_read_only', 'off', false)",
		"SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false)",
		`SELECT "set_config"('default_transaction_read_only', 'off', false)`,
		`SELECT U&"set\005fconfig"('default_transaction_read_only', 'off', false)`,
		"SELECT * FROM set_config('default_transaction_read_only', 'off', false)",
		"PREPARE s AS SELECT set_config('default_transaction_read_only', 'off', false)", "EXECUTE s")},
	{name: "alter_role_and_database_set", class: "settings", attack: func(t *testing.T, a *arena) {
		c := a.mustAttacker(nil)
		var db string
		_ = c.QueryRow(context.Background(), "SELECT current_database()").Scan(&db)
		runSimple(c, "ALTER ROLE CURRENT_USER SET default_transaction_read_only = off",
			"ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_read_only = off",
			"ALTER ROLE CURRENT_USER IN DATABASE "+pgx.Identifier{db}.Sanitize()+" SET standard_conforming_strings = off")
	}},

	// ---- Startup parameters ----
	{name: "startup_read_only_asked_by_client", class: "startup", readOnlyWallOK: true, attack: func(t *testing.T, a *arena) {
		// writer-ci's client asks for a read-only session; it must not get
		// a read-write one.
		if c, err := a.pgxAs("writer-ci", map[string]string{"default_transaction_read_only": "on"}, false); err == nil {
			runSimple(c, "INSERT INTO audit_log (msg) VALUES ('client asked read-only')")
		}
	}},
	{name: "startup_options_search_path_lost", class: "startup",
		setup: ownerSetup("CREATE SCHEMA staging; CREATE TABLE staging.audit_log (id int, msg text)"),
		attack: func(t *testing.T, a *arena) {
			// A writer's client scopes itself to a staging schema; if the
			// option is dropped, its cleanup hits the real table.
			if c, err := a.pgxAs("writer-ci", map[string]string{"options": "-c search_path=staging"}, false); err == nil {
				runSimple(c, "DELETE FROM audit_log")
			}
		}},
	{name: "startup_unknown_parameter_refused", class: "startup", attack: refusedConnect(map[string]string{"no_such_setting": "1"})},
	{name: "startup_read_only_off_refused_or_ignored", class: "startup", attack: func(t *testing.T, a *arena) {
		for _, p := range []map[string]string{
			{"default_transaction_read_only": "off"},
			{"options": "-c default_transaction_read_only=off"},
			{"options": "-c transaction_read_only=off -c role=postgres"},
		} {
			if c, err := a.attacker(p); err == nil {
				runSimple(c, "INSERT INTO audit_log (msg) VALUES ('startup')")
			}
		}
	}},

	// ---- Statement and portal state: phigate's view against the server's ----
	{name: "portal_rebind_refused_then_rollback_to_savepoint", class: "protocol state", attack: rebindAfterSavepoint(
		msgList{mParse("phi", phiSelect), mBind("p", "phi"), mSync(), mQuery("SAVEPOINT sp")},
		msgList{mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync()},
		msgList{mQuery("ROLLBACK TO SAVEPOINT sp")})},
	{name: "portal_rebind_nested_savepoints", class: "protocol state", attack: rebindAfterSavepoint(
		msgList{mQuery("SAVEPOINT a"), mParse("phi", phiSelect), mBind("p", "phi"), mSync(), mQuery("SAVEPOINT b")},
		msgList{mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync()},
		msgList{mQuery("ROLLBACK TO SAVEPOINT b")})},
	{name: "portal_rebind_after_release", class: "protocol state", attack: rebindAfterSavepoint(
		msgList{mQuery("SAVEPOINT a"), mParse("phi", phiSelect), mBind("p", "phi"), mSync(), mQuery("RELEASE SAVEPOINT a"), mQuery("SAVEPOINT b")},
		msgList{mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync()},
		msgList{mQuery("ROLLBACK TO b")})},
	{name: "portal_close_and_rebind_skipped_after_error", class: "protocol state", attack: rebindAfterSavepoint(
		msgList{mParse("phi", phiSelect), mBind("p", "phi"), mSync(), mQuery("SAVEPOINT sp"), mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mSync()},
		msgList{mExecute("no_such_portal"), mCloseP("p"), mBind("p", "x"), mSync()},
		msgList{mQuery("ROLLBACK TO SAVEPOINT sp")})},
	{name: "portal_rebind_all_extended", class: "protocol state", attack: func(t *testing.T, a *arena) {
		step := func(sql string) msgList { return msgList{mParse("", sql), mBind("", ""), mExecute("")} }
		r := a.mustRaw(nil)
		m := append(step("BEGIN"), mParse("phi", phiSelect), mBind("p", "phi"))
		r.run(nil, append(append(m, step("SAVEPOINT sp")...), mSync())...)
		r.run(nil, mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync())
		r.run(nil, append(step("ROLLBACK TO SAVEPOINT sp"), mExecute("p"), mSync())...)
		r.run(nil, append(step("COMMIT"), mSync())...)
		r.terminate()
	}},
	{name: "portal_suspended_then_rebound", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.run(nil, mParse("phi", phiSelect), mBind("p", "phi"), &pgproto3.Execute{Portal: "p", MaxRows: 1}, mSync())
		r.query("SAVEPOINT sp")
		r.run(nil, mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync())
		r.query("ROLLBACK TO SAVEPOINT sp")
		r.run(nil, mExecute("p"), mSync())
		r.query("COMMIT")
		r.terminate()
	}},
	{name: "holdable_cursor_rebind_refused", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("DECLARE p CURSOR WITH HOLD FOR " + phiSelect)
		r.run(nil, mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync())
		r.run(nil, mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "sql_close_then_declare_same_name", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.run(nil, mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync())
		r.query("CLOSE p")
		r.query("DECLARE p CURSOR FOR " + phiSelect)
		r.run(nil, mExecute("p"), mSync())
		r.query("COMMIT")
		r.terminate()
	}},
	{name: "sql_close_all_and_declare_in_one_query", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.run(nil, mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync())
		r.query("CLOSE ALL; DECLARE p CURSOR FOR " + phiSelect)
		r.run(nil, mExecute("p"), mSync())
		r.query("COMMIT")
		r.terminate()
	}},
	{name: "stale_portal_after_commit_and_chain", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.run(nil, mParse("x", "SELECT 1 AS x"), mDescribeS("x"), mBind("p", "x"), mSync())
		r.query("COMMIT AND CHAIN")
		r.query("COMMIT")
		r.query("DECLARE p CURSOR WITH HOLD FOR " + phiSelect)
		r.run(nil, mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "declare_then_protocol_execute", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.query("DECLARE c CURSOR FOR " + phiSelect)
		r.run(nil, mExecute("c"), mSync())
		r.query("COMMIT")
		r.terminate()
	}},
	{name: "sql_prepare_then_protocol_bind", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("PREPARE s AS " + phiSelect)
		r.run(nil, mBind("p", "s"), mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "protocol_parse_then_sql_execute", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", phiSelect), mSync())
		r.query("EXECUTE s")
		r.terminate()
	}},
	{name: "deallocate_unknown_name", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", phiSelect), mDescribeS("s"), mSync())
		r.query("DEALLOCATE no_such_statement")
		r.run(nil, mBind("p", "s"), mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "deallocate_then_sql_prepare_same_name", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", "SELECT 1 AS x"), mDescribeS("s"), mSync())
		r.query("DEALLOCATE s")
		r.query("PREPARE s AS " + phiSelect)
		r.run(nil, mBind("p", "s"), mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "discard_all_then_reuse_names", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", "SELECT 1 AS x"), mDescribeS("s"), mSync())
		r.query("DISCARD ALL")
		r.run(nil, mParse("s", phiSelect), mSync())
		r.run(nil, mBind("p", "s"), mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "close_and_reparse_skipped_after_error", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", phiSelect), mSync())
		r.run(nil, mExecute("no_such_portal"), mCloseS("s"), mParse("s", "SELECT 1 AS x"), mDescribeS("s"), mSync())
		r.run(nil, mBind("p", "s"), mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "close_and_reparse_in_one_pipeline", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.run(nil, mParse("s", phiSelect), mBind("p", "s"), mCloseS("s"), mParse("s", "SELECT 1 AS x"), mDescribeS("s"), mExecute("p"), mSync())
		r.query("COMMIT")
		r.terminate()
	}},
	{name: "duplicate_statement_name", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", phiSelect), mSync())
		r.run(nil, mParse("s", "SELECT 1 AS x"), mDescribeS("s"), mBind("p", "s"), mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "bind_to_statement_whose_parse_failed", class: "protocol state", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("", phiSelect), mSync())
		r.run(nil, mParse("bad", "SELECT no_such_column FROM patients"), mBind("p", "bad"), mExecute("p"), mSync())
		r.run(nil, mParse("", "DELETE FROM audit_log"), mBind("", ""), mExecute(""), mSync())
		r.run(nil, mBind("", ""), mExecute(""), mSync())
		r.terminate()
	}},
	{name: "parse_is_recorded", class: "protocol state", check: []invariant{recordedSQL(phiSelect)}, attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", phiSelect), mDescribeS("s"), mSync())
		r.terminate()
	}},

	// ---- COPY ----
	{name: "copy_from_stdin_smuggled", class: "copy", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("SET standard_conforming_strings = off")
		r.query(hideSCS("SET default_transaction_read_only = off"))
		r.run([]byte("smuggled row 7f3a\n"), mQuery(hideSCS("COPY audit_log (msg) FROM STDIN")))
		r.terminate()
	}},
	{name: "copy_data_after_denied_copy", class: "copy", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		data := []byte("denied copy row 91c2\n")
		a.copyMarkers = append(a.copyMarkers, data)
		r.run(nil, mQuery("COPY audit_log (msg) FROM STDIN"), &pgproto3.CopyData{Data: data}, &pgproto3.CopyDone{})
		r.query("SELECT 1")
		r.terminate()
	}},
	{name: "copy_to_stdout_smuggled", class: "copy", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("SET standard_conforming_strings = off")
		r.query(hideSCS("COPY patients TO STDOUT"))
		r.query("SELECT 1")
		r.terminate()
	}},

	// ---- One agent must not take the node down ----
	{name: "huge_statement_11MiB", class: "limits", check: []invariant{bigCommandRecorded()}, attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("SELECT '" + strings.Repeat("x", 11<<20) + "'")
		r.terminate()
	}},
	{name: "statement_over_size_limit", class: "limits", opts: gatewayOptions{maxMessageBytes: 8 << 20}, check: []invariant{refusedRecorded()}, attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("SELECT '" + strings.Repeat("x", 11<<20) + "'")
		r.terminate()
	}},
	{name: "oversized_message_mid_pipeline", class: "limits", opts: gatewayOptions{maxMessageBytes: 1 << 20}, attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.run(nil, mParse("s", phiSelect), &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", Parameters: [][]byte{bytes.Repeat([]byte("y"), 2<<20)}}, mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "malformed_bind_mid_pipeline", class: "limits", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.fe.Send(mParse("s", phiSelect))
		_ = r.fe.Flush()
		body := []byte("p\x00s\x00\x00\x05") // claims 5 parameter format codes, has none
		_ = r.write(append(append([]byte{'B'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))...), body...))
		r.run(nil, mExecute("p"), mSync())
		r.terminate()
	}},
	{name: "terminate_mid_pipeline", class: "limits", attack: func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		for _, m := range (msgList{mParse("s", phiSelect), mBind("p", "s"), mExecute("p"), &pgproto3.Terminate{}}) {
			r.fe.Send(m)
		}
		_ = r.fe.Flush()
		drainRaw(r)
	}},
	{name: "deeply_nested_expression", class: "limits", attack: sqlAttack(
		"SELECT " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000))},
	{name: "cancel_during_session_close", class: "limits", isolate: true, attack: cancelRace},
}
