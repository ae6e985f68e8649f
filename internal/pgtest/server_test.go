package pgtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/internal/pgtest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("PGTEST_ORPHAN_DIR"); dir != "" {
		orphanChild(dir)
		return
	}
	os.Exit(pgtest.Main(m))
}

func connect(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// authRequest opens a raw protocol connection as user and returns the first
// authentication request the server sends: it shows which method pg_hba.conf
// picked, independently of what a client library negotiates.
func authRequest(t *testing.T, addr, user string) pgproto3.BackendMessage {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": user, "database": "postgres"},
	})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestAuthMethodsArePerUser(t *testing.T) {
	users := []pgtest.User{
		{Name: "alice_scram", Password: "s3cret 'quoted'", Auth: pgtest.AuthSCRAM},
		{Name: "bob_md5", Password: "md5-pw", Auth: pgtest.AuthMD5},
		{Name: "carol_plain", Password: "plain-pw", Auth: pgtest.AuthPassword},
		{Name: "dave_super", Password: "super-pw", Superuser: true},
	}
	s := pgtest.New(t, pgtest.Options{Users: users})
	super, err := connect(t, s.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		t.Run(u.Name, func(t *testing.T) {
			conn, err := connect(t, s.DSN(u.Name, u.Password, "postgres"))
			if err != nil {
				t.Fatalf("connect as %s: %v", u, err)
			}
			if got := queryString(t, conn, "SELECT current_user"); got != u.Name {
				t.Fatalf("current_user = %q", got)
			}
			isSuper := queryString(t, conn, "SELECT current_setting('is_superuser')")
			if want := map[bool]string{true: "on", false: "off"}[u.Superuser]; isSuper != want {
				t.Errorf("is_superuser = %s, want %s", isSuper, want)
			}

			stored := queryString(t, super, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", u.Name)
			req := authRequest(t, s.Addr(), u.Name)
			switch u.Auth {
			case pgtest.AuthMD5:
				if !strings.HasPrefix(stored, "md5") {
					t.Errorf("md5 user's password stored as %.14s...", stored)
				}
				if _, ok := req.(*pgproto3.AuthenticationMD5Password); !ok {
					t.Errorf("server asked for %T, want MD5", req)
				}
			case pgtest.AuthPassword:
				if _, ok := req.(*pgproto3.AuthenticationCleartextPassword); !ok {
					t.Errorf("server asked for %T, want cleartext", req)
				}
			default:
				if !strings.HasPrefix(stored, "SCRAM-SHA-256$") {
					t.Errorf("scram user's password stored as %.14s...", stored)
				}
				if _, ok := req.(*pgproto3.AuthenticationSASL); !ok {
					t.Errorf("server asked for %T, want SASL", req)
				}
			}

			_, err = connect(t, s.DSN(u.Name, "wrong", "postgres"))
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Errorf("wrong password: got %v, want SQLSTATE 28P01", err)
			}
		})
	}

	// The unix socket enforces the same methods.
	sock := fmt.Sprintf("host=%s port=%d user=bob_md5 password=md5-pw dbname=postgres sslmode=disable", s.SocketDir(), s.Port())
	if _, err := connect(t, sock); err != nil {
		t.Errorf("md5 user over the unix socket: %v", err)
	}
	bad := strings.Replace(sock, "password=md5-pw", "password=nope", 1)
	if _, err := connect(t, bad); err == nil {
		t.Error("wrong password accepted over the unix socket")
	}
}

func TestSSLVerifyFull(t *testing.T) {
	s := pgtest.New(t, pgtest.Options{SSL: true, Users: []pgtest.User{{Name: "tls_user", Password: "pw"}}})
	if s.CertFile() == "" {
		t.Fatal("no certificate file")
	}
	conn, err := connect(t, s.DSN("tls_user", "pw", "postgres")) // verify-full
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, conn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
		t.Fatalf("pg_stat_ssl.ssl = %s", got)
	}
}

func TestSettingsAndDefaults(t *testing.T) {
	s := pgtest.New(t, pgtest.Options{Settings: map[string]string{"work_mem": "7MB", "application_name": "it's"}})
	conn, err := connect(t, s.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for setting, want := range map[string]string{
		"work_mem": "7MB", "fsync": "on", "ssl": "off", "listen_addresses": "127.0.0.1",
		"port": strconv.Itoa(s.Port()),
	} {
		if got := queryString(t, conn, "SELECT current_setting($1)", setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func TestStopLeavesNothingRunning(t *testing.T) {
	ctx := context.Background()
	s, err := pgtest.Start(ctx, t.TempDir(), pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// An open session must not hold the shutdown up.
	conn, err := connect(t, s.DSN(pgtest.Superuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn
	pid := s.PID()
	if !pgtest.GroupAlive(pid) {
		t.Fatal("server's process group is not running")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if pgtest.GroupAlive(pid) {
		t.Fatal("processes of the server's group still run after Stop")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Fatal("port still accepts connections after Stop")
	}
}

func TestShared(t *testing.T) {
	ctx := context.Background()
	s := pgtest.Shared(t)
	if pgtest.Shared(t) != s {
		t.Fatal("Shared started a second server")
	}
	if err := s.AddUser(ctx, pgtest.User{Name: "shared_owner", Password: "pw1", Auth: pgtest.AuthMD5}); err != nil {
		t.Fatal(err)
	}
	// Adding again changes password and method, it does not fail.
	if err := s.AddUser(ctx, pgtest.User{Name: "shared_owner", Password: "pw2"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := authRequest(t, s.Addr(), "shared_owner").(*pgproto3.AuthenticationSASL); !ok {
		t.Error("re-added user does not use SCRAM")
	}
	if err := s.CreateDatabase(ctx, "shared_db", "shared_owner"); err != nil && !strings.Contains(err.Error(), "42P04") {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "shared_db", "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1), (2);"); err != nil {
		t.Fatal(err)
	}
	conn, err := connect(t, s.DSN("shared_owner", "pw2", "shared_db"))
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, conn, "SELECT current_database()"); got != "shared_db" {
		t.Fatalf("database = %s", got)
	}
	if err := s.Exec(ctx, "shared_db", "SELECT * FROM missing_table"); err == nil {
		t.Fatal("Exec did not report the server's error")
	}
}

// TestServerDiesWithItsParent kills (SIGKILL, no cleanup runs) a process
// that started a server and checks the server goes away by itself.
func TestServerDiesWithItsParent(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PGTEST_ORPHAN_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not report its server: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("child said %q", line)
	}
	if !pgtest.GroupAlive(pid) {
		t.Fatal("child's server is not running")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for pgtest.GroupAlive(pid) {
		if time.Now().After(deadline) {
			pgtest.KillGroup(pid)
			t.Fatal("server still running a minute after its parent died")
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

// orphanChild runs in the child process of TestServerDiesWithItsParent: it
// starts a server, prints the postmaster's pid and waits to be killed.
func orphanChild(dir string) {
	s, err := pgtest.Start(context.Background(), dir, pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(s.PID())
	wait := make(chan os.Signal, 1)
	signal.Notify(wait, syscall.SIGTERM) // never sent: the parent uses SIGKILL
	<-wait
}
