package pgwire

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// The server's named objects.
//
// A PostgreSQL session holds prepared statements (made by a protocol Parse
// or an SQL PREPARE; one namespace) and portals (made by a protocol Bind or
// an SQL DECLARE; one namespace). For every Execute phigate must know which
// statement text the portal runs, to decide, record and mask it. It mirrors
// the server rather than the agent:
//
//   - a change is pending until the server confirms it (ParseComplete,
//     BindComplete, CloseComplete, the CommandComplete of the statement that
//     made it); a change the server refuses, or skips after an earlier
//     error, never happens (serverState is written by the backend only);
//   - portals end with their transaction (a WITH HOLD cursor survives the
//     commit that creates it), at ROLLBACK TO a savepoint made before them,
//     and with CLOSE ALL and DISCARD ALL; a simple Query drops the unnamed
//     portal;
//   - the frontend resolves a name against the confirmed state and the
//     changes still pending (the expect queue). A pending change made in
//     the current batch (since the last Sync) is certain: if the message
//     being sent runs at all, every message before it in the batch
//     succeeded. A pending change from an earlier batch is not, since that
//     batch may still fail; when one could decide the answer, the frontend
//     waits for the server's answers first (awaitEarlierBatches). A name is
//     never resolved on a guess.

// stmtInfo is a prepared statement.
type stmtInfo struct {
	name  string
	sql   string
	stmts []sqlclass.Statement
	// desc is the statement's result columns once a Describe answered
	// (written by the backend under conn.mu).
	desc      []pgproto3.FieldDescription
	descKnown bool
	// parseOIDs are the parameter types the Parse named (0: the server
	// infers); paramOIDs those a ParameterDescription told (written by the
	// backend under conn.mu), for the snapshot reads, which bind the same
	// parameters.
	parseOIDs   []uint32
	paramOIDs   []uint32
	paramsKnown bool
}

// portalInfo is a portal: a bound statement or an SQL cursor.
type portalInfo struct {
	name          string
	stmt          *stmtInfo // nil for a cursor
	sql           string
	stmts         []sqlclass.Statement
	params        []record.Param
	rawParams     [][]byte // as bound, for the snapshot reads
	paramFormats  []int16
	resultFormats []int16
	executed      bool // an Execute of it went out (frontend-owned)
	desc          []pgproto3.FieldDescription
	descKnown     bool

	hold      bool   // WITH HOLD cursor
	persisted bool   // a holdable cursor whose transaction committed
	created   uint64 // serverState.seq when confirmed, for ROLLBACK TO
}

// statementName names the prepared statement a portal was bound to.
func (p *portalInfo) statementName() string {
	if p.stmt == nil {
		return ""
	}
	return p.stmt.name
}

type savepoint struct {
	name string
	seq  uint64
}

// serverState is what the server has confirmed. The backend writes it, under
// conn.mu; the frontend reads it under conn.mu.
type serverState struct {
	stmts      map[string]*stmtInfo
	portals    map[string]*portalInfo
	savepoints []savepoint
	seq        uint64 // orders portal creations and savepoints
	// txFailed: an error since the transaction began, so an implicit
	// transaction ending now rolls back.
	txFailed bool
}

func newServerState() serverState {
	return serverState{stmts: map[string]*stmtInfo{}, portals: map[string]*portalInfo{}}
}

func (s *serverState) definePortal(p *portalInfo) {
	s.seq++
	p.created, p.persisted = s.seq, false
	s.portals[p.name] = p
}

// apply makes a completed statement's effect on named objects; d holds the
// objects the statement defines, tag its CommandComplete tag, running the
// portal that ran it (nil for a simple Query, whose own portal is gone once
// the query ends).
func (s *serverState) apply(st *sqlclass.Statement, d def, tag string, running *portalInfo) {
	switch st.Effect {
	case sqlclass.EffectPrepare:
		if d.stmt != nil {
			s.stmts[st.Name] = d.stmt
		}
	case sqlclass.EffectDeallocate:
		delete(s.stmts, st.Name)
	case sqlclass.EffectDeallocateAll:
		s.dropNamedStmts()
	case sqlclass.EffectDiscardAll:
		s.dropNamedStmts()
		s.dropPortalsBut(running)
	case sqlclass.EffectDeclare:
		if d.portal != nil {
			s.definePortal(d.portal)
		}
	case sqlclass.EffectClose:
		delete(s.portals, st.Name)
	case sqlclass.EffectCloseAll:
		s.dropPortalsBut(running)
	case sqlclass.EffectTxEnd:
		// COMMIT of a failed transaction answers ROLLBACK.
		s.endTx(strings.HasPrefix(tag, "ROLLBACK"))
	case sqlclass.EffectRollback:
		s.endTx(true)
	case sqlclass.EffectSavepoint:
		s.seq++
		s.savepoints = append(s.savepoints, savepoint{st.Name, s.seq})
	case sqlclass.EffectRelease:
		if i := s.savepointIndex(st.Name); i >= 0 {
			s.savepoints = s.savepoints[:i]
		}
	case sqlclass.EffectRollbackTo:
		if i := s.savepointIndex(st.Name); i >= 0 {
			sp := s.savepoints[i]
			for name, p := range s.portals {
				if p.created > sp.seq {
					delete(s.portals, name)
				}
			}
			s.savepoints = s.savepoints[:i+1]
			s.txFailed = false
		}
	}
}

// dropNamedStmts is DEALLOCATE ALL: the unnamed statement is not in the
// server's table of prepared statements, and stays.
func (s *serverState) dropNamedStmts() {
	for name := range s.stmts {
		if name != "" {
			delete(s.stmts, name)
		}
	}
}

// dropPortalsBut is CLOSE ALL: every portal but the one running it.
func (s *serverState) dropPortalsBut(running *portalInfo) {
	for name, p := range s.portals {
		if p != running {
			delete(s.portals, name)
		}
	}
}

func (s *serverState) savepointIndex(name string) int {
	for i := len(s.savepoints) - 1; i >= 0; i-- {
		if s.savepoints[i].name == name {
			return i
		}
	}
	return -1
}

// endTx drops what a transaction end drops: every portal but holdable
// cursors, and those too if the transaction that made them rolls back.
func (s *serverState) endTx(rollback bool) {
	for name, p := range s.portals {
		switch {
		case p.hold && p.persisted:
		case p.hold && !rollback:
			p.persisted = true
		default:
			delete(s.portals, name)
		}
	}
	s.savepoints = s.savepoints[:0]
	s.txFailed = false
}

// failed undoes what a message the server refused did anyway: a Parse or
// Bind of the unnamed statement or portal drops the old one before it
// fails.
func (s *serverState) failed(e *expect) {
	s.txFailed = true
	switch {
	case e.hidden:
	case e.kind == expParse && e.name == "":
		delete(s.stmts, "")
	case e.kind == expBind && e.name == "":
		delete(s.portals, "")
	}
}

// def is what one statement of a command defines once it completes.
type def struct {
	stmt   *stmtInfo
	portal *portalInfo
}

// defsOf prepares the objects a command's PREPARE and DECLARE statements
// will define, so that later messages can name them before the server
// confirms them. Nil when the command defines nothing.
func defsOf(stmts []sqlclass.Statement) []def {
	var defs []def
	for i := range stmts {
		st := &stmts[i]
		if st.Inner == nil || (st.Effect != sqlclass.EffectPrepare && st.Effect != sqlclass.EffectDeclare) {
			continue
		}
		if defs == nil {
			defs = make([]def, len(stmts))
		}
		inner := []sqlclass.Statement{*st.Inner}
		if st.Effect == sqlclass.EffectPrepare {
			defs[i].stmt = &stmtInfo{name: st.Name, sql: st.Inner.Text, stmts: inner}
		} else {
			defs[i].portal = &portalInfo{name: st.Name, sql: st.Inner.Text, stmts: inner, hold: st.Hold}
		}
	}
	return defs
}

// stmtEffect reports what e does to the prepared statement called name if
// the server carries it out.
func (e *expect) stmtEffect(name string) (s *stmtInfo, touches bool) {
	if e.hidden {
		return nil, false
	}
	switch e.kind {
	case expParse:
		if e.name != name {
			return nil, false
		}
		if e.deny != nil { // refused: the server only drops the unnamed one
			return nil, name == ""
		}
		return e.stmt, e.stmt != nil
	case expClose:
		return nil, e.closeType == 'S' && e.name == name
	case expQuery, expExecute:
		if e.cmd == nil || e.deny != nil {
			return nil, false
		}
		stmts := e.cmd.stmts
		for i := len(stmts) - 1; i >= 0; i-- {
			switch st := &stmts[i]; st.Effect {
			case sqlclass.EffectPrepare:
				if st.Name == name && e.cmd.defs != nil {
					return e.cmd.defs[i].stmt, true
				}
			case sqlclass.EffectDeallocate:
				if st.Name == name {
					return nil, true
				}
			case sqlclass.EffectDeallocateAll, sqlclass.EffectDiscardAll:
				if name != "" { // the unnamed statement stays
					return nil, true
				}
			}
		}
	}
	return nil, false
}

// portalEffect reports what e does to the portal called name if the server
// carries it out; unsure when that depends on how a transaction ends.
func (e *expect) portalEffect(name string) (p *portalInfo, touches, unsure bool) {
	if e.hidden {
		return nil, false, false
	}
	switch e.kind {
	case expBind:
		if e.name != name {
			return nil, false, false
		}
		if e.deny != nil {
			return nil, name == "", false
		}
		return e.portal, e.portal != nil, false
	case expClose:
		return nil, e.closeType == 'P' && e.name == name, false
	case expQuery, expExecute:
		if e.cmd == nil || e.deny != nil {
			return nil, false, false
		}
		stmts := e.cmd.stmts
		for i := len(stmts) - 1; i >= 0; i-- {
			switch st := &stmts[i]; st.Effect {
			case sqlclass.EffectDeclare:
				if st.Name == name && e.cmd.defs != nil {
					return e.cmd.defs[i].portal, true, false
				}
			case sqlclass.EffectClose:
				if st.Name == name {
					return nil, true, false
				}
			case sqlclass.EffectCloseAll, sqlclass.EffectDiscardAll:
				if e.kind == expExecute && e.portal != nil && e.portal.name == name {
					return e.portal, true, false // the running portal stays
				}
				return nil, true, false
			case sqlclass.EffectTxEnd, sqlclass.EffectRollback, sqlclass.EffectRollbackTo:
				return nil, false, true
			}
		}
		if e.kind == expQuery && name == "" {
			return nil, true, false // a simple Query replaces the unnamed portal
		}
	}
	return nil, false, false
}

// endsBatch reports entries after which the server resumes even if something
// before failed, and which may end a transaction.
func (e *expect) endsBatch() bool {
	return e.kind == expSync || e.kind == expQuery || e.kind == expFunction
}

// predictStmt is the statement name will denote when the message being
// prepared reaches the server; certain is false when that hangs on an
// unanswered earlier batch. c.mu must be held.
func (c *conn) predictStmt(name string) (s *stmtInfo, certain bool) {
	for i := len(c.queue) - 1; i >= 0; i-- {
		e := c.queue[i]
		if s, touches := e.stmtEffect(name); touches {
			return s, e.batch == c.fe.batch
		}
	}
	return c.server.stmts[name], true
}

// predictPortal is predictStmt for portals. A portal also ends with its
// transaction, which an unanswered earlier batch may have ended.
func (c *conn) predictPortal(name string) (p *portalInfo, certain bool) {
	for i := len(c.queue) - 1; i >= 0; i-- {
		e := c.queue[i]
		current := e.batch == c.fe.batch
		p, touches, unsure := e.portalEffect(name)
		switch {
		case unsure:
			return nil, false
		case touches:
			return p, current
		case !current && e.endsBatch():
			return nil, false
		}
	}
	return c.server.portals[name], true
}

// errSessionEnding stops a frontend wait when the backend has ended.
var errSessionEnding = errors.New("session ending")

// resolveStmt returns the prepared statement name denotes for the message
// being prepared (nil: none), waiting for the server when needed.
func (c *conn) resolveStmt(ctx context.Context, name string) (*stmtInfo, error) {
	for {
		c.mu.Lock()
		s, ok := c.predictStmt(name)
		c.mu.Unlock()
		if ok {
			return s, nil
		}
		if err := c.awaitEarlierBatches(ctx); err != nil {
			return nil, err
		}
	}
}

// resolvePortal is resolveStmt for portals. When the current batch itself
// holds a change that ends portals wholesale (a transaction end, a
// ROLLBACK TO), the earlier batches are awaited and the current one is
// played forward on the confirmed state (simulatePortal).
func (c *conn) resolvePortal(ctx context.Context, name string) (*portalInfo, error) {
	for {
		c.mu.Lock()
		p, ok := c.predictPortal(name)
		if !ok && (len(c.queue) == 0 || c.queue[0].batch == c.fe.batch) {
			p, ok = c.simulatePortal(name), true
		}
		c.mu.Unlock()
		if ok {
			return p, nil
		}
		if err := c.awaitEarlierBatches(ctx); err != nil {
			return nil, err
		}
	}
}

// simulatePortal plays the current batch's pending changes forward on the
// confirmed state and returns what name then denotes. Every earlier batch
// has been answered, and within a batch a message runs only if all before
// it succeeded, so the outcome is certain. c.mu must be held.
func (c *conn) simulatePortal(name string) *portalInfo {
	sim := serverState{
		stmts:      map[string]*stmtInfo{},
		portals:    make(map[string]*portalInfo, len(c.server.portals)),
		savepoints: append([]savepoint(nil), c.server.savepoints...),
		seq:        c.server.seq,
		txFailed:   c.server.txFailed,
	}
	orig := map[*portalInfo]*portalInfo{} // simulated copy -> the real one
	copyOf := func(p *portalInfo) *portalInfo {
		cp := *p
		orig[&cp] = p
		return &cp
	}
	for n, p := range c.server.portals {
		sim.portals[n] = copyOf(p)
	}
	for _, e := range c.queue {
		if e.hidden || e.deny != nil {
			continue
		}
		switch e.kind {
		case expBind:
			sim.definePortal(copyOf(e.portal))
		case expClose:
			if e.closeType == 'P' {
				delete(sim.portals, e.name)
			}
		case expExecute:
			for i := range e.cmd.stmts {
				st := &e.cmd.stmts[i]
				tag := ""
				if st.Effect == sqlclass.EffectTxEnd && sim.txFailed {
					tag = "ROLLBACK" // COMMIT of a failed transaction
				}
				var d def
				if e.cmd.defs != nil {
					d = e.cmd.defs[i]
					if d.portal != nil {
						d.portal = copyOf(d.portal)
					}
				}
				sim.apply(st, d, tag, sim.portals[e.portal.name])
			}
		}
	}
	if p := sim.portals[name]; p != nil {
		return orig[p]
	}
	return nil
}

// awaitEarlierBatches sends what is buffered for the upstream and waits
// until the server has answered every batch before the current one. It
// costs a round trip, and only pipelines that name an object whose fate an
// unanswered batch decides ever pay it.
func (c *conn) awaitEarlierBatches(ctx context.Context) error {
	if err := c.fe.uout.flush(); err != nil {
		return err
	}
	for {
		c.mu.Lock()
		waiting := len(c.queue) > 0 && c.queue[0].batch < c.fe.batch
		c.mu.Unlock()
		if !waiting {
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

// resolveExecutes returns stmts with every EXECUTE judged by the statement
// it runs (a PREPARE earlier in the same command, else the session's
// statement of that name). An unknown name stays admin: the server would
// refuse it, and phigate cannot vouch for what it runs.
func (c *conn) resolveExecutes(ctx context.Context, stmts []sqlclass.Statement) ([]sqlclass.Statement, error) {
	resolved := stmts
	for i, s := range stmts {
		if s.Execute == "" {
			continue
		}
		var target *sqlclass.Statement
		for j := i - 1; j >= 0 && target == nil; j-- {
			if stmts[j].Effect == sqlclass.EffectPrepare && stmts[j].Name == s.Execute {
				target = stmts[j].Inner
			}
		}
		if target == nil {
			info, err := c.resolveStmt(ctx, s.Execute)
			if err != nil {
				return nil, err
			}
			if info != nil && len(info.stmts) == 1 {
				target = &info.stmts[0]
			}
		}
		if &resolved[0] == &stmts[0] {
			resolved = append([]sqlclass.Statement(nil), stmts...) // the classified slice is shared through the cache
		}
		if target == nil {
			// What it runs is unknown: no grant without admin runs it,
			// and no approval rule lets it pass unseen.
			resolved[i].Risks = append(slices.Clone(s.Risks), policy.RiskUnclassified)
			continue
		}
		resolved[i].Class, resolved[i].Refused = target.Class, target.Refused
		resolved[i].Calls = append(append([]policy.Call(nil), s.Calls...), target.Calls...)
		resolved[i].Risks = append(slices.Clone(s.Risks), target.Risks...)
		resolved[i].Writes = append(slices.Clone(s.Writes), target.Writes...)
		resolved[i].Reads = append(slices.Clone(s.Reads), target.Reads...)
		resolved[i].Rows = target.Rows
	}
	return resolved, nil
}
