package sqlclass

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/policy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestFunctionClass(t *testing.T) {
	tests := []struct {
		schema, name string
		want         policy.Class
	}{
		{"", "lower", ""},
		{"pg_catalog", "lower", ""},
		{"public", "lower", policy.Admin},
		{"information_schema", "_pg_expandarray", policy.Admin},
		{"PG_CATALOG", "lower", policy.Admin},
		{"", "LOWER", policy.Admin},
		{"", "count", ""},
		{"", "now", ""},
		{"", "jsonb_build_object", ""},
		{"", "pg_get_viewdef", ""},
		{"", "random", ""},
		{"", "gen_random_uuid", ""},
		{"", "pg_total_relation_size", ""},
		{"", "nextval", policy.Write},
		{"pg_catalog", "setval", policy.Write},
		{"", "lo_from_bytea", policy.Write},
		{"", "lo_unlink", policy.Write},
		{"", "loread", policy.Write},
		{"", "pg_advisory_lock", policy.Write},
		{"", "pg_try_advisory_xact_lock", policy.Write},
		{"", "pg_notify", policy.Write},
		{"", "txid_current", policy.Write},
		{"", "txid_current_if_assigned", ""},
		{"", "set_config", policy.Admin},
		{"", "current_setting", ""},
		{"", "pg_terminate_backend", policy.Admin},
		{"", "pg_cancel_backend", policy.Admin},
		{"", "pg_reload_conf", policy.Admin},
		{"", "pg_read_file", policy.Admin},
		{"", "pg_read_binary_file", policy.Admin},
		{"", "pg_ls_dir", policy.Admin},
		{"", "lo_import", policy.Admin},
		{"", "lo_export", policy.Admin},
		{"", "pg_sleep", policy.Admin},
		{"", "pg_switch_wal", policy.Admin},
		{"", "pg_create_restore_point", policy.Admin},
		{"", "pg_create_logical_replication_slot", policy.Admin},
		{"", "pg_logical_emit_message", policy.Admin},
		{"", "query_to_xml", policy.Admin},
		{"", "cursor_to_xml", policy.Admin},
		{"", "table_to_xml", policy.Admin},
		{"", "schema_to_xml", policy.Admin},
		{"", "database_to_xml_and_xmlschema", policy.Admin},
		{"", "ts_stat", policy.Admin},
		{"", "ts_rewrite", policy.Admin},
		{"", "fmgr_c_validator", policy.Admin},
		{"", "pg_config", policy.Admin},
		{"", "dblink", policy.Admin},
		{"", "dblink_exec", policy.Admin},
		{"", "", policy.Admin},
	}
	for _, tt := range tests {
		if got := FunctionClass(tt.schema, tt.name); got != tt.want {
			t.Errorf("FunctionClass(%q, %q) = %q, want %q", tt.schema, tt.name, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { FunctionClass("pg_catalog", "lower") }); n != 0 {
		t.Errorf("FunctionClass allocates %v times per call", n)
	}
}

// The parser turns SQL syntax such as EXTRACT, TRIM or AT TIME ZONE into
// calls of pg_catalog functions; readers must be able to use that syntax.
func TestGrammarCallsAreFree(t *testing.T) {
	sql := `SELECT extract(year FROM now()), overlay('abc' placing 'x' FROM 2),
		position('a' IN 'abc'), substring('abc' FROM 2), substring('abc' SIMILAR 'a' ESCAPE '#'),
		trim(both 'x' FROM 'xax'), trim(leading FROM ' a'), trim(trailing FROM 'a '),
		now() AT TIME ZONE 'UTC', collation for ('a'), 'a' IS NORMALIZED, normalize('a'),
		'a' SIMILAR TO 'b', (now(), now()) OVERLAPS (now(), now()), 'a' LIKE 'b' ESCAPE 'c',
		xmlexists('//a' PASSING '<a/>')`
	tree, err := pg_query.Parse(sql)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	walk(tree.GetStmts()[0].GetStmt().ProtoReflect(), func(m protoreflect.Message) bool {
		fc, ok := m.Interface().(*pg_query.FuncCall)
		if !ok {
			return true
		}
		n++
		var parts []string
		for _, p := range fc.GetFuncname() {
			parts = append(parts, p.GetString_().GetSval())
		}
		schema, name := "", parts[len(parts)-1]
		if len(parts) == 2 {
			schema = parts[0]
		}
		if c := FunctionClass(schema, name); c != "" {
			t.Errorf("%v: class %q, want none", parts, c)
		}
		return true
	})
	if n < 16 {
		t.Errorf("found %d function calls, want at least 16", n)
	}
}

func TestStableBuiltinsShape(t *testing.T) {
	if !slices.IsSorted(stableBuiltins[:]) || len(slices.Compact(slices.Clone(stableBuiltins[:]))) != len(stableBuiltins) {
		t.Error("stableBuiltins is not sorted and unique")
	}
	for _, name := range stableBuiltins {
		if _, ok := builtinOverrides[name]; ok {
			t.Errorf("%s is both generated and overridden: regenerate", name)
		}
	}
}

// connectShared opens a connection to a database of its own on the shared
// server.
func connectShared(t *testing.T) (*pgx.Conn, *pgtest.Server, string) {
	t.Helper()
	pg := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := "sqlclass_" + strings.ToLower(t.Name())
	if err := pg.CreateDatabase(ctx, db, ""); err != nil {
		t.Fatal(err)
	}
	dsn := pg.DSN(pgtest.Superuser, "", db)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, pg, dsn
}

// Every allowlisted name is immutable or stable in every overload, or
// reviewed by hand; every name decided by hand exists.
func TestBuiltinsMatchServer(t *testing.T) {
	conn, _, _ := connectShared(t)
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT proname, bool_and(provolatile IN ('i', 's'))
		FROM pg_catalog.pg_proc WHERE pronamespace = 'pg_catalog'::pg_catalog.regnamespace
		GROUP BY proname`)
	if err != nil {
		t.Fatal(err)
	}
	stable := map[string]bool{}
	var name string
	var allStable bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &allStable}, func() error {
		stable[name] = allStable
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range stableBuiltins {
		if !stable[name] {
			t.Errorf("%s is allowlisted but not immutable or stable in every overload", name)
		}
	}
	free, writes, admins := 0, 0, 0
	for name, c := range builtinOverrides {
		if _, ok := stable[name]; !ok {
			t.Errorf("%s is in builtinOverrides but not in pg_catalog", name)
		}
		switch c {
		case noClass:
			free++
		case policy.Write:
			writes++
		case policy.Admin:
			admins++
		default:
			t.Errorf("%s: override class %q", name, c)
		}
	}
	t.Logf("allowlist: %d generated + %d reviewed volatile; write: %d; admin by hand: %d",
		len(stableBuiltins), free, writes, admins)
}

// Regenerating from the running server must give the committed file.
func TestBuiltinsUpToDate(t *testing.T) {
	_, _, dsn := connectShared(t)
	goBin, err := exec.LookPath("go")
	if root := os.Getenv("GOROOT"); root != "" {
		goBin, err = filepath.Join(root, "bin", "go"), nil
	}
	if err != nil {
		t.Fatalf("regenerating funcs_builtin.go needs the go command: %v", err)
	}
	out := filepath.Join(t.TempDir(), "funcs_builtin.go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", "./internal/genfuncs", "-dsn", dsn, "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genfuncs: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("funcs_builtin.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("funcs_builtin.go differs from what the server gives: run go generate ./session/sqlclass")
	}
}

// Allowlisted functions that can be called without arguments leave nothing
// behind: no transaction ID (which txid_current, marked stable, assigns) and
// no advisory lock.
func TestFreeCallsHaveNoEffect(t *testing.T) {
	conn, _, _ := connectShared(t)
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT DISTINCT proname FROM pg_catalog.pg_proc
		WHERE pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND prokind = 'f'
		AND pronargs = pronargdefaults AND NOT prorettype = ANY ('{trigger,event_trigger,internal,
			language_handler,fdw_handler,index_am_handler,table_am_handler,tsm_handler}'::pg_catalog.regtype[])`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	calls := []string{"pg_catalog.setseed(0.5)"}
	for _, name := range names {
		if FunctionClass("pg_catalog", name) == "" {
			calls = append(calls, "pg_catalog."+pgx.Identifier{name}.Sanitize()+"()")
		}
	}
	for _, call := range calls {
		if effect := callEffect(t, conn, call); effect != "" {
			t.Errorf("%s: %s", call, effect)
		}
	}
	// The detector itself works.
	for _, call := range []string{"pg_catalog.txid_current()", "pg_catalog.pg_advisory_xact_lock(1)"} {
		if callEffect(t, conn, call) == "" {
			t.Errorf("%s: no effect seen", call)
		}
	}
	t.Logf("%d calls without arguments checked", len(calls))
}

// callEffect runs SELECT call in a transaction that it rolls back, and says
// what the call left behind. A call that fails is taken as having done
// nothing: its transaction is rolled back.
func callEffect(t *testing.T, conn *pgx.Conn, call string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT "+call); err != nil {
		return ""
	}
	var xid, locks bool
	err = tx.QueryRow(ctx, `SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL,
		EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())`).Scan(&xid, &locks)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case xid:
		return "assigned a transaction ID"
	case locks:
		return "took an advisory lock"
	}
	return ""
}

func BenchmarkFunctionClass(b *testing.B) {
	calls := [][2]string{
		{"", "lower"}, {"pg_catalog", "count"}, {"", "set_config"}, {"public", "f"},
		{"", "nextval"}, {"", "no_such_function"}, {"", "jsonb_build_object"}, {"", "LOWER"},
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := calls[i%len(calls)]
		FunctionClass(c[0], c[1])
		i++
	}
}
