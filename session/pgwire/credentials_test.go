package pgwire

import (
	"fmt"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/sqlclass"
)

func cred(user string) Credential { return Credential{User: user, Password: NewSecret(user + "-pw")} }

// TestCredentialLeastAtOrAbove: a level logs in with the role of the least
// level at or above it that has one, else with the resource's own user.
func TestCredentialLeastAtOrAbove(t *testing.T) {
	for name, tc := range map[string]struct {
		user  string
		roles map[AccessLevel]Credential
		want  [3]string // read, write, admin
	}{
		"no roles":       {"gw", nil, [3]string{"gw", "gw", "gw"}},
		"all three":      {"", map[AccessLevel]Credential{LevelRead: cred("r"), LevelWrite: cred("w"), LevelAdmin: cred("a")}, [3]string{"r", "w", "a"}},
		"read only":      {"gw", map[AccessLevel]Credential{LevelRead: cred("r")}, [3]string{"r", "gw", "gw"}},
		"read and admin": {"", map[AccessLevel]Credential{LevelRead: cred("r"), LevelAdmin: cred("a")}, [3]string{"r", "a", "a"}},
		"write only":     {"gw", map[AccessLevel]Credential{LevelWrite: cred("w")}, [3]string{"w", "w", "gw"}},
		"admin only":     {"", map[AccessLevel]Credential{LevelAdmin: cred("a")}, [3]string{"a", "a", "a"}},
		"read and write": {"gw", map[AccessLevel]Credential{LevelRead: cred("r"), LevelWrite: cred("w")}, [3]string{"r", "w", "gw"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := &Resource{Name: "x", Address: "h:5432", Database: "d", User: tc.user, Password: NewSecret("gw-pw"), Roles: tc.roles}
			if tc.user == "" {
				r.Password = Secret{}
			}
			if err := r.validate(); err != nil {
				t.Fatal(err)
			}
			for i, l := range Levels {
				user, pw := r.credential(l)
				if user != tc.want[i] {
					t.Errorf("%s: user %q, want %q", l, user, tc.want[i])
				}
				if wantPW := map[bool]string{true: "gw-pw", false: user + "-pw"}[user == "gw"]; pw.Reveal() != wantPW {
					t.Errorf("%s: password of %q is not its own", l, user)
				}
			}
		})
	}
}

// TestCredentialByGrant: the grant's statement classes pick the level and
// so the role (and the login config carries it).
func TestCredentialByGrant(t *testing.T) {
	r := &Resource{Name: "x", Address: "h:5432", Database: "d",
		Roles: map[AccessLevel]Credential{LevelRead: cred("r"), LevelWrite: cred("w"), LevelAdmin: cred("a")}}
	if err := r.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		allow []sqlclass.Class
		want  string
	}{
		{[]sqlclass.Class{sqlclass.Read}, "r"},
		{[]sqlclass.Class{sqlclass.Read, sqlclass.Export}, "r"},
		{nil, "r"},
		{[]sqlclass.Class{sqlclass.Read, sqlclass.Write}, "w"},
		{[]sqlclass.Class{sqlclass.Import}, "w"},
		{[]sqlclass.Class{sqlclass.Read, sqlclass.DDL}, "a"},
		{[]sqlclass.Class{sqlclass.Admin}, "a"},
		{sqlclass.Classes, "a"},
	} {
		g := &policy.Grant{Name: "g", Allow: tc.allow}
		cfg, err := r.connConfig(LevelFor(g), 0)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.User != tc.want || cfg.Password != tc.want+"-pw" {
			t.Errorf("allow %v: logs in as %q, want %q", tc.allow, cfg.User, tc.want)
		}
	}
}

func TestResourceValidateCredentials(t *testing.T) {
	for name, tc := range map[string]struct {
		user  string
		roles map[AccessLevel]Credential
		want  string // "" for valid
	}{
		"fallback only":          {"gw", nil, ""},
		"no user, no roles":      {"", nil, "user is required"},
		"no user, no admin role": {"", map[AccessLevel]Credential{LevelRead: cred("r"), LevelWrite: cred("w")}, "user is required"},
		"user with admin role":   {"gw", map[AccessLevel]Credential{LevelAdmin: cred("a")}, "never be used"},
		"user with all three":    {"gw", map[AccessLevel]Credential{LevelRead: cred("r"), LevelWrite: cred("w"), LevelAdmin: cred("a")}, "never be used"},
		"unknown level":          {"gw", map[AccessLevel]Credential{"owner": cred("o")}, "unknown access level"},
		"role without user":      {"gw", map[AccessLevel]Credential{LevelRead: {}}, "read: user is required"},
		"three roles, no user":   {"", map[AccessLevel]Credential{LevelRead: cred("r"), LevelWrite: cred("w"), LevelAdmin: cred("a")}, ""},
		"read role and fallback": {"gw", map[AccessLevel]Credential{LevelRead: cred("r")}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := &Resource{Name: "x", Address: "h:5432", Database: "d", User: tc.user, Roles: tc.roles}
			err := r.validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("validate: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCredentialLogsNoPassword(t *testing.T) {
	c := cred("reader")
	var b strings.Builder
	for _, s := range []string{c.LogValue().String(), c.Password.String(), fmt.Sprintf("%v %+v %#v", c, c, c)} {
		b.WriteString(s)
	}
	if strings.Contains(b.String(), "reader-pw") {
		t.Fatalf("password in %q", b.String())
	}
}
