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
	"github.com/phigate/phigate/storage/spool"
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
	n2.stop(t)

	recorded := map[string]bool{} // "id" of every recorded INSERT
	sessions, err := agentSessions(replay.List(ctx, spool.DirStore{Dir: c.recordings()}))
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
		f, err := os.Open(filepath.Join(c.recordings(), "sessions", s.ID+".rec"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = record.Verify(f, s.ID, false, func(ev *record.Event, _ []byte) error {
			if ev.Kind == record.KindCommand && strings.HasPrefix(ev.Command.Postgres.SQL, "INSERT INTO events") && len(ev.Command.Postgres.Params) > 0 {
				recorded[paramInt(t, ev.Command.Postgres.Params[0])] = true
			}
			return nil
		})
		f.Close()
		if err != nil {
			t.Fatalf("session %s: %v", s.ID, err)
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

// TestReplayDetectsTampering edits a closed recording on disk and checks
// that `phigate replay` reports the break with the event index and exits 2.
func TestReplayDetectsTampering(t *testing.T) {
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
	n.stop(t)
	sessions, err := agentSessions(replay.List(ctx, spool.DirStore{Dir: c.recordings()}))
	if err != nil || len(sessions) != 1 {
		t.Fatalf("sessions = %+v, %v", sessions, err)
	}
	id := sessions[0].ID
	path := filepath.Join(c.recordings(), "sessions", id+".rec")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(c.bin, "replay", "--data-dir", c.dataDir, id).CombinedOutput()
	if err != nil {
		t.Fatalf("intact recording: %v\n%s", err, out)
	}
	for name, tamper := range map[string]func([]byte) []byte{
		"flipped byte": func(b []byte) []byte {
			b = append([]byte(nil), b...)
			i := strings.Index(string(b), "SELECT $1::int")
			b[i] ^= 0x20
			return b
		},
		"truncated": func(b []byte) []byte { return b[:len(b)-10] },
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, tamper(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o600)
			out, err := exec.Command(c.bin, "replay", "--data-dir", c.dataDir, id).CombinedOutput()
			var ee *exec.ExitError
			if err == nil || !errorsAs(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("replay of a tampered recording: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "chain broken at event") {
				t.Fatalf("no break location in:\n%s", out)
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
