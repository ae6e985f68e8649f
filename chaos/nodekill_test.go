package chaos

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/record"
)

// TestNodeKillMidSession kills a node with SIGKILL while an agent writes
// through it and a long query runs, then restarts it on the same data
// directory. Invariants:
//   - every write the agent saw acknowledged is in the recording;
//   - no row exists in the database whose command is not in the recording
//     (nothing went through unrecorded);
//   - after restart every recording verifies and is closed (the killed
//     session with reason "recovered");
//   - the restarted node serves new sessions.
func TestNodeKillMidSession(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	c := newCluster(t, pg)
	n := c.startNode(t)

	conn, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	var acked []int
	for i := 1; i <= 40; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO events (id, note) VALUES ($1, $2)", i, fmt.Sprintf("note %d", i)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		acked = append(acked, i)
	}
	// A second agent is mid-query when the node dies.
	slow, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	slowDone := make(chan error, 1)
	go func() {
		_, err := slow.Exec(ctx, "SELECT pg_sleep(30)")
		slowDone <- err
	}()
	// Writes keep flowing while the node is killed.
	writerDone := make(chan int, 1)
	go func() {
		last := 0
		for i := 41; i <= 100000; i++ {
			if _, err := conn.Exec(ctx, "INSERT INTO events (id, note) VALUES ($1, $2)", i, fmt.Sprintf("note %d", i)); err != nil {
				break
			}
			last = i
		}
		writerDone <- last
	}()
	time.Sleep(300 * time.Millisecond) // let both be in flight: this is the fault's timing, not a wait for readiness
	n.kill(t)
	lastAcked := <-writerDone
	for i := 41; i <= lastAcked; i++ {
		acked = append(acked, i)
	}
	if err := <-slowDone; err == nil {
		t.Fatal("the slow query succeeded through a killed node")
	}
	conn.Close(ctx)
	slow.Close(ctx)

	// Restart on the same data directory: recovery closes the open sessions.
	n2 := c.startNode(t)
	check, err := pgx.Connect(ctx, c.dsn(n2, "writer"))
	if err != nil {
		t.Fatalf("restarted node does not serve: %v", err)
	}
	var rows int
	if err := check.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	check.Close(ctx)
	// The restarted node ships what its spool holds, the killed sessions
	// included, sealed as they were recovered.
	c.waitShipped(t, n2)
	n2.stop(t)
	out, err := exec.Command(c.bin, "audit", "verify", "--store", c.store()).CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify after the kill: %v\n%s", err, out)
	}

	recorded := map[string]bool{} // "id" of every recorded INSERT
	store := c.recordingStore(t)
	sessions, err := agentSessions(replay.List(ctx, store))
	if err != nil {
		t.Fatal(err)
	}
	var recovered int
	for _, s := range sessions {
		if s.Status != replay.StatusClosed {
			t.Errorf("session %s is %s (%s)", s.ID, s.Status, s.Reason)
		}
		if s.Reason == "recovered" {
			recovered++
		}
		for _, ev := range events(t, store, s.ID) {
			if ev.Kind == record.KindCommand && strings.HasPrefix(ev.Command.Postgres.SQL, "INSERT INTO events") && len(ev.Command.Postgres.Params) > 0 {
				recorded[paramInt(t, ev.Command.Postgres.Params[0])] = true
			}
		}
	}
	if recovered != 2 {
		t.Errorf("%d sessions closed as recovered, want 2 (the writer and the slow query)", recovered)
	}
	for _, id := range acked {
		if !recorded[fmt.Sprint(id)] {
			t.Fatalf("acknowledged insert %d is not in the recording", id)
		}
	}
	// Every row in the database was recorded before it was written.
	dbRows, err := pgx.Connect(ctx, pg.DSN(pgtest.Superuser, "", "chaos"))
	if err != nil {
		t.Fatal(err)
	}
	defer dbRows.Close(ctx)
	r, err := dbRows.Query(ctx, "SELECT id FROM events")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(r, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !recorded[fmt.Sprint(id)] {
			t.Fatalf("row %d is in the database but its INSERT is not in the recording", id)
		}
	}
	if len(ids) != rows || len(ids) < len(acked) {
		t.Fatalf("rows: %d in db, %d counted through phigate, %d acknowledged", len(ids), rows, len(acked))
	}
	t.Logf("%d inserts acknowledged before the kill, %d rows in the database, all recorded", len(acked), len(ids))
}

// TestTamperingIsDetected edits a shipped recording in the store (a
// flipped byte in a chunk, a removed chunk) and checks that `phigate audit
// verify` exits 1 naming the session and chunk, and that `phigate replay`
// refuses to show the altered session (exit 2).
func TestTamperingIsDetected(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	c := newCluster(t, pg)
	n := c.startNode(t)
	conn, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := conn.Exec(ctx, "SELECT $1::int", i); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	c.waitShipped(t, n)
	n.stop(t)
	sessions, err := agentSessions(replay.List(ctx, c.recordingStore(t)))
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions = %+v, %v", sessions, err)
	}
	id := sessions[0].ID
	if out, err := exec.Command(c.bin, "audit", "verify", "--store", c.store()).CombinedOutput(); err != nil {
		t.Fatalf("intact store: %v\n%s", err, out)
	}
	path := filepath.Join(c.store(), "data", "sessions", id, "00000000.chunk")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		tamper     func() error
		replayExit int // 2: chain broken; 1: nothing to show
	}{
		"flipped byte": {func() error {
			b := append([]byte(nil), orig...)
			b[len(b)-40] ^= 0x20
			os.Chmod(path, 0o600)
			return os.WriteFile(path, b, 0o600)
		}, 2},
		"removed chunk": {func() error { return os.Remove(path) }, 1},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tc.tamper(); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o400)
			out, err := exec.Command(c.bin, "audit", "verify", "--store", c.store()).CombinedOutput()
			var ee *exec.ExitError
			if err == nil || !errorsAs(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("audit verify of a tampered store: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "session="+id) || !strings.Contains(string(out), "chunk=0") {
				t.Fatalf("no location in:\n%s", out)
			}
			out, err = exec.Command(c.bin, "replay", "--data-dir", c.dataDir, "--auditor", "chaos", "--reason", "test", id).CombinedOutput()
			if err == nil || !errorsAs(err, &ee) || ee.ExitCode() != tc.replayExit || strings.Contains(string(out), "session.start") {
				t.Fatalf("replay of a tampered session: %v\n%s", err, out)
			}
		})
	}
}

// paramInt renders a recorded int parameter (pgx sends int4 in binary).
func paramInt(t *testing.T, p record.Param) string {
	if p.Format != "binary" {
		return p.Value
	}
	b, err := base64.StdEncoding.DecodeString(p.Value)
	if err != nil || len(b) != 8 && len(b) != 4 {
		t.Fatalf("binary param %q", p.Value)
	}
	if len(b) == 4 {
		return fmt.Sprint(int32(binary.BigEndian.Uint32(b)))
	}
	return fmt.Sprint(int64(binary.BigEndian.Uint64(b)))
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// agentSessions keeps the recordings of agents' sessions: the node's
// recordings of policy changes (no resource) are left out.
func agentSessions(list []replay.SessionInfo, err error) ([]replay.SessionInfo, error) {
	var out []replay.SessionInfo
	for _, s := range list {
		if s.Resource != "" {
			out = append(out, s)
		}
	}
	return out, err
}

// TestRecoverADeadNodesSpool kills a node under load and does not restart
// it: `phigate recover --spool DATA_DIR --store ...`, run from elsewhere,
// ships everything its disk holds, as that node, and the store verifies
// with every acknowledged write in it.
func TestRecoverADeadNodesSpool(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	c := newCluster(t, pg)
	n := c.startNode(t)
	conn, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan int, 1)
	go func() {
		last := 0
		for i := 1; i <= 100000; i++ {
			if _, err := conn.Exec(ctx, "INSERT INTO events (id, note) VALUES ($1, $2)", i, fmt.Sprintf("note %d", i)); err != nil {
				break
			}
			last = i
		}
		writerDone <- last
	}()
	time.Sleep(1500 * time.Millisecond) // some chunks sealed and shipped, some not: the fault's timing
	n.kill(t)
	lastAcked := <-writerDone
	conn.Close(ctx)
	if lastAcked == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}

	out, err := exec.Command(c.bin, "recover", "--spool", c.dataDir, "--store", c.store()).CombinedOutput()
	if err != nil {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if out, err := exec.Command(c.bin, "audit", "verify", "--store", c.store()).CombinedOutput(); err != nil {
		t.Fatalf("audit verify after recover: %v\n%s", err, out)
	}
	// Nothing is left on the dead node's disk to ship, and running it again
	// changes nothing.
	if left, _ := filepath.Glob(filepath.Join(c.recordings(), "sessions", "*.rec")); len(left) != 0 {
		t.Errorf("recordings left in the spool after recover: %v", left)
	}
	if out, err := exec.Command(c.bin, "recover", "--spool", c.dataDir, "--store", c.store()).CombinedOutput(); err != nil {
		t.Fatalf("recover again: %v\n%s", err, out)
	}
	store := c.recordingStore(t)
	sessions, err := agentSessions(replay.List(ctx, store))
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions: %+v %v", sessions, err)
	}
	if sessions[0].Reason != "recovered" {
		t.Errorf("the killed session ended with %q, want recovered", sessions[0].Reason)
	}
	recorded := map[string]bool{}
	for _, ev := range events(t, store, sessions[0].ID) {
		if ev.Kind == record.KindCommand && strings.HasPrefix(ev.Command.Postgres.SQL, "INSERT INTO events") && len(ev.Command.Postgres.Params) > 0 {
			recorded[paramInt(t, ev.Command.Postgres.Params[0])] = true
		}
	}
	for i := 1; i <= lastAcked; i++ {
		if !recorded[fmt.Sprint(i)] {
			t.Fatalf("acknowledged insert %d is not in the recovered recording", i)
		}
	}
	t.Logf("%d acknowledged inserts, all in the store after recover", lastAcked)
}
