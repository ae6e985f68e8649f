package pgwire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The moves of the masking attack table (mask_attack_test.go): reader-bot
// clients whose every received byte is kept per connection, so that
// findPHI can read the stream message by message, and the ways of running
// a statement (text and binary results, cursors, COPY, the fast path).

// maskArena is an arena (attack_harness_test.go) whose attacker clients
// also keep what they received one stream per connection.
type maskArena struct {
	*arena
	streams []*bytes.Buffer // guarded by arena.mu, like arena.seen
	// direct, when set, sends the attacker straight to PostgreSQL, past
	// the gateway (TestMaskAttacksSeeRawPHI).
	direct *directLogin
}

// directLogin is a role that logs in to PostgreSQL with a cleartext
// password, as the gateway's upstream role would without the gateway.
type directLogin struct{ addr, user, password, db string }

// streamConn copies what it reads into the arena's common capture (so that
// the harness's own checkNoRawPHI sees it too) and into its own stream.
type streamConn struct {
	net.Conn
	a *arena
	s *bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.a.mu.Lock()
		c.a.seen.Write(p[:n])
		c.s.Write(p[:n])
		c.a.mu.Unlock()
	}
	return n, err
}

func (m *maskArena) capture(nc net.Conn) net.Conn {
	s := &bytes.Buffer{}
	m.mu.Lock()
	m.streams = append(m.streams, s)
	m.mu.Unlock()
	return &streamConn{Conn: nc, a: m.arena, s: s}
}

// received returns a copy of every connection's stream.
func (m *maskArena) received() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]byte, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, slices.Clone(s.Bytes()))
	}
	return out
}

// pgx connects reader-bot with pgx; the connection is one of the arena's
// readers (checked to stay read-only, closed before the checks).
func (m *maskArena) pgx(t *testing.T) *pgx.Conn {
	t.Helper()
	var cfg *pgx.ConnConfig
	if d := m.direct; d != nil {
		host, port, _ := net.SplitHostPort(d.addr)
		var err error
		if cfg, err = pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable",
			host, port, d.user, d.password, d.db)); err != nil {
			t.Fatal(err)
		}
	} else {
		cfg = m.pgxConfig("reader-bot", nil)
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return m.capture(nc), nil
	}
	ctx, cancel := context.WithTimeout(m.ctx, 15*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("attacker connect: %v", err)
	}
	m.onClose(func() { _ = c.Close(context.Background()) })
	m.mu.Lock()
	m.readers = append(m.readers, c)
	m.mu.Unlock()
	return c
}

// raw connects reader-bot as a protocol-level client (as arena.raw does,
// over a captured connection of its own).
func (m *maskArena) raw(t *testing.T) *rawClient {
	t.Helper()
	addr, user, password, db := "", "reader-bot", "", "clinic"
	if d := m.direct; d != nil {
		addr, user, password, db = d.addr, d.user, d.password, d.db
	} else {
		addr, password = m.g.addr, m.g.tokens[user]
	}
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("attacker connect: %v", err)
	}
	m.onClose(func() { _ = nc.Close() })
	cc := m.capture(nc)
	c := &rawClient{a: m.arena, nc: nc, fe: pgproto3.NewFrontend(cc, cc)}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": user, "database": db}})
	if err := c.fe.Flush(); err != nil {
		t.Fatalf("attacker startup: %v", err)
	}
	for {
		msg, err := c.receive()
		if err != nil {
			t.Fatalf("attacker startup: %v", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			c.fe.Send(&pgproto3.PasswordMessage{Password: password})
			if err := c.fe.Flush(); err != nil {
				t.Fatalf("attacker startup: %v", err)
			}
		case *pgproto3.BackendKeyData:
			c.pid, c.secret = msg.ProcessID, slices.Clone(msg.SecretKey)
		case *pgproto3.ErrorResponse:
			t.Fatalf("attacker startup refused: %s %s", msg.Code, msg.Message)
		case *pgproto3.ReadyForQuery:
			return c
		}
	}
}

// binary runs sql with Parse, Bind (every result column in binary),
// Describe, Execute and Sync.
func (c *rawClient) binary(sql string) bool {
	return c.run(nil, mParse("", sql), &pgproto3.Bind{ResultFormatCodes: []int16{1}},
		&pgproto3.Describe{ObjectType: 'P'}, mExecute(""), mSync())
}

// fastpath calls function oid with one binary int4 argument over the
// fast-path protocol (FunctionCall) and reads until ReadyForQuery.
func (c *rawClient) fastpath(oid uint32, arg int32, resultFormat int16) {
	c.fe.Send(&pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{1},
		Arguments: [][]byte{binary.BigEndian.AppendUint32(nil, uint32(arg))}, ResultFormatCode: uint16(resultFormat)})
	if c.fe.Flush() != nil {
		return
	}
	for {
		msg, err := c.receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}

// both runs each statement twice on one raw session: as a simple query
// (results in text) and through the extended protocol with every result
// column in binary.
func both(sqls ...string) func(*testing.T, *maskArena) {
	return func(t *testing.T, m *maskArena) {
		r := m.raw(t)
		for _, s := range sqls {
			r.query(s)
			r.binary(s)
		}
		r.terminate()
	}
}

// simpleQueries runs the statements in order as simple queries on one raw session.
func simpleQueries(sqls ...string) func(*testing.T, *maskArena) {
	return func(t *testing.T, m *maskArena) {
		r := m.raw(t)
		for _, s := range sqls {
			r.query(s)
		}
		r.terminate()
	}
}

// withPgx runs the statement with pgx's default mode: the extended
// protocol with a described statement, each result column in binary where
// pgx knows the type's binary form (dates, integers, floats, numerics,
// arrays, records, json).
func withPgx(sql string, mode ...any) func(*testing.T, *maskArena) {
	return func(t *testing.T, m *maskArena) { runExtended(m.pgx(t), sql, mode...) }
}

// copyOut runs COPY ... TO STDOUT statements with pgx (the client reads
// the whole output).
func copyOut(sqls ...string) func(*testing.T, *maskArena) {
	return func(t *testing.T, m *maskArena) {
		c := m.pgx(t)
		for _, s := range sqls {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, _ = c.PgConn().CopyTo(ctx, io.Discard, s)
			cancel()
		}
	}
}

// viaCursor declares a cursor for sql (binary: a BINARY cursor, whose rows
// come in binary even through simple queries) and fetches it in two steps.
func viaCursor(sql string, binaryCursor bool) func(*testing.T, *maskArena) {
	kind := "CURSOR"
	if binaryCursor {
		kind = "BINARY CURSOR"
	}
	return simpleQueries("BEGIN", "DECLARE c "+kind+" FOR "+sql, "FETCH 1 FROM c", "FETCH ALL FROM c", "COMMIT")
}

// notifyPayload has one session publish payloadSQL (an expression over patients)
// on a channel that listener sessions (on: same, other or both) listen on;
// the listener then runs a query, which makes its client read what the
// server delivered.
func notifyPayload(payloadSQL string, same, other bool) func(*testing.T, *maskArena) {
	return func(t *testing.T, m *maskArena) {
		pub := m.raw(t)
		var sub *rawClient
		if other {
			sub = m.raw(t)
			sub.query("LISTEN phi_leak")
		}
		if same {
			pub.query("LISTEN phi_leak")
		}
		pub.query(fmt.Sprintf("SELECT pg_notify('phi_leak', %s) FROM patients ORDER BY id", payloadSQL))
		pub.query("SELECT 1")
		if sub != nil {
			sub.query("SELECT 1")
			sub.terminate()
		}
		pub.terminate()
	}
}

// funcOID looks a function up as the superuser.
func funcOID(t *testing.T, a *arena, signature string) uint32 {
	t.Helper()
	var oid uint32
	if err := a.su.QueryRow(a.ctx, "SELECT $1::text::regprocedure::oid", signature).Scan(&oid); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return oid
}

// positionColumns returns "f(1) AS c1, f(2) AS c2, ..." for n = from..to, with f
// given as a format that takes n.
func positionColumns(format string, from, to int) string {
	var cols []string
	for n := from; n <= to; n++ {
		cols = append(cols, fmt.Sprintf(format, n)+fmt.Sprintf(" AS c%d", n))
	}
	return strings.Join(cols, ", ")
}
