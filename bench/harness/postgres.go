package harness

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
)

// The database and roles of the benchmarks. Passwords and tokens are random
// per run.
const (
	DB          = "bench"
	DirectUser  = "bench_user"  // the clients' role, straight to PostgreSQL (and through PgBouncer)
	GatewayUser = "phigate_svc" // phigate's upstream role, granted DirectUser's tables
	AgentName   = "bench-agent" // the clients' identity through phigate
)

// Endpoint is where a PostgreSQL client connects and as whom.
type Endpoint struct {
	Host     string
	Port     int
	User     string
	Password string
	DB       string
}

// DSN is the endpoint as a connection URL, without TLS. An attempt against
// a listener that does not answer gives up after 5 s.
func (ep Endpoint) DSN() string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)),
		User: url.UserPassword(ep.User, ep.Password), Path: "/" + ep.DB, RawQuery: "sslmode=disable&connect_timeout=5"}
	return u.String()
}

// WaitConnect polls until ep accepts a real PostgreSQL session, p exits or
// a minute passes.
func WaitConnect(ctx context.Context, ep Endpoint, p *Process) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := pgconn.Connect(ctx, ep.DSN())
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited: %v\n%s", p.Name(), err, p.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v\n%s", p.Name(), err, p.LogTail())
		case <-tick.C:
		}
	}
}

// Postgres is the benchmarks' PostgreSQL with pgbench's tables loaded.
type Postgres struct {
	*pgtest.Server
	Direct          Endpoint // DirectUser straight to the server
	GatewayPassword string   // GatewayUser's password, for phigate's password_file
	Pgbench         string   // the installation's pgbench binary
}

// StartPostgres starts PostgreSQL in dir as production would run it (fsync
// on), creates the roles and the database and loads pgbench's tables at
// scale; logf says what it does. The caller stops the server.
func StartPostgres(ctx context.Context, dir string, scale int, logf func(string, ...any)) (*Postgres, error) {
	binDir, err := pgtest.BinDir()
	if err != nil {
		return nil, err
	}
	pgbench := filepath.Join(binDir, "pgbench")
	directPW, gatewayPW := RandomSecret(), RandomSecret()
	srv, err := pgtest.Start(ctx, dir, pgtest.Options{
		Users: []pgtest.User{
			{Name: DirectUser, Password: directPW, Auth: pgtest.AuthSCRAM},
			{Name: GatewayUser, Password: gatewayPW, Auth: pgtest.AuthSCRAM},
		},
		Settings: map[string]string{
			"max_connections": "300",
			"shared_buffers":  "256MB",
			"max_wal_size":    "4GB",
		},
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Postgres, error) {
		srv.Stop()
		return nil, err
	}
	if err := srv.CreateDatabase(ctx, DB, DirectUser); err != nil {
		return fail(err)
	}
	// The gateway's role works on the same tables as the direct one.
	if err := srv.Exec(ctx, DB, fmt.Sprintf("GRANT %s TO %s", DirectUser, GatewayUser)); err != nil {
		return fail(err)
	}
	direct := Endpoint{Host: "127.0.0.1", Port: srv.Port(), User: DirectUser, Password: directPW, DB: DB}
	logf("pgbench -i -s %d", scale)
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-s", strconv.Itoa(scale), "-q",
		"-h", direct.Host, "-p", strconv.Itoa(direct.Port), "-U", direct.User, direct.DB)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+directPW, "PGSSLMODE=disable")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgbench -i: %w\n%s", err, Tail(out, 2000)))
	}
	return &Postgres{Server: srv, Direct: direct, GatewayPassword: gatewayPW, Pgbench: pgbench}, nil
}

// PolicySections is the part of phigate's policy the benchmarks share: DB
// as a resource at upstream, reached as GatewayUser with the password in
// pwFile; a grant of all of it to the group bench (the identities are the
// caller's); and the masking profile it applies, which redacts
// pgbench_accounts.filler and pgbench_history.filler and any column named
// masked_*.
func PolicySections(upstream, pwFile string) string { return policySections(upstream, pwFile, Grant{}) }

// policySections is PolicySections with g.
func policySections(upstream, pwFile string, g Grant) string {
	profile := ""
	if !g.Unmasked {
		profile = "    masking: bench-profile\n"
	}
	if g.ReadAhead {
		profile += "    read_ahead: true\n"
	}
	return fmt.Sprintf(`resources:
  - name: %s
    protocol: postgres
    address: %q
    database: %s
    user: %s
    password_file: %q
    tls: disable
grants:
  - name: bench-all
    groups: [bench]
    resources: [%s]
    allow: [all]
%smasking:
  profiles:
    bench-profile:
      rules:
        - column: public.pgbench_accounts.filler
          action: redact
        - column: public.pgbench_history.filler
          action: redact
        - pattern: "^masked_"
          action: redact
`, DB, upstream, DB, GatewayUser, pwFile, DB, profile)
}
