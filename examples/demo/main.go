// Command demo is what `make demo` runs: a throwaway PostgreSQL with
// synthetic patients and one upstream role per access level (checked with
// `phigate resource check`), a phigate node in front of it, agents querying
// through it with psql (allowed and masked, denied, a bad token), and then
// the recorded evidence, verified and printed with `phigate replay`.
//
// Everything lives in a temporary directory and every process it starts is
// stopped when it ends, on error, or on Ctrl-C.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/internal/synth"
	"github.com/phigate/phigate/session/identity"
)

func main() {
	phigate := flag.String("phigate", "bin/phigate", "path to the phigate binary (make build)")
	patients := flag.Int("patients", 200, "synthetic patients to load")
	keep := flag.Bool("keep", false, "keep the temporary directory (recordings, logs) after the demo")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *phigate, *patients, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	dir     string
	phigate string
	tokens  map[string]string
	port    int
}

func run(ctx context.Context, phigate string, patients int, keep bool) error {
	phigate, err := filepath.Abs(phigate)
	if err != nil {
		return err
	}
	if _, err := os.Stat(phigate); err != nil {
		return fmt.Errorf("%s not found: run `make build` first", phigate)
	}
	dir, err := os.MkdirTemp("", "phigate-demo-")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Printf("\nkept %s (recordings in phigate-data/recordings, node log in node.log)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	d := &demo{dir: dir, phigate: phigate, tokens: map[string]string{}}

	step("Starting a throwaway PostgreSQL 15 with %d synthetic patients", patients)
	// One upstream role per access level: the database refuses, as a second
	// wall, what the gateway should already have refused.
	passwords := map[string]string{}
	var users []pgtest.User
	for _, role := range upstreamRoles {
		passwords[role] = secret()
		users = append(users, pgtest.User{Name: role, Password: passwords[role], Auth: pgtest.AuthSCRAM})
	}
	pg, err := pgtest.Start(ctx, filepath.Join(dir, "pg"), pgtest.Options{Users: users})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Stop()
	if err := pg.CreateDatabase(ctx, "clinic", "phigate_admin"); err != nil {
		return err
	}
	if err := synth.Load(ctx, pg.DSN("phigate_admin", passwords["phigate_admin"], "clinic"), patients); err != nil {
		return fmt.Errorf("load patients: %w", err)
	}
	if err := pg.Exec(ctx, "clinic", leastPrivilege); err != nil {
		return fmt.Errorf("set up roles: %w", err)
	}
	fmt.Printf("  PostgreSQL on %s; only the gateway knows the passwords of its roles:\n", pg.Addr())
	fmt.Println("    phigate_read  SELECT on the clinic's tables, read-only by default (read grants)")
	fmt.Println("    phigate_write SELECT, INSERT, UPDATE, DELETE (write grants)")
	fmt.Println("    phigate_admin owns the database, its schema and tables (ddl and admin grants)")

	cfgFile, err := d.writeConfig(pg.Addr(), passwords)
	if err != nil {
		return err
	}
	step("Checking what each upstream role can really do")
	fmt.Printf("$ phigate resource check --config %s clinic\n", cfgFile)
	out, err := exec.CommandContext(ctx, phigate, "resource", "check", "--config", cfgFile, "clinic").CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		return fmt.Errorf("resource check: %w", err)
	}

	step("Starting a phigate node")
	node, err := d.startNode(ctx, cfgFile)
	if err != nil {
		return err
	}
	defer node.stop()

	step("Agents query through phigate with psql")
	d.psql("claims-agent reads patients: PHI columns are masked by the hipaa profile", "claims-agent",
		"SELECT id, first_name, last_name, dob, ssn, mrn, phone, city, zip FROM patients ORDER BY id LIMIT 5")
	d.psql("claims-agent's session is phigate_read upstream (its grant allows only reads)", "claims-agent",
		"SELECT current_user")
	d.psql("claims-agent reads visit notes: names, phones and dates inside free text are masked", "claims-agent",
		"SELECT visit_date, clinician, notes FROM encounters ORDER BY id LIMIT 3")
	d.psql("claims-agent computes over masked columns: masking follows the data, each output is masked whole", "claims-agent",
		"SELECT reverse(ssn) AS r, dob + 0 AS d, ARRAY[first_name, phone] AS a, left(notes, 20) AS n FROM patients JOIN encounters ON encounters.patient_id = patients.id ORDER BY encounters.id LIMIT 2")
	d.psql("nightly-etl (masked writes) tries to copy SSNs into visit notes, where masking could not follow them: refused (42501), recorded", "nightly-etl",
		"UPDATE encounters SET notes = (SELECT ssn FROM patients WHERE patients.id = encounters.patient_id) WHERE id = 1")
	d.psql("claims-agent tries to delete: denied by policy (42501), recorded", "claims-agent",
		"DELETE FROM patients WHERE id = 1")
	d.psql("nightly-etl (CI) updates a phone number as phigate_write: allowed, recorded with its text", "nightly-etl",
		"UPDATE patients SET phone = '+1 555 0100' WHERE id = 2 RETURNING id, phone, current_user")
	d.psqlToken("someone presents a stolen-looking token: refused (28P01), recorded", "claims-agent", "phg_not-a-real-token")

	step("An operator rotates nightly-etl's token and reloads the node (SIGHUP): its open session ends at once, recorded; the old token no longer logs in")
	if err := d.revokeLive(ctx, cfgFile, node); err != nil {
		return err
	}

	step("Stopping the node (every session records its end first)")
	if err := node.stop(); err != nil {
		return err
	}

	step("The recorded evidence")
	data := filepath.Join(dir, "phigate-data")
	list := exec.CommandContext(ctx, phigate, "replay", "--data-dir", data, "--list")
	out, err = list.CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		return fmt.Errorf("replay --list: %w", err)
	}
	ids := sessionIDs(data)
	for _, id := range ids {
		fmt.Printf("\n$ phigate replay %s\n", id)
		cmd := exec.CommandContext(ctx, phigate, "replay", "--data-dir", data, id)
		out, err := cmd.CombinedOutput()
		fmt.Print(indent(string(out)))
		if err != nil {
			return fmt.Errorf("replay %s: %w", id, err)
		}
	}

	step("An auditor checks the masking proof of the first session (the unsealing is recorded before anything is shown)")
	key := filepath.Join(data, "keys", "auditor.key")
	fmt.Printf("$ phigate unseal --key %s --auditor auditor-alice --reason \"demo: verify masking\" %s\n", key, ids[0])
	out, err = exec.CommandContext(ctx, phigate, "unseal", "--data-dir", data, "--key", key,
		"--auditor", "auditor-alice", "--reason", "demo: verify masking", ids[0]).CombinedOutput()
	fmt.Print(indent(firstLines(string(out), 12)))
	if err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	fmt.Println("\n$ phigate replay --audit-log --list")
	out, err = exec.CommandContext(ctx, phigate, "replay", "--data-dir", data, "--audit-log", "--list").CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		return fmt.Errorf("replay --audit-log: %w", err)
	}
	step("Done: every command above was recorded, hash-chained and verified before it was shown")
	return nil
}

type nodeProc struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// upstreamRoles are the demo database's roles, one per access level.
var upstreamRoles = []string{"phigate_read", "phigate_write", "phigate_admin"}

// leastPrivilege gives each upstream role what its level needs and no more
// (run as the superuser in database clinic, after the tables exist).
const leastPrivilege = `
REVOKE ALL ON DATABASE clinic FROM PUBLIC;
GRANT CONNECT ON DATABASE clinic TO phigate_read, phigate_write;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO phigate_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO phigate_write;
ALTER DEFAULT PRIVILEGES FOR ROLE phigate_admin IN SCHEMA public GRANT SELECT ON TABLES TO phigate_read;
ALTER DEFAULT PRIVILEGES FOR ROLE phigate_admin IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO phigate_write;
REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) FROM PUBLIC;
ALTER ROLE phigate_read SET default_transaction_read_only = on;
`

// writeConfig writes the node's configuration and the roles' password files.
func (d *demo) writeConfig(pgAddr string, passwords map[string]string) (string, error) {
	pwFiles := map[string]string{}
	for _, role := range upstreamRoles {
		pwFiles[role] = filepath.Join(d.dir, role+".pw")
		if err := os.WriteFile(pwFiles[role], []byte(passwords[role]+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	for _, name := range []string{"claims-agent", "nightly-etl"} {
		d.tokens[name] = "phg_" + secret()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	d.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(demoConfig, filepath.Join(d.dir, "phigate-data"), d.port,
		identity.HashToken(d.tokens["claims-agent"]), identity.HashToken(d.tokens["nightly-etl"]), pgAddr,
		pwFiles["phigate_read"], pwFiles["phigate_write"], pwFiles["phigate_admin"])
	cfgFile := filepath.Join(d.dir, "phigate.yaml")
	return cfgFile, os.WriteFile(cfgFile, []byte(cfg), 0o600)
}

func (d *demo) startNode(ctx context.Context, cfgFile string) (*nodeProc, error) {
	logf, err := os.Create(filepath.Join(d.dir, "node.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(d.phigate, "node", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := pgtest.Spawn(cmd, syscall.SIGTERM); err != nil {
		return nil, err
	}
	n := &nodeProc{cmd: cmd, done: make(chan error, 1), log: logf}
	go func() { n.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.port))
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-n.done:
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("phigate node exited: %v\n%s", err, b)
		case <-ctx.Done():
			n.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, errors.New("phigate node did not start listening in 20s")
		}
	}
	fmt.Printf("  node listening on 127.0.0.1:%d (TLS with a development certificate); config %s\n", d.port, cfgFile)
	return n, nil
}

// revokeLive holds a nightly-etl session open, rotates its token in the
// configuration, sends the node SIGHUP and shows what the open session and
// the old token then get.
func (d *demo) revokeLive(ctx context.Context, cfgFile string, n *nodeProc) error {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=clinic user=nightly-etl sslmode=require password=%s", d.port, d.tokens["nightly-etl"])
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("open a nightly-etl session: %w", err)
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
		return err
	}
	fmt.Printf("  nightly-etl holds a session open (upstream as %s)\n", who)
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		return err
	}
	old := identity.HashToken(d.tokens["nightly-etl"])
	rotated := strings.Replace(string(b), old, identity.HashToken("phg_"+secret()), 1)
	if rotated == string(b) {
		return errors.New("nightly-etl's token is not in the configuration")
	}
	if err := os.WriteFile(cfgFile, []byte(rotated), 0o600); err != nil {
		return err
	}
	fmt.Printf("$ kill -HUP %d   # after writing a new token_sha256 for nightly-etl into %s\n", n.cmd.Process.Pid, filepath.Base(cfgFile))
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		log, _ := os.ReadFile(n.log.Name())
		if strings.Contains(string(log), "state reloaded") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the node did not reload:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = conn.Exec(ctx, "UPDATE patients SET phone = '+1 555 0199' WHERE id = 2")
	if err == nil {
		return errors.New("the revoked session still ran a command")
	}
	fmt.Printf("  the open session's next command gets: %v\n", err)
	d.psqlToken("nightly-etl's old token: refused (28P01)", "nightly-etl", d.tokens["nightly-etl"])
	return nil
}

func (n *nodeProc) stop() error {
	if n.cmd.ProcessState != nil {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.done <- err
		n.log.Close()
		if err != nil && !strings.Contains(err.Error(), "signal") {
			return fmt.Errorf("phigate node: %w", err)
		}
		return nil
	case <-time.After(20 * time.Second):
		pgtest.KillGroup(n.cmd.Process.Pid)
		return errors.New("phigate node did not stop in 20s; killed")
	}
}

func (d *demo) psql(title, identityName, sql string) {
	d.run(title, identityName, d.tokens[identityName], sql)
}

func (d *demo) psqlToken(title, identityName, token string) {
	d.run(title, identityName, token, "SELECT count(*) FROM patients")
}

// run shows one agent command and what psql printed. Errors are part of the
// show (a denied command is the point), so they are printed, not returned.
func (d *demo) run(title, identityName, token, sql string) {
	fmt.Printf("\n-- %s\n$ psql \"host=127.0.0.1 port=%d dbname=clinic user=%s sslmode=require\" -c %q\n", title, d.port, identityName, sql)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=clinic user=%s sslmode=require", d.port, identityName)
	cmd := exec.Command("psql", "-X", dsn, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	out, _ := cmd.CombinedOutput()
	fmt.Print(indent(string(out)))
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

// firstLines keeps the first n lines of s, noting how many were left out.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n... (%d more lines)\n", len(lines)-n)
}

func secret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionIDs(dataDir string) []string {
	files, _ := filepath.Glob(filepath.Join(dataDir, "recordings", "sessions", "*.rec"))
	var ids []string
	for _, f := range files {
		ids = append(ids, strings.TrimSuffix(filepath.Base(f), ".rec"))
	}
	return ids
}

const demoConfig = `# Written by the phigate demo.
node:
  id: demo-node-1
  data_dir: %s
listen:
  postgres: 127.0.0.1:%d
identities:
  tokens:
    - name: claims-agent
      kind: agent
      groups: [agents]
      token_sha256: %s
    - name: nightly-etl
      kind: ci
      groups: [etl]
      token_sha256: %s
resources:
  - name: clinic
    address: %s
    database: clinic
    tls: disable
    roles:                 # sessions log in with the least role that covers their grant
      read:  {user: phigate_read,  password_file: %s}
      write: {user: phigate_write, password_file: %s}
      admin: {user: phigate_admin, password_file: %s}
grants:
  - name: agents-read-clinic
    groups: [agents]
    resources: [clinic]
    allow: [read]
    masking: hipaa
  - name: etl-write-clinic
    groups: [etl]
    resources: [clinic]
    allow: [read, write]
    masking: hipaa
masking:
  profiles:
    hipaa:
      rules:
        - column: patients.ssn
          action: keep-last-4
        - column: patients.mrn
          action: hash
        - column: patients.dob
          action: "null"
        - pattern: "^(first_name|last_name|clinician)$"
          action: redact
        - pattern: "phone"
          action: keep-last-4
        - pattern: "^(email|street|insurance_member_id)$"
          action: redact
        - column: patients.zip
          action: keep-last-4
      # Content detection: columns without a rule are classified by name and
      # values, and free text (visit notes) is scanned for Safe Harbor PHI.
      detect: {}
`
