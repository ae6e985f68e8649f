package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/node/cli"
	"github.com/phigate/phigate/session/identity"
)

func TestResourceRolesValidate(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PHIGATE_TEST_ROLE_PW", "x")
	const res = "resources: [{name: r, address: 'h:1', database: d, %s}]\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown level":         {fmt.Sprintf(res, "user: u, roles: {owner: {user: o}}"), "unknown access level"},
		"user and admin role":   {fmt.Sprintf(res, "user: u, roles: {admin: {user: a}}"), "never be used"},
		"no user, no admin":     {fmt.Sprintf(res, "roles: {read: {user: r}, write: {user: w}}"), "user is required"},
		"role without user":     {fmt.Sprintf(res, "user: u, roles: {read: {password_env: PHIGATE_TEST_ROLE_PW}}"), "read: user is required"},
		"role password unset":   {fmt.Sprintf(res, "user: u, roles: {read: {user: r, password_env: PHIGATE_TEST_UNSET_VAR}}"), "not set"},
		"role with two sources": {fmt.Sprintf(res, "user: u, roles: {read: {user: r, password_env: X, password_file: /y}}"), "not both"},
		"function with args":    {"grants: [{name: g, groups: [a], resources: ['*'], allow: [read], functions: ['f(int)']}]", "not a function name"},
		"function quoted":       {"grants: [{name: g, groups: [a], resources: ['*'], allow: [read], functions: ['\"F\"']}]", "not a function name"},
		"function three parts":  {"grants: [{name: g, groups: [a], resources: ['*'], allow: [read], functions: [a.b.c]}]", "not a function name"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := node.ParseConfig([]byte(tc.yaml + "\nnode: {data_dir: " + dir + "}\n"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = initAndNew(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	for name, yaml := range map[string]string{
		"three roles, no user": fmt.Sprintf(res, "roles: {read: {user: r, password_env: PHIGATE_TEST_ROLE_PW}, write: {user: w}, admin: {user: a}}"),
		"read role, fallback":  fmt.Sprintf(res, "user: u, roles: {read: {user: r}}"),
		"functions":            "grants: [{name: g, groups: [a], resources: ['*'], allow: [read], functions: [Lower, public.my_fn, pg_catalog.lo_create]}]",
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := node.ParseConfig([]byte(yaml + "\nnode: {data_dir: " + dir + "}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := initAndNew(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// rolesFixture is a database whose three roles are least privilege for
// their levels, as the demo and the README set them up.
type rolesFixture struct {
	pg                 *pgtest.Server
	dir, db            string
	read, write, admin string
	pwFiles            map[string]string // role -> password file
	passwords          []string
}

func newRolesFixture(t *testing.T) *rolesFixture {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	f := &rolesFixture{pg: pgtest.Shared(t), dir: t.TempDir(), db: "roles_" + sfx,
		read: "gw_read_" + sfx, write: "gw_write_" + sfx, admin: "gw_admin_" + sfx, pwFiles: map[string]string{}}
	for _, role := range []string{f.read, f.write, f.admin} {
		pw := "pw-" + role
		f.passwords = append(f.passwords, pw)
		if err := f.pg.AddUser(ctx, pgtest.User{Name: role, Password: pw}); err != nil {
			t.Fatal(err)
		}
		f.pwFiles[role] = filepath.Join(f.dir, role+".pw")
		if err := os.WriteFile(f.pwFiles[role], []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.pg.CreateDatabase(ctx, f.db, f.admin); err != nil {
		t.Fatal(err)
	}
	sql := fmt.Sprintf(`
SET ROLE %[3]s;
CREATE TABLE patients (id serial PRIMARY KEY, ssn text);
INSERT INTO patients (ssn) VALUES ('123-45-6789');
GRANT SELECT ON ALL TABLES IN SCHEMA public TO %[1]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %[2]s;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %[2]s;
RESET ROLE;
REVOKE ALL ON DATABASE %[4]s FROM PUBLIC;
GRANT CONNECT ON DATABASE %[4]s TO %[1]s, %[2]s;
REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) FROM PUBLIC;
ALTER ROLE %[1]s SET default_transaction_read_only = on;
`, f.read, f.write, f.admin, f.db)
	if err := f.pg.Exec(ctx, f.db, sql); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is a node configuration for the fixture: resource "clinic" with
// the given resource-level YAML, and read, write and admin grants.
func (f *rolesFixture) config(t *testing.T, resourceYAML string, tokens map[string]string) *node.Config {
	t.Helper()
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(`
node: {id: roles-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0"}
identities: {tokens: [
  {name: reader, kind: agent, groups: [readers], token_sha256: %s},
  {name: writer, kind: ci, groups: [writers], token_sha256: %s}]}
resources: [{name: clinic, address: %q, database: %s, tls: disable, %s}]
grants:
  - {name: readers, groups: [readers], resources: [clinic], allow: [read]}
  - {name: writers, groups: [writers], resources: [clinic], allow: [read, write]}
  - {name: dba, identities: [nobody], resources: [clinic], allow: [all]}
`, filepath.Join(f.dir, "data"), identity.HashToken(tokens["reader"]), identity.HashToken(tokens["writer"]),
		f.pg.Addr(), f.db, resourceYAML)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (f *rolesFixture) rolesYAML() string {
	return fmt.Sprintf("roles: {read: {user: %s, password_file: %s}, write: {user: %s, password_file: %s}, admin: {user: %s, password_file: %s}}",
		f.read, f.pwFiles[f.read], f.write, f.pwFiles[f.write], f.admin, f.pwFiles[f.admin])
}

// syncBuffer is a log sink the node writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog polls the log for want until a deadline.
func waitLog(t *testing.T, log *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q:\n%s", want, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runNode(t *testing.T, cfg *node.Config, log io.Writer) *node.Node {
	t.Helper()
	n, err := initAndNew(t, cfg, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("node exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready")
	}
	return n
}

// TestSessionLogsInAsLevelRole: through a node, a read grant's session is
// the read role upstream and a write grant's the write role; the
// start-up check finds the roles clean.
func TestSessionLogsInAsLevelRole(t *testing.T) {
	f := newRolesFixture(t)
	tokens := map[string]string{"reader": "phg_reader_" + f.db, "writer": "phg_writer_" + f.db}
	var log syncBuffer
	n := runNode(t, f.config(t, f.rolesYAML(), tokens), &log)
	port := n.PostgresAddr().(*net.TCPAddr).Port
	ctx := context.Background()
	for who, want := range map[string]string{"reader": f.read, "writer": f.write} {
		conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=clinic sslmode=require", port, who, tokens[who]))
		if err != nil {
			t.Fatal(err)
		}
		var user string
		if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != want {
			t.Errorf("%s logs in upstream as %q (%v), want %q", who, user, err, want)
		}
		var count int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&count); err != nil || count < 1 {
			t.Errorf("%s reads: %d, %v", who, count, err)
		}
		conn.Close(ctx)
	}
	waitLog(t, &log, "no upstream role is stronger than its grants")
	for _, pw := range f.passwords {
		if strings.Contains(log.String(), pw) {
			t.Fatal("a password is in the log")
		}
	}
}

// TestStartWarnsAboutStrongRole: a node whose only upstream role owns the
// database warns, once listening, for every danger, without its password.
func TestStartWarnsAboutStrongRole(t *testing.T) {
	f := newRolesFixture(t)
	var log syncBuffer
	runNode(t, f.config(t, fmt.Sprintf("user: %s, password_file: %s", f.admin, f.pwFiles[f.admin]), map[string]string{"reader": "r-" + f.db, "writer": "w-" + f.db}), &log)
	waitLog(t, &log, "resource check: the database would not refuse")
	out := log.String()
	for _, want := range []string{
		"level=WARN msg=\"DANGER: upstream role is stronger than the grants that log in with it\" node=roles-node resource=clinic level=read role=" + f.admin,
		"finding=\"owns the database",
		"where=public.patients",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(out, "pw-"+f.admin) {
		t.Error("the password is in the log")
	}
	if t.Failed() {
		t.Log(out)
	}
}

// TestStartDoesNotWaitForDatabase: an unreachable database neither delays
// readiness nor fails the node; the check says it could not log in.
func TestStartDoesNotWaitForDatabase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(`
node: {id: lonely, data_dir: %s}
listen: {postgres: "127.0.0.1:0"}
resources: [{name: clinic, address: %q, database: d, user: u, tls: disable}]
`, t.TempDir(), addr)))
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	runNode(t, cfg, &log)
	waitLog(t, &log, "cannot check an upstream role")
}

// TestResourceCheckCommand: `phigate resource check` exits 0 for roles that
// fit their grants and 1 when one is stronger; --json is JSON; no password
// is printed either way.
func TestResourceCheckCommand(t *testing.T) {
	f := newRolesFixture(t)
	ctx := context.Background()
	write := func(name string, cfg string) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := func(resource string) string {
		return fmt.Sprintf(`
resources: [{name: clinic, address: %q, database: %s, tls: disable, %s}]
grants:
  - {name: readers, groups: [readers], resources: [clinic], allow: [read]}
  - {name: writers, groups: [writers], resources: [clinic], allow: [read, write]}
`, f.pg.Addr(), f.db, resource)
	}
	clean := write("clean.yaml", base(f.rolesYAML()))
	strong := write("strong.yaml", base(fmt.Sprintf("user: %s, password_file: %s", f.admin, f.pwFiles[f.admin])))

	var out, errOut bytes.Buffer
	if code := cli.Main(ctx, []string{"resource", "check", "--config", clean, "clinic"}, &out, &errOut); code != 0 {
		t.Fatalf("clean: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"read sessions log in as " + f.read + " (grants readers)", "write sessions log in as " + f.write, "no danger found"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("clean output lacks %q:\n%s", want, out.String())
		}
	}
	printed := out.String()

	out.Reset()
	errOut.Reset()
	if code := cli.Main(ctx, []string{"resource", "check", "--config", strong, "--json", "clinic"}, &out, &errOut); code != 1 {
		t.Fatalf("strong: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	var rep struct {
		Findings []struct{ Severity, Role, What string }
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	dangers := 0
	for _, fd := range rep.Findings {
		if fd.Severity == "danger" && fd.Role == f.admin {
			dangers++
		}
	}
	if dangers == 0 || !strings.Contains(errOut.String(), "danger findings") {
		t.Fatalf("strong: %d dangers; stderr %q", dangers, errOut.String())
	}
	printed += out.String() + errOut.String()

	if code := cli.Main(ctx, []string{"resource", "check", "--config", clean, "nope"}, io.Discard, &errOut); code == 0 {
		t.Fatal("unknown resource accepted")
	}
	for _, pw := range f.passwords {
		if strings.Contains(printed, pw) {
			t.Fatal("a password was printed")
		}
	}
}
