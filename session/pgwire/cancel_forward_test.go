package pgwire_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

// lockedBuffer is a log sink tests read while servers write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNode is another phigate node in front of g's PostgreSQL, with the
// given state, its own spool and recorder, cluster number and cancel
// forwarding: a gateway of its own, whose helpers (dsn, sessions) work.
func startNode(t *testing.T, g *gateway, state *session.State, name string, number uint16, forward func(context.Context, uint16, []byte), logs io.Writer) *gateway {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(spool.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pgwire.New(pgwire.Config{
		NodeID:        name,
		NodeNumber:    number,
		ForwardCancel: forward,
		State:         state,
		Recorder:      session.NewRecorder(sp, name),
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	spoolDone := make(chan struct{})
	go func() { defer close(spoolDone); _ = sp.Run(spoolCtx); sp.Close() }()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, pgwire.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	n := *g
	n.addr, n.dir, n.spoolDir, n.sp, n.srv, n.state = ln.Addr().String(), dir, dir, sp, srv, state
	n.stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("%s did not stop: %v", name, err)
		}
		<-served
		stopSpool()
		<-spoolDone
	}
	t.Cleanup(n.stop)
	return &n
}

// rawCancel sends a CancelRequest for (pid, secret) to addr, as libpq
// does, and waits until the node closes the connection: the request has
// been served (forwarded, if it was).
func rawCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, secret...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
		t.Fatalf("cancel request answered %d bytes, %v; want a bare close", n, err)
	}
}

type forwarded struct {
	node    uint16
	matched bool
}

// TestCancelForwardedToTheHoldingNode: a CancelRequest that reaches a node
// other than the one holding the session (as DNS round-robin sends it) is
// forwarded there and cancels the query, recorded on the holding node; a
// forged secret, an unknown node number and an unknown key of the
// receiving node cancel nothing, and unknown keys are logged, sparingly.
func TestCancelForwardedToTheHoldingNode(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	// Writers may sleep (pg_sleep is admin unless a grant names it).
	pol, err := policy.New([]policy.Grant{
		{Name: "sleepers", Groups: []string{"writers"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read}, Functions: []string{"pg_sleep"}},
	}, []string{"clinic"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap := *g.snap
	snap.Policy = pol
	state := session.NewState(&snap)

	var holderLogs, frontLogs lockedBuffer
	holder := startNode(t, g, state, "n7", 7, nil, &holderLogs)
	got := make(chan forwarded, 64)
	front := startNode(t, g, state, "n3", 3, func(ctx context.Context, node uint16, key []byte) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("ForwardCancel called without a deadline")
		}
		matched := false
		if node == 7 || node == 9 { // 9: the caller routes it, the holder must refuse it
			matched = holder.srv.Cancel(ctx, key, "n3")
		}
		got <- forwarded{node, matched}
	}, &frontLogs)

	conn, err := pgx.Connect(ctx, holder.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
	if pid>>20 != 7 || pid>>31 != 0 || len(secret) != 4 {
		t.Fatalf("holder's key: pid %#x (node %d), %d-byte secret", pid, pid>>20, len(secret))
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		done <- err
	}()
	waitRunning(t, g, "pg_sleep(30)")

	wantForward := func(what string, want forwarded) {
		t.Helper()
		select {
		case f := <-got:
			if f != want {
				t.Fatalf("%s: forwarded %+v, want %+v", what, f, want)
			}
		default:
			t.Fatalf("%s: not forwarded", what)
		}
	}
	forged := append([]byte(nil), secret...)
	forged[0] ^= 0x55
	rawCancel(t, front.addr, pid, forged)
	wantForward("forged secret", forwarded{7, false})
	serial := pid & (1<<20 - 1)
	rawCancel(t, front.addr, 9<<20|serial, secret)
	wantForward("unknown node number", forwarded{9, false})
	const unknown = 30
	for range unknown { // the front node's own number, no such session
		rawCancel(t, front.addr, 3<<20|serial, secret)
	}
	rawCancel(t, front.addr, pid, secret[:3]) // not a key phigate issues
	select {
	case f := <-got:
		t.Fatalf("a key of the front node was forwarded: %+v", f)
	case err := <-done:
		t.Fatalf("the query ended after refused cancels: %v", err)
	case <-time.After(time.Second):
	}

	start := time.Now()
	rawCancel(t, front.addr, pid, secret)
	wantForward("the agent's key", forwarded{7, true})
	select {
	case err := <-done:
		if !isSQLState(err, "57014") {
			t.Fatalf("the query ended with %v, want 57014", err)
		}
		t.Logf("cancelled through the other node in %v", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarded cancel did not cancel the query")
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the session after the cancel: %v", err)
	}
	conn.Close(ctx)

	evs := only(t, holder.sessions(t, 1))
	var reasons []string
	for _, e := range evs {
		if e.Kind == record.KindCancel {
			reasons = append(reasons, e.Cancel.Reason)
		}
	}
	if len(reasons) != 1 || reasons[0] != "client cancel request (forwarded from node n3)" {
		t.Fatalf("cancels recorded on the holder: %q (events %v)", reasons, kinds(evs))
	}

	fl, hl := frontLogs.String(), holderLogs.String()
	if n := strings.Count(fl, "cancel request with an unknown key dropped"); n < 1 || n > 2*5 {
		t.Fatalf("%d unknown cancels logged %d times on the front node; want some, at most a few a second:\n%s", unknown+1, n, fl)
	}
	if !strings.Contains(fl, "remote=127.0.0.1:") {
		t.Fatalf("unknown cancels are logged without the remote address:\n%s", fl)
	}
	if n := strings.Count(hl, "forwarded cancel request with an unknown key dropped"); n != 2 || !strings.Contains(hl, "from=n3") {
		t.Fatalf("the holder logged %d refused forwarded cancels; want 2, from n3:\n%s", n, hl)
	}
}

// waitRunning polls until a query containing text runs upstream.
func waitRunning(t *testing.T, g *gateway, text string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, g.pg.DSN("phigate_svc", g.upstreamPW, g.db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0", text).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never ran upstream", text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
