package pgwire_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/internal/pgtest"
)

// TestMaskAttacks is the attack table of masking (issue 7): an agent holding
// only reader-bot's token (grant "readers": read and export, masking
// profile hipaa) tries to read seeded PHI in forms the masking does not
// recognise. Each case runs in an arena of the attack harness
// (attack_harness_test.go) and gets its invariants (the node still serves
// a fresh, masked session; the bystander is undisturbed; every recording
// verifies and ends; the server ran nothing the recording does not hold;
// the database is unchanged), and one more: no seeded PHI value, in any of
// the forms phiNeedles lists or split across rows and columns (findPHI),
// is in anything the attacker's clients received, in any message type. A
// case passes on either acceptable outcome it states: the statement is
// refused, or what comes back carries no PHI. It asserts bytes received,
// never what a message says.
//
// Out of scope by design, and not asserted: inference through WHERE, JOIN,
// ORDER BY, LIMIT or timing, e.g. counting the rows where substr(ssn, 1,
// 1) = '1', or ordering masked rows by dob. Such a query returns no PHI
// value, only facts about one, and no masking of results can stop it.
func TestMaskAttacks(t *testing.T) {
	if len(maskCases) < 80 {
		t.Fatalf("the table has %d cases; issue 7 asks for at least 80", len(maskCases))
	}
	useAttackLogPrefix(t)
	cases := make(chan maskCase)
	pool := make(chan arenaDB, len(maskCases))
	var wg sync.WaitGroup
	for range attackWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tc := range cases {
				t.Run(tc.name, func(t *testing.T) { runMaskAttack(t, tc, pool) })
			}
		}()
	}
	for _, tc := range maskCases {
		cases <- tc
	}
	close(cases)
	wg.Wait()
}

// TestMaskAttacksSeeRawPHI runs every attack of the table straight against
// PostgreSQL, as the role the gateway logs in with, where nothing masks:
// each must find PHI in what its client received, except the few that
// cannot by their nature (blindByNature). It keeps the table honest: a
// case that passes through the gateway passes because no PHI came, not
// because the search could not see the route's output.
func TestMaskAttacksSeeRawPHI(t *testing.T) {
	pg := pgtest.Shared(t)
	ctx := context.Background()
	db := newMaskDB(t)
	login := &directLogin{addr: pg.Addr(), user: db.role, password: "direct-" + randHex(8), db: db.db}
	if err := pg.AddUser(ctx, pgtest.User{Name: login.user, Password: login.password, Auth: pgtest.AuthPassword}); err != nil {
		t.Fatal(err)
	}
	su, err := pgx.Connect(ctx, pg.DSN(pgtest.Superuser, "", db.db))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	blindByNature := map[string]string{
		"expr_length":        "lengths only",
		"stats_pg_statistic": "pg_statistic is for superusers; the server refuses the role",
	}
	for _, tc := range maskCases {
		t.Run(tc.name, func(t *testing.T) {
			a := &arena{t: t, su: su, db: db.db, ctx: ctx}
			m := &maskArena{arena: a, direct: login}
			tc.attack(t, m)
			a.mu.Lock()
			closers := a.closers
			a.mu.Unlock()
			for _, c := range slices.Backward(closers) {
				c()
			}
			streams := m.received()
			leaks := findPHI(streams, maskNeedles)
			why, blind := blindByNature[tc.name]
			switch {
			case blind && len(leaks) > 0:
				t.Errorf("listed as unable to show PHI (%s), but PHI was found: %v", why, leaks[0])
			case !blind && len(leaks) == 0:
				t.Errorf("straight from PostgreSQL, where nothing masks, no PHI was found in what the client received (%s): the search is blind to this route",
					receivedSummary(streams))
			}
		})
	}
}

// maskCase is one route by which PHI could reach reader-bot.
type maskCase struct {
	name  string
	route string // the kind of route, for the report
	// accept states the outcomes the case accepts; any other outcome than
	// PHI reaching the client (or the node failing others) is one of them.
	accept string
	attack func(*testing.T, *maskArena)
	// check holds the case's own invariants beyond the defaults.
	check []invariant
	// readOnlyWallOK: see attackCase.readOnlyWallOK.
	readOnlyWallOK bool
}

// The outcomes a case accepts.
const (
	refusedOrClean = "the statement is refused (42501) or its rows carry no PHI in any form"
	failsClean     = "the statement fails (42501 or the server's error) and no error field carries PHI in any form"
	silentOrClean  = "the statement is refused, or what is delivered (notification, parameter, setting) carries no PHI in any form"
)

// maskFixture is what a DBA (the database owner) has made of the clinic
// database before the agent comes: views and functions over the masked
// table that rename its columns, a materialized copy, functions that raise
// their argument as a notice or an error, functions whose body phigate
// cannot read through (PL/pgSQL, dynamic SQL), a domain and a composite
// type, and statistics.
const maskFixture = `
CREATE VIEW v_people AS SELECT id AS pid, name AS who, ssn AS tax_id, dob AS born, phone AS tel, mrn AS chart, notes AS memo FROM patients;
CREATE VIEW v_derived AS SELECT id AS pid, replace(ssn, '-', '') AS tin, to_char(dob, 'YYYYMMDD') AS ymd, lower(name) AS handle FROM patients;
CREATE VIEW v_nested AS SELECT pid, who AS label, tax_id AS ref FROM v_people;
CREATE MATERIALIZED VIEW mv_people AS SELECT id AS pid, name AS who, ssn AS tax_id, dob AS born FROM patients;
CREATE FUNCTION people() RETURNS TABLE (pid int, who text, tax_id text, born date) LANGUAGE sql STABLE
	AS $f$ SELECT id, name, ssn::text, dob FROM patients ORDER BY id $f$;
CREATE FUNCTION tax_id_of(int) RETURNS text LANGUAGE sql STABLE AS $f$ SELECT ssn::text FROM patients WHERE id = $1 $f$;
CREATE FUNCTION passthrough(text) RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT $1 $f$;
CREATE FUNCTION shout(text) RETURNS text LANGUAGE plpgsql STABLE AS $f$ BEGIN RAISE NOTICE 'value %', $1; RETURN 'ok'; END $f$;
CREATE FUNCTION complain(text) RETURNS text LANGUAGE plpgsql STABLE
	AS $f$ BEGIN RAISE EXCEPTION 'rejected' USING DETAIL = $1, HINT = reverse($1); END $f$;
CREATE DOMAIN tin AS text;
CREATE TYPE pair AS (a text, b text);
CREATE FUNCTION tin_of_plpgsql(int) RETURNS text LANGUAGE plpgsql STABLE
	AS $f$ BEGIN RETURN (SELECT ssn FROM patients WHERE id = $1); END $f$;
CREATE FUNCTION run_query(text) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $1; END $f$;
ANALYZE patients;
`

// newMaskDB creates a clinic database with maskFixture, owned by a role of
// its own, before any gateway is in front of it.
func newMaskDB(t *testing.T) arenaDB {
	t.Helper()
	pg := pgtest.Shared(t)
	ctx := context.Background()
	d := arenaDB{db: "mask_" + randHex(6), role: "atk_" + randHex(5)}
	if err := pg.AddUser(ctx, pgtest.User{Name: d.role, Password: "owner-" + randHex(12)}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, d.db, d.role); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, d.db, "SET ROLE "+pgx.Identifier{d.role}.Sanitize()+";"+clinicSchema+maskFixture); err != nil {
		t.Fatal(err)
	}
	return d
}

// runMaskAttack runs one case in an arena over a fixture database, a used
// one when a case before left it unchanged (most cases leak today and fail,
// but change nothing: the fingerprint, not the verdict, decides).
func runMaskAttack(t *testing.T, tc maskCase, pool chan arenaDB) {
	var db arenaDB
	select {
	case db = <-pool:
	default:
		db = newMaskDB(t)
	}
	var unchanged bool
	// Registered first, so it runs after the gateway has stopped.
	t.Cleanup(func() {
		if unchanged {
			pool <- db
		}
	})
	a := newArena(t, gatewayOptions{}, &db)
	a.wallOK = tc.readOnlyWallOK
	m := &maskArena{arena: a}
	a.begin()
	tc.attack(t, m)
	a.finish(append(slices.Clone(tc.check), noPHIReceived(m, tc.accept), invariant{check: func(t *testing.T, a *arena) {
		unchanged = maps.Equal(a.before, a.fingerprint())
	}}))
}

// noPHIReceived: no needle, in any form, is in what the attacker's clients
// received (see findPHI).
func noPHIReceived(m *maskArena, accept string) invariant {
	return invariant{check: func(t *testing.T, a *arena) {
		streams := m.received()
		got := receivedSummary(streams)
		t.Logf("received: %s", got)
		leaks := findPHI(streams, maskNeedles)
		if len(leaks) == 0 {
			return
		}
		const show = 12
		var lines []string
		for i, l := range leaks {
			if i == show {
				lines = append(lines, fmt.Sprintf("... and %d more", len(leaks)-show))
				break
			}
			lines = append(lines, l.String())
		}
		t.Errorf("PHI reached the reader-bot client in %d forms (received %s; acceptable: %s):\n\t%s",
			len(leaks), got, accept, strings.Join(lines, "\n\t"))
	}}
}

// receivedSummary sums up what the clients received: rows, copy data, errors
// with their SQLSTATEs, notices, notifications, parameters after startup.
func receivedSummary(streams [][]byte) string {
	counts := map[string]int{}
	codes := map[string]bool{}
	for _, s := range streams {
		ready := false
		for _, m := range wireMessages(s) {
			name := wireName(m.typ)
			switch m.typ {
			case 'Z':
				ready = true
			case 'D', 'd', 'A', 'V', 'N':
				counts[name]++
			case 'S':
				if ready {
					counts[name]++
				}
			case 'E':
				counts[name]++
				for _, f := range strings.Split(string(m.body), "\x00") {
					if code, ok := strings.CutPrefix(f, "C"); ok {
						codes[code] = true
					}
				}
			}
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		p := fmt.Sprintf("%d %s", counts[k], k)
		if k == "ErrorResponse" {
			p += " (" + strings.Join(slices.Sorted(maps.Keys(codes)), ", ") + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "nothing but protocol"
	}
	return strings.Join(parts, ", ")
}

// Statements the recording must hold as sent.
const (
	sqlSSNDigits = "SELECT replace(ssn, '-', '')::bigint AS n FROM patients ORDER BY id"
	sqlArrayAgg  = "SELECT array_agg(ssn ORDER BY id), array_agg(dob ORDER BY id), array_agg(name ORDER BY id) FROM patients"
	sqlCursor    = "SELECT replace(ssn, '-', ''), dob + 0, reverse(name) FROM patients ORDER BY id"
	sqlCopyText  = "COPY (SELECT reverse(name), ssn || '', dob + 0, lower(notes) FROM patients ORDER BY id) TO STDOUT"
)

var maskCases = []maskCase{
	// ---- Control: plain column references are masked today; the search must find nothing ----
	{name: "control_plain_select", route: "control", accept: refusedOrClean, attack: both(phiSelect), check: []invariant{recordedSQL(phiSelect)}},
	{name: "control_plain_select_pgx", route: "control", accept: refusedOrClean, attack: withPgx(phiSelect)},

	// ---- Expressions over masked columns ----
	{name: "expr_dob_plus_zero", route: "expression", accept: refusedOrClean, attack: both("SELECT id, dob + 0 AS d FROM patients ORDER BY id")},
	{name: "expr_dob_cast_timestamp", route: "expression", accept: refusedOrClean, attack: both("SELECT id, dob::timestamp AS t FROM patients ORDER BY id")},
	{name: "expr_dob_cast_timestamptz", route: "expression", accept: refusedOrClean, attack: both("SET TimeZone = 'UTC'", "SELECT id, dob::timestamptz AS t FROM patients ORDER BY id")},
	{name: "expr_dob_postgres_datestyle", route: "expression", accept: refusedOrClean, attack: both("SET DateStyle = 'Postgres, MDY'", "SELECT dob::timestamp, dob + 0 FROM patients ORDER BY id")},
	{name: "expr_ssn_digits_bigint", route: "expression", accept: refusedOrClean, attack: both(sqlSSNDigits), check: []invariant{recordedSQL(sqlSSNDigits)}},
	{name: "expr_ssn_digits_numeric_float", route: "expression", accept: refusedOrClean, attack: both("SELECT replace(ssn, '-', '')::numeric AS n, replace(ssn, '-', '')::float8 AS f FROM patients ORDER BY id")},
	{name: "expr_dob_yyyymmdd_int", route: "expression", accept: refusedOrClean, attack: both("SELECT to_char(dob, 'YYYYMMDD')::int AS n FROM patients ORDER BY id")},
	{name: "expr_dob_to_char_styles", route: "expression", accept: refusedOrClean, attack: both("SELECT to_char(dob, 'MM/DD/YYYY'), to_char(dob, 'DD.MM.YYYY'), to_char(dob, 'YYYY-MM-DD') FROM patients ORDER BY id")},
	{name: "expr_extract_epoch", route: "expression", accept: refusedOrClean, attack: both("SELECT extract(epoch FROM dob) AS e FROM patients ORDER BY id")},
	{name: "expr_date_part", route: "expression", accept: refusedOrClean, attack: both("SELECT date_part('epoch', dob) AS e, date_part('epoch', dob::timestamp) AS t FROM patients ORDER BY id")},
	{name: "expr_epoch_bigint", route: "expression", accept: refusedOrClean, attack: both("SELECT extract(epoch FROM dob)::bigint, (dob - '1970-01-01'::date) * 86400 FROM patients ORDER BY id")},
	{name: "expr_dob_minus_dates", route: "expression", accept: refusedOrClean, attack: both("SELECT dob - '1900-01-01', dob - '1970-01-01'::date, dob - date '2000-01-01' FROM patients ORDER BY id")},
	{name: "expr_dob_interval", route: "expression", accept: refusedOrClean, attack: both("SELECT dob - '1900-01-01'::timestamp AS i, dob + interval '1 hour' AS t FROM patients ORDER BY id")},
	{name: "expr_ascii_every_position", route: "expression", accept: refusedOrClean, attack: both("SELECT " + positionColumns("ascii(substr(ssn, %d, 1))", 1, 11) + " FROM patients ORDER BY id")},
	{name: "expr_ascii_codes_joined", route: "expression", accept: refusedOrClean, attack: both("SELECT array_to_string(ARRAY(SELECT ascii(substr(p.ssn, n, 1)) FROM generate_series(1, 11) n), ',') FROM patients p ORDER BY id")},
	{name: "expr_translate_digits", route: "expression", accept: refusedOrClean, attack: both("SELECT translate(ssn, '01234' || '56789', 'ABCDEFGHIJ') FROM patients ORDER BY id")},
	{name: "expr_reverse", route: "expression", accept: refusedOrClean, attack: both("SELECT reverse(name), reverse(ssn), reverse(notes), reverse(dob::text) FROM patients ORDER BY id")},
	{name: "expr_lower_upper", route: "expression", accept: refusedOrClean, attack: both("SELECT lower(name), upper(name), upper(ssn), lower(notes), upper(notes) FROM patients ORDER BY id")},
	{name: "expr_initcap_and_spacing", route: "expression", accept: refusedOrClean, attack: both("SELECT initcap(notes), replace(name, ' ', '_'), replace(phone, ' ', ''), replace(notes, '-', '.') FROM patients ORDER BY id")},
	{name: "expr_length", route: "expression", accept: refusedOrClean, attack: both("SELECT length(ssn), octet_length(name), char_length(notes) FROM patients ORDER BY id")},
	{name: "expr_md5_and_substr_concat", route: "expression", accept: refusedOrClean, attack: both("SELECT md5(ssn), substr(ssn, 1, 3) || substr(ssn, 5, 2) || substr(ssn, 8, 4) FROM patients ORDER BY id")},
	{name: "expr_concat", route: "expression", accept: refusedOrClean, attack: both("SELECT concat(ssn, ''), concat_ws(' ', name, ssn), ssn || '', name || '', dob || '' FROM patients ORDER BY id")},
	{name: "expr_format", route: "expression", accept: refusedOrClean, attack: both("SELECT format('%s', ssn), format('%s/%s', name, dob), format('%I', name) FROM patients ORDER BY id")},
	{name: "expr_case_coalesce", route: "expression", accept: refusedOrClean, attack: both("SELECT CASE WHEN id > 0 THEN ssn END, coalesce(name, ''), nullif(dob, '1900-01-01'), greatest(phone, '') FROM patients ORDER BY id")},
	{name: "expr_phone_digits_bigint", route: "expression", accept: refusedOrClean, attack: both("SELECT regexp_replace(phone, '[^0-9]', '', 'g')::bigint FROM patients ORDER BY id")},
	{name: "expr_mrn_arithmetic", route: "expression", accept: refusedOrClean, attack: both("SELECT mrn + 0, mrn::text, -mrn, mrn::numeric, mrn::float8 FROM patients ORDER BY id")},
	{name: "expr_text_casts", route: "expression", accept: refusedOrClean, attack: both("SELECT ssn::text, ssn::varchar, ssn::name, name::varchar(40), notes::varchar, phone::text FROM patients ORDER BY id")},
	{name: "expr_quote_pad_trim", route: "expression", accept: refusedOrClean, attack: both("SELECT quote_literal(ssn), quote_ident(name), lpad(ssn, 15), rpad(name, 20, '.'), btrim(' ' || ssn || ' '), left(ssn, 20), right(name, 20) FROM patients ORDER BY id")},
	{name: "expr_regexp_split_part", route: "expression", accept: refusedOrClean, attack: both("SELECT regexp_replace(ssn, '-', '', 'g'), substring(name from '.*'), split_part(ssn, '-', 1) || split_part(ssn, '-', 2) || split_part(ssn, '-', 3) FROM patients ORDER BY id")},
	{name: "expr_to_hex", route: "expression", accept: refusedOrClean, attack: both("SELECT to_hex(replace(ssn, '-', '')::bigint), to_hex(to_char(dob, 'YYYYMMDD')::int) FROM patients ORDER BY id")},
	{name: "expr_overlay_collate_bpchar", route: "expression", accept: refusedOrClean, attack: both(`SELECT overlay(ssn placing '' from 1 for 0), name COLLATE "C", ssn::bpchar FROM patients ORDER BY id`)},

	// ---- A value split one character (or chunk) per column or per row ----
	{name: "split_chars_per_column_ssn", route: "split", accept: refusedOrClean, attack: both("SELECT " + positionColumns("substr(ssn, %d, 1)", 1, 11) + " FROM patients ORDER BY id")},
	{name: "split_chars_per_column_name", route: "split", accept: refusedOrClean, attack: both("SELECT " + positionColumns("substr(name, %d, 1)", 1, 12) + " FROM patients ORDER BY id")},
	{name: "split_chunks_per_column", route: "split", accept: refusedOrClean, attack: both("SELECT substr(ssn, 1, 3) AS a, substr(ssn, 5, 2) AS b, substr(ssn, 8, 4) AS c FROM patients ORDER BY id")},
	{name: "split_chars_per_row", route: "split", accept: refusedOrClean, attack: both("SELECT substr(p.ssn, g, 1) FROM patients p, generate_series(1, 11) g ORDER BY p.id, g")},
	{name: "split_ascii_per_row", route: "split", accept: refusedOrClean, attack: both("SELECT ascii(substr(p.name, g, 1)) FROM patients p, generate_series(1, 12) g ORDER BY p.id, g")},
	{name: "split_digits_per_row_int", route: "split", accept: refusedOrClean, attack: both("SELECT substr(replace(p.ssn, '-', ''), g, 1)::int FROM patients p, generate_series(1, 9) g ORDER BY p.id, g")},
	{name: "split_recursive_cte_chars", route: "split", accept: refusedOrClean, attack: both("WITH RECURSIVE r(i, c) AS (SELECT 1, substr((SELECT ssn FROM patients WHERE id = 1), 1, 1) " +
		"UNION ALL SELECT i + 1, substr((SELECT ssn FROM patients WHERE id = 1), i + 1, 1) FROM r WHERE i < 11) SELECT i, c FROM r ORDER BY i")},
	{name: "split_generate_series_index", route: "split", accept: refusedOrClean, attack: both("SELECT g, (SELECT substr(name, g, 1) FROM patients WHERE id = 1) FROM generate_series(1, 12) g")},

	// ---- Containers ----
	{name: "ctr_array_constructor", route: "container", accept: refusedOrClean, attack: both("SELECT ARRAY[ssn, name, phone, notes] FROM patients ORDER BY id")},
	{name: "ctr_array_agg", route: "container", accept: refusedOrClean, attack: both(sqlArrayAgg), check: []invariant{recordedSQL(sqlArrayAgg)}},
	{name: "ctr_string_agg", route: "container", accept: refusedOrClean, attack: both("SELECT string_agg(ssn, ',' ORDER BY id), string_agg(name, ';' ORDER BY id) FROM patients")},
	{name: "ctr_whole_row", route: "container", accept: refusedOrClean, attack: both("SELECT p FROM patients p ORDER BY id")},
	{name: "ctr_whole_row_fields", route: "container", accept: refusedOrClean, attack: both("SELECT (p).ssn, (p).name, (p).dob FROM patients p ORDER BY id")},
	{name: "ctr_row_constructor", route: "container", accept: refusedOrClean, attack: both("SELECT row(ssn, name, dob) FROM patients ORDER BY id")},
	{name: "ctr_row_as_text", route: "container", accept: refusedOrClean, attack: both("SELECT p::text FROM patients p ORDER BY id")},
	{name: "ctr_row_to_json", route: "container", accept: refusedOrClean, attack: both("SELECT row_to_json(p) FROM patients p ORDER BY id")},
	{name: "ctr_to_jsonb", route: "container", accept: refusedOrClean, attack: both("SELECT to_jsonb(p), to_json(p.ssn), to_jsonb(p.dob) FROM patients p ORDER BY id")},
	{name: "ctr_json_build_object", route: "container", accept: refusedOrClean, attack: both("SELECT json_build_object('s', ssn, 'n', name, 'd', dob), jsonb_build_array(ssn, dob, phone) FROM patients ORDER BY id")},
	{name: "ctr_jsonb_agg", route: "container", accept: refusedOrClean, attack: both("SELECT jsonb_agg(p ORDER BY id), json_agg(ssn), json_object_agg(id, name) FROM patients p")},
	{name: "ctr_table_to_xml", route: "container", accept: refusedOrClean, attack: both("SELECT table_to_xml('patients', true, false, '')")},
	{name: "ctr_query_to_xml", route: "container", accept: refusedOrClean, attack: both("SELECT query_to_xml('select ssn, name, dob from patients', true, false, '')")},
	{name: "ctr_xmlelement_xmlforest", route: "container", accept: refusedOrClean, attack: both("SELECT xmlelement(name x, ssn), xmlforest(name, ssn, dob) FROM patients ORDER BY id")},
	{name: "ctr_xmlagg", route: "container", accept: refusedOrClean, attack: both("SELECT xmlagg(xmlelement(name s, ssn || '/' || name) ORDER BY id) FROM patients")},
	{name: "ctr_array_to_string", route: "container", accept: refusedOrClean, attack: both("SELECT array_to_string(ARRAY[name, ssn], '|'), ARRAY[ssn]::text FROM patients ORDER BY id")},

	// ---- Byte encodings ----
	{name: "enc_bytea_cast", route: "encoding", accept: refusedOrClean, attack: both("SELECT ssn::bytea, name::bytea, convert_to(notes, 'UTF8') FROM patients ORDER BY id")},
	{name: "enc_bytea_escape_output", route: "encoding", accept: refusedOrClean, attack: both("SET bytea_output = 'escape'", "SELECT ssn::bytea, convert_to(name, 'UTF8') FROM patients ORDER BY id")},
	{name: "enc_base64", route: "encoding", accept: refusedOrClean, attack: both("SELECT encode(ssn::bytea, 'base64'), encode(convert_to(name, 'UTF8'), 'base64') FROM patients ORDER BY id")},
	{name: "enc_hex", route: "encoding", accept: refusedOrClean, attack: both("SELECT encode(ssn::bytea, 'hex'), upper(encode(name::bytea, 'hex')) FROM patients ORDER BY id")},
	{name: "enc_row_base64", route: "encoding", accept: refusedOrClean, attack: both("SELECT encode(convert_to(p::text, 'UTF8'), 'base64') FROM patients p ORDER BY id")},
	{name: "enc_escape_and_decode", route: "encoding", accept: refusedOrClean, attack: both("SELECT encode(ssn::bytea, 'escape'), decode(encode(name::bytea, 'hex'), 'hex') FROM patients ORDER BY id")},

	// ---- Subqueries, CTEs, set operations, LATERAL, VALUES ----
	{name: "sub_scalar", route: "subquery", accept: refusedOrClean, attack: both("SELECT (SELECT ssn FROM patients WHERE id = 1), (SELECT name FROM patients WHERE id = 2)")},
	{name: "sub_from", route: "subquery", accept: refusedOrClean, attack: both("SELECT s, n FROM (SELECT ssn AS s, name AS n FROM patients) x ORDER BY s")},
	{name: "sub_cte", route: "subquery", accept: refusedOrClean, attack: both("WITH x AS (SELECT name AS n, ssn AS s, dob AS d FROM patients) SELECT n, s, d FROM x")},
	{name: "sub_cte_recursive", route: "subquery", accept: refusedOrClean, attack: both("WITH RECURSIVE r(s, d, k) AS (SELECT ssn, dob, 0 FROM patients UNION ALL SELECT s, d, k + 1 FROM r WHERE k < 1) SELECT s, d FROM r")},
	{name: "sub_union_constant", route: "subquery", accept: refusedOrClean, attack: both("SELECT 'x' AS v UNION ALL SELECT ssn FROM patients", "SELECT name FROM patients UNION SELECT 'y'")},
	{name: "sub_union_typed_null", route: "subquery", accept: refusedOrClean, attack: both("SELECT NULL::date AS d UNION ALL SELECT dob FROM patients", "SELECT NULL::text AS t UNION ALL SELECT phone FROM patients")},
	{name: "sub_lateral", route: "subquery", accept: refusedOrClean, attack: both("SELECT l.v, l.w FROM patients p, LATERAL (SELECT p.ssn AS v, p.name AS w) l ORDER BY p.id")},
	{name: "sub_values_join", route: "subquery", accept: refusedOrClean, attack: both("SELECT v.s, v.n FROM patients p JOIN LATERAL (VALUES (p.ssn, p.name)) v(s, n) ON true ORDER BY p.id",
		"SELECT p.name, k.x FROM (VALUES (1, 'a'), (2, 'b')) k(id, x) JOIN patients p USING (id)")},
	{name: "sub_array_subquery", route: "subquery", accept: refusedOrClean, attack: both("SELECT ARRAY(SELECT ssn FROM patients ORDER BY id), ARRAY(SELECT dob FROM patients ORDER BY id)")},
	{name: "sub_intersect_except", route: "subquery", accept: refusedOrClean, attack: both("SELECT ssn FROM patients INTERSECT SELECT ssn FROM patients", "SELECT name FROM patients EXCEPT SELECT 'nobody'")},

	// ---- Views, materialized views and functions over the masked table (made by the owner) ----
	{name: "view_renamed_columns", route: "view/function", accept: refusedOrClean, attack: both("SELECT * FROM v_people ORDER BY pid")},
	{name: "view_derived_columns", route: "view/function", accept: refusedOrClean, attack: both("SELECT * FROM v_derived ORDER BY pid")},
	{name: "view_nested", route: "view/function", accept: refusedOrClean, attack: both("SELECT * FROM v_nested ORDER BY pid")},
	{name: "view_whole_row", route: "view/function", accept: refusedOrClean, attack: both("SELECT v FROM v_people v ORDER BY pid", "SELECT row_to_json(v) FROM v_people v")},
	{name: "matview", route: "view/function", accept: refusedOrClean, attack: both("SELECT * FROM mv_people ORDER BY pid")},
	{name: "fn_sql_set_returning", route: "view/function", accept: refusedOrClean, attack: both("SELECT * FROM people()")},
	{name: "fn_sql_scalar", route: "view/function", accept: refusedOrClean, attack: both("SELECT tax_id_of(1), tax_id_of(2)")},
	{name: "fn_passthrough", route: "view/function", accept: refusedOrClean, attack: both("SELECT passthrough(ssn), passthrough(name) FROM patients ORDER BY id")},
	{name: "fn_fastpath_call", route: "view/function", accept: refusedOrClean, attack: func(t *testing.T, m *maskArena) {
		oid := funcOID(t, m.arena, "tax_id_of(int)")
		r := m.raw(t)
		r.fastpath(oid, 1, 0)
		r.fastpath(oid, 2, 1)
		r.terminate()
	}},

	// ---- Cursors and SQL prepared statements ----
	{name: "cursor_fetch", route: "cursor/prepare", accept: refusedOrClean, attack: viaCursor(sqlCursor, false),
		check: []invariant{recordedSQL("DECLARE c CURSOR FOR " + sqlCursor)}},
	{name: "cursor_binary_expressions", route: "cursor/prepare", accept: refusedOrClean, attack: viaCursor("SELECT dob + 0, mrn + 0, replace(ssn, '-', '')::bigint, name || '' FROM patients ORDER BY id", true)},
	{name: "cursor_binary_plain_columns", route: "cursor/prepare", accept: refusedOrClean, attack: viaCursor("SELECT ssn, name, dob, mrn, phone FROM patients ORDER BY id", true)},
	{name: "prepare_execute", route: "cursor/prepare", accept: refusedOrClean, attack: simpleQueries("PREPARE q AS SELECT reverse(name), dob + 0, ssn || '' FROM patients ORDER BY id", "EXECUTE q")},
	{name: "prepare_execute_parameter", route: "cursor/prepare", accept: refusedOrClean, attack: simpleQueries("PREPARE q(int) AS SELECT ssn || '', name || '' FROM patients WHERE id = $1", "EXECUTE q(1)", "EXECUTE q(2)")},
	{name: "prepare_then_protocol_bind_binary", route: "cursor/prepare", accept: refusedOrClean, attack: func(t *testing.T, m *maskArena) {
		r := m.raw(t)
		r.query("PREPARE q AS SELECT dob + 0, replace(ssn, '-', '')::bigint, name || '' FROM patients ORDER BY id")
		r.run(nil, &pgproto3.Bind{PreparedStatement: "q", ResultFormatCodes: []int16{1}}, mExecute(""), mSync())
		r.terminate()
	}},

	// ---- Extended protocol, binary results ----
	{name: "ext_pgx_binary_expressions", route: "extended/binary", accept: refusedOrClean, attack: withPgx("SELECT dob + 0, extract(epoch FROM dob), replace(ssn, '-', '')::bigint, mrn + 0, ARRAY[ssn, name], row(name, dob) FROM patients ORDER BY id")},
	{name: "ext_pgx_exec_mode_text", route: "extended/binary", accept: refusedOrClean, attack: withPgx("SELECT reverse(name), ssn || '', dob::text FROM patients ORDER BY id", pgx.QueryExecModeExec)},
	{name: "ext_mixed_result_formats", route: "extended/binary", accept: refusedOrClean, attack: func(t *testing.T, m *maskArena) {
		r := m.raw(t)
		r.run(nil, mParse("", "SELECT name, dob, ssn, mrn, reverse(name), dob + 0 FROM patients ORDER BY id"),
			&pgproto3.Bind{ResultFormatCodes: []int16{0, 1, 0, 1, 0, 1}}, mExecute(""), mSync())
		r.terminate()
	}},
	{name: "ext_portal_suspended", route: "extended/binary", accept: refusedOrClean, attack: func(t *testing.T, m *maskArena) {
		r := m.raw(t)
		r.run(nil, mParse("", "SELECT dob + 0, ssn || '' FROM patients ORDER BY id"), &pgproto3.Bind{ResultFormatCodes: []int16{1}},
			&pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{MaxRows: 1}, mExecute(""), mSync())
		r.terminate()
	}},
	{name: "ext_named_statement_parameters", route: "extended/binary", accept: refusedOrClean, attack: func(t *testing.T, m *maskArena) {
		r := m.raw(t)
		r.run(nil, mParse("s", "SELECT dob + 0, ssn || '' FROM patients WHERE id = $1"),
			&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{1}}, mExecute(""),
			&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("2")}}, mExecute(""), mSync())
		r.terminate()
	}},

	// ---- COPY out ----
	{name: "copy_text_expressions", route: "copy", accept: refusedOrClean, attack: copyOut(sqlCopyText), check: []invariant{recordedSQL(sqlCopyText)}},
	{name: "copy_csv_expressions", route: "copy", accept: refusedOrClean, attack: copyOut("COPY (SELECT name || '', replace(ssn, '-', ''), to_char(dob, 'YYYYMMDD') FROM patients ORDER BY id) TO STDOUT (FORMAT csv, HEADER)")},
	{name: "copy_binary_expressions", route: "copy", accept: refusedOrClean, attack: copyOut("COPY (SELECT dob + 0, replace(ssn, '-', '')::bigint, mrn + 0, name || '' FROM patients ORDER BY id) TO STDOUT (FORMAT binary)")},
	{name: "copy_binary_plain_columns", route: "copy", accept: refusedOrClean, attack: copyOut("COPY (SELECT ssn, name, dob, mrn, phone FROM patients ORDER BY id) TO STDOUT (FORMAT binary)")},
	{name: "copy_table_binary", route: "copy", accept: refusedOrClean, attack: copyOut("COPY patients TO STDOUT (FORMAT binary)")},
	{name: "copy_view_and_split", route: "copy", accept: refusedOrClean, attack: copyOut("COPY (SELECT * FROM v_people) TO STDOUT (FORMAT csv)",
		"COPY (SELECT substr(p.ssn, g, 1) FROM patients p, generate_series(1, 11) g ORDER BY p.id, g) TO STDOUT")},

	// ---- Side channel: notifications ----
	{name: "notify_same_session", route: "notification", accept: silentOrClean, attack: notifyPayload("ssn || name", true, false)},
	{name: "notify_other_session", route: "notification", accept: silentOrClean, attack: notifyPayload("reverse(name) || to_char(dob, 'YYYYMMDD')", false, true)},
	{name: "notify_encoded_payload", route: "notification", accept: silentOrClean, attack: notifyPayload("encode(convert_to(name || ssn, 'UTF8'), 'base64')", true, true)},

	// ---- Side channel: settings and ParameterStatus ----
	{name: "param_set_config_application_name", route: "parameter status", accept: silentOrClean, attack: simpleQueries(
		"SELECT set_config('application_name', ssn, false) FROM patients WHERE id = 1", "SHOW application_name", "SELECT current_setting('application_name')")},
	{name: "param_set_config_subquery", route: "parameter status", accept: silentOrClean, attack: simpleQueries(
		"SELECT set_config('application_name', (SELECT name FROM patients WHERE id = 1), false)", "SELECT 1")},
	{name: "param_set_local_in_transaction", route: "parameter status", accept: silentOrClean, attack: simpleQueries(
		"BEGIN", "SELECT set_config('application_name', reverse(name), true) FROM patients WHERE id = 1", "COMMIT")},
	{name: "param_set_from_do_block", route: "parameter status", accept: silentOrClean, attack: simpleQueries(
		"DO $d$ BEGIN EXECUTE format('SET application_name = %L', (SELECT ssn FROM patients WHERE id = 2)); END $d$", "SHOW application_name")},
	{name: "param_custom_setting", route: "parameter status", accept: silentOrClean, attack: simpleQueries(
		"SELECT set_config('phi.x', ssn, false) FROM patients WHERE id = 1", "SHOW phi.x", "SELECT current_setting('phi.x')")},
	{name: "param_search_path", route: "parameter status", accept: silentOrClean, attack: simpleQueries(
		"SELECT set_config('search_path', name, false) FROM patients WHERE id = 1", "SHOW search_path")},

	// ---- Side channel: error and notice texts ----
	{name: "err_cast_ssn_int", route: "error text", accept: failsClean, attack: both("SELECT ssn::int FROM patients ORDER BY id")},
	{name: "err_cast_reverse_name_int", route: "error text", accept: failsClean, attack: both("SELECT reverse(name)::int FROM patients ORDER BY id")},
	{name: "err_cast_name_date", route: "error text", accept: failsClean, attack: both("SELECT name::date FROM patients ORDER BY id")},
	{name: "err_cast_in_where", route: "error text", accept: failsClean, attack: both("SELECT id FROM patients WHERE ssn::int > 0")},
	{name: "err_json_token", route: "error text", accept: failsClean, attack: both("SELECT name::json FROM patients ORDER BY id", "SELECT ('[' || ssn || ']')::jsonb FROM patients ORDER BY id")},
	{name: "err_array_literal", route: "error text", accept: failsClean, attack: both("SELECT ('{' || ssn || '}')::int[] FROM patients ORDER BY id")},
	{name: "err_other_casts", route: "error text", accept: failsClean, attack: both("SELECT ssn::uuid FROM patients ORDER BY id",
		"SELECT name::regclass FROM patients ORDER BY id", "SELECT current_setting(name) FROM patients ORDER BY id", "SELECT (notes || ssn)::numeric FROM patients ORDER BY id")},
	{name: "err_do_block_raise", route: "error text", accept: failsClean, attack: simpleQueries(
		"DO $d$ BEGIN RAISE NOTICE '%', (SELECT name FROM patients WHERE id = 1); RAISE EXCEPTION '%', (SELECT ssn FROM patients WHERE id = 1); END $d$")},
	{name: "err_function_notice", route: "error text", accept: failsClean, attack: both("SELECT shout(ssn), shout(reverse(name)) FROM patients ORDER BY id")},
	{name: "err_function_detail_hint", route: "error text", accept: failsClean, attack: both("SELECT complain(name) FROM patients ORDER BY id")},
	// A unique violation's detail quotes the key; a read grant must not get
	// as far as writing one (a temporary table is the only table a
	// read-only transaction may write, and creating it is not a read).
	{name: "err_unique_violation_detail", route: "error text", accept: failsClean, readOnlyWallOK: true, attack: simpleQueries(
		"CREATE TEMP TABLE seen (s text UNIQUE)", "INSERT INTO seen SELECT ssn FROM patients", "INSERT INTO seen SELECT ssn FROM patients")},

	// ---- Planner statistics ----
	{name: "stats_pg_stats", route: "statistics", accept: refusedOrClean, attack: both(
		"SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'patients' ORDER BY attname")},
	{name: "stats_pg_stats_unnest", route: "statistics", accept: refusedOrClean, attack: both(
		"SELECT unnest(histogram_bounds::text::text[]) FROM pg_stats WHERE tablename = 'patients'")},
	{name: "stats_pg_statistic", route: "statistics", accept: refusedOrClean, attack: both(
		"SELECT stavalues1::text, stavalues2::text FROM pg_statistic WHERE starelid = 'patients'::regclass")},

	// ---- Window functions, grouping, DISTINCT, ordering ----
	{name: "win_first_value_lag", route: "window/group", accept: refusedOrClean, attack: both("SELECT first_value(ssn) OVER (ORDER BY id), lag(name) OVER (ORDER BY id), nth_value(dob, 2) OVER (ORDER BY id) FROM patients")},
	{name: "group_by_expression", route: "window/group", accept: refusedOrClean, attack: both("SELECT lower(name), count(*) FROM patients GROUP BY lower(name)", "SELECT ssn || '', dob + 0 FROM patients GROUP BY 1, 2")},
	{name: "group_rollup", route: "window/group", accept: refusedOrClean, attack: both("SELECT ssn, name, count(*) FROM patients GROUP BY ROLLUP (ssn, name)")},
	{name: "distinct", route: "window/group", accept: refusedOrClean, attack: both("SELECT DISTINCT ssn || '' FROM patients", "SELECT DISTINCT ON (id) reverse(name) FROM patients ORDER BY id")},
	{name: "min_max", route: "window/group", accept: refusedOrClean, attack: both("SELECT min(ssn), max(name), min(dob), max(phone) FROM patients")},
	{name: "order_by_expression_in_output", route: "window/group", accept: refusedOrClean, attack: both("SELECT id, reverse(ssn) AS r FROM patients ORDER BY 2")},

	// ---- Set-returning functions ----
	{name: "srf_unnest", route: "set-returning", accept: refusedOrClean, attack: both("SELECT unnest(ARRAY[ssn, name, phone]) FROM patients ORDER BY id")},
	{name: "srf_regexp_split_to_table", route: "set-returning", accept: refusedOrClean, attack: both("SELECT regexp_split_to_table(ssn, '') FROM patients ORDER BY id")},
	{name: "srf_string_to_table", route: "set-returning", accept: refusedOrClean, attack: both("SELECT string_to_table(name, NULL) FROM patients ORDER BY id", "SELECT string_to_table(ssn, '-') FROM patients ORDER BY id")},
	{name: "srf_json_each_text", route: "set-returning", accept: refusedOrClean, attack: both("SELECT key, value FROM patients p, json_each_text(row_to_json(p)) ORDER BY p.id")},
	{name: "srf_regexp_matches", route: "set-returning", accept: refusedOrClean, attack: both("SELECT regexp_matches(notes, '([A-Z][a-z]+) ([A-Z][a-z]+)', 'g') FROM patients ORDER BY id")},

	// ---- JSON path, XML path, text search ----
	{name: "json_path", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT jsonb_path_query(to_jsonb(p), '$.ssn'), jsonb_path_query_array(to_jsonb(p), '$.*') FROM patients p ORDER BY id")},
	{name: "json_operators", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT to_jsonb(p) -> 'name', to_jsonb(p) ->> 'dob', row_to_json(p) ->> 'ssn' FROM patients p ORDER BY id")},
	{name: "xpath", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT xpath('/x/text()', xmlelement(name x, ssn)) FROM patients ORDER BY id")},
	{name: "tsvector", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT to_tsvector(notes), to_tsvector('simple', name), to_tsvector('simple', ssn) FROM patients ORDER BY id")},
	{name: "tsvector_to_array", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT tsvector_to_array(to_tsvector('simple', name)), ts_headline(notes, to_tsquery('simple', 'daughter')) FROM patients ORDER BY id")},
	{name: "ts_stat_runs_sql_text", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT * FROM ts_stat('select to_tsvector(''simple'', name) from patients')")},
	{name: "cursor_to_xml", route: "json/xml/text search", accept: refusedOrClean, attack: simpleQueries(
		"BEGIN", "DECLARE c CURSOR FOR SELECT ssn, name, dob FROM patients ORDER BY id", "SELECT cursor_to_xml('c', 10, false, false, '')", "COMMIT")},
	{name: "schema_to_xml", route: "json/xml/text search", accept: refusedOrClean, attack: both("SELECT schema_to_xml('public', true, false, '')")},

	// ---- More containers and reconstructions ----
	{name: "ctr_array_of_rows", route: "container", accept: refusedOrClean, attack: both("SELECT array_agg(p ORDER BY id) FROM patients p", "SELECT (ARRAY[p])[1] FROM patients p ORDER BY id")},
	{name: "ctr_record_text", route: "container", accept: refusedOrClean, attack: both("SELECT format('%s', p), concat(p) FROM patients p ORDER BY id")},
	{name: "ctr_record_field_of_subquery", route: "container", accept: refusedOrClean, attack: both("SELECT ((SELECT p FROM patients p WHERE id = 1)).ssn, ((SELECT p FROM patients p WHERE id = 2)).name")},
	{name: "ctr_nested_whole_row_expansion", route: "container", accept: refusedOrClean, attack: both("SELECT (s.p).* FROM (SELECT p FROM patients p) s")},
	{name: "ctr_jsonb_populate_record", route: "container", accept: refusedOrClean, attack: both("SELECT jsonb_populate_record(NULL::patients, to_jsonb(p)) FROM patients p ORDER BY id",
		"SELECT (jsonb_each_text(to_jsonb(p))).* FROM patients p ORDER BY id")},
	{name: "ctr_string_to_array", route: "container", accept: refusedOrClean, attack: both("SELECT string_to_array(name, NULL), regexp_split_to_array(ssn, '') FROM patients ORDER BY id")},
	{name: "ctr_daterange", route: "container", accept: refusedOrClean, attack: both("SELECT daterange(dob, dob, '[]'), tstzrange(dob, dob + 1) FROM patients ORDER BY id")},
	{name: "ctr_domain_and_composite_type", route: "container", accept: refusedOrClean, attack: both("SELECT ssn::tin, ROW(ssn, name)::pair, (ROW(name, ssn)::pair).b FROM patients ORDER BY id")},
	{name: "expr_make_date", route: "expression", accept: refusedOrClean, attack: both("SELECT make_date(date_part('year', dob)::int, date_part('month', dob)::int, date_part('day', dob)::int) FROM patients ORDER BY id")},
	{name: "expr_date_pieces_per_column", route: "split", accept: refusedOrClean, attack: both("SELECT to_char(dob, 'YYYY'), to_char(dob, 'MM'), to_char(dob, 'DD') FROM patients ORDER BY id")},
	{name: "expr_letters_spaced_out", route: "expression", accept: refusedOrClean, attack: both(`SELECT regexp_replace(name, '(.)', '\1 ', 'g'), regexp_replace(notes, '(.)', '\1.', 'g') FROM patients ORDER BY id`)},
	{name: "fn_plpgsql_opaque", route: "view/function", accept: refusedOrClean, attack: both("SELECT tin_of_plpgsql(1), tin_of_plpgsql(2)")},
	{name: "fn_dynamic_sql", route: "view/function", accept: refusedOrClean, attack: both("SELECT * FROM run_query('select name || ssn from patients')")},
	{name: "fn_aliased_output", route: "view/function", accept: refusedOrClean, attack: both("SELECT b, c, d FROM people() AS f(a, b, c, d)", "SELECT (people()).tax_id")},

	// ---- Statement shapes around plain columns ----
	{name: "shape_table_statement", route: "statement shape", accept: refusedOrClean, attack: both("TABLE patients", "TABLE v_people")},
	{name: "shape_from_column_aliases", route: "statement shape", accept: refusedOrClean, attack: both("SELECT b, c, d, e, f FROM patients AS p(a, b, c, d, e, f) ORDER BY a")},
	{name: "shape_quoted_and_case_folded", route: "statement shape", accept: refusedOrClean, attack: both(`SELECT "ssn", "name" FROM "public"."patients"`, "SELECT PATIENTS.SSN, Patients.DOB FROM PATIENTS")},
	{name: "shape_values_subquery", route: "statement shape", accept: refusedOrClean, attack: both("VALUES ((SELECT ssn FROM patients WHERE id = 1), (SELECT dob FROM patients WHERE id = 2))")},
	{name: "shape_multi_statement_query", route: "statement shape", accept: refusedOrClean, attack: simpleQueries("SELECT 1; SELECT reverse(name), dob + 0 FROM patients ORDER BY id; SELECT 2")},
}
