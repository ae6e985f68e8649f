package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/approval"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/record"
)

// Just-in-time approvals on a node: the cluster's store of requests
// (cluster.Approvals, which pgwire files and waits on), and the approvers'
// endpoints of the HTTPS API (listen.api). Approvers authenticate as
// agents do ("Authorization: Bearer TOKEN": a static token or an OIDC
// JWT); a request is shown to its requester, the members of its approver
// groups and the admins, and decided only by members of its approver
// groups who did not ask. Each vote is recorded in a recording of the
// node's own (intent first, then the outcome) before and after it is
// written to the cluster state.
//
//	GET  /v1/approvals[?state=&identity=&resource=&limit=]
//	GET  /v1/approvals/{id}
//	POST /v1/approvals/{id}/approve   {"reason": "...", "window": "30m"}
//	POST /v1/approvals/{id}/deny      {"reason": "..."}
//
// A node without the cluster's quorum answers 503: it decides nothing it
// could not write.

// startApprovals starts the cluster's approvals store on this node.
func (n *Node) startApprovals() *cluster.Approvals {
	lease := n.cfg.Cluster.Lease
	if lease <= 0 {
		lease = defaultLease
	}
	a := cluster.NewApprovals(n.member.Client(), n.id, lease, n.quorumOK.Load)
	a.SetLogger(n.log)
	ctx, stop := context.WithCancel(context.Background())
	n.stopApprovals, n.approvalsDone = stop, make(chan struct{})
	go func() {
		defer close(n.approvalsDone)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("approvals stopped", "err", err)
		}
	}()
	return a
}

// approvalRoutes adds the approvers' endpoints to mux.
func (n *Node) approvalRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/approvals", n.approver(n.listApprovals))
	mux.Handle("GET /v1/approvals/{id}", n.approver(n.showApproval))
	mux.Handle("POST /v1/approvals/{id}/approve", n.approver(func(r *http.Request, who identity.Identity) (any, error) {
		return n.vote(r, who, true)
	}))
	mux.Handle("POST /v1/approvals/{id}/deny", n.approver(func(r *http.Request, who identity.Identity) (any, error) {
		return n.vote(r, who, false)
	}))
}

// approver authenticates a request's identity (any identity of the
// policy), then serves it; errors map to statuses as approvalStatus says.
func (n *Node) approver(h adminHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": http.StatusText(http.StatusUnauthorized)})
			return
		}
		snap := n.state.Load()
		if snap.Unavailable != "" || n.approvals == nil || !n.approvals.Available() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "this node cannot reach the cluster's quorum; nothing was read or decided"})
			return
		}
		who, err := snap.Auth.Authenticate(r.Context(), identity.Credentials{Token: token, Client: identity.ClientAddr(addrString(r.RemoteAddr))})
		if err != nil {
			n.log.Warn("approvals request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", "invalid token")
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": http.StatusText(http.StatusUnauthorized)})
			return
		}
		out, err := h(r, who)
		if err != nil {
			status := approvalStatus(err)
			if status == http.StatusInternalServerError {
				n.log.Warn("approvals request failed", "path", r.URL.Path, "identity", who.Name, "err", err)
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func approvalStatus(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, approval.ErrSelfApproval), errors.Is(err, approval.ErrNotApprover):
		return http.StatusForbidden
	case errors.Is(err, approval.ErrDecided), errors.Is(err, approval.ErrVoted):
		return http.StatusConflict
	case errors.Is(err, approval.ErrWindow):
		return http.StatusBadRequest
	case errors.Is(err, approval.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// maySee reports whether who may read r: its requester, a member of its
// approver groups, or an admin.
func (n *Node) maySee(r *approval.Request, who identity.Identity) bool {
	if who.Name == r.Identity || slices.ContainsFunc(r.Approvers, who.InGroup) {
		return true
	}
	n.reloadMu.Lock()
	admins := n.policy.Admins
	n.reloadMu.Unlock()
	return admins.admits(who)
}

func (n *Node) listApprovals(r *http.Request, who identity.Identity) (any, error) {
	q := r.URL.Query()
	f := approval.Filter{State: approval.State(q.Get("state")), Identity: q.Get("identity"), Resource: q.Get("resource")}
	if s := q.Get("limit"); s != "" {
		l, err := strconv.Atoi(s)
		if err != nil || l < 0 {
			return nil, badRequest("limit: %q is not a count", s)
		}
		f.Limit = l
	}
	all, err := n.approvals.List(r.Context(), f)
	if err != nil {
		return nil, err
	}
	out := []*approval.Request{}
	for _, a := range all {
		if n.maySee(a, who) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (n *Node) showApproval(r *http.Request, who identity.Identity) (any, error) {
	a, err := n.approvals.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if !n.maySee(a, who) {
		// As if it did not exist: ids are not secrets, but what was asked is.
		return nil, approval.ErrNotFound
	}
	return a, nil
}

// VoteBody is what an approver sends with a vote.
type VoteBody struct {
	Reason string `json:"reason"`
	// Window asks for a time-boxed grant (a Go duration, "30m") instead
	// of a one-time run; approvals only.
	Window string `json:"window,omitempty"`
}

// maxVoteBytes bounds a vote's body.
const maxVoteBytes = 16 << 10

func (n *Node) vote(r *http.Request, who identity.Identity, approve bool) (any, error) {
	var body VoteBody
	if err := json.NewDecoder(io.LimitReader(r.Body, maxVoteBytes)).Decode(&body); err != nil {
		return nil, badRequest("body: %v", err)
	}
	body.Reason = strings.TrimSpace(body.Reason)
	if body.Reason == "" {
		return nil, badRequest("a reason is required")
	}
	scope, window := approval.Once, time.Duration(0)
	if body.Window != "" {
		if !approve {
			return nil, badRequest("a denial grants no window")
		}
		d, err := time.ParseDuration(body.Window)
		if err != nil || d <= 0 {
			return nil, badRequest("window: %q is not a positive duration", body.Window)
		}
		scope, window = approval.Window, d
	}
	id := r.PathValue("id")
	rec, err := n.startVoteRecord(r.Context(), who.Name, id, approve, body.Reason, scope)
	if err != nil {
		n.log.Error("cannot record a vote; not casting it", "err", err)
		return nil, &httpError{http.StatusServiceUnavailable, "the vote could not be recorded; it was not cast"}
	}
	res, verr := n.approvals.Vote(r.Context(), id, approval.Approver{Name: who.Name, Groups: who.Groups}, approve, body.Reason, scope, window)
	if err := n.endVoteRecord(r.Context(), rec, id, res, verr); err != nil {
		n.log.Error("cannot record a vote's outcome", "err", err)
	}
	if verr != nil {
		return nil, verr
	}
	n.log.Info("approval vote cast", "request", id, "identity", who.Name, "approve", approve, "state", string(res.State))
	return res, nil
}

// startVoteRecord records an approver's vote before it is cast, in a
// recording of its own (as policy changes are).
func (n *Node) startVoteRecord(ctx context.Context, who, id string, approve bool, reason string, scope approval.Scope) (*session.Recording, error) {
	n.recMu.Lock()
	recorder := n.recorder
	n.recMu.Unlock()
	if recorder == nil {
		return nil, errors.New("no recorder")
	}
	rec, err := recorder.Start(session.NewID(time.Now()))
	if err != nil {
		return nil, err
	}
	rec.SetSubject(who, "")
	a := &record.Approval{Request: id, Step: record.ApprovalVote, By: []string{who}, Reason: reason, Scope: string(scope), Node: n.id}
	if !approve {
		a.Scope = "deny"
	}
	if _, err := rec.Append(&record.Event{Kind: record.KindApproval, Approval: a}); err != nil {
		return nil, err
	}
	if err := rec.Sync(ctx); err != nil {
		return nil, err
	}
	return rec, nil
}

// endVoteRecord records what a vote did (the request's state after it, or
// why it was refused) and closes the recording.
func (n *Node) endVoteRecord(ctx context.Context, rec *session.Recording, id string, res *approval.Request, verr error) error {
	reason := "vote refused: " + fmt.Sprint(verr)
	if verr == nil {
		reason = "vote cast"
		if res.State != approval.Pending {
			a := &record.Approval{Request: id, Step: string(res.State)}
			if d := res.Decision; d != nil {
				a.By, a.Reason, a.Scope, a.Node, a.At = d.By, d.Reason, string(d.Scope), d.Node, d.At.UTC().Format(time.RFC3339Nano)
				if !d.Until.IsZero() {
					a.Until = d.Until.UTC().Format(time.RFC3339)
				}
			}
			if _, err := rec.Append(&record.Event{Kind: record.KindApproval, Approval: a}); err != nil {
				return err
			}
		}
	}
	if _, err := rec.Append(&record.Event{Kind: record.KindSessionEnd, End: &record.SessionEnd{Reason: reason}}); err != nil {
		return err
	}
	return rec.Close(ctx)
}

// Approvals is the node's store of approval requests (nil before Start).
func (n *Node) Approvals() *cluster.Approvals { return n.approvals }
