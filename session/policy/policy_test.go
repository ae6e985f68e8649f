package policy

import (
	"strings"
	"testing"

	"github.com/phigate/phigate/session/identity"
)

func TestConnectDenyByDefault(t *testing.T) {
	p, err := New([]Grant{
		{Name: "agents-read", Groups: []string{"agents"}, Resources: []string{"clinic"}, Allow: []Class{Read}, Masking: "hipaa"},
		{Name: "dba", Identities: []string{"alice"}, Resources: []string{"*"}, Allow: Classes},
		{Name: "ci", Kinds: []identity.Kind{identity.KindCI}, Resources: []string{"billing"}, Allow: []Class{Write}},
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
	g := &Grant{Name: "ro", Allow: []Class{Read}, Functions: []string{"audit.note"}}
	for _, tt := range []struct {
		name    string
		actions []Action
		allowed bool
	}{
		{"read", []Action{{Class: Read}}, true},
		{"tx and session always", []Action{{Class: Tx}, {Class: Read}, {Class: Session}, {Class: Tx}}, true},
		{"write", []Action{{Class: Write}}, false},
		{"read then ddl", []Action{{Class: Read}, {Class: DDL}}, false},
		{"export", []Action{{Class: Export}}, false},
		{"admin", []Action{{Class: Admin}}, false},
		{"refused whatever the grant", []Action{{Class: Read, Refused: "cannot vouch"}}, false},
		{"call needing write", []Action{{Class: Read, Calls: []Call{{Name: "nextval", Class: Write}}}}, false},
		{"call the grant names", []Action{{Class: Read, Calls: []Call{{Name: "audit.note", Class: Admin}}}}, true},
		{"pg_catalog call named bare", []Action{{Class: Read, Calls: []Call{{Name: "pg_catalog.lo_import", Class: Admin}}}}, false},
		{"nothing", nil, true},
	} {
		d := Command(g, tt.actions)
		if d.Allowed != tt.allowed {
			t.Errorf("%s: Command = %+v, want allowed=%v", tt.name, d, tt.allowed)
		}
		if !d.Allowed && d.Reason == "" {
			t.Errorf("%s: denied without a reason", tt.name)
		}
	}
	if !g.ReadOnly() {
		t.Error("read grant not read-only")
	}
	if (&Grant{Allow: []Class{Read, Write}}).ReadOnly() {
		t.Error("write grant read-only")
	}
}

func TestGrantLevel(t *testing.T) {
	for _, tt := range []struct {
		allow []Class
		want  Level
	}{
		{nil, LevelRead},
		{[]Class{Read, Export, Tx, Session}, LevelRead},
		{[]Class{Read, Write}, LevelWrite},
		{[]Class{Import}, LevelWrite},
		{[]Class{Read, DDL}, LevelAdmin},
		{[]Class{Admin, Read}, LevelAdmin},
		{Classes, LevelAdmin},
	} {
		if got := (&Grant{Allow: tt.allow}).Level(); got != tt.want {
			t.Errorf("Level(%v) = %s, want %s", tt.allow, got, tt.want)
		}
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
