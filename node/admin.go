package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/session/identity"
)

// The admin endpoints of the node's HTTPS API (listen.api), under
// /admin/v1/. Every request carries an identity's token ("Authorization:
// Bearer TOKEN", a static token or an OIDC JWT, as agents present them)
// and the identity must be named in the policy's admins (by name or
// group). A refusal says 401 or 403 and nothing more; the log says why,
// never the token. Answers are JSON; no answer carries a credential in
// clear (policies are shown as stored: passwords sealed).
//
//	GET  /admin/v1/policy[?revision=N]   a revision, with its document
//	GET  /admin/v1/policy/history        every revision, without documents
//	POST /admin/v1/policy                apply (body: a resolved policy, YAML;
//	                                     header Phigate-Base-Revision: N)
//	GET  /admin/v1/cluster               members, roles, leader, quorum, policy revision
//	POST /admin/v1/cluster/join-token[?ttl=30m]
//	POST /admin/v1/cluster/remove?node=NAME
//	POST /admin/v1/cluster/leave         this node leaves the cluster and stops
//	GET  /admin/v1/sessions[?node=&identity=&resource=]
//	GET  /admin/v1/cluster/snapshot      the cluster state (etcd snapshot format)

// maxPolicyBytes bounds an applied policy document.
const maxPolicyBytes = 8 << 20

// adminRoutes adds the admin endpoints to mux.
func (n *Node) adminRoutes(mux *http.ServeMux) {
	mux.Handle("GET /admin/v1/policy", n.admin(n.getPolicy, false))
	mux.Handle("GET /admin/v1/policy/history", n.admin(n.policyHistory, false))
	mux.Handle("POST /admin/v1/policy", n.admin(n.applyPolicy, false))
	mux.Handle("GET /admin/v1/cluster", n.admin(n.clusterStatus, true))
	mux.Handle("POST /admin/v1/cluster/join-token", n.admin(n.joinTokenHandler, false))
	mux.Handle("POST /admin/v1/cluster/remove", n.admin(n.removeNode, true))
	mux.Handle("POST /admin/v1/cluster/leave", n.admin(n.leaveCluster, false))
	mux.Handle("GET /admin/v1/sessions", n.admin(n.listSessions, false))
	mux.Handle("GET /admin/v1/anchors", n.admin(n.listAnchors, false))
	mux.Handle("POST /admin/v1/keys/rotate", n.admin(n.rotateKey, false))
	mux.Handle("GET /admin/v1/cluster/snapshot", n.adminStream(n.snapshot))
}

// adminHandler serves an authorised admin request: it returns the answer
// (JSON-encoded) or an error (an *httpError says its status).
type adminHandler func(r *http.Request, who identity.Identity) (any, error)

type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// admin authenticates and authorises a request, then serves it. A node
// that refuses everything (no quorum: a revocation may be unknown to it)
// still serves what an operator needs to repair the cluster (status,
// removing a dead node) when whenUnavailable is set, authorised by the
// last policy it has; the rest answers 503.
func (n *Node) admin(h adminHandler, whenUnavailable bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, status := n.adminIdentity(r, whenUnavailable)
		if status != 0 {
			writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
			return
		}
		out, err := h(r, who)
		if err != nil {
			status := http.StatusInternalServerError
			if he := (*httpError)(nil); errors.As(err, &he) {
				status = he.status
			} else if errors.Is(err, cluster.ErrConflict) {
				status = http.StatusConflict
			} else if errors.Is(err, cluster.ErrNoPolicy) {
				status = http.StatusNotFound
			}
			if status == http.StatusInternalServerError {
				n.log.Warn("admin request failed", "path", r.URL.Path, "identity", who.Name, "err", err)
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// adminStream authenticates and authorises a request, then lets h write
// the answer itself (application/octet-stream).
func (n *Node) adminStream(h func(w http.ResponseWriter, r *http.Request, who identity.Identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, status := n.adminIdentity(r, false)
		if status != 0 {
			writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
			return
		}
		h(w, r, who)
	})
}

// snapshot streams a snapshot of the cluster state.
func (n *Node) snapshot(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	w.Header().Set("Content-Type", "application/octet-stream")
	size, err := n.member.Snapshot(r.Context(), w)
	if err != nil {
		// Headers are gone with the first byte: a broken connection is
		// how the client learns of it (and etcdutl checks the snapshot's
		// own hash on restore).
		n.log.Warn("cluster snapshot failed", "identity", who.Name, "err", err)
		panic(http.ErrAbortHandler)
	}
	n.log.Info("cluster snapshot taken", "identity", who.Name, "bytes", size)
}

// adminIdentity is the admin a request comes from, or the status refusing it.
func (n *Node) adminIdentity(r *http.Request, whenUnavailable bool) (identity.Identity, int) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	remote := r.RemoteAddr
	if !ok || token == "" {
		n.log.Warn("admin request refused", "path", r.URL.Path, "remote", remote, "reason", "no bearer token")
		return identity.Identity{}, http.StatusUnauthorized
	}
	var client identity.NetAddr = addrString(remote)
	snap := n.state.Load()
	if snap.Unavailable != "" && !whenUnavailable {
		return identity.Identity{}, http.StatusServiceUnavailable
	}
	id, err := snap.Auth.Authenticate(r.Context(), identity.Credentials{Token: token, Client: identity.ClientAddr(client)})
	if err != nil {
		reason := "invalid token"
		if re := (*identity.RefusedError)(nil); errors.As(err, &re) && re.Reason != "" {
			reason = re.Reason
		}
		n.log.Warn("admin request refused", "path", r.URL.Path, "remote", remote, "reason", reason)
		return identity.Identity{}, http.StatusUnauthorized
	}
	n.reloadMu.Lock()
	admins := n.policy.Admins
	n.reloadMu.Unlock()
	if !admins.admits(id) {
		n.log.Warn("admin request refused", "path", r.URL.Path, "remote", remote, "identity", id.Name, "reason", "not an admin (policy admins)")
		return identity.Identity{}, http.StatusForbidden
	}
	return id, 0
}

// admits reports whether a names id as an admin.
func (a AdminsConfig) admits(id identity.Identity) bool {
	return slices.Contains(a.Identities, id.Name) || slices.ContainsFunc(id.Groups, func(g string) bool { return slices.Contains(a.Groups, g) })
}

// addrString is a remote address as net.Addr.
type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

var _ net.Addr = addrString("")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// PolicyAnswer is a policy revision as the API shows it.
type PolicyAnswer struct {
	Revision  uint64    `json:"revision"`
	AppliedBy string    `json:"applied_by"`
	AppliedAt time.Time `json:"applied_at"`
	SHA256    string    `json:"sha256"`
	Document  string    `json:"document,omitempty"`
	// Enforced is whether this node enforces it (or a later one) already.
	Enforced bool `json:"enforced"`
}

func (n *Node) answer(rev cluster.PolicyRevision) PolicyAnswer {
	return PolicyAnswer{Revision: rev.Revision, AppliedBy: rev.AppliedBy, AppliedAt: rev.AppliedAt, SHA256: rev.SHA256,
		Document: string(rev.Document), Enforced: n.PolicyRevision() >= rev.Revision}
}

func (n *Node) getPolicy(r *http.Request, _ identity.Identity) (any, error) {
	var rev uint64
	if s := r.URL.Query().Get("revision"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, badRequest("revision %q is not a number", s)
		}
		rev = v
	}
	p, err := n.Policy(r.Context(), rev)
	if err != nil {
		return nil, err
	}
	return n.answer(p), nil
}

func (n *Node) policyHistory(r *http.Request, _ identity.Identity) (any, error) {
	revs, err := n.PolicyHistory(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]PolicyAnswer, 0, len(revs))
	for _, rev := range revs {
		out = append(out, n.answer(rev))
	}
	return out, nil
}

// applyWait bounds how long an apply waits for this node to enforce the
// revision it stored.
const applyWait = 5 * time.Second

func (n *Node) applyPolicy(r *http.Request, who identity.Identity) (any, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxPolicyBytes))
	if err != nil {
		return nil, badRequest("policy document: %v", err)
	}
	var base uint64
	if s := r.Header.Get("Phigate-Base-Revision"); s != "" {
		if base, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, badRequest("Phigate-Base-Revision %q is not a number", s)
		}
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if err := n.keepsAdmin(p, who); err != nil {
		return nil, err
	}
	rev, err := n.ApplyPolicy(r.Context(), p, who.Name, base)
	if err != nil {
		if errors.Is(err, cluster.ErrConflict) {
			return nil, err
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, badRequest("%v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), applyWait)
	defer cancel()
	_ = n.WaitPolicy(ctx, rev.Revision)
	rev.Document = nil
	return n.answer(rev), nil
}

// keepsAdmin refuses a policy under which who could no longer
// administer the cluster (its token gone, or no longer named in admins):
// applied, nobody might be able to change the policy again.
func (n *Node) keepsAdmin(p *Policy, who identity.Identity) error {
	auth, err := buildAuth(p, n.log)
	if err != nil {
		return badRequest("%v", err)
	}
	// As the new policy would see the caller: its token, its groups now.
	again, err := auth.Recheck(who)
	if err != nil {
		return badRequest("this policy would no longer accept your own token (%s): applied, it could lock you out; apply it as another admin", who.Name)
	}
	if !p.Admins.admits(again) {
		return badRequest("this policy would not name you (%s) under admins: applied, it could lock every admin out; name yourself under admins.identities or a group of yours under admins.groups", who.Name)
	}
	return nil
}

// ClusterStatus is the cluster as a node sees it, with the policy
// revision it enforces and whether it refuses everything.
type ClusterStatus struct {
	cluster.Status
	PolicyRevision uint64 `json:"policy_revision"`
	Unavailable    string `json:"unavailable,omitempty"`
}

// Status reports the cluster as this node sees it.
func (n *Node) Status(ctx context.Context) (ClusterStatus, error) {
	if n.member == nil {
		return ClusterStatus{}, errors.New("node: not started")
	}
	st, err := n.member.Status(ctx)
	if err != nil {
		return ClusterStatus{}, err
	}
	return ClusterStatus{Status: st, PolicyRevision: n.PolicyRevision(), Unavailable: n.state.Load().Unavailable}, nil
}

func (n *Node) clusterStatus(r *http.Request, _ identity.Identity) (any, error) {
	return n.Status(r.Context())
}

// JoinTokenAnswer is a new join token.
type JoinTokenAnswer struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

func (n *Node) joinTokenHandler(r *http.Request, who identity.Identity) (any, error) {
	ttl := 30 * time.Minute
	if s := r.URL.Query().Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Minute || d > 24*time.Hour {
			return nil, badRequest("ttl %q: a duration from 1m to 24h", s)
		}
		ttl = d
	}
	tok, err := n.JoinToken(r.Context(), ttl)
	if err != nil {
		return nil, err
	}
	n.log.Info("join token issued", "identity", who.Name, "ttl", ttl)
	return JoinTokenAnswer{Token: tok, Expires: time.Now().Add(ttl).UTC()}, nil
}

func (n *Node) removeNode(r *http.Request, who identity.Identity) (any, error) {
	name := r.URL.Query().Get("node")
	if name == "" {
		return nil, badRequest("node is required")
	}
	if name == n.id {
		return nil, badRequest("%s is this node: leave the cluster from it (phigate cluster leave) instead", name)
	}
	if err := n.member.Remove(r.Context(), name); err != nil {
		return nil, badRequest("%v", err)
	}
	n.log.Warn("node removed from the cluster", "removed", name, "identity", who.Name)
	// The removed node signs nothing more: its keys end now (recordings it
	// signed before still verify). Ship its spool first (phigate recover).
	if n.records != nil {
		if err := retireKeys(r.Context(), n.records, name, "", time.Now()); err != nil {
			n.log.Error("cannot retire the removed node's signing keys", "removed", name, "err", err)
		}
	}
	return map[string]string{"removed": name}, nil
}

// leaveTimeout bounds how long leaving the cluster may take (the
// membership change, after the drain).
const leaveTimeout = time.Minute

// ErrLeft is the node's Err after it left the cluster: it must stop.
var ErrLeft = errors.New("node: left the cluster")

func (n *Node) leaveCluster(r *http.Request, who identity.Identity) (any, error) {
	n.log.Warn("leaving the cluster", "identity", who.Name)
	d := n.cfg.Limits.DrainTimeout
	if d == 0 {
		d = drainTimeout
	}
	dctx, cancel := context.WithTimeout(r.Context(), max(d, 0))
	if err := n.Drain(dctx); err != nil {
		n.log.Warn("drain before leaving", "err", err)
	}
	cancel()
	lctx, cancel := context.WithTimeout(r.Context(), leaveTimeout)
	defer cancel()
	if err := n.member.Leave(lctx); err != nil {
		return nil, badRequest("%v", err)
	}
	n.fail(ErrLeft)
	return map[string]string{"left": n.id}, nil
}

func (n *Node) listSessions(r *http.Request, _ identity.Identity) (any, error) {
	if n.index == nil {
		return nil, errors.New("node: not started")
	}
	q := r.URL.Query()
	list, err := n.index.List(r.Context(), cluster.SessionFilter{Node: q.Get("node"), Identity: q.Get("identity"), Resource: q.Get("resource")})
	if err != nil {
		return nil, err
	}
	type row struct {
		cluster.SessionInfo
		State cluster.SessionState `json:"state"`
	}
	out := make([]row, 0, len(list))
	for _, s := range list {
		out = append(out, row{s, s.State})
	}
	return out, nil
}

// JoinToken issues a token a new node joins the cluster with (`phigate
// node --join ADDR --join-token T`), valid for ttl.
func (n *Node) JoinToken(ctx context.Context, ttl time.Duration) (string, error) {
	if n.member == nil {
		return "", errors.New("node: not started")
	}
	return n.member.JoinToken(ctx, ttl)
}
