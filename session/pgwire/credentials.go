package pgwire

import (
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

// credential is the login for level.
func (r *Resource) credential(level AccessLevel) (user string, password Secret) {
	return r.User, r.Password
}
