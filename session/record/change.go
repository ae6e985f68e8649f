package record

import "strconv"

// Phases of a Change (Change.Phase).
const (
	// ChangeBefore: the rows the statement was about to change, read just
	// before it ran, in its transaction, locked as the statement locks them.
	ChangeBefore = "before"
	// ChangeAfter: the rows as the statement left them, read just after it,
	// in its transaction; with the statement's own count of the rows it
	// changed, or its error.
	ChangeAfter = "after"
	// ChangeNone: no rows were read, and Reason says why (the statement
	// could not be analysed, or was not going to run).
	ChangeNone = "none"
)

// Change records the rows one data-changing statement (UPDATE, DELETE,
// INSERT ... ON CONFLICT, MERGE) touched, as phigate read them on the
// session's own connection and within the statement's own transaction: a
// "before" event ahead of the statement, an "after" event once it ran, or a
// single "none" event saying why there are no rows. Whether the change
// lasted is told by a later ChangeOutcome.
//
// Values are the server's text form, masked as the session's result rows
// are; the raw bytes of masked values are sealed in mask.proof events that
// carry the same Command, Statement and Phase (their spans count rows of
// this event from 1).
type Change struct {
	Command   uint64 `json:"command"`
	Statement int    `json:"statement"` // statement index within the command
	Phase     string `json:"phase"`     // ChangeBefore | ChangeAfter | ChangeNone
	Op        string `json:"op"`        // the statement: update | delete | insert | merge
	// Table is schema.table, the relation the rows are from.
	Table string `json:"table,omitempty"`
	// Read is the query phigate ran to read the rows; its parameters are
	// the command's own, then the key values of the "before" rows.
	Read    string   `json:"read,omitempty"`
	Columns []string `json:"columns,omitempty"`
	// Rows are the rows read, at most the configured bound; a nil value is
	// SQL NULL.
	Rows [][]*string `json:"rows,omitempty"`
	// Base64 lists [row, column] (from 0) of the values that are not valid
	// UTF-8 (possible only in a SQL_ASCII database): they are recorded as
	// the standard base64 of their bytes.
	Base64 [][2]int `json:"base64,omitempty"`
	// More: the read found more rows than the bound; the rest are not
	// recorded.
	More bool `json:"more,omitempty"`
	// Affected is, in the after event, the number of rows the statement
	// reported it changed (its command tag): the true count, whatever the
	// bound.
	Affected int64 `json:"affected,omitempty"`
	// Error is, in the after event, the statement's own error: it changed
	// nothing.
	Error  *SQLError      `json:"error,omitempty"`
	Masked []MaskedColumn `json:"masked,omitempty"`
	// Reason says why there are no rows: why the statement could not be
	// analysed, or why a read failed or was not made. Never holds values.
	Reason string `json:"reason,omitempty"`
}

// Outcomes of the transaction that held recorded changes
// (ChangeOutcome.Outcome).
const (
	OutcomeCommitted  = "committed"
	OutcomeRolledBack = "rolled back"
	// OutcomePrepared: PREPARE TRANSACTION; COMMIT PREPARED or ROLLBACK
	// PREPARED decides later, possibly in another session.
	OutcomePrepared = "prepared"
	// OutcomeUnknown: the session ended while the end of the transaction
	// was on its way to the server.
	OutcomeUnknown = "unknown"
)

// ChangeOutcome records how recorded changes ended: committed, or rolled
// back (by ROLLBACK, ROLLBACK TO a savepoint made before them, an error
// that aborted their transaction, their own statement's failure, or the
// session's end).
type ChangeOutcome struct {
	Outcome string      `json:"outcome"`
	Reason  string      `json:"reason,omitempty"`
	Changes []ChangeRef `json:"changes"`
}

// ChangeRef names a recorded change by its statement.
type ChangeRef struct {
	Command   uint64 `json:"command"`
	Statement int    `json:"statement"`
}

func (c *Change) appendJSON(b []byte) []byte {
	b = append(b, `{"command":`...)
	b = strconv.AppendUint(b, c.Command, 10)
	b = append(b, `,"statement":`...)
	b = strconv.AppendInt(b, int64(c.Statement), 10)
	b = append(b, `,"phase":`...)
	b = appendJSONString(b, c.Phase)
	b = append(b, `,"op":`...)
	b = appendJSONString(b, c.Op)
	b = appendOptString(b, `,"table":`, c.Table)
	b = appendOptString(b, `,"read":`, c.Read)
	if len(c.Columns) > 0 {
		b = append(b, `,"columns":`...)
		b = appendJSONStrings(b, c.Columns)
	}
	if len(c.Rows) > 0 {
		b = append(b, `,"rows":[`...)
		for i, row := range c.Rows {
			if i > 0 {
				b = append(b, ',')
			}
			if row == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, '[')
			for j, v := range row {
				if j > 0 {
					b = append(b, ',')
				}
				if v == nil {
					b = append(b, "null"...)
				} else {
					b = appendJSONString(b, *v)
				}
			}
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	if len(c.Base64) > 0 {
		b = append(b, `,"base64":[`...)
		for i, at := range c.Base64 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(at[0]), 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(at[1]), 10)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	if c.More {
		b = append(b, `,"more":true`...)
	}
	if c.Affected != 0 {
		b = append(b, `,"affected":`...)
		b = strconv.AppendInt(b, c.Affected, 10)
	}
	if c.Error != nil {
		b = append(b, `,"error":`...)
		b = c.Error.appendJSON(b)
	}
	if len(c.Masked) > 0 {
		b = append(b, `,"masked":[`...)
		for i := range c.Masked {
			if i > 0 {
				b = append(b, ',')
			}
			b = c.Masked[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = appendOptString(b, `,"reason":`, c.Reason)
	return append(b, '}')
}

func (o *ChangeOutcome) appendJSON(b []byte) []byte {
	b = append(b, `{"outcome":`...)
	b = appendJSONString(b, o.Outcome)
	b = appendOptString(b, `,"reason":`, o.Reason)
	b = append(b, `,"changes":`...)
	if o.Changes == nil { // not omitempty: nil is null, empty is []
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range o.Changes {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"command":`...)
			b = strconv.AppendUint(b, r.Command, 10)
			b = append(b, `,"statement":`...)
			b = strconv.AppendInt(b, int64(r.Statement), 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}
