package pgwire_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/session/mask"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/session/resource"
	"github.com/phigate/phigate/storage/spool"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// clinicSchema is the fixture every gateway test gets in its own database.
const clinicSchema = `
CREATE TABLE patients (
	id     int PRIMARY KEY,
	name   text NOT NULL,
	ssn    char(11) UNIQUE,
	dob    date,
	phone  varchar(20),
	mrn    bigint,
	notes  text
);
INSERT INTO patients VALUES
	(1, 'Alice Moreno', '123-45-6789', '1961-03-14', '+1 415 555 0134', 4400123, 'Seen for follow-up.'),
	(2, 'Bob Tran',     '987-65-4321', '1975-11-02', '+1 212 555 0188', 4400456, NULL),
	(3, 'Cara Singh',   NULL,          NULL,          NULL,              NULL,    'No PHI here.'),
	(4, 'Dee Park',     NULL,          NULL,          NULL,              NULL,    'Called daughter Maria Lopez at 415-555-0198 on 3/14/2023 about her BP 120/80.');
CREATE TABLE audit_log (id serial PRIMARY KEY, msg text);
`

// gateway is a pgwire.Server on loopback in front of a real PostgreSQL.
type gateway struct {
	addr       string
	dir        string
	spoolDir   string
	db         string
	pg         *pgtest.Server
	sp         *spool.Spool
	upstreamPW string
	tokens     map[string]string // identity name -> token
	auditor    *ecdh.PrivateKey
	rootCAs    *x509.CertPool
	// snap is the state the gateway started with, state holds the live
	// one: a test publishes a changed copy, then calls srv.Recheck.
	snap  *session.Snapshot
	state *session.State
	srv   *pgwire.Server
	su    *pgconn.PgConn // the snapshot tests' superuser connection (snapshot_test.go)

	stop func()
}

type gatewayOptions struct {
	spoolDir          string // default: a temp dir
	segmentBytes      int64
	cleartextLoopback bool
	maxMessageBytes   int
	upstreamAuth      string        // pgtest auth method of the gateway's role
	upstreamRole      string        // the gateway's role; default phigate_svc (tests that run in parallel need their own)
	database          string        // an existing database with the fixture, owned by upstreamRole; default: a new one
	stopTimeout       time.Duration // stop fails the test after this long if a session never ends; zero: waits for ever
	disableSnapshots  bool          // pgwire.Config.DisableChangeSnapshots
	snapshotRows      int           // pgwire.Config.ChangeSnapshotRows
	maxSessions       int           // pgwire.Config.MaxSessions
	readAhead         bool          // the writers' and owners' grants say read_ahead
}

func startGateway(t *testing.T, opts gatewayOptions) *gateway {
	t.Helper()
	ctx := context.Background()
	pg := pgtest.Shared(t)
	g := &gateway{pg: pg, dir: t.TempDir(), tokens: map[string]string{}}
	g.db = strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	if len(g.db) > 40 {
		g.db = g.db[:40]
	}
	g.db += "_" + randHex(4) // -count=N reruns share the server
	role := "phigate_svc_" + strings.ReplaceAll(opts.upstreamAuth, "-", "_")
	if opts.upstreamAuth == "" {
		opts.upstreamAuth, role = pgtest.AuthSCRAM, "phigate_svc"
	}
	if opts.upstreamRole != "" {
		role = opts.upstreamRole
	}
	g.upstreamPW = "upstream-" + randHex(12)
	if err := pg.AddUser(ctx, pgtest.User{Name: role, Password: g.upstreamPW, Auth: opts.upstreamAuth}); err != nil {
		t.Fatal(err)
	}
	if opts.database != "" {
		g.db = opts.database
	} else {
		if err := pg.CreateDatabase(ctx, g.db, role); err != nil {
			t.Fatal(err)
		}
		if err := pg.Exec(ctx, g.db, "SET ROLE "+role+";"+clinicSchema); err != nil {
			t.Fatal(err)
		}
	}

	var tokens []identity.StaticToken
	for _, id := range []identity.Identity{
		{Name: "reader-bot", Kind: identity.KindAgent, Groups: []string{"readers"}},
		{Name: "writer-ci", Kind: identity.KindCI, Groups: []string{"writers"}},
		{Name: "owner-ci", Kind: identity.KindCI, Groups: []string{"owners"}},
		{Name: "outsider", Kind: identity.KindAgent},
	} {
		tok := "tok-" + id.Name + "-" + randHex(8)
		g.tokens[id.Name] = tok
		tokens = append(tokens, identity.StaticToken{Identity: id, SHA256: identity.HashToken(tok)})
	}
	auth, err := identity.NewStaticTokens(tokens)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New([]policy.Grant{
		{Name: "readers", Groups: []string{"readers"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read, policy.Export}, Masking: "hipaa"},
		{Name: "writers", Groups: []string{"writers"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read, policy.Write, policy.Import, policy.Export, policy.DDL}, Masking: "hipaa", Functions: []string{"note"}},
		// owners write without a masking profile.
		{Name: "owners", Groups: []string{"owners"}, Resources: []string{"clinic"}, Allow: []policy.Class{policy.Read, policy.Write, policy.Import, policy.Export, policy.DDL}, Functions: []string{"note"}},
	}, []string{"clinic"}, []string{"hipaa"})
	if err == nil && opts.readAhead {
		grants := pol.Grants()
		for i := range grants {
			grants[i].ReadAhead = grants[i].Name != "readers"
		}
		pol, err = policy.New(grants, []string{"clinic"}, []string{"hipaa"})
	}
	if err != nil {
		t.Fatal(err)
	}
	prof := compileProfile(t, "hipaa")

	spoolDir := opts.spoolDir
	if spoolDir == "" {
		spoolDir = filepath.Join(g.dir, "spool")
	}
	g.spoolDir = spoolDir
	sp, err := spool.Open(spool.Config{Dir: spoolDir, SegmentBytes: opts.segmentBytes})
	if err != nil {
		t.Fatal(err)
	}
	g.sp = sp
	g.auditor, err = proof.GenerateAuditorKey()
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, pool := testTLS(t)
	g.rootCAs = pool
	res := &resource.Resource{
		Name: "clinic", Address: pg.Addr(), Database: g.db, User: role,
		Password: resource.NewSecret(g.upstreamPW), TLS: resource.TLSDisable,
	}
	if err := pgwire.ValidateResource(res); err != nil {
		t.Fatal(err)
	}
	g.snap = &session.Snapshot{
		Auth:      auth,
		Policy:    pol,
		Resources: map[string]*resource.Resource{"clinic": res},
		Profiles:  map[string]*mask.Profile{"hipaa": prof},
		Auditor:   g.auditor.PublicKey(),
		TLS:       tlsCfg,
	}
	g.state = session.NewState(g.snap)
	srv, err := pgwire.New(pgwire.Config{
		NodeID:                 "test-node",
		State:                  g.state,
		AllowCleartextLoopback: opts.cleartextLoopback,
		MaxMessageBytes:        opts.maxMessageBytes,
		DisableChangeSnapshots: opts.disableSnapshots,
		ChangeSnapshotRows:     opts.snapshotRows,
		MaxSessions:            opts.maxSessions,
		Recorder:               session.NewRecorder(sp, "test-node"),
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	spoolCtx, stopSpool := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = sp.Run(spoolCtx); sp.Close() }()
	served := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, pgwire.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			sctx := context.Background()
			if opts.stopTimeout > 0 {
				var cancel context.CancelFunc
				sctx, cancel = context.WithTimeout(sctx, opts.stopTimeout)
				defer cancel()
			}
			if err := srv.Shutdown(sctx); err != nil {
				t.Errorf("the gateway did not stop within %v: a session never ended (%v)", opts.stopTimeout, err)
			}
			<-served
			stopSpool()
			wg.Wait()
		})
	}
	t.Cleanup(g.stop)
	return g
}

// compileProfile compiles the test masking profile, a new *mask.Profile
// each time.
func compileProfile(t *testing.T, name string) *mask.Profile {
	t.Helper()
	return compileProfileSSN(t, name, "keep-last-4")
}

// compileProfileSSN is compileProfile with another action on SSNs.
func compileProfileSSN(t *testing.T, name, ssnAction string) *mask.Profile {
	t.Helper()
	prof, err := mask.Compile(name, mask.ProfileConfig{Rules: []mask.RuleConfig{
		{Column: "public.patients.ssn", Action: ssnAction},
		{Column: "patients.name", Action: "redact"},
		{Column: "patients.dob", Action: "null"},
		{Column: "patients.mrn", Action: "hash"},
		{Pattern: "^phone$", Action: "keep-last-4"},
	}, Detect: &mask.DetectConfig{}}, mask.Keys{Pseudonym: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	return prof
}

// dsn is a libpq connection string for identity name through the gateway.
func (g *gateway) dsn(name, sslmode string) string {
	host, port, _ := net.SplitHostPort(g.addr)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=clinic password=%s sslmode=%s connect_timeout=10",
		host, port, name, g.tokens[name], sslmode)
}

// sessions waits until at least n sessions have ended and returns every
// ended session's verified events, keyed by session id.
func (g *gateway) sessions(t *testing.T, n int) map[string][]*record.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := map[string][]*record.Event{}
		files, _ := filepath.Glob(filepath.Join(g.spoolDir, "sessions", "*.rec"))
		for _, f := range files {
			id := strings.TrimSuffix(filepath.Base(f), ".rec")
			evs, closed, err := g.readSession(id)
			if err != nil {
				t.Fatalf("session %s: %v", id, err)
			}
			if closed {
				out[id] = evs
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d ended sessions, have %d of %d", n, len(out), len(files))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gateway) readSession(id string) ([]*record.Event, bool, error) {
	rc, err := spool.DirStore{Dir: g.spoolDir}.Open(context.Background(), id)
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	var evs []*record.Event
	_, err = record.Verify(rc, id, true, func(ev *record.Event, _ []byte) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	closed := len(evs) > 0 && evs[len(evs)-1].Kind == record.KindSessionEnd
	return evs, closed, nil
}

// only returns the single ended session's events, failing otherwise.
func only(t *testing.T, sessions map[string][]*record.Event) []*record.Event {
	t.Helper()
	if len(sessions) != 1 {
		t.Fatalf("want 1 session, got %d", len(sessions))
	}
	for _, evs := range sessions {
		return evs
	}
	return nil
}

func kinds(evs []*record.Event) []record.Kind {
	var out []record.Kind
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func testTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "phigate test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// isSQLState reports whether err carries the given SQLSTATE.
func isSQLState(err error, code string) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == code
}
