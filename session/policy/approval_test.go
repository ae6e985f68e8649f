package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestApprovalRuleDefaults(t *testing.T) {
	r := ApprovalRule{Name: "r", When: []string{"ddl", "truncate"}, Approvers: []string{"dba"}}
	if err := r.validate("g"); err != nil {
		t.Fatal(err)
	}
	if r.Required != 1 || r.Mode != ModeHold || r.TTL != DefaultApprovalTTL || r.Hold != DefaultApprovalHold || r.MaxWindow != 0 {
		t.Fatalf("defaults: %+v", r)
	}
	// Hold never outlasts the request.
	r = ApprovalRule{Name: "r", When: []string{"write"}, Approvers: []string{"dba"}, TTL: time.Minute, Mode: ModeFailFast, Required: 3}
	if err := r.validate("g"); err != nil {
		t.Fatal(err)
	}
	if r.Hold != time.Minute || r.Mode != ModeFailFast || r.Required != 3 {
		t.Fatalf("explicit: %+v", r)
	}
	// Every class and every risk is a valid when.
	var all []string
	for _, c := range Classes {
		all = append(all, string(c))
	}
	for _, k := range Risks {
		all = append(all, string(k))
	}
	r = ApprovalRule{Name: "all", When: all, Tables: []string{"audit.events", "patients"}, Approvers: []string{"dba"}}
	if err := r.validate("g"); err != nil {
		t.Fatal(err)
	}
}

func TestApprovalRuleErrors(t *testing.T) {
	ok := func() ApprovalRule {
		return ApprovalRule{Name: "r", When: []string{"ddl"}, Approvers: []string{"dba"}}
	}
	for _, tt := range []struct {
		name string
		edit func(*ApprovalRule)
		want string
	}{
		{"no name", func(r *ApprovalRule) { r.Name = "" }, "has no name"},
		{"empty when", func(r *ApprovalRule) { r.When = nil }, "when names nothing"},
		{"unknown when", func(r *ApprovalRule) { r.When = []string{"ddl", "drop"} }, `"drop" is neither`},
		{"when is case-sensitive", func(r *ApprovalRule) { r.When = []string{"DDL"} }, "neither"},
		{"table-write without tables", func(r *ApprovalRule) { r.When = []string{"table-write"} }, "needs tables"},
		{"empty table", func(r *ApprovalRule) { r.Tables = []string{""} }, "not a table name"},
		{"three-part table", func(r *ApprovalRule) { r.Tables = []string{"db.audit.events"} }, "not a table name"},
		{"negative max rows", func(r *ApprovalRule) { r.MaxRows = -1 }, "max_rows"},
		{"no approvers", func(r *ApprovalRule) { r.Approvers = nil }, "no approver"},
		{"required negative", func(r *ApprovalRule) { r.Required = -1 }, "required"},
		{"required too many", func(r *ApprovalRule) { r.Required = 17 }, "required"},
		{"bad mode", func(r *ApprovalRule) { r.Mode = "wait" }, "mode"},
		{"negative ttl", func(r *ApprovalRule) { r.TTL = -time.Second }, "negative"},
		{"negative hold", func(r *ApprovalRule) { r.Hold = -time.Second }, "negative"},
		{"negative window", func(r *ApprovalRule) { r.MaxWindow = -time.Second }, "negative"},
	} {
		r := ok()
		tt.edit(&r)
		err := r.validate("g")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: validate = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	r := ok()
	r.Required = 16
	if err := r.validate("g"); err != nil {
		t.Errorf("16 approvers refused: %v", err)
	}
}

func TestNewValidatesApprovalRules(t *testing.T) {
	grant := func(rules ...ApprovalRule) []Grant {
		return []Grant{{Name: "g", Identities: []string{"bot"}, Resources: []string{"*"}, Allow: Classes, Approvals: rules}}
	}
	rule := ApprovalRule{Name: "r", When: []string{"ddl"}, Approvers: []string{"dba"}}
	p, err := New(grant(rule), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Grants()[0].Approvals[0]; got.Required != 1 || got.Mode != ModeHold {
		t.Fatalf("New did not fill defaults: %+v", got)
	}
	if rule.Required != 0 {
		t.Fatal("New changed the caller's rule")
	}
	if _, err := New(grant(rule, rule), nil, nil); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate rule: %v", err)
	}
	bad := rule
	bad.When = []string{"nope"}
	if _, err := New(grant(bad), nil, nil); err == nil {
		t.Fatal("invalid rule accepted")
	}
}

type approvalCase struct {
	name    string
	rules   []ApprovalRule
	actions []Action
	rule    string   // "" when no rule applies
	why     []string // what matched, when rule != ""
}

func TestNeedsApproval(t *testing.T) {
	rule := func(name string, when ...string) ApprovalRule {
		return ApprovalRule{Name: name, When: when, Approvers: []string{"dba"}}
	}
	g := &Grant{Name: "g", Allow: Classes, Functions: []string{"audit.note", "lo_import"}}
	tests := []approvalCase{
		{"no rules", nil, []Action{{Class: DDL, Risks: []Risk{RiskDDL}}}, "", nil},
		{"class", []ApprovalRule{rule("r", "write")}, []Action{{Class: Read}, {Class: Write}}, "r", []string{"write"}},
		{"class not listed", []ApprovalRule{rule("r", "write")}, []Action{{Class: Read}, {Class: Tx}}, "", nil},
		{"ddl", []ApprovalRule{rule("r", "ddl")}, []Action{{Class: DDL, Risks: []Risk{RiskDDL}}}, "r", []string{"ddl"}},
		{"unbounded write", []ApprovalRule{rule("r", "unbounded-write")}, []Action{{Class: Write, Risks: []Risk{RiskUnboundedWrite}}}, "r", []string{"unbounded-write"}},
		{"bounded write", []ApprovalRule{rule("r", "unbounded-write")}, []Action{{Class: Write, Writes: []string{"t"}}}, "", nil},
		{"truncate", []ApprovalRule{rule("r", "truncate")}, []Action{{Class: Write, Risks: []Risk{RiskTruncate}}}, "r", []string{"truncate"}},
		{"privilege", []ApprovalRule{rule("r", "privilege")}, []Action{{Class: Admin, Risks: []Risk{RiskPrivilege}}}, "r", []string{"privilege"}},
		{"dangerous function", []ApprovalRule{rule("r", "dangerous-function")}, []Action{{Class: Read, Risks: []Risk{RiskDangerousFunction}}}, "r", []string{"dangerous-function"}},
		{"unclassified named", []ApprovalRule{rule("r", "unclassified")}, []Action{{Class: Admin, Risks: []Risk{RiskUnclassified}}}, "r", []string{"unclassified"}},
		{"risk not listed", []ApprovalRule{rule("r", "truncate")}, []Action{{Class: Admin, Risks: []Risk{RiskPrivilege}}}, "", nil},
		{"class and risk", []ApprovalRule{rule("r", "ddl", "admin", "privilege")}, []Action{{Class: Admin, Risks: []Risk{RiskPrivilege, RiskDDL}}}, "r", []string{"admin", "privilege", "ddl"}},
		{"duplicates reported once", []ApprovalRule{rule("r", "truncate")}, []Action{{Class: Write, Risks: []Risk{RiskTruncate}}, {Class: Write, Risks: []Risk{RiskTruncate}}}, "r", []string{"truncate"}},
		{"first matching rule wins", []ApprovalRule{rule("a", "ddl"), rule("b", "truncate"), rule("c", "truncate")}, []Action{{Class: Write, Risks: []Risk{RiskTruncate}}}, "b", []string{"truncate"}},
	}
	// Unclassified is implied by every rule that gates an effect.
	for _, k := range []Risk{RiskDDL, RiskUnboundedWrite, RiskTruncate, RiskPrivilege, RiskDangerousFunction} {
		tests = append(tests, approvalCase{"unclassified under " + string(k), []ApprovalRule{rule("r", string(k))}, []Action{{Class: Admin, Risks: []Risk{RiskUnclassified}}}, "r", []string{"unclassified"}})
	}
	table := ApprovalRule{Name: "t", When: []string{"table-write"}, Tables: []string{"audit.events"}, Approvers: []string{"dba"}}
	bulk := ApprovalRule{Name: "b", When: []string{"bulk-export"}, Approvers: []string{"dba"}}
	tests = append(tests, []approvalCase{
		{"table-write implies unclassified", []ApprovalRule{table}, []Action{{Class: Admin, Risks: []Risk{RiskUnclassified}}}, "t", []string{"unclassified"}},
		{"bulk-export does not imply unclassified", []ApprovalRule{bulk}, []Action{{Class: Admin, Risks: []Risk{RiskUnclassified}}}, "", nil},
		{"class rule does not imply unclassified", []ApprovalRule{rule("r", "ddl"), rule("s", "write")}, []Action{{Class: Read, Risks: []Risk{RiskUnclassified}}}, "r", []string{"unclassified"}},
		{"read rule does not imply unclassified", []ApprovalRule{rule("r", "read", "export")}, []Action{{Class: Admin, Risks: []Risk{RiskUnclassified}}}, "", nil},

		// A call outside the allowlist is unclassified unless the grant names it.
		{"unnamed call", []ApprovalRule{rule("r", "ddl")}, []Action{{Class: Read, Calls: []Call{{Name: "purge", Class: Admin}}}}, "r", []string{"unclassified"}},
		{"unnamed write call", []ApprovalRule{rule("r", "unclassified")}, []Action{{Class: Read, Calls: []Call{{Name: "nextval", Class: Write}}}}, "r", []string{"unclassified"}},
		{"named call", []ApprovalRule{rule("r", "ddl", "unclassified")}, []Action{{Class: Read, Calls: []Call{{Name: "audit.note", Class: Admin}}}}, "", nil},
		{"named call in another schema", []ApprovalRule{rule("r", "unclassified")}, []Action{{Class: Read, Calls: []Call{{Name: "public.note", Class: Admin}}}}, "r", []string{"unclassified"}},
		{"named pg_catalog call", []ApprovalRule{rule("r", "unclassified")}, []Action{{Class: Read, Calls: []Call{{Name: "pg_catalog.lo_import", Class: Admin}}}}, "", nil},
		{"named call keeps its own risks", []ApprovalRule{rule("r", "dangerous-function")}, []Action{{Class: Read, Risks: []Risk{RiskDangerousFunction}, Calls: []Call{{Name: "lo_import", Class: Admin}}}}, "r", []string{"dangerous-function"}},
		{"calls under a bulk rule", []ApprovalRule{bulk}, []Action{{Class: Read, Calls: []Call{{Name: "purge", Class: Admin}}}}, "", nil},

		// Writes to named tables.
		{"table qualified", []ApprovalRule{table}, []Action{{Class: Write, Writes: []string{"audit.events"}}}, "t", []string{"table-write audit.events"}},
		{"table unqualified", []ApprovalRule{table}, []Action{{Class: Write, Writes: []string{"events"}}}, "t", []string{"table-write events"}},
		{"table in another schema", []ApprovalRule{table}, []Action{{Class: Write, Writes: []string{"public.events"}}}, "", nil},
		{"another table", []ApprovalRule{table}, []Action{{Class: Write, Writes: []string{"audit.other", "events_archive"}}}, "", nil},
		{"case is as folded", []ApprovalRule{table}, []Action{{Class: Write, Writes: []string{"Audit.Events"}}}, "", nil},
		{"several writes", []ApprovalRule{table}, []Action{{Class: Write, Writes: []string{"notes", "audit.events"}}, {Class: Write, Writes: []string{"events"}}}, "t", []string{"table-write audit.events", "table-write events"}},
		{"bare rule table", []ApprovalRule{{Name: "t", When: []string{"table-write"}, Tables: []string{"events"}, Approvers: []string{"dba"}}}, []Action{{Class: Write, Writes: []string{"anything.events"}}}, "t", []string{"table-write anything.events"}},
		{"reads are not writes", []ApprovalRule{table}, []Action{{Class: Read, Reads: []string{"audit.events"}}}, "", nil},

		// Bulk export without tables: any COPY TO, any unbounded read.
		{"export", []ApprovalRule{bulk}, []Action{{Class: Export}}, "b", []string{"bulk-export"}},
		{"read without limit", []ApprovalRule{bulk}, []Action{{Class: Read, Reads: []string{"x"}}}, "b", []string{"bulk-export"}},
		{"read with a limit", []ApprovalRule{bulk}, []Action{{Class: Read, Reads: []string{"x"}, Rows: 1_000_000}}, "", nil},
		{"read of nothing", []ApprovalRule{bulk}, []Action{{Class: Read}}, "", nil},
		// A write that reads rows can hand them back (RETURNING, FOR UPDATE) or copy them where the rule does not look.
		{"write reading a table", []ApprovalRule{bulk}, []Action{{Class: Write, Reads: []string{"x"}}}, "b", []string{"bulk-export"}},
	}...)
	// Bulk export of named tables with a row bound.
	pat := ApprovalRule{Name: "p", When: []string{"bulk-export"}, Tables: []string{"clinic.patients"}, MaxRows: 100, Approvers: []string{"dba"}}
	for _, tt := range []struct {
		reads []string
		rows  int64
		bulk  bool
	}{
		{[]string{"patients"}, 0, true},
		{[]string{"clinic.patients"}, 0, true},
		{[]string{"notes", "patients"}, 0, true},
		{[]string{"patients"}, 100, false},
		{[]string{"patients"}, 101, true},
		{[]string{"patients"}, 1, false},
		{[]string{"other.patients"}, 0, false},
		{[]string{"notes"}, 0, false},
	} {
		var why []string
		name := ""
		if tt.bulk {
			why, name = []string{"bulk-export"}, "p"
		}
		tests = append(tests, approvalCase{fmt.Sprintf("tables %v rows %d", tt.reads, tt.rows), []ApprovalRule{pat}, []Action{{Class: Read, Reads: tt.reads, Rows: tt.rows}}, name, why})
	}
	noBound := pat
	noBound.MaxRows = 0
	tests = append(tests, approvalCase{"max rows 0: any limit will do", []ApprovalRule{noBound}, []Action{{Class: Read, Reads: []string{"patients"}, Rows: 1 << 40}}, "", nil})
	tests = append(tests, approvalCase{"export of named tables' rule: any COPY TO", []ApprovalRule{pat}, []Action{{Class: Export, Reads: []string{"notes"}}}, "p", []string{"bulk-export"}})

	for _, tt := range tests {
		g := *g
		g.Approvals = tt.rules
		for i := range g.Approvals {
			if err := g.Approvals[i].validate(g.Name); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		r, why := g.NeedsApproval(tt.actions)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tt.rule || !slices.Equal(why, tt.why) {
			t.Errorf("%s: NeedsApproval = %q %q, want %q %q", tt.name, got, why, tt.rule, tt.why)
		}
		if r == nil && why != nil {
			t.Errorf("%s: no rule, yet %q", tt.name, why)
		}
	}
}

// The rule returned is the grant's own, so that a caller can read its
// approvers, mode and hold.
func TestNeedsApprovalReturnsTheGrantsRule(t *testing.T) {
	g := &Grant{Name: "g", Allow: Classes, Approvals: []ApprovalRule{{Name: "r", When: []string{"ddl"}, Approvers: []string{"dba"}, Mode: ModeFailFast}}}
	r, _ := g.NeedsApproval([]Action{{Class: DDL}})
	if r != &g.Approvals[0] {
		t.Fatal("not the grant's rule")
	}
}
