package pgwire_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/record"
)

// This file is the harness of the attack table (attack_test.go): an arena per
// case, with its own gateway and database, a superuser connection to that
// database to observe effects, a bystander session of another identity, and
// capture of every byte the attacker's clients receive. The invariants that
// every case gets are here too; they judge effects, never error messages.

// harnessLock is the advisory lock key the harness itself takes (to hold a
// victim's query); the "no advisory lock held" invariant ignores it.
const harnessLock = 424242

// notifyChannel is the channel the bystander listens on.
const notifyChannel = "phigate_attack"

// existingLO is a large object owned by the upstream role that every arena
// starts with, so that unlinking or overwriting one shows.
const existingLO = 4242001

// phiNeedle is a raw fixture value that the hipaa profile masks for
// reader-bot, in one of the forms it could take on the wire.
type phiNeedle struct {
	what string
	raw  []byte
}

// fixturePHI lists every raw PHI value of clinicSchema that reader-bot must
// never receive, in text forms (several DateStyles) and binary forms.
var fixturePHI = func() []phiNeedle {
	var out []phiNeedle
	add := func(what string, vals ...string) {
		for _, v := range vals {
			out = append(out, phiNeedle{what, []byte(v)})
		}
	}
	add("SSN", "123-45-6789", "987-65-4321")
	add("name", "Alice Moreno", "Bob Tran", "Cara Singh", "Dee Park")
	add("dob", "1961-03-14", "1975-11-02", "03-14-1961", "14.03.1961", "03/14/1961", "14/03/1961",
		"11-02-1975", "02.11.1975", "11/02/1975", "02/11/1975")
	add("phone", "+1 415 555 0134", "+1 212 555 0188")
	add("MRN", "4400123", "4400456")
	add("note", "Maria Lopez", "415-555-0198", "3/14/2023")
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []time.Time{time.Date(1961, 3, 14, 0, 0, 0, 0, time.UTC), time.Date(1975, 11, 2, 0, 0, 0, 0, time.UTC)} {
		days := int32(d.Sub(epoch).Hours() / 24)
		out = append(out, phiNeedle{"dob (binary date)", binary.BigEndian.AppendUint32(nil, uint32(days))})
	}
	for _, m := range []int64{4400123, 4400456} {
		out = append(out, phiNeedle{"MRN (binary int8)", binary.BigEndian.AppendUint64(nil, uint64(m))})
	}
	return out
}()

// phiSelect selects every PHI column of the fixture.
const phiSelect = "SELECT id, name, ssn, dob, phone, mrn, notes FROM patients ORDER BY id"

// arena is one attack case's world.
type arena struct {
	t   *testing.T
	g   *gateway
	su  *pgx.Conn // superuser, same database, statements not logged
	db  string
	ctx context.Context

	role     string
	logStart int64
	before   map[string]string
	wallOK   bool // the case tolerates the read-only upstream stopping a write (see attackCase.readOnlyWallOK)
	dbOID    uint32

	mu      sync.Mutex
	seen    bytes.Buffer // plaintext bytes every attacker client received
	closers []func()
	readers []*pgx.Conn // attacker pgx sessions, checked to still be read-only

	bystander   *pgx.Conn
	notes       chan *pgconn.Notification
	blockedDone chan error // the bystander's blocked query, when holdVictim was used
	lockHolder  *pgx.Conn

	copyMarkers [][]byte // COPY data the attacker sent: must be in the recording
	evs         map[string][]*record.Event
}

// arenaDB is a fixture database and its owner role. A case that passed
// without a setup of its own leaves it as it found it (the fingerprint says
// so), and a later case may use it again, saving a CREATE DATABASE.
type arenaDB struct{ db, role string }

// newArena starts a gateway in front of a clinic database of the case's
// own (reuse, or a fresh one), with the superuser connection that observes
// it.
func newArena(t *testing.T, opts gatewayOptions, reuse *arenaDB) *arena {
	t.Helper()
	opts.cleartextLoopback = true // plaintext on loopback, so the harness can read what the agent got
	// Cases run in parallel: each has its own upstream role (startGateway
	// resets the role's password, which would cut off another case's
	// gateway), database and server log lines (prefixed with the database).
	opts.upstreamRole = "atk_" + randHex(5)
	// A session that never ends (a stuck loop) must fail its case, not
	// hang the suite.
	opts.stopTimeout = 20 * time.Second
	if reuse != nil {
		opts.upstreamRole, opts.database = reuse.role, reuse.db
	}
	g := startGateway(t, opts)
	ctx := context.Background()
	a := &arena{t: t, g: g, db: g.db, ctx: ctx, notes: make(chan *pgconn.Notification, 64)}
	cfg, err := pgx.ParseConfig(g.pg.DSN(pgtest.Superuser, "", g.db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["log_statement"] = "none"
	cfg.RuntimeParams["application_name"] = "attack-harness"
	if a.su, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cleanup() })
	if err := a.su.QueryRow(ctx, "SELECT datdba::regrole::text, oid FROM pg_database WHERE datname = current_database()").Scan(&a.role, &a.dbOID); err != nil {
		t.Fatal(err)
	}
	// The server logs every statement it runs for this database (the
	// cleanup of a previous case that used it reset its settings).
	a.suExec(fmt.Sprintf(`ALTER DATABASE %s SET log_statement = 'all'`, pgx.Identifier{g.db}.Sanitize()))
	if reuse != nil {
		return a
	}
	a.suExec(fmt.Sprintf(`SET ROLE %s;
		INSERT INTO audit_log (msg) VALUES ('first'), ('second');
		SELECT lo_from_bytea(%d, 'keep me');
		RESET ROLE`, pgx.Identifier{a.role}.Sanitize(), existingLO))
	return a
}

func (a *arena) suExec(sql string) {
	a.t.Helper()
	if _, err := a.su.Exec(a.ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		a.t.Fatalf("harness: %v", err)
	}
}

// begin marks the start of the attack: baseline, log position, bystander.
func (a *arena) begin() {
	a.t.Helper()
	a.before = a.fingerprint()
	if st, err := os.Stat(a.g.pg.LogPath()); err == nil {
		a.logStart = st.Size()
	}
	a.openBystander()
}

func (a *arena) cleanup() {
	a.mu.Lock()
	closers := a.closers
	a.closers = nil
	a.mu.Unlock()
	for _, c := range slices.Backward(closers) {
		c()
	}
	if a.su == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The database and its role may serve a later case: undo settings an
	// attack may have made, whatever the verdict.
	_, _ = a.su.Exec(ctx, fmt.Sprintf("ALTER ROLE %s RESET ALL", pgx.Identifier{a.role}.Sanitize()))
	_, _ = a.su.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RESET ALL", pgx.Identifier{a.db}.Sanitize()))
	_ = a.su.Close(ctx)
}

func (a *arena) onClose(f func()) {
	a.mu.Lock()
	a.closers = append(a.closers, f)
	a.mu.Unlock()
}

// capturingConn copies every byte read into the arena, so that the PHI
// check sees exactly what the agent received.
type capturingConn struct {
	net.Conn
	a *arena
}

func (c *capturingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.a.mu.Lock()
		c.a.seen.Write(p[:n])
		c.a.mu.Unlock()
	}
	return n, err
}

// pgxConfig is identity's connection through the gateway, without TLS (the
// gateway allows cleartext on loopback here), with extra startup params.
func (a *arena) pgxConfig(identity string, params map[string]string) *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(a.g.dsn(identity, "disable"))
	if err != nil {
		a.t.Fatal(err)
	}
	maps.Copy(cfg.RuntimeParams, params)
	return cfg
}

// attacker connects as reader-bot with pgx; its received bytes are captured.
func (a *arena) attacker(params map[string]string) (*pgx.Conn, error) {
	return a.pgxAs("reader-bot", params, true)
}

func (a *arena) pgxAs(identity string, params map[string]string, capture bool) (*pgx.Conn, error) {
	cfg := a.pgxConfig(identity, params)
	if capture {
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &capturingConn{Conn: c, a: a}, nil
		}
	}
	ctx, cancel := context.WithTimeout(a.ctx, 15*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.onClose(func() { _ = c.Close(context.Background()) })
	if capture {
		a.mu.Lock()
		a.readers = append(a.readers, c)
		a.mu.Unlock()
	}
	return c, nil
}

// mustAttacker is attacker for cases where connecting is not the attack.
func (a *arena) mustAttacker(params map[string]string) *pgx.Conn {
	a.t.Helper()
	c, err := a.attacker(params)
	if err != nil {
		a.t.Fatalf("attacker connect: %v", err)
	}
	return c
}

// simple runs each statement with the simple protocol and ignores errors:
// what the agent is told does not matter, what happens does.
func runSimple(c *pgx.Conn, sqls ...string) {
	for _, s := range sqls {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		// pgconn, not pgx: pgx refuses simple queries once
		// standard_conforming_strings is off, and attacks turn it off.
		_, _ = c.PgConn().Exec(ctx, s).ReadAll()
		cancel()
	}
}

// extended runs sql with the extended protocol (pgx's default) and drains it.
func runExtended(c *pgx.Conn, sql string, args ...any) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	rows, err := c.Query(ctx, sql, args...)
	if err == nil {
		for rows.Next() {
		}
		rows.Close()
	}
}

// openBystander connects writer-ci (application_name "victim"), listening
// on notifyChannel: the session an attack must not disturb.
func (a *arena) openBystander() {
	a.t.Helper()
	cfg := a.pgxConfig("writer-ci", map[string]string{"application_name": "victim"})
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		select {
		case a.notes <- n:
		default:
		}
	}
	c, err := pgx.ConnectConfig(a.ctx, cfg)
	if err != nil {
		a.t.Fatalf("bystander: %v", err)
	}
	a.bystander = c
	a.onClose(func() { _ = c.Close(context.Background()) })
	if _, err := c.Exec(a.ctx, "LISTEN "+notifyChannel); err != nil {
		a.t.Fatalf("bystander LISTEN: %v", err)
	}
}

// holdVictim makes the bystander run a query that waits on the harness's
// advisory lock: a cancel sent to it would show as an error. The lock is
// released in the checks, after the attack.
func (a *arena) holdVictim() {
	a.t.Helper()
	cfg, _ := pgx.ParseConfig(a.g.pg.DSN(pgtest.Superuser, "", a.db))
	cfg.RuntimeParams["log_statement"] = "none"
	holder, err := pgx.ConnectConfig(a.ctx, cfg)
	if err != nil {
		a.t.Fatal(err)
	}
	a.lockHolder = holder
	a.onClose(func() { _ = holder.Close(context.Background()) })
	if _, err := holder.Exec(a.ctx, "SELECT pg_advisory_lock($1)", harnessLock); err != nil {
		a.t.Fatal(err)
	}
	a.blockedDone = make(chan error, 1)
	by := a.bystander
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := by.Exec(ctx, "SELECT pg_advisory_lock(424242), pg_advisory_unlock(424242)", pgx.QueryExecModeSimpleProtocol)
		a.blockedDone <- err
	}()
	// Wait until the victim really waits on the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		_ = a.su.QueryRow(a.ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1 AND database = $2`, harnessLock, a.dbOID).Scan(&n)
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatal("victim never waited on the harness lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raw is a protocol-level client session as reader-bot (pgproto3 on a plain
// loopback socket), for attacks no driver would send.
type rawClient struct {
	a      *arena
	nc     net.Conn
	fe     *pgproto3.Frontend
	pid    uint32
	secret []byte
	// errors and tags of the last exchange, for cases that need to steer
	errs []string
	tags []string
	rows int
}

func (a *arena) raw(identity string, params map[string]string) (*rawClient, error) {
	nc, err := net.DialTimeout("tcp", a.g.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &rawClient{a: a, nc: nc}
	cc := &capturingConn{Conn: nc, a: a}
	c.fe = pgproto3.NewFrontend(cc, cc)
	a.onClose(func() { _ = nc.Close() })
	p := map[string]string{"user": identity, "database": "clinic"}
	maps.Copy(p, params)
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: p})
	if err := c.fe.Flush(); err != nil {
		return nil, err
	}
	for {
		msg, err := c.receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			c.fe.Send(&pgproto3.PasswordMessage{Password: a.g.tokens[identity]})
			if err := c.fe.Flush(); err != nil {
				return nil, err
			}
		case *pgproto3.BackendKeyData:
			c.pid, c.secret = m.ProcessID, slices.Clone(m.SecretKey)
		case *pgproto3.ErrorResponse:
			return nil, fmt.Errorf("startup refused: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return c, nil
		}
	}
}

func (a *arena) mustRaw(params map[string]string) *rawClient {
	a.t.Helper()
	c, err := a.raw("reader-bot", params)
	if err != nil {
		a.t.Fatalf("raw connect: %v", err)
	}
	return c
}

func (c *rawClient) receive() (pgproto3.BackendMessage, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	return c.fe.Receive()
}

// run sends msgList and reads until the server answered every Sync and Query
// among them with ReadyForQuery, answering a CopyInResponse with copyData
// (then CopyDone). It returns false when the connection ended or timed out.
func (c *rawClient) run(copyData []byte, msgList ...pgproto3.FrontendMessage) bool {
	want := 0
	for _, m := range msgList {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			want++
		}
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		return false
	}
	c.errs, c.tags, c.rows = nil, nil, 0
	for want > 0 {
		msg, err := c.receive()
		if err != nil {
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			want--
		case *pgproto3.ErrorResponse:
			c.errs = append(c.errs, m.Code+" "+m.Message)
			if m.Severity == "FATAL" {
				return false
			}
		case *pgproto3.CommandComplete:
			c.tags = append(c.tags, string(m.CommandTag))
		case *pgproto3.DataRow:
			c.rows++
		case *pgproto3.CopyInResponse:
			if copyData != nil {
				c.a.copyMarkers = append(c.a.copyMarkers, copyData)
				c.fe.Send(&pgproto3.CopyData{Data: copyData})
			}
			c.fe.Send(&pgproto3.CopyDone{})
			if err := c.fe.Flush(); err != nil {
				return false
			}
		}
	}
	return true
}

// query runs one simple Query.
func (c *rawClient) query(sql string) bool { return c.run(nil, &pgproto3.Query{String: sql}) }

// write sends bytes as they are, for malformed input.
func (c *rawClient) write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

func (c *rawClient) terminate() {
	c.fe.Send(&pgproto3.Terminate{})
	_ = c.fe.Flush()
	_ = c.nc.Close()
}

// fingerprint describes everything an attack could change in the database
// and the roles that reach it, as observed by the superuser: row data,
// objects, large objects, sequences, settings, the upstream role.
func (a *arena) fingerprint() map[string]string {
	a.t.Helper()
	queries := map[string]string{
		"patients rows":   `SELECT coalesce(md5(string_agg(p::text, E'\n' ORDER BY id)), '-') FROM patients p`,
		"audit_log rows":  `SELECT coalesce(md5(string_agg(a::text, E'\n' ORDER BY id)), '-') FROM audit_log a`,
		"sequences":       `SELECT coalesce(string_agg(format('%s.%s=%s', schemaname, sequencename, last_value), ',' ORDER BY 1), '-') FROM pg_sequences`,
		"large objects":   `SELECT count(*)::text || ':' || coalesce(string_agg(oid::text || '/' || lomowner::text, ',' ORDER BY oid), '') FROM pg_largeobject_metadata`,
		"large obj. data": `SELECT coalesce(md5(string_agg(loid::text || ':' || pageno || ':' || encode(data, 'hex'), ',' ORDER BY loid, pageno)), '-') FROM pg_largeobject`,
		"relations": `SELECT coalesce(string_agg(format('%s.%s:%s:%s:%s', n.nspname, c.relname, c.relkind, c.relacl, c.relowner), ',' ORDER BY 1), '-')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_to%' AND n.nspname NOT LIKE 'pg\_temp%'`,
		"columns": `SELECT coalesce(md5(string_agg(format('%s.%s.%s:%s:%s', n.nspname, c.relname, a.attname, a.atttypid, a.attnotnull), ',' ORDER BY 1)), '-')
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE a.attnum > 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_to%' AND n.nspname NOT LIKE 'pg\_temp%'`,
		"schemas": `SELECT string_agg(nspname || ':' || coalesce(nspacl::text, ''), ',' ORDER BY 1) FROM pg_namespace WHERE nspname NOT LIKE 'pg\_temp%' AND nspname NOT LIKE 'pg\_toast\_temp%'`,
		"functions": `SELECT coalesce(string_agg(p.oid::regprocedure::text || ':' || md5(coalesce(p.prosrc, '')) || ':' || coalesce(p.proconfig::text, ''), ',' ORDER BY 1), '-')
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`,
		"operators/casts/types": `SELECT (SELECT count(*) FROM pg_operator WHERE oid >= 16384) || '/' || (SELECT count(*) FROM pg_cast WHERE oid >= 16384) || '/' ||
			(SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_t%')`,
		"rules/triggers/policies": `SELECT (SELECT count(*) FROM pg_rewrite WHERE oid >= 16384) || '/' || (SELECT count(*) FROM pg_trigger) || '/' || (SELECT count(*) FROM pg_policy) || '/' ||
			(SELECT count(*) FROM pg_publication) || '/' || (SELECT count(*) FROM pg_statistic_ext) || '/' || (SELECT count(*) FROM pg_default_acl) || '/' || (SELECT count(*) FROM pg_extension)`,
		"comments": `SELECT count(*)::text || ':' || coalesce(md5(string_agg(description, ',' ORDER BY objoid, classoid, objsubid)), '') FROM pg_description WHERE objoid >= 16384`,
		"settings": `SELECT coalesce(string_agg(setdatabase || '/' || setrole || ':' || array_to_string(setconfig, ','), ';' ORDER BY 1), '-') FROM pg_db_role_setting
			WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) OR setrole = (SELECT datdba FROM pg_database WHERE datname = current_database())
			OR (setdatabase = 0 AND setrole = 0)`,
		"database": `SELECT format('%s:%s:%s:%s', datconnlimit, datallowconn, datacl, datistemplate) FROM pg_database WHERE datname = current_database()`,
		"upstream role": `SELECT format('%s:%s:%s:%s:%s:%s:%s', rolname, rolsuper, rolcreaterole, rolcanlogin, rolconnlimit, rolvaliduntil, md5(coalesce(rolpassword, '')))
			FROM pg_authid WHERE oid = (SELECT datdba FROM pg_database WHERE datname = current_database())`,
		"role memberships": `SELECT count(*)::text FROM pg_auth_members WHERE member = (SELECT datdba FROM pg_database WHERE datname = current_database())`,
	}
	ctx, cancel := context.WithTimeout(a.ctx, 15*time.Second)
	defer cancel()
	// One round trip for all; one query each if that fails (an attack may
	// have dropped a table).
	names := slices.Sorted(maps.Keys(queries))
	var all strings.Builder
	all.WriteString("SELECT ")
	for i, name := range names {
		if i > 0 {
			all.WriteString(", ")
		}
		all.WriteString("(" + queries[name] + ")")
	}
	vals := make([]string, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	out := map[string]string{}
	if err := a.su.QueryRow(ctx, all.String()).Scan(ptrs...); err == nil {
		for i, name := range names {
			out[name] = vals[i]
		}
		return out
	}
	for name, q := range queries {
		var v string
		if err := a.su.QueryRow(ctx, q).Scan(&v); err != nil {
			v = "error: " + err.Error()
		}
		out[name] = v
	}
	return out
}

// pgLogEntry is one message of the server's log.
type pgLogEntry struct {
	pid   int
	db    string
	level string
	msg   string
}

// attackLogPrefix is the server's log_line_prefix while the attack table
// runs: PostgreSQL's default plus the database, so that each case finds its
// own lines among those of the cases running beside it.
const attackLogPrefix = "%m [%p] db=%d "

var pgLogLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] db=(\S*) ([A-Z]+):  (.*)$`)

// serverLog returns what the server logged since the attack began.
func (a *arena) serverLog() []pgLogEntry {
	f, err := os.Open(a.g.pg.LogPath())
	if err != nil {
		a.t.Fatalf("server log: %v", err)
	}
	defer f.Close()
	if _, err := f.Seek(a.logStart, io.SeekStart); err != nil {
		a.t.Fatal(err)
	}
	var out []pgLogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := pgLogLine.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			out = append(out, pgLogEntry{pid: pid, db: m[2], level: m[3], msg: m[4]})
			continue
		}
		if len(out) > 0 && strings.HasPrefix(line, "\t") {
			out[len(out)-1].msg += "\n" + line[1:]
		}
	}
	mine := out[:0]
	for _, e := range out {
		if e.db == a.db {
			mine = append(mine, e)
		}
	}
	return mine
}

// serverRun is a statement the server logged as run (log_statement=all):
// a simple query's text, or an extended Execute's portal and source text.
type serverRun struct {
	extended bool
	portal   string
	sql      string
}

var executeLine = regexp.MustCompile(`(?s)^execute(?: fetch from)? ([^:/]*?)(?:/([^:]*))?: (.*)$`)

func (a *arena) executedStatements(log []pgLogEntry, skipPIDs map[int]bool) []serverRun {
	var out []serverRun
	for _, e := range log {
		if e.level != "LOG" || skipPIDs[e.pid] {
			continue
		}
		if s, ok := strings.CutPrefix(e.msg, "statement: "); ok {
			out = append(out, serverRun{sql: s})
			continue
		}
		if m := executeLine.FindStringSubmatch(e.msg); m != nil {
			out = append(out, serverRun{extended: true, portal: m[2], sql: m[3]})
		}
	}
	return out
}

// allClosed waits until every session file of the gateway ends with
// session.end and returns the verified events; a session that never ends
// is a failure (it would be listed as live forever).
func (a *arena) allClosed() map[string][]*record.Event {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a huge statement is drained before the end is recorded: slow under -race on 2 cores
	for {
		files, _ := os.ReadDir(a.g.spoolDir + "/sessions")
		out := map[string][]*record.Event{}
		var open []string
		for _, f := range files {
			id, ok := strings.CutSuffix(f.Name(), ".rec")
			if !ok {
				continue
			}
			evs, closed, err := a.g.readSession(id)
			if err != nil {
				a.t.Errorf("recording of session %s does not verify: %v", id, err)
				continue
			}
			out[id] = evs
			if !closed {
				open = append(open, id)
			}
		}
		if len(open) == 0 {
			return out
		}
		if time.Now().After(deadline) {
			for _, id := range open {
				evs := out[id]
				a.t.Errorf("session %s never recorded its end (last event %v of %d): it stays listed as live", id, lastKind(evs), len(evs))
			}
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func lastKind(evs []*record.Event) record.Kind {
	if len(evs) == 0 {
		return "none"
	}
	return evs[len(evs)-1].Kind
}

// recordedCommands returns every recorded command of every session.
func recordedCommands(sessions map[string][]*record.Event) []*record.Command {
	var out []*record.Command
	for _, evs := range sessions {
		for _, e := range evs {
			if e.Kind == record.KindCommand {
				out = append(out, e.Command)
			}
		}
	}
	return out
}

// finish runs the invariants every case gets, in order: while the attack's
// sessions are still open, then after they are closed.
func (a *arena) finish(extra []invariant) {
	t := a.t
	t.Helper()
	for _, inv := range extra {
		if inv.during {
			inv.check(t, a)
		}
	}
	a.checkNoAdvisoryLocks()
	a.checkAttackersReadOnly()

	// Close the attacker's sessions (the bystander stays).
	a.mu.Lock()
	readers := a.readers
	a.mu.Unlock()
	for _, c := range readers {
		_ = c.Close(context.Background())
	}
	a.checkBystander()
	a.checkNodeServes()
	a.mu.Lock()
	closers := a.closers
	a.closers = nil
	a.mu.Unlock()
	for _, c := range slices.Backward(closers) {
		c()
	}
	a.evs = a.allClosed()
	a.checkFingerprint()
	a.checkServerRanOnlyRecorded()
	a.checkNoRawPHI()
	a.checkCopyRecorded()
	for _, inv := range extra {
		if !inv.during {
			inv.check(t, a)
		}
	}
}

// checkNoAdvisoryLocks: a read grant takes no locks that outlive its
// statements (advisory locks block other sessions).
func (a *arena) checkNoAdvisoryLocks() {
	var held []string
	rows, err := a.su.Query(a.ctx, `SELECT format('key %s (%s, granted %s)', (classid::bigint << 32) | objid::bigint, mode, granted)
		FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND NOT (classid = 0 AND objid = $1)`, harnessLock)
	if err != nil {
		a.t.Errorf("harness: pg_locks: %v", err)
		return
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		held = append(held, s)
	}
	rows.Close()
	if len(held) > 0 {
		a.t.Errorf("advisory locks held after the attack: %v", held)
	}
}

// checkAttackersReadOnly: every attacker session that still answers is
// still read-only, as its grant requires.
func (a *arena) checkAttackersReadOnly() {
	a.mu.Lock()
	readers := slices.Clone(a.readers)
	a.mu.Unlock()
	for _, c := range readers {
		if c.IsClosed() {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		res, err := c.PgConn().Exec(ctx, "SHOW default_transaction_read_only").ReadAll()
		cancel()
		if err == nil && len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) != "on" {
			a.t.Errorf("a reader-bot session was made read-write: default_transaction_read_only = %s", res[0].Rows[0][0])
		}
	}
}

// checkBystander: the other identity's session is alive, its blocked query
// (if any) was not cancelled, and no notification reached it.
func (a *arena) checkBystander() {
	if a.bystander == nil {
		return
	}
	if a.blockedDone != nil {
		if _, err := a.lockHolder.Exec(a.ctx, "SELECT pg_advisory_unlock($1)", harnessLock); err != nil {
			a.t.Errorf("harness: unlock: %v", err)
		}
		select {
		case err := <-a.blockedDone:
			if err != nil {
				a.t.Errorf("the victim session's running query was disturbed: %v", err)
			}
		case <-time.After(15 * time.Second):
			a.t.Error("the victim session's query never finished")
		}
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	if _, err := a.bystander.Exec(ctx, "NOTIFY "+notifyChannel+", 'sentinel'"); err != nil {
		a.t.Errorf("the bystander session (writer-ci) was disturbed: %v", err)
		return
	}
	for {
		select {
		case n := <-a.notes:
			if n.Payload == "sentinel" {
				return
			}
			a.t.Errorf("a notification from the attacker reached another session (channel %q)", n.Channel)
		case <-ctx.Done():
			// pgx delivers notifications as it reads; make it read.
			a.t.Error("the bystander never received its own notification")
			return
		default:
			if err := a.bystander.PgConn().WaitForNotification(ctx); err != nil {
				a.t.Errorf("bystander: %v", err)
				return
			}
		}
	}
}

// checkNodeServes: after the attack a fresh session of the attacker's
// identity still works, and its PHI is still masked.
func (a *arena) checkNodeServes() {
	ctx, cancel := context.WithTimeout(a.ctx, 15*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, a.pgxConfig("reader-bot", nil))
	if err != nil {
		a.t.Errorf("the node no longer serves a fresh session: %v", err)
		return
	}
	defer c.Close(context.Background())
	var ssn string
	if err := c.QueryRow(ctx, "SELECT ssn FROM patients WHERE id = 1").Scan(&ssn); err != nil {
		a.t.Errorf("a fresh session cannot read after the attack: %v", err)
		return
	}
	if ssn != "***-**-6789" {
		a.t.Errorf("a fresh session after the attack gets ssn %q, want it masked", ssn)
	}
}

func (a *arena) checkFingerprint() {
	after := a.fingerprint()
	for _, k := range slices.Sorted(maps.Keys(a.before)) {
		if a.before[k] != after[k] {
			a.t.Errorf("the attack changed the database: %s\n\tbefore: %.300s\n\tafter:  %.300s", k, a.before[k], after[k])
		}
	}
}

// checkServerRanOnlyRecorded reads the server's own log of what it ran
// (log_statement=all on this database) and checks that (1) every statement
// the server serverRun for an agent is in the recording as a command with
// exactly that text (an Execute with its portal), and (2) the read-only
// upstream session never had to refuse a write: that wall is the second
// one, and a statement reaching it got past phigate's classification.
func (a *arena) checkServerRanOnlyRecorded() {
	// phigate's own catalog connection runs its queries on the same
	// database, under the same role; it names itself.
	skip := map[int]bool{}
	rows, err := a.su.Query(a.ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'phigate-catalog'`)
	if err == nil {
		for rows.Next() {
			var pid int
			_ = rows.Scan(&pid)
			skip[pid] = true
		}
		rows.Close()
	}
	log := a.serverLog()
	// A simple query is recorded as sent, so its text must match exactly.
	// An Execute must be recorded on its portal with the text it runs; the
	// server logs a cursor's portal with its whole DECLARE, so one text
	// containing the other is enough (an empty text is not).
	type rec struct {
		cmd  *record.Command
		used bool
	}
	var recorded []*rec
	for _, c := range recordedCommands(a.evs) {
		if c.Decision != "deny" {
			recorded = append(recorded, &rec{cmd: c})
		}
	}
	holds := func(c *record.Command, e serverRun) bool {
		pg := c.Postgres
		if pg == nil {
			return false
		}
		if !e.extended {
			return pg.Flow == record.FlowSimple && pg.SQL == e.sql
		}
		return pg.Flow == record.FlowExtended && pg.Portal == e.portal && pg.SQL != "" &&
			(strings.Contains(e.sql, pg.SQL) || strings.Contains(pg.SQL, e.sql))
	}
	missing := map[serverRun]int{}
	for _, e := range a.executedStatements(log, skip) {
		if strings.HasPrefix(e.sql, "SELECT n.nspname, c.relname, a.attnum, a.attname") || e.sql == "-- ping" {
			continue // the catalog query, if its connection has gone; pgconn's ping as phigate logs in
		}
		found := false
		for _, r := range recorded {
			if !r.used && holds(r.cmd, e) {
				r.used, found = true, true
				break
			}
		}
		if !found {
			missing[e]++
		}
	}
	for e, n := range missing {
		how := "simple query"
		if e.extended {
			how = fmt.Sprintf("Execute of portal %q", e.portal)
		}
		a.t.Errorf("the server ran a statement the recording does not hold as run (%s, %d time(s)): %.200q", how, n, e.sql)
	}
	for _, e := range log {
		if e.level == "ERROR" && strings.Contains(e.msg, "in a read-only transaction") && !a.wallOK {
			a.t.Errorf("a write got past phigate and was stopped only by the read-only upstream session: %s", e.msg)
		}
	}
}

func (a *arena) checkNoRawPHI() {
	a.mu.Lock()
	seen := a.seen.Bytes()
	a.mu.Unlock()
	var leaked []string
	for _, n := range fixturePHI {
		if bytes.Contains(seen, n.raw) {
			leaked = append(leaked, fmt.Sprintf("raw %s %q", n.what, n.raw))
		}
	}
	if len(leaked) > 0 {
		a.t.Errorf("raw PHI reached the reader-bot client (%d values): %s", len(leaked), strings.Join(leaked, ", "))
	}
}

// checkCopyRecorded: COPY data the attacker sent is in the recording,
// whatever phigate made of the statement that asked for it.
func (a *arena) checkCopyRecorded() {
	if len(a.copyMarkers) == 0 {
		return
	}
	var copied []byte
	for _, evs := range a.evs {
		for _, e := range evs {
			if e.Kind == record.KindCopyData {
				copied = append(copied, e.Copy.Data...)
			}
		}
	}
	for _, m := range a.copyMarkers {
		if !bytes.Contains(copied, m) {
			a.t.Errorf("COPY data the agent sent (%d bytes) is not in the recording", len(m))
		}
	}
}

// invariant is a check beyond the defaults; during ones run while the
// attack's sessions are still open.
type invariant struct {
	during bool
	check  func(t *testing.T, a *arena)
}

// recordedSQL requires some recorded command to carry exactly sql.
func recordedSQL(sql string) invariant {
	return invariant{check: func(t *testing.T, a *arena) {
		for _, c := range recordedCommands(a.evs) {
			if c.Text() == sql {
				return
			}
		}
		t.Errorf("no recorded command holds the statement the agent sent: %.120q", sql)
	}}
}

// refusedRecorded requires a command recorded as denied.
func refusedRecorded() invariant {
	return invariant{check: func(t *testing.T, a *arena) {
		for _, c := range recordedCommands(a.evs) {
			if c.Decision == "deny" {
				return
			}
		}
		t.Errorf("the refused statement was not recorded as refused (%d commands recorded)", len(recordedCommands(a.evs)))
	}}
}

// bigCommandRecorded requires the huge statement to be in the recording as
// a command, run or refused (a refusal may keep only part of its text).
func bigCommandRecorded() invariant {
	return invariant{check: func(t *testing.T, a *arena) {
		for _, c := range recordedCommands(a.evs) {
			if len(c.Text()) >= 1<<20 || c.Decision == "deny" {
				return
			}
		}
		t.Errorf("the huge statement left no command event (%d commands recorded)", len(recordedCommands(a.evs)))
	}}
}
