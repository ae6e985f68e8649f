package pgwire

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/change"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// Snapshots of data changes (issue 10): for an UPDATE, DELETE, INSERT ...
// ON CONFLICT or MERGE the recording holds the rows it touched, read before
// and after it on the session's own upstream connection, within its own
// transaction and under its role. package change plans the reads; this
// file runs them. The protocol, run by the frontend before it forwards the
// agent's statement M:
//
//  1. Quiesce: flush, and wait until the server has answered everything
//     before M (a Flush makes it answer within a pipeline), so that its
//     transaction state is known exactly (txState). A pipeline that failed
//     already, or an aborted transaction, leaves M to fail: "none" event.
//  2. Outside a transaction block phigate opens one (BEGIN) and keeps it
//     open until the agent's transaction would have ended: after M's Query,
//     or at the Sync ending its extended-protocol pipeline. That message's
//     ReadyForQuery is held (wrap), and a COMMIT (ROLLBACK after an error)
//     answers in its place; COMMIT's error, if any, is the agent's, and a
//     wrapped Query's last CommandComplete is held until then, since an
//     implicit transaction commits before it. In a pipeline, the block is
//     opened only when the rest of it, up to its Sync, has arrived and runs
//     nothing that behaves otherwise in a block (pipelineRest); else the
//     change is recorded as not analysed.
//  3. Inside the block every read is a step: SAVEPOINT, the read, RELEASE,
//     Sync, on named statements and portals of phigate's own, whose answers
//     the backend keeps from the agent. A read that fails is undone with
//     ROLLBACK TO SAVEPOINT, so the agent's transaction is as it was; a
//     step that cannot be undone ends the session.
//  4. Resolve every relation the reads name with to_regclass in the
//     session (search_path, temporary tables): a read of a view, a foreign
//     table or a table with rules could run code M would not, so the
//     statement is then not analysed, and nothing was read. Names the
//     session resolved before are not resolved again: the before read's
//     step starts with a guard that fails, in the server, unless each
//     still resolves to the same relation of the same kind (guardSQL);
//     then the step is undone and the names are resolved.
//  5. The before read, with M's own lock; its rows masked as results are
//     (raw values sealed to the auditors), recorded.
//  6. M, then the after read (DELETE has none): in the simple protocol in
//     M's own flush, so that the server runs it right after M; in the
//     extended protocol once M has answered (see send).
//
// Durability (write-ahead sessions; see snapWait): M runs inside a
// transaction block, which commits only on a later flush (the agent's
// COMMIT, or phigate's at the end of its block) that waits for every
// event, and M's output waits for its events. phigate's reads are its own
// and change nothing, so they go out without waiting, and the before rows
// need not be durable before M runs. M itself goes out without waiting
// when it may run ahead (forwarding: nothing it does can reach past the
// block), else once its command event is durable. A crash in between
// loses the connection and so M's uncommitted effect with it.
//
// The agent receives the same bytes as without snapshots: same tags,
// rows, errors and ReadyForQuery statuses (TestSnapshotClientViewUnchanged).
// The reads run under the session's role, in its transaction, with its
// parameters; their conditions are M's own parse tree (package change).

// snapWait is what a flush waits for before it goes out during a
// snapshot (conn.go's toUpstream in write-ahead sessions).
type snapWait uint8

const (
	waitAll     snapWait = iota // every event appended so far (outside snapshots)
	waitNothing                 // only phigate's reads and effect-free messages are buffered
	waitCommand                 // the statement: its command event (conn.fe.snapCmd)
)

// snapshotSavepoint is the savepoint every read runs under.
const snapshotSavepoint = "phigate_snapshot"

// resolveSQL resolves relation names as the session would (to_regclass
// follows its search_path, temporary schema first): their OIDs, kinds and
// whether rules rewrite statements on them. Every name is qualified, so no
// look-alike on the search path is called.
// Its last column is the resolution in one string, as guardSQL compares it.
const resolveSQL = `SELECT u.i, c.oid, c.relkind, c.relhasrules, ` + resolutionExpr + `
FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS u(name, i)
LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(u.name)::pg_catalog.oid`

// resolutionExpr is one name's resolution as text: its OID, kind and
// whether it has rules; "" for a name that resolves to nothing.
const resolutionExpr = `pg_catalog.concat_ws(' ', c.oid, c.relkind, c.relhasrules)`

// guardSQL is the guard for n names: it checks, in the server, that each
// name ($1, $3, ...) still resolves as it did when phigate resolved it
// ($2, $4, ...: resolutionExpr's strings, "" for none); else it fails
// (division by zero), and so does the rest of its step, before the read
// after it can touch a relation that has become something else (a view,
// a table with rules) since. It returns no rows. One scalar subquery per
// name costs the server about a third less than a join over unnest.
func guardSQL(n int) string {
	if n < len(guards) {
		return guards[n]
	}
	return writeGuard(n)
}

// guards are guardSQL(n) for the usual numbers of names.
var guards = func() []string {
	g := make([]string, 9)
	for n := range g {
		g[n] = writeGuard(n)
	}
	return g
}()

func writeGuard(n int) string {
	var b strings.Builder
	b.WriteString("SELECT WHERE 1 OPERATOR(pg_catalog./) (")
	for i := range n {
		if i > 0 {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "COALESCE((SELECT %s FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($%d::pg_catalog.text)::pg_catalog.oid), '') OPERATOR(pg_catalog.=) $%d::pg_catalog.text",
			resolutionExpr, 2*i+1, 2*i+2)
	}
	if n == 0 {
		b.WriteString("true")
	}
	b.WriteString(")::pg_catalog.int4 OPERATOR(pg_catalog.<) 0")
	return b.String()
}

// resolution is what the resolve step found for a plan's relations, and
// passed checkRelations with: the target's OID and each name's
// resolutionExpr string, for guardSQL.
type resolution struct {
	target uint32
	want   [][]byte
}

// maxResolved bounds a session's remembered resolutions.
const maxResolved = 256

func resolvedKey(names []string) string { return strings.Join(names, "\x00") }

// remember keeps a resolution that passed checkRelations.
func (c *conn) remember(names []string, target uint32, rows [][][]byte) {
	want := make([][]byte, len(names))
	for _, r := range rows {
		i, _ := strconv.Atoi(string(r[0]))
		want[i-1] = append([]byte(nil), r[4]...)
	}
	if c.fe.resolved == nil || len(c.fe.resolved) >= maxResolved {
		c.fe.resolved = map[string]resolution{}
	}
	c.fe.resolved[resolvedKey(names)] = resolution{target: target, want: want}
}

// oidTextArray is text[]'s type OID, oidText text's.
const (
	oidTextArray = 1009
	oidText      = 25
)

// changeRun is one statement's snapshot in progress. The frontend runs it;
// the backend writes what the statement did, then closes done.
type changeRun struct {
	plan *change.Plan
	ref  record.ChangeRef
	done chan struct{}
	// Written by the backend before done is closed.
	tag       string
	suspended bool // its portal was suspended: the count comes later
	failed    *record.SQLError
}

// step is a group of messages phigate sends on the session for a
// snapshot. Their answers go to the step, not the agent (but for pass
// steps, see below); done is closed at the step's last answer.
type step struct {
	done chan struct{}
	// pass: errors go to the agent, as the answer to errFor (the message
	// the server would have answered with them), and so does the step's
	// closing ReadyForQuery; release ends a wrap (its held completion).
	pass    bool
	errFor  *expect
	release *wrap
	// reason explains a hidden COMMIT or ROLLBACK in the change outcome.
	reason string
	// read collects the rows of the step's read, if it has one.
	read *snapRead
	// Written by the backend before done is closed.
	failed  bool
	errCode string
	status  byte
}

func newStep() *step { return &step{done: make(chan struct{})} }

// wrap is the transaction block phigate opened in place of an implicit
// transaction. The backend holds the ReadyForQuery of the message that
// would have ended the implicit transaction (and a Query's last
// CommandComplete), then closes ready.
type wrap struct {
	ready  chan struct{}
	status byte
	// errFor is the agent's message whose answer the ReadyForQuery was:
	// COMMIT's error answers it.
	errFor *expect
	// held is the CommandComplete of a wrapped Query's last statement.
	held    []byte
	heldCmd *command
	heldTag string
}

func newWrap() *wrap { return &wrap{ready: make(chan struct{})} }

// txState is the server's transaction state as its answers so far tell
// it (conn.tx, under mu); exact once every message sent is answered.
type txState struct {
	status   byte // 'I', 'T' (a transaction block) or 'E' (a failed one)
	skipping bool // an extended-protocol message failed: the server skips to Sync
}

// pendingChange is a change whose transaction has not ended yet.
type pendingChange struct {
	ref record.ChangeRef
	seq uint64 // serverState.seq when it completed, for ROLLBACK TO
}

// errSnapshotLost ends a session whose transaction phigate could not
// restore after a snapshot read.
var errSnapshotLost = errors.New("snapshot: the transaction could not be restored")

// snapshotsOn reports whether this session records data changes.
func (c *conn) snapshotsOn() bool { return c.srv.changes != nil }

// changeVerdict is what phigate does about one statement of a command: a
// plan to read around it, or the reason it does not (op says which kind of
// change), or nothing.
type changeVerdict struct {
	plan   *change.Plan
	op     change.Op
	reason string
}

// changeVerdicts decides about each statement of a command about to run
// (resolved: with EXECUTEs and look-alike calls resolved).
func (c *conn) changeVerdicts(stmts, resolved []sqlclass.Statement) []changeVerdict {
	out := make([]changeVerdict, len(stmts))
	analysed := 0
	for i, s := range stmts {
		r := s
		if i < len(resolved) {
			r = resolved[i]
		}
		v := &out[i]
		switch r.Class {
		case policy.Read, policy.Tx, policy.Session:
			// It changes no rows itself (its class would be write), but
			// the functions it calls may.
			if names := adminCalls(r.Calls); names != "" {
				v.op, v.reason = change.OpOther, "it calls "+names+", which may change rows phigate cannot see"
			}
			continue
		}
		plan, err := c.srv.changes.Analyze(s.Text)
		var na *change.NotAnalysed
		switch {
		case errors.As(err, &na):
			v.op, v.reason = na.Op, na.Reason
		case err != nil:
			v.op, v.reason = change.OpOther, "phigate could not parse the statement alone"
		case plan != nil:
			v.plan, v.op = plan, plan.Op
			if names := callNames(r.Calls); names != "" {
				v.plan, v.reason = nil, "it calls "+names+", which phigate does not run a second time in its reads"
			} else {
				analysed++
			}
		case s.Execute != "" && r.Class == policy.Write:
			v.op, v.reason = change.OpOther, "EXECUTE of a prepared statement: phigate reads around statements sent as such"
		case adminCalls(r.Calls) != "":
			v.op, v.reason = change.OpOther, "it calls "+adminCalls(r.Calls)+", which may change rows phigate cannot see"
		}
	}
	if analysed > 1 || (analysed == 1 && len(stmts) > 1) {
		for i := range out {
			if out[i].plan != nil {
				out[i].plan, out[i].reason = nil, "it is one of several statements in one query string; phigate reads around a data change sent alone"
			}
		}
	}
	return out
}

func callNames(calls []policy.Call) string {
	var names []string
	for _, c := range calls {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// adminCalls names the calls of functions that may do anything (not the
// built-ins with a known effect, such as nextval or pg_notify).
func adminCalls(calls []policy.Call) string {
	var names []string
	for _, c := range calls {
		if c.Class == policy.Admin {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// recordNone records that a statement's change has no snapshot, and why.
func (c *conn) recordNone(cmd uint64, stmt int, op change.Op, why string) error {
	return c.appendChange(&record.Change{Command: cmd, Statement: stmt, Phase: record.ChangeNone, Op: string(op), Reason: why})
}

// appendChange records a change event; the agent's output waits for it.
func (c *conn) appendChange(ch *record.Change) error {
	lsn, err := c.rec.Append(&record.Event{Kind: record.KindChange, Change: ch})
	if err != nil {
		return c.recordingFailed(err)
	}
	if uint64(lsn) > c.cmdPos.Load() {
		c.cmdPos.Store(uint64(lsn))
	}
	return nil
}

// recordVerdicts records a "none" event for every statement phigate does
// not read around, and returns the one plan to run, if any.
func (c *conn) recordVerdicts(cmd *command, vs []changeVerdict) (*change.Plan, int, error) {
	var plan *change.Plan
	at := 0
	for i, v := range vs {
		switch {
		case v.plan != nil:
			plan, at = v.plan, i
		case v.reason != "":
			if err := c.recordNone(cmd.id, i, v.op, "not analysed: "+v.reason); err != nil {
				return nil, 0, err
			}
		}
	}
	return plan, at, nil
}

// extParams are the parameters of an extended-protocol execution, which
// every read binds again: the statement's conditions may use them.
type extParams struct {
	values  [][]byte
	formats []int16 // one per value
	oids    []uint32
}

// portalParams returns p's parameters for the reads, asking the server
// for the statement's parameter types when no Describe told them yet.
// ok is false when they cannot be known.
func (c *conn) portalParams(ctx context.Context, p *portalInfo) (*extParams, bool, error) {
	ep := &extParams{values: p.rawParams}
	for i := range p.rawParams {
		ep.formats = append(ep.formats, formatAt(p.paramFormats, i))
	}
	if len(p.rawParams) == 0 {
		return ep, true, nil
	}
	st := p.stmt
	if st == nil {
		return nil, false, nil
	}
	c.mu.Lock()
	oids, known := st.paramOIDs, st.paramsKnown
	same := c.server.stmts[st.name] == st
	c.mu.Unlock()
	if !known && len(st.parseOIDs) == len(p.rawParams) && !slices.Contains(st.parseOIDs, 0) {
		oids, known = st.parseOIDs, true
	}
	if !known && same {
		// Describing the statement changes nothing on the server.
		s := newStep()
		c.push(&expect{kind: expDescribeStmt, hidden: true, step: s, stmt: st})
		if err := c.writeMsg(&pgproto3.Describe{ObjectType: 'S', Name: st.name}); err != nil {
			return nil, false, err
		}
		if err := c.endStep(ctx, s, false); err != nil {
			return nil, false, err
		}
		c.mu.Lock()
		oids, known = st.paramOIDs, st.paramsKnown
		c.mu.Unlock()
	}
	if !known || len(oids) != len(p.rawParams) {
		return nil, false, nil
	}
	ep.oids = oids
	return ep, true, nil
}

// snapshot runs the snapshot protocol (see the top of this file) around
// statement stmt of cmd, whose plan is plan. portal is the portal an
// Execute runs (nil: cmd is a Query); forward sends the agent's message,
// holding its completion in hold when that is not nil.
func (c *conn) snapshot(ctx context.Context, cmd *command, stmt int, plan *change.Plan, portal *portalInfo, forward func(hold *wrap) error) error {
	query := portal == nil
	none := func(why string) error {
		if err := c.recordNone(cmd.id, stmt, plan.Op, why); err != nil {
			return err
		}
		return c.send(ctx, query, forward, nil, nil)
	}
	cmdAt := c.cmdPos.Load() // the command event: appended, maybe not durable yet
	if err := c.quiesce(ctx); err != nil {
		return err
	}
	c.fe.snapWait, c.fe.snapCmd = waitNothing, cmdAt
	defer func() { c.fe.snapWait = waitAll }()
	tx := c.txNow()
	switch {
	case tx.skipping:
		return none("not run: an earlier message of its pipeline failed, so the server skips it")
	case tx.status == 'E':
		return none("not run: its transaction is aborted, so the server refuses it")
	}
	if tx.status == 'I' && !query {
		if why := c.pipelineRest(); why != "" {
			return none("not analysed: " + why)
		}
	}
	var ext *extParams
	if !query {
		var ok bool
		var err error
		if ext, ok, err = c.portalParams(ctx, portal); err != nil {
			return err
		} else if !ok {
			return none("not analysed: the types of its parameters are unknown")
		}
	}

	// Outside a transaction block, phigate's block opens first, in the
	// same round trip as the first step.
	begin := tx.status == 'I'
	if begin {
		c.fe.wrap = newWrap()
	}
	names := &extParams{values: [][]byte{textArray(plan.Relations)}, formats: []int16{0}, oids: []uint32{oidTextArray}}

	// Relations resolved before: checked by the guard in the before read's
	// step. When the guard (or the read) fails, the step is undone and the
	// relations are resolved again.
	var before *snapRead
	var bs *step
	var keys []int16
	var keyErr error
	var table string
	if r, ok := c.fe.resolved[resolvedKey(plan.Relations)]; ok {
		keys, keyErr = c.cat.keyOf(ctx, r.target)
		table, _ = c.cat.relationName(ctx, r.target)
		before, bs = c.beforeRead(cmd, stmt, plan, r.target, keys)
		if err := c.hiddenBegin(bs, &begin); err != nil {
			return err
		}
		guard := &extParams{}
		for i, name := range plan.Relations {
			guard.values = append(guard.values, []byte(name), r.want[i])
			guard.formats = append(guard.formats, 0, 0)
			guard.oids = append(guard.oids, oidText, oidText)
		}
		if err := c.hiddenExec(bs, "SAVEPOINT "+snapshotSavepoint, nil, nil); err != nil {
			return err
		}
		if err := c.hiddenExec(bs, guardSQL(len(plan.Relations)), guard, nil); err != nil {
			return err
		}
		if err := c.hiddenExec(bs, plan.Before, ext, before); err != nil {
			return err
		}
		if err := c.hiddenExec(bs, "RELEASE SAVEPOINT "+snapshotSavepoint, nil, nil); err != nil {
			return err
		}
		if err := c.endStep(ctx, bs, true); err != nil {
			return err
		}
		if bs.failed {
			if err := c.restore(ctx); err != nil {
				return err
			}
			delete(c.fe.resolved, resolvedKey(plan.Relations))
			bs = nil
		}
	}
	if bs == nil {
		// Which relations the reads name, resolved in the session.
		res := newStep()
		res.read = &snapRead{raw: true, bound: len(plan.Relations)}
		if err := c.hiddenBegin(res, &begin); err != nil {
			return err
		}
		if err := c.inSavepoint(res, resolveSQL, names); err != nil {
			return err
		}
		if err := c.endStep(ctx, res, true); err != nil {
			return err
		}
		var why string
		var target uint32
		if res.failed {
			if err := c.restore(ctx); err != nil {
				return err
			}
			why = "not analysed: phigate could not resolve the relations it names (SQLSTATE " + res.errCode + ")"
		} else {
			target, why = checkRelations(plan, res.read.rawRows)
		}
		if why != "" {
			if err := c.recordNone(cmd.id, stmt, plan.Op, why); err != nil {
				return err
			}
			return c.send(ctx, query, forward, nil, nil)
		}
		c.remember(plan.Relations, target, res.read.rawRows)
		keys, keyErr = c.cat.keyOf(ctx, target)
		table, _ = c.cat.relationName(ctx, target)

		before, bs = c.beforeRead(cmd, stmt, plan, target, keys)
		if err := c.inSavepoint(bs, plan.Before, ext); err != nil {
			return err
		}
		if err := c.endStep(ctx, bs, true); err != nil {
			return err
		}
	}
	ev := before.event(plan, table)
	ev.Read = plan.Before
	if bs.failed {
		if err := c.restore(ctx); err != nil {
			return err
		}
		ev.Columns, ev.Rows, ev.Base64, ev.More, ev.Masked = nil, nil, nil, false, nil
		ev.Reason = "the read failed (SQLSTATE " + bs.errCode + "); the statement ran without it"
	}
	if err := c.appendChange(ev); err != nil {
		return err
	}
	run := &changeRun{plan: plan, ref: record.ChangeRef{Command: cmd.id, Statement: stmt}, done: make(chan struct{})}
	cmd.change = run
	return c.send(ctx, query, forward, run, c.planAfter(run, before, bs.failed, keys, keyErr, table, ext))
}

// beforeRead is the before read of plan on target, and its step.
func (c *conn) beforeRead(cmd *command, stmt int, plan *change.Plan, target uint32, keys []int16) (*snapRead, *step) {
	before := &snapRead{phase: record.ChangeBefore, cmd: cmd.id, stmt: stmt, bound: c.srv.cfg.ChangeSnapshotRows, target: target}
	if !plan.NoAfter {
		before.keys = keys
	}
	s := newStep()
	s.read = before
	return before, s
}

// hiddenBegin queues phigate's BEGIN in step s when *begin says the block
// is still to open, once.
func (c *conn) hiddenBegin(s *step, begin *bool) error {
	if !*begin {
		return nil
	}
	*begin = false
	return c.hiddenExec(s, "BEGIN", nil, nil)
}

// send forwards the agent's message. In a Query under phigate's block its
// completion is held and the block ends after it. With run, it reads the
// rows after the statement (a) before anything more of the agent's goes
// out: in the simple protocol the after read goes in the statement's own
// flush (the server runs it after the statement; if the statement fails,
// the read fails with it, in the aborted block, and is not undone); in the
// extended protocol only once the statement has answered, since a failure
// there makes the server skip to the next Sync, which must be the agent's.
func (c *conn) send(ctx context.Context, query bool, forward func(hold *wrap) error, run *changeRun, a *afterRead) error {
	var hold *wrap
	if query && c.fe.wrap != nil {
		hold = c.fe.wrap
		c.fe.wrap = nil // the Query ends it
	}
	// A statement read around waits for its command event only (its before
	// rows are durable before its output and before its block commits);
	// one that is not waits for everything, as any command does.
	c.fe.snapWait = waitAll
	switch {
	case run != nil && c.fe.runAhead:
		c.fe.snapWait = waitNothing // its block commits later (forwarding)
	case run != nil:
		c.fe.snapWait = waitCommand
	}
	if err := forward(hold); err != nil {
		return err
	}
	if run != nil {
		if query {
			if err := c.queueAfter(a); err != nil {
				return err
			}
		} else {
			// The server keeps an Execute's answer until Flush or Sync.
			if err := c.writeMsg(&pgproto3.Flush{}); err != nil {
				return err
			}
		}
		if err := c.fe.uout.flush(); err != nil {
			return c.recordingFailed(err)
		}
		if err := c.await(ctx, run.done); err != nil {
			return err
		}
		c.fe.snapWait = waitNothing // the after read
		if !query && run.failed == nil {
			if err := c.queueAfter(a); err != nil {
				return err
			}
		}
		if err := c.finishAfter(ctx, run, a); err != nil {
			return err
		}
	}
	c.fe.snapWait = waitAll
	if hold != nil {
		return c.endWrap(ctx, hold)
	}
	return nil
}

// afterRead is a statement's after read: planned before the statement
// runs (it finds the rows again by the before rows' keys), recorded once
// the statement and the read have answered.
type afterRead struct {
	plan   *change.Plan
	table  string
	sql    string // "": nothing to read, and why says why
	why    string
	params *extParams
	read   *snapRead
	step   *step // sent (nil: not)
}

// planAfter plans the after read of run's statement.
func (c *conn) planAfter(run *changeRun, before *snapRead, beforeFailed bool, keys []int16, keyErr error, table string, ext *extParams) *afterRead {
	plan := run.plan
	a := &afterRead{plan: plan, table: table}
	if plan.NoAfter {
		a.why = "a DELETE leaves no rows to read"
		return a
	}
	var names []string
	rows := 0
	if !beforeFailed && keyErr == nil && len(keys) > 0 && len(before.keyNames) == len(keys) {
		names, rows = before.keyNames, len(before.keyValues)
	}
	nparams := 0
	if ext != nil {
		nparams = len(ext.values)
	}
	sql, err := plan.After(names, rows, nparams+1)
	switch {
	case err != nil:
		a.why = err.Error()
	case sql != "":
	case keyErr != nil:
		a.why = "not read: the table's key could not be read from the catalog"
	case beforeFailed:
		a.why = "not read: the rows are found again by the keys of the before rows, which could not be read"
	case len(keys) == 0:
		a.why = "not read: the table has no primary key or unique not-null key to find the rows again by"
	case names == nil:
		a.why = "not read: the key columns were not among the columns the before read returned"
	case rows == 0:
		a.why = "no rows to read: the before read found none"
	default:
		a.why = "not read: the statement assigns the key the rows would be found again by"
	}
	if err != nil || sql == "" {
		return a
	}
	a.sql = sql
	a.params = &extParams{}
	if ext != nil {
		a.params.values = append(a.params.values, ext.values...)
		a.params.formats = append(a.params.formats, ext.formats...)
		a.params.oids = append(a.params.oids, ext.oids...)
	}
	for _, row := range before.keyValues[:rows] {
		for j, v := range row {
			a.params.values = append(a.params.values, v)
			a.params.formats = append(a.params.formats, 0)
			a.params.oids = append(a.params.oids, before.keyTypes[j])
		}
	}
	a.read = &snapRead{phase: record.ChangeAfter, cmd: run.ref.Command, stmt: run.ref.Statement, bound: c.srv.cfg.ChangeSnapshotRows}
	return a
}

// queueAfter writes the after read's step, ended by its Sync (phigate's
// reads run in a transaction block, where a Sync ends nothing), without
// flushing it.
func (c *conn) queueAfter(a *afterRead) error {
	if a.sql == "" {
		return nil
	}
	a.step = newStep()
	a.step.read = a.read
	if err := c.inSavepoint(a.step, a.sql, a.params); err != nil {
		return err
	}
	return c.stepSync(a.step)
}

// finishAfter waits for the after read, if one was sent, and records the
// rows as the statement left them, with its true count or its error.
func (c *conn) finishAfter(ctx context.Context, run *changeRun, a *afterRead) error {
	if a.step != nil {
		if err := c.fe.uout.flush(); err != nil {
			return c.recordingFailed(err)
		}
		if err := c.await(ctx, a.step.done); err != nil {
			return err
		}
	}
	ev := &record.Change{Command: run.ref.Command, Statement: run.ref.Statement, Phase: record.ChangeAfter, Op: string(a.plan.Op), Table: a.table}
	if run.failed != nil {
		// A read sent with the statement failed in the block the
		// statement aborted, before its savepoint: nothing to undo.
		ev.Error = run.failed
		ev.Reason = "the statement failed: it changed nothing"
		return c.appendChange(ev)
	}
	ev.Affected = tagCount(run.tag)
	note := func(why string) string {
		if run.suspended {
			why += "; its portal was suspended, so the count is in the result of the Execute that completes it"
		}
		return strings.TrimPrefix(why, "; ")
	}
	if a.step == nil {
		ev.Reason = note(a.why)
		return c.appendChange(ev)
	}
	got := a.read.event(a.plan, a.table)
	got.Read, got.Affected = a.sql, ev.Affected
	got.Reason = note(got.Reason)
	if a.step.failed {
		if err := c.restore(ctx); err != nil {
			return err
		}
		got.Columns, got.Rows, got.Base64, got.More, got.Masked = nil, nil, nil, false, nil
		got.Reason = "the read failed (SQLSTATE " + a.step.errCode + ")"
	}
	return c.appendChange(got)
}

// tagCount is the row count a command tag ends with.
func tagCount(tag string) int64 {
	if i := strings.LastIndexByte(tag, ' '); i > 0 {
		if n, err := strconv.ParseInt(tag[i+1:], 10, 64); err == nil {
			return n
		}
	}
	return 0
}

// checkRelations reads the resolve step's rows: the target must be a
// table (plain or partitioned) without rules, and every other relation a
// table, a materialized view or a sequence, whose reading runs no code of
// anyone's; names that resolve to nothing are CTEs (or missing, and then
// the statement fails too). It returns the target's OID, or why not.
func checkRelations(plan *change.Plan, rows [][][]byte) (uint32, string) {
	if len(rows) != len(plan.Relations) {
		return 0, "not analysed: phigate could not resolve the relations it names"
	}
	var target uint32
	for _, r := range rows {
		if len(r) != 5 {
			return 0, "not analysed: phigate could not resolve the relations it names"
		}
		i, _ := strconv.Atoi(string(r[0]))
		if i < 1 || i > len(plan.Relations) {
			return 0, "not analysed: phigate could not resolve the relations it names"
		}
		name := plan.Relations[i-1]
		if r[1] == nil {
			if i == 1 {
				return 0, "not run: its target " + name + " is no relation in this session, so the server refuses the statement"
			}
			continue
		}
		kind, rules := string(r[2]), string(r[3]) == "t"
		if i == 1 {
			oid, _ := strconv.ParseUint(string(r[1]), 10, 32)
			target = uint32(oid)
			switch {
			case kind == "v":
				return 0, "not analysed: its target " + name + " is a view; reading it could run code the statement would not"
			case kind == "f":
				return 0, "not analysed: its target " + name + " is a foreign table; reading it runs a query on another server"
			case kind != "r" && kind != "p":
				return 0, "not analysed: its target " + name + " is not a table"
			case rules:
				return 0, "not analysed: rules rewrite statements on its target " + name
			}
			continue
		}
		switch kind {
		case "r", "p", "m", "S":
		case "v":
			return 0, "not analysed: it reads the view " + name + "; reading it again could run code the statement runs once"
		case "f":
			return 0, "not analysed: it reads the foreign table " + name + "; reading it again runs a query on another server"
		default:
			return 0, "not analysed: it reads " + name + ", which phigate does not read again"
		}
	}
	if target == 0 {
		return 0, "not analysed: phigate could not resolve its target"
	}
	return target, ""
}

// textArray is the text form of a text[] holding elems.
func textArray(elems []string) []byte {
	b := []byte{'{'}
	for i, e := range elems {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		for j := 0; j < len(e); j++ {
			if e[j] == '"' || e[j] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, e[j])
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// quiesce flushes and waits until the server has answered every message
// sent so far (a Flush makes it answer within an open pipeline).
func (c *conn) quiesce(ctx context.Context) error {
	c.mu.Lock()
	idle := len(c.queue) == 0
	c.mu.Unlock()
	if idle && len(c.fe.uout.buf) == 0 {
		return nil // everything sent is answered, and nothing is unsent
	}
	if err := c.writeMsg(&pgproto3.Flush{}); err != nil {
		return err
	}
	if err := c.fe.uout.flush(); err != nil {
		return c.recordingFailed(err)
	}
	for {
		c.mu.Lock()
		idle := len(c.queue) == 0
		c.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-c.progress:
		case <-c.backendDone:
			return errSessionEnding
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// await waits for done, or the end of the session.
func (c *conn) await(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-c.backendDone:
		return errSessionEnding
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *conn) txNow() txState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tx
}

// hiddenName returns a statement and portal name the session does not
// use. Names the agent might create after it are no concern: a step's
// statement and portal are closed before anything of the agent's runs.
func (c *conn) hiddenName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		c.fe.snapSeq++
		name := "phigate_snapshot_" + strconv.Itoa(c.fe.snapSeq)
		if c.server.stmts[name] == nil && c.server.portals[name] == nil {
			return name
		}
	}
}

// hiddenExec queues one statement of step s: Parse, Bind, Describe (when
// s reads rows), Execute, Close, on a statement and portal of phigate's.
func (c *conn) hiddenExec(s *step, sql string, p *extParams, read *snapRead) error {
	name := c.hiddenName()
	parse := &pgproto3.Parse{Name: name, Query: sql}
	bind := &pgproto3.Bind{DestinationPortal: name, PreparedStatement: name}
	if p != nil {
		parse.ParameterOIDs = p.oids
		bind.Parameters, bind.ParameterFormatCodes = p.values, p.formats
	}
	msgs := []pgproto3.FrontendMessage{parse, bind}
	c.push(&expect{kind: expParse, hidden: true, step: s})
	c.push(&expect{kind: expBind, hidden: true, step: s})
	if read != nil {
		msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P', Name: name})
		c.push(&expect{kind: expDescribePortal, hidden: true, step: s, read: read})
	}
	msgs = append(msgs, &pgproto3.Execute{Portal: name}, &pgproto3.Close{ObjectType: 'P', Name: name}, &pgproto3.Close{ObjectType: 'S', Name: name})
	c.push(&expect{kind: expExecute, hidden: true, step: s, read: read})
	c.push(&expect{kind: expClose, hidden: true, step: s})
	c.push(&expect{kind: expClose, hidden: true, step: s})
	for _, m := range msgs {
		if err := c.writeMsg(m); err != nil {
			return err
		}
	}
	return nil
}

// inSavepoint queues a read (or any statement) between SAVEPOINT and
// RELEASE, so that its failure can be undone.
func (c *conn) inSavepoint(s *step, sql string, p *extParams) error {
	if err := c.hiddenExec(s, "SAVEPOINT "+snapshotSavepoint, nil, nil); err != nil {
		return err
	}
	if err := c.hiddenExec(s, sql, p, s.read); err != nil {
		return err
	}
	return c.hiddenExec(s, "RELEASE SAVEPOINT "+snapshotSavepoint, nil, nil)
}

// endStep ends step s with a Sync (allowed only in a transaction block,
// where it ends nothing but a failure's skipping) or, without one, marks
// its latest message as its last; then sends it and waits for its answers.
func (c *conn) endStep(ctx context.Context, s *step, sync bool) error {
	if sync {
		if err := c.stepSync(s); err != nil {
			return err
		}
	} else {
		c.markLast(s) // before anything can go out and be answered
		if err := c.writeMsg(&pgproto3.Flush{}); err != nil {
			return err
		}
	}
	if err := c.fe.uout.flush(); err != nil {
		return c.recordingFailed(err)
	}
	return c.await(ctx, s.done)
}

// stepSync queues the Sync that ends step s.
func (c *conn) stepSync(s *step) error {
	c.push(&expect{kind: expSync, hidden: true, step: s, last: true})
	c.fe.batch++
	return c.writeMsg(&pgproto3.Sync{})
}

// markLast marks the latest queued message of s as its last.
func (c *conn) markLast(s *step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.queue) - 1; i >= 0; i-- {
		if c.queue[i].step == s {
			c.queue[i].last = true
			return
		}
	}
	close(s.done) // answered already (nothing queued)
}

// restore undoes a failed read: back to the savepoint, which it then
// releases. A transaction phigate cannot restore ends the session: the
// agent's statements would otherwise meet a state it did not make.
func (c *conn) restore(ctx context.Context) error {
	s := newStep()
	if err := c.hiddenExec(s, "ROLLBACK TO SAVEPOINT "+snapshotSavepoint, nil, nil); err != nil {
		return err
	}
	if err := c.hiddenExec(s, "RELEASE SAVEPOINT "+snapshotSavepoint, nil, nil); err != nil {
		return err
	}
	if err := c.endStep(ctx, s, true); err != nil {
		return err
	}
	if s.failed || s.status != 'T' {
		c.log.Error("snapshot: cannot restore the transaction after a failed read; ending the session")
		c.setFatal(pgError("FATAL", codeInternalError, "phigate could not restore the transaction after reading it for the recording; the session was ended"), "snapshot restore failed")
		return errSnapshotLost
	}
	return nil
}

// endWrap ends the block phigate opened, where the implicit transaction
// would have ended: the agent's message that ends it was sent with hold;
// COMMIT (or ROLLBACK after an error) answers it in its place.
func (c *conn) endWrap(ctx context.Context, w *wrap) error {
	if c.fe.wrap == w {
		c.fe.wrap = nil
	}
	if err := c.fe.uout.flush(); err != nil {
		return c.recordingFailed(err)
	}
	if err := c.await(ctx, w.ready); err != nil {
		return err
	}
	s := newStep()
	s.pass, s.release, s.errFor = true, w, w.errFor
	c.fe.effects.Store(true) // the block commits: every event first
	switch {
	case w.status == 'I':
		// Ended already: the server's state is what the agent's messages
		// made it.
	case w.status == 'T':
		s.reason = "COMMIT of the implicit transaction"
		if err := c.hiddenExec(s, "COMMIT", nil, nil); err != nil {
			return err
		}
	default:
		s.reason = "an error aborted the transaction"
		if err := c.hiddenExec(s, "ROLLBACK", nil, nil); err != nil {
			return err
		}
	}
	c.push(&expect{kind: expSync, hidden: true, step: s, last: true})
	c.fe.batch++
	return c.writeMsg(&pgproto3.Sync{})
}

// blockNeutral are the statement kinds that behave the same in a
// transaction block as in the implicit transaction of a pipeline. Others
// do not: transaction control (BEGIN warns, COMMIT and ROLLBACK would not
// warn, SAVEPOINT, LOCK and DECLARE would not fail), SET LOCAL and SET
// TRANSACTION (would not warn), VACUUM and the like (fail with another
// message).
var blockNeutral = map[string]bool{
	"select_stmt": true, "insert_stmt": true, "update_stmt": true, "delete_stmt": true, "merge_stmt": true,
}

// pipelineRest reads ahead in what the agent has sent, without consuming
// it, to the Sync that ends the pipeline of the Execute being handled; it
// returns why phigate must not open a transaction block for it (see
// restOfPipeline), "" when it may.
func (c *conn) pipelineRest() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return restOfPipeline(c.fe.cin.ahead(), func(sql string) []sqlclass.Statement {
		stmts, _ := c.srv.classes.Classify(sql)
		return stmts
	}, func(name string) []sqlclass.Statement {
		if st := c.server.stmts[name]; st != nil {
			return st.stmts
		}
		return nil
	}, func(name string) []sqlclass.Statement {
		if p := c.server.portals[name]; p != nil {
			return p.stmts
		}
		return nil
	})
}

// restOfPipeline walks the messages in ahead up to the first Sync: the
// rest of a pipeline must have arrived, and hold nothing that would
// behave otherwise in a transaction block than in the implicit
// transaction: only Parse, Bind, Describe, Close and Flush, and Executes
// of statements of a blockNeutral kind (classify classifies a Parse's
// text; stmt and portal name the server's statements and portals). It
// returns why not, or "".
func restOfPipeline(ahead []byte, classify func(string) []sqlclass.Statement, stmt, portal func(string) []sqlclass.Statement) string {
	const notYet = "the rest of its pipeline had not arrived; phigate reads around a change once it sees where its transaction ends"
	parsed := map[string][]sqlclass.Statement{}
	bound := map[string][]sqlclass.Statement{}
	b := ahead
	for {
		if len(b) < 5 {
			return notYet
		}
		typ, n := b[0], int64(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || int64(len(b)) < 1+n {
			return notYet
		}
		body := b[5 : 1+n]
		b = b[1+n:]
		switch typ {
		case 'S':
			return ""
		case 'H', 'D', 'C':
		case 'P':
			var m pgproto3.Parse
			if m.Decode(body) != nil {
				return "its pipeline holds a malformed message"
			}
			parsed[m.Name] = classify(m.Query)
		case 'B':
			var m pgproto3.Bind
			if m.Decode(body) != nil {
				return "its pipeline holds a malformed message"
			}
			stmts, ok := parsed[m.PreparedStatement]
			if !ok {
				stmts = stmt(m.PreparedStatement)
			}
			bound[m.DestinationPortal] = stmts
		case 'E':
			var m pgproto3.Execute
			if m.Decode(body) != nil {
				return "its pipeline holds a malformed message"
			}
			stmts, ok := bound[m.Portal]
			if !ok {
				stmts = portal(m.Portal)
			}
			for _, st := range stmts {
				if !blockNeutral[st.Kind] {
					return "a later statement of its pipeline (" + strings.ReplaceAll(st.Kind, "_", " ") + ") would behave otherwise in the transaction block phigate opens for its reads"
				}
			}
		default:
			return fmt.Sprintf("its pipeline goes on with a %q message, which phigate does not read ahead", typ)
		}
	}
}

// snapRead is one read's answer, collected by the backend: its columns,
// its rows masked as results are, and the raw key values of the rows
// (for the after read, never recorded).
type snapRead struct {
	phase  string
	cmd    uint64
	stmt   int
	bound  int
	raw    bool // catalog rows, kept raw (the resolve step)
	target uint32
	keys   []int16 // the target's key columns (attnums)

	// Written by the backend.
	n         int // rows read
	plan      *mask.Plan
	columns   []string
	rows      [][]*string
	b64       [][2]int
	more      bool
	masked    []record.MaskedColumn
	rawRows   [][][]byte
	keyAt     []int      // column index of each key
	keyNames  []string   // key column names
	keyTypes  []uint32   // key column types
	keyValues [][][]byte // per row, the raw key values
	withheld  string     // why values are not recorded
}

// event is the read as a change event.
func (r *snapRead) event(plan *change.Plan, table string) *record.Change {
	ev := &record.Change{Command: r.cmd, Statement: r.stmt, Phase: r.phase, Op: string(plan.Op), Table: table,
		Columns: r.columns, Rows: r.rows, Base64: r.b64, More: r.more, Masked: r.masked}
	if r.withheld != "" {
		ev.Rows, ev.Base64, ev.Reason = nil, nil, r.withheld
	}
	return ev
}

// recordValue is a value as a change event holds it.
func (r *snapRead) recordValue(row, col int, v []byte, null bool) *string {
	if null {
		return nil
	}
	if utf8.Valid(v) {
		s := string(v)
		return &s
	}
	r.b64 = append(r.b64, [2]int{row, col})
	s := base64.StdEncoding.EncodeToString(v)
	return &s
}
