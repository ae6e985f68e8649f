package synth_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nyaruka/phonenumbers"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/internal/synth"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func writeData(t *testing.T, n int, seed int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := synth.WriteData(&b, n, seed); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDeterministic(t *testing.T) {
	a, b := writeData(t, 50, 7), writeData(t, 50, 7)
	if !bytes.Equal(a, b) {
		t.Fatal("same n and seed gave different data")
	}
	if bytes.Equal(a, writeData(t, 50, 8)) {
		t.Fatal("different seeds gave the same data")
	}
	var small, large []synth.Record
	for r := range synth.Records(10, 3) {
		small = append(small, r)
	}
	for r := range synth.Records(40, 3) {
		large = append(large, r)
	}
	for i := range small {
		if fmt.Sprint(small[i].Patient, small[i].Encounters) != fmt.Sprint(large[i].Patient, large[i].Encounters) ||
			small[i].Encounters[0].Notes != large[i].Encounters[0].Notes {
			t.Fatalf("patient %d differs between n=10 and n=40", i+1)
		}
	}
}

var (
	ssnRE   = regexp.MustCompile(`^\d{3}-\d{2}-\d{4}$`)
	mrnRE   = regexp.MustCompile(`^\d{8}$`)
	zipRE   = regexp.MustCompile(`^\d{5}$`)
	memRE   = regexp.MustCompile(`^[A-Z]{3}\d{9}$`)
	icdRE   = regexp.MustCompile(`[A-Z]\d{2}(\.\d{1,3})?`)
	phoneRE = regexp.MustCompile(`\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}`)
)

// checkRecord asserts the shape of one record; fuzzing calls it too.
func checkRecord(t *testing.T, r synth.Record) {
	t.Helper()
	p := r.Patient
	if !ssnRE.MatchString(p.SSN) || strings.HasPrefix(p.SSN, "000") || strings.HasPrefix(p.SSN, "666") {
		t.Errorf("patient %d: bad SSN shape", p.ID)
	}
	if !mrnRE.MatchString(p.MRN) || !zipRE.MatchString(p.Zip) || !memRE.MatchString(p.InsuranceMemberID) {
		t.Errorf("patient %d: bad MRN, zip or member id", p.ID)
	}
	if p.DOB.Before(time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC)) || p.DOB.After(time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("patient %d: DOB out of range", p.ID)
	}
	if !strings.Contains(p.Email, "@") || !strings.Contains(p.Email, "example.") {
		t.Errorf("patient %d: e-mail not on a reserved example domain", p.ID)
	}
	if len(r.Encounters) == 0 {
		t.Errorf("patient %d: no encounters", p.ID)
	}
	for _, e := range r.Encounters {
		if e.PatientID != p.ID || e.Notes == "" || !icdRE.MatchString(e.ICD10) {
			t.Errorf("encounter %d: bad link, notes or ICD-10", e.ID)
		}
		if e.VisitDate.Before(p.DOB) {
			t.Errorf("encounter %d: visit before birth", e.ID)
		}
	}
	for _, x := range r.Prescriptions {
		if x.PatientID != p.ID || x.StrengthMG <= 0 || x.NDC == "" {
			t.Errorf("prescription %d: bad link, strength or NDC", x.ID)
		}
	}
}

func TestRecordsLookReal(t *testing.T) {
	var patients, notes int
	mentions := map[string]int{}
	for r := range synth.Records(300, synth.DefaultSeed) {
		checkRecord(t, r)
		p := r.Patient
		patients++
		num, err := phonenumbers.Parse(p.Phone, "US")
		if err != nil || !phonenumbers.IsValidNumber(num) {
			t.Errorf("patient %d: phone is not a valid US number (%v)", p.ID, err)
		}
		for _, e := range r.Encounters {
			notes++
			for what, needle := range map[string]string{
				"mrn": p.MRN, "last name": p.LastName, "ssn": p.SSN, "street": p.Street,
				"email": p.Email, "member id": p.InsuranceMemberID,
			} {
				if strings.Contains(e.Notes, needle) {
					mentions[what]++
				}
			}
			if phoneRE.MatchString(e.Notes) {
				mentions["a phone number"]++
			}
			if strings.Contains(e.Notes, "NDC ") || strings.Contains(e.Notes, "mg/dL") || strings.Contains(e.Notes, "mmHg") {
				mentions["a look-alike"]++
			}
			if strings.ContainsAny(e.Notes, "\t\n") {
				t.Errorf("encounter %d: control characters in notes", e.ID)
			}
		}
	}
	if patients != 300 || notes < 600 {
		t.Fatalf("%d patients, %d notes", patients, notes)
	}
	// Every kind of identifier shows up in prose, often; SSNs rarely, as in life.
	for what, min := range map[string]int{
		"mrn": notes / 2, "last name": notes * 3 / 4, "street": notes / 8, "email": notes / 8,
		"member id": notes / 8, "a phone number": notes / 4, "a look-alike": notes / 2, "ssn": notes / 40,
	} {
		if mentions[what] < min {
			t.Errorf("notes mention %s %d times in %d notes, want >= %d", what, mentions[what], notes, min)
		}
	}
}

// TestLoadMatchesWriteData loads the same patients twice into a real
// PostgreSQL, once with Load (pgx COPY, binary) and once with psql reading
// WriteData's COPY text, and checks the tables are identical.
func TestLoadMatchesWriteData(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	const n = 120
	for _, db := range []string{"synth_load", "synth_psql"} {
		if err := srv.CreateDatabase(ctx, db, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := synth.Load(ctx, srv.DSN(pgtest.Superuser, "", "synth_load"), n); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "data.sql")
	var sql bytes.Buffer
	sql.WriteString(synth.Schema())
	if err := synth.WriteData(&sql, n, synth.DefaultSeed); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, sql.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", script,
		srv.DSN(pgtest.Superuser, "", "synth_psql")).CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}

	digest := func(db, table string) (count int64, sum string) {
		conn, err := pgx.Connect(ctx, srv.DSN(pgtest.Superuser, "", db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		q := fmt.Sprintf("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM public.%s t", table)
		if err := conn.QueryRow(ctx, q).Scan(&count, &sum); err != nil {
			t.Fatal(err)
		}
		return count, sum
	}
	for _, table := range []string{"patients", "encounters", "prescriptions"} {
		c1, s1 := digest("synth_load", table)
		c2, s2 := digest("synth_psql", table)
		if c1 == 0 || c1 != c2 || s1 != s2 {
			t.Errorf("%s: Load gave %d rows (%s), WriteData gave %d rows (%s)", table, c1, s1, c2, s2)
		}
	}
	if c, _ := digest("synth_load", "patients"); c != n {
		t.Errorf("loaded %d patients, want %d", c, n)
	}
}

func FuzzRecords(f *testing.F) {
	f.Add(int64(1), uint8(3))
	f.Add(int64(-42), uint8(0))
	f.Fuzz(func(t *testing.T, seed int64, n uint8) {
		got := 0
		for r := range synth.Records(int(n%32), seed) {
			checkRecord(t, r)
			got++
		}
		if got != int(n%32) {
			t.Fatalf("got %d records, want %d", got, n%32)
		}
	})
}
