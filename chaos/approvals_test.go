package chaos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/approval"
	"github.com/phigate/phigate/session/identity"
)

// withApprovals adds to the fleet's bootstrap policy an approver, dba1 (group
// dba), and a rule on the writers' grant: an unbounded write waits (hold)
// for one dba's approval. It fails the test if the fleet's policy no longer
// has the form it edits.
func (f *fleet) withApprovals() {
	f.t.Helper()
	f.tokens["dba1"] = "phg_fleet_dba1"
	edits := []struct{ old, new string }{
		{"{name: root,", fmt.Sprintf("{name: dba1, kind: human, groups: [dba], token_sha256: %s}, {name: root,", identity.HashToken(f.tokens["dba1"]))},
		{"functions: [pg_sleep]}", "functions: [pg_sleep], approvals: [{name: risky, when: [unbounded-write], approvers: [dba], hold: 5m}]}"},
	}
	for _, e := range edits {
		if strings.Count(f.policy, e.old) != 1 {
			f.t.Fatalf("the fleet's policy has no single %q to extend:\n%s", e.old, f.policy)
		}
		f.policy = strings.Replace(f.policy, e.old, e.new, 1)
	}
}

// approvalsCall sends an approvals API request to member m as who, trusting
// m's development certificate; it returns the status and the body.
func (f *fleet) approvalsCall(m *member, method, path, who string, body any) (int, []byte, error) {
	pem, err := os.ReadFile(filepath.Join(m.dataDir, "tls", "dev-cert.pem"))
	if err != nil {
		return 0, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", m.api, path), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+f.tokens[who])
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// approvalOn reads request id on member m as who (nil while it cannot).
func (f *fleet) approvalOn(m *member, who, id string) *approval.Request {
	code, b, err := f.approvalsCall(m, http.MethodGet, "/v1/approvals/"+id, who, nil)
	var r approval.Request
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &r
}

// TestApprovalHolderKilled: an agent's DELETE without a WHERE is held on
// node 3 for a dba's approval; node 3 is killed with SIGKILL while it
// holds it. The agent's connection is gone; the surviving nodes mark the
// request abandoned once node 3's lease (3 s) ends; a dba's approval of it
// afterwards, on either survivor, is refused (409); the DELETE never ran;
// and the survivors go on serving the agent.
func TestApprovalHolderKilled(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{}) // its own: newFleet's database is not per test
	f := newFleet(t, pg)
	f.withApprovals()
	n1 := f.add("n1")
	if err := f.start(n1); err != nil {
		t.Fatalf("%v\n%s", err, readFile(n1.log))
	}
	token, err := f.admin(n1, "cluster", "join-token", "--ttl", "10m")
	if err != nil {
		t.Fatalf("join-token: %v\n%s", err, token)
	}
	join := fmt.Sprintf("127.0.0.1:%d", n1.nodeAPI)
	for _, id := range []string{"n2", "n3"} {
		m := f.add(id)
		if err := f.start(m, "--join", join, "--join-token", strings.TrimSpace(token)); err != nil {
			t.Fatalf("%v\n%s", err, readFile(m.log))
		}
	}
	n2, n3 := f.nodes["n2"], f.nodes["n3"]
	f.eventually(30*time.Second, "three voters", func() bool {
		st, err := f.status(n1)
		return err == nil && st.Quorum && st.roles() == "n1=voter n2=voter n3=voter"
	})
	if err := pg.Exec(ctx, "fleet", "SET ROLE fleet_svc; INSERT INTO events SELECT g, 'before' FROM generate_series(1, 5) g"); err != nil {
		t.Fatal(err)
	}
	rows := func() int {
		t.Helper()
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://fleet_svc:fleet-svc-pw@%s/fleet?sslmode=disable", pg.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The agent's unbounded DELETE waits on node 3.
	agent, err := pgx.Connect(ctx, f.dsn(n3))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := agent.Exec(ctx, "DELETE FROM events")
		errc <- err
	}()
	var req approval.Request
	f.eventually(10*time.Second, "the DELETE pending approval, seen on node 1", func() bool {
		code, b, err := f.approvalsCall(n1, http.MethodGet, "/v1/approvals?state=pending&identity=writer", "dba1", nil)
		var rs []approval.Request
		if err != nil || code != http.StatusOK || json.Unmarshal(b, &rs) != nil || len(rs) == 0 {
			return false
		}
		req = rs[0]
		return true
	})
	if req.Node != "n3" || req.Mode != "hold" || req.Rule != "risky" {
		t.Fatalf("the request as approvers see it: %+v", req)
	}
	select {
	case err := <-errc:
		t.Fatalf("the held DELETE returned before any decision: %v", err)
	default:
	}
	if n := rows(); n != 5 {
		t.Fatalf("the held DELETE ran before approval: %d rows left", n)
	}

	// Node 3 dies while it holds the command.
	killed := time.Now()
	pgtest.KillGroup(n3.cmd.Process.Pid)
	<-n3.done
	delete(f.nodes, "n3")

	// The agent's connection is gone: the DELETE fails, and so does
	// anything after it.
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the held DELETE succeeded through a killed node")
		}
		t.Logf("the agent's DELETE after the kill: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's DELETE did not return after its node was killed")
	}
	if err := agent.Ping(ctx); err == nil {
		t.Fatal("the agent's connection to the killed node still answers")
	}

	// The survivors mark the request abandoned once node 3's lease ends.
	var abandoned time.Duration
	f.eventually(15*time.Second, "the request abandoned on nodes 1 and 2", func() bool {
		for _, m := range []*member{n1, n2} {
			r := f.approvalOn(m, "dba1", req.ID)
			if r == nil || r.State != approval.Abandoned {
				return false
			}
		}
		abandoned = time.Since(killed)
		return true
	})
	t.Logf("request %s abandoned %v after its node was killed (lease 3s)", req.ID, abandoned.Round(time.Millisecond))
	r := f.approvalOn(n2, "dba1", req.ID)
	if r == nil || r.Decision == nil || (r.Decision.Node != "n1" && r.Decision.Node != "n2") || len(r.Decision.By) != 0 || len(r.Votes) != 0 {
		t.Fatalf("the abandoned request: %+v", r)
	}

	// An approval afterwards is refused, on either survivor, and changes
	// nothing.
	for _, m := range []*member{n2, n1} {
		code, b, err := f.approvalsCall(m, http.MethodPost, "/v1/approvals/"+req.ID+"/approve", "dba1", map[string]string{"reason": "too late"})
		if err != nil || code != http.StatusConflict {
			t.Fatalf("approving the abandoned request on %s: %d %s %v", m.id, code, b, err)
		}
	}
	if r := f.approvalOn(n1, "dba1", req.ID); r == nil || r.State != approval.Abandoned || len(r.Votes) != 0 {
		t.Fatalf("the request after the refused approval: %+v", r)
	}

	// The DELETE never ran.
	if n := rows(); n != 5 {
		t.Fatalf("the DELETE of an abandoned request ran: %d rows left", n)
	}

	// The survivors serve the agent on, and hold its next DELETE anew.
	again, err := pgx.Connect(ctx, f.dsn(n1))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	var n int
	if err := again.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != 5 {
		t.Fatalf("a read through node 1: %d, %v", n, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := again.Exec(cctx, "DELETE FROM events"); err == nil || !errors.Is(cctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("a second DELETE was not held: %v", err)
	}
	if n := rows(); n != 5 {
		t.Fatalf("rows after the second, cancelled DELETE: %d", n)
	}
}
