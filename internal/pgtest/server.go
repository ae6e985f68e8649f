package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/freeport"
)

// Superuser is the name of the bootstrap superuser of every server. It
// authenticates by trust on the unix socket and on 127.0.0.1: this is a test
// server, and the harness itself must be able to reach it without a secret.
const Superuser = "postgres"

// Auth methods a User can be made to authenticate with.
const (
	AuthSCRAM    = "scram-sha-256"
	AuthMD5      = "md5"
	AuthPassword = "password" // cleartext password
)

// Roles that pg_hba.conf maps to an auth method; every User is made a member
// of the one for its method. A login role that is in neither (for example one
// a test makes with plain CREATE ROLE) authenticates with SCRAM-SHA-256.
const (
	md5Group      = "pgtest_md5"
	passwordGroup = "pgtest_password"
)

// ErrNoBinaries is returned when initdb and postgres cannot be found.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries not found (apt-get install postgresql-15, or set PHIGATE_PG_BINDIR)")

// Options says how to start a server. The zero value is a plain server on a
// free port, without TLS, with only the Superuser, PostgreSQL's own defaults
// except shared_buffers=32MB, and fsync left on.
type Options struct {
	// Port on 127.0.0.1. Zero picks a free one.
	Port int
	// SSL turns ssl=on with a self-signed certificate for 127.0.0.1 and
	// localhost (see Server.CertFile). False: the server answers 'N' to
	// SSLRequest.
	SSL bool
	// Users are login roles created after start. Nil: only the Superuser.
	Users []User
	// Settings are extra postgresql.conf lines, name to value, applied after
	// pgtest's own and so overriding them. Nil adds nothing: fsync, for
	// example, stays on unless Settings says "fsync": "off".
	Settings map[string]string
	// BinDir holds initdb and postgres. Empty: $PHIGATE_PG_BINDIR, else
	// /usr/lib/postgresql/15/bin, else the newest /usr/lib/postgresql/*/bin,
	// else the directory of initdb on $PATH.
	BinDir string
}

// User is a login role and how it must authenticate.
type User struct {
	Name     string
	Password string
	// Auth is AuthSCRAM, AuthMD5 or AuthPassword. Empty means AuthSCRAM.
	Auth      string
	Superuser bool
}

// String names the user and method, never the password.
func (u User) String() string { return u.Name + "(" + u.auth() + ")" }

func (u User) auth() string {
	if u.Auth == "" {
		return AuthSCRAM
	}
	return u.Auth
}

// Server is a running PostgreSQL. Its methods are safe for concurrent use.
type Server struct {
	dir      string
	dataDir  string
	sockDir  string
	ownSock  bool // sockDir is a short temp dir of ours, removed by Stop
	binDir   string
	port     int
	ssl      bool
	certFile string
	logPath  string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the postmaster has exited
	exitErr  error         // set before exited is closed
	stopOnce sync.Once
	stopErr  error
}

// Start initialises a database cluster under dir (which it creates; the data
// directory is dir/data, the server log dir/postgres.log), starts the
// postmaster, waits until it accepts connections and creates opts.Users.
// ctx bounds the start, not the server's life: call Stop.
func Start(ctx context.Context, dir string, opts Options) (*Server, error) {
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	for _, u := range opts.Users {
		if err := u.validate(); err != nil {
			return nil, err
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	uid, gid, asOther, err := ServiceUser()
	if err != nil {
		return nil, err
	}
	s := &Server{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "sock"),
		binDir:  binDir,
		ssl:     opts.SSL,
		logPath: filepath.Join(dir, "postgres.log"),
		exited:  make(chan struct{}),
	}
	// A unix socket path is limited to 107 bytes; deep test directories
	// would overflow it, so the socket then lives in a short temp dir.
	if len(s.sockDir)+len("/.s.PGSQL.65535") > 100 {
		short, err := os.MkdirTemp("", "pgs")
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.sockDir, s.ownSock = short, true
	} else if err := os.Mkdir(s.sockDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, err
	}
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		return fail(fmt.Errorf("pgtest: %w", err))
	}
	if asOther {
		for _, p := range []string{s.dataDir, s.sockDir} {
			if err := os.Chown(p, uid, gid); err != nil {
				return fail(fmt.Errorf("pgtest: %w", err))
			}
		}
		for _, p := range []string{dir, s.sockDir} {
			if err := makeTraversable(p); err != nil {
				return fail(err)
			}
		}
	}
	if err := s.initdb(ctx); err != nil {
		return fail(err)
	}
	if opts.SSL {
		if err := s.writeCert(uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "pg_hba.conf"), []byte(hbaConf()), 0o600); err != nil {
		return fail(fmt.Errorf("pgtest: %w", err))
	}
	// A free port found by listening and closing can be taken by someone
	// else before the postmaster binds it; try again on a new one.
	for attempt := 0; ; attempt++ {
		s.port = opts.Port
		if s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return fail(err)
			}
		}
		if err := s.writeConf(opts.Settings); err != nil {
			return fail(err)
		}
		err = s.startPostmaster(ctx)
		if err == nil {
			break
		}
		if opts.Port != 0 || attempt == 2 || !strings.Contains(err.Error(), "could not bind") {
			return fail(err)
		}
		s.exited = make(chan struct{})
	}
	if err := s.Exec(ctx, "postgres", fmt.Sprintf(
		"CREATE ROLE %s NOLOGIN; CREATE ROLE %s NOLOGIN;", md5Group, passwordGroup)); err != nil {
		return fail(err)
	}
	for _, u := range opts.Users {
		if err := s.AddUser(ctx, u); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// hbaConf is the whole pg_hba.conf. Methods are chosen by role membership,
// so adding a user never needs a reload (which PostgreSQL applies
// asynchronously).
func hbaConf() string {
	var b strings.Builder
	b.WriteString("# written by pgtest\n")
	line := func(who, method string) {
		fmt.Fprintf(&b, "local all %s %s\n", who, method)
		fmt.Fprintf(&b, "host  all %s 127.0.0.1/32 %s\n", who, method)
		fmt.Fprintf(&b, "host  all %s ::1/128 %s\n", who, method)
	}
	line(Superuser, "trust")
	line("+"+md5Group, "md5")
	line("+"+passwordGroup, "password")
	line("all", "scram-sha-256")
	return b.String()
}

func (s *Server) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "initdb"),
		"-D", s.dataDir, "-U", Superuser, "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	cmd.Dir = s.dir
	cmd.Env = serverEnv()
	if err := AsServiceUser(cmd); err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func (s *Server) writeCert(uid, gid int) error {
	certPEM, keyPEM, err := selfSignedCert(time.Now())
	if err != nil {
		return err
	}
	s.certFile = filepath.Join(s.dataDir, "server.crt")
	keyFile := filepath.Join(s.dataDir, "server.key")
	if err := os.WriteFile(s.certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	for _, p := range []string{s.certFile, keyFile} {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	return nil
}

// writeConf writes postgresql.auto.conf, which PostgreSQL reads after
// postgresql.conf, so these lines win over initdb's.
func (s *Server) writeConf(extra map[string]string) error {
	settings := [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(s.port)},
		{"unix_socket_directories", s.sockDir},
		{"shared_buffers", "32MB"},
		{"logging_collector", "off"},
		{"log_destination", "stderr"},
		{"password_encryption", "scram-sha-256"},
	}
	if s.ssl {
		settings = append(settings,
			[2]string{"ssl", "on"},
			[2]string{"ssl_cert_file", s.certFile},
			[2]string{"ssl_key_file", filepath.Join(s.dataDir, "server.key")})
	}
	names := make([]string, 0, len(extra))
	for k := range extra {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		settings = append(settings, [2]string{k, extra[k]})
	}
	var b strings.Builder
	b.WriteString("# written by pgtest\n")
	for _, kv := range settings {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	p := filepath.Join(s.dataDir, "postgresql.auto.conf")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	uid, gid, _, err := ServiceUser()
	if err != nil {
		return err
	}
	return os.Chown(p, uid, gid)
}

func (s *Server) startPostmaster(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	logStart, _ := logf.Seek(0, 2)
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"), "-D", s.dataDir)
	cmd.Dir = s.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := AsServiceUser(cmd); err != nil {
		return err
	}
	if err := Spawn(cmd, syscall.SIGINT); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	exited := s.exited
	go func() {
		s.exitErr = cmd.Wait()
		close(exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.kill()
		s.cmd = nil
		return fmt.Errorf("pgtest: postgres did not start: %w\n%s", err, s.logSince(logStart))
	}
	return nil
}

// waitReady polls the unix socket until the server accepts a connection,
// the postmaster exits, or the deadline passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attempt, s.socketDSN("postgres"))
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postmaster exited: %v", s.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	b = b[off:]
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop shuts the server down (fast shutdown: sessions are ended, a
// checkpoint is written), waits for the postmaster to exit, escalating to
// SIGQUIT and then SIGKILL of the whole process group if it does not, and
// removes pgtest's temporary socket directory. The data directory is left
// to its owner. Stop is idempotent: later calls return the first's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	var err error
	if s.cmd != nil {
		pid := s.cmd.Process.Pid
		// SIGINT: fast shutdown. SIGQUIT: immediate shutdown (crash-like,
		// recovery on next start, which a throwaway server never has).
		if !s.signalAndWait(pid, syscall.SIGINT, time.Minute) &&
			!s.signalAndWait(pid, syscall.SIGQUIT, 10*time.Second) {
			err = errors.New("pgtest: postgres ignored SIGINT and SIGQUIT; killed")
		}
		s.kill()
	}
	if s.ownSock {
		if rmErr := os.RemoveAll(s.sockDir); rmErr != nil && err == nil {
			err = fmt.Errorf("pgtest: %w", rmErr)
		}
	}
	return err
}

func (s *Server) signalAndWait(pid int, sig syscall.Signal, wait time.Duration) bool {
	_ = syscall.Kill(pid, sig)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.exited:
		return true
	case <-t.C:
		return false
	}
}

// kill makes sure nothing of the server's process group is left: the
// postmaster (if still there) and any backend that outlived it.
func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	KillGroup(s.cmd.Process.Pid)
	<-s.exited
}

// PID is the postmaster's process id, which is also its process group id.
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Exited is closed when the postmaster has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Addr is the TCP address, 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// SocketDir is the directory holding the unix socket (.s.PGSQL.<port>).
func (s *Server) SocketDir() string { return s.sockDir }

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// LogPath is the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// CertFile is the server's self-signed certificate (PEM), usable as a
// client's root certificate; empty without Options.SSL.
func (s *Server) CertFile() string { return s.certFile }

// DSN is a URL connection string for user over TCP to 127.0.0.1. Without
// Options.SSL it says sslmode=disable; with it, sslmode=verify-full against
// CertFile. An empty password is left out.
func (s *Server) DSN(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Host: s.Addr(), Path: "/" + db}
	if password == "" {
		u.User = url.User(user)
	} else {
		u.User = url.UserPassword(user, password)
	}
	q := url.Values{}
	if s.ssl {
		q.Set("sslmode", "verify-full")
		q.Set("sslrootcert", s.certFile)
	} else {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// socketDSN reaches db as the Superuser over the unix socket.
func (s *Server) socketDSN(db string) string {
	q := url.Values{}
	q.Set("host", s.sockDir)
	q.Set("port", strconv.Itoa(s.port))
	q.Set("user", Superuser)
	q.Set("dbname", db)
	q.Set("sslmode", "disable")
	return "postgres:///?" + q.Encode()
}

// Exec runs sql (one or more statements, simple query protocol) in database
// db as the Superuser and returns the first error the server reports.
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	conn, err := pgconn.Connect(ctx, s.socketDSN(db))
	if err != nil {
		return fmt.Errorf("pgtest: connect to %s: %w", db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("pgtest: exec: %w", err)
	}
	return nil
}

// CreateDatabase creates database name owned by owner (the Superuser when
// owner is empty).
func (s *Server) CreateDatabase(ctx context.Context, name, owner string) error {
	if owner == "" {
		owner = Superuser
	}
	return s.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", quoteIdent(name), quoteIdent(owner)))
}

// AddUser creates login role u, or resets its password and method if it
// exists, so that it authenticates exactly with u.Auth: the md5 method gets a
// password stored as an md5 hash (password_encryption is switched for that
// one session only), the others a SCRAM verifier.
func (s *Server) AddUser(ctx context.Context, u User) error {
	if err := u.validate(); err != nil {
		return err
	}
	enc := "scram-sha-256"
	if u.auth() == AuthMD5 {
		enc = "md5"
	}
	attrs := "LOGIN NOSUPERUSER"
	if u.Superuser {
		attrs = "LOGIN SUPERUSER"
	}
	name := quoteIdent(u.Name)
	var sql strings.Builder
	fmt.Fprintf(&sql, "SET password_encryption = '%s';\n", enc)
	fmt.Fprintf(&sql, `DO $pgtest$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN
    CREATE ROLE %s;
  END IF;
END $pgtest$;
`, quoteLiteral(u.Name), name)
	fmt.Fprintf(&sql, "ALTER ROLE %s %s PASSWORD %s;\n", name, attrs, quoteLiteral(u.Password))
	for _, g := range []string{md5Group, passwordGroup} {
		fmt.Fprintf(&sql, "REVOKE %s FROM %s;\n", g, name)
	}
	switch u.auth() {
	case AuthMD5:
		fmt.Fprintf(&sql, "GRANT %s TO %s;\n", md5Group, name)
	case AuthPassword:
		fmt.Fprintf(&sql, "GRANT %s TO %s;\n", passwordGroup, name)
	}
	if err := s.Exec(ctx, "postgres", sql.String()); err != nil {
		return fmt.Errorf("pgtest: add user %s: %w", u, err)
	}
	return nil
}

func (u User) validate() error {
	if u.Name == "" || u.Name == Superuser {
		return fmt.Errorf("pgtest: user name %q is empty or reserved", u.Name)
	}
	if !slices.Contains([]string{AuthSCRAM, AuthMD5, AuthPassword}, u.auth()) {
		return fmt.Errorf("pgtest: user %s: unknown auth method %q", u.Name, u.Auth)
	}
	if u.Password == "" {
		return fmt.Errorf("pgtest: user %s: empty password", u.Name)
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLiteral quotes s as a standard-conforming SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func freePort() (int, error) { return freeport.Port() }

// makeTraversable adds o+x to dir and each directory above it, so that the
// postgres OS user can reach a data directory made by root (t.TempDir and
// os.MkdirTemp create 0700 directories).
func makeTraversable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pgtest: make %s traversable: %w", p, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// serverEnv is the environment of initdb and postgres: the caller's, without
// PG* variables that could point them elsewhere, in the C locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

func findBinDir(configured string) (string, error) {
	ok := func(d string) bool {
		_, err1 := os.Stat(filepath.Join(d, "initdb"))
		_, err2 := os.Stat(filepath.Join(d, "postgres"))
		return err1 == nil && err2 == nil
	}
	if configured != "" {
		if ok(configured) {
			return configured, nil
		}
		return "", fmt.Errorf("%w in %s", ErrNoBinaries, configured)
	}
	if d := os.Getenv("PHIGATE_PG_BINDIR"); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w in PHIGATE_PG_BINDIR=%s", ErrNoBinaries, d)
	}
	if d := "/usr/lib/postgresql/15/bin"; ok(d) {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", ErrNoBinaries
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// BinDir is the directory of the server binaries that Start would use with
// an empty Options.BinDir. Client tools (psql, pgbench) of the same version
// are there too.
func BinDir() (string, error) { return findBinDir("") }
