package pgwire

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// The backend's part of snapshots: the answers to phigate's own steps,
// kept from the agent; the rows of reads, masked as results are; what the
// agent's statements do to the server's transaction state (txState); and
// the outcome of recorded changes when their transaction ends.

// popStep drops the head answer of a step; the step's last one closes
// its done.
func (c *conn) popStep(e *expect) {
	c.pop()
	if e.last {
		close(e.step.done)
	}
}

// onStepAnswer handles an answer to a message of a snapshot step.
func (c *conn) onStepAnswer(ctx context.Context, e *expect, typ byte, body []byte) error {
	s := e.step
	switch typ {
	case '1', '2', '3':
		want := map[byte]expKind{'1': expParse, '2': expBind, '3': expClose}[typ]
		if e.kind != want {
			return c.upstreamError(fmt.Sprintf("unexpected message %q for phigate's snapshot", typ))
		}
		c.popStep(e)
		return nil
	case 't':
		var pd pgproto3.ParameterDescription
		if e.kind != expDescribeStmt || pd.Decode(body) != nil {
			return c.upstreamError("unexpected ParameterDescription for phigate's snapshot")
		}
		if e.stmt != nil {
			c.mu.Lock()
			e.stmt.paramOIDs, e.stmt.paramsKnown = append([]uint32(nil), pd.ParameterOIDs...), true
			c.mu.Unlock()
		}
		return nil
	case 'T', 'n':
		switch {
		case e.kind == expDescribeStmt:
		case e.kind == expDescribePortal && typ == 'T' && e.read != nil:
			var rd pgproto3.RowDescription
			if err := rd.Decode(body); err != nil {
				return c.upstreamError("malformed RowDescription")
			}
			if err := c.readColumns(ctx, e.read, rd.Fields); err != nil {
				return err
			}
		case e.kind == expDescribePortal:
		default:
			return c.upstreamError("unexpected RowDescription for phigate's snapshot")
		}
		c.popStep(e)
		return nil
	case 'D':
		if e.kind != expExecute || e.read == nil {
			return c.upstreamError("unexpected DataRow for phigate's snapshot")
		}
		return c.readRow(e.read, body)
	case 'C', 's', 'I':
		if e.kind != expExecute {
			return c.upstreamError(fmt.Sprintf("unexpected message %q for phigate's snapshot", typ))
		}
		if typ == 'C' {
			if err := c.stepTag(s, string(bytes.TrimRight(body, "\x00"))); err != nil {
				return err
			}
		}
		if e.read != nil {
			if err := c.readDone(e.read); err != nil {
				return err
			}
		}
		c.popStep(e)
		return nil
	case 'Z':
		if e.kind != expSync || len(body) != 1 {
			return c.upstreamError("unexpected ReadyForQuery for phigate's snapshot")
		}
		s.status = body[0]
		c.mu.Lock()
		c.popLocked()
		outcome, reason := c.readyLocked(body[0])
		if body[0] == 'I' { // phigate's block ended
			c.server.endTx(c.server.txFailed)
		}
		c.mu.Unlock()
		if outcome != "" {
			c.endChanges(outcome, reason, nil)
		}
		var err error
		if s.pass {
			if err = c.releaseHeld(s.release, "", nil); err == nil {
				err = c.forward() // the agent's ReadyForQuery, in place of the one held
			}
		}
		close(s.done)
		return err
	}
	return c.upstreamError(fmt.Sprintf("unexpected message %q for phigate's snapshot", typ))
}

// stepTag notes what a statement of phigate's own did to the transaction:
// BEGIN opens the block, and a hidden COMMIT or ROLLBACK ends the
// agent's changes in it. The end of a wrap releases the agent's held
// completion first.
func (c *conn) stepTag(s *step, tag string) error {
	switch firstWord(tag) {
	case "BEGIN":
		c.mu.Lock()
		c.tx.status = 'T'
		c.mu.Unlock()
	case "COMMIT":
		if err := c.releaseHeld(s.release, "", nil); err != nil {
			return err
		}
		c.endChanges(record.OutcomeCommitted, s.reason, nil)
		c.mu.Lock()
		c.tx.status = 'I'
		c.mu.Unlock()
	case "ROLLBACK":
		if s.reason != "" {
			c.endChanges(record.OutcomeRolledBack, s.reason, nil)
		}
		c.mu.Lock()
		c.tx.status = 'I'
		c.mu.Unlock()
	}
	return nil
}

// onStepError handles an error answering a step. The server now skips to
// the next Sync, so the answers of what lies before it never come. A
// pass step's error is the agent's (COMMIT's); any other is the read's,
// and the step's Sync ends it: phigate then restores the transaction.
func (c *conn) onStepError(ctx context.Context, e *expect, body []byte) error {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return c.upstreamError("malformed ErrorResponse")
	}
	s := e.step
	if !s.failed {
		s.failed, s.errCode = true, er.Code
	}
	if s.read != nil {
		// Its rows so far are not recorded; the proofs of any it masked
		// are sealed all the same.
		if err := c.readDone(s.read); err != nil {
			return err
		}
	}
	if !s.pass && !c.stepSyncAhead(s) {
		// Without a Sync of its own the skipping reaches the agent's
		// messages: phigate no longer knows what the server runs.
		return c.upstreamError("a message of phigate's snapshot failed outside a transaction block")
	}
	if s.pass {
		out := c.be.uin.raw
		if masked := c.maskServerMessage(ctx, body, false, s.errFor); masked != nil {
			out = masked
			if err := er.Decode(masked[5:]); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.server.txFailed = true
		c.mu.Unlock()
		if c.be.txError == "" {
			c.be.txError = er.Code
		}
		sqlErr := &record.SQLError{Code: er.Code, Message: er.Message, Source: "upstream"}
		switch {
		case s.release != nil && s.release.held != nil:
			if err := c.releaseHeld(s.release, er.Code, sqlErr); err != nil {
				return err
			}
		case s.errFor != nil && s.errFor.cmd != nil && !s.errFor.cmd.errored:
			s.errFor.cmd.errored = true
			if err := c.endStatement(s.errFor.cmd, "", sqlErr, false); err != nil {
				return err
			}
		}
		if err := c.be.cout.write(out); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.tx.skipping = true
	if c.tx.status == 'T' {
		c.tx.status = 'E'
	}
	for len(c.queue) > 0 && c.queue[0].kind != expSync {
		d := c.queue[0]
		c.popLocked()
		if d.last {
			close(d.step.done)
		}
		if d.step == nil && d.cmd != nil && !d.cmd.errored {
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
	return nil
}

// stepSyncAhead reports whether step s has a Sync of its own queued.
func (c *conn) stepSyncAhead(s *step) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.queue {
		if e.kind == expSync {
			return e.step == s
		}
	}
	return false
}

// releaseHeld sends the agent the CommandComplete held at the end of a
// wrap, and records the statement's result; with code set the commit
// failed instead, so the statement's result is the error and the tag is
// dropped.
func (c *conn) releaseHeld(w *wrap, code string, sqlErr *record.SQLError) error {
	if w == nil || w.held == nil {
		return nil
	}
	held, cmd, tag := w.held, w.heldCmd, w.heldTag
	w.held, w.heldCmd = nil, nil
	if code != "" {
		cmd.errored = true
		return c.endStatement(cmd, "", sqlErr, false)
	}
	cmd.run.bytes += int64(len(held))
	if err := c.endStatement(cmd, tag, nil, false); err != nil {
		return err
	}
	return c.be.cout.write(held)
}

// readyLocked notes a ReadyForQuery's transaction status (c.mu held). It
// returns the outcome of the changes pending when the transaction ended
// there (committed, or rolled back after an error), for the caller to
// record once it has let go of c.mu; "" when it did not end.
func (c *conn) readyLocked(status byte) (outcome, reason string) {
	c.tx = txState{status: status}
	if status != 'I' {
		return "", ""
	}
	code := c.be.txError
	c.be.txError = ""
	switch {
	case len(c.be.pending) == 0:
		return "", ""
	case c.server.txFailed:
		return record.OutcomeRolledBack, "an error aborted the transaction (SQLSTATE " + code + ")"
	}
	return record.OutcomeCommitted, "the transaction committed"
}

// endChanges records the outcome of the pending changes that keep
// returns true for (nil: all of them) and forgets them.
func (c *conn) endChanges(outcome, reason string, keep func(pendingChange) bool) {
	var refs []record.ChangeRef
	rest := c.be.pending[:0]
	for _, p := range c.be.pending {
		if keep == nil || keep(p) {
			refs = append(refs, p.ref)
		} else {
			rest = append(rest, p)
		}
	}
	c.be.pending = rest
	if len(refs) == 0 {
		return
	}
	c.recordOutcome(outcome, reason, refs)
}

func (c *conn) recordOutcome(outcome, reason string, refs []record.ChangeRef) {
	if _, err := c.rec.AppendLazy(&record.Event{Kind: record.KindChangeOutcome, Outcome: &record.ChangeOutcome{Outcome: outcome, Reason: reason, Changes: refs}}); err != nil {
		c.log.Error("cannot record the outcome of changes", "err", err)
	}
}

// changeCompleted notes a snapshotted statement's completion: it is
// pending until its transaction ends, and the frontend may read after it.
func (c *conn) changeCompleted(run *changeRun, tag string) {
	run.tag = tag
	c.mu.Lock()
	c.server.seq++ // after every savepoint made before it
	seq := c.server.seq
	c.mu.Unlock()
	c.be.pending = append(c.be.pending, pendingChange{ref: run.ref, seq: seq})
	close(run.done)
}

// changeFailed notes a snapshotted statement's failure: it changed
// nothing.
func (c *conn) changeFailed(run *changeRun, err *record.SQLError) {
	run.failed = err
	c.recordOutcome(record.OutcomeRolledBack, "the statement failed (SQLSTATE "+err.Code+")", []record.ChangeRef{run.ref})
	close(run.done)
}

// noteTxStatement follows what one of the agent's statements does to the
// transaction, before serverState.apply: its status, and the changes it
// commits or rolls back.
func (c *conn) noteTxStatement(st *sqlclass.Statement, tag string) {
	switch st.Effect {
	case sqlclass.EffectBegin:
		c.mu.Lock()
		c.tx.status = 'T'
		c.mu.Unlock()
		return
	case sqlclass.EffectTxEnd:
		switch firstWord(tag) {
		case "COMMIT":
			c.endChanges(record.OutcomeCommitted, "COMMIT", nil)
		case "PREPARE":
			c.endChanges(record.OutcomePrepared, "PREPARE TRANSACTION", nil)
		default:
			c.endChanges(record.OutcomeRolledBack, "COMMIT of a failed transaction rolls it back", nil)
		}
	case sqlclass.EffectRollback:
		c.endChanges(record.OutcomeRolledBack, "ROLLBACK", nil)
	case sqlclass.EffectRollbackTo:
		c.mu.Lock()
		i := c.server.savepointIndex(st.Name)
		var seq uint64
		if i >= 0 {
			seq = c.server.savepoints[i].seq
		}
		c.tx.status = 'T'
		c.mu.Unlock()
		if i >= 0 {
			c.endChanges(record.OutcomeRolledBack, "ROLLBACK TO SAVEPOINT "+st.Name, func(p pendingChange) bool { return p.seq > seq })
		}
		return
	default:
		return
	}
	c.mu.Lock()
	if st.Chain {
		c.tx.status = 'T'
	} else {
		c.tx.status = 'I'
	}
	c.mu.Unlock()
}

// readColumns prepares a read's rows: their masking plan (the columns are
// the target's own, so each is its base column), and where its key
// columns are.
func (c *conn) readColumns(ctx context.Context, r *snapRead, fields []pgproto3.FieldDescription) error {
	if r.raw {
		return nil
	}
	r.columns = make([]string, len(fields))
	for i, f := range fields {
		r.columns[i] = string(f.Name)
	}
	for _, k := range r.keys {
		at := -1
		for i, f := range fields {
			if f.TableOID == r.target && int16(f.TableAttributeNumber) == k {
				at = i
			}
		}
		if at < 0 {
			r.keyAt, r.keyNames, r.keyTypes = nil, nil, nil
			break
		}
		r.keyAt = append(r.keyAt, at)
		r.keyNames = append(r.keyNames, string(fields[at].Name))
		r.keyTypes = append(r.keyTypes, fields[at].DataTypeOID)
	}
	if c.profile() == nil {
		return nil
	}
	cols := make([]mask.Column, len(fields))
	for i, f := range fields {
		src, err := c.cat.source(ctx, f.TableOID, int16(f.TableAttributeNumber))
		if err != nil {
			// Nothing of it is recorded rather than something unmasked.
			r.withheld = "the values are not recorded: phigate could not resolve their columns for masking"
			c.log.Error("snapshot: cannot resolve columns for masking", "err", err)
			return nil
		}
		// One scan of the target: a row's columns are one table row's.
		cols[i] = mask.Column{Name: r.columns[i], Source: src, Scan: 1, TypeOID: f.DataTypeOID, TypeMod: f.TypeModifier}
		if src == "" {
			cols[i].Withhold = true
		}
	}
	r.plan = c.profile().Plan(cols, c.maskParams())
	if c.proofs != nil && r.plan.Active() {
		id := r.cmd
		r.plan.SetProofSink(func(p *mask.Proof) { c.proofs.Add(id, p) })
	}
	return nil
}

// readRow keeps one row of a read: up to its bound, masked; its raw key
// values for the after read.
func (c *conn) readRow(r *snapRead, body []byte) error {
	vals, err := splitDataRow(body)
	if err != nil {
		return c.upstreamError(err.Error())
	}
	r.n++
	if r.n > r.bound {
		r.more = true
		return nil
	}
	if r.raw {
		row := make([][]byte, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i] = bytes.Clone(v)
			}
		}
		r.rawRows = append(r.rawRows, row)
		return nil
	}
	if r.keyAt != nil {
		key := make([][]byte, len(r.keyAt))
		for j, at := range r.keyAt {
			if at < len(vals) {
				key[j] = bytes.Clone(vals[at])
			}
		}
		r.keyValues = append(r.keyValues, key)
	}
	if r.withheld != "" {
		return nil
	}
	if c.proofs != nil {
		c.proofs.Statement, c.proofs.Phase, c.proofs.Row = r.stmt, r.phase, int64(r.n)
	}
	row := make([]*string, len(vals))
	if r.plan != nil {
		r.plan.BeginRow()
		for _, j := range r.plan.SubjectColumns() {
			if j < len(vals) {
				r.plan.SetRowSubject(j, vals[j])
			}
		}
	}
	for i, v := range vals {
		if r.plan != nil && r.plan.Masked(i) {
			out, null := r.plan.AppendValue(nil, i, v)
			row[i] = r.recordValue(len(r.rows), i, out, null)
			continue
		}
		row[i] = r.recordValue(len(r.rows), i, v, v == nil)
	}
	r.rows = append(r.rows, row)
	return nil
}

// readDone closes a read: its masking summary, and its proofs flushed
// ahead of the change event.
func (c *conn) readDone(r *snapRead) error {
	if c.proofs != nil {
		c.proofs.Phase = ""
	}
	if r.plan == nil {
		return nil
	}
	for _, a := range r.plan.Applied() {
		r.masked = append(r.masked, record.MaskedColumn{Column: a.Column, Source: a.Source, Derived: a.Derived, Rule: a.Rule,
			Action: a.Action, Values: a.Values, Scanned: a.Scanned, Passed: a.Passed, Reason: a.Reason})
	}
	r.plan.Close()
	r.plan = nil
	if c.proofs != nil {
		return c.proofs.Flush()
	}
	return nil
}

// splitDataRow returns a DataRow's values (nil for NULL), aliasing body.
func splitDataRow(body []byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, errMalformedRow
	}
	n := int(binary.BigEndian.Uint16(body))
	p := body[2:]
	vals := make([][]byte, n)
	for i := range vals {
		if len(p) < 4 {
			return nil, errMalformedRow
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			if l != -1 {
				return nil, errMalformedRow
			}
			continue
		}
		if int(l) > len(p) {
			return nil, errMalformedRow
		}
		vals[i], p = p[:l:l], p[l:]
		if vals[i] == nil {
			vals[i] = []byte{}
		}
	}
	if len(p) != 0 {
		return nil, errMalformedRow
	}
	return vals, nil
}
