package chaos

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/pgtest"
)

// TestReloadOnHangup drives the real binary: SIGHUP with a broken file
// changes nothing (the node says why and keeps serving); SIGHUP with a
// narrower grant ends the session that needs a stronger login than the
// grant now gives, and new sessions get the narrower grant.
func TestReloadOnHangup(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, pgtest.Shared(t))
	n := c.startNode(t)
	conn, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (1, 'before reload')"); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}

	hangup := func(conf, wantLog string) {
		t.Helper()
		if err := os.WriteFile(c.config, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(n.log)
			if strings.Contains(string(b), wantLog) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the node's log after SIGHUP:\n%s", wantLog, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	hangup(strings.Replace(string(good), "resources: [chaos]", "resources: [nowhere]", 1), "reload refused")
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (2, 'after a refused reload')"); err != nil {
		t.Fatalf("a refused reload disturbed the session: %v", err)
	}

	hangup(strings.Replace(string(good), "allow: [read, write]", "allow: [read]", 1), "state reloaded")
	if _, err := conn.Exec(ctx, "INSERT INTO events VALUES (3, 'after the grant narrowed')"); err == nil {
		t.Fatal("the session kept writing after its grant lost write")
	}
	fresh, err := pgx.Connect(ctx, c.dsn(n, "writer"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	if _, err := fresh.Exec(ctx, "INSERT INTO events VALUES (4, 'new session')"); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("INSERT under the narrowed grant: %v, want 42501", err)
	}
	var ids []int
	rows, err := fresh.Query(ctx, "SELECT id FROM events ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(ids) != 2 || ids[0] != 1 || ids[1] != 2 {
		t.Fatalf("events = %v, %v; want [1 2]", ids, err)
	}
	n.stop(t)
}
