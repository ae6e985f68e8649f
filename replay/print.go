package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/phigate/phigate/session/record"
)

// Options shapes the output of Print.
type Options struct {
	// JSON prints NDJSON: one line per event, its payload exactly as
	// recorded (and verified). The zero value prints the readable trail.
	JSON bool
	// Live says the session may still be running, so that a recording that
	// ends without session.end, or inside a frame being written, is not a
	// break. PrintSession sets it itself.
	Live bool
}

// Print verifies the recording of sessionID read from r and, while it
// does, writes the trail to w. It returns nil when the whole recording
// verified (and, unless opts.Live, ended with session.end). At the first
// break it has written every event before the break and returns the
// *record.ChainError; a failure to read r or write w is returned as is.
func Print(ctx context.Context, w io.Writer, r io.Reader, sessionID string, opts Options) error {
	_, err := printRecording(ctx, w, r, sessionID, opts)
	return err
}

// PrintSession prints the recording of sessionID from store. The session
// counts as live when the store says a writer may still append to it (for
// a spool directory: a running node holds it, and that node closes or
// recovers every session it has open).
func PrintSession(ctx context.Context, w io.Writer, store Store, sessionID string, opts Options) error {
	rec, err := store.Open(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer rec.Close()
	opts.Live = opts.Live || rec.Live
	_, err = printRecording(ctx, w, rec, sessionID, opts)
	return err
}

func printRecording(ctx context.Context, w io.Writer, r io.Reader, sessionID string, opts Options) (record.Summary, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	p := &printer{w: bw}
	if !opts.JSON {
		p.printf("session %s\n", clean(sessionID))
	}
	sum, err := record.Verify(r, sessionID, opts.Live, func(ev *record.Event, payload []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opts.JSON {
			bw.Write(payload)
			bw.WriteByte('\n')
		} else {
			p.event(ev)
		}
		return p.err
	})
	if err == nil && !opts.JSON {
		p.footer(sum)
	}
	if ferr := bw.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("replay: write: %w", ferr)
	}
	return sum, err
}

// printer writes the readable trail; it keeps the first write error.
type printer struct {
	w   *bufio.Writer
	err error
	// subject is the identity@resource of the previous event, printed
	// again only when it changes.
	subject string
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

const indent = "       " // under the "#N" column

// field prints one labelled line of a block; multi-line values continue
// under the value column.
func (p *printer) field(label, value string) {
	lines := strings.Split(value, "\n")
	p.printf("%s%-10s %s\n", indent, label, lines[0])
	for _, l := range lines[1:] {
		p.printf("%s%-10s %s\n", indent, "", l)
	}
}

// approvalHead is one line of an approval step: which request, for which
// command, what happened, by whom and why.
func approvalHead(a *record.Approval) string {
	head := fmt.Sprintf("approval · %s · request %s · command %d", clean(a.Step), clean(a.Request), a.Command)
	if a.Rule != "" {
		head += " · rule " + clean(a.Rule)
	}
	if len(a.Matched) > 0 {
		head += " (" + clean(strings.Join(a.Matched, ", ")) + ")"
	}
	if a.Step == record.ApprovalRequested {
		head += fmt.Sprintf(" · %d of %s · %s", a.Required, clean(strings.Join(a.Approvers, ", ")), clean(a.Mode))
	}
	if len(a.By) > 0 {
		head += " · by " + clean(strings.Join(a.By, ", "))
	}
	if a.Scope != "" {
		head += " · " + clean(a.Scope)
		if a.Until != "" {
			head += " until " + clean(a.Until)
		}
	}
	if a.Node != "" {
		head += " · on " + clean(a.Node)
	}
	if a.Reason != "" {
		head += " · reason: " + clean(a.Reason)
	}
	return head
}

func (p *printer) event(ev *record.Event) {
	head := string(ev.Kind)
	switch {
	case ev.Command != nil:
		head = commandHead(ev.Command)
	case ev.Result != nil:
		head = resultHead(ev.Result)
	case ev.End != nil:
		head = fmt.Sprintf("session.end · %s · %d commands · %s", clean(ev.End.Reason), ev.End.Commands, micros(ev.End.DurationUS))
	case ev.Copy != nil:
		head = fmt.Sprintf("copy.data of command %d · offset %d · %d bytes", ev.Copy.Command, ev.Copy.Offset, len(ev.Copy.Data))
	case ev.Cancel != nil:
		head = "cancel · " + clean(ev.Cancel.Reason)
	case ev.Key != nil:
		head = "mask.key · data key sealed to auditor key " + clean(ev.Key.Auditor)
	case ev.Proof != nil:
		head = fmt.Sprintf("mask.proof of command %d · %d masked values, raw values sealed", ev.Proof.Command, len(ev.Proof.Spans))
	case ev.Unseal != nil:
		state := "intent"
		if ev.Unseal.Done {
			state = fmt.Sprintf("%d values shown", ev.Unseal.Values)
		}
		head = fmt.Sprintf("unseal · session %s · by %s · %s", clean(ev.Unseal.Session), clean(ev.Unseal.Auditor), state)
	case ev.Change != nil:
		head = changeHead(ev.Change)
	case ev.Outcome != nil:
		head = fmt.Sprintf("change.outcome · %s", clean(ev.Outcome.Outcome))
	case ev.Approval != nil:
		head = approvalHead(ev.Approval)
	case ev.Policy != nil:
		head = fmt.Sprintf("policy · revision %d stored · by %s · sha256 %s", ev.Policy.Revision, clean(ev.Policy.AppliedBy), clean(ev.Policy.SHA256))
		if ev.Policy.Base != 0 {
			head += fmt.Sprintf(" · applied on revision %d", ev.Policy.Base)
		}
	}
	p.printf("#%-5d %s  %s\n", ev.Seq, ev.Time.UTC().Format("2006-01-02 15:04:05.000000Z"), head)

	subject := clean(ev.Identity) + "@" + clean(ev.Resource)
	if subject != p.subject || ev.Kind == record.KindSessionStart {
		if ev.Identity != "" {
			p.field("identity", clean(ev.Identity))
		}
		if ev.Resource != "" {
			p.field("resource", clean(ev.Resource))
		}
		p.subject = subject
	}
	if ev.Node != "" && ev.Kind == record.KindSessionStart {
		p.field("node", clean(ev.Node))
	}

	switch {
	case ev.Start != nil:
		p.start(ev.Start)
	case ev.Auth != nil:
		if ev.Auth.User != "" {
			p.field("user", clean(ev.Auth.User))
		}
		p.field("rejected", clean(ev.Auth.Reason))
	case ev.Denied != nil:
		p.field("denied", clean(ev.Denied.Reason))
		if ev.Denied.Rule != "" {
			p.field("rule", clean(ev.Denied.Rule))
		}
	case ev.Command != nil:
		p.command(ev.Command)
	case ev.Result != nil:
		p.result(ev.Result)
	case ev.Copy != nil:
		p.copyData(ev.Copy.Data)
	case ev.Error != nil:
		p.field("error", clean(ev.Error.Code)+": "+clean(ev.Error.Message))
	case ev.Proof != nil:
		p.proof(ev.Proof)
	case ev.Change != nil:
		p.change(ev.Change)
	case ev.Outcome != nil:
		p.outcome(ev.Outcome)
	case ev.Unseal != nil && ev.Unseal.Reason != "":
		p.field("reason", clean(ev.Unseal.Reason))
	}
}

// changeHead is the head line of a change event: which statement, which
// phase, how many rows.
func changeHead(c *record.Change) string {
	h := fmt.Sprintf("change · %s of command %d statement %d · %s", clean(c.Op), c.Command, c.Statement, clean(c.Phase))
	if c.Table != "" {
		h += " · " + clean(c.Table)
	}
	switch {
	case c.Phase == record.ChangeNone:
		h += " · not analysed"
	case c.More:
		h += fmt.Sprintf(" · first %d rows", len(c.Rows))
	default:
		h += fmt.Sprintf(" · %d rows", len(c.Rows))
	}
	if c.Affected > 0 {
		h += fmt.Sprintf(" · %d affected", c.Affected)
	}
	return h
}

// change prints a change event's rows (masked as recorded; raw values
// are sealed in its mask.proof events, for phigate unseal).
func (p *printer) change(c *record.Change) {
	if c.Reason != "" {
		p.field("reason", clean(c.Reason))
	}
	if c.Error != nil {
		p.field("error", clean(c.Error.Code)+": "+clean(c.Error.Message))
	}
	if c.Read != "" {
		p.field("read", clean(c.Read))
	}
	if len(c.Columns) > 0 {
		cols := make([]string, len(c.Columns))
		for i, col := range c.Columns {
			cols[i] = clean(col)
		}
		p.field("columns", strings.Join(cols, " | "))
	}
	for i, row := range c.Rows {
		vals := make([]string, len(row))
		for j, v := range row {
			if v == nil {
				vals[j] = "NULL"
			} else {
				vals[j] = clean(*v)
			}
		}
		label := ""
		if i == 0 {
			label = "rows"
		}
		p.field(label, strings.Join(vals, " | "))
	}
	for i, m := range c.Masked {
		label := ""
		if i == 0 {
			label = "masked"
		}
		p.field(label, clean(m.Column)+": "+clean(m.Action))
	}
}

// outcome prints which recorded changes a transaction's end decided.
func (p *printer) outcome(o *record.ChangeOutcome) {
	if o.Reason != "" {
		p.field("reason", clean(o.Reason))
	}
	refs := make([]string, len(o.Changes))
	for i, c := range o.Changes {
		refs[i] = fmt.Sprintf("command %d statement %d", c.Command, c.Statement)
	}
	if len(refs) > 0 {
		p.field("changes", strings.Join(refs, ", "))
	}
}

// proof summarises a batch of masking proofs: which rule hit which column
// how often. The sealed raw values are for `phigate unseal`, not for here.
func (p *printer) proof(mp *record.MaskProof) {
	counts := make([]int, len(mp.Rules))
	for _, sp := range mp.Spans {
		if sp[1] >= 0 && sp[1] < int64(len(counts)) {
			counts[sp[1]]++
		}
	}
	for i, r := range mp.Rules {
		label := ""
		if i == 0 {
			label = "proven"
		}
		what := fmt.Sprintf("column %d: %s by %s", r.Column, clean(r.Action), clean(r.Rule))
		if r.Type != "" {
			what += ", " + clean(r.Type)
		}
		if r.Detector != "" {
			what += " (detector " + clean(r.Detector) + ")"
		}
		p.field(label, fmt.Sprintf("%s, %d values", what, counts[i]))
	}
}

func (p *printer) start(s *record.SessionStart) {
	who := clean(s.IdentityKind)
	if len(s.Groups) > 0 {
		who += "; groups " + clean(strings.Join(s.Groups, ", "))
	}
	if who != "" {
		p.field("kind", who)
	}
	var conn []string
	if s.Protocol != "" {
		conn = append(conn, clean(s.Protocol))
	}
	if s.Client != "" {
		conn = append(conn, "from "+clean(s.Client))
	}
	switch {
	case s.TLSVersion != "":
		conn = append(conn, clean(s.TLSVersion))
	case s.TLS:
		conn = append(conn, "TLS")
	default:
		conn = append(conn, "no TLS")
	}
	p.field("client", strings.Join(conn, ", "))
	var asked []string
	if s.User != "" {
		asked = append(asked, "user "+clean(s.User))
	}
	if s.Database != "" {
		asked = append(asked, "database "+clean(s.Database))
	}
	if s.Application != "" {
		asked = append(asked, "application "+clean(s.Application))
	}
	if len(asked) > 0 {
		p.field("startup", strings.Join(asked, ", "))
	}
	if s.Grant != "" {
		p.field("grant", clean(s.Grant))
	}
	if s.Masking != "" {
		p.field("masking", clean(s.Masking))
	}
	if s.Upstream != "" {
		p.field("upstream", clean(s.Upstream))
	}
}

func commandHead(c *record.Command) string {
	parts := []string{fmt.Sprintf("command %d", c.ID)}
	if pg := c.Postgres; pg != nil {
		// PostgreSQL is the only protocol recorded so far, and its trail
		// has always said how a command came, not that it was PostgreSQL.
		if pg.Flow != "" {
			parts = append(parts, clean(pg.Flow))
		}
		if pg.Statement != "" {
			parts = append(parts, "statement "+strconv.Quote(pg.Statement))
		}
		if pg.Portal != "" {
			parts = append(parts, "portal "+strconv.Quote(pg.Portal))
		}
	} else if c.Protocol != "" {
		parts = append(parts, clean(c.Protocol))
	}
	switch c.Decision {
	case "allow":
		d := "allowed"
		if c.Rule != "" {
			d += " by " + clean(c.Rule)
		}
		parts = append(parts, d)
	case "deny":
		d := "DENIED"
		if c.Rule != "" {
			d += " by " + clean(c.Rule)
		}
		parts = append(parts, d)
	case "":
	default:
		parts = append(parts, clean(c.Decision))
	}
	return strings.Join(parts, " · ")
}

func (p *printer) command(c *record.Command) {
	if c.Reason != "" {
		p.field("reason", clean(c.Reason))
	}
	pg := c.Postgres
	if pg != nil {
		p.field("sql", cleanMultiline(pg.SQL))
	}
	if len(c.Classes) > 0 {
		p.field("classes", clean(strings.Join(c.Classes, ", ")))
	}
	if pg != nil {
		p.params(pg.Params)
	}
}

// params prints a PostgreSQL command's bound parameters, $1 first.
func (p *printer) params(params []record.Param) {
	for i, prm := range params {
		label := ""
		if i == 0 {
			label = "params"
		}
		var v string
		switch {
		case prm.Null:
			v = "NULL"
		case prm.Format == "binary":
			v = "binary, base64 " + clean(prm.Value)
		default:
			v = quoteValue(prm.Value)
		}
		p.printf("%s%-10s $%d = %s\n", indent, label, i+1, v)
	}
}

func resultHead(r *record.Result) string {
	parts := []string{fmt.Sprintf("result of command %d", r.Command)}
	if r.Error != nil {
		src := ""
		if r.Error.Source != "" {
			src = " from " + clean(r.Error.Source)
		}
		parts = append(parts, fmt.Sprintf("ERROR %s%s", clean(r.Error.Code), src))
	} else if r.Tag != "" {
		parts = append(parts, clean(r.Tag))
	}
	parts = append(parts, fmt.Sprintf("%d rows", r.Rows), fmt.Sprintf("%d bytes", r.Bytes), micros(r.DurationUS))
	if r.Suspended {
		parts = append(parts, "portal suspended")
	}
	return strings.Join(parts, " · ")
}

func (p *printer) result(r *record.Result) {
	if r.Error != nil {
		p.field("error", cleanMultiline(r.Error.Message))
	}
	for i, m := range r.Masked {
		label := ""
		if i == 0 {
			label = "masked"
		}
		col := clean(m.Column)
		switch {
		case m.Source != "":
			col += " (" + clean(m.Source) + ")"
		case len(m.Derived) > 0:
			col += " (from " + clean(strings.Join(m.Derived, ", ")) + ")"
		}
		line := fmt.Sprintf("%s: %s by rule %s, %d values", col, clean(m.Action), clean(m.Rule), m.Values)
		if m.Scanned > 0 {
			line += fmt.Sprintf(", %d scanned clean", m.Scanned)
		}
		if m.Passed > 0 {
			line += fmt.Sprintf(", %d passed unread", m.Passed)
		}
		if m.Reason != "" {
			line += " (" + clean(m.Reason) + ")"
		}
		p.field(label, line)
	}
}

// copyPreview caps how much COPY data the readable trail shows per event;
// --json has all of it.
const copyPreview = 1024

func (p *printer) copyData(data []byte) {
	shown := data
	if len(shown) > copyPreview {
		shown = shown[:copyPreview]
	}
	v := cleanMultiline(strings.TrimSuffix(string(shown), "\n"))
	if len(data) > len(shown) {
		v += fmt.Sprintf("\n… %d more bytes (see --json)", len(data)-len(shown))
	}
	p.field("data", v)
}

func (p *printer) footer(sum record.Summary) {
	status := "session closed (" + clean(sum.EndReason) + ")"
	if !sum.Closed {
		status = "session open (live)"
	}
	const stamp = "2006-01-02 15:04:05.000Z"
	p.printf("-- %d events verified, chain intact, %s; %s to %s; head %s\n",
		sum.Events, status, sum.First.UTC().Format(stamp), sum.Last.UTC().Format(stamp), sum.Head)
}

func micros(us int64) string {
	return strconv.FormatFloat(float64(us)/1000, 'f', 3, 64) + " ms"
}

// clean makes recorded text safe to print on one line: control and other
// non-printing characters are escaped, so that client-supplied text cannot
// move the cursor, recolor or rewrite the auditor's terminal.
func clean(s string) string { return escape(s, false) }

// cleanMultiline is clean but keeps newlines (and tabs) as they are.
func cleanMultiline(s string) string { return escape(s, true) }

func escape(s string, multiline bool) string {
	ok := true
	for _, r := range s {
		if !printable(r, multiline) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case printable(r, multiline):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

func printable(r rune, multiline bool) bool {
	if r == utf8.RuneError {
		return false
	}
	if multiline && (r == '\n' || r == '\t') {
		return true
	}
	return unicode.IsPrint(r)
}

// quoteValue shows a text parameter as an SQL-style literal.
func quoteValue(v string) string {
	return "'" + strings.ReplaceAll(clean(v), "'", "''") + "'"
}
