package pgwire

import (
	"testing"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

func cred(user string) resource.Credential {
	return resource.Credential{User: user, Password: resource.NewSecret(user + "-pw")}
}

// TestCredentialByGrant: the grant's statement classes pick the level and
// so the role (and the login config carries it).
func TestCredentialByGrant(t *testing.T) {
	r := &resource.Resource{Name: "x", Address: "h:5432", Database: "d",
		Roles: map[policy.Level]resource.Credential{policy.LevelRead: cred("r"), policy.LevelWrite: cred("w"), policy.LevelAdmin: cred("a")}}
	if err := ValidateResource(r); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		allow []policy.Class
		want  string
	}{
		{[]policy.Class{policy.Read}, "r"},
		{[]policy.Class{policy.Read, policy.Export}, "r"},
		{nil, "r"},
		{[]policy.Class{policy.Read, policy.Write}, "w"},
		{[]policy.Class{policy.Import}, "w"},
		{[]policy.Class{policy.Read, policy.DDL}, "a"},
		{[]policy.Class{policy.Admin}, "a"},
		{policy.Classes, "a"},
	} {
		g := &policy.Grant{Name: "g", Allow: tc.allow}
		cfg, err := connConfig(r, g.Level(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.User != tc.want || cfg.Password != tc.want+"-pw" {
			t.Errorf("allow %v: logs in as %q, want %q", tc.allow, cfg.User, tc.want)
		}
	}
}
