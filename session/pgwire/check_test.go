package pgwire

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

// checkFixture is a database on the shared server with roles of every kind
// the check must tell apart. Role names carry a suffix: roles are
// cluster-wide and -count=N reruns share the server.
type checkFixture struct {
	pg     *pgtest.Server
	db     string
	suffix string
	pw     map[string]string // role -> password
}

func (f *checkFixture) role(kind string) string { return "chk_" + kind + "_" + f.suffix }

func (f *checkFixture) resource(fallback string, roles map[policy.Level]string) *resource.Resource {
	r := &resource.Resource{Name: "clinic", Address: f.pg.Addr(), Database: f.db, TLS: resource.TLSDisable}
	if fallback != "" {
		r.User, r.Password = fallback, resource.NewSecret(f.pw[fallback])
	}
	for l, user := range roles {
		if r.Roles == nil {
			r.Roles = map[policy.Level]resource.Credential{}
		}
		r.Roles[l] = resource.Credential{User: user, Password: resource.NewSecret(f.pw[user])}
	}
	return r
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	f := &checkFixture{pg: pgtest.Shared(t), suffix: hex.EncodeToString(b), pw: map[string]string{}}
	f.db = "check_" + f.suffix
	for _, kind := range []string{"owner", "read", "super", "insert", "signal", "schema", "definer"} {
		name := f.role(kind)
		f.pw[name] = "pw-" + kind + "-" + f.suffix
		if err := f.pg.AddUser(ctx, pgtest.User{Name: name, Password: f.pw[name], Superuser: kind == "super"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.pg.CreateDatabase(ctx, f.db, f.role("owner")); err != nil {
		t.Fatal(err)
	}
	owner, read, insert := f.role("owner"), f.role("read"), f.role("insert")
	sql := fmt.Sprintf(`
SET ROLE %[1]s;
CREATE TABLE patients (id serial PRIMARY KEY, name text);
CREATE SCHEMA scratch;
CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
RESET ROLE;
-- Least privilege for reads: SELECT only, read-only by default, no
-- temporary tables, no large objects, no functions run as someone else.
REVOKE TEMP ON DATABASE %[2]s FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.bump() FROM PUBLIC;
GRANT SELECT ON patients TO %[3]s, %[4]s, %[5]s, %[6]s, %[7]s;
ALTER ROLE %[3]s SET default_transaction_read_only = on;
GRANT INSERT ON patients TO %[4]s;
GRANT EXECUTE ON FUNCTION lo_create(oid) TO %[4]s;
GRANT pg_signal_backend TO %[5]s;
GRANT CREATE ON SCHEMA scratch TO %[6]s;
GRANT EXECUTE ON FUNCTION public.bump() TO %[7]s;
`, owner, f.db, read, insert, f.role("signal"), f.role("schema"), f.role("definer"))
	if err := f.pg.Exec(ctx, f.db, sql); err != nil {
		t.Fatal(err)
	}
	return f
}

func readGrant(functions ...string) policy.Grant {
	return policy.Grant{Name: "readers", Groups: []string{"g"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read, policy.Export}, Functions: functions}
}

func writeGrant() policy.Grant {
	return policy.Grant{Name: "writers", Groups: []string{"g"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read, policy.Write}}
}

func find(rep *CheckReport, role string, sev Severity, what string) *Finding {
	for i, f := range rep.Findings {
		if f.Role == role && f.Severity == sev && strings.Contains(f.What, what) {
			return &rep.Findings[i]
		}
	}
	return nil
}

func dump(rep *CheckReport) string {
	var b bytes.Buffer
	_ = rep.WriteText(&b)
	return b.String()
}

// TestCheckResource runs the check against real roles: each too-strong
// role is found, and a least-privilege read role is clean.
func TestCheckResource(t *testing.T) {
	f := newCheckFixture(t)
	ctx := context.Background()
	check := func(t *testing.T, r *resource.Resource, grants ...policy.Grant) *CheckReport {
		t.Helper()
		rep, err := CheckResource(ctx, r, grants)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed() {
			t.Fatalf("some role not checked:\n%s", dump(rep))
		}
		out := dump(rep)
		var js bytes.Buffer
		if err := rep.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		for _, pw := range f.pw {
			if strings.Contains(out, pw) || strings.Contains(js.String(), pw) {
				t.Fatalf("a password is in the report:\n%s", out)
			}
		}
		return rep
	}

	t.Run("least-privilege read role is clean", func(t *testing.T) {
		rep := check(t, f.resource(f.role("read"), nil), readGrant())
		if len(rep.Findings) != 0 {
			t.Fatalf("findings for a SELECT-only role:\n%s", dump(rep))
		}
		if len(rep.Roles) != 1 || rep.Roles[0].Level != policy.LevelRead || !slices.Equal(rep.Roles[0].Grants, []string{"readers"}) {
			t.Fatalf("roles = %+v", rep.Roles)
		}
	})
	t.Run("superuser", func(t *testing.T) {
		super := f.role("super")
		rep := check(t, f.resource(super, nil), readGrant())
		if find(rep, super, SeverityDanger, "superuser") == nil {
			t.Fatalf("superuser not found:\n%s", dump(rep))
		}
		// At admin a superuser is only a note.
		rep = check(t, f.resource(super, nil), policy.Grant{Name: "dba", Groups: []string{"g"}, Resources: []string{"*"}, Allow: policy.Classes})
		if rep.Dangers() != 0 || find(rep, super, SeverityNote, "superuser") == nil {
			t.Fatalf("superuser at admin:\n%s", dump(rep))
		}
	})
	t.Run("owner", func(t *testing.T) {
		owner := f.role("owner")
		rep := check(t, f.resource(owner, nil), writeGrant())
		for _, what := range []string{"owns the database", "owns tables", "owns schemas", "owns sequences", "owns functions", "CREATE on the database"} {
			if find(rep, owner, SeverityDanger, what) == nil {
				t.Errorf("%q not found", what)
			}
		}
		if fd := find(rep, owner, SeverityDanger, "owns tables"); fd == nil || !slices.Contains(fd.Where, "public.patients") || fd.Level != policy.LevelWrite {
			t.Errorf("owns tables: %+v", fd)
		}
		// public belongs to pg_database_owner, which the database's owner is.
		if fd := find(rep, owner, SeverityDanger, "owns schemas"); fd == nil || !slices.Equal(fd.Where, []string{"public", "scratch"}) {
			t.Errorf("owns schemas: %+v", fd)
		}
		if t.Failed() {
			t.Log(dump(rep))
		}
	})
	t.Run("insert", func(t *testing.T) {
		insert := f.role("insert")
		rep := check(t, f.resource(insert, nil), readGrant())
		if fd := find(rep, insert, SeverityDanger, "can INSERT"); fd == nil || !slices.Equal(fd.Where, []string{"public.patients"}) {
			t.Fatalf("INSERT not found:\n%s", dump(rep))
		}
		if find(rep, insert, SeverityDanger, "large objects") == nil {
			t.Fatalf("lo_create not found:\n%s", dump(rep))
		}
		if find(rep, insert, SeverityNote, "default_transaction_read_only") == nil {
			t.Fatalf("read-only default not recommended:\n%s", dump(rep))
		}
		// The same role is fine for a write grant.
		rep = check(t, f.resource(insert, nil), writeGrant())
		if rep.Dangers() != 0 {
			t.Fatalf("INSERT is a danger at write:\n%s", dump(rep))
		}
	})
	t.Run("pg_signal_backend", func(t *testing.T) {
		signal := f.role("signal")
		rep := check(t, f.resource(signal, nil), writeGrant())
		if find(rep, signal, SeverityDanger, "pg_signal_backend") == nil || rep.Dangers() != 1 {
			t.Fatalf("pg_signal_backend:\n%s", dump(rep))
		}
	})
	t.Run("create on schema", func(t *testing.T) {
		schema := f.role("schema")
		rep := check(t, f.resource(schema, nil), readGrant())
		if fd := find(rep, schema, SeverityDanger, "CREATE on schemas"); fd == nil || !slices.Equal(fd.Where, []string{"scratch"}) {
			t.Fatalf("CREATE on a schema:\n%s", dump(rep))
		}
	})
	t.Run("security definer", func(t *testing.T) {
		definer := f.role("definer")
		rep := check(t, f.resource(definer, nil), readGrant())
		fd := find(rep, definer, SeverityDanger, "SECURITY DEFINER")
		if fd == nil || len(fd.Where) != 1 || !strings.HasPrefix(fd.Where[0], "public.bump() owned by "+f.role("owner")) {
			t.Fatalf("SECURITY DEFINER:\n%s", dump(rep))
		}
		// A function the grant names is intended: a note.
		rep = check(t, f.resource(definer, nil), readGrant("public.bump"))
		if rep.Dangers() != 0 || find(rep, definer, SeverityNote, "SECURITY DEFINER") == nil {
			t.Fatalf("named SECURITY DEFINER:\n%s", dump(rep))
		}
	})
	t.Run("a role per level", func(t *testing.T) {
		r := f.resource("", map[policy.Level]string{policy.LevelRead: f.role("read"), policy.LevelWrite: f.role("insert"), policy.LevelAdmin: f.role("owner")})
		g := writeGrant()
		g.Resources = []string{"*"}
		rep := check(t, r, readGrant(), g, policy.Grant{Name: "elsewhere", Groups: []string{"g"}, Resources: []string{"other"}, Allow: policy.Classes})
		if rep.Dangers() != 0 {
			t.Fatalf("dangers:\n%s", dump(rep))
		}
		want := []RoleCheck{
			{Role: f.role("read"), Levels: []policy.Level{policy.LevelRead}, Grants: []string{"readers"}, Level: policy.LevelRead},
			{Role: f.role("insert"), Levels: []policy.Level{policy.LevelWrite}, Grants: []string{"writers"}, Level: policy.LevelWrite},
			{Role: f.role("owner"), Levels: []policy.Level{policy.LevelAdmin}, Level: policy.LevelAdmin},
		}
		if fmt.Sprint(rep.Roles) != fmt.Sprint(want) {
			t.Fatalf("roles:\n%+v\nwant\n%+v", rep.Roles, want)
		}
		if find(rep, f.role("owner"), SeverityNote, "no grant logs in") == nil {
			t.Fatalf("unused admin role not noted:\n%s", dump(rep))
		}
		var back CheckReport
		var js bytes.Buffer
		if err := rep.WriteJSON(&js); err != nil || json.Unmarshal(js.Bytes(), &back) != nil || len(back.Findings) != len(rep.Findings) {
			t.Fatalf("JSON round trip: %v\n%s", err, js.String())
		}
	})
	t.Run("one role for every level is judged by its least grant", func(t *testing.T) {
		insert := f.role("insert")
		rep := check(t, f.resource(insert, nil), writeGrant(), readGrant())
		if rep.Roles[0].Level != policy.LevelRead || find(rep, insert, SeverityDanger, "can INSERT") == nil {
			t.Fatalf("shared role:\n%s", dump(rep))
		}
	})
	t.Run("a role that cannot log in", func(t *testing.T) {
		r := f.resource(f.role("read"), nil)
		r.Password = resource.NewSecret("wrong-password-xyz")
		rep, err := CheckResource(ctx, r, []policy.Grant{readGrant()})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Failed() || rep.Roles[0].Error == "" || strings.Contains(dump(rep), "wrong-password-xyz") {
			t.Fatalf("failed login:\n%s", dump(rep))
		}
	})
}

// TestAssessRoleLevels: what is a danger depends on the level alone.
func TestAssessRoleLevels(t *testing.T) {
	f := &roleFacts{user: "u", database: "d", insert: []string{"public.t"}, update: []string{"public.t"},
		truncate: []string{"public.t"}, ownedRelations: []string{"public.t"}, predefined: []string{"pg_write_all_data", "pg_monitor", "pg_read_all_stats"},
		readOnlyDefault: true}
	count := func(fs []Finding, sev Severity) (n int) {
		for _, f := range fs {
			if f.Severity == sev {
				n++
			}
		}
		return n
	}
	read := assessRole(policy.LevelRead, f, nil)
	write := assessRole(policy.LevelWrite, f, nil)
	admin := assessRole(policy.LevelAdmin, f, nil)
	// read: owns, INSERT, UPDATE, TRUNCATE, pg_write_all_data; pg_monitor a note (its member roles not repeated).
	if count(read, SeverityDanger) != 5 || count(read, SeverityNote) != 1 {
		t.Errorf("read: %+v", read)
	}
	// write: owns; TRUNCATE, pg_write_all_data and pg_monitor are notes.
	if count(write, SeverityDanger) != 1 || count(write, SeverityNote) != 3 {
		t.Errorf("write: %+v", write)
	}
	if len(admin) != 0 {
		t.Errorf("admin: %+v", admin)
	}
}
