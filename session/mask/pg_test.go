package mask

import (
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
