package record

import (
	"encoding/base64"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file is the JSON encoder of Event used by Chain.Seal. It writes, by
// hand and without reflection, exactly the bytes that encoding/json (with
// SetEscapeHTML(false), trailing newline removed) writes for the same event:
// fields in declaration order, the same omitempty rules, strings escaped the
// same way (invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, '<', '>' and
// '&' kept), []byte as standard base64 and nil slices as null. The fuzz
// target FuzzAppendJSONMatchesEncodingJSON holds it to that; a field added
// to a type in event.go must be added here too (TestAppendJSONCoversEveryField
// fails until it is).

// errTimeRange is returned for a time that RFC 3339 cannot represent, where
// encoding/json fails too (time.Time.MarshalJSON).
var errTimeRange = errors.New("time outside of RFC 3339: year must be in [0,9999], zone offset hour in [0,23]")

// AppendJSON appends the JSON encoding of e to dst and returns the extended
// slice: the payload Seal hashes and frames. It fails only for an Event.Time
// whose year or zone offset RFC 3339 cannot hold; then it returns dst
// unchanged.
func (e *Event) AppendJSON(dst []byte) ([]byte, error) {
	b := append(dst, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"prev":`...)
	b = appendJSONString(b, e.Prev)
	b = append(b, `,"time":`...)
	b, ok := appendJSONTime(b, e.Time)
	if !ok {
		return dst, errTimeRange
	}
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(e.Kind))
	b = append(b, `,"session":`...)
	b = appendJSONString(b, e.Session)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, e.Node)
	if e.Identity != "" {
		b = append(b, `,"identity":`...)
		b = appendJSONString(b, e.Identity)
	}
	if e.Resource != "" {
		b = append(b, `,"resource":`...)
		b = appendJSONString(b, e.Resource)
	}
	if e.Start != nil {
		b = append(b, `,"start":`...)
		b = e.Start.appendJSON(b)
	}
	if e.Auth != nil {
		b = append(b, `,"auth":`...)
		b = e.Auth.appendJSON(b)
	}
	if e.Denied != nil {
		b = append(b, `,"denied":`...)
		b = e.Denied.appendJSON(b)
	}
	if e.Command != nil {
		b = append(b, `,"command":`...)
		b = e.Command.appendJSON(b)
	}
	if e.Result != nil {
		b = append(b, `,"result":`...)
		b = e.Result.appendJSON(b)
	}
	if e.Change != nil {
		b = append(b, `,"change":`...)
		b = e.Change.appendJSON(b)
	}
	if e.Outcome != nil {
		b = append(b, `,"outcome":`...)
		b = e.Outcome.appendJSON(b)
	}
	if e.Copy != nil {
		b = append(b, `,"copy":`...)
		b = e.Copy.appendJSON(b)
	}
	if e.Error != nil {
		b = append(b, `,"error":`...)
		b = e.Error.appendJSON(b)
	}
	if e.Cancel != nil {
		b = append(b, `,"cancel":`...)
		b = e.Cancel.appendJSON(b)
	}
	if e.Key != nil {
		b = append(b, `,"key":`...)
		b = e.Key.appendJSON(b)
	}
	if e.Proof != nil {
		b = append(b, `,"proof":`...)
		b = e.Proof.appendJSON(b)
	}
	if e.Unseal != nil {
		b = append(b, `,"unseal":`...)
		b = e.Unseal.appendJSON(b)
	}
	if e.Policy != nil {
		b = append(b, `,"policy":`...)
		b = e.Policy.appendJSON(b)
	}
	if e.Approval != nil {
		b = append(b, `,"approval":`...)
		b = e.Approval.appendJSON(b)
	}
	if e.End != nil {
		b = append(b, `,"end":`...)
		b = e.End.appendJSON(b)
	}
	return append(b, '}'), nil
}

func (s *SessionStart) appendJSON(b []byte) []byte {
	b = append(b, `{"protocol":`...)
	b = appendJSONString(b, s.Protocol)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, s.Client)
	b = append(b, `,"tls":`...)
	b = strconv.AppendBool(b, s.TLS)
	b = appendOptString(b, `,"tls_version":`, s.TLSVersion)
	b = appendOptString(b, `,"identity_kind":`, s.IdentityKind)
	if len(s.Groups) > 0 {
		b = append(b, `,"groups":`...)
		b = appendJSONStrings(b, s.Groups)
	}
	b = appendOptString(b, `,"user":`, s.User)
	b = appendOptString(b, `,"database":`, s.Database)
	b = appendOptString(b, `,"application":`, s.Application)
	b = appendOptString(b, `,"grant":`, s.Grant)
	b = appendOptString(b, `,"masking":`, s.Masking)
	b = appendOptString(b, `,"upstream":`, s.Upstream)
	b = appendOptString(b, `,"durability":`, s.Durability)
	return append(b, '}')
}

func (a *AuthFailure) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if a.User != "" {
		b = append(b, `"user":`...)
		b = appendJSONString(b, a.User)
		b = append(b, ',')
	}
	b = append(b, `"reason":`...)
	b = appendJSONString(b, a.Reason)
	return append(b, '}')
}

func (d *Denial) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if d.Rule != "" {
		b = append(b, `"rule":`...)
		b = appendJSONString(b, d.Rule)
		b = append(b, ',')
	}
	b = append(b, `"reason":`...)
	b = appendJSONString(b, d.Reason)
	return append(b, '}')
}

func (c *Command) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, c.ID, 10)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, c.Protocol)
	if c.Postgres != nil {
		b = append(b, `,"postgres":`...)
		b = c.Postgres.appendJSON(b)
	}
	if len(c.Classes) > 0 {
		b = append(b, `,"classes":`...)
		b = appendJSONStrings(b, c.Classes)
	}
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, c.Decision)
	b = appendOptString(b, `,"rule":`, c.Rule)
	b = appendOptString(b, `,"reason":`, c.Reason)
	return append(b, '}')
}

func (p *PostgresCommand) appendJSON(b []byte) []byte {
	b = append(b, `{"flow":`...)
	b = appendJSONString(b, p.Flow)
	b = appendOptString(b, `,"step":`, p.Step)
	b = append(b, `,"sql":`...)
	b = appendJSONString(b, p.SQL)
	if len(p.Raw) > 0 {
		b = append(b, `,"raw":`...)
		b = appendJSONBytes(b, p.Raw)
	}
	b = appendOptString(b, `,"statement":`, p.Statement)
	b = appendOptString(b, `,"portal":`, p.Portal)
	if len(p.Params) > 0 {
		b = append(b, `,"params":[`...)
		for i := range p.Params {
			if i > 0 {
				b = append(b, ',')
			}
			b = p.Params[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (p *Param) appendJSON(b []byte) []byte {
	// Every field is omitempty: the first one present opens without a comma.
	b = append(b, '{')
	sep := ""
	if p.Null {
		b = append(b, `"null":true`...)
		sep = ","
	}
	if p.Format != "" {
		b = append(b, sep...)
		b = append(b, `"format":`...)
		b = appendJSONString(b, p.Format)
		sep = ","
	}
	if p.Value != "" {
		b = append(b, sep...)
		b = append(b, `"value":`...)
		b = appendJSONString(b, p.Value)
		sep = ","
	}
	if p.Encoding != "" {
		b = append(b, sep...)
		b = append(b, `"encoding":`...)
		b = appendJSONString(b, p.Encoding)
	}
	return append(b, '}')
}

func (r *Result) appendJSON(b []byte) []byte {
	b = append(b, `{"command":`...)
	b = strconv.AppendUint(b, r.Command, 10)
	b = appendOptString(b, `,"tag":`, r.Tag)
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, r.Rows, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, r.DurationUS, 10)
	if r.Error != nil {
		b = append(b, `,"error":`...)
		b = r.Error.appendJSON(b)
	}
	if r.Suspended {
		b = append(b, `,"suspended":true`...)
	}
	if len(r.Masked) > 0 {
		b = append(b, `,"masked":[`...)
		for i := range r.Masked {
			if i > 0 {
				b = append(b, ',')
			}
			b = r.Masked[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (e *SQLError) appendJSON(b []byte) []byte {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.Message)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	return append(b, '}')
}

func (m *MaskedColumn) appendJSON(b []byte) []byte {
	b = append(b, `{"column":`...)
	b = appendJSONString(b, m.Column)
	b = appendOptString(b, `,"source":`, m.Source)
	if len(m.Derived) > 0 {
		b = append(b, `,"derived":`...)
		b = appendJSONStrings(b, m.Derived)
	}
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, m.Rule)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, m.Action)
	b = append(b, `,"values":`...)
	b = strconv.AppendInt(b, m.Values, 10)
	if m.Scanned != 0 {
		b = append(b, `,"scanned":`...)
		b = strconv.AppendInt(b, m.Scanned, 10)
	}
	if m.Passed != 0 {
		b = append(b, `,"passed":`...)
		b = strconv.AppendInt(b, m.Passed, 10)
	}
	b = appendOptString(b, `,"reason":`, m.Reason)
	return append(b, '}')
}

func (c *CopyData) appendJSON(b []byte) []byte {
	b = append(b, `{"command":`...)
	b = strconv.AppendUint(b, c.Command, 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, c.Offset, 10)
	b = append(b, `,"data":`...)
	b = appendJSONBytes(b, c.Data)
	return append(b, '}')
}

func (p *ProtocolError) appendJSON(b []byte) []byte {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, p.Code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, p.Message)
	return append(b, '}')
}

func (k *MaskKey) appendJSON(b []byte) []byte {
	b = append(b, `{"auditor":`...)
	b = appendJSONString(b, k.Auditor)
	b = append(b, `,"wrapped":`...)
	b = appendJSONBytes(b, k.Wrapped)
	return append(b, '}')
}

func (p *MaskProof) appendJSON(b []byte) []byte {
	b = append(b, `{"command":`...)
	b = strconv.AppendUint(b, p.Command, 10)
	b = append(b, `,"statement":`...)
	b = strconv.AppendInt(b, int64(p.Statement), 10)
	b = appendOptString(b, `,"phase":`, p.Phase)
	b = append(b, `,"rules":`...)
	if p.Rules == nil { // not omitempty: nil is null, empty is []
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Rules {
			if i > 0 {
				b = append(b, ',')
			}
			b = p.Rules[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = append(b, `,"spans":`...)
	if p.Spans == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, sp := range p.Spans {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			for j, n := range sp {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendInt(b, n, 10)
			}
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	b = append(b, `,"raw_hmac":`...)
	b = appendJSONBytes(b, p.RawHMAC)
	b = append(b, `,"sealed":`...)
	b = appendJSONBytes(b, p.Sealed)
	return append(b, '}')
}

func (r *ProofRule) appendJSON(b []byte) []byte {
	b = append(b, `{"column":`...)
	b = strconv.AppendInt(b, int64(r.Column), 10)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, r.Rule)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, r.Action)
	b = appendOptString(b, `,"type":`, r.Type)
	b = appendOptString(b, `,"detector":`, r.Detector)
	return append(b, '}')
}

func (u *Unseal) appendJSON(b []byte) []byte {
	b = append(b, `{"auditor":`...)
	b = appendJSONString(b, u.Auditor)
	b = append(b, `,"session":`...)
	b = appendJSONString(b, u.Session)
	b = appendOptString(b, `,"reason":`, u.Reason)
	b = append(b, `,"values":`...)
	b = strconv.AppendInt(b, int64(u.Values), 10)
	if u.Done {
		b = append(b, `,"done":true`...)
	}
	return append(b, '}')
}

func (p *PolicyChange) appendJSON(b []byte) []byte {
	b = append(b, `{"revision":`...)
	b = strconv.AppendUint(b, p.Revision, 10)
	if p.Base != 0 {
		b = append(b, `,"base":`...)
		b = strconv.AppendUint(b, p.Base, 10)
	}
	b = append(b, `,"sha256":`...)
	b = appendJSONString(b, p.SHA256)
	b = append(b, `,"applied_by":`...)
	b = appendJSONString(b, p.AppliedBy)
	return append(b, '}')
}

func (a *Approval) appendJSON(b []byte) []byte {
	b = append(b, `{"request":`...)
	b = appendJSONString(b, a.Request)
	b = append(b, `,"step":`...)
	b = appendJSONString(b, a.Step)
	b = append(b, `,"command":`...)
	b = strconv.AppendUint(b, a.Command, 10)
	b = appendOptString(b, `,"rule":`, a.Rule)
	if len(a.Matched) > 0 {
		b = append(b, `,"matched":`...)
		b = appendJSONStrings(b, a.Matched)
	}
	if len(a.Approvers) > 0 {
		b = append(b, `,"approvers":`...)
		b = appendJSONStrings(b, a.Approvers)
	}
	if a.Required != 0 {
		b = append(b, `,"required":`...)
		b = strconv.AppendInt(b, int64(a.Required), 10)
	}
	b = appendOptString(b, `,"mode":`, a.Mode)
	if len(a.By) > 0 {
		b = append(b, `,"by":`...)
		b = appendJSONStrings(b, a.By)
	}
	b = appendOptString(b, `,"reason":`, a.Reason)
	b = appendOptString(b, `,"scope":`, a.Scope)
	b = appendOptString(b, `,"until":`, a.Until)
	b = appendOptString(b, `,"at":`, a.At)
	b = appendOptString(b, `,"node":`, a.Node)
	return append(b, '}')
}

func (c *Cancel) appendJSON(b []byte) []byte {
	b = append(b, `{"reason":`...)
	b = appendJSONString(b, c.Reason)
	return append(b, '}')
}

func (s *SessionEnd) appendJSON(b []byte) []byte {
	b = append(b, `{"reason":`...)
	b = appendJSONString(b, s.Reason)
	b = append(b, `,"commands":`...)
	b = strconv.AppendUint(b, s.Commands, 10)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, s.DurationUS, 10)
	return append(b, '}')
}

// appendOptString appends key and s unless s is empty (omitempty).
func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, key...)
	return appendJSONString(b, s)
}

// appendJSONStrings appends a non-empty []string as a JSON array.
func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONBytes appends a []byte as encoding/json does: null when nil,
// otherwise a string of standard, padded base64.
func appendJSONBytes(b, data []byte) []byte {
	if data == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, '"')
}

// appendJSONTime appends t as time.Time.MarshalJSON does: RFC 3339 with
// nanoseconds (trailing zeros dropped), quoted. It reports false where
// MarshalJSON fails: a year that is not four digits, or a zone offset whose
// hours RFC 3339 cannot hold.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	// The same checks as time.Time.appendStrictRFC3339.
	if b[n0+len("9999")] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		h := 10*(b[len(b)-len("07:00")]-'0') + (b[len(b)-len("7:00")] - '0')
		if ('0' <= c && c <= '9') || h >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}

// jsonSafe marks the ASCII bytes that go into a JSON string as they are
// when HTML escaping is off: everything from space up, but '"' and '\\'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted and escaped exactly as encoding/json
// does with SetEscapeHTML(false).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but not valid JavaScript: encoding/json escapes
			// them unconditionally.
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
