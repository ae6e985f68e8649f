package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/bench/harness"
)

// joinPoll is how often a joining node's /readyz and PostgreSQL listener
// are tried.
const joinPoll = 10 * time.Millisecond

// joinSettle is how long the cluster is left alone before each join.
// etcd refuses a membership change while a voter has been connected for
// less than five seconds (its HealthInterval), which a join right after the
// previous member change waits out: that wait is measured apart from the
// join itself.
const joinSettle = 6 * time.Second

// joinRun is one fourth node's join.
type joinRun struct {
	ready time.Duration // process start to /readyz 200
	login time.Duration // process start to a successful PostgreSQL login
	// leaveFailed: POST /admin/v1/cluster/leave did not answer 200 (the
	// node was then stopped and removed through node 1).
	leaveFailed bool
}

// both is when the node was ready and accepting logins.
func (j joinRun) both() time.Duration { return max(j.ready, j.login) }

// measureJoins starts a fourth node with a fresh data directory n times,
// each into a cluster left alone for joinSettle, times it to ready, and
// makes it leave the cluster again.
func measureJoins(ctx context.Context, c *benchCluster, n int) ([]joinRun, error) {
	var runs []joinRun
	for i := range n {
		select {
		case <-ctx.Done():
			return runs, ctx.Err()
		case <-time.After(joinSettle):
		}
		r, err := joinOnce(ctx, c, fmt.Sprintf("n4-%d", i+1))
		if r.ready != 0 && r.login != 0 {
			logf("join %d: /readyz 200 after %v, PostgreSQL login after %v", i+1, ms(r.ready), ms(r.login))
			runs = append(runs, r)
		}
		if err != nil {
			return runs, err
		}
	}
	return runs, nil
}

func joinOnce(ctx context.Context, c *benchCluster, id string) (joinRun, error) {
	n, err := newGnode(id, filepath.Join(c.dir, id))
	if err != nil {
		return joinRun{}, err
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := c.nodes[0].admin(ctx, c.rootToken, http.MethodPost, "/admin/v1/cluster/join-token?ttl=5m", nil, &tok); err != nil {
		return joinRun{}, fmt.Errorf("join token: %w", err)
	}
	cfg, err := pgconn.ParseConfig(n.endpoint(harness.AgentName, c.agentToken).DSN())
	if err != nil {
		return joinRun{}, err
	}
	start := time.Now()
	if err := n.start(c.bin, n.nodeSections(), c.nodes[0].cluster.api, tok.Token); err != nil {
		return joinRun{}, err
	}
	defer n.proc.Stop()

	wctx, cancel := context.WithTimeout(ctx, readyLimit)
	defer cancel()
	var r joinRun
	var readyErr, loginErr error
	tick := time.NewTicker(joinPoll)
	defer tick.Stop()
	for r.ready == 0 || r.login == 0 {
		// Both are tried in each round, the readiness first: a node that
		// accepts logins before it says it is ready is worth seeing.
		// An attempt that hangs (a listener not yet serving) must not
		// hide the moment the node is ready: each has a second at most.
		actx, acancel := context.WithTimeout(wctx, time.Second)
		if r.ready == 0 {
			var ok bool
			if ok, readyErr = n.ready(actx); ok {
				r.ready = time.Since(start)
			}
		}
		if r.login == 0 {
			if loginErr = login(actx, cfg); loginErr == nil {
				r.login = time.Since(start)
			}
		}
		acancel()
		if r.ready != 0 && r.login != 0 {
			break
		}
		select {
		case <-n.proc.Exited():
			return r, fmt.Errorf("%s exited while joining (readyz: %v; login: %v)\n%s", id, readyErr, loginErr, n.proc.LogTail())
		case <-wctx.Done():
			return r, fmt.Errorf("%s not ready after %v (readyz: %v; login: %v)\n%s", id, readyLimit, readyErr, loginErr, n.proc.LogTail())
		case <-tick.C:
		}
	}

	// Leave again, so that the next join finds three members, as this one
	// did. The figures stand whatever happens here; a cluster that does not
	// get back to three members ends the phase.
	lctx, lcancel := context.WithTimeout(ctx, time.Minute)
	defer lcancel()
	if err := n.admin(lctx, c.rootToken, http.MethodPost, "/admin/v1/cluster/leave", nil, nil); err != nil {
		r.leaveFailed = true
		logf("%s: leave failed (%v); stopping it and removing it through %s", id, err, c.nodes[0].id)
		n.proc.Stop()
		if err := c.nodes[0].admin(lctx, c.rootToken, http.MethodPost, "/admin/v1/cluster/remove?node="+id, nil, nil); err != nil {
			logf("%s: remove: %v", id, err)
		}
	}
	if !n.proc.Wait(30 * time.Second) {
		logf("%s: still running 30 s after leaving; stopping it", id)
	}
	n.proc.Stop()
	return r, c.waitMembers(lctx, 3)
}

// waitMembers polls node 1's cluster status until it lists want members
// and has quorum.
func (c *benchCluster) waitMembers(ctx context.Context, want int) error {
	var last string
	for {
		var st struct {
			Quorum  bool `json:"quorum"`
			Members []struct {
				Name string `json:"name"`
			} `json:"members"`
		}
		err := c.nodes[0].admin(ctx, c.rootToken, http.MethodGet, "/admin/v1/cluster", nil, &st)
		if err == nil && st.Quorum && len(st.Members) == want {
			return nil
		}
		last = fmt.Sprintf("quorum %v, %d members, err %v", st.Quorum, len(st.Members), err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not back to %d members: %s", want, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
