package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/node"
)

// TestAPI runs a node with listen.api against a real PostgreSQL: health
// and readiness over HTTPS with the node's certificate, metrics that follow
// an allowed and a denied statement through pgx, and readiness gone once
// Close has begun. No response carries the agent's token.
func TestAPI(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Shared(t)
	if err := pg.AddUser(ctx, pgtest.User{Name: "api_svc", Password: "api-pw", Auth: pgtest.AuthSCRAM}); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "node_api", "api_svc"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "svc.pw")
	if err := os.WriteFile(pw, []byte("api-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &reloadFixture{dir: dir, pw: pw, pgAddr: pg.Addr(), token: "phg_api_test_token_never_shown"}
	cfg, err := node.ParseConfig([]byte(fmt.Sprintf(`
node: {id: api-node, data_dir: %s}
listen: {postgres: "127.0.0.1:0", api: "127.0.0.1:0"}
identities: {tokens: [%s]}
resources: [{name: clinic, address: %q, database: node_api, user: api_svc, password_file: %s, tls: disable}]
grants: [{name: bots, groups: [bots], resources: [clinic], allow: [read]}]
`, filepath.Join(dir, "data"), f.botToken(), f.pgAddr, f.pw)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := initAndNew(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	base := "https://" + n.APIAddr().String()
	// The test trusts any certificate; the node presents its own.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var bodies []string
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.TLS == nil {
			t.Fatalf("GET %s: not over TLS", path)
		}
		bodies = append(bodies, string(b))
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	_, before := get("/metrics")

	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=bot password=%s dbname=clinic sslmode=require", n.PostgresAddr().(*net.TCPAddr).Port, f.token)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE nope (a int)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("a DDL statement under a read grant: %v, want 42501", err)
	}
	_, during := get("/metrics")
	if v := metric(t, during, `phigate_sessions_active`); v != 1 {
		t.Fatalf("active sessions with one open: %v", v)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The session's end is counted once its recording has closed.
	var after string
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, after = get("/metrics")
		if metric(t, after, `phigate_sessions_active`) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		series string
		delta  float64
	}{
		{`phigate_commands_total{class="read",decision="allow"}`, 1},
		{`phigate_commands_total{class="ddl",decision="deny"}`, 1},
		{`phigate_sessions_ended_total{reason="terminate"}`, 1},
		{`phigate_sessions_active`, 0},
	} {
		if d := metric(t, after, c.series) - metric(t, before, c.series); d != c.delta {
			t.Errorf("%s changed by %v, want %v", c.series, d, c.delta)
		}
	}
	for _, series := range []string{`phigate_state_revision`, `phigate_spool_fsync_seconds_count`, `phigate_spool_commit_frames_count`,
		`phigate_policy_revision`, `phigate_cluster_quorum`, `phigate_cluster_peers{state="alive"}`} {
		if metric(t, after, series) < 1 {
			t.Errorf("%s is not counting:\n%s", series, after)
		}
	}
	if _, err := n.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	_, reloaded := get("/metrics")
	if metric(t, reloaded, `phigate_state_reloads_total{result="ok"}`) != 1 || metric(t, reloaded, `phigate_state_revision`) != float64(n.Revision()) {
		t.Errorf("reload not counted:\n%s", reloaded)
	}

	// A failed login with the token in the clear shows nowhere either.
	if _, err := pgx.Connect(ctx, strings.Replace(dsn, "dbname=clinic", "dbname=elsewhere", 1)); err == nil {
		t.Fatal("a login to an unknown resource succeeded")
	}
	if _, body := get("/metrics"); metric(t, body, `phigate_sessions_ended_total{reason="refused"}`) < 1 {
		t.Error("a refused login was not counted")
	}
	for _, b := range bodies {
		if strings.Contains(b, f.token) || strings.Contains(b, "api-pw") {
			t.Fatalf("an API response carries the token or a credential:\n%s", b)
		}
	}

	// Close: readiness is gone for good, and the API stops last.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Fatal("the API still serves after Close")
	}
}

// metric reads one series' value from Prometheus text; 0 when absent.
func metric(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
