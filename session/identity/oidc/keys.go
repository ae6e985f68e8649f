package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"
	"weak"

	jose "github.com/go-jose/go-jose/v4"
)

// errUnknownKey: the issuer's keys, as fetched, have none with the kid.
var errUnknownKey = errors.New("oidc: unknown kid")

// keySet is one issuer's signing keys as last fetched, and the rate limit
// on fetching them. Every field after mu is guarded by it.
type keySet struct {
	issuer string
	client *http.Client

	mu sync.Mutex
	// keys by kid; nil until a fetch succeeded.
	keys map[string][]jose.JSONWebKey
	// jwksURI is the discovered JWKS address; empty: discover first.
	jwksURI   string
	fetchedAt time.Time // when keys were fetched
	triedAt   time.Time // when the last fetch started (the rate limit)
	lastErr   error     // why the last fetch failed
	// inflight is closed when the running fetch ends; nil: none runs.
	inflight chan struct{}
}

// lookup returns the keys named kid. When there are none, or they are
// older than KeysMaxAge, it fetches the set first, unless a fetch started
// less than every ago: then it answers from what it holds. Concurrent
// callers share one fetch. The fetch is bounded by timeout and outlives a
// caller that gives up, since others may wait for it.
func (ks *keySet) lookup(ctx context.Context, kid string, now time.Time, every, timeout time.Duration, log *slog.Logger) ([]jose.JSONWebKey, error) {
	for settled := false; ; settled = true {
		ks.mu.Lock()
		fresh := len(ks.keys[kid]) > 0 && now.Sub(ks.fetchedAt) < KeysMaxAge
		limited := !ks.triedAt.IsZero() && now.Sub(ks.triedAt) < every
		if settled || fresh || (limited && ks.inflight == nil) {
			keys, err := ks.held(kid)
			ks.mu.Unlock()
			return keys, err
		}
		if wait := ks.inflight; wait != nil {
			ks.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ks.triedAt = now
		done := make(chan struct{})
		ks.inflight = done
		uri := ks.jwksURI
		ks.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		keys, uri, err := ks.fetch(fctx, uri)
		cancel()
		ks.mu.Lock()
		if err != nil {
			// Keys already held stay in use; the next fetch discovers again.
			ks.lastErr, ks.jwksURI = err, ""
			log.Warn("oidc: fetching keys failed", "issuer", ks.issuer, "err", err)
		} else {
			ks.keys, ks.jwksURI, ks.fetchedAt = keys, uri, now
		}
		ks.inflight = nil
		close(done)
		ks.mu.Unlock()
	}
}

// held answers from the keys held: those named kid, errUnknownKey, or why
// there are none at all. ks.mu is held.
func (ks *keySet) held(kid string) ([]jose.JSONWebKey, error) {
	switch {
	case len(ks.keys[kid]) > 0:
		return ks.keys[kid], nil
	case ks.keys != nil:
		return nil, errUnknownKey
	case ks.lastErr != nil:
		return nil, fmt.Errorf("oidc: keys of %s: %w", ks.issuer, ks.lastErr)
	}
	return nil, fmt.Errorf("oidc: keys of %s: not fetched", ks.issuer)
}

// fetch reads the JWKS at uri, discovering uri first when it is empty,
// and returns its usable keys by kid and the uri.
func (ks *keySet) fetch(ctx context.Context, uri string) (map[string][]jose.JSONWebKey, string, error) {
	if uri == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := ks.getJSON(ctx, strings.TrimSuffix(ks.issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, "", fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != ks.issuer {
			return nil, "", fmt.Errorf("discovery: the document is for issuer %q", doc.Issuer)
		}
		uri = doc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := ks.getJSON(ctx, uri, &set); err != nil {
		return nil, "", fmt.Errorf("jwks: %w", err)
	}
	keys := map[string][]jose.JSONWebKey{}
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // a key type go-jose does not read signs nothing accepted
		}
		if !usable(k) {
			continue
		}
		keys[k.KeyID] = append(keys[k.KeyID], k)
	}
	return keys, uri, nil
}

// usable reports whether a key from a JWKS can verify the tokens
// accepted: a public key (a set that publishes private material does not
// make that key usable) for signatures, with a kid, RSA of 2048 bits or
// more, EC on P-256, or Ed25519.
func usable(k jose.JSONWebKey) bool {
	if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") || k.KeyID == "" {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return key.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return key.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return true
	}
	return false
}

// fits reports whether key k may verify a signature made with alg: its
// type is the algorithm's, and its own alg, if it has one, is alg.
func fits(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return alg == string(jose.RS256)
	case *ecdsa.PublicKey:
		return alg == string(jose.ES256) && key.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// getJSON decodes the JSON document at an https address, read up to
// maxDocumentBytes.
func (ks *keySet) getJSON(ctx context.Context, addr string, v any) error {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https URL", addr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", addr, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", addr, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("GET %s: larger than %d bytes", addr, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", addr, err)
	}
	return nil
}

// newClient returns an HTTPS-only client that trusts the CAs in caPEM, or
// the system's roots when it is empty.
func newClient(caPEM []byte) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("no PEM certificate in the file")
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxResponseHeaderBytes = 64 << 10
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s: not https", req.URL.Redacted())
			}
			return nil
		},
	}, nil
}

// keySets holds every issuer's key set while an Authenticator uses it
// (weakly: a set no Authenticator holds is collected), so that an
// Authenticator built for the same issuer and CA, on reload, shares the
// keys already fetched.
var keySets struct {
	sync.Mutex
	m map[keySetID]weak.Pointer[keySet]
}

type keySetID struct {
	issuer string
	ca     [sha256.Size]byte
}

// sharedKeySet returns the key set of an issuer reached with the CAs in
// caPEM, creating it (empty) when no Authenticator holds one.
func sharedKeySet(issuer string, caPEM []byte) (*keySet, error) {
	id := keySetID{issuer, sha256.Sum256(caPEM)}
	keySets.Lock()
	defer keySets.Unlock()
	if ks := keySets.m[id].Value(); ks != nil {
		return ks, nil
	}
	client, err := newClient(caPEM)
	if err != nil {
		return nil, err
	}
	ks := &keySet{issuer: issuer, client: client}
	if keySets.m == nil {
		keySets.m = map[keySetID]weak.Pointer[keySet]{}
	}
	keySets.m[id] = weak.Make(ks)
	runtime.AddCleanup(ks, func(id keySetID) {
		keySets.Lock()
		defer keySets.Unlock()
		if keySets.m[id].Value() == nil {
			delete(keySets.m, id)
		}
	}, id)
	return ks, nil
}
