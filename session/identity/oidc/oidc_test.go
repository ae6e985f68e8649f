package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/identity/oidc"
)

var quiet = slog.New(slog.DiscardHandler)

var (
	localClient = netip.MustParseAddr("127.0.0.1")
	otherClient = netip.MustParseAddr("192.0.2.7")
)

// fixture is two issuers served over HTTPS, an Authenticator trusting
// both, and the keys and clock behind it.
type fixture struct {
	a, b        *testIssuer
	auth        *oidc.Authenticator
	clock       *clock
	cfg         oidc.Config
	rsa1, ec1   *testKey
	ed1, rsaOld *testKey
	rs384       *testKey // an RSA key the JWKS marks RS384
	smallRSA    *testKey // RSA 1024, published, never usable
	bKey        *testKey // issuer b's only key
	attacker    *testKey // in no JWKS
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{a: newTestIssuer(t), b: newTestIssuer(t), clock: newClock()}
	f.rsa1 = newRSAKey(t, "rsa-1", 0)
	f.ec1 = newECKey(t, "ec-1")
	f.ed1 = newEdKey(t, "ed-1")
	f.rsaOld = newRSAKey(t, "rsa-old", 1)
	f.rs384 = newRSAKey(t, "rsa-384", 2)
	f.rs384.jwkAlg = "RS384"
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	f.smallRSA = &testKey{kid: "rsa-small", alg: "RS256", signer: small}
	f.bKey = newECKey(t, "b-1")
	f.attacker = newRSAKey(t, "attacker", 3)
	f.a.publish(f.rsa1, f.ec1, f.ed1, f.rsaOld, f.rs384, f.smallRSA)
	f.b.publish(f.bKey)
	f.cfg = oidc.Config{
		Issuers: []oidc.Issuer{
			{
				URL: f.a.URL(), Audience: "phigate", CAFile: f.a.caFile,
				KindClaim: "kind", GroupsClaim: "groups",
				Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")},
			},
			{
				URL: f.b.URL(), Audience: "phigate", CAFile: f.b.caFile,
				NameClaim: "preferred_username", Kind: identity.KindCI,
			},
		},
		Logger: quiet,
		Now:    f.clock.Now,
	}
	f.auth = f.build(t, f.cfg)
	return f
}

func (f *fixture) build(t *testing.T, cfg oidc.Config) *oidc.Authenticator {
	t.Helper()
	a, err := oidc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// claims are a valid token's claims for issuer a, with changes (a nil
// value deletes the claim).
func (f *fixture) claims(changes map[string]any) map[string]any {
	now := f.clock.Now().Unix()
	c := map[string]any{
		"iss": f.a.URL(), "aud": []string{"phigate", "another-service"},
		"sub": "claims-agent", "kind": "agent", "groups": []string{"agents", "readers"},
		"iat": now - 60, "nbf": now - 60, "exp": now + 600,
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (f *fixture) authenticate(token string, client netip.Addr) (identity.Identity, error) {
	return f.auth.Authenticate(context.Background(), identity.Credentials{User: "claims-agent", Token: token, Client: client})
}

// TestValidTokens: RS256, ES256 and EdDSA tokens are accepted, with the
// name, kind and groups their issuer's mapping gives.
func TestValidTokens(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	for _, tc := range []struct {
		name   string
		token  func() string
		client netip.Addr
		want   identity.Identity
	}{
		{"RS256", func() string { return f.rsa1.token(t, f.claims(nil), nil) }, localClient,
			identity.Identity{Name: "claims-agent", Kind: identity.KindAgent, Groups: []string{"agents", "readers"}}},
		{"ES256", func() string {
			return f.ec1.token(t, f.claims(map[string]any{"sub": "dr-alice", "kind": "human"}), nil)
		}, localClient,
			identity.Identity{Name: "dr-alice", Kind: identity.KindHuman, Groups: []string{"agents", "readers"}}},
		{"EdDSA", func() string { return f.ed1.token(t, f.claims(map[string]any{"kind": "ci", "groups": nil}), nil) }, netip.MustParseAddr("10.9.8.7"),
			identity.Identity{Name: "claims-agent", Kind: identity.KindCI}},
		{"audience as a string, exp within the clock skew, no nbf or iat", func() string {
			return f.rsa1.token(t, f.claims(map[string]any{"aud": "phigate", "exp": now.Unix() - 20, "nbf": nil, "iat": nil}), nil)
		}, netip.MustParseAddr("::ffff:127.0.0.1"), identity.Identity{Name: "claims-agent", Kind: identity.KindAgent, Groups: []string{"agents", "readers"}}},
		{"issuer b: fixed kind, another name claim, no groups claim, any client", func() string {
			return f.bKey.token(t, f.claims(map[string]any{"iss": f.b.URL(), "preferred_username": "nightly-etl", "kind": "human"}), nil)
		}, otherClient, identity.Identity{Name: "nightly-etl", Kind: identity.KindCI}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := f.authenticate(tc.token(), tc.client)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.Name != tc.want.Name || id.Kind != tc.want.Kind || !slices.Equal(id.Groups, tc.want.Groups) ||
				id.Method != identity.MethodOIDC || id.Client != tc.client || id.Key == "" || id.Expires.IsZero() {
				t.Fatalf("identity = %+v, want %+v", id, tc.want)
			}
			if _, err := f.auth.Recheck(id); err != nil {
				t.Fatalf("Recheck of a fresh identity: %v", err)
			}
		})
	}
}

// TestTokenAttacks: every forged, stale, misdirected or malformed token is
// refused, for the reason expected (so that no case passes by accident).
func TestTokenAttacks(t *testing.T) {
	f := newFixture(t)
	// Warm the cache: the JWKS has been fetched once.
	if _, err := f.authenticate(f.rsa1.token(t, f.claims(nil), nil), localClient); err != nil {
		t.Fatal(err)
	}
	interval := oidc.DefaultRefreshInterval
	pubDER, err := x509.MarshalPKIXPublicKey(f.rsa1.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	attackerJWK := jose.JSONWebKey{Key: f.attacker.signer.Public(), KeyID: "rsa-1", Algorithm: "RS256"}
	now := func() int64 { return f.clock.Now().Unix() }

	for _, tc := range []struct {
		name   string
		before func(t *testing.T) // runs first (changes the JWKS, the clock)
		token  func() string
		client string // "": localClient; "none": no address (a Unix socket)
		reason string
		after  func(t *testing.T)
	}{
		{name: "expired", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"exp": now() - 31}), nil) }, reason: "expired"},
		{name: "no exp", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"exp": nil}), nil) }, reason: "no exp"},
		{name: "exp not a number", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"exp": "tomorrow"}), nil) }, reason: "malformed claims"},
		{name: "not yet valid", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"nbf": now() + 31}), nil) }, reason: "not yet valid"},
		{name: "issued in the future", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"iat": now() + 31}), nil) }, reason: "issued in the future"},
		{name: "wrong audience", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"aud": []string{"billing"}}), nil) }, reason: "audience"},
		{name: "no audience", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"aud": nil}), nil) }, reason: "audience"},
		{name: "wrong issuer", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"iss": "https://evil.example"}), nil) }, reason: "issuer not configured"},
		{name: "issuer with a trailing slash", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"iss": f.a.URL() + "/"}), nil) }, reason: "issuer not configured"},
		{name: "issuer b's claims signed with a's key", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"iss": f.b.URL()}), nil) }, reason: "unknown kid"},
		{name: "alg none", token: func() string {
			return b64(t, map[string]any{"alg": "none", "kid": "rsa-1", "typ": "JWT"}) + "." + b64(t, f.claims(nil)) + "."
		}, reason: "not a compact JWS"},
		{name: "alg None with a signature", token: func() string {
			return b64(t, map[string]any{"alg": "None", "kid": "rsa-1"}) + "." + b64(t, f.claims(nil)) + ".c2ln"
		}, reason: "not a compact JWS"},
		{name: "HS256 signed with the RSA public key (PEM)", token: func() string {
			return hs256(t, map[string]any{"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, f.claims(nil), pubPEM)
		}, reason: "not a compact JWS"},
		{name: "HS256 signed with the RSA public key (DER)", token: func() string {
			return hs256(t, map[string]any{"alg": "HS256", "kid": "rsa-1"}, f.claims(nil), pubDER)
		}, reason: "not a compact JWS"},
		{name: "RS512", token: func() string { return f.rsa1.token(t, f.claims(nil), map[string]any{"alg": "RS512"}) }, reason: "not a compact JWS"},
		{name: "PS256", token: func() string { return f.rsa1.token(t, f.claims(nil), map[string]any{"alg": "PS256"}) }, reason: "not a compact JWS"},
		{name: "unknown kid, after the refresh it is allowed", before: func(t *testing.T) { f.clock.Advance(interval) },
			token: func() string { return f.attacker.token(t, f.claims(nil), nil) }, reason: "unknown kid",
			after: func(t *testing.T) {
				if got := f.a.jwksHits.Load(); got != 2 {
					t.Fatalf("JWKS fetched %d times, want 2 (the warm-up and this refresh)", got)
				}
			}},
		{name: "unknown kid again, refresh rate-limited", token: func() string { return f.attacker.token(t, f.claims(nil), nil) }, reason: "unknown kid",
			after: func(t *testing.T) {
				if got := f.a.jwksHits.Load(); got != 2 {
					t.Fatalf("JWKS fetched %d times within the interval, want 2", got)
				}
			}},
		{name: "no kid", token: func() string { return f.rsa1.token(t, f.claims(nil), map[string]any{"kid": nil}) }, reason: "no kid"},
		{name: "tampered payload", token: func() string {
			tok := f.rsa1.token(t, f.claims(nil), nil)
			parts := strings.Split(tok, ".")
			parts[1] = b64(t, f.claims(map[string]any{"sub": "dr-alice", "kind": "human", "groups": []string{"dba"}}))
			return strings.Join(parts, ".")
		}, reason: "bad signature"},
		{name: "tampered signature", token: func() string {
			tok := f.ec1.token(t, f.claims(nil), nil)
			parts := strings.Split(tok, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[7] ^= 0x40
			parts[2] = base64.RawURLEncoding.EncodeToString(sig)
			return strings.Join(parts, ".")
		}, reason: "bad signature"},
		{name: "signature cut off", token: func() string {
			tok := f.ed1.token(t, f.claims(nil), nil)
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, reason: "bad signature"},
		{name: "JWK with another alg",
			token: func() string { return f.rs384.token(t, f.claims(nil), nil) }, reason: "not for RS256"},
		{name: "kid of an EC key, RS256 signed with an RSA key", token: func() string {
			return f.rsa1.token(t, f.claims(nil), map[string]any{"kid": "ec-1"})
		}, reason: "not for RS256"},
		{name: "kid of an RSA key, ES256", token: func() string {
			return f.ec1.token(t, f.claims(nil), map[string]any{"kid": "rsa-1"})
		}, reason: "not for ES256"},
		{name: "kid of an Ed25519 key, ES256", token: func() string {
			return f.ec1.token(t, f.claims(nil), map[string]any{"kid": "ed-1"})
		}, reason: "not for ES256"},
		{name: "RSA key under 2048 bits in the JWKS", token: func() string { return f.smallRSA.token(t, f.claims(nil), nil) }, reason: "unknown kid"},
		{name: "embedded jwk header with the attacker's key under a known kid", token: func() string {
			jwk, _ := attackerJWK.MarshalJSON()
			return f.attacker.token(t, f.claims(nil), map[string]any{"kid": "rsa-1", "jwk": json.RawMessage(jwk)})
		}, reason: "bad signature"},
		{name: "jku pointing elsewhere", token: func() string {
			return f.attacker.token(t, f.claims(nil), map[string]any{"jku": "https://evil.example/jwks.json"})
		}, reason: "unknown kid"},
		{name: "jku and x5u under a known kid", token: func() string {
			return f.attacker.token(t, f.claims(nil), map[string]any{"kid": "rsa-1", "jku": "https://evil.example/jwks.json", "x5u": "https://evil.example/cert.pem"})
		}, reason: "bad signature"},
		{name: "crit header", token: func() string {
			return f.rsa1.token(t, f.claims(nil), map[string]any{"crit": []string{"exp"}, "exp": now() + 60})
		}, reason: "crit"},
		{name: "another client's network", token: func() string { return f.rsa1.token(t, f.claims(nil), nil) }, client: "192.0.2.7", reason: identity.ReasonClientNotAllowed},
		{name: "no client address (Unix socket) where ranges are set", token: func() string { return f.rsa1.token(t, f.claims(nil), nil) }, client: "none", reason: identity.ReasonClientNotAllowed},
		{name: "name claim missing", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"sub": nil}), nil) }, reason: "usable name"},
		{name: "name claim not a string", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"sub": 42}), nil) }, reason: "usable name"},
		{name: "name with a control character", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"sub": "bot\nforged log line"}), nil) }, reason: "usable name"},
		{name: "unknown kind", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"kind": "robot"}), nil) }, reason: "not a kind"},
		{name: "groups not an array", token: func() string { return f.rsa1.token(t, f.claims(map[string]any{"groups": "dba"}), nil) }, reason: "group names"},
		{name: "claims not an object", token: func() string {
			return b64(t, map[string]any{"alg": "RS256", "kid": "rsa-1"}) + "." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c2ln"
		}, reason: "JSON object"},
		{name: "JSON serialization", token: func() string {
			parts := strings.Split(f.rsa1.token(t, f.claims(nil), nil), ".")
			b, _ := json.Marshal(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
			return string(b)
		}, reason: "not a compact JWS"},
		{name: "empty", token: func() string { return "" }, reason: "not a compact JWS"},
		{name: "garbage", token: func() string { return "phg_not-a-jwt" }, reason: "not a compact JWS"},
		{name: "three dots", token: func() string { return "eyJ.eyJ.eyJ.eyJ" }, reason: "not a compact JWS"},
		{name: "bad base64", token: func() string { return "eyJ!!.eyJ**.$$" }, reason: "not a compact JWS"},
		{name: "oversize garbage", token: func() string { return strings.Repeat("A", oidc.MaxTokenBytes+1) }, reason: "longer than"},
		{name: "oversize valid token", token: func() string {
			return f.rsa1.token(t, f.claims(map[string]any{"pad": strings.Repeat("x", oidc.MaxTokenBytes)}), nil)
		}, reason: "longer than"},
		// Last: these change the JWKS.
		{name: "key removed from the JWKS, after the refresh an unknown kid makes",
			before: func(t *testing.T) {
				f.a.publish(f.rsa1, f.ec1, f.ed1, f.rs384, f.smallRSA)
				f.clock.Advance(interval)
				if _, err := f.authenticate(newEdKey(t, "new-kid").token(t, f.claims(nil), nil), localClient); !errors.Is(err, identity.ErrInvalidToken) {
					t.Fatalf("the token that triggers the refresh: %v", err)
				}
			},
			token: func() string { return f.rsaOld.token(t, f.claims(nil), nil) }, reason: "unknown kid",
			after: func(t *testing.T) {
				if got := f.a.jwksHits.Load(); got != 3 {
					t.Fatalf("JWKS fetched %d times, want 3", got)
				}
			}},
		{name: "key removed from the JWKS, after the keys grew old",
			before: func(t *testing.T) {
				f.a.publish(f.ec1, f.ed1, f.rs384, f.smallRSA)
				f.clock.Advance(oidc.KeysMaxAge)
			},
			token: func() string { return f.rsa1.token(t, f.claims(nil), nil) }, reason: "unknown kid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(t)
			}
			client := localClient
			switch tc.client {
			case "":
			case "none":
				client = netip.Addr{}
			default:
				client = netip.MustParseAddr(tc.client)
			}
			id, err := f.authenticate(tc.token(), client)
			var r *identity.RefusedError
			if !errors.Is(err, identity.ErrInvalidToken) || !errors.As(err, &r) {
				t.Fatalf("accepted or not refused as an invalid token: %+v, %v", id, err)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("refused for %q, want %q", r.Reason, tc.reason)
			}
			if tc.after != nil {
				tc.after(t)
			}
		})
	}
}

func b64(t *testing.T, v any) string { return b64json(t, v) }

// TestRefreshRateLimit: a flood of tokens with made-up kids, concurrent
// and sequential, fetches the JWKS at most once per interval.
func TestRefreshRateLimit(t *testing.T) {
	f := newFixture(t)
	valid := f.rsa1.token(t, f.claims(nil), nil)
	flood := func(n int) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				tok := f.attacker.token(t, f.claims(nil), map[string]any{"kid": "made-up-" + string(rune('a'+i%26))})
				if _, err := f.authenticate(tok, localClient); !errors.Is(err, identity.ErrInvalidToken) {
					t.Errorf("made-up kid: %v", err)
				}
			})
		}
		wg.Wait()
		for range n {
			if _, err := f.authenticate(f.attacker.token(t, f.claims(nil), nil), localClient); !errors.Is(err, identity.ErrInvalidToken) {
				t.Errorf("made-up kid: %v", err)
			}
		}
	}
	want := func(jwks int64) {
		t.Helper()
		if got := f.a.jwksHits.Load(); got != jwks {
			t.Fatalf("JWKS fetched %d times, want %d", got, jwks)
		}
		if got := f.a.discoveryHits.Load(); got != 1 {
			t.Fatalf("discovery fetched %d times, want 1", got)
		}
		if _, err := f.authenticate(valid, localClient); err != nil {
			t.Fatalf("a valid token during the flood: %v", err)
		}
	}
	flood(64) // a cold cache: one fetch for all of them
	want(1)
	f.clock.Advance(oidc.DefaultRefreshInterval - time.Millisecond)
	flood(64)
	want(1)
	f.clock.Advance(time.Millisecond)
	flood(64)
	want(2)
	f.clock.Advance(oidc.DefaultRefreshInterval / 2)
	flood(64)
	want(2)

	// A configured interval is honoured too.
	cfg := f.cfg
	cfg.RefreshInterval = time.Minute
	f.auth = f.build(t, cfg) // shares the key set, and when it was last fetched
	f.clock.Advance(oidc.DefaultRefreshInterval)
	flood(16)
	want(2)
	f.clock.Advance(time.Minute - oidc.DefaultRefreshInterval - oidc.DefaultRefreshInterval/2)
	flood(16)
	want(3)
	f.clock.Advance(oidc.DefaultRefreshInterval)
	flood(16)
	want(3)
}

// TestRecheck: an identity stands while its token has not expired, its
// issuer is configured with the same audience and mapping, and the
// issuer's client ranges admit it.
func TestRecheck(t *testing.T) {
	f := newFixture(t)
	exp := f.clock.Now().Unix() + 600
	id, err := f.authenticate(f.rsa1.token(t, f.claims(map[string]any{"exp": exp}), nil), localClient)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(exp, 0).Add(oidc.DefaultClockSkew); !id.Expires.Equal(want) {
		t.Fatalf("Expires = %v, want %v", id.Expires, want)
	}
	rebuilt := func(change func(*oidc.Issuer)) *oidc.Authenticator {
		cfg := f.cfg
		cfg.Issuers = slices.Clone(cfg.Issuers)
		change(&cfg.Issuers[0])
		return f.build(t, cfg)
	}
	for _, tc := range []struct {
		name  string
		auth  *oidc.Authenticator
		stand bool
	}{
		{"same configuration", f.auth, true},
		{"rebuilt unchanged", rebuilt(func(*oidc.Issuer) {}), true},
		{"clock skew changed", rebuilt(func(is *oidc.Issuer) { is.ClockSkew = time.Second }), true},
		{"clients widened", rebuilt(func(is *oidc.Issuer) { is.Clients = nil }), true},
		{"clients narrowed", rebuilt(func(is *oidc.Issuer) { is.Clients = is.Clients[1:] }), false},
		{"audience changed", rebuilt(func(is *oidc.Issuer) { is.Audience = "another-service" }), false},
		{"groups claim changed", rebuilt(func(is *oidc.Issuer) { is.GroupsClaim = "roles" }), false},
		{"issuer removed", f.build(t, oidc.Config{Issuers: f.cfg.Issuers[1:], Now: f.clock.Now, Logger: quiet}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.auth.Recheck(id)
			if tc.stand && (err != nil || got.Name != id.Name || !slices.Equal(got.Groups, id.Groups)) {
				t.Fatalf("Recheck = %+v, %v; want it to stand", got, err)
			}
			if !tc.stand && !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("Recheck = %+v, %v; want ErrInvalidToken", got, err)
			}
		})
	}

	// Expiry: with the skew, and not a second more.
	f.clock.Advance(time.Unix(exp, 0).Add(oidc.DefaultClockSkew - time.Second).Sub(f.clock.Now()))
	if _, err := f.auth.Recheck(id); err != nil {
		t.Fatalf("Recheck a second before expiry: %v", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.auth.Recheck(id); !errors.Is(err, identity.ErrInvalidToken) {
		t.Fatalf("Recheck after expiry: %v", err)
	}
	// Not an identity this authenticator made.
	for _, bad := range []identity.Identity{
		{Name: "bot", Method: identity.MethodStatic, Key: id.Key},
		{Name: "bot", Method: identity.MethodOIDC, Key: "nonsense"},
		{Name: "bot", Method: identity.MethodOIDC},
	} {
		if _, err := f.auth.Recheck(bad); !errors.Is(err, identity.ErrInvalidToken) {
			t.Errorf("Recheck(%+v) = %v", bad, err)
		}
	}
}

// TestFetchFailures: the keys are fetched over verified HTTPS only, within
// limits; a failure is an error of the authenticator, not a token accepted,
// and keys already held survive it.
func TestFetchFailures(t *testing.T) {
	t.Run("untrusted certificate", func(t *testing.T) {
		f := newFixture(t)
		cfg := f.cfg
		cfg.Issuers = slices.Clone(cfg.Issuers)
		cfg.Issuers[0].CAFile = ""
		f.auth = f.build(t, cfg)
		wantUnavailable(t, f, "certificate")
	})
	for _, tc := range []struct {
		name string
		fail http.HandlerFunc
		doc  func(f *fixture) map[string]any
		want string
	}{
		{name: "server error", fail: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) }, want: "502"},
		{name: "oversize document", fail: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"keys": [`+strings.Repeat(" ", 1<<20)+`]}`)
		}, want: "larger than"},
		{name: "not JSON", fail: func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>") }, want: "invalid character"},
		{name: "discovery names another issuer", doc: func(f *fixture) map[string]any {
			return map[string]any{"issuer": "https://evil.example", "jwks_uri": f.a.URL() + "/jwks"}
		}, want: "another"},
		{name: "jwks_uri over plain http", doc: func(f *fixture) map[string]any {
			return map[string]any{"issuer": f.a.URL(), "jwks_uri": strings.Replace(f.a.URL(), "https:", "http:", 1) + "/jwks"}
		}, want: "not an https URL"},
		{name: "redirect to plain http", doc: func(f *fixture) map[string]any {
			return map[string]any{"issuer": f.a.URL(), "jwks_uri": f.a.URL() + "/redirect"}
		}, want: "not https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.a.failWith(tc.fail)
			if tc.doc != nil {
				f.a.mu.Lock()
				f.a.discovery = tc.doc(f)
				f.a.mu.Unlock()
			}
			if tc.name == "redirect to plain http" {
				f.a.srv.Config.Handler.(*http.ServeMux).HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, strings.Replace(f.a.URL(), "https:", "http:", 1)+"/jwks", http.StatusFound)
				})
			}
			if tc.want == "another" {
				tc.want = `issuer "https://evil.example"`
			}
			wantUnavailable(t, f, tc.want)
		})
	}
	t.Run("timeout", func(t *testing.T) {
		f := newFixture(t)
		release := make(chan struct{})
		defer close(release)
		f.a.failWith(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		cfg := f.cfg
		cfg.FetchTimeout = 200 * time.Millisecond
		f.auth = f.build(t, cfg)
		start := time.Now()
		wantUnavailable(t, f, "deadline")
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("a hanging issuer held the login for %v", took)
		}
	})
	t.Run("keys held survive a failed refresh", func(t *testing.T) {
		f := newFixture(t)
		tok := f.rsa1.token(t, f.claims(nil), nil)
		if _, err := f.authenticate(tok, localClient); err != nil {
			t.Fatal(err)
		}
		f.a.failWith(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
		f.clock.Advance(oidc.KeysMaxAge) // the keys are old: the next token refreshes them, and that fails
		tok = f.rsa1.token(t, f.claims(nil), nil)
		if _, err := f.authenticate(tok, localClient); err != nil {
			t.Fatalf("a known key after a failed refresh: %v", err)
		}
		if got := f.a.jwksHits.Load(); got != 2 {
			t.Fatalf("JWKS requested %d times, want 2", got)
		}
		// Unknown kids meanwhile: refused, and the issuer is not asked
		// again within the interval.
		if _, err := f.authenticate(f.attacker.token(t, f.claims(nil), nil), localClient); !errors.Is(err, identity.ErrInvalidToken) {
			t.Fatalf("unknown kid while the issuer is down: %v", err)
		}
		if got := f.a.jwksHits.Load() + f.a.discoveryHits.Load(); got != 3 {
			t.Fatalf("issuer asked %d times, want 3", got)
		}
	})
}

// wantUnavailable checks that a valid token of issuer a is not accepted
// because its keys cannot be fetched, with an error that says why.
func wantUnavailable(t *testing.T, f *fixture, want string) {
	t.Helper()
	_, err := f.authenticate(f.rsa1.token(t, f.claims(nil), nil), localClient)
	if err == nil || errors.Is(err, identity.ErrInvalidToken) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want an authenticator error containing %q", err, want)
	}
}

// TestRebuildKeepsKeys: an authenticator built again for the same issuer
// (a reload) fetches nothing when built and uses the keys already held,
// so a reload while the issuer is down changes nothing for valid tokens.
func TestRebuildKeepsKeys(t *testing.T) {
	f := newFixture(t)
	if _, err := f.authenticate(f.rsa1.token(t, f.claims(nil), nil), localClient); err != nil {
		t.Fatal(err)
	}
	f.a.failWith(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	before := f.a.jwksHits.Load() + f.a.discoveryHits.Load()
	old := f.auth
	f.auth = f.build(t, f.cfg)
	runtime.GC() // the shared key set survives: the new authenticator holds it
	runtime.KeepAlive(old)
	if _, err := f.authenticate(f.ec1.token(t, f.claims(nil), nil), localClient); err != nil {
		t.Fatalf("after the rebuild: %v", err)
	}
	if after := f.a.jwksHits.Load() + f.a.discoveryHits.Load(); after != before {
		t.Fatalf("the rebuild made %d requests to the issuer", after-before)
	}

	// Built for an issuer that is down: New still succeeds.
	down := newTestIssuer(t)
	down.srv.Close()
	if _, err := oidc.New(oidc.Config{Issuers: []oidc.Issuer{{URL: down.URL(), Audience: "x", CAFile: down.caFile, Kind: identity.KindAgent}}}); err != nil {
		t.Fatalf("New with an issuer down: %v", err)
	}
}

// TestNewValidates: each bad setting is refused, naming its field.
func TestNewValidates(t *testing.T) {
	ti := newTestIssuer(t)
	good := oidc.Issuer{URL: ti.URL(), Audience: "phigate", CAFile: ti.caFile, Kind: identity.KindAgent}
	for _, tc := range []struct {
		name   string
		change func(*oidc.Issuer)
		field  string
	}{
		{"no issuer", func(is *oidc.Issuer) { is.URL = "" }, "issuer"},
		{"http issuer", func(is *oidc.Issuer) { is.URL = "http://idp.example" }, "issuer"},
		{"issuer with a query", func(is *oidc.Issuer) { is.URL = "https://idp.example/?x=1" }, "issuer"},
		{"issuer with a fragment", func(is *oidc.Issuer) { is.URL = "https://idp.example/#x" }, "issuer"},
		{"issuer with user info", func(is *oidc.Issuer) { is.URL = "https://u:p@idp.example" }, "issuer"},
		{"no audience", func(is *oidc.Issuer) { is.Audience = "" }, "audience"},
		{"missing CA file", func(is *oidc.Issuer) { is.CAFile = "/nonexistent/ca.pem" }, "ca_file"},
		{"CA file without a certificate", func(is *oidc.Issuer) { is.CAFile = "/dev/null" }, "ca_file"},
		{"no kind", func(is *oidc.Issuer) { is.Kind = "" }, "kind"},
		{"kind and kind claim", func(is *oidc.Issuer) { is.KindClaim = "kind" }, "kind"},
		{"unknown kind", func(is *oidc.Issuer) { is.Kind = "robot" }, "kind"},
		{"client range with host bits", func(is *oidc.Issuer) { is.Clients = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")} }, "clients"},
		{"negative skew", func(is *oidc.Issuer) { is.ClockSkew = -time.Second }, "clock_skew"},
		{"skew too large", func(is *oidc.Issuer) { is.ClockSkew = time.Hour }, "clock_skew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := good
			tc.change(&bad)
			_, err := oidc.New(oidc.Config{Issuers: []oidc.Issuer{good, bad}})
			var ce *oidc.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || ce.Issuer != 1 {
				t.Fatalf("New: %v, want a ConfigError on %s of issuer 1", err, tc.field)
			}
		})
	}
	if _, err := oidc.New(oidc.Config{Issuers: []oidc.Issuer{good, good}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("the same issuer twice: %v", err)
	}
	if _, err := oidc.New(oidc.Config{Issuers: []oidc.Issuer{good}}); err != nil {
		t.Fatal(err)
	}
}

// TestRefusalsLogNoToken: a refused token is logged with its reason, never
// with the token.
func TestRefusalsLogNoToken(t *testing.T) {
	f := newFixture(t)
	var logs strings.Builder
	var mu sync.Mutex
	cfg := f.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	f.auth = f.build(t, cfg)
	expired := f.rsa1.token(t, f.claims(map[string]any{"exp": f.clock.Now().Unix() - 3600}), nil)
	if _, err := f.authenticate(expired, localClient); !errors.Is(err, identity.ErrInvalidToken) {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "reason=expired") {
		t.Fatalf("no reason logged:\n%s", logs.String())
	}
	for _, part := range strings.Split(expired, ".") {
		if strings.Contains(logs.String(), part) {
			t.Fatalf("the token is in the log:\n%s", logs.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
