package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/bench/harness"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/approval"
)

// roundTrip is one approval's times.
type roundTrip struct {
	id           string        // the request
	start        time.Time     // POST sent (wall clock)
	postToReturn time.Duration // POST sent -> the agent's DELETE returned
	respToReturn time.Duration // POST answered -> DELETE returned (negative: the DELETE came first)
	postToResp   time.Duration // POST sent -> POST answered
	// The steps, by the request's own times (Votes[0].At: the vote's
	// read done, its transaction next; Decision.UsedAt: the holding
	// session's Use read done, its transaction next) and a watch of the
	// request through node 1's member.
	toVote     time.Duration // POST sent -> the vote about to be written
	toApproved time.Duration // vote about to be written -> approved seen on node 1
	toUse      time.Duration // approved seen -> the session about to spend it (woken, Use's read)
	toReturn   time.Duration // about to spend it -> DELETE returned
}

// roundTrips is the approval phase's figures.
type roundTrips struct {
	all []roundTrip
	// bounded is the same DELETE made bounded (WHERE id = 1: no rule
	// gates it) through node 1, and direct the DELETE on PostgreSQL:
	// what running the command costs once it may run.
	bounded, direct []time.Duration
	// fsync is each node's journal fdatasync during the phase: count and
	// mean (from its /metrics), by node index.
	fsyncCount [3]float64
	fsyncMean  [3]time.Duration
	// disk is what one durable write costs on the nodes' disk, taken
	// just before and just after the round trips: the floor under each
	// recording step, and a witness of a disk that others share.
	disk []time.Duration
}

// measureDisk times n writes of 4 KiB, each followed by fdatasync, to one
// file in dir.
func measureDisk(dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	out := make([]time.Duration, 0, n)
	for range n {
		if _, err := f.Write(block); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// requestID finds the request's id in the notice the agent gets.
var requestID = regexp.MustCompile(`request (\S+);`)

// measureRoundTrips runs cfg.approvals held DELETEs on node 1, each approved
// through node 2, after 5 not counted.
func measureRoundTrips(ctx context.Context, cfg config, c *benchCluster, direct harness.Endpoint, dir string) (*roundTrips, error) {
	const warm = 5
	res := &roundTrips{}
	disk, err := measureDisk(dir, 100)
	if err != nil {
		return nil, err
	}
	res.disk = disk
	ids := make(chan string, 4)
	pcfg, err := pgx.ParseConfig(c.endpoint(0, requesterName).DSN())
	if err != nil {
		return nil, err
	}
	pcfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if m := requestID.FindStringSubmatch(n.Message); m != nil {
			select {
			case ids <- m[1]:
			default:
			}
		}
	}
	agent, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	defer agent.Close(context.WithoutCancel(ctx))
	owner, err := pgx.Connect(ctx, direct.DSN())
	if err != nil {
		return nil, err
	}
	defer owner.Close(context.WithoutCancel(ctx))
	// The approver's connection to node 2 is open before the first POST.
	if err := c.call(ctx, 1, http.MethodGet, "/v1/approvals?limit=1", approverName, nil, nil); err != nil {
		return nil, err
	}
	var before [3]fsyncStats
	for i := range c.nodes {
		if before[i], err = c.fsync(ctx, i); err != nil {
			return nil, err
		}
	}
	for i := range warm + cfg.approvals {
		rt, err := c.roundTrip(ctx, agent, owner, ids, cfg.approverDelay)
		if err != nil {
			return res, fmt.Errorf("approval %d: %w", i+1, err)
		}
		if i >= warm {
			res.all = append(res.all, rt)
		}
		if (i+1)%50 == 0 {
			logf("  %d approvals", i+1)
		}
	}
	disk, err = measureDisk(dir, 100)
	if err != nil {
		return res, err
	}
	res.disk = append(res.disk, disk...)
	if err := res.writeCSV(filepath.Join(dir, "roundtrips.csv")); err != nil {
		return res, err
	}
	for i := range c.nodes {
		after, err := c.fsync(ctx, i)
		if err != nil {
			return res, err
		}
		if n := after.count - before[i].count; n > 0 {
			res.fsyncCount[i] = n / float64(warm+cfg.approvals)
			res.fsyncMean[i] = time.Duration((after.sum - before[i].sum) / n * float64(time.Second))
		}
	}

	// What the command costs once it may run.
	for range warm + cfg.approvals {
		if _, err := owner.Exec(ctx, "INSERT INTO "+heldTable+" VALUES (1)"); err != nil {
			return res, err
		}
		start := time.Now()
		if _, err := agent.Exec(ctx, "DELETE FROM "+heldTable+" WHERE id = 1"); err != nil {
			return res, fmt.Errorf("bounded DELETE through n1: %w", err)
		}
		res.bounded = append(res.bounded, time.Since(start))
		if _, err := owner.Exec(ctx, "INSERT INTO "+heldTable+" VALUES (1)"); err != nil {
			return res, err
		}
		start = time.Now()
		if _, err := owner.Exec(ctx, "DELETE FROM "+heldTable); err != nil {
			return res, err
		}
		res.direct = append(res.direct, time.Since(start))
	}
	res.bounded, res.direct = res.bounded[warm:], res.direct[warm:]
	return res, nil
}

// roundTrip runs one held DELETE and its approval.
func (c *benchCluster) roundTrip(ctx context.Context, agent, owner *pgx.Conn, ids <-chan string, delay time.Duration) (roundTrip, error) {
	var rt roundTrip
	if _, err := owner.Exec(ctx, "INSERT INTO "+heldTable+" VALUES (1)"); err != nil {
		return rt, err
	}
	type outcome struct {
		at  time.Time
		tag pgconn.CommandTag
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		tag, err := agent.Exec(ctx, "DELETE FROM "+heldTable)
		done <- outcome{time.Now(), tag, err}
	}()
	var id string
	select {
	case id = <-ids:
	case o := <-done:
		return rt, fmt.Errorf("the DELETE returned before it was held: %v %v", o.tag, o.err)
	case <-time.After(10 * time.Second):
		return rt, fmt.Errorf("no notice of a request within 10s")
	case <-ctx.Done():
		return rt, ctx.Err()
	}
	// A watch of the request through node 1's member, as the holding
	// session has: when the approval reaches node 1.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	updates, err := c.nodes[0].Approvals().Watch(wctx, id)
	if err != nil {
		return rt, err
	}
	approvedAt := make(chan time.Time, 1)
	go func() {
		for r := range updates {
			if r.State != approval.Pending {
				approvedAt <- time.Now()
				return
			}
		}
	}()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return rt, ctx.Err()
	}

	start := time.Now()
	var voted approval.Request
	err = c.call(ctx, 1, http.MethodPost, "/v1/approvals/"+id+"/approve", approverName, node.VoteBody{Reason: "bench"}, &voted)
	answered := time.Now()
	if err != nil {
		return rt, err
	}
	if voted.State != approval.Approved {
		return rt, fmt.Errorf("request %s after the approval: %s", id, voted.State)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		return rt, fmt.Errorf("the approved DELETE did not return within 10s")
	}
	if o.err != nil || o.tag.String() != "DELETE 1" {
		return rt, fmt.Errorf("the approved DELETE: %q %v", o.tag, o.err)
	}
	var seen time.Time
	select {
	case seen = <-approvedAt:
	case <-time.After(5 * time.Second):
		return rt, fmt.Errorf("node 1's watch did not see request %s decided", id)
	}
	var used approval.Request
	if err := c.call(ctx, 1, http.MethodGet, "/v1/approvals/"+id, approverName, nil, &used); err != nil {
		return rt, err
	}
	if used.State != approval.Used || used.Decision == nil || len(used.Votes) != 1 {
		return rt, fmt.Errorf("request %s after the DELETE: %+v", id, used)
	}
	// The request's times are wall-clock times of this process's clock;
	// start's wall clock is the same clock.
	wall := start.Round(0)
	voteAt, useAt := used.Votes[0].At.Sub(wall), used.Decision.UsedAt.Sub(wall)
	seenAt, returned := seen.Sub(start), o.at.Sub(start)
	rt = roundTrip{
		id:           id,
		start:        wall,
		postToReturn: returned,
		respToReturn: o.at.Sub(answered),
		postToResp:   answered.Sub(start),
		toVote:       voteAt,
		toApproved:   seenAt - voteAt,
		toUse:        useAt - seenAt,
		toReturn:     returned - useAt,
	}
	return rt, nil
}

// fsyncStats is a node's phigate_spool_fsync_seconds histogram's sum and
// count.
type fsyncStats struct{ sum, count float64 }

func (c *benchCluster) fsync(ctx context.Context, i int) (fsyncStats, error) {
	var st fsyncStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.nodes[i].APIAddr().String()+"/metrics", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.apis[i].Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		switch {
		case err != nil:
		case name == "phigate_spool_fsync_seconds_sum":
			st.sum = v
		case name == "phigate_spool_fsync_seconds_count":
			st.count = v
		}
	}
	return st, sc.Err()
}

// writeCSV keeps each round trip's times in the working directory, to be
// joined by request id with the session's recording (its approval, change
// and result events carry their own times) when a step needs a closer look.
func (rt *roundTrips) writeCSV(path string) error {
	var b strings.Builder
	b.WriteString("request,post_sent,post_to_return_ms,post_to_answer_ms,to_vote_ms,to_approved_ms,to_use_ms,to_return_ms\n")
	for _, r := range rt.all {
		fmt.Fprintf(&b, "%s,%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", r.id, r.start.UTC().Format(time.RFC3339Nano), msf(r.postToReturn), msf(r.postToResp),
			msf(r.toVote), msf(r.toApproved), msf(r.toUse), msf(r.toReturn))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
