package pgwire_test

import (
	"bufio"
	"context"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/record"
)

// phigateHelpers are the statements phigate runs for snapshots besides the
// reads it records: its transaction block, its savepoint, and the
// resolution of relation names (resolveSQL, guardSQL).
var phigateHelpers = []string{"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT phigate_snapshot", "RELEASE SAVEPOINT phigate_snapshot",
	"ROLLBACK TO SAVEPOINT phigate_snapshot"}

// TestSnapshotRunsOnlyWhatIsRecorded runs the scripts of the client-view
// test, hostile ones included, with the server logging every statement
// it runs for the database, and holds the server's own account against
// the recording: each statement it ran for an agent's session is a
// recorded command, a recorded snapshot read (on a statement and portal of
// phigate's), or one of phigate's few fixed statements (its transaction
// block, its savepoint, its name resolution). Nothing else reaches the
// server; in particular no text of the agent's becomes a statement of its
// own, and nothing runs on another connection or under another role.
func TestSnapshotRunsOnlyWhatIsRecorded(t *testing.T) {
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
	for _, name := range slices.Sorted(maps.Keys(viewScripts)) {
		if !strings.HasPrefix(name, "attack: ") && !auditedScripts[name] {
			continue
		}
		g.suExec(t, snapshotData)
		for _, bt := range viewScripts[name] {
			if _, err := c.exchange(bt); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	c.nc.Close()
	sessions := g.newSessions(t, map[string]bool{}, 1)

	var commands []*record.Command
	reads := map[string]bool{}
	for _, evs := range sessions {
		for _, e := range evs {
			switch {
			case e.Command != nil && e.Command.Decision == "allow":
				commands = append(commands, e.Command)
			case e.Change != nil && e.Change.Read != "":
				reads[e.Change.Read] = true
			}
		}
	}
	used := make([]bool, len(commands))
	ranCommand := func(extended bool, portal, sql string) bool {
		for i, c := range commands {
			pg := c.Postgres
			if used[i] || pg == nil {
				continue
			}
			if !extended && pg.Flow == record.FlowSimple && pg.SQL == sql ||
				extended && pg.Flow == record.FlowExtended && pg.Portal == portal && pg.SQL != "" && strings.Contains(sql, pg.SQL) {
				used[i] = true
				return true
			}
		}
		return false
	}
	skip := map[int]bool{}
	if pids, err := g.catalogPIDs(); err == nil {
		skip = pids
	}
	var ran, helpers, snapReads int
	for _, e := range readServerLog(t, g.pg.LogPath(), logStart, g.db) {
		if e.level != "LOG" || skip[e.pid] {
			continue
		}
		if s, ok := strings.CutPrefix(e.msg, "statement: "); ok {
			if strings.HasPrefix(s, "SELECT n.nspname, c.relname, a.attnum") || s == "-- ping" {
				continue // phigate's catalog connection, as it logs in
			}
			ran++
			if !ranCommand(false, "", s) {
				t.Errorf("the server ran a simple query the recording does not hold: %.200q", s)
			}
			continue
		}
		m := executeLine.FindStringSubmatch(e.msg)
		if m == nil {
			continue
		}
		ran++
		stmt, portal, sql := m[1], m[2], m[3]
		if strings.HasPrefix(stmt, "phigate_snapshot_") && portal == stmt {
			switch {
			case reads[sql]:
				snapReads++
			case sql == pgwire.ResolveSQLForTest || pgwire.IsGuardForTest(sql) || containsString(phigateHelpers, sql):
				helpers++
			default:
				t.Errorf("the server ran a statement of phigate's that is not a recorded read nor one of its fixed statements: %.300q", sql)
			}
			continue
		}
		if !ranCommand(true, portal, sql) {
			t.Errorf("the server ran an Execute (portal %q) the recording does not hold: %.200q", portal, sql)
		}
	}
	if snapReads == 0 || helpers == 0 || ran == 0 {
		t.Fatalf("the server log shows %d statements, %d snapshot reads, %d helpers: is log_statement on?", ran, snapReads, helpers)
	}
	t.Logf("%d statements run: %d snapshot reads, %d of phigate's fixed statements", ran, snapReads, helpers)
}

// auditedScripts are the client-view scripts, beyond the hostile ones,
// whose statements the server log is held against: each way a read runs
// (implicit, explicit, pipelined, failing, restored, not analysed).
var auditedScripts = map[string]bool{
	"simple implicit": true, "simple commit": true, "simple aborted": true, "simple deferred violation": true,
	"simple upserts and merge": true, "savepoints": true, "no key": true, "view target": true,
	"extended implicit": true, "extended two": true, "extended savepoint": true, "extended check": true,
	"extended kinds": true, "extended suspended": true, "bind fails": true,
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// catalogPIDs are the server processes of phigate's catalog connection.
func (g *gateway) catalogPIDs() (map[int]bool, error) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(g.pg.DSN("postgres", "", g.db))
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["log_statement"] = "none"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = 'phigate-catalog'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var pid int
		_ = rows.Scan(&pid)
		out[pid] = true
	}
	return out, rows.Err()
}

// readServerLog returns what the server logged for database db since
// offset start (the log line prefix of useAttackLogPrefix).
func readServerLog(t *testing.T, path string, start int64, db string) []pgLogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var out []pgLogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := pgLogLine.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			out = append(out, pgLogEntry{pid: pid, db: m[2], level: m[3], msg: m[4]})
			continue
		}
		if len(out) > 0 && strings.HasPrefix(line, "\t") {
			out[len(out)-1].msg += "\n" + line[1:]
		}
	}
	var mine []pgLogEntry
	for _, e := range out {
		if e.db == db {
			mine = append(mine, e)
		}
	}
	return mine
}
