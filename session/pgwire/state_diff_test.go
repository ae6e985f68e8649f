package pgwire_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/session/record"
)

// TestServerStateDifferential drives random pipelines of statement and
// portal operations (Parse, Bind, Execute, Close, Sync, and SQL PREPARE,
// DEALLOCATE, DECLARE, CLOSE, DISCARD, transactions and savepoints, errors)
// once straight at PostgreSQL and once through phigate. Every statement
// returns its own tag, so the server itself says what each Execute ran.
// What the agent receives must be the same both ways, and for every Execute
// that returned rows the recording must name the statement that produced
// them. PHIGATE_STATE_SEQUENCES sets how many sequences run (default 40).
func TestServerStateDifferential(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	n := 40
	if s := os.Getenv("PHIGATE_STATE_SEQUENCES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	direct := g.pg.DSN("phigate_svc", g.upstreamPW, g.db)
	seen := map[string]bool{}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		chunks := genPipelines(rand.New(rand.NewPCG(seed, 7)))
		want, _ := runPipelines(t, ctx, direct, chunks)
		got, conn := runPipelines(t, ctx, g.dsn("writer-ci", "require"), chunks)
		if got.String() != want.String() {
			t.Fatalf("seed %d: through phigate the agent saw\n%s\nstraight from PostgreSQL\n%s\nops:\n%s", seed, got, want, describeChunks(chunks))
		}
		conn.Close(ctx)
		checkExecutesRecorded(t, g, seen, seed, got.rowTags)
	}
}

// transcript is what an agent sees of a pipeline: rows, errors, tags and
// transaction states, in order.
type transcript struct {
	lines   []string
	rowTags []string // the tag of each row an Execute returned
}

func (tr *transcript) String() string { return strings.Join(tr.lines, "\n") }

func runPipelines(t *testing.T, ctx context.Context, dsn string, chunks [][]pgproto3.FrontendMessage) (*transcript, *pgconn.PgConn) {
	t.Helper()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	fe := conn.Frontend()
	tr := &transcript{}
	for _, chunk := range chunks {
		waits := 0
		for _, m := range chunk {
			fe.Send(m)
			switch m.(type) {
			case *pgproto3.Sync, *pgproto3.Query:
				waits++
			}
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = conn.Conn().SetReadDeadline(time.Now().Add(20 * time.Second))
		for waits > 0 {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatalf("receive: %v\nseen:\n%s\nops:\n%s", err, tr, describeChunks(chunks))
			}
			switch m := msg.(type) {
			case *pgproto3.DataRow:
				// The simple queries generated here return no rows: every
				// row is an Execute's.
				tr.lines = append(tr.lines, "row "+string(m.Values[0]))
				tr.rowTags = append(tr.rowTags, string(m.Values[0]))
			case *pgproto3.ErrorResponse:
				tr.lines = append(tr.lines, "error "+notRun(m.Code))
			case *pgproto3.CommandComplete:
				tr.lines = append(tr.lines, "complete "+string(m.CommandTag))
			case *pgproto3.ReadyForQuery:
				tr.lines = append(tr.lines, "ready "+string(m.TxStatus))
				waits--
			}
		}
	}
	return tr, conn
}

// notRun folds the errors that all mean "this portal cannot run now" (no
// such portal, a portal failed with its transaction, any command in an
// aborted transaction): phigate refuses a portal the server has left failed
// as one that does not exist, which runs nothing either way.
func notRun(code string) string {
	switch code {
	case "34000", "55000", "25P02":
		return "34000|55000|25P02"
	}
	return code
}

// checkExecutesRecorded: the executes the recording says returned rows name,
// in order, the statements whose tags the agent received.
func checkExecutesRecorded(t *testing.T, g *gateway, seen map[string]bool, seed uint64, tags []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var evs []*record.Event
	for {
		var found bool
		for _, e := range g.sessions(t, int(seed)) {
			if len(e) > 0 && !seen[e[0].Session] {
				evs, found = e, true
				seen[e[0].Session] = true
				break
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: no new session recorded", seed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sql := map[uint64]string{}
	var recorded []string
	for _, e := range evs {
		switch {
		case e.Kind == record.KindCommand && e.Command.Postgres.Step == record.StepExecute:
			sql[e.Command.ID] = e.Command.Postgres.SQL
		case e.Kind == record.KindResult && e.Result.Rows > 0 && e.Result.Error == nil:
			if s, ok := sql[e.Result.Command]; ok {
				recorded = append(recorded, s)
			}
		}
	}
	if len(recorded) != len(tags) {
		var b strings.Builder
		for _, e := range evs {
			switch e.Kind {
			case record.KindCommand:
				fmt.Fprintf(&b, "command %d %s %s %q %s\n", e.Command.ID, e.Command.Postgres.Step, e.Command.Postgres.Portal, e.Command.Postgres.SQL, e.Command.Decision)
			case record.KindResult:
				fmt.Fprintf(&b, "result %d %q rows %d err %v\n", e.Result.Command, e.Result.Tag, e.Result.Rows, e.Result.Error)
			}
		}
		t.Fatalf("seed %d: %d executes with rows recorded, %d seen by the agent\n%s", seed, len(recorded), len(tags), b.String())
	}
	for i, tag := range tags {
		if !strings.Contains(recorded[i], "'"+tag+"'") {
			t.Fatalf("seed %d: execute %d returned %s, recorded as %q", seed, i, tag, recorded[i])
		}
	}
}

// genPipelines makes a random session: chunks of messages, each ending in
// Sync or Query, sent pipelined.
func genPipelines(r *rand.Rand) [][]pgproto3.FrontendMessage {
	stmtNames := []string{"a", "b", ""}
	portalNames := []string{"p", "q", ""}
	cursorNames := []string{"p", "q"}
	savepoints := []string{"s1", "s2"}
	tag := 0
	next := func() string { tag++; return fmt.Sprintf("t%d", tag) }
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	query := func() string {
		switch r.IntN(14) {
		case 0:
			return "BEGIN"
		case 1:
			return "COMMIT"
		case 2:
			return "ROLLBACK"
		case 3:
			return "SAVEPOINT " + pick(savepoints)
		case 4:
			return "ROLLBACK TO SAVEPOINT " + pick(savepoints)
		case 5:
			return "RELEASE SAVEPOINT " + pick(savepoints)
		case 6:
			return fmt.Sprintf("PREPARE %s AS SELECT '%s' AS t", pick(stmtNames[:2]), next())
		case 7:
			return "DEALLOCATE " + pick([]string{"a", "b", "ALL"})
		case 8:
			hold := ""
			if r.IntN(2) == 0 {
				hold = " WITH HOLD"
			}
			return fmt.Sprintf("DECLARE %s CURSOR%s FOR SELECT '%s' AS t", pick(cursorNames), hold, next())
		case 9:
			return "CLOSE " + pick([]string{"p", "q", "ALL"})
		case 10:
			return "DISCARD ALL"
		case 11:
			return "SELECT 1/0"
		case 12:
			return "BEGIN; DECLARE " + pick(cursorNames) + fmt.Sprintf(" CURSOR FOR SELECT '%s' AS t", next())
		}
		return "COMMIT AND CHAIN"
	}
	// A chunk is a few units sent pipelined: a simple Query, or extended
	// messages closed by a Sync (the server skips a Query sent inside a
	// failed batch, which would make the answers uncountable here).
	var chunks [][]pgproto3.FrontendMessage
	for range 6 + r.IntN(6) {
		var chunk []pgproto3.FrontendMessage
		for range 1 + r.IntN(4) {
			if r.IntN(3) == 0 {
				chunk = append(chunk, &pgproto3.Query{String: query()})
				continue
			}
			for range 1 + r.IntN(5) {
				switch r.IntN(13) {
				case 11, 12:
					// Transaction control, cursors and PREPARE through the
					// extended protocol, in the middle of a batch.
					q := query()
					chunk = append(chunk, &pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Execute{})
				case 0, 1, 2:
					q := fmt.Sprintf("SELECT '%s' AS t", next())
					if r.IntN(8) == 0 {
						q = "SELECT nosuchcolumn AS t" // refused at Parse by the server
					}
					chunk = append(chunk, &pgproto3.Parse{Name: pick(stmtNames), Query: q})
				case 3, 4, 5:
					chunk = append(chunk, &pgproto3.Bind{DestinationPortal: pick(portalNames), PreparedStatement: pick(stmtNames)})
				case 6, 7, 8:
					chunk = append(chunk, &pgproto3.Execute{Portal: pick(portalNames)})
				case 9:
					chunk = append(chunk, &pgproto3.Close{ObjectType: "SP"[r.IntN(2)], Name: pick(append(stmtNames, portalNames...))})
				case 10:
					chunk = append(chunk, &pgproto3.Describe{ObjectType: "SP"[r.IntN(2)], Name: pick(append(stmtNames, portalNames...))})
				}
			}
			chunk = append(chunk, &pgproto3.Sync{})
		}
		chunks = append(chunks, chunk)
	}
	chunks = append(chunks, []pgproto3.FrontendMessage{&pgproto3.Query{String: "ROLLBACK"}})
	return chunks
}

func describeChunks(chunks [][]pgproto3.FrontendMessage) string {
	var b strings.Builder
	for i, chunk := range chunks {
		fmt.Fprintf(&b, "-- chunk %d\n", i)
		for _, m := range chunk {
			switch m := m.(type) {
			case *pgproto3.Parse:
				fmt.Fprintf(&b, "Parse %q %q\n", m.Name, m.Query)
			case *pgproto3.Bind:
				fmt.Fprintf(&b, "Bind %q <- %q\n", m.DestinationPortal, m.PreparedStatement)
			case *pgproto3.Execute:
				fmt.Fprintf(&b, "Execute %q\n", m.Portal)
			case *pgproto3.Close:
				fmt.Fprintf(&b, "Close %c %q\n", m.ObjectType, m.Name)
			case *pgproto3.Describe:
				fmt.Fprintf(&b, "Describe %c %q\n", m.ObjectType, m.Name)
			case *pgproto3.Sync:
				b.WriteString("Sync\n")
			case *pgproto3.Query:
				fmt.Fprintf(&b, "Query %q\n", m.String)
			}
		}
	}
	return b.String()
}
