// Package approval holds what just-in-time approval of high-risk commands
// shares across parts: the request a node files for a command an approval
// rule gates, the votes approvers cast, the decision, and the Service a
// proxy uses to file a request and learn its fate. The cluster state keeps
// requests (cluster.Approvals implements Service with etcd transactions);
// proxies hold or refuse the command; node serves the approvers' API.
//
// A request's life:
//
//	pending ──(k distinct approvals)──▶ approved ──(the command runs)──▶ used
//	   │ ──(one denial)──────────────▶ denied
//	   │ ──(TTL or hold bound passed)─▶ expired
//	   │ ──(the agent left or cancelled while held)──▶ withdrawn
//	   └ ──(the holding node died while held)──▶ abandoned
//
// Every change after pending is written at most once, by a transaction
// that compares the request's revision: a request is never both approved
// and denied, never decided twice, never approved by fewer than Required
// distinct people, never approved by the identity that asked.
//
// Pure: types and rules, no I/O.
package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"time"
)

// State is where a request is in its life.
type State string

const (
	Pending   State = "pending"
	Approved  State = "approved"
	Denied    State = "denied"
	Expired   State = "expired"
	Withdrawn State = "withdrawn"
	Abandoned State = "abandoned"
	// Used: approved, and the command it was for has run (a one-time
	// approval is spent).
	Used State = "used"
)

// Final reports whether nothing more can happen to a request in state s
// (but an approved one-time request becomes used when it runs).
func (s State) Final() bool { return s != Pending }

// Scope is what an approval grants.
type Scope string

const (
	// Once: this statement, run once.
	Once Scope = "once"
	// Window: the identity may run what the rule gates on the resource,
	// without asking again, until the window closes.
	Window Scope = "window"
)

// Request is one command waiting for (or past) people's decision. It holds
// no PHI: the statement is kept with its literals and parameters replaced
// by placeholders (the session's recording has it verbatim).
type Request struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	// Groups of the identity that asked, for the approvers' view.
	Groups   []string `json:"groups,omitempty"`
	Resource string   `json:"resource"`
	Session  string   `json:"session"`
	Node     string   `json:"node"` // the node holding the session
	Command  uint64   `json:"command"`
	// Statement is the command's text with literals and parameters masked.
	Statement string `json:"statement"`
	// Fingerprint identifies the exact command (identity, resource, rule,
	// text and parameters) without revealing it: a fail-fast request is
	// consumed by the same command sent again.
	Fingerprint string   `json:"fingerprint"`
	Classes     []string `json:"classes,omitempty"`
	// Matched is what the rule matched ("unbounded-write", "table-write
	// audit.events", ...).
	Matched []string `json:"matched,omitempty"`
	Grant   string   `json:"grant"`
	Rule    string   `json:"rule"`
	// Approvers are the groups that may decide; Required how many distinct
	// approvals it takes.
	Approvers []string `json:"approvers"`
	Required  int      `json:"required"`
	Mode      string   `json:"mode"` // hold | fail-fast
	// MaxWindow is the longest time-boxed grant an approver may give (0:
	// one-time runs only).
	MaxWindow time.Duration `json:"max_window,omitempty"`
	// Reason is what the agent said it needs this for (SET phigate.reason,
	// or its application_name), as it said it.
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`

	State    State     `json:"state"`
	Votes    []Vote    `json:"votes,omitempty"`
	Decision *Decision `json:"decision,omitempty"`
}

// Vote is one approver's answer.
type Vote struct {
	Approver string    `json:"approver"`
	Approve  bool      `json:"approve"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	Node     string    `json:"node"` // where it was cast
	// Scope and Until: what an approving vote grants (Window until Until).
	Scope Scope     `json:"scope,omitempty"`
	Until time.Time `json:"until,omitempty"`
}

// Decision is how a request left pending: by whom (the approvers whose
// votes decided, or the node that expired, withdrew or abandoned it), when
// and why; for an approval, what it grants.
type Decision struct {
	State  State     `json:"state"`
	By     []string  `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	Node   string    `json:"node,omitempty"`
	Scope  Scope     `json:"scope,omitempty"`
	Until  time.Time `json:"until,omitempty"`
	// UsedAt and UsedBy: when and in which session the approved command
	// ran (state used).
	UsedAt      time.Time `json:"used_at,omitzero"`
	UsedSession string    `json:"used_session,omitempty"`
}

// Errors of Service and of votes.
var (
	ErrNotFound = errors.New("approval: no such request")
	// ErrDecided: the request is no longer pending.
	ErrDecided = errors.New("approval: the request is already decided")
	// ErrSelfApproval: the identity that asked cannot decide.
	ErrSelfApproval = errors.New("approval: the requester cannot decide their own request")
	// ErrNotApprover: the identity is in none of the rule's approver groups.
	ErrNotApprover = errors.New("approval: not in any of the rule's approver groups")
	// ErrVoted: this approver has already voted on the request.
	ErrVoted = errors.New("approval: already voted on this request")
	// ErrUnavailable: the cluster state cannot be reached (no quorum);
	// nothing was decided.
	ErrUnavailable = errors.New("approval: the cluster state is unavailable")
	// ErrWindow: the time-boxed grant asked for is longer than the rule allows.
	ErrWindow = errors.New("approval: the rule does not allow a grant that long")
)

// Approver is who casts a vote, as the approvals API authenticated them.
type Approver struct {
	Name   string
	Groups []string
}

// CheckVoter reports why approver may not vote on r (nil: they may).
func CheckVoter(r *Request, a Approver) error {
	if r.State != Pending {
		return ErrDecided
	}
	if a.Name == r.Identity {
		return ErrSelfApproval
	}
	allowed := false
	for _, g := range r.Approvers {
		allowed = allowed || slices.Contains(a.Groups, g)
	}
	if !allowed {
		return ErrNotApprover
	}
	for _, v := range r.Votes {
		if v.Approver == a.Name {
			return ErrVoted
		}
	}
	return nil
}

// Cast adds v to a pending request and decides it when the vote is
// decisive: one denial denies; Required distinct approvals approve (the
// scope granted is the narrowest the approvers agreed to: a window only if
// every approval gave one, until the earliest end). It returns whether the
// request is now decided. The caller has checked the voter (CheckVoter).
func Cast(r *Request, v Vote) bool {
	r.Votes = append(r.Votes, v)
	if !v.Approve {
		r.State = Denied
		r.Decision = &Decision{State: Denied, By: []string{v.Approver}, Reason: v.Reason, At: v.At, Node: v.Node}
		return true
	}
	var by, reasons []string
	scope, until := Window, time.Time{}
	for _, x := range r.Votes {
		if !x.Approve {
			continue
		}
		by = append(by, x.Approver)
		reasons = append(reasons, x.Reason)
		if x.Scope != Window {
			scope = Once
		} else if until.IsZero() || x.Until.Before(until) {
			until = x.Until
		}
	}
	if len(by) < r.Required {
		return false
	}
	if scope == Once {
		until = time.Time{}
	}
	r.State = Approved
	r.Decision = &Decision{State: Approved, By: by, Reason: joinReasons(by, reasons), At: v.At, Node: v.Node, Scope: scope, Until: until}
	return true
}

func joinReasons(by, reasons []string) string {
	if len(by) == 1 {
		return reasons[0]
	}
	out := ""
	for i := range by {
		if i > 0 {
			out += "; "
		}
		out += by[i] + ": " + reasons[i]
	}
	return out
}

// Fingerprint identifies a command for a fail-fast retry: the same
// identity, resource and rule, the same text and the same parameters.
func Fingerprint(identity, resource, rule, text string, params [][]byte) string {
	h := sha256.New()
	for _, s := range []string{identity, resource, rule, text} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, p := range params {
		if p == nil {
			h.Write([]byte{0xff})
			continue
		}
		h.Write([]byte{1})
		h.Write(p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WindowKey names a time-boxed grant: identity, resource and rule.
func WindowKey(identity, resource, grant, rule string) string {
	h := sha256.Sum256([]byte(identity + "\x00" + resource + "\x00" + grant + "\x00" + rule))
	return hex.EncodeToString(h[:])
}

// Filter selects requests to list.
type Filter struct {
	State    State // "": any
	Identity string
	Resource string
	Limit    int // 0: all
}

// Service is what a proxy needs of the cluster's approvals. Every method
// fails with ErrUnavailable (wrapped) when the cluster state cannot be
// reached: the command then does not run.
type Service interface {
	// Preapproved looks for what lets a gated command run without a new
	// request: a time-boxed grant for (identity, resource, grant, rule),
	// or an approved fail-fast request with this fingerprint, which it
	// marks used by session (so it runs once). nil, nil: none.
	Preapproved(ctx context.Context, r *Request) (*Request, error)
	// Open files r (ID, Created and Expires set by the caller). A held
	// request is tied to the node's liveness: if the node dies while it
	// is pending it becomes abandoned.
	Open(ctx context.Context, r *Request, held bool) error
	// Watch sends the request as it changes (each new vote, then its
	// decision) until it is final or ctx ends; the channel closes then.
	Watch(ctx context.Context, id string) (<-chan *Request, error)
	// Close ends a pending request as state (expired, withdrawn) with a
	// reason; it returns the request as it now is, which may have been
	// decided meanwhile (then it is unchanged).
	Close(ctx context.Context, id string, state State, reason string) (*Request, error)
	// Use marks an approved one-time request used by the session's
	// command, exactly once; false: it was not approved (or already used).
	Use(ctx context.Context, id, session string) (bool, error)
	// Available reports whether the cluster state is reachable now (a
	// quorum), so that a gated command is refused at once without one.
	Available() bool
}
