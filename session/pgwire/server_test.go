package pgwire_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/session/pgwire"
)

// Over MaxSessions a login gets PostgreSQL's 53300 and nothing else
// happens: the sessions held go on, nothing is recorded for it, and a
// place freed is taken by the next login.
func TestMaxSessions(t *testing.T) {
	const max = 3
	g := startGateway(t, gatewayOptions{maxSessions: max})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var held []*pgconn.PgConn
	for range max {
		c, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close(ctx)
		}
	}()
	for range 2 {
		_, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53300" || pe.Severity != "FATAL" {
			t.Fatalf("login over the cap: %v; want FATAL 53300", err)
		}
	}
	if n := g.srv.Sessions(); n != max {
		t.Fatalf("Sessions() = %d, want %d", n, max)
	}
	for i, c := range held {
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("held session %d after the refusals: %v", i, err)
		}
	}
	if err := held[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	held = held[1:]
	// The place is free once the session's end is recorded.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
		if err == nil {
			held = append(held, c)
			break
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53300" || time.Now().After(deadline) {
			t.Fatalf("login after a session ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range held {
		c.Close(ctx)
	}
	held = nil
	// Only the sessions that logged in are recorded: max + 1.
	if got := len(g.sessions(t, max+1)); got != max+1 {
		t.Fatalf("%d sessions recorded, want %d (the refused logins are not)", got, max+1)
	}
}

// emfileListener fails its first accepts as a process out of file
// descriptors does.
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of file descriptors does not stop a listener: it waits and
// accepts again.
func TestServeOutlivesEMFILE(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &emfileListener{Listener: ln}
	fl.fails.Store(6) // 5+10+20+40+80+160 ms of back-off
	served := make(chan error, 1)
	go func() { served <- g.srv.Serve(fl) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g.addr = ln.Addr().String()
	c, err := pgconn.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatalf("login after EMFILE: %v", err)
	}
	if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	if fl.fails.Load() >= 0 {
		t.Fatalf("the listener was not retried through its failures (%d left)", fl.fails.Load()+1)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
	g.stop()
	if err := <-served; !errors.Is(err, pgwire.ErrServerClosed) {
		t.Fatalf("Serve after shutdown: %v", err)
	}
}
