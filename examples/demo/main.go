// Command demo is what `make demo` runs: a throwaway PostgreSQL with
// synthetic patients and one upstream role per access level (checked with
// `phigate resource check`), a cluster of three phigate nodes on loopback in
// front of it (node 1 bootstraps the cluster and its policy, nodes 2 and 3
// join with a join token), agents querying through different nodes with psql
// (allowed and masked, denied, a bad token), a policy applied on node 1 and
// enforced on node 3, a token revoked while its session is open on node 2,
// a cancel sent to the wrong node, and then the recorded evidence of
// several nodes, verified and printed with `phigate replay`.
//
// Everything lives in a temporary directory and every process it starts is
// stopped when it ends, on error, or on Ctrl-C.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/freeport"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/internal/synth"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

func main() {
	phigate := flag.String("phigate", "bin/phigate", "path to the phigate binary (make build)")
	patients := flag.Int("patients", 200, "synthetic patients to load")
	keep := flag.Bool("keep", false, "keep the temporary directory (configurations, recordings, logs) after the demo")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *phigate, *patients, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	dir       string
	phigate   string
	tokens    map[string]string // identity name -> token
	pwFiles   map[string]string // upstream role -> password file
	pgAddr    string
	adminFile string // the admin identity's token, for the admin API
	nodes     []*node
}

// node is one phigate node of the demo cluster: its ports, files and process.
type node struct {
	num                                  int
	name, dataDir, cfgFile               string
	pg, api, peer, client, gossip, nodes int // loopback ports
	proc                                 *nodeProc
}

func (n *node) apiURL() string     { return fmt.Sprintf("https://127.0.0.1:%d", n.api) }
func (n *node) cacert() string     { return filepath.Join(n.dataDir, "tls", "dev-cert.pem") }
func (n *node) recordings() string { return filepath.Join(n.dataDir, "recordings", "sessions") }

// store is the directory every node ships its recordings to (an S3 bucket
// with object lock in production).
func (d *demo) store() string { return filepath.Join(d.dir, "store") }

func run(ctx context.Context, phigate string, patients int, keep bool) error {
	began := time.Now()
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
		defer fmt.Printf("\nkept %s (each node's configuration nN.yaml, log nN.log, data in nN/: recordings/)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	d := &demo{dir: dir, phigate: phigate, tokens: map[string]string{}, pwFiles: map[string]string{}}

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
	// The nodes stop first (on error and Ctrl-C too), then PostgreSQL, then
	// the directory goes.
	defer func() {
		if err := d.stopNodes(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stopping the nodes:", err)
		}
	}()
	d.pgAddr = pg.Addr()
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

	if err := d.writeConfigs(passwords); err != nil {
		return err
	}
	n1, n2, n3 := d.nodes[0], d.nodes[1], d.nodes[2]
	step("Checking what each upstream role can really do")
	fmt.Printf("$ phigate resource check --config %s clinic\n", n1.cfgFile)
	if err := d.show(ctx, "resource", "check", "--config", n1.cfgFile, "clinic"); err != nil {
		return fmt.Errorf("resource check: %w", err)
	}

	step("Starting node 1: it bootstraps a new cluster, whose first policy revision is its configuration's policy sections")
	fmt.Println("  (identities, resources, grants, masking; and admins: who may change the cluster through the API)")
	fmt.Printf("$ phigate node --config %s\n", n1.cfgFile)
	if err := d.startNode(ctx, n1, ""); err != nil {
		return err
	}

	step("Nodes 2 and 3 join with a short-lived join token an admin asks node 1 for")
	fmt.Println("  Their configurations have no policy sections (a joining node's would be ignored): they take the")
	fmt.Println("  policy, the cluster key (which seals upstream passwords) and the pseudonym key (masked values")
	fmt.Println("  hash alike on every node) from the cluster.")
	fmt.Printf("$ T=$(phigate cluster join-token %s)\n", d.adminFlagsShown(n1))
	out, err := d.output(ctx, d.admin(n1, "cluster", "join-token", "--ttl", "10m")...)
	if err != nil {
		return fmt.Errorf("join-token: %w\n%s", err, out)
	}
	joinToken := strings.TrimSpace(out)
	fmt.Printf("  (a token valid for 10 minutes: %s...)\n", joinToken[:min(12, len(joinToken))])
	for _, n := range []*node{n2, n3} {
		fmt.Printf("$ PHIGATE_JOIN_TOKEN=\"$T\" phigate node --config %s --join 127.0.0.1:%d\n", n.cfgFile, n1.nodes)
		if err := d.startNode(ctx, n, joinToken); err != nil {
			return err
		}
	}
	fmt.Println("\n-- any node answers for the whole cluster; here node 3:")
	fmt.Printf("$ phigate cluster status %s\n", d.adminFlagsShown(n3))
	if err := d.show(ctx, d.admin(n3, "cluster", "status")...); err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}

	step("Agents query through different nodes with psql")
	mark := d.mark(n1)
	d.psql(n1, "claims-agent reads patients through node 1: PHI columns are masked by the hipaa profile", "claims-agent",
		"SELECT id, first_name, last_name, dob, ssn, mrn, phone, city, zip FROM patients ORDER BY id LIMIT 5")
	maskedRead := d.since(n1, mark)
	d.psql(n2, "claims-agent through node 2: the session is phigate_read upstream (its grant allows only reads)", "claims-agent",
		"SELECT current_user")
	d.psql(n3, "claims-agent reads visit notes through node 3: names, phones and dates inside free text are masked", "claims-agent",
		"SELECT visit_date, clinician, notes FROM encounters ORDER BY id LIMIT 3")
	d.psql(n1, "claims-agent computes over masked columns: masking follows the data, each output is masked whole", "claims-agent",
		"SELECT reverse(ssn) AS r, dob + 0 AS d, ARRAY[first_name, phone] AS a, left(notes, 20) AS n FROM patients JOIN encounters ON encounters.patient_id = patients.id ORDER BY encounters.id LIMIT 2")
	d.psql(n2, "nightly-etl (masked writes) tries to copy SSNs into visit notes, where masking could not follow them: refused (42501), recorded", "nightly-etl",
		"UPDATE encounters SET notes = (SELECT ssn FROM patients WHERE patients.id = encounters.patient_id) WHERE id = 1")
	d.psql(n3, "claims-agent tries to delete: denied by policy (42501), recorded", "claims-agent",
		"DELETE FROM patients WHERE id = 1")
	d.psql(n2, "nightly-etl (CI) updates a phone number as phigate_write: allowed, recorded with its text", "nightly-etl",
		"UPDATE patients SET phone = '+1 555 0100' WHERE id = 2 RETURNING id, phone, current_user")
	d.psqlToken(n1, "someone presents a stolen-looking token: refused (28P01), recorded", "claims-agent", "phg_not-a-real-token")

	step("An admin applies a policy change on node 1; node 3 enforces it within a second")
	d.psql(n3, "research-agent has a token but no grant yet: refused on node 3", "research-agent",
		"SELECT id, mrn, dob, zip, city FROM patients ORDER BY id LIMIT 3")
	rev2 := filepath.Join(dir, "policy-r2.yaml")
	if err := os.WriteFile(rev2, []byte(d.policy(policyR2)), 0o600); err != nil {
		return err
	}
	fmt.Printf("\n-- %s is the bootstrap policy plus one grant:\n", filepath.Base(rev2))
	fmt.Print(indent(researchGrant))
	if err := d.apply(ctx, n1, rev2); err != nil {
		return err
	}
	if err := d.waitRevision(ctx, n3, 2); err != nil {
		return err
	}
	mark3 := d.mark(n3)
	d.psql(n3, "the same query on node 3, now allowed (read only, masked; mrn hashes as on node 1: one pseudonym key in the cluster)", "research-agent",
		"SELECT id, mrn, dob, zip, city FROM patients ORDER BY id LIMIT 3")
	researchRead := d.since(n3, mark3)
	fmt.Println("\n-- every revision is kept, with who applied it and when:")
	fmt.Printf("$ phigate policy history %s\n", d.adminFlagsShown(n2))
	if err := d.show(ctx, d.admin(n2, "policy", "history")...); err != nil {
		return fmt.Errorf("policy history: %w", err)
	}
	fmt.Printf("\n$ phigate policy diff 1 2 %s\n", d.adminFlagsShown(n2))
	if err := d.show(ctx, d.admin(n2, "policy", "diff", "1", "2")...); err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}

	step("A cancel sent to the wrong node still cancels")
	fmt.Println("  The cancel key phigate hands a client names the node holding its session; a node given a")
	fmt.Println("  key of another node's forwards it over the node-to-node API (as a load balancer would misroute it).")
	mark1 := d.mark(n1)
	if err := d.cancelElsewhere(ctx, pg, n1, n2); err != nil {
		return err
	}
	cancelled := d.since(n1, mark1)

	step("An admin revokes nightly-etl's token while its session is open on node 2")
	mark2 := d.mark(n2)
	if err := d.revokeLive(ctx, n1, n2, n3); err != nil {
		return err
	}
	revoked := d.since(n2, mark2)
	fmt.Println("\n-- the cluster knows every node's sessions:")
	fmt.Printf("$ phigate cluster sessions --identity nightly-etl %s\n", d.adminFlagsShown(n1))
	if err := d.show(ctx, d.admin(n1, "cluster", "sessions", "--identity", "nightly-etl")...); err != nil {
		return fmt.Errorf("cluster sessions: %w", err)
	}

	step("Waiting until every node has shipped its recordings (phigate_ship_backlog_bytes = 0)")
	if err := d.waitShipped(ctx); err != nil {
		return err
	}
	keys, err := d.publishedKeys(ctx, n1)
	if err != nil {
		return err
	}

	step("Stopping the nodes (SIGTERM: each drains, every session records its end first)")
	if err := d.stopNodes(); err != nil {
		return err
	}

	step("The recorded evidence: sealed into signed, encrypted chunks and shipped to the cluster's store")
	fmt.Println("  Each node seals its sessions every 500 ms (store.chunk_interval), anchors each chunk in the cluster")
	fmt.Println("  state, ships chunks, manifests, an index and hourly digests to the store, then removes its spool copy.")
	fmt.Printf("\n$ curl --cacert %s %s/v1/keys > %s   # the signing keys the cluster published\n", n1.cacert(), n1.apiURL(), keys)
	fmt.Printf("$ phigate audit verify --store %s --keys %s\n", d.store(), keys)
	if err := d.show(ctx, "audit", "verify", "--store", d.store(), "--keys", keys); err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	fmt.Printf("\n$ phigate replay --store %s --list\n", d.store())
	if err := d.show(ctx, "replay", "--store", d.store(), "--list"); err != nil {
		return fmt.Errorf("replay --list: %w", err)
	}
	auditorKey := filepath.Join(n1.dataDir, "keys", "auditor.key")
	for _, r := range []struct {
		n     *node
		what  string
		ids   []string
		count int
	}{
		{n1, "claims-agent's masked read on node 1", maskedRead, 1},
		{n3, "research-agent's first allowed read on node 3, under revision 2", researchRead, 1},
		{n1, "the query cancelled through node 2, recorded on node 1", cancelled, 1},
		{n2, "nightly-etl's session on node 2, ended by the revocation", revoked, 1},
	} {
		if len(r.ids) != r.count {
			return fmt.Errorf("%s: want %d recording, found %v", r.what, r.count, r.ids)
		}
		fmt.Printf("\n-- %s (decrypted with the auditors' key; the decryption is recorded first)\n$ phigate replay --store %s --auditor-key %s --data-dir %s --auditor auditor-alice --reason demo %s\n",
			r.what, d.store(), auditorKey, n1.dataDir, r.ids[0])
		if err := d.show(ctx, "replay", "--store", d.store(), "--auditor-key", auditorKey, "--data-dir", n1.dataDir,
			"--auditor", "auditor-alice", "--reason", "demo", r.ids[0]); err != nil {
			return fmt.Errorf("replay %s: %w", r.ids[0], err)
		}
	}

	step("An auditor checks the masking proof of the masked read (the unsealing is recorded before anything is shown)")
	key := filepath.Join(n1.dataDir, "keys", "auditor.key")
	fmt.Printf("$ phigate unseal --config %s --key %s --auditor auditor-alice --reason \"demo: verify masking\" %s\n", n1.cfgFile, key, maskedRead[0])
	out, err = d.output(ctx, "unseal", "--config", n1.cfgFile, "--key", key,
		"--auditor", "auditor-alice", "--reason", "demo: verify masking", maskedRead[0])
	fmt.Print(indent(firstLines(out, 12)))
	if err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	fmt.Printf("\n$ phigate replay --data-dir %s --audit-log --list\n", n1.dataDir)
	if err := d.show(ctx, "replay", "--data-dir", n1.dataDir, "--audit-log", "--list"); err != nil {
		return fmt.Errorf("replay --audit-log: %w", err)
	}
	step("Done in %s: every command above was recorded, hash-chained and verified before it was shown", time.Since(began).Round(time.Second))
	return nil
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

// writeConfigs writes the roles' password files, the tokens, and each
// node's configuration, on free loopback ports.
func (d *demo) writeConfigs(passwords map[string]string) error {
	for _, role := range upstreamRoles {
		d.pwFiles[role] = filepath.Join(d.dir, role+".pw")
		if err := os.WriteFile(d.pwFiles[role], []byte(passwords[role]+"\n"), 0o600); err != nil {
			return err
		}
	}
	for _, name := range []string{"ops-admin", "claims-agent", "nightly-etl", "research-agent"} {
		d.tokens[name] = "phg_" + secret()
	}
	d.adminFile = filepath.Join(d.dir, "admin.token")
	if err := os.WriteFile(d.adminFile, []byte(d.tokens["ops-admin"]+"\n"), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(3 * 6)
	if err != nil {
		return err
	}
	for i := range 3 {
		p := ports[i*6:]
		n := &node{num: i + 1, name: fmt.Sprintf("demo-node-%d", i+1), dataDir: filepath.Join(d.dir, fmt.Sprintf("n%d", i+1)),
			cfgFile: filepath.Join(d.dir, fmt.Sprintf("n%d.yaml", i+1)),
			pg:      p[0], api: p[1], peer: p[2], client: p[3], gossip: p[4], nodes: p[5]}
		cfg := fmt.Sprintf(nodeConfig, n.name, n.dataDir, n.pg, n.api, n.peer, n.client, n.gossip, n.nodes, d.store())
		if i == 0 {
			cfg += "\n# The bootstrap policy: the cluster's revision 1 (later: phigate policy apply).\n" + d.policy(policyR1)
		}
		if err := os.WriteFile(n.cfgFile, []byte(cfg), 0o600); err != nil {
			return err
		}
		d.nodes = append(d.nodes, n)
	}
	return nil
}

// freePorts finds count distinct loopback ports reserved for the demo.
func freePorts(count int) ([]int, error) { return freeport.Ports(count) }

const nodeConfig = `# Written by the phigate demo.
node:
  id: %s
  data_dir: %s
listen:
  postgres: 127.0.0.1:%d
  api: 127.0.0.1:%d        # HTTPS: health, metrics and the admin API
limits:
  drain_timeout: 5s
cluster:
  peer: 127.0.0.1:%d       # etcd peers (mutual TLS)
  client: 127.0.0.1:%d     # etcd clients (mutual TLS)
  gossip: 127.0.0.1:%d     # membership gossip (encrypted)
  api: 127.0.0.1:%d        # node to node: joins, forwarded cancels
  lease: 5s
store:                     # where recordings are shipped: one store for the cluster
  location: %s
  chunk_interval: 500ms
`

// The policy revisions the demo applies.
const (
	policyR1 = iota + 1 // the bootstrap policy
	policyR2            // plus a grant for research-agent
	policyR3            // without nightly-etl's token
)

const researchGrant = `- name: research-read-clinic
  groups: [research]
  resources: [clinic]
  allow: [read]
  masking: hipaa
`

// policy is the policy document of revision rev, as the demo writes it.
func (d *demo) policy(rev int) string {
	var b strings.Builder
	b.WriteString("identities:\n  tokens:\n")
	token := func(name, kind, group string) {
		fmt.Fprintf(&b, "    - name: %s\n      kind: %s\n      groups: [%s]\n      token_sha256: %s\n", name, kind, group, identity.HashToken(d.tokens[name]))
	}
	token("ops-admin", "human", "admins")
	token("claims-agent", "agent", "agents")
	if rev < policyR3 {
		token("nightly-etl", "ci", "etl")
	}
	token("research-agent", "agent", "research")
	fmt.Fprintf(&b, policyResources, d.pgAddr, d.pwFiles["phigate_read"], d.pwFiles["phigate_write"], d.pwFiles["phigate_admin"])
	b.WriteString(policyGrants)
	if rev >= policyR2 {
		b.WriteString(indentBy(researchGrant, "  "))
	}
	b.WriteString(policyMasking)
	if rev > policyR1 {
		// The bootstrap policy took node 1's development auditor key; a
		// file applied later names it.
		fmt.Fprintf(&b, "auditors:\n  public_key_file: %s\n", filepath.Join(d.nodes[0].dataDir, "keys", "auditor.pub"))
	}
	b.WriteString("admins:\n  groups: [admins]     # may apply policies, issue join tokens, remove nodes\n")
	return b.String()
}

const policyResources = `resources:
  - name: clinic
    address: %s
    database: clinic
    tls: disable
    roles:                 # sessions log in with the least role that covers their grant
      read:  {user: phigate_read,  password_file: %s}
      write: {user: phigate_write, password_file: %s}
      admin: {user: phigate_admin, password_file: %s}
`

const policyGrants = `grants:
  - name: agents-read-clinic
    groups: [agents]
    resources: [clinic]
    allow: [read]
    masking: hipaa
    functions: [pg_sleep]  # for the demo's long query
  - name: etl-write-clinic
    groups: [etl]
    resources: [clinic]
    allow: [read, write]
    masking: hipaa
`

const policyMasking = `masking:
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

type nodeProc struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

// startNode starts n (joining with joinToken, if any) and waits until its
// /readyz says ready: listening, in the cluster's quorum, enforcing a policy.
func (d *demo) startNode(ctx context.Context, n *node, joinToken string) error {
	logf, err := os.Create(filepath.Join(d.dir, fmt.Sprintf("n%d.log", n.num)))
	if err != nil {
		return err
	}
	args := []string{"node", "--config", n.cfgFile}
	if joinToken != "" {
		args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", d.nodes[0].nodes))
	}
	cmd := exec.Command(d.phigate, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if joinToken != "" {
		// In the environment, not in the arguments other users can see.
		cmd.Env = append(os.Environ(), "PHIGATE_JOIN_TOKEN="+joinToken)
	}
	if err := pgtest.Spawn(cmd, syscall.SIGTERM); err != nil {
		logf.Close()
		return err
	}
	n.proc = &nodeProc{cmd: cmd, done: make(chan error, 1), log: logf}
	go func() { n.proc.done <- cmd.Wait() }()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		if n.ready() {
			break
		}
		select {
		case err := <-n.proc.done:
			n.proc.done <- err
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("phigate node %d exited: %v\n%s", n.num, err, b)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("phigate node %d not ready in 30s:\n%s", n.num, b)
		}
	}
	fmt.Printf("  node %d (%s) ready in %s: PostgreSQL on 127.0.0.1:%d (TLS with a development certificate), API on %s\n",
		n.num, n.name, time.Since(start).Round(100*time.Millisecond), n.pg, n.apiURL())
	return nil
}

// ready asks n's /readyz, trusting the development certificate it created.
func (n *node) ready() bool {
	pem, err := os.ReadFile(n.cacert())
	if err != nil {
		return false
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return false
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(n.apiURL() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (n *nodeProc) stop() error {
	if n == nil {
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
	case <-time.After(30 * time.Second):
		pgtest.KillGroup(n.cmd.Process.Pid)
		return errors.New("phigate node did not stop in 30s; killed")
	}
}

// stopNodes stops every node started, all at once (each drains and
// revokes its lease in the cluster while the others still hold the
// quorum); it may be called again.
func (d *demo) stopNodes() error {
	errs := make([]error, len(d.nodes))
	var wg sync.WaitGroup
	for i, n := range d.nodes {
		if n.proc == nil {
			continue
		}
		wg.Go(func() {
			start := time.Now()
			if err := n.proc.stop(); err != nil {
				errs[i] = fmt.Errorf("node %d: %w", n.num, err)
				return
			}
			fmt.Printf("  node %d stopped (%s)\n", n.num, time.Since(start).Round(100*time.Millisecond))
		})
	}
	wg.Wait()
	for _, n := range d.nodes {
		n.proc = nil
	}
	return errors.Join(errs...)
}

// admin is the argument list of an admin command against n's API.
func (d *demo) admin(n *node, args ...string) []string {
	return append(args, "--api", n.apiURL(), "--token-file", d.adminFile, "--cacert", n.cacert())
}

// adminFlagsShown is how the admin flags are printed.
func (d *demo) adminFlagsShown(n *node) string {
	return fmt.Sprintf("--api %s --token-file admin.token --cacert n%d/tls/dev-cert.pem", n.apiURL(), n.num)
}

// apply applies a policy file through n's API, showing the command.
func (d *demo) apply(ctx context.Context, n *node, file string) error {
	fmt.Printf("$ phigate policy apply -f %s %s\n", filepath.Base(file), d.adminFlagsShown(n))
	if err := d.show(ctx, d.admin(n, "policy", "apply", "-f", file)...); err != nil {
		return fmt.Errorf("policy apply: %w", err)
	}
	return nil
}

// waitRevision waits until n enforces policy revision rev (or a later one).
func (d *demo) waitRevision(ctx context.Context, n *node, rev uint64) error {
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for {
		out, err := d.output(ctx, d.admin(n, "cluster", "status", "--json")...)
		var st struct {
			PolicyRevision uint64 `json:"policy_revision"`
		}
		if err == nil && json.Unmarshal([]byte(out), &st) == nil && st.PolicyRevision >= rev {
			fmt.Printf("  node %d enforces revision %d (%s after the apply returned)\n", n.num, st.PolicyRevision, time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %d does not enforce policy revision %d after 15s: %v %s", n.num, rev, err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cancelElsewhere starts a long query through node via, then sends its
// CancelRequest to node other, and shows how soon the query ended.
func (d *demo) cancelElsewhere(ctx context.Context, pg *pgtest.Server, via, other *node) error {
	conn, err := pgx.Connect(ctx, d.dsn(via, "claims-agent", d.tokens["claims-agent"]))
	if err != nil {
		return fmt.Errorf("open a claims-agent session: %w", err)
	}
	defer conn.Close(ctx)
	fmt.Printf("\n-- claims-agent runs a long query through node %d (pgx)\n  SELECT pg_sleep(30)\n", via.num)
	type result struct {
		err  error
		took time.Duration
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		res <- result{err, time.Since(start)}
	}()
	// Wait until the query runs upstream (the superuser sees it), so the
	// cancel has something to cancel.
	deadline := time.Now().Add(10 * time.Second)
	for pg.Exec(ctx, "clinic", `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep') THEN RAISE EXCEPTION 'not yet'; END IF; END $$`) != nil {
		if time.Now().After(deadline) {
			return errors.New("the query did not start upstream in 10s")
		}
		select {
		case r := <-res:
			return fmt.Errorf("the long query ended early: %v", r.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	pid, key := conn.PgConn().PID(), conn.PgConn().SecretKey()
	fmt.Printf("\n-- its CancelRequest (pid %d and the secret key node %d gave it) is sent to node %d's PostgreSQL port\n", pid, via.num, other.num)
	fmt.Printf("  CancelRequest{length 16, code 80877102, pid %d, secret ****} -> 127.0.0.1:%d\n", pid, other.pg)
	if len(key) != 4 {
		return fmt.Errorf("secret key of %d bytes: want 4", len(key))
	}
	sent := time.Now()
	if err := sendCancel(ctx, fmt.Sprintf("127.0.0.1:%d", other.pg), pid, key); err != nil {
		return err
	}
	select {
	case r := <-res:
		if r.err == nil {
			return errors.New("the long query was not cancelled")
		}
		fmt.Printf("  the query ended %s after the cancel was sent (%s after it began): %v\n",
			time.Since(sent).Round(time.Millisecond), r.took.Round(time.Millisecond), r.err)
	case <-time.After(10 * time.Second):
		return errors.New("the long query was not cancelled within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// sendCancel writes a CancelRequest on a connection of its own, as libpq
// does, and waits for the server to close it.
func sendCancel(ctx context.Context, addr string, pid uint32, secret []byte) error {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	defer c.Close()
	msg := binary.BigEndian.AppendUint32(nil, 16)
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, secret...)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, c) // the server answers nothing and closes
	return nil
}

// revokeLive holds a nightly-etl session open on node holder, applies
// through node via a policy without nightly-etl's token, and shows what the
// open session and the old token (on node other) then get.
func (d *demo) revokeLive(ctx context.Context, via, holder, other *node) error {
	conn, err := pgx.Connect(ctx, d.dsn(holder, "nightly-etl", d.tokens["nightly-etl"]))
	if err != nil {
		return fmt.Errorf("open a nightly-etl session: %w", err)
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
		return err
	}
	fmt.Printf("  nightly-etl holds a session open on node %d (pgx; upstream as %s)\n", holder.num, who)
	rev3 := filepath.Join(d.dir, "policy-r3.yaml")
	if err := os.WriteFile(rev3, []byte(d.policy(policyR3)), 0o600); err != nil {
		return err
	}
	fmt.Printf("\n-- %s is revision 2 without nightly-etl's identity (its token)\n", filepath.Base(rev3))
	if err := d.apply(ctx, via, rev3); err != nil {
		return err
	}
	if err := d.waitRevision(ctx, holder, 3); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "UPDATE patients SET phone = '+1 555 0199' WHERE id = 2")
	if err == nil {
		return errors.New("the revoked session still ran a command")
	}
	fmt.Printf("  the open session's next command on node %d gets: %v\n", holder.num, err)
	d.psqlToken(other, fmt.Sprintf("nightly-etl's old token on node %d: refused (28P01)", other.num), "nightly-etl", d.tokens["nightly-etl"])
	return nil
}

func (d *demo) dsn(n *node, user, token string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d dbname=clinic user=%s sslmode=require password=%s connect_timeout=10", n.pg, user, token)
}

// publishedKeys saves the signing keys the cluster published (GET
// /v1/keys on a node), which audit verify checks signatures with.
func (d *demo) publishedKeys(ctx context.Context, n *node) (string, error) {
	body, err := d.get(ctx, n, "/v1/keys")
	if err != nil {
		return "", fmt.Errorf("published keys: %w", err)
	}
	path := filepath.Join(d.dir, "keys.json")
	return path, os.WriteFile(path, []byte(body), 0o600)
}

// waitShipped waits until no node has recordings waiting for the store.
func (d *demo) waitShipped(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for _, n := range d.nodes {
		for {
			body, err := d.get(ctx, n, "/metrics")
			if err == nil && strings.Contains(body, "\nphigate_ship_backlog_bytes 0\n") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("node %d did not ship its recordings within a minute (%v)", n.num, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// get fetches a path of n's API.
func (d *demo) get(ctx context.Context, n *node, path string) (string, error) {
	pem, err := os.ReadFile(n.cacert())
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.apiURL()+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(b), nil
}

// mark is the set of sessions n has recorded so far (see since).
func (d *demo) mark(n *node) map[string]bool {
	m := map[string]bool{}
	for _, id := range d.sessionIDs(n) {
		m[id] = true
	}
	return m
}

// since lists the sessions n recorded after mark.
func (d *demo) since(n *node, mark map[string]bool) []string {
	var ids []string
	for _, id := range d.sessionIDs(n) {
		if !mark[id] {
			ids = append(ids, id)
		}
	}
	return ids
}

// sessionIDs lists the sessions node n recorded: those still in its
// spool, and those shipped to the store, whose first chunk it sealed.
func (d *demo) sessionIDs(n *node) []string {
	seen := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(n.recordings(), "*.rec"))
	for _, f := range files {
		seen[strings.TrimSuffix(filepath.Base(f), ".rec")] = true
	}
	if store, err := blob.NewFS(d.store()); err == nil {
		objs, _ := store.List(context.Background(), archive.SessionsPrefix)
		for _, o := range objs {
			id, seq, kind, ok := archive.ParseSessionObject(o.Key)
			if !ok || seq != 0 || kind != "chunk" || seen[id] {
				continue
			}
			b, err := store.Get(context.Background(), o.Key)
			if err != nil {
				continue
			}
			if c, err := chunk.Decode(b); err == nil && c.Header.Node == n.name {
				seen[id] = true
			}
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (d *demo) psql(n *node, title, identityName, sql string) {
	d.runPsql(n, title, identityName, d.tokens[identityName], sql)
}

func (d *demo) psqlToken(n *node, title, identityName, token string) {
	d.runPsql(n, title, identityName, token, "SELECT count(*) FROM patients")
}

// runPsql shows one agent command and what psql printed. Errors are part of
// the show (a denied command is the point), so they are printed, not
// returned.
func (d *demo) runPsql(n *node, title, identityName, token, sql string) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=clinic user=%s sslmode=require", n.pg, identityName)
	fmt.Printf("\n-- %s\n$ psql \"%s\" -c %q\n", title, dsn, sql)
	cmd := exec.Command("psql", "-X", dsn, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	out, _ := cmd.CombinedOutput()
	fmt.Print(indent(string(out)))
}

// show runs a phigate command and prints its output, indented.
func (d *demo) show(ctx context.Context, args ...string) error {
	out, err := d.output(ctx, args...)
	fmt.Print(indent(out))
	return err
}

func (d *demo) output(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, d.phigate, args...).CombinedOutput()
	return string(out), err
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func indent(s string) string {
	return indentBy(s, "  ")
}

func indentBy(s, prefix string) string {
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix) + "\n"
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
