package pgwire_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
)

// run runs statements on a new session of identity, each by the simple
// protocol, and returns that session's events once it has ended.
func (g *gateway) run(t *testing.T, seen map[string]bool, identity string, stmts ...string) []*record.Event {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn(identity, "require"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		_, _ = conn.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol)
	}
	conn.Close(ctx)
	return g.newSessions(t, seen, 1)[0]
}

// TestSnapshotRowBound: a snapshot records at most the configured rows,
// says there were more, and the after event carries the true count.
func TestSnapshotRowBound(t *testing.T) {
	g := startSnapshotGateway(t, gatewayOptions{snapshotRows: 3})
	seen := map[string]bool{}
	evs := g.run(t, seen, "owner-ci", "UPDATE accounts SET note = 'b' WHERE owner = 'cy'", "DELETE FROM accounts WHERE owner = 'cy'")
	chs := changesIn(evs)
	if len(chs) != 4 {
		t.Fatalf("changes: %s", dumpChanges(chs))
	}
	upd, updAfter, del, delAfter := chs[0], chs[1], chs[2], chs[3]
	if len(upd.Rows) != 3 || !upd.More || len(updAfter.Rows) != 3 || updAfter.Affected != 5 {
		t.Errorf("update: %s", dumpChanges(chs[:2]))
	}
	if !strings.Contains(upd.Read, "LIMIT 4") {
		t.Errorf("the before read does not stop past the bound: %s", upd.Read)
	}
	for _, row := range cells(t, updAfter, "owner", "note") {
		if row != "cy:b" {
			t.Errorf("after row %s", row)
		}
	}
	if len(del.Rows) != 3 || !del.More || delAfter.Affected != 5 || delAfter.Rows != nil {
		t.Errorf("delete: %s", dumpChanges(chs[2:]))
	}
}

// TestSnapshotMasking: under a masking profile the rows of a change are
// masked as results are, the raw values are only in the recording sealed
// to the auditors' key, and the auditor key opens them.
func TestSnapshotMasking(t *testing.T) {
	g := startSnapshotGateway(t, gatewayOptions{})
	seen := map[string]bool{}
	evs := g.run(t, seen, "writer-ci", "UPDATE patients SET notes = 'checked' WHERE id IN (1, 2)")
	chs := changesIn(evs)
	if len(chs) != 2 || len(chs[0].Rows) != 2 || len(chs[1].Rows) != 2 {
		t.Fatalf("changes: %s", dumpChanges(chs))
	}
	for _, ch := range chs {
		got := cells(t, ch, "id", "name", "ssn", "dob", "phone")
		want := []string{"1:[redacted]:***-**-6789:NULL:+* *** *** 0134", "2:[redacted]:***-**-4321:NULL:+* *** *** 0188"}
		if !slices.Equal(got, want) {
			t.Errorf("%s rows %v, want %v", ch.Phase, got, want)
		}
		if len(ch.Masked) == 0 {
			t.Errorf("%s: no masking summary", ch.Phase)
		}
	}
	if got := cells(t, chs[1], "notes"); !slices.Equal(got, []string{"checked", "checked"}) {
		t.Errorf("after notes %v", got)
	}
	// The file holds no raw value in clear...
	raw, err := os.ReadFile(filepath.Join(g.spoolDir, "sessions", evs[0].Session+".rec"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"Alice Moreno", "123-45-6789", "Bob Tran", "987-65-4321", "4400123", "1961-03-14"} {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("raw value %q is in the recording in clear", v)
		}
	}
	// ...and the auditor opens them from the proofs of each phase.
	var opener *proof.Opener
	opened := map[string][]string{}
	for _, e := range evs {
		switch {
		case e.Key != nil:
			if opener, err = proof.NewOpener(g.auditor, e.Key, e.Session); err != nil {
				t.Fatal(err)
			}
		case e.Proof != nil:
			raws, err := opener.Open(e.Proof)
			if err != nil {
				t.Fatal(err)
			}
			if e.Proof.Command != chs[0].Command || e.Proof.Statement != 0 {
				t.Errorf("proof of command %d statement %d", e.Proof.Command, e.Proof.Statement)
			}
			for _, r := range raws {
				opened[e.Proof.Phase] = append(opened[e.Proof.Phase], string(r))
			}
		}
	}
	for _, phase := range []string{record.ChangeBefore, record.ChangeAfter} {
		for _, v := range []string{"Alice Moreno", "123-45-6789", "Bob Tran", "+1 415 555 0134"} {
			if !slices.Contains(opened[phase], v) {
				t.Errorf("the %s proofs do not open to %q (%d values)", phase, v, len(opened[phase]))
			}
		}
	}
}

// TestSnapshotOutcomes: how the transaction of recorded changes ended, as
// the database says: a savepoint rolled back to, a session that ends in
// its transaction, a commit refused by a deferred constraint, a COMMIT of
// a failed transaction, several changes ending together.
func TestSnapshotOutcomes(t *testing.T) {
	g := startSnapshotGateway(t, gatewayOptions{})
	ctx := context.Background()
	seen := map[string]bool{}
	outcome := func(evs []*record.Event, cmd uint64) *record.ChangeOutcome {
		for _, o := range outcomesIn(evs) {
			for _, c := range o.Changes {
				if c.Command == cmd {
					return o
				}
			}
		}
		t.Fatalf("no outcome for command %d: %+v", cmd, outcomesIn(evs))
		return nil
	}
	changed := func(evs []*record.Event) []uint64 {
		var ids []uint64
		for _, c := range changesIn(evs) {
			if c.Phase == record.ChangeBefore {
				ids = append(ids, c.Command)
			}
		}
		return ids
	}

	t.Run("savepoint", func(t *testing.T) {
		g.suExec(t, snapshotData)
		evs := g.run(t, seen, "owner-ci", "BEGIN", "UPDATE accounts SET note = 'kept' WHERE id = 1", "SAVEPOINT s",
			"UPDATE accounts SET note = 'undone' WHERE id = 2", "ROLLBACK TO SAVEPOINT s", "COMMIT")
		ids := changed(evs)
		if len(ids) != 2 {
			t.Fatalf("changes %v", ids)
		}
		if o := outcome(evs, ids[0]); o.Outcome != record.OutcomeCommitted {
			t.Errorf("first change: %+v", o)
		}
		if o := outcome(evs, ids[1]); o.Outcome != record.OutcomeRolledBack || o.Reason != "ROLLBACK TO SAVEPOINT s" {
			t.Errorf("second change: %+v", o)
		}
		if db := g.suQuery(t, "SELECT string_agg(coalesce(note, '-'), ',' ORDER BY id) FROM accounts WHERE id < 3"); db != "kept,-" {
			t.Errorf("database: %s", db)
		}
	})
	t.Run("session ends in its transaction", func(t *testing.T) {
		g.suExec(t, snapshotData)
		evs := g.run(t, seen, "owner-ci", "BEGIN", "UPDATE accounts SET note = 'lost' WHERE id = 1")
		if o := outcome(evs, changed(evs)[0]); o.Outcome != record.OutcomeRolledBack || !strings.Contains(o.Reason, "session ended") {
			t.Errorf("outcome %+v", o)
		}
		if db := g.suQuery(t, "SELECT coalesce(note, '-') FROM accounts WHERE id = 1"); db != "-" {
			t.Errorf("database: %s", db)
		}
	})
	t.Run("commit refused", func(t *testing.T) {
		g.suExec(t, snapshotData)
		evs := g.run(t, seen, "owner-ci", "UPDATE pledges SET account = 999 WHERE id = 1")
		if o := outcome(evs, changed(evs)[0]); o.Outcome != record.OutcomeRolledBack || !strings.Contains(o.Reason, "23503") {
			t.Errorf("outcome %+v", o)
		}
		for _, e := range evs {
			if e.Result != nil && e.Result.Command == changed(evs)[0] && (e.Result.Error == nil || e.Result.Error.Code != "23503" || e.Result.Tag != "") {
				t.Errorf("the result records %+v; the agent got the commit's error", e.Result)
			}
		}
	})
	t.Run("commit of a failed transaction", func(t *testing.T) {
		g.suExec(t, snapshotData)
		evs := g.run(t, seen, "owner-ci", "BEGIN", "UPDATE accounts SET note = 'x' WHERE id = 1", "SELECT 1/0", "COMMIT")
		if o := outcome(evs, changed(evs)[0]); o.Outcome != record.OutcomeRolledBack {
			t.Errorf("outcome %+v", o)
		}
	})
	t.Run("pipeline", func(t *testing.T) {
		g.suExec(t, snapshotData)
		conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "require"))
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("UPDATE accounts SET note = $1 WHERE id = $2", "p1", 1)
		b.Queue("UPDATE accounts SET note = $1 WHERE id = $2", "p2", 2)
		b.Queue("SELECT count(*) FROM accounts")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		evs := g.newSessions(t, seen, 1)[0]
		ids := changed(evs)
		if len(ids) != 2 {
			t.Fatalf("changes: %s", dumpChanges(changesIn(evs)))
		}
		o := outcome(evs, ids[0])
		if o.Outcome != record.OutcomeCommitted || len(o.Changes) != 2 {
			t.Errorf("outcome %+v", o)
		}
	})
}

// TestSnapshotNotAnalysed: a change phigate does not read around is
// recorded as such, with the reason, and runs as it would have.
func TestSnapshotNotAnalysed(t *testing.T) {
	g := startSnapshotGateway(t, gatewayOptions{})
	ctx := context.Background()
	seen := map[string]bool{}
	for _, tc := range []struct {
		stmts  []string
		reason string
	}{
		{[]string{"WITH d AS (DELETE FROM accounts WHERE id = 8 RETURNING *) UPDATE accounts SET note = 'x' WHERE id = 1"}, "data-modifying WITH"},
		{[]string{"UPDATE v_accounts SET balance = 7 WHERE id = 3"}, "is a view"},
		{[]string{"UPDATE accounts SET balance = 0 WHERE note(id) = 2"}, "calls note"},
		{[]string{"SELECT note(1)"}, "calls note"},
		{[]string{"UPDATE accounts SET balance = 1 WHERE id = 1; UPDATE accounts SET balance = 2 WHERE id = 2"}, "several statements"},
		{[]string{"TRUNCATE nokey"}, "TRUNCATE"},
		{[]string{"INSERT INTO accounts VALUES (20, 'q', 1) ON CONFLICT DO NOTHING"}, "without a conflict target"},
		{[]string{"UPDATE accounts SET balance = 3 WHERE id IN (SELECT id FROM v_noisy)"}, "reads the view"},
		{[]string{"PREPARE p AS UPDATE accounts SET note = 'p' WHERE id = 1", "EXECUTE p"}, "EXECUTE of a prepared statement"},
		{[]string{"BEGIN", "SELECT 1/0", "UPDATE accounts SET note = 'y' WHERE id = 1", "ROLLBACK"}, "transaction is aborted"},
	} {
		t.Run(tc.stmts[len(tc.stmts)-1], func(t *testing.T) {
			g.suExec(t, snapshotData)
			chs := changesIn(g.run(t, seen, "owner-ci", tc.stmts...))
			if len(chs) == 0 {
				t.Fatal("no change recorded")
			}
			for _, ch := range chs {
				if ch.Phase != record.ChangeNone || !strings.Contains(ch.Reason, tc.reason) || ch.Rows != nil {
					t.Errorf("change %s, want none: ...%s", dumpChanges([]*record.Change{ch}), tc.reason)
				}
			}
		})
	}
	t.Run("table without a key", func(t *testing.T) {
		g.suExec(t, snapshotData)
		chs := changesIn(g.run(t, seen, "owner-ci", "UPDATE nokey SET b = 'q' WHERE a = 1"))
		if len(chs) != 2 || len(chs[0].Rows) != 1 || chs[1].Rows != nil || chs[1].Affected != 1 || !strings.Contains(chs[1].Reason, "no primary key") {
			t.Errorf("changes %s", dumpChanges(chs))
		}
	})
	t.Run("columns the role may not read", func(t *testing.T) {
		g.suExec(t, snapshotData)
		evs := g.run(t, seen, "owner-ci", "UPDATE secrets SET x = 5 WHERE id = 1")
		chs := changesIn(evs)
		if len(chs) != 2 || chs[0].Rows != nil || !strings.Contains(chs[0].Reason, "42501") || chs[1].Affected != 1 {
			t.Errorf("changes %s", dumpChanges(chs))
		}
		if x := g.suQuery(t, "SELECT x::text FROM secrets"); x != "5" {
			t.Errorf("the statement did not run: x = %s", x)
		}
		raw, _ := os.ReadFile(filepath.Join(g.spoolDir, "sessions", evs[0].Session+".rec"))
		if bytes.Contains(raw, []byte("the-secret-value")) {
			t.Error("a value the role may not read is in the recording")
		}
	})
	t.Run("a pipeline that goes on with transaction control", func(t *testing.T) {
		g.suExec(t, snapshotData)
		conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "require"))
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("UPDATE accounts SET note = $1 WHERE id = $2", "q", 1)
		b.Queue("SAVEPOINT s")
		_ = conn.SendBatch(ctx, b).Close()
		conn.Close(ctx)
		chs := changesIn(g.newSessions(t, seen, 1)[0])
		if len(chs) != 1 || chs[0].Phase != record.ChangeNone || !strings.Contains(chs[0].Reason, "later statement of its pipeline") {
			t.Errorf("changes %s", dumpChanges(chs))
		}
	})
	t.Run("snapshots off", func(t *testing.T) {
		off := startSnapshotGateway(t, gatewayOptions{disableSnapshots: true, upstreamRole: "phigate_svc_nosnap"})
		evs := off.run(t, map[string]bool{}, "owner-ci", "UPDATE accounts SET note = 'n' WHERE id = 1")
		if chs := changesIn(evs); len(chs) != 0 {
			t.Errorf("changes recorded with snapshots off: %s", dumpChanges(chs))
		}
	})
}
