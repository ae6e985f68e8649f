package pgwire

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/change"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// deniedSQL replaces a statement that policy refused. It is certain to fail
// at parse time, so the upstream aborts the transaction and skips the rest
// of the pipeline exactly as it would for a real permission error; the
// backend loop then swaps its syntax error for the error the agent is owed.
const deniedSQL = "PHIGATE DENIED STATEMENT"

// refusedStmt names the Parse that stands in for a refused Bind, Describe or
// Execute: a named Parse that fails to parse creates and drops nothing.
const refusedStmt = "phigate_refused"

// frontendState is owned by the frontend goroutine.
type frontendState struct {
	cin  *frameReader
	uout *outBuf
	// effects: what is buffered for the upstream may have an effect that
	// can outlast the session's transaction, so the recording must be
	// durable before it is sent (write-ahead sessions; see ahead). Set for
	// every message but the effect-free ones, and for Bind in a session
	// without read_ahead; a command that may run ahead leaves it as it was
	// before the message (effectsBefore, forwarding, onBind). defined: the session may have made objects the catalog
	// cannot see. inBlock: the server is in a transaction block for the
	// message being handled, whatever runs before it (blockKnown).
	// runAhead: the command being forwarded may run ahead inside a
	// transaction block (ahead), so a snapshot's statement needs no wait.
	effects                                   atomic.Bool
	effectsBefore, defined, inBlock, runAhead bool
	// batch numbers the messages between two Syncs (a Query or FunctionCall
	// is a batch of its own); every expect carries the batch it was sent in.
	batch uint64
	// skipping: phigate refused a message of the current batch, and the
	// server will skip the rest of it until Sync; so does phigate, without
	// forwarding or recording anything.
	skipping    bool
	nextCmd     uint64
	actions     []policy.Action // decide's scratch
	revision    uint64          // the state snapshot c.grant is from
	copyIn      *command        // the COPY FROM STDIN running, if phigate knows it
	copyOffset  int64
	describeSeq int
	// mayDefine: the session has sent a statement that may create objects
	// only it sees (temporary tables and views), which phigate's catalog
	// connection cannot see.
	mayDefine bool
	// wrap is the transaction block phigate opened for a snapshot in
	// place of an implicit transaction (snapshot.go); snapSeq numbers the
	// names of its own statements.
	wrap    *wrap
	snapSeq int
	// resolved are the relation resolutions of earlier snapshots, by the
	// names a plan reads (resolvedKey): a later snapshot naming the same
	// relations checks them in the server (guardSQL) in the same round
	// trip as its before read, instead of resolving them first.
	resolved map[string]resolution
	// snapWait is what a flush during a snapshot waits for before it goes
	// out (conn.go's toUpstream; waitAll outside snapshots), and snapCmd
	// the position of the statement's command event (waitCommand).
	snapWait snapWait
	snapCmd  uint64
	// gate is the approval rule the command decide judged last matched
	// (nil: none); reason is what the agent said with SET phigate.reason
	// (approval.go).
	gate   *gate
	reason string
}

// frontend relays agent -> upstream until the agent leaves or the session
// fails. Before anything is flushed upstream, every event appended so far
// is durable (uout's before hook): commands are recorded write-ahead.
func (c *conn) frontend(ctx context.Context) error {
	fe := &c.fe
	for {
		typ, body, err := fe.cin.next()
		if err != nil {
			if errors.Is(err, ErrMessageTooLarge) {
				c.recordOversized(typ, err)
				return c.protocolError(err.Error())
			}
			if errors.Is(err, ErrBadLength) {
				return c.protocolError(err.Error())
			}
			return err
		}
		if err := c.readmit(); err != nil {
			return err
		}
		fe.effectsBefore = fe.effects.Load()
		fe.inBlock = c.writeAhead && c.blockKnown()
		if !effectFree[typ] || typ == 'B' && !c.readAhead {
			fe.effects.Store(true) // Bind plans, which may run functions: see onBind
		}
		fe.defined = fe.defined || typ == 'F'
		switch typ {
		case 'Q':
			err = c.onQuery(ctx, body)
		case 'P':
			err = c.onParse(ctx, body)
		case 'B':
			err = c.onBind(ctx, body)
		case 'D':
			err = c.onDescribe(ctx, body)
		case 'E':
			err = c.onExecute(ctx, body)
		case 'C':
			err = c.onClose(body)
		case 'S':
			e := &expect{kind: expSync}
			w := fe.wrap
			if w != nil {
				// The pipeline's end is where the implicit transaction
				// phigate's block stands in for would have ended.
				e.hold, w.errFor = w, e
			}
			c.push(e)
			fe.batch++
			fe.skipping = false
			err = fe.uout.write(fe.cin.raw)
			if err == nil && w != nil {
				err = c.endWrap(ctx, w)
			}
		case 'H':
			err = fe.uout.write(fe.cin.raw)
		case 'F':
			err = c.onFunctionCall(ctx, body)
		case 'd':
			err = c.onCopyData(body)
		case 'c', 'f':
			fe.copyIn = nil
			err = fe.uout.write(fe.cin.raw)
		case 'X':
			// Say why before the upstream sees Terminate and closes: the
			// backend may notice that first.
			c.setReason("terminate")
			if err := fe.uout.write(fe.cin.raw); err != nil {
				return err
			}
			if err := fe.uout.flush(); err != nil {
				return err
			}
			return errTerminate
		default:
			return c.protocolError(fmt.Sprintf("invalid frontend message type %q", typ))
		}
		if err != nil {
			return err
		}
		if fe.cin.buffered() == 0 {
			if err := fe.uout.flush(); err != nil {
				return c.recordingFailed(err)
			}
			fe.cin.shrink()
		}
	}
}

// protocolError records malformed agent input and ends the session with 08P01.
func (c *conn) protocolError(msg string) error {
	if _, err := c.rec.Append(&record.Event{Kind: record.KindProtocolError, Error: &record.ProtocolError{Code: codeProtocolViolation, Message: msg}}); err != nil {
		c.log.Error("cannot record protocol error", "err", err)
	}
	c.log.Info("protocol violation from agent", "msg", msg)
	c.setFatal(pgError("FATAL", codeProtocolViolation, msg), "protocol error")
	return fmt.Errorf("%w: %s", errProtocol, msg)
}

// errProtocol ends a session whose agent broke the protocol.
var errProtocol = errors.New("protocol error")

// recordOversized records a message refused for its size as a refused
// command, with as much of its start as phigate had read.
func (c *conn) recordOversized(typ byte, cause error) {
	prefix := c.fe.cin.peekBody()
	c.fe.nextCmd++
	rc := &record.Command{ID: c.fe.nextCmd, Protocol: record.ProtocolPostgres, Postgres: &record.PostgresCommand{Flow: record.FlowSimple}, Decision: "deny",
		Reason: fmt.Sprintf("refused unread: %v; the recording holds its first %d bytes", cause, len(prefix))}
	if typ == 'P' {
		rc.Postgres.Flow, rc.Postgres.Step = record.FlowExtended, record.StepParse
	}
	setSQL(rc, prefix)
	if _, err := c.rec.Append(&record.Event{Kind: record.KindCommand, Command: rc}); err != nil {
		c.log.Error("cannot record refused message", "err", err)
		return
	}
	c.observeCommand(rc)
}

// setSQL records query text; bytes that are not UTF-8 are kept verbatim
// beside a readable approximation.
func setSQL(rc *record.Command, b []byte) {
	if utf8.Valid(b) {
		rc.Postgres.SQL = string(b)
		return
	}
	rc.Postgres.SQL, rc.Postgres.Raw = string(bytesToValidUTF8(b)), append([]byte(nil), b...)
}

func bytesToValidUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			out = append(out, "\uFFFD"...)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

// recordingFailed ends the session when an event could not be made durable:
// nothing more goes through, in either direction.
func (c *conn) recordingFailed(err error) error {
	c.log.Error("recording failed; ending session", "err", err)
	c.setFatal(pgError("FATAL", codeIOError, "phigate cannot record this session; the command was not run"), "recording failed")
	return err
}

func (c *conn) newCommand(stmts []sqlclass.Statement) *command {
	c.fe.nextCmd++
	return &command{id: c.fe.nextCmd, start: time.Now(), stmts: stmts}
}

// refuseUnparsable is what the agent is told of text phigate's parser (the
// server's own) rejects; such text is never forwarded.
func refuseUnparsable(perr error, rc *record.Command) *pgproto3.ErrorResponse {
	rc.Decision = "deny"
	var se *sqlclass.SyntaxError
	switch {
	case errors.As(perr, &se):
		rc.Reason = "statement could not be parsed"
		e := pgError("ERROR", codeSyntaxError, se.Message)
		e.Position = int32(se.Position)
		return e
	case errors.Is(perr, sqlclass.ErrInvalidUTF8):
		rc.Reason = "statement is not valid UTF-8"
		return pgError("ERROR", codeCharacterNotInRepertoire, invalidUTF8Message([]byte(rc.Postgres.SQL), rc.Postgres.Raw))
	}
	rc.Reason = "statement could not be parsed"
	return pgError("ERROR", codeSyntaxError, perr.Error())
}

// invalidUTF8Message is PostgreSQL's text for the first bad sequence.
func invalidUTF8Message(text, raw []byte) string {
	b := raw
	if b == nil {
		b = text
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			end := min(i+2, len(b))
			return fmt.Sprintf("invalid byte sequence for encoding \"UTF8\": % #x", b[i:end])
		}
		i += n
	}
	return `invalid byte sequence for encoding "UTF8"`
}

// decide applies the grant to a classified command (EXECUTEs resolved).
func (c *conn) decide(stmts []sqlclass.Statement, rc *record.Command) *pgproto3.ErrorResponse {
	for _, s := range stmts {
		rc.Classes = append(rc.Classes, string(s.Class))
	}
	c.fe.gate = nil
	c.fe.actions = sqlclass.Actions(c.fe.actions[:0], stmts)
	d := policy.Command(c.grant, c.fe.actions)
	rc.Rule = d.Rule()
	if !d.Allowed {
		rc.Decision, rc.Reason = "deny", d.Reason
		return pgError("ERROR", codeInsufficientPriv, "permission denied by phigate: "+d.Reason)
	}
	rc.Decision = "allow"
	c.fe.gate = c.gateOf(c.fe.actions, rc)
	return nil
}

// classify parses, resolves and judges a command's text. deny is set when
// it must not run; resolved are the statements as judged (EXECUTEs
// resolved, look-alike calls added).
func (c *conn) classify(ctx context.Context, text string, rc *record.Command) (stmts, resolved []sqlclass.Statement, deny *pgproto3.ErrorResponse, err error) {
	stmts, tree, perr := c.srv.classes.ClassifyTree(text)
	if perr != nil || len(stmts) == 0 || stmts[0].Template == "" {
		return c.judge(ctx, text, stmts, tree, perr, rc)
	}
	// Answered from the statement's template, which is never more
	// permissive than the text's own answer but may be stricter: what it
	// would refuse or hold is judged again on the text itself.
	before := *rc
	stmts, resolved, deny, err = c.judge(ctx, text, stmts, nil, nil, rc)
	if err != nil || (deny == nil && c.fe.gate == nil) {
		return stmts, resolved, deny, err
	}
	*rc = before
	stmts, tree, perr = sqlclass.ClassifyTree(text)
	return c.judge(ctx, text, stmts, tree, perr, rc)
}

// judge is classify for a text classified as stmts (from tree, when it was
// parsed now) or refused by the parser with perr.
func (c *conn) judge(ctx context.Context, text string, stmts []sqlclass.Statement, tree *pg_query.ParseResult, perr error, rc *record.Command) (_, resolved []sqlclass.Statement, deny *pgproto3.ErrorResponse, err error) {
	c.fe.gate = nil
	setSQL(rc, []byte(text))
	if perr != nil {
		return nil, nil, refuseUnparsable(perr, rc), nil
	}
	resolved, err = c.resolveExecutes(ctx, stmts)
	if err != nil {
		return nil, nil, nil, err
	}
	resolved, deny = c.withLookalikes(ctx, resolved, rc)
	if deny == nil {
		resolved, deny = c.withRewrites(ctx, resolved, rc)
	}
	if deny != nil {
		c.fe.gate = nil
		return nil, nil, deny, nil
	}
	if deny = c.decide(resolved, rc); deny != nil {
		return stmts, resolved, deny, nil
	}
	return stmts, resolved, c.traceable(ctx, stmts, tree, rc), nil
}

// withLookalikes returns stmts with an admin call added for every
// unqualified built-in function or operator they use that has a look-alike
// in the database (which search_path could pick instead). When the
// database's functions cannot be read, the command is refused: phigate does
// not forward what it cannot vouch for.
func (c *conn) withLookalikes(ctx context.Context, stmts []sqlclass.Statement, rc *record.Command) ([]sqlclass.Statement, *pgproto3.ErrorResponse) {
	need := false
	for _, s := range stmts {
		need = need || len(s.Builtins) > 0 || len(s.Operators) > 0
	}
	if !need {
		return stmts, nil
	}
	looks, err := c.cat.lookalikesOf(ctx)
	if err != nil {
		c.log.Error("cannot read the database's functions and operators", "err", err)
		rc.Decision, rc.Reason = "deny", "the database's functions and operators could not be read"
		return nil, pgError("ERROR", codeSystemError, "phigate cannot check which functions this statement calls; it was not run")
	}
	if len(looks.funcs) == 0 && len(looks.ops) == 0 {
		return stmts, nil
	}
	var out []sqlclass.Statement
	for i, s := range stmts {
		var extra []policy.Call
		for _, name := range s.Builtins {
			if looks.funcs[name] {
				extra = append(extra, policy.Call{Name: name, Class: policy.Admin})
			}
		}
		for _, name := range s.Operators {
			if looks.ops[name] {
				extra = append(extra, policy.Call{Name: "OPERATOR(" + name + ")", Class: policy.Admin})
			}
		}
		if extra == nil {
			continue
		}
		if out == nil {
			out = append([]sqlclass.Statement(nil), stmts...) // the classified slice is shared through the cache
		}
		out[i].Calls = append(append([]policy.Call(nil), s.Calls...), extra...)
	}
	if out == nil {
		return stmts, nil
	}
	return out, nil
}

// appendCommand records a command before it is forwarded. Its position is
// what the agent's side waits for before releasing any output.
func (c *conn) appendCommand(rc *record.Command) error {
	lsn, err := c.rec.Append(&record.Event{Kind: record.KindCommand, Command: rc})
	if err != nil {
		return c.recordingFailed(err)
	}
	c.cmdPos.Store(uint64(lsn))
	c.observeCommand(rc)
	return nil
}

// refuseExtended stands a failing Parse in for an extended-protocol message
// phigate will not forward; the server's error for it becomes deny, and the
// rest of the batch is skipped as the server skips it.
func (c *conn) refuseExtended(e *expect, deny *pgproto3.ErrorResponse) error {
	if e.kind != expParse {
		// A named Parse that cannot parse creates and drops nothing, so
		// the refused message has no effect on the server's objects.
		e = &expect{kind: expParse, name: refusedStmt, cmd: e.cmd}
	}
	// A refused Parse keeps the agent's name: the server drops the old
	// unnamed statement whether or not the new one parses.
	e.deny = deny
	c.push(e)
	c.fe.skipping = true
	return c.writeMsg(&pgproto3.Parse{Name: e.name, Query: deniedSQL})
}

func (c *conn) onQuery(ctx context.Context, body []byte) error {
	var q pgproto3.Query
	if err := q.Decode(body); err != nil {
		return c.protocolError("invalid Query message")
	}
	if c.fe.skipping {
		return nil
	}
	cmd := c.newCommand(nil)
	rc := &record.Command{ID: cmd.id, Protocol: record.ProtocolPostgres, Postgres: &record.PostgresCommand{Flow: record.FlowSimple}}
	stmts, resolved, deny, err := c.classify(ctx, q.String, rc)
	if err != nil {
		return err
	}
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	if g := c.fe.gate; deny == nil && g != nil {
		if deny, err = c.approve(ctx, cmd.id, g, q.String, nil, rc.Classes); err != nil {
			return err
		}
	}
	if deny == nil {
		c.noteReason(stmts)
	}
	if deny != nil {
		cmd.errored = true
		c.push(&expect{kind: expQuery, cmd: cmd, deny: deny})
		c.fe.batch++
		return c.writeMsg(&pgproto3.Query{String: deniedSQL})
	}
	cmd.stmts, cmd.defs = stmts, defsOf(stmts)
	e := &expect{kind: expQuery, cmd: cmd}
	forward := func(hold *wrap) error {
		if c.profile() != nil {
			if err := c.describeCopies(cmd, true); err != nil {
				return err
			}
		}
		c.noteCopyIn(cmd)
		e.hold = hold
		if hold != nil {
			hold.errFor = e
		}
		c.push(e)
		c.fe.batch++
		return c.fe.uout.write(c.fe.cin.raw)
	}
	c.forwarding(ctx, resolved)
	if c.snapshotsOn() {
		plan, at, err := c.recordVerdicts(cmd, c.changeVerdicts(stmts, resolved))
		if err != nil {
			return err
		}
		if plan != nil {
			return c.snapshot(ctx, cmd, at, plan, nil, forward)
		}
	}
	return forward(nil)
}

// noteCopyIn remembers the command whose COPY FROM STDIN data follows.
func (c *conn) noteCopyIn(cmd *command) {
	for _, s := range cmd.stmts {
		if s.Copy != nil && s.Copy.From && s.Copy.Stdio {
			c.fe.copyIn, c.fe.copyOffset = cmd, 0
		}
	}
}

// describeCopies asks the upstream, within the agent's own session (so with
// its search_path and visibility), which columns each COPY ... TO STDOUT of
// cmd will produce, so that the backend can mask them. The describe is
// pipelined ahead of the command and its answers are hidden from the agent.
// withSync is true for simple queries: a Sync is needed so that a failing
// describe cannot make the server skip the agent's Query.
func (c *conn) describeCopies(cmd *command, withSync bool) error {
	for _, s := range cmd.stmts {
		if s.Copy == nil || s.Copy.From || !s.Copy.Stdio {
			continue
		}
		cmd.copyDesc = true
		if s.Copy.Describe == "" {
			continue // columns unknown: the backend withholds the data
		}
		c.fe.describeSeq++
		name := fmt.Sprintf("phigate_copy_describe_%d", c.fe.describeSeq)
		msgs := []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: name, Query: s.Copy.Describe},
			&pgproto3.Describe{ObjectType: 'S', Name: name},
			&pgproto3.Close{ObjectType: 'S', Name: name},
		}
		c.push(&expect{kind: expParse, hidden: true})
		c.push(&expect{kind: expDescribeStmt, hidden: true, copyDesc: cmd})
		c.push(&expect{kind: expClose, hidden: true})
		if withSync {
			msgs = append(msgs, &pgproto3.Sync{})
			c.push(&expect{kind: expSync, hidden: true})
			c.fe.batch++
		}
		for _, m := range msgs {
			if err := c.writeMsg(m); err != nil {
				return err
			}
		}
		return nil // one COPY TO per command is what clients send; more are refused by the backend
	}
	return nil
}

func (c *conn) writeMsg(m pgproto3.FrontendMessage) error {
	var err error
	c.fe.uout.buf, err = m.Encode(c.fe.uout.buf)
	if err != nil {
		return err
	}
	return c.fe.uout.full()
}

// onParse classifies, decides and records a statement being prepared. It
// is not run yet; Execute records it again when it is.
func (c *conn) onParse(ctx context.Context, body []byte) error {
	var p pgproto3.Parse
	if err := p.Decode(body); err != nil {
		return c.protocolError("invalid Parse message")
	}
	if c.fe.skipping {
		return nil
	}
	c.fe.nextCmd++
	rc := &record.Command{ID: c.fe.nextCmd, Protocol: record.ProtocolPostgres,
		Postgres: &record.PostgresCommand{Flow: record.FlowExtended, Step: record.StepParse, Statement: p.Name}}
	stmts, _, deny, err := c.classify(ctx, p.Query, rc)
	if err != nil {
		return err
	}
	if c.fe.gate != nil {
		// Preparing runs nothing: each Execute of it is judged.
		rc.Decision, rc.Reason = "allow", rc.Reason+" when executed"
	}
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	cmd := &command{id: rc.ID, start: time.Now(), parse: true}
	e := &expect{kind: expParse, name: p.Name, cmd: cmd}
	if deny != nil {
		cmd.errored = true
		return c.refuseExtended(e, deny)
	}
	e.stmt = &stmtInfo{name: p.Name, sql: p.Query, stmts: stmts, parseOIDs: append([]uint32(nil), p.ParameterOIDs...)}
	c.push(e)
	return c.fe.uout.write(c.fe.cin.raw)
}

func (c *conn) onBind(ctx context.Context, body []byte) error {
	var b pgproto3.Bind
	if err := b.Decode(body); err != nil {
		return c.protocolError("invalid Bind message")
	}
	if c.fe.skipping {
		return nil
	}
	stmt, err := c.resolveStmt(ctx, b.PreparedStatement)
	if err != nil {
		return err
	}
	e := &expect{kind: expBind, name: b.DestinationPortal}
	if stmt == nil {
		return c.refuseExtended(e, pgError("ERROR", codeInvalidStatementName, fmt.Sprintf("prepared statement %q does not exist", b.PreparedStatement)))
	}
	p := &portalInfo{name: b.DestinationPortal, stmt: stmt, sql: stmt.sql, stmts: stmt.stmts, resultFormats: b.ResultFormatCodes}
	p.params = make([]record.Param, len(b.Parameters))
	for i, v := range b.Parameters {
		p.params[i] = recordParam(v, formatAt(b.ParameterFormatCodes, i) == 1)
	}
	if c.snapshotsOn() {
		p.rawParams = make([][]byte, len(b.Parameters))
		for i, v := range b.Parameters {
			if v != nil {
				p.rawParams[i] = append([]byte{}, v...)
			}
		}
		p.paramFormats = append([]int16(nil), b.ParameterFormatCodes...)
	}
	e.portal = p
	if !c.readAhead && (opensBlock(stmt.stmts) || c.fe.inBlock && c.ahead(ctx, stmt.stmts)) {
		// Binding plans the statement, which may run functions it calls.
		c.fe.effects.Store(c.fe.effectsBefore)
	}
	c.push(e)
	return c.fe.uout.write(c.fe.cin.raw)
}

// recordParam is a bound value as the recording keeps it.
func recordParam(v []byte, binary bool) record.Param {
	switch {
	case v == nil:
		return record.Param{Null: true}
	case binary:
		return record.Param{Format: "binary", Value: base64.StdEncoding.EncodeToString(v)}
	case !utf8.Valid(v):
		return record.Param{Value: base64.StdEncoding.EncodeToString(v), Encoding: "base64"}
	}
	return record.Param{Value: string(v)}
}

// formatAt applies the protocol's format-code rule: none means text, one
// applies to all, otherwise one per column.
func formatAt(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	}
	if i < len(codes) {
		return codes[i]
	}
	return 0
}

func (c *conn) onDescribe(ctx context.Context, body []byte) error {
	var d pgproto3.Describe
	if err := d.Decode(body); err != nil {
		return c.protocolError("invalid Describe message")
	}
	if c.fe.skipping {
		return nil
	}
	e := &expect{}
	if d.ObjectType == 'S' {
		stmt, err := c.resolveStmt(ctx, d.Name)
		if err != nil {
			return err
		}
		e.kind, e.stmt = expDescribeStmt, stmt
	} else {
		p, err := c.resolvePortal(ctx, d.Name)
		if err != nil {
			return err
		}
		e.kind, e.portal = expDescribePortal, p
	}
	c.push(e)
	return c.fe.uout.write(c.fe.cin.raw)
}

func (c *conn) onExecute(ctx context.Context, body []byte) error {
	var x pgproto3.Execute
	if err := x.Decode(body); err != nil {
		return c.protocolError("invalid Execute message")
	}
	if c.fe.skipping {
		return nil
	}
	p, err := c.resolvePortal(ctx, x.Portal)
	if err != nil {
		return err
	}
	cmd := c.newCommand(nil)
	rc := &record.Command{ID: cmd.id, Protocol: record.ProtocolPostgres,
		Postgres: &record.PostgresCommand{Flow: record.FlowExtended, Step: record.StepExecute, Portal: x.Portal}}
	if p == nil {
		rc.Decision, rc.Reason = "deny", "no such portal"
		if err := c.appendCommand(rc); err != nil {
			return err
		}
		cmd.errored = true
		return c.refuseExtended(&expect{kind: expExecute, cmd: cmd}, pgError("ERROR", codeInvalidCursorName, fmt.Sprintf("portal %q does not exist", x.Portal)))
	}
	rc.Postgres.Statement, rc.Postgres.Params = p.statementName(), p.params
	setSQL(rc, []byte(p.sql))
	resolved, err := c.resolveExecutes(ctx, p.stmts)
	if err != nil {
		return err
	}
	resolved, deny := c.withLookalikes(ctx, resolved, rc)
	if deny == nil {
		resolved, deny = c.withRewrites(ctx, resolved, rc)
	}
	c.fe.gate = nil
	if deny == nil {
		deny = c.decide(resolved, rc)
	}
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	if g := c.fe.gate; deny == nil && g != nil {
		if deny, err = c.approve(ctx, cmd.id, g, p.sql, paramsOf(p.params), rc.Classes); err != nil {
			return err
		}
	}
	if deny != nil {
		cmd.errored = true
		return c.refuseExtended(&expect{kind: expExecute, cmd: cmd}, deny)
	}
	c.noteReason(p.stmts)
	cmd.stmts, cmd.defs = p.stmts, defsOf(p.stmts)
	e := &expect{kind: expExecute, portal: p, cmd: cmd}
	forward := func(*wrap) error {
		if c.profile() != nil {
			if err := c.describeCopies(cmd, false); err != nil {
				return err
			}
			if !c.describedInBatch(p) {
				// Without a description the backend could not tell which
				// columns to mask: ask for one, and hide the answer.
				c.push(&expect{kind: expDescribePortal, portal: p, hidden: true})
				if err := c.writeMsg(&pgproto3.Describe{ObjectType: 'P', Name: x.Portal}); err != nil {
					return err
				}
			}
		}
		c.noteCopyIn(cmd)
		p.executed = true
		c.push(e)
		return c.fe.uout.write(c.fe.cin.raw)
	}
	c.forwarding(ctx, resolved)
	if c.snapshotsOn() && !p.executed {
		plan, at, err := c.recordVerdicts(cmd, c.changeVerdicts(p.stmts, resolved))
		if err != nil {
			return err
		}
		if plan != nil {
			return c.snapshot(ctx, cmd, at, plan, p, forward)
		}
	}
	return forward(nil)
}

// effectFree are the frontend messages that change nothing on the server
// by themselves: parsing, binding, describing, closing a statement or
// portal, and the ends of a pipeline. Query and Execute run statements;
// every other message (COPY data, function calls...) may have effects.
var effectFree = map[byte]bool{'P': true, 'B': true, 'D': true, 'C': true, 'S': true, 'H': true}

// forwarding is told of each command about to be forwarded, as judged,
// and lets it go to the upstream before its event is durable (its output
// still waits for the event) in two cases:
//
//   - In a transaction block, a statement that may run ahead (ahead): its
//     effects are the block's, which end with the session if phigate does:
//     they commit only with a later message (COMMIT, END, a Sync ending
//     phigate's own block), which is not such a statement and so waits for
//     every event before it goes out.
//   - A BEGIN alone (opensBlock).
//   - In a session whose grant says read_ahead, a proven read (provenRead):
//     nothing it does can change data.
//
// Neither once the session has run a statement that could define objects
// the catalog cannot see (a temporary view or table with a trigger): DDL,
// admin, or any call of a function off the allowlist.
func (c *conn) forwarding(ctx context.Context, stmts []sqlclass.Statement) {
	if !c.writeAhead {
		return
	}
	for i := range stmts {
		s := &stmts[i]
		if len(s.Calls) > 0 || (s.Class != policy.Read && s.Class != policy.Write && !s.Class.AlwaysAllowed()) {
			c.fe.defined = true
		}
	}
	c.fe.runAhead = false
	switch {
	case c.fe.gate != nil:
		return // an approval is durable before the command runs
	case opensBlock(stmts):
		c.fe.effects.Store(c.fe.effectsBefore)
		return
	case c.fe.defined:
		return
	}
	if c.fe.inBlock || c.snapshotsOn() {
		c.fe.runAhead = c.ahead(ctx, stmts)
	}
	if c.fe.inBlock && c.fe.runAhead || c.readAhead && provenRead(stmts) && c.plainRelations(ctx, stmts) {
		c.fe.effects.Store(c.fe.effectsBefore)
	}
}

// opensBlock reports whether stmts are one BEGIN or START TRANSACTION,
// which changes nothing but the transaction's state: nothing it does can
// outlast a block that commits only after every event is durable.
func opensBlock(stmts []sqlclass.Statement) bool {
	return len(stmts) == 1 && stmts[0].Effect == sqlclass.EffectBegin && stmts[0].Refused == ""
}

// ahead reports whether stmts may run before their event is durable inside
// a transaction block: each is a plain SELECT, INSERT, UPDATE, DELETE or
// MERGE (none can end the block), calls only built-ins on the side-effect
// free allowlist (no look-alike of them in the database), and reads and
// writes only relations where nothing but built-ins run (plainRelations),
// in a session that has defined nothing the catalog cannot see. Whatever
// such a statement does is undone with its block.
func (c *conn) ahead(ctx context.Context, stmts []sqlclass.Statement) bool {
	if c.fe.defined || len(stmts) == 0 {
		return false
	}
	for i := range stmts {
		s := &stmts[i]
		if !blockNeutral[s.Kind] || (s.Class != policy.Read && s.Class != policy.Write) || len(s.Calls) > 0 ||
			s.Refused != "" || s.Effect != sqlclass.EffectNone || s.Inner != nil || s.Execute != "" {
			return false
		}
	}
	if resolved, deny := c.withLookalikes(ctx, stmts, &record.Command{}); deny != nil || slices.ContainsFunc(resolved, func(s sqlclass.Statement) bool { return len(s.Calls) > 0 }) {
		return false
	}
	return c.plainRelations(ctx, stmts)
}

// plainRelations reports whether every relation stmts read or write is one
// where nothing but built-ins run (catalog.codeRelationsOf); false when
// the catalog cannot say.
func (c *conn) plainRelations(ctx context.Context, stmts []sqlclass.Statement) bool {
	code, err := c.cat.codeRelationsOf(ctx)
	if err != nil {
		return false
	}
	for i := range stmts {
		if slices.ContainsFunc(stmts[i].Reads, func(r string) bool { return code[r] }) ||
			slices.ContainsFunc(stmts[i].Writes, func(r string) bool { return code[r] }) {
			return false
		}
	}
	return true
}

// blockKnown reports whether the server will be in a transaction block
// (open or failed) when the next message reaches it: the last status it
// reported says so, and nothing sent since and not yet answered can end
// the block. Outside phigate's own block only, whose end phigate sends.
func (c *conn) blockKnown() bool {
	if c.fe.wrap != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tx.status != 'T' && c.tx.status != 'E' {
		return false
	}
	for _, e := range c.queue {
		if !e.keepsBlock() {
			return false
		}
	}
	return true
}

// keepsBlock reports whether the message e answers cannot end a
// transaction block: parsing, binding, describing, closing, Sync (which
// ends only an implicit transaction), a statement of the agent's that is
// plain DML or SELECT, and phigate's own snapshot statements but the
// COMMIT or ROLLBACK that ends its block (a pass step).
func (e *expect) keepsBlock() bool {
	switch e.kind {
	case expParse, expBind, expDescribeStmt, expDescribePortal, expClose, expSync:
		return true
	case expQuery, expExecute:
		if e.step != nil {
			return !e.step.pass
		}
		return e.cmd != nil && len(e.cmd.stmts) > 0 &&
			!slices.ContainsFunc(e.cmd.stmts, func(s sqlclass.Statement) bool { return !blockNeutral[s.Kind] })
	}
	return false
}

// provenRead reports whether stmts only read: SELECTs classed read, calling
// no function outside the side-effect-free allowlist, writing nothing and
// locking no rows.
func provenRead(stmts []sqlclass.Statement) bool {
	for i := range stmts {
		s := &stmts[i]
		if s.Kind != "select_stmt" || s.Class != policy.Read || len(s.Calls) > 0 || len(s.Writes) > 0 ||
			s.Refused != "" || s.Effect != sqlclass.EffectNone || s.Inner != nil || slices.ContainsFunc(s.Risks, notBulk) {
			return false
		}
	}
	return len(stmts) > 0
}

// notBulk: any risk but a bulk export is a risk of an effect.
func notBulk(r policy.Risk) bool { return r != policy.RiskBulkExport }

// describedInBatch reports whether the backend will know p's columns when
// its rows arrive: described already, or a Describe of it (or of its
// statement) is pending in this batch, and so answered first if Execute
// runs at all.
func (c *conn) describedInBatch(p *portalInfo) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.descKnown || (p.stmt != nil && p.stmt.descKnown) {
		return true
	}
	for i := len(c.queue) - 1; i >= 0 && c.queue[i].batch == c.fe.batch; i-- {
		e := c.queue[i]
		if e.kind == expDescribePortal && e.portal == p || e.kind == expDescribeStmt && p.stmt != nil && e.stmt == p.stmt {
			return true
		}
	}
	return false
}

func (c *conn) onClose(body []byte) error {
	var m pgproto3.Close
	if err := m.Decode(body); err != nil {
		return c.protocolError("invalid Close message")
	}
	if c.fe.skipping {
		return nil
	}
	c.push(&expect{kind: expClose, closeType: m.ObjectType, name: m.Name})
	return c.fe.uout.write(c.fe.cin.raw)
}

// onFunctionCall handles the fast-path function call (libpq's large-object
// API uses it). It runs arbitrary functions by OID, so it is an admin act.
func (c *conn) onFunctionCall(ctx context.Context, body []byte) error {
	var f pgproto3.FunctionCall
	if err := f.Decode(body); err != nil {
		return c.protocolError("invalid FunctionCall message")
	}
	if c.fe.skipping {
		return nil
	}
	stmts := []sqlclass.Statement{{Class: policy.Admin, Kind: "function_call", Risks: []policy.Risk{policy.RiskUnclassified}}}
	cmd := c.newCommand(stmts)
	rc := &record.Command{ID: cmd.id, Protocol: record.ProtocolPostgres,
		Postgres: &record.PostgresCommand{Flow: record.FlowFunction, SQL: fmt.Sprintf("-- fast-path call of function %d", f.Function)}}
	codes := make([]int16, len(f.ArgFormatCodes))
	for i, fc := range f.ArgFormatCodes {
		codes[i] = int16(fc)
	}
	for i, a := range f.Arguments {
		rc.Postgres.Params = append(rc.Postgres.Params, recordParam(a, formatAt(codes, i) == 1))
	}
	deny := c.decide(stmts, rc)
	if deny == nil && c.profile() != nil {
		// The function is named by OID and its result is opaque: phigate
		// cannot tell what it derives from, so it cannot mask it.
		rc.Decision, rc.Reason = "deny", "a fast-path function call's result cannot be masked"
		deny = pgError("ERROR", codeInsufficientPriv, "permission denied by phigate: a fast-path function call's result cannot be masked under this grant's masking profile")
	}
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	if g := c.fe.gate; deny == nil && g != nil {
		var params [][]byte
		for _, a := range f.Arguments {
			params = append(params, a)
		}
		var err error
		if deny, err = c.approve(ctx, cmd.id, g, rc.Postgres.SQL, params, rc.Classes); err != nil {
			return err
		}
	}
	defer func() { c.fe.batch++ }()
	if deny != nil {
		cmd.errored = true
		c.push(&expect{kind: expFunction, cmd: cmd, deny: deny})
		return c.writeMsg(&pgproto3.Query{String: deniedSQL})
	}
	if c.snapshotsOn() {
		if err := c.recordNone(cmd.id, 0, change.OpCall, "not analysed: a fast-path function call may change any rows; phigate cannot see which"); err != nil {
			return err
		}
	}
	c.push(&expect{kind: expFunction, cmd: cmd})
	return c.fe.uout.write(c.fe.cin.raw)
}

// onCopyData records data the agent sends for COPY FROM STDIN before it
// reaches the server. Every CopyData is recorded, whatever phigate thought
// the command was: outside COPY the server ignores it, and if a COPY phigate
// did not see is running, the data is still in the recording (and the
// backend ends the session when the server asks for it).
func (c *conn) onCopyData(body []byte) error {
	id := c.fe.nextCmd
	if c.fe.copyIn != nil {
		id = c.fe.copyIn.id
	}
	ev := &record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: id, Offset: c.fe.copyOffset, Data: body}}
	c.fe.copyOffset += int64(len(body))
	lsn, err := c.rec.Append(ev)
	if err != nil {
		return c.recordingFailed(err)
	}
	c.cmdPos.Store(uint64(lsn))
	return c.fe.uout.write(c.fe.cin.raw)
}
