package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestStaticTokens(t *testing.T) {
	s, err := NewStaticTokens([]StaticToken{
		{Identity: Identity{Name: "bot", Kind: KindAgent, Groups: []string{"agents"}}, SHA256: HashToken("secret-bot")},
		{Identity: Identity{Name: "alice", Kind: KindHuman}, SHA256: strings.ToUpper(HashToken("secret-alice"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Authenticate(context.Background(), Credentials{User: "x", Token: "secret-bot"})
	if err != nil || id.Name != "bot" || id.Kind != KindAgent || !id.InGroup("agents") || id.Method != "static-token" {
		t.Fatalf("bot: %+v %v", id, err)
	}
	if id, err := s.Authenticate(context.Background(), Credentials{Token: "secret-alice"}); err != nil || id.Name != "alice" {
		t.Fatalf("alice: %+v %v", id, err)
	}
	for _, bad := range []string{"", "secret", "secret-bot ", HashToken("secret-bot")} {
		if _, err := s.Authenticate(context.Background(), Credentials{Token: bad}); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("token %q: err = %v, want ErrInvalidToken", bad, err)
		}
	}
}

func TestNewStaticTokensRejects(t *testing.T) {
	h := HashToken("t")
	for _, tt := range []struct {
		toks []StaticToken
		want string
	}{
		{[]StaticToken{{Identity: Identity{Kind: KindAgent}, SHA256: h}}, "empty name"},
		{[]StaticToken{{Identity: Identity{Name: "a", Kind: "robot"}, SHA256: h}}, "unknown kind"},
		{[]StaticToken{{Identity: Identity{Name: "a", Kind: KindAgent}, SHA256: "abc"}}, "64 hex digits"},
		{[]StaticToken{{Identity: Identity{Name: "a", Kind: KindAgent}, SHA256: h}, {Identity: Identity{Name: "a", Kind: KindCI}, SHA256: HashToken("u")}}, "listed twice"},
		{[]StaticToken{{Identity: Identity{Name: "a", Kind: KindAgent}, SHA256: h}, {Identity: Identity{Name: "b", Kind: KindCI}, SHA256: h}}, "same hash"},
	} {
		if _, err := NewStaticTokens(tt.toks); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewStaticTokens: err = %v, want %q", err, tt.want)
		}
	}
}

func TestCredentialsLogValueHidesToken(t *testing.T) {
	c := Credentials{User: "bot", Token: "hunter2"}
	if strings.Contains(c.LogValue().String(), "hunter2") {
		t.Fatal("token leaked into log value")
	}
}
