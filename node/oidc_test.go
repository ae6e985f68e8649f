package node_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/identity"
)

// oidcIssuer is an OpenID Connect issuer served over HTTPS by the test,
// with one ES256 key; down makes it answer 503.
type oidcIssuer struct {
	srv    *httptest.Server
	caFile string
	key    *ecdsa.PrivateKey
	down   atomic.Bool
	hits   atomic.Int64
}

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &oidcIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if is.serve(w) {
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys"})
		}
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		if is.serve(w) {
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		}
	})
	is.srv = httptest.NewUnstartedServer(mux)
	is.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	is.srv.StartTLS()
	t.Cleanup(is.srv.Close)
	is.caFile = filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := os.WriteFile(is.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return is
}

func (is *oidcIssuer) serve(w http.ResponseWriter) bool {
	is.hits.Add(1)
	if is.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// token mints an ES256 JWT for sub, valid until exp.
func (is *oidcIssuer) token(t *testing.T, sub string, exp time.Time) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]string{"alg": "ES256", "kid": "k1", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": is.srv.URL, "aud": "phigate", "sub": sub, "groups": []string{"agents"},
		"iat": time.Now().Unix() - 5, "exp": exp.Unix(),
	})
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, is.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

const oidcConfig = `
node: {id: oidc-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0"}
identities:
  tokens:
    - {name: local-bot, kind: agent, groups: [agents], token_sha256: %s, clients: [127.0.0.0/8, "::1"]}
    - {name: far-bot, kind: agent, groups: [agents], token_sha256: %s, clients: [10.0.0.0/8]}
  oidc:
    - {issuer: %q, audience: phigate, ca_file: %s, kind: agent, groups_claim: groups, clients: [%s], clock_skew: 1s}
resources: [{name: clinic, address: %q, database: node_oidc, user: oidc_svc, password_file: %s, tls: disable}]
grants: [{name: agents, groups: [agents], resources: [clinic], allow: [read]}]
`

// TestOIDCThroughNode: an agent logs in through a real node with a JWT
// from an issuer served over HTTPS and queries a real PostgreSQL; an
// expired token gets 28P01 and is recorded as auth.failed; tokens bound to
// other client ranges are refused; a reload while the issuer is down keeps
// its keys; a state change after a token's expiry ends its session.
func TestOIDCThroughNode(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Shared(t)
	if err := pg.AddUser(ctx, pgtest.User{Name: "oidc_svc", Password: "oidc-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "node_oidc", "oidc_svc"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "node_oidc", "SET ROLE oidc_svc; CREATE TABLE visits (id int); INSERT INTO visits VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "svc.pw")
	if err := os.WriteFile(pw, []byte("oidc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	issuer := newOIDCIssuer(t)
	const localToken, farToken = "phg_local_static", "phg_far_static"
	config := func(clients string) *node.Config {
		cfg, err := node.ParseConfig([]byte(fmt.Sprintf(oidcConfig, filepath.Join(dir, "data"),
			identity.HashToken(localToken), identity.HashToken(farToken),
			issuer.srv.URL, issuer.caFile, clients, pg.Addr(), pw)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	n, err := initAndNew(t, config("127.0.0.0/8"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	port := n.PostgresAddr().(*net.TCPAddr).Port
	connect := func(user, password string) (*pgx.Conn, error) {
		return pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=clinic sslmode=require", port, user, password))
	}
	count := func(conn *pgx.Conn) error {
		var c int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM visits").Scan(&c); err != nil {
			return err
		}
		if c != 2 {
			return fmt.Errorf("count = %d", c)
		}
		return nil
	}

	// A JWT as the password: the agent queries.
	conn, err := connect("claims-agent", issuer.token(t, "claims-agent", time.Now().Add(10*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := count(conn); err != nil {
		t.Fatal(err)
	}

	// An expired one: 28P01, recorded as auth.failed, the token nowhere.
	expired := issuer.token(t, "claims-agent", time.Now().Add(-time.Minute))
	if _, err := connect("claims-agent", expired); !isCode(err, "28P01") {
		t.Fatalf("expired token: %v, want 28P01", err)
	}
	if failed := authFailures(t, filepath.Join(dir, "data")); len(failed) != 1 || !strings.Contains(failed[0], `"invalid token: expired"`) {
		t.Fatalf("auth.failed events: %q", failed)
	}
	assertNotRecorded(t, filepath.Join(dir, "data"), strings.Split(expired, ".")[2])

	// Static tokens bound to client ranges: loopback's works, 10/8's does not.
	local, err := connect("local-bot", localToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := count(local); err != nil {
		t.Fatal(err)
	}
	local.Close(ctx)
	if _, err := connect("far-bot", farToken); !isCode(err, "28P01") {
		t.Fatalf("static token from outside its ranges: %v, want 28P01", err)
	}

	// The issuer goes down; a reload rebuilds the authenticator, fetches
	// nothing and keeps the keys: new logins with JWTs still work.
	issuer.down.Store(true)
	hits := issuer.hits.Load()
	if _, err := applyPolicy(t, n, config("127.0.0.0/8")); err != nil {
		t.Fatalf("reload while the issuer is down: %v", err)
	}
	again, err := connect("claims-agent", issuer.token(t, "claims-agent", time.Now().Add(10*time.Minute)))
	if err != nil {
		t.Fatalf("login after the reload: %v", err)
	}
	again.Close(ctx)
	if err := count(conn); err != nil {
		t.Fatalf("the first session after the reload: %v", err)
	}
	if issuer.hits.Load() != hits {
		t.Fatalf("the reload or the login asked the issuer %d times", issuer.hits.Load()-hits)
	}
	issuer.down.Store(false)

	// A session whose token expires: the next change of state ends it.
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
	short, err := connect("short-lived", issuer.token(t, "short-lived", exp))
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close(ctx)
	if err := count(short); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(exp.Add(time.Second + 100*time.Millisecond))) // exp + clock_skew: nothing to wait on but the clock
	if _, err := applyPolicy(t, n, config("127.0.0.0/8")); err != nil {
		t.Fatal(err)
	}
	if err := count(short); !isCode(err, "42501") {
		t.Fatalf("the session of an expired token after a reload: %v, want 42501", err)
	}
	if err := count(conn); err != nil {
		t.Fatalf("the session of a valid token after a reload: %v", err)
	}

	// The issuer's tokens narrowed to 10/8: the loopback session ends, and
	// new logins from loopback are refused.
	if _, err := applyPolicy(t, n, config("10.0.0.0/8")); err != nil {
		t.Fatal(err)
	}
	if err := count(conn); !isCode(err, "42501") {
		t.Fatalf("the session after its client range was removed: %v, want 42501", err)
	}
	if _, err := connect("claims-agent", issuer.token(t, "claims-agent", time.Now().Add(10*time.Minute))); !isCode(err, "28P01") {
		t.Fatalf("a JWT from outside the issuer's ranges: %v, want 28P01", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	reasons := strings.Join(endReasons(t, filepath.Join(dir, "data")), "\n")
	// The short-lived token's session ended when its token expired (the
	// reload found it ended); the other when its client range went away.
	if strings.Count(reasons, "identity is no longer accepted") != 1 || strings.Count(reasons, "the token expired") != 1 {
		t.Fatalf("end reasons:\n%s", reasons)
	}
}

// TestOIDCConfigErrors: identities.oidc and tokens[].clients are
// validated when the node is built, and the error names the field.
func TestOIDCConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"http issuer":        {"identities: {oidc: [{issuer: 'http://idp.example', audience: a, kind: agent}]}", "identities.oidc[0].issuer"},
		"no audience":        {"identities: {oidc: [{issuer: 'https://idp.example', kind: agent}]}", "identities.oidc[0].audience"},
		"kind and claim":     {"identities: {oidc: [{issuer: 'https://idp.example', audience: a, kind: agent, kind_claim: k}]}", "identities.oidc[0].kind"},
		"missing CA file":    {"identities: {oidc: [{issuer: 'https://idp.example', audience: a, kind: ci, ca_file: /nonexistent.pem}]}", "identities.oidc[0]: ca_file"},
		"skew too large":     {"identities: {oidc: [{issuer: 'https://idp.example', audience: a, kind: ci, clock_skew: 1h}]}", "identities.oidc[0].clock_skew"},
		"bad issuer range":   {"identities: {oidc: [{issuer: 'https://idp.example', audience: a, kind: ci, clients: [10.1.2.3/8]}]}", "identities.oidc[0].clients"},
		"second issuer":      {"identities: {oidc: [{issuer: 'https://a.example', audience: a, kind: ci}, {issuer: 'https://b.example', audience: a, kind: robot}]}", "identities.oidc[1].kind"},
		"bad token range":    {"identities: {tokens: [{name: a, kind: agent, token_sha256: " + identity.HashToken("x") + ", clients: [nowhere]}]}", `identities.tokens[0] ("a").clients`},
		"unknown oidc field": {"identities: {oidc: [{issuer: 'https://idp.example', audiences: [a]}]}", "audiences"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := node.ParseConfig([]byte(tc.yaml + "\nnode: {data_dir: " + dir + "}\n"))
			if err == nil {
				_, err = initAndNew(t, cfg, slog.New(slog.DiscardHandler))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// authFailures returns the auth.failed events of every recording in a
// data directory, as NDJSON lines.
func authFailures(t *testing.T, data string) []string {
	t.Helper()
	store := recordingStore(t, data)
	sessions, err := replay.List(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range sessions {
		var buf bytes.Buffer
		if err := replay.PrintSession(context.Background(), &buf, store, s.ID, replay.Options{JSON: true}); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(buf.String(), "\n") {
			if strings.Contains(line, `"auth.failed"`) {
				out = append(out, line)
			}
		}
	}
	return out
}

// assertNotRecorded checks that no file under data holds s.
func assertNotRecorded(t *testing.T, data, s string) {
	t.Helper()
	err := filepath.Walk(data, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s holds the token", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
