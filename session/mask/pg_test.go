package mask

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/phigate/phigate/internal/pgtest"
)

// TestMaskedValuesAcceptedByPostgres sends every masked value back to a
// real PostgreSQL as a parameter of the column's type and format: the
// server's own input and receive functions must accept it.
func TestMaskedValuesAcceptedByPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	if _, err := exec.LookPath("initdb"); err != nil {
		if _, err := exec.LookPath("/usr/lib/postgresql/15/bin/initdb"); err != nil {
			t.Skip("no PostgreSQL here")
		}
	}
	srv := pgtest.New(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, srv.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	m := pgtype.NewMap()
	actions := []string{"redact", "keep-last-4", "hash", "null", "pseudonym", "date-shift", "generalize", "detect"}
	profiles := map[string]*Profile{}
	for _, a := range actions {
		profiles[a] = mustCompile(t, RuleConfig{Pattern: ".", Action: a})
	}
	profiles["hipaa"] = hipaa(t)
	checked := 0
	for _, tc := range typeCases() {
		for name, p := range profiles {
			for _, format := range []int16{0, 1} {
				src, err := m.Encode(tc.oid, format, tc.value, nil)
				if err != nil {
					t.Fatal(err)
				}
				colName := "c"
				if name == "hipaa" {
					colName = map[uint32]string{oidDate: "dob", oidTimestamp: "admit_date", oidInt4: "age", oidText: "notes"}[tc.oid]
				}
				pl := p.Plan([]Column{{Name: colName, TypeOID: tc.oid, TypeMod: tc.typmod, Binary: format == 1}}, Params{})
				out, null := pl.AppendValue(nil, 0, src)
				if null {
					continue
				}
				typ := pgTypeName(tc.oid, tc.typmod)
				res := conn.ExecParams(ctx, "SELECT $1::"+typ, [][]byte{out}, []uint32{tc.oid}, []int16{format}, nil).Read()
				if res.Err != nil {
					t.Errorf("%s/%s/format %d: PostgreSQL refuses %q: %v", tc.name, name, format, out, res.Err)
				}
				checked++
			}
		}
	}
	t.Logf("%d masked values accepted by PostgreSQL", checked)
}

func pgTypeName(oid uint32, typmod int32) string {
	names := map[uint32]string{
		oidBool: "bool", oidBytea: "bytea", oidChar: `"char"`, oidName: "name", oidInt8: "int8", oidInt2: "int2",
		oidInt4: "int4", oidText: "text", oidOID: "oid", oidJSON: "json", oidXML: "xml", oidCidr: "cidr",
		oidFloat4: "float4", oidFloat8: "float8", oidMacaddr: "macaddr", oidInet: "inet", oidBpchar: "bpchar",
		oidVarchar: "varchar", oidDate: "date", oidTime: "time", oidTimestamp: "timestamp", oidTimestamptz: "timestamptz",
		oidInterval: "interval", oidNumeric: "numeric", oidUUID: "uuid", oidJSONB: "jsonb",
	}
	if e, ok := arrayElem[oid]; ok {
		return pgTypeName(e, typmod) + "[]"
	}
	n := names[oid]
	if (oid == oidVarchar || oid == oidBpchar) && typmod > 4 {
		n += "(" + itoa(int(typmod-4)) + ")"
	}
	return n
}

func itoa(n int) string { return string(appendInt(nil, int64(n))) }

// TestDerivedAndScannedAcceptedByPostgres sends the values of derived
// outputs and of the second layer (arrays, bytea, xml) back to PostgreSQL
// as parameters of their type and format.
func TestDerivedAndScannedAcceptedByPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	if _, err := exec.LookPath("initdb"); err != nil {
		t.Skip("no PostgreSQL here")
	}
	srv := pgtest.New(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, srv.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m := pgtype.NewMap()
	const note = "Seen by Dr. Hanley on 3/14/2005, SSN 123-45-6789, call (617) 555-0143"
	values := []struct {
		oid    uint32
		typmod int32
		value  any
	}{
		{oidText, -1, note}, {oidVarchar, 12, note[:8]}, {oidBpchar, 20, "Maria Okafor    "},
		{oidXML, -1, `<p a="123-45-6789">` + note + `<!-- Maria Okafor --><![CDATA[ 078-05-1120 ]]></p>`},
		{oidBytea, -1, []byte(note + "\x00\xff\\")}, {oidJSONB, -1, `{"note": "` + note + `", "n": [1, "Maria Okafor"]}`},
		{1009, -1, []string{note, "Doe, John", "", "NULL"}}, {1015, 14, []string{"Maria Okafor"}},
		{3807, -1, []any{map[string]any{"n": note}}}, {1001, -1, [][]byte{[]byte(note)}}, {143, -1, []string{"<a>" + note + "</a>"}},
		{oidInt4, -1, int32(7)}, {oidDate, -1, time.Date(1961, 3, 14, 0, 0, 0, 0, time.UTC)}, {oidNumeric, -1, 1.5},
		{oidChar, -1, 'x'}, {1007, -1, []int32{1, 2}}, {1182, -1, []time.Time{time.Now()}},
	}
	checked := 0
	for _, derived := range []bool{false, true} {
		for _, v := range values {
			for _, format := range []int16{0, 1} {
				src, err := m.Encode(v.oid, format, v.value, nil)
				if err != nil {
					t.Fatal(err)
				}
				c := Column{Name: "v", TypeOID: v.oid, TypeMod: v.typmod, Binary: format == 1}
				if derived {
					c.Derived = []SourceCol{{Name: "public.patients.notes", TypeOID: oidText}}
				}
				pl := hipaa(t).Plan([]Column{c}, Params{})
				out, null := pl.AppendValue(nil, 0, src)
				if null {
					continue
				}
				if format == 0 && v.oid == oidBytea {
					// and in escape format
					esc := appendByteaEscape(nil, v.value.([]byte))
					if o, n := pl.AppendValue(nil, 0, esc); !n {
						res := conn.ExecParams(ctx, "SELECT $1::bytea", [][]byte{o}, []uint32{v.oid}, []int16{0}, nil).Read()
						if res.Err != nil {
							t.Errorf("bytea escape: PostgreSQL refuses %q: %v", o, res.Err)
						}
					}
				}
				typ := pgTypeName(v.oid, v.typmod)
				res := conn.ExecParams(ctx, "SELECT $1::"+typ, [][]byte{out}, []uint32{v.oid}, []int16{format}, nil).Read()
				if res.Err != nil {
					t.Errorf("%s derived=%v format %d: PostgreSQL refuses %q: %v", typ, derived, format, out, res.Err)
				}
				checked++
			}
		}
	}
	t.Logf("%d masked values accepted by PostgreSQL", checked)
}

// TestOpaqueValuesFromPostgres scans records, composite arrays and enum
// values as PostgreSQL sends them, in both formats: with PHI inside they
// become NULL, without they pass unchanged.
func TestOpaqueValuesFromPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	if _, err := exec.LookPath("initdb"); err != nil {
		t.Skip("no PostgreSQL here")
	}
	srv := pgtest.New(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, srv.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.Exec(ctx, `CREATE TYPE person AS (id int, name text, ssn text); CREATE TYPE who AS ENUM ('Maria Okafor', 'nobody')`).Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sql string
		phi bool
	}{
		{`SELECT ROW(1, 'x', '123-45-6789')`, true},
		{`SELECT ROW(1, 'Okafor, Maria', NULL)::person`, true},
		{`SELECT ARRAY[ROW(1, 'x', '078-05-1120')::person]`, true},
		{`SELECT ROW(2, ROW(3, 'Seen by Dr. Hanley', NULL)::person)`, true},
		{`SELECT 'Maria Okafor'::who`, true},
		{`SELECT ROW(1, 'x', 'y')::person`, false},
		{`SELECT 'nobody'::who`, false},
		{`SELECT ARRAY[ROW(7, 'fine', NULL)::person]`, false},
	} {
		for _, format := range []int16{0, 1} {
			rr := conn.ExecParams(ctx, tc.sql, nil, nil, nil, []int16{format})
			fields := rr.FieldDescriptions()
			var v []byte
			for rr.NextRow() {
				v = append([]byte(nil), rr.Values()[0]...)
			}
			if _, err := rr.Close(); err != nil {
				t.Fatalf("%s: %v", tc.sql, err)
			}
			pl := hipaa(t).Plan([]Column{{Name: "v", TypeOID: fields[0].DataTypeOID, TypeMod: fields[0].TypeModifier, Binary: format == 1}}, Params{})
			out, null := pl.AppendValue(nil, 0, v)
			if null != tc.phi || !null && !bytes.Equal(out, v) {
				t.Errorf("%s (oid %d, format %d): %q -> %q null=%v", tc.sql, fields[0].DataTypeOID, format, v, out, null)
			}
		}
	}
}
