package lineage_test

import (
	"fmt"
	"strings"

	"github.com/phigate/phigate/session/lineage"
)

// testCatalog is a map-backed Catalog. A fake is what this package needs:
// lineage is pure, and the catalog reader that talks to a real server
// belongs to its caller (session/pgwire), which tests it against one.
// Unqualified names resolve through search_path pg_catalog, public, as
// PostgreSQL's implicit pg_catalog first does.
type testCatalog struct {
	rels  map[string]*lineage.Relation
	funcs map[string][]*lineage.Function
}

var searchPath = []string{"pg_catalog", "public"}

func (c *testCatalog) Relation(schema, name string) (*lineage.Relation, error) {
	if schema != "" {
		return c.rels[schema+"."+name], nil
	}
	for _, s := range searchPath {
		if r := c.rels[s+"."+name]; r != nil {
			return r, nil
		}
	}
	return nil, nil
}

func (c *testCatalog) Functions(schema, name string) ([]*lineage.Function, error) {
	if schema != "" {
		return c.funcs[schema+"."+name], nil
	}
	var out []*lineage.Function
	for _, s := range searchPath {
		out = append(out, c.funcs[s+"."+name]...)
	}
	return out, nil
}

const (
	int4OID = 23
	int8OID = 20
	textOID = 25
	dateOID = 1082
	nameOID = 19
	oidOID  = 26
)

func table(schema, name string, kind lineage.RelKind, cols ...string) *lineage.Relation {
	r := &lineage.Relation{Schema: schema, Name: name, Kind: kind}
	for _, c := range cols {
		n, typ, _ := strings.Cut(c, " ")
		oid := map[string]uint32{"int": int4OID, "bigint": int8OID, "text": textOID, "date": dateOID, "name": nameOID, "oid": oidOID, "anyarray": 2277}[typ]
		r.Columns = append(r.Columns, lineage.Column{Name: n, TypeOID: oid})
	}
	return r
}

func view(name string, kind lineage.RelKind, def string, cols ...string) *lineage.Relation {
	r := table("public", name, kind, cols...)
	r.Definition = def
	return r
}

var patientCols = []string{"id int", "ssn text", "first_name text", "last_name text", "dob date", "phone text", "mrn text", "notes text"}

// newTestCatalog builds the clinic every test uses.
func newTestCatalog() *testCatalog {
	c := &testCatalog{rels: map[string]*lineage.Relation{}, funcs: map[string][]*lineage.Function{}}
	add := func(r *lineage.Relation) { c.rels[r.Schema+"."+r.Name] = r }
	add(table("public", "patients", lineage.Table, patientCols...))
	add(table("public", "visits", lineage.Table, "id int", "patient_id int", "visit_date date", "reason text", "notes text"))
	add(table("public", "doctors", lineage.Table, "id int", "name text", "phone text"))
	add(table("public", "appointments", lineage.Table, "id int", "patient_id int", "doctor_id int", "at date"))
	add(table("public", "ext_patients", lineage.Foreign, "ssn text"))
	add(table("public", "p_events", lineage.Partitioned, "id int", "payload text"))
	add(table("public", "patients_id_seq", lineage.Other, "last_value bigint"))
	add(table("pg_catalog", "pg_class", lineage.Table, "oid oid", "relname name"))
	add(table("pg_catalog", "pg_statistic", lineage.Table, "starelid oid", "staattnum int", "stavalues1 anyarray"))
	pgStats := view("pg_stats", lineage.View,
		" SELECT c.relname AS tablename,\n    s.stavalues1::text AS most_common_vals\n   FROM pg_statistic s\n     JOIN pg_class c ON c.oid = s.starelid;",
		"tablename name", "most_common_vals text")
	pgStats.Schema = "pg_catalog"
	add(pgStats)
	add(view("patient_names", lineage.View,
		" SELECT patients.id AS pid,\n    patients.first_name AS given,\n    patients.last_name AS family\n   FROM patients;",
		"pid int", "given text", "family text"))
	add(view("full_names", lineage.View,
		" SELECT patient_names.pid,\n    (patient_names.given || ' '::text) || patient_names.family AS full_name\n   FROM patient_names;",
		"pid int", "full_name text"))
	// CREATE VIEW v_renamed (social, birth) AS SELECT ssn, dob FROM patients:
	// the definition keeps the old names, the catalog has the new.
	add(view("v_renamed", lineage.View, " SELECT patients.ssn,\n    patients.dob\n   FROM patients;", "social text", "birth date"))
	add(view("patient_stats", lineage.MatView,
		" SELECT patients.dob,\n    count(*) AS n\n   FROM patients\n  GROUP BY patients.dob;", "dob date", "n bigint"))
	add(view("v_cycle_a", lineage.View, " SELECT v_cycle_b.x FROM v_cycle_b;", "x text"))
	add(view("v_cycle_b", lineage.View, " SELECT v_cycle_a.x FROM v_cycle_a;", "x text"))
	add(view("v_bad", lineage.View, "SELEC x", "x text"))
	add(view("v_mismatch", lineage.View, " SELECT patients.ssn, patients.dob FROM patients;", "ssn text"))
	add(view("v_leaky", lineage.View, " SELECT patients.id FROM patients WHERE leak(patients.id) > 0;", "id int"))
	add(view("v_recursive", lineage.View,
		" WITH RECURSIVE r(n, s) AS (SELECT 1, patients.ssn FROM patients UNION ALL SELECT r.n + 1, r.s FROM r WHERE r.n < 3) SELECT r.n, r.s FROM r;",
		"n int", "s text"))
	for i := range 21 {
		def := fmt.Sprintf(" SELECT v_deep_%d.x FROM v_deep_%d;", i+1, i+1)
		if i == 20 {
			def = " SELECT patients.ssn AS x FROM patients;"
		}
		add(view(fmt.Sprintf("v_deep_%d", i), lineage.View, def, "x text"))
	}

	builtin := func(name string, opts ...func(*lineage.Function)) {
		f := &lineage.Function{Schema: "pg_catalog", Name: name, Builtin: true, Language: "internal"}
		for _, o := range opts {
			o(f)
		}
		c.funcs["pg_catalog."+name] = append(c.funcs["pg_catalog."+name], f)
	}
	srf := func(f *lineage.Function) { f.ReturnsSet = true }
	outs := func(cols ...string) func(*lineage.Function) {
		return func(f *lineage.Function) { f.OutColumns = cols }
	}
	for _, name := range strings.Fields(`lower upper reverse replace substr substring to_char array_agg string_agg count
		row_to_json to_json to_jsonb json_agg json_build_object jsonb_build_object encode ascii translate coalesce now
		length sum max min avg row_number rank lag lead mode percentile_disc concat format btrim extract date_part md5
		json_to_record set_config current_setting nextval abs left right split_part regexp_replace xmlagg
		array_to_string timezone overlaps position similar_to_escape pg_sleep merge_action query_to_xml table_to_xml
		cursor_to_xml pg_read_file lo_get`) {
		builtin(name)
	}
	builtin("generate_series", srf)
	builtin("unnest", srf)
	builtin("json_each", srf, outs("key", "value"))
	builtin("json_each_text", srf, outs("key", "value"))
	builtin("pg_get_keywords", srf, outs("word", "catcode", "barelabel", "catdesc", "baredesc"))

	sql := func(name, def string, opts ...func(*lineage.Function)) {
		f := &lineage.Function{Schema: "public", Name: name, Language: "sql", Definition: def}
		for _, o := range opts {
			o(f)
		}
		c.funcs["public."+name] = append(c.funcs["public."+name], f)
	}
	sql("ssn_of", "CREATE OR REPLACE FUNCTION public.ssn_of(pid integer)\n RETURNS text\n LANGUAGE sql\nAS $function$SELECT ssn FROM patients WHERE id = pid$function$\n")
	sql("ssn_of_atomic", "CREATE OR REPLACE FUNCTION public.ssn_of_atomic(pid integer)\n RETURNS text\n LANGUAGE sql\nBEGIN ATOMIC\n SELECT patients.ssn\n    FROM patients\n   WHERE (patients.id = ssn_of_atomic.pid);\nEND\n")
	sql("echo", "CREATE OR REPLACE FUNCTION public.echo(x text)\n RETURNS text\n LANGUAGE sql\nRETURN (x || ''::text)\n")
	sql("add_one", "CREATE OR REPLACE FUNCTION public.add_one(i integer)\n RETURNS integer\n LANGUAGE sql\nIMMUTABLE\nAS $function$ SELECT i + 1 $function$\n")
	sql("dollar_echo", "CREATE OR REPLACE FUNCTION public.dollar_echo(text)\n RETURNS text\n LANGUAGE sql\nAS $function$ SELECT $1 || 'x' $function$\n")
	sql("qualified_param", "CREATE OR REPLACE FUNCTION public.qualified_param(id integer)\n RETURNS text\n LANGUAGE sql\nAS $function$ SELECT p.ssn FROM patients p WHERE p.id = qualified_param.id $function$\n")
	sql("two_statements", "CREATE OR REPLACE FUNCTION public.two_statements()\n RETURNS text\n LANGUAGE sql\nAS $function$ SELECT notes FROM visits; SELECT mrn FROM patients LIMIT 1 $function$\n")
	sql("patients_born", "CREATE OR REPLACE FUNCTION public.patients_born(d date)\n RETURNS TABLE(pid integer, ssn text)\n LANGUAGE sql\nAS $function$ SELECT id, ssn FROM patients WHERE dob = d $function$\n",
		srf, outs("pid", "ssn"))
	sql("all_patients", "CREATE OR REPLACE FUNCTION public.all_patients()\n RETURNS SETOF patients\n LANGUAGE sql\nAS $function$ SELECT * FROM patients $function$\n",
		srf, outs("id", "ssn", "first_name", "last_name", "dob", "phone", "mrn", "notes"))
	sql("f_out", "CREATE OR REPLACE FUNCTION public.f_out(a integer, OUT b text, OUT c integer)\n RETURNS record\n LANGUAGE sql\nAS $function$ SELECT phone, id FROM patients WHERE id = a $function$\n",
		outs("b", "c"))
	sql("recursive_fn", "CREATE OR REPLACE FUNCTION public.recursive_fn(n integer)\n RETURNS integer\n LANGUAGE sql\nAS $function$ SELECT recursive_fn(n - 1) $function$\n")
	sql("calls_leak", "CREATE OR REPLACE FUNCTION public.calls_leak()\n RETURNS integer\n LANGUAGE sql\nAS $function$ SELECT leak(1) $function$\n")
	sql("reads_temp", "CREATE OR REPLACE FUNCTION public.reads_temp()\n RETURNS text\n LANGUAGE sql\nAS $function$ SELECT x FROM scratch $function$\n")
	sql("writes", "CREATE OR REPLACE FUNCTION public.writes(t text)\n RETURNS void\n LANGUAGE sql\nAS $function$ INSERT INTO visits (notes) VALUES (t) $function$\n")
	sql("mixed", "CREATE OR REPLACE FUNCTION public.mixed(x text)\n RETURNS text\n LANGUAGE sql\nRETURN (SELECT patients.mrn FROM patients LIMIT 1)\n")
	builtin("mixed")
	sql("own_path_unqualified", "CREATE OR REPLACE FUNCTION public.own_path_unqualified()\n RETURNS text\n LANGUAGE sql\n SET search_path TO 'private', 'public'\nAS $function$ SELECT ssn FROM patients $function$\n")
	sql("own_path_qualified", "CREATE OR REPLACE FUNCTION public.own_path_qualified()\n RETURNS text\n LANGUAGE sql\n SET search_path TO 'private'\nAS $function$ SELECT lower(p.ssn) FROM public.patients p $function$\n")
	sql("own_path_catalog_late", "CREATE OR REPLACE FUNCTION public.own_path_catalog_late()\n RETURNS text\n LANGUAGE sql\n SET search_path TO 'public', 'pg_catalog'\nAS $function$ SELECT lower(p.ssn) FROM public.patients p $function$\n")
	sql("not_a_function", "CREATE VIEW x AS SELECT 1")
	c.funcs["public.leak"] = []*lineage.Function{{Schema: "public", Name: "leak", Language: "plpgsql"}}
	c.funcs["public.c_func"] = []*lineage.Function{{Schema: "public", Name: "c_func", Language: "c"}}
	return c
}
