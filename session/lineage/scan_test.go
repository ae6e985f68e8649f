package lineage_test

import (
	"testing"

	"github.com/phigate/phigate/session/lineage"
)

// TestScans checks which outputs are columns of one row: a group number
// per output, equal for outputs whose Scan must be equal, different for
// outputs whose Scan must differ, 0 for Scan 0. Date shifting per patient
// takes the patient's id from the output of the date's own scan; an
// output paired with the wrong scan would shift one patient's dates by
// another's shift.
func TestScans(t *testing.T) {
	for _, tc := range []struct {
		sql    string
		groups []int
	}{
		{"SELECT id, dob FROM patients", []int{1, 1}},
		{"SELECT dob, ssn, id FROM patients p", []int{1, 1, 1}},
		{"SELECT * FROM patients", []int{1, 1, 1, 1, 1, 1, 1, 1}},
		{"SELECT p.id, q.dob FROM patients p, patients q", []int{1, 2}},
		{"SELECT p.id, p.dob, q.id, q.dob FROM patients p JOIN patients q ON p.id <> q.id", []int{1, 1, 2, 2}},
		{"SELECT p.id, v.patient_id, p.dob, v.visit_date FROM patients p JOIN visits v ON v.patient_id = p.id", []int{1, 2, 1, 2}},
		{"SELECT s.id, s.dob FROM (SELECT id, dob FROM patients) s", []int{1, 1}},
		{"SELECT s.id, s.dob FROM (SELECT p.id, q.dob FROM patients p, patients q) s", []int{1, 2}},
		{"WITH x AS (SELECT id, dob FROM patients) SELECT a.id, a.dob, b.dob FROM x a, x b", []int{1, 1, 2}},
		{"WITH x AS (SELECT id, dob FROM patients) SELECT id, dob FROM x", []int{1, 1}},
		{"SELECT a.pid, a.given, b.given FROM patient_names a, patient_names b", []int{1, 1, 2}},
		{"SELECT social, birth FROM v_renamed", []int{1, 1}},
		// Set operations: columns of one scan in every branch stay paired.
		{"SELECT id, dob FROM patients UNION ALL SELECT id, dob FROM patients", []int{1, 1}},
		{"SELECT id, dob FROM patients WHERE id = 1 UNION SELECT id, dob FROM patients UNION SELECT id, dob FROM patients", []int{1, 1}},
		{"SELECT id, dob FROM patients UNION ALL SELECT q.id, p.dob FROM patients p, patients q", []int{1, 2}},
		{"SELECT p.id, q.dob FROM patients p, patients q UNION SELECT id, dob FROM patients", []int{1, 2}},
		{"VALUES (1, current_date)", []int{0, 0}},
		// A scalar subquery is derived; a LATERAL subquery is a scan of
		// its own, except for what it takes from the outer row.
		{"SELECT (SELECT id FROM patients LIMIT 1) AS id, dob FROM patients", []int{0, 1}},
		{"SELECT p.id, x.dob FROM patients p, LATERAL (SELECT dob FROM patients q WHERE q.id = p.id) x", []int{1, 2}},
		{"SELECT p.id, x.d FROM patients p, LATERAL (SELECT p.dob AS d) x", []int{1, 1}},
		{"SELECT id, dob + 1 FROM patients", []int{1, 0}},
		{"WITH RECURSIVE r(id, dob) AS (SELECT id, dob FROM patients UNION ALL SELECT r.id, p.dob FROM r, patients p WHERE p.id = r.id + 1) SELECT id, dob FROM r", []int{0, 0}},
		{"UPDATE patients SET notes = 'x' RETURNING id, dob", []int{1, 1}},
		{"DELETE FROM patients p USING patients q WHERE p.id = q.id RETURNING p.id, q.dob", []int{1, 2}},
		{"COPY patients (id, dob) TO STDOUT", []int{1, 1}},
		{"COPY (SELECT p.id, q.dob FROM patients p, patients q) TO STDOUT", []int{1, 2}},
	} {
		res, err := lineage.Analyze(tc.sql, newTestCatalog())
		if err != nil || res.Opaque != "" {
			t.Errorf("%s: %v %q", tc.sql, err, res.Opaque)
			continue
		}
		if len(res.Outputs) != len(tc.groups) {
			t.Errorf("%s: %d outputs, want %d", tc.sql, len(res.Outputs), len(tc.groups))
			continue
		}
		scanOf := map[int]int{}
		groupOf := map[int]int{}
		for i, o := range res.Outputs {
			g := tc.groups[i]
			switch {
			case g == 0 && o.Scan != 0:
				t.Errorf("%s: output %d (%s): scan %d, want 0", tc.sql, i, o.Name, o.Scan)
			case g == 0:
			case o.Scan == 0:
				t.Errorf("%s: output %d (%s): scan 0, want one", tc.sql, i, o.Name)
			case scanOf[g] != 0 && scanOf[g] != o.Scan:
				t.Errorf("%s: output %d (%s): scan %d, want %d as the outputs of its group", tc.sql, i, o.Name, o.Scan, scanOf[g])
			case groupOf[o.Scan] != 0 && groupOf[o.Scan] != g:
				t.Errorf("%s: output %d (%s): scan %d is group %d's", tc.sql, i, o.Name, o.Scan, groupOf[o.Scan])
			default:
				scanOf[g], groupOf[o.Scan] = o.Scan, g
			}
		}
	}
}
