package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/node"
)

// probeGap is the pause between two attempts of one probe: the probes share
// two cores with the nodes they measure and must not starve them.
const probeGap = time.Millisecond

// How a probe tells that a node enforces a revision.
const (
	// byGauge: GET /metrics answers phigate_policy_revision >= the
	// revision. The node sets the gauge right after it publishes the
	// revision's snapshot, which new logins and commands read.
	byGauge = "gauge"
	// byLogin: a PostgreSQL login with the token the revision brings
	// succeeds: the effect itself. A refused login is recorded (durably)
	// and a successful one opens an upstream session, so each attempt is
	// costlier and the figure coarser.
	byLogin = "login"
)

// propagation is the figures of one pass of the policy propagation phase.
type propagation struct {
	by string // byGauge or byLogin
	// all[i] is revision i's time from sending the apply until the slowest
	// node was seen to enforce it (an upper bound: until the successful
	// probe attempt ended); allLower the matching lower bound (the start
	// of that node's last unsuccessful attempt). perNode[k][i] is node k's
	// upper bound; apply[i] the apply's round trip (node 1 answers once it
	// enforces the revision itself).
	all, allLower []time.Duration
	perNode       [][]time.Duration
	apply         []time.Duration
	// failedAttempts are the durations of unsuccessful attempts, the
	// resolution of the measure.
	failedAttempts []time.Duration
}

// probeResult is what one node's probe saw for one revision.
type probeResult struct {
	lower, upper time.Duration
	attempts     []time.Duration
	err          error
}

// measurePropagation applies revisions successive policy revisions on node
// 1, each replacing the probe identity's token, and times, per revision and
// node, until the node is seen to enforce it (by).
func measurePropagation(ctx context.Context, c *benchCluster, revisions int, by string) (*propagation, error) {
	n1 := c.nodes[0]
	var cur node.PolicyAnswer
	if err := n1.admin(ctx, c.rootToken, http.MethodGet, "/admin/v1/policy", nil, &cur); err != nil {
		return nil, err
	}
	// The stored document (passwords sealed) applied again keeps the
	// passwords: what an operator does with policy get, edit, apply.
	pol, err := node.ParsePolicy([]byte(cur.Document))
	if err != nil {
		return nil, err
	}
	probe := -1
	for i, t := range pol.Identities.Tokens {
		if t.Name == probeName {
			probe = i
		}
	}
	if probe < 0 {
		return nil, errors.New("the stored policy has no probe identity")
	}
	p := &propagation{by: by, perNode: make([][]time.Duration, len(c.nodes))}
	lastRev := cur.Revision
	for i := range revisions {
		token := harness.RandomSecret()
		pol.Identities.Tokens[probe].TokenSHA256 = sha256Hex(token)
		doc, err := pol.Marshal()
		if err != nil {
			return p, err
		}
		want := lastRev + 1 // checked against the apply's answer below
		probes := make([]func(context.Context, time.Time) probeResult, len(c.nodes))
		for k, n := range c.nodes {
			if by == byLogin {
				cfg, err := pgconn.ParseConfig(n.endpoint(probeName, token).DSN())
				if err != nil {
					return p, err
				}
				probes[k] = func(ctx context.Context, start time.Time) probeResult {
					return probeUntil(ctx, start, func(ctx context.Context) (bool, error) {
						err := login(ctx, cfg)
						return err == nil, err
					})
				}
			} else {
				probes[k] = func(ctx context.Context, start time.Time) probeResult {
					return probeUntil(ctx, start, func(ctx context.Context) (bool, error) {
						rev, err := n.policyRevision(ctx)
						return err == nil && rev >= want, err
					})
				}
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var wg sync.WaitGroup
		res := make([]probeResult, len(c.nodes))
		start := time.Now()
		for k := range c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[k] = probes[k](rctx, start)
			}()
		}
		var ans node.PolicyAnswer
		aerr := n1.admin(rctx, c.rootToken, http.MethodPost, "/admin/v1/policy", doc, &ans)
		applied := time.Since(start)
		if aerr != nil {
			cancel()
		}
		wg.Wait()
		cancel()
		if aerr != nil {
			return p, fmt.Errorf("revision %d: apply: %w", i+1, aerr)
		}
		if ans.Revision != want {
			return p, fmt.Errorf("revision %d: stored as revision %d, want %d", i+1, ans.Revision, want)
		}
		lastRev = ans.Revision
		var worst, worstLower time.Duration
		for k, r := range res {
			if r.err != nil {
				return p, fmt.Errorf("revision %d (stored %d), %s: %w", i+1, ans.Revision, c.nodes[k].id, r.err)
			}
			p.perNode[k] = append(p.perNode[k], r.upper)
			if r.upper > worst {
				worst, worstLower = r.upper, r.lower
			}
			p.failedAttempts = append(p.failedAttempts, r.attempts...)
		}
		p.all = append(p.all, worst)
		p.allLower = append(p.allLower, worstLower)
		p.apply = append(p.apply, applied)
		if (i+1)%10 == 0 || i == 0 {
			logf("%s: revision %d (stored %d): apply answered in %v, enforced on all nodes in %v (n1 %v, n2 %v, n3 %v)",
				by, i+1, ans.Revision, ms(applied), ms(worst), ms(res[0].upper), ms(res[1].upper), ms(res[2].upper))
		}
		// A breath between revisions, so that one revision's stragglers
		// (the nodes' logs, the recordings of refused logins) do not land
		// on the next one's clock.
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}

// probeUntil calls try every probeGap until it reports success. The node
// began to enforce the revision after the last unsuccessful try started
// and before the successful one ended: those are the bounds, from start.
func probeUntil(ctx context.Context, start time.Time, try func(context.Context) (bool, error)) probeResult {
	var r probeResult
	for {
		t := time.Now()
		ok, err := try(ctx)
		if ok {
			r.upper = time.Since(start)
			return r
		}
		r.lower = t.Sub(start)
		r.attempts = append(r.attempts, time.Since(t))
		select {
		case <-ctx.Done():
			r.err = fmt.Errorf("not seen after %d attempts: %v", len(r.attempts), err)
			return r
		case <-time.After(probeGap):
		}
	}
}

var revisionLine = []byte("phigate_policy_revision ")

// policyRevision reads phigate_policy_revision from the node's /metrics.
func (n *gnode) policyRevision(ctx context.Context) (uint64, error) {
	c, err := n.http()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+n.apiAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	var rev uint64
	found := false
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), revisionLine); ok {
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
			if err != nil {
				return 0, fmt.Errorf("metrics: %q: %w", sc.Bytes(), err)
			}
			rev, found = uint64(f), true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("metrics: no phigate_policy_revision")
	}
	return rev, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// loginCost is what one login costs through a node of the idle cluster,
// context for the login-confirmed propagation figures.
type loginCost struct {
	ok, refused, direct []time.Duration
	// The successful logins' phases: TCP connect and startup until the
	// node asks for the token; the token until AuthenticationOk; from
	// there until ReadyForQuery.
	toAsk, toAuthOK, toReady []time.Duration
}

// measureLoginCost times n successful logins (pgbench's identity) and n
// refused ones (a wrong token) on node 1, one after the other, and n
// logins straight to PostgreSQL (SCRAM) as the baseline.
func measureLoginCost(ctx context.Context, c *benchCluster, direct harness.Endpoint, n int) (*loginCost, error) {
	good := c.nodes[0].endpoint(harness.AgentName, c.agentToken)
	bad, err := pgconn.ParseConfig(c.nodes[0].endpoint(probeName, harness.RandomSecret()).DSN())
	if err != nil {
		return nil, err
	}
	dcfg, err := pgconn.ParseConfig(direct.DSN())
	if err != nil {
		return nil, err
	}
	lc := &loginCost{}
	for range n {
		t := time.Now()
		ask, authOK, ready, err := phasedLogin(ctx, good)
		if err != nil {
			return lc, fmt.Errorf("login: %w", err)
		}
		lc.ok = append(lc.ok, time.Since(t))
		lc.toAsk, lc.toAuthOK, lc.toReady = append(lc.toAsk, ask), append(lc.toAuthOK, authOK), append(lc.toReady, ready)
		t = time.Now()
		if err := login(ctx, bad); err == nil {
			return lc, errors.New("a login with a wrong token succeeded")
		}
		lc.refused = append(lc.refused, time.Since(t))
		t = time.Now()
		if err := login(ctx, dcfg); err != nil {
			return lc, fmt.Errorf("direct login: %w", err)
		}
		lc.direct = append(lc.direct, time.Since(t))
	}
	return lc, nil
}

// login opens and closes one PostgreSQL session.
func login(ctx context.Context, cfg *pgconn.Config) error {
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

// phasedLogin logs in to a node (cleartext token, as on loopback) with the
// protocol spoken by hand, and times its phases.
func phasedLogin(ctx context.Context, ep harness.Endpoint) (ask, authOK, ready time.Duration, err error) {
	t := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": ep.User, "database": ep.DB}})
	if err := fe.Flush(); err != nil {
		return 0, 0, 0, err
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			return 0, 0, 0, err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			ask = time.Since(t)
			t = time.Now()
			fe.Send(&pgproto3.PasswordMessage{Password: ep.Password})
			if err := fe.Flush(); err != nil {
				return 0, 0, 0, err
			}
		case *pgproto3.AuthenticationOk:
			authOK = time.Since(t)
			t = time.Now()
		case *pgproto3.ReadyForQuery:
			ready = time.Since(t)
			fe.Send(&pgproto3.Terminate{})
			return ask, authOK, ready, fe.Flush()
		case *pgproto3.ErrorResponse:
			return 0, 0, 0, fmt.Errorf("%s: %s", m.Code, m.Message)
		case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData, *pgproto3.NoticeResponse:
		default:
			return 0, 0, 0, fmt.Errorf("unexpected %T during login", msg)
		}
	}
}
