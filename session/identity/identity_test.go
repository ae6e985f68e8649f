package identity

import (
	"context"
	"errors"
	"net/netip"
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

// addr is a net.Addr look-alike (this package cannot import net).
type addr struct{ network, s string }

func (a addr) Network() string { return a.network }
func (a addr) String() string  { return a.s }

// tcpAddr has AddrPort, as *net.TCPAddr does.
type tcpAddr struct{ ap netip.AddrPort }

func (a tcpAddr) Network() string          { return "tcp" }
func (a tcpAddr) String() string           { return a.ap.String() }
func (a tcpAddr) AddrPort() netip.AddrPort { return a.ap }

func TestClientAddr(t *testing.T) {
	for _, tc := range []struct {
		in   NetAddr
		want string
	}{
		{tcpAddr{netip.MustParseAddrPort("10.1.2.3:5432")}, "10.1.2.3"},
		{tcpAddr{netip.MustParseAddrPort("[::ffff:10.1.2.3]:5432")}, "10.1.2.3"},
		{tcpAddr{netip.MustParseAddrPort("[fe80::1%eth0]:5432")}, "fe80::1"},
		{addr{"tcp", "192.0.2.1:6432"}, "192.0.2.1"},
		{addr{"tcp6", "[2001:db8::1]:6432"}, "2001:db8::1"},
		{addr{"unix", "/tmp/.s.PGSQL.6432"}, "invalid IP"},
		{addr{"tcp", "not an address"}, "invalid IP"},
		{nil, "invalid IP"},
	} {
		if got := ClientAddr(tc.in).String(); got != tc.want {
			t.Errorf("ClientAddr(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestClientAllowed(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for a, want := range map[string]bool{
		"10.200.0.1": true, "::ffff:10.0.0.1": true, "2001:db8::5": true,
		"11.0.0.1": false, "2001:db9::1": false, "127.0.0.1": false,
	} {
		if got := ClientAllowed(nets, netip.MustParseAddr(a)); got != want {
			t.Errorf("ClientAllowed(%s) = %v", a, got)
		}
	}
	if ClientAllowed(nets, netip.Addr{}) {
		t.Error("an unknown address is allowed by ranges")
	}
	if !ClientAllowed(nil, netip.Addr{}) {
		t.Error("no ranges refuse an unknown address")
	}
	if err := ValidateClients([]netip.Prefix{netip.MustParsePrefix("10.1.0.0/8")}); err == nil || !strings.Contains(err.Error(), "10.0.0.0/8") {
		t.Errorf("host bits: %v", err)
	}
	if err := ValidateClients([]netip.Prefix{{}}); err == nil {
		t.Error("the zero prefix is valid")
	}
}

// TestStaticTokenClients: a token bound to client ranges is refused from
// elsewhere, and Recheck holds the session's address against the ranges
// configured now.
func TestStaticTokenClients(t *testing.T) {
	ctx := context.Background()
	bound := []StaticToken{{Identity: Identity{Name: "etl", Kind: KindCI}, SHA256: HashToken("s3cr3t"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	s, err := NewStaticTokens(bound)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Authenticate(ctx, Credentials{Token: "s3cr3t", Client: netip.MustParseAddr("10.1.1.1")})
	if err != nil || id.Client != netip.MustParseAddr("10.1.1.1") {
		t.Fatalf("from inside the range: %+v, %v", id, err)
	}
	for _, client := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), {}} {
		_, err := s.Authenticate(ctx, Credentials{Token: "s3cr3t", Client: client})
		var r *RefusedError
		if !errors.Is(err, ErrInvalidToken) || !errors.As(err, &r) || r.Reason != ReasonClientNotAllowed || strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("from %v: %v", client, err)
		}
	}
	if _, err := s.Recheck(id); err != nil {
		t.Fatalf("Recheck: %v", err)
	}
	bound[0].Clients = []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}
	narrowed, err := NewStaticTokens(bound)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := narrowed.Recheck(id); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Recheck under narrowed ranges: %v", err)
	}
	bound[0].Clients = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/8")}
	if _, err := NewStaticTokens(bound); err == nil || !strings.Contains(err.Error(), "clients") {
		t.Fatalf("a range with host bits: %v", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for tok, want := range map[string]bool{
		"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln": true,
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.":      true, // alg none: shaped, refused later
		"phg_4f9c2a":                                false,
		"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0":      false,
		"eyJ.eyJ.eyJ.eyJ":                           false,
		"eyJhbGci.eyJz+dWIi.c2ln":                   false,
		"eyJhbGci..c2ln":                            false,
		"abc.def.ghi":                               false,
		"":                                          false,
	} {
		if got := LooksLikeJWT(tok); got != want {
			t.Errorf("LooksLikeJWT(%q) = %v", tok, got)
		}
	}
}

// jwtStub stands for the OIDC authenticator (session/identity/oidc, which
// this package must not import): it records what reached it.
type jwtStub struct {
	seen    []string
	accept  string
	recheck int
}

func (j *jwtStub) Authenticate(_ context.Context, c Credentials) (Identity, error) {
	j.seen = append(j.seen, c.Token)
	if c.Token == j.accept {
		return Identity{Name: "oidc-bot", Kind: KindAgent, Method: MethodOIDC}, nil
	}
	return Identity{}, Refused("bad signature")
}

func (j *jwtStub) Recheck(id Identity) (Identity, error) {
	j.recheck++
	return id, nil
}

// TestCombined: static tokens never reach the JWT authenticator; JWTs do,
// and a JWT-shaped static token still works; Recheck goes to the
// authenticator that made the identity.
func TestCombined(t *testing.T) {
	ctx := context.Background()
	const jwtShapedStatic = "eyJzdGF0aWMiOnRydWV9.eyJ4IjoxfQ.c3RhdGlj"
	static, err := NewStaticTokens([]StaticToken{
		{Identity: Identity{Name: "bot", Kind: KindAgent}, SHA256: HashToken("phg_static")},
		{Identity: Identity{Name: "odd", Kind: KindAgent}, SHA256: HashToken(jwtShapedStatic)},
	})
	if err != nil {
		t.Fatal(err)
	}
	stub := &jwtStub{accept: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}
	c := Combine(static, stub)
	id, err := c.Authenticate(ctx, Credentials{Token: "phg_static"})
	if err != nil || id.Name != "bot" {
		t.Fatalf("static: %+v %v", id, err)
	}
	if _, err := c.Authenticate(ctx, Credentials{Token: "phg_wrong"}); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("wrong static: %v", err)
	}
	if len(stub.seen) != 0 {
		t.Fatalf("static tokens reached the JWT authenticator: %q", stub.seen)
	}
	jid, err := c.Authenticate(ctx, Credentials{Token: stub.accept})
	if err != nil || jid.Name != "oidc-bot" {
		t.Fatalf("jwt: %+v %v", jid, err)
	}
	if id, err := c.Authenticate(ctx, Credentials{Token: jwtShapedStatic}); err != nil || id.Name != "odd" {
		t.Fatalf("JWT-shaped static token: %+v %v", id, err)
	}
	_, err = c.Authenticate(ctx, Credentials{Token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ5In0.c2ln"})
	var r *RefusedError
	if !errors.As(err, &r) || r.Reason != "bad signature" {
		t.Fatalf("a refused JWT: %v, want the JWT's reason", err)
	}
	if _, err := c.Recheck(id); err != nil || stub.recheck != 0 {
		t.Fatalf("static Recheck: %v (jwt asked %d times)", err, stub.recheck)
	}
	if _, err := c.Recheck(jid); err != nil || stub.recheck != 1 {
		t.Fatalf("jwt Recheck: %v (jwt asked %d times)", err, stub.recheck)
	}
}
