// Package identity turns what a client presents (a token) into who it is: an
// Identity with a name, a kind (agent, ci, human) and groups that policy
// grants refer to.
//
// It never logs, stores or returns a token. Static tokens are kept only as
// SHA-256 hashes and compared in constant time. OIDC JWTs are verified by
// the Authenticator in session/identity/oidc, which fetches issuers' keys
// and so lives apart: this package stays pure (no network, file system or
// clock). Combined puts the two side by side. Any token may be bound to
// client address ranges (ClientAllowed). Callers depend on the
// Authenticator interface, not on how a token is checked.
package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Kind says what sort of principal an identity is.
type Kind string

const (
	KindAgent Kind = "agent"
	KindCI    Kind = "ci"
	KindHuman Kind = "human"
)

// ParseKind checks a configured kind.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindAgent, KindCI, KindHuman:
		return k, nil
	}
	return "", fmt.Errorf("identity: unknown kind %q (want agent, ci or human)", s)
}

// Identity is an authenticated principal.
type Identity struct {
	Name   string
	Kind   Kind
	Groups []string
	// Method says how the identity was established (MethodStatic,
	// MethodOIDC).
	Method string
	// Key names the credential that established it, so that the
	// authenticator can answer for it again after a change of state
	// (Recheck) without anyone keeping the token: for a static token, the
	// hex SHA-256 that the configuration holds too; for a JWT, its issuer
	// and expiry. Never logged.
	Key string
	// Client is the address the credential was presented from (the zero
	// Addr when unknown), so that Recheck can hold it against the client
	// ranges configured then.
	Client netip.Addr
	// Expires is when the credential stops standing (a JWT's exp, plus
	// the issuer's clock skew); zero: it does not expire. Recheck refuses
	// the identity after it; nothing ends a session at that moment by
	// itself.
	Expires time.Time
}

// The methods an Identity can be established by.
const (
	MethodStatic = "static-token"
	MethodOIDC   = "oidc"
)

// InGroup reports whether the identity belongs to group g.
func (id Identity) InGroup(g string) bool { return slices.Contains(id.Groups, g) }

// LogValue lets identities be logged by name and kind only.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", id.Name), slog.String("kind", string(id.Kind)))
}

// ErrInvalidToken is returned for a token that no authenticator accepts.
// What the client is told says nothing more, so that probing learns
// nothing; the error may wrap a reason for the node's own logs (Refused).
var ErrInvalidToken = errors.New("identity: invalid token")

// RefusedError is ErrInvalidToken with why the token was refused ("expired",
// "client address not allowed"). The reason never holds the token.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "identity: invalid token: " + e.Reason }

// Is makes a refusal count as ErrInvalidToken for errors.Is.
func (e *RefusedError) Is(target error) bool { return target == ErrInvalidToken }

// Refused returns a *RefusedError with the reason.
func Refused(reason string) error { return &RefusedError{Reason: reason} }

// Credentials are what a client presented. User is the name the client gave
// (for PostgreSQL, the startup "user"); Token is the secret; Client is the
// address the client connects from, the zero Addr when it has none (a Unix
// socket), which no client range admits.
type Credentials struct {
	User   string
	Token  string
	Client netip.Addr
}

// NetAddr is what a connection's RemoteAddr returns (net.Addr), named here
// without importing net.
type NetAddr interface {
	Network() string
	String() string
}

// ClientAddr returns the IP address of a connection's remote address, IPv4
// in its 4-byte form and without an IPv6 zone; the zero Addr for anything
// else (a Unix socket, nil).
func ClientAddr(a NetAddr) netip.Addr {
	var ip netip.Addr
	switch v := a.(type) {
	case nil:
		return netip.Addr{}
	case interface{ AddrPort() netip.AddrPort }: // *net.TCPAddr, *net.UDPAddr
		ip = v.AddrPort().Addr()
	default:
		switch a.Network() {
		case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
			ap, err := netip.ParseAddrPort(a.String())
			if err != nil {
				return netip.Addr{}
			}
			ip = ap.Addr()
		default:
			return netip.Addr{}
		}
	}
	return ip.Unmap().WithZone("")
}

// ClientAllowed reports whether a client at addr may present a token bound
// to the ranges in clients: always when clients is empty, otherwise only
// when a range holds addr (an unknown address is held by none).
func ClientAllowed(clients []netip.Prefix, addr netip.Addr) bool {
	if len(clients) == 0 {
		return true
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range clients {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ValidateClients checks a list of client ranges: each valid, with no
// host bits set (10.1.2.3/8 is more likely a typo than 10.0.0.0/8).
func ValidateClients(clients []netip.Prefix) error {
	for _, p := range clients {
		if !p.IsValid() {
			return fmt.Errorf("identity: invalid client range %v", p)
		}
		if p.Masked() != p {
			return fmt.Errorf("identity: client range %v has host bits set (did you mean %v?)", p, p.Masked())
		}
	}
	return nil
}

// ReasonClientNotAllowed is the reason a token presented from an address
// outside its client ranges is refused with.
const ReasonClientNotAllowed = "client address not allowed"

// LogValue keeps the token out of logs.
func (c Credentials) LogValue() slog.Value { return slog.StringValue("user=" + c.User) }

// Authenticator resolves credentials to an identity, and answers again for
// an identity it resolved earlier (Recheck), so that a live session can be
// re-checked when the node's state changes: a revoked token ends it.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Identity, error)
	Recheck(id Identity) (Identity, error)
}

// StaticToken is one configured token, by hash.
type StaticToken struct {
	Identity Identity
	// SHA256 is the hex SHA-256 of the token string.
	SHA256 string
	// Clients are the address ranges the token may be presented from.
	// Empty: any address.
	Clients []netip.Prefix
}

// StaticTokens authenticates tokens listed in the configuration.
type StaticTokens struct {
	entries []staticEntry
}

type staticEntry struct {
	sum     [sha256.Size]byte
	id      Identity
	clients []netip.Prefix
}

var _ Authenticator = (*StaticTokens)(nil)

// NewStaticTokens validates the list: every hash is 64 hex digits, names and
// hashes are unique, client ranges are valid.
func NewStaticTokens(tokens []StaticToken) (*StaticTokens, error) {
	s := &StaticTokens{}
	names := map[string]bool{}
	for i, t := range tokens {
		if t.Identity.Name == "" {
			return nil, fmt.Errorf("identity: token %d: empty name", i)
		}
		if names[t.Identity.Name] {
			return nil, fmt.Errorf("identity: token %q listed twice", t.Identity.Name)
		}
		names[t.Identity.Name] = true
		if _, err := ParseKind(string(t.Identity.Kind)); err != nil {
			return nil, fmt.Errorf("identity: token %q: %w", t.Identity.Name, err)
		}
		raw, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("identity: token %q: token_sha256 must be 64 hex digits", t.Identity.Name)
		}
		if err := ValidateClients(t.Clients); err != nil {
			return nil, fmt.Errorf("identity: token %q: clients: %w", t.Identity.Name, err)
		}
		e := staticEntry{id: t.Identity, clients: slices.Clone(t.Clients)}
		copy(e.sum[:], raw)
		for _, o := range s.entries {
			if o.sum == e.sum {
				return nil, fmt.Errorf("identity: tokens %q and %q have the same hash", o.id.Name, t.Identity.Name)
			}
		}
		e.id.Method = MethodStatic
		e.id.Groups = slices.Clone(t.Identity.Groups)
		s.entries = append(s.entries, e)
	}
	return s, nil
}

// Authenticate hashes the token and compares it with every configured hash in
// constant time, so timing tells nothing about which entry came close; a
// token bound to client ranges is refused from any other address.
func (s *StaticTokens) Authenticate(_ context.Context, c Credentials) (Identity, error) {
	if c.Token == "" {
		return Identity{}, ErrInvalidToken
	}
	sum := sha256.Sum256([]byte(c.Token))
	found := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(sum[:], s.entries[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, ErrInvalidToken
	}
	if !ClientAllowed(s.entries[found].clients, c.Client) {
		return Identity{}, Refused(ReasonClientNotAllowed)
	}
	id := s.entries[found].id
	id.Key = hex.EncodeToString(sum[:])
	id.Client = c.Client
	return id, nil
}

// Recheck answers again for an identity that Authenticate resolved, maybe
// under an earlier set of tokens: the identity its token stands for now (its
// kind and groups may have changed), or ErrInvalidToken when the token is
// no longer listed or no longer admits the client's address.
func (s *StaticTokens) Recheck(id Identity) (Identity, error) {
	raw, err := hex.DecodeString(id.Key)
	if err != nil || len(raw) != sha256.Size || id.Method != MethodStatic {
		return Identity{}, ErrInvalidToken
	}
	for i := range s.entries {
		if subtle.ConstantTimeCompare(raw, s.entries[i].sum[:]) == 1 {
			if !ClientAllowed(s.entries[i].clients, id.Client) {
				return Identity{}, Refused(ReasonClientNotAllowed)
			}
			cur := s.entries[i].id
			cur.Key = id.Key
			cur.Client = id.Client
			return cur, nil
		}
	}
	return Identity{}, ErrInvalidToken
}

// HashToken returns the hex SHA-256 of a token, the form the configuration stores.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LooksLikeJWT reports whether a token has the shape of a JWS in compact
// form: a base64url JSON header (it starts with "eyJ", the encoding of
// `{"`), a payload and a signature that may be empty, joined by two dots.
// It says nothing about validity.
func LooksLikeJWT(token string) bool {
	if !strings.HasPrefix(token, "eyJ") || strings.Count(token, ".") != 2 {
		return false
	}
	header, rest, _ := strings.Cut(token, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	if header == "" || payload == "" {
		return false
	}
	for _, part := range []string{header, payload, sig} {
		for i := 0; i < len(part); i++ {
			if b := part[i]; !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}

// Combined holds static tokens and a JWT authenticator (session/identity/oidc)
// side by side.
type Combined struct {
	static *StaticTokens
	jwt    Authenticator
}

var _ Authenticator = (*Combined)(nil)

// Combine returns an authenticator that tries static tokens and JWTs. A
// static token is never handed to jwt, so it cannot reach its logs.
func Combine(static *StaticTokens, jwt Authenticator) *Combined {
	return &Combined{static: static, jwt: jwt}
}

// Authenticate hands a token that is not JWT-shaped to the static tokens
// only. A JWT-shaped one goes to the JWT authenticator, and when that
// fails, to the static tokens too (a static token of that shape would
// otherwise be unusable); the JWT's error is the one returned.
func (a *Combined) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	if !LooksLikeJWT(c.Token) {
		return a.static.Authenticate(ctx, c)
	}
	id, err := a.jwt.Authenticate(ctx, c)
	if err == nil {
		return id, nil
	}
	if sid, serr := a.static.Authenticate(ctx, c); serr == nil {
		return sid, nil
	}
	return Identity{}, err
}

// Recheck asks the authenticator that established the identity (by its
// Method).
func (a *Combined) Recheck(id Identity) (Identity, error) {
	if id.Method == MethodStatic {
		return a.static.Recheck(id)
	}
	return a.jwt.Recheck(id)
}
