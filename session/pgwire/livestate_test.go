package pgwire_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/record"
)

// publish swaps the gateway's state for a copy of the starting one changed
// by edit; recheck also re-checks live sessions at once (as a node does),
// otherwise they notice at their next message.
func (g *gateway) publish(t *testing.T, recheck bool, edit func(*session.Snapshot)) {
	t.Helper()
	next := *g.snap
	edit(&next)
	g.state.Publish(&next)
	if recheck {
		g.srv.Recheck()
	}
}

// tokensWithout is the gateway's identities minus the named ones.
func (g *gateway) tokensWithout(t *testing.T, names ...string) *identity.StaticTokens {
	t.Helper()
	var tokens []identity.StaticToken
	for _, id := range []identity.Identity{
		{Name: "reader-bot", Kind: identity.KindAgent, Groups: []string{"readers"}},
		{Name: "writer-ci", Kind: identity.KindCI, Groups: []string{"writers"}},
		{Name: "outsider", Kind: identity.KindAgent},
	} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+id.Name+" ") {
			tokens = append(tokens, identity.StaticToken{Identity: id, SHA256: identity.HashToken(g.tokens[id.Name])})
		}
	}
	auth, err := identity.NewStaticTokens(tokens)
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

// grants is the gateway's policy with the writers grant allowing allow.
func grantsWithWriters(t *testing.T, allow ...policy.Class) *policy.Policy {
	t.Helper()
	pol, err := policy.New([]policy.Grant{
		{Name: "readers", Groups: []string{"readers"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read, policy.Export}, Masking: "hipaa"},
		{Name: "writers", Groups: []string{"writers"}, Resources: []string{"clinic"}, Allow: allow, Masking: "hipaa", Functions: []string{"note"}},
	}, []string{"clinic"}, []string{"hipaa"})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// endReason is the session.end reason of the one recorded session of name.
func (g *gateway) endReason(t *testing.T, n int, name string) string {
	t.Helper()
	for _, evs := range g.sessions(t, n) {
		if evs[0].Identity == name || (len(evs) > 1 && evs[1].Identity == name) {
			last := evs[len(evs)-1]
			if last.Kind != record.KindSessionEnd {
				t.Fatalf("%s's recording ends with %s", name, last.Kind)
			}
			return last.End.Reason
		}
	}
	t.Fatalf("no recorded session of %s", name)
	return ""
}

// auditRows counts audit_log directly in the database.
func (g *gateway) auditRows(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	su, err := pgx.Connect(ctx, g.pg.DSN(pgtest.Superuser, "", g.db))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var n int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// wantRevoked checks that err is the session's end for a revocation: the
// FATAL 42501, naming why, or the connection closed after it.
func wantRevoked(t *testing.T, err error, why string) {
	t.Helper()
	if err == nil {
		t.Fatal("the session went on after its access was revoked")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code != "42501" || !strings.Contains(pe.Message, why)) {
		t.Fatalf("error %v, want 42501 naming %q", err, why)
	}
}

// TestRevokedTokenEndsLiveSession: removing an identity's token ends its
// open session at once (not at its next command), recorded, and the token
// no longer logs in; other sessions go on.
func TestRevokedTokenEndsLiveSession(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	reader, err := pgx.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	writer, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	if _, err := reader.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	g.publish(t, true, func(s *session.Snapshot) { s.Auth = g.tokensWithout(t, "reader-bot") })
	// Recheck ended the idle session: its recording says why before the
	// agent sends anything.
	if why := g.endReason(t, 1, "reader-bot"); !strings.Contains(why, "identity is no longer accepted") {
		t.Fatalf("session.end reason %q", why)
	}
	_, err = reader.Exec(ctx, "SELECT 1")
	wantRevoked(t, err, "identity is no longer accepted")
	if _, err := pgx.Connect(ctx, g.dsn("reader-bot", "require")); !isSQLState(err, "28P01") {
		t.Fatalf("revoked token logs in: %v", err)
	}
	if _, err := writer.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ('still here')"); err != nil {
		t.Fatalf("another identity's session was disturbed: %v", err)
	}
}

// TestGrantNarrowedLive: a grant that loses a class applies to open
// sessions from their next command, without reconnecting, when it needs
// the same upstream login; the database shows the write did not happen.
// A grant whose login level changes ends the session before the next
// command reaches the database.
func TestGrantNarrowedLive(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	writer, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	if _, err := writer.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ('before')"); err != nil {
		t.Fatal(err)
	}

	// Still admin level (DDL), but no more writes: applied live.
	g.publish(t, true, func(s *session.Snapshot) {
		s.Policy = grantsWithWriters(t, policy.Read, policy.Import, policy.Export, policy.DDL)
	})
	if _, err := writer.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ('after')"); !isSQLState(err, "42501") {
		t.Fatalf("INSERT after the grant lost write: %v, want 42501", err)
	}
	var n int
	if err := writer.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil || n != 1 {
		t.Fatalf("read after narrowing: %d, %v", n, err)
	}
	if got := g.auditRows(t); got != 1 {
		t.Fatalf("audit_log has %d rows, want 1", got)
	}

	// Write without DDL needs the write login, not the admin one the
	// session holds: the session ends at its next message, which is not run
	// (no Recheck here: the per-message check alone must catch it).
	g.publish(t, false, func(s *session.Snapshot) {
		s.Policy = grantsWithWriters(t, policy.Read, policy.Write)
	})
	_, err = writer.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ('after reconnect needed')")
	wantRevoked(t, err, "reconnect")
	if got := g.auditRows(t); got != 1 {
		t.Fatalf("audit_log has %d rows after the revoked session's INSERT, want 1", got)
	}
	if why := g.endReason(t, 1, "writer-ci"); !strings.Contains(why, "differs in its login level") {
		t.Fatalf("session.end reason %q", why)
	}
	// A new session gets the new grant.
	again, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	if _, err := again.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ('new session')"); err != nil {
		t.Fatal(err)
	}
}

// TestMaskingProfileChangeAppliesToNextResult: a changed masking profile
// is adopted by a live session from its next result on (SSNs go from
// last four digits to NULL), and nothing raw is ever returned; a profile
// that is gone ends the session instead.
func TestMaskingProfileChangeAppliesToNextResult(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	reader, err := pgx.Connect(ctx, g.dsn("reader-bot", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	ssns := func() []*string {
		t.Helper()
		rows, err := reader.Query(ctx, "SELECT ssn FROM patients ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[*string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := ssns()
	if len(before) == 0 || before[0] == nil || !strings.HasPrefix(*before[0], "***-**-") {
		t.Fatalf("SSNs before the change: %v", before)
	}
	stricter := compileProfileSSN(t, "hipaa", "null")
	g.publish(t, true, func(s *session.Snapshot) {
		s.Profiles = map[string]*mask.Profile{"hipaa": stricter}
	})
	for i, v := range ssns() {
		if v != nil {
			t.Fatalf("row %d after the profile changed: ssn %q, want NULL", i, *v)
		}
	}
	// The profile is gone: the session may not go on unmasked.
	g.publish(t, true, func(s *session.Snapshot) {
		s.Profiles = map[string]*mask.Profile{}
	})
	_, err = reader.Exec(ctx, "SELECT ssn FROM patients")
	wantRevoked(t, err, "masking profile hipaa")
}

// TestListenersHaveTheirOwnLifecycle: a Server serves several listeners;
// one failing ends none of the sessions it accepted, nor the others'
// listeners; Shutdown ends them all, recorded, and Serve then returns
// ErrServerClosed.
func TestListenersHaveTheirOwnLifecycle(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served2 := make(chan error, 1)
	go func() { served2 <- g.srv.Serve(ln2) }()
	dsn2 := strings.Replace(g.dsn("reader-bot", "require"), "port="+portOf(g.addr), "port="+portOf(ln2.Addr().String()), 1)
	var onSecond *pgx.Conn
	deadline := time.Now().Add(10 * time.Second)
	for onSecond == nil {
		if onSecond, err = pgx.Connect(ctx, dsn2); err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	defer onSecond.Close(ctx)
	onFirst, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer onFirst.Close(ctx)

	ln2.Close() // the second listener fails
	if err := <-served2; err == nil || errors.Is(err, pgwire.ErrServerClosed) {
		t.Fatalf("Serve on a closed listener returned %v", err)
	}
	for _, c := range []*pgx.Conn{onSecond, onFirst} {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("a session ended with the other listener: %v", err)
		}
	}
	if c, err := pgx.Connect(ctx, g.dsn("reader-bot", "require")); err != nil {
		t.Fatalf("the first listener stopped with the second: %v", err)
	} else {
		c.Close(ctx)
	}

	g.stop()
	if _, err := onSecond.Exec(ctx, "SELECT 1"); !isSQLState(err, "57P01") && err == nil {
		t.Fatal("a session outlived Shutdown")
	}
	for _, evs := range g.sessions(t, 3) {
		if last := evs[len(evs)-1]; last.Kind != record.KindSessionEnd {
			t.Fatalf("a session's recording ends with %s", last.Kind)
		}
	}
	if err := g.srv.Serve(ln2); !errors.Is(err, pgwire.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// expiringAuth is the gateway's authenticator with every identity's
// credential expiring at a fixed time, as a JWT's does.
type expiringAuth struct {
	identity.Authenticator
	expires time.Time
}

func (a expiringAuth) Authenticate(ctx context.Context, c identity.Credentials) (identity.Identity, error) {
	id, err := a.Authenticator.Authenticate(ctx, c)
	id.Expires = a.expires
	return id, err
}

// TestSessionEndsWhenItsTokenExpires: a session lives no longer than the
// credential that opened it, even when nothing else changes.
func TestSessionEndsWhenItsTokenExpires(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	ctx := context.Background()
	g.publish(t, false, func(s *session.Snapshot) {
		s.Auth = expiringAuth{Authenticator: s.Auth, expires: time.Now().Add(1500 * time.Millisecond)}
	})
	conn, err := pgx.Connect(ctx, g.dsn("writer-ci", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if why := g.endReason(t, 1, "writer-ci"); !strings.Contains(why, "token expired") {
		t.Fatalf("session.end reason %q", why)
	}
	_, err = conn.Exec(ctx, "INSERT INTO audit_log (msg) VALUES ('after expiry')")
	wantRevoked(t, err, "token expired")
	if got := g.auditRows(t); got != 0 {
		t.Fatalf("audit_log has %d rows after the expired session's INSERT", got)
	}
}
