package pgwire

import (
	"strings"
	"time"

	"github.com/phigate/phigate/session/record"
)

// Observer is told what sessions do, for the node's metrics. Its methods
// are called from session goroutines, concurrently, on the data path (once
// per command, once per result that masked values): they must be cheap and
// never block. Arguments carry no SQL, value, identity or token, only
// values from small fixed sets, so that label cardinality stays bounded.
type Observer interface {
	// SessionStarted: a session logged in and its start is durable.
	SessionStarted()
	// SessionEnded: a session SessionStarted reported ended; class is one
	// of the End constants.
	SessionEnded(class string)
	// SessionRefused: a connection was refused at login (bad token, no
	// grant, TLS required, malformed startup...).
	SessionRefused()
	// Command: a command was recorded with its decision. class is a
	// policy.Class when every statement of the command has that class,
	// ClassMixed when they differ and ClassNone when none was classified
	// (unparsable or refused unread). An allowed Parse is not reported:
	// its Executes are.
	Command(class string, allowed bool)
	// Masked: n non-NULL values of a result were masked (replaced or made
	// NULL).
	Masked(n int64)
}

// SessionIndex is told of each session that logged in, with who and from
// where, and of its end (the cluster's session index). Its methods are
// called from session goroutines, concurrently, once per session: they
// must not block. No SQL, value or token is passed.
type SessionIndex interface {
	// Started: session id of identity on resource, from client
	// (host:port), started at.
	Started(id, identity, resource, client string, at time.Time)
	// Ended: the session ended at, for a reason of class (an End constant).
	Ended(id string, at time.Time, class string)
}

// Classes an Observer is told besides policy's.
const (
	ClassMixed = "mixed"
	ClassNone  = "none"
)

// End classes: why a session ended, coarsely (the recording has the
// exact reason).
const (
	EndTerminate    = "terminate"     // the agent sent Terminate
	EndClientClosed = "client_closed" // the agent's connection closed
	EndRevoked      = "revoked"       // the state no longer admits it, or its token expired
	EndShutdown     = "shutdown"      // the node shut down
	EndError        = "error"         // protocol, upstream, recording or internal error
	EndOther        = "other"
)

// endClass maps a session.end reason onto an End constant.
func endClass(reason string) string {
	switch {
	case reason == "terminate":
		return EndTerminate
	case reason == "client closed":
		return EndClientClosed
	case reason == "node shutdown":
		return EndShutdown
	case strings.HasPrefix(reason, "access revoked"):
		return EndRevoked
	case strings.Contains(reason, "error"), strings.Contains(reason, "failed"),
		strings.Contains(reason, "too large"), reason == "catalog unavailable", reason == "server closed":
		return EndError
	}
	return EndOther
}

// commandClass is the class an Observer is told for a recorded command.
func commandClass(rc *record.Command) string {
	if len(rc.Classes) == 0 {
		return ClassNone
	}
	for _, c := range rc.Classes[1:] {
		if c != rc.Classes[0] {
			return ClassMixed
		}
	}
	return rc.Classes[0]
}

// observeCommand tells the observer of a recorded command.
func (c *conn) observeCommand(rc *record.Command) {
	obs := c.srv.cfg.Observer
	if obs == nil {
		return
	}
	allowed := rc.Decision == "allow"
	if allowed && rc.Postgres != nil && rc.Postgres.Step == record.StepParse {
		return
	}
	obs.Command(commandClass(rc), allowed)
}
