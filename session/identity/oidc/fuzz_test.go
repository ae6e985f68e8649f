package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/phigate/phigate/session/identity"
)

// The fuzz target's issuer, clock and keys are fixed, so that the seeds
// committed under testdata/fuzz/FuzzAuthenticate stay valid tokens: the
// keys are in testdata/fuzz-*.pem (made for these tests only), and the
// issuer's key set is filled in as if fetched at fuzzNow, so no token
// makes the target reach the network.
const fuzzIssuer = "https://issuer.example"

var fuzzNow = time.Unix(1_900_000_000, 0)

// fuzzKeys are the issuer's keys by kid: rsa-1, ec-1, ed-1.
func fuzzKeys(t testing.TB) map[string]crypto.Signer {
	t.Helper()
	keys := map[string]crypto.Signer{}
	for kid, file := range map[string]string{"rsa-1": "fuzz-rsa.pem", "ec-1": "fuzz-ec.pem", "ed-1": "fuzz-ed25519.pem"} {
		b, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			t.Fatalf("%s: no PEM block", file)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		keys[kid] = k.(crypto.Signer)
	}
	return keys
}

func fuzzAuthenticator(t testing.TB, keys map[string]crypto.Signer) *Authenticator {
	t.Helper()
	a, err := New(Config{
		Issuers: []Issuer{{URL: fuzzIssuer, Audience: "phigate", KindClaim: "kind", GroupsClaim: "groups"}},
		Logger:  slog.New(slog.DiscardHandler),
		Now:     func() time.Time { return fuzzNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	ks := a.byURL[fuzzIssuer].keys
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.keys = map[string][]jose.JSONWebKey{}
	for kid, k := range keys {
		ks.keys[kid] = []jose.JSONWebKey{{Key: k.Public(), KeyID: kid}}
	}
	ks.fetchedAt, ks.triedAt = fuzzNow, fuzzNow
	return a
}

// FuzzAuthenticate feeds any string to the token path: it must never
// panic, never fail otherwise than as a refusal, never quote the token in
// its error, and accept only tokens whose signature the standard library
// verifies on its own with the issuer's key.
func FuzzAuthenticate(f *testing.F) {
	keys := fuzzKeys(f)
	a := fuzzAuthenticator(f, keys)
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.Authenticate(context.Background(), identity.Credentials{Token: token, Client: netip.MustParseAddr("127.0.0.1")})
		if err != nil {
			if !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("not a refusal: %v", err)
			}
			if len(token) >= 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("the error quotes the token: %v", err)
			}
			return
		}
		if !verifiedByStdlib(token, keys) {
			t.Fatalf("accepted a token the standard library does not verify: %q -> %+v", token, id)
		}
		if id.Name == "" || id.Method != identity.MethodOIDC || id.Expires.Before(fuzzNow) {
			t.Fatalf("accepted with identity %+v", id)
		}
	})
}

// verifiedByStdlib checks a compact JWS's signature with crypto/rsa,
// crypto/ecdsa and crypto/ed25519 alone. The payload is signed as its
// canonical base64url, as JWS libraries compute it.
func verifiedByStdlib(token string, keys map[string]crypto.Signer) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	var header struct{ Alg, Kid string }
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	payload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &header) != nil {
		return false
	}
	key := keys[header.Kid]
	if key == nil {
		return false
	}
	input := []byte(parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload))
	sum := sha256.Sum256(input)
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		return header.Alg == "RS256" && rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
	case *ecdsa.PublicKey:
		if header.Alg != "ES256" || len(sig) != 64 {
			return false
		}
		return ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case ed25519.PublicKey:
		return header.Alg == "EdDSA" && ed25519.Verify(pub, input, sig)
	}
	return false
}

// TestFuzzSeedsStillMeanSomething: the committed seeds include tokens the
// target accepts, so the fuzzer starts from inside the accepting path.
func TestFuzzSeedsStillMeanSomething(t *testing.T) {
	keys := fuzzKeys(t)
	a := fuzzAuthenticator(t, keys)
	dir := "testdata/fuzz/FuzzAuthenticate"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	accepted := map[string]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		// go test fuzz v1, then one string("...") line.
		lines := strings.SplitN(string(b), "\n", 2)
		var token string
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "string(") {
			t.Fatalf("%s: not a string seed", e.Name())
		}
		if token, err = strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(lines[1], "string(")), ")")); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		id, err := a.Authenticate(context.Background(), identity.Credentials{Token: token, Client: netip.MustParseAddr("127.0.0.1")})
		if err == nil {
			accepted[e.Name()] = true
			if !verifiedByStdlib(token, keys) {
				t.Fatalf("%s accepted but not verified: %+v", e.Name(), id)
			}
		}
	}
	// A jku header is ignored: the token is signed by the issuer's key.
	valid := []string{"valid-rs256", "valid-es256", "valid-eddsa", "valid-rs256-jku-ignored"}
	for _, want := range valid {
		if !accepted[want] {
			t.Errorf("seed %s is not accepted (accepted: %v)", want, accepted)
		}
	}
	if len(accepted) != len(valid) {
		t.Errorf("accepted seeds: %v, want only %v", accepted, valid)
	}
}
