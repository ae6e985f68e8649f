package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

// world builds snapshots for Readmit's table: one resource, one identity
// (bot, in group g), one grant; each case edits a copy.
type world struct {
	tokens  []identity.StaticToken
	res     resource.Resource
	grants  []policy.Grant
	profile *mask.Profile
}

func newWorld(t *testing.T) *world {
	p, err := mask.Compile("p", mask.ProfileConfig{Rules: []mask.RuleConfig{{Column: "t.c", Action: "redact"}}}, mask.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	return &world{
		tokens:  []identity.StaticToken{{Identity: identity.Identity{Name: "bot", Kind: identity.KindAgent, Groups: []string{"g"}}, SHA256: identity.HashToken("tok")}},
		res:     resource.Resource{Name: "db", Address: "h:5432", Database: "d", User: "u", Password: resource.NewSecret("pw")},
		grants:  []policy.Grant{{Name: "read", Groups: []string{"g"}, Resources: []string{"db"}, Allow: []policy.Class{policy.Read, policy.Write}, Masking: "p"}},
		profile: p,
	}
}

func (w *world) snapshot(t *testing.T) *session.Snapshot {
	t.Helper()
	auth, err := identity.NewStaticTokens(w.tokens)
	if err != nil {
		t.Fatal(err)
	}
	res := w.res
	if err := res.Validate(); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(w.grants, []string{"db"}, []string{"p"})
	if err != nil {
		t.Fatal(err)
	}
	return &session.Snapshot{Auth: auth, Policy: pol, Resources: map[string]*resource.Resource{"db": &res}, Profiles: map[string]*mask.Profile{"p": w.profile}}
}

func TestReadmit(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(t *testing.T, w *world)
		want string // "" goes on
	}{
		"nothing changed":     {func(*testing.T, *world) {}, ""},
		"password rotated":    {func(_ *testing.T, w *world) { w.res.Password = resource.NewSecret("new") }, ""},
		"class dropped":       {func(_ *testing.T, w *world) { w.grants[0].Allow = []policy.Class{policy.Import} }, ""},
		"function added":      {func(_ *testing.T, w *world) { w.grants[0].Functions = []string{"f"} }, ""},
		"token removed":       {func(_ *testing.T, w *world) { w.tokens = nil }, "identity is no longer accepted"},
		"token replaced":      {func(_ *testing.T, w *world) { w.tokens[0].SHA256 = identity.HashToken("other") }, "identity is no longer accepted"},
		"left the group":      {func(_ *testing.T, w *world) { w.tokens[0].Identity.Groups = []string{"h"} }, "no grant"},
		"resource moved":      {func(_ *testing.T, w *world) { w.res.Address = "elsewhere:5432" }, "resource was changed"},
		"resource login user": {func(_ *testing.T, w *world) { w.res.User = "v" }, "resource was changed"},
		"grant now read only": {func(_ *testing.T, w *world) { w.grants[0].Allow = []policy.Class{policy.Read} }, "login level"},
		"grant now ddl":       {func(_ *testing.T, w *world) { w.grants[0].Allow = append(w.grants[0].Allow, policy.DDL) }, "login level"},
		"masking dropped":     {func(_ *testing.T, w *world) { w.grants[0].Masking = "" }, "masked"},
		// A recompiled profile is adopted (the next result is masked by it).
		"profile recompiled": {func(t *testing.T, w *world) {
			p, err := mask.Compile("p", mask.ProfileConfig{}, mask.Keys{})
			if err != nil {
				t.Fatal(err)
			}
			w.profile = p
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			start := w.snapshot(t)
			id, err := start.Auth.Authenticate(context.Background(), identity.Credentials{User: "bot", Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			adm, d := start.Admit(id, "db")
			if !d.Allowed || adm.Profile != w.profile {
				t.Fatalf("Admit: %+v", d)
			}
			tc.edit(t, w)
			next, err := w.snapshot(t).Readmit(adm)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Readmit: %v", err)
				}
				if next.Resource != adm.Resource || next.Grant == nil || next.Profile != w.profile {
					t.Fatalf("Readmit kept %+v", next)
				}
				return
			}
			if !errors.Is(err, session.ErrRevoked) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Readmit: %v, want ErrRevoked naming %q", err, tc.want)
			}
		})
	}
}

func TestStatePublishOrders(t *testing.T) {
	s := session.NewState(&session.Snapshot{})
	if s.Load().Revision != 1 {
		t.Fatalf("first revision %d", s.Load().Revision)
	}
	next := &session.Snapshot{}
	if rev := s.Publish(next); rev != 2 || s.Load() != next {
		t.Fatalf("Publish: revision %d, current %p, want 2 and %p", rev, s.Load(), next)
	}
}
