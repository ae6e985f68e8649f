// Package oidc accepts OpenID Connect JWTs as tokens: an
// identity.Authenticator that verifies a JWT against its issuer's published
// keys and maps its claims onto an identity.Identity (Method "oidc").
//
// Keys come from the issuer only: its JWKS, found through discovery
// (issuer + "/.well-known/openid-configuration" → jwks_uri), fetched over
// HTTPS (the system's roots, or the issuer's ca_file), with a timeout and a
// size cap, and cached. An unknown kid, or keys older than KeysMaxAge,
// make the set be fetched again, but never more often than once per
// RefreshInterval per issuer, so a flood of made-up kids costs the issuer
// one request per interval. A failed refresh keeps the keys already held.
// Nothing is fetched when an Authenticator is built: the first token of an
// issuer fetches its keys, and key sets are shared, process-wide, by every
// Authenticator that names the same issuer with the same CA, so an
// Authenticator rebuilt on reload starts with the keys its predecessor held
// and a reload never waits on, or fails for, an issuer.
//
// Only RS256 (RSA keys of 2048 bits or more), ES256 (P-256) and EdDSA
// (Ed25519) are accepted, and only with a key whose type fits the
// algorithm and whose own alg, when it has one, is the token's. "none",
// HMAC and every other algorithm are refused, as are tokens without a kid
// and tokens with a crit header; keys a token carries or points to (jwk,
// jku, x5u, x5c) are never used. Claims: exp is required, nbf and iat are
// honoured, each with the issuer's clock skew; iss must equal the issuer
// exactly; aud must contain the audience.
//
// It never logs, stores or returns a token. A refusal's reason (never the
// token) is logged, and returned as an *identity.RefusedError.
package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/session/identity"
)

// Defaults and bounds.
const (
	// DefaultClockSkew is an issuer's clock skew when it sets none.
	DefaultClockSkew = 30 * time.Second
	// MaxClockSkew is the largest clock skew an issuer may set.
	MaxClockSkew = 5 * time.Minute
	// DefaultRefreshInterval is the least time between two fetches of an
	// issuer's keys when Config sets none.
	DefaultRefreshInterval = 10 * time.Second
	// DefaultFetchTimeout bounds one fetch (discovery and JWKS together)
	// when Config sets none.
	DefaultFetchTimeout = 5 * time.Second
	// KeysMaxAge is how long fetched keys are used before the next token
	// makes them be fetched again (a key the issuer removed then stops
	// verifying even when no unknown kid comes along).
	KeysMaxAge = time.Hour
	// MaxTokenBytes is the longest token looked at.
	MaxTokenBytes = 16 << 10
	// maxDocumentBytes caps a discovery document or a JWKS.
	maxDocumentBytes = 1 << 20
	// maxNameBytes caps an identity name taken from a claim.
	maxNameBytes = 256
)

// algorithms are the only signature algorithms accepted.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// Issuer is one trusted issuer and how its tokens map onto identities. The
// field names in ConfigError are this struct's keys in phigate's YAML
// (identities.oidc[]).
type Issuer struct {
	// URL is the issuer identifier (issuer): https, no query or fragment.
	// A token's iss must equal it exactly; its keys are discovered at
	// URL + "/.well-known/openid-configuration". Required.
	URL string
	// Audience (audience) must be one of a token's aud. Required.
	Audience string
	// CAFile (ca_file) is a PEM file of the CAs trusted for the issuer's
	// HTTPS endpoints. Empty: the system's roots.
	CAFile string
	// CAPEM is the PEM bundle itself (ca_pem), used instead of CAFile
	// when set.
	CAPEM []byte
	// NameClaim (name_claim) is the claim holding the identity's name, a
	// non-empty string. Empty: "sub". Names share one namespace with static
	// tokens' names: an issuer is trusted to assert any name.
	NameClaim string
	// KindClaim (kind_claim) is a claim holding the kind (agent, ci,
	// human); Kind (kind) is a fixed kind for every token of the issuer.
	// Exactly one must be set.
	KindClaim string
	Kind      identity.Kind
	// GroupsClaim (groups_claim) is a claim holding an array of strings,
	// the identity's groups; a token without it has none. Empty: no groups.
	GroupsClaim string
	// Clients (clients) are the address ranges the issuer's tokens may be
	// presented from. Empty: any address.
	Clients []netip.Prefix
	// ClockSkew (clock_skew) is how far exp, nbf and iat may be off.
	// Zero: DefaultClockSkew; at most MaxClockSkew.
	ClockSkew time.Duration
}

// Config configures an Authenticator.
type Config struct {
	// Issuers are the trusted issuers, each URL once.
	Issuers []Issuer
	// RefreshInterval is the least time between two fetches of one
	// issuer's keys. Zero: DefaultRefreshInterval.
	RefreshInterval time.Duration
	// FetchTimeout bounds one fetch of an issuer's keys. Zero:
	// DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Logger gets refusals (Info, with the reason) and failed fetches
	// (Warn). Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// ConfigError says which issuer's setting New refused.
type ConfigError struct {
	Issuer int    // index in Config.Issuers
	Field  string // the YAML key: issuer, audience, ca_file, ...
	Err    error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("oidc: issuer %d: %s: %v", e.Issuer, e.Field, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Authenticator verifies JWTs of the configured issuers.
type Authenticator struct {
	byURL   map[string]*issuer
	byID    map[string]*issuer
	every   time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
}

// issuer is a validated Issuer with its keys.
type issuer struct {
	Issuer
	// id fingerprints what an identity resolved under this issuer
	// depends on (URL, audience and claim mapping); identities carry it
	// in their Key, so that Recheck refuses them once that changed.
	id   string
	keys *keySet
}

var _ identity.Authenticator = (*Authenticator)(nil)

// New validates cfg and reads the issuers' CA files. It fetches nothing.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{
		byURL: map[string]*issuer{}, byID: map[string]*issuer{},
		every: cfg.RefreshInterval, timeout: cfg.FetchTimeout, log: cfg.Logger, now: cfg.Now,
	}
	switch {
	case a.every < 0:
		return nil, errors.New("oidc: negative refresh interval")
	case a.every == 0:
		a.every = DefaultRefreshInterval
	}
	switch {
	case a.timeout < 0:
		return nil, errors.New("oidc: negative fetch timeout")
	case a.timeout == 0:
		a.timeout = DefaultFetchTimeout
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	for i, ic := range cfg.Issuers {
		is, caPEM, err := validate(ic)
		if err != nil {
			err.Issuer = i
			return nil, err
		}
		if a.byURL[is.URL] != nil {
			return nil, &ConfigError{i, "issuer", fmt.Errorf("%s is configured twice", is.URL)}
		}
		keys, kerr := sharedKeySet(is.URL, caPEM)
		if kerr != nil {
			return nil, &ConfigError{i, "ca_file", kerr}
		}
		is.keys = keys
		a.byURL[is.URL] = is
		a.byID[is.id] = is
	}
	return a, nil
}

// validate checks one issuer, fills in its defaults and reads its CA file.
func validate(ic Issuer) (*issuer, []byte, *ConfigError) {
	bad := func(field string, format string, args ...any) (*issuer, []byte, *ConfigError) {
		return nil, nil, &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	u, err := url.Parse(ic.URL)
	switch {
	case ic.URL == "":
		return bad("issuer", "required")
	case err != nil:
		return bad("issuer", "%v", err)
	case u.Scheme != "https" || u.Host == "":
		return bad("issuer", "%q is not an https URL", ic.URL)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("issuer", "%q has user information, a query or a fragment", ic.URL)
	}
	if ic.Audience == "" {
		return bad("audience", "required")
	}
	caPEM := ic.CAPEM
	if caPEM != nil {
		if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
			return bad("ca_pem", "holds no PEM certificate")
		}
	} else if ic.CAFile != "" {
		if caPEM, err = os.ReadFile(ic.CAFile); err != nil {
			return bad("ca_file", "%v", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
			return bad("ca_file", "%s holds no PEM certificate", ic.CAFile)
		}
	}
	if ic.NameClaim == "" {
		ic.NameClaim = "sub"
	}
	switch {
	case ic.Kind != "" && ic.KindClaim != "":
		return bad("kind", "set kind or kind_claim, not both")
	case ic.Kind == "" && ic.KindClaim == "":
		return bad("kind", "required (or kind_claim)")
	case ic.Kind != "":
		if _, err := identity.ParseKind(string(ic.Kind)); err != nil {
			return bad("kind", "%v", err)
		}
	}
	if err := identity.ValidateClients(ic.Clients); err != nil {
		return bad("clients", "%v", err)
	}
	switch {
	case ic.ClockSkew < 0 || ic.ClockSkew > MaxClockSkew:
		return bad("clock_skew", "%v is not between 0 and %v", ic.ClockSkew, MaxClockSkew)
	case ic.ClockSkew == 0:
		ic.ClockSkew = DefaultClockSkew
	}
	fp, _ := json.Marshal([]string{ic.URL, ic.Audience, ic.NameClaim, ic.KindClaim, string(ic.Kind), ic.GroupsClaim})
	sum := sha256.Sum256(fp)
	return &issuer{Issuer: ic, id: hex.EncodeToString(sum[:16])}, caPEM, nil
}

// Authenticate verifies a JWT and returns the identity its claims map to.
// A token refused is an *identity.RefusedError (errors.Is
// identity.ErrInvalidToken); an issuer whose keys cannot be had yields
// another error.
func (a *Authenticator) Authenticate(ctx context.Context, c identity.Credentials) (identity.Identity, error) {
	id, is, err := a.authenticate(ctx, c)
	if err != nil {
		attrs := []any{"user", c.User, "client", c.Client}
		if is != nil {
			attrs = append(attrs, "issuer", is.URL)
		}
		if r := (*identity.RefusedError)(nil); errors.As(err, &r) {
			a.log.Info("oidc: token refused", append(attrs, "reason", r.Reason)...)
		} else {
			a.log.Warn("oidc: cannot verify token", append(attrs, "err", err)...)
		}
	}
	return id, err
}

func (a *Authenticator) authenticate(ctx context.Context, c identity.Credentials) (identity.Identity, *issuer, error) {
	refused := func(is *issuer, reason string) (identity.Identity, *issuer, error) {
		return identity.Identity{}, is, identity.Refused(reason)
	}
	if len(c.Token) > MaxTokenBytes {
		return refused(nil, fmt.Sprintf("longer than %d bytes", MaxTokenBytes))
	}
	jws, err := jose.ParseSignedCompact(c.Token, algorithms)
	if err != nil {
		return refused(nil, "not a compact JWS signed with RS256, ES256 or EdDSA")
	}
	header := jws.Signatures[0].Protected
	if _, ok := header.ExtraHeaders["crit"]; ok {
		return refused(nil, "crit header")
	}
	// The issuer named by the (not yet verified) payload says whose keys
	// to verify with; the verified payload is checked again below.
	var named struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &named); err != nil {
		return refused(nil, "claims are not a JSON object")
	}
	is := a.byURL[named.Issuer]
	if is == nil {
		return refused(nil, "issuer not configured")
	}
	if !identity.ClientAllowed(is.Clients, c.Client) {
		return refused(is, identity.ReasonClientNotAllowed)
	}
	if header.KeyID == "" {
		return refused(is, "no kid")
	}
	keys, err := is.keys.lookup(ctx, header.KeyID, a.now(), a.every, a.timeout, a.log)
	if errors.Is(err, errUnknownKey) {
		return refused(is, "unknown kid")
	} else if err != nil {
		return identity.Identity{}, is, err
	}
	var payload []byte
	fit := false
	for _, k := range keys {
		if !fits(k, header.Algorithm) {
			continue
		}
		fit = true
		if payload, err = jws.Verify(k.Key); err == nil {
			break
		}
	}
	switch {
	case !fit:
		return refused(is, "the key named by kid is not for "+header.Algorithm)
	case payload == nil:
		return refused(is, "bad signature")
	}
	id, reason := is.identity(payload, a.now())
	if reason != "" {
		return refused(is, reason)
	}
	id.Client = c.Client
	return id, is, nil
}

// claims are the registered claims checked on every token.
type claims struct {
	Issuer    string           `json:"iss"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
}

// identity checks a verified payload's claims at now and maps them onto
// an identity; or says why not.
func (is *issuer) identity(payload []byte, now time.Time) (identity.Identity, string) {
	var std claims
	var all map[string]json.RawMessage
	if json.Unmarshal(payload, &std) != nil || json.Unmarshal(payload, &all) != nil {
		return identity.Identity{}, "malformed claims"
	}
	switch {
	case std.Issuer != is.URL:
		return identity.Identity{}, "wrong issuer"
	case !std.Audience.Contains(is.Audience):
		return identity.Identity{}, "audience not included"
	case std.Expiry == nil:
		return identity.Identity{}, "no exp"
	case !now.Before(std.Expiry.Time().Add(is.ClockSkew)):
		return identity.Identity{}, "expired"
	case std.NotBefore != nil && now.Add(is.ClockSkew).Before(std.NotBefore.Time()):
		return identity.Identity{}, "not yet valid (nbf)"
	case std.IssuedAt != nil && now.Add(is.ClockSkew).Before(std.IssuedAt.Time()):
		return identity.Identity{}, "issued in the future (iat)"
	}
	id := identity.Identity{
		Kind:    is.Kind,
		Method:  identity.MethodOIDC,
		Key:     is.id + "." + strconv.FormatInt(int64(*std.Expiry), 10),
		Expires: std.Expiry.Time().Add(is.ClockSkew),
	}
	if json.Unmarshal(all[is.NameClaim], &id.Name) != nil || !usableName(id.Name) {
		return identity.Identity{}, fmt.Sprintf("claim %q is not a usable name", is.NameClaim)
	}
	if is.KindClaim != "" {
		var k string
		if json.Unmarshal(all[is.KindClaim], &k) != nil {
			return identity.Identity{}, fmt.Sprintf("claim %q is not a kind", is.KindClaim)
		}
		kind, err := identity.ParseKind(k)
		if err != nil {
			return identity.Identity{}, fmt.Sprintf("claim %q is not a kind", is.KindClaim)
		}
		id.Kind = kind
	}
	if raw, ok := all[is.GroupsClaim]; ok && is.GroupsClaim != "" && string(raw) != "null" {
		if json.Unmarshal(raw, &id.Groups) != nil || !allUsable(id.Groups) {
			return identity.Identity{}, fmt.Sprintf("claim %q is not an array of group names", is.GroupsClaim)
		}
	}
	return id, ""
}

// usableName reports whether a name from a claim can stand in grants, logs
// and recordings: not empty, not too long, printable UTF-8.
func usableName(s string) bool {
	if s == "" || len(s) > maxNameBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func allUsable(names []string) bool {
	for _, n := range names {
		if !usableName(n) {
			return false
		}
	}
	return true
}

// Recheck answers for an identity this or an earlier Authenticator
// resolved: it stands while its issuer is configured with the same
// audience and claim mapping, its token has not expired (with the
// issuer's clock skew as configured now) and the issuer's client ranges
// admit its address. Its name, kind and groups are those of the token.
func (a *Authenticator) Recheck(id identity.Identity) (identity.Identity, error) {
	if id.Method != identity.MethodOIDC {
		return identity.Identity{}, identity.ErrInvalidToken
	}
	isID, expText, _ := strings.Cut(id.Key, ".")
	is := a.byID[isID]
	if is == nil {
		return identity.Identity{}, identity.Refused("issuer removed or changed")
	}
	exp, err := strconv.ParseInt(expText, 10, 64)
	if err != nil {
		return identity.Identity{}, identity.ErrInvalidToken
	}
	date := jwt.NumericDate(exp)
	expires := date.Time().Add(is.ClockSkew)
	if !a.now().Before(expires) {
		return identity.Identity{}, identity.Refused("expired")
	}
	if !identity.ClientAllowed(is.Clients, id.Client) {
		return identity.Identity{}, identity.Refused(identity.ReasonClientNotAllowed)
	}
	id.Expires = expires
	return id, nil
}
