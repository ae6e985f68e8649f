package oidc_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is an OIDC issuer served over HTTPS by the test: discovery
// and a JWKS the test changes at will, with request counts.
type testIssuer struct {
	srv    *httptest.Server
	caFile string

	mu   sync.Mutex
	keys []jose.JSONWebKey // the JWKS served
	// fail, when set, answers discovery and JWKS requests instead.
	fail http.HandlerFunc
	// discovery, when set, replaces the discovery document.
	discovery map[string]any

	discoveryHits, jwksHits atomic.Int64
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	ti := &testIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ti.discoveryHits.Add(1)
		ti.mu.Lock()
		fail, doc := ti.fail, ti.discovery
		ti.mu.Unlock()
		if fail != nil {
			fail(w, r)
			return
		}
		if doc == nil {
			doc = map[string]any{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/jwks"}
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksHits.Add(1)
		ti.mu.Lock()
		fail, keys := ti.fail, jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), ti.keys...)}
		ti.mu.Unlock()
		if fail != nil {
			fail(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(keys)
	})
	ti.srv = httptest.NewUnstartedServer(mux)
	ti.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused on purpose
	ti.srv.StartTLS()
	t.Cleanup(ti.srv.Close)
	ti.caFile = filepath.Join(t.TempDir(), "issuer-ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.srv.Certificate().Raw})
	if err := os.WriteFile(ti.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return ti
}

func (ti *testIssuer) URL() string { return ti.srv.URL }

// publish replaces the JWKS with these keys' public halves.
func (ti *testIssuer) publish(keys ...*testKey) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = nil
	for _, k := range keys {
		ti.keys = append(ti.keys, k.jwk())
	}
}

// publishJWK adds a JWK as given.
func (ti *testIssuer) publishJWK(k jose.JSONWebKey) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = append(ti.keys, k)
}

func (ti *testIssuer) failWith(h http.HandlerFunc) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.fail = h
}

// testKey is a signing key with its kid and algorithm.
type testKey struct {
	kid    string
	alg    string
	signer crypto.Signer
	// jwkAlg, when set, is the alg the JWKS gives the key ("-": none).
	jwkAlg string
}

var (
	rsaOnce sync.Once
	rsaPool []*rsa.PrivateKey
)

// rsaKey returns one of a few RSA keys made once per test binary (making
// them is the slow part).
func rsaKey(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaPool = append(rsaPool, k)
		}
	})
	return rsaPool[i]
}

func newRSAKey(t *testing.T, kid string, i int) *testKey {
	return &testKey{kid: kid, alg: "RS256", signer: rsaKey(t, i)}
}

func newECKey(t *testing.T, kid string) *testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: "ES256", signer: k}
}

func newEdKey(t *testing.T, kid string) *testKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: "EdDSA", signer: k}
}

func (k *testKey) jwk() jose.JSONWebKey {
	alg := k.alg
	switch k.jwkAlg {
	case "":
	case "-":
		alg = ""
	default:
		alg = k.jwkAlg
	}
	return jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.kid, Algorithm: alg, Use: "sig"}
}

// token signs claims with the key, under a header of kid, alg and typ
// plus extra fields.
func (k *testKey) token(t *testing.T, claims map[string]any, extra map[string]any) string {
	t.Helper()
	header := map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"}
	for name, v := range extra {
		if v == nil {
			delete(header, name)
		} else {
			header[name] = v
		}
	}
	input := b64json(t, header) + "." + b64json(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(k.sign(t, header["alg"], []byte(input)))
}

// sign signs as alg says, with this key whatever alg is (the test decides
// what lie to tell).
func (k *testKey) sign(t *testing.T, alg any, input []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(input)
	switch key := k.signer.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return append(pad32(r), pad32(s)...)
	case ed25519.PrivateKey:
		return ed25519.Sign(key, input)
	}
	t.Fatalf("key type %T", k.signer)
	return nil
}

func pad32(n *big.Int) []byte {
	b := make([]byte, 32)
	return n.FillBytes(b)
}

func b64json(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hs256 makes a token signed with HMAC-SHA256 under secret.
func hs256(t *testing.T, header, claims map[string]any, secret []byte) string {
	t.Helper()
	input := b64json(t, header) + "." + b64json(t, claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_900_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
