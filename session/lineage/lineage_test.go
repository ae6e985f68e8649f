package lineage_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/phigate/phigate/session/lineage"
)

// col is an expected output: name, plain, and sources as "table.column"
// (schema public) or "schema.table.column", separated by spaces.
type col struct {
	name  string
	plain bool
	srcs  string
}

func P(name, src string) col  { return col{name, true, src} }
func D(name, srcs string) col { return col{name, false, srcs} }
func N(name string) col       { return col{name: name} }

const allPatients = "patients.id patients.ssn patients.first_name patients.last_name patients.dob patients.phone patients.mrn patients.notes"

// patientsStar is * over patients, plain, optionally renamed.
func patientsStar(names ...string) []col {
	var out []col
	for i, c := range patientCols {
		n, _, _ := strings.Cut(c, " ")
		name := n
		if i < len(names) {
			name = names[i]
		}
		out = append(out, P(name, "patients."+n))
	}
	return out
}

// derivedFrom is every column of a table as its own output, derived from
// srcs.
func derivedEach(srcs string, names ...string) []col {
	var out []col
	for _, n := range names {
		out = append(out, D(n, srcs))
	}
	return out
}

func cat(cols ...[]col) []col { return slices.Concat(cols...) }

type tcase struct {
	sql    string
	want   []col
	noRows bool   // Outputs nil and not opaque
	opaque string // a substring of Result.Opaque
	// markers
	cursor, prepared, definesCursor, definesPrepared string
}

var cases = []tcase{
	// Plain references.
	{sql: "SELECT ssn FROM patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT p.ssn FROM patients p", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT public.patients.ssn FROM patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT patients.ssn FROM public.patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT mydb.public.patients.ssn FROM public.patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT ssn AS s FROM patients", want: []col{P("s", "patients.ssn")}},
	{sql: "SELECT * FROM patients", want: patientsStar()},
	{sql: "SELECT p.* FROM patients p", want: patientsStar()},
	{sql: "SELECT public.patients.* FROM patients", want: patientsStar()},
	{sql: "TABLE patients", want: patientsStar()},
	{sql: "SELECT * FROM patients AS p(a, b)", want: patientsStar("a", "b")},
	{sql: "SELECT p.a FROM patients AS p(a, b)", want: []col{P("a", "patients.id")}},
	{sql: "SELECT * FROM patients AS p(a, b, c, d, e, f, g, h, i)", opaque: "columns specified"},
	{sql: "SELECT id, ssn FROM patients WHERE ssn LIKE '1%' ORDER BY dob LIMIT 5 OFFSET 1",
		want: []col{P("id", "patients.id"), P("ssn", "patients.ssn")}},
	{sql: "SELECT DISTINCT ssn FROM patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT DISTINCT ON (ssn) id, dob FROM patients ORDER BY ssn, dob",
		want: []col{P("id", "patients.id"), P("dob", "patients.dob")}},
	{sql: "SELECT id FROM patients FOR UPDATE", want: []col{P("id", "patients.id")}},
	{sql: "SELECT dob, count(*) FROM patients GROUP BY dob HAVING count(*) > 1",
		want: []col{P("dob", "patients.dob"), N("count")}},
	{sql: "SELECT lower(ssn) AS l FROM patients GROUP BY l ORDER BY l", want: []col{D("l", "patients.ssn")}},
	{sql: "SELECT ssn FROM patients GROUP BY ROLLUP (ssn, dob), CUBE (mrn)", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT * FROM patients p, visits v WHERE p.id = v.patient_id",
		want: cat(patientsStar(), []col{P("id", "visits.id"), P("patient_id", "visits.patient_id"),
			P("visit_date", "visits.visit_date"), P("reason", "visits.reason"), P("notes", "visits.notes")})},
	{sql: "SELECT * FROM ext_patients", want: []col{P("ssn", "ext_patients.ssn")}},
	{sql: "SELECT payload FROM p_events", want: []col{P("payload", "p_events.payload")}},
	{sql: "SELECT relname FROM pg_class", want: []col{P("relname", "pg_catalog.pg_class.relname")}},

	// Constants, parameters, built-in values.
	{sql: "SELECT 1", want: []col{N("?column?")}},
	{sql: "SELECT 'x' AS y, now(), current_date, current_user", want: []col{N("y"), N("now"), N("current_date"), N("current_user")}},
	{sql: "SELECT $1", want: []col{N("?column?")}},
	{sql: "SELECT '1'::int", want: []col{N("int4")}},
	{sql: "SELECT interval '1 day'", want: []col{N("interval")}},

	// The attack routes: every one derived, never plain.
	{sql: "SELECT dob + 0 FROM patients", want: []col{D("?column?", "patients.dob")}},
	{sql: "SELECT dob::timestamp FROM patients", want: []col{D("dob", "patients.dob")}},
	{sql: "SELECT CAST(dob AS text) FROM patients", want: []col{D("dob", "patients.dob")}},
	{sql: "SELECT replace(ssn,'-','')::bigint FROM patients", want: []col{D("replace", "patients.ssn")}},
	{sql: "SELECT to_char(dob,'YYYYMMDD')::int FROM patients", want: []col{D("to_char", "patients.dob")}},
	{sql: "SELECT ascii(substr(ssn, 3, 1)) FROM patients", want: []col{D("ascii", "patients.ssn")}},
	{sql: "SELECT translate(ssn,'0123456789','ABCDEFGHIJ') FROM patients", want: []col{D("translate", "patients.ssn")}},
	{sql: "SELECT reverse(first_name) FROM patients", want: []col{D("reverse", "patients.first_name")}},
	{sql: "SELECT lower(notes) FROM patients", want: []col{D("lower", "patients.notes")}},
	{sql: "SELECT ARRAY[ssn, first_name] FROM patients", want: []col{D("array", "patients.ssn patients.first_name")}},
	{sql: "SELECT (ARRAY[ssn])[1] FROM patients", want: []col{D("array", "patients.ssn")}},
	{sql: "SELECT array_agg(ssn) FROM patients", want: []col{D("array_agg", "patients.ssn")}},
	{sql: "SELECT p FROM patients p", want: []col{D("p", allPatients)}},
	{sql: "SELECT patients FROM patients", want: []col{D("patients", allPatients)}},
	{sql: "SELECT row(ssn) FROM patients", want: []col{D("row", "patients.ssn")}},
	{sql: "SELECT (ssn, dob) FROM patients", want: []col{D("row", "patients.ssn patients.dob")}},
	{sql: "SELECT p::text FROM patients p", want: []col{D("p", allPatients)}},
	{sql: "SELECT xmlelement(name x, ssn) FROM patients", want: []col{D("xmlelement", "patients.ssn")}},
	{sql: "SELECT xmlelement(name x, xmlattributes(dob AS d)) FROM patients", want: []col{D("xmlelement", "patients.dob")}},
	{sql: "SELECT xmlforest(ssn, dob) FROM patients", want: []col{D("xmlforest", "patients.ssn patients.dob")}},
	{sql: "SELECT ssn::bytea FROM patients", want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT encode(ssn::bytea,'base64') FROM patients", want: []col{D("encode", "patients.ssn")}},
	{sql: "SELECT string_agg(ssn, ',') FROM patients", want: []col{D("string_agg", "patients.ssn")}},
	{sql: "SELECT CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END FROM patients", want: []col{D("case", "patients.ssn")}},
	{sql: "SELECT CASE mrn WHEN 'a' THEN 1 END FROM patients", want: []col{D("case", "patients.mrn")}},
	{sql: "SELECT (SELECT ssn FROM patients LIMIT 1)", want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT ssn IN (SELECT ssn FROM patients WHERE id = 1) FROM patients", want: []col{D("?column?", "patients.ssn")}},
	{sql: "SELECT '1' = ALL (SELECT mrn FROM patients)", want: []col{D("?column?", "patients.mrn")}},
	{sql: "SELECT row_to_json(p) FROM patients p", want: []col{D("row_to_json", allPatients)}},
	{sql: "SELECT row_to_json(p.*) FROM patients p", want: []col{D("row_to_json", allPatients)}},
	{sql: "SELECT to_json(p.ssn) FROM patients p", want: []col{D("to_json", "patients.ssn")}},
	{sql: "SELECT (p).ssn FROM patients p", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT (p.*).dob + 1 FROM patients p", want: []col{D("?column?", "patients.dob")}},
	{sql: "SELECT (p).nope FROM patients p", opaque: `column "nope" not found`},
	{sql: "SELECT (p).* FROM patients p", want: patientsStar()},
	{sql: "SELECT (p.*).* FROM patients p", want: patientsStar()},
	{sql: "SELECT coalesce(ssn, phone) FROM patients", want: []col{D("coalesce", "patients.ssn patients.phone")}},
	{sql: "SELECT nullif(ssn, '') FROM patients", want: []col{D("nullif", "patients.ssn")}},
	{sql: "SELECT greatest(dob, now()::date), least(id, 3) FROM patients", want: []col{D("greatest", "patients.dob"), D("least", "patients.id")}},
	{sql: "SELECT ssn IS NULL, dob IS DISTINCT FROM NULL FROM patients", want: []col{D("?column?", "patients.ssn"), D("?column?", "patients.dob")}},
	{sql: "SELECT (ssn = '1') IS TRUE FROM patients", want: []col{D("?column?", "patients.ssn")}},
	{sql: `SELECT ssn COLLATE "C" FROM patients`, want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT substring(ssn FROM 1 FOR 3) FROM patients", want: []col{D("substring", "patients.ssn")}},
	{sql: "SELECT EXTRACT(year FROM dob) FROM patients", want: []col{D("extract", "patients.dob")}},
	{sql: "SELECT dob AT TIME ZONE 'UTC' FROM patients", want: []col{D("timezone", "patients.dob")}},
	{sql: "SELECT ssn || '' FROM patients", want: []col{D("?column?", "patients.ssn")}},
	{sql: "SELECT ssn::text::varchar FROM patients", want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT dob BETWEEN '2000-01-01' AND '2001-01-01' FROM patients", want: []col{D("?column?", "patients.dob")}},
	{sql: "SELECT ssn = ANY(ARRAY['1', mrn]) FROM patients", want: []col{D("?column?", "patients.ssn patients.mrn")}},
	{sql: "SELECT ssn SIMILAR TO '1%' FROM patients", want: []col{D("?column?", "patients.ssn")}},
	{sql: "SELECT NOT (ssn LIKE '1%' AND dob > now()) FROM patients", want: []col{D("?column?", "patients.ssn patients.dob")}},
	{sql: "SELECT ssn OPERATOR(pg_catalog.||) 'x' FROM patients", want: []col{D("?column?", "patients.ssn")}},
	{sql: "SELECT length(ssn), md5(notes) FROM patients", want: []col{D("length", "patients.ssn"), D("md5", "patients.notes")}},
	{sql: "SELECT unnest(ARRAY[ssn]) FROM patients", want: []col{D("unnest", "patients.ssn")}},
	{sql: "SELECT json_build_object('s', ssn) FROM patients", want: []col{D("json_build_object", "patients.ssn")}},
	{sql: "SELECT JSON_OBJECT('s': ssn) FROM patients", want: []col{D("json_object", "patients.ssn")}},
	{sql: "SELECT JSON_ARRAY(ssn, dob) FROM patients", want: []col{D("json_array", "patients.ssn patients.dob")}},
	{sql: "SELECT JSON_ARRAY(SELECT mrn FROM patients)", want: []col{D("json_array", "patients.mrn")}},
	{sql: "SELECT JSON_ARRAYAGG(ssn ORDER BY dob) FROM patients", want: []col{D("json_arrayagg", "patients.ssn")}},
	{sql: "SELECT JSON_OBJECTAGG(mrn : ssn) FROM patients", want: []col{D("json_objectagg", "patients.mrn patients.ssn")}},
	{sql: "SELECT JSON_VALUE(to_jsonb(p), '$.ssn') FROM patients p", want: []col{D("json_value", allPatients)}},
	{sql: "SELECT notes IS JSON FROM patients", want: []col{D("?column?", "patients.notes")}},
	{sql: "SELECT JSON_SERIALIZE(JSON(notes)) FROM patients", want: []col{D("json_serialize", "patients.notes")}},
	{sql: "SELECT xmlserialize(content xmlelement(name x, ssn) AS text) FROM patients", want: []col{D("xmlserialize", "patients.ssn")}},

	// Aggregates and window functions.
	{sql: "SELECT count(ssn) FROM patients", want: []col{N("count")}},
	{sql: "SELECT count(*) FROM patients", want: []col{N("count")}},
	{sql: "SELECT count(DISTINCT ssn) FILTER (WHERE dob > '2000-01-01') FROM patients", want: []col{N("count")}},
	{sql: "SELECT max(dob), sum(id) FILTER (WHERE ssn LIKE '1%') FROM patients", want: []col{D("max", "patients.dob"), D("sum", "patients.id")}},
	{sql: "SELECT lag(ssn) OVER (ORDER BY dob) FROM patients", want: []col{D("lag", "patients.ssn")}},
	{sql: "SELECT row_number() OVER (PARTITION BY ssn ORDER BY dob) FROM patients", want: []col{N("row_number")}},
	{sql: "SELECT sum(id) OVER w FROM patients WINDOW w AS (PARTITION BY ssn)", want: []col{D("sum", "patients.id")}},
	{sql: "SELECT mode() WITHIN GROUP (ORDER BY ssn) FROM patients", want: []col{D("mode", "patients.ssn")}},
	{sql: "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY dob) FROM patients", want: []col{D("percentile_disc", "patients.dob")}},
	{sql: "SELECT string_agg(first_name, ',' ORDER BY ssn) FROM patients", want: []col{D("string_agg", "patients.first_name")}},
	{sql: "SELECT GROUPING(ssn) FROM patients GROUP BY ROLLUP (ssn)", want: []col{N("grouping")}},

	// Subqueries as values: outputs, references from outside, tested
	// expression.
	{sql: "SELECT EXISTS (SELECT 1 FROM visits v WHERE v.notes = p.ssn) FROM patients p", want: []col{D("exists", "patients.ssn")}},
	{sql: "SELECT ARRAY(SELECT ssn FROM patients)", want: []col{D("array", "patients.ssn")}},
	{sql: "SELECT (SELECT count(*) FROM visits v WHERE v.patient_id = p.id) FROM patients p", want: []col{D("count", "patients.id")}},
	{sql: "SELECT (SELECT (SELECT p.ssn)) FROM patients p", want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT id FROM visits WHERE patient_id IN (SELECT id FROM patients)", want: []col{P("id", "visits.id")}},

	// CTEs.
	{sql: "WITH c AS (SELECT ssn FROM patients) SELECT ssn FROM c", want: []col{P("ssn", "patients.ssn")}},
	{sql: "WITH c(x) AS (SELECT ssn FROM patients) SELECT * FROM c", want: []col{P("x", "patients.ssn")}},
	{sql: "WITH c AS (SELECT ssn, dob FROM patients), d AS (SELECT ssn AS s FROM c) SELECT s, upper(s) FROM d",
		want: []col{P("s", "patients.ssn"), D("upper", "patients.ssn")}},
	{sql: "WITH c AS MATERIALIZED (SELECT ssn FROM patients) SELECT upper(ssn) FROM c", want: []col{D("upper", "patients.ssn")}},
	{sql: "WITH patients AS (SELECT 1 AS ssn) SELECT ssn FROM patients", want: []col{N("ssn")}},
	{sql: "WITH patients AS (SELECT 1 AS ssn) SELECT ssn FROM public.patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "WITH a AS (SELECT ssn FROM b), b AS (SELECT ssn FROM patients) SELECT * FROM a", opaque: `relation "b" does not exist`},
	{sql: "WITH RECURSIVE a AS (SELECT ssn FROM b), b AS (SELECT ssn FROM patients) SELECT * FROM a", want: []col{P("ssn", "patients.ssn")}},
	{sql: "WITH x AS (DELETE FROM visits RETURNING notes) SELECT notes FROM x", want: []col{P("notes", "visits.notes")}},
	{sql: "WITH x AS (DELETE FROM visits) SELECT * FROM x", opaque: "RETURNING"},
	{sql: "WITH x AS (SELECT leak(1)) SELECT 1", opaque: "plpgsql"},
	{sql: "SELECT (WITH c AS (SELECT p.ssn) SELECT * FROM c) FROM patients p", want: []col{D("ssn", "patients.ssn")}},
	// Recursive CTEs: iterated to a fixpoint.
	{sql: "WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM patients UNION ALL SELECT n + 1, s FROM r WHERE n < 3) SELECT * FROM r",
		want: []col{N("n"), P("s", "patients.ssn")}},
	{sql: "WITH RECURSIVE r(n, s) AS (SELECT 1, ''::text UNION ALL SELECT n + 1, (SELECT ssn FROM patients LIMIT 1) FROM r WHERE n < 3) SELECT s FROM r",
		want: []col{D("s", "patients.ssn")}},
	{sql: "WITH RECURSIVE r(x) AS (SELECT ssn FROM patients UNION SELECT reverse(x) FROM r) SELECT x FROM r",
		want: []col{D("x", "patients.ssn")}},
	{sql: "WITH RECURSIVE r(a, b, n) AS (SELECT ssn, first_name, 0 FROM patients UNION ALL SELECT b, a, n + 1 FROM r WHERE n < 2) SELECT a, b FROM r",
		want: []col{D("a", "patients.ssn patients.first_name"), D("b", "patients.ssn patients.first_name")}},
	{sql: "WITH RECURSIVE r(a, b, c, n) AS (SELECT ssn, mrn, phone, 0 FROM patients UNION ALL SELECT b, c, 'x', n + 1 FROM r WHERE n < 5) SELECT a FROM r",
		want: []col{D("a", "patients.ssn patients.mrn patients.phone")}},
	{sql: "WITH RECURSIVE r(id, s) AS (SELECT id, ssn FROM patients UNION ALL SELECT id, s FROM r) SEARCH DEPTH FIRST BY s SET ord SELECT * FROM r",
		want: []col{P("id", "patients.id"), P("s", "patients.ssn"), D("ord", "patients.ssn")}},
	{sql: "WITH RECURSIVE r(id, s) AS (SELECT id, ssn FROM patients UNION ALL SELECT id, s FROM r) CYCLE id SET looped USING path SELECT * FROM r",
		want: []col{P("id", "patients.id"), P("s", "patients.ssn"), D("looped", "patients.id"), D("path", "patients.id")}},
	{sql: "WITH RECURSIVE r(x) AS (SELECT x FROM r UNION SELECT 1) SELECT * FROM r", opaque: "recursive reference"},

	// Set operations.
	{sql: "SELECT ssn FROM patients UNION SELECT 'x'", want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT ssn FROM patients UNION ALL SELECT ssn FROM patients", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT ssn FROM patients UNION SELECT notes FROM visits", want: []col{D("ssn", "patients.ssn visits.notes")}},
	{sql: "SELECT ssn, 1 FROM patients INTERSECT SELECT phone, 2 FROM patients", want: []col{D("ssn", "patients.ssn patients.phone"), N("?column?")}},
	{sql: "SELECT id FROM patients EXCEPT SELECT patient_id FROM visits ORDER BY 1", want: []col{D("id", "patients.id visits.patient_id")}},
	{sql: "SELECT id AS k FROM patients UNION SELECT id FROM visits ORDER BY k LIMIT 3", want: []col{D("k", "patients.id visits.id")}},
	{sql: "(SELECT ssn FROM patients ORDER BY dob LIMIT 1) UNION ALL (SELECT ssn FROM patients)", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT ssn, dob FROM patients UNION SELECT ssn FROM patients", opaque: "same number of columns"},

	// Subqueries in FROM.
	{sql: "SELECT s FROM (SELECT ssn AS s FROM patients) sub", want: []col{P("s", "patients.ssn")}},
	{sql: "SELECT x FROM (SELECT ssn FROM patients) AS sub(x)", want: []col{P("x", "patients.ssn")}},
	{sql: "SELECT * FROM (SELECT ssn, lower(first_name) FROM patients) s", want: []col{P("ssn", "patients.ssn"), D("lower", "patients.first_name")}},
	{sql: "SELECT sub.* FROM (SELECT dob + 1 AS d FROM patients) sub", want: []col{D("d", "patients.dob")}},
	{sql: "SELECT ssn FROM (SELECT ssn FROM patients)", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT sub FROM (SELECT ssn, 1 AS one FROM patients) sub", want: []col{D("sub", "patients.ssn")}},

	// LATERAL and functions in FROM see the items before them; other
	// subqueries do not.
	{sql: "SELECT p.id, v.notes FROM patients p, LATERAL (SELECT notes FROM visits WHERE patient_id = p.id) v",
		want: []col{P("id", "patients.id"), P("notes", "visits.notes")}},
	{sql: "SELECT x FROM patients p, LATERAL (SELECT p.ssn AS x) l", want: []col{P("x", "patients.ssn")}},
	{sql: "SELECT x FROM patients p CROSS JOIN LATERAL (VALUES (p.ssn)) v(x)", want: []col{P("x", "patients.ssn")}},
	{sql: "SELECT x FROM patients p, (SELECT p.ssn AS x) l", opaque: `"p.ssn" does not exist`},
	{sql: "SELECT g FROM patients p, generate_series(1, p.id) g", want: []col{D("g", "patients.id")}},
	{sql: "SELECT val FROM patients p, unnest(ARRAY[p.ssn, p.phone]) AS u(val)", want: []col{D("val", "patients.ssn patients.phone")}},
	{sql: "SELECT j.value FROM patients p, json_each(row_to_json(p)) j", want: []col{D("value", allPatients)}},
	{sql: "SELECT x FROM patients p JOIN LATERAL (SELECT p.mrn AS x) l ON true", want: []col{P("x", "patients.mrn")}},

	// Joins.
	{sql: "SELECT * FROM patients JOIN visits USING (id)",
		want: cat(patientsStar(), []col{P("patient_id", "visits.patient_id"), P("visit_date", "visits.visit_date"),
			P("reason", "visits.reason"), P("notes", "visits.notes")})},
	{sql: "SELECT notes FROM patients JOIN visits USING (id)", opaque: "ambiguous"},
	{sql: "SELECT id FROM patients p JOIN visits v USING (id)", want: []col{P("id", "patients.id")}},
	{sql: "SELECT id FROM patients p LEFT JOIN visits v USING (id)", want: []col{P("id", "patients.id")}},
	{sql: "SELECT id FROM patients p RIGHT JOIN visits v USING (id)", want: []col{P("id", "visits.id")}},
	{sql: "SELECT id FROM patients p FULL JOIN visits v USING (id)", want: []col{D("id", "patients.id visits.id")}},
	{sql: "SELECT id FROM patients p JOIN (SELECT id::bigint AS id FROM visits) v USING (id)", want: []col{D("id", "patients.id visits.id")}},
	{sql: "SELECT * FROM patients NATURAL JOIN visits",
		want: []col{P("id", "patients.id"), P("notes", "patients.notes"), P("ssn", "patients.ssn"), P("first_name", "patients.first_name"),
			P("last_name", "patients.last_name"), P("dob", "patients.dob"), P("phone", "patients.phone"), P("mrn", "patients.mrn"),
			P("patient_id", "visits.patient_id"), P("visit_date", "visits.visit_date"), P("reason", "visits.reason")}},
	{sql: "SELECT j.ssn FROM (patients p JOIN visits v ON v.patient_id = p.id) AS j", want: []col{P("ssn", "patients.ssn")}},
	{sql: "SELECT p.ssn FROM (patients p JOIN visits v USING (id)) j", opaque: `"p.ssn" does not exist`},
	{sql: "SELECT p.ssn, v.reason FROM patients p LEFT JOIN visits v ON v.patient_id = p.id",
		want: []col{P("ssn", "patients.ssn"), P("reason", "visits.reason")}},
	{sql: "SELECT u.id, p.ssn FROM patients p JOIN visits v USING (id) AS u", want: []col{P("id", "patients.id"), P("ssn", "patients.ssn")}},
	{sql: "SELECT j FROM (patients p JOIN visits v USING (id)) j",
		want: []col{D("j", allPatients+" visits.patient_id visits.visit_date visits.reason visits.notes")}},
	{sql: "SELECT d.name, p.ssn FROM patients p JOIN appointments a ON a.patient_id = p.id JOIN doctors d ON d.id = a.doctor_id",
		want: []col{P("name", "doctors.name"), P("ssn", "patients.ssn")}},
	{sql: "SELECT 1 FROM patients p JOIN visits v ON leak(v.id) > 0", opaque: "plpgsql"},
	{sql: "SELECT 1 FROM patients p, visits v JOIN doctors d ON d.id = p.id", opaque: `"p.id" does not exist`},

	// VALUES.
	{sql: "VALUES (1, 'a'), (2, 'b')", want: []col{N("column1"), N("column2")}},
	{sql: "SELECT * FROM (VALUES (1), (2)) v(x)", want: []col{N("x")}},
	{sql: "SELECT column1 FROM patients p, LATERAL (VALUES (p.ssn), ('x')) v", want: []col{D("column1", "patients.ssn")}},
	{sql: "SELECT * FROM (VALUES ((SELECT ssn FROM patients LIMIT 1))) v", want: []col{D("column1", "patients.ssn")}},
	{sql: "VALUES (1), (2, 3)", opaque: "same length"},

	// Views, expanded through their definitions.
	{sql: "SELECT * FROM patient_names", want: []col{P("pid", "patients.id"), P("given", "patients.first_name"), P("family", "patients.last_name")}},
	{sql: "SELECT given FROM patient_names WHERE pid = 1", want: []col{P("given", "patients.first_name")}},
	{sql: "SELECT n.given FROM public.patient_names n", want: []col{P("given", "patients.first_name")}},
	{sql: "SELECT * FROM full_names", want: []col{P("pid", "patients.id"), D("full_name", "patients.first_name patients.last_name")}},
	{sql: "SELECT * FROM v_renamed", want: []col{P("social", "patients.ssn"), P("birth", "patients.dob")}},
	{sql: "SELECT * FROM patient_stats", want: []col{P("dob", "patients.dob"), N("n")}},
	{sql: "SELECT patient_names FROM patient_names", want: []col{D("patient_names", "patients.id patients.first_name patients.last_name")}},
	{sql: "SELECT * FROM v_recursive", want: []col{N("n"), P("s", "patients.ssn")}},
	{sql: "SELECT * FROM pg_catalog.pg_stats",
		want: []col{P("tablename", "pg_catalog.pg_class.relname"), D("most_common_vals", "pg_catalog.pg_statistic.stavalues1")}},
	{sql: "SELECT most_common_vals FROM pg_stats", want: []col{D("most_common_vals", "pg_catalog.pg_statistic.stavalues1")}},
	{sql: "SELECT * FROM v_deep_10", want: []col{P("x", "patients.ssn")}},
	{sql: "SELECT * FROM v_deep_0", opaque: "nested deeper than 16"},
	{sql: "SELECT * FROM v_cycle_a", opaque: "refers to itself"},
	{sql: "SELECT * FROM v_bad", opaque: "view public.v_bad: definition is not one SELECT"},
	{sql: "SELECT * FROM v_mismatch", opaque: "definition has 2 columns, the catalog 1"},
	{sql: "SELECT id FROM v_leaky", opaque: "view public.v_leaky: function public.leak is written in plpgsql"},

	// SQL functions: their bodies are followed.
	{sql: "SELECT ssn_of(1)", want: []col{D("ssn_of", "patients.ssn")}},
	{sql: "SELECT ssn_of(id) FROM patients", want: []col{D("ssn_of", "patients.id patients.ssn")}},
	{sql: "SELECT public.ssn_of(1) AS s", want: []col{D("s", "patients.ssn")}},
	{sql: "SELECT ssn_of_atomic(1)", want: []col{D("ssn_of_atomic", "patients.ssn")}},
	{sql: "SELECT add_one(id) FROM patients", want: []col{D("add_one", "patients.id")}},
	{sql: "SELECT echo(ssn) FROM patients", want: []col{D("echo", "patients.ssn")}},
	{sql: "SELECT dollar_echo(ssn) FROM patients", want: []col{D("dollar_echo", "patients.ssn")}},
	{sql: "SELECT qualified_param(1)", want: []col{D("qualified_param", "patients.ssn")}},
	{sql: "SELECT two_statements()", want: []col{D("two_statements", "patients.mrn")}},
	{sql: "SELECT writes('x')", want: []col{N("writes")}},
	{sql: "SELECT * FROM patients_born('2000-01-01')", want: []col{D("pid", "patients.id"), D("ssn", "patients.ssn")}},
	{sql: "SELECT ssn FROM patients_born(now()::date) b", want: []col{D("ssn", "patients.ssn")}},
	{sql: "SELECT (patients_born('2000-01-01')).*", want: derivedEach("patients.id patients.ssn", "pid", "ssn")},
	{sql: "SELECT * FROM all_patients()",
		want: []col{D("id", "patients.id"), D("ssn", "patients.ssn"), D("first_name", "patients.first_name"), D("last_name", "patients.last_name"),
			D("dob", "patients.dob"), D("phone", "patients.phone"), D("mrn", "patients.mrn"), D("notes", "patients.notes")}},
	{sql: "SELECT all_patients()", want: []col{D("all_patients", allPatients)}},
	{sql: "SELECT (all_patients()).ssn", want: []col{D("ssn", allPatients)}},
	{sql: "SELECT * FROM f_out(1)", want: []col{D("b", "patients.phone"), D("c", "patients.id")}},
	{sql: "SELECT * FROM f_out(1) AS f(x)", want: []col{D("x", "patients.phone"), D("c", "patients.id")}},
	{sql: "SELECT p.ssn_of FROM patients p", want: []col{D("ssn_of", allPatients)}},
	{sql: "SELECT mixed(ssn) FROM patients", want: []col{D("mixed", "patients.ssn patients.mrn")}},
	{sql: "SELECT ssn_of(pid => id) FROM patients", want: []col{D("ssn_of", "patients.id patients.ssn")}},
	{sql: "SELECT concat(VARIADIC ARRAY[ssn, mrn]), format('%s', dob) FROM patients",
		want: []col{D("concat", "patients.ssn patients.mrn"), D("format", "patients.dob")}},
	{sql: "SELECT ssn_of((SELECT max(id) FROM visits))", want: []col{D("ssn_of", "patients.ssn visits.id")}},
	{sql: "SELECT ssn_of(leak(1))", opaque: "plpgsql"},
	{sql: "SELECT recursive_fn(1)", opaque: "function public.recursive_fn refers to itself"},
	{sql: "SELECT calls_leak()", opaque: "function public.calls_leak: function public.leak is written in plpgsql"},
	{sql: "SELECT reads_temp()", opaque: `relation "scratch" does not exist`},
	{sql: "SELECT not_a_function()", opaque: "not CREATE FUNCTION"},
	// A function with its own search_path: the catalog resolves with the
	// session's, so only qualified names (and pg_catalog's functions, when
	// pg_catalog comes first) can be followed.
	{sql: "SELECT own_path_unqualified()", opaque: `unqualified relation "patients" in a function that sets its own search_path`},
	{sql: "SELECT own_path_qualified()", want: []col{D("own_path_qualified", "patients.ssn")}},
	{sql: "SELECT own_path_catalog_late()", opaque: "unqualified function lower in a function that sets its own search_path"},

	// Built-in functions in FROM.
	{sql: "SELECT * FROM generate_series(1, 3)", want: []col{N("generate_series")}},
	{sql: "SELECT * FROM generate_series(1, 3) AS g", want: []col{N("g")}},
	{sql: "SELECT * FROM generate_series(1, 3) AS g(n)", want: []col{N("n")}},
	{sql: "SELECT g FROM generate_series(1, 3) g", want: []col{N("g")}},
	{sql: "SELECT generate_series.generate_series FROM generate_series(1, 3)", want: []col{N("generate_series")}},
	{sql: "SELECT * FROM generate_series(1, 3) WITH ORDINALITY", want: []col{N("generate_series"), N("ordinality")}},
	{sql: "SELECT * FROM json_each('{}'::json)", want: []col{N("key"), N("value")}},
	{sql: "SELECT * FROM unnest(ARRAY[1], ARRAY['a'])", want: []col{N("unnest"), N("unnest")}},
	{sql: "SELECT * FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY[ssn_of(1)]))", want: []col{N("generate_series"), D("unnest", "patients.ssn")}},
	{sql: "SELECT * FROM json_to_record('{}') AS x(a int, b text)", want: []col{N("a"), N("b")}},
	{sql: "SELECT * FROM coalesce((SELECT ssn FROM patients LIMIT 1)) AS c", want: []col{D("c", "patients.ssn")}},
	{sql: "SELECT * FROM XMLTABLE('/r' PASSING (SELECT xmlagg(xmlelement(name r, ssn)) FROM patients) COLUMNS s text PATH '.', n FOR ORDINALITY)",
		want: []col{D("s", "patients.ssn"), N("n")}},
	{sql: "SELECT jt.* FROM patients p, JSON_TABLE(to_jsonb(p), '$' COLUMNS (s text PATH '$.ssn', n FOR ORDINALITY, NESTED PATH '$.x[*]' COLUMNS (y text PATH '$'))) jt",
		want: []col{D("s", allPatients), N("n"), D("y", allPatients)}},
	{sql: "SELECT * FROM patients TABLESAMPLE BERNOULLI (10)", want: patientsStar()},

	// Opaque: functions that cannot be followed, anywhere in the statement.
	{sql: "SELECT leak(1)", opaque: "function public.leak is written in plpgsql"},
	{sql: "SELECT id FROM patients WHERE leak(id) > 0", opaque: "plpgsql"},
	{sql: "SELECT id FROM patients ORDER BY leak(id)", opaque: "plpgsql"},
	{sql: "SELECT id FROM patients GROUP BY id HAVING leak(id) > 0", opaque: "plpgsql"},
	{sql: "SELECT count(*) FILTER (WHERE leak(id) > 0) FROM patients", opaque: "plpgsql"},
	{sql: "SELECT row_number() OVER (ORDER BY leak(id)) FROM patients", opaque: "plpgsql"},
	{sql: "SELECT id FROM patients LIMIT leak(1)", opaque: "plpgsql"},
	{sql: "SELECT p.id FROM patients p WHERE EXISTS (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND leak(v.id) > 0)", opaque: "plpgsql"},
	{sql: "SELECT ssn_of(id) FROM patients WHERE leak(1) = 1", opaque: "plpgsql"},
	{sql: "SELECT c_func()", opaque: "function public.c_func is written in c"},
	{sql: "SELECT no_such_fn(1)", opaque: "function no_such_fn does not exist"},
	{sql: "SELECT query_to_xml('select * from patients', true, true, '')", opaque: "query_to_xml runs the SQL text"},
	{sql: "SELECT pg_catalog.query_to_xml('select 1', true, true, '')", opaque: "runs the SQL text"},
	{sql: "SELECT table_to_xml('patients', true, true, '')", opaque: "reads the relation"},
	{sql: "SELECT cursor_to_xml('c', 10, true, true, '')", opaque: "reads the cursor"},
	{sql: "SELECT lo_get(1234)", opaque: "large object"},
	{sql: "SELECT pg_read_file('base/1/2')", opaque: "server file"},
	{sql: "SELECT 1 OPERATOR(public.+) 2", opaque: "operator public.+ is not a built-in"},
	{sql: "SELECT ssn === 'x' FROM patients", opaque: "operator === is not a built-in"},
	{sql: "SELECT id FROM patients ORDER BY id USING OPERATOR(public.<)", opaque: "operator public.<"},
	{sql: "SELECT * FROM patients TABLESAMPLE system_rows (10)", opaque: "TABLESAMPLE method system_rows"},

	// Opaque: names that do not resolve, relations that cannot be followed.
	{sql: "SELECT * FROM temp_scratch", opaque: `relation "temp_scratch" does not exist or is not visible`},
	{sql: "SELECT nope FROM patients", opaque: `column "nope" does not exist`},
	{sql: "SELECT id FROM patients WHERE nope = 1", opaque: `column "nope" does not exist`},
	{sql: "SELECT id FROM patients ORDER BY nope", opaque: `column "nope" does not exist`},
	{sql: "SELECT x.ssn FROM patients p", opaque: `"x.ssn" does not exist`},
	{sql: "SELECT id FROM patients, visits", opaque: `column reference "id" is ambiguous`},
	{sql: "SELECT * FROM patients_id_seq", opaque: "public.patients_id_seq is a other relation"},
	{sql: "SELECT *", opaque: "SELECT * with no tables"},
	{sql: "SELECT (s.f).* FROM (SELECT row(ssn) AS f FROM patients) s", opaque: "composite column"},
	{sql: "SELECT (s.f).x FROM (SELECT row(ssn) AS f FROM patients) s", want: []col{D("x", "patients.ssn")}},
	{sql: "SELECT 1; SELECT 2", opaque: "more than one statement"},

	// Data-modifying statements: RETURNING sees what was assigned.
	{sql: "INSERT INTO visits (patient_id, notes) VALUES (1, 'x') RETURNING *",
		want: []col{P("id", "visits.id"), P("patient_id", "visits.patient_id"), P("visit_date", "visits.visit_date"),
			P("reason", "visits.reason"), P("notes", "visits.notes")}},
	{sql: "INSERT INTO visits (patient_id, notes) SELECT id, ssn FROM patients RETURNING notes", want: []col{D("notes", "visits.notes patients.ssn")}},
	{sql: "INSERT INTO visits VALUES (DEFAULT, 1, now(), (SELECT ssn FROM patients LIMIT 1)) RETURNING reason, id",
		want: []col{D("reason", "visits.reason patients.ssn"), P("id", "visits.id")}},
	{sql: "INSERT INTO visits (id) VALUES (1)", noRows: true},
	{sql: "INSERT INTO visits (nope) VALUES (1)", opaque: `column "nope" of relation "visits" does not exist`},
	{sql: "INSERT INTO visits (id, notes) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET notes = excluded.notes || (SELECT ssn FROM patients LIMIT 1) RETURNING notes",
		want: []col{D("notes", "visits.notes patients.ssn")}},
	{sql: "UPDATE patients SET notes = 'x' WHERE id = 1 RETURNING ssn, notes", want: []col{P("ssn", "patients.ssn"), P("notes", "patients.notes")}},
	{sql: "UPDATE patients SET notes = ssn RETURNING notes", want: []col{D("notes", "patients.notes patients.ssn")}},
	{sql: "UPDATE visits v SET notes = p.ssn FROM patients p WHERE p.id = v.patient_id RETURNING v.notes, p.first_name",
		want: []col{D("notes", "visits.notes patients.ssn"), P("first_name", "patients.first_name")}},
	{sql: "UPDATE visits SET (notes, reason) = (SELECT ssn, mrn FROM patients LIMIT 1) RETURNING reason",
		want: []col{D("reason", "visits.reason patients.ssn patients.mrn")}},
	{sql: "UPDATE patients SET notes = leak(1)", opaque: "plpgsql"},
	{sql: "DELETE FROM patients WHERE id = 1 RETURNING *", want: patientsStar()},
	{sql: "DELETE FROM visits v USING patients p WHERE p.id = v.patient_id RETURNING p.ssn", want: []col{P("ssn", "patients.ssn")}},
	{sql: "DELETE FROM patients WHERE leak(id) > 0", opaque: "plpgsql"},
	{sql: "MERGE INTO visits v USING patients p ON v.patient_id = p.id WHEN MATCHED THEN UPDATE SET notes = p.ssn WHEN NOT MATCHED THEN INSERT (id, notes) VALUES (p.id, p.first_name) RETURNING v.notes",
		want: []col{D("notes", "visits.notes patients.ssn patients.first_name")}},
	{sql: "MERGE INTO visits v USING patients p ON v.patient_id = p.id WHEN MATCHED THEN DELETE", noRows: true},

	// COPY.
	{sql: "COPY (SELECT ssn FROM patients) TO STDOUT", want: []col{P("ssn", "patients.ssn")}},
	{sql: "COPY (SELECT lower(ssn) FROM patients) TO STDOUT WITH (FORMAT csv)", want: []col{D("lower", "patients.ssn")}},
	{sql: "COPY patients TO STDOUT", want: patientsStar()},
	{sql: "COPY patients (ssn, dob) TO STDOUT", want: []col{P("ssn", "patients.ssn"), P("dob", "patients.dob")}},
	{sql: "COPY patients (nope) TO STDOUT", opaque: `column "nope" of relation "patients" does not exist`},
	{sql: "COPY patients FROM STDIN", noRows: true},
	{sql: "COPY patients FROM STDIN WHERE leak(id) > 0", opaque: "plpgsql"},
	{sql: "COPY (DELETE FROM visits RETURNING notes) TO STDOUT", want: []col{P("notes", "visits.notes")}},

	// Cursors and prepared statements.
	{sql: "DECLARE c CURSOR FOR SELECT ssn FROM patients", definesCursor: "c", want: []col{P("ssn", "patients.ssn")}},
	{sql: "DECLARE c CURSOR WITH HOLD FOR SELECT leak(1)", definesCursor: "c", opaque: "plpgsql"},
	{sql: "FETCH 10 FROM c", cursor: "c", noRows: true},
	{sql: "MOVE NEXT IN c", cursor: "c", noRows: true},
	{sql: "PREPARE q AS SELECT reverse(ssn) FROM patients WHERE id = $1", definesPrepared: "q", want: []col{D("reverse", "patients.ssn")}},
	{sql: "PREPARE q(int) AS UPDATE patients SET notes = 'x' WHERE id = $1", definesPrepared: "q", noRows: true},
	{sql: "EXECUTE q(1, now())", prepared: "q", noRows: true},
	{sql: "EXECUTE q((SELECT ssn FROM patients LIMIT 1))", opaque: "EXECUTE q: a parameter derives from table columns"},

	// EXPLAIN, CREATE TABLE AS, utility statements.
	{sql: "EXPLAIN SELECT ssn FROM patients", want: []col{N("QUERY PLAN")}},
	{sql: "EXPLAIN (ANALYZE, FORMAT JSON) SELECT leak(1)", opaque: "plpgsql"},
	{sql: "EXPLAIN EXECUTE q", opaque: "EXPLAIN EXECUTE"},
	{sql: "CREATE TABLE t AS SELECT ssn FROM patients", noRows: true},
	{sql: "CREATE TABLE t AS SELECT leak(1)", opaque: "plpgsql"},
	{sql: "CREATE MATERIALIZED VIEW mv AS SELECT leak(1) WITH NO DATA", opaque: "plpgsql"},
	{sql: "SELECT ssn INTO t FROM patients", noRows: true},
	{sql: "SELECT leak(1) INTO t", opaque: "plpgsql"},
	{sql: "CALL proc()", opaque: "CALL proc"},
	{sql: "DO $$ BEGIN END $$", opaque: "DO"},
	{sql: "SET search_path = public", noRows: true},
	{sql: "RESET ALL", noRows: true},
	{sql: "BEGIN", noRows: true},
	{sql: "COMMIT", noRows: true},
	{sql: "LISTEN ch", noRows: true},
	{sql: "DEALLOCATE q", noRows: true},
	{sql: "CLOSE c", noRows: true},
	{sql: "SHOW search_path", want: []col{N("search_path")}},
	{sql: "SHOW ALL", want: []col{N("name"), N("setting"), N("description")}},
	{sql: "", noRows: true},
	// Definitions return no rows; what they evaluate must be followed.
	{sql: "CREATE TABLE x (a int)", noRows: true},
	{sql: "VACUUM patients", noRows: true},
	{sql: "GRANT SELECT ON patients TO someone", noRows: true},
	{sql: "CREATE INDEX ON patients (lower(ssn))", noRows: true},
	{sql: "CREATE INDEX ON patients (leak(id))", opaque: "function public.leak is written in plpgsql"},
	{sql: "CREATE TABLE y (a int DEFAULT leak(1))", opaque: "function public.leak is written in plpgsql"},
	{sql: "CREATE VIEW v AS SELECT leak(1)", noRows: true}, // followed where the view is used
	{sql: "ALTER TABLE patients ALTER COLUMN mrn TYPE int USING mrn::int", opaque: "ALTER TABLE patients computes a column from other columns"},
	{sql: "ALTER TABLE patients ADD COLUMN x int", noRows: true},
}

func TestAnalyze(t *testing.T) {
	cat := newTestCatalog()
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			res, err := lineage.Analyze(tc.sql, cat)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			checkInvariants(t, res)
			if res.Cursor != tc.cursor || res.Prepared != tc.prepared || res.DefinesCursor != tc.definesCursor || res.DefinesPrepared != tc.definesPrepared {
				t.Errorf("markers: cursor %q prepared %q defines cursor %q prepared %q, want %q %q %q %q",
					res.Cursor, res.Prepared, res.DefinesCursor, res.DefinesPrepared, tc.cursor, tc.prepared, tc.definesCursor, tc.definesPrepared)
			}
			if tc.opaque != "" {
				if !strings.Contains(res.Opaque, tc.opaque) {
					t.Fatalf("Opaque = %q, want it to contain %q (outputs %s)", res.Opaque, tc.opaque, show(res.Outputs))
				}
				return
			}
			if res.Opaque != "" {
				t.Fatalf("Opaque = %q, want outputs", res.Opaque)
			}
			if tc.noRows {
				if res.Outputs != nil {
					t.Fatalf("outputs %s, want none", show(res.Outputs))
				}
				return
			}
			if got, want := show(res.Outputs), showWant(tc.want); got != want {
				t.Errorf("outputs\n got %s\nwant %s", got, want)
			}
		})
	}
	if len(cases) < 120 {
		t.Errorf("only %d cases", len(cases))
	}
}

// checkInvariants holds for every result: an opaque one has no outputs, a
// plain output has exactly one source, sources are sorted and unique.
func checkInvariants(t testing.TB, res *lineage.Result) {
	t.Helper()
	if res.Opaque != "" && res.Outputs != nil {
		t.Errorf("opaque result with outputs")
	}
	for _, o := range res.Outputs {
		if o.Plain && len(o.Sources) != 1 {
			t.Errorf("plain output %q has %d sources", o.Name, len(o.Sources))
		}
		for i := 1; i < len(o.Sources); i++ {
			a, b := o.Sources[i-1], o.Sources[i]
			if !(a.Schema < b.Schema || a.Schema == b.Schema && (a.Table < b.Table || a.Table == b.Table && (a.Column < b.Column ||
				a.Column == b.Column && a.TypeOID < b.TypeOID))) {
				t.Errorf("output %q: sources not sorted and unique: %v", o.Name, o.Sources)
			}
		}
	}
}

func show(outs []lineage.Output) string {
	var b strings.Builder
	for _, o := range outs {
		var srcs []string
		for _, s := range o.Sources {
			srcs = append(srcs, s.String())
		}
		slices.Sort(srcs)
		kind := "derived"
		if o.Plain {
			kind = "plain"
		}
		b.WriteString("\n\t" + o.Name + " " + kind + " [" + strings.Join(srcs, " ") + "]")
	}
	return b.String()
}

func showWant(cols []col) string {
	outs := make([]lineage.Output, len(cols))
	for i, c := range cols {
		outs[i] = lineage.Output{Name: c.name, Plain: c.plain}
		for _, s := range strings.Fields(c.srcs) {
			parts := strings.Split(s, ".")
			if len(parts) == 2 {
				parts = append([]string{"public"}, parts...)
			}
			outs[i].Sources = append(outs[i].Sources, lineage.Col{Schema: parts[0], Table: parts[1], Column: parts[2]})
		}
	}
	return show(outs)
}

// Sources carry the catalog's type OIDs.
func TestTypeOIDs(t *testing.T) {
	res, err := lineage.Analyze("SELECT id, dob FROM patients", newTestCatalog())
	if err != nil || res.Opaque != "" {
		t.Fatalf("%v %q", err, res.Opaque)
	}
	want := []lineage.Col{{"public", "patients", "id", int4OID}, {"public", "patients", "dob", dateOID}}
	for i, o := range res.Outputs {
		if !slices.Equal(o.Sources, want[i:i+1]) {
			t.Errorf("output %d: %v, want %v", i, o.Sources, want[i])
		}
	}
	if s := want[0].String(); s != "public.patients.id" {
		t.Errorf("Col.String() = %q", s)
	}
}

// A statement that does not parse, or a catalog that fails, is an error,
// not an opaque result.
func TestErrors(t *testing.T) {
	if _, err := lineage.Analyze("SELEC 1", newTestCatalog()); err == nil {
		t.Error("no error for a syntax error")
	}
	boom := errors.New("connection lost")
	_, err := lineage.Analyze("SELECT ssn FROM patients", failingCatalog{boom})
	if !errors.Is(err, lineage.ErrCatalog) || !errors.Is(err, boom) {
		t.Errorf("error %v, want one wrapping ErrCatalog and the catalog's", err)
	}
	_, err = lineage.Analyze("SELECT lower('x')", failingCatalog{boom})
	if !errors.Is(err, lineage.ErrCatalog) {
		t.Errorf("error %v, want ErrCatalog", err)
	}
	if _, err := lineage.Analyze("SELECT 1", nil); err == nil {
		t.Error("no error without a catalog")
	}
}

type failingCatalog struct{ err error }

func (c failingCatalog) Relation(string, string) (*lineage.Relation, error)    { return nil, c.err }
func (c failingCatalog) Functions(string, string) ([]*lineage.Function, error) { return nil, c.err }

// A panic inside the analysis (here the catalog's) is an opaque result, not
// a crash.
func TestPanicIsOpaque(t *testing.T) {
	res, err := lineage.Analyze("SELECT ssn FROM patients", panickingCatalog{})
	if err != nil || !strings.Contains(res.Opaque, "internal error") {
		t.Errorf("got %+v, %v; want an opaque internal error", res, err)
	}
}

type panickingCatalog struct{}

func (panickingCatalog) Relation(string, string) (*lineage.Relation, error)    { panic("boom") }
func (panickingCatalog) Functions(string, string) ([]*lineage.Function, error) { panic("boom") }

// Each relation and function name is asked of the catalog once per call,
// however often the statement names it.
func TestCatalogAskedOnce(t *testing.T) {
	c := &countingCatalog{Catalog: newTestCatalog(), n: map[string]int{}}
	res, err := lineage.Analyze(`SELECT lower(a.given), lower(b.given), ssn_of(1), ssn_of(2)
		FROM patient_names a, patient_names b, patients p, patients q`, c)
	if err != nil || res.Opaque != "" {
		t.Fatalf("%v %q", err, res.Opaque)
	}
	for k, n := range c.n {
		if n > 1 {
			t.Errorf("%s asked %d times", k, n)
		}
	}
}

type countingCatalog struct {
	lineage.Catalog
	n map[string]int
}

func (c *countingCatalog) Relation(schema, name string) (*lineage.Relation, error) {
	c.n["relation "+schema+"."+name]++
	return c.Catalog.Relation(schema, name)
}

func (c *countingCatalog) Functions(schema, name string) ([]*lineage.Function, error) {
	c.n["function "+schema+"."+name]++
	return c.Catalog.Functions(schema, name)
}

// A catalog relation without a kind is not taken for a table.
func TestZeroKindIsOpaque(t *testing.T) {
	c := newTestCatalog()
	c.rels["public.mystery"] = &lineage.Relation{Schema: "public", Name: "mystery", Columns: []lineage.Column{{Name: "x"}}}
	res, err := lineage.Analyze("SELECT x FROM mystery", c)
	if err != nil || !strings.Contains(res.Opaque, "other relation") {
		t.Errorf("got %+v, %v", res, err)
	}
}

// Nested recursive CTEs multiply the analysis's work (each is iterated to
// a fixpoint inside every round of the one around it): past a bound the
// statement is opaque instead of a busy core. Ordinary statements stay far
// below it.
func TestWorkIsBounded(t *testing.T) {
	cat := newTestCatalog()
	q := "SELECT ssn FROM patients"
	for range 12 {
		q = "WITH RECURSIVE r(a, b, c) AS (SELECT ssn, mrn, phone FROM patients UNION ALL SELECT b, c, (" + q + " LIMIT 1) FROM r) SELECT a FROM r"
	}
	res, err := lineage.Analyze(q, cat)
	if err != nil || res.Opaque != "statement too complex to analyze" {
		t.Errorf("got %+v, %v", res, err)
	}
	for _, tc := range cases {
		if n := lineage.Steps(tc.sql, cat); n > lineage.MaxSteps/100 {
			t.Errorf("%s: %d steps", tc.sql, n)
		}
	}
}

// Node kinds the analysis does not know are opaque, named by their kind:
// here executor nodes that raw parse trees never hold.
func TestUnknownNodeKinds(t *testing.T) {
	for want, n := range map[string]*pg_query.Node{
		"unsupported: var":       {Node: &pg_query.Node_Var{Var: &pg_query.Var{}}},
		"unsupported: query":     {Node: &pg_query.Node_Query{Query: &pg_query.Query{}}},
		"unsupported: func_expr": {Node: &pg_query.Node_FuncExpr{FuncExpr: &pg_query.FuncExpr{}}},
	} {
		if got := lineage.ExprOpaque(n); got != want {
			t.Errorf("%T: opaque %q, want %q", n.GetNode(), got, want)
		}
	}
	// PL/pgSQL's assignment: a statement kind no SQL text makes.
	n := &pg_query.Node{Node: &pg_query.Node_PlassignStmt{PlassignStmt: &pg_query.PLAssignStmt{}}}
	if got := lineage.StatementOpaque(n); got != "unsupported: plassign_stmt" {
		t.Errorf("PLAssignStmt: opaque %q", got)
	}
}
