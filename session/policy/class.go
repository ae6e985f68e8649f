package policy

import (
	"fmt"
	"slices"
)

// Class is what an operation does, in any protocol, as grants name it. Each
// proxy maps its own requests onto these classes (session/sqlclass for
// PostgreSQL statements); grants and decisions know only the classes.
type Class string

const (
	Read    Class = "read"    // reads data: SELECT, SHOW, EXPLAIN without ANALYZE
	Write   Class = "write"   // changes data: INSERT, UPDATE, DELETE, MERGE, TRUNCATE, locks
	DDL     Class = "ddl"     // changes schema: CREATE, ALTER, DROP, COMMENT
	Admin   Class = "admin"   // changes who may do what, runs code, or anything not understood
	Export  Class = "export"  // streams data out in bulk (COPY ... TO STDOUT)
	Import  Class = "import"  // streams data in in bulk (COPY ... FROM STDIN)
	Tx      Class = "tx"      // transaction control: always allowed
	Session Class = "session" // session settings and bookkeeping: always allowed
)

// Classes lists every class a grant may name, in a stable order.
var Classes = []Class{Read, Write, DDL, Admin, Export, Import, Tx, Session}

// ParseClass checks a configured class name.
func ParseClass(s string) (Class, error) {
	for _, c := range Classes {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("policy: unknown statement class %q", s)
}

// AlwaysAllowed reports whether operations of class c pass under every grant
// that admits the session at all.
func (c Class) AlwaysAllowed() bool { return c == Tx || c == Session }

// Call is a named operation inside a request that needs a class of its own
// (a function a SQL statement calls): the grant must allow Class or name it.
type Call struct {
	Name  string // as written: "name" or "schema.name"
	Class Class
}

// Action is one classified operation of a request: a SQL statement today;
// an HTTP request, a kubectl verb or a shell command later.
type Action struct {
	Class Class
	// Calls are the named operations inside it that need a class of their
	// own (functions outside the allowlist of side-effect-free built-ins).
	Calls []Call
	// Refused, when set, says why no grant may run it (the classifier
	// could not vouch for it).
	Refused string
	// Risks are what approval rules can gate beyond the class (approval.go).
	Risks []Risk
	// Writes are the relations the action writes rows of (INSERT, UPDATE,
	// DELETE, MERGE, TRUNCATE, COPY FROM), Reads those it reads rows
	// from, as written: "schema.name" or "name".
	Writes, Reads []string
	// Rows bounds the rows a read returns: 0 unbounded (no LIMIT, or one
	// phigate cannot read), n > 0 at most n (LIMIT n; 1 for an aggregate
	// without GROUP BY).
	Rows int64
}

// Level is how much a session's login to a resource may do. A resource can
// hold one credential per level; a session logs in with the least one that
// covers its grant (Grant.Level), so that the resource enforces the grant
// too.
type Level string

const (
	LevelRead  Level = "read"  // read, export
	LevelWrite Level = "write" // + write, import
	LevelAdmin Level = "admin" // + ddl, admin
)

// Levels lists the access levels from the least to the most.
var Levels = []Level{LevelRead, LevelWrite, LevelAdmin}

// ParseLevel checks a configured level name.
func ParseLevel(s string) (Level, error) {
	if l := Level(s); slices.Contains(Levels, l) {
		return l, nil
	}
	return "", fmt.Errorf("policy: unknown access level %q (read, write or admin)", s)
}

// Rank orders levels from 0 (read); an unknown level ranks above admin.
func (l Level) Rank() int {
	if i := slices.Index(Levels, l); i >= 0 {
		return i
	}
	return len(Levels)
}

// Level is the least access level that covers everything g allows.
func (g *Grant) Level() Level {
	level := LevelRead
	for _, c := range g.Allow {
		switch c {
		case Read, Export, Tx, Session:
		case Write, Import:
			level = LevelWrite
		default:
			return LevelAdmin
		}
	}
	return level
}
