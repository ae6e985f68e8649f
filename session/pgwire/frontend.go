package pgwire

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// deniedSQL replaces a statement that policy refused. It is certain to fail
// at parse time, so the upstream aborts the transaction and skips the rest
// of the pipeline exactly as it would for a real permission error; the
// backend loop then swaps its syntax error for the 42501 the agent is owed.
const deniedSQL = "PHIGATE DENIED STATEMENT"

// frontend relays agent -> upstream until the agent leaves or the session
// fails. Before anything is flushed upstream, every event appended so far
// is durable (uout's before hook): commands are recorded write-ahead.
func (c *conn) frontend(ctx context.Context) error {
	for {
		typ, body, err := c.cin.next()
		if err != nil {
			if errors.Is(err, ErrMessageTooLarge) || errors.Is(err, ErrBadLength) {
				return c.protocolError(ctx, err.Error())
			}
			return err
		}
		switch typ {
		case 'Q':
			err = c.onQuery(ctx, body)
		case 'P':
			err = c.onParse(body)
		case 'B':
			err = c.onBind(body)
		case 'D':
			err = c.onDescribe(body)
		case 'E':
			err = c.onExecute(ctx, body)
		case 'C':
			err = c.onClose(body)
		case 'S':
			c.push(&expect{kind: expSync})
			err = c.uout.write(c.cin.raw)
		case 'H':
			err = c.uout.write(c.cin.raw)
		case 'F':
			err = c.onFunctionCall(body)
		case 'd':
			err = c.onCopyData(body)
		case 'c', 'f':
			c.copyIn = nil
			err = c.uout.write(c.cin.raw)
		case 'X':
			// Say why before the upstream sees Terminate and closes: the
			// backend may notice that first.
			c.setReason("terminate")
			if err := c.uout.write(c.cin.raw); err != nil {
				return err
			}
			if err := c.uout.flush(); err != nil {
				return err
			}
			return errTerminate
		default:
			return c.protocolError(ctx, fmt.Sprintf("invalid frontend message type %q", typ))
		}
		if err != nil {
			return err
		}
		if c.cin.buffered() == 0 {
			if err := c.uout.flush(); err != nil {
				return c.recordingFailed(err)
			}
			c.cin.shrink()
		}
	}
}

// protocolError records malformed agent input and ends the session with 08P01.
func (c *conn) protocolError(ctx context.Context, msg string) error {
	if _, err := c.rec.Append(&record.Event{Kind: record.KindProtocolError, Error: &record.ProtocolError{Code: codeProtocolViolation, Message: msg}}); err != nil {
		c.log.Error("cannot record protocol error", "err", err)
	}
	c.log.Info("protocol violation from agent", "msg", msg)
	c.setFatal(pgError("FATAL", codeProtocolViolation, msg), "protocol error")
	return fmt.Errorf("protocol error: %s", msg)
}

// recordingFailed ends the session when an event could not be made durable:
// nothing more goes through, in either direction.
func (c *conn) recordingFailed(err error) error {
	c.log.Error("recording failed; ending session", "err", err)
	c.setFatal(pgError("FATAL", codeIOError, "phigate cannot record this session; the command was not run"), "recording failed")
	return err
}

func (c *conn) newCommand(stmts []sqlclass.Statement) *command {
	c.nextCmd++
	return &command{id: c.nextCmd, start: time.Now(), stmts: stmts}
}

// decide applies the grant to a classified command. A parse failure is
// refused too: phigate does not forward what it cannot classify.
func (c *conn) decide(stmts []sqlclass.Statement, perr error, rc *record.Command) *pgproto3.ErrorResponse {
	if perr != nil {
		rc.Decision, rc.Reason = "deny", "statement could not be parsed"
		msg := perr.Error()
		return pgError("ERROR", codeSyntaxError, msg)
	}
	// EXECUTE runs what an earlier PREPARE defined: judge it by that. The
	// classified slice is shared through the cache, so copy before editing.
	resolved := stmts
	for i, s := range stmts {
		if s.Execute == "" {
			continue
		}
		if &resolved[0] == &stmts[0] {
			resolved = slices.Clone(stmts)
		}
		if cl, ok := c.sqlPrepared[s.Execute]; ok {
			resolved[i].Class = cl
		}
	}
	for _, s := range resolved {
		rc.Classes = append(rc.Classes, string(s.Class))
	}
	d := policy.Command(c.grant, resolved)
	rc.Rule = d.Rule()
	if !d.Allowed {
		rc.Decision, rc.Reason = "deny", d.Reason
		return pgError("ERROR", codeInsufficientPriv, "permission denied by phigate: "+d.Reason)
	}
	rc.Decision = "allow"
	return nil
}

// track follows statements that change what later commands mean or how
// results must be read.
func (c *conn) track(stmts []sqlclass.Statement) {
	for _, s := range stmts {
		switch {
		case s.Prepare != "":
			c.sqlPrepared[s.Prepare] = s.Class
		case s.Kind == "deallocate_stmt", s.Kind == "discard_stmt":
			// Both also drop protocol-level statements of the same names;
			// forget them all rather than track names precisely.
			clear(c.sqlPrepared)
			c.mu.Lock()
			clear(c.stmts)
			c.mu.Unlock()
		case s.Class == sqlclass.DDL && c.cat != nil:
			c.cat.invalidate()
		}
	}
}

// appendCommand records a command before it is forwarded. Its position is
// what the agent's side waits for before releasing any output.
func (c *conn) appendCommand(rc *record.Command) error {
	lsn, err := c.rec.Append(&record.Event{Kind: record.KindCommand, Command: rc})
	if err != nil {
		return c.recordingFailed(err)
	}
	c.cmdLSN.Store(uint64(lsn))
	return nil
}

func (c *conn) onQuery(ctx context.Context, body []byte) error {
	var q pgproto3.Query
	if err := q.Decode(body); err != nil {
		return c.protocolError(ctx, "invalid Query message")
	}
	stmts, perr := c.srv.classes.Classify(q.String)
	cmd := c.newCommand(stmts)
	rc := &record.Command{ID: cmd.id, Protocol: "simple", SQL: q.String}
	deny := c.decide(stmts, perr, rc)
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	if deny != nil {
		cmd.errored = true
		c.push(&expect{kind: expQuery, cmd: cmd, deny: deny})
		return c.writeMsg(&pgproto3.Query{String: deniedSQL})
	}
	c.track(stmts)
	if c.profile != nil {
		if err := c.describeCopies(cmd, true); err != nil {
			return err
		}
	}
	for _, s := range stmts {
		if s.Class == sqlclass.Import {
			c.copyIn, c.copyOffset = cmd, 0
		}
	}
	c.push(&expect{kind: expQuery, cmd: cmd})
	return c.uout.write(c.cin.raw)
}

// describeCopies asks the upstream, within the agent's own session (so with
// its search_path and visibility), which columns each COPY ... TO STDOUT of
// cmd will produce, so that the backend can mask them. The describe is
// pipelined ahead of the command and its answers are hidden from the agent.
// withSync is true for simple queries: a Sync is needed so that a failing
// describe cannot make the server skip the agent's Query.
func (c *conn) describeCopies(cmd *command, withSync bool) error {
	for _, s := range cmd.stmts {
		if s.Class != sqlclass.Export || s.Copy == nil {
			continue
		}
		cmd.copyDesc = true
		if s.Copy.Describe == "" {
			continue // columns unknown: the backend withholds the data
		}
		c.describeSeq++
		name := fmt.Sprintf("phigate_copy_describe_%d", c.describeSeq)
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
	c.uout.buf, err = m.Encode(c.uout.buf)
	if err != nil {
		return err
	}
	return c.uout.full()
}

func (c *conn) onParse(body []byte) error {
	var p pgproto3.Parse
	if err := p.Decode(body); err != nil {
		return c.protocolError(context.Background(), "invalid Parse message")
	}
	c.mu.Lock()
	_, exists := c.stmts[p.Name]
	c.mu.Unlock()
	if p.Name != "" && exists {
		// The server would refuse and keep the old statement; say so
		// ourselves so that our table keeps matching the server's.
		c.push(&expect{kind: expParse, deny: pgError("ERROR", codeDuplicatePrepared, fmt.Sprintf("prepared statement %q already exists", p.Name))})
		return c.writeMsg(&pgproto3.Parse{Name: p.Name, Query: deniedSQL})
	}
	stmts, perr := c.srv.classes.Classify(p.Query)
	rc := &record.Command{Protocol: "extended", SQL: p.Query, Statement: p.Name}
	deny := c.decide(stmts, perr, rc)
	info := &stmtInfo{name: p.Name, sql: p.Query, stmts: stmts, denied: deny != nil}
	c.mu.Lock()
	c.stmts[p.Name] = info
	c.mu.Unlock()
	if deny != nil {
		// The statement will never run; record the refusal now.
		c.nextCmd++
		rc.ID = c.nextCmd
		if err := c.appendCommand(rc); err != nil {
			return err
		}
		c.push(&expect{kind: expParse, stmt: info, deny: deny})
		return c.writeMsg(&pgproto3.Parse{Name: p.Name, Query: deniedSQL})
	}
	c.track(stmts)
	c.push(&expect{kind: expParse, stmt: info})
	return c.uout.write(c.cin.raw)
}

func (c *conn) onBind(body []byte) error {
	var b pgproto3.Bind
	if err := b.Decode(body); err != nil {
		return c.protocolError(context.Background(), "invalid Bind message")
	}
	c.mu.Lock()
	stmt := c.stmts[b.PreparedStatement]
	c.mu.Unlock()
	p := &portalInfo{name: b.DestinationPortal, stmt: stmt, resultFormats: b.ResultFormatCodes}
	p.params = make([]record.Param, len(b.Parameters))
	for i, v := range b.Parameters {
		binary := formatAt(b.ParameterFormatCodes, i) == 1
		switch {
		case v == nil:
			p.params[i].Null = true
		case binary:
			p.params[i].Format = "binary"
			p.params[i].Value = base64.StdEncoding.EncodeToString(v)
		default:
			p.params[i].Value = string(v)
		}
	}
	c.mu.Lock()
	c.portals[b.DestinationPortal] = p
	c.mu.Unlock()
	c.push(&expect{kind: expBind, portal: p})
	return c.uout.write(c.cin.raw)
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

func (c *conn) onDescribe(body []byte) error {
	var d pgproto3.Describe
	if err := d.Decode(body); err != nil {
		return c.protocolError(context.Background(), "invalid Describe message")
	}
	e := &expect{}
	c.mu.Lock()
	if d.ObjectType == 'S' {
		e.kind, e.stmt = expDescribeStmt, c.stmts[d.Name]
		if e.stmt != nil {
			e.stmt.described = true
		}
	} else {
		e.kind, e.portal = expDescribePortal, c.portals[d.Name]
		if e.portal != nil {
			e.portal.described = true
		}
	}
	c.mu.Unlock()
	c.push(e)
	return c.uout.write(c.cin.raw)
}

func (c *conn) onExecute(ctx context.Context, body []byte) error {
	var x pgproto3.Execute
	if err := x.Decode(body); err != nil {
		return c.protocolError(ctx, "invalid Execute message")
	}
	c.mu.Lock()
	p := c.portals[x.Portal]
	c.mu.Unlock()
	if p != nil && p.stmt != nil && p.stmt.denied {
		// The server will skip it (its statement failed to parse); there is
		// nothing to record and nothing it can return.
		c.push(&expect{kind: expExecute, portal: p})
		return c.uout.write(c.cin.raw)
	}
	var stmts []sqlclass.Statement
	rc := &record.Command{Protocol: "extended", Portal: x.Portal, Decision: "allow"}
	if p != nil {
		rc.Params = p.params
		if p.stmt != nil {
			stmts = p.stmt.stmts
			rc.SQL, rc.Statement = p.stmt.sql, p.stmt.name
			for _, s := range stmts {
				rc.Classes = append(rc.Classes, string(s.Class))
			}
			rc.Rule = c.grant.Name
		}
	}
	cmd := c.newCommand(stmts)
	rc.ID = cmd.id
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	if c.profile != nil {
		if err := c.describeCopies(cmd, false); err != nil {
			return err
		}
	}
	if p == nil || (!p.described && (p.stmt == nil || !p.stmt.described)) {
		// Without a description the backend could not tell which columns
		// to mask: ask for one, and hide the answer.
		if p == nil {
			p = &portalInfo{name: x.Portal}
		}
		c.push(&expect{kind: expDescribePortal, portal: p, hidden: true})
		if err := c.writeMsg(&pgproto3.Describe{ObjectType: 'P', Name: x.Portal}); err != nil {
			return err
		}
	}
	for _, s := range stmts {
		if s.Class == sqlclass.Import {
			c.copyIn, c.copyOffset = cmd, 0
		}
	}
	c.push(&expect{kind: expExecute, portal: p, cmd: cmd})
	return c.uout.write(c.cin.raw)
}

func (c *conn) onClose(body []byte) error {
	var m pgproto3.Close
	if err := m.Decode(body); err != nil {
		return c.protocolError(context.Background(), "invalid Close message")
	}
	c.mu.Lock()
	if m.ObjectType == 'S' {
		delete(c.stmts, m.Name)
	} else {
		delete(c.portals, m.Name)
	}
	c.mu.Unlock()
	c.push(&expect{kind: expClose})
	return c.uout.write(c.cin.raw)
}

// onFunctionCall handles the fast-path function call (libpq's large-object
// API uses it). It runs arbitrary functions by OID, so it is an admin act.
func (c *conn) onFunctionCall(body []byte) error {
	var f pgproto3.FunctionCall
	if err := f.Decode(body); err != nil {
		return c.protocolError(context.Background(), "invalid FunctionCall message")
	}
	stmts := []sqlclass.Statement{{Class: sqlclass.Admin, Kind: "function_call"}}
	cmd := c.newCommand(stmts)
	rc := &record.Command{ID: cmd.id, Protocol: "function", SQL: fmt.Sprintf("-- fast-path call of function %d", f.Function)}
	for i, a := range f.Arguments {
		p := record.Param{}
		switch {
		case a == nil:
			p.Null = true
		case i < len(f.ArgFormatCodes) && f.ArgFormatCodes[i] == 1 || len(f.ArgFormatCodes) == 1 && f.ArgFormatCodes[0] == 1:
			p.Format, p.Value = "binary", base64.StdEncoding.EncodeToString(a)
		default:
			p.Value = string(a)
		}
		rc.Params = append(rc.Params, p)
	}
	deny := c.decide(stmts, nil, rc)
	if err := c.appendCommand(rc); err != nil {
		return err
	}
	if deny != nil {
		cmd.errored = true
		c.push(&expect{kind: expFunction, cmd: cmd, deny: deny})
		return c.writeMsg(&pgproto3.Query{String: deniedSQL})
	}
	c.push(&expect{kind: expFunction, cmd: cmd})
	return c.uout.write(c.cin.raw)
}

// onCopyData records data an agent sends with COPY FROM STDIN before it
// reaches the server: it is a data change, and the audit trail keeps it.
func (c *conn) onCopyData(body []byte) error {
	if c.copyIn != nil {
		ev := &record.Event{Kind: record.KindCopyData, Copy: &record.CopyData{Command: c.copyIn.id, Offset: c.copyOffset, Data: body}}
		c.copyOffset += int64(len(body))
		lsn, err := c.rec.Append(ev)
		if err != nil {
			return c.recordingFailed(err)
		}
		c.cmdLSN.Store(uint64(lsn))
	}
	return c.uout.write(c.cin.raw)
}
