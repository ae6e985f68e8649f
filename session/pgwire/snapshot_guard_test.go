package pgwire_test

import (
	"os"
	"strings"
	"testing"

	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/record"
)

// TestSnapshotResolutionGuard: a session's later snapshots of the same
// relations skip the resolve round trip and check, in the server, that
// the names still resolve as before. The attack: make a name the agent
// wrote before resolve to something else (a view whose columns call a
// function with an effect) between two of its statements, from its own
// session (search_path) and from another one (rename and replace). Each
// time, phigate must not read the view (the function's effect, counter,
// stays empty), must record why it did not, and the agent's statements
// must run as without phigate. The server log shows the round trips saved.
func TestSnapshotResolutionGuard(t *testing.T) {
	useAttackLogPrefix(t)
	g := startSnapshotGateway(t, gatewayOptions{cleartextLoopback: true})
	g.suExec(t, "ALTER DATABASE "+g.db+" SET log_statement = 'all'")
	fi, err := os.Stat(g.pg.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	logStart := fi.Size()
	c, err := dialView(t, g, "owner-ci")
	if err != nil {
		t.Fatal(err)
	}
	run := func(sql string) {
		t.Helper()
		if _, err := c.exchange(q(sql)); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	run("UPDATE accounts SET note = 'a' WHERE id = 1") // resolved
	run("UPDATE accounts SET note = 'b' WHERE id = 2") // guarded
	run("SET search_path = evil, public")
	run("UPDATE accounts SET note = 'c' WHERE id = 3") // guard fails: a view now
	run("RESET search_path")
	run("UPDATE accounts SET note = 'd' WHERE id = 4") // resolved again
	g.suExec(t, "SET ROLE phigate_svc; ALTER TABLE accounts RENAME TO accounts_real; "+
		"CREATE VIEW accounts AS SELECT id, owner, balance, note, note(id) AS n FROM accounts_real; RESET ROLE")
	run("UPDATE accounts SET note = 'e' WHERE id = 5") // guard fails: replaced by a view
	g.suExec(t, "SET ROLE phigate_svc; DROP VIEW accounts; ALTER TABLE accounts_real RENAME TO accounts; RESET ROLE")
	run("UPDATE accounts SET note = 'f' WHERE id = 6") // resolved again
	run("UPDATE accounts SET note = 'g' WHERE id = 7") // guarded
	c.nc.Close()

	if n := g.suQuery(t, "SELECT count(*) FROM counter"); n != "0" {
		t.Errorf("the view's function ran %s times: phigate read a relation that had become a view", n)
	}
	if got := g.suQuery(t, "SELECT string_agg(coalesce(note, '-'), '' ORDER BY id) FROM accounts"); got != "abcdefg-" {
		t.Errorf("notes %q, want abcdefg-: not every statement ran", got)
	}

	// The recording: a before read for a, b, d, f, g; c and e not analysed
	// because their target is a view.
	sessions := g.newSessions(t, map[string]bool{}, 1)
	want := map[string]string{"a": "before", "b": "before", "c": "view", "d": "before", "e": "view", "f": "before", "g": "before"}
	got := map[string]string{}
	var cmdNote = map[uint64]string{}
	for _, e := range sessions[0] {
		if e.Command != nil && e.Command.Postgres != nil {
			if rest, ok := strings.CutPrefix(e.Command.Postgres.SQL, "UPDATE accounts SET note = '"); ok {
				cmdNote[e.Command.ID] = rest[:1]
			}
		}
		if ch := e.Change; ch != nil {
			note := cmdNote[ch.Command]
			switch {
			case ch.Phase == record.ChangeBefore && len(ch.Rows) == 1:
				got[note] = "before"
			case ch.Phase == record.ChangeNone && strings.Contains(ch.Reason, "is a view"):
				got[note] = "view"
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("statement %s: recorded %q, want %q (all: %v)", k, got[k], v, got)
		}
	}

	var resolves, guards, failed int
	for _, e := range readServerLog(t, g.pg.LogPath(), logStart, g.db) {
		if e.level == "ERROR" && e.msg == "division by zero" {
			failed++
		}
		if m := executeLine.FindStringSubmatch(e.msg); m != nil && strings.HasPrefix(m[1], "phigate_snapshot_") {
			switch {
			case m[3] == pgwire.ResolveSQLForTest:
				resolves++
			case pgwire.IsGuardForTest(m[3]):
				guards++
			}
		}
	}
	// a, d and f resolve (nothing remembered); b, c, e and g are guarded,
	// and the guards of c and e fail, so they resolve too.
	if resolves != 5 || guards != 4 || failed != 2 {
		t.Errorf("the server ran %d resolutions and %d guards, %d of which failed; want 5, 4 and 2", resolves, guards, failed)
	}
}
