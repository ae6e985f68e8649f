package pgwire

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/sqlclass"
)

// AccessLevel is how much a session's upstream login may do. A resource can
// hold one credential per level; a session logs in with the least one that
// covers its grant, so that the database enforces the grant too.
type AccessLevel string

const (
	LevelRead  AccessLevel = "read"  // read, export
	LevelWrite AccessLevel = "write" // + write, import
	LevelAdmin AccessLevel = "admin" // + ddl, admin
)

// Levels lists the access levels from the least to the most.
var Levels = []AccessLevel{LevelRead, LevelWrite, LevelAdmin}

// ParseAccessLevel checks a configured level name.
func ParseAccessLevel(s string) (AccessLevel, error) {
	if l := AccessLevel(s); slices.Contains(Levels, l) {
		return l, nil
	}
	return "", fmt.Errorf("unknown access level %q (read, write or admin)", s)
}

// rank orders levels; an unknown level ranks above admin.
func (l AccessLevel) rank() int {
	if i := slices.Index(Levels, l); i >= 0 {
		return i
	}
	return len(Levels)
}

// LevelFor is the least access level that covers everything g allows.
func LevelFor(g *policy.Grant) AccessLevel {
	level := LevelRead
	for _, c := range g.Allow {
		switch c {
		case sqlclass.Read, sqlclass.Export, sqlclass.Tx, sqlclass.Session:
		case sqlclass.Write, sqlclass.Import:
			if level == LevelRead {
				level = LevelWrite
			}
		default:
			return LevelAdmin
		}
	}
	return level
}

// Credential is one upstream login. It logs as its user name only.
type Credential struct {
	User     string
	Password Secret
}

// LogValue names the user, never the password.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.User) }

// credential is the login for level: the resource's role for the least
// level at or above it that has one, else the resource's own User and
// Password. So a session never logs in with a role configured for a level
// below its grant's, and the fallback serves only the levels that no role
// covers (with an admin role, none).
func (r *Resource) credential(level AccessLevel) (user string, password Secret) {
	c := r.credentialFor(level)
	return c.User, c.Password
}

func (r *Resource) credentialFor(level AccessLevel) Credential {
	for _, l := range Levels[min(level.rank(), len(Levels)):] {
		if c, ok := r.Roles[l]; ok {
			return c
		}
	}
	return Credential{User: r.User, Password: r.Password}
}

// RoleFor names the upstream role that sessions at level log in as.
func (r *Resource) RoleFor(level AccessLevel) string { return r.credentialFor(level).User }

// validateCredentials checks the per-level roles against the fallback:
// every level must have a login, and a configured login must be one that
// some level uses, so that what the file says is what the gateway does.
func (r *Resource) validateCredentials() error {
	for l, c := range r.Roles {
		if _, err := ParseAccessLevel(string(l)); err != nil {
			return fmt.Errorf("roles: %w", err)
		}
		if c.User == "" {
			return fmt.Errorf("roles: %s: user is required", l)
		}
	}
	if _, ok := r.Roles[LevelAdmin]; ok {
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
