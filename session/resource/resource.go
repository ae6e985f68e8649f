// Package resource describes the protected systems a gateway forwards to,
// and the credentials only the gateway holds for them, in terms every
// protocol proxy can use: a name agents ask for, where it is, how to verify
// it, and one login per access level.
//
// It is pure: it never dials, reads files or looks at the clock. Loading
// passwords and certificates is the node's job; dialling is the proxy's.
// Credentials live in Secret, which prints and logs as a placeholder.
package resource

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
)

// Protocols a resource may speak.
const (
	Postgres = "postgres"
)

// TLS modes for the connection to the resource, as in libpq's sslmode.
const (
	TLSDisable    = "disable"
	TLSRequire    = "require"     // encrypted, server certificate not checked
	TLSVerifyFull = "verify-full" // encrypted, certificate chain and host name checked
)

// Secret holds a credential. It prints and logs as a placeholder, so that a
// stray %v or slog attribute cannot leak it.
type Secret struct{ value string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the credential, for the one place that must send it.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether no credential is set.
func (s Secret) IsZero() bool { return s.value == "" }

func (Secret) String() string               { return "[secret]" }
func (Secret) GoString() string             { return "[secret]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[secret]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[secret]"), nil }

// Credential is one login to a resource. It logs as its user name only.
type Credential struct {
	User     string
	Password Secret
}

// LogValue names the user, never the password.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.User) }

// Resource is a protected system, reached with credentials that only the
// gateway holds.
type Resource struct {
	// Name is what agents ask for (PostgreSQL: the startup "database").
	Name string
	// Protocol is what the resource speaks. Empty means Postgres.
	Protocol string
	// Address is where it listens; its form is the protocol's (PostgreSQL:
	// host:port, or the absolute path of a Unix socket directory, optionally
	// with :port).
	Address string
	// Database is the PostgreSQL database the gateway logs in to.
	Database string
	// User and Password log in every level that Roles does not cover: with
	// no Roles, every session. Empty when Roles has policy.LevelAdmin (they
	// would never be used).
	User     string
	Password Secret
	// Roles holds a credential per access level (read, write, admin). A
	// session logs in with the role of the least level at or above its
	// grant's that has one, else with User; see For. Nil: every session
	// logs in as User.
	Roles map[policy.Level]Credential
	// TLS is disable, require or verify-full. Empty means verify-full.
	TLS string
	// CAFile is a PEM bundle for verify-full; empty means the system roots.
	CAFile string
	// CAPEM is the PEM bundle itself, used instead of CAFile when set.
	CAPEM []byte
	// ServerName overrides the name checked in verify-full (default: the host).
	ServerName string
	// Subjects names, per table, the column that identifies the person a
	// row is about, so that date-shift moves each person's dates by that
	// person's own shift (mask.Subjects). Nil: one shift per profile. A
	// live session adopts a change; it is no part of SameTarget.
	Subjects *mask.Subjects
}

// Validate checks what every protocol needs of r and fills in its defaults
// (Protocol, TLS). The proxy of r's protocol checks the rest (the form of
// Address).
func (r *Resource) Validate() error {
	if r.Name == "" {
		return errors.New("name is required")
	}
	switch r.Protocol {
	case "":
		r.Protocol = Postgres
	case Postgres:
	default:
		return fmt.Errorf("protocol %q is not supported (postgres is)", r.Protocol)
	}
	if r.Address == "" {
		return errors.New("address is required")
	}
	if r.Protocol == Postgres && r.Database == "" {
		return errors.New("database is required")
	}
	if err := r.validateCredentials(); err != nil {
		return err
	}
	switch r.TLS {
	case "":
		r.TLS = TLSVerifyFull
	case TLSDisable, TLSRequire, TLSVerifyFull:
	default:
		return fmt.Errorf("tls must be disable, require or verify-full, not %q", r.TLS)
	}
	return nil
}

// For is the login for level: the resource's role for the least level at or
// above it that has one, else the resource's own User and Password. So a
// session never logs in with a role configured for a level below its
// grant's, and the fallback serves only the levels that no role covers
// (with an admin role, none).
func (r *Resource) For(level policy.Level) Credential {
	for _, l := range policy.Levels[min(level.Rank(), len(policy.Levels)):] {
		if c, ok := r.Roles[l]; ok {
			return c
		}
	}
	return Credential{User: r.User, Password: r.Password}
}

// RoleFor names the role that sessions at level log in as.
func (r *Resource) RoleFor(level policy.Level) string { return r.For(level).User }

// validateCredentials checks the per-level roles against the fallback:
// every level must have a login, and a configured login must be one that
// some level uses, so that what the file says is what the gateway does.
func (r *Resource) validateCredentials() error {
	for _, l := range slices.Sorted(maps.Keys(r.Roles)) {
		if _, err := policy.ParseLevel(string(l)); err != nil {
			return fmt.Errorf("roles: %w", err)
		}
		if r.Roles[l].User == "" {
			return fmt.Errorf("roles: %s: user is required", l)
		}
	}
	if _, ok := r.Roles[policy.LevelAdmin]; ok {
		if r.User != "" || !r.Password.IsZero() {
			return errors.New("user and password would never be used: every level logs in with a role at or above it (roles has admin); remove them, or make that user roles.admin")
		}
		return nil
	}
	if r.User == "" {
		return errors.New("user is required (it logs in the levels that no role at or above covers) unless roles has admin")
	}
	return nil
}

// SameTarget reports whether r and o name the same system reached the same
// way: a live session connected through o may go on under r. Passwords are
// not compared: a rotated password does not end connected sessions.
func (r *Resource) SameTarget(o *Resource) bool {
	if r == o {
		return true
	}
	if r.Name != o.Name || r.Protocol != o.Protocol || r.Address != o.Address || r.Database != o.Database ||
		r.User != o.User || r.TLS != o.TLS || r.CAFile != o.CAFile || !bytes.Equal(r.CAPEM, o.CAPEM) || r.ServerName != o.ServerName || len(r.Roles) != len(o.Roles) {
		return false
	}
	for l, c := range r.Roles {
		if oc, ok := o.Roles[l]; !ok || oc.User != c.User {
			return false
		}
	}
	return true
}
