package pgwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// errUpstreamFatal ends the backend loop after the upstream sent FATAL.
var errUpstreamFatal = errors.New("upstream ended the session")

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
		typ, body, err := c.uin.next()
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
		if c.uin.buffered() == 0 {
			if err := c.cout.flush(); err != nil {
				if errors.Is(err, session.ErrNotRecorded) {
					return c.recordingFailed(err)
				}
				return err
			}
			c.uin.shrink()
		}
	}
}

func (c *conn) forward() error { return c.cout.write(c.uin.raw) }

func (c *conn) forwardUnless(hidden bool) error {
	if hidden {
		return nil
	}
	return c.forward()
}

// upstreamError ends the session when the server says something phigate
// cannot follow: relaying on would risk unmasked or unrecorded output.
func (c *conn) upstreamError(msg string) error {
	c.log.Warn("upstream protocol error", "msg", msg)
	c.setFatal(pgError("FATAL", codeProtocolViolation, "phigate lost track of the server's protocol: "+msg), "upstream protocol error")
	return errors.New(msg)
}

func (c *conn) onBackend(ctx context.Context, typ byte, body []byte) error {
	switch typ {
	case 'S':
		var ps pgproto3.ParameterStatus
		if err := ps.Decode(body); err == nil && ps.Name == "DateStyle" {
			c.params.DateStyle = ps.Value
		}
		return c.forward()
	case 'N':
		if masked := c.maskServerMessage(body, true); masked != nil {
			return c.cout.write(masked)
		}
		return c.forward()
	case 'A':
		return c.forward()
	case 'E':
		return c.onUpstreamError(body)
	}
	e := c.head()
	if e == nil {
		return c.upstreamError(fmt.Sprintf("unexpected message %q with nothing pending", typ))
	}
	switch typ {
	case '1', '2', '3':
		want := map[byte]expKind{'1': expParse, '2': expBind, '3': expClose}[typ]
		if e.kind != want {
			return c.upstreamError(fmt.Sprintf("unexpected message %q", typ))
		}
		c.pop()
		return c.forwardUnless(e.hidden)
	case 't':
		if e.kind != expDescribeStmt {
			return c.upstreamError("unexpected ParameterDescription")
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
		return c.forward()
	case 'H':
		return c.onCopyOut(ctx, e, body)
	case 'd', 'c':
		return c.onCopyOutData(e, typ, body)
	case 'V':
		if e.kind != expFunction || e.cmd == nil {
			return c.upstreamError("unexpected FunctionCallResponse")
		}
		e.cmd.run.bytes += int64(len(c.uin.raw))
		if err := c.endStatement(e.cmd, "FUNCTION CALL", nil, false); err != nil {
			return err
		}
		return c.forward()
	}
	return c.upstreamError(fmt.Sprintf("unexpected message type %q", typ))
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
		if e.stmt != nil {
			e.stmt.desc = fields
		}
		c.pop()
		return c.forwardUnless(e.hidden)
	case expDescribePortal:
		if e.portal != nil {
			e.portal.desc, e.portal.descKnown = fields, true
		}
		c.pop()
		return c.forwardUnless(e.hidden)
	case expQuery:
		if typ == 'n' || e.cmd == nil {
			return c.upstreamError("unexpected NoData")
		}
		if err := c.planRun(ctx, e.cmd, fields, nil, false); err != nil {
			return err
		}
		e.cmd.run.bytes += int64(len(c.uin.raw))
		return c.forward()
	}
	return c.upstreamError("unexpected RowDescription")
}

// planRun computes the masking plan for the statement now returning rows.
// If the result columns cannot be resolved the session ends: phigate does
// not forward rows it cannot vouch for.
func (c *conn) planRun(ctx context.Context, cmd *command, fields []pgproto3.FieldDescription, formats []int16, applyFormats bool) error {
	cmd.run.planned = true
	if c.profile == nil {
		return nil
	}
	cols := make([]mask.Column, len(fields))
	for i, f := range fields {
		src, err := c.cat.source(ctx, f.TableOID, int16(f.TableAttributeNumber))
		if err != nil {
			c.log.Error("cannot resolve result columns for masking", "err", err)
			c.setFatal(pgError("FATAL", "58000", "phigate cannot resolve the result's columns for masking; the result is withheld"), "catalog unavailable")
			return err
		}
		format := f.Format
		if applyFormats {
			format = formatAt(formats, i)
		}
		cols[i] = mask.Column{Source: src, Name: string(f.Name), TypeOID: f.DataTypeOID, TypeMod: f.TypeModifier, Binary: format == 1}
	}
	plan := c.profile.Plan(cols, c.params)
	cmd.run.plan = plan
	if c.proofs != nil && plan.Active() {
		id := cmd.id
		c.proofs.Statement = cmd.index
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
		case p != nil && p.stmt != nil && p.stmt.desc != nil:
			if err := c.planRun(ctx, cmd, p.stmt.desc, p.resultFormats, true); err != nil {
				return err
			}
		default:
			if c.profile != nil {
				return c.upstreamError("rows for a portal phigate has no description of")
			}
			cmd.run.planned = true
		}
	}
	run := &cmd.run
	run.rows++
	if run.plan == nil || !run.plan.Active() {
		run.bytes += int64(len(c.uin.raw))
		return c.forward()
	}
	if c.proofs != nil {
		c.proofs.Row = run.rows
	}
	start := len(c.cout.buf)
	buf, err := appendMaskedDataRow(c.cout.buf, body, run.plan)
	if err != nil {
		c.cout.buf = c.cout.buf[:start]
		return c.upstreamError(err.Error())
	}
	c.cout.buf = buf
	run.bytes += int64(len(buf) - start)
	return c.cout.full()
}

// onCommandDone handles CommandComplete, EmptyQueryResponse and PortalSuspended.
func (c *conn) onCommandDone(e *expect, typ byte, body []byte) error {
	if e.kind != expQuery && e.kind != expExecute {
		return c.upstreamError(fmt.Sprintf("unexpected message %q", typ))
	}
	if e.kind == expExecute {
		c.pop()
	}
	cmd := e.cmd
	if cmd == nil {
		return c.forward()
	}
	if r := cmd.run.refused; r != nil {
		// The statement's output was withheld and an error sent instead;
		// its completion must not follow.
		return c.endStatement(cmd, "", &record.SQLError{Code: r.Code, Message: r.Message, Source: "phigate"}, false)
	}
	cmd.run.bytes += int64(len(c.uin.raw))
	var tag string
	switch typ {
	case 'C':
		tag = string(bytes.TrimRight(body, "\x00"))
		if cmd.stmts != nil && cmd.index < len(cmd.stmts) && cmd.stmts[cmd.index].Class == sqlclass.DDL && c.cat != nil {
			c.cat.invalidate()
		}
	case 'I':
		tag = "EMPTY"
	}
	if err := c.endStatement(cmd, tag, nil, typ == 's'); err != nil {
		return err
	}
	return c.forward()
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
		for _, a := range plan.Applied() {
			r.Masked = append(r.Masked, record.MaskedColumn{Column: a.Column, Source: a.Source, Rule: a.Rule, Action: a.Action, Values: a.Values})
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
func (c *conn) onUpstreamError(body []byte) error {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return c.upstreamError("malformed ErrorResponse")
	}
	if er.Severity == "FATAL" || er.Severity == "PANIC" {
		c.setReason("upstream fatal error")
		if err := c.forward(); err != nil {
			return err
		}
		if err := c.cout.flush(); err != nil {
			return err
		}
		return errUpstreamFatal
	}
	e := c.head()
	if e == nil {
		if masked := c.maskServerMessage(body, false); masked != nil {
			return c.cout.write(masked)
		}
		return c.forward()
	}
	out := c.uin.raw
	if masked := c.maskServerMessage(body, false); masked != nil {
		out = masked
	}
	var src = "upstream"
	if e.deny != nil {
		var err error
		if out, err = e.deny.Encode(nil); err != nil {
			return err
		}
		er, src = *e.deny, "phigate"
	}
	if e.cmd != nil && (!e.cmd.errored || e.deny != nil) {
		e.cmd.errored = true
		if err := c.endStatement(e.cmd, "", &record.SQLError{Code: er.Code, Message: er.Message, Source: src}, false); err != nil {
			return err
		}
	}
	if e.kind == expQuery || e.kind == expFunction {
		return c.cout.write(out) // the query ends at ReadyForQuery
	}
	// Extended protocol: the server now skips to Sync. Drop what it will
	// not answer, noting commands that were recorded but never ran.
	swallow := e.hidden && c.hiddenSyncAhead()
	c.mu.Lock()
	for len(c.queue) > 0 && c.queue[0].kind != expSync {
		d := c.queue[0]
		c.queue = c.queue[1:]
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
		if d.stmt != nil && d.kind == expParse {
			// The statement was not created; forget it unless replaced since.
			if c.stmts[d.stmt.name] == d.stmt {
				delete(c.stmts, d.stmt.name)
			}
		}
	}
	c.mu.Unlock()
	if swallow {
		return nil
	}
	return c.cout.write(out)
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
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if last.kind == expSync || last.kind == expQuery || last.kind == expFunction {
			break
		}
	}
	c.mu.Unlock()
	if last == nil {
		return c.upstreamError("unexpected ReadyForQuery")
	}
	return c.forwardUnless(last.hidden)
}

// onCopyOut sets up masking of a COPY ... TO STDOUT, or refuses to forward
// its data when the columns could not be resolved or are in binary format.
func (c *conn) onCopyOut(ctx context.Context, e *expect, body []byte) error {
	cmd := e.cmd
	if cmd == nil || c.profile == nil {
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
		return c.cout.write(buf)
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
	cmd.run.bytes += int64(len(c.uin.raw))
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
		run.bytes += int64(len(c.uin.raw))
		return c.forward()
	}
	run.rows++
	if c.proofs != nil {
		c.proofs.Row = run.rows
	}
	dst, start := beginMsg(c.cout.buf, 'd')
	dst, err := run.copy.appendRow(dst, body)
	if err != nil {
		c.cout.buf = dst[:start]
		return c.upstreamError("malformed COPY row")
	}
	c.cout.buf = finishMsg(dst, start)
	run.bytes += int64(len(c.cout.buf) - start)
	return c.cout.full()
}

// maskServerMessage scans the free-text fields of an ErrorResponse or
// NoticeResponse for PHI (a unique violation's detail quotes the row: "Key
// (ssn)=(123-45-6789) already exists") with the session's profile, and
// returns the re-encoded message when something was masked, nil otherwise.
// The recording keeps the upstream's text.
func (c *conn) maskServerMessage(body []byte, notice bool) []byte {
	if c.textPlan == nil || !c.textPlan.Active() {
		return nil
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return nil
	}
	changed := false
	for _, f := range []*string{&er.Message, &er.Detail, &er.Hint, &er.Where, &er.InternalQuery} {
		if *f == "" {
			continue
		}
		out, null := c.textPlan.AppendValue(nil, 0, []byte(*f))
		if null {
			out = []byte("[masked]")
		}
		if string(out) != *f {
			*f, changed = string(out), true
		}
	}
	if !changed {
		return nil
	}
	var msg pgproto3.BackendMessage = &er
	if notice {
		msg = (*pgproto3.NoticeResponse)(&er)
	}
	out, err := msg.Encode(nil)
	if err != nil {
		return nil
	}
	return out
}
