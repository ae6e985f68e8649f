package session

import (
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"sync/atomic"

	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/resource"
)

// Snapshot is everything a node decides sessions with: who may connect,
// to what, what they may do there, and how results are masked. It is
// immutable once published: a change is a new Snapshot with a higher
// Revision, swapped in whole (State.Publish), so that a session never sees
// half of one revision and half of another.
type Snapshot struct {
	// Revision orders snapshots; State.Publish assigns it.
	Revision uint64
	// Auth resolves agents' tokens.
	Auth identity.Authenticator
	// Policy holds the grants.
	Policy *policy.Policy
	// Resources by name (what agents ask for).
	Resources map[string]*resource.Resource
	// Profiles are the masking profiles by name.
	Profiles map[string]*mask.Profile
	// Auditor is the public key that sessions' data keys are sealed to for
	// the masking proof. Nil: masked values are not proven.
	Auditor *ecdh.PublicKey
	// TLS is what the agent-facing listeners present (nil: no TLS).
	TLS *tls.Config
	// Unavailable, when set, says why the node may not decide anything
	// now (it lost the cluster's quorum for longer than its lease, so it
	// cannot know of revocations): every login and every command is
	// refused with it (SQLSTATE 57P03) until a snapshot without it is
	// published.
	Unavailable string
	// Accepting, when set, says whether the node takes new sessions now
	// (its recordings waiting for the long-term store are under their cap):
	// a non-nil error refuses new logins with it (SQLSTATE 57P03); open
	// sessions go on. Nil: always.
	Accepting func() error
}

// ErrUnavailable wraps why a node refuses to decide anything now
// (Snapshot.Unavailable).
var ErrUnavailable = errors.New("phigate node unavailable")

type unavailableError struct{ why string }

func (e *unavailableError) Error() string { return "node unavailable: " + e.why }
func (e *unavailableError) Unwrap() error { return ErrUnavailable }

// WithUnavailable returns a copy of s marked unavailable for why ("" clears it).
// The copy shares everything else with s.
func (s *Snapshot) WithUnavailable(why string) *Snapshot {
	c := *s
	c.Unavailable = why
	return &c
}

// Admission is what a session was admitted with: re-checked against every
// new snapshot (Snapshot.Readmit).
type Admission struct {
	Identity identity.Identity
	Resource *resource.Resource
	Grant    *policy.Grant
	Profile  *mask.Profile // nil: results are not masked
}

// Admit decides whether id may open a session on the resource named name.
// Denial reasons are safe to show to the agent.
func (s *Snapshot) Admit(id identity.Identity, name string) (Admission, policy.Decision) {
	if s.Unavailable != "" {
		return Admission{}, policy.Decision{Reason: "node unavailable: " + s.Unavailable}
	}
	r := s.Resources[name]
	if r == nil {
		return Admission{}, policy.Decision{Reason: "unknown resource"}
	}
	d := s.Policy.Connect(id, r.Name)
	if !d.Allowed {
		return Admission{}, d
	}
	a := Admission{Identity: id, Resource: r, Grant: d.Grant}
	if d.Grant.Masking != "" {
		if a.Profile = s.Profiles[d.Grant.Masking]; a.Profile == nil {
			return Admission{}, policy.Decision{Grant: d.Grant, Reason: "masking profile " + d.Grant.Masking + " is not defined"}
		}
	}
	return a, d
}

// ErrRevoked wraps why a live session may not go on under a new snapshot.
var ErrRevoked = errors.New("access revoked")

// Readmit re-checks a live session admitted as a under s. It returns the
// admission the session goes on with: its grant may have changed in what
// can change live (the statement classes and functions it allows, as long
// as they need the same upstream login level). It fails, wrapping
// ErrRevoked, when the session must end: its identity is no longer
// accepted, its resource is gone or changed where it connects, no grant
// admits it any more, or the grant that does differs in what was fixed
// when the session opened (its login level, its read-only upstream
// session, or whether its results are masked at all). A masking profile
// that changed (its rules, or another profile named by the grant) is
// adopted: results from then on are masked by it.
func (s *Snapshot) Readmit(a Admission) (Admission, error) {
	if s.Unavailable != "" {
		return Admission{}, &unavailableError{s.Unavailable}
	}
	id, err := s.Auth.Recheck(a.Identity)
	if err != nil {
		return Admission{}, revoked("the identity is no longer accepted")
	}
	r := s.Resources[a.Resource.Name]
	if r == nil {
		return Admission{}, revoked("the resource was removed")
	}
	if !r.SameTarget(a.Resource) {
		return Admission{}, revoked("the resource was changed")
	}
	d := s.Policy.Connect(id, r.Name)
	if !d.Allowed {
		return Admission{}, revoked(d.Reason)
	}
	g := d.Grant
	if g.Level() != a.Grant.Level() || g.ReadOnly() != a.Grant.ReadOnly() || (g.Masking == "") != (a.Grant.Masking == "") {
		return Admission{}, revoked("the grant now admitting the session (" + g.Name + ") differs in its login level, read-only session or whether results are masked; reconnect")
	}
	var p *mask.Profile
	if g.Masking != "" {
		if p = s.Profiles[g.Masking]; p == nil {
			return Admission{}, revoked("the masking profile " + g.Masking + " is not defined")
		}
	}
	// The session keeps its resource (it is connected to it) and adopts
	// the identity's groups, the grant and its masking profile as they
	// are now.
	return Admission{Identity: id, Resource: a.Resource, Grant: g, Profile: p}, nil
}

func revoked(why string) error { return &revokedError{why} }

type revokedError struct{ why string }

func (e *revokedError) Error() string { return "access revoked: " + e.why }
func (e *revokedError) Unwrap() error { return ErrRevoked }

// State holds the current Snapshot. Readers load it per request with one
// atomic load; writers publish a whole new one.
type State struct {
	cur atomic.Pointer[Snapshot]
}

// NewState holds first as revision 1.
func NewState(first *Snapshot) *State {
	s := &State{}
	s.Publish(first)
	return s
}

// Load returns the current snapshot. Never nil.
func (s *State) Load() *Snapshot { return s.cur.Load() }

// Publish makes next the current snapshot, with the next revision; it
// returns that revision. next must not be changed afterwards.
func (s *State) Publish(next *Snapshot) uint64 {
	for {
		prev := s.cur.Load()
		next.Revision = 1
		if prev != nil {
			next.Revision = prev.Revision + 1
		}
		if s.cur.CompareAndSwap(prev, next) {
			return next.Revision
		}
	}
}
