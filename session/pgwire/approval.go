package pgwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/approval"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/sqlclass"
)

// Just-in-time approval (policy.ApprovalRule, session/approval).
//
// decide marks a command that one of its grant's approval rules gates
// (frontendState.gate); the command is recorded with decision "approval",
// then approve settles it before anything reaches the server:
//
//   - an earlier approval covers it (a time-boxed grant, or the approved
//     fail-fast request for this very command): it runs (approval
//     "preapproved");
//   - otherwise a request is filed in the cluster state (approval
//     "requested"), the agent gets a NoticeResponse naming it, and
//     either (fail-fast) the command is refused with the request's id, or
//     (hold) the frontend waits for the decision, recording each vote: it
//     runs when approved, and is refused with 42501 naming the decision,
//     the deciders and their reason when denied or expired. If the agent
//     disconnects or cancels, or the session ends, while it waits, the
//     request is withdrawn.
//
// Nothing runs without a decision phigate could read: without the
// cluster's approvals (no quorum, no service, a call that fails) a gated
// command is refused at once (approval "unavailable").

// gate is the approval rule a command matched, and what matched.
type gate struct {
	rule    *policy.ApprovalRule
	matched []string
}

// approvalCallTimeout bounds each call to the cluster's approvals; a
// call that cannot finish in time fails closed.
const approvalCallTimeout = 5 * time.Second

// Settings an agent states its reason with.
const reasonSetting = "phigate.reason"

// codeQueryCanceled is what PostgreSQL answers a cancelled statement with.
const codeQueryCanceled = "57014"

// gateOf returns the approval rule that gates actions under the session's
// grant, and sets rc's decision to say so; nil when none does.
func (c *conn) gateOf(actions []policy.Action, rc *record.Command) *gate {
	if len(c.grant.Approvals) == 0 {
		return nil
	}
	r, why := c.grant.NeedsApproval(actions)
	if r == nil {
		return nil
	}
	rc.Decision = "approval"
	rc.Reason = fmt.Sprintf("needs approval under rule %q (%s)", r.Name, strings.Join(why, ", "))
	return &gate{rule: r, matched: why}
}

// withRewrites marks as unclassified every statement that writes to a
// relation the server rewrites (a view, a foreign table, a table with
// rules): what runs there is not what phigate read. Only consulted when
// the grant has approval rules and a statement writes.
func (c *conn) withRewrites(ctx context.Context, stmts []sqlclass.Statement, rc *record.Command) ([]sqlclass.Statement, *pgproto3.ErrorResponse) {
	if len(c.grant.Approvals) == 0 {
		return stmts, nil
	}
	var rw map[string]bool
	var out []sqlclass.Statement
	for i, s := range stmts {
		if len(s.Writes) == 0 || slices.Contains(s.Risks, policy.RiskUnclassified) {
			continue
		}
		if rw == nil {
			var err error
			if rw, err = c.cat.rewrittenOf(ctx); err != nil {
				c.log.Error("cannot read which relations the database rewrites", "err", err)
				rc.Decision, rc.Reason = "deny", "the database's views and rules could not be read"
				return nil, pgError("ERROR", codeSystemError, "phigate cannot check where this statement writes; it was not run")
			}
		}
		hit := c.fe.mayDefine // a temporary view of the session's own is invisible to the catalog
		for _, w := range s.Writes {
			hit = hit || rw[w]
		}
		if !hit {
			continue
		}
		if out == nil {
			out = slices.Clone(stmts) // the classified slice is shared through the cache
		}
		out[i].Risks = append(slices.Clone(s.Risks), policy.RiskUnclassified)
	}
	if out == nil {
		return stmts, nil
	}
	return out, nil
}

// noteReason keeps the reason the agent states with SET phigate.reason.
func (c *conn) noteReason(stmts []sqlclass.Statement) {
	for _, s := range stmts {
		if s.Kind != "variable_set_stmt" {
			continue
		}
		name, value, reset, ok := sqlclass.Setting(s.Text)
		switch {
		case !ok:
		case name == reasonSetting && !reset:
			c.fe.reason = value
		case name == reasonSetting || name == "all":
			c.fe.reason = ""
		}
	}
}

// statedReason is what the agent said it needs approval for: SET
// phigate.reason, else its application_name.
func (c *conn) statedReason() string {
	if c.fe.reason != "" {
		return c.fe.reason
	}
	if c.st != nil {
		if app := c.st.params["application_name"]; app != "" {
			return "application_name: " + app
		}
	}
	return ""
}

// approve settles a gated command (recorded already, as cmd): nil when it
// may run now, an error response when it must not. err ends the session
// (the recording failed, the agent left).
func (c *conn) approve(ctx context.Context, cmd uint64, g *gate, text string, params [][]byte, classes []string) (*pgproto3.ErrorResponse, error) {
	svc := c.srv.cfg.Approvals
	rule := g.rule
	step := func(a *record.Approval) error {
		a.Command = cmd
		lsn, err := c.rec.Append(&record.Event{Kind: record.KindApproval, Approval: a})
		if err == nil {
			c.cmdPos.Store(uint64(lsn))
			err = c.rec.Sync(ctx)
		}
		if err != nil {
			return c.recordingFailed(err)
		}
		return nil
	}
	unavailable := func(why string) (*pgproto3.ErrorResponse, error) {
		if err := step(&record.Approval{Step: record.ApprovalUnavailable, Rule: rule.Name, Matched: g.matched, Reason: why}); err != nil {
			return nil, err
		}
		return pgError("ERROR", codeCannotConnectNow, "phigate: this command needs approval (rule "+quote(rule.Name)+"), but "+why+"; it was not run"), nil
	}
	if svc == nil {
		return unavailable("this node has no approvals service")
	}
	if !svc.Available() {
		return unavailable("this node cannot reach the cluster's quorum")
	}
	now := time.Now()
	req := &approval.Request{
		Identity: c.ident.Name, Groups: slices.Clone(c.ident.Groups), Resource: c.res.Name,
		Session: c.id, Node: c.srv.cfg.NodeID, Command: cmd,
		Statement:   sqlclass.Redact(text),
		Fingerprint: approval.Fingerprint(c.ident.Name, c.res.Name, rule.Name, text, params),
		Classes:     classes, Matched: g.matched, Grant: c.grant.Name, Rule: rule.Name,
		Approvers: rule.Approvers, Required: rule.Required, Mode: string(rule.Mode), MaxWindow: rule.MaxWindow,
		Reason: c.statedReason(), Created: now, Expires: now.Add(rule.TTL), State: approval.Pending,
	}
	if req.Statement == "" {
		req.Statement = "(a statement phigate could not restate without its literals; see the session's recording)"
	}
	cctx, cancel := context.WithTimeout(ctx, approvalCallTimeout)
	pre, err := svc.Preapproved(cctx, req)
	cancel()
	if err != nil {
		c.log.Warn("approvals: cannot look for an earlier approval", "err", err)
		return unavailable("the cluster's approvals could not be reached")
	}
	if pre != nil {
		a := decisionStep(record.ApprovalPreapproved, pre)
		a.Rule, a.Matched = rule.Name, g.matched
		if err := step(a); err != nil {
			return nil, err
		}
		return nil, nil
	}
	hold := rule.Mode != policy.ModeFailFast
	req.ID = session.NewID(now)
	cctx, cancel = context.WithTimeout(ctx, approvalCallTimeout)
	err = svc.Open(cctx, req, hold)
	cancel()
	if err != nil {
		c.log.Warn("approvals: cannot file a request", "err", err)
		return unavailable("the cluster's approvals could not be reached")
	}
	if err := step(&record.Approval{Request: req.ID, Step: record.ApprovalRequested, Rule: rule.Name, Matched: g.matched,
		Approvers: rule.Approvers, Required: rule.Required, Mode: req.Mode, Reason: req.Reason}); err != nil {
		return nil, err
	}
	c.log.Info("command waits for approval", "request", req.ID, "rule", rule.Name, "mode", req.Mode)
	c.tellAgent(approvalNotice(req, hold, rule.Hold))
	if !hold {
		return pgError("ERROR", codeInsufficientPriv, fmt.Sprintf(
			"permission denied by phigate: this command needs approval (rule %s); request %s is pending. Send the same statement again once it is approved",
			quote(rule.Name), req.ID)), nil
	}
	deny, err := c.hold(ctx, req, rule, step)
	if deny != nil || err != nil {
		return deny, err
	}
	return c.recheckAfterHold()
}

// hold waits for a held request's decision, recording each vote.
func (c *conn) hold(ctx context.Context, req *approval.Request, rule *policy.ApprovalRule, step func(*record.Approval) error) (*pgproto3.ErrorResponse, error) {
	svc := c.srv.cfg.Approvals
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	updates, err := svc.Watch(wctx, req.ID)
	if err != nil {
		c.log.Warn("approvals: cannot watch a request", "request", req.ID, "err", err)
		return c.endHold(ctx, req, approval.Withdrawn, "the holding node could not watch it", step, errors.New("watch failed"))
	}
	// What the agent sent before this command runs meanwhile.
	if err := c.fe.uout.flush(); err != nil {
		return c.endHold(ctx, req, approval.Withdrawn, "the session ended", step, c.recordingFailed(err))
	}
	// Copy the command: the agent's read buffer may move while phigate
	// watches for a disconnect.
	c.fe.cin.raw = slices.Clone(c.fe.cin.raw)
	gone, stopWatching := c.watchAgent()
	defer stopWatching()
	cancelled := c.holding()
	defer c.held()
	timer := time.NewTimer(rule.Hold)
	defer timer.Stop()
	seen := 0
	for {
		select {
		case r, ok := <-updates:
			if !ok {
				return c.endHold(ctx, req, approval.Withdrawn, "the holding node lost its watch", step, errors.New("watch ended"))
			}
			for ; seen < len(r.Votes); seen++ {
				v := r.Votes[seen]
				if r.State != approval.Pending && seen == len(r.Votes)-1 {
					break // the deciding vote is recorded with the decision
				}
				if err := step(voteStep(req.ID, v)); err != nil {
					return nil, err
				}
			}
			if r.State == approval.Pending {
				continue
			}
			return c.decided(ctx, r, step)
		case <-timer.C:
			return c.endHold(ctx, req, approval.Expired, fmt.Sprintf("nobody decided within %s", rule.Hold), step, nil)
		case <-gone:
			return c.endHold(ctx, req, approval.Withdrawn, "the agent disconnected", step, &peerError{"client", io.EOF})
		case <-cancelled:
			return c.endHold(ctx, req, approval.Withdrawn, "the agent cancelled the command", step, nil)
		case <-c.backendDone:
			return c.endHold(ctx, req, approval.Withdrawn, "the session ended", step, errors.New("session ended while a command waited for approval"))
		case <-ctx.Done():
			return c.endHold(ctx, req, approval.Withdrawn, "the session ended", step, ctx.Err())
		}
	}
}

// endHold closes a held request that nobody decided (expired, withdrawn)
// and refuses the command; when it was decided meanwhile, the decision
// stands. fatal, when set, ends the session after the step is recorded.
func (c *conn) endHold(ctx context.Context, req *approval.Request, state approval.State, why string, step func(*record.Approval) error, fatal error) (*pgproto3.ErrorResponse, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), approvalCallTimeout)
	r, err := c.srv.cfg.Approvals.Close(cctx, req.ID, state, why)
	cancel()
	if err != nil {
		c.log.Warn("approvals: cannot close a request", "request", req.ID, "err", err)
		r = &approval.Request{ID: req.ID, State: state, Decision: &approval.Decision{State: state, Reason: why + " (not stored: the cluster's approvals could not be reached)"}}
	}
	if fatal == nil && r.State == approval.Approved {
		return c.decided(ctx, r, step)
	}
	if r.State == approval.Pending || r.State == approval.Approved || r.State == approval.Used {
		// Approved as it was being closed, but the command is not run:
		// the session is going. Record what the store says.
		r = &approval.Request{ID: req.ID, State: state, Decision: &approval.Decision{State: state, Reason: why}}
	}
	if err := step(decisionStep(string(r.State), r)); err != nil {
		return nil, err
	}
	if fatal != nil {
		return nil, fatal
	}
	return refusal(r), nil
}

// decided acts on a request that left pending: an approved one runs once
// its one-time approval is spent (exactly once, in the cluster state; at
// the same time as its decision is made durable here); any other is
// refused.
func (c *conn) decided(ctx context.Context, r *approval.Request, step func(*record.Approval) error) (*pgproto3.ErrorResponse, error) {
	if r.State != approval.Approved {
		if err := step(decisionStep(string(r.State), r)); err != nil {
			return nil, err
		}
		return refusal(r), nil
	}
	type spent struct {
		ok  bool
		err error
	}
	done := make(chan spent, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, approvalCallTimeout)
		ok, err := c.srv.cfg.Approvals.Use(cctx, r.ID, c.id)
		cancel()
		done <- spent{ok, err}
	}()
	err := step(decisionStep(string(r.State), r))
	use := <-done
	if err != nil {
		return nil, err
	}
	if use.err != nil || !use.ok {
		if use.err != nil {
			c.log.Warn("approvals: cannot mark a request used", "request", r.ID, "err", use.err)
		}
		if err := step(&record.Approval{Request: r.ID, Step: record.ApprovalUnavailable, Reason: "approved, but the approval could not be spent; the command was not run"}); err != nil {
			return nil, err
		}
		return pgError("ERROR", codeCannotConnectNow, fmt.Sprintf("phigate: request %s was approved, but the approval could not be recorded as used; the command was not run", r.ID)), nil
	}
	return nil, nil
}

// recheckAfterHold makes sure the session may still run the command after
// a wait: the state may have changed meanwhile (readmit ends the session
// if it no longer admits it), and the grant as it now is must still allow
// the command.
func (c *conn) recheckAfterHold() (*pgproto3.ErrorResponse, error) {
	if err := c.readmit(); err != nil {
		return nil, err
	}
	if d := policy.Command(c.grant, c.fe.actions); !d.Allowed {
		return pgError("ERROR", codeInsufficientPriv, "permission denied by phigate: "+d.Reason+" (the policy changed while the command waited for approval)"), nil
	}
	return nil, nil
}

func decisionStep(stepName string, r *approval.Request) *record.Approval {
	a := &record.Approval{Request: r.ID, Step: stepName}
	if d := r.Decision; d != nil {
		a.By, a.Reason, a.Scope, a.Node = d.By, d.Reason, string(d.Scope), d.Node
		if !d.At.IsZero() {
			a.At = d.At.UTC().Format(time.RFC3339Nano)
		}
		if !d.Until.IsZero() {
			a.Until = d.Until.UTC().Format(time.RFC3339)
		}
	}
	return a
}

func voteStep(id string, v approval.Vote) *record.Approval {
	a := &record.Approval{Request: id, Step: record.ApprovalVote, By: []string{v.Approver}, Reason: v.Reason,
		Node: v.Node, At: v.At.UTC().Format(time.RFC3339Nano), Scope: string(v.Scope)}
	if !v.Approve {
		a.Scope = "deny"
	}
	return a
}

// refusal is the agent's error for a request that was not approved.
func refusal(r *approval.Request) *pgproto3.ErrorResponse {
	if r.State == approval.Withdrawn && r.Decision != nil && strings.Contains(r.Decision.Reason, "cancelled") {
		return pgError("ERROR", codeQueryCanceled, "canceling statement due to user request (it was waiting for approval: request "+r.ID+" withdrawn)")
	}
	msg := fmt.Sprintf("permission denied by phigate: request %s was %s", r.ID, r.State)
	if d := r.Decision; d != nil {
		if len(d.By) > 0 {
			msg += " by " + strings.Join(d.By, ", ")
		}
		if d.Reason != "" {
			msg += ": " + d.Reason
		}
	}
	return pgError("ERROR", codeInsufficientPriv, msg)
}

// approvalNotice tells the agent, at once, that its command waits and how
// it is approved. It names the request, the rule and the approver groups:
// nothing of the statement.
func approvalNotice(r *approval.Request, hold bool, bound time.Duration) *pgproto3.NoticeResponse {
	what := "it was not run; send the same statement again once the request is approved"
	if hold {
		what = fmt.Sprintf("it waits up to %s and runs as soon as it is approved", bound)
	}
	return &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
		Message: fmt.Sprintf("phigate: this command needs approval (rule %s): request %s; %s", quote(r.Rule), r.ID, what),
		Detail:  fmt.Sprintf("%d approval(s) needed from group(s) %s; the requester cannot approve. Expires at %s.", r.Required, strings.Join(r.Approvers, ", "), r.Expires.UTC().Format(time.RFC3339)),
		Hint:    fmt.Sprintf("An approver runs: phigate approvals approve %s --reason TEXT (or POST /v1/approvals/%s/approve on any node)", r.ID, r.ID),
	}
}

func quote(s string) string { return `"` + s + `"` }

// tellAgent writes one message to the agent now, between the backend's
// messages: every Write of a connection is whole, and the backend writes
// whole messages, so the two never interleave within a message. The
// caller has made what the message says durable.
func (c *conn) tellAgent(m pgproto3.BackendMessage) {
	b, err := m.Encode(nil)
	if err != nil {
		return
	}
	if _, err := c.client.Write(b); err != nil {
		c.log.Info("cannot tell the agent", "err", err)
	}
}

// watchAgent reports (gone closes) when the agent's connection ends while
// the frontend is not reading it: it reads ahead into the frontend's
// buffer, without consuming, until the connection fails or the buffer is
// full. stop ends the watch (a read deadline in the past) before the
// frontend reads again.
func (c *conn) watchAgent() (gone <-chan struct{}, stop func()) {
	ch := make(chan struct{})
	done := make(chan struct{})
	r := c.fe.cin
	go func() {
		defer close(done)
		for {
			err := r.readAhead()
			if err == nil {
				continue
			}
			if errors.Is(err, errAheadFull) {
				return // nothing more can be read ahead
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			close(ch)
			return
		}
	}()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			_ = c.client.SetReadDeadline(time.Now())
			<-done
			_ = c.client.SetReadDeadline(time.Time{})
		})
	}
}

// holding marks the session as waiting for approval: a cancel request
// then withdraws the request (closing the channel) instead of reaching
// an idle server. held ends the mark.
func (c *conn) holding() <-chan struct{} {
	h := &holdMark{ch: make(chan struct{})}
	c.approvalWait.Store(h)
	return h.ch
}

func (c *conn) held() { c.approvalWait.Store(nil) }

// holdMark is a wait for approval a cancel request can end.
type holdMark struct {
	once sync.Once
	ch   chan struct{}
}

// cancelHold ends the session's wait for approval, if it is waiting;
// false when it is not.
func (c *conn) cancelHold() bool {
	h := c.approvalWait.Load()
	if h == nil {
		return false
	}
	h.once.Do(func() { close(h.ch) })
	return true
}

// paramsOf is a portal's bound values as the fingerprint of a command
// takes them.
func paramsOf(ps []record.Param) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		if !p.Null {
			out[i] = []byte(p.Format + ":" + p.Encoding + ":" + p.Value)
		}
	}
	return out
}
