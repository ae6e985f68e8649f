package pgwire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

func psql(t *testing.T, dsn string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("psql", append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-At", dsn}, args...)...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPsqlMasksAndRecords(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	out, err := psql(t, g.dsn("reader-bot", "require"), "-c", "SELECT id, name, ssn, dob, phone, notes FROM patients ORDER BY id")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	want := "1|[redacted]|***-**-6789||+* *** *** 0134|Seen for follow-up.\n" +
		"2|[redacted]|***-**-4321||+* *** *** 0188|\n" +
		"3|[redacted]||||No PHI here.\n" +
		"4|[redacted]||||Called daughter [NAME] at [PHONE] on [DATE] about her BP 120/80.\n"
	if out != want {
		t.Fatalf("masked output:\n%s\nwant:\n%s", out, want)
	}
	evs := only(t, g.sessions(t, 1))
	if got := kinds(evs); !slices.Equal(got, []record.Kind{record.KindSessionStart, record.KindCommand, record.KindMaskKey, record.KindMaskProof, record.KindResult, record.KindSessionEnd}) {
		t.Fatalf("event kinds = %v", got)
	}
	start, cmd, res := evs[0], evs[1], evs[4]
	if start.Identity != "reader-bot" || start.Resource != "clinic" || !start.Start.TLS || start.Start.IdentityKind != "agent" || start.Start.Grant != "readers" {
		t.Errorf("session.start = %+v %+v", start, start.Start)
	}
	if cmd.Command.Protocol != record.ProtocolPostgres || cmd.Command.Postgres.Flow != record.FlowSimple ||
		cmd.Command.Postgres.SQL != "SELECT id, name, ssn, dob, phone, notes FROM patients ORDER BY id" || cmd.Command.Decision != "allow" {
		t.Errorf("command = %+v", cmd.Command)
	}
	if res.Result.Tag != "SELECT 4" || res.Result.Rows != 4 || res.Result.Command != cmd.Command.ID || res.Result.Bytes == 0 {
		t.Errorf("result = %+v", res.Result)
	}
	masked := map[string]string{}
	for _, m := range res.Result.Masked {
		masked[m.Source] = m.Action
	}
	for src, action := range map[string]string{"public.patients.name": "redact", "public.patients.ssn": "keep-last-4", "public.patients.dob": "null", "public.patients.phone": "keep-last-4"} {
		if masked[src] != action {
			t.Errorf("masked[%s] = %q, want %q (all: %+v)", src, masked[src], action, res.Result.Masked)
		}
	}
	if end := evs[len(evs)-1]; end.End.Reason != "terminate" {
		t.Errorf("session.end reason = %q", end.End.Reason)
	}
}

func TestDeniedCommandKeepsTransactionSemantics(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DELETE FROM patients")
	if !isSQLState(err, "42501") || !strings.Contains(err.Error(), "does not allow write") {
		t.Fatalf("DELETE: %v, want 42501", err)
	}
	// The session keeps working, and a denial inside a transaction aborts
	// it exactly as a server-side permission error would.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE patients SET name = 'x'", pgx.QueryExecModeSimpleProtocol); !isSQLState(err, "42501") {
		t.Fatalf("UPDATE in tx: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); !isSQLState(err, "25P02") {
		t.Fatalf("after denial: %v, want 25P02 (in failed transaction)", err)
	}
	_ = tx.Rollback(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 4 {
		t.Fatalf("count = %d, %v", n, err)
	}
	conn.Close(ctx)
	evs := only(t, g.sessions(t, 1))
	var denied []*record.Command
	for _, e := range evs {
		if e.Kind == record.KindCommand && e.Command.Decision == "deny" {
			denied = append(denied, e.Command)
		}
	}
	if len(denied) != 2 || denied[0].Text() != "DELETE FROM patients" || denied[0].Rule != "readers" || !strings.Contains(denied[0].Reason, "write") {
		t.Fatalf("denied commands = %+v", denied)
	}
}

func TestBadTokenIsRefusedAndRecorded(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	dsn := strings.Replace(g.dsn("reader-bot", "require"), g.tokens["reader-bot"], "not-a-token", 1)
	_, err := pgx.Connect(context.Background(), dsn)
	if !isSQLState(err, "28P01") {
		t.Fatalf("connect with bad token: %v, want 28P01", err)
	}
	evs := only(t, g.sessions(t, 1))
	if got := kinds(evs); !slices.Equal(got, []record.Kind{record.KindSessionStart, record.KindAuthFailed, record.KindSessionEnd}) {
		t.Fatalf("kinds = %v", got)
	}
	if evs[1].Auth.User != "reader-bot" || evs[1].Auth.Reason != "invalid token" {
		t.Fatalf("auth.failed = %+v", evs[1].Auth)
	}
	raw, _ := os.ReadFile(g.spoolDir + "/sessions/" + evs[0].Session + ".rec")
	if bytes.Contains(raw, []byte("not-a-token")) {
		t.Fatal("the rejected token was written to the recording")
	}
}

func TestConnectionPolicy(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	if _, err := pgx.Connect(ctx, g.dsn("outsider", "require")); !isSQLState(err, "42501") {
		t.Fatalf("outsider: %v, want 42501", err)
	}
	if _, err := pgx.Connect(ctx, strings.Replace(g.dsn("reader-bot", "require"), "dbname=clinic", "dbname=nope", 1)); !isSQLState(err, "3D000") {
		t.Fatalf("unknown resource: %v, want 3D000", err)
	}
	if _, err := pgx.Connect(ctx, g.dsn("reader-bot", "disable")); !isSQLState(err, "28000") {
		t.Fatalf("cleartext without TLS: %v, want 28000", err)
	}
	sessions := g.sessions(t, 3)
	var denied, authFailed int
	for _, evs := range sessions {
		for _, e := range evs {
			switch e.Kind {
			case record.KindAccessDenied:
				denied++
			case record.KindAuthFailed:
				authFailed++
			}
		}
	}
	if denied != 2 || authFailed != 1 {
		t.Fatalf("access.denied = %d, auth.failed = %d", denied, authFailed)
	}
}

func TestCleartextLoopbackWhenAllowed(t *testing.T) {
	g := startGateway(t, gatewayOptions{cleartextLoopback: true})
	out, err := psql(t, g.dsn("reader-bot", "disable"), "-c", "SELECT ssn FROM patients WHERE id = 2")
	if err != nil || out != "***-**-4321\n" {
		t.Fatalf("psql: %v %q", err, out)
	}
}

func TestPgxExtendedProtocol(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// Binary result formats: masked values must still decode as their types.
	var (
		name  string
		ssn   string
		dob   *time.Time
		mrn   int64
		phone string
	)
	err = conn.QueryRow(ctx, "SELECT name, ssn, dob, mrn, phone FROM patients WHERE id = $1", 1).Scan(&name, &ssn, &dob, &mrn, &phone)
	if err != nil {
		t.Fatal(err)
	}
	if name != "[redacted]" || ssn != "***-**-6789" || dob != nil || mrn == 4400123 || phone != "+* *** *** 0134" {
		t.Fatalf("masked row = %q %q %v %d %q", name, ssn, dob, mrn, phone)
	}
	var mrn2 int64
	if err := conn.QueryRow(ctx, "SELECT mrn FROM patients WHERE id = 1", pgx.QueryExecModeSimpleProtocol).Scan(&mrn2); err != nil || mrn2 != mrn {
		t.Fatalf("keyed hash differs between text and binary: %d vs %d (%v)", mrn2, mrn, err)
	}

	// Named statements, reused.
	if _, err := conn.Prepare(ctx, "by_id", "SELECT ssn FROM patients WHERE id = $1"); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{1: "***-**-6789", 2: "***-**-4321"} {
		var got string
		if err := conn.QueryRow(ctx, "by_id", id).Scan(&got); err != nil || got != want {
			t.Fatalf("by_id(%d) = %q, %v", id, got, err)
		}
	}

	// A pipeline (batch) mixing reads, a write and an error.
	b := &pgx.Batch{}
	b.Queue("INSERT INTO audit_log (msg) VALUES ($1)", "batched")
	b.Queue("SELECT name FROM patients WHERE id = $1", 2)
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 2")
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatalf("batch insert: %v", err)
	}
	var n2 string
	if err := br.QueryRow().Scan(&n2); err != nil || n2 != "[redacted]" {
		t.Fatalf("batch select = %q %v", n2, err)
	}
	if _, err := br.Exec(); !isSQLState(err, "22012") {
		t.Fatalf("batch division: %v, want 22012", err)
	}
	br.Close()

	// Portals with a row limit (pgx does not expose them; use pgconn).
	pc := conn.PgConn()
	if _, err := pc.Prepare(ctx, "all_ssn", "SELECT ssn FROM patients ORDER BY id", nil); err != nil {
		t.Fatal(err)
	}
	rr := pc.ExecPrepared(ctx, "all_ssn", nil, nil, nil)
	var ssns []string
	for rr.NextRow() {
		ssns = append(ssns, string(rr.Values()[0]))
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ssns, []string{"***-**-6789", "***-**-4321", "", ""}) {
		t.Fatalf("ssns = %q", ssns)
	}
	conn.Close(ctx)

	evs := only(t, g.sessions(t, 1))
	var params []record.Param
	var results int
	for _, e := range evs {
		if e.Kind == record.KindCommand && e.Command.Postgres.SQL == "INSERT INTO audit_log (msg) VALUES ($1)" {
			params = e.Command.Postgres.Params
		}
		if e.Kind == record.KindResult {
			results++
		}
	}
	if len(params) != 1 || params[0].Value != "batched" {
		t.Fatalf("recorded params = %+v", params)
	}
	if results < 8 {
		t.Fatalf("only %d results recorded", results)
	}
}

func TestCopyInAndOut(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// COPY FROM STDIN (binary, as pgx sends it).
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, []string{"id", "name", "ssn"},
		pgx.CopyFromRows([][]any{{10, "Dan Ortiz", "111-22-3333"}, {11, "Eve Park", "222-33-4444"}}))
	if err != nil || n != 2 {
		t.Fatalf("CopyFrom = %d, %v", n, err)
	}
	// COPY TO STDOUT, text and CSV, masked.
	var buf bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY patients (id, name, ssn) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "10\t[redacted]\t***-**-3333\n") || strings.Contains(buf.String(), "Dan") {
		t.Fatalf("COPY text output:\n%s", buf.String())
	}
	buf.Reset()
	if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY (SELECT id, ssn, notes FROM patients WHERE id <= 2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"); err != nil {
		t.Fatal(err)
	}
	if want := "id,ssn,notes\n1,***-**-6789,Seen for follow-up.\n2,***-**-4321,\n"; buf.String() != want {
		t.Fatalf("COPY csv output:\n%q\nwant\n%q", buf.String(), want)
	}
	_, err = conn.PgConn().CopyTo(ctx, io.Discard, "COPY patients TO STDOUT (FORMAT binary)")
	if !isSQLState(err, "0A000") {
		t.Fatalf("binary COPY of masked columns: %v, want 0A000", err)
	}
	// The session is still usable after the refusal.
	var cnt int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&cnt); err != nil || cnt != 6 {
		t.Fatalf("count = %d %v", cnt, err)
	}
	conn.Close(ctx)
	evs := only(t, g.sessions(t, 1))
	var copied []byte
	for _, e := range evs {
		if e.Kind == record.KindCopyData {
			copied = append(copied, e.Copy.Data...)
		}
	}
	if !bytes.Contains(copied, []byte("Dan Ortiz")) {
		t.Fatal("COPY FROM STDIN data was not recorded")
	}
}

func TestCopyWithPsql(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", g.dsn("writer-ci", "require"),
		"-c", `\copy patients (id, name, ssn) from stdin`,
		"-c", `\copy (SELECT id, ssn FROM patients WHERE id >= 20 ORDER BY id) to stdout`)
	cmd.Stdin = strings.NewReader("20\tGus Lee\t333-44-5555\n21\tHana Ito\t\\N\n\\.\n")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, b)
	}
	if want := "20\t***-**-5555\n21\t\\N\n"; !strings.HasSuffix(string(b), want) {
		t.Fatalf("psql copy output %q, want suffix %q", b, want)
	}
}

func TestCancelRequest(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = conn.Exec(qctx, "SELECT count(*) FROM generate_series(1, 1000000000000)")
	if err == nil {
		t.Fatal("the query was not cancelled")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	// pgx closes the connection after a cancelled query; check the upstream
	// query was really cancelled by looking at the recording.
	conn.Close(ctx)
	evs := only(t, g.sessions(t, 1))
	var cancelled bool
	for _, e := range evs {
		if e.Kind == record.KindCancel {
			cancelled = true
		}
	}
	if !cancelled {
		t.Fatalf("no cancel event recorded: %v", kinds(evs))
	}
}

func TestNoticesAndNotifications(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	var notices []string
	cfg, err := pgx.ParseConfig(g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN ch"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_notify('ch', 'hello')"); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(nctx)
	if err != nil || n.Channel != "ch" || n.Payload != "hello" {
		t.Fatalf("notification = %+v, %v", n, err)
	}
	if _, err := conn.Exec(ctx, "DO $$BEGIN RAISE NOTICE 'note %', 1; END$$"); !isSQLState(err, "42501") {
		t.Fatalf("DO without the admin class: %v, want 42501", err)
	}
	if _, err := conn.Exec(ctx, `CREATE FUNCTION note() RETURNS int LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'note %', 1; RETURN 1; END$$`); err != nil {
		t.Fatal(err)
	}
	// The grant names note, but under its masking profile a function in
	// PL/pgSQL is refused all the same: what it returns (or raises)
	// cannot be traced to the columns it read.
	if _, err := conn.Exec(ctx, "SELECT note()"); !isSQLState(err, "42501") {
		t.Fatalf("a PL/pgSQL function under a masking profile: %v, want 42501", err)
	}
	if _, err := conn.Exec(ctx, "SELECT public.note()"); !isSQLState(err, "42501") {
		t.Fatalf("a function the grant does not name: %v, want 42501", err)
	}
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS no_such_table"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(notices, []string{`table "no_such_table" does not exist, skipping`}) {
		t.Fatalf("notices = %q", notices)
	}
}

// TestUpstreamCredentialNeverReachesAgent captures every byte the agent
// receives and checks that none of the gateway's upstream secrets is in it.
func TestUpstreamCredentialNeverReachesAgent(t *testing.T) {
	for _, auth := range []string{"scram-sha-256", "md5", "password"} {
		t.Run(auth, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{upstreamAuth: auth, cleartextLoopback: true})
			var seen bytes.Buffer
			cfg, err := pgx.ParseConfig(g.dsn("writer-ci", "disable"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &recordingConn{Conn: c, seen: &seen}, nil
			}
			ctx := context.Background()
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "SELECT * FROM patients"); err != nil {
				t.Fatal(err)
			}
			conn.Close(ctx)
			if bytes.Contains(seen.Bytes(), []byte(g.upstreamPW)) {
				t.Fatal("the upstream password reached the agent")
			}
			if seen.Len() == 0 || !strings.HasPrefix(user, "phigate_svc") {
				t.Fatalf("nothing captured (%d bytes) or wrong upstream user %q", seen.Len(), user)
			}
		})
	}
}

type recordingConn struct {
	net.Conn
	seen *bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.seen.Write(p[:n])
	return n, err
}

// TestKillClientMidQuery: the agent vanishes while a long result streams;
// the node keeps serving others and the session's recording is closed and
// verifies.
func TestKillClientMidQuery(t *testing.T) {
	g := startGateway(t, gatewayOptions{cleartextLoopback: true})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("reader-bot", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT g, repeat('x', 1000) FROM generate_series(1, 2000000) g")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10 && rows.Next(); i++ {
	}
	// Kill the socket under pgx, as a crashed client would.
	_ = conn.PgConn().Conn().Close()
	rows.Close()

	other, err := pgx.Connect(ctx, g.dsn("reader-bot", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := other.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("other session: %d %v", one, err)
	}
	other.Close(ctx)
	sessions := g.sessions(t, 2)
	var found bool
	for _, evs := range sessions {
		last := evs[len(evs)-1]
		if last.End.Reason == "client closed" {
			found = true
			var res *record.Result
			for _, e := range evs {
				if e.Kind == record.KindResult {
					res = e.Result
				}
			}
			// Either phigate's own "session ended" (08006) or the upstream's
			// answer to the cancel phigate sent (57014), whichever came first.
			if res == nil || res.Error == nil || res.Error.Code != "08006" && res.Error.Code != "57014" {
				t.Fatalf("killed session's last result = %+v", res)
			}
		}
	}
	if !found {
		t.Fatal("no session ended with reason 'client closed'")
	}
}

// TestGarbageAndOversizedMessages: malformed input gets 08P01, the session
// is closed and recorded, and other sessions are untouched.
func TestGarbageAndOversizedMessages(t *testing.T) {
	g := startGateway(t, gatewayOptions{cleartextLoopback: true, maxMessageBytes: 1 << 20})
	ctx := context.Background()
	bystander, err := pgx.Connect(ctx, g.dsn("reader-bot", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close(ctx)

	for name, payload := range map[string][]byte{
		"unknown type": []byte("\x99\x00\x00\x00\x08garbage!"),
		"bad length":   {'Q', 0, 0, 0, 2},
		"oversized":    append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, 4<<20)...),
		"bad query":    {'Q', 0, 0, 0, 4},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := pgconn.Connect(ctx, g.dsn("reader-bot", "disable"))
			if err != nil {
				t.Fatal(err)
			}
			nc := conn.Conn()
			if _, err := nc.Write(payload); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			fe := pgproto3.NewFrontend(nc, nil)
			msg, err := fe.Receive()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			er, ok := msg.(*pgproto3.ErrorResponse)
			if !ok || er.Code != "08P01" {
				t.Fatalf("got %#v, want ErrorResponse 08P01", msg)
			}
			if _, err := fe.Receive(); err == nil {
				t.Fatal("connection still open after protocol error")
			}
		})
	}
	var one int
	if err := bystander.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	bystander.Close(ctx)
	var protoErrors int
	for _, evs := range g.sessions(t, 5) {
		for _, e := range evs {
			if e.Kind == record.KindProtocolError {
				protoErrors++
			}
		}
	}
	if protoErrors != 4 {
		t.Fatalf("protocol.error events = %d, want 4", protoErrors)
	}
}

func TestPgbenchThroughGateway(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Skip("pgbench not installed")
	}
	g := startGateway(t, gatewayOptions{})
	dsn := g.dsn("writer-ci", "require")
	for _, args := range [][]string{
		{"-i", "-s", "1", "-q", "-I", "dtgp"},
		{"-c", "4", "-j", "2", "-t", "50", "-M", "simple"},
		{"-c", "4", "-j", "2", "-t", "50", "-M", "prepared"},
		{"-c", "4", "-j", "2", "-t", "50", "-M", "extended", "-S"},
	} {
		cmd := exec.Command("pgbench", append(args, dsn)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		if len(args) > 0 && args[0] != "-i" && !strings.Contains(string(out), "number of failed transactions: 0") {
			t.Fatalf("pgbench %v:\n%s", args, out)
		}
	}
}

// TestRecordingFailureFailsClosed fills the real disk the recording lives
// on: the command that cannot be recorded fails with 58030 and never reaches
// the database, and the node refuses new sessions rather than serve them
// unrecorded.
func TestRecordingFailureFailsClosed(t *testing.T) {
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
			ents, _ := os.ReadDir("/proc/self/fd")
			for _, e := range ents {
				if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, mnt) {
					t.Logf("open: %s", l)
				}
			}
			t.Errorf("unmount: %v", err)
		}
	})
	g = startGateway(t, gatewayOptions{spoolDir: filepath.Join(mnt, "spool"), segmentBytes: 64 << 10})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	blob := strings.Repeat("x", 32<<10)
	acked := 0
	var failure error
	for i := 0; i < 200; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ($1)", blob); err != nil {
			failure = err
			break
		}
		acked++
	}
	if failure == nil {
		t.Fatal("200 inserts of 32 KiB recorded on a 1 MiB disk")
	}
	if !isSQLState(failure, "58030") && !strings.Contains(failure.Error(), "58030") && !strings.Contains(failure.Error(), "cannot record") {
		t.Fatalf("failure = %v, want SQLSTATE 58030", failure)
	}
	var rows int
	if err := g.pg.Exec(ctx, g.db, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	direct, err := pgx.Connect(ctx, g.pg.DSN(pgtest.Superuser, "", g.db))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows < acked || rows > acked+1 {
		t.Fatalf("%d rows in the database, %d inserts acknowledged", rows, acked)
	}
	if _, err := pgx.Connect(ctx, g.dsn("writer-ci", "require")); !isSQLState(err, "58030") {
		t.Fatalf("new session on a failed spool: %v, want 58030", err)
	}
	// Every row that reached the database was recorded first: recover a
	// copy of the spool on a disk with room, as a restarted node would, and
	// count the recorded inserts.
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
	recordedInserts := 0
	for _, id := range sp.Recovered() {
		rc, err := spool.DirStore{Dir: recovered}.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = record.Verify(rc, id, true, func(ev *record.Event, _ []byte) error {
			if ev.Kind == record.KindCommand && strings.HasPrefix(ev.Command.Postgres.SQL, "INSERT INTO audit_log") {
				recordedInserts++
			}
			return nil
		})
		rc.Close()
		if err != nil {
			t.Fatalf("recovered session %s: %v", id, err)
		}
	}
	if recordedInserts < rows {
		t.Fatalf("%d rows in the database but only %d inserts recorded", rows, recordedInserts)
	}
}

// TestMaskingProof checks that every masked value is proven in the
// recording: rule, span, and the raw value sealed so that only the auditor
// key opens it.
func TestMaskingProof(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	out, err := psql(t, g.dsn("reader-bot", "require"), "-c", "SELECT ssn, notes FROM patients WHERE id IN (1, 4) ORDER BY id")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if strings.Contains(out, "123-45-6789") || strings.Contains(out, "Maria Lopez") {
		t.Fatalf("PHI leaked: %s", out)
	}
	evs := only(t, g.sessions(t, 1))
	var key *record.MaskKey
	raw := map[string]bool{}
	for _, e := range evs {
		switch e.Kind {
		case record.KindMaskKey:
			key = e.Key
		case record.KindMaskProof:
			if key == nil {
				t.Fatal("mask.proof before mask.key")
			}
			o, err := proof.NewOpener(g.auditor, key, e.Session)
			if err != nil {
				t.Fatal(err)
			}
			vals, err := o.Open(e.Proof)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				raw[string(v)] = true
			}
		}
	}
	for _, want := range []string{"123-45-6789", "Maria Lopez", "415-555-0198"} {
		if !raw[want] {
			t.Errorf("no proof unseals to %q (have %d values)", want, len(raw))
		}
	}
	rec, _ := os.ReadFile(filepath.Join(g.spoolDir, "sessions", evs[0].Session+".rec"))
	if bytes.Contains(rec, []byte("Maria Lopez")) {
		t.Fatal("the raw value is readable in the recording")
	}
}

// TestServerMessagesAreMasked: a unique violation quotes the row's value in
// its detail; under a masking profile the agent gets the SQLSTATE and the
// server's template words, never the value.
func TestServerMessagesAreMasked(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "INSERT INTO patients (id, name, ssn) VALUES (9, 'x', '123-45-6789')")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		t.Fatalf("duplicate ssn: %v", err)
	}
	if strings.Contains(pe.Detail+pe.Message+pe.Hint+pe.Where, "123-45-6789") || pe.Detail != "" ||
		!strings.HasPrefix(pe.Message, "duplicate key value violates unique constraint") {
		t.Fatalf("message = %q, detail = %q", pe.Message, pe.Detail)
	}
}

// TestGarbageBeforeLogin: malformed startup packets get 08P01 and the
// attempt is recorded, with the client's address and no identity.
func TestGarbageBeforeLogin(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	for name, payload := range map[string][]byte{
		"protocol 2.0":      {0, 0, 0, 8, 0, 2, 0, 0},
		"huge length":       {0, 0x4c, 0x4b, 0x40, 0, 3, 0, 0},
		"no user":           append([]byte{0, 0, 0, 9, 0, 3, 0, 0}, 0),
		"unterminated pair": append([]byte{0, 0, 0, 14, 0, 3, 0, 0}, "user\x00b"...),
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(payload); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			msg, err := pgproto3.NewFrontend(nc, nil).Receive()
			if err != nil {
				t.Fatal(err)
			}
			if er, ok := msg.(*pgproto3.ErrorResponse); !ok || er.Code != "08P01" {
				t.Fatalf("got %#v, want 08P01", msg)
			}
		})
	}
	var recorded int
	for _, evs := range g.sessions(t, 4) {
		if len(evs) == 3 && evs[1].Kind == record.KindProtocolError && evs[0].Identity == "" && evs[0].Start.Client != "" {
			recorded++
		}
	}
	if recorded != 4 {
		t.Fatalf("%d of 4 malformed startups recorded", recorded)
	}
}
