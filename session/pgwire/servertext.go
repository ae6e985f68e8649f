package pgwire

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/sqlclass"
)

// Messages other than rows carry data too: an error can quote the value
// that failed (`invalid input syntax for type integer: "nhoJ"`, a unique
// violation's "Key (ssn)=(...)"), a notice can be raised with any text, a
// notification's payload and application_name are whatever a session put
// there. Under a masking profile they are handled here before they reach
// the agent.

// quotingFreeClasses are the SQLSTATE classes whose messages name objects,
// settings and the statement's own text but never quote a value the server
// read: connection, feature, transaction state, authorization, cursor,
// syntax and access, resources, object state, operator intervention and
// system errors. Every other class (data exceptions, integrity violations,
// messages raised by functions, warnings and notices) may quote a value.
//
// Notices and warnings (00, 01) are the server's own here: code that could
// raise them with any text (a function in another language, DO) is refused
// under a masking profile because its results cannot be traced. They are
// scanned as free text like everything else; a trigger that raises what it
// reads is the one way around that (see docs/masking.md).
var quotingFreeClasses = map[string]bool{
	"00": true, "01": true,
	"08": true, "0A": true, "0B": true, "25": true, "26": true, "28": true,
	"2D": true, "34": true, "3B": true, "3D": true, "3F": true, "40": true,
	"42": true, "53": true, "55": true, "57": true, "58": true,
}

// serverTemplateClasses are the classes of messages the server writes from
// its own templates, where values appear after a colon or in double quotes
// (22: data exception, 23: integrity violation, 2F/38/39: function errors,
// 44: check option, 54: program limit). The template's words before the
// first value are kept; messages of other classes (notices and warnings,
// RAISE from PL/pgSQL, internal errors) are user text and kept whole only
// when nothing is masked.
var serverTemplateClasses = map[string]bool{
	"22": true, "23": true, "2F": true, "38": true, "39": true, "44": true, "54": true,
}

const withheldText = "[withheld by phigate: may quote masked data]"

// maskServerMessage makes an ErrorResponse or NoticeResponse safe for a
// session under a masking profile and returns it re-encoded, or nil when it
// passes unchanged. A message that may quote a value, about a statement
// that reads a masked column (the one e is the answer to; nil: unknown, so
// it may),
// keeps its severity, SQLSTATE and position; its text is cut to the
// server's template words and its detail, hint and context are dropped
// (the original is sealed into the recording like a masked value). What
// remains is scanned for PHI as free text.
func (c *conn) maskServerMessage(ctx context.Context, body []byte, notice bool, e *expect) []byte {
	if c.profile() == nil {
		return nil
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return nil
	}
	changed := false
	class := ""
	if len(er.Code) >= 2 {
		class = er.Code[:2]
	}
	if !quotingFreeClasses[class] && c.readsMasked(ctx, e) {
		if orig := quotedFields(&er); orig != "" {
			var id uint64
			if e != nil && e.cmd != nil {
				id = e.cmd.id
			}
			c.sealServerText(id, orig)
		}
		msg := withheldText
		if serverTemplateClasses[class] {
			msg = templateWords(er.Message) + " " + withheldText
		}
		er.Message, er.Detail, er.Hint, er.Where = msg, "", "", ""
		er.InternalQuery, er.InternalPosition = "", 0
		changed = true
	}
	for _, f := range []*string{&er.Message, &er.Detail, &er.Hint, &er.Where, &er.InternalQuery} {
		if out, ok := c.maskFreeText(*f); ok {
			*f, changed = out, true
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

// readsMasked reports whether the statement cmd is running reads a column
// the profile masks; when phigate cannot tell, it may.
func (c *conn) readsMasked(ctx context.Context, e *expect) bool {
	var stmts []sqlclass.Statement
	index := 0
	switch {
	case e == nil:
	case e.stmt != nil && e.kind == expParse:
		stmts = e.stmt.stmts
	case e.portal != nil && e.kind == expBind:
		stmts = e.portal.stmts
	case e.cmd != nil:
		stmts, index = e.cmd.stmts, e.cmd.index
	}
	if index >= len(stmts) {
		return true
	}
	res, err := c.cat.lineageOf(ctx, stmts[index].Key(), nil)
	if err != nil || res.Opaque != "" || res.Cursor != "" || res.Prepared != "" {
		return true
	}
	for _, r := range res.Reads {
		if _, masked := c.profile().Masks(mask.SourceCol{Name: r.String(), TypeOID: r.TypeOID}); masked {
			return true
		}
	}
	return false
}

// quotedFields joins the fields of er that may quote a value, for sealing.
func quotedFields(er *pgproto3.ErrorResponse) string {
	var b strings.Builder
	for _, f := range []string{er.Message, er.Detail, er.Hint, er.Where, er.InternalQuery} {
		if f == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(f)
	}
	return b.String()
}

// templateWords returns a server message's words before the first value:
// up to the first double quote, colon, parenthesis or digit. "invalid input
// syntax for type integer: \"nhoJ\"" gives "invalid input syntax for type
// integer".
func templateWords(msg string) string {
	end := strings.IndexAny(msg, "\":(=0123456789")
	if end < 0 {
		end = len(msg)
	}
	return strings.TrimRight(msg[:end], " ,;")
}

// sealServerText seals withheld server text into the recording as a masking
// proof of command cmd (without an auditor key it is dropped).
func (c *conn) sealServerText(cmd uint64, text string) {
	if c.proofs == nil {
		return
	}
	c.proofs.Add(cmd, &mask.Proof{Column: -1, Rule: "server-message", Action: mask.ActionRedact, End: len(text), Raw: []byte(text)})
}

// maskFreeText scans free text for PHI and returns it with what was found
// replaced; ok is false when nothing was.
func (c *conn) maskFreeText(s string) (string, bool) {
	if s == "" || c.profile() == nil {
		return s, false
	}
	out, changed := c.profile().MaskText(nil, []byte(s))
	if !changed {
		return s, false
	}
	return string(out), true
}

// maskNotification returns a NotificationResponse with its channel and
// payload scanned for PHI, re-encoded, or nil when nothing was found. A
// payload can come from any session of the database, masked or not.
func (c *conn) maskNotification(body []byte) []byte {
	if c.profile() == nil {
		return nil
	}
	var n pgproto3.NotificationResponse
	if err := n.Decode(body); err != nil {
		return nil
	}
	ch, chMasked := c.maskFreeText(n.Channel)
	p, pMasked := c.maskFreeText(n.Payload)
	if !chMasked && !pMasked {
		return nil
	}
	n.Channel, n.Payload = ch, p
	out, err := n.Encode(nil)
	if err != nil {
		return nil
	}
	return out
}

// freeTextParams are the reported settings whose values a session chooses
// freely; the others are names, versions and enumerations the server
// checks.
var freeTextParams = map[string]bool{"application_name": true}

// maskParameterStatus returns a ParameterStatus with a free-text value
// scanned for PHI, re-encoded, or nil when it passes unchanged.
func (c *conn) maskParameterStatus(ps *pgproto3.ParameterStatus) []byte {
	if c.profile() == nil || !freeTextParams[ps.Name] {
		return nil
	}
	v, masked := c.maskFreeText(ps.Value)
	if !masked {
		return nil
	}
	out, err := (&pgproto3.ParameterStatus{Name: ps.Name, Value: v}).Encode(nil)
	if err != nil {
		return nil
	}
	return out
}
