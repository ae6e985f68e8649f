package pgwire_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

// TestSnapshotRecordingFailureFailsClosed: a statement read around goes
// to the server before its before rows are durable (snapshot.go,
// "Durability"), and inside a transaction block before its command event
// is (forwarding, "ahead"); what keeps the promise is that its transaction
// commits only after every event of it is durable. The attack is the disk
// filling up in between: updates that make small rows large (so the after
// rows are what fills it), in both protocols, alone and inside the
// agent's own blocks, on a 1 MiB disk, until recording fails. Every row
// the database holds changed must have its command, before and after rows
// in the recording recovered from that disk, and at most one update more
// than the agent saw acknowledged may have committed.
func TestSnapshotRecordingFailureFailsClosed(t *testing.T) {
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) { snapshotDiskFull(t, mode, false) })
		t.Run(mode.String()+" in a block", func(t *testing.T) { snapshotDiskFull(t, mode, true) })
	}
}

func snapshotDiskFull(t *testing.T, mode pgx.QueryExecMode, block bool) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root): %v", err)
	}
	var g *gateway
	t.Cleanup(func() {
		if g != nil {
			g.stop()
		}
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	g = startGateway(t, gatewayOptions{spoolDir: filepath.Join(mnt, "spool"), segmentBytes: 64 << 10})
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, g.pg.DSN(pgtest.Superuser, "", g.db))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	const n = 400
	if _, err := direct.Exec(ctx, "INSERT INTO audit_log (id, msg) SELECT i, 'x' FROM generate_series(1, $1) i", n); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	acked := 0
	var failure error
	run := func(sql string) error {
		_, err := conn.Exec(ctx, sql, mode)
		return err
	}
	for i := 1; i <= n; i++ {
		update := fmt.Sprintf("UPDATE audit_log SET msg = repeat('y', 30000) WHERE id = %d", i)
		if block {
			// Two updates a block, the second of the next row: a block
			// that does not commit leaves both rows as they were.
			failure = run("BEGIN")
			if failure == nil {
				failure = run(update)
			}
			if failure == nil && i < n {
				failure = run(fmt.Sprintf("UPDATE audit_log SET msg = repeat('y', 30000) WHERE id = %d", i+1))
			}
			if failure == nil {
				failure = run("COMMIT")
			}
			i++
		} else {
			failure = run(update)
		}
		if failure != nil {
			break
		}
		acked++
		if block && i <= n {
			acked++
		}
	}
	if failure == nil {
		t.Fatalf("%d updates to 30 kB rows recorded on a 1 MiB disk", n)
	}
	if !strings.Contains(failure.Error(), "58030") && !strings.Contains(failure.Error(), "cannot record") {
		t.Fatalf("failure = %v, want SQLSTATE 58030", failure)
	}
	changed := map[int]bool{}
	rows, err := direct.Query(ctx, "SELECT id FROM audit_log WHERE msg LIKE 'y%'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		changed[id] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(changed) < acked || len(changed) > acked+2 {
		t.Fatalf("%d rows changed in the database, %d updates acknowledged", len(changed), acked)
	}

	// Recover a copy of the spool on a disk with room, as a restarted node
	// would, and find the before rows of every change.
	conn.Close(ctx)
	g.stop()
	recovered := filepath.Join(t.TempDir(), "spool")
	if out, err := exec.Command("cp", "-a", g.spoolDir, recovered).CombinedOutput(); err != nil {
		t.Fatalf("copy spool: %v %s", err, out)
	}
	sp, err := spool.Open(spool.Config{Dir: recovered})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ids, _ := os.ReadDir(filepath.Join(recovered, "sessions"))
	withCommand, withBefore, withAfter := map[int]bool{}, map[int]bool{}, map[int]bool{}
	for _, f := range ids {
		id := strings.TrimSuffix(f.Name(), ".rec")
		rc, err := spool.DirStore{Dir: recovered}.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		target := map[uint64]int{} // command -> the row it updates
		_, err = record.Verify(rc, id, true, func(ev *record.Event, _ []byte) error {
			switch {
			case ev.Kind == record.KindCommand && ev.Command.Postgres != nil:
				if _, rest, ok := strings.Cut(ev.Command.Postgres.SQL, "WHERE id = "); ok {
					target[ev.Command.ID], _ = strconv.Atoi(rest)
					withCommand[target[ev.Command.ID]] = true
				}
			case ev.Kind == record.KindChange && ev.Change.Phase == record.ChangeBefore && len(ev.Change.Rows) == 1:
				withBefore[target[ev.Change.Command]] = true
			case ev.Kind == record.KindChange && ev.Change.Phase == record.ChangeAfter && len(ev.Change.Rows) == 1:
				withAfter[target[ev.Change.Command]] = true
			}
			return nil
		})
		rc.Close()
		if err != nil {
			t.Fatalf("recovered session %s: %v", id, err)
		}
	}
	for id := range changed {
		if !withCommand[id] || !withBefore[id] || !withAfter[id] {
			t.Errorf("row %d changed in the database, but the recording holds its command %v, before rows %v, after rows %v", id, withCommand[id], withBefore[id], withAfter[id])
		}
	}
	t.Logf("%d updates acknowledged, %d rows changed, %d before and %d after reads recorded", acked, len(changed), len(withBefore), len(withAfter))
}
