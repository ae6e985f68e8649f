package policy

import (
	"strings"
	"testing"

	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/sqlclass"
)

func TestConnectDenyByDefault(t *testing.T) {
	p, err := New([]Grant{
		{Name: "agents-read", Groups: []string{"agents"}, Resources: []string{"clinic"}, Allow: []sqlclass.Class{sqlclass.Read}, Masking: "hipaa"},
		{Name: "dba", Identities: []string{"alice"}, Resources: []string{"*"}, Allow: sqlclass.Classes},
		{Name: "ci", Kinds: []identity.Kind{identity.KindCI}, Resources: []string{"billing"}, Allow: []sqlclass.Class{sqlclass.Write}},
	}, []string{"clinic", "billing"}, []string{"hipaa"})
	if err != nil {
		t.Fatal(err)
	}
	agent := identity.Identity{Name: "bot", Kind: identity.KindAgent, Groups: []string{"agents"}}
	tests := []struct {
		id       identity.Identity
		resource string
		grant    string
	}{
		{agent, "clinic", "agents-read"},
		{agent, "billing", ""},
		{identity.Identity{Name: "alice", Kind: identity.KindHuman}, "billing", "dba"},
		{identity.Identity{Name: "job", Kind: identity.KindCI}, "billing", "ci"},
		{identity.Identity{Name: "job", Kind: identity.KindCI}, "clinic", ""},
		{identity.Identity{Name: "stranger", Kind: identity.KindHuman}, "clinic", ""},
	}
	for _, tt := range tests {
		d := p.Connect(tt.id, tt.resource)
		if d.Allowed != (tt.grant != "") || d.Rule() != tt.grant {
			t.Errorf("Connect(%s, %s) = %+v, want grant %q", tt.id.Name, tt.resource, d, tt.grant)
		}
		if !d.Allowed && !strings.Contains(d.Reason, tt.resource) {
			t.Errorf("denial reason %q does not name the resource", d.Reason)
		}
	}
}

func TestCommand(t *testing.T) {
	g := &Grant{Name: "ro", Allow: []sqlclass.Class{sqlclass.Read}}
	for _, tt := range []struct {
		sql     string
		allowed bool
	}{
		{"SELECT * FROM patients", true},
		{"BEGIN; SELECT 1; COMMIT", true},
		{"SET search_path = clinic", true},
		{"DELETE FROM patients", false},
		{"SELECT 1; DROP TABLE patients", false},
		{"COPY patients TO STDOUT", false},
		{"SET ROLE postgres", false},
	} {
		stmts, err := sqlclass.Classify(tt.sql)
		if err != nil {
			t.Fatal(err)
		}
		d := Command(g, stmts)
		if d.Allowed != tt.allowed {
			t.Errorf("Command(%q) = %+v, want allowed=%v", tt.sql, d, tt.allowed)
		}
	}
	if !g.ReadOnly() {
		t.Error("read grant not read-only")
	}
	if (&Grant{Allow: []sqlclass.Class{sqlclass.Read, sqlclass.Write}}).ReadOnly() {
		t.Error("write grant read-only")
	}
}

func TestNewRejects(t *testing.T) {
	for _, tt := range []struct {
		g    Grant
		want string
	}{
		{Grant{Groups: []string{"a"}, Resources: []string{"r"}}, "no name"},
		{Grant{Name: "g", Resources: []string{"r"}}, "names no identities"},
		{Grant{Name: "g", Groups: []string{"a"}}, "names no resources"},
		{Grant{Name: "g", Groups: []string{"a"}, Resources: []string{"nope"}}, "unknown resource"},
		{Grant{Name: "g", Groups: []string{"a"}, Resources: []string{"r"}, Masking: "nope"}, "unknown masking profile"},
	} {
		_, err := New([]Grant{tt.g}, []string{"r"}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tt.g, err, tt.want)
		}
	}
	if _, err := ParseAllow([]string{"read", "bogus"}); err == nil {
		t.Error("ParseAllow accepted an unknown class")
	}
}
