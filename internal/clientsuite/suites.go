package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/phigate/phigate/internal/pgtest"
)

// Leg is one of the two runs of a suite.
type Leg string

const (
	Direct  Leg = "direct"  // the suite talks to PostgreSQL
	Phigate Leg = "phigate" // the suite talks to a phigate node in front of it
)

// target is where a leg's clients connect and with what secret.
type target struct {
	Leg      Leg
	Port     int
	Password func(suitePassword string) string
	// Socket is the unix socket directory; empty when the leg has none.
	Socket string
}

// suite is one client library's own test suite and the database setup its
// CI gives it, reproduced on a throwaway PostgreSQL 15.
type suite struct {
	Name    string // as in the expectations file
	Module  string
	Version string
	Root    string // the name of the module's root package in test IDs
	// Packages are the packages whose tests run (relative to the module);
	// "path:regexp" runs only the tests the regexp selects.
	Packages []string
	// Database is the suite's database; the node's resource has its name.
	// Owner owns it (empty: the superuser).
	Database, Owner string
	// ExtraEnv is set in both legs (switches the suite's CI sets).
	ExtraEnv []string
	// Hosts are names the suite's CI maps to 127.0.0.1 in /etc/hosts; see
	// hostsWrapper.
	Hosts []string
	// NotRun says what the suite's CI also tests that cannot exist here;
	// its tests skip in both legs (their switches are left unset).
	NotRun string

	// prepare writes certificates and server files into dir from the
	// suite's source tree src and returns the server's extra settings.
	prepare func(r *suiteRun) (map[string]string, error)
	// setup creates roles and the database template, once per server.
	setup func(ctx context.Context, r *suiteRun) error
	// env is the suite's environment for one leg: connection strings only.
	env func(r *suiteRun, t target) ([]string, error)
}

// suiteRun is a suite's working state during a run.
type suiteRun struct {
	*suite
	Dir   string // work directory of this suite
	Src   string // writable copy of the module source
	Certs string // certificates, readable by the harness and the tests
	PG    *pgtest.Server
	Node  *nodeProc

	// Server side TLS files (for PostgreSQL and phigate), the CA clients
	// and the gateway verify them with, and the name in the certificate.
	ServerCert, ServerKey, CA, ServerName string

	GatewayPassword string
	Token           string
	// HostsNote says why the suite's extra host names could not be given.
	HostsNote string
}

// gatewayRole is the role phigate logs in as. It is a superuser because the
// roles the suites connect as directly are: the two legs must be able to do
// the same things.
const gatewayRole = "phigate_gateway"

func (r *suiteRun) target(leg Leg) target {
	if leg == Direct {
		return target{Leg: leg, Port: r.PG.Port(), Socket: r.PG.SocketDir(), Password: func(pw string) string { return pw }}
	}
	return target{Leg: leg, Port: r.Node.port, Password: func(string) string { return r.Token }}
}

// pgx v5: the settings of ci/setup_test.bash and testsetup/ (pg_hba.conf,
// postgresql_ssl.conf, postgresql_setup.sql, the committed certificates)
// and the PGX_TEST_* strings of scripts/lib/test_targets.rb, CI's values.
// Left unset in both legs: PgBouncer, CockroachDB, CrateDB, the OAuth
// validator (PostgreSQL 18 only), the libpq URI oracle and the stress factor.
var pgxSuite = &suite{
	Name: "pgx", Module: "github.com/jackc/pgx/v5", Version: "v5.12.0", Root: "pgx",
	NotRun: "PgBouncer, CockroachDB, CrateDB, the OAuth validator (PostgreSQL 18), the libpq URI oracle, the stress factor",
	// The packages whose tests reach a server; of pgproto3 (a codec), only
	// the test that does. The others (internal/..., pgmock, pgproto3's
	// codec tests, 50 s of them) never connect, so they would pass or fail
	// identically in both legs at twice the cost.
	Packages: []string{".", "./pgconn", "./pgproto3:^TestTrace", "./pgtype", "./pgtype/zeronull", "./pgxpool", "./stdlib", "./tracelog"},
	Database: "pgx_test",
	prepare: func(r *suiteRun) (map[string]string, error) {
		certs := filepath.Join(r.Src, "testsetup", "certs")
		for _, f := range []string{"ca.pem", "localhost.crt", "localhost.key", "pgx_sslcert.crt", "pgx_sslcert.key"} {
			b64, err := os.ReadFile(filepath.Join(certs, f+".b64"))
			if err != nil {
				return nil, err
			}
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
			if err != nil {
				return nil, fmt.Errorf("decode %s: %w", f, err)
			}
			if err := os.WriteFile(filepath.Join(r.Certs, f), b, 0o600); err != nil {
				return nil, err
			}
		}
		r.CA = filepath.Join(r.Certs, "ca.pem")
		r.ServerCert, r.ServerKey = filepath.Join(r.Certs, "localhost.crt"), filepath.Join(r.Certs, "localhost.key")
		r.ServerName = "localhost"
		hba, err := os.ReadFile(filepath.Join(r.Src, "testsetup", "pg_hba.conf"))
		if err != nil {
			return nil, err
		}
		return r.serverFiles(string(hba))
	},
	setup: func(ctx context.Context, r *suiteRun) error {
		// postgresql_setup.sql is a psql script (\set, \gexec: a role for
		// the OS user, whom the unix socket test connects as); run it with
		// psql into the template.
		if err := r.PG.CreateDatabase(ctx, r.Database+"_template", ""); err != nil {
			return err
		}
		bin, err := pgtest.BinDir()
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
			"-h", r.PG.SocketDir(), "-p", strconv.Itoa(r.PG.Port()), "-U", pgtest.Superuser,
			"-d", r.Database+"_template", "-f", filepath.Join(r.Src, "testsetup", "postgresql_setup.sql"))
		cmd.Env = cleanEnv(nil)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("postgresql_setup.sql: %w: %s", err, out)
		}
		return nil
	},
	env: func(r *suiteRun, t target) ([]string, error) {
		pw := t.Password("secret")
		tcp := func(user string) string {
			return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgx_test", t.Port, user, pw)
		}
		tls := fmt.Sprintf("host=localhost port=%d user=pgx_ssl password=%s sslmode=verify-full sslrootcert=%s dbname=pgx_test", t.Port, pw, r.CA)
		env := []string{
			"PGX_TEST_DATABASE=" + tcp("pgx_md5"),
			"PGX_TEST_TCP_CONN_STRING=" + tcp("pgx_md5"),
			"PGX_TEST_MD5_PASSWORD_CONN_STRING=" + tcp("pgx_md5"),
			"PGX_TEST_PLAIN_PASSWORD_CONN_STRING=" + tcp("pgx_pw"),
			"PGX_TEST_SCRAM_PASSWORD_CONN_STRING=" + tcp("pgx_scram") + " channel_binding=disable",
			"PGX_TEST_SCRAM_PLUS_CONN_STRING=" + tls + " channel_binding=require",
			"PGX_TEST_TLS_CONN_STRING=" + tls + " channel_binding=disable",
			// Client certificate authentication: no password to replace.
			"PGX_TEST_TLS_CLIENT_CONN_STRING=" + fmt.Sprintf("host=localhost port=%d user=pgx_sslcert sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s dbname=pgx_test",
				t.Port, r.CA, filepath.Join(r.Certs, "pgx_sslcert.crt"), filepath.Join(r.Certs, "pgx_sslcert.key")),
			"PGX_SSL_PASSWORD=certpw",
		}
		if t.Socket != "" { // phigate listens on TCP only
			env = append(env, fmt.Sprintf("PGX_TEST_UNIX_SOCKET_CONN_STRING=host=%s port=%d dbname=pgx_test", t.Socket, t.Port))
		}
		return env, nil
	},
}

// lib/pq: the settings of compose.yaml and testdata/postgres (pg_hba.conf,
// 20-config.sql: roles, SSL with testdata/ssl) and the PG* defaults of
// internal/pqtest. Its CI adds "127.0.0.1 postgres postgres-invalid" to
// /etc/hosts for the TLS tests (the server certificate names "postgres").
var pqSuite = &suite{
	Name: "pq", Module: "github.com/lib/pq", Version: "v1.12.3", Root: "pq",
	NotRun:   "PgBouncer, Pgpool, CockroachDB",
	Packages: []string{"./..."},
	Database: "pqgo", Owner: "pqgo",
	Hosts: []string{"postgres", "postgres-invalid"},
	prepare: func(r *suiteRun) (map[string]string, error) {
		ssl := filepath.Join(r.Src, "testdata", "ssl")
		for _, f := range []string{"server.crt", "server.key", "root.crt"} {
			if err := copyFile(filepath.Join(ssl, f), filepath.Join(r.Certs, f), 0o600); err != nil {
				return nil, err
			}
		}
		r.CA = filepath.Join(r.Certs, "root.crt")
		r.ServerCert, r.ServerKey = filepath.Join(r.Certs, "server.crt"), filepath.Join(r.Certs, "server.key")
		r.ServerName = "postgres"
		hba, err := os.ReadFile(filepath.Join(r.Src, "testdata", "postgres", "pg_hba.conf"))
		if err != nil {
			return nil, err
		}
		return r.serverFiles(string(hba))
	},
	setup: func(ctx context.Context, r *suiteRun) error {
		// The docker image's POSTGRES_USER is the cluster's superuser and
		// owns the database.
		if err := r.PG.Exec(ctx, "postgres", "CREATE ROLE pqgo LOGIN SUPERUSER PASSWORD 'unused'"); err != nil {
			return err
		}
		if err := r.PG.CreateDatabase(ctx, r.Database+"_template", r.Owner); err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(r.Src, "testdata", "postgres", "docker-entrypoint-initdb.d", "20-config.sql"))
		if err != nil {
			return err
		}
		// Its ALTER SYSTEM lines turn on SSL with the container's paths;
		// serverFiles has done that with ours.
		var sql []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(l)), "alter system") {
				sql = append(sql, l)
			}
		}
		return r.PG.Exec(ctx, r.Database+"_template", strings.Join(sql, "\n"))
	},
	env: func(r *suiteRun, t target) ([]string, error) {
		// pqtest defaults PGHOST to localhost, PGUSER and PGDATABASE to
		// pqgo, PGSSLMODE to disable; CI sets no password (trust). The
		// token goes in a ~/.pgpass, not in PGPASSWORD: lib/pq's config
		// tests compare the configuration they parse, environment
		// included, with what they expect, and a password there would
		// fail them for the harness's sake. Both legs get a HOME of their
		// own; the direct leg's has no .pgpass.
		home := filepath.Join(r.Dir, "home-"+string(t.Leg))
		if err := os.MkdirAll(home, 0o700); err != nil {
			return nil, err
		}
		if pw := t.Password(""); pw != "" {
			if err := os.WriteFile(filepath.Join(home, ".pgpass"), []byte("*:*:*:*:"+pgpassEscape(pw)+"\n"), 0o600); err != nil {
				return nil, err
			}
		}
		return []string{"PGPORT=" + strconv.Itoa(t.Port), "HOME=" + home}, nil
	},
}

// pgpassEscape escapes a .pgpass field.
func pgpassEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(s)
}

// pqBinarySuite is lib/pq again with PQTEST_BINARY_PARAMETERS=yes, the
// second half of its CI matrix: parameters go in binary format.
var pqBinarySuite = func() *suite {
	s := *pqSuite
	s.Name = "pq-binary"
	s.ExtraEnv = []string{"PQTEST_BINARY_PARAMETERS=yes"}
	// The switch changes how the driver sends parameters; the internal
	// packages' tests do not send any.
	s.Packages = []string{".", "./hstore"}
	return &s
}()

var allSuites = []*suite{pgxSuite, pqSuite, pqBinarySuite}

// serverFiles puts the server's certificate, key and CA, and the suite's
// pg_hba.conf (with the lines pgtest and the gateway need in front), where
// the postgres OS user can read them, and returns the settings that use
// them.
func (r *suiteRun) serverFiles(hba string) (map[string]string, error) {
	dir := filepath.Join(r.Dir, "server")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	uid, gid, _, err := pgtest.ServiceUser()
	if err != nil {
		return nil, err
	}
	files := map[string]string{"server.crt": r.ServerCert, "server.key": r.ServerKey, "root.crt": r.CA}
	for name, src := range files {
		if err := copyFile(src, filepath.Join(dir, name), 0o600); err != nil {
			return nil, err
		}
	}
	// pgtest's harness logs in as its superuser over the unix socket by
	// trust; the gateway logs in with a password (SCRAM) over TCP, before
	// any catch-all line of the suite's file.
	head := fmt.Sprintf("# written by internal/clientsuite, then the suite's own pg_hba.conf\n"+
		"local all %s trust\n"+
		"host  all %s 127.0.0.1/32 scram-sha-256\n\n", pgtest.Superuser, gatewayRole)
	if err := os.WriteFile(filepath.Join(dir, "pg_hba.conf"), []byte(head+hba), 0o600); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := os.Lchown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
			return nil, err
		}
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return nil, err
	}
	return map[string]string{
		"ssl":           "on",
		"ssl_cert_file": filepath.Join(dir, "server.crt"),
		"ssl_key_file":  filepath.Join(dir, "server.key"),
		"ssl_ca_file":   filepath.Join(dir, "root.crt"),
		"hba_file":      filepath.Join(dir, "pg_hba.conf"),
	}, nil
}

// resetDatabase gives a leg a fresh copy of the suite's database, so that
// what the direct leg left behind cannot change the phigate leg's results.
func (r *suiteRun) resetDatabase(ctx context.Context) error {
	owner := r.Owner
	if owner == "" {
		owner = pgtest.Superuser
	}
	// Two statements, two messages: DROP DATABASE cannot run in the
	// implicit transaction of a multi-statement query.
	if err := r.PG.Exec(ctx, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", r.Database)); err != nil {
		return err
	}
	return r.PG.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %[1]s TEMPLATE %[1]s_template OWNER %[2]s", r.Database, owner))
}
