package sqlclass_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/sqlclass"
)

// A differential test of the classifier against the server it speaks for.
//
// phigate lets a read-only grant (read and export) run whatever the
// classifier and policy.Command let it: statements classed read or export,
// the tx and session statements every grant may run, and only the function
// calls the grant allows. The claim under test: such text never writes,
// whatever the database would allow. So each
// candidate script (one or more Query messages, as an agent would send
// them) that the classifier passes is run on a real server as the database
// owner, a role that can write, inside a read-write transaction that is
// rolled back, and the server is asked what the text did:
//
//   - txid_current_if_assigned() is not null: something wrote. PostgreSQL
//     assigns a transaction id to the first change of any table, catalog,
//     large object or temporary table, to every row lock (SELECT FOR
//     UPDATE/SHARE) and to txid_current(); reads never get one. This is the
//     sound core of the detector: it does not depend on knowing what could
//     be written.
//   - the non-transactional changes an XID does not reveal: a sequence's
//     value (nextval, setval), advisory locks held by the session, another
//     backend terminated (a canary connection), a notification delivered
//     (the transaction is committed when nothing else fired, and a listener
//     waits for a sentinel behind it);
//   - settings: for a read, any setting at all; for a session statement, the
//     ones phigate's wall stands on (default_transaction_read_only on, the
//     lexer's standard_conforming_strings and client_encoding, the role,
//     replication role, row security, pg_catalog first on the search path);
//   - disagreement about what the text is: the server completing more
//     statements than the classifier saw, entering COPY, or ending the
//     harness's transaction.
//
// Findings are failures. TestClassifierAgainstServer runs a bounded number of
// generated scripts (grammar-based: statement kinds, functions from the
// server's pg_proc including volatile ones, every string syntax, comments,
// settings changes, CTEs, EXPLAIN options) with a fixed seed; flags run it
// longer or with another seed. FuzzClassifyAgainstServer mutates scripts
// (Query messages separated by NUL, which a Query cannot contain), seeded
// with the known attacks in testdata/fuzz.

// readGrant is the grant the agent holds.
var readGrant = &policy.Grant{Name: "readers", Groups: []string{"readers"}, Resources: []string{"clinic"},
	Allow: []policy.Class{policy.Read, policy.Export}, Masking: "hipaa"}

var (
	diffIterations = flag.Int("sqlclass.diff.n", 400, "scripts TestClassifierAgainstServer generates")
	diffDuration   = flag.Duration("sqlclass.diff.time", 4*time.Second, "time budget of TestClassifierAgainstServer")
	diffSeed       = flag.Uint64("sqlclass.diff.seed", 1, "seed of TestClassifierAgainstServer's generator")
)

func TestClassifierAgainstServer(t *testing.T) {
	d := diffServerFor(t)
	g := newScriptGen(*diffSeed, d.funcs, d.settings)
	deadline := time.Now().Add(*diffDuration)
	seen := map[string]int{}
	var ran, eligible int
	for i := 0; i < *diffIterations && time.Now().Before(deadline); i++ {
		script := g.script()
		ran++
		f, ok := diffServerFor(t).check(t, script)
		if !ok {
			continue
		}
		eligible++
		if f == nil {
			continue
		}
		key := f.kind
		seen[key]++
		if seen[key] <= 3 {
			t.Errorf("%s", minimize(t, f))
		}
	}
	for k, n := range seen {
		if n > 3 {
			t.Errorf("... and %d more scripts that %s", n-3, k)
		}
	}
	t.Logf("seed %d: %d scripts, %d allowed to a read grant and run on the server", *diffSeed, ran, eligible)
	if eligible < ran/10 {
		t.Errorf("only %d of %d generated scripts were allowed to a read grant: the generator no longer exercises the classifier", eligible, ran)
	}
}

func FuzzClassifyAgainstServer(f *testing.F) {
	// Start the server here, outside any input: the fuzzing engine takes
	// an input that runs for seconds for a hang.
	diffServerFor(f)
	f.Fuzz(func(t *testing.T, input string) {
		script := strings.Split(input, "\x00")
		if len(script) > 4 || len(input) > 4096 {
			return
		}
		d := diffServerFor(t)
		if fd, ok := d.check(t, script); ok && fd != nil {
			t.Errorf("%s", fd)
		}
	})
}

// minimize drops the queries of a finding's script that it does not need.
func minimize(t *testing.T, f *finding) *finding {
	for i := 0; i < len(f.script) && len(f.script) > 1; {
		shorter := slices.Delete(slices.Clone(f.script), i, i+1)
		if g, ok := diffServerFor(t).check(t, shorter); ok && g != nil && g.kind == f.kind {
			f = g
			continue
		}
		i++
	}
	return f
}

// finding is one disagreement between the classifier and the server.
type finding struct {
	script  []string
	classes [][]policy.Class
	kind    string // what the server says the text did
	detail  string
}

func (f *finding) String() string {
	q := fmt.Sprintf("%q", f.script)
	if len(q) > 600 {
		q = q[:600] + "..."
	}
	return fmt.Sprintf("classed %v, but on the server it %s%s\n\tscript: %s", f.classes, f.kind, f.detail, q)
}

// diffServer is one database on the shared server, with a fixture, the
// owner's connection the scripts run on, a canary and a listener.
type diffServer struct {
	pg       *pgtest.Server
	db, role string
	password string
	cache    *sqlclass.Cache // as the proxy classifies: one node-wide cache
	// tainted: a script committed changes; the next check gets a fresh
	// database.
	tainted bool

	run      *rawConn
	canary   *rawConn
	listener *pgconn.PgConn
	notes    chan string

	funcs    []fnSig
	settings []settingSig
}

var (
	diffMu  sync.Mutex
	diffSrv *diffServer
)

const diffFixture = `
CREATE TABLE patients (id int PRIMARY KEY, name text, ssn char(11), dob date, phone varchar(20), mrn bigint, notes text);
INSERT INTO patients VALUES (1, 'Test Person', '000-00-0001', '1970-01-01', '555 0100', 1, 'note'),
	(2, 'Other Person', '000-00-0002', NULL, NULL, 2, NULL);
CREATE TABLE audit_log (id serial PRIMARY KEY, msg text);
INSERT INTO audit_log (msg) VALUES ('one'), ('two');
CREATE SEQUENCE counter;
SELECT lo_from_bytea(0, 'large object');
`

// notifyChannels are the channels the generator notifies and the listener
// listens on.
var notifyChannels = []string{"fz", "phigate"}

// diffServerFor returns the test process's diffServer, making its
// database on first use (and again after a script tainted it).
func diffServerFor(t testing.TB) *diffServer {
	t.Helper()
	diffMu.Lock()
	defer diffMu.Unlock()
	if diffSrv != nil && !diffSrv.tainted {
		return diffSrv
	}
	pg := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := &diffServer{pg: pg, cache: sqlclass.NewCache(0)}
	if diffSrv != nil {
		d.cache, d.funcs, d.settings = diffSrv.cache, diffSrv.funcs, diffSrv.settings
		diffSrv.run.close()
		diffSrv.canary.close()
		_ = diffSrv.listener.Close(ctx)
	}
	suffix := fmt.Sprintf("%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	d.db, d.role, d.password = "sqlclass_diff_"+suffix, "sqlclass_owner_"+suffix, "pw-"+suffix
	if err := pg.AddUser(ctx, pgtest.User{Name: d.role, Password: d.password}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, d.db, d.role); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, d.db, "SET ROLE "+d.role+";"+diffFixture); err != nil {
		t.Fatal(err)
	}
	if d.funcs == nil {
		if err := d.loadCatalog(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.open(); err != nil {
		t.Fatal(err)
	}
	diffSrv = d
	return d
}

// open connects the script runner, the canary and the listener.
func (d *diffServer) open() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	// The session a read grant gets: read-only by default. The harness's
	// own transaction is READ WRITE, so the database would let a write
	// through: only the classifier stands in the way.
	if d.run, err = d.connect(ctx, map[string]string{"default_transaction_read_only": "on", "application_name": "fz-run"}); err != nil {
		return err
	}
	if d.canary, err = d.connect(ctx, map[string]string{"application_name": "fz-canary"}); err != nil {
		return err
	}
	cfg, err := pgconn.ParseConfig(d.pg.DSN(pgtest.Superuser, "", d.db))
	if err != nil {
		return err
	}
	d.notes = make(chan string, 64)
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		select {
		case d.notes <- n.Channel:
		default:
		}
	}
	if d.listener, err = pgconn.ConnectConfig(ctx, cfg); err != nil {
		return err
	}
	for _, ch := range append(slices.Clone(notifyChannels), "fz_sentinel") {
		if _, err := d.listener.Exec(ctx, "LISTEN "+ch).ReadAll(); err != nil {
			return err
		}
	}
	return nil
}

// loadCatalog reads the functions and settings the generator draws from.
func (d *diffServer) loadCatalog(ctx context.Context) error {
	c, err := pgx.Connect(ctx, d.pg.DSN(pgtest.Superuser, "", d.db))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT p.proname, p.provolatile, p.proretset,
			coalesce(array_agg(format_type(t, NULL) ORDER BY n) FILTER (WHERE t IS NOT NULL), '{}')
		FROM pg_proc p LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n) ON true
		WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
			AND p.prorettype NOT IN ('internal'::regtype, 'trigger'::regtype, 'event_trigger'::regtype, 'language_handler'::regtype,
				'fdw_handler'::regtype, 'index_am_handler'::regtype, 'table_am_handler'::regtype, 'tsm_handler'::regtype)
			AND NOT 'internal'::regtype = ANY (p.proargtypes::oid[])
			AND p.proname NOT LIKE 'pg_sleep%'
		GROUP BY p.oid, p.proname, p.provolatile, p.proretset`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var f fnSig
		var vol string
		if err := rows.Scan(&f.name, &vol, &f.setof, &f.args); err != nil {
			return err
		}
		f.volatile = vol == "v"
		d.funcs = append(d.funcs, f)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	slices.SortFunc(d.funcs, func(a, b fnSig) int {
		return strings.Compare(a.name+strings.Join(a.args, ","), b.name+strings.Join(b.args, ","))
	})
	rows, err = c.Query(ctx, `SELECT name, vartype, coalesce(enumvals, '{}'), coalesce(boot_val, '') FROM pg_settings
		WHERE context IN ('user', 'superuser') ORDER BY name`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s settingSig
		if err := rows.Scan(&s.name, &s.vartype, &s.enumvals, &s.boot); err != nil {
			return err
		}
		d.settings = append(d.settings, s)
	}
	return rows.Err()
}

// connect opens a protocol-level session as the owner.
func (d *diffServer) connect(ctx context.Context, params map[string]string) (*rawConn, error) {
	cfg, err := pgconn.ParseConfig(d.pg.DSN(d.role, d.password, d.db))
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var pid uint32 = pc.PID()
	hj, err := pc.Hijack()
	if err != nil {
		return nil, err
	}
	return &rawConn{nc: hj.Conn, fe: pgproto3.NewFrontend(hj.Conn, hj.Conn), pid: pid}, nil
}

// rawConn is a session spoken to message by message, so that the harness
// sees exactly what the server did with a Query: how many statements it
// completed, whether it entered COPY, the transaction state after.
type rawConn struct {
	nc  net.Conn
	fe  *pgproto3.Frontend
	pid uint32
	err error // the connection is unusable
}

type queryResult struct {
	completed int // statements the server completed (CommandComplete, EmptyQueryResponse)
	errs      []string
	copyIn    bool
	copyOut   bool
	rows      [][]string
	tx        byte // ReadyForQuery status: I, T or E
}

func (c *rawConn) query(sql string) queryResult {
	var r queryResult
	if c.err != nil {
		return r
	}
	c.fe.Send(&pgproto3.Query{String: sql})
	if c.err = c.fe.Flush(); c.err != nil {
		return r
	}
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		msg, err := c.fe.Receive()
		if err != nil {
			c.err = err
			return r
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse:
			r.completed++
		case *pgproto3.DataRow:
			row := make([]string, len(m.Values))
			for i, v := range m.Values {
				row[i] = string(v)
			}
			r.rows = append(r.rows, row)
		case *pgproto3.ErrorResponse:
			r.errs = append(r.errs, m.Code+" "+m.Message)
			if m.Severity == "FATAL" {
				c.err = errors.New("FATAL " + m.Code + " " + m.Message)
				return r
			}
		case *pgproto3.CopyInResponse:
			r.copyIn = true
			c.fe.Send(&pgproto3.CopyFail{Message: "differential test sends no COPY data"})
			if c.err = c.fe.Flush(); c.err != nil {
				return r
			}
		case *pgproto3.CopyOutResponse:
			r.copyOut = true
		case *pgproto3.ReadyForQuery:
			r.tx = m.TxStatus
			return r
		}
	}
}

func (c *rawConn) close() {
	if c != nil && c.nc != nil {
		_ = c.nc.Close()
	}
}

// state is what the session and the database look like from inside the
// harness's transaction.
type state struct {
	xid       string // txid_current_if_assigned(), empty when none
	sequences string
	advisory  string
	settings  string // every setting but the harness's timeouts
	guarded   map[string]string
}

const stateQuery = `SELECT coalesce(txid_current_if_assigned()::text, ''),
	(SELECT coalesce(string_agg(c.relname || '=' || coalesce(pg_sequence_last_value(c.oid)::text, '-'), ',' ORDER BY c.relname), '') FROM pg_class c WHERE c.relkind = 'S'),
	(SELECT count(*)::text FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'),
	(SELECT md5(string_agg(name || '=' || setting, ',' ORDER BY name)) FROM pg_settings WHERE name NOT IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'transaction_read_only')),
	current_setting('default_transaction_read_only'), current_setting('standard_conforming_strings'),
	current_setting('client_encoding'), current_user::text, session_user::text,
	current_setting('session_replication_role'), current_setting('row_security'),
	coalesce((current_schemas(true))[1]::text, '')`

var guardedNames = []string{"default_transaction_read_only", "standard_conforming_strings", "client_encoding",
	"current_user", "session_user", "session_replication_role", "row_security", "first schema searched"}

func (c *rawConn) state() (*state, error) {
	r := c.query(stateQuery)
	if c.err != nil {
		return nil, c.err
	}
	if len(r.errs) > 0 || len(r.rows) != 1 || len(r.rows[0]) != 4+len(guardedNames) {
		return nil, fmt.Errorf("state query: %v", r.errs)
	}
	row := r.rows[0]
	s := &state{xid: row[0], sequences: row[1], advisory: row[2], settings: row[3], guarded: map[string]string{}}
	for i, name := range guardedNames {
		s.guarded[name] = row[4+i]
	}
	return s, nil
}

// check classifies script as the proxy would and, when every statement is
// one a read grant may run, runs it on the server and reports what the
// server says it did. ok is false when the script is not eligible.
func (d *diffServer) check(t testing.TB, script []string) (f *finding, ok bool) {
	t.Helper()
	var classes [][]policy.Class
	allRead, exports := true, 0
	for _, q := range script {
		if q == "" {
			return nil, false
		}
		stmts, err := d.cache.Classify(q)
		if err != nil || len(stmts) == 0 || !policy.Command(readGrant, sqlclass.Actions(nil, stmts)).Allowed {
			return nil, false
		}
		var cl []policy.Class
		for _, s := range stmts {
			switch s.Class {
			case policy.Export:
				exports++ // COPY TO STDOUT
			case policy.Session:
				allRead = false
			case policy.Tx:
				// The harness wraps the script in its own transaction;
				// scripts that end or start one cannot be isolated.
				return nil, false
			}
			cl = append(cl, s.Class)
		}
		classes = append(classes, cl)
	}
	found := func(kind, detail string) (*finding, bool) {
		return &finding{script: script, classes: classes, kind: kind, detail: detail}, true
	}

	run := d.run
	begin := run.query("BEGIN READ WRITE; SET LOCAL statement_timeout = '3s'")
	if run.err != nil || len(begin.errs) > 0 {
		t.Fatalf("harness: BEGIN: %v %v", run.err, begin.errs)
	}
	before, err := run.state()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	run.query("SAVEPOINT fz")
	var result *finding
	for i, q := range script {
		r := run.query(q)
		if run.err != nil {
			// The script ended the harness's own session.
			d.reconnect(t)
			return found("ended its own session", fmt.Sprintf(" (%v)", run.err))
		}
		if r.completed > len(classes[i]) {
			result, _ = found("ran more statements than the classifier saw", fmt.Sprintf(" (%d, not %d)", r.completed, len(classes[i])))
		}
		if result == nil && r.copyIn {
			result, _ = found("asked for COPY data", "")
		}
		if result == nil && r.copyOut && exports == 0 {
			result, _ = found("started a COPY out", "")
		}
		if r.tx == 'I' {
			// Whatever ran after the harness's transaction ended is
			// committed: the database is no longer the fixture.
			d.tainted = true
			return found("ended the harness's transaction", " (the text holds a transaction statement the classifier did not see)")
		}
		if r.tx == 'E' {
			run.query("ROLLBACK TO SAVEPOINT fz")
		}
	}
	run.query("SET LOCAL statement_timeout = '3s'") // a script may have shortened it
	after, err := run.state()
	if err != nil {
		d.reconnect(t)
		return found("left the session unable to answer", fmt.Sprintf(" (%v)", err))
	}
	switch {
	case result != nil:
	case after.xid != "":
		result, _ = found("wrote", " (a transaction id was assigned)")
	case after.sequences != before.sequences:
		result, _ = found("changed a sequence", fmt.Sprintf(" (%s -> %s)", before.sequences, after.sequences))
	case after.advisory != before.advisory:
		result, _ = found("took an advisory lock", "")
	}
	if result == nil {
		for _, name := range guardedNames {
			if after.guarded[name] != before.guarded[name] {
				result, _ = found("changed "+name, fmt.Sprintf(" from %q to %q", before.guarded[name], after.guarded[name]))
				break
			}
		}
	}
	if result == nil && allRead && after.settings != before.settings {
		result, _ = found("changed a setting, though every statement is a read", "")
	}
	// Nothing fired: commit, so that a notification, which only leaves at
	// commit, can show. No transaction id means nothing was written.
	end := "ROLLBACK"
	if result == nil {
		end = "COMMIT"
	}
	run.query(end)
	post := run.query("SELECT (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory')")
	if result == nil && len(post.rows) == 1 && post.rows[0][0] != "0" {
		result, _ = found("kept an advisory lock beyond its transaction", "")
	}
	run.query("SELECT pg_advisory_unlock_all(); DISCARD ALL")
	if run.err != nil {
		d.reconnect(t)
		return found("broke the session", fmt.Sprintf(" (%v)", run.err))
	}
	if r := d.canary.query("SELECT 1"); d.canary.err != nil || len(r.errs) > 0 {
		d.reconnect(t)
		if result == nil {
			result, _ = found("disturbed another session", fmt.Sprintf(" (%v %v)", d.canary.err, r.errs))
		}
	}
	if end == "COMMIT" {
		if n := d.notifications(t); result == nil && n != "" {
			result, _ = found("delivered a notification", " ("+n+")")
		}
	}
	return result, true
}

// notifications sends a sentinel and returns the channels of whatever the
// listener got before it.
func (d *diffServer) notifications(t testing.TB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := d.canary.query("NOTIFY fz_sentinel")
	if d.canary.err != nil || len(r.errs) > 0 {
		t.Fatalf("harness: sentinel: %v %v", d.canary.err, r.errs)
	}
	var got []string
	for {
		select {
		case n := <-d.notes:
			if n == "fz_sentinel" {
				return strings.Join(got, ", ")
			}
			got = append(got, n)
		default:
			if err := d.listener.WaitForNotification(ctx); err != nil {
				t.Fatalf("harness: listener: %v", err)
			}
		}
	}
}

// reconnect replaces the connections after a script broke one of them.
func (d *diffServer) reconnect(t testing.TB) {
	t.Helper()
	d.run.close()
	d.canary.close()
	if d.listener != nil {
		_ = d.listener.Close(context.Background())
	}
	if err := d.open(); err != nil {
		t.Fatalf("harness: reconnect: %v", err)
	}
}

// fnSig is a function of pg_catalog the generator may call.
type fnSig struct {
	name     string
	args     []string // argument types, as format_type spells them
	volatile bool
	setof    bool
}

// settingSig is a setting a session may change.
type settingSig struct {
	name, vartype, boot string
	enumvals            []string
}

// scriptGen generates scripts: one to three Query messages, each one to
// three statements, drawn from a grammar of what an agent can send.
type scriptGen struct {
	r        *rand.Rand
	funcs    []fnSig
	volatile []fnSig
	settings []settingSig
}

func newScriptGen(seed uint64, funcs []fnSig, settings []settingSig) *scriptGen {
	g := &scriptGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), funcs: funcs, settings: settings}
	for _, f := range funcs {
		if f.volatile {
			g.volatile = append(g.volatile, f)
		}
	}
	return g
}

func (g *scriptGen) n(k int) int           { return g.r.IntN(k) }
func (g *scriptGen) chance(p float64) bool { return g.r.Float64() < p }
func pick[T any](g *scriptGen, xs ...T) T  { return xs[g.r.IntN(len(xs))] }

func (g *scriptGen) script() []string {
	var out []string
	// Sometimes change how the session lexes or resolves names first: the
	// next queries are then read under that setting.
	if g.chance(0.15) {
		out = append(out, g.lexerSetting())
	}
	for range 1 + g.n(2) {
		out = append(out, g.query())
	}
	return out
}

func (g *scriptGen) lexerSetting() string {
	return pick(g,
		"SET standard_conforming_strings = off",
		"SET standard_conforming_strings TO 'of'",
		"SET LOCAL standard_conforming_strings = false",
		"SET client_encoding = 'SJIS'",
		"SET NAMES 'BIG5'",
		"SET client_encoding TO 'GBK'",
		"SET search_path = public, pg_catalog",
		"SET escape_string_warning = off",
		"SET backslash_quote = on",
	)
}

func (g *scriptGen) query() string {
	n := 1 + g.n(3)
	if g.chance(0.6) {
		n = 1
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = g.stmt()
	}
	sep := pick(g, "; ", ";\n", " ;", "; "+g.comment()+" ")
	q := strings.Join(parts, sep)
	if g.chance(0.2) {
		q += ";"
	}
	return g.sprinkle(q)
}

// sprinkle puts comments at the front or the back.
func (g *scriptGen) sprinkle(q string) string {
	switch g.n(8) {
	case 0:
		return g.comment() + " " + q
	case 1:
		return q + " " + g.comment()
	}
	return q
}

func (g *scriptGen) comment() string {
	return pick(g, "/* c */", "/* /* nested */ */", "/* ' */", "/* $$ */", "-- line\n", "/**/", "/* ; */", "--\n", `/* \ */`)
}

func (g *scriptGen) stmt() string {
	switch g.n(20) {
	case 0, 1:
		return g.explain()
	case 2:
		return g.set()
	case 3:
		return "SHOW " + g.setting().name
	case 4:
		return "VALUES (" + g.expr(1) + "), (" + g.expr(1) + ")"
	case 5:
		return pick(g, "TABLE patients", "TABLE audit_log", "TABLE counter")
	case 6:
		return "WITH w AS (" + g.selectStmt(1) + ") SELECT * FROM w"
	case 7:
		return pick(g, "DECLARE c"+fmt.Sprint(g.n(3))+" CURSOR FOR ", "PREPARE p"+fmt.Sprint(g.n(1000))+" AS ") + g.selectStmt(1)
	case 8:
		return pick(g, "LISTEN fz", "NOTIFY fz", "NOTIFY phigate, 'x'", "UNLISTEN *", "DISCARD PLANS", "DISCARD SEQUENCES", "RESET ALL", "RESET search_path")
	case 9:
		// Writes in read shapes, mostly classed as writes and skipped:
		// they keep the classifier honest about its negatives.
		return pick(g,
			"WITH d AS (DELETE FROM audit_log WHERE id < 0 RETURNING *) SELECT * FROM d",
			"SELECT * FROM patients FOR "+pick(g, "UPDATE", "SHARE", "NO KEY UPDATE", "KEY SHARE"),
			"SELECT * FROM (SELECT id FROM audit_log FOR UPDATE) s",
			"SELECT 1 INTO TEMP t"+fmt.Sprint(g.n(100)),
			"INSERT INTO audit_log (msg) VALUES ("+g.stringLit()+")")
	}
	return g.selectStmt(2)
}

func (g *scriptGen) explain() string {
	opt := pick(g, "ANALYZE", "ANALYSE", "ANALYZE true", "ANALYZE 'TRUE'", "ANALYZE 'On'", "ANALYZE 1", "ANALYZE false, ANALYZE true",
		"ANALYZE true, ANALYZE false", "ANALYZE off", `ANALYZE "true"`, "ANALYZE 'tRuE', COSTS off", "VERBOSE", "COSTS off", "ANALYZE, BUFFERS")
	target := g.selectStmt(1)
	if g.chance(0.4) {
		target = pick(g, "UPDATE audit_log SET msg = msg", "DELETE FROM audit_log WHERE id < 0", "INSERT INTO audit_log (msg) VALUES ('e')",
			"SELECT * FROM patients FOR UPDATE", "CREATE TABLE e AS SELECT 1")
	}
	if g.chance(0.3) {
		return "EXPLAIN " + strings.Split(opt, ",")[0] + " " + target
	}
	return "EXPLAIN (" + opt + ") " + target
}

func (g *scriptGen) set() string {
	if g.chance(0.3) {
		return g.lexerSetting()
	}
	s := g.setting()
	val := s.boot
	switch s.vartype {
	case "bool":
		val = pick(g, "on", "off", "true", "'of'", "0", "yes")
	case "enum":
		if len(s.enumvals) > 0 {
			val = pick(g, s.enumvals...)
		}
	case "integer", "real":
		if val == "" {
			val = "0"
		}
	}
	if val == "" || s.vartype == "string" {
		val = "'" + strings.ReplaceAll(val, "'", "''") + "'"
	}
	return pick(g, "SET ", "SET LOCAL ", "SET SESSION ") + s.name + pick(g, " = ", " TO ") + val
}

func (g *scriptGen) setting() settingSig {
	if len(g.settings) == 0 {
		return settingSig{name: "search_path", vartype: "string", boot: "public"}
	}
	return g.settings[g.n(len(g.settings))]
}

func (g *scriptGen) selectStmt(depth int) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	if g.chance(0.1) {
		b.WriteString("DISTINCT ")
	}
	for i := range 1 + g.n(3) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(g.expr(depth))
		if g.chance(0.2) {
			b.WriteString(" AS " + pick(g, "a", `"b c"`, "x1"))
		}
	}
	switch g.n(5) {
	case 0, 1:
		b.WriteString(" FROM " + pick(g, "patients", "audit_log", "patients p JOIN audit_log a ON a.id = p.id"))
	case 2:
		if f, ok := g.setofFunc(); ok {
			b.WriteString(" FROM " + g.call(f, depth) + " AS f")
		}
	case 3:
		if depth > 0 {
			b.WriteString(" FROM (" + g.selectStmt(depth-1) + ") s")
		}
	}
	if g.chance(0.3) {
		b.WriteString(" WHERE " + g.expr(depth) + " IS NOT NULL")
	}
	if g.chance(0.1) {
		b.WriteString(" ORDER BY 1")
	}
	if g.chance(0.1) {
		b.WriteString(" LIMIT " + fmt.Sprint(g.n(5)))
	}
	if g.chance(0.1) && depth > 0 {
		b.WriteString(" UNION ALL " + g.selectStmt(depth-1))
	}
	return b.String()
}

func (g *scriptGen) expr(depth int) string {
	switch g.n(12) {
	case 0, 1, 2:
		return g.literal()
	case 3:
		return pick(g, "id", "name", "ssn", "msg", "1", "current_user", "now()")
	case 4:
		if depth > 0 {
			return "(" + g.selectStmt(depth-1) + " LIMIT 1)"
		}
	case 5:
		return g.expr(depth) + pick(g, " || ", " = ", " + ", " IS DISTINCT FROM ") + g.expr(depth)
	case 6:
		return "CASE WHEN " + g.expr(depth) + " IS NULL THEN " + g.literal() + " END"
	case 7:
		return "(" + g.literal() + ")::" + pick(g, "text", "int", "bytea", "regclass", "tsquery", "json")
	}
	return g.call(g.function(), depth)
}

func (g *scriptGen) function() fnSig {
	if len(g.volatile) > 0 && g.chance(0.35) {
		return g.volatile[g.n(len(g.volatile))]
	}
	if len(g.funcs) == 0 {
		return fnSig{name: "lower", args: []string{"text"}}
	}
	return g.funcs[g.n(len(g.funcs))]
}

func (g *scriptGen) setofFunc() (fnSig, bool) {
	for range 20 {
		if f := g.function(); f.setof {
			return f, true
		}
	}
	return fnSig{}, false
}

func (g *scriptGen) call(f fnSig, depth int) string {
	args := make([]string, len(f.args))
	for i, typ := range f.args {
		args[i] = g.arg(f, typ, depth)
	}
	name := f.name
	switch g.n(10) {
	case 0:
		name = "pg_catalog." + name
	case 1:
		name = `"` + name + `"`
	}
	return name + "(" + strings.Join(args, ", ") + ")"
}

// arg is a value of typ, biased towards values that make functions do
// something: the canary's pid for backend functions, real relation and
// setting names, SQL text for the functions that run it.
func (g *scriptGen) arg(f fnSig, typ string, depth int) string {
	switch typ {
	case "integer", "bigint", "smallint":
		if strings.Contains(f.name, "backend") && g.chance(0.7) {
			return "(SELECT pid FROM pg_stat_activity WHERE application_name = 'fz-canary' LIMIT 1)"
		}
		return pick(g, "0", "1", "42", "-1", "4242")
	case "oid":
		return pick(g, "0", "4242", "'audit_log'::regclass::oid", "(SELECT min(oid) FROM pg_largeobject_metadata)")
	case "numeric", "real", "double precision":
		return pick(g, "0", "1.5", "42")
	case "boolean":
		return pick(g, "true", "false")
	case "text", "character varying", "name", "cstring", `"char"`, "character":
		if strings.Contains(f.name, "xml") || strings.HasPrefix(f.name, "ts_") {
			return pick(g, "'select 1'", "'select pg_advisory_lock(7)'", "'select nextval(''counter'')'",
				"'select set_config(''default_transaction_read_only'', ''off'', false)::text'", "'public'", "'patients'")
		}
		if strings.Contains(f.name, "config") || strings.Contains(f.name, "setting") {
			return pick(g, "'default_transaction_read_only'", "'off'", "'standard_conforming_strings'", "'search_path'")
		}
		if strings.Contains(f.name, "notify") {
			return pick(g, "'fz'", "'phigate'", "'x'")
		}
		return g.stringLit()
	case "regclass":
		return pick(g, "'audit_log'", "'counter'", "'audit_log_id_seq'", "'patients'")
	case "regproc", "regprocedure":
		return "'lower'"
	case "bytea":
		return pick(g, `'\x41'::bytea`, "'x'::bytea", "decode('00', 'hex')")
	case "json", "jsonb":
		return "'{}'::" + typ
	case "xml":
		return "'<a/>'::xml"
	case "tsvector", "tsquery":
		return "'a'::" + typ
	case "date", "timestamp without time zone", "timestamp with time zone":
		return "now()::" + typ
	case "interval":
		return "'1 second'::interval"
	case "uuid":
		return "'00000000-0000-0000-0000-000000000000'::uuid"
	case "anyelement", "anycompatible", "anynonarray", `"any"`:
		return g.literal()
	case "refcursor":
		return "'c0'"
	}
	if depth > 0 && g.chance(0.2) {
		return "(" + g.expr(depth-1) + ")::" + typ
	}
	return "NULL::" + typ
}

func (g *scriptGen) literal() string {
	switch g.n(8) {
	case 0:
		return pick(g, "0", "1", "-2", "1.5", "1e3", "TRUE", "NULL")
	case 1:
		return pick(g, "B'101'", "X'1F'", "'2020-01-01'::date", "interval '1 day'")
	}
	return g.stringLit()
}

// stringLit spells a string in one of SQL's syntaxes, with content chosen
// to stress a lexer: quotes, backslashes, dollars, comment starters and
// semicolons.
func (g *scriptGen) stringLit() string {
	body := pick(g, "x", "a;b", "it''s", `\`, `\'`, "$$", "--", "/*", "*/", "'' ; ''", "é", "\\\\", "$t$")
	switch g.n(8) {
	case 0:
		return "E'" + strings.ReplaceAll(body, `\'`, `\\'`) + "'"
	case 1:
		return `U&'d\0061t\+000061'`
	case 2:
		if !strings.Contains(body, "$$") {
			return "$$" + strings.ReplaceAll(body, "''", "'") + "$$"
		}
	case 3:
		if !strings.Contains(body, "$q$") {
			return "$q$" + strings.ReplaceAll(body, "''", "'") + "$q$"
		}
	case 4:
		return "N'" + strings.ReplaceAll(body, `\`, "") + "'"
	}
	if strings.HasSuffix(body, `\`) || strings.Contains(body, `\'`) {
		body = strings.ReplaceAll(body, `\`, "b")
	}
	return "'" + body + "'"
}
