// Package identity turns what a client presents (a token) into who it is: an
// Identity with a name, a kind (agent, ci, human) and groups that policy
// grants refer to.
//
// It never logs, stores or returns a token. Static tokens are kept only as
// SHA-256 hashes and compared in constant time. OIDC/JWT validation will be a
// second Authenticator beside StaticTokens; callers depend on the
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
	"slices"
	"strings"
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
	// Method says how the identity was established ("static-token", later "oidc").
	Method string
	// Key names the credential that established it, so that the
	// authenticator can answer for it again after a change of state
	// (Recheck) without anyone keeping the token: for a static token, the
	// hex SHA-256 that the configuration holds too. Never logged.
	Key string
}

// InGroup reports whether the identity belongs to group g.
func (id Identity) InGroup(g string) bool { return slices.Contains(id.Groups, g) }

// LogValue lets identities be logged by name and kind only.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", id.Name), slog.String("kind", string(id.Kind)))
}

// ErrInvalidToken is returned for a token that no authenticator accepts. It
// deliberately says nothing about why, so that probing learns nothing.
var ErrInvalidToken = errors.New("identity: invalid token")

// Credentials are what a client presented. User is the name the client gave
// (for PostgreSQL, the startup "user"); Token is the secret.
type Credentials struct {
	User  string
	Token string
}

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
}

// StaticTokens authenticates tokens listed in the configuration.
type StaticTokens struct {
	entries []staticEntry
}

type staticEntry struct {
	sum [sha256.Size]byte
	id  Identity
}

var _ Authenticator = (*StaticTokens)(nil)

// NewStaticTokens validates the list: every hash is 64 hex digits, names and
// hashes are unique.
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
		e := staticEntry{id: t.Identity}
		copy(e.sum[:], raw)
		for _, o := range s.entries {
			if o.sum == e.sum {
				return nil, fmt.Errorf("identity: tokens %q and %q have the same hash", o.id.Name, t.Identity.Name)
			}
		}
		e.id.Method = "static-token"
		e.id.Groups = slices.Clone(t.Identity.Groups)
		s.entries = append(s.entries, e)
	}
	return s, nil
}

// Authenticate hashes the token and compares it with every configured hash in
// constant time, so timing tells nothing about which entry came close.
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
	id := s.entries[found].id
	id.Key = hex.EncodeToString(sum[:])
	return id, nil
}

// Recheck answers again for an identity that Authenticate resolved, maybe
// under an earlier set of tokens: the identity its token stands for now (its
// kind and groups may have changed), or ErrInvalidToken when the token is
// no longer listed.
func (s *StaticTokens) Recheck(id Identity) (Identity, error) {
	raw, err := hex.DecodeString(id.Key)
	if err != nil || len(raw) != sha256.Size || id.Method != "static-token" {
		return Identity{}, ErrInvalidToken
	}
	for i := range s.entries {
		if subtle.ConstantTimeCompare(raw, s.entries[i].sum[:]) == 1 {
			cur := s.entries[i].id
			cur.Key = id.Key
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
