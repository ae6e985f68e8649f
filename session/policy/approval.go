package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Risk is a property of an operation, finer than its class, that an
// approval rule can require a person's approval for. Classifiers mark the
// risks they see on each Action; bulk export and writes to named tables
// are judged against a rule's own tables and row bound (Action.Reads,
// Writes, Rows).
type Risk string

const (
	// RiskDDL changes schema: CREATE, ALTER, DROP, COMMENT, SELECT INTO.
	RiskDDL Risk = "ddl"
	// RiskUnboundedWrite is a DELETE or UPDATE (anywhere in the
	// statement) without a WHERE clause, or whose WHERE does not restrict
	// by the target's own columns (constant-true, a tautology, a disjunct
	// that does not name the target).
	RiskUnboundedWrite Risk = "unbounded-write"
	// RiskTruncate is TRUNCATE.
	RiskTruncate Risk = "truncate"
	// RiskBulkExport is COPY ... TO of any relation or query, or a SELECT
	// of the rule's tables (any table when it names none) without a LIMIT
	// or with one above the rule's row bound. Judged by the rule: the
	// classifier marks no action with it.
	RiskBulkExport Risk = "bulk-export"
	// RiskTableWrite writes to one of the rule's tables. Judged by the
	// rule: the classifier marks no action with it.
	RiskTableWrite Risk = "table-write"
	// RiskPrivilege changes who may do what: GRANT, REVOKE, CREATE, ALTER
	// and DROP ROLE, ALTER DEFAULT PRIVILEGES, ownership, SET ROLE.
	RiskPrivilege Risk = "privilege"
	// RiskDangerousFunction reaches outside the database: server files
	// and programs (pg_read_file, lo_import, lo_export, COPY ... PROGRAM or
	// a server file), other databases (dblink).
	RiskDangerousFunction Risk = "dangerous-function"
	// RiskUnclassified is an action whose effects phigate cannot see: DO
	// blocks, CALL, a function outside the allowlist of side-effect-free
	// built-ins that the grant does not name, a write through a view or a
	// table with rules, a statement kind phigate does not know.
	RiskUnclassified Risk = "unclassified"
)

// Risks lists every risk a rule may name, in a stable order.
var Risks = []Risk{RiskDDL, RiskUnboundedWrite, RiskTruncate, RiskBulkExport, RiskTableWrite,
	RiskPrivilege, RiskDangerousFunction, RiskUnclassified}

// effectRisks are the risks of what an action does; an action whose
// effects phigate cannot see could be any of them, so a rule that gates
// one gates unclassified actions too.
var effectRisks = []Risk{RiskDDL, RiskUnboundedWrite, RiskTruncate, RiskTableWrite, RiskPrivilege, RiskDangerousFunction}

// ApprovalMode is what the agent's session does while a request waits.
type ApprovalMode string

const (
	// ModeHold keeps the command waiting (up to the rule's Hold) and runs
	// it the moment it is approved.
	ModeHold ApprovalMode = "hold"
	// ModeFailFast refuses the command at once with the request's id; the
	// same statement, sent again by the same identity once approved, runs.
	ModeFailFast ApprovalMode = "fail-fast"
)

// Defaults of an approval rule.
const (
	DefaultApprovalHold = 5 * time.Minute
	DefaultApprovalTTL  = time.Hour
)

// ApprovalRule makes some of what a grant allows wait for people's
// approval. It never widens a grant: what the grant does not allow is
// refused before any rule is looked at.
type ApprovalRule struct {
	Name string
	// When lists what needs approval: statement classes (read, write,
	// ddl, admin, export, import) or risks. An action matches when its
	// class or one of its risks is listed.
	When []string
	// Tables are the relations table-write and bulk-export speak of, as
	// "schema.name" or "name" (a bare name matches the table in any
	// schema, and a statement's unqualified name matches a rule's
	// schema-qualified one: the server resolves it through search_path).
	Tables []string
	// MaxRows is bulk-export's row bound: a SELECT whose LIMIT is at most
	// MaxRows is not a bulk export. 0: any SELECT of the tables without a
	// LIMIT is one.
	MaxRows int64
	// Approvers are the groups whose members may decide; Required is how
	// many distinct members must approve (k of n; one denial decides).
	Approvers []string
	Required  int
	// TTL is how long a request stays open for a decision.
	TTL time.Duration
	// Mode is hold (the default) or fail-fast; Hold bounds a held command's
	// wait (default 5 minutes, never beyond TTL).
	Mode ApprovalMode
	Hold time.Duration
	// MaxWindow is the longest time-boxed grant an approver may give
	// instead of a one-time run (0: only one-time runs).
	MaxWindow time.Duration
}

// validate checks a rule and fills in its defaults.
func (r *ApprovalRule) validate(grant string) error {
	where := fmt.Sprintf("policy: grant %q: approval rule %q", grant, r.Name)
	if r.Name == "" {
		return fmt.Errorf("policy: grant %q: an approval rule has no name", grant)
	}
	if len(r.When) == 0 {
		return fmt.Errorf("%s: when names nothing", where)
	}
	for _, w := range r.When {
		if _, err := ParseClass(w); err == nil {
			continue
		}
		if !slices.Contains(Risks, Risk(w)) {
			return fmt.Errorf("%s: when: %q is neither a statement class nor a risk (%s)", where, w, riskNames())
		}
	}
	if slices.Contains(r.When, string(RiskTableWrite)) && len(r.Tables) == 0 {
		return fmt.Errorf("%s: table-write needs tables", where)
	}
	for _, t := range r.Tables {
		if t == "" || strings.Count(t, ".") > 1 {
			return fmt.Errorf("%s: tables: %q is not a table name (schema.name or name)", where, t)
		}
	}
	if r.MaxRows < 0 {
		return fmt.Errorf("%s: max_rows is negative", where)
	}
	if len(r.Approvers) == 0 {
		return fmt.Errorf("%s: names no approver groups", where)
	}
	if r.Required == 0 {
		r.Required = 1
	}
	if r.Required < 0 || r.Required > 16 {
		return fmt.Errorf("%s: required must be between 1 and 16", where)
	}
	switch r.Mode {
	case "":
		r.Mode = ModeHold
	case ModeHold, ModeFailFast:
	default:
		return fmt.Errorf("%s: mode %q is neither hold nor fail-fast", where, r.Mode)
	}
	if r.TTL == 0 {
		r.TTL = DefaultApprovalTTL
	}
	if r.Hold == 0 {
		r.Hold = DefaultApprovalHold
	}
	if r.TTL < 0 || r.Hold < 0 || r.MaxWindow < 0 {
		return fmt.Errorf("%s: ttl, hold and max_window must not be negative", where)
	}
	r.Hold = min(r.Hold, r.TTL)
	return nil
}

func riskNames() string {
	var s []string
	for _, r := range Risks {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// NeedsApproval returns the first of g's approval rules that one of the
// actions matches, and what matched, for the request and the recording
// ("unbounded-write", "table-write audit.events", ...). nil: no rule
// applies, the command runs as the grant allows. It is called only for
// commands the grant allows.
func (g *Grant) NeedsApproval(actions []Action) (*ApprovalRule, []string) {
	for i := range g.Approvals {
		r := &g.Approvals[i]
		var why []string
		for _, a := range actions {
			for _, m := range r.matches(g, a) {
				if !slices.Contains(why, m) {
					why = append(why, m)
				}
			}
		}
		if len(why) > 0 {
			return r, why
		}
	}
	return nil, nil
}

// matches lists what of rule r action a matches.
func (r *ApprovalRule) matches(g *Grant, a Action) []string {
	var out []string
	if slices.Contains(r.When, string(a.Class)) {
		out = append(out, string(a.Class))
	}
	risks := slices.Clone(a.Risks)
	for _, c := range a.Calls {
		// A function the grant does not name does what its author wrote:
		// phigate cannot see it.
		if !g.namesFunction(c.Name) && !slices.Contains(risks, RiskUnclassified) {
			risks = append(risks, RiskUnclassified)
		}
	}
	for _, k := range risks {
		switch {
		case slices.Contains(r.When, string(k)):
			out = append(out, string(k))
		case k == RiskUnclassified && r.gatesEffects():
			out = append(out, string(k))
		}
	}
	if slices.Contains(r.When, string(RiskTableWrite)) {
		for _, w := range a.Writes {
			if r.namesTable(w) {
				out = append(out, string(RiskTableWrite)+" "+w)
			}
		}
	}
	if slices.Contains(r.When, string(RiskBulkExport)) && r.bulk(a) {
		out = append(out, string(RiskBulkExport))
	}
	return out
}

// gatesEffects reports whether r gates a kind of effect, which an action
// whose effects phigate cannot see could have.
func (r *ApprovalRule) gatesEffects() bool {
	for _, k := range effectRisks {
		if slices.Contains(r.When, string(k)) {
			return true
		}
	}
	return false
}

// bulk reports whether a is a bulk export under r: any COPY ... TO, or
// any action that reads rows of r's tables (any table when r names none)
// with no bound at or under r's. Not only reads: SELECT ... FOR UPDATE, a
// SELECT with a writing CTE and INSERT ... SELECT ... RETURNING hand rows
// back too, and INSERT ... SELECT copies them where the rule does not look.
func (r *ApprovalRule) bulk(a Action) bool {
	if a.Class == Export {
		return true
	}
	if len(a.Reads) == 0 {
		return false
	}
	if a.Rows > 0 && (r.MaxRows == 0 || a.Rows <= r.MaxRows) {
		return false
	}
	if len(r.Tables) == 0 {
		return true
	}
	for _, t := range a.Reads {
		if r.namesTable(t) {
			return true
		}
	}
	return false
}

// namesTable reports whether rel (as a statement wrote it: "schema.name"
// or "name") may be one of r's tables. Names are compared as PostgreSQL
// folds them; a name without a schema could resolve to any schema's table.
func (r *ApprovalRule) namesTable(rel string) bool {
	rs, rn := splitRel(rel)
	for _, t := range r.Tables {
		ts, tn := splitRel(t)
		if rn != tn {
			continue
		}
		if rs == "" || ts == "" || rs == ts {
			return true
		}
	}
	return false
}

func splitRel(s string) (schema, name string) {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}
