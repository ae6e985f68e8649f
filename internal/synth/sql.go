package synth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Schema is the clinic's DDL, for an empty database: three tables in public,
// with comments that say which columns hold PHI.
func Schema() string {
	return `CREATE TABLE public.patients (
    id                  bigint PRIMARY KEY,
    mrn                 text NOT NULL UNIQUE,
    first_name          text NOT NULL,
    last_name           text NOT NULL,
    sex                 char(1) NOT NULL,
    dob                 date NOT NULL,
    ssn                 char(11),
    phone               text,
    email               text,
    street              text,
    city                text,
    state               char(2),
    zip                 char(5),
    insurance_member_id text
);
CREATE TABLE public.encounters (
    id          bigint PRIMARY KEY,
    patient_id  bigint NOT NULL REFERENCES public.patients (id),
    visit_date  date NOT NULL,
    department  text NOT NULL,
    clinician   text NOT NULL,
    reason      text NOT NULL,
    icd10       text NOT NULL,
    notes       text NOT NULL
);
CREATE INDEX encounters_patient_id ON public.encounters (patient_id);
CREATE TABLE public.prescriptions (
    id            bigint PRIMARY KEY,
    encounter_id  bigint NOT NULL REFERENCES public.encounters (id),
    patient_id    bigint NOT NULL REFERENCES public.patients (id),
    drug          text NOT NULL,
    dose          text NOT NULL,
    strength_mg   numeric(10,3) NOT NULL,
    route         text NOT NULL,
    frequency     text NOT NULL,
    icd10         text NOT NULL,
    ndc           text NOT NULL,
    refills       integer NOT NULL,
    prescribed_on date NOT NULL
);
CREATE INDEX prescriptions_patient_id ON public.prescriptions (patient_id);
COMMENT ON TABLE public.patients IS 'synthetic patients: every column but id and sex is PHI';
COMMENT ON COLUMN public.encounters.notes IS 'free text: mentions names, dates, phones, addresses, MRNs';
COMMENT ON COLUMN public.encounters.visit_date IS 'PHI: a date related to an individual';
`
}

// table describes how one table's rows come out of a Record.
type table struct {
	name    string
	columns []string
	rows    func(Record) [][]any
}

var tables = []table{
	{"patients", []string{"id", "mrn", "first_name", "last_name", "sex", "dob", "ssn", "phone",
		"email", "street", "city", "state", "zip", "insurance_member_id"},
		func(r Record) [][]any {
			p := r.Patient
			return [][]any{{p.ID, p.MRN, p.FirstName, p.LastName, p.Sex, p.DOB, p.SSN, p.Phone,
				p.Email, p.Street, p.City, p.State, p.Zip, p.InsuranceMemberID}}
		}},
	{"encounters", []string{"id", "patient_id", "visit_date", "department", "clinician", "reason",
		"icd10", "notes"},
		func(r Record) [][]any {
			rows := make([][]any, 0, len(r.Encounters))
			for _, e := range r.Encounters {
				rows = append(rows, []any{e.ID, e.PatientID, e.VisitDate, e.Department, e.Clinician,
					e.Reason, e.ICD10, e.Notes})
			}
			return rows
		}},
	{"prescriptions", []string{"id", "encounter_id", "patient_id", "drug", "dose", "strength_mg",
		"route", "frequency", "icd10", "ndc", "refills", "prescribed_on"},
		func(r Record) [][]any {
			rows := make([][]any, 0, len(r.Prescriptions))
			for _, x := range r.Prescriptions {
				rows = append(rows, []any{x.ID, x.EncounterID, x.PatientID, x.Drug, x.Dose,
					x.StrengthMG, x.Route, x.Frequency, x.ICD10, x.NDC, x.Refills, x.PrescribedOn})
			}
			return rows
		}},
}

// rows yields t's rows for n patients. Each table is a separate pass over
// the (deterministic) records, so memory does not grow with n.
func (t table) rowSeq(n int, seed int64) iter.Seq[[]any] {
	return func(yield func([]any) bool) {
		for rec := range Records(n, seed) {
			for _, row := range t.rows(rec) {
				if !yield(row) {
					return
				}
			}
		}
	}
}

// WriteData writes n patients' data as psql input: one COPY ... FROM stdin
// block per table (patients, encounters, prescriptions, in that order), for
// a database that has Schema.
func WriteData(w io.Writer, n int, seed int64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	for _, t := range tables {
		fmt.Fprintf(bw, "COPY public.%s (%s) FROM stdin;\n", t.name, strings.Join(t.columns, ", "))
		for row := range t.rowSeq(n, seed) {
			line = line[:0]
			for i, v := range row {
				if i > 0 {
					line = append(line, '\t')
				}
				line = appendCopyText(line, v)
			}
			line = append(line, '\n')
			if _, err := bw.Write(line); err != nil {
				return fmt.Errorf("synth: write: %w", err)
			}
		}
		bw.WriteString("\\.\n")
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("synth: write: %w", err)
	}
	return nil
}

// appendCopyText appends v in COPY's text format.
func appendCopyText(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, `\N`...)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case float64:
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	case time.Time:
		return v.AppendFormat(b, "2006-01-02")
	case string:
		for i := 0; i < len(v); i++ {
			switch c := v[i]; c {
			case '\\':
				b = append(b, `\\`...)
			case '\t':
				b = append(b, `\t`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			default:
				b = append(b, c)
			}
		}
		return b
	}
	panic(fmt.Sprintf("synth: no COPY text form for %T", v)) // a bug in tables, not input
}

// Load creates Schema in the database dsn names (which must not have the
// tables yet) and copies n patients generated with DefaultSeed into it.
func Load(ctx context.Context, dsn string, n int) error {
	return LoadSeed(ctx, dsn, n, DefaultSeed)
}

// LoadSeed is Load with a chosen seed.
func LoadSeed(ctx context.Context, dsn string, n int, seed int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("synth: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("synth: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Conn().PgConn().Exec(ctx, Schema()).ReadAll(); err != nil {
		return fmt.Errorf("synth: create schema: %w", err)
	}
	for _, t := range tables {
		next, stop := iter.Pull(t.rowSeq(n, seed))
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"public", t.name}, t.columns,
			pgx.CopyFromFunc(func() ([]any, error) {
				row, ok := next()
				if !ok {
					return nil, nil
				}
				return row, nil
			}))
		stop()
		if err != nil {
			return fmt.Errorf("synth: copy %s: %w", t.name, err)
		}
	}
	if _, err := tx.Exec(ctx, "ANALYZE public.patients, public.encounters, public.prescriptions"); err != nil {
		return fmt.Errorf("synth: analyze: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("synth: commit: %w", err)
	}
	return nil
}
