package pgwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// errUpstreamFatal ends the backend loop after the upstream sent FATAL.
var errUpstreamFatal = errors.New("upstream ended the session")

// backendState is owned by the backend goroutine.
type backendState struct {
	uin  *frameReader
	cout *outBuf
	// params are the server's settings that masking depends on.
	params mask.Params
	// pending are the recorded changes whose transaction has not ended;
	// txError is the SQLSTATE of the first error in their transaction.
	pending []pendingChange
	txError string
	// ddlInTx: DDL completed in the transaction not yet ended; the
	// catalog forgets what it read again when the transaction ends, since
	// its own connection could not see the DDL before the commit.
	ddlInTx bool
}

// backend relays upstream -> agent: it resolves result columns, masks rows,
// records each statement's result, and flushes to the agent only once every
// event recorded so far is durable (cout's before hook).
func (c *conn) backend(ctx context.Context) error {
	err := c.backendLoop(ctx)
	c.mu.Lock()
	f := c.lastErr
	c.mu.Unlock()
	if f != nil {
		// phigate's own last word; it carries no recorded data, so it does
		// not wait for the recording (which may be what failed).
		_ = c.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = writeRaw(c.client, f)
	}
	return err
}

func (c *conn) backendLoop(ctx context.Context) error {
	for {
		typ, body, err := c.be.uin.next()
		if err != nil {
			if errors.Is(err, ErrMessageTooLarge) {
				c.setFatal(pgError("FATAL", codeProtocolViolation, "a message from the server exceeds phigate's size limit"), "upstream message too large")
			}
			return err
		}
		if err := c.onBackend(ctx, typ, body); err != nil {
			if errors.Is(err, session.ErrNotRecorded) {
				return c.recordingFailed(err)
			}
			return err
		}
		if c.be.uin.buffered() == 0 {
			if err := c.be.cout.flush(); err != nil {
				if errors.Is(err, session.ErrNotRecorded) {
					return c.recordingFailed(err)
				}
				return err
			}
			c.be.uin.shrink()
		}
	}
}

func (c *conn) forward() error { return c.be.cout.write(c.be.uin.raw) }

func (c *conn) forwardUnless(hidden bool) error {
	if hidden {
		return nil
	}
	return c.forward()
}

// upstreamError ends the session when the server says something phigate
// cannot follow, or does something phigate's classification did not
// foresee: relaying on would risk unmasked, unrecorded or unauthorised
// work. The mismatch is recorded. msg never holds data.
func (c *conn) upstreamError(msg string) error {
	c.log.Warn("upstream protocol error", "msg", msg)
	if _, err := c.rec.Append(&record.Event{Kind: record.KindProtocolError, Error: &record.ProtocolError{Code: codeProtocolViolation, Message: "upstream: " + msg}}); err != nil {
		c.log.Error("cannot record upstream protocol error", "err", err)
	}
	c.setFatal(pgError("FATAL", codeProtocolViolation, "phigate lost track of the server's protocol: "+msg), "upstream protocol error")
	return errors.New(msg)
}

func (c *conn) onBackend(ctx context.Context, typ byte, body []byte) error {
	switch typ {
	case 'S':
		var ps pgproto3.ParameterStatus
		if err := ps.Decode(body); err != nil {
			return c.upstreamError("malformed ParameterStatus")
		}
		if why := unsafeSetting(ps.Name, ps.Value); why != "" {
			// Refused as a statement, so reached some other way: what
			// phigate parses would no longer be what the server runs.
			return c.upstreamError("the server changed " + ps.Name + ": " + why)
		}
		if ps.Name == "DateStyle" {
			c.be.params.DateStyle = ps.Value
		}
		if masked := c.maskParameterStatus(&ps); masked != nil {
			return c.be.cout.write(masked)
		}
		return c.forward()
	case 'N':
		if c.droppedNotice(body) {
			return nil
		}
		if masked := c.maskServerMessage(ctx, body, true, c.head()); masked != nil {
			return c.be.cout.write(masked)
		}
		return c.forward()
	case 'A':
		if masked := c.maskNotification(body); masked != nil {
			return c.be.cout.write(masked)
		}
		return c.forward()
	case 'E':
		return c.onUpstreamError(ctx, body)
	}
	e := c.head()
	if e == nil {
		return c.upstreamError(fmt.Sprintf("unexpected message %q with nothing pending", typ))
	}
	if e.step != nil {
		return c.onStepAnswer(ctx, e, typ, body)
	}
	switch typ {
	case '1', '2', '3':
		return c.onConfirm(e, typ)
	case 't':
		if e.kind != expDescribeStmt {
			return c.upstreamError("unexpected ParameterDescription")
		}
		var pd pgproto3.ParameterDescription
		if e.stmt != nil && pd.Decode(body) == nil {
			c.mu.Lock()
			e.stmt.paramOIDs, e.stmt.paramsKnown = append([]uint32(nil), pd.ParameterOIDs...), true
			c.mu.Unlock()
		}
		return c.forwardUnless(e.hidden)
	case 'T', 'n':
		return c.onRowDescription(ctx, e, typ, body)
	case 'D':
		return c.onDataRow(ctx, e, body)
	case 'C', 'I', 's':
		return c.onCommandDone(e, typ, body)
	case 'Z':
		return c.onReady(body)
	case 'G':
		if !e.cmd.copies(true) {
			return c.upstreamError("the server started a COPY FROM STDIN phigate did not classify as one")
		}
		return c.forward()
	case 'H':
		if !e.cmd.copies(false) {
			return c.upstreamError("the server started a COPY TO STDOUT phigate did not classify as one")
		}
		return c.onCopyOut(ctx, e, body)
	case 'd', 'c':
		return c.onCopyOutData(e, typ, body)
	case 'V':
		if e.kind != expFunction || e.cmd == nil {
			return c.upstreamError("unexpected FunctionCallResponse")
		}
		e.cmd.run.bytes += int64(len(c.be.uin.raw))
		if err := c.endStatement(e.cmd, "FUNCTION CALL", nil, false); err != nil {
			return err
		}
		return c.forward()
	}
	return c.upstreamError(fmt.Sprintf("unexpected message type %q", typ))
}

// droppedNotice reports whether a NoticeResponse answers one of phigate's
// own snapshot reads (not a COMMIT whose notices are the agent's).
func (c *conn) droppedNotice(body []byte) bool {
	e := c.head()
	return e != nil && e.step != nil && !e.step.pass
}

// copies reports whether the command's current statement is a COPY FROM
// STDIN (from) or TO STDOUT, as phigate classified it.
func (cmd *command) copies(from bool) bool {
	if cmd == nil || cmd.index >= len(cmd.stmts) {
		return false
	}
	c := cmd.stmts[cmd.index].Copy
	return c != nil && c.Stdio && c.From == from
}

// onConfirm handles ParseComplete, BindComplete and CloseComplete: the
// server has made the change, so phigate's mirror of its objects does too.
func (c *conn) onConfirm(e *expect, typ byte) error {
	want := map[byte]expKind{'1': expParse, '2': expBind, '3': expClose}[typ]
	if e.kind != want || e.deny != nil {
		return c.upstreamError(fmt.Sprintf("unexpected message %q", typ))
	}
	c.mu.Lock()
	if !e.hidden {
		switch e.kind {
		case expParse:
			c.server.stmts[e.name] = e.stmt
		case expBind:
			c.server.definePortal(e.portal)
		case expClose:
			if e.closeType == 'S' {
				delete(c.server.stmts, e.name)
			} else {
				delete(c.server.portals, e.name)
			}
		}
	}
	c.popLocked()
	c.mu.Unlock()
	return c.forwardUnless(e.hidden)
}

func (c *conn) onRowDescription(ctx context.Context, e *expect, typ byte, body []byte) error {
	var fields []pgproto3.FieldDescription
	if typ == 'T' {
		var rd pgproto3.RowDescription
		if err := rd.Decode(body); err != nil {
			return c.upstreamError("malformed RowDescription")
		}
		fields = rd.Fields
		for i := range fields {
			fields[i].Name = bytes.Clone(fields[i].Name)
		}
	}
	switch e.kind {
	case expDescribeStmt:
		if e.copyDesc != nil {
			e.copyDesc.copyCols = fields
		}
		c.mu.Lock()
		if e.stmt != nil {
			e.stmt.desc, e.stmt.descKnown = fields, true
		}
		c.popLocked()
		c.mu.Unlock()
		return c.forwardUnless(e.hidden)
	case expDescribePortal:
		c.mu.Lock()
		if e.portal != nil {
			e.portal.desc, e.portal.descKnown = fields, true
		}
		c.popLocked()
		c.mu.Unlock()
		return c.forwardUnless(e.hidden)
	case expQuery:
		if typ == 'n' || e.cmd == nil {
			return c.upstreamError("unexpected NoData")
		}
		if err := c.planRun(ctx, e.cmd, fields, nil, false); err != nil {
			return err
		}
		e.cmd.run.bytes += int64(len(c.be.uin.raw))
		return c.forward()
	}
	return c.upstreamError("unexpected RowDescription")
}

// planRun computes the masking plan for the statement now returning rows.
// If the result columns cannot be resolved the session ends: phigate does
// not forward rows it cannot vouch for.
func (c *conn) planRun(ctx context.Context, cmd *command, fields []pgproto3.FieldDescription, formats []int16, applyFormats bool) error {
	cmd.run.planned = true
	if c.profile() == nil {
		return nil
	}
	outs, traced, err := c.rowsLineage(ctx, cmd)
	if err != nil {
		c.log.Error("cannot trace result columns for masking", "err", err)
		c.setFatal(pgError("FATAL", "58000", "phigate cannot trace the result's columns for masking; the result is withheld"), "catalog unavailable")
		return err
	}
	cols := make([]mask.Column, len(fields))
	for i, f := range fields {
		format := f.Format
		if applyFormats {
			format = formatAt(formats, i)
		}
		cols[i] = mask.Column{Name: string(f.Name), TypeOID: f.DataTypeOID, TypeMod: f.TypeModifier, Binary: format == 1}
		switch {
		case !traced:
			// Nothing to trace (SHOW, EXPLAIN...): the server's own
			// origin of the column, and content detection.
			src, err := c.cat.source(ctx, f.TableOID, int16(f.TableAttributeNumber))
			if err != nil {
				c.log.Error("cannot resolve result columns for masking", "err", err)
				c.setFatal(pgError("FATAL", "58000", "phigate cannot resolve the result's columns for masking; the result is withheld"), "catalog unavailable")
				return err
			}
			cols[i].Source = src
		case len(outs) != len(fields):
			// phigate's reading of the statement and the server's differ:
			// nothing of it is vouched for.
			cols[i].Withhold = true
		default:
			traceColumn(&cols[i], outs[i])
		}
	}
	plan := c.profile().Plan(cols, c.maskParams())
	cmd.run.plan = plan
	if c.proofs != nil && plan.Active() {
		id := cmd.id
		c.proofs.Statement, c.proofs.Phase = cmd.index, ""
		plan.SetProofSink(func(p *mask.Proof) { c.proofs.Add(id, p) })
	}
	return nil
}

func (c *conn) onDataRow(ctx context.Context, e *expect, body []byte) error {
	cmd := e.cmd
	if cmd == nil || (e.kind != expQuery && e.kind != expExecute) {
		return c.upstreamError("unexpected DataRow")
	}
	if !cmd.run.planned && e.kind == expExecute {
		p := e.portal
		switch {
		case p != nil && p.descKnown:
			if err := c.planRun(ctx, cmd, p.desc, nil, false); err != nil {
				return err
			}
		case p != nil && p.stmt != nil && p.stmt.descKnown:
			if err := c.planRun(ctx, cmd, p.stmt.desc, p.resultFormats, true); err != nil {
				return err
			}
		default:
			if c.profile() != nil {
				return c.upstreamError("rows for a portal phigate has no description of")
			}
			cmd.run.planned = true
		}
	}
	run := &cmd.run
	run.rows++
	if run.plan == nil || !run.plan.Active() {
		run.bytes += int64(len(c.be.uin.raw))
		return c.forward()
	}
	if c.proofs != nil {
		c.proofs.Row = run.rows
	}
	start := len(c.be.cout.buf)
	buf, err := appendMaskedDataRow(c.be.cout.buf, body, run.plan)
	if err != nil {
		c.be.cout.buf = c.be.cout.buf[:start]
		return c.upstreamError(err.Error())
	}
	c.be.cout.buf = buf
	run.bytes += int64(len(buf) - start)
	return c.be.cout.full()
}

// onCommandDone handles CommandComplete, EmptyQueryResponse and
// PortalSuspended. A statement's completion is where its effect on the
// server's named objects happens; it is also checked against what phigate
// classified: more statements than phigate saw, or a statement classed as
// not writing that completes as a write, ends the session.
func (c *conn) onCommandDone(e *expect, typ byte, body []byte) error {
	if e.kind != expQuery && e.kind != expExecute {
		return c.upstreamError(fmt.Sprintf("unexpected message %q", typ))
	}
	if e.kind == expExecute && typ != 'C' {
		c.pop()
	}
	cmd := e.cmd
	if cmd == nil {
		return c.upstreamError(fmt.Sprintf("unexpected message %q for a command phigate did not record", typ))
	}
	switch {
	case typ == 'I' && len(cmd.stmts) == 0 && cmd.index == 0:
		// An empty query ("", ";", "-- ping"): no statement, one answer.
	case typ != 's' && cmd.index >= len(cmd.stmts):
		return c.upstreamError("the server completed more statements than phigate classified")
	}
	var tag string
	switch typ {
	case 'C':
		tag = string(bytes.TrimRight(body, "\x00"))
		st := &cmd.stmts[cmd.index]
		if !tagFits(st.Class, tag) {
			return c.upstreamError(fmt.Sprintf("the server completed %q for a statement phigate classed %s", firstWord(tag), st.Class))
		}
		if st.Class == policy.DDL && c.cat != nil {
			c.cat.invalidate()
			c.be.ddlInTx = true
		}
		if run := cmd.change; run != nil && run.ref.Statement == cmd.index {
			c.changeCompleted(run, tag)
		}
		c.noteTxStatement(st, tag)
		if st.Effect != sqlclass.EffectNone {
			var d def
			if cmd.defs != nil {
				d = cmd.defs[cmd.index]
			}
			c.mu.Lock()
			var running *portalInfo
			if e.kind == expExecute {
				running = e.portal
			}
			c.server.apply(st, d, tag, running)
			c.mu.Unlock()
		}
		if e.kind == expExecute {
			// Only now that the transaction's status says what the
			// statement did: blockKnown must never see neither.
			c.pop()
		}
	case 'I':
		tag = "EMPTY"
	case 's':
		// A data change with RETURNING ran whole at its first Execute;
		// the rest of its rows wait in the portal.
		if run := cmd.change; run != nil && run.ref.Statement == cmd.index && run.tag == "" && run.failed == nil {
			run.suspended = true
			c.changeCompleted(run, "")
		}
	}
	if r := cmd.run.refused; r != nil {
		// The statement's output was withheld and an error sent instead;
		// its completion must not follow.
		return c.endStatement(cmd, "", &record.SQLError{Code: r.Code, Message: r.Message, Source: "phigate"}, false)
	}
	if w := e.hold; w != nil && typ == 'C' && cmd.index == len(cmd.stmts)-1 {
		// An implicit transaction commits before its Query's last
		// CommandComplete: held until phigate's block has committed.
		w.held, w.heldCmd, w.heldTag = bytes.Clone(c.be.uin.raw), cmd, tag
		return nil
	}
	cmd.run.bytes += int64(len(c.be.uin.raw))
	if err := c.endStatement(cmd, tag, nil, typ == 's'); err != nil {
		return err
	}
	return c.forward()
}

// quietTags are the command tags of statements that change no data: a
// statement phigate classed read, tx or session must complete with one.
var quietTags = map[string]bool{
	"SELECT": true, "SHOW": true, "EXPLAIN": true, "FETCH": true, "MOVE": true, "DECLARE": true,
	"LISTEN": true, "UNLISTEN": true, "SET": true, "RESET": true, "DISCARD": true, "DEALLOCATE": true,
	"CLOSE": true, "PREPARE": true, "BEGIN": true, "START": true, "COMMIT": true, "ROLLBACK": true,
	"SAVEPOINT": true, "RELEASE": true,
}

func tagFits(class policy.Class, tag string) bool {
	switch class {
	case policy.Read, policy.Tx, policy.Session:
		return quietTags[firstWord(tag)]
	case policy.Export, policy.Import:
		return firstWord(tag) == "COPY"
	}
	return true
}

func firstWord(tag string) string {
	if i := strings.IndexByte(tag, ' '); i >= 0 {
		return tag[:i]
	}
	return tag
}

// endStatement records one statement's outcome, closes its masking plan and
// flushes its masking proofs, and readies the command for its next statement.
func (c *conn) endStatement(cmd *command, tag string, sqlErr *record.SQLError, suspended bool) error {
	var err error
	if c.proofs != nil {
		err = c.proofs.Flush() // the proofs of a statement's rows precede its result
	}
	if rerr := c.appendResult(cmd, tag, sqlErr, suspended); err == nil {
		err = rerr
	}
	if plan := cmd.run.plan; plan != nil {
		plan.Close()
	}
	cmd.index++
	cmd.run = stmtRun{start: time.Now()}
	return err
}

// appendResult records one statement's outcome. Rows are those counted on
// the wire, or the count in the tag for statements that return none.
func (c *conn) appendResult(cmd *command, tag string, sqlErr *record.SQLError, suspended bool) error {
	start := cmd.run.start
	if start.IsZero() {
		start = cmd.start
	}
	r := &record.Result{
		Command:    cmd.id,
		Tag:        tag,
		Rows:       cmd.run.rows,
		Bytes:      cmd.run.bytes,
		DurationUS: time.Since(start).Microseconds(),
		Error:      sqlErr,
		Suspended:  suspended,
	}
	if r.Rows == 0 && tag != "" {
		if i := bytes.LastIndexByte([]byte(tag), ' '); i > 0 {
			if n, err := strconv.ParseInt(tag[i+1:], 10, 64); err == nil {
				r.Rows = n
			}
		}
	}
	if plan := cmd.run.plan; plan != nil {
		var masked int64
		for _, a := range plan.Applied() {
			r.Masked = append(r.Masked, record.MaskedColumn{Column: a.Column, Source: a.Source, Derived: a.Derived, Rule: a.Rule,
				Action: a.Action, Values: a.Values, Scanned: a.Scanned, Passed: a.Passed, Reason: a.Reason})
			masked += a.Values
		}
		if obs := c.srv.cfg.Observer; obs != nil && masked > 0 {
			obs.Masked(masked)
		}
	}
	if _, err := c.rec.AppendLazy(&record.Event{Kind: record.KindResult, Result: r}); err != nil {
		return err
	}
	return nil
}

// onUpstreamError relays an ErrorResponse: FATAL ends the session, a
// refused statement's error is swapped for phigate's, and in the extended
// protocol everything up to the next Sync is dropped, as the server does.
func (c *conn) onUpstreamError(ctx context.Context, body []byte) error {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return c.upstreamError("malformed ErrorResponse")
	}
	if er.Severity == "FATAL" || er.Severity == "PANIC" {
		c.setReason("upstream fatal error")
		if err := c.forward(); err != nil {
			return err
		}
		if err := c.be.cout.flush(); err != nil {
			return err
		}
		return errUpstreamFatal
	}
	e := c.head()
	if e == nil {
		if masked := c.maskServerMessage(ctx, body, false, nil); masked != nil {
			return c.be.cout.write(masked)
		}
		return c.forward()
	}
	if e.step != nil {
		return c.onStepError(ctx, e, body)
	}
	out := c.be.uin.raw
	if masked := c.maskServerMessage(ctx, body, false, e); masked != nil {
		out = masked
		if err := er.Decode(masked[5:]); err != nil {
			return err
		}
	}
	var src = "upstream"
	if e.deny != nil {
		var err error
		if out, err = e.deny.Encode(nil); err != nil {
			return err
		}
		er, src = *e.deny, "phigate"
	}
	if c.be.txError == "" {
		c.be.txError = er.Code
	}
	c.mu.Lock()
	c.server.failed(e)
	if c.tx.status == 'T' {
		c.tx.status = 'E'
	}
	if e.kind != expQuery && e.kind != expFunction {
		c.tx.skipping = true
	}
	c.mu.Unlock()
	if e.cmd != nil && (!e.cmd.errored || e.deny != nil) {
		e.cmd.errored = true
		if run := e.cmd.change; run != nil && run.ref.Statement == e.cmd.index && run.failed == nil && run.tag == "" {
			c.changeFailed(run, &record.SQLError{Code: er.Code, Message: er.Message, Source: src})
		}
		if err := c.endStatement(e.cmd, "", &record.SQLError{Code: er.Code, Message: er.Message, Source: src}, false); err != nil {
			return err
		}
	}
	if e.kind == expQuery || e.kind == expFunction {
		return c.be.cout.write(out) // the query ends at ReadyForQuery
	}
	// Extended protocol: the server now skips to Sync. Drop what it will
	// not answer, noting commands that were recorded but never ran.
	swallow := e.hidden && c.hiddenSyncAhead()
	// The skipped messages' changes never happen: they leave the queue
	// unapplied.
	c.mu.Lock()
	for len(c.queue) > 0 && c.queue[0].kind != expSync {
		d := c.queue[0]
		c.popLocked()
		if d != e && d.cmd != nil && !d.cmd.errored {
			d.cmd.errored = true
			c.mu.Unlock()
			err := c.appendResult(d.cmd, "", &record.SQLError{Message: "not run: an earlier message in the same pipeline failed", Source: "upstream"}, false)
			c.mu.Lock()
			if err != nil {
				c.mu.Unlock()
				return err
			}
		}
	}
	c.mu.Unlock()
	if swallow {
		return nil
	}
	return c.be.cout.write(out)
}

// hiddenSyncAhead reports whether the next Sync pending is one phigate
// injected (then the whole failed batch was phigate's own).
func (c *conn) hiddenSyncAhead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.queue {
		if e.kind == expSync {
			return e.hidden
		}
	}
	return false
}

func (c *conn) onReady(body []byte) error {
	if len(body) != 1 {
		return c.upstreamError("malformed ReadyForQuery")
	}
	var last *expect
	c.mu.Lock()
	for len(c.queue) > 0 {
		last = c.queue[0]
		c.popLocked()
		if last.kind == expSync || last.kind == expQuery || last.kind == expFunction {
			break
		}
	}
	var outcome, reason string
	if last != nil {
		if last.kind == expQuery && last.deny == nil {
			delete(c.server.portals, "") // a simple query replaces the unnamed portal with its own
		}
		outcome, reason = c.readyLocked(body[0])
		if body[0] == 'I' { // the transaction ended (commit, or rollback after an error)
			c.server.endTx(c.server.txFailed)
		}
	}
	c.mu.Unlock()
	if last == nil {
		return c.upstreamError("unexpected ReadyForQuery")
	}
	if outcome != "" {
		c.endChanges(outcome, reason, nil)
	}
	if body[0] == 'I' && c.be.ddlInTx {
		c.be.ddlInTx = false
		c.cat.invalidate() // what runs code may have changed (forwarding)
	}
	if w := last.hold; w != nil {
		// The end of the implicit transaction phigate's block stands in
		// for: the frontend ends the block, and its ReadyForQuery answers.
		w.status = body[0]
		close(w.ready)
		return nil
	}
	return c.forwardUnless(last.hidden)
}

// onCopyOut sets up masking of a COPY ... TO STDOUT, or refuses to forward
// its data when the columns could not be resolved or are in binary format.
func (c *conn) onCopyOut(ctx context.Context, e *expect, body []byte) error {
	cmd := e.cmd
	if cmd == nil || c.profile() == nil {
		return c.forward()
	}
	var co pgproto3.CopyOutResponse
	if err := co.Decode(body); err != nil {
		return c.upstreamError("malformed CopyOutResponse")
	}
	refuse := func(code, msg string) error {
		er := pgError("ERROR", code, msg)
		cmd.run.refused = er
		buf, err := er.Encode(nil)
		if err != nil {
			return err
		}
		return c.be.cout.write(buf)
	}
	if cmd.index >= len(cmd.stmts) || cmd.stmts[cmd.index].Copy == nil || !cmd.copyDesc {
		return refuse(codeFeatureNotSupp, "phigate cannot mask this COPY: only COPY statements sent as such can export masked data")
	}
	if cmd.copyCols == nil || len(cmd.copyCols) != len(co.ColumnFormatCodes) {
		return refuse(codeFeatureNotSupp, "phigate could not determine the columns of this COPY, so it cannot mask them")
	}
	if err := c.planRun(ctx, cmd, cmd.copyCols, nil, true); err != nil {
		return err
	}
	if cmd.run.plan.Active() {
		if co.OverallFormat == 1 {
			return refuse(codeFeatureNotSupp, "binary COPY of masked columns is not supported; use FORMAT text or csv")
		}
		cmd.run.copy = newCopyPlan(cmd.run.plan, cmd.stmts[cmd.index].Copy)
	}
	cmd.run.bytes += int64(len(c.be.uin.raw))
	return c.forward()
}

func (c *conn) onCopyOutData(e *expect, typ byte, body []byte) error {
	cmd := e.cmd
	if cmd == nil {
		return c.forward()
	}
	run := &cmd.run
	if run.refused != nil {
		return nil
	}
	if typ == 'c' || run.copy == nil {
		if typ == 'd' {
			run.rows++
		}
		run.bytes += int64(len(c.be.uin.raw))
		return c.forward()
	}
	run.rows++
	if c.proofs != nil {
		c.proofs.Row = run.rows
	}
	dst, start := beginMsg(c.be.cout.buf, 'd')
	dst, err := run.copy.appendRow(dst, body)
	if err != nil {
		c.be.cout.buf = dst[:start]
		return c.upstreamError("malformed COPY row")
	}
	c.be.cout.buf = finishMsg(dst, start)
	run.bytes += int64(len(c.be.cout.buf) - start)
	return c.be.cout.full()
}
