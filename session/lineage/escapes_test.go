package lineage_test

import (
	"strings"
	"testing"

	"github.com/phigate/phigate/session/lineage"
)

// TestEscapes: values that leave a statement other than through its result
// (into a table, or into a function with an effect) are named, so that a
// masked session can refuse to move masked values where masking cannot
// follow them.
func TestEscapes(t *testing.T) {
	cat := newTestCatalog()
	for _, tc := range []struct {
		sql     string
		escapes string // space-separated "table.column", "" for none
	}{
		{"SELECT ssn FROM patients", ""},
		{"SELECT lower(first_name), count(ssn) FROM patients GROUP BY 1", ""},
		{"INSERT INTO visits (notes) SELECT ssn FROM patients", "patients.ssn"},
		{"INSERT INTO visits (notes) SELECT reverse(ssn) FROM patients WHERE id = 1", "patients.ssn"},
		{"INSERT INTO visits (notes) VALUES ('x'), ($1)", ""},
		{"INSERT INTO visits (notes) VALUES ((SELECT ssn FROM patients LIMIT 1))", "patients.ssn"},
		{"INSERT INTO visits (id, notes) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET notes = (SELECT first_name FROM patients LIMIT 1)", "patients.first_name"},
		{"UPDATE visits SET notes = p.ssn FROM patients p WHERE p.id = visits.patient_id", "patients.ssn"},
		{"UPDATE visits SET notes = 'seen' WHERE patient_id IN (SELECT id FROM patients WHERE ssn LIKE '1%')", ""},
		{"UPDATE patients SET notes = notes || ' seen'", "patients.notes"},
		{"DELETE FROM visits WHERE patient_id = 1", ""},
		{"MERGE INTO visits v USING patients p ON v.patient_id = p.id WHEN MATCHED THEN UPDATE SET notes = p.dob::text WHEN NOT MATCHED THEN INSERT (notes) VALUES (p.mrn::text)", "patients.dob patients.mrn"},
		{"WITH w AS (INSERT INTO visits (notes) SELECT phone FROM patients RETURNING id) SELECT count(*) FROM w", "patients.phone"},
		{"CREATE TABLE copy AS SELECT ssn, id FROM patients", "patients.id patients.ssn"},
		{"SELECT first_name INTO t FROM patients", "patients.first_name"},
		{"SELECT set_config('application_name', ssn, false) FROM patients", "patients.ssn"},
		{"SELECT nextval('patients_id_seq'), first_name FROM patients", ""},
		{"SELECT writes(last_name) FROM patients", "patients.last_name"},
		{"SELECT echo(last_name) FROM patients", ""},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			res, err := lineage.Analyze(tc.sql, cat)
			if err != nil {
				t.Fatal(err)
			}
			if res.Opaque != "" {
				t.Fatalf("opaque: %s", res.Opaque)
			}
			var got []string
			for _, c := range res.Escapes {
				got = append(got, c.Table+"."+c.Column)
			}
			if g := strings.Join(got, " "); g != tc.escapes {
				t.Errorf("escapes = %q, want %q", g, tc.escapes)
			}
		})
	}
}

// TestGeneratedColumns: a generated column derives from the columns its
// expression names.
func TestGeneratedColumns(t *testing.T) {
	cat := newTestCatalog()
	cat.rels["public.gen"] = &lineage.Relation{Schema: "public", Name: "gen", Kind: lineage.Table, Columns: []lineage.Column{
		{Name: "ssn", TypeOID: 25}, {Name: "digits", TypeOID: 25, Generated: "replace(ssn, '-'::text, ''::text)"}, {Name: "id", TypeOID: 23},
	}}
	res, err := lineage.Analyze("SELECT digits, id FROM gen", cat)
	if err != nil || res.Opaque != "" {
		t.Fatalf("%v %s", err, res.Opaque)
	}
	d, id := res.Outputs[0], res.Outputs[1]
	if d.Plain || len(d.Sources) != 2 || d.Sources[0].Column != "digits" || d.Sources[1].Column != "ssn" {
		t.Errorf("digits = %+v, want derived from digits and ssn", d)
	}
	if !id.Plain {
		t.Errorf("id = %+v, want plain", id)
	}
	cat.rels["public.gen"].Columns[1].Generated = "lower(nosuch)"
	if res, err := lineage.Analyze("SELECT id FROM gen", cat); err != nil || res.Opaque == "" {
		t.Errorf("a generated column naming an unknown column: %v %+v, want opaque", err, res)
	}
}

// TestReads: every column a statement reads, wherever it is named.
func TestReads(t *testing.T) {
	cat := newTestCatalog()
	for _, tc := range []struct{ sql, reads string }{
		{"SELECT 1", ""},
		{"SELECT id FROM patients WHERE ssn LIKE '1%' ORDER BY dob", "patients.dob patients.id patients.ssn"},
		{"SELECT count(*) FROM patients p JOIN visits v ON v.patient_id = p.id", "patients.id visits.patient_id"},
		{"SELECT given FROM patient_names", "patients.first_name patients.id patients.last_name"}, // the view reads all it selects
		{"SELECT reverse(first_name)::int FROM patients", "patients.first_name"},
		{"SELECT * FROM visits", "visits.id visits.notes visits.patient_id visits.reason visits.visit_date"},
	} {
		res, err := lineage.Analyze(tc.sql, cat)
		if err != nil || res.Opaque != "" {
			t.Fatalf("%s: %v %s", tc.sql, err, res.Opaque)
		}
		var got []string
		for _, c := range res.Reads {
			got = append(got, c.Table+"."+c.Column)
		}
		if g := strings.Join(got, " "); g != tc.reads {
			t.Errorf("%s: reads %q, want %q", tc.sql, g, tc.reads)
		}
	}
}

// TestTemporaryObjects: what only the session sees cannot be followed, and
// could shadow a table of the same name.
func TestTemporaryObjects(t *testing.T) {
	cat := newTestCatalog()
	for _, sql := range []string{
		"CREATE TEMP VIEW patients AS SELECT ssn AS id FROM public.patients",
		"CREATE TEMPORARY TABLE scratch (x text)",
		"CREATE TABLE pg_temp.scratch (x text)",
		"CREATE VIEW pg_temp.v AS SELECT 1",
		"CREATE TEMP SEQUENCE s",
		"CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS 'SELECT 1'",
		"SELECT 1 AS x INTO TEMP t",
		"CREATE TEMP TABLE t AS SELECT 1 AS x",
		"CREATE TYPE pg_temp.mood AS ENUM ('a')",
		"CREATE DOMAIN pg_temp.d AS text",
	} {
		res, err := lineage.Analyze(sql, cat)
		if err != nil || res.Opaque == "" {
			t.Errorf("%s: %v %+v, want opaque", sql, err, res)
		}
	}
	for _, sql := range []string{"CREATE TABLE scratch (x text)", "CREATE VIEW v AS SELECT 1", "SELECT 1"} {
		if res, err := lineage.Analyze(sql, cat); err != nil || res.Opaque != "" {
			t.Errorf("%s: %v %+v, want traced", sql, err, res)
		}
	}
}
