package pgwire_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/session/record"
)

// snapshotFixture is what the snapshot tests change: accounts with a
// check, rows that other tables hold on to (at once and deferred), a
// source for MERGE, a table without a key, an updatable view, and a
// function with an effect that counts its calls.
const snapshotFixture = `
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL CHECK (balance >= 0), note text);
CREATE TABLE holds (id int PRIMARY KEY, account int REFERENCES accounts (id));
CREATE TABLE pledges (id int PRIMARY KEY, account int REFERENCES accounts (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE incoming (id int, amount numeric);
CREATE TABLE nokey (a int, b text);
CREATE VIEW v_accounts AS SELECT id, owner, balance FROM accounts;
CREATE TABLE counter (n int);
CREATE FUNCTION note(i int) RETURNS int LANGUAGE plpgsql AS $f$ BEGIN INSERT INTO counter VALUES (i); RETURN i; END $f$;
CREATE VIEW v_noisy AS SELECT id, balance, note(id) AS n FROM accounts;
CREATE TABLE "acc; DELETE FROM accounts; --" (id int PRIMARY KEY, "v""x" text);
CREATE SCHEMA evil;
CREATE VIEW evil.accounts AS SELECT id, owner, balance, note, note(id) AS n FROM public.accounts;
CREATE TABLE phigate_rows (id int, owner text, balance numeric, note text);
`

// secretsFixture is a table the gateway's role (ROLE) may update but not
// wholly read: its secret column is the superuser's.
const secretsFixture = `
CREATE TABLE secrets (id int PRIMARY KEY, secret text, x int);
INSERT INTO secrets VALUES (1, 'the-secret-value', 0);
GRANT SELECT (id, x), UPDATE (x) ON secrets TO ROLE;
`

// snapshotData resets the fixture's rows. TRUNCATE rather than DELETE:
// a fresh heap puts the rows in insertion order on both gateways'
// databases, so a statement without ORDER BY (UPDATE ... RETURNING)
// answers in the same order whatever vacuum did to either database.
const snapshotData = `
TRUNCATE holds, pledges, accounts, incoming, nokey, counter, "acc; DELETE FROM accounts; --", phigate_rows;
INSERT INTO accounts VALUES (1, 'ann', 100, NULL), (2, 'ann', 50, NULL), (3, 'bob', 10, NULL),
	(4, 'cy', 1, NULL), (5, 'cy', 1, NULL), (6, 'cy', 1, NULL), (7, 'cy', 1, NULL), (8, 'cy', 1, NULL);
INSERT INTO holds VALUES (1, 3);
INSERT INTO pledges VALUES (1, 1);
INSERT INTO incoming VALUES (1, 100), (9, 50);
INSERT INTO nokey VALUES (1, 'x'), (2, 'y');
UPDATE secrets SET x = 0;
INSERT INTO "acc; DELETE FROM accounts; --" VALUES (1, 'a'), (2, 'b');
INSERT INTO phigate_rows VALUES (1, 'ann', 7, 'shadow');
`

// startSnapshotGateway is a gateway with the snapshot fixture, owned by
// the gateway's upstream role.
func startSnapshotGateway(t *testing.T, opts gatewayOptions) *gateway {
	t.Helper()
	g := startGateway(t, opts)
	// Commits need not wait for the disk here: nothing these tests check
	// depends on it, and this machine's fsync is slow.
	g.suExec(t, "ALTER DATABASE "+g.db+" SET synchronous_commit = off")
	role := opts.upstreamRole
	if role == "" {
		role = "phigate_svc"
	}
	g.suExec(t, "SET ROLE "+role+";"+snapshotFixture+"RESET ROLE;"+strings.ReplaceAll(secretsFixture, "ROLE", role)+snapshotData)
	return g
}

func (g *gateway) suExec(t *testing.T, sql string) {
	t.Helper()
	if _, err := g.superuser(t).Exec(context.Background(), sql).ReadAll(); err != nil {
		t.Fatalf("fixture: %v", err)
	}
}

// superuser is a connection to the gateway's database as the superuser,
// not logged and not waiting for commits to reach the disk, made once.
func (g *gateway) superuser(t *testing.T) *pgconn.PgConn {
	t.Helper()
	if g.su != nil {
		return g.su
	}
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(g.pg.DSN("postgres", "", g.db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["synchronous_commit"] = "off"
	cfg.RuntimeParams["log_statement"] = "none"
	if g.su, err = pgconn.ConnectConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.su.Close(context.Background()) })
	return g.su
}

// suQuery returns the first column of the first row of sql, as the
// superuser sees it.
func (g *gateway) suQuery(t *testing.T, sql string) string {
	t.Helper()
	res, err := g.superuser(t).Exec(context.Background(), sql).ReadAll()
	if err != nil || len(res) == 0 || res[0].Err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if len(res[0].Rows) == 0 || res[0].Rows[0][0] == nil {
		return ""
	}
	return string(res[0].Rows[0][0])
}

// newSessions waits for n sessions not in seen to end and returns their
// events, in session id order (marking them seen).
func (g *gateway) newSessions(t *testing.T, seen map[string]bool, n int) [][]*record.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(g.spoolDir, "sessions", "*.rec"))
		var out [][]*record.Event
		var ids []string
		for _, f := range files {
			id := strings.TrimSuffix(filepath.Base(f), ".rec")
			if seen[id] {
				continue
			}
			evs, closed, err := g.readSession(id)
			if err != nil {
				t.Fatalf("session %s: %v", id, err)
			}
			if closed {
				out, ids = append(out, evs), append(ids, id)
			}
		}
		if len(out) >= n {
			if len(out) > n {
				t.Fatalf("want %d new sessions, got %d", n, len(out))
			}
			for _, id := range ids {
				seen[id] = true
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d new ended sessions, have %d", n, len(out))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func changesIn(evs []*record.Event) []*record.Change {
	var out []*record.Change
	for _, e := range evs {
		if e.Kind == record.KindChange {
			out = append(out, e.Change)
		}
	}
	return out
}

func outcomesIn(evs []*record.Event) []*record.ChangeOutcome {
	var out []*record.ChangeOutcome
	for _, e := range evs {
		if e.Kind == record.KindChangeOutcome {
			out = append(out, e.Outcome)
		}
	}
	return out
}

// cells renders the rows of a change as "id:balance", sorted.
func cells(t *testing.T, ch *record.Change, cols ...string) []string {
	t.Helper()
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = slices.Index(ch.Columns, c)
		if idx[i] < 0 {
			t.Fatalf("change has no column %s: %v", c, ch.Columns)
		}
	}
	var out []string
	for _, row := range ch.Rows {
		var parts []string
		for _, i := range idx {
			if row[i] == nil {
				parts = append(parts, "NULL")
			} else {
				parts = append(parts, *row[i])
			}
		}
		out = append(out, strings.Join(parts, ":"))
	}
	slices.Sort(out)
	return out
}

// snapshotKinds are the four kinds of change, each as a statement with
// literals (simple protocol), one with parameters (extended), and one of
// the same kind that the server refuses after the before read.
var snapshotKinds = []struct {
	name     string
	simple   string
	ext      string
	args     []any
	fail     string
	before   []string // id:balance
	after    []string
	affected int64
}{
	{name: "update",
		simple: "UPDATE accounts SET balance = balance + 10 WHERE owner = 'ann'",
		ext:    "UPDATE accounts SET balance = balance + $1 WHERE owner = $2", args: []any{10, "ann"},
		fail:   "UPDATE accounts SET balance = balance - 1000 WHERE owner = 'ann'",
		before: []string{"1:100", "2:50"}, after: []string{"1:110", "2:60"}, affected: 2},
	{name: "delete",
		simple: "DELETE FROM accounts WHERE owner = 'cy' AND id > 6",
		ext:    "DELETE FROM accounts WHERE owner = $1 AND id > $2", args: []any{"cy", 6},
		fail:   "DELETE FROM accounts WHERE id = 3",
		before: []string{"7:1", "8:1"}, affected: 2},
	{name: "insert on conflict do update",
		simple: "INSERT INTO accounts (id, owner, balance) VALUES (1, 'ann', 5), (9, 'zed', 1) ON CONFLICT (id) DO UPDATE SET balance = excluded.balance",
		ext:    "INSERT INTO accounts (id, owner, balance) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT (id) DO UPDATE SET balance = excluded.balance",
		args:   []any{1, "ann", 5, 9, "zed", 1},
		fail:   "INSERT INTO accounts (id, owner, balance) VALUES (1, 'ann', 5) ON CONFLICT (id) DO UPDATE SET balance = -5",
		before: []string{"1:100"}, after: []string{"1:5", "9:1"}, affected: 2},
	{name: "insert on conflict do nothing",
		simple: "INSERT INTO accounts (id, owner, balance) VALUES (1, 'ann', 5), (9, 'zed', 1) ON CONFLICT (id) DO NOTHING",
		ext:    "INSERT INTO accounts (id, owner, balance) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT (id) DO NOTHING",
		args:   []any{1, "ann", 5, 9, "zed", 1},
		fail:   "INSERT INTO accounts (id, owner, balance) VALUES (10, 'x', -1) ON CONFLICT (id) DO NOTHING",
		before: []string{"1:100"}, after: []string{"1:100", "9:1"}, affected: 1},
	{name: "merge",
		simple: "MERGE INTO accounts a USING incoming i ON a.id = i.id WHEN MATCHED THEN UPDATE SET balance = a.balance + i.amount WHEN NOT MATCHED THEN INSERT VALUES (i.id, 'new', i.amount)",
		ext:    "MERGE INTO accounts a USING (SELECT * FROM incoming WHERE amount > $1) i ON a.id = i.id WHEN MATCHED THEN UPDATE SET balance = a.balance + i.amount WHEN NOT MATCHED THEN INSERT VALUES (i.id, 'new', i.amount)",
		args:   []any{0},
		fail:   "MERGE INTO accounts a USING incoming i ON a.id = i.id WHEN MATCHED THEN UPDATE SET balance = -1",
		before: []string{"1:100"}, after: []string{"1:200", "9:50"}, affected: 2},
}

const fixtureBalances = "1:100,2:50,3:10,4:1,5:1,6:1,7:1,8:1"

// TestSnapshotKinds: every kind of change, sent by the simple and the
// extended protocol, in an implicit transaction, in one committed, one
// rolled back, one an error aborts, a pipeline an error aborts, and alone
// failing: the recording holds the rows before and after it, the true
// count, and whether the change lasted, as the database says.
func TestSnapshotKinds(t *testing.T) {
	g := startSnapshotGateway(t, gatewayOptions{})
	ctx := context.Background()
	seen := map[string]bool{}
	for _, k := range snapshotKinds {
		for _, proto := range []string{"simple", "extended"} {
			for _, mode := range []string{"implicit", "commit", "rollback", "error", "pipeline error", "fails"} {
				if mode == "pipeline error" && proto == "simple" {
					continue
				}
				t.Run(k.name+"/"+proto+"/"+mode, func(t *testing.T) {
					g.suExec(t, snapshotData)
					conn, err := pgx.Connect(ctx, g.dsn("owner-ci", "require"))
					if err != nil {
						t.Fatal(err)
					}
					sql, args := k.simple, []any{pgx.QueryExecModeSimpleProtocol}
					if proto == "extended" {
						sql, args = k.ext, k.args
					}
					if mode == "fails" {
						sql, args = k.fail, []any{pgx.QueryExecModeSimpleProtocol}
						if proto == "extended" {
							args = nil
						}
					}
					exec := func(q string, a ...any) error { _, err := conn.Exec(ctx, q, a...); return err }
					var stmtErr error
					switch mode {
					case "implicit", "fails":
						stmtErr = exec(sql, args...)
					case "commit", "rollback", "error":
						if err := exec("BEGIN"); err != nil {
							t.Fatal(err)
						}
						stmtErr = exec(sql, args...)
						if mode == "error" {
							if err := exec("SELECT 1/0"); !isSQLState(err, "22012") {
								t.Fatalf("SELECT 1/0: %v", err)
							}
						}
						end := "COMMIT"
						if mode != "commit" {
							end = "ROLLBACK"
						}
						if err := exec(end); err != nil {
							t.Fatal(err)
						}
					case "pipeline error":
						b := &pgx.Batch{}
						b.Queue(sql, args...)
						b.Queue("SELECT 1/0")
						if err := conn.SendBatch(ctx, b).Close(); !isSQLState(err, "22012") {
							t.Fatalf("batch: %v", err)
						}
					}
					if (stmtErr != nil) != (mode == "fails") {
						t.Fatalf("statement: %v", stmtErr)
					}
					conn.Close(ctx)
					evs := g.newSessions(t, seen, 1)[0]
					chs, outs := changesIn(evs), outcomesIn(evs)
					if len(chs) != 2 || chs[0].Phase != record.ChangeBefore || chs[1].Phase != record.ChangeAfter {
						t.Fatalf("changes: %s", dumpChanges(chs))
					}
					before, after := chs[0], chs[1]
					if before.Table != "public.accounts" || before.Read == "" || before.Reason != "" {
						t.Errorf("before: %s", dumpChanges(chs[:1]))
					}
					db := g.suQuery(t, "SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM accounts")
					if len(outs) != 1 || len(outs[0].Changes) != 1 || outs[0].Changes[0] != (record.ChangeRef{Command: before.Command, Statement: 0}) {
						t.Fatalf("outcomes: %+v", outs)
					}
					if mode == "fails" {
						if after.Error == nil || after.Rows != nil || outs[0].Outcome != record.OutcomeRolledBack || db != fixtureBalances {
							t.Errorf("failed statement: after %s, outcome %+v, database %s", dumpChanges(chs[1:]), outs[0], db)
						}
						return
					}
					if got := cells(t, before, "id", "balance"); !slices.Equal(got, k.before) {
						t.Errorf("before rows %v, want %v", got, k.before)
					}
					if after.Affected != k.affected || after.Error != nil {
						t.Errorf("after: affected %d error %v, want %d", after.Affected, after.Error, k.affected)
					}
					if k.after == nil {
						if after.Read != "" || after.Rows != nil {
							t.Errorf("a DELETE has after rows: %s", dumpChanges(chs[1:]))
						}
					} else if got := cells(t, after, "id", "balance"); !slices.Equal(got, k.after) {
						t.Errorf("after rows %v, want %v", got, k.after)
					}
					committed := mode == "implicit" || mode == "commit"
					want := record.OutcomeRolledBack
					if committed {
						want = record.OutcomeCommitted
					}
					if outs[0].Outcome != want {
						t.Errorf("outcome %+v, want %s", outs[0], want)
					}
					if committed == (db == fixtureBalances) {
						t.Errorf("database %s after a change recorded as %s", db, outs[0].Outcome)
					}
				})
			}
		}
	}
}

func dumpChanges(chs []*record.Change) string {
	var b strings.Builder
	for _, c := range chs {
		fmt.Fprintf(&b, "\n\t%s %s table=%s rows=%d more=%v affected=%d err=%v reason=%q read=%q", c.Phase, c.Op, c.Table, len(c.Rows), c.More, c.Affected, c.Error, c.Reason, c.Read)
	}
	return b.String()
}
