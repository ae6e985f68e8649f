package resource

import (
	"fmt"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/policy"
)

func cred(user string) Credential { return Credential{User: user, Password: NewSecret(user + "-pw")} }

// TestCredentialLeastAtOrAbove: a level logs in with the role of the least
// level at or above it that has one, else with the resource's own user.
func TestCredentialLeastAtOrAbove(t *testing.T) {
	for name, tc := range map[string]struct {
		user  string
		roles map[policy.Level]Credential
		want  [3]string // read, write, admin
	}{
		"no roles":       {"gw", nil, [3]string{"gw", "gw", "gw"}},
		"all three":      {"", map[policy.Level]Credential{policy.LevelRead: cred("r"), policy.LevelWrite: cred("w"), policy.LevelAdmin: cred("a")}, [3]string{"r", "w", "a"}},
		"read only":      {"gw", map[policy.Level]Credential{policy.LevelRead: cred("r")}, [3]string{"r", "gw", "gw"}},
		"read and admin": {"", map[policy.Level]Credential{policy.LevelRead: cred("r"), policy.LevelAdmin: cred("a")}, [3]string{"r", "a", "a"}},
		"write only":     {"gw", map[policy.Level]Credential{policy.LevelWrite: cred("w")}, [3]string{"w", "w", "gw"}},
		"admin only":     {"", map[policy.Level]Credential{policy.LevelAdmin: cred("a")}, [3]string{"a", "a", "a"}},
		"read and write": {"gw", map[policy.Level]Credential{policy.LevelRead: cred("r"), policy.LevelWrite: cred("w")}, [3]string{"r", "w", "gw"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := &Resource{Name: "x", Address: "h:5432", Database: "d", User: tc.user, Password: NewSecret("gw-pw"), Roles: tc.roles}
			if tc.user == "" {
				r.Password = Secret{}
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			for i, l := range policy.Levels {
				login := r.For(l)
				user, pw := login.User, login.Password
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

func TestResourceValidateCredentials(t *testing.T) {
	for name, tc := range map[string]struct {
		user  string
		roles map[policy.Level]Credential
		want  string // "" for valid
	}{
		"fallback only":          {"gw", nil, ""},
		"no user, no roles":      {"", nil, "user is required"},
		"no user, no admin role": {"", map[policy.Level]Credential{policy.LevelRead: cred("r"), policy.LevelWrite: cred("w")}, "user is required"},
		"user with admin role":   {"gw", map[policy.Level]Credential{policy.LevelAdmin: cred("a")}, "never be used"},
		"user with all three":    {"gw", map[policy.Level]Credential{policy.LevelRead: cred("r"), policy.LevelWrite: cred("w"), policy.LevelAdmin: cred("a")}, "never be used"},
		"unknown level":          {"gw", map[policy.Level]Credential{"owner": cred("o")}, "unknown access level"},
		"role without user":      {"gw", map[policy.Level]Credential{policy.LevelRead: {}}, "read: user is required"},
		"three roles, no user":   {"", map[policy.Level]Credential{policy.LevelRead: cred("r"), policy.LevelWrite: cred("w"), policy.LevelAdmin: cred("a")}, ""},
		"read role and fallback": {"gw", map[policy.Level]Credential{policy.LevelRead: cred("r")}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := &Resource{Name: "x", Address: "h:5432", Database: "d", User: tc.user, Roles: tc.roles}
			err := r.Validate()
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
