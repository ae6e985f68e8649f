package pgwire_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/resource"
)

// subjectShiftDays is the largest shift of the profile TestDateShiftPerSubject uses.
const subjectShiftDays = 30

// startSubjectGateway is a gateway whose clinic resource names its
// subjects (patients.id, encounters.patient_id) and whose profile shifts
// dates of birth and admission.
func startSubjectGateway(t *testing.T) *gateway {
	t.Helper()
	g := startGateway(t, gatewayOptions{})
	// Patients 1 and 3..12 share a date of birth: one shift for all would
	// show them alike.
	var more []string
	for id := 5; id <= 12; id++ {
		more = append(more, fmt.Sprintf("(%d, 'P%d', '1961-03-14')", id, id))
	}
	if err := g.pg.Exec(context.Background(), g.db, `SET ROLE phigate_svc;
		UPDATE patients SET dob = '1961-03-14' WHERE id IN (3, 4);
		INSERT INTO patients (id, name, dob) VALUES `+strings.Join(more, ", ")+`;
		CREATE TABLE encounters (id int PRIMARY KEY, patient_id bigint, admitted timestamp);
		INSERT INTO encounters VALUES (1, 1, '2020-05-01 10:30'), (2, 2, '2020-05-01 10:30'), (3, 1, '2021-01-02 08:00');
		CREATE TABLE labs (id int, drawn date); INSERT INTO labs VALUES (1, '2020-05-01');`); err != nil {
		t.Fatal(err)
	}
	prof, err := mask.Compile("hipaa", mask.ProfileConfig{Rules: []mask.RuleConfig{
		{Column: "public.patients.ssn", Action: "keep-last-4"},
		{Column: "patients.name", Action: "redact"},
		{Column: "patients.dob", Action: "date-shift"},
		{Column: "encounters.admitted", Action: "date-shift"},
		{Column: "labs.drawn", Action: "date-shift"},
		{Column: "patients.mrn", Action: "hash"},
	}, Detect: &mask.DetectConfig{DateShiftDays: subjectShiftDays}}, mask.Keys{Pseudonym: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	subjects, err := mask.NewSubjects(map[string]string{"public.patients": "id", "encounters": "patient_id"})
	if err != nil {
		t.Fatal(err)
	}
	g.publish(t, false, func(s *session.Snapshot) {
		r := *s.Resources["clinic"]
		r.Subjects = subjects
		s.Resources = map[string]*resource.Resource{"clinic": &r}
		s.Profiles = map[string]*mask.Profile{"hipaa": prof}
	})
	return g
}

// dobs runs sql, whose rows are (id, dob) or (dob, id) as idFirst says,
// and returns each patient's masked date of birth ("NULL" for NULL).
func dobs(t *testing.T, conn *pgx.Conn, sql string, idFirst bool, args ...any) map[int]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out := map[int]string{}
	for rows.Next() {
		var id int
		var dob *time.Time
		var err error
		if idFirst {
			err = rows.Scan(&id, &dob)
		} else {
			err = rows.Scan(&dob, &id)
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out[id] = "NULL"
		if dob != nil {
			out[id] = dob.Format("2006-01-02")
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// daysBack is how many days masked lies before raw (both YYYY-MM-DD).
func daysBack(t *testing.T, raw, masked string) int {
	t.Helper()
	r, err1 := time.Parse("2006-01-02", raw)
	m, err2 := time.Parse("2006-01-02", masked)
	if err1 != nil || err2 != nil {
		t.Fatalf("dates %q %q", raw, masked)
	}
	return int(r.Sub(m).Hours() / 24)
}

// TestDateShiftPerSubject: through the gateway, with pgx against a real
// PostgreSQL, a patient's dates move by that patient's own shift, the same
// in every query, column order, wire format and session; patients' shifts
// differ; a date whose subject the result does not carry, from the date's
// own row, is NULL.
func TestDateShiftPerSubject(t *testing.T) {
	g := startSubjectGateway(t)
	ctx := context.Background()
	connect := func() *pgx.Conn {
		conn, err := pgx.Connect(ctx, g.dsn("reader-bot", "require"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	a := connect()
	raw := map[int]string{1: "1961-03-14", 2: "1975-11-02"}
	for id := 3; id <= 12; id++ {
		raw[id] = "1961-03-14"
	}

	want := dobs(t, a, "SELECT id, dob FROM patients ORDER BY id", true) // binary
	if len(want) != 12 {
		t.Fatalf("rows: %v", want)
	}
	shifts := map[int]int{}
	for id, d := range want {
		s := daysBack(t, raw[id], d)
		if s < 1 || s > subjectShiftDays {
			t.Errorf("patient %d: %s -> %s, %d days back, want 1..%d", id, raw[id], d, s, subjectShiftDays)
		}
		shifts[s]++
	}
	if len(shifts) < 3 {
		t.Errorf("12 patients share %d shifts: %v", len(shifts), want)
	}

	same := func(name string, got map[int]string, rows int) {
		t.Helper()
		if len(got) != rows {
			t.Errorf("%s: %d rows, want %d", name, len(got), rows)
		}
		for id, d := range got {
			if want[id] != d {
				t.Errorf("%s: patient %d: %s, want %s", name, id, d, want[id])
			}
		}
	}
	same("subject after the date", dobs(t, a, "SELECT dob, id FROM patients ORDER BY id", false), 12)
	same("text format", dobs(t, a, "SELECT dob, id FROM patients ORDER BY id", false, pgx.QueryExecModeSimpleProtocol), 12)
	same("subquery", dobs(t, a, "SELECT s.id, s.dob FROM (SELECT id, dob FROM patients) s", true), 12)
	same("one patient at a time", dobs(t, a, "SELECT id, dob FROM patients WHERE id = $1", true, 2), 1)
	same("union", dobs(t, a, "SELECT id, dob FROM patients WHERE id = 1 UNION ALL SELECT id, dob FROM patients WHERE id > 1", true), 12)
	b := connect()
	same("another session", dobs(t, b, "SELECT dob, id FROM patients", false), 12)
	b.Close(ctx)

	// The subject is found where its values come from, in the date's own
	// row; never by name, never from another row.
	for _, sql := range []string{
		"SELECT id, dob FROM (SELECT 1 AS id, dob FROM patients) s",
		"SELECT id + 0 AS id, dob FROM patients",
		"SELECT (SELECT id FROM patients WHERE id = 1) AS id, dob FROM patients",
		"SELECT p.id, q.dob FROM patients p, patients q WHERE p.id = 1",
		"SELECT p.id, q.dob FROM patients p JOIN patients q ON q.id <> p.id WHERE p.id = 1",
		"WITH x AS (SELECT id, dob FROM patients) SELECT a.id, b.dob FROM x a, x b WHERE a.id = 1",
		"SELECT id, dob FROM patients WHERE id = 1 UNION ALL SELECT p.id, q.dob FROM patients p, patients q WHERE p.id = 1",
		"SELECT e.patient_id::int AS id, p.dob FROM encounters e, patients p",
	} {
		for id, d := range dobs(t, a, sql, true) {
			if d != "NULL" {
				t.Errorf("%s: patient %d: dob %s, want NULL", sql, id, d)
			}
		}
	}
	var dob *time.Time
	if err := a.QueryRow(ctx, "SELECT dob FROM patients WHERE id = 1").Scan(&dob); err != nil || dob != nil {
		t.Errorf("without the subject column: %v, %v; want NULL", dob, err)
	}

	// A join: each table's dates by its own subject; the same patient's
	// dates by the same shift, so intervals within a record survive.
	rows, err := a.Query(ctx, "SELECT e.admitted, p.dob, e.patient_id, p.id FROM encounters e JOIN patients p ON p.id = e.patient_id ORDER BY e.id")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var admitted, pdob time.Time
		var pid int64
		var id int
		if err := rows.Scan(&admitted, &pdob, &pid, &id); err != nil {
			t.Fatal(err)
		}
		n++
		s := daysBack(t, raw[id], pdob.Format("2006-01-02"))
		if pdob.Format("2006-01-02") != want[id] {
			t.Errorf("join: patient %d dob %s, want %s", id, pdob.Format("2006-01-02"), want[id])
		}
		rawAdmitted := map[int]string{1: "2020-05-01", 2: "2020-05-01", 3: "2021-01-02"}[n]
		if got := daysBack(t, rawAdmitted, admitted.Format("2006-01-02")); got != s {
			t.Errorf("join: encounter %d of patient %d moved %d days, the patient's dob %d", n, id, got, s)
		}
	}
	if rows.Err() != nil || n != 3 {
		t.Fatalf("join: %d rows, %v", n, rows.Err())
	}
	// A table without a subject keeps the one profile-wide shift.
	var drawn *time.Time
	if err := a.QueryRow(ctx, "SELECT drawn FROM labs").Scan(&drawn); err != nil || drawn == nil || daysBack(t, "2020-05-01", drawn.Format("2006-01-02")) < 1 {
		t.Errorf("labs.drawn: %v, %v", drawn, err)
	}

	// COPY out, text and CSV, the subject after the date.
	for _, sql := range []string{
		"COPY (SELECT dob, id FROM patients ORDER BY id) TO STDOUT",
		"COPY (SELECT dob, name, id FROM patients ORDER BY id) TO STDOUT (FORMAT csv)",
	} {
		var buf bytes.Buffer
		if _, err := a.PgConn().CopyTo(ctx, &buf, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			f := strings.FieldsFunc(line, func(r rune) bool { return r == '\t' || r == ',' })
			id, _ := strconv.Atoi(f[len(f)-1])
			if f[0] != want[id] {
				t.Errorf("%s: patient %d: %s, want %s", sql, id, f[0], want[id])
			}
		}
	}
	a.Close(ctx)

	// The before and after rows a change records are masked alike.
	w, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, "UPDATE patients SET notes = 'seen' WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	w.Close(ctx)
	found := false
	for _, evs := range g.sessions(t, 3) {
		for _, e := range evs {
			if e.Kind != record.KindChange || e.Change.Table != "public.patients" || len(e.Change.Rows) != 1 {
				continue
			}
			for i, c := range e.Change.Columns {
				if c == "dob" {
					found = true
					if v := e.Change.Rows[0][i]; v == nil || *v != want[2] {
						t.Errorf("%s row: dob %v, want %s", e.Change.Phase, v, want[2])
					}
				}
			}
		}
	}
	if !found {
		t.Error("no recorded change of patient 2")
	}
}
